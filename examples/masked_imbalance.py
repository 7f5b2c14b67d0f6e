"""What kperf shows of a masked-attention launch: work against time per tile and CTA, SM load, the tail.

kperf's ``imbalance`` and ``sms`` tables (``kperf.tracing.balance_tables``, through ``Profile.report()``)
measure how the launch's time spread over CTAs and SMs; what they cannot know is how much *work* each
CTA had.  The mask knows (``examples/block_masks.py``: key blocks per tile), so this module joins the
two, per launch:

- per tile: its key blocks and its ``tile`` scope's duration on warp 0: the Pearson correlation of the
  two and the least-squares ns per block (a fixed cost per tile plus a cost per block);
- per CTA and per SM: the blocks they ran (``sm_work_max_over_mean``: the SM with the most work over
  the mean), next to kperf's ``cta_max_over_mean``, ``sm_max_over_mean``, ``tail_ns`` and
  ``sm_idle_frac``;
- at the end of the launch: ``end_idle_frac``, the share of SM time between each SM's last CTA exit and
  the end of the launch (``sms.last_ns``);
- ``imbalance_loss_frac``: 1 - mean / max of the SMs' summed tile times, the share of the busiest SM's
  work that a perfect spread of the measured tiles would take off it (CTA start-up left out).

Which tile a CTA ran: ``grid``: tile = CTA id; ``lpt_grid``: the CTA id-th tile of the LPT order;
``persistent``/``persistent_grouped``: the kernel logs which CTA drew each ticket (``log_tiles=True``),
and a CTA's tiles run in ticket order, so its k-th ``tile`` interval is its k-th ticket's tile.  All of it
is numpy over the intervals and the tables; nothing per event in Python.
"""

from __future__ import annotations

import numpy as np

from kperf.examples import block_masks as bmk

IMBALANCE_KEYS = ("ctas", "sms", "waves", "kernel_span_ns", "cta_mean_ns", "cta_max_ns",
                  "cta_max_over_mean", "cta_cv", "sm_busy_mean_ns", "sm_busy_max_ns", "sm_max_over_mean",
                  "tail_ns", "sm_idle_frac")


def tiles_of_ctas(lists: bmk.BlockLists, schedule: str, ctas: np.ndarray, tile_cta: np.ndarray | None = None):
    """``(cta, tile)`` pairs in execution order within each CTA: every tile once, for the CTA ids in
    ``ctas`` (grid schedules) or as logged (persistent ones: ``tile_cta[ticket]`` is the CTA)."""
    order = bmk.schedule_order(lists, schedule)
    if schedule in ("grid", "lpt_grid"):
        return ctas, order[ctas]
    if tile_cta is None:
        raise ValueError("the persistent schedule needs the logged ticket -> CTA map (log_tiles=True)")
    tickets = np.arange(len(tile_cta))
    by_cta = np.lexsort((tickets, tile_cta))  # per CTA, tickets ascending: the order it ran them
    return tile_cta[by_cta].astype(np.int64), order[by_cta].astype(np.int64)


def pearson(x: np.ndarray, y: np.ndarray) -> float:
    x, y = np.asarray(x, float), np.asarray(y, float)
    if len(x) < 2 or x.std() == 0 or y.std() == 0:
        return float("nan")
    return float(np.corrcoef(x, y)[0, 1])


def tile_table(dec, lists: bmk.BlockLists, schedule: str, tile_cta: np.ndarray | None = None) -> dict:
    """One row per tile run: cta, sm, tile, work (key blocks), start_ns, end_ns of its ``tile`` scope on
    warp 0.  Rows whose interval is missing (lost records) are left out, and counted in ``missing``."""
    iv, _ = dec.intervals()
    tile_id = [i for i, n in (dec.scopes or {}).items() if n == "tile"]
    iv = iv[(iv["warp"] == 0) & np.isin(iv["scope"], tile_id)]
    iv = iv[np.lexsort((iv["start_ns"], iv["cta"]))]
    cta, tile = tiles_of_ctas(lists, schedule, np.arange(lists.n_tiles), tile_cta)  # grid: a CTA per tile
    # the k-th interval of a CTA is its k-th tile: rank both sides within their CTA and join on (cta, rank)
    def ranked(c):
        c = np.asarray(c, np.int64)
        first = np.r_[0, np.flatnonzero(np.diff(c)) + 1]
        return c * (1 << 24) + np.arange(len(c)) - np.repeat(first, np.diff(np.r_[first, len(c)]))
    k_iv, k_tile = ranked(iv["cta"]), ranked(cta)
    common, i_iv, i_tile = np.intersect1d(k_iv, k_tile, return_indices=True)
    work = lists.work[tile[i_tile]]
    return {"cta": cta[i_tile], "sm": iv["sm"][i_iv].astype(np.int64), "tile": tile[i_tile], "work": work,
            "start_ns": iv["start_ns"][i_iv], "end_ns": iv["end_ns"][i_iv],
            "missing": int(len(k_tile) - len(common))}


