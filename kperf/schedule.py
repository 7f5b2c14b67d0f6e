"""Schedule drift: where ptxas placed the kernel's work differently once kperf's records were in.

A record (a clock read and a store) is a point ptxas does not move instructions across.  The plain
kernel has no such points, and barriers and waits only order memory, so ptxas may move register-only
work across them there; then a trace shows an order the timed (plain) kernel does not run.  This module
compares the SASS of the two builds of one kernel:

1. Each listing is cut at its *sync points*: wgmma fences and waits (``WARPGROUP.*``), the wgmma that
   commits a group (``HGMMA ... gsb0``), named and CTA barriers (``BAR.*``), mbarrier operations
   (``SYNCS.*``), ``MEMBAR``, ``FENCE``, scoreboard waits (``DEPBAR``) and control flow (``BRA``,
   ``EXIT``, ...).  A sync point's token is its opcode, whether it is predicated, and its immediate
   operands (``WARPGROUP.DEPBAR.LE gsb0, 0x1``); registers, addresses and branch targets are dropped.
2. The two token sequences are aligned (``difflib.SequenceMatcher``); matched sync points are the
   anchors, and the code between two consecutive anchors is one *segment* in each listing.  kperf's
   own sync points (the finalize's guarded ``EXIT`` and branch; with ``store="smem"`` a ``BSSY``/
   ``BSYNC`` pair) are control flow and fall unmatched inside a segment.
3. Per segment, the *work* instructions kperf never emits are counted by class (``WORK_CLASSES``;
   ``MUFU`` split by function, ``MUFU.EX2``; non-committing HGMMA; shared memory loads and stores
   only when records are not staged there).  kperf emits clock reads, integer address math, predicate
   logic and global stores, none of which is counted.  Every class whose count differs in a segment
   is a ``Drift``; the running sum of the differences gives, per anchor, how many instructions of a
   class sit on the other side of it in the two builds (a ``Crossing``).

A segment holding an unmatched barrier, fence or wait (ptxas placed a block elsewhere) is not
compared: it is listed in ``ScheduleDrift.unaligned``.  When more than 10% (and more than one) of
either build's barriers, fences and waits find no partner, or the instrumented body is cloned (CTA
sampling with ``clone=True``), nothing is compared and ``aligned`` is False with a ``note`` saying why.

Examples:
    >>> report = kperf.compile(kernel, signature=..., constexprs=...)
    >>> print(report.schedule_drift.summary())
    >>> report.schedule_drift.across("WARPGROUP.DEPBAR.LE gsb0, 0x0")
    {'MUFU.EX2': [66, 66], ...}
"""

from __future__ import annotations

import dataclasses
import difflib
import re

import numpy as np

__all__ = ["Crossing", "Drift", "ScheduleDrift", "WORK_CLASSES", "compare"]

#: Work instruction classes counted per segment (the SASS opcode before its first dot).
WORK_CLASSES = ("MUFU", "FFMA", "FMUL", "FADD", "FMNMX", "HGMMA", "HMMA", "F2FP", "SHFL",
                "LDS", "STS", "LDSM", "STSM")
#: Classes kperf itself emits with ``store="smem"`` (records staged in and copied out of shared memory).
SMEM_CLASSES = ("LDS", "STS")
_CONTROL = {"BRA", "BRX", "JMP", "JMX", "EXIT", "RET", "CALL", "BSSY", "BSYNC", "WARPSYNC", "BREAK", "KILL"}
_SYNC = {"WARPGROUP", "BAR", "SYNCS", "MEMBAR", "FENCE", "DEPBAR", "ERRBAR"}
_WAITS = ("WARPGROUP.DEPBAR", "SYNCS.PHASECHK", "BAR.SYNC", "BAR.RED", "DEPBAR")
#: At least this share of each build's barriers, fences and waits must find a partner (one may not).
MIN_MATCHED = 0.9

_INSTR = re.compile(r"^\s*/\*(?P<addr>[0-9a-f]{4,})\*/\s+(?P<pred>@!?U?P[T\d]+\s+)?(?P<op>[A-Z][\w.]*)"
                    r"(?P<args>[^;]*);", re.MULTILINE)
