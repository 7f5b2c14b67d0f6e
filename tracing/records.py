"""Decode the record slots of a launch's good CTAs into event columns, block by block.

Each recording warp of a good CTA is a *segment*: its ``count`` says how many records it attempted,
of which ``min(count, capacity)`` are kept; with ``wrap`` the oldest kept one sits at slot
``count % capacity``.  A kept record becomes an event: scope id and start/end from its tag, absolute
cycles from its time (the low 32 bits of ``%clock`` are unwrapped, :mod:`.unwrap`), and ns on the
launch axis through the CTA's clock mapping (:mod:`.clocks`).

Records whose tag is not valid (an unwritten slot inside the counted range, or a corrupt tag) are
dropped and their ``seq`` left unused; slots past a warp's count that hold data, scope ids outside
the scope table and clocks that run backwards are reported.  Nothing here raises: every finding is a
sentence in :attr:`DecodedRecords.problems`.

Speed: the good CTAs are cut into blocks of about :data:`BLOCK_EVENTS` events (their temporaries stay
in cache), decoded on a few threads (:mod:`.parallel`) straight into preallocated columns.  A block
whose warps are all full and unrotated is handled as a 2D (warps, capacity) array with no gather.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from kperf.dialect.layout import MAX_SCOPES, TAG_END, TAG_SCOPE_BITS, TAG_SCOPE_SHIFT, TAG_VALID, Geometry

from ._common import fmt_ids, in_table, plural
from .clocks import ClockFit
from .columns import EventColumns
from .headers import CtaHeaders
from .parallel import map_blocks
from .unwrap import anchor, signed_steps, unwrap32

#: events decoded per block: the block's temporaries stay in cache
BLOCK_EVENTS = 1 << 16
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
    problems: list[str]


def decode_records(regions: np.ndarray, headers: CtaHeaders, fit: ClockFit, geometry: Geometry, *,
                   wrap: bool, ids: np.ndarray | None, launch: int, threads: int | None) -> DecodedRecords:
    """Decode the records of the good CTAs (``headers.ok``) of ``regions`` (``geometry.cta_dtype()``).

    ``ids``: the scope table's ids, to report records outside it (None: no table); ``launch``: the
    number stored in every event; ``threads``: as :func:`~kperf.tracing.decode.decode`.
    """
    W, C = geometry.slots, geometry.capacity  # slots: the recording warps (kperf.dialect.layout)
    vc = np.flatnonzero(headers.ok)
    nv = vc.size
    cnt = regions["counts"][vc].astype(np.int64)  # (nv, W)
    kept = np.minimum(cnt, C)
    job = _Job(
        recs=regions["records"][:, :, :C], vc=vc, W=W, C=C, wrap=wrap, clock=geometry.clock,  # no sink
        first_seq=(cnt - kept if wrap else np.zeros_like(cnt)).ravel(),  # seq of each warp's oldest kept
        seg_n=kept.ravel(), seg_cta=np.repeat(vc, W), cs=headers.clock_start, ce=headers.clock_end,
        end_ok=headers.end_ok, fit=fit, ids=ids,
    )
    reports = map_blocks(job.block, _blocks(nv, W * C), len(job.scope), threads)
    seg_n = job.seg_n.copy()
    seg_warp = np.tile(geometry.slot_warps, nv)
    seq = None
    if any(r.dropped is not None for r in reports):
        seq = job.compact(reports, seg_n)
    problems = _record_problems(reports, job, seg_warp, 0 if ids is None else len(ids),
                                "ns" if geometry.clock == "globaltimer" else "cycles")
    E = int(seg_n.sum())
    pres = np.flatnonzero(seg_n > 0)
    p_cta = job.seg_cta[pres]
    columns = EventColumns(
        {"launch": np.full(len(pres), launch, np.int64), "cta": p_cta, "sm": headers.sm_start[p_cta],
         "warp": seg_warp[pres], "first_seq": job.first_seq[pres], "n": seg_n[pres]},
        job.scope[:E], job.is_end[:E], job.cycles[:E], job.time_ns[:E], seq=seq,
    )
    return DecodedRecords(columns, vc, job.seg_cta, seg_n, cnt, cnt - kept, problems)


def _blocks(n_ctas: int, events_per_cta: int) -> list[tuple[int, int]]:
    """``[(first, end), ...]`` CTA ranges (indices into the good CTAs) of about BLOCK_EVENTS events."""
    step = max(1, BLOCK_EVENTS // max(events_per_cta, 1))
    return [(a, min(a + step, n_ctas)) for a in range(0, n_ctas, step)]


@dataclasses.dataclass
class _Report:
    """What decoding one block found, besides the events it wrote."""

    s0: int  # the block's segments: s0 .. s1 - 1
    s1: int
    e0: int  # first event position of the block (before dropping records)
    written: int  # events written from e0 on
    dropped: np.ndarray | None = None  # records dropped per segment of the block (None: none)
    seq: np.ndarray | None = None  # seq of the written events, when some were dropped
    bad: tuple | None = None  # invalid tags: (segment, seq, tag) arrays
    extra: tuple | None = None  # slots past the count holding data: (segment, count) arrays
    unknown: tuple[int, np.ndarray] = (0, np.zeros(0, np.int64))  # records and ids not in the table
    back: tuple | None = None  # backward clock steps: (segment, seq, step) arrays


class _Rows:
    """Per-event layout of one block: a 2D (segments, capacity) view when every segment is full
    (per-segment values then broadcast), else flat with per-segment values repeated."""

    def __init__(self, n: np.ndarray, C: int):
        self.n, self.C = n, C
        self.full = bool(len(n)) and bool((n == C).all())

    def shape(self, x: np.ndarray) -> np.ndarray:
        return x.reshape(len(self.n), self.C) if self.full else x

    def col(self, v: np.ndarray, pres: np.ndarray | None = None, force_1d: bool = False) -> np.ndarray:
        """Per-segment values ``v`` (for all segments, or for the present ones ``pres``), per event."""
        if self.full and not force_1d:
            return np.broadcast_to(v[:, None], (len(self.n), self.C))
        return np.repeat(v, self.n if pres is None else self.n[pres])

    def put(self, out: np.ndarray, x: np.ndarray) -> None:
        out[...] = x.reshape(-1) if x.ndim > 1 else x


@dataclasses.dataclass
class _Block:
    """One block's records on their way to the columns; shrinks when invalid records are dropped."""

    s0: int  # first segment of the block
    e0: int  # first event position of the block
    n: np.ndarray  # records per segment
    fseq: np.ndarray  # seq of each segment's first record
    lbase: np.ndarray  # each segment's first event, counted from e0
    rows: _Rows
    tag: np.ndarray  # per event
    time: np.ndarray
    seq: np.ndarray | None = None  # per event, once records were dropped (else from the segments)


