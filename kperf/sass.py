"""SASS from a cubin with the cuobjdump in Triton's wheel, and instruction counts for cost reports."""

from __future__ import annotations

import os
import re
import subprocess
import tempfile

_INSTR = re.compile(r"^\s*/\*[0-9a-f]{4,}\*/\s+(?P<text>[^;]*);", re.MULTILINE)


def cuobjdump_path() -> str:
    from triton import knobs
    return knobs.nvidia.cuobjdump.path


def disassemble(cubin: bytes) -> str:
    """``cuobjdump -sass`` of a cubin."""
    fd, path = tempfile.mkstemp(suffix=".cubin", prefix="kperf_")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(cubin)
        return subprocess.run([cuobjdump_path(), "-sass", path], check=True, capture_output=True,
                              text=True).stdout
    finally:
        os.unlink(path)


def instructions(sass: str) -> list[str]:
    """The SASS instructions (without NOPs and the final self-branch padding)."""
    out = []
    for m in _INSTR.finditer(sass):
        text = m.group("text").strip()
        if text.startswith("NOP"):
            continue
        out.append(text)
    while out and out[-1].startswith("BRA") and "`(.L_x_" in out[-1]:
        out.pop()  # the `BRA self` loop ptxas pads the end of a kernel with
        break
    return out


def count_instructions(sass: str) -> int:
    return len(instructions(sass))


def local_memory_ops(sass: str) -> int:
    """How many LDL/STL (register spills to local memory) the SASS has."""
    return sum(1 for i in instructions(sass) if re.match(r"(@!?U?P\d+\s+)?(LDL|STL)\b", i))
