"""A minimal protobuf encoder: whole columns of messages at once with numpy (:class:`Rows`), and single
messages in plain Python for the few (track descriptors, interned strings).

Only what kperf's Perfetto writer needs: varint, fixed64 and length-delimited fields.
"""

from __future__ import annotations

from typing import Any

import numpy as np

WIRE_VARINT, WIRE_FIXED64, WIRE_LEN = 0, 1, 2


# --------------------------------------------------------------------------- single values (Python)


def varint(v: int) -> bytes:
    if v < 0:
        v &= (1 << 64) - 1
    out = bytearray()
    while True:
        b = v & 0x7F
        v >>= 7
        if v:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def tag(field: int, wire: int) -> bytes:
    return varint(field << 3 | wire)


def f_varint(field: int, v: int) -> bytes:
    return tag(field, WIRE_VARINT) + varint(int(v))


def f_bytes(field: int, b: bytes | str) -> bytes:
    if isinstance(b, str):
        b = b.encode()
    return tag(field, WIRE_LEN) + varint(len(b)) + b


# --------------------------------------------------------------------------- columns (numpy)


def varint_width(v: np.ndarray) -> int:
    """Bytes of the varint of the largest value (at least 1)."""
    top = int(v.max()) if len(v) else 0
    k = 1
    while k < 10 and top >= 1 << (7 * k):
        k += 1
    return k


class Rows:
    """A column of ``n`` messages of one layout, every field the same width in every row.

    Varints are written in the width of the column's largest value (smaller values get redundant
    continuation bytes, ``0x85 0x80 0x00`` for 5: valid protobuf, which Perfetto's own protozero
    writer uses for length prefixes), so each row has the same size, nested lengths are constants
    and the rows are one ``(n, width)`` byte matrix, filled a column of bytes at a time.
    """

    def __init__(self, n: int):
        self.n = n
        self.parts: list[tuple[str, Any, int]] = []  # (kind, data, width)
        self.width = 0

    def _add(self, kind: str, data, width: int) -> Rows:
        self.parts.append((kind, data, width))
        self.width += width
        return self

    def raw(self, b: bytes) -> Rows:
        return self._add("raw", b, len(b))

    def varint(self, v: np.ndarray) -> Rows:
        v = np.asarray(v).astype(np.uint64)
        return self._add("varint", v, varint_width(v))

    def fixed64(self, v: np.ndarray) -> Rows:
        return self._add("fixed64", np.asarray(v).astype("<u8"), 8)

    def f_varint(self, field: int, v: np.ndarray) -> Rows:
        return self.raw(tag(field, WIRE_VARINT)).varint(v)

    def f_fixed64(self, field: int, v: np.ndarray) -> Rows:
        return self.raw(tag(field, WIRE_FIXED64)).fixed64(v)

    def f_const(self, field: int, v: int) -> Rows:
        return self.raw(f_varint(field, v))

    def f_message(self, field: int, sub: Rows) -> Rows:
        self.raw(tag(field, WIRE_LEN) + varint(sub.width))
        for part in sub.parts:
            self._add(*part)
        return self

    def matrix(self) -> np.ndarray:
        """The rows as an ``(n, width)`` uint8 matrix."""
        m = np.empty((self.n, self.width), np.uint8)
        o = 0
        for kind, data, w in self.parts:
            if kind == "raw":
                m[:, o : o + w] = np.frombuffer(data, np.uint8)
            elif kind == "fixed64":
                m[:, o : o + w] = data.view(np.uint8).reshape(self.n, 8)
            else:  # a loop over byte positions, not values
                x = data.copy()
                for k in range(w):
                    byte = (x & np.uint64(0x7F)).astype(np.uint8)
                    m[:, o + k] = byte if k == w - 1 else byte | 0x80
                    x >>= np.uint64(7)
            o += w
        return m

    def tobytes(self) -> bytes:
        return self.matrix().tobytes()


def interleave(rows: list[Rows], ranks: list[np.ndarray]) -> bytes:
    """The messages of several columns as one byte string, row ``i`` of ``rows[j]`` at place
    ``ranks[j][i]`` (the ranks of all rows are a permutation of ``0 .. total-1``)."""
    rows_ranks = [(r, k) for r, k in zip(rows, ranks, strict=True) if r.n]
    if not rows_ranks:
        return b""
    total = sum(r.n for r, _ in rows_ranks)
    width = max(r.width for r, _ in rows_ranks)
    if len(rows_ranks) == 1:
        return rows_ranks[0][0].tobytes()
    big = np.empty((total, width), np.uint8)
    size = np.empty(total, np.int64)
    for r, k in rows_ranks:
        big[k, : r.width] = r.matrix()
        size[k] = r.width
    if (size == width).all():
        return big.tobytes()
    return big[np.arange(width) < size[:, None]].tobytes()
