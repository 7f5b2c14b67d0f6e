"""What kperf's passes assume about Triton's IR that changed between Triton releases (pure data).

The passes walk Triton's final TTGIR through its bindings; the op names they look for are the same in
every supported release, but where a warp-specialized region's captured values come from is not:
Triton 3.6 makes them operands of ``ttg.warp_specialize`` itself, 3.7 and later of the
``ttg.warp_specialize.partitions`` op that holds the partition regions (the printed TTGIR looks the same
in both).  This module only states the facts, one row per release; ``kperf.triton_compat`` picks the row
of the installed Triton and hands it to the passes (this layer does not read Triton's version), and
``tests/unit/test_triton_compat.py`` checks the row against the installed Triton.
"""

from __future__ import annotations

import dataclasses

WARP_SPECIALIZE = "ttg.warp_specialize"
WS_PARTITIONS = "ttg.warp_specialize.partitions"


@dataclasses.dataclass(frozen=True)
class IrFacts:
    """Triton IR facts of one release."""

    #: The op whose operands a partition region's block arguments stand for, in order.
    ws_captures: str


BY_VERSION = {
    (3, 6): IrFacts(ws_captures=WARP_SPECIALIZE),
    (3, 7): IrFacts(ws_captures=WS_PARTITIONS),
    (3, 8): IrFacts(ws_captures=WS_PARTITIONS),
    (3, 9): IrFacts(ws_captures=WS_PARTITIONS),
}
