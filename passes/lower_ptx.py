"""``kperf-lower-ptx``: replace record carriers in PTX with clock reads and lane-0 stores.

Pure text to text.  What it writes (register names all start with ``%kp_``):

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
  ``count % capacity``.  The counter and pointer are bumped once per basic block;
- before every ``ret``: a ``smem`` warp copies its staged records out (all 32 lanes, coalesced),
  lane 0 of each recording warp stores its final counter, lane 0 of warp 0 stores the closing
  ``(%globaltimer, %clock64)`` pair and ``%smid``.
- with CTA sampling and ``clone`` (the default), the body is emitted twice: sampled-out CTAs branch
  once, after the preamble, to an uninstrumented copy (carriers stay no-op comments) whose ``ret``
  only closes the header.  Whole CTAs take one copy or the other, so CTA-wide ``.aligned``
  instructions (``bar.sync``, ``wgmma``) stay aligned.

Offsets come from ``kperf.dialect.layout``; nothing here spells one.
"""

from __future__ import annotations

import dataclasses
import re

from kperf.dialect.options import ProfileConfig
from kperf.dialect.errors import KperfError
from kperf.dialect.record import parse_carrier
from kperf.dialect.layout import FLAG_SAMPLED_OUT, HEADER_OFFSETS, MAGIC, VERSION, Geometry, make_tag

BEGIN_ASM = "// begin inline asm"
END_ASM = "// end inline asm"
SMEM_SYMBOL = "global_smem"  # Triton's dynamic shared memory array
SMEM_ALIGN = 16
FLUSH_UNROLL = 4  # records each lane copies per iteration of the smem flush loop

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
class LowerPtxPass:
    """Options: the profile config and the kernel's warp count (WS partitions included).

    ``shared_bytes`` is the dynamic shared memory the kernel already uses (Triton's
    ``metadata["shared"]``) and ``capability`` the target (e.g. 90); ``store="smem"``/``"auto"`` need
    both to place the staging area and check it fits.
    """

    config: ProfileConfig
    num_warps: int
    records: bool = True  # False: preamble and epilogue only (to measure the fixed cost)
    shared_bytes: int | None = None
    capability: int = 90
    name = "kperf-lower-ptx"

    @property
    def geometry(self) -> Geometry:
        return Geometry(self.num_warps, self.config.capacity, self.config.clock,
                        self.config.recording_warps(self.num_warps))

    def apply_text(self, ptx: str) -> LoweringResult:
        lines = ptx.split("\n")
        entry = _find_entry(lines)
        _reject_records_in_funcs(lines, entry)
        cfg = self.config
        # a dry run finds the largest basic block, which sizes the fold sink
        max_block = _Lowering(self, lines, entry, Geometry(self.num_warps, cfg.capacity, cfg.clock),
                              "global", 0).run().max_block
        sink = max_block if cfg.fold else 0
        g = dataclasses.replace(self.geometry, sink=sink)
        store, smem_offset, shared_after = self._place(g)
        low = _Lowering(self, lines, entry, g, store, smem_offset).run()
        return LoweringResult("\n".join(low.out), low.count, g, store, shared_after, max_block)

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
            f"own + {g.slots} warps x {g.warp_bytes} bytes of records) but sm_{self.capability} allows {limit}",
            fix=(f"use capacity<={fit}, " if fit > 0 else "") + "store='auto' (falls back to global) or "
                "store='global', or record fewer warps (granularity='warpgroup')")


