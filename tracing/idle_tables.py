"""Statistics tables about time no scope covers: idle gaps (bubbles) between a warp's scopes, and idle
time per warp role and per CTA.

Inputs and outputs as in :mod:`kperf.tracing.scope_tables`, launch by launch.  A warp's top-level
intervals come in start order already (decoding keeps every warp's records in program order), so the
gaps are differences of neighbours: no sort.  What each number means: ``docs/statistics.md``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .frame import Frame, Intervals, frame, pieces, repeat_runs
from .group_stats import GroupStats, seq_totals, split_piece
from .parallel import imap_blocks
from .tables import Table

CTA_START = "(CTA start)"  # the boundary before a warp's first scope in the gaps table
CTA_END = "(CTA end)"  # the boundary after its last
_KINDS = ("inner", "first", "last")


class _Top:
    """A launch's top-level intervals as one sequence, grouped in runs (warps), read in pieces."""

    def __init__(self, part: Intervals):
        self.part = part
        self.top, self.per_run = part.top()
        self.offsets = np.r_[0, np.cumsum(self.per_run)]
        self.n = int(self.offsets[-1])
        self.runs = np.flatnonzero(self.per_run)  # runs with a top-level interval

    def col(self, column: np.ndarray, sl: slice) -> np.ndarray:
        return column[sl] if self.top is None else column[self.top[sl]]

    def inner(self, f: Frame, sl: slice, skip: int) -> tuple[np.ndarray, np.ndarray]:
        """(group key, gap) between neighbours ``i, i + 1``, ``i`` in the piece: the pairs that straddle
        two runs (warps) get the key ``skip``."""
        a, b = sl.start, min(sl.stop, self.n - 1)
        if b <= a:
            return np.zeros(0, np.int64), np.zeros(0)
        cur, nxt = slice(a, b), slice(a + 1, b + 1)
        p = self.part
        gap = np.maximum(self.col(p.start_ns, nxt) - self.col(p.end_ns, cur), 0.0)
        key = self.key(f, cur, self.col(p.scope, cur), self.col(p.scope, nxt))
        last = self.offsets[1:][self.per_run > 0] - 1
        key[last[(last >= a) & (last < b)] - a] = skip
        return key, gap

    def key(self, f: Frame, sl, before: np.ndarray, after: np.ndarray) -> np.ndarray:
        """The group key (kernel, role, before, after) of gaps at top-level positions ``sl`` (a slice, or
        the runs' first or last positions)."""
        B, R = len(f.scopes.names) + 2, max(len(f.roles.names), 1)
        p = self.part
        base = f.kernel_of[p.li] * R
        if R > 1:
            base = base + (repeat_runs(self.offsets, p.run_role, sl) if isinstance(sl, slice) else
                           p.run_role[self.runs])
        key = before.astype(np.int64) * B
        key += after
        key += base * (B * B)
        return key

    def edge(self, f: Frame, kind: str) -> tuple[np.ndarray, np.ndarray]:
        """(group key, gap) from each warp's CTA entry to its first scope (``first``), or from its last
        scope to the CTA's exit (``last``)."""
        S, p, runs = len(f.scopes.names), self.part, self.runs
        cta = p.run_cta[runs]
        if kind == "first":
            i = self.offsets[runs]
            gap = np.maximum(self.col(p.start_ns, i) - f.c_start[cta], 0.0)
            return self.key(f, i, np.full(len(runs), S), self.col(p.scope, i)), gap
        i = self.offsets[runs + 1] - 1
        gap = np.maximum(f.c_end[cta] - self.col(p.end_ns, i), 0.0)
        return self.key(f, i, self.col(p.scope, i), np.full(len(runs), S + 1)), gap


def _one(piece: tuple[np.ndarray, np.ndarray]) -> tuple[np.ndarray, list[np.ndarray]]:
    key, gap = piece
    return key, [gap]


