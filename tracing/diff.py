"""Compare two profiles scope by scope: ``kperf diff A B`` (say a vanilla and an improved FA3).

Scopes are matched by name (``by_kernel=True``: by kernel and name); a scope found on one side only
is listed with status ``only A`` / ``only B``.  Counts and totals are per launch (each side's sum
divided by its number of launches), so a profile of 3 launches compares fairly with one of 1;
mean, p50 and p95 are over all intervals.  ``*_change_frac`` is ``(B - A) / A``: negative is faster
(less time) in B.

Besides the scopes: bubbles (gaps matched by warp role and boundary, see
:func:`kperf.tracing.stats.gaps`), idle time per warp role, and launch-level figures (kernel span,
CTA span, SM idle share).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from kperf.dialect.errors import KperfError

from .balance_tables import imbalance
from .frame import Frame, frame
from .idle_tables import gaps, idle
from .progress import progress
from .scope_tables import scope_stats
from .tables import Table, Tables


@dataclasses.dataclass
class Diff(Tables):
    """The comparison: ``scopes``, ``gaps``, ``idle`` and ``launch`` tables (see ``Tables``: print, CSV
    as ``diff_<table>.csv``, pandas); A and B's labels."""

    labels: tuple[str, str]
    tables: dict[str, Table]
    csv_prefix = "diff_"

    def to_text(self, time_unit: str = "us", max_rows: int | None = 40) -> str:
        a, b = self.labels
        head = f"A = {a}\nB = {b}\nchange = (B - A) / A; counts and totals are per launch"
        return "\n\n".join([head] + [_narrow(t).to_text(time_unit, max_rows) for t in self.tables.values()])


_TEXT_COLUMNS = {  # what the text shows (the data keeps every column)
    "scopes": ["kernel", "scope", "status", "count_a", "count_b", "total_a_ns", "total_b_ns",
               "total_change_frac", "mean_a_ns", "mean_b_ns", "mean_change_frac", "p95_change_frac"],
    "gaps": ["role", "before", "after", "status", "count_a", "count_b", "total_a_ns", "total_b_ns",
             "total_change_frac", "mean_a_ns", "mean_b_ns"],
    "idle": ["role", "status", "span_a_ns", "span_b_ns", "idle_a_ns", "idle_b_ns", "idle_change_frac",
             "idle_share_a_frac", "idle_share_b_frac"],
    "launch": ["metric", "unit", "value_a", "value_b", "value_change", "value_change_frac"],
}


def _narrow(t: Table) -> Table:
    keep = [c for c in _TEXT_COLUMNS.get(t.name, t.columns) if c in t.columns]
    return Table(t.name, t.title, {c: t.columns[c] for c in keep}, list(t.notes))