@dataclasses.dataclass
class _Job:
    """One launch's records: the inputs per segment (warp) and the output columns."""

    recs: np.ndarray  # the buffer's records field, (n_ctas, W, C)
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

    def __post_init__(self) -> None:
        self.base = np.zeros(len(self.seg_n) + 1, np.int64)  # first event of each segment
        np.cumsum(self.seg_n, out=self.base[1:])
        E = int(self.base[-1])
        self.scope = np.empty(E, np.uint32)
        self.is_end = np.empty(E, bool)
        self.cycles = np.empty(E, np.int64)
        self.time_ns = np.empty(E, np.float64)

    def block(self, ca: int, cb: int) -> _Report:
        """Decode the good CTAs ``vc[ca:cb]`` into the output columns; report what was wrong."""
        b, tag2 = self._read(ca, cb)
        rpt = _Report(s0=b.s0, s1=b.s0 + len(b.n), e0=b.e0, written=len(b.tag))
        rpt.extra = _slots_past_count(tag2, b.n, self.C, b.s0)
        self._drop_invalid(b, rpt)
        out = slice(b.e0, b.e0 + len(b.tag))
        unknown = self._scopes(b, out)
        if unknown is not None:
            rpt.unknown = unknown
        rpt.back = self._times(b, out)
        return rpt

    def _read(self, ca: int, cb: int) -> tuple[_Block, np.ndarray]:
        """The block's kept records in (warp, seq) order, and its tags as a (segments, C) array."""
        W, C = self.W, self.C
        s0, s1 = ca * W, cb * W
        e0 = int(self.base[s0])
        n, fseq = self.seg_n[s0:s1], self.first_seq[s0:s1]
        lbase = self.base[s0:s1] - e0
        rows = _Rows(n, C)
        ctas = self.vc[ca:cb]
        if ctas[-1] - ctas[0] == cb - ca - 1:  # consecutive regions: a strided view, no gather
            recs = self.recs[ctas[0] : ctas[-1] + 1]
        else:
            recs = self.recs[ctas]
        tag2 = np.ascontiguousarray(recs["tag"]).reshape(-1, C)
        time2 = np.ascontiguousarray(recs["time"]).reshape(-1, C)
        rotated = self.wrap and bool(np.any(fseq % C))
        if rows.full and not rotated:
            tag, tm = tag2.reshape(-1), time2.reshape(-1)
        else:
            m = int(self.base[s1]) - e0
            local = np.arange(m, dtype=np.int64) + rows.col(fseq - lbase, force_1d=True)  # seq
            slot = (local & (C - 1)) if self.wrap else local
            g = rows.col(np.arange(len(n), dtype=np.int64) * C, force_1d=True) + slot
            tag, tm = tag2.reshape(-1).take(g), time2.reshape(-1).take(g)
            rows.full = False
        return _Block(s0, e0, n, fseq, lbase, rows, tag, tm), tag2

    def _drop_invalid(self, b: _Block, rpt: _Report) -> None:
        """Drop the records whose tag is not valid (reported in ``rpt``); ``b`` then holds the rest."""
        valid = (b.tag & _VALID_MASK) == TAG_VALID
        n_bad = len(b.tag) - int(np.count_nonzero(valid))
        if not n_bad:
            return
        seq = np.arange(len(b.tag), dtype=np.int64) + b.rows.col(b.fseq - b.lbase, force_1d=True)
        bad = np.flatnonzero(~valid)
        bseg = np.searchsorted(b.lbase, bad, side="right") - 1
        rpt.bad = (bseg + b.s0, seq[bad], b.tag[bad])
        rpt.dropped = np.bincount(bseg, minlength=len(b.n))
        b.n = b.n - rpt.dropped
        b.tag, b.time, b.seq = b.tag[valid], b.time[valid], seq[valid]
        b.lbase = np.zeros(len(b.n), np.int64)
        np.cumsum(b.n[:-1], out=b.lbase[1:])
        rpt.written, rpt.seq = len(b.tag), b.seq
        b.rows = _Rows(b.n, self.C)
        b.rows.full = False

    def _scopes(self, b: _Block, out: slice) -> tuple[int, np.ndarray] | None:
        """Write scope and is_end of the block's events; (records, ids) not in the scope table, if any."""
        scope = self.scope[out]
        np.right_shift(b.tag, TAG_SCOPE_SHIFT, out=scope)
        scope &= np.uint32(MAX_SCOPES - 1)
        np.equal(b.tag & np.uint32(TAG_END), TAG_END, out=self.is_end[out])
        if self.ids is not None:
            known = in_table(scope, self.ids)
            if not known.all():
                return int(len(b.tag) - np.count_nonzero(known)), np.unique(scope[~known])
        return None

    def _times(self, b: _Block, out: slice) -> tuple | None:
        """Write cycles and time_ns of the block's events; backward clock steps (segment, seq, step),
        if any."""
        rows = b.rows
        pres = np.flatnonzero(b.n > 0)
        run, first = b.n[pres], b.lbase[pres]
        seg_cta = self.seg_cta[b.s0 : b.s0 + len(b.n)]
        p_cta = seg_cta[pres]
        cycles, step = self._cycles(b.time, rows, pres, run, first, b.fseq[pres], p_cta)
        back = None
        if step is not None:
            neg = np.flatnonzero(step < 0)
            if neg.size:
                bseg = np.searchsorted(b.lbase, neg, side="right") - 1
                bseq = b.seq[neg] if b.seq is not None else b.fseq[bseg] + neg - b.lbase[bseg]
                back = (bseg + b.s0, bseq, step[neg])
        rows.put(self.cycles[out], cycles)
        cta_ev = rows.col(seg_cta) if rows.full else np.repeat(p_cta, run)
        rows.put(self.time_ns[out], self.fit.to_ns(cta_ev, rows.shape(cycles)))
        return back

    def _cycles(self, tm, rep: _Rows, pres, run, first, p_first_seq, p_cta):
        """(cycles, step): absolute cycles of the block's events (shaped by ``rep``); step is None
        when no clock step is negative, else per event (0 at each warp's first record)."""
        last = first + run - 1
        if self.clock != "clock":
            cycles = tm.astype(np.int64)
            if len(cycles) < 2:
                return cycles, None
            d = np.empty_like(cycles)
            np.subtract(cycles[1:], cycles[:-1], out=d[1:])
            d[first] = 0
            return cycles, (d if d.min() < 0 else None)
        # %clock: low 32 bits.  Fast path: each record relative to its warp's first one, modulo 2**32
        # (signed where the CTA is short enough).  That equals the running sum of the steps that
        # unwrap32 takes exactly when every consecutive difference of the results lies in
        # [0, 2**31); otherwise this block goes the exact (slower) way.
        cs, ce, end_ok = self.cs[p_cta], self.ce[p_cta], self.end_ok[p_cta]
        signed = signed_steps(cs, ce, end_ok)
        if len(tm) and (signed.all() or not signed.any()):
            lo_first = tm[first]
            rel32 = rep.shape(tm) - rep.col(lo_first, pres)
            rel = (rel32.view(np.int32) if signed.all() else rel32).astype(np.int64)
            flat = rel.reshape(-1)
            d = np.empty_like(flat)
            np.subtract(flat[1:], flat[:-1], out=d[1:])
            d[first] = 0
            if d.min() >= 0 and d.max() < 1 << 31:
                lo = tm.astype(np.int64)
                rel += rep.col(anchor(lo[first], lo[last], flat[last], cs, ce, p_first_seq, end_ok), pres)
                return rel, None
        cycles, step = unwrap32(tm.astype(np.int64), run, first, p_cta, p_first_seq, self.cs, self.ce,
                                self.end_ok)
        return rep.shape(cycles), (step if len(step) and step.min() < 0 else None)

    def compact(self, reports: list[_Report], seg_n: np.ndarray) -> np.ndarray:
        """Close the gaps left by dropped records; update ``seg_n``; return every event's seq."""
        pos = 0
        seqs = []
        for r in reports:  # a loop over blocks
            if r.written and pos != r.e0:
                for col in (self.scope, self.is_end, self.cycles, self.time_ns):
                    col[pos : pos + r.written] = col[r.e0 : r.e0 + r.written]
            if r.seq is not None:
                seqs.append(r.seq)
            else:  # nothing dropped in this block: seq from the segments
                s = slice(r.s0, r.s1)
                seqs.append(np.arange(r.written, dtype=np.int64)
                            + np.repeat(self.first_seq[s] - (self.base[s] - r.e0), self.seg_n[s]))
                seqs[-1] = seqs[-1] if len(seqs[-1]) else np.zeros(0, np.int64)
            if r.dropped is not None:
                seg_n[r.s0 : r.s1] -= r.dropped
            pos += r.written
        return np.concatenate(seqs) if seqs else np.zeros(0, np.int64)


