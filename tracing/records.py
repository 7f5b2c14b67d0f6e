"""Decode the record slots of a launch's good CTAs into event columns, block by block.

Each recording warp of a good CTA is a *segment*: its ``count`` says how many records it attempted,
of which ``min(count, capacity)`` are kept; with ``wrap`` the oldest kept one sits at slot
``count % capacity``.  A kept record becomes an event: scope id and start/end from its tag, absolute
cycles from its time (the low 32 bits of ``%clock`` are unwrapped, :mod:`.unwrap`), and ns on the
launch axis through the CTA's clock mapping (:mod:`.clocks`).

Records the decoder cannot trust are *rejected* (:mod:`.record_checks`: an invalid tag, a scope id
outside the scope table, a time outside the CTA's header span or out of program order, or the partner
of a record rejected for its time): they never become events, their ``seq`` stays unused, and they are
rows of :attr:`DecodedRecords.rejected`.  Slots past a warp's count that hold data, and counts larger
than the cycles the CTA ran, are reported.  Nothing here raises: every finding is a sentence in
:attr:`DecodedRecords.problems`.

Speed: the good CTAs are cut into blocks of about :data:`BLOCK_EVENTS` records kept and at most about
:data:`BLOCK_SLOTS` slots (their temporaries stay in cache; a launch that fills few of its slots is
read in few blocks), decoded on a few threads (:mod:`.parallel`) straight into preallocated columns.
A block whose warps are all full and unrotated is handled as 2D arrays with no gather, its per-CTA
values broadcast along (CTAs, slots x capacity) rows; otherwise the kept records are taken from the
buffer's words, and the slots past the counts are checked in one pass over them.  A check that holds
for a well-formed block (every time in order and inside its CTA's span, every tag valid) is made with
a few reductions; the per-record work that finds what is wrong runs only where one of them fails.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from kperf.dialect.layout import MAX_SCOPES, TAG_END, TAG_SCOPE_BITS, TAG_SCOPE_SHIFT, TAG_VALID, Geometry

from ._common import fmt_ids, in_table, plural
from .clocks import ClockFit
from .columns import EventColumns
from .headers import CtaHeaders
from .intervals import all_adjacent
from .parallel import map_blocks
from .record_checks import (
    REJECT_INVALID_TAG,
    REJECT_OUT_OF_ORDER,
    REJECT_OUT_OF_SPAN,
    REJECT_PARTNER,
    REJECT_UNKNOWN_SCOPE,
    REJECTED_DTYPE,
    SPAN_SLACK,
    order_rejects,
    partners,
    rejected_problems,
    span_bounds,
)
from .unwrap import MASK32, anchor, signed_steps, unwrap32

#: events decoded per block: the block's temporaries stay in cache ...
BLOCK_EVENTS = 1 << 16
#: ... and slots read per block (a warp's slots past its count are checked too)
BLOCK_SLOTS = 1 << 20
_I64_MAX = np.iinfo(np.int64).max
#: tag bits 24..30, zero in every valid tag: a valid tag has bit 31 set and these clear
_TAG_RESERVED = (TAG_VALID - 1) & ~((1 << (TAG_SCOPE_SHIFT + TAG_SCOPE_BITS)) - 1)
_VALID_MASK = np.uint32(TAG_VALID | _TAG_RESERVED)


@dataclasses.dataclass
class DecodedRecords:
    """The events of a launch's good CTAs and what was wrong with their records."""

    columns: EventColumns  # in (cta, warp, seq) order
    good: np.ndarray  # the good CTAs (region indices): the rows of counts and lost
    seg_cta: np.ndarray  # per segment (good CTA x recording warp): the CTA's region index
    seg_n: np.ndarray  # per segment: events decoded
    counts: np.ndarray  # (good CTAs, slots) int64: records each warp attempted ...
    lost: np.ndarray  # ... and lost to the capacity limit
    rejected: np.ndarray  # REJECTED_DTYPE rows (kperf.tracing.record_checks)
    seg_lost: np.ndarray  # per segment of ``columns``: records its warp lost to the capacity limit
    problems: list[str]
    adjacent: bool = False  # every warp's events are (start, end) neighbours of one scope: all paired


