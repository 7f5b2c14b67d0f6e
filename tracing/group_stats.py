"""Order statistics per group with numpy: one sort for all groups, no Python loop over groups.

The statistics tables reduce durations (and gaps) per (kernel, scope), (kernel, role, scope) or
(kernel, role, boundary) key with :func:`group_summary`.
"""

from __future__ import annotations

import numpy as np


def group_summary(gid: np.ndarray, n: int, x: np.ndarray) -> dict[str, np.ndarray]:
    """count, total, mean, p50, p95, max of ``x`` per group id in ``[0, n)`` (NaN for empty groups).

    Percentiles interpolate linearly between order statistics, as ``np.percentile``'s default.
    NaN values of ``x`` are left out.
    """
    keep = ~np.isnan(x)
    if not keep.all():
        gid, x = gid[keep], x[keep]
    order = np.lexsort((x, gid))
    xs = x[order]
    cnt = np.bincount(gid, minlength=n).astype(np.int64)
    first = np.cumsum(cnt) - cnt
    total = np.bincount(gid, weights=x, minlength=n).astype(np.float64)
    has = cnt > 0
    out = {"count": cnt, "total": np.where(has, total, 0.0)}
    with np.errstate(invalid="ignore", divide="ignore"):
        out["mean"] = np.where(has, total / np.maximum(cnt, 1), np.nan)
    for q, name in ((0.5, "p50"), (0.95, "p95"), (1.0, "max")):
        pos = (cnt - 1) * q
        lo = np.floor(pos).astype(np.int64)
        hi = np.minimum(lo + 1, cnt - 1)
        frac = pos - lo
        a = xs[np.clip(first + lo, 0, max(len(xs) - 1, 0))] if len(xs) else np.zeros(n)
        b = xs[np.clip(first + hi, 0, max(len(xs) - 1, 0))] if len(xs) else np.zeros(n)
        out[name] = np.where(has, a + (b - a) * frac, np.nan)
    return out
