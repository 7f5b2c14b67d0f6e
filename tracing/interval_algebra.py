"""Set operations on many time intervals at once, per group (a CTA, a warp, an SM), with numpy.

- :func:`union` merges each group's intervals into disjoint sorted segments (touching ones merge),
  exactly: the segments end where the (k+1)-th smallest start lies after the k-th smallest end;
- :func:`covered` measures how much of each query interval a group's segments cover;
- :func:`row_sweep` walks the intervals of many rows (a launch's CTAs) in time order, a block of rows
  at a time: each row's start and end points laid out in one row of a 2-D array and sorted per row
  (``argsort(axis=1)``: every warp's points already come in order, so the sort only merges them),
  and the open intervals of every scope after each point counted by one ``cumsum`` of packed bit
  fields.  From one walk come each row's busy time (the measure of the union of its intervals) and,
  with scopes, the overlap matrix ``cover[a, b]``: over the intervals of scope ``a``, the time some
  interval of scope ``b`` of the same row was open.  Blocks keep the arrays in cache and the memory
  bounded; a block's rows are padded to its longest, rows of very different lengths go in different
  blocks.
"""

from __future__ import annotations

import numpy as np

from .parallel import map_blocks

#: points per block of rows (cache-sized)
SWEEP_CELLS = 1 << 16
#: open intervals of one scope are counted in a field of this many bits (a scope is open at most once
#: per warp, and a CTA has at most 32 warps); 9 scopes share one int64 word
FIELD_BITS = 7
PER_WORD = 63 // FIELD_BITS


