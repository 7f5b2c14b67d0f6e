"""Write decoded launches as a Chrome trace (JSON object format), for chrome://tracing and Perfetto UI.

Layout of the trace:

- one process per SM, named ``"SM 12"`` (``"launch 1 / SM 12"`` when the file holds several
  launches: each launch gets its own pid range), ordered by ``process_sort_index`` (launch, SM);
- one thread per (CTA, warp), named ``"CTA 37 warp 3"`` (or ``"CTA 37 <role>"`` with ``warp_names``),
  ordered by ``thread_sort_index`` (CTA, warp).  pids and tids are >= 1 and every tid differs from
  every pid (Perfetto would otherwise merge a thread into the process of the same number);
- one complete event (``"ph":"X"``) per interval, ``ts``/``dur`` in microseconds with ns precision
  (``displayTimeUnit`` is ``"ns"``), args ``scope`` (id), ``cta``, ``warp`` and ``cycles`` (the
  interval's duration in SM cycles; left out for ``clock="globaltimer"``);
- unmatched starts/ends as thread instant events (``"ph":"i"``) named ``"<scope> (start, no end)"`` /
  ``"<scope> (end, no start)"``;
- lost records: a global instant event per launch (``"kperf: N records lost"``, with per-warp counts
  in its args) and a thread instant event ``"lost N records"`` on every warp that overflowed, where
  the loss happened (after its last kept record for keep-first, before its first for wrap);
- decode problems as a global instant event per launch, and everything in ``otherData.kperf``;
- flows (``FLOW_DTYPE``, optional) as flow events (``"ph":"s"`` on the source warp, ``"ph":"f"``
  binding to the enclosing slice on the destination warp).

Large launches: a ``DecodedLaunch`` is written as the subset of CTAs that ``select`` picks (by default
the first wave of a launch of more than 1M events, with a printed note and the details in
``otherData.kperf.launches[i].subset``; see :mod:`kperf.tracing.select`).  Warps are named by the
launch's ``warp_roles`` when it has them.

Time axis: 0 is the earliest launch's first CTA entry; launches sit at their absolute ``t0_ns``
(globaltimer), so consecutive launches appear one after the other as they ran.  Interval arrays
given without their launch get placed one after the other, 1 us apart.

Speed: events are formatted in chunks with numpy, as byte matrices (digits computed arithmetically,
names gathered from a table), never one Python dict per event; the output is streamed, gzip-compressed
when the path ends in ``.gz``.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping, Sequence
from typing import Any, BinaryIO

import numpy as np
import orjson

from ._common import FLOW_DTYPE, ScopesLike, plural, scope_names as _scope_names, trace_output
from .decode import EVENT_DTYPE, DecodedLaunch
from .intervals import INTERVAL_DTYPE, describe_unmatched, pair
from .select import Subset, subset

CHUNK = 1 << 15  # rows formatted per numpy batch
LAUNCH_GAP_NS = 1_000  # gap between launches placed without an absolute time
MAX_LOST_ARGS = 1_000  # per-warp entries listed in a launch's lost-records notice


# --------------------------------------------------------------------------- vectorised formatting
#
# Rows are assembled from parts, each an (n, width) uint8 matrix: constants (broadcast), numbers
# (digits computed two at a time through a lookup table), and rows gathered from small tables
# (scope names, per-thread fragments).  Parts are copied side by side into a structured array of
# void fields, whose bytes are the rows.  Variable-width numbers are right-aligned in their column
# and padded with a filler byte: a space (JSON whitespace between tokens, written as is) where a
# number stands alone, or NUL where it sits inside a string (thread names), removed by compaction.

SPACE, NUL = 0x20, 0x00


def _pair_table(pad: int) -> np.ndarray:
    """uint16 lookup, two ASCII digits per entry: [0, 100) the leading pair of a number (tens
    digit blank when zero), [100, 200) an inner pair, [200, 300) a pair left of the number (blank)."""
    t = np.full((300, 2), pad, np.uint8)
    for r in range(100):
        t[r] = (pad if r < 10 else 48 + r // 10, 48 + r % 10)
        t[100 + r] = (48 + r // 10, 48 + r % 10)
    return t.view(np.uint16).ravel()


_PAIRS = {SPACE: _pair_table(SPACE), NUL: _pair_table(NUL)}
_FRAC = np.array([list(f".{i:03d}".encode()) for i in range(1000)], np.uint8)  # ".ddd" for ns -> us


def _const(s: bytes | str, n: int) -> np.ndarray:
    b = s.encode() if isinstance(s, str) else s
    return np.broadcast_to(np.frombuffer(b, np.uint8), (n, len(b)))


def _int(v: np.ndarray, pad: int = SPACE) -> np.ndarray:
    """Decimal digits of integers, right-aligned and padded with ``pad``: an (n, width) uint8 matrix."""
    v = np.asarray(v)
    n = len(v)
    if n == 0:
        return np.zeros((0, 1), np.uint8)
    neg = v < 0 if v.dtype.kind == "i" else None
    a = np.abs(v) if neg is not None else v
    top = int(a.max())
    dt = np.uint32 if top < 1 << 32 else np.uint64
    q = a.astype(dt)
    hundred = dt(100)
    npairs = (len(str(top)) + 1) // 2
    out = np.empty((n, npairs), np.uint16)
    table = _PAIRS[pad]
    for k in range(npairs - 1, -1, -1):  # a loop over digit pairs, not over numbers
        qa = q // hundred
        idx = q - qa * hundred
        idx += (qa > 0).astype(dt) * hundred
        if k != npairs - 1:
            idx += (q == 0).astype(dt) * dt(200)
        np.take(table, idx, out=out[:, k])
        q = qa
    out8 = out.view(np.uint8)
    if neg is not None and neg.any():
        sign = np.where(neg, ord("-"), pad).astype(np.uint8)[:, None]
        return np.concatenate([sign, out8], axis=1)
    return out8


def _us(ns: np.ndarray) -> list[np.ndarray]:
    """Parts of microseconds with 3 decimals from int64 ns: ``1234567`` -> ``1234.567``.  The trace
    axis starts at 0; anything earlier is clamped to 0."""
    ns = np.maximum(np.asarray(ns, np.int64), 0)
    whole = ns // 1000
    return [_int(whole), np.take(_FRAC, ns - whole * 1000, axis=0)]


def _table(strings: Sequence[bytes], pad: int = SPACE) -> np.ndarray:
    """(k, width) uint8 matrix of byte strings, left-aligned, padded with ``pad``."""
    width = max((len(s) for s in strings), default=0)
    t = np.full((len(strings), max(width, 1)), pad, np.uint8)
    for i, s in enumerate(strings):
        t[i, : len(s)] = np.frombuffer(s, np.uint8)
    return t


def _assemble(parts: list[np.ndarray | list]) -> np.ndarray:
    """The rows made of ``parts`` side by side, as an (n, width) uint8 matrix."""
    flat: list[np.ndarray] = []
    for p in parts:
        flat.extend(p if isinstance(p, list) else [p])
    n = flat[0].shape[0]
    dt = np.dtype([(f"f{i}", f"V{p.shape[1]}") for i, p in enumerate(flat)])
    rows = np.empty(n, dt)
    for i, p in enumerate(flat):
        w = p.shape[1]
        if p.strides[0] == 0:  # a broadcast constant
            rows[f"f{i}"] = np.frombuffer(p[0].tobytes(), f"V{w}")[0]
        else:
            rows[f"f{i}"] = np.ascontiguousarray(p).view(f"V{w}").ravel()
    return rows.view(np.uint8).reshape(n, dt.itemsize)


def _rows(parts: list) -> bytes:
    """Rows as bytes, spaces kept."""
    return _assemble(parts).tobytes()


def _rows_compact(parts: list) -> bytes:
    """Rows as bytes, NUL fillers removed."""
    m = _assemble(parts)
    return m[m != NUL].tobytes()


def _jstr(s: str) -> bytes:
    """A JSON string literal, quotes included."""
    return orjson.dumps(s)


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
    if flows is not None:
        from .perfetto import _flows_for
        per = dict(zip((id(d) for d in decoded), _flows_for(flows, decoded)))
    out: list[_Launch] = []
    for item in data:
        if isinstance(item, DecodedLaunch):
            sub = subset(item, select)
            iv, un = _subset_arrays(item, sub)
            out.append(_Launch(item.launch, iv, un, item.t0_ns, item, sub=sub,
                               flows=per.get(id(item)) if flows is not None else None))
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


def _place(launches: list[_Launch]) -> None:
    """Set every launch's offset on the trace axis (ns), with the earliest time at >= 0."""
    known = [ln.t0_ns for ln in launches if ln.t0_ns is not None]
    base = min(known) if known else 0
    cursor = None
    for ln in launches:
        if ln.t0_ns is not None:
            ln.offset_ns = ln.t0_ns - base
        else:
            ln.offset_ns = 0 if cursor is None else cursor + LAUNCH_GAP_NS
        ends = [float(ln.offset_ns)]
        if len(ln.intervals):
            ends.append(ln.offset_ns + float(np.nanmax(ln.intervals["end_ns"], initial=0.0)))
        if ln.decoded is not None:
            ends.append(ln.offset_ns + ln.decoded.duration_ns)
        end = int(np.ceil(max(ends)))
        cursor = end if cursor is None else max(cursor, end)
    lows = []
    for ln in launches:
        for a in (ln.intervals["start_ns"], ln.unmatched["time_ns"]):
            a = a[np.isfinite(a)]
            if len(a):
                lows.append(ln.offset_ns + float(a.min()))
    shift = min(0, int(np.floor(min(lows)))) if lows else 0
    for ln in launches:
        ln.offset_ns -= shift


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


