"""Statistics tables about scopes: durations per scope and per warp role, and overlap between scopes.

Every function takes what :func:`kperf.tracing.frame.frame` takes (launches, a ``kperf.Profile``, a
saved profile's path, or a built :class:`~kperf.tracing.frame.Frame`) and returns a
:class:`~kperf.tracing.tables.Table`.  What each number means: ``docs/statistics.md``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from kperf.dialect.errors import KperfError

from .frame import frame
from .group_stats import group_summary
from .interval_algebra import covered, union
from .tables import Table


def scope_stats(profile: Any, *, by: str = "scope") -> Table:
    """Duration statistics per scope (``by="scope"``) or per warp role and scope (``by="role"``).

    Columns: kernel, [role,] scope, count, total/mean/p50/p95/max in ns and in cycles, and ``share``:
    the scope's total as a fraction of all intervals' total in the same kernel (nested scopes count
    in their parents too, so shares can add up to more than 1).  Scopes of the scope table that never
    ran are listed with count 0 (``by="scope"``).
    """
    if by not in ("scope", "role"):
        raise KperfError(f"scope_stats(by={by!r})", fix="use by='scope' or by='role'")
    f = frame(profile)
    S, R = len(f.scopes.names), max(len(f.roles.names), 1)
    key = f.kernel * S + f.scope
    if by == "role":
        key = (f.kernel * R + f.role) * S + f.scope
    n = len(f.kernels.names) * S * (R if by == "role" else 1)
    ns = group_summary(key, n, f.dur_ns)
    cy = group_summary(key, n, f.dur_cycles)
    present = ns["count"] > 0
    if by == "scope":
        for kc, sc in f.declared:
            present[kc * S + sc] = True
    rows = np.flatnonzero(present)
    kern = rows // (S * (R if by == "role" else 1))
    role = (rows // S) % R
    scope = rows % S
    ktotal = np.bincount(f.kernel, weights=f.dur_ns, minlength=len(f.kernels.names))
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
    for k in ("total", "mean", "p50", "p95", "max"):
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
    dur = f.dur_ns
    a_total = np.bincount(f.kernel * S + f.scope, weights=dur, minlength=K * S)
    cov = np.zeros((K * S, S))
    ka_all = f.kernel * S + f.scope
    for b in np.unique(f.scope).tolist():  # a loop over scopes
        sel = f.scope == b
        seg = union(f.gcta[sel], f.start_ns[sel], f.end_ns[sel])
        q = ~sel  # B's own intervals are not asked about B
        c = covered(*seg, f.gcta[q], f.start_ns[q], f.end_ns[q])
        cov[:, b] = np.bincount(ka_all[q], weights=c, minlength=K * S)
    ka, b_ = np.nonzero(cov >= 0)
    kern, a = ka // S, ka % S
    present_b = np.zeros(K * S, bool)
    present_b[np.unique(f.kernel * S + f.scope)] = True
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
