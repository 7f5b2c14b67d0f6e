"""Checks that decide which decoded records are *rejected*: left out of the events, counted and reported.

A record is rejected when the decoder cannot trust it, for one of the :data:`REJECT_REASONS`:

- ``invalid tag``: bit 31 clear or a reserved bit (24..30) set: an unwritten slot inside the counted
  range or a corrupt tag;
- ``scope not in table``: its scope id is not in the kernel's scope table (when one is given): a
  corrupt tag or the wrong table; the decoder cannot say which scope it is;
- ``outside CTA span``: its time lies outside its CTA's header span ``clock_start .. clock_end``
  (``gtime_start .. gtime_end`` for ``clock="globaltimer"``) widened by :func:`span_tolerance` on both
  sides.  The header's pairs are warp 0's entry and exit, not the CTA's: other warps start a little
  before warp 0 reads the entry pair, and where warps do not wait for each other at the end they go on
  recording after warp 0 has left (an H100 vector add: up to 3,900 cycles before and 13,600 cycles,
  2.4 times warp 0's span, after).  The tolerance is therefore wide (:data:`SPAN_SLACK` plus
  :data:`SPAN_SLACK_SPANS` spans): it catches clocks that are far off (a flipped high bit, a record of
  another launch), while a time moved by less stays for the order check.  Without a usable exit pair
  only the lower bound is checked;
- ``out of order``: within one warp, records are written in program order, so their times never
  decrease.  At each backward step (record ``i`` earlier than record ``i - 1``) the record whose removal
  restores the order with its neighbours is rejected; when both removals would (or neither would) the
  decoder cannot tell which one is wrong and rejects both.  Whatever order problem remains after that
  (several corrupt records in a row) is resolved by rejecting every record earlier than one before it;
- ``partner rejected``: the other half (start or end) of a scope whose start or end was rejected for
  its time.  Leaving it in would pair the remaining records across the gap into an interval that never
  happened (a start of one iteration with the end of the next), so the whole pair goes.

Rejected records never become events, intervals or statistics: they are rows of
``DecodedLaunch.rejected`` (``REJECTED_DTYPE``), each reason is one sentence in
``DecodedLaunch.problems`` naming a few CTA / warp / seq, and the summary counts them.  Their ``seq``
numbers stay unused in the events.  Everything here is vectorised over a block's events.
"""

from __future__ import annotations

import numpy as np

from ._common import fmt_ids, plural
from .intervals import pair_runs

REJECT_INVALID_TAG = 1
REJECT_UNKNOWN_SCOPE = 2
REJECT_OUT_OF_SPAN = 3
REJECT_OUT_OF_ORDER = 4
REJECT_PARTNER = 5
#: reason code (``REJECTED_DTYPE.reason``) -> name
REJECT_REASONS = {
    REJECT_INVALID_TAG: "invalid tag",
    REJECT_UNKNOWN_SCOPE: "scope not in table",
    REJECT_OUT_OF_SPAN: "outside CTA span",
    REJECT_OUT_OF_ORDER: "out of order",
    REJECT_PARTNER: "partner rejected",
}

#: One rejected record (see the module docstring), sorted by (cta, warp, seq).
REJECTED_DTYPE = np.dtype(
    [
        ("cta", "<u4"),
        ("warp", "<u2"),
        ("seq", "<u4"),  # index of the record in its warp's stream (as EVENT_DTYPE.seq)
        ("reason", "u1"),  # a key of REJECT_REASONS
        ("tag", "<u4"),  # the raw tag word
        ("time", "<u8"),  # the raw clock field of the record
    ],
    align=True,
)

#: records may lie this far (cycles; ns for globaltimer) outside their CTA's header span ...
SPAN_SLACK = 1 << 16
#: ... plus this many times the span (see the module docstring)
SPAN_SLACK_SPANS = 2

_I64_MIN, _I64_MAX = np.iinfo(np.int64).min, np.iinfo(np.int64).max


