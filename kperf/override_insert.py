"""``kperf insert``: records around chosen ops of the TTGIR files in an override folder.

Each file is parsed (records already in it become carriers first), ``kperf-auto-insert`` places the
records, and the result is written back with every record as a readable ``kperf.record start|end
"name"`` line, so the files stay editable by hand and ``kperf run --override`` reads them like any
other.  A file that is empty, not UTF-8 or not TTGIR is an error naming it (and ``file:line`` where MLIR
names one), and no file is written unless every file was read and took its records.
"""

from __future__ import annotations

import os
import pathlib

from kperf import triton_compat, ttgir_module
from kperf.dialect.errors import KperfError
from kperf.dialect.selectors import parse_selectors
from kperf.dialect.ttgir_text import scan
from kperf.override_folder import kernel_files, read_ttgir
from kperf.passes.auto_insert import AutoInsertPass
from kperf.passes.materialize import MaterializePass
from kperf.tracing import atomic


def insert(folder: str | os.PathLike, selectors: str, *, kernels: str | None = None,
           out: str | os.PathLike | None = None) -> list[tuple[pathlib.Path, int]]:
    """Insert records around the ops ``selectors`` pick in every matching file of ``folder``.

    Writes in place, or into ``out`` (same layout).  Inserted records are written as readable
    ``kperf.record start|end "name"`` lines.  Returns ``(file, records inserted)`` pairs.
    """
    tokens = parse_selectors(selectors)
    if not tokens:
        raise KperfError("no selectors given", fix="pass --auto mma,tma (or op names)")
    files = kernel_files(folder, kernels)
    if not files:
        raise KperfError(f"no TTGIR files{' for kernels matching ' + repr(kernels) if kernels else ''} "
                         f"under {os.fspath(folder)!r}",
                         fix="dump them first: kperf dump script.py --out DIR")
    new_texts = []
    for f in files:
        # records already in the file become carriers, which the insertion pass sees as ops
        text = MaterializePass().apply(read_ttgir(f), path=str(f)).text
        mod = ttgir_module.parse(text, ttgir_module.sm90_context(), path=str(f),
                                 fix="fix that line, or dump the kernel again with `kperf dump`")
        builder = triton_compat.mlir_builder(mod.context)
        result = AutoInsertPass(tokens).apply(mod, builder, triton_compat.IR, path=f.name)
        new_texts.append((f, textual_records(mod.str(), str(f)), result.num_records))
    done = []
    for f, new, n in new_texts:  # every file was read and instrumented: write them
        dest = f if out is None else pathlib.Path(out, f.parent.name, f.name)
        atomic.write_text(dest, new)  # a failed write leaves the user's file as it was
        done.append((dest, n))
    return done


def textual_records(text: str, path: str = "<ttgir>") -> str:
    """Rewrite carriers into readable ``kperf.record`` lines (what ``kperf.passes.materialize`` reads)."""
    mod = scan(text, path)
    lines = list(mod.lines)
    for site in mod.sites:
        if site.textual:
            continue
        line = lines[site.lineno - 1]
        indent = line[:len(line) - len(line.lstrip())]
        loc_at = line.rfind(" loc(")
        loc = line[loc_at:] if loc_at >= 0 else ""
        lines[site.lineno - 1] = f"{indent}{site.op.print()}{loc}"
    return "\n".join(lines) + "\n"
