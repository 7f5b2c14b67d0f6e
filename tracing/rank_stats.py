"""Statistics of a merged multi-GPU profile: per rank, per kernel across ranks, per step, and the clocks.

A job moves at the pace of its slowest rank: every collective waits for the last rank to arrive.  So
the tables look for that rank.  A *step* is the k-th launch of a kernel on every rank (:mod:`.merge`);
its *straggler* is the rank whose launch ended last, and

- ``late_ns``: how much later than the median rank's launch it ended (what a collective right after
  the step waits for it, compared with a typical rank);
- ``margin_ns``: how much later than the runner-up's; ``sure`` when that margin exceeds the two
  ranks' alignment error bounds (else the order of the two may be the clocks', not the GPUs');
- ``late_start_ns`` and ``slow_ns``: the straggler's start after the median start and its duration
  over the median duration, which tell a rank that started late (host-side: data loading, Python,
  an earlier collective) from one whose GPU ran slower (a slower or throttled GPU, more work);
- ``imbalance_frac``: the step's longest duration over its mean duration, minus 1.

Tables (:class:`RankReport`): ``clocks`` (each rank's offset to rank 0 at session start and end, its
error bound, the drift, and ``host_clock``: ``shared`` for a rank on rank 0's machine, ``barriers``
for one tied to it through the exchange), ``ranks`` and ``kernels`` (where a straggler counts only
when ``sure``), ``steps`` (the latest straggler first).  Everything is grouped with numpy sorts over
the launch table; nothing loops over launches in Python.
"""

from __future__ import annotations

import numpy as np

from .merge import Merged
from .tables import Table, Tables