_KEEP_ARG = re.compile(r"^(gsb\d+|SB\d+|0x[0-9a-f]+|\d+)$")


@dataclasses.dataclass(frozen=True)
class Drift:
    """``opcode_class`` has ``plain`` instructions in segment ``segment_index`` (between sync points
    ``before`` and ``after``) of the plain kernel and ``instrumented`` in the instrumented one;
    ``plain_span``/``instrumented_span`` are the segment's SASS offsets ``(start, end)`` in each listing."""

    segment_index: int
    before: str
    after: str
    opcode_class: str
    plain: int
    instrumented: int
    plain_span: tuple[int, int] = (0, 0)
    instrumented_span: tuple[int, int] = (0, 0)

    def __str__(self) -> str:
        return (f"{self.opcode_class}: {self.instrumented} between `{self.before}` and `{self.after}` "
                f"(segment {self.segment_index}, SASS {self.instrumented_span[0]:#06x}-"
                f"{self.instrumented_span[1]:#06x}) when instrumented, {self.plain} in the plain kernel "
                f"({self.plain_span[0]:#06x}-{self.plain_span[1]:#06x})")


@dataclasses.dataclass(frozen=True)
class Crossing:
    """``count`` instructions of ``opcode_class`` sit on the other side of matched sync point
    ``anchor_index`` (``sync_point``, at ``instrumented_address``/``plain_address``) in the two builds:
    ``count > 0``: before it in the instrumented kernel, after it in the plain one; ``count < 0``: the
    reverse.  (The net flow across the sync point in listing order; segments not compared excluded.)"""

    anchor_index: int
    sync_point: str
    opcode_class: str
    count: int
    instrumented_address: int = 0
    plain_address: int = 0

    @property
    def is_wait(self) -> bool:
        """Whether the sync point stalls the warp (wgmma wait, mbarrier wait, barrier, scoreboard wait)."""
        return self.sync_point.lstrip("@").startswith(_WAITS)


