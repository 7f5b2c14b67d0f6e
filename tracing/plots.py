"""Pictures of a profile (matplotlib, optional: ``pip install kperf[plot]``).

- :func:`timeline`: one lane per (CTA, warp) of the CTAs and warps chosen, a bar per scope interval
  (one collection of rectangles per scope and depth), one colour per scope, nested scopes drawn
  thinner on top of their parents, time on a ns/us axis (0 = the launch's first CTA entry), each CTA's
  span as a light band.  Only the intervals of the lanes drawn are read from the launch.
- :func:`histograms`: one panel per scope, the distribution of its durations, counted launch by launch
  (the same bins and counts as ``np.histogram`` of all of them, without holding them).

Both write an image (PNG, SVG or PDF by the file's suffix) with the Agg backend, so they work on a
machine without a display, atomically (:mod:`.atomic`), and return a :class:`PlotResult` naming the
file and the artists drawn.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
from collections.abc import Sequence
from typing import Any

import numpy as np

from kperf.dialect.errors import KperfError

from .atomic import atomic_file
from .frame import cta_bounds, frame, pieces
from .group_stats import GroupStats, split_piece
from .intervals import INTERVAL_DTYPE
from .labels import kernel_name, warp_role_names, warp_with_role
from .loading import as_launches
from .units import PLOT_UNITS, ns_per

MAX_LANES = 64  # lanes drawn by default: beyond a few dozen a timeline image stops being readable


@dataclasses.dataclass
class PlotResult:
    """What a plot function drew.

    Attributes:
        path: the image written.
        size_px: (width, height) of the image in pixels (raster formats; from figure size x dpi).
        artists: the matplotlib artists of the data (a ``PolyCollection`` of bars per scope and nesting
            depth for a timeline, the histogram ``BarContainer`` per scope).
        n_bars: bars drawn: intervals for a timeline, non-empty bins for histograms.
        lanes: the (launch, CTA, warp) of each lane, top to bottom (timeline).
        scopes: the scope names drawn, in legend order.
        notes: what was left out, and why.
    """

    path: str
    size_px: tuple[int, int]
    artists: list
    n_bars: int
    lanes: list[tuple[int, int, int]] = dataclasses.field(default_factory=list)
    scopes: list[str] = dataclasses.field(default_factory=list)
    notes: list[str] = dataclasses.field(default_factory=list)


def _pyplot():
    try:
        import matplotlib
    except ImportError as e:
        raise KperfError("plots need matplotlib, which is not installed",
                         fix="pip install 'kperf[plot]' (or pip install matplotlib)") from e
    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt
    return plt


def scope_colours(names: Sequence[str]) -> dict[str, Any]:
    """A stable colour per scope name (tab10, then tab20b, cycling)."""
    plt = _pyplot()
    cmap = list(plt.get_cmap("tab10").colors) + list(plt.get_cmap("tab20b").colors)
    return {n: cmap[i % len(cmap)] for i, n in enumerate(names)}


def _select(values: np.ndarray, chosen: Sequence[int] | None) -> np.ndarray:
    return np.ones(len(values), bool) if chosen is None else np.isin(values, np.asarray(list(chosen)))


def timeline(profile: Any, path: str | os.PathLike, *, launch: int = 0, ctas: Sequence[int] | None = None,
             warps: Sequence[int] | None = None, sms: Sequence[int] | None = None,
             max_lanes: int = MAX_LANES, time_unit: str = "us", title: str | None = None,
             width_in: float = 14.0, dpi: int = 100) -> PlotResult:
    """Draw a timeline of chosen CTAs and warps of one launch.

    Args:
        profile: a DecodedLaunch, a list of them or a ``kperf.Profile``.
        path: the image file (``.png``, ``.svg``, ``.pdf``); folders are created.
        launch: which launch of the profile (position in the list, 0 = first).
        ctas, warps, sms: draw only these CTA ids, warp indices, SMs (default: all, up to max_lanes).
        max_lanes: at most this many (CTA, warp) lanes, the first ones in (CTA, warp) order.
        time_unit: axis unit, ``ns``, ``us`` or ``ms``.
    """
    launches = as_launches(profile)
    if not launches:
        raise KperfError("the profile holds no launches", fix="profile a kernel that has kperf scopes")
    if not 0 <= launch < len(launches):
        raise KperfError(f"launch {launch} is not in the profile ({len(launches)} launches)",
                         fix=f"pick a launch from 0 to {len(launches) - 1}")
    u = ns_per(time_unit, PLOT_UNITS)
    plt = _pyplot()
    d = launches[launch]
    iv, lanes_all, notes = _lanes(d, ctas, warps, sms, max_lanes)
    n_lanes = len(lanes_all)
    names = dict(d.scopes or {})
    sc_ids = np.unique(iv["scope"]).tolist()
    sc_names = [names.get(s, f"scope {s}") for s in sc_ids]
    lane_cta, lane_warp = (lanes_all >> 16).tolist(), (lanes_all & 0xFFFF).tolist()

    fig, ax = plt.subplots(figsize=(width_in, max(2.5, 0.28 * n_lanes + 1.5)), dpi=dpi)
    _cta_bands(ax, d, lane_cta, u)
    artists = _interval_bars(ax, iv, lanes_all, sc_ids, sc_names, u)
    roles = warp_role_names(d, int(max(d.geometry.num_warps, int(iv["warp"].max()) + 1)))
    ax.set_ylim(n_lanes - 0.5, -0.5)
    ax.set_yticks(range(n_lanes))
    ax.set_yticklabels([f"CTA {c} {warp_with_role(roles[wp] if wp < len(roles) else None, wp)}"
                        for c, wp in zip(lane_cta, lane_warp, strict=True)], fontsize=7)
    ax.set_xlabel(f"time ({time_unit}) since the launch's first CTA entry")
    ax.set_title(title or f"{kernel_name(d)} launch {d.launch}: {n_lanes} warps of "
                 f"{len(set(lane_cta))} CTAs")
    ax.grid(axis="x", alpha=0.3)
    ax.legend(loc="upper right", fontsize=8, ncols=min(len(sc_names), 6), framealpha=0.9)
    fig.tight_layout()
    out = _save(fig, path, dpi)
    size = _size(fig, dpi)
    plt.close(fig)
    lanes = [(d.launch, c, wp) for c, wp in zip(lane_cta, lane_warp, strict=True)]
    return PlotResult(out, size, artists, int(len(iv)), lanes, sc_names, notes)


def _lanes(d, ctas, warps, sms, max_lanes: int) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """The intervals drawn (``INTERVAL_DTYPE``, only those of the lanes drawn: a large launch is never
    turned into one table), the lanes ((cta << 16) | warp, sorted) and notes on what was left out."""
    cols, p = d.columns, d.pairs()
    seg = cols.seg
    chosen = np.flatnonzero(_select(seg["cta"], ctas) & _select(seg["warp"], warps) & _select(seg["sm"], sms))
    # each segment's intervals: first[s]:first[s + 1]
    first = cols.start // 2 if p.adjacent else np.searchsorted(p.start, cols.start)
    t = cols["time_ns"]
    ok = None if np.isfinite(t).all() else np.isfinite(t[p.start]) & np.isfinite(t[p.end])
    cum = np.arange(len(p) + 1) if ok is None else np.r_[0, np.cumsum(ok)]  # intervals with times so far
    segs = chosen[cum[first[chosen + 1]] > cum[first[chosen]]]
    notes = []
    if len(segs) > max_lanes:
        notes.append(f"{len(segs) - max_lanes} of {len(segs)} (CTA, warp) lanes left out "
                     f"(max_lanes={max_lanes}; choose lanes with ctas=/warps=/sms=)")
        segs = segs[:max_lanes]
    idx = np.concatenate([np.arange(first[s], first[s + 1]) for s in segs.tolist()]) if len(segs) \
        else np.zeros(0, np.int64)  # a loop over the lanes drawn
    if ok is not None:
        idx = idx[ok[idx]]
    if not len(idx):
        raise KperfError("nothing to draw: no scope interval in the chosen CTAs/warps/SMs",
                         fix="check the CTA, warp and SM numbers (kperf report lists them)")
    iv = np.empty(len(idx), INTERVAL_DTYPE)
    for f, v in p.fields(cols, idx).items():
        iv[f] = v
    lanes = (seg["cta"][segs].astype(np.int64) << 16) | seg["warp"][segs].astype(np.int64)
    return iv, lanes, notes


def _cta_bands(ax, d, lane_cta: list[int], u: float) -> None:
    """Each lane's CTA span as a light band behind its bars (one collection)."""
    from matplotlib.collections import PolyCollection
    start, end = cta_bounds(d)
    c = np.asarray(lane_cta, np.int64)
    i = np.flatnonzero(np.isfinite(start[c]) & np.isfinite(end[c]))
    x0, x1 = start[c[i]] / u, end[c[i]] / u
    ax.add_collection(PolyCollection(_boxes(x0, x1, i - 0.45, i + 0.45), facecolors="0.93", edgecolors="none",
                                     zorder=0))