def _slots_past_count(tag2: np.ndarray, n: np.ndarray, C: int, s0: int) -> tuple | None:
    """(segment, count) of the warps whose slots past their count hold data (they never should)."""
    if (n == C).all():
        return None
    past = np.arange(C) >= n[:, None]
    extra = np.count_nonzero((tag2 != 0) & past, axis=1)
    hit = np.flatnonzero(extra)
    return (hit + s0, extra[hit]) if hit.size else None


def _record_problems(reports: list[_Report], job: _Job, seg_warp: np.ndarray, n_ids: int,
                     unit: str) -> list[str]:
    """The problems the blocks found, one message each, as the whole launch's."""
    problems = []
    seg_cta = job.seg_cta

    def cat(name: str, k: int) -> list[np.ndarray]:
        parts = [getattr(r, name) for r in reports if getattr(r, name) is not None]
        return [np.concatenate([p[i] for p in parts]) for i in range(k)] if parts else []

    def where(seg, seq, detail) -> list[str]:
        return [f"CTA {seg_cta[s]} warp {seg_warp[s]} seq {q} ({detail(i)})"
                for i, (s, q) in enumerate(zip(seg[:5].tolist(), seq[:5].tolist(), strict=True))]

    bad = cat("bad", 3)
    if bad:
        seg, seq, tag = bad
        problems.append(
            f"{plural(len(seg), 'record')} with an invalid tag (unwritten slot or corrupt tag) inside the "
            f"counted range, in {plural(np.unique(seg).size, 'warp')}; dropped: "
            f"{fmt_ids(where(seg, seq, lambda i: f'tag 0x{int(tag[i]):08X}'), 5, total=len(seg))}"
        )
    extra = cat("extra", 2)
    if extra:
        hit, count = extra
        problems.append(
            f"{plural(int(count.sum()), 'slot')} past their warp's count hold data (buffer not zeroed "
            f"before the launch, a wrong strategy, or corruption), in {plural(len(hit), 'warp')}: "
            + fmt_ids([f"CTA {seg_cta[s]} warp {seg_warp[s]}" for s in hit[:8]], total=len(hit))
        )
    n_unknown = sum(r.unknown[0] for r in reports)
    if n_unknown:
        unknown = np.unique(np.concatenate([r.unknown[1] for r in reports]))
        problems.append(
            f"{plural(n_unknown, 'record')} with scope ids not in the scope table "
            f"({plural(n_ids, 'scope')}): id {fmt_ids(unknown)}; kept as events"
        )
    back = cat("back", 3)
    if back:
        seg, seq, step = back
        problems.append(
            f"non-monotonic clock: {plural(len(seg), 'backward step')} in "
            f"{plural(np.unique(seg).size, 'warp')}: "
            f"{fmt_ids(where(seg, seq, lambda i: f'{int(step[i])} {unit}'), 5, total=len(seg))}"
        )
    return problems
