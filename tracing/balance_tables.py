"""Statistics tables about how work spread over the GPU: CTA spans, SMs, load imbalance per launch.

Inputs and outputs as in :mod:`kperf.tracing.scope_tables`.  They read the frame's CTA rows (one per
CTA, small) and each CTA's busy time (:meth:`~kperf.tracing.frame.Frame.cta_busy`), never the
intervals themselves.  What each number means: ``docs/statistics.md``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .frame import Frame, frame
from .interval_algebra import union
from .labels import kernel_name
from .tables import Table


def cta_spans(profile: Any) -> Table:
    """One row per CTA that ran: where, when, how long, and how much of it some scope covered.

    Columns: kernel, launch, cta, sm, start_ns, end_ns, span_ns (entry to exit), events, intervals,
    busy_ns (time covered by a scope on at least one of its warps), idle_ns (span - busy).
    """
    f = frame(profile)
    busy, n_iv = f.cta_busy()
    rows = np.flatnonzero(f.c_ok)
    span = f.c_end - f.c_start
    numbers = np.array([d.launch for d in f.launches], np.int64)
    cols = {
        "kernel": f.kernels.names_of(f.c_kernel[rows]),
        "launch": numbers[f.c_li[rows]] if len(rows) else np.zeros(0, np.int64),
        "cta": f.c_cta[rows], "sm": f.c_sm[rows],
        "start_ns": f.c_start[rows], "end_ns": f.c_end[rows], "span_ns": span[rows],
        "events": f.c_events[rows], "intervals": n_iv[rows],
        "busy_ns": busy[rows], "idle_ns": np.maximum(span[rows] - busy[rows], 0.0),
    }
    return Table("ctas", "CTA spans", cols)


def sm_rows(f: Frame) -> dict[str, np.ndarray]:
    """Per (launch index, SM), sorted: li, sm, ctas, busy (union of CTA spans), first entry, last exit."""
    ok = np.flatnonzero(f.c_ok)
    key = f.c_li[ok] * (1 << 20) + f.c_sm[ok]
    uk, inv = np.unique(key, return_inverse=True)
    inv = inv.reshape(-1)
    seg_g, seg_s, seg_e = union(inv, f.c_start[ok], f.c_end[ok])
    first = np.full(len(uk), np.inf)
    last = np.full(len(uk), -np.inf)
    np.minimum.at(first, inv, f.c_start[ok])
    np.maximum.at(last, inv, f.c_end[ok])
    return {"li": uk >> 20, "sm": uk & ((1 << 20) - 1), "ctas": np.bincount(inv, minlength=len(uk)),
            "busy": np.bincount(seg_g, weights=seg_e - seg_s, minlength=len(uk)),
            "first": first, "last": last}


def sm_stats(profile: Any) -> Table:
    """One row per (launch, SM): CTAs run, busy time (union of its CTAs' spans), first entry, last exit,
    and the SM clock rate measured for the launch (GHz, NaN when unknown)."""
    f = frame(profile)
    r = sm_rows(f)
    li, sm = r["li"], r["sm"]
    ghz = np.full(len(li), np.nan)
    for i, d in enumerate(f.launches):  # a loop over launches
        sc = d.sm_clocks
        mine = np.flatnonzero(li == i)
        if len(sc) and len(mine):
            j = np.minimum(np.searchsorted(sc["sm"], sm[mine]), len(sc) - 1)
            hit = sc["sm"][j] == sm[mine]
            ghz[mine[hit]] = sc["ghz"][j[hit]]
    k_of = np.array([f.kernels.code(kernel_name(d)) for d in f.launches], np.int64)
    n_of = np.array([d.launch for d in f.launches], np.int64)
    cols = {"kernel": f.kernels.names_of(k_of[li]) if len(li) else np.zeros(0, "U1"),
            "launch": n_of[li] if len(li) else np.zeros(0, np.int64),
            "sm": sm, "ctas": r["ctas"], "busy_ns": r["busy"], "first_ns": r["first"], "last_ns": r["last"],
            "ghz": ghz}
    return Table("sms", "SMs", cols)


def launch_bounds(f: Frame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per launch: CTAs that ran, first CTA entry, last CTA exit (inf / -inf for a launch where none ran)."""
    L = len(f.launches)
    ok = f.c_ok
    cli = f.c_li[ok]
    k_start = np.full(L, np.inf)
    k_end = np.full(L, -np.inf)
    np.minimum.at(k_start, cli, f.c_start[ok])
    np.maximum.at(k_end, cli, f.c_end[ok])
    return np.bincount(cli, minlength=L), k_start, k_end


def kernel_spans(f: Frame) -> np.ndarray:
    """Per launch, its kernel span: first CTA entry to last CTA exit, ns (NaN where no CTA ran)."""
    n, k_start, k_end = launch_bounds(f)
    with np.errstate(invalid="ignore"):
        return np.where(n > 0, k_end - k_start, np.nan)


def imbalance(profile: Any) -> Table:
    """Load imbalance per launch, across CTAs and across SMs.

    Columns: kernel, launch, ctas, sms, waves (ctas / sms), kernel_span_ns (first CTA entry to last
    CTA exit); CTA spans: mean, max, ``cta_max_over_mean``, ``cta_cv`` (std / mean); SM busy time
    (union of the SM's CTA spans): mean, max, ``sm_max_over_mean``; ``tail_ns``: from the moment the
    first SM ran out of work (its last CTA ended) to the end of the launch; ``sm_idle_frac``: the
    share of (SMs used x kernel span) during which an SM ran no CTA of the launch.
    """
    f = frame(profile)
    r = sm_rows(f)
    L = len(f.launches)
    ok = f.c_ok
    cli = f.c_li[ok]
    span = (f.c_end - f.c_start)[ok]
    n, k_start, k_end = launch_bounds(f)
    tot = np.bincount(cli, weights=span, minlength=L)
    sq = np.bincount(cli, weights=span**2, minlength=L)
    mx = np.full(L, np.nan)
    np.fmax.at(mx, cli, span)
    n_sm = np.bincount(r["li"], minlength=L)
    sb_tot = np.bincount(r["li"], weights=r["busy"], minlength=L)
    sb_max = np.full(L, np.nan)
    sm_done = np.full(L, np.inf)
    np.fmax.at(sb_max, r["li"], r["busy"])
    np.minimum.at(sm_done, r["li"], r["last"])
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = tot / n
        kspan = kernel_spans(f)
        sb_mean = sb_tot / n_sm
        cols = {
            "kernel": np.array([kernel_name(d) for d in f.launches] or [""], dtype=object)[:L].astype(str),
            "launch": np.array([d.launch for d in f.launches], np.int64),
            "ctas": n, "sms": n_sm, "waves": n / n_sm, "kernel_span_ns": kspan,
            "cta_mean_ns": mean, "cta_max_ns": mx, "cta_max_over_mean": mx / mean,
            "cta_cv": np.sqrt(np.maximum(sq / n - mean**2, 0.0)) / mean,
            "sm_busy_mean_ns": sb_mean, "sm_busy_max_ns": sb_max, "sm_max_over_mean": sb_max / sb_mean,
            "tail_ns": np.where(n > 0, k_end - sm_done, np.nan),
            "sm_idle_frac": 1.0 - sb_tot / (n_sm * kspan),
        }
    return Table("imbalance", "Load imbalance across CTAs and SMs (per launch)", cols)
