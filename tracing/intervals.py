"""Pair scope start and end events into intervals, vectorised.

Within one warp (one ``(launch, cta, warp)``), the records of one scope must alternate start, end,
start, end, ... in program order.  Pairing stably sorts the events by scope (they arrive sorted by
(launch, cta, warp, seq), so the sort leaves them grouped by (scope, launch, cta, warp) in program
order), then pairs every start with the event right after it when that is an end of the same scope
in the same warp.  Whatever is left over is *unmatched*: typically a leading end whose start was
overwritten by ``wrap``, a trailing start whose end ``keep-first`` dropped, or both halves of a
sequence broken by a dropped (corrupt) record.  Nothing is dropped silently: :func:`unexplained_unmatched`
tells the leftovers that lost records explain from the others, which ``decode`` reports as a problem
(:func:`describe_unexplained`, with CTA, warp, seq and scope).

Speed: :func:`pair_columns` works on :class:`~kperf.tracing.columns.EventColumns` in blocks of warps
(in cache, on a few threads) and returns positions (:class:`Pairs`), not copies of the events.  A
block whose events all come as adjacent (start, end) pairs of one scope -- innermost scopes, the
common case -- is paired without sorting (the same result: adjacent in program order means adjacent
in the scope-sorted order too, and nothing is left to pair); other blocks take the sort.
"""

from __future__ import annotations

import numpy as np

from ._common import ScopesLike, fmt_ids, in_table, plural, scope_id_array
from .columns import EVENT_DTYPE, EventColumns
from .parallel import map_blocks

#: One matched (start, end) pair.  Sorted by (launch, cta, warp, start seq).
INTERVAL_DTYPE = np.dtype(
    [
        ("launch", "<u4"),
        ("cta", "<u4"),  # linear CTA id
        ("sm", "<u4"),
        ("warp", "<u2"),
        ("scope", "<u4"),  # scope id
        # scopes of the same warp open when this one starts (= the intervals enclosing it, since
        # scopes nest properly within a warp), counting those whose start or end record was lost
        ("depth", "<u2"),
        ("start_cycles", "<i8"),  # as EVENT_DTYPE.cycles (SM cycles; globaltimer ns for globaltimer)
        ("end_cycles", "<i8"),
        ("start_ns", "<f8"),  # ns since the launch's t0_ns
        ("end_ns", "<f8"),
    ],
    align=True,
)


def _group_key(events: np.ndarray) -> np.ndarray | None:
    """uint64 key ``launch << 48 | cta << 16 | warp`` per event, or None if launch >= 2**16."""
    launch = events["launch"]
    if len(launch) and int(launch.max()) >= 1 << 16:
        return None
    key = launch.astype(np.uint64) << np.uint64(48)
    key |= events["cta"].astype(np.uint64) << np.uint64(16)
    key |= events["warp"].astype(np.uint64)
    return key


def _is_ordered(key: np.ndarray, seq: np.ndarray) -> bool:
    """Whether events are sorted by (key, seq), seq strictly increasing within a key."""
    if len(key) < 2:
        return True
    up = key[1:] > key[:-1]
    return bool(((key[1:] == key[:-1]) & (seq[1:] > seq[:-1]) | up).all())


#: events paired per block
BLOCK_EVENTS = 1 << 16


