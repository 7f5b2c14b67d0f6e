"""Write decoded launches as a native Perfetto trace (protobuf), for ui.perfetto.dev and ``kperf view``.

Layout of the trace:

- tracks: ``launch N: <kernel>`` > ``SM s`` > ``CTA c`` > one track per warp, named by its role when
  the launch has ``warp_roles`` (``"producer (warp 4)"``), else ``"warp 4"`` (:mod:`.labels`; a CTA
  of a grid of more than one dimension reads ``"CTA 37 (5,4,0)"``).  Each launch's counter tracks come
  first, then its SMs busiest first (most events; :func:`kperf.tracing.placement.busiest_first`),
  CTAs and warps by number.  Perfetto's UI opens every group collapsed except a lone top-level one,
  and a trace cannot ask for more: so a file of one launch opens on its counters and the list of SMs,
  the busiest at the top; ``kperf view`` also expands the busiest SM and its CTAs (the writer's
  summary names them: ``launches[i]["busiest_sm"]``, ``["busiest_sm_ctas"]``);
- one slice per matched interval on its warp's track (TrackEvent ``SLICE_BEGIN``/``SLICE_END``), named
  after its scope, with debug annotations ``scope`` (id), ``cta``, ``warp`` and ``cycles`` (the
  interval in SM cycles; left out for ``clock="globaltimer"``);
- unmatched starts/ends as instants ``"<scope> (start, no end)"`` / ``"<scope> (end, no start)"``,
  and ``"lost records"`` instants (annotations ``lost``, ``count``, ``kept``) where a warp lost records;
- per launch, counter tracks ``"warps in <scope>"``: how many of the trace's warps are inside each
  scope over time;
- flows (``FLOW_DTYPE``): an instant named after the flow on the source warp and one on the
  destination warp, joined by a Perfetto flow arrow;
- a ``"kperf: ..."`` instant on each launch track with what the trace holds (subset, lost records,
  decode problems) as string annotations;
- numbers given for a launch as a whole (``launch_args``, e.g. the memory traffic ``kperf ncu``
  measured, and the launch's own ``info``) as typed annotations of an instant named
  ``launch_args_name`` at the start of the launch's track (:mod:`.launch_args`).

Time: ns, 0 at the earliest launch's first CTA entry, launches at their absolute ``t0_ns``, as in the
Chrome trace (:mod:`.placement`).  Large launches get a subset of CTAs by default
(:mod:`kperf.tracing.select`).

Encoding: kperf's own vectorised protobuf encoder (:mod:`kperf.tracing.protowire`), one block of
warps at a time, streamed to the file (gzip on ``.gz``), written to a temporary file and renamed at
the end.  The ``perfetto`` package's Python protos build one object per packet, about 0.1M slices/s
on a 2-core machine, several times slower than this encoder (``bench/host_throughput.py`` measures
both; numbers in ``bench/results/``); the tests read the traces back with them.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping, Sequence
from typing import Any, BinaryIO

import numpy as np

from . import protowire as pw
from ._common import plural, trace_output
from .decode import DecodedLaunch
from .flows import flows_per_launch
from .intervals import describe_unmatched
from .labels import cta_label, refuse_other_format, role_table, role_with_warp, sm_label
from .launch_args import DEFAULT_NAME, annotation, with_info
from .placement import LaunchSpan, busiest_first, earliest, trace_offsets
from .select import Subset, ranges, subset

BLOCK_EVENTS = 1 << 16  # events encoded per block
PROGRESS_MIN_EVENTS = 2_000_000  # show a progress bar above this many events (on a terminal)
SEQ_ID = 1  # trusted_packet_sequence_id of every packet

# field numbers (perfetto_trace.proto)
_P_TIMESTAMP, _P_SEQ, _P_TRACK_EVENT, _P_INTERNED, _P_FLAGS, _P_DESCRIPTOR = 8, 10, 11, 12, 13, 60
_E_ANNOT, _E_TYPE, _E_NAME_IID, _E_TRACK, _E_NAME = 4, 9, 10, 11, 23
_E_COUNTER, _E_FLOW, _E_FLOW_END = 30, 47, 48
_A_NAME_IID, _A_INT, _A_STRING, _A_NAME = 1, 4, 6, 10
_T_UUID, _T_NAME, _T_PARENT, _T_COUNTER, _T_ORDER, _T_RANK = 1, 2, 5, 8, 11, 12
_BEGIN, _END, _INSTANT, _COUNTER = 1, 2, 3, 4
_SEQ_CLEARED, _SEQ_NEEDS_STATE = 1, 2
_ORDER_EXPLICIT = 3
_ANNOTATIONS = ("scope", "cta", "warp", "cycles", "seq", "lost", "count", "kept")
_AID = {name: i + 1 for i, name in enumerate(_ANNOTATIONS)}


def _packet(body: bytes) -> bytes:
    return pw.f_bytes(1, body)


def _descriptor(uuid: int, name: str, parent: int | None = None, rank: int | None = None,
                counter: bool = False) -> bytes:
    d = pw.f_varint(_T_UUID, uuid) + pw.f_bytes(_T_NAME, name)
    if parent is not None:
        d += pw.f_varint(_T_PARENT, parent)
    if counter:
        d += pw.f_bytes(_T_COUNTER, b"")
    else:
        d += pw.f_varint(_T_ORDER, _ORDER_EXPLICIT)
    if rank is not None:
        d += pw.f_varint(_T_RANK, rank)
    return _packet(pw.f_bytes(_P_DESCRIPTOR, d) + pw.f_varint(_P_SEQ, SEQ_ID))


def _note(ts: int, track: int, name: str, args: Mapping[str, Any], typed: bool = False) -> bytes:
    """An instant with inline (not interned) name and string annotations (``typed``: numbers as
    numbers, :func:`.launch_args.annotation`)."""
    ev = pw.f_varint(_E_TYPE, _INSTANT) + pw.f_varint(_E_TRACK, track) + pw.f_bytes(_E_NAME, name)
    for k, v in args.items():
        body = annotation(k, v) if typed else pw.f_bytes(_A_NAME, k) + pw.f_bytes(_A_STRING, str(v))
        ev += pw.f_bytes(_E_ANNOT, body)
    return _packet(pw.f_varint(_P_TIMESTAMP, max(ts, 0)) + pw.f_varint(_P_SEQ, SEQ_ID)
                   + pw.f_varint(_P_FLAGS, _SEQ_NEEDS_STATE) + pw.f_bytes(_P_TRACK_EVENT, ev))


class _Out:
    """Packets to a binary writer, counting the bytes written."""

    def __init__(self, f: BinaryIO):
        self.f = f
        self.bytes = 0

    def write(self, b: bytes) -> None:
        self.f.write(b)
        self.bytes += len(b)


@dataclasses.dataclass
class _Launch:
    d: DecodedLaunch
    sub: Subset
    flows: np.ndarray | None
    offset_ns: int = 0
    uuid: int = 0
    args: tuple[str, dict] | None = None  # (title, {name: value}) shown on the launch track


def _spans(launches: Sequence[DecodedLaunch]) -> list[LaunchSpan]:
    """What placement needs: each launch's absolute start and its earliest event (all of its events,
    so that every subset of a launch sits at the same place)."""
    return [LaunchSpan(d.t0_ns, earliest(d.columns["time_ns"])) for d in launches]


def write_perfetto_trace(
    path: str | os.PathLike | BinaryIO,
    data: DecodedLaunch | Sequence[DecodedLaunch],
    *,
    select: Any = None,
    flows: np.ndarray | Sequence[np.ndarray | None] | Mapping[int, np.ndarray] | None = None,
    counters: bool = True,
    progress: bool | None = None,
    launch_args: Mapping[int, Mapping[str, Any]] | None = None,
    launch_args_name: str = DEFAULT_NAME,
    compresslevel: int = 3,
) -> dict:
    """Write a Perfetto protobuf trace (see the module docstring for its layout).

    Args:
        path: output path (``.gz``: gzip; ``.pftrace`` or ``.perfetto-trace`` by convention, a
            ``.json`` name is refused) or a binary file object.
        data: a :class:`DecodedLaunch` or a list of them.
        select: which CTAs the trace holds (a spec such as ``"first-wave"``, ``"ctas:0-7"``, ``"all"``;
            see :mod:`kperf.tracing.select`); default: everything up to 1M events per launch, else
            the first wave, with a printed note.
        flows: ``FLOW_DTYPE`` arrays: one (single launch), a list (one per launch) or ``{launch: array}``.
        counters: add the "warps in <scope>" counter tracks.
        progress: show a progress bar (default: on a terminal, for large traces).
        launch_args: ``{launch number: {name: value}}``, numbers of a launch as a whole (e.g.
            :func:`kperf.tracing.traffic.trace_args`), shown as the annotations of an instant named
            ``launch_args_name`` at the launch's start, on its track (and in the summary's launches);
            each ``DecodedLaunch.info`` joins them (the names given here win).
        launch_args_name: that instant's name.
        compresslevel: gzip level for ``.gz`` paths.

    Returns:
        a summary dict: slices, instants, counter points, flows, bytes written, and per launch what
        the trace holds.
    """
    refuse_other_format(path, "perfetto")
    decoded = [data] if isinstance(data, DecodedLaunch) else list(data)
    for d in decoded:
        if not isinstance(d, DecodedLaunch):
            raise TypeError(f"write_perfetto_trace takes DecodedLaunch objects, got {type(d).__name__}")
    fl = flows_per_launch(flows, decoded)
    offsets = trace_offsets(_spans(decoded))
    launches = [_Launch(d, subset(d, select), f, off) for d, f, off in zip(decoded, fl, offsets, strict=True)]
    extra = with_info(launch_args, decoded)
    for ln in launches:
        if ln.d.launch in extra:
            ln.args = (launch_args_name, extra[ln.d.launch])
    with trace_output(path, compresslevel) as f:
        out = _Out(f)
        summary = _write(out, launches, counters, progress)
    summary["bytes"] = out.bytes
    return summary


def _names(launches: list[_Launch]) -> tuple[list[str], int]:
    """Interned event names: per scope id (up to the largest in any launch) the scope name, its two
    unmatched forms, then "lost records".  Returns (names, number of scope ids)."""
    n_sc = max([len(ln.d.scope_list) for ln in launches] + [1])
    merged: dict[int, str] = {}
    for ln in launches:
        for i, s in enumerate(ln.d.scope_list):
            merged.setdefault(i, s)
    sc = [merged.get(i, f"scope {i}") for i in range(n_sc)]
    unmatched = [f"{s} (start, no end)" for s in sc] + [f"{s} (end, no start)" for s in sc]
    return sc + unmatched + ["lost records"], n_sc


def _interned(names: list[str]) -> bytes:
    body = b"".join(pw.f_bytes(2, pw.f_varint(1, i + 1) + pw.f_bytes(2, s)) for i, s in enumerate(names))
    body += b"".join(pw.f_bytes(3, pw.f_varint(1, _AID[a]) + pw.f_bytes(2, a)) for a in _ANNOTATIONS)
    return _packet(pw.f_varint(_P_SEQ, SEQ_ID) + pw.f_varint(_P_FLAGS, _SEQ_CLEARED)
                   + pw.f_bytes(_P_INTERNED, body))


class _Ids:
    def __init__(self):
        self.next = 1

    def take(self, n: int) -> np.ndarray:
        a = np.arange(self.next, self.next + n, dtype=np.int64)
        self.next += n
        return a


def _write(out: _Out, launches: list[_Launch], counters: bool, progress: bool | None) -> dict:
    names, n_sc = _names(launches)
    out.write(_interned(names))
    ids = _Ids()
    summary = {"slices": 0, "instants": 0, "counter_points": 0, "flows": 0, "flows_skipped": 0,
               "dropped_no_time": 0, "launches": []}
    total = sum(ln.sub.n_events for ln in launches)
    bar = _progress(total, progress)
    try:
        for rank, ln in enumerate(launches):
            info = _write_launch(out, ln, rank, ids, n_sc, counters, bar, summary)
            summary["launches"].append(info)
    finally:
        if bar is not None:
            bar.close()
    return summary


def _progress(total: int, progress: bool | None):
    if progress is False or (progress is None and total < PROGRESS_MIN_EVENTS):
        return None
    try:
        from tqdm import tqdm
    except ImportError:  # the bar is a convenience; writing goes on without it
        return None
    return tqdm(total=total, unit="ev", unit_scale=True, desc="perfetto trace",
                disable=None if progress is None else not progress, leave=False)


_SM_RANK0 = 1 << 24  # above any scope id (23 bits): a launch's SMs after its counter tracks
_BUSIEST_CTAS = 64  # CTAs of the busiest SM named in the summary (for kperf view to expand)


def _track_tree(out: _Out, d: DecodedLaunch, segs: np.ndarray, launch_uuid: int, ids: _Ids,
                info: dict) -> np.ndarray:
    """Descriptors of the SM, CTA and warp tracks of the segments ``segs``; returns each segment's
    warp track uuid and puts the busiest SM and its CTAs into ``info``."""
    cols = d.columns
    s_cta, s_warp = cols.seg["cta"][segs], cols.seg["warp"][segs]
    s_sm = d.ctas["sm"][s_cta].astype(np.int64) if len(segs) else np.zeros(0, np.int64)
    sm_ids, sm_rank = busiest_first(s_sm, cols.seg["n"][segs].astype(np.float64))
    sm_uuid = ids.take(len(sm_ids))
    cta_ids = np.unique(s_cta)
    cta_uuid = ids.take(len(cta_ids))
    warp_uuid = ids.take(len(segs))
    desc = [_descriptor(int(u), sm_label(int(s)), launch_uuid, _SM_RANK0 + int(r))
            for s, u, r in zip(sm_ids, sm_uuid, sm_rank, strict=True)]
    cta_rows = d.ctas[cta_ids]
    cta_sm = cta_rows["sm"].astype(np.int64)
    grid_2d = bool(len(cta_rows) and (cta_rows["ctaid_y"].any() or cta_rows["ctaid_z"].any()))
    xyz = (zip(cta_rows["ctaid_x"].tolist(), cta_rows["ctaid_y"].tolist(), cta_rows["ctaid_z"].tolist(),
               strict=True) if grid_2d else [None] * len(cta_ids))
    cta_names = [cta_label(int(c), where) for c, where in zip(cta_ids, xyz, strict=True)]
    desc += [_descriptor(int(u), name, int(sm_uuid[np.searchsorted(sm_ids, s)]), int(c))
             for c, u, s, name in zip(cta_ids, cta_uuid, cta_sm, cta_names, strict=True)]
    warp_parent = cta_uuid[np.searchsorted(cta_ids, s_cta)]
    roles = role_table(d.warp_roles)
    desc += [_descriptor(int(u), role_with_warp(roles, int(w)), int(p), int(w))
             for u, w, p in zip(warp_uuid, s_warp, warp_parent, strict=True)]
    out.write(b"".join(desc))
    if len(sm_ids):
        busiest = int(sm_ids[np.argmin(sm_rank)])
        info["busiest_sm"] = busiest
        info["busiest_sm_ctas"] = [cta_names[i] for i in np.flatnonzero(cta_sm == busiest)[:_BUSIEST_CTAS]]
    return warp_uuid


def _write_launch(out: _Out, ln: _Launch, rank: int, ids: _Ids, n_sc: int, counters: bool,
                  bar, summary: dict) -> dict:
    d, sub = ln.d, ln.sub
    cols, pairs = d.columns, d.pairs()
    launch_uuid = int(ids.take(1)[0])
    title = f"launch {d.launch}" + (f": {d.kernel}" if d.kernel else "")
    out.write(_descriptor(launch_uuid, title, None, rank))

    segs = np.arange(cols.n_segments) if sub.segments is None else sub.segments
    s_cta, s_warp = cols.seg["cta"][segs], cols.seg["warp"][segs]
    tree: dict[str, Any] = {}
    warp_uuid = _track_tree(out, d, segs, launch_uuid, ids, tree)

    cyc = d.geometry.clock != "globaltimer"
    off = ln.offset_ns
    n_iv = n_un = n_lost = 0
    counter_keys = []
    # blocks of segments of about BLOCK_EVENTS events
    seg_n = cols.seg["n"][segs]
    cut = np.searchsorted(np.cumsum(seg_n), np.arange(BLOCK_EVENTS, int(seg_n.sum()), BLOCK_EVENTS))
    bounds = np.unique(np.r_[0, cut + 1, len(segs)]) if len(segs) else np.zeros(1, np.int64)
    lost_seg = _lost_segments(d, cols, segs)
    for a, b in zip(bounds[:-1], bounds[1:], strict=True):
        k = np.arange(a, b)  # indices into segs
        blob, counts, times = _block(d, cols, pairs, segs[k], warp_uuid[k], k, lost_seg, off, cyc, n_sc)
        out.write(blob)
        n_iv += counts[0]
        n_un += counts[1]
        n_lost += counts[2]
        summary["dropped_no_time"] += counts[3]
        if counters:
            counter_keys.append(_counter_keys(*times))
        if bar is not None:
            bar.update(int(seg_n[a:b].sum()))
    summary["slices"] += n_iv
    summary["instants"] += n_un + n_lost
    if counter_keys:
        keys = np.concatenate(counter_keys)
        del counter_keys
        summary["counter_points"] += _counters(out, d, ids, launch_uuid, keys)
    if ln.flows is not None and len(ln.flows):
        n_ok, n_skip = _flows(out, ln.flows, s_cta, s_warp, warp_uuid, off, ids)
        summary["flows"] += n_ok
        summary["flows_skipped"] += n_skip

    info = {"launch": d.launch, "kernel": d.kernel, "t0_ns": d.t0_ns, "trace_offset_ns": off,
            **sub.meta(), "slices": n_iv, "unmatched": n_un, "lost_records": d.lost_total,
            "clock": d.geometry.clock, "strategy": d.strategy,
            "clock_ghz": None if not np.isfinite(d.clock_ghz) else d.clock_ghz, **tree}
    args: dict[str, Any] = {"holds": sub.note() if not sub.whole else "every event of the launch"}
    if d.lost_total:
        args["lost records"] = (f"{d.lost_total} records lost in {plural(len(d.lost), 'warp')} "
                                f"(capacity {d.geometry.capacity}, {d.strategy})")
    if len(pairs.unmatched):
        args["unmatched"] = describe_unmatched(cols.to_structured(pairs.unmatched[:10_000]), d.scopes)
    for i, p in enumerate(d.problems):
        args[f"problem {i + 1}"] = p
    what = "subset of the launch" if not sub.whole else "launch"
    out.write(_note(off, launch_uuid, f"kperf: {what}", args))
    if ln.args is not None:
        info["args"] = ln.args[1]
        out.write(_note(off, launch_uuid, ln.args[0], ln.args[1], typed=True))
    return info


def _lost_segments(d: DecodedLaunch, cols, segs: np.ndarray) -> dict:
    """{index into segs: (lost, count, kept)} for the trace's warps that lost records."""
    if not len(d.lost) or not len(segs):
        return {}
    skey = (cols.seg["cta"][segs] << 16) | cols.seg["warp"][segs]
    lkey = (d.lost["cta"].astype(np.int64) << 16) | d.lost["warp"].astype(np.int64)
    pos = np.searchsorted(skey, lkey)
    pos = np.minimum(pos, len(skey) - 1)
    hit = skey[pos] == lkey
    return {int(p): (int(r["lost"]), int(r["count"]), int(r["kept"]))
            for p, r in zip(pos[hit], d.lost[hit], strict=True)}