def _boxes(x0: np.ndarray, x1: np.ndarray, y0, y1) -> np.ndarray:
    """Rectangles [x0, x1] x [y0, y1] as (n, 4, 2) vertices (a PolyCollection's)."""
    y0, y1 = np.broadcast_to(y0, x0.shape), np.broadcast_to(y1, x0.shape)
    return np.stack([np.c_[x0, y0], np.c_[x0, y1], np.c_[x1, y1], np.c_[x1, y0]], axis=1)


def _interval_bars(ax, iv: np.ndarray, lanes: np.ndarray, sc_ids: list[int], sc_names: list[str],
                   u: float) -> list:
    """A bar per interval, one collection of rectangles per (scope, depth): nested scopes thinner and
    on top (depth capped at 3), one legend entry per scope.  Returns the artists."""
    from matplotlib.collections import PolyCollection
    colours = scope_colours(sc_names)
    lane = np.searchsorted(lanes, (iv["cta"].astype(np.int64) << 16) | iv["warp"].astype(np.int64))
    depth = np.minimum(iv["depth"].astype(np.int64), 3)
    x0 = iv["start_ns"] / u
    x1 = iv["end_ns"] / u
    key = np.searchsorted(sc_ids, iv["scope"]) * 4 + depth
    artists, labelled = [], set()
    for k in np.unique(key).tolist():  # a loop over (scope, depth), not over intervals
        idx = np.flatnonzero(key == k)
        dep, si = k % 4, k // 4
        h = 0.8 * (0.75 ** dep)
        y0, y1 = lane[idx] - h / 2, lane[idx] + h / 2
        name = sc_names[si]
        col = PolyCollection(_boxes(x0[idx], x1[idx], y0, y1), facecolors=colours[name],
                             edgecolors="black" if dep else "none", linewidths=0.3, zorder=2 + dep,
                             label=None if name in labelled else name)
        labelled.add(name)
        ax.add_collection(col)
        artists.append(col)
    ax.autoscale_view()
    return artists


