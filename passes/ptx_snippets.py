"""The PTX that ``kperf-lower-ptx`` writes: preamble, records, counter bumps and the epilogue.

Each method returns lines of PTX for one place in the kernel (``kperf.passes.lower_ptx`` decides
where).  Register names all start with ``%kp_`` (function scope) or ``%k`` (inside a ``{ }`` block);
offsets come from ``kperf.dialect.layout``.
"""

from __future__ import annotations

from kperf.dialect.layout import FLAG_SAMPLED_OUT, HEADER_OFFSETS, MAGIC, VERSION, Geometry, make_tag
from kperf.dialect.options import ProfileConfig

SMEM_SYMBOL = "global_smem"  # Triton's dynamic shared memory array
SMEM_ALIGN = 16
FLUSH_UNROLL = 4  # records each lane copies per iteration of the smem flush loop
#: The comment that opens the preamble; PTX holding it was lowered already.
PREAMBLE_MARK = "// kperf: profile state (preamble)"
REGISTER_PREFIX = "%kp_"


#: The special register each ``clock`` option reads.
_CLOCK_SOURCES = {"clock": "%clock", "clock64": "%clock64", "globaltimer": "%globaltimer"}
#: ``defer_stores``: the most clock values held in registers before their stores are written.
DEFERRED_MAX = 8
#: The scratch registers of the preamble's block (and of a sampled-out CTA's epilogue, which redoes part).
_SCRATCH = ("\t.reg .b32 %t<20>;", "\t.reg .b64 %d<8>;", "\t.reg .pred %q<2>;")


