"""Decode one launch's kperf profile buffer (format: :mod:`kperf.dialect.layout`) into numpy event tables.

Everything is vectorised over events with numpy: no Python loop runs per event, per warp or per CTA.

Units: ``cycles`` are SM clock cycles in the ``%clock64`` domain of the CTA headers (for
``clock="globaltimer"`` they are absolute globaltimer ns); ``time_ns`` is ns since the launch's
earliest CTA entry (``DecodedLaunch.t0_ns``, absolute globaltimer ns), on one axis for all SMs.

Data problems (CTAs that never ran, bad magic or version, unwritten or corrupt record slots, scope
ids missing from the scope table, clocks running backwards, ...) never raise: they are described in
``DecodedLaunch.problems``; CTAs with a bad header are left out of the events, records with a bad
tag are dropped (their ``seq`` numbers stay unused).  Only misuse raises: a buffer whose size does
not fit the geometry, an unknown strategy, a ``wrap`` capacity that is not a power of two.

Speed: the records are decoded in blocks of CTAs (:data:`BLOCK_EVENTS` events, small enough to stay in
cache) on a few threads (numpy releases the GIL), straight into preallocated columns
(:class:`~kperf.tracing.columns.EventColumns`); the ``EVENT_DTYPE`` table is built only when asked for.
"""

from __future__ import annotations

import dataclasses
import os
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from kperf.dialect.layout import (
    CTA_HEADER_BYTES,
    MAGIC,
    MAX_SCOPES,
    STRATEGIES,
    TAG_END,
    TAG_SCOPE_BITS,
    TAG_SCOPE_SHIFT,
    TAG_VALID,
    SUPPORTED_VERSIONS,
    FLAG_SAMPLED_OUT,
    Geometry,
)