def _ts(t: np.ndarray, off: int) -> np.ndarray:
    return np.maximum(np.rint(t + off), 0).astype(np.uint64)


def _event(n: int, ts: np.ndarray, typ: int, track: np.ndarray, name_iid: np.ndarray | None) -> pw.Rows:
    """A TracePacket column with a TrackEvent; annotations etc. are added to the returned ``te``."""
    te = pw.Rows(n).f_const(_E_TYPE, typ).f_varint(_E_TRACK, track)
    if name_iid is not None:
        te.f_varint(_E_NAME_IID, name_iid)
    return te


def _packets(ts: np.ndarray, te: pw.Rows) -> pw.Rows:
    pkt = (pw.Rows(te.n).f_varint(_P_TIMESTAMP, ts).f_const(_P_SEQ, SEQ_ID)
           .f_const(_P_FLAGS, _SEQ_NEEDS_STATE)
           .f_message(_P_TRACK_EVENT, te))
    return pw.Rows(te.n).f_message(1, pkt)


def _annot(te: pw.Rows, name: str, v: np.ndarray) -> None:
    te.f_message(_E_ANNOT, pw.Rows(te.n).f_const(_A_NAME_IID, _AID[name]).f_varint(_A_INT, v))


def _block(d, cols, pairs, segs, uuids, k, lost_seg, off, cyc, n_sc):
    """Packets of one block of segments, in program order per warp."""
    lo, hi = cols.start[segs], cols.start[segs + 1]
    local0 = np.cumsum(hi - lo) - (hi - lo)  # block-local index of each segment's first event
    iv = ranges(np.searchsorted(pairs.start, lo), np.searchsorted(pairs.start, hi))
    un = ranges(np.searchsorted(pairs.unmatched, lo), np.searchsorted(pairs.unmatched, hi))
    t = cols["time_ns"]
    rows, keys = [], []
    # slices
    s, e = pairs.start[iv], pairs.end[iv]
    seg_of_iv = np.searchsorted(lo, s, side="right") - 1
    ts0, ts1 = t[s], t[e]
    fin = np.isfinite(ts0) & np.isfinite(ts1)
    dropped = int((~fin).sum())
    if dropped:
        s, e, seg_of_iv, ts0, ts1 = s[fin], e[fin], seg_of_iv[fin], ts0[fin], ts1[fin]
    n = len(s)
    sc = cols["scope"][s].astype(np.int64)
    track = uuids[seg_of_iv]
    b0, b1 = _ts(ts0, off), _ts(ts1, off)
    b1 = np.maximum(b1, b0)
    te = _event(n, b0, _BEGIN, track, sc + 1)
    _annot(te, "scope", sc)
    _annot(te, "cta", cols.seg["cta"][segs][seg_of_iv])
    _annot(te, "warp", cols.seg["warp"][segs][seg_of_iv])
    if cyc:
        c = cols["cycles"]
        _annot(te, "cycles", np.maximum(c[e] - c[s], 0))
    rows.append(_packets(b0, te))
    keys.append(2 * (s - lo[seg_of_iv] + local0[seg_of_iv]))
    rows.append(_packets(b1, _event(n, b1, _END, track, None)))
    keys.append(2 * (e - lo[seg_of_iv] + local0[seg_of_iv]))
    # unmatched events
    u = pairs.unmatched[un]
    tu = t[u]
    fu = np.isfinite(tu)
    dropped += int((~fu).sum())
    u, tu = u[fu], tu[fu]
    seg_of_u = np.searchsorted(lo, u, side="right") - 1
    usc = cols["scope"][u].astype(np.int64)
    uend = cols["is_end"][u].astype(np.int64)
    bu = _ts(tu, off)
    te = _event(len(u), bu, _INSTANT, uuids[seg_of_u], usc + 1 + n_sc * (1 + uend))
    _annot(te, "scope", usc)
    _annot(te, "seq", cols.column("seq", u))
    rows.append(_packets(bu, te))
    keys.append(2 * (u - lo[seg_of_u] + local0[seg_of_u]))
    # lost records: after a warp's last kept record (keep-first), before its first (wrap)
    here = [(j, lost_seg[int(g)]) for j, g in enumerate(k) if int(g) in lost_seg] if lost_seg else []
    if here:
        j = np.array([h[0] for h in here])
        vals = np.array([h[1] for h in here], np.int64)
        wrap = d.strategy == "wrap"
        at = lo[j] if wrap else hi[j] - 1
        tl = t[at]
        tl = np.where(np.isfinite(tl), tl, 0.0)
        bl = _ts(tl, off)
        te = _event(len(j), bl, _INSTANT, uuids[j], np.full(len(j), 3 * n_sc + 1))
        for i, name in enumerate(("lost", "count", "kept")):
            _annot(te, name, vals[:, i])
        rows.append(_packets(bl, te))
        keys.append(2 * (local0[j] + (0 if wrap else hi[j] - lo[j] - 1)) + (-1 if wrap else 1))
    allkeys = np.concatenate(keys)
    if here or dropped:  # lost records sit between events; NaN times left gaps
        rank = np.empty(len(allkeys), np.int64)
        rank[np.argsort(allkeys, kind="stable")] = np.arange(len(allkeys))
    else:  # keys are 2 * (each event's place in the block): already a permutation
        rank = allkeys // 2
    cuts = np.cumsum([r.n for r in rows])[:-1]
    blob = pw.interleave(rows, np.split(rank, cuts))
    return blob, (n, len(u), len(here), dropped), (b0, b1, sc)


