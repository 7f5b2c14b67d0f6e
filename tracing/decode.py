"""Decode one launch's kperf profile buffer (format: :mod:`kperf.dialect.layout`) into numpy event tables.

:func:`decode` is the entry point; it runs the steps, each in a module of its own:

1. the buffer's size is checked against the geometry (here);
2. the CTA headers are checked (:mod:`.headers`);
3. every SM's clock is measured against the globaltimer and each CTA placed on one ns axis
   (:mod:`.clocks`);
4. the records of the good CTAs become events (:mod:`.records`; 32-bit clocks through :mod:`.unwrap`;
   untrustworthy records rejected by :mod:`.record_checks`);
5. the events are paired (:mod:`.intervals`), and scope records without a partner that no lost record
   explains are reported;
6. the CTA and lost-record tables are filled in (here) and all of it is returned as a
   :class:`~kperf.tracing.launch.DecodedLaunch` (:mod:`.launch`, also the home of ``CTA_DTYPE`` and
   ``LOST_DTYPE``; ``EVENT_DTYPE`` lives in :mod:`.columns`, ``REJECTED_DTYPE`` in :mod:`.record_checks`).

Everything is vectorised over events with numpy: no Python loop runs per event, per warp or per CTA.

Units: ``cycles`` are SM clock cycles in the ``%clock64`` domain of the CTA headers (for
``clock="globaltimer"`` they are absolute globaltimer ns); ``time_ns`` is ns since the launch's
earliest CTA entry (``DecodedLaunch.t0_ns``, absolute globaltimer ns), on one axis for all SMs.

Data problems (CTAs that never ran, bad magic or version, inconsistent flags, unwritten or corrupt
record slots, scope ids missing from the scope table, record times outside their CTA or running
backwards, implausible counts, odd CTA clock rates, scope records without a partner that no lost record
explains, ...) never raise: they are described in ``DecodedLaunch.problems``, each naming where.  CTAs
with a bad header are left out of the events; records the decoder cannot trust are *rejected*
(:mod:`.record_checks`): left out of the events, intervals and statistics, their ``seq`` numbers unused,
one row each in ``DecodedLaunch.rejected`` and counted in the summary.  Only misuse raises, a
``KperfError`` naming the cause and the fix: a buffer whose size does not fit the geometry and CTA count,
an unknown strategy, a ``wrap`` capacity that is not a power of two.

Speed: the records are decoded in blocks of CTAs (:data:`~kperf.tracing.records.BLOCK_EVENTS` events,
small enough to stay in cache) on a few threads (:mod:`.parallel`; numpy releases the GIL), straight
into preallocated columns (:class:`~kperf.tracing.columns.EventColumns`); the ``EVENT_DTYPE`` table
is built only when asked for.  A session decodes many small launches, so the cost per launch counts
too: the checks of a well-formed buffer take a few reductions each (the work that says what is wrong
runs only where one fails), bounded ids are counted rather than sorted, and the clock maps of all
SMs are built and evaluated at once (no loop over SMs).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from kperf.dialect.errors import KperfError
from kperf.dialect.layout import STRATEGIES, Geometry

from ._common import ScopesLike, plural, scope_id_array, scope_names
from .clocks import SM_CLOCK_DTYPE, ClockFit, fit_clocks
from .columns import EVENT_DTYPE
from .headers import CtaHeaders, check_headers
from .intervals import Pairs, describe_unexplained, pair_columns, unexplained_unmatched
from .launch import CTA_DTYPE, LOST_DTYPE, DecodedLaunch
from .record_checks import REJECTED_DTYPE
from .records import DecodedRecords, decode_records

__all__ = ["CTA_DTYPE", "EVENT_DTYPE", "LOST_DTYPE", "REJECTED_DTYPE", "DecodedLaunch", "decode"]


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
    info: dict[str, Any] | None = None,
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
            ``KperfError``; a longer one (whole regions) is decoded up to ``n_ctas`` (data in the surplus
            regions is reported: kperf zeroes the whole buffer).
        launch: a number stored in every event's ``launch`` field (to tell launches apart).
        scopes: the kernel's scope table (sequence of names, ``{id: name}``, ``ScopeTable`` or its
            JSON form, or the number of scopes); when given, scope ids outside it are reported.
        kernel, warp_roles, grid: the kernel's name, one role name per warp and the launch grid,
            carried along for traces and saved profiles.
        info: facts about the launch as a whole (``DecodedLaunch.info``), carried along the same way.
        keep_raw: keep a view of the buffer in ``DecodedLaunch.raw`` (for saving the profile).
        threads: decoding threads (default: the usable CPUs, at most 8).

    Returns:
        a :class:`DecodedLaunch`.
    """
    _check_arguments(geometry, strategy)
    wrap = strategy == "wrap"
    buf = _as_bytes(buffer)
    n = _check_size(buf.size, geometry, n_ctas)
    M = geometry.cta_bytes
    regions = np.frombuffer(buf, geometry.cta_dtype(), count=n)
    names = scope_names(scopes)
    headers = check_headers(regions, buf[: n * M].reshape(n, M), geometry, grid)
    if buf[n * M:].any():
        headers.problems.append(
            f"the buffer holds data past its {plural(n, 'CTA region')} ({buf.size - n * M} more bytes; "
            "kperf zeroes the whole buffer): the wrong CTA count or geometry?; ignored")
    fit = fit_clocks(
        clock=geometry.clock, sm_start=headers.sm_start, sm_end=headers.sm_end,
        gtime_start=headers.gtime_start, clock_start=headers.clock_start, gtime_end=headers.gtime_end,
        clock_end=headers.clock_end, ok=headers.ok, end_ok=headers.end_ok,
    )
    records = decode_records(regions, headers, fit, geometry, wrap=wrap,
                             ids=scope_id_array(names) if names is not None else None, launch=launch,
                             threads=threads)
    pairs = Pairs.every_neighbour(len(records.columns)) if records.adjacent else \
        pair_columns(records.columns, threads=threads)
    loose = unexplained_unmatched(records.columns, pairs.unmatched, records.seg_lost, wrap)
    loose_problem = [describe_unexplained(records.columns, loose, names)] if len(loose) else []
    return DecodedLaunch(
        launch=int(launch), geometry=geometry, strategy=strategy, columns=records.columns,
        ctas=_cta_table(headers, fit, records), lost=_lost_table(records, geometry),
        lost_total=int(records.lost.sum()),
        problems=headers.problems + fit.problems + records.problems + loose_problem, t0_ns=fit.t0_ns,
        clock_ghz=fit.ghz, rejected=records.rejected, _pairs=pairs,
        sm_clocks=fit.sms if len(fit.sms) else np.zeros(0, SM_CLOCK_DTYPE), scopes=names,
        gtime_step_ns=fit.gtime_step_ns, kernel=kernel, warp_roles=list(warp_roles) if warp_roles else None,
        grid=grid, info=dict(info) if info is not None else None, raw=buf[: n * M] if keep_raw else None,
    )