def decode_records(regions: np.ndarray, headers: CtaHeaders, fit: ClockFit, geometry: Geometry, *,
                   wrap: bool, ids: np.ndarray | None, launch: int, threads: int | None) -> DecodedRecords:
    """Decode the records of the good CTAs (``headers.ok``) of ``regions`` (``geometry.cta_dtype()``).

    ``ids``: the scope table's ids, to report records outside it (None: no table); ``launch``: the
    number stored in every event; ``threads``: as :func:`~kperf.tracing.decode.decode`.
    """
    W, C = geometry.slots, geometry.capacity  # slots: the recording warps (kperf.dialect.layout)
    vc = np.flatnonzero(headers.ok)
    nv = vc.size
    cnt = (regions["counts"] if nv == len(regions) else regions["counts"][vc]).astype(np.int64)  # (nv, W)
    kept = np.minimum(cnt, C)
    gt = geometry.clock == "globaltimer"
    lo, hi = span_bounds(headers.gtime_start if gt else headers.clock_start,
                         headers.gtime_end if gt else headers.clock_end,
                         headers.end_ok & (gt | (headers.sm_start == headers.sm_end)),
                         max(SPAN_SLACK, 4 * fit.gtime_step_ns) if gt else SPAN_SLACK)
    job = _Job(
        recs=regions["records"][:, :, :C], vc=vc, W=W, C=C, wrap=wrap, clock=geometry.clock,  # no sink
        words=regions.view("<u4"), layout=(geometry.cta_bytes // 4, geometry.records_offset // 4,
                                           geometry.warp_bytes // 4, geometry.record_bytes // 4),
        first_seq=(cnt - kept if wrap else np.zeros_like(cnt)).ravel(),  # seq of each warp's oldest kept
        seg_n=kept.ravel(), seg_cta=np.repeat(vc, W), cs=headers.clock_start, ce=headers.clock_end,
        end_ok=headers.end_ok, fit=fit, ids=ids, lo=lo, hi=hi,
    )
    reports = map_blocks(job.block, _blocks(kept, W * C), len(job.scope), threads)
    seg_n = job.seg_n.copy()
    seg_warp = np.empty((nv, W), np.int64)
    seg_warp[:] = geometry.slot_warps
    seg_warp = seg_warp.reshape(-1)
    seq = None
    if any(r.dropped is not None for r in reports):
        seq = job.compact(reports, seg_n)
    rejected, back = _rejected_rows(reports, job.seg_cta, seg_warp)
    unknown = [r.unknown for r in reports if r.unknown is not None]
    problems = _count_problems(cnt, vc, headers, geometry) + _extra_problems(reports, job.seg_cta, seg_warp)
    if len(rejected) or len(back[0]):
        problems += rejected_problems(
            rejected, back, 0 if ids is None else len(ids), np.unique(np.concatenate(unknown)) if unknown else
            np.zeros(0, np.int64), "ns" if gt else "cycles")
    E = int(seg_n.sum())
    every = bool(seg_n.all())  # every segment has events: its per-segment arrays as they are
    pres = None if every else np.flatnonzero(seg_n > 0)
    p_cta = job.seg_cta if every else job.seg_cta[pres]
    columns = EventColumns(
        {"launch": np.full(len(p_cta), launch, np.int64), "cta": p_cta, "sm": headers.sm_start[p_cta],
         "warp": seg_warp if every else seg_warp[pres],
         "first_seq": job.first_seq if every else job.first_seq[pres], "n": seg_n if every else seg_n[pres]},
        job.scope[:E], job.is_end[:E], job.cycles[:E], job.time_ns[:E], seq=seq,
        start=job.base if every and seq is None else None,  # every segment as decoded
    )
    lost = cnt - kept
    adjacent = seq is None and all(r.adjacent for r in reports)  # nothing moved: the blocks' pairs stand
    return DecodedRecords(columns, vc, job.seg_cta, seg_n, cnt, lost, rejected,
                          lost.reshape(-1) if every else lost.reshape(-1)[pres], problems, adjacent)


def _blocks(kept: np.ndarray, slots: int) -> list[tuple[int, int]]:
    """``[(first, end), ...]`` CTA ranges (indices into the good CTAs) of at most about BLOCK_EVENTS
    records kept and BLOCK_SLOTS slots (``kept``: per good CTA and slot; ``slots``: per CTA): a launch
    that fills few of its slots is read in few blocks."""
    if not len(kept):
        return []
    if int(kept.sum()) * (BLOCK_SLOTS // BLOCK_EVENTS) + slots * len(kept) <= BLOCK_SLOTS:
        return [(0, len(kept))]
    kept = kept.sum(axis=1)
    cost = kept * (BLOCK_SLOTS // BLOCK_EVENTS) + slots  # in slots: a record kept weighs as much as 16
    first = (np.cumsum(cost) - cost) // BLOCK_SLOTS  # the block of each CTA
    edges = [0, *(np.flatnonzero(first[1:] != first[:-1]) + 1).tolist(), len(kept)]
    return list(zip(edges[:-1], edges[1:], strict=True))


@dataclasses.dataclass
class _Report:
    """What decoding one block found, besides the events it wrote."""

    s0: int  # the block's segments: s0 .. s1 - 1
    s1: int
    e0: int  # first event position of the block (before rejecting records)
    written: int  # events written from e0 on
    dropped: np.ndarray | None = None  # records rejected per segment of the block (None: none)
    seq: np.ndarray | None = None  # seq of the written events, when some were rejected
    rejected: list = dataclasses.field(default_factory=list)  # (segment, seq, tag, time, reason) arrays
    extra: tuple | None = None  # slots past the count holding data: (segment, count) arrays
    unknown: np.ndarray | None = None  # scope ids not in the table
    back: tuple | None = None  # backward clock steps: (segment, seq, step) arrays
    adjacent: bool = False  # its events are all (start, end) pairs of one scope, neighbours in each warp


class _Rows:
    """Per-event layout of one block: a 2D (segments, capacity) view when every segment is full
    (per-segment values then broadcast; per-CTA values along (CTAs, slots x capacity) rows, fewer and
    longer), else flat with per-segment values repeated."""

    def __init__(self, n: np.ndarray, C: int, W: int):
        self.n, self.C, self.W = n, C, W
        self.full = bool(len(n)) and bool((n == C).all())

    def shape(self, x: np.ndarray) -> np.ndarray:
        return x.reshape(len(self.n), self.C) if self.full else x

    def by_cta(self, x: np.ndarray) -> np.ndarray:
        """A full block's events as (CTAs, slots x capacity) rows."""
        return x.reshape(len(self.n) // self.W, self.W * self.C)

    def col(self, v: np.ndarray, pres: np.ndarray | None = None, force_1d: bool = False) -> np.ndarray:
        """Per-segment values ``v`` (for all segments, or for the present ones ``pres``), per event (a
        column of the 2D view when the block is full)."""
        if self.full and not force_1d:
            return v[:, None]  # broadcast by the arithmetic it takes part in
        return np.repeat(v, self.n if pres is None else self.n[pres])


@dataclasses.dataclass
class _Block:
    """One block's records on their way to the columns; shrinks when records are rejected."""

    s0: int  # first segment of the block
    e0: int  # first event position of the block
    n: np.ndarray  # records per segment
    fseq: np.ndarray  # seq of each segment's first record
    lbase: np.ndarray  # each segment's first event, counted from e0
    rows: _Rows
    tag: np.ndarray  # per event
    time: np.ndarray
    cta: np.ndarray  # the block's CTAs (region indices): a full block's rows of rows.by_cta
    rel: np.ndarray | None = None  # a full block's cycles after its CTA's clock_start (clock="clock")
    seq: np.ndarray | None = None  # per event, once records were rejected (else from the segments)
    scope: np.ndarray | None = None  # per event, once read from the tags (kept for writing)
    clean: bool = False  # every tag valid, every scope id in the (dense) table

    def seqs(self) -> np.ndarray:
        """seq per event."""
        if self.seq is not None:
            return self.seq
        return np.arange(len(self.tag), dtype=np.int64) + self.rows.col(self.fseq - self.lbase, force_1d=True)

    def segment(self, idx: np.ndarray) -> np.ndarray:
        """The block's segment (0-based) of the events at ``idx``."""
        return np.searchsorted(self.lbase, idx, side="right") - 1

    def firsts(self) -> np.ndarray:
        """bool per event: the first event of its segment."""
        first = np.zeros(len(self.tag), bool)
        first[self.lbase[self.n > 0]] = True
        return first


@dataclasses.dataclass
class _Job:
    """One launch's records: the inputs per segment (warp) and the output columns."""

    recs: np.ndarray  # the buffer's records field, (n_ctas, W, C)
    words: np.ndarray  # the same buffer as 32-bit words
    layout: tuple[int, int, int, int]  # in words: a CTA region, its first record, a warp's slots, a record
    vc: np.ndarray  # good CTAs (region indices)
    W: int
    C: int
    wrap: bool
    clock: str
    first_seq: np.ndarray  # per segment
    seg_n: np.ndarray  # kept records per segment
    seg_cta: np.ndarray  # per segment
    cs: np.ndarray  # per CTA: clock_start, clock_end (int64), exit pair valid
    ce: np.ndarray
    end_ok: np.ndarray
    fit: ClockFit
    ids: np.ndarray | None  # the scope table's ids
    lo: np.ndarray  # per CTA: the lowest and highest record time accepted (record_checks.span_bounds)
    hi: np.ndarray

    def __post_init__(self) -> None:
        S = len(self.seg_n)
        if S and self.seg_n[0] == self.seg_n.min() == self.seg_n.max():  # every warp as many (no cumsum)
            self.base = np.arange(S + 1, dtype=np.int64) * int(self.seg_n[0])  # first event of each segment
        else:
            self.base = np.zeros(S + 1, np.int64)
            np.cumsum(self.seg_n, out=self.base[1:])
        E = int(self.base[-1])
        self.scope = np.empty(E, np.uint32)
        self.dense = self.ids is not None and bool(len(self.ids)) and self.ids[0] == 0 \
            and self.ids[-1] == len(self.ids) - 1  # the usual table 0..n-1
        self.is_end = np.empty(E, bool)
        self.cycles = np.empty(E, np.int64)
        self.time_ns = np.empty(E, np.float64)

    def block(self, ca: int, cb: int) -> _Report:
        """Decode the good CTAs ``vc[ca:cb]`` into the output columns; report what was wrong."""
        b, slots = self._read(ca, cb)
        rpt = _Report(s0=b.s0, s1=b.s0 + len(b.n), e0=b.e0, written=len(b.tag))
        rpt.extra = _slots_past_count(slots, b, self.C)
        reason = self._tag_reasons(b, rpt)
        if reason is not None:
            _reject(b, rpt, reason)
        cycles = self._cycles(b, self.cycles[b.e0 : b.e0 + len(b.tag)]).reshape(-1)
        reason = self._time_reasons(b, cycles, rpt)
        if reason is not None:
            cycles = _reject(b, rpt, reason, cycles)
        self._write(b, cycles)
        rpt.written, rpt.seq = len(b.tag), b.seq
        out = slice(b.e0, b.e0 + len(b.tag))  # paired here, in cache (kperf.tracing.intervals)
        rpt.adjacent = all_adjacent(self.scope[out], self.is_end[out], b.lbase[b.n > 0])
        return rpt

    def _read(self, ca: int, cb: int) -> tuple[_Block, np.ndarray | None]:
        """The block's kept records in (warp, seq) order, and, where some warp did not fill its slots, all
        its slots (the buffer's records, (CTAs, W, C)); the full block's slots are all kept."""
        W, C = self.W, self.C
        s0, s1 = ca * W, cb * W
        e0 = int(self.base[s0])
        n, fseq = self.seg_n[s0:s1], self.first_seq[s0:s1]
        lbase = self.base[s0:s1] - e0
        rows = _Rows(n, C, W)
        ctas = self.vc[ca:cb]
        if ctas[-1] - ctas[0] == cb - ca - 1:  # consecutive regions: a strided view, no gather
            recs = self.recs[ctas[0] : ctas[-1] + 1]
        else:
            recs = self.recs[ctas]
        tags, times = recs["tag"], recs["time"]  # (CTAs, W, C), strided
        rotated = self.wrap and bool(np.any(fseq % C))
        if rows.full and not rotated:  # every slot kept, in order: contiguous copies
            tag, tm = np.ascontiguousarray(tags).reshape(-1), np.ascontiguousarray(times).reshape(-1)
            return _Block(s0, e0, n, fseq, lbase, rows, tag, tm, ctas), None
        rows.full = False
        tag, tm = self._gather(ctas, n, fseq, lbase)
        b = _Block(s0, e0, n, fseq, lbase, rows, tag, tm, ctas)
        return b, None if (n == C).all() else recs

    def _gather(self, ctas: np.ndarray, n: np.ndarray, fseq: np.ndarray,
                lbase: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(tag, time) of the kept records of the block's warps (``n`` each, the oldest of seq ``fseq``,
        the first at ``lbase``), in (warp, seq) order: taken from the buffer's words, no slot copied that
        is not kept."""
        cta_w, rec0_w, warp_w, k = self.layout
        base = (ctas[:, None] * cta_w + rec0_w + np.arange(self.W, dtype=np.int64) * warp_w).reshape(-1)
        if self.wrap:  # the slot of seq q is q % C
            local = np.arange(int(n.sum()), dtype=np.int64) + np.repeat(fseq - lbase, n)
            at = np.repeat(base, n) + k * (local & (self.C - 1))
        else:  # the slot of seq q is q
            at = np.arange(int(n.sum()), dtype=np.int64) * k + np.repeat(base + k * (fseq - lbase), n)
        if k == 2:  # RECORD32_DTYPE: tag, low 32 bits of the clock
            return self.words.take(at), self.words.take(at + 1)
        return self.words.take(at), self.words.view("<u8").take((at >> 1) + 1)  # tag, zero, 64-bit time

    def _tag_reasons(self, b: _Block, rpt: _Report) -> np.ndarray | None:
        """Per event, why its tag is rejected (0: it is not): not valid, or a scope outside the table."""
        if len(b.tag):  # valid tags lie in [TAG_VALID, TAG_VALID + 2**24): two reductions tell "all"
            lo, hi = int(b.tag.min()), int(b.tag.max())
            if lo >= TAG_VALID and hi < TAG_VALID + (1 << 24) and (self.ids is None or self.dense and (
                    (hi - TAG_VALID) >> TAG_SCOPE_SHIFT) < len(self.ids)):
                b.clean = True  # and so are their scope ids (in order with the tags, as all are valid)
                return None
        valid = (b.tag & _VALID_MASK) == TAG_VALID
        reason = None if valid.all() else np.where(valid, 0, REJECT_INVALID_TAG).astype(np.uint8)
        if self.ids is not None:
            scope = b.scope = (b.tag >> np.uint32(TAG_SCOPE_SHIFT)) & np.uint32(MAX_SCOPES - 1)
            known = in_table(scope, self.ids)
            unknown = None if known.all() else valid & ~known
            if unknown is not None and unknown.any():
                rpt.unknown = np.unique(scope[unknown])
                reason = np.zeros(len(b.tag), np.uint8) if reason is None else reason
                reason[unknown] = REJECT_UNKNOWN_SCOPE
        return reason

    def _time_reasons(self, b: _Block, cycles: np.ndarray, rpt: _Report) -> np.ndarray | None:
        """Per event, why its time is rejected (0: it is not): outside its CTA's span, out of order in its
        warp, or the partner of either (kperf.tracing.record_checks); the backward steps go to ``rpt``."""
        if b.rows.full and self._in_order(b, cycles):
            return None
        pres = np.flatnonzero(b.n > 0)
        if not len(pres):
            return None
        first, last = b.lbase[pres], b.lbase[pres] + b.n[pres] - 1
        p_cta = self.seg_cta[b.s0 + pres]
        if not b.rows.full:
            ordered = len(cycles) < 2 or bool(((cycles[1:] >= cycles[:-1]) | b.firsts()[1:]).all())
            if ordered and (cycles[first] >= self.lo[p_cta]).all() and (cycles[last] <= self.hi[p_cta]).all():
                return None
        cta_ev = np.repeat(p_cta, b.n[pres])
        out = (cycles < self.lo[cta_ev]) | (cycles > self.hi[cta_ev])
        reason = np.where(out, REJECT_OUT_OF_SPAN, 0).astype(np.uint8)
        inside = np.flatnonzero(~out)
        seg = b.segment(inside)
        first_in = np.r_[True, seg[1:] != seg[:-1]] if len(inside) else np.zeros(0, bool)
        bad, back = order_rejects(cycles[inside], first_in)
        reason[inside[bad]] = REJECT_OUT_OF_ORDER
        if back.size:
            bi = inside[back]
            rpt.back = (b.s0 + b.segment(bi), b.seqs()[bi], cycles[bi] - cycles[inside[back - 1]])
        hit = np.flatnonzero(reason)
        scope = (b.tag >> np.uint32(TAG_SCOPE_SHIFT)) & np.uint32(MAX_SCOPES - 1)
        mate = partners(scope, (b.tag & np.uint32(TAG_END)) != 0, b.lbase[pres], hit)
        reason[mate[reason[mate] == 0]] = REJECT_PARTNER
        return reason

    def _in_order(self, b: _Block, cycles: np.ndarray) -> bool:
        """A full block: whether every warp's times never decrease and its first and last lie in the
        CTA's span (then all of them do)."""
        C = b.rows.C
        step = cycles[1:] >= cycles[:-1]
        step[C - 1::C] = True  # from one warp's last record to the next warp's first
        if not step.all():
            return False
        c3 = cycles.reshape(len(b.cta), b.rows.W, C)
        return bool((c3[:, :, 0] >= self.lo[b.cta][:, None]).all()
                    and (c3[:, :, -1] <= self.hi[b.cta][:, None]).all())

    def _write(self, b: _Block, cycles: np.ndarray) -> None:
        """Write the block's events (scope, is_end, cycles, time_ns) into the output columns."""
        out = slice(b.e0, b.e0 + len(b.tag))
        if b.clean:  # every tag valid: its scope bits shifted down, in place
            scope = self.scope[out]
            np.right_shift(b.tag, np.uint32(TAG_SCOPE_SHIFT), out=scope)
            scope &= np.uint32(MAX_SCOPES - 1)
        elif b.scope is not None and len(b.scope) == len(b.tag):
            self.scope[out] = b.scope
        else:
            np.bitwise_and(b.tag >> np.uint32(TAG_SCOPE_SHIFT), np.uint32(MAX_SCOPES - 1),
                           out=self.scope[out], casting="unsafe")
        np.bitwise_and(b.tag, np.uint32(TAG_END), out=self.is_end[out], casting="unsafe")
        if not np.may_share_memory(cycles, self.cycles):  # else _cycles wrote them in place already
            self.cycles[out] = cycles
        rows, fit = b.rows, self.fit
        if rows.full:  # time_ns = offset + ns_per_cycle * (cycles - ref), per CTA, written in place
            t = rows.by_cta(self.time_ns[out])
            if b.rel is not None:  # cycles - ref: ref is clock_start (ClockFit.ref_cycles), exact in int64
                np.multiply(b.rel, fit.ns_per_cycle[b.cta][:, None], out=t)
            else:
                np.subtract(rows.by_cta(cycles), fit.ref_cycles[b.cta][:, None], out=t)
                t *= fit.ns_per_cycle[b.cta][:, None]
            t += fit.offset_ns[b.cta][:, None]
        else:
            pres = np.flatnonzero(b.n > 0)
            cta_ev = np.repeat(self.seg_cta[b.s0 + pres], b.n[pres])
            self.time_ns[out] = fit.to_ns(cta_ev, cycles)

    def _cycles(self, b: _Block, out: np.ndarray) -> np.ndarray:
        """Absolute cycles of the block's events (shaped by ``b.rows``); written straight into ``out``
        (the block's part of the output column) where that is as simple."""
        rep, tm = b.rows, b.time
        if self.clock != "clock":
            out[...] = tm  # the 64-bit readings as int64, in place
            return rep.shape(out)
        if rep.full:
            cs = self.cs[b.cta]
            if signed_steps(cs, self.ce[b.cta], self.end_ok[b.cta]).all():  # as below, per CTA
                b.rel = (rep.by_cta(tm) - (cs & MASK32).astype(np.uint32)[:, None]).view(np.int32)
                return np.add(b.rel, cs[:, None], out=rep.by_cta(out))
        pres = np.flatnonzero(b.n > 0)
        run, first = b.n[pres], b.lbase[pres]
        p_cta = self.seg_cta[b.s0 + pres]
        # %clock: low 32 bits.  In a CTA short enough for signed steps (kperf.tracing.unwrap) every
        # record lies within 2**31 cycles of clock_start: each one is placed on its own, so that one
        # corrupt record moves no other.
        cs, ce, end_ok = self.cs[p_cta], self.ce[p_cta], self.end_ok[p_cta]
        signed = signed_steps(cs, ce, end_ok)
        if signed.all():
            rel = rep.shape(tm) - rep.col((cs & MASK32).astype(np.uint32), pres)
            return np.add(rel.view(np.int32), rep.col(cs, pres), out=rep.shape(out))
        if len(tm) and not signed.any():
            # each record relative to its warp's first one, modulo 2**32: the running sum of the steps
            # that unwrap32 takes exactly when every consecutive difference lies in [0, 2**31)
            lo_first = tm[first]
            rel = (rep.shape(tm) - rep.col(lo_first, pres)).astype(np.int64)
            flat = rel.reshape(-1)
            d = np.empty_like(flat)
            np.subtract(flat[1:], flat[:-1], out=d[1:])
            d[first] = 0
            if d.min() >= 0 and d.max() < 1 << 31:
                lo = tm.astype(np.int64)
                last = first + run - 1
                rel += rep.col(anchor(lo[first], lo[last], flat[last], cs, ce, b.fseq[pres], end_ok), pres)
                return rel
        cycles, _ = unwrap32(tm.astype(np.int64), run, first, p_cta, b.fseq[pres], self.cs, self.ce,
                             self.end_ok)
        return rep.shape(cycles)

    def compact(self, reports: list[_Report], seg_n: np.ndarray) -> np.ndarray:
        """Close the gaps left by rejected records; update ``seg_n``; return every event's seq."""
        pos = 0
        seqs = []
        for r in reports:  # a loop over blocks
            if r.written and pos != r.e0:
                for col in (self.scope, self.is_end, self.cycles, self.time_ns):
                    col[pos : pos + r.written] = col[r.e0 : r.e0 + r.written]
            if r.seq is not None:
                seqs.append(r.seq)
            else:  # nothing rejected in this block: seq from the segments
                s = slice(r.s0, r.s1)
                seqs.append(np.arange(r.written, dtype=np.int64)
                            + np.repeat(self.first_seq[s] - (self.base[s] - r.e0), self.seg_n[s]))
            if r.dropped is not None:
                seg_n[r.s0 : r.s1] -= r.dropped
            pos += r.written
        return np.concatenate(seqs) if seqs else np.zeros(0, np.int64)


def _reject(b: _Block, rpt: _Report, reason: np.ndarray, cycles: np.ndarray | None = None):
    """Take the events with a non-zero ``reason`` out of ``b`` (recorded in ``rpt``); return ``cycles``
    of the rest (when given)."""
    keep = reason == 0
    idx = np.flatnonzero(~keep)
    if not idx.size:
        return cycles
    seq = b.seqs()
    seg = b.segment(idx)
    rpt.rejected.append((seg + b.s0, seq[idx], b.tag[idx], b.time[idx].astype(np.uint64), reason[idx]))
    dropped = np.bincount(seg, minlength=len(b.n))
    rpt.dropped = dropped if rpt.dropped is None else rpt.dropped + dropped
    b.n = b.n - dropped
    b.tag, b.time, b.seq = b.tag[keep], b.time[keep], seq[keep]
    b.scope = None if b.scope is None else b.scope[keep]
    b.lbase = np.zeros(len(b.n), np.int64)
    np.cumsum(b.n[:-1], out=b.lbase[1:])
    b.rows = _Rows(b.n, b.rows.C, b.rows.W)
    b.rows.full = False
    return None if cycles is None else cycles[keep]


def _slots_past_count(slots: np.ndarray | None, b: _Block, C: int) -> tuple | None:
    """(segment, count) of the warps whose slots past their count hold data (they never should).

    ``slots``: the block's record slots (``_Job._read``; None when every warp filled its slots); ``b``
    the block as read, its records the slots below each warp's count (or all of them)."""
    if slots is None:
        return None
    # as many slots hold data as records kept: none past a count does (one pass over the slots, no copy
    # where a record is one 64-bit word)
    used = None if slots.dtype.itemsize == 8 else slots["tag"] | slots["time"]
    if np.count_nonzero(slots.view("<u8") if used is None else used) == np.count_nonzero(b.tag | b.time):
        return None
    used = (slots["tag"] | slots["time"]).reshape(-1, C)
    past = np.arange(C) >= b.n[:, None]
    extra = np.count_nonzero((used != 0) & past, axis=1)
    hit = np.flatnonzero(extra)
    return (hit + b.s0, extra[hit]) if hit.size else None


def _rejected_rows(reports: list[_Report], seg_cta: np.ndarray,
                   seg_warp: np.ndarray) -> tuple[np.ndarray, tuple]:
    """The blocks' rejected records as one ``REJECTED_DTYPE`` table, and their backward steps as
    (cta, warp, seq, step) arrays."""
    parts = [p for r in reports for p in r.rejected]
    rows = np.zeros(sum(len(p[0]) for p in parts), REJECTED_DTYPE)
    if parts:
        seg, seq, tag, tm, reason = (np.concatenate([p[i] for p in parts]) for i in range(5))
        order = np.lexsort((seq, seg))
        seg, seq = seg[order], seq[order]
        rows["cta"], rows["warp"], rows["seq"] = seg_cta[seg], seg_warp[seg], seq
        rows["tag"], rows["time"], rows["reason"] = tag[order], tm[order], reason[order]
    back = [r.back for r in reports if r.back is not None]
    z = np.zeros(0, np.int64)
    if not back:
        return rows, (z, z, z, z)
    seg, seq, step = (np.concatenate([b[i] for b in back]) for i in range(3))
    return rows, (seg_cta[seg], seg_warp[seg], seq, step)


def _count_problems(cnt: np.ndarray, vc: np.ndarray, headers: CtaHeaders, geometry: Geometry) -> list[str]:
    """Warps whose count exceeds the cycles their CTA ran: a warp attempts at most one record per cycle,
    so such a count is corrupt (and with it the lost count, and with ``wrap`` the seq numbers)."""
    if not cnt.size:
        return []
    span = np.where(headers.end_ok & (headers.sm_start == headers.sm_end),
                    headers.clock_end - headers.clock_start, -1)[vc]
    if cnt.max() <= SPAN_SLACK and span.max() <= _I64_MAX - SPAN_SLACK:  # none over span + slack (exact)
        return []
    bad = np.argwhere((span[:, None] >= 0) & (cnt > span[:, None] + SPAN_SLACK))
    if not len(bad):
        return []
    ex = [f"CTA {vc[c]} warp {geometry.slot_warps[w]} (count {cnt[c, w]}, {span[c]} cycles)"
          for c, w in bad[:5].tolist()]
    return [f"{plural(len(bad), 'warp')} counted more records than their CTA ran cycles (a corrupt count; "
            f"its lost records and, with wrap, its seq numbers are wrong): {fmt_ids(ex, 5, total=len(bad))}"]


def _extra_problems(reports: list[_Report], seg_cta: np.ndarray, seg_warp: np.ndarray) -> list[str]:
    """Slots past their warp's count that hold data, as one problem."""
    extra = [r.extra for r in reports if r.extra is not None]
    if not extra:
        return []
    hit, count = (np.concatenate([e[i] for e in extra]) for i in range(2))
    return [
        f"{plural(int(count.sum()), 'slot')} past their warp's count hold data (buffer not zeroed "
        f"before the launch, a wrong strategy, or corruption), in {plural(len(hit), 'warp')}: "
        + fmt_ids([f"CTA {seg_cta[s]} warp {seg_warp[s]}" for s in hit[:8]], total=len(hit))
    ]
