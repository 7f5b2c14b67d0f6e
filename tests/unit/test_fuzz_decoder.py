"""Fuzzing the decoder: valid buffers from the reference encoder, mutated, must decode to a clear outcome.

Each case builds a launch the device could have written (:func:`launches`: clock ``clock`` /
``clock64`` / ``globaltimer``, ``keep-first`` / ``wrap``, 1-4 warps or a subset of them, a sink,
version 1 or 2 headers, sampled-out CTAs, warps that overflow their capacity, SMs with their own clock
offsets, 32-bit clocks that wrap inside a CTA), checks that it decodes with no problem, mutates it
(:func:`mutations`: 1-3 of bit flips, byte overwrites, zeroed ranges, truncation, extension, one CTA
region copied over another) and decodes the copy with the launch's CTA count, as the runtime and saved
profiles do.  The outcome must be one of:

- ``error`` / ``error+fix``: a :class:`KperfError` with a message (a buffer whose size does not fit the
  geometry); a ``ValueError`` or any other exception fails the case;
- ``same``: the events, the intervals (and the unmatched records) and the lost-record table are exactly
  the clean decode's;
- ``reported``: the decode succeeds and ``DecodedLaunch.problems`` is not empty;
- one of five classes of *undetectable* mutation (docs/buffer-format.md, "What cannot be detected"),
  each leaving a buffer a real launch could have written, checked precisely (:func:`undetectable`):

  ``plausible-time``: every changed byte lies in a record's time field (or in bytes the decoder never
  reads: padding, the 16-byte record's pad word, the sink, surplus whole regions); the events differ
  from the clean ones only in ``cycles`` / ``time_ns``; every warp's times still never decrease and
  every event lies inside its CTA's header span widened by the decoder's tolerance
  (``record_checks.span_tolerance``); the lost table is unchanged.

  ``plausible-header-clock``: every changed byte lies in a CTA header's clock readings
  (``gtime_start``, ``clock_start``, ``gtime_end``, ``clock_end``) or in unread bytes; each changed
  reading moved by at most that tolerance (of that CTA's span in the reading's own domain); the events
  differ only in ``time_ns``, by at most the tolerance of the launch's longest CTA span (ns).

  ``plausible-sm``: every changed byte lies in ``smid_start`` / ``smid_end`` (or unread bytes), the
  two still agree (the CTA ran on another SM); the events differ only in ``sm`` and ``time_ns``, by at
  most the same tolerance.

  ``plausible-count``: every changed byte lies in the counts array or in unread bytes; the events
  differ only in ``seq``, by one constant per warp (``wrap`` numbers records from the count); only the
  lost table may change with them.

  Several of these in one case (``plausible-count+time``, ...) must meet every condition of each.

  ``plausible-erased-warp``: the events of some warps are gone, and each of those warps has a zero
  count and all-zero record slots in the mutated buffer (a warp that recorded nothing leaves exactly
  that); every other event and lost row is unchanged.

Anything else (another exception type, or a changed output without a problem) fails the case, with the
launch and the mutations printed.  A second test decodes clean buffers with a neighbouring geometry or
the other strategy (:func:`wrong_decoding_outcome`).
"""

from __future__ import annotations

import random

import numpy as np
from fuzz_support import Outcomes, clear_error, fuzz_settings
from hypothesis import given, note
from hypothesis import strategies as st
from reference_encoder import SmClock, encode, make_cta

from kperf.dialect.errors import KperfError
from kperf.dialect.layout import (
    CTA_HEADER_BYTES,
    CTA_HEADER_DTYPE,
    FLAG_SAMPLED_OUT,
    HEADER_OFFSETS,
    Geometry,
)
from kperf.tracing import decode
from kperf.tracing.record_checks import span_tolerance

CASES = 2400  # mutated buffers
MUTANTS = 6  # of each generated launch (a launch costs as much as decoding two mutants)
WRONG_DECODINGS = 600
_CLOCK_FIELDS = ("gtime_start", "clock_start", "gtime_end", "clock_end")
# byte classes of a clean buffer (:func:`byte_classes`)
OTHER, CLOCK_FIELD, SMID, COUNT, TIME, UNREAD = range(6)
#: the event fields an undetectable change of each byte class may move (module docstring)
_MAY_CHANGE = {TIME: ("cycles", "time_ns"), CLOCK_FIELD: ("time_ns",), SMID: ("sm", "time_ns"),
               COUNT: ("seq",)}
