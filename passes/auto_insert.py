"""``kperf-auto-insert``: put records around chosen ops of the final TTGIR, in process.

Works on the MLIR module through Triton's bundled Python bindings (the methods it calls are listed in
``kperf.triton_compat.MLIR_BINDINGS``; the caller hands in the module's builder and the release's IR
facts, so this layer needs no Triton import of its own): ``module.walk`` finds the ops by name, blocks,
regions and value ids give the structure (which ``tt.func``, which ``ttg.warp_specialize`` region, which
barrier a TMA copy signals), and the builder inserts the carriers (``tt.elementwise_inline_asm``, see
:mod:`kperf.dialect.record`) right before and after each op, inside ``default`` and ``partitionN``
regions alike.  What the bindings do not expose (integer attributes such as ``pendings``,
``num_warps(N)`` of a partition, ``requestedRegisters``) is read from the printed module with kperf's
TTGIR tokenizer (:mod:`kperf.dialect.ttgir_text`).

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
from kperf.dialect.selectors import SELECTORS, TMA_WAITS, Selector, expand, parse_selectors
from kperf.dialect.ttgir_text import loc_file_line, tokenize_line

from .module_index import IndexedOp, ModuleIndex
from .pass_base import KperfPass
from .triton_ir import IrFacts

TMA_COPY = "ttng.async_tma_copy_global_to_local"


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


Chosen = tuple[IndexedOp, str, str]  # (op, scope name, selector kind)


@dataclasses.dataclass(frozen=True)
class AutoInsertPass(KperfPass):
    """Triton's MLIR module (final TTGIR) in, changed in place; ``AutoInsertResult`` out.

    Inserts ``kperf.record`` carriers around the ops chosen by ``selectors`` (see the module
    docstring): ``kperf-auto-insert{selectors=mma+tma}``.  ``skip_regions``: WS regions left without
    records (``granularity="role"``: a second consumer warpgroup, whose warps record nothing, then
    runs no record instructions either); a flow left without its issue or completion is dropped.
    """

    selectors: tuple[str, ...] = ()
    skip_regions: tuple[str, ...] = ()
    name = "kperf-auto-insert"
    INPUT = "mlir"

    def __post_init__(self) -> None:  # unknown selectors fail here, not at the first compile
        object.__setattr__(self, "selectors", parse_selectors(self.selectors))

    def apply(self, module, builder, ir: IrFacts, path: str = "<ttgir>") -> AutoInsertResult:
        """Insert into ``module``; ``builder`` builds ops in its context, ``ir`` is the release's IR facts.

        Both come from ``kperf.triton_compat`` (``mlir_builder(module.context)``, ``IR``).
        """
        wanted = expand(self.selectors)
        index = ModuleIndex(module, builder, ir)
        names = _ScopeNames(index, path)
        chosen, flows = _choose(index, names, wanted, _pendings(module.str()), set(self.skip_regions))
        _add_wgmma_flows(chosen, flows)
        flows = {k: f for k, f in flows.items() if f["issue"] and f["complete"]}
        n = _insert(index, builder, chosen)
        sites = [AutoSite(name, o.name, o.ws_region, names.source_line(o)) for o, name, _ in chosen]
        return AutoInsertResult(sites, list(flows.values()), n)


def _file_line(loc: str) -> str | None:
    try:
        return loc_file_line(loc)
    except KperfError:
        return None


class _ScopeNames:
    """Where an op comes from (``attention.py:52``), and the names of TMA copies.

    Ops that Triton generated (their location is the kernel's own line) borrow the nearest source line
    in their block.  Copies from one source line that signal different barriers get ``[k]`` suffixes.
    """

    def __init__(self, index: ModuleIndex, path: str):
        self.index, self.path = index, path
        self.func_loc = {o.idx: _file_line(o.loc) for o in index.ops if o.name == "tt.func"}
        self.tma_roots: dict[int, list[IndexedOp]] = {}  # barrier allocation -> the copies signalling it
        for o in index.ops:
            if o.name == TMA_COPY:
                bar = _barrier_operand(o.op)
                if bar is not None:
                    self.tma_roots.setdefault(index.root_of(bar), []).append(o)
        self.copy_name = self._copy_names()

    def source_line(self, o: IndexedOp) -> str:
        ops = self.index.ops
        own = _file_line(o.loc)
        generic = o.func is not None and own == self.func_loc.get(o.func)
        if own and not generic:
            return own
        p = o.prev  # Triton-generated op: borrow the nearest earlier source line in the block
        while p is not None:
            got = _file_line(ops[p].loc)
            if got and got != self.func_loc.get(o.func):
                return got
            p = ops[p].prev
        return own or self.path

    def _copy_names(self) -> dict[int, str]:
        by_base: dict[str, list[int]] = {}  # source line -> the barriers its copies signal
        for root, copies in self.tma_roots.items():
            for c in copies:
                roots = by_base.setdefault(self.source_line(c), [])
                if root not in roots:
                    roots.append(root)
        names = {}
        for root, copies in self.tma_roots.items():
            for c in copies:
                base = self.source_line(c)
                k = by_base[base].index(root)
                names[c.idx] = base if len(by_base[base]) == 1 else f"{base} [{k}]"
        return names


def _choose(index: ModuleIndex, names: _ScopeNames, wanted: set[str], pendings: list[int],
            skip: set[str]) -> tuple[list[Chosen], dict[tuple, dict]]:
    """The selected ops with their scope names, and the async flows between them (none in ``skip``'s
    WS regions)."""
    chosen: list[Chosen] = []
    flows: dict[tuple, dict] = {}
    waits = iter(pendings)
    for o in index.ops:
        sel = SELECTORS.get(o.name)
        pending = next(waits, 0) if o.name == "ttng.warp_group_dot_wait" else 0
        if sel is None or (o.ws_region in skip and o.name != "tt.func"):
            continue
        take, name = _scope_name(o, sel, names, wanted, flows, pending)
        if take and o.name == "tt.func":
            take, name = _is_kernel(o.op), "kernel"  # the kernel only: other functions see no buffer
        elif take:
            _check_in_kernel(o, index, names)
        if take:
            chosen.append((o, name, sel.kind))
    return chosen, flows


def _scope_name(o: IndexedOp, sel: Selector, names: _ScopeNames, wanted: set[str], flows: dict,
                pending: int) -> tuple[bool, str]:
    """Whether ``o`` gets records, and its scope name; a barrier wait of a TMA copy adds its flow."""
    take = o.name in wanted
    line = names.source_line(o)
    if o.name == "ttng.wait_barrier":
        copies = names.tma_roots.get(names.index.root_of(o.op.get_operand(0)), [])
        if copies and (take or TMA_WAITS in wanted):
            name = f"tma.wait {names.copy_name[copies[0].idx]}"
            if TMA_COPY in wanted:
                for c in copies:
                    issue = f"tma.load {names.copy_name[c.idx]}"
                    f = flows.setdefault(("tma", issue), {"kind": "tma", "issue": [issue], "complete": []})
                    if name not in f["complete"]:
                        f["complete"].append(name)
            return True, name
    elif o.name == TMA_COPY and o.idx in names.copy_name:
        return take, f"{sel.short} {names.copy_name[o.idx]}"
    elif o.name == "ttng.warp_group_dot" and take and o.op.get_bool_attr("isAsync"):
        return take, f"wgmma.issue {line}"
    elif o.name == "ttng.warp_group_dot_wait":
        return take, f"wgmma.wait({pending}) {line}"
    return take, f"{sel.short} {line}"


def _is_kernel(fn) -> bool:
    return fn.get_str_attr("sym_visibility") != "private" and not fn.get_bool_attr("noinline")


def _check_in_kernel(o: IndexedOp, index: ModuleIndex, names: _ScopeNames) -> None:
    """Records must land in the kernel function: a noinline or private function has no profile buffer."""
    if o.func is None:
        raise KperfError(f"cannot place a record around {o.name}: it is outside any kernel function",
                         where=names.source_line(o), fix="select ops inside the kernel body")
    fn = index.ops[o.func].op
    if fn.get_str_attr("sym_visibility") == "private" or fn.get_bool_attr("noinline"):
        fname = fn.get_str_attr("sym_name")
        raise KperfError(
            f"cannot place a record around {o.name} in function @{fname}: it is not the kernel "
            f"({'noinline' if fn.get_bool_attr('noinline') else 'private'} function, compiled "
            "to a PTX .func that cannot see the profile buffer)",
            where=names.source_line(o),
            fix=f"drop noinline=True from that function, or narrow the selectors (--kernels / auto=) so "
                f"they do not match ops in @{fname}")


def _add_wgmma_flows(chosen: list[Chosen], flows: dict) -> None:
    issues = [name for o, name, _ in chosen if name.startswith("wgmma.issue")]
    waits = [name for o, name, _ in chosen if o.name == "ttng.warp_group_dot_wait"]
    if issues and waits:
        pend = {w: int(w.split("(", 1)[1].split(")", 1)[0]) for w in waits}
        flows[("wgmma",)] = {"kind": "wgmma", "issue": sorted(set(issues)), "complete": sorted(set(waits)),
                             "pendings": pend}


def _insert(index: ModuleIndex, builder, chosen: list[Chosen]) -> int:
    """Build the carriers: a start right before each op and an end right after (loops: their body)."""
    i32 = builder.get_int32_ty()
    after: dict[int, object] = {}  # op idx -> the last carrier placed right after it
    head: dict[int, object] = {}  # block id -> the last carrier placed at its start
    ops = index.ops
    count = 0

    def emit(kind: str, name: str):
        nonlocal count
        count += 1
        return builder.create_inline_asm(*RecordOp(kind, name).carrier_builder_args(i32)).get_operation()

    def before(o: IndexedOp, loc, kind: str, name: str):
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
        builder.set_insertion_point_after(o.op)
        loc = builder.get_loc()
        if kind == "loop":
            body = o.op.get_region(0).id()
            if body not in index.first_of_region:
                continue
            first, last = ops[index.first_of_region[body]], ops[index.last_of_region[body]]
            # start: at the top of the body, before records placed there for its first op
            builder.set_insertion_point_to_start(first.block)
            builder.set_loc(loc)
            c = emit("start", name)
            if first.block_id not in head:
                head[first.block_id] = c
            before(last, loc, "end", name)  # before the terminator (scf.yield)
            continue
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


def _pendings(text: str) -> list[int]:
    """The ``pendings`` of every ``ttng.warp_group_dot_wait`` in program order (the bindings hide it)."""
    pendings: list[int] = []
    for lineno, line in enumerate(text.splitlines(), 1):
        if "ttng.warp_group_dot_wait" not in line:
            continue
        words = [t.text for t in tokenize_line(line, lineno)]
        p = 0
        for k, w in enumerate(words[:-2]):
            if w == "pendings" and words[k + 1] == "=":
                p = int(words[k + 2])
        pendings.append(p)
    return pendings