_TS_BITS = 41  # counter sort keys: scope << 42 | ns << 1 | is_start (ns < 2**41: 36 minutes)


def _counter_keys(b0: np.ndarray, b1: np.ndarray, sc: np.ndarray) -> np.ndarray:
    """One int64 sort key per slice start and end: (scope, time, end before start)."""
    hi = sc.astype(np.int64) << (_TS_BITS + 1)
    return np.concatenate([hi | (b0.astype(np.int64) << 1) | 1, hi | (b1.astype(np.int64) << 1)])


def _counters(out: _Out, d: DecodedLaunch, ids: _Ids, parent: int, keys: np.ndarray) -> int:
    """Counter tracks "warps in <scope>": +1 at each slice start, -1 at its end (keys from
    :func:`_counter_keys`; one sorted int64 array, so memory stays at 8 bytes per slice end)."""
    if not len(keys):
        return 0
    keys.sort()
    s = keys >> (_TS_BITS + 1)
    used = np.unique(s)
    uuid = ids.take(len(used))
    names = d.scope_list
    out.write(b"".join(_descriptor(int(u), f"warps in {names[int(c)] if c < len(names) else f'scope {c}'}",
                                   parent, rank=i, counter=True)
                       for i, (u, c) in enumerate(zip(uuid, used, strict=True))))
    # every slice adds +1 and -1 inside its scope's run of keys, so the running sum is 0 between runs
    level = np.cumsum((keys & 1) * 2 - 1)
    t = (keys >> 1) & ((1 << _TS_BITS) - 1)
    last = np.r_[(s[1:] != s[:-1]) | (t[1:] != t[:-1]), True]  # one point per (scope, time)
    t, level, s = t[last], level[last], s[last]
    track = uuid[np.searchsorted(used, s)]
    n = len(t)
    for a in range(0, n, 1 << 17):
        sl = slice(a, a + (1 << 17))
        ts = t[sl].astype(np.uint64)
        te = _event(len(ts), ts, _COUNTER, track[sl], None)
        te.f_varint(_E_COUNTER, level[sl])
        out.write(_packets(ts, te).tobytes())
    return n


