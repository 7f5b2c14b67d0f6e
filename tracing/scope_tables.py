"""Statistics tables about scopes: durations per scope and per warp role, and overlap between scopes.

Every function takes what :func:`kperf.tracing.frame.frame` takes (launches, a ``kperf.Profile``, a
saved profile's path, or a built :class:`~kperf.tracing.frame.Frame`) and returns a
:class:`~kperf.tracing.tables.Table`.  The launches are read one at a time (:meth:`Frame.parts`) and
reduced into per-group accumulators (:class:`~kperf.tracing.group_stats.GroupStats`), so a profile of
many launches needs the memory of one.  What each number means: ``docs/statistics.md``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from kperf.dialect.errors import KperfError

from .frame import Frame, Intervals, frame, pieces
from .group_stats import GroupStats, split_piece
from .parallel import imap_blocks
from .tables import Table

Piece = Callable[[Intervals, slice], np.ndarray]


def summaries(f: Frame, n: int, key: Piece, values: list[Piece]) -> list[dict[str, np.ndarray]]:
    """count, total, mean, p50, p95, max of each of ``values`` per group ``key`` over every launch, read
    piece by piece (``key(part, sl)``, ``value(part, sl)``); the columns share each piece's grouping."""
    def source(value):
        def pieces_of():
            for part in f.parts():
                for sl in pieces(len(part)):
                    yield key(part, sl), value(part, sl)
        return pieces_of
    expect = None
    if len(f.launches) == 1:  # one launch: each group's values go straight into an array of its size
        expect = np.zeros(n, np.int64)
        for part in f.parts():
            for sl in pieces(len(part)):
                expect += np.bincount(key(part, sl), minlength=n)
    stats = [GroupStats(n, source(v), expect=expect) for v in values]
    for part in f.parts():  # each piece split on a worker thread, folded in order here
        split = lambda sl, part=part: split_piece(key(part, sl), [v(part, sl) for v in values], n)  # noqa: E731
        for done in imap_blocks(split, [(sl,) for sl in pieces(len(part))], len(part), None):
            for gs, one in zip(stats, done, strict=True):
                gs.add_split(*one)
    return [gs.result() for gs in stats]


def kernel_totals(f: Frame, value: Piece) -> np.ndarray:
    """The sum of ``value`` per kernel code, added value by value in the launches' order (one kernel per
    launch: a running sum, continued from the kernel's total so far)."""
    total = np.zeros(len(f.kernels.names))
    for part in f.parts():
        kc = f.kernel_of[part.li]
        for sl in pieces(len(part)):
            total[kc] = np.cumsum(np.r_[total[kc], value(part, sl)])[-1]
    return total


def _scope_of(f: Frame, S: int) -> Piece:
    """The (kernel, scope) key of each interval of a piece (the scope codes themselves for kernel 0)."""
    return lambda p, sl: p.scope[sl] + f.kernel_of[p.li] * S if f.kernel_of[p.li] else p.scope[sl]


def _scope_key(f: Frame, by: str) -> tuple[int, Piece, str]:
    """(groups, key of each interval, memo name): kernel x scope, or kernel x role x scope."""
    S, R, K = len(f.scopes.names), max(len(f.roles.names), 1), len(f.kernels.names)
    if by == "scope" or R == 1:  # one role: the same groups
        return K * S, _scope_of(f, S), "scope"
    return (K * R * S, lambda p, sl: (f.kernel_of[p.li] * R + p.per_interval(p.run_role, sl)) * S
            + p.scope[sl], "role")