def _lost_table(records: DecodedRecords, geometry: Geometry) -> np.ndarray:
    """``LOST_DTYPE`` rows of the warps of good CTAs that attempted more records than the capacity."""
    C, cnt = geometry.capacity, records.counts
    if not records.lost.any():
        return np.empty(0, LOST_DTYPE)
    over = np.argwhere(cnt > C)
    lost = np.empty(len(over), LOST_DTYPE)
    lost["cta"] = records.good[over[:, 0]]
    lost["warp"] = geometry.slot_warps[over[:, 1]]
    lost["count"] = cnt[over[:, 0], over[:, 1]]
    lost["kept"] = C
    lost["lost"] = lost["count"].astype(np.int64) - C
    return lost


def _cta_table(headers: CtaHeaders, fit: ClockFit, records: DecodedRecords) -> np.ndarray:
    """``CTA_DTYPE`` rows, one per CTA region, good or not."""
    hdr, ok = headers.fields, headers.ok
    n = len(ok)
    ctas = np.zeros(n, CTA_DTYPE)
    ctas["cta"] = np.arange(n)
    ctas["sm"] = headers.sm_start
    ctas["sm_end"] = headers.sm_end
    for f in ("ctaid_x", "ctaid_y", "ctaid_z", "gtime_start", "gtime_end", "clock_start", "clock_end"):
        ctas[f] = hdr[f]
    ctas["ok"] = ok
    ctas["sampled_out"] = headers.sampled_out
    ctas["end_ok"] = headers.end_ok
    ctas["own_rate"] = fit.own_rate
    ctas["ns_per_cycle"] = fit.ns_per_cycle
    ctas["offset_ns"] = fit.offset_ns
    ctas["n_events"] = np.bincount(records.seg_cta, records.seg_n, minlength=n) if n else 0
    if records.lost.any():  # else zero, as made
        ctas["n_lost"][records.good] = records.lost.sum(axis=1)
    return ctas