def span_tolerance(span, slack: int = SPAN_SLACK):
    """How far (cycles, or ns for globaltimer) a record may lie outside a header span of ``span`` (an int
    or an integer array); saturates at the int64 limits (a corrupt header may give any span)."""
    if isinstance(span, int):
        return min(max(slack + SPAN_SLACK_SPANS * span, int(_I64_MIN)), int(_I64_MAX))
    s = np.asarray(span)
    if not np.issubdtype(s.dtype, np.integer):
        return slack + SPAN_SLACK_SPANS * span
    slack = min(int(slack), int(_I64_MAX))
    exact = slack + SPAN_SLACK_SPANS * s.astype(np.float64)  # where int64 would overflow
    with np.errstate(over="ignore"):
        tol = np.int64(slack) + np.int64(SPAN_SLACK_SPANS) * s.astype(np.int64)
    return np.where(exact >= 2.0**63, _I64_MAX, np.where(exact < -(2.0**63), _I64_MIN, tol))


def span_bounds(start: np.ndarray, end: np.ndarray, has_end: np.ndarray,
                slack: int) -> tuple[np.ndarray, np.ndarray]:
    """Per CTA, the lowest and highest record time accepted (int64; see the module docstring).

    ``start``, ``end``: the header's entry and exit readings in the records' clock (int64); ``has_end``:
    the exit reading is usable; ``slack``: the absolute tolerance.  Saturating int64 arithmetic: corrupt
    readings may lie anywhere.
    """
    fast = _span_bounds_small(start, end, has_end, slack)
    if fast is not None:
        return fast
    with np.errstate(over="ignore"):
        span = end - start
    span = np.where((end >= start) & (span < 0), _I64_MAX, span)  # the difference overflowed
    tol = span_tolerance(np.maximum(np.where(has_end, span, 0), 0), slack)
    with np.errstate(over="ignore"):
        lo = start - tol
        hi = end + tol
    lo = np.where(lo > start, _I64_MIN, lo)  # saturate instead of wrapping around
    hi = np.where(has_end & (hi >= end), hi, _I64_MAX)
    return lo, hi


def _span_bounds_small(start: np.ndarray, end: np.ndarray, has_end: np.ndarray,
                       slack: int) -> tuple[np.ndarray, np.ndarray] | None:
    """:func:`span_bounds` where every reading lies in [0, 2**62), the slack below 2**60 and every span
    below 2**61: then no sum overflows and nothing saturates, so plain int64 arithmetic gives the same
    bounds with fewer steps; None elsewhere."""
    if not start.size or not 0 <= slack < 1 << 60:
        return None
    if start.min() < 0 or end.min() < 0 or start.max() >= 1 << 62 or end.max() >= 1 << 62:
        return None
    width = np.maximum(np.where(has_end, end - start, 0), 0)
    if width.max() >= 1 << 61:
        return None
    tol = np.int64(slack) + np.int64(SPAN_SLACK_SPANS) * width
    return start - tol, np.where(has_end, end + tol, _I64_MAX)