def union(gid: np.ndarray, start: np.ndarray, end: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Merge intervals per group into disjoint segments: (seg_gid, seg_start, seg_end), sorted.

    Exact: the starts and the ends are sorted each on its own (per group), and a segment ends after the
    k-th end when the (k+1)-th start lies after it.  An end before its start counts as the start.
    """
    if len(gid) == 0:
        return gid[:0].astype(np.int64), start[:0].astype(np.float64), end[:0].astype(np.float64)
    gid = np.asarray(gid, np.int64)
    start = np.asarray(start, np.float64)
    end = np.maximum(np.asarray(end, np.float64), start)
    so, eo = np.lexsort((start, gid)), np.lexsort((end, gid))
    g, s, e = gid[so], start[so], end[eo]
    brk = np.ones(len(g), bool)
    brk[:-1] = (g[1:] != g[:-1]) | (s[1:] > e[:-1])
    last = np.flatnonzero(brk)
    first = np.r_[0, last[:-1] + 1]
    return g[first], s[first], e[last]


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


def row_sweep(row_first: np.ndarray, time: np.ndarray, is_end: np.ndarray, scope: np.ndarray | None = None,
              scope_map: np.ndarray | None = None,
              threads: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Busy time per row and the overlap matrix of interval start and end points grouped in rows.

    ``row_first``: offsets of the rows' points (row ``r`` holds ``row_first[r]:row_first[r + 1]``,
    which come as runs already in time order, one per warp); ``time``: finite; ``is_end``: the point
    ends an interval (else it starts one); ``scope``: each point's scope code, ``scope_map[code]`` its
    row of the matrix (None: busy time only).  Returns ``(busy, cover)``: ``busy[r]`` adds the row's
    union segments in time order (touching ones merged); ``cover`` is ``(n, n)``, ``n`` the rows of the
    matrix (its diagonal counts a scope against itself).
    """
    n_rows = len(row_first) - 1
    n_scopes = 0 if scope is None else int(scope_map.max()) + 1 if len(scope_map) else 0
    busy = np.zeros(n_rows)
    cover = np.zeros((n_scopes, n_scopes))
    counts = np.diff(row_first)
    blocks = list(_row_blocks(counts, SWEEP_CELLS))
    done = map_blocks(lambda rows: _sweep_block(row_first, counts, rows, time, is_end, scope, scope_map,
                                                n_scopes), [(b,) for b in blocks], len(time), threads)
    for rows, (b, c) in zip(blocks, done, strict=True):  # in block order: the same sums every run
        busy[rows] = b
        cover += c
    return busy, cover


def _row_blocks(counts: np.ndarray, target: int):
    """Row index arrays of about ``target`` points each; a block's rows lie within a factor 2 in length
    (so padding them to the longest at most doubles the work)."""
    rows = np.flatnonzero(counts)
    if not len(rows):
        return
    cls = np.floor(np.log2(counts[rows])).astype(np.int64)
    if (cls == cls[0]).all():
        groups = [rows]
    else:
        order = np.argsort(cls, kind="stable")
        cut = np.flatnonzero(np.diff(cls[order])) + 1
        groups = np.split(rows[order], cut)
    for g in groups:  # a loop over blocks
        cum = np.cumsum(counts[g])
        edges = np.searchsorted(cum, np.arange(0, int(cum[-1]), target), side="right")
        edges = edges[np.r_[True, edges[1:] != edges[:-1]]]  # rising: their distinct values
        for a, b in zip(edges, np.r_[edges[1:], len(g)], strict=True):
            if b > a:
                yield g[a:b]


def _layout(row_first, counts, rows, values, fill):
    """The rows' values as a 2-D array, one row each, padded with ``fill``."""
    c = counts[rows]
    L = int(c.max())
    a, b = int(row_first[rows[0]]), int(row_first[rows[-1] + 1])
    if (c == L).all() and rows[-1] - rows[0] == len(rows) - 1:  # whole rows side by side: a reshape
        return values[a:b].reshape(len(rows), L)
    out = np.full((len(rows), L), fill, dtype=values.dtype)
    col = np.arange(L)
    mask = col < c[:, None]
    idx = (row_first[rows][:, None] + col)[mask]
    out[mask] = values[idx]
    return out


def _sweep_block(row_first, counts, rows, time, is_end, scope, scope_map, n_scopes):
    """(busy per row, cover matrix) of one block of rows.

    After sorting each row's points by time, the open intervals of every scope are counted at once:
    each point adds or takes 1 in its scope's bit field of a packed int64 word, one ``cumsum`` per
    word.  A point's own field after it tells whether its scope opened or closed, and their running
    sum how many scopes are open.  Busy time is where that is above 0; the overlap matrix needs only
    the stretches where two scopes or more are open, and unpacks the counts there.
    """
    c = counts[rows]
    R, L = len(rows), int(c.max())
    t = _layout(row_first, counts, rows, time, np.inf)
    order = np.argsort(t, axis=1, kind="stable")  # merges the warps' runs; ties keep each warp's order
    flat = (order + (np.arange(R) * L)[:, None]).reshape(-1)
    ts = t.reshape(-1)[flat]
    # each point's end flag and scope row in one small integer, taken in time order by one gather
    tag = _layout(row_first, counts, rows, is_end, True).view(np.int8).astype(np.int16)
    if scope is not None:
        tag += 2 * scope_map[_layout(row_first, counts, rows, scope, 0)]
    tag = tag.reshape(-1)[flat].reshape(R, L)
    d = (1 - 2 * (tag & 1)).astype(np.int8)
    if (c < L).any():
        d[order >= c[:, None]] = 0  # padding
    if scope is None:
        return _busy(ts, np.cumsum(d, axis=1, dtype=np.int16).reshape(-1) > 0, L, R), np.zeros((0, 0))
    sc = tag >> 1
    n_words = max(-(-n_scopes // PER_WORD), 1)
    words, shift = (0, sc * FIELD_BITS) if n_words == 1 else (sc // PER_WORD, (sc % PER_WORD) * FIELD_BITS)
    step = d.astype(np.int64) << shift
    packed = [np.cumsum(step if n_words == 1 else np.where(words == w, step, 0), axis=1).reshape(-1)
              for w in range(n_words)]  # a loop over words (9 scopes each)
    mine = packed[0] if n_words == 1 else np.choose(words.reshape(-1), packed)
    after = (mine >> shift.reshape(-1)) & ((1 << FIELD_BITS) - 1)  # open in the point's own scope
    d = d.reshape(-1)
    n_open = np.cumsum((after == (d > 0)) * d, axis=None, dtype=np.int16)  # scopes with an open interval
    busy = _busy(ts, n_open > 0, L, R)
    cover = np.zeros((n_scopes, n_scopes))
    multi = np.flatnonzero(n_open >= 2)  # stretches where one scope can cover another (never a row's last)
    if len(multi):
        gap = ts[multi + 1] - ts[multi]
        cnt = np.empty((len(multi), n_scopes), np.int64)
        for s in range(n_scopes):  # a loop over scopes, on those stretches only
            field = packed[s // PER_WORD][multi] >> ((s % PER_WORD) * FIELD_BITS)
            cnt[:, s] = field & ((1 << FIELD_BITS) - 1)
        cover = (cnt * gap[:, None]).T @ (cnt > 0).astype(np.float64)
    return busy, cover


def _busy(ts: np.ndarray, on: np.ndarray, L: int, R: int) -> np.ndarray:
    """Per row (``L`` points each, flattened; ``on``: some interval is open after the point, never after
    a row's last): the lengths of the stretches where ``on``, added in time order; a stretch that ends
    where the next one starts, at the same time, goes on (touching ones merge)."""
    edge = np.flatnonzero(on[1:] != on[:-1]) + 1
    if len(on) and on[0]:
        edge = np.r_[0, edge]
    opens, closes = edge[0::2], edge[1::2]
    touch = np.flatnonzero(opens[1:] == closes[:-1] + 1)
    touch = touch[ts[opens[touch + 1]] == ts[closes[touch]]]
    if len(touch):
        opens, closes = np.delete(opens, touch + 1), np.delete(closes, touch)
    return np.bincount(opens // L, weights=ts[closes] - ts[opens], minlength=R)
