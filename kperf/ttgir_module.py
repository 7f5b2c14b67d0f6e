"""TTGIR text back into a Triton MLIR module, and an MLIR context to parse it in.

kperf's TTGIR passes work on text (``kperf-materialize``) while Triton's stages hand modules along, so
text has to become a module again: after materialization in the stage hook, for an override file, and
in ``kperf insert``.  Triton's Python bindings parse MLIR only from a file
(``triton_compat.parse_mlir_file``), hence the temporary file.  MLIR prints its diagnostic to the
process's stderr naming that temporary file; ``parse`` captures it and raises a ``KperfError`` that names
``file:line`` of the text's own file instead (kperf's rewrites keep line numbers), with the line and
MLIR's message.  A verifier error names the op's ``loc(...)`` rather than a line, so a failed parse is
repeated once with every location turned into its own line's (``locations_to_lines``) to find the line.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import tempfile

from kperf import triton_compat
from kperf.dialect.errors import KperfError
from kperf.dialect.ttgir_text import locations_to_lines

LINE_LOC = "kperf-line"  # the file name of the line locations a failed parse is repeated with


def parse(text: str, context, path: str | None = None, fix: str | None = None) -> object:
    """The module ``text`` describes, parsed in ``context`` (a module's ``.context``, ``sm90_context()``).

    ``path`` is the file ``text`` came from, line for line (for the error); ``fix`` the error's advice.
    A parse or verifier error is a ``KperfError`` naming ``path:line``.
    """
    mod, diagnostic, tmp = _parse_file(text, context)
    if mod is None:
        if _error_at(diagnostic, tmp) is None:  # a verifier error names the op's loc(...), not a line
            _, located, _ = _parse_file(locations_to_lines(text, LINE_LOC), context)
            if _error_at(located, LINE_LOC) is not None:
                diagnostic, tmp = located, LINE_LOC
        raise _parse_error(diagnostic, tmp, text, path or "<ttgir>", fix)
    if diagnostic:
        sys.stderr.write(diagnostic)  # what MLIR said besides: not ours to swallow
    return mod


def _parse_file(text: str, context) -> tuple[object | None, str, str]:
    """``(module or None, MLIR's diagnostic output, temporary file name)`` of parsing ``text``."""
    fd, tmp = tempfile.mkstemp(suffix=".ttgir", prefix="kperf_")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        with _stderr_captured() as captured:
            try:
                mod = triton_compat.parse_mlir_file(tmp, context)
            except RuntimeError:
                mod = None
        return mod, captured[0], tmp
    finally:
        os.unlink(tmp)


def _error_at(diagnostic: str, tmp: str) -> re.Match | None:
    """The first ``error`` of ``diagnostic`` that names a line of the file ``tmp``."""
    return re.search(r'(?:loc\()?"?' + re.escape(tmp) + r'"?:(\d+):(\d+)\)?:\s*error:\s*(.*)', diagnostic)


@contextlib.contextmanager
def _stderr_captured():
    """Collect what is written to file descriptor 2 (MLIR's diagnostics) into ``captured[0]``."""
    captured = [""]
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 2)
        try:
            yield captured
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            captured[0] = sink.read().decode(errors="replace")


def _parse_error(diagnostic: str, tmp: str, text: str, path: str, fix: str | None) -> KperfError:
    """MLIR's parse diagnostic, retold for ``path``: ``file:line``, the line, MLIR's message."""
    found = _error_at(diagnostic, tmp)
    retold = diagnostic.replace(tmp, path).strip()
    if found is None:
        return KperfError(f"does not parse as TTGIR: {retold or 'MLIR gave no diagnostic'}", where=path,
                          fix=fix)
    lineno, col, message = int(found.group(1)), int(found.group(2)), found.group(3).strip()
    lines = text.splitlines()
    shown = lines[lineno - 1].strip() if 0 < lineno <= len(lines) else ""
    more = [ln for ln in retold.splitlines() if "error:" not in ln and ln.strip()]
    return KperfError(f"does not parse as TTGIR (column {col}): {message}\n  the line: {shown[:200]}"
                      + "".join(f"\n  {ln.strip()}" for ln in more[:6]), where=f"{path}:{lineno}", fix=fix)


def sm90_context():
    """A context with Triton's and the NVIDIA backend's dialects loaded (TTGIR read outside a compile)."""
    return triton_compat.sm90_context()