def scope_stats(profile: Any, *, by: str = "scope", cycles: bool = True) -> Table:
    """Duration statistics per scope (``by="scope"``) or per warp role and scope (``by="role"``).

    Columns: kernel, [role,] scope, count, total/mean/p50/p95/max in ns and in cycles, and ``share``:
    the scope's total as a fraction of all intervals' total in the same kernel (nested scopes count
    in their parents too, so shares can add up to more than 1).  Scopes of the scope table that never
    ran are listed with count 0 (``by="scope"``).  ``cycles=False`` leaves the ``_cycles`` columns out
    (and their work: a diff compares ns only).
    """
    if by not in ("scope", "role"):
        raise KperfError(f"scope_stats(by={by!r})", fix="use by='scope' or by='role'")
    f = frame(profile)
    S, R = len(f.scopes.names), max(len(f.roles.names), 1)
    n, key, name = _scope_key(f, by)
    if cycles or ("summary", name) in f.memo:
        ns, cy = f.cached(("summary", name),
                          lambda: summaries(f, n, key, [Intervals.dur_ns, Intervals.dur_cycles]))
    else:
        (ns,) = f.cached(("summary ns", name), lambda: summaries(f, n, key, [Intervals.dur_ns]))
    present = ns["count"] > 0
    if by == "scope":
        for kc, sc in f.declared:
            present[kc * S + sc] = True
    rows = np.flatnonzero(present)
    kern = rows // (S * (R if by == "role" else 1))
    role = (rows // S) % R
    scope = rows % S
    ktotal = f.cached("kernel_totals", lambda: kernel_totals(f, Intervals.dur_ns))
    with np.errstate(invalid="ignore", divide="ignore"):
        share = ns["total"][rows] / ktotal[kern]
    by_total = -ns["total"][rows]
    order = np.lexsort((by_total, role, kern)) if by == "role" else np.lexsort((by_total, kern))
    rows, kern, role, scope, share = rows[order], kern[order], role[order], scope[order], share[order]
    cols = {"kernel": f.kernels.names_of(kern)}
    if by == "role":
        cols["role"] = f.roles.names_of(role)
    cols["scope"] = f.scopes.names_of(scope)
    cols["count"] = ns["count"][rows]
    for k in ("total", "mean", "p50", "p95", "max"):
        cols[f"{k}_ns"] = ns[k][rows]
    cols["share_frac"] = share
    for k in ("total", "mean", "p50", "p95", "max") if cycles else ():
        cols[f"{k}_cycles"] = cy[k][rows]
    notes = []
    if f.dropped:
        notes.append(f"{f.dropped} intervals without a time (no clock rate) are left out")
    title = "Scopes" if by == "scope" else "Scopes per warp role"
    return Table("scopes" if by == "scope" else "roles", title, cols, notes)


def role_stats(profile: Any) -> Table:
    """:func:`scope_stats` per warp role and scope."""
    return scope_stats(profile, by="role")


def overlap(profile: Any, *, min_frac: float = 0.0) -> Table:
    """How much of each scope's time another scope covers, on any warp of the same CTA.

    For scopes A != B of one kernel: ``covered_ns`` is the sum over A's intervals of the time during
    which at least one warp of the same CTA (its own warp included) was inside B; ``covered_frac`` is
    ``covered_ns / a_total_ns``.  E.g. A = a TMA wait on a producer warp, B = the MMA of the consumer
    warps: a high fraction means the wait is hidden behind MMA.  Rows with ``covered_frac < min_frac``
    are left out; rows are sorted by kernel, then A's total, then the fraction.
    """
    f = frame(profile)
    S = len(f.scopes.names)
    K = len(f.kernels.names)
    a_total, cov, present_b = np.zeros(K * S), np.zeros((K * S, S)), np.zeros(K * S, bool)
    for part in f.parts():  # a loop over launches
        kc = int(f.kernel_of[part.li])
        for sl in pieces(len(part)):
            np.add.at(a_total, kc * S + part.scope[sl].astype(np.intp), part.dur_ns(sl))
        _, _, mat, codes = part.sweep(cover=True)
        if len(codes):
            cov[np.ix_(kc * S + codes, codes)] += mat
            present_b[kc * S + codes] = True
    ka, b_ = np.nonzero(cov >= 0)
    kern, a = ka // S, ka % S
    keep = (a != b_) & (a_total[ka] > 0) & present_b[kern * S + b_]
    with np.errstate(invalid="ignore", divide="ignore"):
        frac = cov[ka, b_] / a_total[ka]
    keep &= frac >= min_frac
    ka, b_, kern, a, frac = ka[keep], b_[keep], kern[keep], a[keep], frac[keep]
    order = np.lexsort((-frac, -a_total[ka], kern))
    ka, b_, kern, a, frac = ka[order], b_[order], kern[order], a[order], frac[order]
    cols = {"kernel": f.kernels.names_of(kern), "scope": f.scopes.names_of(a),
            "covered_by": f.scopes.names_of(b_),
            "scope_total_ns": a_total[ka], "covered_ns": cov[ka, b_], "covered_frac": frac}
    return Table("overlap", "Overlap: time of `scope` during which some warp of the CTA is in `covered_by`",
                 cols)
