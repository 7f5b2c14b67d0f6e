"""Nothing silently wrong: single-bit corruptions of a profile buffer are reported or change nothing.

Each case takes a clean buffer (reference encoder, and a real H100 buffer from tests/data/h100), flips
one bit at a few hundred deterministic positions and decodes every copy.  For each copy, one of these
must hold (:func:`verdict`):

- ``same``: the events and the intervals are exactly the clean decode's;
- ``reported``: the decode reports a problem (``DecodedLaunch.problems`` not empty; the clean decodes
  have none) or raises an error that says what is wrong;
- ``plausible``: a corruption that leaves a buffer a real launch could have written, which no decoder
  can tell from the truth.  Exactly two kinds, both checked precisely:

  1. *one record's time*: the flip moved the clock of one record, and the new time still lies between
     the times of its warp's neighbouring records (program order holds) and inside its CTA's header
     span: the events differ only in that record's ``cycles`` / ``time_ns`` (and the intervals in the
     times of the one it belongs to);
  2. *one CTA's header clock readings*: the flip moved a low bit of an entry or exit reading
     (``gtime_*`` / ``clock_*``) by less than the header span's tolerance: the clock map moves, so only
     ``time_ns`` changes, of the events of that SM's CTAs, and by less than the CTA's span; ``cycles``,
     scopes, order, seq and the pairing stay.

  3. *one warp's count*: ``count`` is the only record of how many records a warp attempted.  A flip
     that keeps it above the capacity (with ``wrap``: by a multiple of the capacity, so the same slot
     still holds the oldest record) and below the cycles the CTA ran (the decoder reports larger ones:
     a warp attempts at most one record per cycle) only moves that warp's ``lost`` count and, with
     ``wrap``, its ``seq`` numbers by one constant; scopes, times and intervals stay.
"""

from __future__ import annotations

import json
import pathlib
import struct

import numpy as np
import pytest
from reference_encoder import CtaSpec, SmClock, encode, make_cta, raw_tag

from kperf.dialect.errors import KperfError
from kperf.dialect.layout import CTA_HEADER_BYTES, FLAG_SAMPLED_OUT, HEADER_OFFSETS, Geometry
from kperf.tracing import decode
from kperf.tracing.record_checks import (
    REJECT_OUT_OF_ORDER,
    REJECT_PARTNER,
    SPAN_SLACK,
    span_tolerance,
)
from kperf.tracing.stats import scope_stats

DATA = pathlib.Path(__file__).resolve().parents[1] / "data" / "h100"
G0 = 1_700_000_000_000_000_000
_CLOCK_FIELDS = ("gtime_start", "clock_start", "gtime_end", "clock_end")


def _nested(t0: float, n: int, scopes=(0, 1)) -> list[tuple[int, bool, float]]:
    """n iterations of scope a enclosing scope b, 100 ns apart."""
    out = []
    t = t0
    a, b = scopes
    for _ in range(n):
        for sc, end in ((a, False), (b, False), (b, True), (a, True)):
            out.append((sc, end, t))
            t += 100.0
    return out