def _as_bytes(buffer: Any) -> np.ndarray:
    """A flat uint8 view (no copy) of bytes / bytearray / memoryview / integer ndarray / tensor / array of
    ``Geometry.cta_dtype()`` regions.  A non-contiguous view (its bytes are out of order) or an array of
    another dtype (float, bool, object; decoded tables) raises ``KperfError``.
    """
    if not isinstance(buffer, np.ndarray) and hasattr(buffer, "detach") and hasattr(buffer, "numpy"):
        buffer = buffer.detach().cpu().numpy()  # a torch tensor (strides kept, checked below)
    try:
        a = buffer if isinstance(buffer, np.ndarray) else np.asarray(memoryview(buffer))
    except TypeError:
        raise KperfError(f"decode takes the profile buffer's bytes, got {type(buffer).__name__}",
                         fix="pass bytes, a uint8 numpy array or the torch tensor of the buffer") from None
    if a.dtype.kind not in "iu" and "header" not in (a.dtype.names or ()):  # or CTA regions (cta_dtype)
        raise KperfError(f"decode takes the profile buffer's bytes, got an array of dtype {a.dtype}",
                         fix="pass the raw buffer (uint8), not decoded tables or converted values")
    if not a.flags.c_contiguous:
        raise KperfError(f"decode takes the buffer's bytes in order, got a non-contiguous view (strides "
                         f"{a.strides})", fix="pass the whole buffer, not a strided or transposed view of it")
    return a.reshape(-1).view(np.uint8)


def _check_arguments(geometry: Geometry, strategy: str) -> None:
    """An unknown strategy, or ``wrap`` with a capacity that is not a power of two, raises ``KperfError``."""
    if strategy not in STRATEGIES:
        raise KperfError(f"unknown strategy {strategy!r}; expected one of {', '.join(STRATEGIES)}",
                         where="decode", fix="pass the strategy the kernel was compiled with "
                         "(metadata['kperf']['strategy'])")
    C = geometry.capacity
    if strategy == "wrap" and C & (C - 1):
        raise KperfError(f"strategy 'wrap' needs a power-of-two capacity, got {C}", where="decode",
                         fix="pass the kernel's own geometry (metadata['kperf']['geometry']): a 'wrap' "
                         "kernel is compiled with a power-of-two capacity")


def _check_size(size: int, geometry: Geometry, n_ctas: int | None) -> int:
    """CTA regions to decode in a buffer of ``size`` bytes; a size that does not fit raises ``KperfError``."""
    m = geometry.cta_bytes
    geo = (f"geometry num_warps={geometry.num_warps}, capacity={geometry.capacity}, "
           f"clock={geometry.clock!r}")
    fix = ("pass the whole buffer of the launch, with the kernel's own geometry (metadata['kperf']"
           "['geometry']) and the launch's CTA count")
    if n_ctas is None:
        if size % m:
            n = -(-size // m)
            raise KperfError(f"expected {n * m} bytes ({n} CTAs x {m} bytes), got {size}; not a multiple of "
                             f"the CTA region size {m} ({geo}: a truncated buffer or the wrong geometry?)",
                             where="kperf buffer", fix=fix)
        return size // m
    n = int(n_ctas)
    if n < 0:
        raise KperfError(f"n_ctas must be >= 0, got {n_ctas}", where="decode",
                         fix="pass the launch's CTA count (the product of its grid)")
    if size < n * m or size % m:
        raise KperfError(f"expected {n * m} bytes ({n} CTAs x {m} bytes), got {size} ({geo}: a truncated "
                         "buffer, the wrong geometry or the wrong CTA count?)", where="kperf buffer", fix=fix)
    return n