from ._common import ScopesLike, fmt_ids, in_table, plural, scope_id_array, scope_names
from .columns import EVENT_DTYPE, EventColumns  # noqa: F401  (EVENT_DTYPE: re-exported)
from .clocks import SM_CLOCK_DTYPE, ClockFit, fit_clocks

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
        ("sampled_out", "?"),  # sampling (cta_stride / sms) left this CTA out: no records, none lost
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
        columns: the events as :class:`~kperf.tracing.columns.EventColumns`, in (cta, warp, seq)
            order, good CTAs only; ``events`` is the same as an ``EVENT_DTYPE`` table (built on first use).
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
        kernel: the kernel's name ("" when unknown).
        warp_roles: one role name per warp (e.g. ``"producer"``), or ``None``.
        grid: the launch grid ``(x, y, z)`` when known.
        raw: the buffer's bytes (uint8 view, not a copy) as decoded, kept so the launch can be saved
            and re-decoded by a later decoder; ``None`` when not kept.
    """

    launch: int
    geometry: Geometry
    strategy: str
    columns: EventColumns
    ctas: np.ndarray
    lost: np.ndarray
    lost_total: int
    problems: list[str]
    t0_ns: int
    clock_ghz: float
    sm_clocks: np.ndarray
    scopes: dict[int, str] | None = None
    gtime_step_ns: int = 0
    kernel: str = ""
    warp_roles: list[str] | None = None
    grid: tuple[int, int, int] | None = None
    raw: np.ndarray | None = dataclasses.field(default=None, repr=False, compare=False)
    _events: np.ndarray | None = dataclasses.field(default=None, repr=False, compare=False)
    _pairs: Any = dataclasses.field(default=None, repr=False, compare=False)
    _intervals: tuple | None = dataclasses.field(default=None, repr=False, compare=False)

    @property
    def n_ctas(self) -> int:
        return len(self.ctas)

    @property
    def n_events(self) -> int:
        return len(self.columns)

    @property
    def events(self) -> np.ndarray:
        """All events as an ``EVENT_DTYPE`` array, sorted by (cta, warp, seq) (built once)."""
        if self._events is None:
            self._events = self.columns.to_structured()
        return self._events

    @property
    def scope_list(self) -> list[str]:
        """Scope names by id (``"scope <id>"`` for ids without a name), up to the largest id used."""
        names = self.scopes or {}
        top = max(names, default=-1)
        if len(self.columns):
            top = max(top, int(self.columns["scope"].max()))
        return [names.get(i, f"scope {i}") for i in range(top + 1)]

    def warp_name(self, warp: int) -> str:
        """``"producer"`` (its role) or ``"warp 3"``."""
        if self.warp_roles and 0 <= warp < len(self.warp_roles):
            return str(self.warp_roles[warp])
        return f"warp {warp}"

    @property
    def duration_ns(self) -> float:
        """ns from the earliest CTA entry to the latest CTA exit (or latest event, if later)."""
        ends = [0.0]
        good = self.ctas[self.ctas["end_ok"]]
        if len(good):
            ends.append(float((good["gtime_end"].astype(np.int64) - self.t0_ns).max()))
        if len(self.columns):
            ends.append(float(np.nanmax(self.columns["time_ns"])))
        return max(ends)

    def pairs(self):
        """Matched scopes as event positions (:class:`~kperf.tracing.intervals.Pairs`), computed once."""
        from .intervals import pair_columns

        if self._pairs is None:
            self._pairs = pair_columns(self.columns)
        return self._pairs

    def intervals(self) -> tuple[np.ndarray, np.ndarray]:
        """``pair(self.events)``: (INTERVAL_DTYPE array, unmatched EVENT_DTYPE array), computed once."""
        if self._intervals is None:
            self._intervals = self.pairs().to_structured(self.columns)
        return self._intervals

    def _clock_range(self) -> str:
        """`` (1.48-1.86 GHz during the launch)`` when the SM clocks moved by more than 2%."""
        sc = self.sm_clocks
        if not len(sc) or "ghz_min" not in (sc.dtype.names or ()):
            return ""
        lo, hi = float(np.nanmin(sc["ghz_min"])), float(np.nanmax(sc["ghz_max"]))
        return f" ({lo:.2f}-{hi:.2f} GHz during the launch)" if np.isfinite(lo) and hi > 1.02 * lo else ""

    def summary(self) -> str:
        """A few lines for a terminal."""
        ok = int(self.ctas["ok"].sum())
        name = f" {self.kernel}" if self.kernel else ""
        lines = [
            f"launch {self.launch}{name}: {self.n_events} events from {ok}/{self.n_ctas} CTAs "
            f"on {len(self.sm_clocks)} SMs, clock {self.geometry.clock}, {self.strategy}, "
            f"SM clock {self.clock_ghz:.3f} GHz{self._clock_range()}",
        ]
        sampled_out = int(self.ctas["sampled_out"].sum())
        if sampled_out:
            lines.append(f"  {sampled_out} CTAs sampled out (cta_stride / sms): no records, none lost")
        if self.lost_total:
            lines.append(f"  {self.lost_total} records lost in {len(self.lost)} warps "
                         f"(capacity {self.geometry.capacity} per warp)")
        lines += [f"  problem: {p}" for p in self.problems]
        return "\n".join(lines)


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
    kernel: str = "",
    warp_roles: list[str] | None = None,
    grid: tuple[int, int, int] | None = None,
    keep_raw: bool = True,
    threads: int | None = None,
) -> DecodedLaunch:
    """Decode a launch's profile buffer.

    Args:
        buffer: the buffer's bytes: ``bytes``, ``bytearray``, ``memoryview``, a numpy array (any
            dtype, its raw bytes are used; a torch CPU tensor's ``.numpy()``) or a torch tensor.
        geometry: the kernel's :class:`kperf.dialect.layout.Geometry` (num_warps, capacity, clock).
        strategy: ``"keep-first"`` or ``"wrap"``, as compiled.
        n_ctas: CTAs in the launch; default ``len(buffer) // geometry.cta_bytes``.  A buffer whose
            length is not a multiple of ``cta_bytes`` or is shorter than ``n_ctas`` regions raises
            ``ValueError``; a longer one (whole regions) is decoded up to ``n_ctas``.
        launch: a number stored in every event's ``launch`` field (to tell launches apart).
        scopes: the kernel's scope table (sequence of names, ``{id: name}``, ``ScopeTable`` or its
            JSON form, or the number of scopes); when given, scope ids outside it are reported.
        kernel, warp_roles, grid: the kernel's name, one role name per warp and the launch grid,
            carried along for traces and saved profiles.
        keep_raw: keep a view of the buffer in ``DecodedLaunch.raw`` (for saving the profile).
        threads: decoding threads (default: the usable CPUs, at most 8).

    Returns:
        a :class:`DecodedLaunch`.
    """
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown strategy {strategy!r}; expected one of {', '.join(STRATEGIES)}")
    W, C = geometry.slots, geometry.capacity  # slots: the recording warps (kperf.dialect.layout)
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
    version_ok = np.isin(version, SUPPORTED_VERSIONS)
    nw_ok = nwarps == geometry.num_warps
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
            f"{fmt_ids(np.unique(version[bad]))}, this decoder reads version {fmt_ids(SUPPORTED_VERSIONS)}: "
            f"CTA {fmt_ids(bad)}; left out of the events"
        )
    bad = np.flatnonzero(written & magic_ok & version_ok & ~nw_ok)
    if bad.size:
        problems.append(
            f"{plural(bad.size, 'CTA')} whose header says num_warps "
            f"{fmt_ids(np.unique(nwarps[bad]))} but the geometry has {geometry.num_warps} (wrong geometry?): "
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
    # Per warp ("segment") quantities first; the records are then decoded block by block.
    vc = np.flatnonzero(ok)
    nv = vc.size
    cnt = counts_all[vc].astype(np.int64)  # (nv, W)
    kept = np.minimum(cnt, C)
    job = _Job(
        recs=arr["records"][:, :, :C], vc=vc, W=W, C=C, wrap=wrap, clock=geometry.clock,  # no sink past C
        first_seq=(cnt - kept if wrap else np.zeros_like(cnt)).ravel(),  # seq of each warp's oldest kept record
        seg_n=kept.ravel(), seg_cta=np.repeat(vc, W), cs=cs, ce=ce, end_ok=end_ok, fit=fit,
        ids=scope_id_array(names) if names is not None else None,
    )
    blocks = _blocks(nv, W * C)
    reports = _map(job.block, blocks, len(job.scope), threads)
    seg_n = job.seg_n.copy()
    seg_warp = np.tile(geometry.slot_warps, nv)
    seq = None
    if any(r.dropped is not None for r in reports):
        seq = job.compact(reports, seg_n)
    problems += _record_problems(reports, job, seg_warp, 0 if job.ids is None else len(job.ids),
                                 "ns" if geometry.clock == "globaltimer" else "cycles")
    E = int(seg_n.sum())
    pres = np.flatnonzero(seg_n > 0)
    p_cta = job.seg_cta[pres]
    columns = EventColumns(
        {"launch": np.full(len(pres), launch, np.int64), "cta": p_cta, "sm": sm_start[p_cta],
         "warp": seg_warp[pres], "first_seq": job.first_seq[pres], "n": seg_n[pres]},
        job.scope[:E], job.is_end[:E], job.cycles[:E], job.time_ns[:E], seq=seq,
    )

    # ---------------------------------------------------------------- lost and CTA table
    over = np.argwhere(cnt > C)
    lost = np.empty(len(over), LOST_DTYPE)
    lost["cta"] = vc[over[:, 0]]
    lost["warp"] = geometry.slot_warps[over[:, 1]]
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
    ctas["sampled_out"] = ok & (hdr["flags"] & FLAG_SAMPLED_OUT != 0)
    ctas["end_ok"] = end_ok
    ctas["own_rate"] = fit.own_rate
    ctas["ns_per_cycle"] = fit.ns_per_cycle
    ctas["offset_ns"] = fit.offset_ns
    ctas["n_events"] = np.bincount(job.seg_cta, seg_n, minlength=n) if n else 0
    ctas["n_lost"][vc] = (cnt - kept).sum(axis=1)

    return DecodedLaunch(
        launch=int(launch), geometry=geometry, strategy=strategy, columns=columns, ctas=ctas, lost=lost,
        lost_total=lost_total, problems=problems, t0_ns=fit.t0_ns, clock_ghz=fit.ghz,
        sm_clocks=fit.sms if len(fit.sms) else np.zeros(0, SM_CLOCK_DTYPE), scopes=names,
        gtime_step_ns=fit.gtime_step_ns, kernel=kernel, warp_roles=list(warp_roles) if warp_roles else None,
        grid=grid, raw=buf[: n * M] if keep_raw else None,
    )


# ----------------------------------------------------------------------------- records, block by block

#: events decoded per block: the block's temporaries stay in cache
BLOCK_EVENTS = 1 << 16
#: launches with fewer events are decoded on the calling thread only
PARALLEL_MIN_EVENTS = 1 << 19
_VALID_MASK = np.uint32(TAG_VALID | _TAG_RESERVED)


def default_threads() -> int:
    """Threads for decoding and pairing: the CPUs this process may use, at most 8."""
    try:
        n = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        n = os.cpu_count() or 1
    return max(1, min(n, 8))


def _blocks(n_ctas: int, events_per_cta: int) -> list[tuple[int, int]]:
    """``[(first, end), ...]`` CTA ranges (indices into the good CTAs) of about BLOCK_EVENTS events."""
    step = max(1, BLOCK_EVENTS // max(events_per_cta, 1))
    return [(a, min(a + step, n_ctas)) for a in range(0, n_ctas, step)]


def _map(fn, items: list, n_events: int, threads: int | None) -> list:
    """``[fn(*item) for item in items]``, on a thread pool when the work is large enough."""
    threads = default_threads() if threads is None else max(1, int(threads))
    if threads == 1 or len(items) < 2 or n_events < PARALLEL_MIN_EVENTS:
        return [fn(*it) for it in items]
    with ThreadPoolExecutor(max_workers=min(threads, len(items))) as ex:
        return list(ex.map(lambda it: fn(*it), items))


@dataclasses.dataclass
class _Report:
    """What decoding one block found, besides the events it wrote."""

    s0: int  # the block's segments: s0 .. s1 - 1
    s1: int
    e0: int  # first event position of the block (before dropping records)
    written: int  # events written from e0 on
    dropped: np.ndarray | None = None  # records dropped per segment of the block (None: none)
    seq: np.ndarray | None = None  # seq of the written events, when some were dropped
    bad: tuple | None = None  # invalid tags: (segment, seq, tag) arrays
    extra: tuple | None = None  # slots past the count holding data: (segment, count) arrays
    unknown: tuple[int, np.ndarray] = (0, np.zeros(0, np.int64))  # records and ids not in the table
    back: tuple | None = None  # backward clock steps: (segment, seq, step) arrays


@dataclasses.dataclass
class _Job:
    """One launch's records: the inputs per segment (warp) and the output columns."""

    recs: np.ndarray  # the buffer's records field, (n_ctas, W, C)
    vc: np.ndarray  # good CTAs (region indices)
    W: int
    C: int
    wrap: bool
    clock: str
    first_seq: np.ndarray  # per segment
    seg_n: np.ndarray  # kept records per segment
    seg_cta: np.ndarray  # per segment
    cs: np.ndarray  # per CTA: clock_start, clock_end (int64), exit pair valid
    ce: np.ndarray
    end_ok: np.ndarray
    fit: ClockFit
    ids: np.ndarray | None  # the scope table's ids

    def __post_init__(self) -> None:
        self.base = np.zeros(len(self.seg_n) + 1, np.int64)  # first event of each segment
        np.cumsum(self.seg_n, out=self.base[1:])
        E = int(self.base[-1])
        self.scope = np.empty(E, np.uint32)
        self.is_end = np.empty(E, bool)
        self.cycles = np.empty(E, np.int64)
        self.time_ns = np.empty(E, np.float64)

    def block(self, ca: int, cb: int) -> _Report:
        """Decode the good CTAs ``vc[ca:cb]`` into the output columns; report what was wrong."""
        W, C = self.W, self.C
        s0, s1 = ca * W, cb * W
        e0 = int(self.base[s0])
        n = self.seg_n[s0:s1]
        fseq = self.first_seq[s0:s1]
        lbase = self.base[s0:s1] - e0
        m = int(self.base[s1]) - e0
        rep = _Rows(n, C)
        ctas = self.vc[ca:cb]
        if ctas[-1] - ctas[0] == cb - ca - 1:  # consecutive regions: a strided view, no gather
            recs = self.recs[ctas[0] : ctas[-1] + 1]
        else:
            recs = self.recs[ctas]
        tag2 = np.ascontiguousarray(recs["tag"]).reshape(-1, C)
        time2 = np.ascontiguousarray(recs["time"]).reshape(-1, C)
        rotated = self.wrap and bool(np.any(fseq % C))
        if rep.full and not rotated:
            tag, tm = tag2.reshape(-1), time2.reshape(-1)
        else:
            local = np.arange(m, dtype=np.int64) + rep.col(fseq - lbase, force_1d=True)  # seq
            slot = (local & (C - 1)) if self.wrap else local
            g = rep.col(np.arange(len(n), dtype=np.int64) * C, force_1d=True) + slot
            tag, tm = tag2.reshape(-1).take(g), time2.reshape(-1).take(g)
            rep.full = False
        rpt = _Report(s0=s0, s1=s1, e0=e0, written=m)
        if not (n == C).all():  # slots past a warp's count must never have been written
            past = np.arange(C) >= n[:, None]
            extra = np.count_nonzero((tag2 != 0) & past, axis=1)
            hit = np.flatnonzero(extra)
            if hit.size:
                rpt.extra = (hit + s0, extra[hit])

        valid = (tag & _VALID_MASK) == TAG_VALID
        n_bad = m - int(np.count_nonzero(valid))
        seq = None
        if n_bad:
            seq = np.arange(m, dtype=np.int64) + rep.col(fseq - lbase, force_1d=True)
            bad = np.flatnonzero(~valid)
            bseg = np.searchsorted(lbase, bad, side="right") - 1
            rpt.bad = (bseg + s0, seq[bad], tag[bad])
            rpt.dropped = np.bincount(bseg, minlength=len(n))
            n = n - rpt.dropped
            tag, tm, seq = tag[valid], tm[valid], seq[valid]
            m -= n_bad
            lbase = np.zeros(len(n), np.int64)
            np.cumsum(n[:-1], out=lbase[1:])
            rpt.written, rpt.seq = m, seq
            rep = _Rows(n, C)
            rep.full = False

        out = slice(e0, e0 + m)
        scope = self.scope[out]
        np.right_shift(tag, TAG_SCOPE_SHIFT, out=scope)
        scope &= np.uint32(MAX_SCOPES - 1)
        np.equal(tag & np.uint32(TAG_END), TAG_END, out=self.is_end[out])
        if self.ids is not None:
            known = in_table(scope, self.ids)
            if not known.all():
                rpt.unknown = (int(m - np.count_nonzero(known)), np.unique(scope[~known]))

        # clocks: absolute cycles, then ns on the launch axis
        pres = np.flatnonzero(n > 0)
        run, first = n[pres], lbase[pres]
        seg_cta = self.seg_cta[s0:s1]
        p_cta = seg_cta[pres]
        cycles, step = self._cycles(tm, rep, pres, run, first, fseq[pres], p_cta)
        if step is not None:
            back = np.flatnonzero(step < 0)
            if back.size:
                bseg = np.searchsorted(lbase, back, side="right") - 1
                bseq = seq[back] if seq is not None else fseq[bseg] + back - lbase[bseg]
                rpt.back = (bseg + s0, bseq, step[back])
        rep.put(self.cycles[out], cycles)
        cta_ev = rep.col(seg_cta) if rep.full else np.repeat(p_cta, run)
        rep.put(self.time_ns[out], self.fit.to_ns(cta_ev, rep.shape(cycles)))
        return rpt

    def _cycles(self, tm, rep: "_Rows", pres, run, first, p_first_seq, p_cta):
        """(cycles, step): absolute cycles of the block's events (shaped by ``rep``); step is None
        when no clock step is negative, else per event (0 at each warp's first record)."""
        last = first + run - 1
        if self.clock != "clock":
            cycles = tm.astype(np.int64)
            if len(cycles) < 2:
                return cycles, None
            d = np.empty_like(cycles)
            np.subtract(cycles[1:], cycles[:-1], out=d[1:])
            d[first] = 0
            return cycles, (d if d.min() < 0 else None)
        # %clock: low 32 bits.  Fast path: each record relative to its warp's first one, modulo 2**32
        # (signed where the CTA is short enough).  That equals the running sum of the steps that
        # _unwrap32 takes exactly when every consecutive difference of the results lies in
        # [0, 2**31); otherwise this block goes the exact (slower) way.
        cs, ce, end_ok = self.cs[p_cta], self.ce[p_cta], self.end_ok[p_cta]
        span = ce - cs
        signed = end_ok & (span >= 0) & (span < _SIGNED_STEP_MAX_SPAN)
        if len(tm) and (signed.all() or not signed.any()):
            lo_first = tm[first]
            rel32 = rep.shape(tm) - rep.col(lo_first, pres)
            rel = (rel32.view(np.int32) if signed.all() else rel32).astype(np.int64)
            flat = rel.reshape(-1)
            d = np.empty_like(flat)
            np.subtract(flat[1:], flat[:-1], out=d[1:])
            d[first] = 0
            if d.min() >= 0 and d.max() < 1 << 31:
                lo = tm.astype(np.int64)
                rel += rep.col(_anchor(lo[first], lo[last], flat[last], cs, ce, p_first_seq, end_ok), pres)
                return rel, None
        cycles, step = _unwrap32(tm.astype(np.int64), run, first, p_cta, p_first_seq, self.cs, self.ce,
                                 self.end_ok)
        return rep.shape(cycles), (step if len(step) and step.min() < 0 else None)

    def compact(self, reports: list[_Report], seg_n: np.ndarray) -> np.ndarray:
        """Close the gaps left by dropped records; update ``seg_n``; return every event's seq."""
        pos = 0
        seqs = []
        for r in reports:
            if r.written and pos != r.e0:
                for col in (self.scope, self.is_end, self.cycles, self.time_ns):
                    col[pos : pos + r.written] = col[r.e0 : r.e0 + r.written]
            if r.seq is not None:
                seqs.append(r.seq)
            else:  # nothing dropped in this block: seq from the segments
                s = slice(r.s0, r.s1)
                seqs.append(np.arange(r.written, dtype=np.int64)
                            + np.repeat(self.first_seq[s] - (self.base[s] - r.e0), self.seg_n[s]))
                seqs[-1] = seqs[-1] if len(seqs[-1]) else np.zeros(0, np.int64)
            if r.dropped is not None:
                seg_n[r.s0 : r.s1] -= r.dropped
            pos += r.written
        return np.concatenate(seqs) if seqs else np.zeros(0, np.int64)