def _synthetic(clock: str, strategy: str, capacity: int):
    g = Geometry(2, capacity, clock)
    sms = [SmClock(1.7, 1 << 40), SmClock(1.9, 3 << 38)]
    ctas = []
    for i in range(4):
        t0 = 1_000.0 + 5_000.0 * (i // 2)
        ctas.append(make_cta(clock, sms[i % 2], i % 2, t0, t0 + 4_000.0,
                             [_nested(t0 + 300, 4), _nested(t0 + 350, 4, scopes=(2, 3))], ctaid=(i, 0, 0)))
    return g, strategy, encode(g, strategy, ctas), ["a", "b", "c", "d"]


def _h100(case: str, n_ctas: int = 16):
    """The first ``n_ctas`` CTAs (two rows of the 8x8 grid, on 16 SMs) of a buffer an H100 wrote."""
    z = np.load(DATA / f"{case}.npz")
    info = json.loads(str(z["info"]))
    g = Geometry(info["num_warps"], info["capacity"], info["clock"])
    buf = np.asarray(z["buffer"]).view(np.uint8).reshape(-1)[: n_ctas * g.cta_bytes]
    return g, info["strategy"], buf.tobytes(), info["scopes"]


CASES = {
    "clock-keep-first": lambda: _synthetic("clock", "keep-first", 32),
    "clock64-wrap-overflow": lambda: _synthetic("clock64", "wrap", 8),
    "globaltimer-keep-first-overflow": lambda: _synthetic("globaltimer", "keep-first", 12),
    "h100-gemm-clock": lambda: _h100("gemm1024_clock"),
    "h100-gemm-wrap64": lambda: _h100("gemm1024_wrap64"),
}


def _decode(buf: bytes, case):
    g, strategy, _, scopes = case
    return decode(buf, g, strategy=strategy, scopes=scopes, keep_raw=False)


def _tables(d):
    return d.events, d.intervals()[0]


def _bits(case, n: int, seed: int) -> np.ndarray:
    """n distinct bit positions: every header bit of the first CTA (the fields that matter most) and
    random ones elsewhere, in bytes the decoder reads (header, counts, kept record slots)."""
    g, _, buf, _ = case
    used = np.zeros(len(buf), bool)
    M = g.cta_bytes
    for c in range(len(buf) // M):
        used[c * M : c * M + g.records_offset + g.slots * g.warp_bytes] = True
    pool = np.flatnonzero(used) * 8
    rng = np.random.default_rng(seed)
    first_header = np.arange(CTA_HEADER_BYTES * 8)
    first_header = first_header[(first_header // 8 < 48) | (rng.random(len(first_header)) < 0.3)]
    rest = rng.choice((pool[:, None] + np.arange(8)).ravel(), size=n, replace=False)
    return np.unique(np.r_[first_header[: n // 3], rest[: n - n // 3]])


def _flip(buf: bytes, bit: int) -> bytes:
    b = bytearray(buf)
    b[bit // 8] ^= 1 << (bit % 8)
    return bytes(b)


def _one_record_time(clean, got) -> bool:
    """Plausible kind 1 (module docstring): one record's time moved, in order and inside its CTA."""
    e0, e1 = clean.events, got.events
    if len(e0) != len(e1):
        return False
    diff = np.flatnonzero((e0["cycles"] != e1["cycles"]) | (e0["time_ns"] != e1["time_ns"]))
    same_rest = all(np.array_equal(e0[f], e1[f]) for f in ("cta", "warp", "seq", "scope", "is_end"))
    if len(diff) != 1 or not same_rest:
        return False
    i = int(diff[0])
    key = (e1["cta"].astype(np.int64) << 16) | e1["warp"]
    c = e1["cycles"]
    ok = True
    if i > 0 and key[i - 1] == key[i]:
        ok &= c[i - 1] <= c[i]
    if i + 1 < len(c) and key[i + 1] == key[i]:
        ok &= c[i] <= c[i + 1]
    cta = got.ctas[int(e1["cta"][i])]
    gt = got.geometry.clock == "globaltimer"
    lo, hi = (int(cta["gtime_start"]), int(cta["gtime_end"])) if gt else (int(cta["clock_start"]),
                                                                          int(cta["clock_end"]))
    tol = span_tolerance(hi - lo)
    return bool(ok) and lo - tol <= int(c[i]) <= hi + tol


def _header_clock(clean, got, bit: int, case) -> bool:
    """Plausible kind 2 (module docstring): a header clock reading moved by less than its tolerance;
    only time_ns changed, by less than the CTA's span."""
    g = case[0]
    off = (bit // 8) % g.cta_bytes
    field = [f for f in _CLOCK_FIELDS if HEADER_OFFSETS[f] <= off < HEADER_OFFSETS[f] + 8]
    if not field or (1 << (off - HEADER_OFFSETS[field[0]]) * 8 + bit % 8) > SPAN_SLACK:
        return False
    e0, e1 = clean.events, got.events
    if len(e0) != len(e1) or any(not np.array_equal(e0[f], e1[f]) for f in e0.dtype.names if f != "time_ns"):
        return False
    c = clean.ctas
    span_ns = float((c["gtime_end"].astype(np.int64) - c["gtime_start"].astype(np.int64)).max())
    return bool(np.abs(e0["time_ns"] - e1["time_ns"]).max() < span_ns)


def _count_moved(clean, got, bit: int, case) -> bool:
    """Plausible kind 3 (module docstring): one warp's count moved; only its seq (by one constant) and
    its lost count changed."""
    g = case[0]
    off = (bit // 8) % g.cta_bytes
    if not g.counts_offset <= off < g.counts_offset + 4 * g.slots:
        return False
    e0, e1 = clean.events, got.events
    if len(e0) != len(e1) or any(not np.array_equal(e0[f], e1[f]) for f in e0.dtype.names if f != "seq"):
        return False
    cta, warp = bit // 8 // g.cta_bytes, int(g.slot_warps[(off - g.counts_offset) // 4])
    mine = (e0["cta"] == cta) & (e0["warp"] == warp)
    shift = np.unique(e1["seq"].astype(np.int64)[mine] - e0["seq"][mine])
    moved_lost = not np.array_equal(clean.lost, got.lost)
    return bool((e0["seq"] == e1["seq"])[~mine].all()) and len(shift) <= 1 and moved_lost


def verdict(clean, case, bit: int) -> str:
    """``same``, ``reported``, ``plausible`` or ``SILENT`` (see the module docstring)."""
    try:
        got = _decode(_flip(case[2], bit), case)
    except KperfError as err:
        return "reported" if str(err) else "SILENT"
    if got.problems:
        return "reported"
    if all(np.array_equal(a, b) for a, b in zip(_tables(clean), _tables(got), strict=True)):
        return "same"
    if (_one_record_time(clean, got) or _header_clock(clean, got, bit, case)
            or _count_moved(clean, got, bit, case)):
        return "plausible"
    return "SILENT"


@pytest.mark.parametrize("name", sorted(CASES))
def test_single_bit_flips_are_reported_or_harmless(name):
    case = CASES[name]()
    clean = _decode(case[2], case)
    assert clean.problems == [], clean.problems
    bits = _bits(case, 130, seed=sorted(CASES).index(name))
    verdicts = {int(b): verdict(clean, case, int(b)) for b in bits}
    silent = {b: v for b, v in verdicts.items() if v == "SILENT"}
    M = case[0].cta_bytes
    where = [f"byte {b // 8} (CTA {b // 8 // M}, offset {b // 8 % M}) bit {b % 8}" for b in silent]
    counts = {v: list(verdicts.values()).count(v) for v in ("same", "reported", "plausible")}
    print(name, counts)  # e.g. clock-keep-first {'same': 22, 'reported': 100, 'plausible': 8}
    assert not silent, f"{len(silent)} of {len(bits)} flips changed the output silently: {where}"
    assert counts["reported"] > len(bits) // 4  # the corruptions are found, not waved through


# --------------------------------------------------------------------------- the defects, one by one


def _one_cta(recs, clock="clock64", cs=10_000_000, span=1_000_000, **kw):
    g = Geometry(1, 16, clock)
    c = CtaSpec(warps=[recs], gtime_start=G0, clock_start=cs, gtime_end=G0 + span // 2, clock_end=cs + span,
                **kw)
    return g, c


def test_backward_step_leaves_the_statistics_clean():
    """A record whose clock went backwards used to stay in the intervals (a scope with a negative total
    and a 100.3% share): it is left out, with its partner, and counted."""
    cs = 10_000_000
    recs = [(0, False, cs + 100), (1, False, cs + 200), (1, True, cs + 300), (1, False, cs + 400),
            (1, True, cs + 150), (1, False, cs + 600), (1, True, cs + 700), (0, True, cs + 800)]
    g, c = _one_cta(recs)
    d = decode(encode(g, "keep-first", [c]), g, strategy="keep-first", scopes=["outer", "inner"])
    assert d.rejected[["seq", "reason"]].tolist() == [(3, REJECT_PARTNER), (4, REJECT_OUT_OF_ORDER)]
    iv, un = d.intervals()
    assert len(un) == 0 and (iv["end_cycles"] > iv["start_cycles"]).all()
    t = scope_stats(d)
    assert (t.columns["total_ns"] > 0).all() and (t.columns["share_frac"] <= 1.0).all()
    assert t.columns["count"].tolist() == [1, 2]  # outer once, inner twice (the third is rejected)
    assert "2 records rejected (1 out of order, 1 partner rejected)" in d.summary()


def test_flipped_end_bit_is_reported_where():
    """A start that became an end (one tag bit) leaves records without a partner: reported with CTA,
    warp, seq and scope, never dropped silently."""
    cs = 10_000_000
    recs = [(0, False, cs + 100), (0, True, cs + 200), (0, False, cs + 300), (0, True, cs + 400)]
    g, c = _one_cta(recs, raw_tags={(0, 2): raw_tag(0, True)})
    d = decode(encode(g, "keep-first", [c]), g, strategy="keep-first", scopes=["load"])
    assert len(d.intervals()[0]) == 1
    [p] = d.problems
    assert "2 scope records without a partner (0 starts without end, 2 ends without start)" in p
    assert "CTA 0 warp 0 seq 2 (end of 'load'), CTA 0 warp 0 seq 3 (end of 'load')" in p


def test_sampled_out_flag_with_records_is_corrupt():
    """A flags bit made the summary call a CTA with 14 events sampled out: a sampled-out CTA has zero
    counts and no records, so the flag is reported as corrupt and the records decoded."""
    cs = 10_000_000
    recs = [(0, i % 2 == 1, cs + 100 * (i + 1)) for i in range(14)]
    g, c = _one_cta(recs)
    raw = bytearray(encode(g, "keep-first", [c]))
    raw[HEADER_OFFSETS["flags"]] |= FLAG_SAMPLED_OUT
    d = decode(bytes(raw), g, strategy="keep-first")
    assert len(d.events) == 14 and not d.ctas["sampled_out"].any()
    assert "CTAs sampled out" not in d.summary()
    [p] = d.problems
    assert "1 CTA whose header flags say sampled out but whose counts or record slots hold data" in p
    assert "CTA 0; flag ignored" in p
    # a real sampled-out CTA is still one, with no problem
    s = CtaSpec(warps=[], gtime_start=G0, clock_start=cs, gtime_end=G0 + 500, clock_end=cs + 1000,
                flags=FLAG_SAMPLED_OUT)
    d = decode(encode(g, "keep-first", [s]), g, strategy="keep-first")
    assert d.ctas["sampled_out"].tolist() == [True] and d.problems == []


def test_unknown_flag_bits_are_reported():
    g, c = _one_cta([(0, False, 10_000_100), (0, True, 10_000_200)], flags=0x40)
    d = decode(encode(g, "keep-first", [c]), g, strategy="keep-first")
    assert len(d.events) == 2
    [p] = d.problems
    assert "header flag bits this decoder does not know" in p and "CTA 0 (0x0040)" in p


def test_count_larger_than_the_cta_ran_is_reported():
    g, c = _one_cta([(0, False, 10_000_100), (0, True, 10_000_200)], span=100_000)
    raw = bytearray(encode(g, "keep-first", [c]))
    raw[g.counts_offset + 2] = 0x10  # count 2 -> 0x100002: more records than cycles
    d = decode(bytes(raw), g, strategy="keep-first")
    assert len(d.events) == 2 and d.lost_total == 0x100002 - 16
    assert any("1 warp counted more records than their CTA ran cycles" in p
               and "CTA 0 warp 0 (count 1048578, 100000 cycles)" in p for p in d.problems)


def test_corrupt_header_reading_gives_an_odd_cta_rate():
    """One CTA per SM fits any line exactly: a corrupt entry reading shows only in the CTA's own rate."""
    g, strategy, buf, scopes = _h100("gemm1024_clock")
    assert decode(buf, g, strategy=strategy, scopes=scopes).problems == []
    raw = bytearray(buf)
    at = g.cta_bytes * 2 + HEADER_OFFSETS["gtime_start"]
    struct.pack_into("<Q", raw, at, struct.unpack_from("<Q", raw, at)[0] - 20_000)  # 20 us earlier
    d = decode(bytes(raw), g, strategy=strategy, scopes=scopes)
    [p] = d.problems
    assert "1 CTA whose header readings give a clock rate far from the launch's" in p and "CTA 2 (0." in p


def test_duplicated_or_out_of_grid_ctaid_is_reported():
    """A region copied over another, or a ctaid_y / ctaid_z overwritten, used to pass unreported: the
    ctaids were only checked when the grid they imply had exactly one CTA per region."""
    g = Geometry(1, 4, "clock64")
    ctas = [make_cta("clock64", SmClock(1.5, 1 << 36), 0, 500.0 * i, 500.0 * i + 2000,
                     [[(0, False, 500.0 * i + 300), (0, True, 500.0 * i + 400)]], ctaid=(i, 0, 0))
            for i in range(3)]
    buf = encode(g, "keep-first", ctas)
    assert decode(buf, g, strategy="keep-first").problems == []
    assert decode(buf, g, strategy="keep-first", grid=(3, 1, 1)).problems == []
    M = g.cta_bytes
    copied = buf[:2 * M] + buf[:M]
    d = decode(copied, g, strategy="keep-first", n_ctas=3)
    assert any("2 CTA regions holding the same ctaid as another region" in p and "region 0, 2" in p
               for p in d.problems), d.problems
    raw = bytearray(buf)
    raw[M + HEADER_OFFSETS["ctaid_y"]] = 7  # CTA 1 says (1, 7, 0): a grid of at least 3x8x1
    d = decode(bytes(raw), g, strategy="keep-first")
    assert any("imply a grid of at least 3x8x1 = 24 CTAs, more than the buffer's 3 regions" in p
               for p in d.problems), d.problems
    d = decode(bytes(raw), g, strategy="keep-first", grid=(3, 1, 1))
    assert any("1 CTA region holding a ctaid outside the launch grid 3x1x1: region 1" in p
               for p in d.problems), d.problems
    d = decode(buf, g, strategy="keep-first", grid=(2, 1, 1))
    assert any("the launch grid 2x1x1 has 2 CTAs but the buffer 3 regions" in p for p in d.problems)
    assert any("outside the launch grid 2x1x1: region 2" in p for p in d.problems)


def test_impossible_clock_rate_of_a_single_cta_is_reported():
    """A launch of one CTA: its rate is the launch's, so only an absolute bound can tell a corrupt
    reading (a flipped gtime_start bit gave 2e-10 GHz and moved every time by 1.76e13 ns, unreported)."""
    g = Geometry(1, 2, "globaltimer")
    G = 1_700_000_000_000_006_496
    c = CtaSpec(warps=[[(0, False, G + 300), (0, True, G + 450)]], gtime_start=G, clock_start=42949685830,
                gtime_end=G + 1984, clock_end=42949689790, version=1)
    buf = bytearray(encode(g, "keep-first", [c]))
    assert decode(bytes(buf), g, strategy="keep-first").problems == []
    buf[21] ^= 0x10
    d = decode(bytes(buf), g, strategy="keep-first")
    assert any("1 CTA whose header readings give a clock rate no GPU runs at" in p and "CTA 0 (2" in p
               for p in d.problems), d.problems


def test_huge_header_span_does_not_overflow_the_span_tolerance():
    """A corrupt exit reading gave a span near 2**63: the tolerance overflowed (OverflowError)."""
    assert span_tolerance(np.int64(2**62)) == np.iinfo(np.int64).max
    assert span_tolerance(2**62) == np.iinfo(np.int64).max
    g = Geometry(1, 8, "globaltimer", sink=2)
    c = make_cta("globaltimer", SmClock(1.5, 1 << 36), 0, 0.0, 2000.0, [[]])
    c.flags = FLAG_SAMPLED_OUT
    b = bytearray(encode(g, "wrap", [c]))
    b[22:24] = b"\x90\xed"
    b[32] ^= 0x10
    d = decode(bytes(b), g, strategy="wrap")
    assert d.problems and len(d.events) == 0


def test_data_in_padding_or_surplus_regions_is_reported():
    """kperf zeroes the buffer and no CTA writes its padding or past the launch's regions: data there is
    the wrong geometry (the slots read at other places) or a corrupt buffer."""
    g = Geometry(1, 4, "clock64")  # 64 header + 16 counts + 4 x 16 records = 144, padded to 256
    c = make_cta("clock64", SmClock(1.5, 1 << 36), 0, 0.0, 2000.0, [[(0, False, 300.0), (0, True, 400.0)]])
    buf = encode(g, "keep-first", [c, c])
    assert decode(buf, g, strategy="keep-first", n_ctas=1).problems == [
        "the buffer holds data past its 1 CTA region (256 more bytes; kperf zeroes the whole buffer): the "
        "wrong CTA count or geometry?; ignored"]
    one = buf[:g.cta_bytes]
    assert decode(one + bytes(g.cta_bytes), g, strategy="keep-first", n_ctas=1).problems == []
    for at in (g.counts_offset + 4, g.records_offset + 4 * 16, g.cta_bytes - 1):
        raw = bytearray(one)
        raw[at] = 1
        d = decode(bytes(raw), g, strategy="keep-first")
        assert any("1 CTA region with data in the padding no CTA writes" in p and "region 0" in p
                   for p in d.problems), (at, d.problems)