@dataclasses.dataclass(frozen=True)
class ScheduleDrift:
    """The comparison of a kernel's plain and instrumented schedules: a sequence of ``Drift``.

    ``crossings`` says, per matched sync point and class, how many instructions are on the other side
    of it in the two builds.  ``aligned`` is False when the listings' sync points could not be matched
    (``note`` says why; nothing else is reported then).  ``unaligned`` holds the segments that could
    not be compared, as ``(segment_index, before, after)``; ``totals`` maps each class whose
    whole-kernel count differs to ``(plain, instrumented)``.  ``bool()`` is True when there is
    something to look at: drift, an uncompared segment or no alignment at all.
    """

    drifts: tuple[Drift, ...] = ()
    crossings: tuple[Crossing, ...] = ()
    aligned: bool = True
    note: str = ""
    sync_points: tuple[int, int, int] = (0, 0, 0)  # plain, instrumented, matched
    unaligned: tuple[tuple[int, str, str], ...] = ()
    totals: dict = dataclasses.field(default_factory=dict)

    def __iter__(self):
        return iter(self.drifts)

    def __len__(self) -> int:
        return len(self.drifts)

    def __getitem__(self, i):
        return self.drifts[i]

    def __bool__(self) -> bool:
        return bool(self.drifts) or bool(self.unaligned) or not self.aligned

    def across(self, sync_point: str) -> dict[str, list[int]]:
        """Per class, the signed crossing counts at every matched sync point whose token starts with
        ``sync_point`` (e.g. ``"WARPGROUP.DEPBAR.LE gsb0, 0x0"``), in listing order; classes with no
        crossing there are left out."""
        out: dict[str, list[int]] = {}
        for c in self.crossings:
            if c.sync_point.lstrip("@").startswith(sync_point):
                out.setdefault(c.opcode_class, []).append(c.count)
        return out

    def _groups(self) -> list[tuple[str, int, dict[str, tuple[int, int]]]]:
        """Crossings at waits grouped by (token, direction): ``(token, sign, {class: (count, places)})``,
        the group with the most instructions first."""
        groups: dict[tuple[str, int], dict[str, tuple[int, int]]] = {}
        for c in self.crossings:
            if c.is_wait:
                per = groups.setdefault((c.sync_point.lstrip("@"), 1 if c.count > 0 else -1), {})
                n, places = per.get(c.opcode_class, (0, 0))
                per[c.opcode_class] = (n + abs(c.count), places + 1)
        out = [(tok, sign, per) for (tok, sign), per in groups.items()]
        return sorted(out, key=lambda g: -sum(n for n, _ in g[2].values()))

    @staticmethod
    def _describe(group) -> str:
        """``132 MUFU.EX2 cross `X` at 2 places (the plain kernel runs them after it; also 136 FADD, ...)``:
        the class with the most instructions leads, tensor-core and MUFU work first among those with at
        least half as many."""
        tok, sign, per = group
        most = max(n for n, _ in per.values())
        first = {c for c in per if c.startswith(("HGMMA", "HMMA", "MUFU")) and 2 * per[c][0] >= most}
        order = sorted(per, key=lambda c: (c not in first, -per[c][0], c))
        lead, rest = order[0], order[1:]
        n, places = per[lead]
        also = "; also " + ", ".join(f"{per[c][0]} {c}" for c in rest) if rest else ""
        return (f"{n} {lead} cross `{tok}` at {places} place{'s' * (places != 1)} (the plain kernel runs "
                f"them {'after' if sign > 0 else 'before'} it{also})")

    def headline(self) -> str:
        """One line for ``CompileReport.summary()`` (empty when the schedules agree)."""
        if not self.aligned:
            return f"schedule not compared with the plain kernel: {self.note}; see report.schedule_drift"
        if not self:
            return ""
        groups = self._groups()
        parts = [self._describe(groups[0])] if groups else []
        if len(groups) > 1:
            parts.append(f"{len(groups) - 1} more moves across waits")
        if not groups and self.drifts:
            parts.append(f"work moved across sync points that are not waits in "
                         f"{len({d.segment_index for d in self.drifts})} segments")
        if self.unaligned:
            parts.append(f"{len(self.unaligned)} segment{'s' * (len(self.unaligned) != 1)} not compared")
        return f"schedule differs from the plain kernel: {'; '.join(parts)}; see report.schedule_drift"

    def summary(self) -> str:
        """One paragraph: what differs, where, and what it means for the trace."""
        p, i, m = self.sync_points
        if not self.aligned:
            return (f"The plain and instrumented schedules were not compared: {self.note} "
                    f"({m} of {p} plain and {i} instrumented sync points matched).")
        text = [f"{m} of the plain kernel's {p} sync points matched in the instrumented SASS ({i})."]
        if not self.drifts and not self.unaligned:
            text.append("Between matched sync points every work class has the same count: the trace "
                        "shows the plain kernel's order.")
        groups = self._groups()
        if groups:
            more = f"; {len(groups) - 3} more in `crossings`" if len(groups) > 3 else ""
            text.append("Work sits on the other side of a wait in the plain kernel: "
                        + "; ".join(self._describe(g) for g in groups[:3]) + more + ".")
            text.append("Scopes around it time an order the plain kernel does not run (the records pin "
                        "the instrumented one); a CTA fence in the source (`fence.acq_rel.cta`, SASS "
                        "`MEMBAR.ALL.CTA`) where the order matters keeps it in the plain kernel too.")
        if self.drifts:
            segs = len({d.segment_index for d in self.drifts})
            text.append(f"Per segment: {len(self.drifts)} class counts differ in {segs} segments "
                        f"(`report.schedule_drift`, e.g. {self.drifts[0]}).")
        if self.unaligned:
            text.append(f"{len(self.unaligned)} segments hold sync points only one build has and were not "
                        "compared: " + "; ".join(f"{k} (`{a}` .. `{b}`)" for k, a, b in self.unaligned) + ".")
        if self.totals:
            text.append("Whole-kernel counts differ: " + ", ".join(
                f"{c} {a} plain vs {b} instrumented" for c, (a, b) in self.totals.items()) + ".")
        return " ".join(text)


