"""The vocabulary of automatic insertion: which TTGIR ops ``auto=`` may select, and its presets.

``ProfileConfig(auto=...)`` canonicalises its selectors here; ``kperf.passes.auto_insert`` finds the
selected ops in the final TTGIR.  Selectors (comma separated): op names (``ttng.warp_group_dot``,
``ttng.wait_barrier``, ``scf.for`` for loop bodies, ... see ``SELECTORS``) or presets (``mma``, ``tma``,
``waits``, ``loops``, ``kernel``: the kernel's whole body, so every kernel gets at least one scope).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable

from .errors import KperfError


@dataclasses.dataclass(frozen=True)
class Selector:
    op: str  # MLIR op name
    short: str  # scope-name prefix
    kind: str  # "sync" (time the op), "issue" (async issue), "wait" (completion point), "loop" (body)
    doc: str


SELECTORS = {s.op: s for s in (
    Selector("ttng.warp_group_dot", "wgmma", "issue", "Hopper wgmma (issue, when async)"),
    Selector("ttng.warp_group_dot_wait", "wgmma.wait", "wait", "wait for async wgmma groups"),
    Selector("tt.dot", "dot", "sync", "mma.sync / FMA dot (pre-Hopper or unpipelined)"),
    Selector("ttng.async_tma_copy_global_to_local", "tma.load", "issue", "TMA load issue"),
    Selector("ttng.async_tma_copy_local_to_global", "tma.store", "issue", "TMA store issue"),
    Selector("ttng.async_tma_store_wait", "tma.store.wait", "wait", "wait for TMA stores"),
    Selector("ttng.wait_barrier", "mbar.wait", "wait", "mbarrier wait (all of them)"),
    Selector("ttng.arrive_barrier", "mbar.arrive", "sync", "mbarrier arrive"),
    Selector("ttg.async_copy_global_to_local", "cp.async", "issue", "cp.async issue"),
    Selector("ttg.async_wait", "cp.async.wait", "wait", "wait for cp.async groups"),
    Selector("tt.load", "load", "sync", "global load"),
    Selector("tt.store", "store", "sync", "global store"),
    Selector("tt.descriptor_load", "desc.load", "sync", "tensor-descriptor load (not lowered to TMA copy)"),
    Selector("scf.for", "loop", "loop", "the body of every scf.for loop"),
    Selector("tt.func", "kernel", "loop", "the whole body of the kernel function (one scope per kernel)"),
)}

#: ``tma`` adds the barrier waits that consume a TMA copy (not every ``ttng.wait_barrier``).
TMA_WAITS = "tma-waits"
PRESETS = {
    "mma": ("ttng.warp_group_dot", "ttng.warp_group_dot_wait", "tt.dot"),
    "tma": ("ttng.async_tma_copy_global_to_local", TMA_WAITS, "ttng.async_tma_copy_local_to_global",
            "ttng.async_tma_store_wait"),
    "waits": ("ttng.wait_barrier", "ttng.warp_group_dot_wait", "ttg.async_wait", "ttng.async_tma_store_wait"),
    "loops": ("scf.for",),
    "kernel": ("tt.func",),
}


def known_selectors() -> str:
    return ", ".join([*PRESETS, *SELECTORS])


def parse_selectors(spec: str | Iterable[str] | None) -> tuple[str, ...]:
    """The canonical, sorted tokens of a selector spec (``"mma,tma"`` or a list); unknown ones raise."""
    if not spec:
        return ()
    items = spec.replace("+", ",").split(",") if isinstance(spec, str) else list(spec)
    out = set()
    for raw in items:
        tok = str(raw).strip()
        if not tok:
            continue
        if tok not in PRESETS and tok not in SELECTORS:
            raise KperfError(f"unknown auto-insertion selector {tok!r}", fix=f"use presets or op names: "
                             f"{known_selectors()}")
        out.add(tok)
    return tuple(sorted(out))


def expand(tokens: Iterable[str]) -> set[str]:
    ops: set[str] = set()
    for t in tokens:
        ops.update(PRESETS.get(t, (t,)))
    return ops
