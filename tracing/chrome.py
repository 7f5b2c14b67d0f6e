"""Write decoded launches as a Chrome trace (JSON object format), for chrome://tracing and Perfetto UI.

Layout of the trace:

- one process per SM, shared by all launches of the file: its pid is the SM's number and its name
  ``"SM"``, so that Perfetto, which shows a process as its name followed by its pid, shows
  ``"SM 12"`` (chrome://tracing shows ``"SM (pid 12)"``); ``process_sort_index`` lists the busiest SM
  first (:func:`kperf.tracing.placement.busiest_first`; Perfetto orders JSON processes by their
  number of slices, which gives the same order);
- one thread per (launch, CTA, warp), named ``"CTA 37 (warp 3)"`` (``"CTA 37 producer (warp 3)"``
  with warp roles, ``"CTA 37 (5,4,0) (warp 3)"`` on a grid of more than one dimension, ``"launch 1
  CTA 37 (warp 3)"`` when the file holds several launches; :mod:`.labels`), ordered by
  ``thread_sort_index`` (launch, CTA, warp).  tids lie above every pid (Perfetto would otherwise merge
  a thread into the process of the same number);
- one complete event (``"ph":"X"``) per interval, ``ts``/``dur`` in microseconds with ns precision
  (``displayTimeUnit`` is ``"ns"``), args ``scope`` (id), ``cta``, ``warp`` and ``cycles`` (the
  interval's duration in SM cycles; left out for ``clock="globaltimer"``);
- unmatched starts/ends as thread instant events (``"ph":"i"``) named ``"<scope> (start, no end)"`` /
  ``"<scope> (end, no start)"``;
- lost records: a global instant event per launch (``"kperf: N records lost"``, with per-warp counts
  in its args) and a thread instant event ``"lost N records"`` on every warp that overflowed, where
  the loss happened (after its last kept record for keep-first, before its first for wrap);
- decode problems as a global instant event per launch, and everything in ``otherData.kperf``;
- numbers given for a launch as a whole (``launch_args``, e.g. the memory traffic ``kperf ncu``
  measured, and the launch's own ``info``) as a global instant event at its start and in
  ``otherData.kperf.launches[i].args`` (:mod:`.launch_args`);
- flows (``FLOW_DTYPE``, optional) as flow v1 events with numeric ids, unique in the file:
  ``"ph":"s"`` on the source warp at the issue, ``"ph":"f"`` with ``"bp":"e"`` (bound to the enclosing
  slice) on the destination warp at the completion, 1 ns before it when it ends a slice (see
  :func:`_flow_events`); Perfetto and chrome://tracing draw each as an arrow.

Large launches: a ``DecodedLaunch`` is written as the subset of CTAs that ``select`` picks (by default
the first wave of a launch of more than 1M events, with a printed note and the details in
``otherData.kperf.launches[i].subset``; see :mod:`kperf.tracing.select`).  Warps are named by the
launch's ``warp_roles`` when it has them.

Time axis: 0 is the earliest launch's first CTA entry; launches sit at their absolute ``t0_ns``
(globaltimer), so consecutive launches appear one after the other as they ran.  Interval arrays
given without their launch get placed one after the other, 1 us apart (:mod:`.placement`, shared
with the Perfetto writer).

Speed: events are formatted in chunks with numpy, as byte matrices (:mod:`.json_rows`: digits
computed arithmetically, names gathered from a table), never one Python dict per event; the output
is streamed, gzip-compressed when the path ends in ``.gz``.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping, Sequence
from typing import Any, BinaryIO

import numpy as np
import orjson

from ._common import ScopesLike, plural, trace_output
from ._common import scope_names as read_scope_names
from .decode import EVENT_DTYPE, DecodedLaunch
from .flows import FLOW_DTYPE, flows_per_launch
from .intervals import INTERVAL_DTYPE, describe_unmatched, pair
from .json_rows import FRAC, NUL, assemble, const, ints, jstr, micros, rows, rows_compact, text_table
from .labels import cta_warp_label, refuse_other_format, role_table
from .launch_args import DEFAULT_NAME, chrome_event, with_info
from .placement import LaunchSpan, busiest_first, earliest, trace_offsets
from .select import Subset, subset

CHUNK = 1 << 15  # rows formatted per numpy batch
MAX_LOST_ARGS = 1_000  # per-warp entries listed in a launch's lost-records notice


# --------------------------------------------------------------------------- input normalisation


@dataclasses.dataclass
class _Launch:
    launch: int
    intervals: np.ndarray
    unmatched: np.ndarray
    t0_ns: int | None
    decoded: DecodedLaunch | None
    offset_ns: int = 0  # where this launch's time 0 lies on the trace axis
    sub: Subset | None = None  # the part of a DecodedLaunch written
    flows: np.ndarray | None = None

    @property
    def lost(self) -> np.ndarray:
        """The lost-records rows of the CTAs written."""
        d = self.decoded
        if d is None:
            return np.zeros(0, dtype=[("cta", "<u4"), ("warp", "<u2")])
        return d.lost if self.sub is None or self.sub.whole else d.lost[self.sub.ctas[d.lost["cta"]]]

    @property
    def cycles_arg(self) -> bool:
        return self.decoded is None or self.decoded.geometry.clock != "globaltimer"

    @property
    def span(self) -> LaunchSpan:
        """What placement on the trace axis needs: absolute start, earliest and latest time written."""
        ends = [0.0]
        if len(self.intervals):
            ends.append(float(np.nanmax(self.intervals["end_ns"], initial=0.0)))
        if self.decoded is not None:
            ends.append(self.decoded.duration_ns)
        first = earliest(self.intervals["start_ns"], self.unmatched["time_ns"])
        return LaunchSpan(self.t0_ns, first, max(ends))


def _subset_arrays(d: DecodedLaunch, sub: Subset) -> tuple[np.ndarray, np.ndarray]:
    """(INTERVAL_DTYPE, unmatched EVENT_DTYPE) arrays of the part ``sub`` of ``d``."""
    p = d.pairs()
    if sub.intervals is None:
        return d.intervals()
    iv = np.empty(len(sub.intervals), INTERVAL_DTYPE)
    for a in range(0, len(iv), CHUNK):
        o = iv[a : a + CHUNK]
        for f, v in p.fields(d.columns, sub.intervals[a : a + CHUNK]).items():
            o[f] = v
    return iv, d.columns.to_structured(p.unmatched[sub.unmatched])


def _collect(data: Any, select: Any = None, flows: Any = None) -> list[_Launch]:
    if isinstance(data, (DecodedLaunch, np.ndarray)):
        data = [data]
    data = list(data)
    decoded = [x for x in data if isinstance(x, DecodedLaunch)]
    per = dict(zip((id(d) for d in decoded), flows_per_launch(flows, decoded), strict=True))
    out: list[_Launch] = []
    for item in data:
        if isinstance(item, DecodedLaunch):
            sub = subset(item, select)
            iv, un = _subset_arrays(item, sub)
            out.append(_Launch(item.launch, iv, un, item.t0_ns, item, sub=sub, flows=per[id(item)]))
        elif isinstance(item, np.ndarray) and item.dtype == INTERVAL_DTYPE:
            for ln in np.unique(item["launch"]):
                out.append(_Launch(int(ln), item[item["launch"] == ln], np.zeros(0, EVENT_DTYPE), None, None))
        elif isinstance(item, np.ndarray) and item.dtype == EVENT_DTYPE:
            iv, un = pair(item)
            for ln in np.unique(np.r_[iv["launch"], un["launch"]]):
                out.append(_Launch(int(ln), iv[iv["launch"] == ln], un[un["launch"] == ln], None, None))
        else:
            raise TypeError("write_chrome_trace takes DecodedLaunch objects, INTERVAL_DTYPE or EVENT_DTYPE "
                            f"arrays, or a list of them; got {type(item).__name__}")
    return out


# --------------------------------------------------------------------------- processes and threads


@dataclasses.dataclass
class _Threads:
    """One launch's threads, (CTA, warp) pairs, with their ids; a thread's pid is its SM's number."""

    key: np.ndarray  # (cta << 16) | warp per thread, sorted
    sm: np.ndarray  # each thread's SM (= its pid)
    tid0: int  # thread i has tid tid0 + i

    @property
    def tids(self) -> np.ndarray:
        return self.tid0 + np.arange(len(self.key), dtype=np.int64)

    @property
    def pid(self) -> np.ndarray:
        """Each thread's pid."""
        return self.sm

    def index(self, cta: np.ndarray, warp: np.ndarray) -> np.ndarray:
        """The thread of each (cta, warp)."""
        return np.searchsorted(self.key, (cta.astype(np.int64) << 16) | warp.astype(np.int64))

    def fragments(self) -> np.ndarray | None:
        """Per thread, the part of the JSON row its events share: ``,"pid":..,"tid":..,"args":{"cta":..,
        "warp":..`` (the args object is left open for the event's own arguments)."""
        nt = len(self.key)
        if not nt:
            return None
        return assemble([const(b',"pid":', nt), ints(self.pid), const(b',"tid":', nt), ints(self.tids),
                         const(b',"args":{"cta":', nt), ints(self.key >> 16), const(b',"warp":', nt),
                         ints(self.key & 0xFFFF)])