class _Lowering:
    """One pass over the PTX lines, emitting the instrumented kernel."""

    def __init__(self, p: LowerPtxPass, lines: list[str], entry: "_Entry", g: Geometry, store: str,
                 smem_offset: int):
        self.p, self.cfg, self.lines, self.entry, self.g = p, p.config, lines, entry, g
        self.smem = store == "smem"
        self.smem_offset = smem_offset
        self.clone = self.cfg.clone and self.cfg.samples_ctas
        self.out: list[str] = []
        self.count = 0
        self.max_block = 0

    def run(self) -> "_Lowering":
        lines, entry, out = self.lines, self.entry, self.out
        rets = 0
        pending = 0  # records in the current basic block whose counter bump is not yet emitted
        i = 0
        while i < len(lines):
            line = lines[i]
            s = line.split("//", 1)[0].strip()
            if i == entry.start:
                if self.cfg.sms:
                    out.extend(self._sm_mask_decl())
                if self.smem and not _declares_smem(lines):
                    out.extend([f".extern .shared .align {SMEM_ALIGN} .b8 {SMEM_SYMBOL}[];", ""])
            if entry.body_start < i < entry.body_end:
                if i == entry.decl_end:
                    out.extend(self._preamble(entry.last_param))
                    if self.clone:
                        out.append("\t@!%kp_s bra $KP_PLAIN; // kperf: sampled-out CTAs run the plain copy")
                if line.strip() == BEGIN_ASM and i + 1 < len(lines):
                    op = parse_carrier(lines[i + 1], where=f"PTX line {i + 2}")
                    if op is not None:
                        if op.scope_id is None and self.p.records:
                            raise KperfError(f'record of scope "{op.name}" reached PTX without a scope id',
                                             where=f"PTX line {i + 2}",
                                             fix="run kperf-materialize on the TTGIR first "
                                                 "(kperf's stage hook does this)")
                        out.append(line)
                        if self.p.records:
                            out.extend(self._record(op.scope_id, not op.is_start, self.count, pending))
                            pending += 1
                            self.max_block = max(self.max_block, pending)
                        self.count += 1
                        i += 2  # keep the carrier's own `mov.u32 $0, 0;` and the end comment
                        continue
                    if _asm_block_branches(lines, i):
                        out.extend(self._flush(pending))
                        pending = 0
                if _ends_block(s):
                    out.extend(self._flush(pending))
                    pending = 0
                if _is_ret(s):
                    out.extend(_guarded_ret(s, self._epilogue(rets), f"$KP_RET_SKIP_{rets}"))
                    rets += 1
                    i += 1
                    continue
            elif i == entry.body_end:
                out.extend(self._flush(pending))
                pending = 0
                if self.clone:
                    out.extend(self._plain_copy())
            out.append(line)
            i += 1
        if rets == 0:
            raise KperfError("the kernel has no `ret` instruction to finalize records before")
        return self

    # -- pieces of PTX ----------------------------------------------------------------------------
    def _sm_mask_decl(self) -> list[str]:
        words = [0] * (max(self.cfg.sms) // 32 + 1)
        for sm in self.cfg.sms:
            words[sm // 32] |= 1 << (sm % 32)
        return [f".const .align 4 .b32 kp_sm_mask[{len(words)}] = {{{', '.join(map(str, words))}}};"
                " // kperf: sampled SMs", ""]

    def _preamble(self, param: str) -> list[str]:
        g, cfg = self.g, self.cfg
        h = HEADER_OFFSETS
        regs = ["%kp_cta", "%kp_base", "%kp_ptr"]
        out = ["\t// kperf: profile state (preamble)"]
        out += [f"\t.reg .b64 {r};" for r in regs]
        out += [f"\t.reg .b32 {r};" for r in ("%kp_n", "%kp_warp", "%kp_slot")]
        out += [f"\t.reg .pred {r};" for r in ("%kp_l0", "%kp_w0", "%kp_s", "%kp_wr")]
        if self.smem:
            out += ["\t.reg .b32 %kp_sbase;", "\t.reg .b32 %kp_sptr;"]
        if cfg.fold:
            out += ["\t.reg .b32 %kp_m;"]
        out += [
            "\t{",
            "\t.reg .b32 %t<20>;",
            "\t.reg .b64 %d<8>;",
            "\t.reg .pred %q<2>;",
            f"\tld.param.u64 %d0, [{param}];",
            "\tmov.u32 %t0, %tid.x;",
            "\tshr.u32 %kp_warp, %t0, 5;",
            "\tand.b32 %t1, %t0, 31;",
            "\tsetp.eq.u32 %q0, %t1, 0;  // lane 0",
            "\tsetp.eq.and.u32 %kp_w0, %kp_warp, 0, %q0;",
            "\tmov.u32 %t2, %ctaid.x;",
            "\tmov.u32 %t3, %ctaid.y;",
            "\tmov.u32 %t4, %ctaid.z;",
            "\tmov.u32 %t5, %nctaid.x;",
            "\tmov.u32 %t6, %nctaid.y;",
            "\tmad.lo.u32 %t7, %t4, %t6, %t3;",
            "\tmad.lo.u32 %t7, %t7, %t5, %t2;",
            f"\tmul.wide.u32 %d1, %t7, {g.cta_bytes};",
            "\tadd.u64 %kp_cta, %d0, %d1;",
            "\tmov.u32 %t8, %smid;",
        ]
        # is this CTA sampled?
        if cfg.cta_stride > 1:
            out += [f"\trem.u32 %t12, %t7, {cfg.cta_stride};", "\tsetp.eq.u32 %kp_s, %t12, 0;"]
        else:
            out += ["\tsetp.eq.u32 %kp_s, %t0, %t0;"]
        if cfg.sms:
            nwords = max(cfg.sms) // 32 + 1
            out += ["\tshr.u32 %t13, %t8, 5;", f"\tsetp.lt.u32 %q1, %t13, {nwords};", "\tmov.u32 %t14, 0;",
                    "\tmov.u64 %d6, kp_sm_mask;", "\tmul.wide.u32 %d7, %t13, 4;", "\tadd.u64 %d6, %d6, %d7;",
                    "\t@%q1 ld.const.u32 %t14, [%d6];", "\tand.b32 %t15, %t8, 31;",
                    "\tshr.u32 %t14, %t14, %t15;", "\tand.b32 %t14, %t14, 1;",
                    "\tsetp.ne.and.u32 %kp_s, %t14, 0, %kp_s;"]
        # does this warp record, and into which slot?
        if g.warps is None:
            out += ["\tmov.u32 %kp_slot, %kp_warp;", "\tmov.pred %kp_wr, %kp_s;"]
        else:
            mask = sum(1 << w for w in g.warps)
            out += [f"\tmov.u32 %t19, {mask};  // recording warps", "\tshr.u32 %t16, %t19, %kp_warp;",
                    "\tand.b32 %t16, %t16, 1;", "\tsetp.ne.and.u32 %kp_wr, %t16, 0, %kp_s;",
                    "\tmov.u32 %t17, 1;", "\tshl.b32 %t17, %t17, %kp_warp;", "\tadd.u32 %t17, %t17, -1;",
                    "\tand.b32 %t17, %t17, %t19;", "\tpopc.b32 %kp_slot, %t17;  // recording warps below"]
        out += [
            "\tand.pred %kp_l0, %q0, %kp_wr;  // the recording lane",
            f"\tmul.wide.u32 %d2, %kp_slot, {g.warp_bytes};",
            "\tadd.u64 %d3, %kp_cta, %d2;",
            f"\tadd.u64 %kp_base, %d3, {g.records_offset};",
            "\tmov.u32 %kp_n, 0;",
            "\tmov.u64 %kp_ptr, %kp_base;",
        ]
        if self.smem:
            out += [f"\tmov.u32 %t18, {SMEM_SYMBOL};",
                    f"\tadd.u32 %t18, %t18, {self.smem_offset};  // staging area past the kernel's shared memory",
                    f"\tmad.lo.u32 %kp_sbase, %kp_slot, {g.warp_bytes}, %t18;",
                    "\tmov.u32 %kp_sptr, %kp_sbase;"]
        out += [
            "\tmov.u64 %d4, %globaltimer;",
            "\tmov.u64 %d5, %clock64;",
            f"\tmov.u32 %t9, {MAGIC};",
            f"\tselp.u32 %t10, {VERSION}, {VERSION | FLAG_SAMPLED_OUT << 16}, %kp_s;  // version | flags << 16",
            f"\tmov.u32 %t11, {g.num_warps};",
            f"\t@%kp_w0 st.global.v2.b32 [%kp_cta+{h['magic']}], {{%t9, %t10}};",
            f"\t@%kp_w0 st.global.b32 [%kp_cta+{h['smid_start']}], %t8;",
            f"\t@%kp_w0 st.global.v2.u64 [%kp_cta+{h['gtime_start']}], {{%d4, %d5}};",
            f"\t@%kp_w0 st.global.v4.b32 [%kp_cta+{h['ctaid_x']}], {{%t2, %t3, %t4, %t11}};",
            "\t}",
        ]
        return out

    def _flush(self, pending: int) -> list[str]:
        """Bump the counter and the pointer by the records of the basic block that just ended."""
        if not pending:
            return []
        cfg, rb = self.cfg, self.g.record_bytes
        out = [f"\tadd.u32 %kp_n, %kp_n, {pending}; // kperf: {pending} records in this block"]
        if cfg.strategy == "wrap":
            return out  # every record indexes from the base
        if cfg.fold:
            out.append(f"\tmin.u32 %kp_m, %kp_n, {cfg.capacity};")
            out.append(f"\tmad.lo.u32 %kp_sptr, %kp_m, {rb}, %kp_sbase;" if self.smem
                       else f"\tmad.wide.u32 %kp_ptr, %kp_m, {rb}, %kp_base;")
        else:
            out.append(f"\tadd.u32 %kp_sptr, %kp_sptr, {pending * rb};" if self.smem
                       else f"\tadd.u64 %kp_ptr, %kp_ptr, {pending * rb};")
        return out

    def _record(self, scope_id: int, is_end: bool, n: int, k: int) -> list[str]:
        """Record ``n`` of the kernel, the ``k``-th of its basic block (counter bumps are per block)."""
        cfg, g = self.cfg, self.g
        tag = make_tag(scope_id, is_end)
        space = "shared" if self.smem else "global"
        ptr, base = ("%kp_sptr", "%kp_sbase") if self.smem else ("%kp_ptr", "%kp_base")
        lines = ["\t{", "\t.reg .b32 %kt;"]
        if cfg.strategy == "wrap":
            lines += ["\t.reg .b32 %ks;", f"\tadd.u32 %ks, %kp_n, {k};", f"\tand.b32 %ks, %ks, {cfg.capacity - 1};"]
            if self.smem:
                lines += ["\t.reg .b32 %ka;", f"\tmad.lo.u32 %ka, %ks, {g.record_bytes}, {base};"]
            else:
                lines += ["\t.reg .b64 %ka;", f"\tmad.wide.u32 %ka, %ks, {g.record_bytes}, {base};"]
            addr, pred = "%ka", "%kp_l0"
        elif cfg.fold:
            # the pointer was clamped at the block start; slots past capacity are the sink
            addr, pred = f"{ptr}+{k * g.record_bytes}", "%kp_l0"
        else:
            # slot n + k: the compare folds k into its immediate and the store into its offset
            lines += ["\t.reg .pred %kq;"]
            if k >= cfg.capacity:
                lines.append("\tsetp.ne.u32 %kq, 0, 0;")  # cannot fit: this record is always lost
            else:
                lines.append(f"\tsetp.lt.and.u32 %kq, %kp_n, {cfg.capacity - k}, %kp_l0;")
            addr, pred = f"{ptr}+{k * g.record_bytes}", "%kq"
        lines.append(f"\tmov.u32 %kt, {tag};")
        if cfg.clock == "clock":
            lines += ["\t.reg .b32 %kc;", "\tmov.u32 %kc, %clock;",
                      f"\t@{pred} st.{space}.v2.b32 [{addr}], {{%kt, %kc}};"]
        else:
            src = "%clock64" if cfg.clock == "clock64" else "%globaltimer"
            lines += ["\t.reg .b64 %kc;", "\t.reg .b64 %kt64;", f"\tmov.u64 %kc, {src};",
                      "\tcvt.u64.u32 %kt64, %kt;",
                      f"\t@{pred} st.{space}.v2.b64 [{addr}], {{%kt64, %kc}};"]
        lines.append("\t}")
        lines[0] = f"\t{{ // kperf record #{n}: scope {scope_id} {'end' if is_end else 'start'}"
        return lines

    def _close_header(self) -> list[str]:
        h = HEADER_OFFSETS
        return [
            "\t.reg .b64 %kg;",
            "\t.reg .b64 %kk;",
            "\t.reg .b32 %km;",
            "\tmov.u64 %kg, %globaltimer;",
            "\tmov.u64 %kk, %clock64;",
            "\tmov.u32 %km, %smid;",
            f"\t@%kp_w0 st.global.v2.u64 [%kp_cta+{h['gtime_end']}], {{%kg, %kk}};",
            f"\t@%kp_w0 st.global.b32 [%kp_cta+{h['smid_end']}], %km;",
        ]

    def _epilogue(self, k: int) -> list[str]:
        g = self.g
        body = ["\t{ // kperf: finalize (staged records, counts, closing clock pair)"]
        if self.smem:
            body += self._smem_copy_out(k)
        body += [
            "\t.reg .b64 %ke;",
            "\tmul.wide.u32 %ke, %kp_slot, 4;",
            "\tadd.u64 %ke, %ke, %kp_cta;",
            f"\t@%kp_l0 st.global.b32 [%ke+{g.counts_offset}], %kp_n;",
            *self._close_header(),
            "\t}",
        ]
        return body

    def _smem_copy_out(self, k: int) -> list[str]:
        """Every lane of a recording warp copies records lane, lane+32, ... from smem to global."""
        g, cfg = self.g, self.cfg
        rb, u = g.record_bytes, FLUSH_UNROLL
        vec = "v2.b32" if rb == 8 else "v4.b32"
        nreg = rb // 4
        loop, done = f"$KP_COPY_{k}", f"$KP_COPY_DONE_{k}"
        out = ["\t.reg .b32 %kf<4>;", f"\t.reg .b32 %kv<{u * nreg}>;", f"\t.reg .b32 %kj<{u}>;",
               f"\t.reg .b32 %ks<{u}>;", f"\t.reg .b64 %kd<{u}>;", f"\t.reg .pred %kfp<{u + 1}>;",
               "\tbar.warp.sync -1;  // lane 0's staged records are visible to the warp",
               f"\tmin.u32 %kf0, %kp_n, {cfg.capacity};  // records to copy out",
               "\tmov.u32 %kf1, %tid.x;",
               "\tand.b32 %kf1, %kf1, 31;",
               f"\t@!%kp_wr bra {done};",
               f"{loop}:",
               f"\tsetp.ge.u32 %kfp{u}, %kf1, %kf0;",
               f"\t@%kfp{u} bra {done};"]
        for j in range(u):
            regs = ", ".join(f"%kv{j * nreg + r}" for r in range(nreg))
            out += [f"\tadd.u32 %kj{j}, %kf1, {32 * j};", f"\tsetp.lt.u32 %kfp{j}, %kj{j}, %kf0;",
                    f"\tmad.lo.u32 %ks{j}, %kj{j}, {rb}, %kp_sbase;",
                    f"\t@%kfp{j} ld.shared.{vec} {{{regs}}}, [%ks{j}];"]
        for j in range(u):
            regs = ", ".join(f"%kv{j * nreg + r}" for r in range(nreg))
            out += [f"\tmad.wide.u32 %kd{j}, %kj{j}, {rb}, %kp_base;",
                    f"\t@%kfp{j} st.global.{vec} [%kd{j}], {{{regs}}};"]
        out += [f"\tadd.u32 %kf1, %kf1, {32 * u};", f"\tbra.uni {loop};", f"{done}:"]
        return out

    def _plain_copy(self) -> list[str]:
        """The uninstrumented body for sampled-out CTAs: labels renamed, rets only close the header."""
        e, lines = self.entry, self.lines
        body = lines[e.decl_end:e.body_end]
        depth = 1
        labels, keep = [], []
        for line in body:
            s = line.split("//", 1)[0]
            st = s.strip()
            if depth == 1:
                m = _LABEL.match(st)
                if m:
                    labels.append(m.group(1))
                if st.startswith((".reg", ".shared", ".local")):
                    depth += s.count("{") - s.count("}")
                    continue  # function-scope declarations are visible to both copies
            keep.append(line)
            depth += s.count("{") - s.count("}")
        if not _last_instruction_leaves(body):
            raise KperfError("the kernel body does not end with `ret` or a branch; kperf cannot append the "
                             "uninstrumented copy used for CTA sampling", fix="use clone=False")
        rename = re.compile(r"(?<![\w$])(" + "|".join(re.escape(x) for x in labels) + r")(?![\w$])") \
            if labels else None
        out = ["$KP_PLAIN: // kperf: uninstrumented copy of the body (sampled-out CTAs)"]
        n = 0
        for line in keep:
            if rename is not None:
                line = rename.sub(r"\1_kp_plain", line)
            s = line.split("//", 1)[0].strip()
            if _is_ret(s):
                epi = ["\t{ // kperf: close the header of a sampled-out CTA", *self._close_header(), "\t}"]
                out.extend(_guarded_ret(s, epi, f"$KP_PLAIN_RET_SKIP_{n}"))
                n += 1
                continue
            out.append(line)
        return out


def _declares_smem(lines: list[str]) -> bool:
    return any(".shared" in l and re.search(rf"\b{SMEM_SYMBOL}\[", l) for l in lines)


_LABEL = re.compile(r"^([$A-Za-z_][\w$]*):")


def _guarded_ret(ret_line: str, body: list[str], label: str) -> list[str]:
    """``body`` then the ``ret``; a predicated ``@p ret`` becomes a branch around both."""
    if ret_line.startswith("@"):
        pred, _, rest = ret_line.partition(" ")
        neg = "@!" + pred[1:] if not pred.startswith("@!") else "@" + pred[2:]
        return [f"\t{neg} bra {label};", *body, f"\t{rest.strip()}", f"{label}:"]
    return [*body, f"\t{ret_line}"]


def _last_instruction_leaves(body: list[str]) -> bool:
    for line in reversed(body):
        s = line.split("//", 1)[0].strip()
        if not s or s.startswith(".") or s.endswith(":") or s in ("{", "}"):
            continue
        return s in ("ret;", "ret.uni;", "exit;") or (not s.startswith("@") and s.split(None, 1)[0]
                                                       .split(".")[0] in ("bra", "brx"))
    return False


def _strip_pred(s: str) -> str:
    return s.partition(" ")[2].strip() if s.startswith("@") else s


def _ends_block(s: str) -> bool:
    """A label, branch, call, return or exit: the counter must be current across it."""
    if not s:
        return False
    if s.endswith(":") and not s.startswith("."):
        return True
    body = _strip_pred(s).rstrip(";").strip()
    op = body.split(None, 1)[0] if body else ""
    return op.split(".")[0] in ("bra", "brx", "call", "ret", "exit", "trap")


def _asm_block_branches(lines: list[str], begin: int) -> bool:
    """Whether the inline-asm block starting at ``begin`` holds labels or branches."""
    for j in range(begin + 1, len(lines)):
        s = lines[j].split("//", 1)[0].strip()
        if lines[j].strip() == END_ASM:
            return False
        if _ends_block(s):
            return True
    return False


def _is_ret(s: str) -> bool:
    if s.startswith("@"):
        s = s.partition(" ")[2].strip()
    return s in ("ret;", "ret.uni;")


@dataclasses.dataclass
class _Entry:
    name: str
    last_param: str
    start: int  # index of the `.entry` line
    body_start: int  # index of the line holding the opening "{"
    decl_end: int  # index of the first line after the leading declarations
    body_end: int  # index of the closing "}"


def _find_entry(lines: list[str]) -> _Entry:
    starts = [i for i, l in enumerate(lines) if ".entry " in l and l.lstrip().startswith((".visible", ".entry"))]
    if len(starts) != 1:
        raise KperfError(f"expected one .entry in the PTX, found {len(starts)}")
    i = starts[0]
    name = lines[i].split(".entry", 1)[1].strip().split("(")[0].strip()
    params: list[str] = []
    j = i
    while not lines[j].strip().startswith(")") and not lines[j].rstrip().endswith(")"):
        j += 1
        s = lines[j].strip().rstrip(",")
        if s.startswith(".param"):
            params.append(s.split()[-1])
    if not params:
        raise KperfError(f"kernel {name} has no parameters; Triton always passes the profile buffer last")
    while lines[j].strip() != "{":
        j += 1
    body_start = j
    k = j + 1
    while k < len(lines) and (lines[k].strip().startswith((".reg", ".shared", ".local")) or not lines[k].strip()):
        k += 1
    depth, end = 0, None
    for m in range(body_start, len(lines)):
        s = lines[m].split("//", 1)[0]
        depth += s.count("{") - s.count("}")
        if depth == 0:
            end = m
            break
    if end is None:
        raise KperfError(f"unbalanced braces in the body of kernel {name}")
    return _Entry(name, params[-1], i, body_start, k, end)


def _reject_records_in_funcs(lines: list[str], entry: _Entry) -> None:
    for i, line in enumerate(lines):
        if entry.body_start <= i <= entry.body_end:
            continue
        op = parse_carrier(line.strip()) if "kperf.record" in line else None
        if op is not None:
            func = "?"
            for back in range(i, -1, -1):
                if ".func" in lines[back]:
                    func = lines[back].split(".func", 1)[1].strip().split("(")[0].split()[-1]
                    break
            raise KperfError(
                f'record of scope "{op.name}" is in the PTX function {func}, outside the kernel: a '
                "noinline function cannot see the kernel's profile buffer",
                where=f"PTX line {i + 1}",
                fix="drop noinline=True from that function or move the scope into the kernel")
