"""SASS from a cubin with the cuobjdump in Triton's wheel, and instruction counts for cost reports.

Disassembly and the extra ptxas run of a cost report are kept in Triton's cache (its
``FileCacheManager``: the same folder, ``TRITON_CACHE_DIR``, atomic writes) under a key of the input
bytes and the tool's identity: a kernel compiled again is served from Triton's cache, and without these
its report would still spend a second per cubin in ``cuobjdump`` (most of ``kperf.compile``'s time on a
warm cache).
"""

from __future__ import annotations

import functools
import hashlib
import os
import re
import subprocess
import tempfile

_INSTR = re.compile(r"^\s*/\*[0-9a-f]{4,}\*/\s+(?P<text>[^;]*);", re.MULTILINE)


def cuobjdump_path() -> str:
    from kperf import triton_compat
    return triton_compat.cuobjdump_path()


@functools.cache
def _tool_identity(path: str) -> str:
    """Path, size and modification time of a tool binary: a new Triton wheel's tool is a new key."""
    st = os.stat(path)
    return f"{path}:{st.st_size}:{st.st_mtime_ns}"


def _cached(kind: str, key_parts: list[bytes | str], make) -> str:
    """``make()``'s text, kept in Triton's cache under a digest of ``kind`` and ``key_parts``."""
    from kperf import triton_compat
    h = hashlib.sha256(kind.encode())
    for part in key_parts:
        h.update(part if isinstance(part, bytes) else part.encode())
        h.update(b"\0")
    manager = triton_compat.cache_manager(h.hexdigest())
    name = f"{kind}.txt"
    found = manager.get_file(name)
    if found is not None:
        with open(found) as f:
            return f.read()
    text = make()
    manager.put(text, name, binary=False)
    return text


def disassemble(cubin: bytes) -> str:
    """``cuobjdump -sass`` of a cubin (cached)."""
    tool = cuobjdump_path()
    return _cached("kperf-sass", [_tool_identity(tool), cubin], lambda: _cuobjdump(tool, cubin))


def assemble_and_disassemble(backend, ptx: str, options, arch) -> str:
    """The SASS of ``ptx`` assembled by Triton's backend (its ptxas and options) for ``arch`` (cached)."""
    from kperf import triton_compat
    tool = triton_compat.ptxas_path(int(arch))
    return _cached("kperf-ptx-sass", [_tool_identity(tool), _tool_identity(cuobjdump_path()), repr(options),
                                      str(arch), ptx],
                   lambda: _cuobjdump(cuobjdump_path(), backend.make_cubin(ptx, {}, options, arch)))


def _cuobjdump(tool: str, cubin: bytes) -> str:
    fd, path = tempfile.mkstemp(suffix=".cubin", prefix="kperf_")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(cubin)
        return subprocess.run([tool, "-sass", path], check=True, capture_output=True,
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
