"""Set operations on many time intervals at once, per group (a CTA, a warp, an SM), with numpy.

:func:`union` merges each group's intervals into disjoint sorted segments; :func:`covered` measures
how much of each query interval a group's segments cover.  Both sort once and run no Python loop
over intervals: groups are laid side by side on one axis (group ``g`` shifted by ``g * span``) so
that one ``searchsorted`` or running maximum serves all groups.
"""

from __future__ import annotations

import numpy as np


def union(gid: np.ndarray, start: np.ndarray, end: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Merge intervals per group into disjoint segments: (seg_gid, seg_start, seg_end), sorted."""
    if len(gid) == 0:
        return gid[:0].astype(np.int64), start[:0].astype(np.float64), end[:0].astype(np.float64)
    order = np.lexsort((start, gid))
    g, s, e = gid[order].astype(np.int64), start[order].astype(np.float64), end[order].astype(np.float64)
    e = np.maximum(e, s)
    # running max of the ends within a group: shift each group above the previous one's range
    lo = float(s.min())
    span = float(e.max()) - lo + 1.0
    shifted = (e - lo) + g * span
    run = np.maximum.accumulate(shifted)
    new = np.ones(len(g), bool)
    new[1:] = (g[1:] != g[:-1]) | ((s[1:] - lo) + g[1:] * span > run[:-1])
    first = np.flatnonzero(new)
    return g[first], s[first], np.maximum.reduceat(e, first)


def covered(seg_gid, seg_start, seg_end, gid, a, b) -> np.ndarray:
    """Length of each ``[a, b]`` (group ``gid``) covered by the disjoint sorted segments of its group."""
    out = np.zeros(len(gid), np.float64)
    if len(seg_gid) == 0 or len(gid) == 0:
        return out
    lo = min(float(seg_start.min()), float(np.min(a)))
    span = max(float(seg_end.max()), float(np.max(b))) - lo + 1.0
    key = (seg_start - lo) + seg_gid * span
    length = seg_end - seg_start
    prefix = np.concatenate([[0.0], np.cumsum(length)])
    g = gid.astype(np.int64)
    n_groups = int(max(seg_gid[-1], g.max())) + 1
    first_seg = np.searchsorted(seg_gid, np.arange(n_groups), side="left")
    base = prefix[first_seg][g]  # length of the earlier groups' segments

    def upto(t):  # measure of the group's segments in (-inf, t]
        i = np.searchsorted(key, (t - lo) + g * span, side="right") - 1
        ic = np.maximum(i, 0)
        mine = (i >= 0) & (seg_gid[ic] == g)
        inside = np.clip(t - seg_start[ic], 0.0, length[ic])
        return np.where(mine, prefix[ic] - base + inside, 0.0)

    return np.maximum(upto(b) - upto(a), 0.0)