def _flows(out: _Out, flows: np.ndarray, s_cta, s_warp, warp_uuid, off: int, ids: _Ids) -> tuple[int, int]:
    """Each flow: an instant on the source and on the destination warp, joined by a flow id."""
    f = np.asarray(flows)
    key = (s_cta.astype(np.int64) << 16) | s_warp.astype(np.int64)
    order = np.argsort(key)
    skey, suuid = key[order], warp_uuid[order]

    def track(cta, warp):
        k = (cta.astype(np.int64) << 16) | warp.astype(np.int64)
        p = np.minimum(np.searchsorted(skey, k), max(len(skey) - 1, 0))
        found = (skey[p] == k) if len(skey) else np.zeros(len(k), bool)
        return suuid[p] if len(skey) else np.zeros(len(k), np.int64), found

    src, ok1 = track(f["cta"], f["src_warp"])
    dst, ok2 = track(f["cta"], f["dst_warp"])
    ok = ok1 & ok2 & np.isfinite(f["src_ns"]) & np.isfinite(f["dst_ns"])
    f, src, dst = f[ok], src[ok], dst[ok]
    n = len(f)
    if n:
        fid = ids.take(n).astype(np.uint64)  # unique within the trace
        name = f["name"].astype(np.int64) + 1
        t0, t1 = _ts(f["src_ns"], off), _ts(f["dst_ns"], off)
        te = _event(n, t0, _INSTANT, src, name).f_fixed64(_E_FLOW, fid)
        out.write(_packets(t0, te).tobytes())
        te = _event(n, t1, _INSTANT, dst, name).f_fixed64(_E_FLOW_END, fid)
        out.write(_packets(t1, te).tobytes())
    return n, int((~ok).sum())
