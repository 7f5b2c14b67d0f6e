"""``kperf-lower-ptx``: replace record carriers in PTX with clock reads and lane-0 stores.

Pure text to text.  What it writes (register names all start with ``%kp_``):

- after the kernel's opening ``{``: a few function-scope registers and a preamble, run once by every
  thread: load the profile buffer pointer (the kernel's last ``.param``, which Triton fills from the
  profile allocator), compute this CTA's region from the linear CTA id, this warp's record base from
  ``%tid.x / 32``, and the lane-0 predicate; lane 0 of warp 0 writes the CTA header (magic, version,
  ``%smid``, a ``(%globaltimer, %clock64)`` pair, ``%ctaid``, warp count);
- for each carrier: read the clock, store ``{tag, clock}`` from lane 0 into the warp's next slot
  (only while slots remain, or into ``count % capacity`` with ``wrap``), bump the counter;
- before every ``ret``: lane 0 of each warp stores its final counter; lane 0 of warp 0 stores the
  closing ``(%globaltimer, %clock64)`` pair and ``%smid``.

Offsets come from ``kperf.layout``; nothing here spells one.
"""

from __future__ import annotations

import dataclasses

from kperf.config import ProfileConfig
from kperf.dialect.errors import KperfError
from kperf.dialect.record import parse_carrier
from kperf.layout import HEADER_OFFSETS, MAGIC, VERSION, Geometry, make_tag

BEGIN_ASM = "// begin inline asm"
END_ASM = "// end inline asm"


@dataclasses.dataclass(frozen=True)
class LoweringResult:
    ptx: str
    num_records: int  # static record sites lowered
    geometry: Geometry


