"""Pictures of a profile (matplotlib, optional: ``pip install kperf[plot]``).

- :func:`timeline`: one lane per (CTA, warp) of the CTAs and warps chosen, a bar per scope interval
  (``broken_barh``), one colour per scope, nested scopes drawn thinner on top of their parents, time
  on a ns/us axis (0 = the launch's first CTA entry), each CTA's span as a light band.
- :func:`histograms`: one panel per scope, the distribution of its durations.

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
from .frame import cta_bounds, frame
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
        artists: the matplotlib artists of the data (``BrokenBarHCollection``/``PolyCollection`` per
            lane and scope for a timeline, the histogram ``BarContainer`` per scope).
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
    iv, _ = d.intervals()
    iv = iv[np.isfinite(iv["start_ns"]) & np.isfinite(iv["end_ns"])]
    iv = iv[_select(iv["cta"], ctas) & _select(iv["warp"], warps) & _select(iv["sm"], sms)]
    iv, lanes_all, notes = _lanes(iv, max_lanes)
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


def _lanes(iv: np.ndarray, max_lanes: int) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """The intervals drawn, the lanes ((cta << 16) | warp, sorted) and notes on what was left out."""
    notes = []
    lane_key = (iv["cta"].astype(np.int64) << 16) | iv["warp"].astype(np.int64)
    lanes = np.unique(lane_key)
    if len(lanes) > max_lanes:
        notes.append(f"{len(lanes) - max_lanes} of {len(lanes)} (CTA, warp) lanes left out "
                     f"(max_lanes={max_lanes}; choose lanes with ctas=/warps=/sms=)")
        lanes = lanes[:max_lanes]
        iv = iv[np.isin(lane_key, lanes)]
    if not len(iv):
        raise KperfError("nothing to draw: no scope interval in the chosen CTAs/warps/SMs",
                         fix="check the CTA, warp and SM numbers (kperf report lists them)")
    return iv, lanes, notes


def _cta_bands(ax, d, lane_cta: list[int], u: float) -> None:
    """Each lane's CTA span as a light band behind its bars."""
    start, end = cta_bounds(d)
    for i, c in enumerate(lane_cta):
        if np.isfinite(start[c]) and np.isfinite(end[c]):
            ax.broken_barh([(start[c] / u, (end[c] - start[c]) / u)], (i - 0.45, 0.9),
                           facecolors="0.93", edgecolors="none", zorder=0)


def _interval_bars(ax, iv: np.ndarray, lanes: np.ndarray, sc_ids: list[int], sc_names: list[str],
                   u: float) -> list:
    """A bar per interval, one ``broken_barh`` per (scope, depth, lane): nested scopes thinner and on
    top (depth capped at 3), one legend entry per scope.  Returns the artists."""
    n_lanes = len(lanes)
    colours = scope_colours(sc_names)
    lane = np.searchsorted(lanes, (iv["cta"].astype(np.int64) << 16) | iv["warp"].astype(np.int64))
    depth = np.minimum(iv["depth"].astype(np.int64), 3)
    t0 = iv["start_ns"] / u
    w = (iv["end_ns"] - iv["start_ns"]) / u
    # a loop over these groups, not over intervals
    key = (np.searchsorted(sc_ids, iv["scope"]) * 4 + depth) * n_lanes + lane
    order = np.argsort(key, kind="stable")
    ks = key[order]
    cut = np.flatnonzero(np.r_[True, ks[1:] != ks[:-1], True])
    labelled = set()
    artists = []
    for a, b in zip(cut[:-1], cut[1:], strict=True):
        idx = order[a:b]
        k = int(ks[a])
        li, rest = k % n_lanes, k // n_lanes
        dep, si = rest % 4, rest // 4
        h = 0.8 * (0.75 ** dep)
        name = sc_names[si]
        col = ax.broken_barh(np.c_[t0[idx], w[idx]], (li - h / 2, h), facecolors=colours[name],
                             edgecolors="black" if dep else "none", linewidths=0.3, zorder=2 + dep,
                             label=None if name in labelled else name)
        labelled.add(name)
        artists.append(col)
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
    if not len(f.scope):
        raise KperfError("nothing to draw: the profile has no scope intervals",
                         fix="profile a kernel that has kperf scopes (kperf report shows what was recorded)")
    present = [f.scopes.names[i] for i in np.unique(f.scope).tolist()]
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
    dur = f.dur_ns / u
    artists, n_bars = [], 0
    for i, name in enumerate(chosen):  # a loop over scopes
        ax = axes[i // ncol][i % ncol]
        x = dur[f.scope == f.scopes.names.index(name)]
        counts, edges, bars = ax.hist(x, bins=bins, color=colours[name], log=log)
        artists.append(bars)
        n_bars += int(np.count_nonzero(counts))
        p50, p95 = np.percentile(x, [50, 95])
        for v, ls in ((p50, "--"), (p95, ":")):
            ax.axvline(v, color="black", linestyle=ls, linewidth=0.8)
        ax.set_title(f"{name}: n={len(x)}, p50={p50:.3g}, p95={p95:.3g} {time_unit}", fontsize=9)
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
