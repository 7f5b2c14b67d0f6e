"""``kperf-auto-insert``: put records around chosen ops of the final TTGIR, in process.

Works on the MLIR module through Triton's bundled Python bindings (``triton._C.libtriton.ir``):
``module.walk`` finds the ops by name, blocks, regions and value ids give the structure (which
``tt.func``, which ``ttg.warp_specialize`` region, which barrier a TMA copy signals), and the builder
inserts the carriers (``tt.elementwise_inline_asm``, see :mod:`kperf.dialect.record`) right before and
after each op, inside ``default`` and ``partitionN`` regions alike.  What the bindings do not expose
(integer attributes such as ``pendings``, ``num_warps(N)`` of a partition, ``requestedRegisters``) is
read from the printed module with kperf's TTGIR tokenizer (:mod:`kperf.dialect.ttgir_text`).

Selectors (comma separated): op names (``ttng.warp_group_dot``, ``ttng.wait_barrier``, ``scf.for``
for loop bodies, ... see ``SELECTORS``) or presets (``mma``, ``tma``, ``waits``, ``loops``).

Scope names carry the op and its source line: ``wgmma attention.py:52``.  Ops that Triton generated
(their location is the kernel's own line) borrow the nearest source line in their block; the barrier
waits that consume a TMA copy are named after that copy (``tma.wait attention.py:50``).

Async work (``ASYNC`` below): a TMA copy is timed where it is issued and where the barrier it signals
is waited on; an async ``warp_group_dot`` where it is issued and at the ``warp_group_dot_wait`` that
retires it.  The pairs go into the scope table's metadata (``flows``) and
:func:`kperf.tracing.flows.compute_flows` turns them into flow arrows per launch.
"""

from __future__ import annotations

import dataclasses

from kperf.dialect.errors import KperfError
from kperf.dialect.record import RecordOp
from kperf.dialect.selectors import SELECTORS, TMA_WAITS, expand, parse_selectors
from kperf.dialect.ttgir_text import loc_file_line, tokenize_line


_MEMDESC_VIEWS = ("ttg.memdesc_index", "ttg.memdesc_subslice", "ttg.memdesc_reinterpret", "ttg.memdesc_trans")


# -- an index of the module, built from one walk ------------------------------------------------------

@dataclasses.dataclass
class _Op:
    idx: int
    op: object  # ir.operation
    name: str
    block: object | None
    block_id: int | None
    region_id: int | None  # region holding the op's block
    prev: int | None = None  # previous op in the same block
    loc: str = ""  # printed location
    func: int | None = None  # enclosing tt.func
    ws_region: str | None = None  # "default" / "partitionN" when inside ttg.warp_specialize
    ws_op: int | None = None


class ModuleIndex:
    """Ops of a module in program order within each block, with their structure and locations."""

    def __init__(self, mod, builder):
        self.mod = mod
        raw: list = []
        mod.walk(raw.append)
        self.ops: list[_Op] = []
        self.result_owner: dict[int, int] = {}
        self.region_owner: dict[int, tuple[int, int]] = {}
        self.block_args: dict[int, tuple[int, int]] = {}  # value id -> (region id, arg index)
        last_in_block: dict[int, int] = {}
        self.last_of_region: dict[int, int] = {}
        self.first_of_region: dict[int, int] = {}
        seen_blocks: set[int] = set()
        for i, op in enumerate(raw):
            block = op.get_block()
            bid = block.id() if block is not None else None
            rid = block.get_parent().id() if block is not None and block.get_parent() is not None else None
            o = _Op(i, op, op.get_name(), block, bid, rid)
            builder.set_insertion_point_after(op)  # the builder takes the op's location
            o.loc = str(builder.get_loc())
            if bid is not None:
                o.prev = last_in_block.get(bid)
                last_in_block[bid] = i
                if rid is not None:
                    self.first_of_region.setdefault(rid, i)
                    self.last_of_region[rid] = i
                if bid not in seen_blocks:
                    seen_blocks.add(bid)
                    for a in range(block.get_num_arguments()):
                        self.block_args[block.arg(a).id()] = (rid, a)
            for r in range(op.get_num_results()):
                self.result_owner[op.get_result(r).id()] = i
            for r in range(op.get_num_regions()):
                self.region_owner[op.get_region(r).id()] = (i, r)
            self.ops.append(o)
        for o in self.ops:
            self._place(o)

    def _place(self, o: _Op) -> None:
        rid = o.region_id
        while rid is not None and rid in self.region_owner:
            owner, r = self.region_owner[rid]
            oname = self.ops[owner].name
            if oname == "ttg.warp_specialize.partitions" and o.ws_region is None:
                o.ws_region = f"partition{r}"
            elif oname == "ttg.warp_specialize" and o.ws_region is None and r == 0:
                o.ws_region = "default"
            if oname == "ttg.warp_specialize" and o.ws_op is None:
                o.ws_op = owner
            if oname == "tt.func":
                o.func = owner
                return
            rid = self.ops[owner].region_id

    def root_of(self, value) -> int:
        """The id of the allocation a memdesc value views (through views and WS region captures)."""
        for _ in range(64):
            vid = value.id()
            if vid in self.result_owner:
                owner = self.ops[self.result_owner[vid]]
                if owner.name in _MEMDESC_VIEWS:
                    value = owner.op.get_operand(0)
                    continue
                return vid
            if vid in self.block_args:  # a partition region's capture: the warp_specialize operand
                rid, a = self.block_args[vid]
                holder = self.region_owner.get(rid)
                if holder and self.ops[holder[0]].name == "ttg.warp_specialize.partitions":
                    ws = self.ops[holder[0]].ws_op
                    if ws is not None:
                        value = self.ops[ws].op.get_operand(a)
                        continue
            return vid
        return value.id()


