"""``kperf-lower-ptx``: replace record carriers in PTX with clock reads and lane-0 stores.

PTX text in, PTX text out (in a ``LoweringResult``).  The input is read through the line model of
:mod:`kperf.passes.ptx`, the PTX written comes from :mod:`kperf.passes.ptx_snippets`.  What it writes
(register names all start with ``%kp_``):

- after the kernel's opening ``{``: a few function-scope registers and a preamble, run once by every
  thread: load the profile buffer pointer (the kernel's last ``.param``, which Triton fills from the
  profile allocator), compute this CTA's region from the linear CTA id, whether this CTA is sampled
  (``cta_stride``, ``sms``), whether this warp records and which slot it owns (``granularity``,
  ``warp_mask``), this slot's record base, and the recording predicate (lane 0 of a recording warp
  of a sampled CTA); lane 0 of warp 0 writes the CTA header (magic, version, flags, ``%smid``, a
  ``(%globaltimer, %clock64)`` pair, ``%ctaid``, warp count);
- for each carrier: read the clock and store ``{tag, clock}`` from the recording lane into the slot's
  next record, either to global memory or (``store="smem"``) to a staging area in shared memory past
  the kernel's own; with ``keep-first`` a per-record capacity check, or (``fold``) one clamp per basic
  block with records past the capacity landing in ``sink`` spare slots; with ``wrap`` into
  ``count % capacity``.  The counter and pointer are bumped once per block, where a block ends only
  where control flow joins or leaves (``kperf.passes.ptx_blocks``: debug labels and record-free spin
  loops such as TMA barrier waits do not end one); the pointer lane 0 stores through gets a lane-varying
  offset (``vector_pointer``) so that ptxas keeps it in vector registers;
- before every ``ret`` and ``exit`` (a predicated one is branched around): a ``smem`` warp copies its
  staged records out (all 32 lanes, coalesced), lane 0 of each recording warp stores its final
  counter, lane 0 of warp 0 stores the closing ``(%globaltimer, %clock64)`` pair and ``%smid``.
- with CTA sampling and ``clone`` (the default), the body is emitted twice: sampled-out CTAs branch
  once, after the preamble, to an uninstrumented copy (carriers stay no-op comments) whose ``ret``
  only closes the header.  Whole CTAs take one copy or the other, so CTA-wide ``.aligned``
  instructions (``bar.sync``, ``wgmma``) stay aligned.

PTX that is lowered already (it holds kperf's preamble) is refused: lowering it twice would record
everything twice into one buffer.  Offsets come from ``kperf.dialect.layout``; nothing here spells one.
"""

from __future__ import annotations

import dataclasses
import re

from kperf.dialect.errors import KperfError
from kperf.dialect.layout import Geometry, make_tag
from kperf.dialect.options import ProfileConfig
from kperf.dialect.record import RecordOp, parse_carrier

from .pass_base import KperfPass
from .ptx import BODY_DECLARATIONS, Entry, Kind, PtxLine, find_entry, parse
from .ptx_blocks import boundaries
from .ptx_hoist import hoist
from .ptx_snippets import DEFERRED_MAX, PREAMBLE_MARK, REGISTER_PREFIX, SMEM_ALIGN, SMEM_SYMBOL, Snippets

#: Largest dynamic shared memory per CTA (opt-in), bytes, by SM major.minor*10 (CUDA programming guide).
SMEM_LIMITS = {70: 98304, 75: 65536, 80: 166912, 86: 101376, 87: 166912, 89: 101376, 90: 232448,
               100: 232448, 103: 232448, 120: 101376}


def smem_limit(capability: int) -> int:
    """The opt-in shared memory per CTA of ``sm_<capability>`` (the nearest lower known arch)."""
    known = [c for c in SMEM_LIMITS if c <= capability]
    return SMEM_LIMITS[max(known)] if known else min(SMEM_LIMITS.values())


@dataclasses.dataclass(frozen=True)
class LoweringResult:
    ptx: str
    num_records: int  # static record sites lowered
    geometry: Geometry
    store: str  # "global" or "smem": where records went (``auto`` resolved)
    shared_bytes: int | None  # the kernel's dynamic shared memory after lowering (None: not given)
    max_block_records: int  # most records in one basic block