def gaps(profile: Any) -> Table:
    """Idle gaps (bubbles) of each warp between consecutive top-level scopes, by boundary and role.

    A warp's top-level scopes are those not nested in another scope of the same warp.  Between two
    consecutive ones, ``before`` -> ``after``, the warp is in no scope; the gap before its first
    scope counts from the CTA's entry (``(CTA start)``), the gap after its last to the CTA's exit
    (``(CTA end)``).  Columns: kernel, role, before, after, count, total/mean/p50/p95/max ns.
    """
    f = frame(profile)
    S = len(f.scopes.names)
    R, B, K = max(len(f.roles.names), 1), S + 2, len(f.kernels.names)
    n = K * R * B * B

    def source():  # every inner gap, then every first, then every last (the order totals add up in)
        for kind in _KINDS:
            for part in f.parts():
                top = _Top(part)
                if kind == "inner":
                    yield from (top.inner(f, sl, n) for sl in pieces(top.n))
                else:
                    yield top.edge(f, kind)

    gs = GroupStats(n + 1, source, skip=n)  # group n: neighbours in two warps, no gap
    for part in f.parts():  # the inner gaps: each piece split on a worker thread, folded in order here
        top = _Top(part)
        split = lambda sl, top=top: split_piece(*_one(top.inner(f, sl, n)), n + 1)[0]  # noqa: E731
        for done in imap_blocks(split, [(sl,) for sl in pieces(top.n)], top.n, None):
            gs.add_split(*done)
    for kind in _KINDS[1:]:
        for part in f.parts():
            gs.add(*_Top(part).edge(f, kind))
    sm = {k: v[:n] for k, v in gs.result().items()}
    uniq = np.flatnonzero(sm["count"])
    sm = {k: v[uniq] for k, v in sm.items()}
    k_, rest = np.divmod(uniq, R * B * B)
    r_, rest = np.divmod(rest, B * B)
    b_, a_ = np.divmod(rest, B)
    names = f.scopes.names + [CTA_START, CTA_END]
    order = np.lexsort((-sm["total"], r_, k_))
    cols = {"kernel": f.kernels.names_of(k_[order]), "role": f.roles.names_of(r_[order]),
            "before": np.array(names, dtype=object)[b_[order]].astype(str),
            "after": np.array(names, dtype=object)[a_[order]].astype(str),
            "count": sm["count"][order]}
    for k in ("total", "mean", "p50", "p95", "max"):
        cols[f"{k}_ns"] = sm[k][order]
    return Table("gaps", "Idle gaps between a warp's top-level scopes", cols)


def _warp_busy(f: Frame) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per (kernel, role) key: warps with a scope, the sum of their CTAs' spans, their busy time (in
    top-level scopes); and which keys occur."""
    R, K = max(len(f.roles.names), 1), len(f.kernels.names)
    warps = np.zeros(K * R, np.int64)
    span = busy = None
    for part in f.parts():  # a loop over launches
        top = _Top(part)
        runs = top.runs
        busy_w = np.zeros(len(part.run_len))
        for sl in pieces(top.n):  # each warp's time in top-level scopes, added in order
            dur = top.col(part.end_ns, sl) - top.col(part.start_ns, sl)
            np.add.at(busy_w, repeat_runs(top.offsets, np.arange(len(busy_w)), sl), dur)
        busy_w = busy_w[runs]
        cta = part.run_cta[runs]
        key = f.kernel_of[part.li] * R + part.run_role[runs]
        warps += np.bincount(key, minlength=K * R)
        span = seq_totals(span, key, (f.c_end - f.c_start)[cta], K * R)
        busy = seq_totals(busy, key, busy_w, K * R)
    z = np.zeros(K * R)
    return warps, z if span is None else span, z if busy is None else busy, np.flatnonzero(warps)


def idle(profile: Any) -> Table:
    """Per warp role: how much of its warps' CTA spans no scope covers; plus the CTA-wide figure.

    Rows per (kernel, role): warps (that recorded at least one scope), span_ns (sum of their CTAs'
    spans), busy_ns (time inside a top-level scope), idle_ns = span - busy, idle_frac.  A row with
    role ``"any warp (CTA)"`` per kernel counts a CTA as busy while any of its warps is in a scope.
    """
    f = frame(profile)
    R = max(len(f.roles.names), 1)
    warps, span, busy, uk = _warp_busy(f)
    warps, span, busy = warps[uk], span[uk], busy[uk]
    kern = list((uk // R).tolist())
    role = list(f.roles.names_of(uk % R))
    # CTA-wide: the union of the CTA's warps' intervals
    cbusy, n_iv = f.cta_busy()
    has = f.c_ok & (n_iv > 0)
    K = len(f.kernels.names)
    c_span = np.bincount(f.c_kernel[has], weights=(f.c_end - f.c_start)[has], minlength=K)
    c_busy = np.bincount(f.c_kernel[has], weights=cbusy[has], minlength=K)
    c_n = np.bincount(f.c_kernel[has], minlength=K)
    kern += list(range(K))
    role += ["any warp (CTA)"] * K
    warps = np.r_[warps, c_n]
    span = np.r_[span, c_span]
    busy = np.r_[busy, c_busy]
    kern = np.array(kern, np.int64)
    order = np.argsort(kern, kind="stable")
    idle_ns = np.maximum(span - busy, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        frac = idle_ns / span
    cols = {"kernel": f.kernels.names_of(kern[order]),
            "role": np.array(role, dtype=object)[order].astype(str),
            "warps": warps[order], "span_ns": span[order], "busy_ns": busy[order],
            "idle_ns": idle_ns[order], "idle_frac": frac[order]}
    return Table("idle", "Idle time: CTA span not covered by any scope (per warp, summed by role)", cols,
                 ["'warps' counts warps with at least one scope; for the CTA row it counts CTAs"])