def _change(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    with np.errstate(invalid="ignore", divide="ignore"):
        d = b - a
        return d, np.where(a != 0, d / np.abs(a), np.nan)


def _match(ta: Table, tb: Table, keys: list[str], values: list[str], per_launch: dict[str, tuple[int, int]],
           labels: tuple[str, str], name: str, title: str) -> Table:
    """Outer join of two tables on ``keys``; ``values`` columns get ``_a``/``_b``/change columns."""
    ka = list(zip(*(ta[k].tolist() for k in keys), strict=True)) if len(ta) else []
    kb = list(zip(*(tb[k].tolist() for k in keys), strict=True)) if len(tb) else []
    ia = {k: i for i, k in enumerate(ka)}
    ib = {k: i for i, k in enumerate(kb)}
    allk = ka + [k for k in kb if k not in ia]  # A's order first (its biggest first), then B's extras
    pa = np.array([ia.get(k, -1) for k in allk], np.int64)
    pb = np.array([ib.get(k, -1) for k in allk], np.int64)
    cols: dict[str, np.ndarray] = {}
    for j, k in enumerate(keys):
        cols[k] = np.array([x[j] for x in allk], dtype=object).astype(str) if allk else np.zeros(0, "U1")
    present_a, present_b = pa >= 0, pb >= 0
    for v in values:
        div_a, div_b = per_launch.get(v, (1, 1))
        col_a = ta[v].astype(np.float64) / div_a if len(ta) else np.zeros(0)
        col_b = tb[v].astype(np.float64) / div_b if len(tb) else np.zeros(0)
        va = np.where(pa >= 0, col_a[np.maximum(pa, 0)] if len(col_a) else np.nan, np.nan)
        vb = np.where(pb >= 0, col_b[np.maximum(pb, 0)] if len(col_b) else np.nan, np.nan)
        if v == "count":  # a scope that did not run on a side ran 0 times there, for 0 ns
            va, vb = np.nan_to_num(va), np.nan_to_num(vb)
            present_a, present_b = va > 0, vb > 0
        if v == "total_ns":
            va, vb = np.nan_to_num(va), np.nan_to_num(vb)
        unit = next((u for u in ("_ns", "_frac") if v.endswith(u)), "")
        base = v[: len(v) - len(unit)]
        d, frac = _change(va, vb)
        if unit == "_frac":  # a share: A, B and the change in points (not relative)
            cols[f"{base}_share_a_frac"] = va
            cols[f"{base}_share_b_frac"] = vb
            cols[f"{base}_share_change_frac"] = d
            continue
        cols[f"{base}_a{unit}"] = va
        cols[f"{base}_b{unit}"] = vb
        cols[f"{base}_change{unit}"] = d
        cols[f"{base}_change_frac"] = frac
    status = np.where(present_a & present_b, "both",
                      np.where(present_a, f"only A ({labels[0]})", f"only B ({labels[1]})"))
    cols = {**{k: cols[k] for k in keys}, "status": status.astype(str),
            **{k: v for k, v in cols.items() if k not in keys}}
    return Table(name, title, cols)


def diff(a: Any, b: Any, *, labels: tuple[str, str] = ("A", "B"), by_kernel: bool = False) -> Diff:
    """Compare profile ``b`` against profile ``a`` (each: launches, a Profile, or a saved profile path).

    Args:
        labels: names for A and B in the output (e.g. file names).
        by_kernel: match scopes by (kernel, scope name) instead of scope name alone.
    """
    fa, fb = frame(a), frame(b)
    for f, lab in ((fa, labels[0]), (fb, labels[1])):
        if not f.launches:
            raise KperfError(f"profile {lab} holds no launches", fix="profile a kernel that has kperf scopes")
    na, nb = len(fa.launches), len(fb.launches)
    per = {v: (na, nb) for v in ("count", "total_ns", "span_ns", "busy_ns", "idle_ns")}
    # gaps and idle time are matched by role across kernels; scopes too unless by_kernel
    oa, ob = fa.one_kernel(), fb.one_kernel()
    steps = {"scopes": lambda f, o: scope_stats(f if by_kernel else o, cycles=False),  # ns only
             "gaps": lambda f, o: gaps(o), "idle": lambda f, o: idle(o),
             "launch": lambda f, o: _launch_means(f)}
    done: dict[str, list[Table]] = {}
    with progress(2 * len(steps), "diff", events=fa.n_intervals + fb.n_intervals, unit="table") as bar:
        for name, step in steps.items():  # A's table, then B's
            bar.set_postfix_str(name)
            done[name] = [step(fa, oa), step(fb, ob)]
            bar.update(2)
    keys = ["kernel", "scope"] if by_kernel else ["scope"]
    tables = {
        "scopes": _match(*done["scopes"], keys, ["count", "total_ns", "mean_ns", "p50_ns", "p95_ns",
                                                 "max_ns"], per, labels, "scopes", "Scopes: A -> B"),
        "gaps": _match(*done["gaps"], ["role", "before", "after"],
                       ["count", "total_ns", "mean_ns", "p95_ns"], per, labels, "gaps",
                       "Bubbles (idle gaps) by warp role and boundary: A -> B"),
        "idle": _match(*done["idle"], ["role"], ["span_ns", "busy_ns", "idle_ns", "idle_frac"], per,
                       labels, "idle", "Idle time by warp role: A -> B"),
        "launch": _match(*done["launch"], ["metric", "unit"], ["value"], {}, labels,
                         "launch", "Launches (mean over launches): A -> B"),
    }
    return Diff(labels, tables)


def _launch_means(f: Frame) -> Table:
    im = imbalance(f)
    metrics = [("kernel span", "ns", "kernel_span_ns"), ("CTA span mean", "ns", "cta_mean_ns"),
               ("CTA span max", "ns", "cta_max_ns"), ("CTA max / mean", "", "cta_max_over_mean"),
               ("tail", "ns", "tail_ns"), ("SM idle share", "%", "sm_idle_frac"), ("CTAs", "", "ctas")]
    vals = [float(np.nanmean(im[col])) * (100.0 if unit == "%" else 1.0)
            if len(im) and np.isfinite(im[col]).any() else np.nan for _, unit, col in metrics]
    return Table("launch", "", {"metric": np.array([m[0] for m in metrics]),
                                "unit": np.array([m[1] for m in metrics]), "value": np.array(vals)})


__all__ = ["Diff", "diff"]