class Snippets:
    """PTX pieces for one lowering: its options, geometry and where records are stored."""

    def __init__(self, cfg: ProfileConfig, g: Geometry, smem: bool, smem_offset: int,
                 tags: tuple[int, ...] = ()):
        self.cfg, self.g, self.smem, self.smem_offset = cfg, g, smem, smem_offset
        # hoist_tags: the register that holds each tag word (%kp_tag<i>), set in the preamble
        self.tag_regs = {t: f"%kp_tag{i}" for i, t in enumerate(tags)} if cfg.hoist_tags else {}
        # the pointer records are stored through: %kp_base, or lane-varying (``vector_pointer``)
        self.rbase = "%kp_rbase" if cfg.vector_pointer and not smem else "%kp_base"

    def sm_mask_decl(self) -> list[str]:
        words = [0] * (max(self.cfg.sms) // 32 + 1)
        for sm in self.cfg.sms:
            words[sm // 32] |= 1 << (sm % 32)
        return [f".const .align 4 .b32 kp_sm_mask[{len(words)}] = {{{', '.join(map(str, words))}}};"
                " // kperf: sampled SMs", ""]

    def smem_decl(self) -> list[str]:
        """Triton's dynamic shared memory array, for a kernel that uses none of its own."""
        return [f".extern .shared .align {SMEM_ALIGN} .b8 {SMEM_SYMBOL}[];", ""]

    # -- preamble: run once by every thread, after the kernel's declarations ------------------------
    def preamble(self, param: str) -> list[str]:
        """Profile state: CTA region, sampling, this warp's slot and record base, the CTA header."""
        return [*self._registers(), "\t{", *_SCRATCH, *self._cta_region(param), *self._sampled(),
                *self._warp_slot(), *self._record_base(), *self._header_start(), "\t}", *self._tag_words()]

    def _tag_words(self) -> list[str]:
        """``hoist_tags``: every tag word in a register of its own.  ``%kp_z`` is 0 (no GPU has 2^31
        SMs) but ptxas cannot know it, so it keeps the sums live instead of moving each constant into a
        register at its record again."""
        if not self.tag_regs:
            return []
        out = ["\t.reg .b32 %kp_z;", "\tmov.u32 %kp_z, %nsmid;", "\tshr.u32 %kp_z, %kp_z, 31;",
               f"\t.reg .b32 %kp_tag<{len(self.tag_regs)}>;"]
        return out + [f"\tadd.u32 {r}, %kp_z, {t};" for t, r in self.tag_regs.items()]

    def _registers(self) -> list[str]:
        out = [f"\t{PREAMBLE_MARK}"]
        out += [f"\t.reg .b64 {r};" for r in ("%kp_cta", "%kp_base", "%kp_ptr")]
        if self.rbase != "%kp_base":
            out += [f"\t.reg .b64 {self.rbase};"]
        out += [f"\t.reg .b32 {r};" for r in ("%kp_n", "%kp_warp", "%kp_slot")]
        out += [f"\t.reg .pred {r};" for r in ("%kp_l0", "%kp_w0", "%kp_s", "%kp_wr")]
        if self.smem:
            out += ["\t.reg .b32 %kp_sbase;", "\t.reg .b32 %kp_sptr;"]
        if self.cfg.fold:
            out += ["\t.reg .b32 %kp_m;"]
        if self.cfg.defer_stores:
            width = "b32" if self.cfg.clock == "clock" else "b64"
            out += [f"\t.reg .{width} %kp_dc<{DEFERRED_MAX}>;"]
        return out

    def _cta_region(self, param: str) -> list[str]:
        """The buffer pointer (the kernel's last parameter), warp and lane, linear CTA id, its region."""
        return [
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
            f"\tmul.wide.u32 %d1, %t7, {self.g.cta_bytes};",
            "\tadd.u64 %kp_cta, %d0, %d1;",
            "\tmov.u32 %t8, %smid;",
        ]

    def _sampled(self) -> list[str]:
        """``%kp_s``: whether this CTA records (``cta_stride``, ``sms``)."""
        cfg = self.cfg
        if cfg.cta_stride > 1:
            out = [f"\trem.u32 %t12, %t7, {cfg.cta_stride};", "\tsetp.eq.u32 %kp_s, %t12, 0;"]
        else:
            out = ["\tsetp.eq.u32 %kp_s, %t0, %t0;"]
        if cfg.sms:
            nwords = max(cfg.sms) // 32 + 1
            out += ["\tshr.u32 %t13, %t8, 5;", f"\tsetp.lt.u32 %q1, %t13, {nwords};", "\tmov.u32 %t14, 0;",
                    "\tmov.u64 %d6, kp_sm_mask;", "\tmul.wide.u32 %d7, %t13, 4;", "\tadd.u64 %d6, %d6, %d7;",
                    "\t@%q1 ld.const.u32 %t14, [%d6];", "\tand.b32 %t15, %t8, 31;",
                    "\tshr.u32 %t14, %t14, %t15;", "\tand.b32 %t14, %t14, 1;",
                    "\tsetp.ne.and.u32 %kp_s, %t14, 0, %kp_s;"]
        return out

    def _warp_slot(self) -> list[str]:
        """``%kp_wr``: whether this warp records; ``%kp_slot``: which slot it owns."""
        if self.g.warps is None:
            return ["\tmov.u32 %kp_slot, %kp_warp;", "\tmov.pred %kp_wr, %kp_s;"]
        mask = sum(1 << w for w in self.g.warps)
        return [f"\tmov.u32 %t19, {mask};  // recording warps", "\tshr.u32 %t16, %t19, %kp_warp;",
                "\tand.b32 %t16, %t16, 1;", "\tsetp.ne.and.u32 %kp_wr, %t16, 0, %kp_s;",
                "\tmov.u32 %t17, 1;", "\tshl.b32 %t17, %t17, %kp_warp;", "\tadd.u32 %t17, %t17, -1;",
                "\tand.b32 %t17, %t17, %t19;", "\tpopc.b32 %kp_slot, %t17;  // recording warps below"]

    def _record_base(self) -> list[str]:
        """The recording lane, this slot's first record (and its staging area), the counter at 0."""
        g = self.g
        out = [
            "\tand.pred %kp_l0, %q0, %kp_wr;  // the recording lane",
            f"\tmul.wide.u32 %d2, %kp_slot, {g.warp_bytes};",
            "\tadd.u64 %d3, %kp_cta, %d2;",
            f"\tadd.u64 %kp_base, %d3, {g.records_offset};",
            "\tmov.u32 %kp_n, 0;",
        ]
        if self.rbase != "%kp_base":
            # lane 0 (the only writer) sees %kp_base; the other lanes' pointers differ, so ptxas cannot
            # keep the pointer in uniform registers and copy it into a vector pair before every store
            out += ["\tmul.wide.u32 %d7, %t1, 8;", f"\tadd.u64 {self.rbase}, %kp_base, %d7;"]
        out += [f"\tmov.u64 %kp_ptr, {self.rbase};"]
        if self.smem:
            staging = f"add.u32 %t18, %t18, {self.smem_offset};"
            out += [f"\tmov.u32 %t18, {SMEM_SYMBOL};",
                    f"\t{staging}  // staging area past the kernel's shared memory",
                    f"\tmad.lo.u32 %kp_sbase, %kp_slot, {g.warp_bytes}, %t18;",
                    "\tmov.u32 %kp_sptr, %kp_sbase;"]
        return out

    def _header_start(self) -> list[str]:
        """Lane 0 of warp 0 writes the CTA header: magic, version and flags, SM, clock pair, CTA id."""
        h = HEADER_OFFSETS
        version = f"selp.u32 %t10, {VERSION}, {VERSION | FLAG_SAMPLED_OUT << 16}, %kp_s;"
        return [
            "\tmov.u64 %d4, %globaltimer;",
            "\tmov.u64 %d5, %clock64;",
            f"\tmov.u32 %t9, {MAGIC};",
            f"\t{version}  // version | flags << 16",
            f"\tmov.u32 %t11, {self.g.num_warps};",
            f"\t@%kp_w0 st.global.v2.b32 [%kp_cta+{h['magic']}], {{%t9, %t10}};",
            f"\t@%kp_w0 st.global.b32 [%kp_cta+{h['smid_start']}], %t8;",
            f"\t@%kp_w0 st.global.v2.u64 [%kp_cta+{h['gtime_start']}], {{%d4, %d5}};",
            f"\t@%kp_w0 st.global.v4.b32 [%kp_cta+{h['ctaid_x']}], {{%t2, %t3, %t4, %t11}};",
        ]

    # -- records and counter bumps ------------------------------------------------------------------
    def flush(self, pending: int) -> list[str]:
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
                       else f"\tmad.wide.u32 %kp_ptr, %kp_m, {rb}, {self.rbase};")
        else:
            out.append(f"\tadd.u32 %kp_sptr, %kp_sptr, {pending * rb};" if self.smem
                       else f"\tadd.u64 %kp_ptr, %kp_ptr, {pending * rb};")
        return out

    def read_clock(self, n: int, scope_id: int, is_end: bool, reg: str) -> list[str]:
        """``defer_stores``: record ``n``'s clock read alone, into ``reg``; ``record(..., clock=reg)``
        stores it later."""
        src, width = _CLOCK_SOURCES[self.cfg.clock], "u32" if self.cfg.clock == "clock" else "u64"
        kind = "end" if is_end else "start"
        return [f"\tmov.{width} {reg}, {src}; // kperf record #{n}: scope {scope_id} {kind} (stored later)"]

    def record(self, scope_id: int, is_end: bool, n: int, k: int, clock: str | None = None) -> list[str]:
        """Record ``n`` of the kernel, the ``k``-th of its basic block (counter bumps are per block);
        ``clock``: the register its clock was read into already (``defer_stores``)."""
        cfg = self.cfg
        space = "shared" if self.smem else "global"
        kind = "end" if is_end else "start"
        lines = [f"\t{{ // kperf record #{n}: scope {scope_id} {kind}" + (" (store)" if clock else "")]
        tag = make_tag(scope_id, is_end)
        kt = self.tag_regs.get(tag, "%kt")
        if kt == "%kt":
            lines.append("\t.reg .b32 %kt;")
        addr, pred = self._record_slot(k, lines)
        if kt == "%kt":
            lines.append(f"\tmov.u32 %kt, {tag};")
        kc, src = clock or "%kc", _CLOCK_SOURCES[cfg.clock]
        if cfg.clock == "clock":
            if not clock:
                lines += ["\t.reg .b32 %kc;", f"\tmov.u32 %kc, {src};"]
            lines += [f"\t@{pred} st.{space}.v2.b32 [{addr}], {{{kt}, {kc}}};"]
        else:
            read = [] if clock else ["\t.reg .b64 %kc;"]
            read += ["\t.reg .b64 %kt64;"] + ([] if clock else [f"\tmov.u64 %kc, {src};"])
            lines += read + [f"\tcvt.u64.u32 %kt64, {kt};",
                             f"\t@{pred} st.{space}.v2.b64 [{addr}], {{%kt64, {kc}}};"]
        lines.append("\t}")
        return lines

    def _record_slot(self, k: int, lines: list[str]) -> tuple[str, str]:
        """The address and predicate of the block's ``k``-th record; appends what computes them."""
        cfg, g = self.cfg, self.g
        ptr, base = ("%kp_sptr", "%kp_sbase") if self.smem else ("%kp_ptr", self.rbase)
        if cfg.strategy == "wrap":
            lines += ["\t.reg .b32 %ks;", f"\tadd.u32 %ks, %kp_n, {k};",
                      f"\tand.b32 %ks, %ks, {cfg.capacity - 1};"]
            if self.smem:
                lines += ["\t.reg .b32 %ka;", f"\tmad.lo.u32 %ka, %ks, {g.record_bytes}, {base};"]
            else:
                lines += ["\t.reg .b64 %ka;", f"\tmad.wide.u32 %ka, %ks, {g.record_bytes}, {base};"]
            return "%ka", "%kp_l0"
        if cfg.fold:
            # the pointer was clamped at the block start; slots past capacity are the sink
            return f"{ptr}+{k * g.record_bytes}", "%kp_l0"
        # slot n + k: the compare folds k into its immediate and the store into its offset
        lines += ["\t.reg .pred %kq;"]
        if k >= cfg.capacity:
            lines.append("\tsetp.ne.u32 %kq, 0, 0;")  # cannot fit: this record is always lost
        else:
            lines.append(f"\tsetp.lt.and.u32 %kq, %kp_n, {cfg.capacity - k}, %kp_l0;")
        return f"{ptr}+{k * g.record_bytes}", "%kq"

    # -- epilogue: before every return --------------------------------------------------------------
    def close_header(self) -> list[str]:
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

    def plain_epilogue(self, param: str) -> list[str]:
        """The epilogue of the uninstrumented copy (sampled-out CTAs): only the header's closing pair.
        The CTA's region and warp 0 are worked out again here rather than kept from the preamble, so no
        kperf value stays live through the copy and ptxas allocates it as the plain kernel."""
        return ["\t{ // kperf: close the header of a sampled-out CTA", *_SCRATCH, *self._cta_region(param),
                *self.close_header(), "\t}"]

    def epilogue(self, k: int) -> list[str]:
        """Staged records out (smem), this warp's final count, the header's closing pair."""
        body = ["\t{ // kperf: finalize (staged records, counts, closing clock pair)"]
        if self.smem:
            body += self._smem_copy_out(k)
        body += [
            "\t.reg .b64 %ke;",
            "\tmul.wide.u32 %ke, %kp_slot, 4;",
            "\tadd.u64 %ke, %ke, %kp_cta;",
            f"\t@%kp_l0 st.global.b32 [%ke+{self.g.counts_offset}], %kp_n;",
            *self.close_header(),
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
