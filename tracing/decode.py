"""Decode one launch's kperf profile buffer (format: :mod:`kperf.layout`) into numpy event tables.

Everything is vectorised over events with numpy: no Python loop runs per event, per warp or per CTA.

Units: ``cycles`` are SM clock cycles in the ``%clock64`` domain of the CTA headers (for
``clock="globaltimer"`` they are absolute globaltimer ns); ``time_ns`` is ns since the launch's
earliest CTA entry (``DecodedLaunch.t0_ns``, absolute globaltimer ns), on one axis for all SMs.

Data problems (CTAs that never ran, bad magic or version, unwritten or corrupt record slots, scope
ids missing from the scope table, clocks running backwards, ...) never raise: they are described in
``DecodedLaunch.problems``; CTAs with a bad header are left out of the events, records with a bad
tag are dropped (their ``seq`` numbers stay unused).  Only misuse raises: a buffer whose size does
not fit the geometry, an unknown strategy, a ``wrap`` capacity that is not a power of two.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from kperf.layout import (
    CTA_HEADER_BYTES,
    MAGIC,
    MAX_SCOPES,
    STRATEGIES,
    TAG_END,
    TAG_SCOPE_BITS,
    TAG_SCOPE_SHIFT,
    TAG_VALID,
    VERSION,
    Geometry,
)

from ._common import ScopesLike, fill_columns, fmt_ids, in_table, plural, scope_id_array, scope_names
from .clocks import SM_CLOCK_DTYPE, ClockFit, fit_clocks

#: One record, decoded.  Sorted by (cta, warp, seq) in a DecodedLaunch.
EVENT_DTYPE = np.dtype(
    [
        ("launch", "<u4"),  # launch number given to decode()
        ("cta", "<u4"),  # linear CTA id (= region index in the buffer)
        ("sm", "<u4"),  # %smid at the CTA's entry
        ("warp", "<u2"),  # warp index within the CTA
        ("scope", "<u4"),  # scope id (index into the kernel's scope table)
        ("is_end", "?"),  # True: scope end, False: scope start
        ("seq", "<u4"),  # index of the record in its warp's stream, 0-based, lost records counted
        ("cycles", "<i8"),  # absolute SM cycles (clock64 domain); globaltimer ns for clock="globaltimer"
        ("time_ns", "<f8"),  # ns since the launch's earliest CTA entry (t0_ns), common to all SMs
    ],
    align=True,
)

#: One row per CTA region of the buffer.
CTA_DTYPE = np.dtype(
    [
        ("cta", "<u4"),  # linear CTA id (= region index)
        ("sm", "<u4"),  # %smid at entry
        ("sm_end", "<u4"),  # %smid before ret
        ("ctaid_x", "<u4"),
        ("ctaid_y", "<u4"),
        ("ctaid_z", "<u4"),
        ("gtime_start", "<u8"),  # globaltimer ns at entry (absolute)
        ("gtime_end", "<u8"),  # globaltimer ns before ret (absolute; 0 if never written)
        ("clock_start", "<u8"),  # clock64 cycles at entry
        ("clock_end", "<u8"),  # clock64 cycles before ret
        ("ok", "?"),  # header present with the right magic, version and num_warps
        ("end_ok", "?"),  # the exit (globaltimer, clock64) pair is present and consistent
        ("own_rate", "?"),  # its SM's own fitted clock rate was used (else the launch-wide rate)
        ("ns_per_cycle", "<f8"),  # clock conversion used for this CTA (1.0 for globaltimer)
        # ns on the launch axis of the CTA's reference point (clock_start, or gtime_start for
        # globaltimer): time_ns = offset_ns + ns_per_cycle * (cycles - reference)
        ("offset_ns", "<f8"),
        ("n_events", "<u4"),  # records decoded into events
        ("n_lost", "<u8"),  # records lost to the capacity limit (sum over warps)
    ],
    align=True,
)

#: One row per (CTA, warp) whose count exceeded the capacity.
LOST_DTYPE = np.dtype(
    [
        ("cta", "<u4"),
        ("warp", "<u2"),
        ("count", "<u4"),  # records the warp attempted
        ("kept", "<u4"),  # records stored (= capacity)
        ("lost", "<u4"),  # count - kept, exact
    ],
    align=True,
)

_MASK32 = (1 << 32) - 1
_TAG_RESERVED = (TAG_VALID - 1) & ~((1 << (TAG_SCOPE_SHIFT + TAG_SCOPE_BITS)) - 1)  # bits 24..30
_SIGNED_STEP_MAX_SPAN = 1 << 30  # cycles; see _unwrap32


@dataclasses.dataclass
class DecodedLaunch:
    """Everything decoded from one launch's buffer.

    Attributes:
        launch: the launch number given to :func:`decode`.
        geometry, strategy: as given.
        events: ``EVENT_DTYPE`` array, sorted by (cta, warp, seq), good CTAs only.
        ctas: ``CTA_DTYPE`` array, one row per CTA region (good or not).
        lost: ``LOST_DTYPE`` array, one row per (cta, warp) that overflowed.
        lost_total: records lost in the whole launch (exact).
        problems: human-readable descriptions of data problems (empty when all is well).
        t0_ns: absolute globaltimer ns of the launch's earliest CTA entry; ``time_ns`` is relative to it.
        clock_ghz: launch-wide SM clock rate measured from the CTA headers, GHz (NaN if not measurable).
        sm_clocks: ``SM_CLOCK_DTYPE`` array, the per-SM clock measurement.
        scopes: ``{id: name}`` of the scope table given to :func:`decode`, or ``None``.
        gtime_step_ns: the globaltimer resolution seen in the headers (smallest gap between distinct
            readings), ns.
    """

    launch: int
    geometry: Geometry
    strategy: str
    events: np.ndarray
    ctas: np.ndarray
    lost: np.ndarray
    lost_total: int
    problems: list[str]
    t0_ns: int
    clock_ghz: float
    sm_clocks: np.ndarray
    scopes: dict[int, str] | None = None
    gtime_step_ns: int = 0
    _pairs: tuple | None = dataclasses.field(default=None, repr=False, compare=False)

    @property
    def n_ctas(self) -> int:
        return len(self.ctas)

    @property
    def duration_ns(self) -> float:
        """ns from the earliest CTA entry to the latest CTA exit (or latest event, if later)."""
        ends = [0.0]
        good = self.ctas[self.ctas["end_ok"]]
        if len(good):
            ends.append(float((good["gtime_end"].astype(np.int64) - self.t0_ns).max()))
        if len(self.events):
            ends.append(float(np.nanmax(self.events["time_ns"])))
        return max(ends)

    def intervals(self) -> tuple[np.ndarray, np.ndarray]:
        """``pair(self.events)``: (INTERVAL_DTYPE array, unmatched EVENT_DTYPE array), computed once."""
        from .intervals import pair

        if self._pairs is None:
            self._pairs = pair(self.events)
        return self._pairs

    def summary(self) -> str:
        """A few lines for a terminal."""
        ok = int(self.ctas["ok"].sum())
        lines = [
            f"launch {self.launch}: {len(self.events)} events from {ok}/{self.n_ctas} CTAs "
            f"on {len(self.sm_clocks)} SMs, clock {self.geometry.clock}, {self.strategy}, "
            f"SM clock {self.clock_ghz:.3f} GHz",
        ]
        if self.lost_total:
            lines.append(f"  {self.lost_total} records lost in {len(self.lost)} warps "
                         f"(capacity {self.geometry.capacity} per warp)")
        lines += [f"  problem: {p}" for p in self.problems]
        return "\n".join(lines)


def _where(idx, seg, seg_cta, seg_warp, seq, detail, limit: int = 5) -> list[str]:
    """``CTA c warp w seq n (detail)`` for the first ``limit`` records at ``idx`` (their warps ``seg``)."""
    return [f"CTA {seg_cta[s]} warp {seg_warp[s]} seq {seq[i]} ({detail(i)})"
            for i, s in zip(idx[:limit], seg[:limit])]


def _as_bytes(buffer: Any) -> np.ndarray:
    """A flat uint8 view (no copy when possible) of bytes / bytearray / memoryview / ndarray / tensor."""
    if not isinstance(buffer, np.ndarray) and hasattr(buffer, "detach") and hasattr(buffer, "numpy"):
        buffer = buffer.detach().cpu().contiguous().numpy()  # a torch tensor
    if isinstance(buffer, np.ndarray):
        a = np.ascontiguousarray(buffer).reshape(-1)
        return a.view(np.uint8)
    try:
        return np.frombuffer(buffer, np.uint8)
    except (TypeError, ValueError):  # e.g. a non-contiguous memoryview
        return np.frombuffer(memoryview(buffer).tobytes(), np.uint8)


def _check_size(size: int, geometry: Geometry, n_ctas: int | None) -> int:
    m = geometry.cta_bytes
    where = (f" (geometry num_warps={geometry.num_warps}, capacity={geometry.capacity}, "
             f"clock={geometry.clock!r}: a truncated buffer or the wrong geometry?)")
    if n_ctas is None:
        if size % m:
            n = -(-size // m)
            raise ValueError(f"kperf buffer: expected {n * m} bytes ({n} CTAs x {m} bytes), got {size}; "
                             f"not a multiple of the CTA region size {m}{where}")
        return size // m
    n = int(n_ctas)
    if n < 0:
        raise ValueError(f"n_ctas must be >= 0, got {n_ctas}")
    if size < n * m or size % m:
        raise ValueError(f"kperf buffer: expected {n * m} bytes ({n} CTAs x {m} bytes), got {size}{where}")
    return n


def _s32(x: np.ndarray) -> np.ndarray:
    """int64 values reduced modulo 2**32 into [-2**31, 2**31)."""
    x = x & _MASK32
    return np.where(x >= 1 << 31, x - (1 << 32), x)


def decode(
    buffer: Any,
    geometry: Geometry,
    *,
    strategy: str,
    n_ctas: int | None = None,
    launch: int = 0,
    scopes: ScopesLike = None,
) -> DecodedLaunch:
    """Decode a launch's profile buffer.

    Args:
        buffer: the buffer's bytes: ``bytes``, ``bytearray``, ``memoryview``, a numpy array (any
            dtype, its raw bytes are used; a torch CPU tensor's ``.numpy()``) or a torch tensor.
        geometry: the kernel's :class:`kperf.layout.Geometry` (num_warps, capacity, clock).
        strategy: ``"keep-first"`` or ``"wrap"``, as compiled.
        n_ctas: CTAs in the launch; default ``len(buffer) // geometry.cta_bytes``.  A buffer whose
            length is not a multiple of ``cta_bytes`` or is shorter than ``n_ctas`` regions raises
            ``ValueError``; a longer one (whole regions) is decoded up to ``n_ctas``.
        launch: a number stored in every event's ``launch`` field (to tell launches apart).
        scopes: the kernel's scope table (sequence of names, ``{id: name}``, ``ScopeTable`` or its
            JSON form, or the number of scopes); when given, scope ids outside it are reported.

    Returns:
        a :class:`DecodedLaunch`.
    """
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown strategy {strategy!r}; expected one of {', '.join(STRATEGIES)}")
    W, C = geometry.num_warps, geometry.capacity
    wrap = strategy == "wrap"
    if wrap and C & (C - 1):
        raise ValueError(f"strategy 'wrap' needs a power-of-two capacity, got {C}")
    buf = _as_bytes(buffer)
    n = _check_size(buf.size, geometry, n_ctas)
    M = geometry.cta_bytes
    arr = np.frombuffer(buf, geometry.cta_dtype(), count=n)
    problems: list[str] = []
    names = scope_names(scopes)

    # ---------------------------------------------------------------- CTA headers
    hdr = arr["header"]
    raw = buf[: n * M].reshape(n, M)
    written = raw[:, :CTA_HEADER_BYTES].any(axis=1)
    magic = hdr["magic"]
    version = hdr["version"]
    nwarps = hdr["num_warps"]
    magic_ok = magic == MAGIC
    version_ok = version == VERSION
    nw_ok = nwarps == W
    ok = written & magic_ok & version_ok & nw_ok
    counts_all = arr["counts"]

    never = np.flatnonzero(~written)
    if never.size:
        with_data = never[raw[never, CTA_HEADER_BYTES:].any(axis=1)]
        msg = (f"{plural(never.size, 'CTA')} never wrote {'its' if never.size == 1 else 'their'} header "
               "(all-zero header: the CTA did not run, "
               f"or the buffer is not this launch's): CTA {fmt_ids(never)}")
        if with_data.size:
            msg += (f"; yet {plural(with_data.size, 'of them has', 'of them have')} record data: "
                    f"CTA {fmt_ids(with_data)}")
        problems.append(msg + "; left out of the events")
    bad = np.flatnonzero(written & ~magic_ok)
    if bad.size:
        problems.append(
            f"{plural(bad.size, 'CTA')} with a bad magic (expected 0x{MAGIC:08X}): "
            + fmt_ids([f"CTA {c} (0x{int(magic[c]):08X})" for c in bad[:8]], total=bad.size)
            + "; left out of the events"
        )
    bad = np.flatnonzero(written & magic_ok & ~version_ok)
    if bad.size:
        problems.append(
            f"{plural(bad.size, 'CTA')} with format version "
            f"{fmt_ids(np.unique(version[bad]))}, this decoder reads version {VERSION}: "
            f"CTA {fmt_ids(bad)}; left out of the events"
        )
    bad = np.flatnonzero(written & magic_ok & version_ok & ~nw_ok)
    if bad.size:
        problems.append(
            f"{plural(bad.size, 'CTA')} whose header says num_warps "
            f"{fmt_ids(np.unique(nwarps[bad]))} but the geometry has {W} (wrong geometry?): "
            f"CTA {fmt_ids(bad)}; left out of the events"
        )

    sm_start = hdr["smid_start"].astype(np.int64)
    sm_end = hdr["smid_end"].astype(np.int64)
    gs = hdr["gtime_start"].astype(np.int64)
    cs = hdr["clock_start"].astype(np.int64)
    ge = hdr["gtime_end"].astype(np.int64)
    ce = hdr["clock_end"].astype(np.int64)
    end_written = (ge != 0) | (ce != 0)
    same_sm = sm_start == sm_end
    end_ok = ok & end_written & (ge >= gs) & (~same_sm | (ce >= cs))
    bad = np.flatnonzero(ok & ~end_written)
    if bad.size:
        problems.append(f"{plural(bad.size, 'CTA')} never wrote exit timestamps (did not reach ret?): "
                        f"CTA {fmt_ids(bad)}")
    bad = np.flatnonzero(ok & end_written & ~end_ok)
    if bad.size:
        problems.append(f"{plural(bad.size, 'CTA')} with exit timestamps before entry timestamps: "
                        f"CTA {fmt_ids(bad)}; exit pair not used for the clock fit")
    bad = np.flatnonzero(ok & ~same_sm & end_written)
    if bad.size:
        problems.append(f"{plural(bad.size, 'CTA')} ended on another SM than it started on (migrated?): "
                        f"CTA {fmt_ids(bad)}; their events are placed with the entry SM's clock")
    # the buffer is laid out by linear CTA id; check when the grid can be inferred
    if ok.all() and n:
        gx, gy, gz = (int(hdr[f][ok].max()) + 1 for f in ("ctaid_x", "ctaid_y", "ctaid_z"))
        if gx * gy * gz == n:
            cx, cy, cz = (hdr[f].astype(np.int64) for f in ("ctaid_x", "ctaid_y", "ctaid_z"))
            lin = cx + gx * (cy + gy * cz)
            bad = np.flatnonzero(lin != np.arange(n))
            if bad.size:
                problems.append(f"{plural(bad.size, 'CTA region')} holding another CTA's ctaid "
                                f"(grid {gx}x{gy}x{gz}): region {fmt_ids(bad)}")

    fit: ClockFit = fit_clocks(clock=geometry.clock, sm_start=sm_start, sm_end=sm_end, gtime_start=gs,
                               clock_start=cs, gtime_end=ge, clock_end=ce, ok=ok, end_ok=end_ok)
    problems += fit.problems

    # ---------------------------------------------------------------- records
    # Per-warp ("segment") quantities first; per-event arrays come from np.repeat over the
    # segments' record counts, which is far cheaper than gathering through a segment index.
    vc = np.flatnonzero(ok)
    nv = vc.size
    nseg = nv * W
    cnt = counts_all[vc].astype(np.int64)  # (nv, W)
    kept = np.minimum(cnt, C)
    first_seq = (cnt - kept if wrap else np.zeros_like(cnt)).ravel()  # seq of each warp's oldest kept record
    seg_n = kept.ravel()  # records per segment
    seg_cta = np.repeat(vc, W)
    seg_warp = np.tile(np.arange(W, dtype=np.int64), nv)
    seg_base = np.cumsum(seg_n) - seg_n
    E = int(seg_n.sum())
    seq = np.arange(E, dtype=np.int64)
    seq += np.repeat(first_seq - seg_base, seg_n)

    recs = arr["records"][vc]  # contiguous copy, (nv, W, C)
    nonzero = np.count_nonzero(recs["tag"], axis=2).ravel() if nv else np.zeros(0, np.int64)
    flat = recs.reshape(-1)
    rotated = wrap and bool(np.any(first_seq % C))
    if E == nseg * C and not rotated:
        g = flat
    else:
        slot = (seq & (C - 1)) if wrap else seq
        g = flat.take(np.repeat(np.arange(nseg, dtype=np.int64) * C, seg_n) + slot)
    tag = g["tag"].astype(np.int64)
    time = g["time"]

    def seg_of(i: np.ndarray) -> np.ndarray:  # segment of events i (for messages)
        return np.searchsorted(np.cumsum(seg_n), i, side="right")

    valid = (tag & (TAG_VALID | _TAG_RESERVED)) == TAG_VALID
    n_invalid = E - int(np.count_nonzero(valid))
    zeros_in_range = 0
    if n_invalid:
        bad = np.flatnonzero(~valid)
        bseg = seg_of(bad)
        ex = _where(bad, bseg, seg_cta, seg_warp, seq, lambda i: f"tag 0x{int(tag[i]):08X}")
        problems.append(
            f"{plural(n_invalid, 'record')} with an invalid tag (unwritten slot or corrupt tag) inside the "
            f"counted range, in {plural(np.unique(bseg).size, 'warp')}; dropped: "
            f"{fmt_ids(ex, 5, total=n_invalid)}"
        )
        zeros_in_range = np.bincount(bseg[tag[bad] == 0], minlength=nseg)
        seg_n = seg_n - np.bincount(bseg, minlength=nseg)
        seq, tag, time = seq[valid], tag[valid], time[valid]
        E = seq.size
    # slots outside a warp's counted range must never have been written
    extra = nonzero - (kept.ravel() - zeros_in_range)
    if nv and extra.any():
        hit = np.flatnonzero(extra > 0)
        problems.append(
            f"{plural(int(extra[hit].sum()), 'slot')} past their warp's count hold data (buffer not zeroed "
            f"before the launch, a wrong strategy, or corruption), in {plural(len(hit), 'warp')}: "
            + fmt_ids([f"CTA {seg_cta[s]} warp {seg_warp[s]}" for s in hit[:8]], total=len(hit))
        )

    scope = (tag >> TAG_SCOPE_SHIFT) & (MAX_SCOPES - 1)
    is_end = (tag & TAG_END) != 0
    if names is not None:
        ids = scope_id_array(names)
        known = in_table(scope, ids)
        if not known.all():
            unknown = np.unique(scope[~known])
            problems.append(
                f"{plural(int((~known).sum()), 'record')} with scope ids not in the scope table "
                f"({plural(len(ids), 'scope')}): id {fmt_ids(unknown)}; kept as events"
            )

    # ---------------------------------------------------------------- clocks
    pres = np.flatnonzero(seg_n > 0)  # segments with events
    run = seg_n[pres]
    first_idx = np.cumsum(run) - run
    p_cta = seg_cta[pres]
    if geometry.clock == "clock":
        cycles, step = _unwrap32(time.astype(np.int64), run, first_idx, p_cta, first_seq[pres],
                                 cs, ce, end_ok)
    else:
        cycles = time.astype(np.int64)
        step = np.zeros(E, np.int64)
        if E:
            step[1:] = cycles[1:] - cycles[:-1]
            step[first_idx] = 0
    back = np.flatnonzero(step < 0)
    if back.size:
        unit = "ns" if geometry.clock == "globaltimer" else "cycles"
        bseg = seg_of(back)
        ex = _where(back, bseg, seg_cta, seg_warp, seq, lambda i: f"{int(step[i])} {unit}")
        problems.append(
            f"non-monotonic clock: {plural(back.size, 'backward step')} in "
            f"{plural(np.unique(bseg).size, 'warp')}: {fmt_ids(ex, 5, total=back.size)}"
        )
    # time_ns = offset + ns_per_cycle * (cycles - reference), per CTA
    d = cycles - np.repeat(fit.ref_cycles[p_cta], run)
    time_ns = np.repeat(fit.ns_per_cycle[p_cta], run) * d
    time_ns += np.repeat(fit.offset_ns[p_cta], run)

    ev = np.zeros(E, EVENT_DTYPE)
    fill_columns(ev, {
        "launch": launch or None,
        "cta": np.repeat(p_cta, run),
        "sm": np.repeat(sm_start[p_cta], run),
        "warp": np.repeat(seg_warp[pres], run),
        "scope": scope,
        "is_end": is_end,
        "seq": seq,
        "cycles": cycles,
        "time_ns": time_ns,
    })

    # ---------------------------------------------------------------- lost and CTA table
    over = np.argwhere(cnt > C)
    lost = np.empty(len(over), LOST_DTYPE)
    lost["cta"] = vc[over[:, 0]]
    lost["warp"] = over[:, 1]
    lost["count"] = cnt[over[:, 0], over[:, 1]]
    lost["kept"] = C
    lost["lost"] = lost["count"].astype(np.int64) - C
    lost_total = int((cnt - kept).sum())

    ctas = np.zeros(n, CTA_DTYPE)
    ctas["cta"] = np.arange(n)
    ctas["sm"] = sm_start
    ctas["sm_end"] = sm_end
    for f in ("ctaid_x", "ctaid_y", "ctaid_z", "gtime_start", "gtime_end", "clock_start", "clock_end"):
        ctas[f] = hdr[f]
    ctas["ok"] = ok
    ctas["end_ok"] = end_ok
    ctas["own_rate"] = fit.own_rate
    ctas["ns_per_cycle"] = fit.ns_per_cycle
    ctas["offset_ns"] = fit.offset_ns
    ctas["n_events"] = np.bincount(seg_cta, seg_n, minlength=n) if n else 0
    ctas["n_lost"][vc] = (cnt - kept).sum(axis=1)

    return DecodedLaunch(
        launch=int(launch), geometry=geometry, strategy=strategy, events=ev, ctas=ctas, lost=lost,
        lost_total=lost_total, problems=problems, t0_ns=fit.t0_ns, clock_ghz=fit.ghz,
        sm_clocks=fit.sms if len(fit.sms) else np.zeros(0, SM_CLOCK_DTYPE), scopes=names,
        gtime_step_ns=fit.gtime_step_ns,
    )


def _unwrap32(lo, run, first_idx, p_cta, first_seq, cs, ce, end_ok):
    """Absolute 64-bit cycles from the low 32 bits of ``%clock``.

    ``lo``: low 32 bits per event (int64), grouped in runs (one per warp) of lengths ``run``
    starting at ``first_idx``; ``p_cta``, ``first_seq``: each run's CTA (region index) and the seq
    of its first record; ``cs``, ``ce``, ``end_ok``: per-CTA clock_start, clock_end (int64) and
    whether the exit pair is valid.

    Per warp, in program order, consecutive differences are taken modulo 2**32 and summed, and the
    sum is anchored to the CTA header: the first record's absolute value is
    ``clock_start + int32(low32(first) - low32(clock_start))`` (signed: other warps may record
    before warp 0 reads the header).  A warp that lost its oldest records to ``wrap`` is anchored on
    ``clock_end`` the same way through its last record instead, which stays right however long the
    CTA ran.  When the CTA's header span is under 2**30 cycles no genuine step can reach 2**31, so a
    difference >= 2**31 is read as a backward step (reported) rather than a 32-bit wrap.

    Returns (cycles, step): step is 0 at each warp's first record, negative where the clock went
    backwards.
    """
    E = lo.size
    step = np.zeros(E, np.int64)
    if E == 0:
        return step.copy(), step
    np.subtract(lo[1:], lo[:-1], out=step[1:])
    step &= _MASK32
    step[first_idx] = 0
    span = ce[p_cta] - cs[p_cta]
    signed = end_ok[p_cta] & (span >= 0) & (span < _SIGNED_STEP_MAX_SPAN)
    if signed.all():
        step[step >= 1 << 31] -= 1 << 32
    elif signed.any():
        neg = (step >= 1 << 31) & np.repeat(signed, run)
        step[neg] -= 1 << 32
    cum = np.cumsum(step)
    last_idx = first_idx + run - 1
    c_first = cum[first_idx]
    rel_last = cum[last_idx] - c_first
    s_cs, s_ce = cs[p_cta], ce[p_cta]
    a_start = s_cs + _s32(lo[first_idx] - s_cs)
    a_end = s_ce + _s32(lo[last_idx] - s_ce) - rel_last
    anchor = np.where((first_seq > 0) & end_ok[p_cta], a_end, a_start)
    cum += np.repeat(anchor - c_first, run)
    return cum, step
