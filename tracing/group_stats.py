"""Order statistics per group with numpy, over values that may come in pieces (launch by launch).

The statistics tables reduce durations (and gaps) per (kernel, scope), (kernel, role, scope) or
(kernel, role, boundary) key to count, total, mean, p50, p95 and max.  :class:`GroupStats` takes the
values in pieces and never sorts them:

- counts add up, and totals add value by value in order, exactly as one ``np.bincount`` over all the
  values would (the previous total goes in first), so a total does not depend on how the values were
  cut into pieces;
- the values are kept, grouped, and each group's order statistics come from one ``np.partition`` (a
  selection in linear time) at the ranks the percentiles need;
- kept values are bounded (:data:`KEEP_VALUES`): past that, the largest groups are let go and their
  order statistics found by an exact radix selection over the order-preserving 64-bit form of the
  floats, 16 bits per pass over the values again (``source``), so memory stays bounded however many
  launches a profile holds.

Percentiles interpolate linearly between order statistics, as ``np.percentile``'s default.  NaN values
are left out.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import numpy as np

#: values kept in memory for exact order statistics (float64: 128 MB); beyond, radix selection
KEEP_VALUES = 1 << 24
#: radix selection collects a bucket's values once it holds at most this many
COLLECT_VALUES = 1 << 20
#: positions per group (one pass per group) up to this many groups in a piece, else one stable sort by
#: group (which costs about as much as a dozen passes)
MASK_GROUPS = 12
QUANTILES = ((0.5, "p50"), (0.95, "p95"), (1.0, "max"))
_SIGN = np.uint64(1 << 63)

Source = Callable[[], Iterable[tuple[np.ndarray, np.ndarray]]]


def seq_totals(total: np.ndarray | None, gid: np.ndarray, x: np.ndarray, n: int) -> np.ndarray:
    """``total`` (None: zeros) plus the per-group sums of ``x``, added one by one in order (as
    ``np.bincount`` adds; ``np.add.at`` is unbuffered and in order), so that summing in pieces gives
    the very float one bincount over all the values gives."""
    out = np.zeros(n) if total is None else total
    np.add.at(out, gid, x)
    return out


class GroupStats:
    """count, total, mean, p50, p95, max per group id in ``[0, n)`` over values added in pieces.

    ``source``: a callable that yields the same ``(gid, x)`` pieces again, needed only when more than
    :data:`KEEP_VALUES` values come (then the order statistics of the largest groups are selected
    from a second look at the values instead of from kept copies).  ``expect``: values per group to
    come, when known: each group's values then go straight into one array of that size, selected in
    place (no copy of them all at the end).
    """

    def __init__(self, n: int, source: Source | None = None, keep: int | None = None,
                 skip: int | None = None, expect: np.ndarray | None = None):
        self.n, self.source, self.skip = n, source, skip  # group ``skip``: counted, no order statistics
        self.keep = KEEP_VALUES if keep is None else keep
        self.count = np.zeros(n, np.int64)
        self.total: np.ndarray | None = None
        self._kept: dict[int, list[np.ndarray]] = {}
        self._n_kept = 0
        self._spilled: set[int] = set()
        self._buf: dict[int, np.ndarray] = {}
        self._fill: dict[int, int] = {}
        if expect is not None and int(expect.sum()) <= self.keep:
            self._buf = {int(g): np.empty(int(expect[g])) for g in np.flatnonzero(expect) if g != skip}
            self._fill = dict.fromkeys(self._buf, 0)
            self._n_kept = int(expect.sum())

    def add(self, gid: np.ndarray, x: np.ndarray) -> None:
        """Add the values ``x`` of groups ``gid``."""
        self.add_split(*split_piece(gid, [x], self.n)[0])

    def add_split(self, gid: np.ndarray, x: np.ndarray, count: np.ndarray, by_group: dict) -> None:
        """Add a piece already split by :func:`split_piece` (which may run on another thread): the
        pieces must come in their order, totals add up value by value."""
        if not len(x):
            return
        self.count += count
        self.total = seq_totals(self.total, gid, x, self.n)
        for g, v in by_group.items():
            if g in self._buf and self._fill[g] + len(v) <= len(self._buf[g]):
                self._buf[g][self._fill[g] : self._fill[g] + len(v)] = v
                self._fill[g] += len(v)
            elif g not in self._spilled and g != self.skip:
                if g in self._buf:  # more than expected: on as pieces
                    self._kept[g] = [self._buf.pop(g)[: self._fill.pop(g)]]
                self._kept.setdefault(g, []).append(v)
                self._n_kept += len(v)
        while self._n_kept > self.keep and self._kept:  # let the largest group go (radix selection later)
            g = max(self._kept, key=lambda k: sum(len(v) for v in self._kept[k]))
            self._n_kept -= sum(len(v) for v in self._kept.pop(g))
            self._spilled.add(g)

    def kept(self, g: int) -> np.ndarray | None:
        """All the values of group ``g`` so far (in no particular order), or None when they were let go;
        read before :meth:`result`, which selects in place."""
        if g in self._buf:
            return self._buf[g][: self._fill[g]]
        if g in self._spilled or g == self.skip:
            return None
        return np.concatenate(self._kept[g]) if g in self._kept else np.zeros(0)

    def result(self) -> dict[str, np.ndarray]:
        """``{"count", "total", "mean", "p50", "p95", "max"}`` arrays of length ``n`` (NaN when empty)."""
        cnt = self.count
        total = np.zeros(self.n) if self.total is None else self.total
        has = cnt > 0
        out = {"count": cnt, "total": np.where(has, total, 0.0)}
        with np.errstate(invalid="ignore", divide="ignore"):
            out["mean"] = np.where(has, total / np.maximum(cnt, 1), np.nan)
        ranks = {}
        for q, name in QUANTILES:
            pos = (cnt - 1) * q
            lo = np.floor(pos).astype(np.int64)
            ranks[name] = (lo, np.minimum(lo + 1, cnt - 1), pos - lo)
        need = {int(g): sorted({int(r[i][g]) for r in ranks.values() for i in (0, 1)})
                for g in np.flatnonzero(has) if g != self.skip}
        value = self._select(need)
        groups = list(need)
        for _, name in QUANTILES:
            lo, hi, frac = ranks[name]
            a, b = np.zeros(self.n), np.zeros(self.n)
            a[groups] = [value[(g, int(lo[g]))] for g in groups]
            b[groups] = [value[(g, int(hi[g]))] for g in groups]
            out[name] = np.where(has, a + (b - a) * frac, np.nan)
            if self.skip is not None:
                out[name][self.skip] = np.nan
        return out

    def _select(self, need: dict[int, list[int]]) -> dict[tuple[int, int], float]:
        """The values at the needed ranks of each group."""
        out = {}
        for g, ks in need.items():
            if g in self._spilled:
                continue
            if g in self._buf:  # its own array: selected in place
                v = self._buf.pop(g)[: self._fill[g]]
                v.partition(ks)
            else:
                pieces = self._kept.pop(g)  # the pieces go as soon as they are joined
                v = np.partition(pieces[0], ks) if len(pieces) == 1 else np.concatenate(pieces)
                if len(pieces) > 1:
                    v.partition(ks)
            out.update({(g, k): float(v[k]) for k in ks})
        spilled = {g: ks for g, ks in need.items() if g in self._spilled}
        if spilled:
            if self.source is None:
                raise ValueError("GroupStats: more values than it keeps, and no source to read them again")
            out.update(radix_select(self.source, spilled, self.n))
        return out


def split_piece(gid: np.ndarray, columns: list[np.ndarray], n: int) -> list[tuple]:
    """For each column of values of groups ``gid``: ``(gid, values, count per group, {group: values})``
    with its NaN left out; columns without NaN share one grouping."""
    out, shared = [], None
    for x in columns:
        nan = np.isnan(x)
        if nan.any():
            g, v = gid[~nan], x[~nan]
            split = Splitter(g, n)
        else:
            g, v = gid, x
            split = shared = shared or Splitter(gid, n)
        out.append((g, v, split.count, split(v) if len(v) else {}))
    return out


class Splitter:
    """Values by group, each group's in their order: the positions of each group when a piece holds few
    groups (found once, taken from every column of the piece), else one stable sort by group."""

    def __init__(self, gid: np.ndarray, n: int):
        self.count = np.bincount(gid, minlength=n)
        self.groups = np.flatnonzero(self.count)
        self.masks = self.order = None
        if len(self.groups) > MASK_GROUPS:
            small = np.uint16 if n <= 1 << 16 else np.int64
            self.order = np.argsort(gid.astype(small, copy=False), kind="stable")
        elif len(self.groups) > 1:
            self.masks = [np.flatnonzero(gid == g) for g in self.groups]

    def __call__(self, x: np.ndarray) -> dict[int, np.ndarray]:
        if self.masks is not None:
            return {int(g): x.take(i) for g, i in zip(self.groups, self.masks, strict=True)}
        if self.order is None:
            return {int(g): x for g in self.groups}
        xs, ends = x[self.order], np.cumsum(self.count)
        return {int(g): xs[ends[g] - self.count[g] : ends[g]] for g in self.groups}


def group_summary(gid: np.ndarray, n: int, x: np.ndarray) -> dict[str, np.ndarray]:
    """count, total, mean, p50, p95, max of ``x`` per group id in ``[0, n)`` (NaN for empty groups).

    Percentiles interpolate linearly between order statistics, as ``np.percentile``'s default.
    NaN values of ``x`` are left out.
    """
    s = GroupStats(n)
    s.add(np.asarray(gid), np.asarray(x, np.float64))
    return s.result()


# --------------------------------------------------------------------------- radix selection


def order_key(x: np.ndarray) -> np.ndarray:
    """float64 -> uint64 with the same order (no NaN)."""
    b = np.ascontiguousarray(x, np.float64).view(np.uint64)
    return np.where(b >= _SIGN, ~b, b | _SIGN)


def from_key(k: int) -> float:
    b = np.uint64(k)
    return float(np.array([b ^ _SIGN if b >= _SIGN else ~b], np.uint64).view(np.float64)[0])


def _matching(source: Source, lut: np.ndarray, bucket_keys: np.ndarray, bits: int):
    """Per piece: (bucket index, order key) of the values whose group is in ``lut`` (>= 0) and whose
    top ``bits`` key bits, with the group, form one of the sorted ``bucket_keys``."""
    for gid, x in source():
        keep = ~np.isnan(x)
        gi = lut[gid]
        m = keep & (gi >= 0)
        k = order_key(x[m])
        ck = gi[m].astype(np.uint64) << np.uint64(48)
        if bits:
            ck |= k >> np.uint64(64 - bits)
        pos = np.minimum(np.searchsorted(bucket_keys, ck), len(bucket_keys) - 1)
        hit = bucket_keys[pos] == ck
        yield pos[hit], k[hit]


def radix_select(source: Source, need: dict[int, list[int]], n: int) -> dict[tuple[int, int], float]:
    """The values at ranks ``need[g]`` of each group ``g`` (ids below ``n``) of the pieces ``source()``
    yields, exactly:
    16 bits of the order key per pass, then the few values left of a rank are collected."""
    groups = sorted(need)
    lut = np.full(n, -1, np.int64)
    lut[groups] = np.arange(len(groups))
    # per target: group index, residual rank, key prefix (its bits so far)
    tg = np.array([lut[g] for g in groups for _ in need[g]], np.int64)
    tr = np.array([r for g in groups for r in need[g]], np.int64)
    tp = np.zeros(len(tg), np.uint64)
    done: dict[int, float] = {}
    collect = {}
    for level in range(4):
        todo = [t for t in range(len(tg)) if t not in done and t not in collect]
        if not todo:
            break
        bits = 16 * level
        bk, b_of = np.unique((tg[todo].astype(np.uint64) << np.uint64(48)) | tp[todo], return_inverse=True)
        hist = np.zeros(len(bk) << 16, np.int64)
        for pos, k in _matching(source, lut, bk, bits):
            digit = (k >> np.uint64(48 - bits)) & np.uint64(0xFFFF)
            hist += np.bincount((pos.astype(np.int64) << 16) | digit.astype(np.int64), minlength=len(hist))
        for t, b in zip(todo, b_of.reshape(-1).tolist(), strict=True):
            c = np.cumsum(hist[b << 16 : (b + 1) << 16])
            d = int(np.searchsorted(c, tr[t], side="right"))
            tr[t] -= int(c[d - 1]) if d else 0
            tp[t] = (tp[t] << np.uint64(16)) | np.uint64(d)
            if level == 3:
                done[t] = from_key(int(tp[t]))
            elif int(c[d] - (c[d - 1] if d else 0)) <= COLLECT_VALUES:
                collect[t] = bits + 16
    for bits in sorted(set(collect.values())):
        ts = [t for t, b in collect.items() if b == bits]
        bk, b_of = np.unique((tg[ts].astype(np.uint64) << np.uint64(48)) | tp[ts], return_inverse=True)
        vals: list[list[np.ndarray]] = [[] for _ in bk]
        for pos, k in _matching(source, lut, bk, bits):
            order = np.argsort(pos, kind="stable")
            cut = np.searchsorted(pos[order], np.arange(len(bk) + 1))
            for b in range(len(bk)):
                vals[b].append(k[order[cut[b] : cut[b + 1]]])
        for t, b in zip(ts, b_of.reshape(-1).tolist(), strict=True):
            v = np.concatenate(vals[b])
            done[t] = from_key(int(np.partition(v, tr[t])[tr[t]]))
    out = {}
    i = 0
    for g in groups:
        for r in need[g]:
            out[(g, r)] = done[i]
            i += 1
    return out