class Pairs:
    """Matched scopes of an :class:`EventColumns` as event positions.

    Attributes:
        start, end: positions of each interval's start and end event (``start`` increasing, so
            intervals are in (launch, cta, warp, start seq) order).
        depth: scopes of the same warp open when the interval starts (``INTERVAL_DTYPE.depth``).
        unmatched: positions of the events that found no partner, increasing.
        adjacent: every event is paired with its neighbour (``start`` is ``0, 2, 4, ...``, ``end`` is
            ``start + 1``, depth 0, nothing unmatched): readers may then take the events' columns as
            strided views (``time_ns[0::2]``) instead of gathering them, and ``start``, ``end`` and
            ``depth`` are made only when first read (a large launch's decode writes 20 bytes less
            per interval).
    """

    def __init__(self, start: np.ndarray | None, end: np.ndarray | None, depth: np.ndarray | None,
                 unmatched: np.ndarray, adjacent: bool = False, n: int | None = None):
        self._start, self._end, self._depth = start, end, depth
        self.unmatched, self.adjacent = unmatched, adjacent
        self._n = len(start) if n is None else n

    @classmethod
    def every_neighbour(cls, n_events: int) -> Pairs:
        """Events ``0-1, 2-3, ...`` paired, nothing else (columns made when first read)."""
        return cls(None, None, None, np.zeros(0, np.int64), adjacent=True, n=n_events // 2)

    @property
    def start(self) -> np.ndarray:
        if self._start is None:
            self._start = np.arange(0, 2 * self._n, 2, dtype=np.int64)
        return self._start

    @property
    def end(self) -> np.ndarray:
        if self._end is None:
            self._end = self.start + 1
        return self._end

    @property
    def depth(self) -> np.ndarray:
        if self._depth is None:
            self._depth = np.zeros(self._n, np.uint16)
        return self._depth

    def __len__(self) -> int:
        return self._n

    def fields(self, cols: EventColumns, idx: np.ndarray | slice | None = None) -> dict[str, np.ndarray]:
        """``INTERVAL_DTYPE`` fields as columns, for all intervals or those at ``idx``."""
        if self.adjacent and self._start is None:  # positions from the index, no columns made
            i = np.arange(*(idx or slice(None)).indices(self._n)) if idx is None or isinstance(idx, slice) \
                else np.asarray(idx, np.int64)
            s = 2 * i
            e, depth = s + 1, np.zeros(len(s), np.uint16)
        else:
            s = self.start if idx is None else self.start[idx]
            e = self.end if idx is None else self.end[idx]
            depth = self.depth if idx is None else self.depth[idx]
        seg = cols.segment_of(s)
        out = {f: cols.seg[f][seg] for f in ("launch", "cta", "sm", "warp")}
        out["scope"] = cols["scope"][s]
        out["depth"] = depth
        c, t = cols["cycles"], cols["time_ns"]
        out.update(start_cycles=c[s], end_cycles=c[e], start_ns=t[s], end_ns=t[e])
        return out

    def to_structured(self, cols: EventColumns, chunk: int = 1 << 16) -> tuple[np.ndarray, np.ndarray]:
        """``(INTERVAL_DTYPE array, unmatched EVENT_DTYPE array)``."""
        iv = np.empty(len(self), INTERVAL_DTYPE)
        for a in range(0, len(self), chunk):
            o = iv[a : a + chunk]
            for f, v in self.fields(cols, slice(a, a + chunk)).items():
                o[f] = v
        return iv, cols.to_structured(self.unmatched)


def pair_columns(cols: EventColumns, scopes: ScopesLike = None, threads: int | None = None) -> Pairs:
    """Match scope starts and ends of ``cols`` (see the module docstring); events whose scope id is
    not in ``scopes`` (when given) are never paired."""
    ids = scope_id_array(scopes) if scopes is not None else None
    E = len(cols)
    scope, is_end, start = cols["scope"], cols["is_end"], cols.start
    # blocks of whole segments, about BLOCK_EVENTS events each
    cut = np.unique(np.searchsorted(start, np.arange(0, E, BLOCK_EVENTS), side="right") - 1)
    bounds = [int(x) for x in np.r_[cut, cols.n_segments]] if E else [0, 0]

    def block(sa: int, sb: int):
        ea, eb = int(start[sa]), int(start[sb])
        s, e, d, u, adjacent = _pair_block(scope[ea:eb], is_end[ea:eb], start[sa:sb] - ea, ids, ea)
        if adjacent:  # all events in adjacent pairs: 0-1, 2-3, ...
            return None
        return s, e, d, u

    parts = map_blocks(block, list(zip(bounds[:-1], bounds[1:], strict=True)), E, threads) if E else []
    if not parts:
        z = np.zeros(0, np.int64)
        return Pairs(z, z.copy(), np.zeros(0, np.uint16), z.copy())
    if all(p is None for p in parts):  # every block in adjacent pairs, so the launch too
        return Pairs.every_neighbour(E)
    for j, (sa, sb) in enumerate(zip(bounds[:-1], bounds[1:], strict=True)):
        if parts[j] is None:
            s = np.arange(int(start[sa]), int(start[sb]), 2, dtype=np.int64)
            parts[j] = (s, s + 1, np.zeros(len(s), np.uint16), np.zeros(0, np.int64))
    return Pairs(*(np.concatenate([p[i] for p in parts]) for i in range(4)))


def _pair_block(scope: np.ndarray, is_end: np.ndarray, seg_first: np.ndarray, ids: np.ndarray | None,
                offset: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, bool]:
    """(start, end, depth, unmatched) positions (+ ``offset``) for one block of whole segments, and whether
    the block is all adjacent pairs 0-1, 2-3, ... (then the positions are None)."""
    n = len(scope)
    known = None if ids is None else in_table(scope, ids)
    if (known is None or known.all()) and all_adjacent(scope, is_end, seg_first):
        return None, None, None, None, True
    first = np.zeros(n, bool)
    first[seg_first] = True
    adjacent = ~is_end[:-1] & is_end[1:] & (scope[:-1] == scope[1:]) & ~first[1:]
    # An adjacent (start, end) of one scope in one warp is a pair in the sorted order too.  Scopes
    # with any other event ("loose" scopes) are paired by the sort, on their events only: pairing
    # never looks across scopes, so the result is the same as sorting the whole block.
    p = np.flatnonzero(adjacent)
    in_adj = np.zeros(n, bool)
    in_adj[p] = True
    in_adj[p + 1] = True
    loose_ids = np.unique(scope[~in_adj])
    if known is not None and not known.all():  # scopes outside the table never pair: sort them too
        loose_ids = np.union1d(loose_ids, np.unique(scope[~known]))
    loose = np.isin(scope, loose_ids) if len(loose_ids) > 4 else _any_equal(scope, loose_ids)
    gid = np.cumsum(first, dtype=np.int64) - 1
    is_start = np.zeros(n, bool)
    partner = np.empty(n, np.int64)
    fixed = p[~loose[p]]
    is_start[fixed] = True
    partner[fixed] = fixed + 1
    t = np.flatnonzero(loose)
    st, en = _sorted_pairs(scope[t], is_end[t], gid[t], ids)
    is_start[t[st]] = True
    partner[t[st]] = t[en]
    starts = np.flatnonzero(is_start)  # in (warp, seq) order
    ends = partner[starts]

    # depth: scopes of the same warp open when each interval starts.  Unmatched records count too:
    # a start whose end was lost stays open to the end of the warp, an end whose start was lost was
    # open from the warp's first kept record.
    matched = is_start.copy()
    matched[ends] = True
    delta = 1 - 2 * is_end.view(np.int8)
    before = np.cumsum(delta, dtype=np.int32) - delta
    lead_open = np.bincount(gid[~matched & is_end], minlength=len(seg_first))
    g = gid[starts]
    depth = before[starts] - before[seg_first][g] + lead_open[g]
    depth = np.clip(depth, 0, np.iinfo(np.uint16).max).astype(np.uint16)
    return starts + offset, ends + offset, depth, np.flatnonzero(~matched) + offset, False


def all_adjacent(scope: np.ndarray, is_end: np.ndarray, seg_first: np.ndarray) -> bool:
    """Whether every warp's events (warps starting at ``seg_first``) come as (start, end) pairs of one
    scope: 0-1, 2-3, ... -- then these are the pairs, and nothing is left over."""
    return len(scope) % 2 == 0 and not (seg_first & 1).any() and not is_end[0::2].any() \
        and bool(is_end[1::2].all()) and np.array_equal(scope[0::2], scope[1::2])


def pair_runs(scope: np.ndarray, is_end: np.ndarray, seg_first: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(start, end) positions of the pairs among events grouped in warps that start at ``seg_first``
    (increasing, one per warp with events): the pairing rule of :func:`pair_columns` on raw arrays."""
    if not len(scope):
        z = np.zeros(0, np.int64)
        return z, z.copy()
    s, e, _, _, adjacent = _pair_block(scope, is_end, np.asarray(seg_first, np.int64), None, 0)
    if adjacent:
        s = np.arange(0, len(scope), 2, dtype=np.int64)
        e = s + 1
    return s, e


def unexplained_unmatched(cols: EventColumns, unmatched: np.ndarray, seg_lost: np.ndarray,
                          wrap: bool) -> np.ndarray:
    """The positions among ``unmatched`` that lost records do not explain.

    A warp that lost records (``seg_lost`` > 0 per segment of ``cols``) leaves expected halves:
    with ``keep-first`` a start whose end came after the buffer was full (the last record of its
    scope in the warp), with ``wrap`` an end whose start was overwritten (the first record of its
    scope in the warp).  Every other unmatched record is a sign of a broken record stream.
    """
    if not len(unmatched):
        return unmatched
    seg = cols.segment_of(unmatched)
    cand = unmatched[(seg_lost[seg] > 0) & (cols["is_end"][unmatched] == wrap)]
    if not len(cand):
        return unmatched
    # the first (wrap) or last (keep-first) record of each (warp, scope) among the candidates' warps
    segs = np.unique(cols.segment_of(cand))
    n = cols.start[segs + 1] - cols.start[segs]
    pos = np.arange(int(n.sum()), dtype=np.int64) + np.repeat(cols.start[segs] - (np.cumsum(n) - n), n)
    key = np.repeat(segs, n) * (1 << 24) + cols["scope"][pos].astype(np.int64)
    order = np.argsort(key, kind="stable")
    k_sorted = key[order]
    edge = np.r_[True, k_sorted[1:] != k_sorted[:-1]] if wrap else np.r_[k_sorted[1:] != k_sorted[:-1], True]
    explained = np.isin(cand, pos[order][edge])
    return np.setdiff1d(unmatched, cand[explained], assume_unique=True)


def describe_unexplained(cols: EventColumns, idx: np.ndarray, scope_names: dict[int, str] | None) -> str:
    """One problem sentence for unmatched records that lost records do not explain (positions ``idx``)."""
    n_end = int(cols["is_end"][idx].sum())
    seg = cols.segment_of(idx)
    seq = cols.column("seq", idx)
    ex = []
    for k in range(min(5, len(idx))):
        s, i = int(seg[k]), int(idx[k])
        sc = int(cols["scope"][i])
        name = (scope_names or {}).get(sc, f"scope {sc}")
        ex.append(f"CTA {cols.seg['cta'][s]} warp {cols.seg['warp'][s]} seq {seq[k]} "
                  f"({'end' if cols['is_end'][i] else 'start'} of {name!r})")
    return (f"{plural(len(idx), 'scope record')} without a partner ({len(idx) - n_end} starts without end, "
            f"{n_end} ends without start) that no lost record explains (a corrupt or dropped record), in "
            f"{plural(len(np.unique(seg)), 'warp')}: {fmt_ids(ex, 5, total=len(idx))}; "
            "kept as events, in no interval")


def _any_equal(a: np.ndarray, values: np.ndarray) -> np.ndarray:
    m = np.zeros(len(a), bool)
    for v in values.tolist():  # a loop over a few scope ids
        m |= a == v
    return m


def _sorted_pairs(scope: np.ndarray, is_end: np.ndarray, gid: np.ndarray,
                  ids: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """(start, end) indices: stably sort by scope, pair each start with the next event when that is an
    end of the same scope in the same warp (``gid``); scopes outside ``ids`` never pair."""
    small = len(scope) and int(scope.max()) < 1 << 16
    sc = scope.astype(np.uint16 if small else np.int64)
    order = np.argsort(sc, kind="stable")  # a radix sort for uint16
    s_key, s_scope, s_end = gid[order], sc[order], is_end[order]
    same_run = (s_key[1:] == s_key[:-1]) & (s_scope[1:] == s_scope[:-1])
    q = np.flatnonzero(same_run & ~s_end[:-1] & s_end[1:])
    if ids is not None:
        q = q[in_table(s_scope[q], ids)]
    return order[q], order[q + 1]


def pair(events: np.ndarray, scopes: ScopesLike = None) -> tuple[np.ndarray, np.ndarray]:
    """Match scope starts and ends into intervals.

    Args:
        events: ``EVENT_DTYPE`` array (from one or several launches, e.g. ``np.concatenate`` of
            ``DecodedLaunch.events``).  Any order; it is sorted by (launch, cta, warp, seq) if needed.
        scopes: optional scope table (any form :func:`decode` accepts); events whose scope id is not
            in it are not paired and come back as unmatched.

    Returns:
        ``(intervals, unmatched)``: an ``INTERVAL_DTYPE`` array sorted by (launch, cta, warp, start
        seq), and the ``EVENT_DTYPE`` events that found no partner, sorted by (launch, cta, warp, seq).
        ``DecodedLaunch.pairs()`` gives the same as positions, without copying the events.
    """
    events = np.asarray(events)
    if events.dtype != EVENT_DTYPE:
        raise TypeError(f"pair() needs an EVENT_DTYPE array, got dtype {events.dtype}")
    events = events.reshape(-1)
    key = _group_key(events)
    if key is None or not _is_ordered(key, events["seq"].astype(np.int64)):
        events = events[np.lexsort((events["seq"], events["warp"], events["cta"], events["launch"]))]
    cols = EventColumns.from_structured(events)
    p = pair_columns(cols, scopes)
    iv, _ = Pairs(p.start, p.end, p.depth, p.unmatched[:0]).to_structured(cols)
    return iv, events[p.unmatched]


def describe_unmatched(unmatched: np.ndarray, scope_names: dict[int, str] | None = None) -> str:
    """One line: how many starts and ends found no partner, and where (for logs and traces)."""
    if len(unmatched) == 0:
        return "all scope starts and ends matched"
    n_end = int(unmatched["is_end"].sum())
    n_start = len(unmatched) - n_end
    where = np.unique(unmatched[["launch", "cta", "warp"]])
    ex = [f"launch {a} CTA {b} warp {c}" for a, b, c in where[:5].tolist()]
    sc = np.unique(unmatched["scope"])
    names = [(scope_names or {}).get(int(s), f"scope {s}") for s in sc[:5]]
    return (f"{plural(len(unmatched), 'unmatched event')} ({n_start} starts without end, {n_end} ends "
            f"without start) in {plural(len(where), 'warp')} ({fmt_ids(ex, 5, total=len(where))}), "
            f"scopes {fmt_ids(names, 5, total=len(sc))}")