@dataclasses.dataclass
class _Processes:
    """The SMs of the whole file: the pids, and each one's place in the list (busiest first)."""

    sm_ids: np.ndarray  # sorted
    rank: np.ndarray  # 0 = the SM with the most events


def _plan_threads(launches: list[_Launch]) -> tuple[list[_Threads], _Processes, int]:
    """Every launch's threads and the file's processes (one per SM, its number as pid).

    Returns the threads per launch, the processes and the first tid (above every pid)."""
    found = []
    for ln in launches:
        ctas = np.r_[ln.intervals["cta"], ln.unmatched["cta"]].astype(np.int64)
        warps = np.r_[ln.intervals["warp"], ln.unmatched["warp"]].astype(np.int64)
        sms = np.r_[ln.intervals["sm"], ln.unmatched["sm"]].astype(np.int64)
        if ln.decoded is not None and len(ln.lost):
            lost = ln.lost
            ctas = np.r_[ctas, lost["cta"]]
            warps = np.r_[warps, lost["warp"]]
            sms = np.r_[sms, ln.decoded.ctas["sm"][lost["cta"]]]
        tkey, first = np.unique((ctas << 16) | warps, return_index=True)
        found.append((tkey, sms[first], sms))
    all_sms = np.concatenate([f[2] for f in found]) if found else np.zeros(0, np.int64)
    procs = _Processes(*busiest_first(all_sms))
    tid_base = int(procs.sm_ids.max()) + 1 if len(procs.sm_ids) else 1
    out, tid0 = [], tid_base
    for tkey, t_sm, _ in found:
        out.append(_Threads(tkey, t_sm, tid0))
        tid0 += len(tkey)
    return out, procs, tid_base


