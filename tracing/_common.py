"""Helpers shared by the tracing modules: scope tables, problem-message formatting, trace files
(written through :func:`kperf.tracing.atomic.atomic_file`).

The flow dtype lives with the flows (:mod:`kperf.tracing.flows`).
"""

from __future__ import annotations

import contextlib
import gzip
import io
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any, BinaryIO

import numpy as np

from .atomic import atomic_file

#: A scope table as the decoder accepts it: ``None`` (unknown), an ``int`` (ids ``0..n-1``), a
#: sequence of names (index = id), a mapping ``id -> name``, a ``ScopeTable``-like object with a
#: ``.scopes`` list of objects having ``.id`` and ``.name``, or its JSON form (a list of dicts with
#: ``"id"`` and ``"name"``, as found under ``metadata["kperf"]["scopes"]``).
ScopesLike = Any


def scope_names(scopes: ScopesLike) -> dict[int, str] | None:
    """``{id: name}`` for a scope table in any accepted form; ``None`` when ``scopes`` is ``None``.

    An ``int`` table has no names; its ids map to ``"scope <id>"``.
    """
    if scopes is None:
        return None
    if isinstance(scopes, (int, np.integer)):
        return {i: f"scope {i}" for i in range(int(scopes))}
    if hasattr(scopes, "scopes"):  # dialect.scope_table.ScopeTable, duck-typed
        return {int(s.id): str(s.name) for s in scopes.scopes}
    if isinstance(scopes, Mapping):
        return {int(k): str(v) for k, v in scopes.items()}
    if isinstance(scopes, (str, bytes)):
        raise TypeError("a scope table is a sequence of names, not one string")
    if isinstance(scopes, Iterable):
        out: dict[int, str] = {}
        for i, item in enumerate(scopes):
            if isinstance(item, Mapping):  # JSON form of the scope table
                out[int(item["id"])] = str(item["name"])
            elif hasattr(item, "id") and hasattr(item, "name"):
                out[int(item.id)] = str(item.name)
            else:
                out[i] = str(item)
        return out
    raise TypeError(f"cannot read a scope table from {type(scopes).__name__}")


def scope_id_array(scopes: ScopesLike) -> np.ndarray | None:
    """Sorted array (int64) of the ids in a scope table, ``None`` when there is no table."""
    names = scope_names(scopes)
    if names is None:
        return None
    return np.array(sorted(names), dtype=np.int64)


def in_table(scope: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """Boolean mask: which entries of ``scope`` are ids of the table ``ids`` (sorted int64)."""
    if ids.size and ids[0] == 0 and ids[-1] == ids.size - 1:  # the usual dense table 0..n-1
        return (scope if scope.dtype.kind == "u" else scope.astype(np.int64, copy=False)) < ids.size
    return np.isin(scope, ids)


def fmt_ids(values: Sequence[Any] | np.ndarray, limit: int = 8, total: int | None = None) -> str:
    """``"3, 7, 9"`` or ``"3, 7, 9, ... (12 in all)"``; ``total`` overrides ``len(values)``."""
    values = list(values[:limit].tolist() if isinstance(values, np.ndarray) else values[:limit])
    total = len(values) if total is None else total
    head = ", ".join(str(v) for v in values[:limit])
    if total > limit:
        head += f", ... ({total} in all)"
    return head


def plural(n: int, word: str, words: str | None = None) -> str:
    """``"1 CTA"``, ``"3 CTAs"``."""
    return f"{n} {word if n == 1 else (words or word + 's')}"


def fill_columns(out: np.ndarray, columns: dict[str, Any], chunk: int = 1 << 16) -> np.ndarray:
    """``out[name] = columns[name]`` for every column, chunk by chunk (``None`` columns are skipped).

    Writing a structured array field by field sweeps the whole array once per field; doing it per
    chunk keeps each chunk in cache across its fields, about twice as fast.  Scalars broadcast.
    """
    columns = {k: v for k, v in columns.items() if v is not None}
    n = len(out)
    for a in range(0, n, chunk):
        o = out[a : a + chunk]
        for name, col in columns.items():
            o[name] = col[a : a + chunk] if isinstance(col, np.ndarray) else col
    return out


@contextlib.contextmanager
def trace_output(path: str | os.PathLike | BinaryIO, compresslevel: int) -> Iterator[BinaryIO]:
    """A buffered binary writer for a trace file.

    For a path: written through :func:`atomic_file` (gzip when ``path`` ends in ``.gz``), so nothing
    half-written is left behind.  A file object is written to as it is.
    """
    if not isinstance(path, (str, os.PathLike)):
        yield path
        return
    p = os.fspath(path)
    with atomic_file(p) as raw:
        f: BinaryIO = (gzip.GzipFile(filename="", fileobj=raw, mode="wb", compresslevel=compresslevel,
                                     mtime=0) if p.endswith(".gz") else raw)
        buf = io.BufferedWriter(f, 1 << 22)
        try:
            yield buf
            buf.flush()
            if f is not raw:
                f.close()  # the gzip trailer
        finally:
            with contextlib.suppress(Exception):  # let go of the file without flushing into a closed one
                buf.detach()