_CLASS_NAMES = {TIME: "time", CLOCK_FIELD: "header-clock", SMID: "sm", COUNT: "count"}


# --------------------------------------------------------------------------- valid launches


class Launch:
    """A clean launch: geometry, strategy, scope names, buffer, and the clean decode."""

    def __init__(self, geometry: Geometry, strategy: str, scopes: list[str], buf: bytes, ctas: list):
        self.geometry, self.strategy, self.scopes = geometry, strategy, scopes
        self.buf, self.specs = buf, ctas
        self.clean = run_decode(buf, geometry, strategy, scopes)

    def __repr__(self) -> str:
        g = self.geometry
        heads = [(c.sm, c.gtime_start, c.clock_start, c.gtime_end, c.clock_end) for c in self.specs]
        return (f"Launch({g!r}, {self.strategy!r}, {len(self.specs)} CTAs, records per slot "
                f"{[[len(w) for w in c.warps] for c in self.specs]}, versions "
                f"{[c.version for c in self.specs]}, flags {[c.flags for c in self.specs]}, (sm, entry, "
                f"exit) {heads}, {len(self.buf)} bytes)")


def run_decode(buf: bytes, geometry: Geometry, strategy: str, scopes: list[str], n_ctas: int | None = None):
    """Decode as the runtime and saved profiles do: the launch's CTA count is known (its grid)."""
    return decode(buf, geometry, strategy=strategy, n_ctas=n_ctas, scopes=scopes, keep_raw=False, threads=1)


def _warp_records(rng: random.Random, n_scopes: int, capacity: int, t0: float) -> tuple[list, float]:
    """Program-order records of one warp (iterations of a scope, alone or enclosing another one)
    and the time after the last one; up to twice the capacity, so some warps overflow."""
    out: list[tuple[int, bool, float]] = []
    t = t0
    step = rng.choice((60.0, 150.0, 400.0))
    n = rng.choice((0, 1, rng.randint(0, capacity), rng.randint(0, 2 * capacity)))
    while len(out) < n:
        a, b = rng.randrange(n_scopes), rng.randrange(n_scopes)
        inner = [(b, False), (b, True)] if b != a else []
        for scope, end in [(a, False), *inner, (a, True)]:
            out.append((scope, end, t))
            t += step
    return out, t


@st.composite
def launches(draw) -> Launch:
    """A launch the device could have written; hypothesis draws its shape, a seeded generator the
    records (many small draws would make hypothesis itself the slow part)."""
    clock = draw(st.sampled_from(("clock", "clock64", "globaltimer")))
    strategy = draw(st.sampled_from(("keep-first", "wrap")))
    num_warps = draw(st.sampled_from((1, 2, 4)))
    warps = None
    if num_warps > 1 and draw(st.booleans()):
        warps = tuple(sorted(draw(st.sets(st.integers(0, num_warps - 1), min_size=1, max_size=num_warps))))
    capacity = draw(st.sampled_from((4, 8, 16)) if strategy == "wrap" else st.integers(2, 12))
    sink = draw(st.sampled_from((0, 0, 2)))
    g = Geometry(num_warps, capacity, clock, warps=warps, sink=sink)
    version1 = g.warps is None and g.sink == 0 and draw(st.integers(0, 3)) == 0
    n_scopes = draw(st.integers(1, 4))
    ghz = draw(st.sampled_from((1.41, 1.755, 1.98)))  # one rate: a short launch cannot measure one per SM
    sms = [SmClock(ghz, draw(st.sampled_from((1 << 36, (1 << 32) - 3000, 5 << 33, 12345))))
           for _ in range(draw(st.integers(1, 3)))]
    n_ctas = draw(st.integers(1, 4))
    rng = random.Random(draw(st.integers(0, 2**32 - 1)))
    ctas = []
    for i in range(n_ctas):
        sm = rng.randrange(len(sms))
        t0 = rng.randrange(40) * 500.0
        sampled_out = not version1 and rng.randrange(7) == 0
        warps_ns, t_end = [], t0 + 2000.0
        for _ in range(g.slots):
            recs, t = _warp_records(rng, n_scopes, capacity, t0 + 300.0)
            warps_ns.append([] if sampled_out else recs)
            t_end = max(t_end, t + 300.0)
        spec = make_cta(clock, sms[sm], sm, t0, t_end, warps_ns, ctaid=(i, 0, 0))
        spec.version = 1 if version1 else 2
        spec.flags = FLAG_SAMPLED_OUT if sampled_out else 0
        ctas.append(spec)
    scopes = [f"scope{k}" for k in range(n_scopes)]
    return Launch(g, strategy, scopes, encode(g, strategy, ctas), ctas)


