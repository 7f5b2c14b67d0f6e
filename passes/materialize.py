"""``kperf-materialize``: on the final TTGIR, turn records into numbered carriers and build the scope table.

- textual ``kperf.record`` / ``proton.record`` lines (override files, older Proton forms included) become
  carrier ops, keeping their ``loc(...)``;
- every record is checked (balanced per block, not in a ``noinline`` function);
- scopes are numbered and every carrier gets ``id=N`` so the PTX lowering needs no names.

TTGIR text in, text out (plus the scope table): the output parses with Triton's MLIR parser.
"""

from __future__ import annotations

import dataclasses

from kperf.dialect.errors import KperfError
from kperf.dialect.mlir_string import encode_mlir_string
from kperf.dialect.record import RecordOp
from kperf.dialect.scope_table import ScopeTable, build_scope_table
from kperf.dialect.ttgir_text import ScannedModule, scan, scanned_record_bound

from .pass_base import KperfPass


@dataclasses.dataclass(frozen=True)
class MaterializeResult:
    text: str
    table: ScopeTable
    num_records: int  # static count of record sites
    record_bound: int | None = None  # records one warp can write at most, when no site is in a loop


@dataclasses.dataclass(frozen=True)
class MaterializePass(KperfPass):
    """Final TTGIR text in, ``MaterializeResult`` out (text with carriers, scope table).  No options."""

    name = "kperf-materialize"
    INPUT = "ttgir"

    def apply(self, module: str, path: str = "<ttgir>") -> MaterializeResult:
        mod = scan(module, path)
        _check_functions(mod)
        by_block: dict[tuple, list[RecordOp]] = {}
        for site in mod.sites:  # line order, so blocks come in order of their first record
            by_block.setdefault(site.block, []).append(site.op)
        table = build_scope_table(list(by_block.values()))
        lines = list(mod.lines)
        for n, site in enumerate(mod.sites):
            op = site.op.with_id(table.id_of(site.op.name))
            line = lines[site.lineno - 1]
            if site.textual:
                indent = line[:len(line) - len(line.lstrip())]
                loc_suffix = " " + line[site.loc_start:] if site.loc_start is not None else ""
                lines[site.lineno - 1] = f"{indent}{op.carrier_ttgir(f'%kperf_rec_{n}')}{loc_suffix}"
            else:
                tok = site.string_token
                asm = encode_mlir_string(op.carrier_asm())
                lines[site.lineno - 1] = line[:tok.start] + asm + line[tok.end:]
        return MaterializeResult("\n".join(lines) + "\n", table, len(mod.sites), scanned_record_bound(mod))

    def run_text(self, text: str, path: str = "<ttgir>") -> str:
        return self.apply(text, path).text


def _check_functions(mod: ScannedModule) -> None:
    for site in mod.sites:
        if not site.func_is_kernel:
            raise KperfError(
                f'record of scope "{site.op.name}" is inside the non-kernel function @{site.func}'
                + (" (noinline)" if site.func_noinline else ""),
                where=site.op.loc,
                fix="records must end up in the kernel body: drop noinline=True from that function, or "
                    "move the kperf.scope into the calling kernel")


__all__ = ["MaterializePass", "MaterializeResult"]
