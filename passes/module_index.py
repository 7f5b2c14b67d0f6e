"""An index of Triton's MLIR module (final TTGIR), built from one walk through the Python bindings.

``ModuleIndex`` lists every op in program order with what automatic insertion asks of it: its block
and region, the previous op in its block, its printed location, the enclosing ``tt.func``, the
``ttg.warp_specialize`` region it runs in, and (``root_of``) the allocation a memdesc value views.
Which op a partition's captured values are operands of differs between Triton releases: the caller
says (``kperf.passes.triton_ir.IrFacts``, the row ``kperf.triton_compat`` picked).
"""

from __future__ import annotations

import dataclasses

from .triton_ir import WARP_SPECIALIZE, WS_PARTITIONS, IrFacts

_MEMDESC_VIEWS = ("ttg.memdesc_index", "ttg.memdesc_subslice", "ttg.memdesc_reinterpret", "ttg.memdesc_trans")


@dataclasses.dataclass
class IndexedOp:
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

    def __init__(self, mod, builder, ir: IrFacts):
        self.mod = mod
        self.ir = ir
        raw: list = []
        mod.walk(raw.append)
        self.ops: list[IndexedOp] = []
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
            o = IndexedOp(i, op, op.get_name(), block, bid, rid)
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

    def _place(self, o: IndexedOp) -> None:
        rid = o.region_id
        while rid is not None and rid in self.region_owner:
            owner, r = self.region_owner[rid]
            oname = self.ops[owner].name
            if oname == WS_PARTITIONS and o.ws_region is None:
                o.ws_region = f"partition{r}"
            elif oname == WARP_SPECIALIZE and o.ws_region is None and r == 0:
                o.ws_region = "default"
            if oname == WARP_SPECIALIZE and o.ws_op is None:
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
            if vid in self.block_args:  # a partition region's capture: an operand of the WS op(s)
                rid, a = self.block_args[vid]
                holder = self.region_owner.get(rid)
                if holder and self.ops[holder[0]].name == WS_PARTITIONS:
                    on_partitions = self.ir.ws_captures == WS_PARTITIONS
                    captures = holder[0] if on_partitions else self.ops[holder[0]].ws_op
                    if captures is not None:
                        value = self.ops[captures].op.get_operand(a)
                        continue
            return vid
        return value.id()