@dataclasses.dataclass
class _Listing:
    """One SASS listing: per instruction its offset and work class (None: not work); its sync points."""

    addr: np.ndarray
    cls: list  # class name per instruction, or None
    sync_at: np.ndarray  # instruction indices of the sync points
    tokens: list[str]
    strong: np.ndarray  # per sync point: not control flow
    text: list[str]


def _class(op: str, base: str, args: str, counted: frozenset) -> str | None:
    if base not in counted or (base == "HGMMA" and "gsb0" in args):
        return None
    return ".".join(op.split(".", 2)[:2]) if base == "MUFU" else base  # MUFU.EX2, MUFU.RCP, ...


def _parse(sass: str, classes: tuple[str, ...] = WORK_CLASSES) -> _Listing:
    """Parse a ``cuobjdump -sass`` listing into offsets, work classes and sync tokens."""
    counted = frozenset(classes)
    addr, cls, sync_at, tokens, strong, text = [], [], [], [], [], []
    for m in _INSTR.finditer(sass):
        op, args = m.group("op"), m.group("args")
        base = op.split(".", 1)[0]
        if base == "NOP":
            continue
        commit = base == "HGMMA" and "gsb0" in args
        if base in _SYNC or base in _CONTROL or commit:
            control = base in _CONTROL
            kept = ["gsb0"] if commit else [] if control else [
                a for a in (x.strip() for x in args.split(",")) if _KEEP_ARG.match(a)]
            sync_at.append(len(addr))
            tokens.append(("@" if m.group("pred") else "") + op + (" " + ", ".join(kept) if kept else ""))
            strong.append(not control)
            text.append(f"{m.group('pred') or ''}{op} {args.strip()}".strip())
        addr.append(int(m.group("addr"), 16))
        cls.append(_class(op, base, args, counted))
    if tokens and tokens[-1] == "BRA" and sync_at[-1] == len(addr) - 1:
        # ptxas ends a kernel with a `BRA self` padding loop: not the kernel's own sync point
        sync_at.pop(), tokens.pop(), strong.pop(), text.pop()
    return _Listing(np.asarray(addr, np.int64), cls, np.asarray(sync_at, np.int64), tokens,
                    np.asarray(strong, bool), text)


def _class_ids(a: _Listing, b: _Listing) -> tuple[list[str], np.ndarray, np.ndarray]:
    """The class names found in either listing (``WORK_CLASSES`` order) and each listing's ids (-1: none)."""
    found = {c for c in a.cls + b.cls if c is not None}
    names = sorted(found, key=lambda c: (WORK_CLASSES.index(c.split(".")[0]), c))
    ids = {c: k for k, c in enumerate(names)}
    return names, *(np.fromiter((ids.get(c, -1) if c else -1 for c in lst.cls), np.int64, len(lst.cls))
                    for lst in (a, b))


def _counts(seg: np.ndarray, cls: np.ndarray, n_segments: int, n_classes: int) -> np.ndarray:
    """Work counts [segment, class]."""
    work = cls >= 0
    flat = seg[work] * n_classes + cls[work]
    return np.bincount(flat, minlength=n_segments * n_classes).reshape(n_segments, n_classes)


def _span(lst: _Listing, bounds: np.ndarray, k: int) -> tuple[int, int]:
    start = int(lst.addr[bounds[k - 1]]) if k > 0 else 0
    end = int(lst.addr[bounds[k]]) if k < len(bounds) else int(lst.addr[-1])
    return start, end


