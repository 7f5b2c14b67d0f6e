"""Pair scope start and end events into intervals, vectorised.

Within one warp (one ``(launch, cta, warp)``), the records of one scope must alternate start, end,
start, end, ... in program order.  :func:`pair` stably sorts the events by scope (they arrive sorted
by (launch, cta, warp, seq), so the sort leaves them grouped by (scope, launch, cta, warp) in
program order), then pairs every start with the event right after it when that is an end of the
same scope in the same warp.  Whatever is left over is returned as *unmatched*: typically a leading
end whose start was overwritten by ``wrap``, a trailing start whose end ``keep-first`` dropped, or
both halves of a sequence broken by a dropped (corrupt) record.  Nothing is dropped silently.
"""

from __future__ import annotations

import numpy as np

from ._common import ScopesLike, fmt_ids, in_table, plural, scope_id_array
from .decode import EVENT_DTYPE

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
    """
    events = np.asarray(events)
    if events.dtype != EVENT_DTYPE:
        raise TypeError(f"pair() needs an EVENT_DTYPE array, got dtype {events.dtype}")
    events = events.reshape(-1)
    E = len(events)
    seq = events["seq"].astype(np.int64)
    key = _group_key(events)
    if key is None or not _is_ordered(key, seq):
        events = events[np.lexsort((events["seq"], events["warp"], events["cta"], events["launch"]))]
        seq = events["seq"].astype(np.int64)
        key = _group_key(events)
        if key is None:  # launch numbers beyond 2**16: rank the groups instead
            g = events[["launch", "cta", "warp"]]
            key = np.ones(E, np.uint64)
            if E:
                key[1:] = g[1:] != g[:-1]
            key = np.cumsum(key, dtype=np.uint64)
    newg = np.ones(E, bool)
    if E:
        np.not_equal(key[1:], key[:-1], out=newg[1:])
    scope = events["scope"]
    small = E and int(scope.max()) < 1 << 16
    scope = scope.astype(np.uint16 if small else np.int64)
    is_end = events["is_end"].copy()

    # stable sort by scope: events end up in (scope, launch, cta, warp, seq) order
    order = np.argsort(scope, kind="stable")  # a radix sort for uint16
    s_key = key[order]
    s_scope = scope[order]
    s_end = is_end[order]
    same_run = (s_key[1:] == s_key[:-1]) & (s_scope[1:] == s_scope[:-1])
    p = np.flatnonzero(same_run & ~s_end[:-1] & s_end[1:])
    starts_u, ends_u = order[p], order[p + 1]
    if scopes is not None:  # scopes outside the table never pair
        keep = in_table(s_scope[p], scope_id_array(scopes))
        starts_u, ends_u = starts_u[keep], ends_u[keep]

    is_start = np.zeros(E, bool)
    is_start[starts_u] = True
    partner = np.empty(E, np.int64)
    partner[starts_u] = ends_u
    starts = np.flatnonzero(is_start)  # back in (launch, cta, warp, seq) order
    ends = partner[starts]

    # depth: scopes of the same warp open when each interval starts.  Unmatched records count too:
    # a start whose end was lost stays open to the end of the warp, an end whose start was lost was
    # open from the warp's first kept record.
    matched = is_start.copy()
    matched[ends] = True
    delta = np.where(is_end, -1, 1).astype(np.int64)
    before = np.cumsum(delta) - delta
    gid = np.cumsum(newg) - 1
    gfirst = np.flatnonzero(newg)
    lead_open = np.bincount(gid[~matched & is_end], minlength=len(gfirst))
    depth = before[starts] - before[gfirst][gid[starts]] + lead_open[gid[starts]]
    depth = np.maximum(depth, 0)

    iv = np.empty(len(starts), INTERVAL_DTYPE)
    depth = np.minimum(depth, np.iinfo(np.uint16).max)
    ch = 1 << 16  # chunks keep the gathered records in cache (and temporaries small)
    for a in range(0, len(starts), ch):
        b = a + ch
        s_ev = np.take(events, starts[a:b])  # np.take on whole records: far faster than fancy indexing
        e_ev = np.take(events, ends[a:b])
        o = iv[a:b]
        for f in ("launch", "cta", "sm", "warp", "scope"):
            o[f] = s_ev[f]
        o["depth"] = depth[a:b]
        o["start_cycles"] = s_ev["cycles"]
        o["end_cycles"] = e_ev["cycles"]
        o["start_ns"] = s_ev["time_ns"]
        o["end_ns"] = e_ev["time_ns"]
    if 2 * len(starts) == E:
        return iv, events[:0].copy()
    return iv, events[~matched]


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