# --------------------------------------------------------------------------- mutations


def _offset(rng: random.Random, launch: Launch) -> int:
    """A byte offset: anywhere, or (mostly) in what the decoder reads of a random CTA."""
    g, size = launch.geometry, len(launch.buf)
    cta = rng.randrange(size // g.cta_bytes)
    area = rng.choice(("any", "header", "header", "counts", "records", "records"))
    if area == "any":
        return rng.randrange(size)
    lo, n = {"header": (0, CTA_HEADER_BYTES), "counts": (g.counts_offset, 4 * g.slots),
             "records": (g.records_offset, g.slots * g.warp_bytes)}[area]
    return cta * g.cta_bytes + lo + rng.randrange(n)


def mutations(rng: random.Random, launch: Launch) -> list[tuple]:
    """1-3 byte-level mutations of the launch's buffer."""
    M, n = launch.geometry.cta_bytes, len(launch.buf) // launch.geometry.cta_bytes
    out: list[tuple] = []
    for _ in range(rng.randint(1, 3)):
        kind = rng.choice(("flip", "flip", "flip", "flip", "write", "write", "write", "zero", "zero",
                           "truncate", "extend", "copy-region"))
        if kind == "flip":
            out.append(("flip", _offset(rng, launch), rng.randrange(8)))
        elif kind == "write":
            out.append(("write", _offset(rng, launch), rng.randbytes(rng.randint(1, 8))))
        elif kind == "zero":
            out.append(("zero", _offset(rng, launch), rng.randint(1, M)))
        elif kind == "truncate":
            out.append(("truncate", rng.choice((1, 4, 8, 64, M - 1, M, M + 1))))
        elif kind == "extend":
            out.append(("extend", rng.choice((1, 8, M // 2, M, 2 * M)),
                        rng.choice(("zeros", "random", "copy")), rng.randbytes(8)))
        else:
            out.append(("copy-region", rng.randrange(n), rng.randrange(n)))
    return out


def _extension(buf: bytes, n: int, fill: str, seed: bytes) -> bytes:
    if fill == "zeros":
        return bytes(n)
    if fill == "copy":
        return (buf * (n // len(buf) + 1))[:n]
    return np.random.default_rng(list(seed)).integers(0, 256, n, dtype=np.uint8).tobytes()


def apply(launch: Launch, muts: list[tuple]) -> bytes:
    """The mutated buffer."""
    g = launch.geometry
    b = bytearray(launch.buf)
    for m in muts:
        kind = m[0]
        if kind == "flip" and m[1] < len(b):
            b[m[1]] ^= 1 << m[2]
        elif kind == "write":
            b[m[1]:m[1] + len(m[2])] = m[2][: max(0, len(b) - m[1])]
        elif kind == "zero":
            b[m[1]:m[1] + m[2]] = bytes(len(b[m[1]:m[1] + m[2]]))
        elif kind == "truncate":
            del b[max(0, len(b) - m[1]):]
        elif kind == "extend":
            b += _extension(bytes(b) or b"\0", m[1], m[2], m[3])
        elif kind == "copy-region":
            M = g.cta_bytes
            if (max(m[1], m[2]) + 1) * M <= len(b):
                b[m[2] * M:(m[2] + 1) * M] = b[m[1] * M:(m[1] + 1) * M]
    return bytes(b)


def _other_decoding(g: Geometry, strategy: str, what: str, k: int) -> tuple[Geometry, str]:
    """A neighbouring geometry (or the other strategy): what a wrong metadata lookup would give."""
    if what == "strategy":
        return g, "wrap" if strategy == "keep-first" else "keep-first"
    fields = dict(num_warps=g.num_warps, capacity=g.capacity, clock=g.clock, warps=g.warps, sink=g.sink)
    if what == "capacity":
        fields["capacity"] = max(1, g.capacity + (-1, 1, -2, 2)[k])
        if strategy == "wrap":
            fields["capacity"] = max(1, g.capacity * 2 if k % 2 else g.capacity // 2)
    elif what == "num_warps":
        fields["num_warps"] = (1, 2, 4, 8)[k]
        fields["warps"] = None
    elif what == "clock":
        fields["clock"] = ("clock", "clock64", "globaltimer", "clock")[k]
    elif what == "warps":
        fields["warps"] = None if g.warps else (0,) if k % 2 or g.num_warps == 1 else (1,)
    else:
        fields["sink"] = (0, 1, 2, 4)[k]
    return Geometry(**fields), strategy


# --------------------------------------------------------------------------- outcomes


def byte_classes(g: Geometry, size: int) -> np.ndarray:
    """The class of every byte of a clean buffer: a header clock reading, a count, a record's time
    field, bytes the decoder never reads (padding, the record pad word, the sink), or other."""
    M = g.cta_bytes
    one = np.full(M, OTHER, np.uint8)
    for f in _CLOCK_FIELDS:
        one[HEADER_OFFSETS[f]:HEADER_OFFSETS[f] + 8] = CLOCK_FIELD
    one[HEADER_OFFSETS["smid_start"]:HEADER_OFFSETS["smid_end"] + 4] = SMID
    one[g.counts_offset:g.records_offset] = UNREAD
    one[g.counts_offset:g.counts_offset + 4 * g.slots] = COUNT
    one[g.records_offset + g.slots * g.warp_bytes:] = UNREAD
    rb = g.record_bytes
    for s in range(g.slots):
        base = g.records_offset + s * g.warp_bytes
        for k in range(g.capacity + g.sink):
            r = base + k * rb
            if k >= g.capacity:
                one[r:r + rb] = UNREAD
            elif rb == 8:
                one[r + 4:r + 8] = TIME
            else:
                one[r + 4:r + 8] = UNREAD
                one[r + 8:r + 16] = TIME
    return np.tile(one, size // M)


def _tables(d) -> list[np.ndarray]:
    iv, unmatched = d.intervals()
    return [d.events, iv, unmatched, d.lost]


def _same_except(e0: np.ndarray, e1: np.ndarray, fields: tuple[str, ...]) -> bool:
    return len(e0) == len(e1) and all(np.array_equal(e0[f], e1[f]) for f in e0.dtype.names if f not in fields)


def _header_clock_moves(clean: np.ndarray, got: np.ndarray, g: Geometry) -> bool:
    """Each changed clock reading of each CTA moved by at most the span tolerance (its own domain)."""
    h0 = np.ndarray(len(clean) // g.cta_bytes, CTA_HEADER_DTYPE, clean, 0, (g.cta_bytes,))
    h1 = np.ndarray(len(got) // g.cta_bytes, CTA_HEADER_DTYPE, got, 0, (g.cta_bytes,))
    for start, end in (("gtime_start", "gtime_end"), ("clock_start", "clock_end")):
        span = h0[end].astype(np.int64) - h0[start].astype(np.int64)
        tol = span_tolerance(np.maximum(span, 0))
        for f in (start, end):
            delta = np.abs(h1[f].astype(object) - h0[f].astype(object)).astype(np.float64)
            if (delta > tol).any():
                return False
    return True


def _in_order_and_span(d) -> bool:
    e = d.events
    key = e["cta"].astype(np.int64) << 16 | e["warp"]
    c = e["cycles"]
    same_warp = key[1:] == key[:-1]
    if (c[1:] < c[:-1])[same_warp].any():
        return False
    ctas = d.ctas[e["cta"]]
    lo_f, hi_f = (("gtime_start", "gtime_end") if d.geometry.clock == "globaltimer"
                  else ("clock_start", "clock_end"))
    lo, hi = ctas[lo_f].astype(np.int64), ctas[hi_f].astype(np.int64)
    tol = span_tolerance(hi - lo)
    return bool(((lo - tol <= c) & (c <= hi + tol)).all())


def _seq_shift_per_warp(e0: np.ndarray, e1: np.ndarray) -> bool:
    key = e0["cta"].astype(np.int64) << 16 | e0["warp"]
    shift = e1["seq"].astype(np.int64) - e0["seq"].astype(np.int64)
    return all(len(np.unique(shift[key == k])) == 1 for k in np.unique(key))


def _erased_warps(launch: Launch, buf: bytes, got) -> bool:
    """``plausible-erased-warp``: the events of some warps are gone, each of those warps has a zero
    count and all-zero record slots in the mutated buffer (what a warp that recorded nothing leaves),
    and every other event and lost-table row is unchanged."""
    g, e0, e1 = launch.geometry, launch.clean.events, got.events
    n = len(launch.specs)
    regions = np.frombuffer(buf, g.cta_dtype(), count=n)
    slot_of = {int(w): s for s, w in enumerate(g.slot_warps)}
    k0, k1 = (e0["cta"].astype(np.int64) << 16 | e0["warp"]), (e1["cta"].astype(np.int64) << 16 | e1["warp"])
    gone = np.setdiff1d(np.unique(k0), np.unique(k1))
    if not gone.size:
        return False
    for key in gone.tolist():
        cta, slot = key >> 16, slot_of[key & 0xFFFF]
        if regions["counts"][cta, slot] or regions["records"][cta, slot].view(np.uint8).any():
            return False
    kept = ~np.isin(k0, gone)
    lost0 = launch.clean.lost
    lost_kept = ~np.isin(lost0["cta"].astype(np.int64) << 16 | lost0["warp"], gone)
    return bool(np.array_equal(e0[kept], e1) and np.array_equal(lost0[lost_kept], got.lost))


def _moved_times(launch: Launch, got) -> bool:
    """How far (ns) the events moved, and the most an undetectable header change may move them: the
    span tolerance of the launch's longest CTA."""
    c = launch.clean.ctas
    span_ns = int((c["gtime_end"].astype(np.int64) - c["gtime_start"].astype(np.int64)).max())
    e0, e1 = launch.clean.events, got.events
    moved = float(np.abs(e0["time_ns"] - e1["time_ns"]).max()) if len(e0) else 0.0
    return moved <= span_tolerance(span_ns)


def undetectable(launch: Launch, buf: bytes, got) -> str | None:
    """The class of undetectable mutation this case is (module docstring), or None."""
    clean, size = launch.clean, len(launch.buf)
    if len(buf) < size:
        return None
    if _erased_warps(launch, buf, got):
        return "plausible-erased-warp"
    changed = np.flatnonzero(np.frombuffer(buf, np.uint8, count=size) != np.frombuffer(launch.buf, np.uint8))
    classes = set(byte_classes(launch.geometry, size)[changed].tolist()) - {UNREAD}
    if not classes or not classes <= set(_MAY_CHANGE):
        return None
    e0, e1 = clean.events, got.events
    fields = tuple(f for c in classes for f in _MAY_CHANGE[c])
    if not _same_except(e0, e1, fields):
        return None
    if COUNT not in classes and not np.array_equal(clean.lost, got.lost):
        return None
    if TIME in classes and not _in_order_and_span(got):
        return None
    if classes & {CLOCK_FIELD, SMID} and not (_moved_times(launch, got)
                                             and _header_clock_moves(launch.buf, buf, launch.geometry)):
        return None
    if SMID in classes:
        h = np.ndarray(len(launch.specs), CTA_HEADER_DTYPE, buf, 0, (launch.geometry.cta_bytes,))
        if not np.array_equal(h["smid_start"], h["smid_end"]):
            return None
    if COUNT in classes and not _seq_shift_per_warp(e0, e1):
        return None
    return "plausible-" + "+".join(_CLASS_NAMES[c] for c in sorted(classes))


def _decoded(launch: Launch, buf: bytes, g: Geometry, strategy: str):
    """The decode of ``buf`` with the tables built (building them must not fail either), or the outcome
    name of the KperfError it raised."""
    try:
        got = run_decode(buf, g, strategy, launch.scopes, n_ctas=len(launch.specs))
        _tables(got)
    except KperfError as err:
        return clear_error(err)
    return got


def _same(launch: Launch, got) -> bool:
    return all(np.array_equal(a, b) for a, b in zip(_tables(launch.clean), _tables(got), strict=True))


def _plain_outcome(launch: Launch, got) -> str | None:
    """"error..." (``got`` is the error's outcome string), "reported", "same", or None: look closer."""
    if isinstance(got, str):
        return got
    if got.problems:
        return "reported"
    if _same(launch, got):
        return "same"
    return None


def outcome(launch: Launch, muts: list[tuple]) -> str:
    """error / same / reported / an undetectable class; anything else raises."""
    buf = apply(launch, muts)
    got = _decoded(launch, buf, launch.geometry, launch.strategy)
    plain = _plain_outcome(launch, got)
    if plain:
        return plain
    kind = undetectable(launch, buf, got)
    if kind:
        return kind
    raise AssertionError(f"the output changed with no problem reported: {len(launch.clean.events)} -> "
                         f"{len(got.events)} events; mutations {muts}")


def _counts_fold(launch: Launch) -> bool:
    """Every warp's count is at most the capacity or a multiple of it: its slots hold records in the
    same order under either strategy."""
    c = launch.geometry.capacity
    return all(len(w) <= c or len(w) % c == 0 for spec in launch.specs for w in spec.warps)


def wrong_decoding_outcome(launch: Launch, what: str, k: int) -> str:
    """The clean buffer decoded with a neighbouring geometry or the other strategy (what a wrong
    metadata lookup or an edited saved manifest gives).  A geometry whose region size does not divide
    the buffer must be a KperfError; otherwise the outcome is error / same / reported, or one of two
    classes the buffer alone cannot tell:

    - ``strategy-swap``: the other strategy, every warp's count at most the capacity or a multiple of
      it (the buffer is a valid one of either strategy), and the events differ only in ``seq``, by one
      constant per warp;
    - ``region-misread``: a geometry whose region size (``cta_bytes``; regions are padded to 128
      bytes) divides the buffer, so the decoder reads the slots at other places (a longer buffer is
      decoded up to ``n_ctas``, as documented).  Counted, not failed: the decoder's check that padding
      and surplus regions are all zero (as kperf's memset leaves them) catches most of these; the rest
      look like a real buffer of that geometry.
    """
    try:
        g, strategy = _other_decoding(launch.geometry, launch.strategy, what, k)
    except ValueError:  # a geometry that cannot exist (the Geometry constructor refuses it)
        return "no-such-geometry"
    got = _decoded(launch, launch.buf, g, strategy)
    plain = _plain_outcome(launch, got)
    if plain:
        return plain
    if (what == "strategy" and _counts_fold(launch)
            and _same_except(launch.clean.events, got.events, ("seq",))
            and _seq_shift_per_warp(launch.clean.events, got.events)):
        return "strategy-swap"
    if what != "strategy" and len(launch.buf) % g.cta_bytes == 0:
        return "region-misread"
    raise AssertionError(f"decoded as {g} / {strategy}: the output changed with no problem reported: "
                         f"{len(launch.clean.events)} -> {len(got.events)} events")


def test_fuzz_mutated_buffers_decode_to_a_clear_outcome():
    """CASES mutated buffers (MUTANTS of each of CASES // MUTANTS launches)."""
    tally = Outcomes()

    @fuzz_settings(CASES // MUTANTS)
    @given(launches(), st.integers(0, 2**32 - 1))
    def case(launch, seed):
        assert launch.clean.problems == [], launch.clean.problems  # the generator makes valid launches
        rng = random.Random(seed)
        for _ in range(MUTANTS):
            muts = mutations(rng, launch)
            note(f"mutations: {muts}")
            tally.run(outcome, launch, muts, describe=f"{launch!r} {muts}")

    case()
    tally.check("decoder mutations", CASES * 9 // 10,
                must_see=("same", "reported", ("error", "error+fix"), "plausible-time", "plausible-count"))


def test_fuzz_wrong_geometry_or_strategy_is_an_error_or_reported():
    tally = Outcomes()

    @fuzz_settings(WRONG_DECODINGS // 6)
    @given(launches(), st.integers(0, 3))
    def case(launch, k):
        for what in ("capacity", "num_warps", "clock", "strategy", "warps", "sink"):
            tally.run(wrong_decoding_outcome, launch, what, k, describe=f"{launch!r} as {what} {k}")

    case()
    tally.check("decoder wrong geometry", WRONG_DECODINGS * 9 // 10,
                must_see=(("error", "error+fix"), "reported", "strategy-swap"))
