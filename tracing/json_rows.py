"""JSON text of many rows at once, with numpy: the Chrome writer's formatter.

Rows are assembled from parts, each an (n, width) uint8 matrix: constants (broadcast, :func:`const`),
numbers (:func:`ints`, :func:`micros`: digits computed two at a time through a lookup table), and
rows gathered from small tables (:func:`text_table`: scope names, per-thread fragments).
:func:`assemble` copies the parts side by side into a structured array of void fields, whose bytes
are the rows.  Variable-width numbers are right-aligned in their column and padded with a filler
byte: a space (JSON whitespace between tokens, written as is, :func:`rows`) where a number stands
alone, or NUL where it sits inside a string (thread names), removed by :func:`rows_compact`.

No Python loop runs over rows: only over digit pairs and parts.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import orjson

SPACE, NUL = 0x20, 0x00


def _pair_table(pad: int) -> np.ndarray:
    """uint16 lookup, two ASCII digits per entry: [0, 100) the leading pair of a number (tens
    digit blank when zero), [100, 200) an inner pair, [200, 300) a pair left of the number (blank)."""
    t = np.full((300, 2), pad, np.uint8)
    for r in range(100):
        t[r] = (pad if r < 10 else 48 + r // 10, 48 + r % 10)
        t[100 + r] = (48 + r // 10, 48 + r % 10)
    return t.view(np.uint16).ravel()


_PAIRS = {SPACE: _pair_table(SPACE), NUL: _pair_table(NUL)}
FRAC = np.array([list(f".{i:03d}".encode()) for i in range(1000)], np.uint8)  # ".ddd" for ns -> us


def const(s: bytes | str, n: int) -> np.ndarray:
    """The same bytes on each of ``n`` rows (a broadcast view, no copy)."""
    b = s.encode() if isinstance(s, str) else s
    return np.broadcast_to(np.frombuffer(b, np.uint8), (n, len(b)))


def ints(v: np.ndarray, pad: int = SPACE) -> np.ndarray:
    """Decimal digits of integers, right-aligned and padded with ``pad``: an (n, width) uint8 matrix."""
    v = np.asarray(v)
    n = len(v)
    if n == 0:
        return np.zeros((0, 1), np.uint8)
    neg = v < 0 if v.dtype.kind == "i" else None
    a = np.abs(v) if neg is not None else v
    top = int(a.max())
    dt = np.uint32 if top < 1 << 32 else np.uint64
    q = a.astype(dt)
    hundred = dt(100)
    npairs = (len(str(top)) + 1) // 2
    out = np.empty((n, npairs), np.uint16)
    table = _PAIRS[pad]
    for k in range(npairs - 1, -1, -1):  # a loop over digit pairs, not over numbers
        qa = q // hundred
        idx = q - qa * hundred
        idx += (qa > 0).astype(dt) * hundred
        if k != npairs - 1:
            idx += (q == 0).astype(dt) * dt(200)
        np.take(table, idx, out=out[:, k])
        q = qa
    out8 = out.view(np.uint8)
    if neg is not None and neg.any():
        sign = np.where(neg, ord("-"), pad).astype(np.uint8)[:, None]
        return np.concatenate([sign, out8], axis=1)
    return out8


def micros(ns: np.ndarray) -> list[np.ndarray]:
    """Parts of microseconds with 3 decimals from int64 ns: ``1234567`` -> ``1234.567``.  The trace
    axis starts at 0; anything earlier is clamped to 0."""
    ns = np.maximum(np.asarray(ns, np.int64), 0)
    whole = ns // 1000
    return [ints(whole), np.take(FRAC, ns - whole * 1000, axis=0)]


def text_table(strings: Sequence[bytes], pad: int = SPACE) -> np.ndarray:
    """(k, width) uint8 matrix of byte strings, left-aligned, padded with ``pad``."""
    width = max((len(s) for s in strings), default=0)
    t = np.full((len(strings), max(width, 1)), pad, np.uint8)
    for i, s in enumerate(strings):
        t[i, : len(s)] = np.frombuffer(s, np.uint8)
    return t


def assemble(parts: list[np.ndarray | list]) -> np.ndarray:
    """The rows made of ``parts`` side by side, as an (n, width) uint8 matrix."""
    flat: list[np.ndarray] = []
    for p in parts:
        flat.extend(p if isinstance(p, list) else [p])
    n = flat[0].shape[0]
    dt = np.dtype([(f"f{i}", f"V{p.shape[1]}") for i, p in enumerate(flat)])
    out = np.empty(n, dt)
    for i, p in enumerate(flat):
        w = p.shape[1]
        if p.strides[0] == 0:  # a broadcast constant
            out[f"f{i}"] = np.frombuffer(p[0].tobytes(), f"V{w}")[0]
        else:
            out[f"f{i}"] = np.ascontiguousarray(p).view(f"V{w}").ravel()
    return out.view(np.uint8).reshape(n, dt.itemsize)


def rows(parts: list) -> bytes:
    """Rows as bytes, spaces kept."""
    return assemble(parts).tobytes()


def rows_compact(parts: list) -> bytes:
    """Rows as bytes, NUL fillers removed."""
    m = assemble(parts)
    return m[m != NUL].tobytes()


def jstr(s: str) -> bytes:
    """A JSON string literal, quotes included."""
    return orjson.dumps(s)
