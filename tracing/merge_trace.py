"""Write a merged multi-GPU profile as one Chrome JSON trace: one process per rank, on one time axis.

Layout (open it in ui.perfetto.dev, chrome://tracing or ``kperf view``):

- one process per rank: pid = the rank, named ``"rank"`` (Perfetto shows ``"rank 3"``), its host and
  GPU as ``process_labels``, listed by rank (``process_sort_index``);
- in each, a ``"kernels"`` thread first: one slice per launch, from its first CTA entry to its last
  CTA exit, named after the kernel, with args ``launch``, ``step``, the alignment (``shift_ns``,
  ``err_ns``) and, on the step's straggler, ``straggler: true``, ``late_ns`` and ``margin_ns``
  (:mod:`.rank_stats`); lost records and decode problems as instants on it;
- then one thread per (launch, CTA, warp), named ``"launch 3 matmul CTA 37 (warp 3)"``, holding the
  launch's scope intervals as complete events (args ``scope``, ``cta``, ``warp``), like the one-rank
  Chrome trace (:mod:`.chrome`).  tids lie above every pid, unique in the file.
- ``otherData.kperf``: the ranks (host, device, file, clock offsets and bounds), the notes, and per
  launch where it sits.

Time: every rank's launches sit at their aligned start (:mod:`.merge`: rank 0's globaltimer), the
trace's 0 at the earliest of them (:func:`~.placement.trace_offsets`).  Large launches are written as
a subset of CTAs (``select``, :mod:`.select`; default: the first wave above 1M events), statistics
cover every event.  Unmatched records and flows are left to the one-rank traces (``kperf export``).

Rows are formatted with numpy (:mod:`.json_rows`), never one Python object per event.
"""

from __future__ import annotations

import os
from typing import Any, BinaryIO

import numpy as np
import orjson

from ._common import plural, trace_output
from .intervals import INTERVAL_DTYPE
from .json_rows import NUL, assemble, const, ints, jstr, micros, rows, rows_compact, text_table
from .labels import cta_warp_label, refuse_other_format, role_table
from .merge import Merged
from .placement import LaunchSpan, earliest, trace_offsets
from .rank_stats import RankReport
from .select import subset

CHUNK = 1 << 15  # rows formatted per numpy batch


def _intervals(d, sub) -> np.ndarray:
    """The ``INTERVAL_DTYPE`` rows of the part ``sub`` of launch ``d``, with a time."""
    if sub.intervals is None:
        iv = d.intervals()[0]
    else:
        iv = np.empty(len(sub.intervals), INTERVAL_DTYPE)
        p = d.pairs()
        for a in range(0, len(iv), CHUNK):
            for f, v in p.fields(d.columns, sub.intervals[a : a + CHUNK]).items():
                iv[a : a + CHUNK][f] = v
    return iv[np.isfinite(iv["start_ns"]) & np.isfinite(iv["end_ns"])]


class _Out:
    """Streams the traceEvents rows (each starting with ``,\\n``; the first one's comma dropped)."""

    def __init__(self, f: BinaryIO):
        self.f, self.first, self.n = f, True, 0

    def rows(self, blob: bytes, n: int) -> None:
        if blob:
            self.f.write(blob[1:] if self.first else blob)
            self.first = False
            self.n += n

    def obj(self, d: dict) -> None:
        self.rows(b",\n" + orjson.dumps(d), 1)


def _stragglers(report: RankReport, merged: Merged) -> dict[tuple[int, int], dict]:
    """``{(kernel id, step): args}`` for the straggler launch of every step of several ranks."""
    steps = report["steps"]
    kid = {name: i for i, name in enumerate(merged.kernels)}
    out = {}
    for r in steps.rows():
        if r["ranks"] > 1:
            out[(kid[r["kernel"]], r["step"])] = {"rank": r["straggler"], "late_ns": r["late_ns"],
                                                  "margin_ns": r["margin_ns"], "sure": r["sure"]}
    return out