def order_rejects(t: np.ndarray, first: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Records that break the time order of their warp (see the module docstring).

    ``t``: times (int64), grouped in warps; ``first``: True at each warp's first record (and at 0).
    Returns (bool mask of the rejected records, positions of the backward steps).
    """
    n = len(t)
    back = np.flatnonzero((t[1:] < t[:-1]) & ~first[1:]) + 1
    bad = np.zeros(n, bool)
    if not back.size:
        return bad, back
    last = np.ones(n, bool)
    last[:-1] = first[1:]
    i = back
    prev_fixes = first[i - 1] | (t[np.maximum(i - 2, 0)] <= t[i])  # without i - 1: in order
    cur_fixes = last[i] | (t[i - 1] <= t[np.minimum(i + 1, n - 1)])  # without i: in order
    undecided = prev_fixes == cur_fixes  # both removals would restore the order, or neither would
    bad[i[prev_fixes | undecided] - 1] = True
    bad[i[cur_fixes | undecided]] = True
    keep = np.flatnonzero(~bad)
    if not keep.size:
        return bad, back
    seg = np.cumsum(first, dtype=np.int64)[keep]
    tk = t[keep]
    if ((tk[1:] >= tk[:-1]) | (seg[1:] != seg[:-1])).all():
        return bad, back
    # several corrupt records in a row: keep the records not earlier than any before them (a segmented
    # running maximum, on ranks so that the warp can be folded into the key)
    rank = np.empty(len(tk), np.int64)
    rank[np.argsort(tk, kind="stable")] = np.arange(len(tk))
    key = seg * len(tk) + rank
    bad[keep[key < np.maximum.accumulate(key)]] = True
    return bad, back


def partners(scope: np.ndarray, is_end: np.ndarray, seg_first: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """Positions of the pairing partners of the records at ``idx`` (those that have one).

    ``scope``, ``is_end``: the block's records (valid tags), in warps starting at ``seg_first``
    (present warps only, increasing).
    """
    s, e = pair_runs(scope, is_end, seg_first)
    partner = np.full(len(scope), -1, np.int64)
    partner[s] = e
    partner[e] = s
    p = partner[idx]
    return p[p >= 0]


def rejected_problems(rows: np.ndarray, back: tuple, n_ids: int, unknown_ids: np.ndarray,
                      unit: str) -> list[str]:
    """One sentence per reason found in ``rows`` (``REJECTED_DTYPE``), and one for the backward clock
    steps ``back`` = (cta, warp, seq, step) arrays."""
    problems = []

    def where(sel: np.ndarray, detail=None) -> str:
        r = rows[sel]
        ex = [f"CTA {c} warp {w} seq {q}" + (f" ({detail(r[k])})" if detail else "")
              for k, (c, w, q) in enumerate(zip(r["cta"][:5].tolist(), r["warp"][:5].tolist(),
                                                r["seq"][:5].tolist(), strict=True))]
        return fmt_ids(ex, 5, total=len(r))

    def warps(sel: np.ndarray) -> str:
        r = rows[sel]
        return plural(len(np.unique(r["cta"].astype(np.int64) << 16 | r["warp"])), "warp")

    reason = rows["reason"]
    sel = reason == REJECT_INVALID_TAG
    if sel.any():
        problems.append(
            f"{plural(int(sel.sum()), 'record')} with an invalid tag (unwritten slot or corrupt tag) inside "
            f"the counted range, in {warps(sel)}; dropped: {where(sel, _tag_hex)}")
    sel = reason == REJECT_UNKNOWN_SCOPE
    if sel.any():
        problems.append(
            f"{plural(int(sel.sum()), 'record')} with scope ids not in the scope table "
            f"({plural(n_ids, 'scope')}): id {fmt_ids(unknown_ids)}; left out of the events: {where(sel)}")
    sel = reason == REJECT_OUT_OF_SPAN
    if sel.any():
        problems.append(
            f"{plural(int(sel.sum()), 'record')} with a clock outside their CTA's header span (corrupt "
            f"clock), in {warps(sel)}; left out of the events: {where(sel)}")
    if len(back[0]):
        cta, warp, seq, step = back
        ex = [f"CTA {c} warp {w} seq {q} ({s} {unit})" for c, w, q, s in
              zip(cta[:5].tolist(), warp[:5].tolist(), seq[:5].tolist(), step[:5].tolist(), strict=True)]
        n_warps = len(np.unique(cta.astype(np.int64) << 16 | warp))
        sel = reason == REJECT_OUT_OF_ORDER
        problems.append(
            f"non-monotonic clock: {plural(len(cta), 'backward step')} in {plural(n_warps, 'warp')}: "
            f"{fmt_ids(ex, 5, total=len(cta))}; {plural(int(sel.sum()), 'record')} out of order left out "
            f"of the events: {where(sel)}")
    sel = reason == REJECT_PARTNER
    if sel.any():
        problems.append(
            f"{plural(int(sel.sum()), 'record')} whose scope partner (start or end) was rejected for its "
            f"time, left out with it (no interval from a corrupt clock): {where(sel)}")
    return problems


def _tag_hex(row) -> str:
    return f"tag 0x{int(row['tag']):08X}"
