"""TTGIR text back into a Triton MLIR module, and an MLIR context to parse it in.

kperf's TTGIR passes work on text (``kperf-materialize``) while Triton's stages hand modules along, so
text has to become a module again: after materialization in the stage hook, for an override file, and
in ``kperf insert``.  Triton's Python bindings parse MLIR only from a file
(``ir.parse_mlir_module(path, context)``), hence the temporary file; a parse error is MLIR's
``RuntimeError`` (its diagnostic, printed above it, names the line).
"""

from __future__ import annotations

import os
import tempfile

from triton._C.libtriton import ir


def parse(text: str, context) -> object:
    """The module ``text`` describes, parsed in ``context`` (a module's ``.context``, ``sm90_context()``)."""
    fd, path = tempfile.mkstemp(suffix=".ttgir", prefix="kperf_")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        mod = ir.parse_mlir_module(path, context)
        mod.context = context
        return mod
    finally:
        os.unlink(path)


def sm90_context():
    """A context with Triton's and the NVIDIA backend's dialects loaded (TTGIR read outside a compile)."""
    from triton.backends.compiler import GPUTarget
    from triton.backends.nvidia.compiler import CUDABackend
    ctx = ir.context()
    ir.load_dialects(ctx)
    CUDABackend(GPUTarget("cuda", 90, 32)).load_dialects(ctx)
    return ctx