def _groups(key: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(order, group of each sorted row, first sorted row of each group) for an int key."""
    order = np.argsort(key, kind="stable")
    k = key[order]
    first = np.r_[0, np.flatnonzero(k[1:] != k[:-1]) + 1] if len(k) else np.zeros(0, np.int64)
    gid = np.repeat(np.arange(len(first)), np.diff(np.r_[first, len(k)]))
    return order, gid, first


def _ordered(gid: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rows sorted by (group, value); each group's first row and size in that order."""
    o = np.lexsort((v, gid))
    g = gid[o]
    first = np.r_[0, np.flatnonzero(g[1:] != g[:-1]) + 1] if len(g) else np.zeros(0, np.int64)
    return o, first, np.diff(np.r_[first, len(g)])


def group_median(gid: np.ndarray, v: np.ndarray) -> np.ndarray:
    """The median of ``v`` per group (``gid`` = 0..n-1, every group non-empty)."""
    o, first, n = _ordered(gid, v.astype(np.float64))
    s = v.astype(np.float64)[o]
    return (s[first + (n - 1) // 2] + s[first + n // 2]) / 2


def _step_table(m: Merged) -> tuple[Table, dict[str, np.ndarray]]:
    t = m.launches
    n_k = int(t["kernel"].max()) + 1 if len(t) else 1
    key = t["step"].astype(np.int64) * n_k + t["kernel"]
    order, gid_sorted, first = _groups(key)
    gid = np.empty(len(t), np.int64)
    gid[order] = gid_sorted
    base = t["start_ns"].min()  # absolute ns (about 1.7e18) are beyond float64's precision: relative ones
    end, start, dur = t["end_ns"] - base, t["start_ns"] - base, t["duration_ns"]
    o, gfirst, size = _ordered(gid, end)  # by end time within each step: the last one is the straggler
    last, second = o[gfirst + size - 1], o[np.maximum(gfirst + size - 2, gfirst)]
    med_end, med_start, med_dur = group_median(gid, end), group_median(gid, start), group_median(gid, dur)
    mean_dur = np.bincount(gid, dur) / size
    max_dur = np.maximum.reduceat(dur[o], gfirst)
    many = size > 1
    nan = np.where(many, 1.0, np.nan)
    margin = (end[last] - end[second]) * nan
    err = t["err_ns"][last] + t["err_ns"][second]
    cols = {
        "kernel": np.array(m.kernels, dtype=object)[t["kernel"][last]].astype(str),
        "step": t["step"][last].astype(np.int64), "ranks": size.astype(np.int64),
        "straggler": t["rank"][last].astype(np.int64),
        "late_ns": (end[last] - med_end) * nan, "margin_ns": margin,
        "sure": many & (margin > err),
        "late_start_ns": (start[last] - med_start) * nan, "slow_ns": (dur[last] - med_dur) * nan,
        "spread_ns": (end[last] - end[o[gfirst]]) * nan,
        "median_duration_ns": med_dur, "imbalance_frac": max_dur / mean_dur - 1,
        "err_ns": err,
    }
    by = np.lexsort((cols["step"], cols["kernel"], -np.nan_to_num(cols["late_ns"], nan=-np.inf)))
    table = Table("steps", "steps (the k-th launch of a kernel on every rank), latest straggler first",
                  {k: v[by] for k, v in cols.items()})
    if not many.any():
        table.notes.append("every step ran on one rank only: nothing to compare across ranks")
    return table, {"gid": gid, "med_dur": med_dur, "mean_dur": mean_dur, "size": size, "cols": cols}


def _clock_table(m: Merged) -> Table:
    pts = [(r.clock.points[0], r.clock.points[-1]) if r.clock.points else (None, None) for r in m.ranks]
    nan = float("nan")
    cols = {
        "rank": np.array([r.rank for r in m.ranks], np.int64),
        "host": np.array([r.host or "-" for r in m.ranks]),
        "device": np.array([r.device or "-" for r in m.ranks]),
        "gpu_probe": np.array([r.gpu_method for r in m.ranks]),
        "host_clock": np.array([r.clock.host_link for r in m.ranks]),
        "offset_start_ns": np.array([p.delta.est if p else nan for p, _ in pts], np.float64),
        "err_start_ns": np.array([p.delta.err if p else nan for p, _ in pts]),
        "offset_end_ns": np.array([q.delta.est if q else nan for _, q in pts], np.float64),
        "err_end_ns": np.array([q.delta.err if q else nan for _, q in pts]),
        "drift_ppm": np.array([r.clock.drift_ppm for r in m.ranks]),
    }
    table = Table("clocks", "clocks: offset of each rank's globaltimer to rank 0's (added to its times), "
                  "with its error bound", cols)
    if not m.aligned:
        table.notes.append("not aligned: each rank's times are its own globaltimer's")
    return table


def _rank_table(m: Merged, st: dict) -> Table:
    t, ranks = m.launches, np.array([r.rank for r in m.ranks], np.int64)
    ri = np.searchsorted(ranks, t["rank"])
    n = len(ranks)
    count = np.bincount(ri, minlength=n)
    multi = st["size"][st["gid"]] > 1
    ratio = t["duration_ns"] / st["mean_dur"][st["gid"]]
    c = st["cols"]
    strag = np.searchsorted(ranks, c["straggler"][c["sure"]])  # last beyond the clocks' error only
    late = c["late_ns"][c["sure"]]
    n_strag = np.bincount(strag, minlength=n)
    with np.errstate(invalid="ignore", divide="ignore"):
        cols = {
            "rank": ranks, "launches": count.astype(np.int64),
            "busy_ns": np.bincount(ri, t["duration_ns"], minlength=n),
            "duration_over_mean": np.bincount(ri[multi], ratio[multi], minlength=n)
            / np.bincount(ri[multi], minlength=n),
            "straggler_steps": n_strag.astype(np.int64),
            "mean_late_ns": np.bincount(strag, late, minlength=n) / n_strag,
            "lost_records": np.bincount(ri, t["lost"].astype(np.float64), minlength=n).astype(np.int64),
        }
    return Table("ranks", "ranks: launches, GPU busy time, duration against the step's mean, steps it "
                 "was surely the straggler of (last by more than the clocks' error bound)", cols)


def _kernel_table(m: Merged, steps: Table) -> Table:
    c = steps.columns
    names = np.array(m.kernels)
    kid = np.searchsorted(np.sort(names), c["kernel"])
    n = len(names)
    many, sure = c["ranks"] > 1, c["sure"]
    n_steps = np.bincount(kid, minlength=n)
    with np.errstate(invalid="ignore", divide="ignore"):
        imb = np.bincount(kid, np.nan_to_num(c["imbalance_frac"]), minlength=n) / n_steps
        worst = np.full(n, np.nan)
        np.fmax.at(worst, kid, c["imbalance_frac"])
        late = np.bincount(kid[many], c["late_ns"][many], minlength=n) / np.bincount(kid[many], minlength=n)
    # the most frequent straggler of each kernel: count (kernel, rank) pairs
    width = int(c["straggler"].max(initial=0)) + 1
    pair = kid[sure].astype(np.int64) * width + c["straggler"][sure]
    top = np.full(n, -1, np.int64)
    top_n = np.zeros(n, np.int64)
    if len(pair):
        u, k = np.unique(pair, return_counts=True)
        uk, ur = u // width, u % width
        best = np.lexsort((ur, -k, uk))  # per kernel: most steps first, ties by rank
        firsts = best[np.r_[0, np.flatnonzero(np.diff(uk[best])) + 1]]
        top[uk[firsts]], top_n[uk[firsts]] = ur[firsts], k[firsts]
    cols = {"kernel": np.sort(names), "steps": n_steps.astype(np.int64),
            "mean_imbalance_frac": imb, "worst_imbalance_frac": worst, "mean_late_ns": late,
            "top_straggler": top, "top_straggler_steps": top_n}
    return Table("kernels", "kernels across ranks: imbalance of durations per step, how late the straggler "
                 "ended, the rank most often surely last (-1: none)", cols)


class RankReport(Tables):
    """The tables of a merged profile: ``clocks``, ``ranks``, ``kernels``, ``steps``."""

    csv_prefix = "merge_"

    def __init__(self, merged: Merged):
        self.merged = merged
        steps, st = _step_table(merged)
        self.tables = {"clocks": _clock_table(merged), "ranks": _rank_table(merged, st),
                       "kernels": _kernel_table(merged, steps), "steps": steps}

    def header(self) -> str:
        """What was merged, and the notes on it."""
        m = self.merged
        head = [f"{len(m.ranks)} ranks, {len(m.launches)} launches, {len(m.kernels)} kernels, clocks "
                + ("aligned to rank 0's" if m.aligned else "not aligned")]
        return "\n".join(head + [f"note: {n}" for n in m.notes])

    def to_text(self, time_unit: str = "us", max_rows: int | None = 40, include=None) -> str:
        """The header and the tables (``include``: their names, default all)."""
        names = list(self.tables) if include is None else list(include)
        return "\n\n".join([self.header()] + [self.tables[n].to_text(time_unit, max_rows) for n in names])


def rank_report(merged: Merged) -> RankReport:
    """Every table of a merged profile (see the module docstring)."""
    return RankReport(merged)