# -- the pass ---------------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class AutoSite:
    name: str  # scope name
    op: str
    region: str | None  # WS region
    loc: str  # file:line


@dataclasses.dataclass(frozen=True)
class AutoInsertResult:
    sites: list[AutoSite]
    flows: list[dict]  # {"kind", "issue": [names], "complete": [names], "pendings": {name: p}}
    num_records: int


def _file_line(loc: str) -> str | None:
    try:
        return loc_file_line(loc)
    except KperfError:
        return None


@dataclasses.dataclass(frozen=True)
class AutoInsertPass:
    """Insert ``kperf.record`` carriers around the ops chosen by ``selectors`` (see module docstring)."""

    selectors: tuple[str, ...]
    name = "kperf-auto-insert"

    def apply(self, mod, context, path: str = "<ttgir>") -> AutoInsertResult:
        from triton._C.libtriton import ir
        wanted = expand(parse_selectors(self.selectors))
        builder = ir.builder(context)
        index = ModuleIndex(mod, builder)
        text_attrs = _text_attrs(mod.str())
        ops = index.ops
        func_loc = {o.idx: _file_line(o.loc) for o in ops if o.name == "tt.func"}

        def source_line(o: _Op) -> str:
            own = _file_line(o.loc)
            generic = o.func is not None and own == func_loc.get(o.func)
            if own and not generic:
                return own
            p = o.prev  # Triton-generated op: borrow the nearest earlier source line in the block
            while p is not None:
                got = _file_line(ops[p].loc)
                if got and got != func_loc.get(o.func):
                    return got
                p = ops[p].prev
            return own or path

        # TMA copies and the barriers they signal
        tma_roots: dict[int, list[_Op]] = {}
        for o in ops:
            if o.name == "ttng.async_tma_copy_global_to_local":
                bar = _barrier_operand(o.op)
                if bar is not None:
                    tma_roots.setdefault(index.root_of(bar), []).append(o)

        # copies from one source line that signal different barriers get [k] suffixes to stay apart
        copy_name: dict[int, str] = {}
        by_base: dict[str, list[int]] = {}
        for root, copies in tma_roots.items():
            for c in copies:
                roots = by_base.setdefault(source_line(c), [])
                if root not in roots:
                    roots.append(root)
        for root, copies in tma_roots.items():
            for c in copies:
                base = source_line(c)
                k = by_base[base].index(root)
                copy_name[c.idx] = base if len(by_base[base]) == 1 else f"{base} [{k}]"

        chosen: list[tuple[_Op, str, str]] = []  # (op, scope name, kind)
        flows: dict[tuple, dict] = {}
        wait_count = 0
        for o in ops:
            sel = SELECTORS.get(o.name)
            if o.name == "ttng.warp_group_dot_wait":
                pendings = text_attrs["pendings"][wait_count] if wait_count < len(text_attrs["pendings"]) else 0
                wait_count += 1
            if sel is None:
                continue
            take = o.name in wanted
            name = f"{sel.short} {source_line(o)}"
            if o.name == "ttng.wait_barrier":
                copies = tma_roots.get(index.root_of(o.op.get_operand(0)), [])
                if copies and (take or TMA_WAITS in wanted):
                    take = True
                    name = f"tma.wait {copy_name[copies[0].idx]}"
                    for c in copies:
                        issue = f"tma.load {copy_name[c.idx]}"
                        if "ttng.async_tma_copy_global_to_local" in wanted:
                            key = ("tma", issue)
                            f = flows.setdefault(key, {"kind": "tma", "issue": [issue], "complete": []})
                            if name not in f["complete"]:
                                f["complete"].append(name)
            elif o.name == "ttng.async_tma_copy_global_to_local" and o.idx in copy_name:
                name = f"{sel.short} {copy_name[o.idx]}"
            elif o.name == "ttng.warp_group_dot":
                if take and o.op.get_bool_attr("isAsync"):
                    name = f"wgmma.issue {source_line(o)}"
            elif o.name == "ttng.warp_group_dot_wait":
                name = f"wgmma.wait({pendings}) {source_line(o)}"
            if not take:
                continue
            if o.func is None:
                raise KperfError(f"cannot place a record around {o.name}: it is outside any kernel function",
                                 where=source_line(o), fix="select ops inside the kernel body")
            fn = ops[o.func].op
            if fn.get_str_attr("sym_visibility") == "private" or fn.get_bool_attr("noinline"):
                fname = fn.get_str_attr("sym_name")
                raise KperfError(
                    f"cannot place a record around {o.name} in function @{fname}: it is not the kernel "
                    f"({'noinline' if fn.get_bool_attr('noinline') else 'private'} function, compiled "
                    "to a PTX .func that cannot see the profile buffer)",
                    where=source_line(o), fix="drop noinline=True from that function, or narrow the selectors "
                                               f"(--kernels / auto=) so they do not match ops in @{fname}")
            chosen.append((o, name, sel.kind))
        self._add_wgmma_flows(chosen, flows)
        n = self._insert(index, builder, chosen)
        sites = [AutoSite(name, o.name, o.ws_region, source_line(o)) for o, name, _ in chosen]
        return AutoInsertResult(sites, list(flows.values()), n)

    @staticmethod
    def _add_wgmma_flows(chosen, flows) -> None:
        issues = [name for o, name, _ in chosen if name.startswith("wgmma.issue")]
        waits = [name for o, name, _ in chosen if o.name == "ttng.warp_group_dot_wait"]
        if issues and waits:
            pend = {w: int(w.split("(", 1)[1].split(")", 1)[0]) for w in waits}
            flows[("wgmma",)] = {"kind": "wgmma", "issue": sorted(set(issues)), "complete": sorted(set(waits)),
                                 "pendings": pend}

    @staticmethod
    def _insert(index: ModuleIndex, builder, chosen) -> int:
        i32 = builder.get_int32_ty()
        after: dict[int, object] = {}  # op idx -> the last carrier placed right after it
        head: dict[int, object] = {}  # block id -> the last carrier placed at its start
        ops = index.ops
        count = 0

        def emit(kind: str, name: str):
            nonlocal count
            count += 1
            asm = RecordOp(kind, name).carrier_asm()
            return builder.create_inline_asm(asm, "=r", [], [i32], False, 1).get_operation()

        def before(o: _Op, loc, kind: str, name: str):
            if o.prev is not None:
                builder.set_insertion_point_after(after.get(o.prev, ops[o.prev].op))
            elif o.block_id in head:
                builder.set_insertion_point_after(head[o.block_id])
            else:
                builder.set_insertion_point_to_start(o.block)
            builder.set_loc(loc)
            c = emit(kind, name)
            if o.prev is not None:
                after[o.prev] = c
            else:
                head[o.block_id] = c

        for o, name, kind in chosen:
            if kind == "loop":
                body = o.op.get_region(0).id()
                if body not in index.first_of_region:
                    continue
                first, last = ops[index.first_of_region[body]], ops[index.last_of_region[body]]
                builder.set_insertion_point_after(o.op)
                loc = builder.get_loc()
                # start: at the top of the body, before records placed there for its first op
                builder.set_insertion_point_to_start(first.block)
                builder.set_loc(loc)
                c = emit("start", name)
                if first.block_id not in head:
                    head[first.block_id] = c
                before(last, loc, "end", name)  # before the terminator (scf.yield)
                continue
            builder.set_insertion_point_after(o.op)
            loc = builder.get_loc()
            before(o, loc, "start", name)
            builder.set_insertion_point_after(after.get(o.idx, o.op))
            builder.set_loc(loc)
            after[o.idx] = emit("end", name)
        return count