@dataclasses.dataclass(frozen=True)
class LowerPtxPass(KperfPass):
    """PTX text in, ``LoweringResult`` out.  Options: the profile config and the kernel's warp count.

    ``num_warps`` counts every warp of the kernel (WS partitions included); ``shared_bytes`` is the
    dynamic shared memory the kernel already uses (Triton's ``metadata["shared"]``) and ``capability``
    the target (e.g. 90); ``store="smem"``/``"auto"`` need both to place the staging area and check it
    fits.  ``role_starts``: the first warp of each role of a warp-specialized kernel, which
    ``granularity="role"`` records with (``passes.warp_roles.role_starts``).  ``records=False``
    lowers the preamble and epilogue only (to measure the fixed cost).  In a
    pipeline every ``ProfileConfig`` field is an option too:
    ``kperf-lower-ptx{num-warps=8,clock=clock64}``.
    """

    config: ProfileConfig = dataclasses.field(default_factory=ProfileConfig)
    num_warps: int = 4
    role_starts: tuple[int, ...] = ()  # first warp of each WS role (``granularity="role"``)
    auto_scopes: tuple[int, ...] = ()  # scope ids of automatic insertion (``hoist_arith="auto"``)
    records: bool = True
    shared_bytes: int | None = None
    capability: int = 90
    name = "kperf-lower-ptx"
    INPUT = "ptx"

    @property
    def geometry(self) -> Geometry:
        return Geometry(self.num_warps, self.config.capacity, self.config.clock,
                        self.config.recording_warps(self.num_warps, self.role_starts))

    def apply(self, module: str, path: str = "PTX") -> LoweringResult:
        lines = parse(module)
        _reject_lowered(lines, path)
        entry = find_entry(lines)
        _reject_records_in_funcs(lines, entry, path)
        cfg = self.config
        if cfg.hoist_arith != "off" and self.records:
            movable = set(self.auto_scopes) if cfg.hoist_arith == "auto" else \
                {op.scope_id for _, op in _carriers(lines, entry, path)}
            lines = hoist(lines, entry, movable)  # reorders body lines; entry holds
        # a dry run finds the largest basic block, which sizes the fold sink
        dry = Geometry(self.num_warps, cfg.capacity, cfg.clock)
        max_block = max(_Lowering(self, lines, entry, Snippets(cfg, dry, False, 0), path).run().blocks,
                        default=0)
        g = dataclasses.replace(self.geometry, sink=max_block if cfg.fold else 0)
        store, smem_offset, shared_after = self._place(g)
        tags = _tags(lines, entry, path) if cfg.hoist_tags and self.records else ()
        low = _Lowering(self, lines, entry, Snippets(cfg, g, store == "smem", smem_offset, tags), path).run()
        return LoweringResult("\n".join(low.out), low.count, g, store, shared_after, max_block)

    def run_text(self, text: str, path: str = "PTX") -> str:
        return self.apply(text, path).ptx

    def _place(self, g: Geometry) -> tuple[str, int, int | None]:
        """Where records go: ("global" | "smem", staging offset in shared memory, new shared size)."""
        store = self.config.store
        if store == "global":
            return "global", 0, self.shared_bytes
        if self.shared_bytes is None:
            raise KperfError("store='smem' needs the kernel's shared memory size to place the staging area",
                             fix="lower through kperf's stage hook, or pass shared_bytes= to LowerPtxPass")
        offset = -(-int(self.shared_bytes) // SMEM_ALIGN) * SMEM_ALIGN
        need = offset + g.slots * g.warp_bytes
        limit = smem_limit(self.capability)
        if need <= limit:
            return "smem", offset, need
        if store == "auto":
            return "global", 0, self.shared_bytes
        fit = (limit - offset) // (g.slots * g.record_bytes) - g.sink
        raise KperfError(
            f"store='smem' needs {need} bytes of shared memory per CTA ({self.shared_bytes} of the kernel's "
            f"own + {g.slots} warps x {g.warp_bytes} bytes of records) but sm_{self.capability} allows "
            f"{limit}",
            fix=(f"use capacity<={fit}, " if fit > 0 else "") + "store='auto' (falls back to global) or "
                "store='global', or record fewer warps (granularity='warpgroup')")


class _Lowering:
    """One walk over the PTX lines, emitting the instrumented kernel."""

    def __init__(self, p: LowerPtxPass, lines: list[PtxLine], entry: Entry, emit: Snippets, path: str):
        self.p, self.lines, self.entry, self.emit, self.path = p, lines, entry, emit, path
        self.blocks: list[int] = []  # records of each block with records, in order (sizes the fold sink)
        self.clone = p.config.clone and p.config.samples_ctas
        self.arrays = _register_arrays(lines, entry) if self.clone else []  # the copy gets its own
        self.out: list[str] = []
        self.count = 0  # carriers seen
        self.pending = 0  # records in the current basic block whose counter bump is not yet emitted
        self.deferred: list[tuple[int, bool, int, int, str]] = []  # defer_stores: clocks read, not stored
        self.returns = 0
        self.bounds = boundaries(lines, entry, _carrier_lines(lines, entry, path), p.config.merge_blocks)

    def run(self) -> _Lowering:
        lines, entry, out = self.lines, self.entry, self.out
        i = 0
        while i < len(lines):
            if i == entry.start:
                out.extend(self._module_decls())
            if entry.in_body(i):
                i = self._body_line(i)
                continue
            if i == entry.body_end:
                self._end_block()
                if self.clone:
                    out.extend(self._plain_copy())
            out.append(lines[i].text)
            i += 1
        if self.returns == 0:
            raise KperfError("the kernel has no `ret` or `exit` instruction to finalize records before")
        return self

    def _module_decls(self) -> list[str]:
        """What goes before the kernel: the sampled-SM mask, Triton's shared array if it has none."""
        out = self.emit.sm_mask_decl() if self.p.config.sms else []
        if self.emit.smem and not _declares_smem(self.lines):
            out += self.emit.smem_decl()
        return out

    def _body_line(self, i: int) -> int:
        """Emit body line ``i`` with what kperf puts there; the index of the next line to emit."""
        line, out = self.lines[i], self.out
        if i == self.entry.decl_end:
            if self.clone:
                out.extend(_copy_declarations(self.arrays))
            out.extend(self.emit.preamble(self.entry.last_param))
            if self.clone:
                out.append("\t@!%kp_s bra $KP_PLAIN; // kperf: sampled-out CTAs run the plain copy")
        if line.kind is Kind.ASM_BEGIN and i + 1 < len(self.lines):
            op = parse_carrier(self.lines[i + 1].text, where=f"{self.path} line {i + 2}")
            if op is not None:
                self._carrier(op, line)
                return i + 2  # the carrier's comment is replaced; its `mov.u32 $0, 0;` and end stay
            if self._asm_block_bounds(i):
                self._end_block()
        if i in self.bounds:
            self._end_block()
        if line.is_return:
            epilogue = self.emit.epilogue(self.returns)
            out.extend(_guarded_return(line, epilogue, f"$KP_RET_SKIP_{self.returns}"))
            self.returns += 1
        else:
            out.append(line.text)
            if self.deferred and line.opcode.startswith("wgmma.commit_group"):
                self._store_deferred()  # the warp waits for the tensor cores here: the stores issue meanwhile
        return i + 1

    def _carrier(self, op: RecordOp, begin: PtxLine) -> None:
        """Keep the carrier's asm block; put its record (clock read, store) in place of its comment."""
        if op.scope_id is None and self.p.records:
            raise KperfError(f'record of scope "{op.name}" reached PTX without a scope id', where=op.loc,
                             fix="run kperf-materialize on the TTGIR first (kperf's stage hook does this)")
        self.out.append(begin.text)
        if self.p.records and self.p.config.defer_stores:
            reg = f"%kp_dc{len(self.deferred)}"
            self.out.extend(self.emit.read_clock(self.count, op.scope_id, not op.is_start, reg))
            self.deferred.append((op.scope_id, not op.is_start, self.count, self.pending, reg))
        elif self.p.records:
            self.out.extend(self.emit.record(op.scope_id, not op.is_start, self.count, self.pending))
        if self.p.records:
            self.pending += 1
        if len(self.deferred) == DEFERRED_MAX:
            self._store_deferred()
        self.count += 1

    def _store_deferred(self) -> None:
        """``defer_stores``: the stores of the clocks read since the last ones (same basic block, so the
        slot offsets still hold)."""
        for scope_id, is_end, n, k, reg in self.deferred:
            self.out.extend(self.emit.record(scope_id, is_end, n, k, clock=reg))
        self.deferred = []

    def _asm_block_bounds(self, begin: int) -> bool:
        """Whether the inline-asm block starting at ``begin`` holds a block boundary (a spin loop's
        label and branch are none: see ``kperf.passes.ptx_blocks``)."""
        for j in range(begin + 1, len(self.lines)):
            if self.lines[j].kind is Kind.ASM_END:
                return False
            if j in self.bounds:
                return True
        return False

    def _end_block(self) -> None:
        self._store_deferred()
        self.out.extend(self.emit.flush(self.pending))
        if self.pending:
            self.blocks.append(self.pending)
        self.pending = 0

    def _plain_copy(self) -> list[str]:
        """The uninstrumented body for sampled-out CTAs: labels renamed, returns only close the header."""
        e = self.entry
        body = self.lines[e.decl_end:e.body_end]
        depth = 1
        labels, keep = [], []
        for line in body:
            if depth == 1:
                if line.kind is Kind.LABEL:
                    labels.append(line.label)
                if line.directive in BODY_DECLARATIONS:
                    depth += line.braces
                    continue  # function-scope declarations are visible to both copies
            keep.append(line)
            depth += line.braces
        if not _last_instruction_leaves(body):
            raise KperfError("the kernel body does not end with `ret`, `exit` or a branch; kperf cannot "
                             "append the uninstrumented copy used for CTA sampling", fix="use clone=False")
        rename = re.compile(r"(?<![\w$])(" + "|".join(re.escape(x) for x in labels) + r")(?![\w$])") \
            if labels else None
        registers = _copy_registers(self.arrays)
        out = ["$KP_PLAIN: // kperf: uninstrumented copy of the body (sampled-out CTAs)"]
        returns = 0
        copied = []
        for line in keep:
            if line.is_return:  # a predicated return's predicate is the copy's too
                copied += _guarded_return(line, self.emit.plain_epilogue(e.last_param),
                                          f"$KP_PLAIN_RET_SKIP_{returns}")
                returns += 1
            else:
                copied.append(rename.sub(r"\1_kp_plain", line.text) if rename else line.text)
        return out + ([registers.sub(r"%kpc_\1", t) for t in copied] if registers else copied)


_REG_ARRAY = re.compile(r"^\s*\.reg\s+(\.\w+)\s+%([A-Za-z_]\w*)<(\d+)>\s*;")


def _register_arrays(lines: list[PtxLine], entry: Entry) -> list[tuple[str, str, str]]:
    """The kernel's function-scope register arrays (``.reg .b32 %r<1468>;``): type, prefix, count."""
    return [m.groups() for line in lines[entry.start:entry.decl_end]
            if (m := _REG_ARRAY.match(line.text))]


def _copy_declarations(arrays: list[tuple[str, str, str]]) -> list[str]:
    """Register arrays of their own for the uninstrumented copy: ``%r<N>`` becomes ``%kpc_r<N>``."""
    return [f"\t.reg {t} %kpc_{name}<{n}>; // kperf: the uninstrumented copy's registers"
            for t, name, n in arrays]


def _copy_registers(arrays: list[tuple[str, str, str]]) -> re.Pattern | None:
    """What renames the kernel's registers in its uninstrumented copy (``%r12`` -> ``%kpc_r12``): the two
    copies share no virtual register, so ptxas allocates each as if alone (sharing them gave the copy's
    loops an instruction order unlike the plain kernel's, bench/results/cpu-2026-12-06-s13-order/)."""
    names = sorted({name for _, name, _ in arrays}, key=len, reverse=True)
    if not names:
        return None
    # a register (%r12) or an inner scope's array of the same prefix (%p<2>), renamed with its uses
    return re.compile(r"%(" + "|".join(re.escape(x) for x in names) + r")(?=\d|<)")


def _guarded_return(ret: PtxLine, body: list[str], label: str) -> list[str]:
    """``body`` then the return; a predicated ``@p ret`` (or ``exit``) becomes a branch around both."""
    if ret.pred:
        neg = "@!" + ret.pred[1:] if not ret.pred.startswith("@!") else "@" + ret.pred[2:]
        return [f"\t{neg} bra {label};", *body, f"\t{ret.statement}", f"{label}:"]
    return [*body, f"\t{ret.code}"]


_NO_STATEMENT = (Kind.BLANK, Kind.COMMENT, Kind.ASM_BEGIN, Kind.ASM_END, Kind.DIRECTIVE, Kind.LABEL)


def _last_instruction_leaves(body: list[PtxLine]) -> bool:
    """Whether the body's last statement is an unconditional return or branch."""
    for line in reversed(body):
        if line.kind not in _NO_STATEMENT and line.code not in ("{", "}"):
            return line.leaves
    return False


def _carriers(lines: list[PtxLine], entry: Entry, path: str):
    """Every record carrier of the body: the line of its ``// begin inline asm`` and its record op."""
    for i in range(entry.body_start + 1, entry.body_end - 1):
        if lines[i].kind is Kind.ASM_BEGIN:
            op = parse_carrier(lines[i + 1].text, where=f"{path} line {i + 2}")
            if op is not None:
                yield i, op


def _carrier_lines(lines: list[PtxLine], entry: Entry, path: str) -> set[int]:
    """The lines of every record carrier's inline asm block (``// begin inline asm`` to its end)."""
    out: set[int] = set()
    for i, _ in _carriers(lines, entry, path):
        j = i
        while j < entry.body_end and lines[j].kind is not Kind.ASM_END:
            out.add(j)
            j += 1
        out.add(j)
    return out


def _tags(lines: list[PtxLine], entry: Entry, path: str) -> tuple[int, ...]:
    """Every record's tag word, once each, in the order the kernel first records it (``hoist_tags``)."""
    tags = (make_tag(op.scope_id, not op.is_start) for _, op in _carriers(lines, entry, path)
            if op.scope_id is not None)
    return tuple(dict.fromkeys(tags))


def _declares_smem(lines: list[PtxLine]) -> bool:
    return any(line.kind is Kind.DIRECTIVE and ".shared" in line.code.split()
               and re.search(rf"\b{SMEM_SYMBOL}\[", line.code) for line in lines)


def _reject_lowered(lines: list[PtxLine], path: str) -> None:
    for i, line in enumerate(lines):
        if PREAMBLE_MARK in line.text or REGISTER_PREFIX in line.code:
            raise KperfError("this PTX was lowered by kperf-lower-ptx already (it holds kperf's profile "
                             "preamble or %kp_ registers); lowering it again would record every scope twice",
                             where=f"{path} line {i + 1}",
                             fix="lower the PTX Triton emits (kperf's stage hook lowers once per compile)")


def _reject_records_in_funcs(lines: list[PtxLine], entry: Entry, path: str) -> None:
    func = "?"
    for i, line in enumerate(lines):
        if line.kind is Kind.DIRECTIVE and ".func" in line.code.split():
            func = _func_name(line.code)
        if entry.body_start <= i <= entry.body_end or "kperf.record" not in line.text:
            continue
        op = parse_carrier(line.text.strip())
        if op is not None:
            raise KperfError(
                f'record of scope "{op.name}" is in the PTX function {func}, outside the kernel: a '
                "noinline function cannot see the kernel's profile buffer",
                where=f"{path} line {i + 1}",
                fix="drop noinline=True from that function or move the scope into the kernel")


def _func_name(code: str) -> str:
    """``helper`` from ``.func (.param .b32 retval) helper(`` or ``.visible .func helper(``."""
    rest = code.split(".func", 1)[1].strip()
    if rest.startswith("("):  # the return value's parameter list
        rest = rest.split(")", 1)[1]
    return rest.split("(", 1)[0].strip() or "?"