def compare(plain: str, instrumented: str, *, store: str = "global", cloned: bool = False) -> ScheduleDrift:
    """Compare the schedules of a kernel's plain and instrumented SASS (``cuobjdump -sass`` text).

    Args:
        plain: the kernel compiled without kperf.
        instrumented: the same kernel with kperf's records.
        store: kperf's record store as lowered (``"global"`` or ``"smem"``); with ``"smem"`` shared
            memory loads and stores are kperf's too and are not counted.
        cloned: the instrumented SASS holds the body twice (CTA sampling with ``clone=True``); there
            is no one-to-one alignment then, and none is attempted.
    """
    if cloned:
        return ScheduleDrift(aligned=False, note=(
            "the instrumented SASS holds the kernel body twice (CTA sampling with clone=True); "
            "compile with ProfileConfig(clone=False) to compare"))
    counted = tuple(c for c in WORK_CLASSES if not (store == "smem" and c in SMEM_CLASSES))
    a, b = _parse(plain, counted), _parse(instrumented, counted)
    if not len(a.addr) or not len(b.addr):
        return ScheduleDrift(aligned=False, note="a listing has no SASS instructions")
    names, cls_a, cls_b = _class_ids(a, b)
    n = len(names)
    totals_a = np.bincount(cls_a[cls_a >= 0], minlength=n)
    totals_b = np.bincount(cls_b[cls_b >= 0], minlength=n)
    totals = {c: (int(x), int(y)) for c, x, y in zip(names, totals_a, totals_b, strict=True) if x != y}
    sm = difflib.SequenceMatcher(None, a.tokens, b.tokens, autojunk=False)
    blocks = [blk for blk in sm.get_matching_blocks() if blk.size]
    ia = np.concatenate([np.arange(blk.a, blk.a + blk.size) for blk in blocks] or [np.zeros(0, np.int64)])
    ib = np.concatenate([np.arange(blk.b, blk.b + blk.size) for blk in blocks] or [np.zeros(0, np.int64)])
    matched_a = np.isin(np.arange(len(a.tokens)), ia)
    matched_b = np.isin(np.arange(len(b.tokens)), ib)
    sync_points = (len(a.tokens), len(b.tokens), len(ia))
    lone_a = np.flatnonzero(a.strong & ~matched_a)  # barriers, fences, waits without a partner
    lone_b = np.flatnonzero(b.strong & ~matched_b)
    n_strong = int(a.strong.sum())
    if max(len(lone_a), len(lone_b)) > max(1.0, (1 - MIN_MATCHED) * n_strong):
        return ScheduleDrift(aligned=False, sync_points=sync_points, totals=totals, note=(
            f"{len(lone_a)} of the plain kernel's {n_strong} barriers, fences and waits and "
            f"{len(lone_b)} of the instrumented kernel's {int(b.strong.sum())} have no partner"))
    if (len(a.tokens) or len(b.tokens)) and not len(ia):
        return ScheduleDrift(aligned=False, sync_points=sync_points, totals=totals,
                             note="no sync point of one listing has a partner in the other")
    bounds_a, bounds_b = a.sync_at[ia], b.sync_at[ib]
    # segment k lies between anchors k - 1 and k; an anchor itself opens the next segment
    seg_a = np.searchsorted(bounds_a, np.arange(len(cls_a)), side="right")
    seg_b = np.searchsorted(bounds_b, np.arange(len(cls_b)), side="right")
    ca, cb = _counts(seg_a, cls_a, len(ia) + 1, n), _counts(seg_b, cls_b, len(ia) + 1, n)
    bad = np.zeros(len(ia) + 1, bool)  # segments holding a lone barrier, fence or wait: not compared
    bad[np.searchsorted(ia, lone_a)] = True
    bad[np.searchsorted(ib, lone_b)] = True

    def label(k: int) -> str:
        return b.text[ib[k]] if 0 <= k < len(ib) else ("kernel entry" if k < 0 else "kernel end")

    drifts = tuple(Drift(int(k), label(k - 1), label(k), names[c], int(ca[k, c]), int(cb[k, c]),
                         _span(a, bounds_a, k), _span(b, bounds_b, k))
                   for k, c in zip(*np.nonzero((ca != cb) & ~bad[:, None]), strict=True))
    flow = np.cumsum(np.where(bad[:, None], 0, cb - ca), axis=0)[:-1]  # net work above anchor k
    crossings = tuple(Crossing(int(k), b.tokens[ib[k]], names[c], int(flow[k, c]),
                               int(b.addr[bounds_b[k]]), int(a.addr[bounds_a[k]]))
                      for k, c in zip(*np.nonzero(flow), strict=True))
    unaligned = tuple((int(k), label(k - 1), label(k)) for k in np.flatnonzero(bad))
    return ScheduleDrift(drifts, crossings, True, "", sync_points, unaligned, totals)
