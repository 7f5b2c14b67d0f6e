"""Kernel modules imported from generated source text: the Proton twins of kperf's benchmark kernels.

To compare kperf and Proton on one kernel, the benchmarks write the same source with Proton's scope
call (``pl.scope``) in place of ``kperf.scope`` and import it as a module of its own.  Triton's JIT
reads a kernel's source from its file, so the text goes to a real file, not through ``exec``.
"""

from __future__ import annotations

import importlib.util
import pathlib
import sys
import tempfile


def import_source(text: str, stem: str, folder: str | pathlib.Path | None = None):
    """Write ``text`` to ``folder/<stem>.py`` (default: a new temporary folder); import it as ``stem``."""
    folder = pathlib.Path(folder if folder is not None else tempfile.mkdtemp(prefix="kperf_bench_"))
    path = folder / f"{stem}.py"
    path.write_text(text)
    spec = importlib.util.spec_from_file_location(stem, path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[stem] = mod  # code in it may look its module up by name (dataclasses do)
    spec.loader.exec_module(mod)
    return mod


def twin_of(module, replace: dict[str, str], stem: str):
    """A copy of ``module``'s source with each ``replace`` key swapped for its value, imported as ``stem``."""
    text = pathlib.Path(module.__file__).read_text()
    for a, b in replace.items():
        text = text.replace(a, b)
    return import_source(text, stem)