def _fit(work, dur) -> tuple[float, float]:
    """Least-squares ``dur = fixed + per_block * work``: (per_block, fixed) in ns."""
    if len(work) < 2 or np.ptp(work) == 0:
        return float("nan"), float("nan")
    per, fixed = np.polyfit(np.asarray(work, float), np.asarray(dur, float), 1)
    return float(per), float(fixed)


def summarize(profile, lists: bmk.BlockLists, schedule: str,
              tile_cta: np.ndarray | None = None) -> tuple[dict, dict]:
    """``(summary, tiles)``: the imbalance of the profile's first launch (kperf's ``imbalance`` and
    ``sms`` tables, computed when first read) and its work-time join (above); ``tiles``:
    :func:`tile_table`."""
    rep = profile.report()
    imb = rep["imbalance"].rows()[0]
    out = {"schedule": schedule, **{k: imb[k] for k in IMBALANCE_KEYS}}
    sms = rep["sms"]
    kend = float(np.max(sms["last_ns"])) if len(sms) else float("nan")
    kstart = float(np.min(sms["first_ns"])) if len(sms) else float("nan")
    n_sm = max(len(sms), 1)
    out["end_idle_frac"] = float(np.sum(kend - sms["last_ns"]) / (n_sm * (kend - kstart)))
    out["tail_frac"] = out["tail_ns"] / out["kernel_span_ns"]
    t = tile_table(profile.decoded()[0], lists, schedule, tile_cta)
    dur = t["end_ns"] - t["start_ns"]
    per, fixed = _fit(t["work"], dur)
    out.update(tiles=len(dur), tiles_missing=t["missing"], work_blocks=int(lists.work.sum()),
               work_time_r=pearson(t["work"], dur), ns_per_block=per, ns_per_tile_fixed=fixed,
               tile_max_ns=float(dur.max()) if len(dur) else float("nan"))
    sm_ids, sm_of = np.unique(t["sm"], return_inverse=True)
    sm_work = np.bincount(sm_of, weights=t["work"])
    out["sm_work_max_over_mean"] = float(sm_work.max() / sm_work.mean()) if len(sm_work) else float("nan")
    cta_ids, cta_of = np.unique(t["cta"], return_inverse=True)
    cta_work = np.bincount(cta_of, weights=t["work"])
    out["cta_work_max_over_mean"] = float(cta_work.max() / cta_work.mean()) if len(cta_work) else float("nan")
    sm_tile = np.bincount(sm_of, weights=dur)
    out["sm_tile_max_over_mean"] = float(sm_tile.max() / sm_tile.mean()) if len(sm_tile) else float("nan")
    out["imbalance_loss_frac"] = 1.0 - 1.0 / out["sm_tile_max_over_mean"]
    return out, t


_LINES = (("kernel span", "kernel_span_ns", "{:.1f} us", 1e-3), ("CTAs / SMs / waves", None, None, None),
          ("tail (first SM out of work -> end)", "tail_ns", "{:.1f} us", 1e-3),
          ("tail / span", "tail_frac", "{:.1%}", 1), ("SM idle share", "sm_idle_frac", "{:.1%}", 1),
          ("SM idle at the end", "end_idle_frac", "{:.1%}", 1),
          ("CTA span max / mean", "cta_max_over_mean", "{:.2f}", 1), ("CTA span cv", "cta_cv", "{:.2f}", 1),
          ("SM busy max / mean", "sm_max_over_mean", "{:.3f}", 1),
          ("SM work max / mean (blocks)", "sm_work_max_over_mean", "{:.3f}", 1),
          ("tile work-time correlation r", "work_time_r", "{:.3f}", 1),
          ("ns per key block (fit)", "ns_per_block", "{:.0f}", 1),
          ("SM tile time max / mean", "sm_tile_max_over_mean", "{:.3f}", 1),
          ("busiest SM's time a perfect spread saves", "imbalance_loss_frac", "{:.1%}", 1))


def format_summary(s: dict) -> str:
    """The summary as aligned lines (what the example prints and the docs quote)."""
    lines = []
    for label, key, fmt, scale in _LINES:
        if key is None:
            lines.append(f"  {label:40s} {s['ctas']} / {s['sms']} / {s['waves']:.1f}")
        elif key in s and s[key] == s[key]:
            lines.append(f"  {label:40s} " + fmt.format(s[key] * scale))
    return "\n".join(lines)