def write_merged_trace(path: str | os.PathLike | BinaryIO, merged: Merged, *, select: Any = None,
                       report: RankReport | None = None, compresslevel: int = 3) -> dict:
    """Write ``merged`` as a Chrome JSON trace (module docstring); returns a summary dict."""
    refuse_other_format(path, "chrome")
    report = report or RankReport(merged)
    t = merged.launches
    launches = [merged.decoded(i) for i in range(len(t))]
    subs = [subset(d, select) for d in launches]
    ivs = [_intervals(d, s) for d, s in zip(launches, subs, strict=True)]
    # a launch shows from its first CTA entry (0) or an earlier record, to its end
    spans = [LaunchSpan(int(row["start_ns"]), earliest(iv["start_ns"], np.zeros(1)),
                        float(row["duration_ns"])) for row, iv in zip(t, ivs, strict=True)]
    offsets = trace_offsets(spans)
    summary = {"trace_events": 0, "intervals": 0, "ranks": len(merged.ranks), "launches": []}
    with trace_output(path, compresslevel) as f:
        f.write(b'{"displayTimeUnit":"ns","traceEvents":[\n')
        out = _Out(f)
        tid = max(r.rank for r in merged.ranks) + 1
        kernel_tids = {}
        for r in merged.ranks:
            kernel_tids[r.rank] = tid
            _name_rank(out, r, tid)
            tid += 1
        late = _stragglers(report, merged)
        for i, (d, sub, iv, off) in enumerate(zip(launches, subs, ivs, offsets, strict=True)):
            row = t[i]
            rank = int(row["rank"])
            _kernel_slice(out, merged, row, d, off, kernel_tids[rank], late)
            tid = _launch_events(out, d, iv, off, rank, tid, merged.kernels[int(row["kernel"])])
            info = {"rank": rank, "launch": int(row["launch"]), "kernel": merged.kernels[int(row["kernel"])],
                    "step": int(row["step"]), "trace_offset_ns": int(off), "shift_ns": int(row["shift_ns"]),
                    "err_ns": float(row["err_ns"]), "intervals": int(len(iv)), "subset": sub.meta()}
            if not sub.whole:
                info["subset_note"] = sub.note()
            summary["launches"].append(info)
            summary["intervals"] += int(len(iv))
        summary["trace_events"] = out.n
        f.write(b'\n],"otherData":{"kperf":')
        f.write(orjson.dumps(_other_data(merged, report, summary), option=orjson.OPT_SERIALIZE_NUMPY))
        f.write(b"}}\n")
    return summary


def _name_rank(out: _Out, r, kernels_tid: int) -> None:
    labels = ", ".join(x for x in (r.host, r.device) if x)
    out.obj({"name": "process_name", "ph": "M", "pid": r.rank, "args": {"name": "rank"}})
    out.obj({"name": "process_sort_index", "ph": "M", "pid": r.rank, "args": {"sort_index": r.rank}})
    if labels:
        out.obj({"name": "process_labels", "ph": "M", "pid": r.rank, "args": {"labels": labels}})
    out.obj({"name": "thread_name", "ph": "M", "pid": r.rank, "tid": kernels_tid,
             "args": {"name": "kernels"}})
    out.obj({"name": "thread_sort_index", "ph": "M", "pid": r.rank, "tid": kernels_tid,
             "args": {"sort_index": kernels_tid}})


def _kernel_slice(out: _Out, merged: Merged, row, d, off: int, tid: int, late: dict) -> None:
    """The launch's slice on its rank's kernels thread, and its lost-records and problems notices."""
    rank, kid, step = int(row["rank"]), int(row["kernel"]), int(row["step"])
    ts = off / 1000.0
    args = {"launch": int(row["launch"]), "step": step, "shift_ns": int(row["shift_ns"]),
            "err_ns": round(float(row["err_ns"]), 1)}
    s = late.get((kid, step))
    if s is not None and s["rank"] == rank:
        args.update(straggler=True, late_ns=round(s["late_ns"], 1), margin_ns=round(s["margin_ns"], 1),
                    sure=bool(s["sure"]))
    ev = {"name": merged.kernels[kid], "ph": "X", "ts": ts, "pid": rank, "tid": tid,
          "dur": max(float(row["duration_ns"]), 1.0) / 1000.0, "args": args}
    if "straggler" in args:
        ev["cname"] = "terrible"
    out.obj(ev)
    if d.lost_total:
        out.obj({"name": f"kperf: {d.lost_total} records lost", "ph": "i", "s": "t", "ts": ts, "pid": rank,
                 "tid": tid, "args": {"lost_records": int(d.lost_total), "warps": int(len(d.lost))}})
    if d.problems:
        out.obj({"name": f"kperf: {plural(len(d.problems), 'decode problem')}", "ph": "i", "s": "t", "ts": ts,
                 "pid": rank, "tid": tid, "args": {"problems": list(d.problems)}})


