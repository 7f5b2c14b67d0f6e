"""Reference encoder: the bytes a kperf-instrumented launch leaves in its profile buffer.

Small and deliberately naive (one ``struct.pack_into`` per field, a Python loop per record) so that
it is obviously right; it uses only the offsets of :mod:`kperf.dialect.layout` (``HEADER_OFFSETS``,
``Geometry.counts_offset`` / ``records_offset`` / ``record_bytes`` / ``cta_bytes``), never the
structured dtype the decoder reads through, so the two cross-check each other.

Device behaviour reproduced: every warp bumps its counter once per record it attempts; with
``keep-first`` record ``i`` is stored in slot ``i`` only while ``i < capacity``; with ``wrap`` record
``i`` overwrites slot ``i % capacity``.  The final counter is written to the counts array.  For
``clock="clock"`` the record holds the low 32 bits of the clock.

Corruption knobs (all per CTA, on :class:`CtaSpec`): ``magic``, ``version``, ``num_warps`` (header
fields), ``zeroed`` (the region stays all-zero, as if the CTA never ran), ``no_end`` (the exit pair is
never written), ``raw_tags`` (overwrite the tag of a warp's ``i``-th record: an invalid tag, a zero
tag = unwritten slot, or a tag with any scope id); and ``encode(truncate_to=...)``.
"""

from __future__ import annotations

import dataclasses
import struct

import numpy as np

from kperf.dialect.layout import (
    CTA_HEADER_DTYPE,
    FLAG_SAMPLED_OUT,
    HEADER_OFFSETS,
    MAGIC,
    SUPPORTED_VERSIONS,
    TAG_END,
    TAG_SCOPE_SHIFT,
    TAG_VALID,
    VERSION,
    Geometry,
)

_FMT = {np.dtype("<u2"): "<H", np.dtype("<u4"): "<I", np.dtype("<u8"): "<Q"}
_U64 = (1 << 64) - 1


def raw_tag(scope_id: int, is_end: bool) -> int:
    """A tag word with any scope id (no range check, unlike layout.make_tag)."""
    return TAG_VALID | (scope_id << TAG_SCOPE_SHIFT) | (TAG_END if is_end else 0)


@dataclasses.dataclass
class CtaSpec:
    """One CTA as the device would run it.

    ``warps[s]`` is the records of slot ``s`` (warp ``geometry.warps[s]``; slot = warp by default) in
    program order: ``(scope_id, is_end, time)`` where time is the full clock value (absolute clock64
    cycles, or globaltimer ns for clock="globaltimer").  ``flags`` is the v2 header's flags word
    (``FLAG_SAMPLED_OUT``: a sampled-out CTA, whose ``warps`` must then be empty).
    """

    warps: list[list[tuple[int, bool, int]]]
    sm: int = 0
    sm_end: int | None = None
    ctaid: tuple[int, int, int] = (0, 0, 0)
    gtime_start: int = 0
    clock_start: int = 0
    gtime_end: int = 0
    clock_end: int = 0
    magic: int = MAGIC
    version: int = VERSION
    flags: int = 0
    num_warps: int | None = None  # header field; default: the geometry's
    zeroed: bool = False
    no_end: bool = False
    raw_tags: dict[tuple[int, int], int] = dataclasses.field(default_factory=dict)  # (warp, i) -> tag


def _put_header(buf: bytearray, base: int, name: str, value: int) -> None:
    fmt = _FMT[CTA_HEADER_DTYPE.fields[name][0]]
    struct.pack_into(fmt, buf, base + HEADER_OFFSETS[name], value)


def encode(geometry: Geometry, strategy: str, ctas: list[CtaSpec], *,
           truncate_to: int | None = None) -> bytes:
    """The launch's buffer: CTA ``i`` of ``ctas`` in region ``i`` (its linear id)."""
    assert strategy in ("keep-first", "wrap")
    cap = geometry.capacity
    if strategy == "wrap":
        assert cap & (cap - 1) == 0
    buf = bytearray(geometry.cta_bytes * len(ctas))
    time_fmt = "<I" if geometry.clock == "clock" else "<Q"
    time_off = 4 if geometry.clock == "clock" else 8  # tag (u4) [+ pad (u4)], then time
    for i, c in enumerate(ctas):
        if c.zeroed:
            continue
        base = i * geometry.cta_bytes
        assert len(c.warps) <= geometry.slots
        assert not (c.flags & FLAG_SAMPLED_OUT and any(c.warps)), "a sampled-out CTA has no records"
        _put_header(buf, base, "magic", c.magic)
        _put_header(buf, base, "version", c.version)
        _put_header(buf, base, "flags", c.flags)
        _put_header(buf, base, "smid_start", c.sm)
        _put_header(buf, base, "gtime_start", c.gtime_start)
        _put_header(buf, base, "clock_start", c.clock_start)
        _put_header(buf, base, "ctaid_x", c.ctaid[0])
        _put_header(buf, base, "ctaid_y", c.ctaid[1])
        _put_header(buf, base, "ctaid_z", c.ctaid[2])
        _put_header(buf, base, "num_warps", geometry.num_warps if c.num_warps is None else c.num_warps)
        if not c.no_end:
            _put_header(buf, base, "smid_end", c.sm if c.sm_end is None else c.sm_end)
            _put_header(buf, base, "gtime_end", c.gtime_end)
            _put_header(buf, base, "clock_end", c.clock_end)
        for w, records in enumerate(c.warps):
            count = 0
            for k, (scope, is_end, t) in enumerate(records):
                slot = count if strategy == "keep-first" else count % cap
                if slot >= cap and geometry.sink:  # fold: records past capacity land in the sink
                    slot = cap + (count - cap) % geometry.sink
                if slot < cap + geometry.sink:
                    off = (base + geometry.records_offset + w * geometry.warp_bytes
                           + slot * geometry.record_bytes)
                    tag = c.raw_tags.get((w, k), raw_tag(scope, is_end))
                    struct.pack_into("<I", buf, off, tag)
                    value = t & 0xFFFFFFFF if geometry.clock == "clock" else t & _U64
                    struct.pack_into(time_fmt, buf, off + time_off, value)
                count += 1
            struct.pack_into("<I", buf, base + geometry.counts_offset + 4 * w, count)
    out = bytes(buf)
    return out if truncate_to is None else out[:truncate_to]