@dataclasses.dataclass(frozen=True)
class LowerPtxPass:
    """Options: the profile config and the kernel's warp count (WS partitions included)."""

    config: ProfileConfig
    num_warps: int
    records: bool = True  # False: preamble and epilogue only (to measure the fixed cost)
    name = "kperf-lower-ptx"

    @property
    def geometry(self) -> Geometry:
        return Geometry(self.num_warps, self.config.capacity, self.config.clock)

    def apply_text(self, ptx: str) -> LoweringResult:
        lines = ptx.split("\n")
        entry = _find_entry(lines)
        _reject_records_in_funcs(lines, entry)
        out: list[str] = []
        count = 0
        rets = 0
        pending = 0  # records in the current basic block whose counter bump is not yet emitted
        i = 0
        while i < len(lines):
            line = lines[i]
            s = line.split("//", 1)[0].strip()
            if entry.body_start < i < entry.body_end:
                if i == entry.decl_end:
                    out.extend(self._preamble(entry.last_param))
                if line.strip() == BEGIN_ASM and i + 1 < len(lines):
                    op = parse_carrier(lines[i + 1], where=f"PTX line {i + 2}")
                    if op is not None:
                        if op.scope_id is None and self.records:
                            raise KperfError(f'record of scope "{op.name}" reached PTX without a scope id',
                                             where=f"PTX line {i + 2}",
                                             fix="run kperf-materialize on the TTGIR first "
                                                 "(kperf's stage hook does this)")
                        out.append(line)
                        if self.records:
                            out.extend(self._record(op.scope_id, not op.is_start, count, pending))
                            pending += 1
                        count += 1
                        i += 2  # keep the carrier's own `mov.u32 $0, 0;` and the end comment
                        continue
                    if _asm_block_branches(lines, i):
                        out.extend(self._flush(pending))
                        pending = 0
                if _ends_block(s):
                    out.extend(self._flush(pending))
                    pending = 0
                if _is_ret(s):
                    out.extend(self._epilogue(s, rets))
                    rets += 1
                    i += 1
                    continue
            elif i == entry.body_end:
                out.extend(self._flush(pending))
                pending = 0
            out.append(line)
            i += 1
        if rets == 0:
            raise KperfError("the kernel has no `ret` instruction to finalize records before")
        return LoweringResult("\n".join(out), count, self.geometry)

    # -- pieces of PTX ----------------------------------------------------------------------------
    def _preamble(self, param: str) -> list[str]:
        g = self.geometry
        h = HEADER_OFFSETS
        return [
            "\t// kperf: profile state (preamble)",
            "\t.reg .b64 %kp_cta;",
            "\t.reg .b64 %kp_base;",
            "\t.reg .b64 %kp_ptr;  // next free slot of this warp (keep-first)",
            "\t.reg .b32 %kp_n;",
            "\t.reg .b32 %kp_warp;",
            "\t.reg .pred %kp_l0;",
            "\t.reg .pred %kp_w0;",
            "\t{",
            "\t.reg .b32 %t<12>;",
            "\t.reg .b64 %d<6>;",
            f"\tld.param.u64 %d0, [{param}];",
            "\tmov.u32 %t0, %tid.x;",
            "\tshr.u32 %kp_warp, %t0, 5;",
            "\tand.b32 %t1, %t0, 31;",
            "\tsetp.eq.u32 %kp_l0, %t1, 0;",
            "\tsetp.eq.and.u32 %kp_w0, %kp_warp, 0, %kp_l0;",
            "\tmov.u32 %t2, %ctaid.x;",
            "\tmov.u32 %t3, %ctaid.y;",
            "\tmov.u32 %t4, %ctaid.z;",
            "\tmov.u32 %t5, %nctaid.x;",
            "\tmov.u32 %t6, %nctaid.y;",
            "\tmad.lo.u32 %t7, %t4, %t6, %t3;",
            "\tmad.lo.u32 %t7, %t7, %t5, %t2;",
            f"\tmul.wide.u32 %d1, %t7, {g.cta_bytes};",
            "\tadd.u64 %kp_cta, %d0, %d1;",
            f"\tmul.wide.u32 %d2, %kp_warp, {g.warp_bytes};",
            "\tadd.u64 %d3, %kp_cta, %d2;",
            f"\tadd.u64 %kp_base, %d3, {g.records_offset};",
            "\tmov.u32 %kp_n, 0;",
            "\tmov.u64 %kp_ptr, %kp_base;",
            "\tmov.u32 %t8, %smid;",
            "\tmov.u64 %d4, %globaltimer;",
            "\tmov.u64 %d5, %clock64;",
            f"\tmov.u32 %t9, {MAGIC};",
            f"\tmov.u32 %t10, {VERSION};",
            f"\tmov.u32 %t11, {g.num_warps};",
            f"\t@%kp_w0 st.global.v2.b32 [%kp_cta+{h['magic']}], {{%t9, %t10}};",
            f"\t@%kp_w0 st.global.b32 [%kp_cta+{h['smid_start']}], %t8;",
            f"\t@%kp_w0 st.global.v2.u64 [%kp_cta+{h['gtime_start']}], {{%d4, %d5}};",
            f"\t@%kp_w0 st.global.v4.b32 [%kp_cta+{h['ctaid_x']}], {{%t2, %t3, %t4, %t11}};",
            "\t}",
        ]

    def _flush(self, pending: int) -> list[str]:
        """Bump the counter and the pointer by the records of the basic block that just ended."""
        if not pending:
            return []
        return [f"\tadd.u32 %kp_n, %kp_n, {pending}; // kperf: {pending} records in this block",
                f"\tadd.u64 %kp_ptr, %kp_ptr, {pending * self.geometry.record_bytes};"]

    def _record(self, scope_id: int, is_end: bool, n: int, k: int) -> list[str]:
        """Record ``n`` of the kernel, the ``k``-th of its basic block (counter bumps are per block)."""
        cfg = self.config
        g = self.geometry
        tag = make_tag(scope_id, is_end)
        lines = ["\t{", "\t.reg .b32 %kt;"]
        if cfg.strategy == "keep-first":
            # slot n + k: the compare folds k into its immediate and the store into its offset
            lines += ["\t.reg .pred %kq;"]
            if k >= cfg.capacity:
                lines.append("\tsetp.ne.u32 %kq, 0, 0;")  # cannot fit: this record is always lost
            else:
                lines.append(f"\tsetp.lt.and.u32 %kq, %kp_n, {cfg.capacity - k}, %kp_l0;")
            addr, pred = f"%kp_ptr+{k * g.record_bytes}", "%kq"
        else:
            lines += ["\t.reg .b32 %ks;", "\t.reg .b64 %ka;", f"\tadd.u32 %ks, %kp_n, {k};",
                      f"\tand.b32 %ks, %ks, {cfg.capacity - 1};",
                      f"\tmad.wide.u32 %ka, %ks, {g.record_bytes}, %kp_base;"]
            addr, pred = "%ka", "%kp_l0"
        lines.append(f"\tmov.u32 %kt, {tag};")
        if cfg.clock == "clock":
            lines += ["\t.reg .b32 %kc;", "\tmov.u32 %kc, %clock;",
                      f"\t@{pred} st.global.v2.b32 [{addr}], {{%kt, %kc}};"]
        else:
            src = "%clock64" if cfg.clock == "clock64" else "%globaltimer"
            lines += ["\t.reg .b64 %kc;", "\t.reg .b64 %kt64;", f"\tmov.u64 %kc, {src};",
                      "\tcvt.u64.u32 %kt64, %kt;",
                      f"\t@{pred} st.global.v2.b64 [{addr}], {{%kt64, %kc}};"]
        lines.append("\t}")
        lines[0] = f"\t{{ // kperf record #{n}: scope {scope_id} {'end' if is_end else 'start'}"
        return lines

    def _epilogue(self, ret_line: str, k: int) -> list[str]:
        g = self.geometry
        h = HEADER_OFFSETS
        body = [
            "\t{ // kperf: finalize (counts, closing clock pair)",
            "\t.reg .b64 %ke;",
            "\t.reg .b64 %kg;",
            "\t.reg .b64 %kk;",
            "\t.reg .b32 %km;",
            "\tmul.wide.u32 %ke, %kp_warp, 4;",
            "\tadd.u64 %ke, %ke, %kp_cta;",
            f"\t@%kp_l0 st.global.b32 [%ke+{g.counts_offset}], %kp_n;",
            "\tmov.u64 %kg, %globaltimer;",
            "\tmov.u64 %kk, %clock64;",
            "\tmov.u32 %km, %smid;",
            f"\t@%kp_w0 st.global.v2.u64 [%kp_cta+{h['gtime_end']}], {{%kg, %kk}};",
            f"\t@%kp_w0 st.global.b32 [%kp_cta+{h['smid_end']}], %km;",
            "\t}",
        ]
        if ret_line.startswith("@"):
            pred, _, rest = ret_line.partition(" ")
            neg = "@!" + pred[1:] if not pred.startswith("@!") else "@" + pred[2:]
            label = f"$KP_RET_SKIP_{k}"
            return [f"\t{neg} bra {label};", *body, f"\t{rest.strip()}", f"{label}:"]
        return [*body, f"\t{ret_line}"]


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
    return _Entry(name, params[-1], body_start, k, end)


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
