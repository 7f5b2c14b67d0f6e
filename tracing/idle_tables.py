"""Statistics tables about time no scope covers: idle gaps (bubbles) between a warp's scopes, and idle
time per warp role and per CTA.

Inputs and outputs as in :mod:`kperf.tracing.scope_tables`; what each number means:
``docs/statistics.md``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .frame import frame, top_level
from .group_stats import group_summary
from .interval_algebra import union
from .tables import Table

CTA_START = "(CTA start)"  # the boundary before a warp's first scope in the gaps table
CTA_END = "(CTA end)"  # the boundary after its last


def gaps(profile: Any) -> Table:
    """Idle gaps (bubbles) of each warp between consecutive top-level scopes, by boundary and role.

    A warp's top-level scopes are those not nested in another scope of the same warp.  Between two
    consecutive ones, ``before`` -> ``after``, the warp is in no scope; the gap before its first
    scope counts from the CTA's entry (``(CTA start)``), the gap after its last to the CTA's exit
    (``(CTA end)``).  Columns: kernel, role, before, after, count, total/mean/p50/p95/max ns.
    """
    f = frame(profile)
    top = top_level(f)
    g = f.gwarp[top]
    S = len(f.scopes.names)
    start_code, end_code = S, S + 1
    same = g[1:] == g[:-1]
    inner = np.flatnonzero(same)
    first = np.flatnonzero(np.r_[True, ~same]) if len(top) else np.zeros(0, np.int64)
    last = np.flatnonzero(np.r_[~same, True]) if len(top) else np.zeros(0, np.int64)
    cs = f.c_start[f.gcta[top]]
    ce = f.c_end[f.gcta[top]]
    before = np.concatenate([f.scope[top][inner], np.full(len(first), start_code), f.scope[top][last]])
    after = np.concatenate([f.scope[top][inner + 1], f.scope[top][first], np.full(len(last), end_code)])
    gap = np.concatenate([f.start_ns[top][inner + 1] - f.end_ns[top][inner],
                          f.start_ns[top][first] - cs[first], ce[last] - f.end_ns[top][last]])
    gap = np.maximum(gap, 0.0)
    pos = np.concatenate([inner, first, last])
    kern, role = f.kernel[top][pos], f.role[top][pos]
    R, B = max(len(f.roles.names), 1), S + 2
    key = ((kern * R + role) * B + before) * B + after
    uniq, gid = np.unique(key, return_inverse=True)
    sm = group_summary(gid.reshape(-1), len(uniq), gap)
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


def idle(profile: Any) -> Table:
    """Per warp role: how much of its warps' CTA spans no scope covers; plus the CTA-wide figure.

    Rows per (kernel, role): warps (that recorded at least one scope), span_ns (sum of their CTAs'
    spans), busy_ns (time inside a top-level scope), idle_ns = span - busy, idle_frac.  A row with
    role ``"any warp (CTA)"`` per kernel counts a CTA as busy while any of its warps is in a scope.
    """
    f = frame(profile)
    top = top_level(f)
    gw = f.gwarp[top]
    uw, inv = np.unique(gw, return_inverse=True)
    busy_w = np.bincount(inv.reshape(-1), weights=f.dur_ns[top], minlength=len(uw))
    first = np.zeros(len(uw), np.int64)
    if len(top):
        first[inv.reshape(-1)[::-1]] = np.arange(len(top))[::-1]
    gc = f.gcta[top][first]
    span_w = (f.c_end - f.c_start)[gc]
    k_w, r_w = f.kernel[top][first], f.role[top][first]
    R = max(len(f.roles.names), 1)
    key = k_w * R + r_w
    uk, ginv = np.unique(key, return_inverse=True)
    ginv = ginv.reshape(-1)
    warps = np.bincount(ginv, minlength=len(uk))
    span = np.bincount(ginv, weights=span_w, minlength=len(uk))
    busy = np.bincount(ginv, weights=busy_w, minlength=len(uk))
    kern = list((uk // R).tolist())
    role = list(f.roles.names_of(uk % R))
    # CTA-wide: union over the CTA's warps
    seg_g, seg_s, seg_e = union(f.gcta, f.start_ns, f.end_ns)
    nc = len(f.c_ok)
    cbusy = np.bincount(seg_g, weights=seg_e - seg_s, minlength=nc)
    has = f.c_ok & (np.bincount(f.gcta, minlength=nc) > 0)
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