def histograms(profile: Any, path: str | os.PathLike, *, scopes: Sequence[str] | None = None, bins: int = 50,
               time_unit: str = "us", log: bool = False, cols: int = 3, dpi: int = 100) -> PlotResult:
    """Per-scope duration histograms over all launches of a profile (one panel per scope).

    Args:
        scopes: scope names to draw (default: all that ran), panels in this order.
        bins: bins per histogram; log: logarithmic count axis.
    """
    u = ns_per(time_unit, PLOT_UNITS)
    f = frame(profile)
    if not f.n_intervals:
        raise KperfError("nothing to draw: the profile has no scope intervals",
                         fix="profile a kernel that has kperf scopes (kperf report shows what was recorded)")
    ran = np.zeros(len(f.scopes.names), np.int64)
    for part in f.parts():  # a loop over launches
        ran += np.bincount(part.scope, minlength=len(ran))
    present = [f.scopes.names[i] for i in np.flatnonzero(ran).tolist()]
    chosen = present if scopes is None else list(scopes)
    missing = [s for s in chosen if s not in present]
    if missing:
        raise KperfError(f"no intervals of scope {', '.join(map(repr, missing))} in the profile",
                         fix=f"choose among {', '.join(present)}")
    plt = _pyplot()
    n = len(chosen)
    ncol = max(1, min(cols, n))
    nrow = -(-n // ncol)
    fig, axes = plt.subplots(nrow, ncol, figsize=(4.5 * ncol, 3.2 * nrow), dpi=dpi, squeeze=False)
    colours = scope_colours(chosen)
    artists, n_bars = [], 0
    hist = _histograms(f, [f.scopes.names.index(name) for name in chosen], u, bins)
    for i, (name, (counts, edges, n_iv, p50, p95)) in enumerate(zip(chosen, hist, strict=True)):
        ax = axes[i // ncol][i % ncol]  # a loop over scopes
        counts, edges, bars = ax.hist(edges[:-1], bins=edges, weights=counts, color=colours[name], log=log)
        artists.append(bars)
        n_bars += int(np.count_nonzero(counts))
        for v, ls in ((p50, "--"), (p95, ":")):
            ax.axvline(v, color="black", linestyle=ls, linewidth=0.8)
        ax.set_title(f"{name}: n={n_iv}, p50={p50:.3g}, p95={p95:.3g} {time_unit}", fontsize=9)
        ax.set_xlim(left=max(0.0, ax.get_xlim()[0]))  # durations are never negative
        ax.set_xlabel(f"duration ({time_unit})")
        ax.set_ylabel("intervals")
    for j in range(n, nrow * ncol):
        axes[j // ncol][j % ncol].set_visible(False)
    fig.tight_layout()
    out = _save(fig, path, dpi)
    size = _size(fig, dpi)
    plt.close(fig)
    return PlotResult(out, size, artists, n_bars, [], chosen, [])


def _histograms(f, codes: list[int], u: float, bins: int) -> list[tuple]:
    """Per scope code: (counts, bin edges, intervals, p50, p95) of its durations in units of ``u``, read
    launch by launch (what ``np.histogram(x, bins)`` and ``np.percentile`` of all of them give, without
    holding them: the edges span the smallest to the largest duration, as numpy's do)."""
    S = len(f.scopes.names)
    lo, hi = np.full(S, np.inf), np.full(S, -np.inf)

    def source():  # (scope code, duration / u) piece by piece
        for part in f.parts():
            for sl in pieces(len(part)):
                yield part.scope[sl], part.dur_ns(sl) / u

    def durations():  # the same, split by scope
        for gid, x in source():
            yield split_piece(gid, [x], S)[0]

    expect = None
    if len(f.launches) == 1:  # one launch: each scope's durations go straight into one array
        expect = sum((np.bincount(p.scope[sl], minlength=S) for p in f.parts() for sl in pieces(len(p))),
                     np.zeros(S, np.int64))
    gs = GroupStats(S, source, expect=expect)

    for piece in durations():
        gs.add_split(*piece)
        for g, v in piece[3].items():
            lo[g], hi[g] = min(lo[g], v.min()), max(hi[g], v.max())
    edges = {c: np.histogram_bin_edges(np.array([lo[c], hi[c]]), bins) for c in codes}
    kept = {c: gs.kept(c) for c in codes}  # all of a scope's durations, when they were kept
    counts = {c: np.histogram(v, edges[c])[0] for c, v in kept.items() if v is not None}
    if len(counts) < len(codes):  # a second read for the others
        counts.update({c: np.zeros(len(edges[c]) - 1, np.int64) for c in codes if c not in counts})
        for *_, by_scope in durations():
            for g, v in by_scope.items():
                if kept.get(g, 0) is None:
                    counts[g] += np.histogram(v, edges[g])[0]
    st = gs.result()
    return [(counts[c], edges[c], int(st["count"][c]), st["p50"][c], st["p95"][c]) for c in codes]


def _save(fig, path, dpi) -> str:
    """Save the figure atomically (:mod:`kperf.tracing.atomic`), in the format of the file's suffix."""
    path = pathlib.Path(path)
    fmt = path.suffix[1:].lower() or "png"
    if fmt not in fig.canvas.get_supported_filetypes():
        raise KperfError(f"cannot write a {fmt!r} image: {path}", fix="name the file .png, .svg or .pdf")
    with atomic_file(path) as f:
        fig.savefig(f, dpi=dpi, format=fmt)
    return str(path)


def _size(fig, dpi) -> tuple[int, int]:
    w, h = fig.get_size_inches()
    return int(round(w * dpi)), int(round(h * dpi))


__all__ = ["MAX_LANES", "PlotResult", "histograms", "scope_colours", "timeline"]
