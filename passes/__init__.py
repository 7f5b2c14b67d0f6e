"""kperf's passes and their registry: ``get_pass("kperf-lower-ptx{num-warps=8,clock=clock64}")``.

===================  =============================  =============================================
pass                 apply() takes                  what it does
===================  =============================  =============================================
kperf-auto-insert    Triton's MLIR module (final    puts record carriers around chosen ops
                     TTGIR), changed in place
kperf-materialize    final TTGIR text               textual records -> carriers, scope ids, table
kperf-lower-ptx      PTX text                       carriers -> clock reads and stores
===================  =============================  =============================================

The protocol is in :mod:`kperf.passes.pass_base`, the pipeline syntax in :mod:`kperf.passes.pipeline`.
Each name maps to a getter that imports its module only when the pass is asked for (xDSL's
``get_all_passes``), so ``import kperf.passes`` stays cheap.
"""

from __future__ import annotations

from collections.abc import Callable

from kperf.dialect.errors import KperfError

from .pass_base import KperfPass
from .pipeline import parse_pipeline_spec


def _auto_insert() -> type[KperfPass]:
    from .auto_insert import AutoInsertPass
    return AutoInsertPass


def _materialize() -> type[KperfPass]:
    from .materialize import MaterializePass
    return MaterializePass


def _lower_ptx() -> type[KperfPass]:
    from .lower_ptx import LowerPtxPass
    return LowerPtxPass


def get_all_passes() -> dict[str, Callable[[], type[KperfPass]]]:
    """Every pass name with a getter of its class."""
    return {"kperf-auto-insert": _auto_insert, "kperf-materialize": _materialize,
            "kperf-lower-ptx": _lower_ptx}


def parse_pipeline(spec: str) -> list[KperfPass]:
    """The passes of ``name{key=value,...},name...``, options parsed and checked."""
    registry = get_all_passes()
    passes = []
    for p in parse_pipeline_spec(spec):
        if p.name not in registry:
            raise KperfError(f"unknown pass {p.name!r}", fix=f"use one of {', '.join(registry)}")
        passes.append(registry[p.name]().from_options(p.options))
    return passes


def get_pass(spec: str) -> KperfPass:
    """The one pass ``name{key=value,...}`` names."""
    passes = parse_pipeline(spec)
    if len(passes) != 1:
        raise KperfError(f"expected one pass, got {len(passes)} in {spec!r}", fix="use parse_pipeline")
    return passes[0]


def run_text_pipeline(spec: str, text: str, path: str = "<input>") -> str:
    """``text`` through every pass of ``spec`` in turn (``kperf opt``)."""
    for p in parse_pipeline(spec):
        text = p.run_text(text, path)
    return text


__all__ = ["KperfPass", "get_all_passes", "get_pass", "parse_pipeline", "run_text_pipeline"]