def _warp_label_rows(roles: Any, warps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Label rows (JSON-escaped, no quotes) for the warps present, and each warp's row index."""
    uniq, idx = np.unique(warps, return_inverse=True)
    table = role_table(roles)
    labels = [jstr(cta_warp_label(table, int(w)))[1:-1] for w in uniq]
    return text_table(labels, NUL), idx.ravel()  # inside a string: NUL filler, compacted away


# --------------------------------------------------------------------------- writer


class _Out:
    """Streams the JSON text: the traceEvents array, then the closing object."""

    def __init__(self, f: BinaryIO):
        self.f = f
        self.first = True
        self.n = 0

    def rows(self, blob: bytes, n: int) -> None:
        """``blob`` holds rows each starting with ``,\\n``."""
        if not blob:
            return
        if self.first:
            blob = blob[1:]
            self.first = False
        self.f.write(blob)
        self.n += n

    def obj(self, d: dict) -> None:
        self.rows(b",\n" + orjson.dumps(d), 1)


def write_chrome_trace(
    path: str | os.PathLike | BinaryIO,
    data: DecodedLaunch | np.ndarray | Sequence[DecodedLaunch | np.ndarray],
    scope_names: ScopesLike = None,
    *,
    warp_names: Mapping[int, str] | Sequence[str] | None = None,
    select: Any = None,
    flows: Any = None,
    launch_args: Mapping[int, Mapping[str, Any]] | None = None,
    launch_args_name: str = DEFAULT_NAME,
    compresslevel: int = 3,
) -> dict:
    """Write a Chrome trace JSON file (see the module docstring for its layout).

    Args:
        path: output path (``.gz`` suffix: gzip; a Perfetto name, ``.pftrace``, is refused) or a
            binary file object.
        data: a :class:`DecodedLaunch`, an ``INTERVAL_DTYPE`` or ``EVENT_DTYPE`` array, or a list
            of them (one file, several launches).
        scope_names: the scope table (names, ``{id: name}``, ``ScopeTable``...); default: the one
            given to :func:`decode`, else ``"scope <id>"``.
        warp_names: optional name per warp index (e.g. warp-specialisation roles), used in thread
            names instead of ``"warp <i>"``; default: each launch's ``warp_roles``.
        select: which CTAs of each ``DecodedLaunch`` to write (``"all"``, ``"first-wave"``,
            ``"ctas:0-7"``, ...; see :mod:`kperf.tracing.select`); default: all up to 1M events,
            else the first wave (with a printed note).
        flows: ``FLOW_DTYPE`` arrays for the ``DecodedLaunch`` items: one array (single launch), a
            list (one per launch) or ``{launch number: array}``.
        launch_args: ``{launch number: {name: value}}``, numbers of a launch as a whole (e.g.
            :func:`kperf.tracing.traffic.trace_args`): a global instant named ``launch_args_name`` at
            the launch's start carries them, and ``otherData.kperf.launches[i]["args"]``; each
            ``DecodedLaunch.info`` joins them (the names given here win).
        launch_args_name: that instant's name.
        compresslevel: gzip level for ``.gz`` paths.

    Returns:
        a summary dict: events written, intervals, unmatched, lost records, launches.
    """
    refuse_other_format(path, "chrome")
    launches = _collect(data, select, flows)
    for ln, off in zip(launches, trace_offsets([ln.span for ln in launches]), strict=True):
        ln.offset_ns = off
    own = [ln.decoded for ln in launches if ln.decoded is not None]
    extra = (with_info(launch_args, own), launch_args_name)
    with trace_output(path, compresslevel) as f:
        summary = _write(f, launches, scope_names, warp_names, extra)
    return summary


def _write(f: BinaryIO, launches: list[_Launch], scope_names: ScopesLike, warp_names: Any,
           extra: tuple[dict[int, dict], str]) -> dict:
    f.write(b'{"displayTimeUnit":"ns","traceEvents":[\n')
    out = _Out(f)
    threads, procs, tid_base = _plan_threads(launches)
    summary = {"trace_events": 0, "intervals": 0, "unmatched": 0, "lost_records": 0, "launches": [],
               "dropped_no_time": 0}
    _name_processes(out, procs)
    meta = []
    for ln, th in zip(launches, threads, strict=True):
        names = (read_scope_names(scope_names) if scope_names is not None
                 else (ln.decoded.scopes if ln.decoded is not None else None)) or {}
        roles = warp_names if warp_names is not None else (ln.decoded.warp_roles if ln.decoded else None)
        _name_threads(out, ln, th, roles, multi=len(launches) > 1)
        frag = th.fragments()
        n_iv, n_un = _scope_events(out, ln, th, frag, names, summary)
        info = _launch_info(ln, names, n_iv, n_un)
        at = (int(th.pid[0]), int(th.tids[0])) if len(th.key) else (
            int(procs.sm_ids[0]) if len(procs.sm_ids) else 0, tid_base)
        if ln.decoded is not None:
            _launch_notices(out, ln, names, th, frag, at, summary)
        if ln.launch in extra[0]:
            info["args"] = extra[0][ln.launch]
            out.obj(chrome_event(extra[1], float(ln.offset_ns) / 1000.0, at, info["args"]))
        summary["intervals"] += n_iv
        summary["unmatched"] += n_un
        meta.append(info)
    summary["trace_events"] = out.n
    summary["launches"] = meta
    f.write(b'\n],"otherData":{"kperf":')
    f.write(orjson.dumps({"format": 1, "time_origin": "earliest launch's first CTA entry",
                          "lost_records": summary["lost_records"],
                          "dropped_no_time": summary["dropped_no_time"],
                          "launches": meta}))
    f.write(b"}}\n")
    return summary


def _name_processes(out: _Out, procs: _Processes) -> None:
    """A name and sort index per process (SM), busiest first: written in that order, so Perfetto, which
    breaks ties in its own order (slice count) by the order it met the processes, agrees."""
    for i in np.argsort(procs.rank, kind="stable").tolist():
        pid = int(procs.sm_ids[i])
        out.obj({"name": "process_name", "ph": "M", "pid": pid, "args": {"name": "SM"}})
        out.obj({"name": "process_sort_index", "ph": "M", "pid": pid,
                 "args": {"sort_index": int(procs.rank[i])}})


def _cta_coordinates(ln: _Launch, cta: np.ndarray) -> np.ndarray | None:
    """``(x,y,z)`` of each CTA as text rows (``" (5,4,0)"``), on a grid of more than one
    dimension; ``None`` otherwise (the linear id says it all)."""
    d = ln.decoded
    if d is None or not len(cta) or not (d.ctas["ctaid_y"].any() or d.ctas["ctaid_z"].any()):
        return None
    c = d.ctas[cta]
    k = len(cta)
    return assemble([const(b" (", k), ints(c["ctaid_x"], NUL), const(b",", k), ints(c["ctaid_y"], NUL),
                     const(b",", k), ints(c["ctaid_z"], NUL), const(b")", k)])  # NULs go in rows_compact


def _name_threads(out: _Out, ln: _Launch, th: _Threads, roles: Any, multi: bool) -> None:
    """Metadata events: a name and sort index per thread (CTA, warp), see :mod:`.labels`."""
    nt = len(th.key)
    tids, t_pid, t_cta = th.tids, th.pid, th.key >> 16
    wtab, widx = _warp_label_rows(roles, th.key & 0xFFFF)
    prefix = f"launch {ln.launch} CTA ".encode() if multi else b"CTA "
    for a in range(0, nt, CHUNK):
        s = slice(a, a + CHUNK)
        k = len(tids[s])
        head = [const(b',\n{"ph":"M","pid":', k), ints(t_pid[s], NUL), const(b',"tid":', k),
                ints(tids[s], NUL)]
        xyz = _cta_coordinates(ln, t_cta[s])
        label = [const(b',"name":"thread_name","args":{"name":"' + prefix, k), ints(t_cta[s], NUL)]
        label += ([] if xyz is None else [xyz]) + [const(b" ", k), wtab[widx[s]], const(b'"}}', k)]
        out.rows(rows_compact(head + label), k)
        out.rows(rows_compact(head + [const(b',"name":"thread_sort_index","args":{"sort_index":', k),
                                      ints(tids[s], NUL), const(b"}}", k)]), k)


def _scope_events(out: _Out, ln: _Launch, th: _Threads, frag: np.ndarray | None, names: dict,
                  summary: dict) -> tuple[int, int]:
    """Complete events (intervals) and instants (unmatched records) with a time; returns their counts."""
    iv = ln.intervals
    finite = np.isfinite(iv["start_ns"]) & np.isfinite(iv["end_ns"])
    if not finite.all():
        summary["dropped_no_time"] += int((~finite).sum())
        iv = iv[finite]
    un = ln.unmatched[np.isfinite(ln.unmatched["time_ns"])]
    summary["dropped_no_time"] += len(ln.unmatched) - len(un)
    sc_ids = np.unique(np.r_[iv["scope"], ln.unmatched["scope"]]).astype(np.int64)
    sc_names = [names.get(int(s), f"scope {int(s)}") for s in sc_ids]
    sid = np.concatenate([const(b',"scope":', len(sc_ids)), ints(sc_ids)], axis=1)  # the scope id argument
    _complete_events(out, ln, iv, th, frag, sc_ids, sc_names, sid)
    if len(un):
        _unmatched_events(out, ln, un, th, frag, sc_ids, sc_names, sid)
    return int(len(iv)), int(len(un))


def _complete_events(out: _Out, ln: _Launch, iv: np.ndarray, th: _Threads, frag, sc_ids: np.ndarray,
                     sc_names: list[str], sid: np.ndarray) -> None:
    """One ``"ph":"X"`` event per interval, its arguments cta, warp, scope and (clock64) cycles."""
    x_head = text_table([b',\n{"name":' + jstr(n) for n in sc_names])
    x_head = np.concatenate([x_head, const(b',"ph":"X","ts":', len(sc_ids))], axis=1)
    for a in range(0, len(iv), CHUNK):
        c = iv[a : a + CHUNK]
        k = len(c)
        t0 = np.rint(c["start_ns"] + ln.offset_ns).astype(np.int64)
        t1 = np.rint(c["end_ns"] + ln.offset_ns).astype(np.int64)
        sr = np.searchsorted(sc_ids, c["scope"])
        parts = [np.take(x_head, sr, axis=0), micros(t0), const(b',"dur":', k),
                 micros(np.maximum(t1 - t0, 0)), np.take(frag, th.index(c["cta"], c["warp"]), axis=0),
                 np.take(sid, sr, axis=0)]
        if ln.cycles_arg:
            parts += [const(b',"cycles":', k), ints(c["end_cycles"] - c["start_cycles"])]
        parts.append(const(b"}}", k))
        out.rows(rows(parts), k)


def _unmatched_events(out: _Out, ln: _Launch, un: np.ndarray, th: _Threads, frag, sc_ids: np.ndarray,
                      sc_names: list[str], sid: np.ndarray) -> None:
    """A thread instant per unmatched record: ``"<scope> (start, no end)"`` / ``"(end, no start)"``."""
    u_head = text_table([b',\n{"name":' + jstr(f"{n} ({'end, no start' if e else 'start, no end'})")
                         for n in sc_names for e in (0, 1)])
    u_head = np.concatenate([u_head, const(b',"ph":"i","s":"t","ts":', len(u_head))], axis=1)
    for a in range(0, len(un), CHUNK):
        c = un[a : a + CHUNK]
        k = len(c)
        sr = np.searchsorted(sc_ids, c["scope"])
        out.rows(rows([
            np.take(u_head, 2 * sr + c["is_end"], axis=0),
            micros(np.rint(c["time_ns"] + ln.offset_ns).astype(np.int64)),
            np.take(frag, th.index(c["cta"], c["warp"]), axis=0), np.take(sid, sr, axis=0),
            const(b',"seq":', k), ints(c["seq"]), const(b',"unmatched":true}}', k)]), k)


def _launch_info(ln: _Launch, names: dict, n_iv: int, n_un: int) -> dict:
    """What ``otherData.kperf.launches[i]`` says of a launch."""
    info = {"launch": ln.launch, "t0_ns": ln.t0_ns, "trace_offset_ns": ln.offset_ns,
            "intervals": n_iv, "unmatched": n_un}
    if len(ln.unmatched):
        info["unmatched_detail"] = describe_unmatched(ln.unmatched, names)
    d = ln.decoded
    if d is not None:
        info.update(clock=d.geometry.clock, strategy=d.strategy, capacity=d.geometry.capacity,
                    clock_ghz=None if not np.isfinite(d.clock_ghz) else d.clock_ghz,
                    ctas=d.n_ctas, events=d.n_events, lost_records=d.lost_total,
                    problems=list(d.problems), kernel=d.kernel)
        if ln.sub is not None:
            info["subset"] = ln.sub.meta()
            if not ln.sub.whole:
                info["subset_note"] = ln.sub.note()
    return info


def _launch_notices(out: _Out, ln: _Launch, names: dict, th: _Threads, frag, at: tuple[int, int],
                    summary: dict) -> None:
    """A decoded launch's flows, lost-records instants and notice, and decode-problems notice.

    ``at``: the (pid, tid) that carries the launch-wide notices."""
    d = ln.decoded
    start_ts = float(ln.offset_ns) / 1000.0
    if ln.flows is not None and len(ln.flows):
        done = summary.get("flows", 0)
        summary["flows"] = done + _flow_events(out, ln, names, th, done + 1)
    if d.lost_total:
        _lost_events(out, ln, d, th.index, frag)
        lost = d.lost
        order = np.argsort(-lost["lost"].astype(np.int64), kind="stable")[:MAX_LOST_ARGS]
        out.obj({"name": f"kperf: {d.lost_total} records lost", "ph": "i", "s": "g", "ts": start_ts,
                 "pid": at[0], "tid": at[1],
                 "args": {"lost_records": d.lost_total, "warps": int(len(lost)),
                          "ctas": int(len(np.unique(lost["cta"]))), "strategy": d.strategy,
                          "capacity": d.geometry.capacity,
                          "per_warp": [{"cta": int(r["cta"]), "warp": int(r["warp"]),
                                        "lost": int(r["lost"]), "count": int(r["count"])}
                                       for r in lost[order]],
                          "per_warp_truncated": max(0, len(lost) - MAX_LOST_ARGS)}})
        summary["lost_records"] += d.lost_total
    if d.problems:
        out.obj({"name": f"kperf: {plural(len(d.problems), 'decode problem')}", "ph": "i", "s": "g",
                 "ts": start_ts, "pid": at[0], "tid": at[1], "args": {"problems": list(d.problems)}})


def _lost_events(out: _Out, ln: _Launch, d: DecodedLaunch, thread_of, thread_frag) -> None:
    """A thread instant event on every warp (of the trace) that lost records, where the loss happened."""
    lost = ln.lost
    cols = d.columns
    skey = (cols.seg["cta"] << 16) | cols.seg["warp"]  # segments: sorted by (cta, warp)
    lkey = (lost["cta"].astype(np.int64) << 16) | lost["warp"].astype(np.int64)
    seg = np.minimum(np.searchsorted(skey, lkey), max(len(skey) - 1, 0))
    has = (skey[seg] == lkey) if len(skey) else np.zeros(len(lost), bool)
    lo, hi = cols.start[seg], cols.start[np.minimum(seg + 1, len(cols.start) - 1)]
    t = d.ctas["offset_ns"][lost["cta"]].astype(np.float64)  # fallback: the CTA's entry
    tn = cols["time_ns"]
    if d.strategy == "wrap":
        t[has] = tn[lo[has]]
    else:
        t[has] = tn[hi[has] - 1]
    t = np.where(np.isfinite(t), t, 0.0)
    where = b"before" if d.strategy == "wrap" else b"after"
    for a in range(0, len(lost), CHUNK):
        c = lost[a : a + CHUNK]
        k = len(c)
        ts = np.maximum(np.rint(t[a : a + CHUNK] + ln.offset_ns).astype(np.int64), 0)
        out.rows(rows_compact([
            const(b',\n{"name":"lost ', k), ints(c["lost"], NUL),
            const(b' records","ph":"i","s":"t","ts":', k),
            ints(ts // 1000, NUL), np.take(FRAC, ts % 1000, axis=0),
            np.take(thread_frag, thread_of(c["cta"], c["warp"]), axis=0),
            const(b',"lost":', k), ints(c["lost"], NUL), const(b',"count":', k), ints(c["count"], NUL),
            const(b',"kept":', k), ints(c["kept"], NUL),
            const(b',"where":"' + where + b' the kept records"}}', k)]), k)


def _flow_events(out: _Out, ln: _Launch, names: dict, th: _Threads, first_id: int) -> int:
    """Chrome flow events (flow v1): ``"s"`` on the source warp, ``"f"`` (``"bp":"e"``: bound to the
    enclosing slice) on the destination warp; returns how many flows were written.

    Ids are numbers (Perfetto's JSON importer reads a string id as hexadecimal), ``first_id`` on,
    unique in the file.  Perfetto binds a flow event to the innermost slice open on its thread when
    it reads the event, so a completion that falls on the end of a slice is written 1 ns before it:
    at the end itself a slice starting there (the next scope) would take the arrow.  All ``"s"``
    events precede the ``"f"`` events (equal times are read in file order).  Flows whose warps are
    not in the trace are left out."""
    f = np.asarray(ln.flows)
    if f.dtype != FLOW_DTYPE:
        raise TypeError(f"flows must be FLOW_DTYPE arrays, got dtype {f.dtype}")
    tkey = th.key
    if not len(tkey) or not len(f):
        return 0
    cta = f["cta"].astype(np.int64) << 16
    ks = np.minimum(np.searchsorted(tkey, cta | f["src_warp"].astype(np.int64)), len(tkey) - 1)
    kd = np.minimum(np.searchsorted(tkey, cta | f["dst_warp"].astype(np.int64)), len(tkey) - 1)
    ok = ((tkey[ks] == (cta | f["src_warp"])) & (tkey[kd] == (cta | f["dst_warp"]))
          & np.isfinite(f["src_ns"]) & np.isfinite(f["dst_ns"]))
    f, ks, kd = f[ok], ks[ok], kd[ok]
    n = len(f)
    if not n:
        return 0
    t_src = np.rint(f["src_ns"] + ln.offset_ns).astype(np.int64)
    t_dst = np.maximum(_inside_ending_slice(ln, th, kd, np.rint(f["dst_ns"] + ln.offset_ns).astype(np.int64)),
                       t_src)
    ids = first_id + np.arange(n, dtype=np.int64)
    label_ids = np.unique(f["name"].astype(np.int64))
    labels = text_table([b',\n{"name":' + jstr(names.get(int(i), f"scope {int(i)}")) for i in label_ids])
    label = np.take(labels, np.searchsorted(label_ids, f["name"].astype(np.int64)), axis=0)
    pid, tid = th.pid, th.tids
    for a in range(0, n, CHUNK):
        c = slice(a, a + CHUNK)
        m = len(ids[c])
        for ph, t, k in ((b's","id":', t_src[c], ks[c]), (b'f","bp":"e","id":', t_dst[c], kd[c])):
            out.rows(rows([label[c], const(b',"cat":"flow","ph":"' + ph, m), ints(ids[c]),
                           const(b',"ts":', m), micros(t), const(b',"pid":', m), ints(pid[k]),
                           const(b',"tid":', m), ints(tid[k]), const(b"}", m)]), m)
    return n


def _inside_ending_slice(ln: _Launch, th: _Threads, thread: np.ndarray, t: np.ndarray) -> np.ndarray:
    """``t - 1`` where ``t`` (trace ns) is the end of a slice of positive length on ``thread``, else ``t``."""
    iv = ln.intervals
    iv = iv[np.isfinite(iv["start_ns"]) & np.isfinite(iv["end_ns"])]
    if not len(iv):
        return t
    t0 = np.rint(iv["start_ns"] + ln.offset_ns).astype(np.int64)
    t1 = np.rint(iv["end_ns"] + ln.offset_ns).astype(np.int64)
    _, rank = np.unique(np.r_[t1, t], return_inverse=True)  # end times as dense ranks: keys fit int64
    rank = rank.ravel().astype(np.int64)
    key = (th.index(iv["cta"], iv["warp"]).astype(np.int64) << 32) | rank[: len(t1)]
    q = (thread.astype(np.int64) << 32) | rank[len(t1):]
    order = np.lexsort((t0, key))  # by (thread, end), the latest start (innermost slice) last
    skey = key[order]
    pos = np.searchsorted(skey, q, side="right") - 1
    pos_c = np.maximum(pos, 0)
    hit = (pos >= 0) & (skey[pos_c] == q) & (t0[order][pos_c] < t)
    return np.where(hit, t - 1, t)
