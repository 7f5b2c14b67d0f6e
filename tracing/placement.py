"""Where each launch sits on a trace's time axis, and in which order a trace lists its SMs (the Chrome
and the Perfetto writer share both).

0 is the earliest launch's first CTA entry; launches sit at their absolute ``t0_ns`` (globaltimer),
so consecutive launches appear one after the other as they ran.  A launch without an absolute time
(an interval array given on its own) goes :data:`LAUNCH_GAP_NS` after the end of the ones before it.
A warp may record before warp 0 reads the CTA header, i.e. before time 0 of its launch: the whole
axis then moves right so that the trace's earliest time is 0 (viewers clamp negative times).

SMs are listed busiest first (:func:`busiest_first`: most events in the trace, ties by SM number), so
the first screen of a viewer shows the SM with the most to see.  Perfetto's UI has no way for a trace
to open a track group expanded; it lists a Chrome JSON trace's processes by their number of slices
anyway, and the Perfetto writer gives its SM tracks that order (``kperf view`` then expands the
first SM: :mod:`kperf.viewer`).
"""

from __future__ import annotations

import dataclasses

import numpy as np

LAUNCH_GAP_NS = 1_000  # gap between launches placed without an absolute time


@dataclasses.dataclass(frozen=True)
class LaunchSpan:
    """What placement needs of one launch, times in ns on the launch's own axis.

    Attributes:
        t0_ns: the launch's absolute start (globaltimer ns), ``None`` when unknown.
        first_ns: the earliest time the trace shows of it, ``None`` when it shows none.
        last_ns: its latest time (placement after it of a launch without ``t0_ns``).
    """

    t0_ns: int | None
    first_ns: float | None
    last_ns: float = 0.0


def trace_offsets(spans: list[LaunchSpan]) -> list[int]:
    """Offset (ns) of each launch's time 0 on the trace axis, the earliest time in the file at >= 0."""
    known = [s.t0_ns for s in spans if s.t0_ns is not None]
    base = min(known) if known else 0
    offsets: list[int] = []
    cursor = None  # the end of the launches placed so far
    for s in spans:
        if s.t0_ns is not None:
            off = s.t0_ns - base
        else:
            off = 0 if cursor is None else cursor + LAUNCH_GAP_NS
        end = int(np.ceil(off + max(s.last_ns, 0.0)))
        cursor = end if cursor is None else max(cursor, end)
        offsets.append(off)
    lows = [off + s.first_ns for s, off in zip(spans, offsets, strict=True) if s.first_ns is not None]
    shift = min(0, int(np.floor(min(lows)))) if lows else 0
    return [off - shift for off in offsets]


def earliest(*times: np.ndarray) -> float | None:
    """The smallest finite value of the arrays, ``None`` when they hold none."""
    lows = [float(t[np.isfinite(t)].min()) for t in times if np.isfinite(t).any()]
    return min(lows) if lows else None


def busiest_first(sm: np.ndarray, weight: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The distinct SMs of ``sm`` (one entry per event, or per row weighted by ``weight``) and the rank
    of each: 0 for the SM with the most events, ties by SM number.  Returns ``(sm_ids, rank)`` with
    ``sm_ids`` sorted by number."""
    sm = np.asarray(sm, np.int64)
    if len(sm) and 0 <= sm.min() and sm.max() < 1 << 20:  # SM ids: count without sorting the events
        ids = np.flatnonzero(np.bincount(sm))
        counts = np.bincount(sm, weights=weight)[ids]
    else:
        ids, inv = np.unique(sm, return_inverse=True)
        counts = np.bincount(inv.ravel(), weights=weight, minlength=len(ids))
    order = np.lexsort((ids, -counts))  # most events first, then by number
    rank = np.empty(len(ids), np.int64)
    rank[order] = np.arange(len(ids))
    return ids, rank