def _launch_events(out: _Out, d, iv: np.ndarray, off: int, rank: int, tid0: int, kernel: str) -> int:
    """Threads (CTA, warp) of one launch and its intervals; returns the next free tid."""
    key = (iv["cta"].astype(np.int64) << 16) | iv["warp"].astype(np.int64)
    tkey, t_of = np.unique(key, return_inverse=True)
    nt = len(tkey)
    if not nt:
        return tid0
    tids = tid0 + np.arange(nt, dtype=np.int64)
    roles = role_table(d.warp_roles)
    uw, widx = np.unique(tkey & 0xFFFF, return_inverse=True)
    wtab = text_table([jstr(cta_warp_label(roles, int(w)))[1:-1] for w in uw], NUL)
    prefix = b"launch " + str(int(d.launch)).encode() + b" " + jstr(kernel)[1:-1] + b" CTA "
    pid = const(b',"pid":' + str(rank).encode() + b',"tid":', nt)
    head = [const(b',\n{"ph":"M"', nt), pid, ints(tids, NUL)]
    out.rows(rows_compact(head + [const(b',"name":"thread_name","args":{"name":"' + prefix, nt),
                                  ints(tkey >> 16, NUL), const(b" ", nt), wtab[widx.ravel()],
                                  const(b'"}}', nt)]), nt)
    out.rows(rows_compact(head + [const(b',"name":"thread_sort_index","args":{"sort_index":', nt),
                                  ints(tids, NUL), const(b"}}", nt)]), nt)
    frag = assemble([pid, ints(tids), const(b',"args":{"cta":', nt), ints(tkey >> 16),
                     const(b',"warp":', nt), ints(tkey & 0xFFFF)])
    names = d.scope_list
    sc_ids = np.unique(iv["scope"]).astype(np.int64)
    x_head = text_table([b',\n{"name":' + jstr(names[s] if s < len(names) else f"scope {s}") for s in sc_ids])
    x_head = np.concatenate([x_head, const(b',"ph":"X","ts":', len(sc_ids))], axis=1)
    sid = np.concatenate([const(b',"scope":', len(sc_ids)), ints(sc_ids)], axis=1)
    t_of = t_of.ravel()
    for a in range(0, len(iv), CHUNK):
        c = iv[a : a + CHUNK]
        k = len(c)
        t0 = np.rint(c["start_ns"] + off).astype(np.int64)
        t1 = np.rint(c["end_ns"] + off).astype(np.int64)
        sr = np.searchsorted(sc_ids, c["scope"])
        out.rows(rows([np.take(x_head, sr, axis=0), micros(t0), const(b',"dur":', k),
                       micros(np.maximum(t1 - t0, 0)), np.take(frag, t_of[a : a + CHUNK], axis=0),
                       np.take(sid, sr, axis=0), const(b"}}", k)]), k)
    return tid0 + nt


def _other_data(merged: Merged, report: RankReport, summary: dict) -> dict:
    clocks = report["clocks"].rows()
    ranks = [{"rank": r.rank, "host": r.host, "device": r.device, "file": r.path, "gpu_probe": r.gpu_method,
              "clock": {k: (None if isinstance(v, float) and v != v else v) for k, v in c.items()
                        if k.endswith(("_ns", "_ppm"))}}
             for r, c in zip(merged.ranks, clocks, strict=True)]
    return {"format": 1, "merged_ranks": True, "aligned": merged.aligned,
            "time_origin": "the earliest launch's first CTA entry, rank 0's globaltimer",
            "ranks": ranks, "notes": list(merged.notes), "launches": summary["launches"]}