class _Rows:
    """Per-event layout of one block: a 2D (segments, capacity) view when every segment is full
    (per-segment values then broadcast), else flat with per-segment values repeated."""

    def __init__(self, n: np.ndarray, C: int):
        self.n, self.C = n, C
        self.full = bool(len(n)) and bool((n == C).all())

    def shape(self, x: np.ndarray) -> np.ndarray:
        return x.reshape(len(self.n), self.C) if self.full else x

    def col(self, v: np.ndarray, pres: np.ndarray | None = None, force_1d: bool = False) -> np.ndarray:
        """Per-segment values ``v`` (for all segments, or for the present ones ``pres``), per event."""
        if self.full and not force_1d:
            return np.broadcast_to(v[:, None], (len(self.n), self.C))
        return np.repeat(v, self.n if pres is None else self.n[pres])

    def put(self, out: np.ndarray, x: np.ndarray) -> None:
        out[...] = x.reshape(-1) if x.ndim > 1 else x


def _record_problems(reports: list[_Report], job: _Job, seg_warp: np.ndarray, n_ids: int,
                     unit: str) -> list[str]:
    """The problems the blocks found, one message each, as the whole launch's."""
    problems = []
    seg_cta = job.seg_cta

    def cat(name: str, k: int) -> list[np.ndarray]:
        parts = [getattr(r, name) for r in reports if getattr(r, name) is not None]
        return [np.concatenate([p[i] for p in parts]) for i in range(k)] if parts else []

    def where(seg, seq, detail) -> list[str]:
        return [f"CTA {seg_cta[s]} warp {seg_warp[s]} seq {q} ({detail(i)})"
                for i, (s, q) in enumerate(zip(seg[:5].tolist(), seq[:5].tolist()))]

    bad = cat("bad", 3)
    if bad:
        seg, seq, tag = bad
        problems.append(
            f"{plural(len(seg), 'record')} with an invalid tag (unwritten slot or corrupt tag) inside the "
            f"counted range, in {plural(np.unique(seg).size, 'warp')}; dropped: "
            f"{fmt_ids(where(seg, seq, lambda i: f'tag 0x{int(tag[i]):08X}'), 5, total=len(seg))}"
        )
    extra = cat("extra", 2)
    if extra:
        hit, count = extra
        problems.append(
            f"{plural(int(count.sum()), 'slot')} past their warp's count hold data (buffer not zeroed "
            f"before the launch, a wrong strategy, or corruption), in {plural(len(hit), 'warp')}: "
            + fmt_ids([f"CTA {seg_cta[s]} warp {seg_warp[s]}" for s in hit[:8]], total=len(hit))
        )
    n_unknown = sum(r.unknown[0] for r in reports)
    if n_unknown:
        unknown = np.unique(np.concatenate([r.unknown[1] for r in reports]))
        problems.append(
            f"{plural(n_unknown, 'record')} with scope ids not in the scope table "
            f"({plural(n_ids, 'scope')}): id {fmt_ids(unknown)}; kept as events"
        )
    back = cat("back", 3)
    if back:
        seg, seq, step = back
        problems.append(
            f"non-monotonic clock: {plural(len(seg), 'backward step')} in "
            f"{plural(np.unique(seg).size, 'warp')}: "
            f"{fmt_ids(where(seg, seq, lambda i: f'{int(step[i])} {unit}'), 5, total=len(seg))}"
        )
    return problems

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
    anchor = _anchor(lo[first_idx], lo[last_idx], rel_last, cs[p_cta], ce[p_cta], first_seq, end_ok[p_cta])
    cum += np.repeat(anchor - c_first, run)
    return cum, step


def _anchor(lo_first, lo_last, rel_last, cs, ce, first_seq, end_ok):
    """Absolute cycles of each warp's first record (arrays per warp run).

    From the CTA's entry clock through the low 32 bits of the first record, or, when the warp's first
    records were overwritten (wrap) and the exit pair is valid, back from the exit clock through its
    last record (``rel_last`` cycles after the first): right however long the CTA ran.
    """
    a_start = cs + _s32(lo_first - cs)
    a_end = ce + _s32(lo_last - ce) - rel_last
    return np.where((first_seq > 0) & end_ok, a_end, a_start)