def _warp_label_table(warp_names: Any, warps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Table rows (JSON-escaped, no quotes) for the warps present, and each warp's row index."""
    uniq, idx = np.unique(warps, return_inverse=True)
    names: dict[int, str] = {}
    if isinstance(warp_names, Mapping):
        names = {int(k): str(v) for k, v in warp_names.items()}
    elif warp_names is not None:
        names = {i: str(v) for i, v in enumerate(warp_names)}
    labels = [_jstr(names.get(int(w), f"warp {int(w)}"))[1:-1] for w in uniq]
    return _table(labels, NUL), idx.ravel()  # inside a string: NUL filler, compacted away


def write_chrome_trace(
    path: str | os.PathLike | BinaryIO,
    data: DecodedLaunch | np.ndarray | Sequence[DecodedLaunch | np.ndarray],
    scope_names: ScopesLike = None,
    *,
    warp_names: Mapping[int, str] | Sequence[str] | None = None,
    select: Any = None,
    flows: Any = None,
    compresslevel: int = 3,
) -> dict:
    """Write a Chrome trace JSON file (see the module docstring for its layout).

    Args:
        path: output path (``.gz`` suffix: gzip) or a binary file object.
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
        compresslevel: gzip level for ``.gz`` paths.

    Returns:
        a summary dict: events written, intervals, unmatched, lost records, launches.
    """
    launches = _collect(data, select, flows)
    _place(launches)
    with trace_output(path, compresslevel) as f:
        summary = _write(f, launches, scope_names, warp_names)
    return summary


def _write(f: BinaryIO, launches: list[_Launch], scope_names: ScopesLike, warp_names: Any) -> dict:
    multi = len(launches) > 1
    f.write(b'{"displayTimeUnit":"ns","traceEvents":[\n')
    out = _Out(f)
    # pids: one per (launch, SM), in order; tids: after all pids
    keys_per_launch = []
    n_pids = 0
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
        t_sm = sms[first]
        sm_ids = np.unique(t_sm)
        keys_per_launch.append((tkey, t_sm, sm_ids, n_pids))
        n_pids += len(sm_ids)
    tid_base = n_pids + 1
    summary = {"trace_events": 0, "intervals": 0, "unmatched": 0, "lost_records": 0, "launches": [],
               "dropped_no_time": 0}
    meta = []
    t_index = 0
    for ln, (tkey, t_sm, sm_ids, pid0) in zip(launches, keys_per_launch):
        names = (_scope_names(scope_names) if scope_names is not None
                 else (ln.decoded.scopes if ln.decoded is not None else None)) or {}
        pids = pid0 + 1 + np.arange(len(sm_ids))
        for sm, pid in zip(sm_ids.tolist(), pids.tolist()):
            pname = f"launch {ln.launch} / SM {sm}" if multi else f"SM {sm}"
            out.obj({"name": "process_name", "ph": "M", "pid": pid, "args": {"name": pname}})
            out.obj({"name": "process_sort_index", "ph": "M", "pid": pid, "args": {"sort_index": pid}})
        # threads, vectorised: name and sort index
        nt = len(tkey)
        tids = tid_base + t_index + np.arange(nt, dtype=np.int64)
        t_pid = pids[np.searchsorted(sm_ids, t_sm)] if nt else np.zeros(0, np.int64)
        t_cta, t_warp = tkey >> 16, tkey & 0xFFFF
        roles = warp_names if warp_names is not None else (ln.decoded.warp_roles if ln.decoded else None)
        wtab, widx = _warp_label_table(roles, t_warp)
        for a in range(0, nt, CHUNK):
            s = slice(a, a + CHUNK)
            k = len(tids[s])
            head = [_const(b',\n{"ph":"M","pid":', k), _int(t_pid[s], NUL),
                    _const(b',"tid":', k), _int(tids[s], NUL)]
            out.rows(_rows_compact(head + [_const(b',"name":"thread_name","args":{"name":"CTA ', k),
                                           _int(t_cta[s], NUL), _const(b" ", k), wtab[widx[s]],
                                           _const(b'"}}', k)]), k)
            out.rows(_rows_compact(head + [_const(b',"name":"thread_sort_index","args":{"sort_index":', k),
                                           _int(tids[s], NUL), _const(b"}}", k)]), k)
        t_index += nt
        # per-thread fragment shared by all of a thread's events
        thread_frag = _assemble([_const(b',"pid":', nt), _int(t_pid), _const(b',"tid":', nt), _int(tids),
                                 _const(b',"args":{"cta":', nt), _int(t_cta), _const(b',"warp":', nt),
                                 _int(t_warp)]) if nt else None

        def thread_of(cta: np.ndarray, warp: np.ndarray) -> np.ndarray:
            return np.searchsorted(tkey, (cta.astype(np.int64) << 16) | warp.astype(np.int64))

        # complete events
        iv = ln.intervals
        finite = np.isfinite(iv["start_ns"]) & np.isfinite(iv["end_ns"])
        if not finite.all():
            summary["dropped_no_time"] += int((~finite).sum())
            iv = iv[finite]
        sc_ids = np.unique(np.r_[iv["scope"], ln.unmatched["scope"]]).astype(np.int64)
        sc_names = [names.get(int(s), f"scope {int(s)}") for s in sc_ids]
        x_head = _table([b',\n{"name":' + _jstr(n) for n in sc_names])
        x_head = np.concatenate([x_head, _const(b',"ph":"X","ts":', len(sc_ids))], axis=1)
        sid = np.concatenate([_const(b',"scope":', len(sc_ids)), _int(sc_ids)], axis=1)
        cyc = ln.cycles_arg
        for a in range(0, len(iv), CHUNK):
            c = iv[a : a + CHUNK]
            k = len(c)
            t0 = np.rint(c["start_ns"] + ln.offset_ns).astype(np.int64)
            t1 = np.rint(c["end_ns"] + ln.offset_ns).astype(np.int64)
            sr = np.searchsorted(sc_ids, c["scope"])
            parts = [np.take(x_head, sr, axis=0), _us(t0), _const(b',"dur":', k), _us(np.maximum(t1 - t0, 0)),
                     np.take(thread_frag, thread_of(c["cta"], c["warp"]), axis=0), np.take(sid, sr, axis=0)]
            if cyc:
                parts += [_const(b',"cycles":', k), _int(c["end_cycles"] - c["start_cycles"])]
            parts.append(_const(b"}}", k))
            out.rows(_rows(parts), k)
        # unmatched events
        un = ln.unmatched[np.isfinite(ln.unmatched["time_ns"])]
        summary["dropped_no_time"] += len(ln.unmatched) - len(un)
        if len(un):
            u_head = _table([b',\n{"name":' + _jstr(f"{n} ({'end, no start' if e else 'start, no end'})")
                             for n in sc_names for e in (0, 1)])
            u_head = np.concatenate([u_head, _const(b',"ph":"i","s":"t","ts":', len(u_head))], axis=1)
            for a in range(0, len(un), CHUNK):
                c = un[a : a + CHUNK]
                k = len(c)
                sr = np.searchsorted(sc_ids, c["scope"])
                out.rows(_rows([
                    np.take(u_head, 2 * sr + c["is_end"], axis=0),
                    _us(np.rint(c["time_ns"] + ln.offset_ns).astype(np.int64)),
                    np.take(thread_frag, thread_of(c["cta"], c["warp"]), axis=0), np.take(sid, sr, axis=0),
                    _const(b',"seq":', k), _int(c["seq"]), _const(b',"unmatched":true}}', k)]), k)
        # lost records and problems
        info = {"launch": ln.launch, "t0_ns": ln.t0_ns, "trace_offset_ns": ln.offset_ns,
                "intervals": int(len(iv)), "unmatched": int(len(un))}
        if len(ln.unmatched):
            info["unmatched_detail"] = describe_unmatched(ln.unmatched, names)
        launch_pid = int(pids[0]) if len(pids) else 1
        launch_tid = int(tids[0]) if nt else tid_base
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
            start_ts = float(ln.offset_ns) / 1000.0
            if ln.flows is not None and len(ln.flows):
                summary["flows"] = summary.get("flows", 0) + _flow_events(out, ln, names, tkey, tids, t_pid)
            if d.lost_total:
                _lost_events(out, ln, d, thread_of, thread_frag)
                lost = d.lost
                order = np.argsort(-lost["lost"].astype(np.int64), kind="stable")[:MAX_LOST_ARGS]
                out.obj({"name": f"kperf: {d.lost_total} records lost", "ph": "i", "s": "g", "ts": start_ts,
                         "pid": launch_pid, "tid": launch_tid,
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
                         "ts": start_ts, "pid": launch_pid, "tid": launch_tid,
                         "args": {"problems": list(d.problems)}})
        summary["intervals"] += int(len(iv))
        summary["unmatched"] += int(len(un))
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
        out.rows(_rows_compact([
            _const(b',\n{"name":"lost ', k), _int(c["lost"], NUL),
            _const(b' records","ph":"i","s":"t","ts":', k),
            _int(ts // 1000, NUL), np.take(_FRAC, ts % 1000, axis=0),
            np.take(thread_frag, thread_of(c["cta"], c["warp"]), axis=0),
            _const(b',"lost":', k), _int(c["lost"], NUL), _const(b',"count":', k), _int(c["count"], NUL),
            _const(b',"kept":', k), _int(c["kept"], NUL),
            _const(b',"where":"' + where + b' the kept records"}}', k)]), k)


def _flow_events(out: _Out, ln: _Launch, names: dict, tkey: np.ndarray, tids: np.ndarray,
                 t_pid: np.ndarray) -> int:
    """Chrome flow events: ``"s"`` on the source warp, ``"f"`` (binding to the enclosing slice) on the
    destination warp.  Flows whose warps are not in the trace are left out."""
    f = np.asarray(ln.flows)
    if f.dtype != FLOW_DTYPE:
        raise TypeError(f"flows must be FLOW_DTYPE arrays, got dtype {f.dtype}")
    n = 0
    for cta, sw, s_ns, dw, d_ns, name in f.tolist():  # a loop over flows (a trace's subset: few)
        ks = np.searchsorted(tkey, (cta << 16) | sw)
        kd = np.searchsorted(tkey, (cta << 16) | dw)
        if (ks >= len(tkey) or kd >= len(tkey) or tkey[ks] != (cta << 16) | sw or tkey[kd] != (cta << 16) | dw
                or not (np.isfinite(s_ns) and np.isfinite(d_ns))):
            continue
        n += 1
        label = names.get(int(name), f"scope {name}")
        fid = f"{ln.launch}:{n}"
        out.obj({"name": label, "cat": "flow", "ph": "s", "id": fid, "ts": round(s_ns + ln.offset_ns) / 1000,
                 "pid": int(t_pid[ks]), "tid": int(tids[ks])})
        out.obj({"name": label, "cat": "flow", "ph": "f", "bp": "e", "id": fid,
                 "ts": round(d_ns + ln.offset_ns) / 1000, "pid": int(t_pid[kd]), "tid": int(tids[kd])})
    return n