def _barrier_operand(op):
    """The mbarrier operand of a TMA copy (the ``memdesc<...xi64...>`` one), by type, not position."""
    for k in range(op.get_num_operands()):
        v = op.get_operand(k)
        t = str(v.get_type())
        if t.startswith("!ttg.memdesc<") and "xi64" in t:
            return v
    return None


def _text_attrs(text: str) -> dict:
    """Attributes the bindings do not expose, read with the TTGIR tokenizer, in program order."""
    pendings: list[int] = []
    for lineno, line in enumerate(text.splitlines(), 1):
        if "ttng.warp_group_dot_wait" not in line:
            continue
        toks = tokenize_line(line, lineno)
        words = [t.text for t in toks]
        p = 0
        for k, w in enumerate(words[:-2]):
            if w == "pendings" and words[k + 1] == "=":
                p = int(words[k + 2])
        pendings.append(p)
    return {"pendings": pendings}


# -- warp roles ------------------------------------------------------------------------------------------

def warp_roles(text: str) -> list[str]:
    """One role string per warp of a warp-specialized kernel, from its final TTGIR text; [] otherwise.

    Warps ``0 .. num-warps-1`` run the ``default`` region; partitions get consecutive warps after
    them, larger partitions first (Triton's AllocateWarpGroups order, stable for equal sizes; checked
    against the partition table in the PTX by tests/unit/test_auto_insert.py).  The role says what a
    region does: ``producer, TMA`` (issues TMA loads, no MMA), ``consumer wgN, MMA`` (runs wgmma or
    dot) or ``other``, plus the partition's ``requestedRegisters`` when set.
    """
    base, regs, ws_depth, depth = 4, [], None, 0
    regions: list[dict] = []
    for lineno, line in enumerate(text.splitlines(), 1):
        s = line.strip()
        if not s or s.startswith("#"):
            continue
        toks = tokenize_line(line, lineno)
        words = [t.text for t in toks]
        if s.startswith("module") and "ttg.num-warps" in words:
            base = _attr_int(toks, "ttg.num-warps") or base
        if ws_depth is None and "ttg.warp_specialize" in words and not regions:
            ws_depth, regs = depth, _attr_array(toks, "requestedRegisters")
        elif ws_depth is not None and depth == ws_depth and words:
            head = words[1] if words[0] == "}" and len(words) > 1 else words[0]
            if head == "default":
                regions.append({"name": "default", "warps": base, "ops": set()})
            elif head.startswith("partition"):
                nw = next((int(words[k + 2]) for k in range(len(words) - 2)
                           if words[k] == "num_warps" and words[k + 1] == "("), 4)
                regions.append({"name": head, "warps": nw, "ops": set()})
            elif words[0] == "}":
                ws_depth = -1  # the op is closed; later ops are outside it
        elif ws_depth is not None and depth > ws_depth >= 0 and regions:
            regions[-1]["ops"].update(w for w in words if w in _ROLE_OPS)
        depth += sum((t.text == "{") - (t.text == "}") for t in toks if t.kind == "punct")
    if not regions:
        return []
    parts = regions[1:]
    for k, p in enumerate(parts):
        p["regs"] = regs[k] if k < len(regs) else None
    start = regions[0]["warps"]
    regions[0].update(start=0, regs=None)
    for k in sorted(range(len(parts)), key=lambda k: -parts[k]["warps"]):  # stable for equal sizes
        parts[k]["start"] = start
        start += parts[k]["warps"]
    roles = ["unused"] * start
    consumer = 0
    for r in sorted(regions, key=lambda r: r["start"]):
        if r["ops"] & {"ttng.warp_group_dot", "tt.dot"}:
            kind = f"consumer wg{consumer}, MMA"
            consumer += 1
        elif "ttng.async_tma_copy_global_to_local" in r["ops"]:
            kind = "producer, TMA"
        elif r["ops"] & {"ttg.async_copy_global_to_local", "tt.load"}:
            kind = "producer"
        else:
            kind = "other"
        if r["regs"]:
            kind += f", {r['regs']} regs"
        roles[r["start"]:r["start"] + r["warps"]] = [f"{r['name']} ({kind})"] * r["warps"]
    return roles


_ROLE_OPS = {"ttng.async_tma_copy_global_to_local", "ttng.warp_group_dot", "tt.dot",
             "ttg.async_copy_global_to_local", "tt.load"}


def _attr_int(toks, name: str) -> int | None:
    for k, t in enumerate(toks[:-2]):
        if t.text == name and toks[k + 1].text == "=":
            return int(toks[k + 2].text)
    return None


def _attr_array(toks, name: str) -> list[int]:
    for k, t in enumerate(toks):
        if t.text == name and k + 3 < len(toks) and toks[k + 1].text == "=" and toks[k + 2].text == "array":
            vals = []
            for u in toks[k + 3:]:
                if u.text == ">":
                    break
                if u.kind == "word" and u.text.lstrip("-").isdigit():
                    vals.append(int(u.text))
            return vals
    return []
