"""The per-kernel summary of a profile of many launches: one row per kernel, whatever its launches.

A session over a training step holds hundreds of launches of dozens of kernels; the per-launch tables
(``imbalance``, ``sms``) and per-launch lines then bury the picture.  :func:`kernel_stats` sums the
launches up per kernel: how often it ran, its CTAs, events, lost and rejected records, its kernel span
per launch (first CTA entry to last CTA exit, as the ``imbalance`` table defines it:
:func:`~kperf.tracing.balance_tables.kernel_spans`) and the launch facts (``DecodedLaunch.info``) that
all its launches share, e.g. the graph ops an Inductor kernel fused.  :func:`launch_lines` is the rule
that keeps a text summary readable: past :data:`MANY_LAUNCHES` launches only the launches that lost or
rejected records or have problems get their own lines.

Inputs and outputs as in :mod:`kperf.tracing.scope_tables`; everything is computed from per-launch
numbers and the frame's CTA rows (a loop over launches reads each one's counters and ``info``), never
from the events.  What each number means: ``docs/statistics.md``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from ._common import fmt_ids, plural
from .balance_tables import kernel_spans
from .frame import frame
from .group_stats import group_summary
from .launch_args import info_text
from .tables import Table

#: past this many launches a text summary lists only the launches that lost or rejected records or have
#: problems (the ``kernels`` table sums up the rest)
MANY_LAUNCHES = 20


def common_info(infos: Sequence[dict | None], gid: np.ndarray, n: int) -> list[dict]:
    """Per group in ``[0, n)``: the ``info`` items (name, value) that every launch of the group has, equal."""
    out: list[dict | None] = [None] * n
    for g, info in zip(gid.tolist(), infos, strict=True):  # a loop over launches
        mine = info or {}
        have = out[g]
        out[g] = dict(mine) if have is None else {k: v for k, v in have.items() if k in mine and mine[k] == v}
    return [x or {} for x in out]


def kernel_stats(profile: Any) -> Table:
    """One row per kernel over all its launches, the kernel with the most kernel time first.

    Columns: kernel, launches, ctas (CTA regions, all launches), events, lost (records lost to the
    capacity), rejected (records the decoder did not trust); ``span`` (kernel span per launch: first
    CTA entry to last CTA exit): total, mean, p50, max over its launches; ``info``: the launch facts
    (``DecodedLaunch.info``) that all its launches share, as ``name=value; ...``.
    """
    f = frame(profile)
    K, k = len(f.kernels.names), f.kernel_of
    per = np.array([(d.n_ctas, d.n_events, int(d.lost_total), int(getattr(d, "rejected_total", 0)))
                    for d in f.launches], np.int64).reshape(-1, 4)
    launches = np.bincount(k, minlength=K)
    span = group_summary(k, K, kernel_spans(f))
    infos = common_info([getattr(d, "info", None) for d in f.launches], k, K)
    order = np.lexsort((np.arange(K), -np.nan_to_num(span["total"], nan=-1.0)))
    cols = {"kernel": f.kernels.names_of(order), "launches": launches[order]}
    for i, name in enumerate(("ctas", "events", "lost", "rejected")):
        cols[name] = np.bincount(k, weights=per[:, i], minlength=K).astype(np.int64)[order]
    for stat in ("total", "mean", "p50", "max"):
        cols[f"span_{stat}_ns"] = span[stat][order]
    cols["info"] = np.array([info_text(infos[i]) for i in order.tolist()], dtype=str)
    notes = []
    if (span["count"] < launches).any():
        notes.append("launches in which no CTA ran have no kernel span and are left out of the span columns")
    return Table("kernels", f"Kernels ({plural(len(f.launches), 'launch', 'launches')})", cols, notes)


def notable(d: Any) -> bool:
    """A launch that lost or rejected records or has problems: one a summary always lists."""
    return bool(d.lost_total or getattr(d, "rejected_total", 0) or d.problems)


def launch_lines(launches: Sequence[Any], lines_of: Callable[[Any], list[str]],
                 many: int = MANY_LAUNCHES) -> list[str]:
    """Each launch's lines (``lines_of``); past ``many`` launches only those of the :func:`notable` ones,
    after a line that says so, and launches that report only problems of the same kinds as more than
    :data:`GROUPED` others as one line per kind (1000 launches of a short kernel each noting a clock-map
    residual filled 2,000 lines)."""
    if len(launches) <= many:
        return [line for d in launches for line in lines_of(d)]
    shown = [d for d in launches if notable(d)]
    head = (f"{len(launches)} launches; only the {len(shown)} that lost or rejected records or report "
            "problems are listed (all of them: the kernels and imbalance tables)" + (":" if shown else ""))
    groups: dict[tuple[str, ...], list[Any]] = {}
    for d in shown:
        if not (d.lost_total or getattr(d, "rejected_total", 0)):
            groups.setdefault(tuple(problem_kind(p) for p in d.problems), []).append(d)
    grouped = {id(d) for ds in groups.values() if len(ds) > GROUPED for d in ds}
    lines = [head] + [line for d in shown if id(d) not in grouped for line in lines_of(d)]
    for ds in groups.values():
        if len(ds) > GROUPED:
            ids = fmt_ids([d.launch for d in ds], limit=6, total=len(ds))
            lines += [f"{plural(len(ds), 'launch', 'launches')} ({ids}) report: {p} (launch {ds[0].launch}; "
                      "the others alike)" for p in ds[0].problems]
    return lines


#: Launches with only problems of the same kinds are listed one by one up to this many, else as one line.
GROUPED = 3


def problem_kind(problem: str) -> str:
    """A problem's sentence with its numbers and parenthesised lists taken out: what kind of problem."""
    return re.sub(r"\([^)]*\)|\d[\d.,]*", "#", problem)