def expected_events(geometry: Geometry, strategy: str, ctas: list[CtaSpec]) -> list[tuple]:
    """What a decoder must give back: ``(cta, warp, seq, scope, is_end, time)`` in (cta, warp, seq)
    order, for the good CTAs, kept records only, raw_tags ignored; ``warp`` is the slot's warp."""
    cap = geometry.capacity
    out = []
    for i, c in enumerate(ctas):
        if c.zeroed or c.magic != MAGIC or c.version not in SUPPORTED_VERSIONS:
            continue
        for slot, records in enumerate(c.warps):
            w = int(geometry.slot_warps[slot])
            n = len(records)
            seqs = range(min(n, cap)) if strategy == "keep-first" else range(max(0, n - cap), n)
            for s in seqs:
                scope, is_end, t = records[s]
                out.append((i, w, s, scope, bool(is_end), t))
    return out


# --------------------------------------------------------------------------- a clock model for tests


GTIME_STEP_NS = 32  # %globaltimer resolution on H100/H200


@dataclasses.dataclass(frozen=True)
class SmClock:
    """One SM's %clock64 as a function of true time: ``offset + ghz * t_ns`` (t_ns since gtime_base)."""

    ghz: float
    offset: int

    def cycles(self, t_ns: float) -> int:
        return self.offset + int(round(t_ns * self.ghz))


def make_cta(
    clock: str,
    sm_clock: SmClock,
    sm: int,
    t_start: float,
    t_end: float,
    warps_ns: list[list[tuple[int, bool, float]]],
    *,
    gtime_base: int = 1_700_000_000_000_000_000,
    ctaid: tuple[int, int, int] = (0, 0, 0),
    gtime_step: int = GTIME_STEP_NS,
) -> CtaSpec:
    """A CtaSpec whose header and records follow the clock model (true times in ns)."""

    def gtime(t: float) -> int:
        g = gtime_base + int(round(t))
        return g - g % gtime_step

    def rec_time(t: float) -> int:
        return gtime_base + int(round(t)) if clock == "globaltimer" else sm_clock.cycles(t)

    return CtaSpec(
        warps=[[(s, e, rec_time(t)) for s, e, t in w] for w in warps_ns],
        sm=sm, ctaid=ctaid,
        gtime_start=gtime(t_start), clock_start=sm_clock.cycles(t_start),
        gtime_end=gtime(t_end), clock_end=sm_clock.cycles(t_end),
    )


# --------------------------------------------------------------------------- bulk data for throughput tests


def bulk_buffer(n_ctas: int, num_warps: int, capacity: int, clock: str = "clock", n_scopes: int = 4,
                n_sms: int = 132) -> tuple[Geometry, bytes]:
    """A large, well-formed buffer built with numpy (not the reference: for speed tests only).

    Every warp fills its capacity with properly nested scopes: record i is scope (i // 2) % n_scopes,
    start for even i, end for odd i, 100 cycles (50 ns) apart; SMs run at 2 GHz; a CTA lasts 80,000
    cycles (longer for capacities over 600) and holds all its records.
    """
    g = Geometry(num_warps, capacity, clock)
    a = np.zeros(n_ctas, g.cta_dtype())
    h = a["header"]
    h["magic"], h["version"], h["num_warps"] = MAGIC, VERSION, num_warps
    cta = np.arange(n_ctas)
    sm = cta % n_sms
    start_ns = cta // n_sms * 50_000
    span = max(80_000, 100 * capacity + 20_000)  # cycles: every record lies inside its CTA
    h["smid_start"] = h["smid_end"] = sm
    gtime_start = 1_700_000_000_000_000_000 + start_ns
    h["gtime_start"], h["gtime_end"] = gtime_start, gtime_start + span // 2
    clock_start = sm.astype(np.int64) * 10**9 + start_ns * 2
    h["clock_start"], h["clock_end"] = clock_start, clock_start + span
    h["ctaid_x"] = cta
    a["counts"] = capacity
    i = np.arange(capacity)
    a["records"]["tag"] = TAG_VALID | (((i // 2) % n_scopes) << TAG_SCOPE_SHIFT) | (i & 1)
    if clock == "globaltimer":  # the same instants, read from the globaltimer
        a["records"]["time"] = gtime_start[:, None, None] + 5 + i * 50
    else:
        t = clock_start[:, None, None] + 10 + i * 100
        a["records"]["time"] = (t & 0xFFFFFFFF) if clock == "clock" else t
    return g, a.tobytes()
