"""Writing files all at once or not at all: the one writer of every file kperf writes.

Traces (:mod:`.chrome`, :mod:`.perfetto`), CSV tables (:mod:`.tables`), saved profiles (:mod:`.saved`),
plots (:mod:`.plots`) and the summaries and dumps of the ``kperf`` package go through
:func:`atomic_file`: the data goes to a temporary file next to the target, renamed into place only
when all of it was written, so a failed write (an exception, a full disk, an interrupt) never leaves a
half-written file or damages the one it was to replace.  A failed write is a :class:`KperfError` that
names the file.
"""

from __future__ import annotations

import contextlib
import itertools
import os
from collections.abc import Iterator
from typing import IO

from kperf.dialect.errors import KperfError


def write_error(path: str | os.PathLike, err: OSError) -> KperfError:
    """The KperfError for a failed write of ``path`` (no folder, no permission, a full disk, ...)."""
    cause = err.strerror or str(err) or type(err).__name__
    return KperfError(f"cannot write {os.fspath(path)}: {cause}",
                      fix="check that the folder can be created and written to and that the disk has room")


_tmp_serial = itertools.count()


@contextlib.contextmanager
def atomic_file(path: str | os.PathLike, mode: str = "wb", **open_args) -> Iterator[IO]:
    """Write ``path`` all at once or not at all: the one writer of every file kperf writes.

    The block writes to ``<path>.tmp-<pid>-<n>`` (opened with ``mode`` and ``open_args``, e.g.
    ``newline=""``), which is renamed into place when the block completes and removed when it raises,
    so a failed or interrupted write leaves neither a partial file nor a changed old one.  Missing
    parent folders are made.  An ``OSError`` (an unwritable folder, a full disk) becomes a
    :class:`KperfError` naming ``path``.
    """
    p = os.fspath(path)
    tmp = f"{p}.tmp-{os.getpid()}-{next(_tmp_serial)}"
    try:
        os.makedirs(os.path.dirname(os.path.abspath(p)), exist_ok=True)
        f = open(tmp, mode, **open_args)
    except OSError as e:
        raise write_error(p, e) from e
    try:
        with f:
            yield f
        os.replace(tmp, p)
    except OSError as e:
        raise write_error(p, e) from e
    finally:
        if os.path.lexists(tmp):
            with contextlib.suppress(OSError):
                os.remove(tmp)


def write_text(path: str | os.PathLike, text: str) -> str:
    """Write ``text`` (UTF-8) to ``path`` atomically (:func:`atomic_file`); returns the path."""
    with atomic_file(path, "w", encoding="utf-8") as f:
        f.write(text)
    return os.fspath(path)
