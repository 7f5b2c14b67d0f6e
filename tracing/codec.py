"""The column codec of saved profiles (format version 2): one numpy column <-> zstd frames in one member.

A column is a 1-D little-endian array, cut into frames of :data:`FRAME_ITEMS` items (the last one
shorter), each coded on its own so that frames compress and decompress in parallel.  Its *codec* is a
list of steps, a subsequence of ``("delta", "shuffle", "zstd")`` that ends in ``"zstd"``, applied to
each frame's items in that order when writing and undone in reverse when reading
(docs/saved-profile.md defines each step byte for byte):

- ``delta``: unsigned ints only; a frame's first item is kept, item ``i`` becomes ``a[i] - a[i-1]``
  modulo the dtype's range, so slowly rising clocks become small numbers and a clock that wraps costs
  nothing; undone by a wrapping cumulative sum.
- ``shuffle``: the frame's ``(items, itemsize)`` byte matrix stored transposed, byte plane by byte
  plane: the high bytes of small numbers are runs of zeros that zstd all but removes.
- ``zstd``: one zstd frame, with its content size and xxhash checksum.

Each column's spec (``{"dtype", "count", "codec", "crc32", "frames"}``, ``frames`` a list of
``[items, bytes]``) goes into the manifest; ``crc32`` is zlib's CRC-32 of the whole column's bytes as
decoded, so a damaged member, a wrong step or a spec edited to other values cannot decode into a
plausible wrong profile: :func:`decode_column` checks every spec field against what the format
expects, each frame's size before decompressing it (no memory blow-up from a forged frame), the
frame's own checksum, and the CRC after all steps are undone.  Failures are :class:`ColumnError`
(``ValueError``) for the caller to name the file and member (:class:`UnknownStep` for a step of a
newer kperf); a missing zstandard package is a ``KperfError`` with its fix.

``zstandard`` is imported only when a column is written or read, so a version 1 profile reads, and
kperf imports, without it.
"""

from __future__ import annotations

import zlib
from concurrent.futures import Executor
from typing import Any

import numpy as np

from kperf.dialect.errors import KperfError

STEPS = ("delta", "shuffle", "zstd")
LEVEL = 3  # zstd level: bench/saved_size.py measured 1, 3 and 9 (bench/results/h100-2026-12-06-s3)
FRAME_ITEMS = 1 << 21  # items per zstd frame: frames decode in parallel, and each is a few MB
_U32 = 1 << 32


class ColumnError(ValueError):
    """A column that does not decode to what its spec says (the member is damaged)."""


class UnknownStep(ColumnError):
    """A codec step this kperf does not know (a newer writer's): upgrading kperf is the fix."""


def zstd(what: str = "reading a version 2 profile") -> Any:
    """The ``zstandard`` module, or a KperfError (``what`` needs it) saying how to install it."""
    try:
        import zstandard
    except ImportError:
        raise KperfError(f"{what} needs the zstandard package, which is not installed",
                         fix="pip install zstandard") from None
    return zstandard


def available() -> bool:
    """Whether zstandard can be imported (saving picks version 2 then)."""
    try:
        zstd()
    except KperfError:
        return False
    return True


def check_codec(codec: Any) -> tuple[str, ...]:
    """``codec`` as a tuple of known steps in their order, ending in zstd; else a ColumnError."""
    if not isinstance(codec, list | tuple) or not all(isinstance(s, str) for s in codec):
        raise ColumnError(f"codec {codec!r:.80} is not a list of step names")
    unknown = [s for s in codec if s not in STEPS]
    if unknown:
        raise UnknownStep(f"its codec uses the step {unknown[0]!r:.40}, unknown to this kperf (it knows "
                          f"{', '.join(STEPS)})")
    order = [STEPS.index(s) for s in codec]
    if order != sorted(set(order)) or not codec or codec[-1] != "zstd":
        raise ColumnError(f"codec {list(codec)} is not a subsequence of {list(STEPS)} ending in zstd")
    return tuple(codec)


def _delta(a: np.ndarray) -> np.ndarray:
    d = np.empty_like(a)
    if len(a):
        d[0] = a[0]
        np.subtract(a[1:], a[:-1], out=d[1:])
    return d


def _shuffle(a: np.ndarray) -> np.ndarray:
    size = a.dtype.itemsize
    b = a.view(np.uint8).reshape(len(a), size)
    planes = np.empty((size, len(a)), np.uint8)
    for k in range(size):  # one strided pass per byte plane: faster than a transposing copy
        planes[k] = b[:, k]
    return planes.reshape(-1)


def _unshuffle(data: np.ndarray, out: np.ndarray) -> None:
    """Undo :func:`_shuffle` of ``len(out)`` items into ``out``."""
    size = out.dtype.itemsize
    planes = data.reshape(size, len(out))
    dest = out.view(np.uint8).reshape(len(out), size)
    for k in range(size):
        dest[:, k] = planes[k]


def crc32(a: np.ndarray) -> int:
    return zlib.crc32(memoryview(np.ascontiguousarray(a)).cast("B")) & 0xFFFFFFFF


def _map(pool: Executor | None, fn, items) -> list:
    return list(pool.map(fn, items) if pool is not None else map(fn, items))


def encode_column(a: np.ndarray, codec: tuple[str, ...], level: int = LEVEL, *, pool: Executor | None = None,
                  frame_items: int = FRAME_ITEMS) -> tuple[bytes, dict]:
    """``(member bytes, spec)`` of the 1-D array ``a`` under ``codec``: one zstd frame per
    ``frame_items`` items, each coded on its own (so frames decode in parallel), on ``pool``'s threads."""
    a = np.ascontiguousarray(a).reshape(-1)
    spec = {"dtype": a.dtype.str, "count": int(len(a)), "codec": list(check_codec(codec)), "crc32": crc32(a)}
    z = zstd("saving format version 2")

    def one(start: int) -> bytes:
        part = a[start:start + frame_items]
        if "delta" in codec:
            part = _delta(part)
        data = _shuffle(part) if "shuffle" in codec else part.view(np.uint8)
        return z.ZstdCompressor(level=level, write_checksum=True).compress(memoryview(data))

    frames = _map(pool, one, range(0, max(len(a), 1), frame_items))
    spec["frames"] = [[int(min(frame_items, len(a) - i * frame_items)), len(f)] for i, f in enumerate(frames)]
    return b"".join(frames), spec


def _check_spec(spec: Any, dtype: np.dtype, count: int, size: int) -> tuple[tuple[str, ...], list]:
    """The spec's codec and frames, every field checked against what the format expects."""
    if not isinstance(spec, dict):
        raise ColumnError(f"its spec is not an object: {spec!r:.60}")
    codec = check_codec(spec.get("codec"))
    if spec.get("dtype") != dtype.str:
        raise ColumnError(f"dtype {spec.get('dtype')!r:.40}, expected {dtype.str!r}")
    if spec.get("count") != count or isinstance(spec.get("count"), bool):
        raise ColumnError(f"count {spec.get('count')!r:.40}, expected {count} (from the launch's geometry "
                          f"and counts)")
    crc = spec.get("crc32")
    if not _uint(crc) or crc >= _U32:
        raise ColumnError(f"crc32 {crc!r:.40} is not a 32-bit unsigned int")
    if "delta" in codec and dtype.kind != "u":
        raise ColumnError(f"delta coding of a {dtype.str} column")
    frames = spec.get("frames")
    if not isinstance(frames, list) or not frames or not all(
            isinstance(f, list) and len(f) == 2 and _uint(f[0]) and _uint(f[1]) for f in frames):
        raise ColumnError(f"frames {frames!r:.60} is not a list of [items, bytes] pairs")
    items, nbytes = sum(f[0] for f in frames), sum(f[1] for f in frames)
    if items != count or nbytes != size:
        raise ColumnError(f"frames of {items} items in {nbytes} bytes, but the column has {count} items and "
                          f"its member {size} bytes")
    return codec, frames


def _uint(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool) and x >= 0


def decode_column(member: np.ndarray, spec: Any, dtype: np.dtype, count: int, *,
                  pool: Executor | None = None) -> np.ndarray:
    """The column that ``member`` (uint8 array: its zstd frames) holds; ``dtype`` and ``count`` are what
    the format expects here, checked against the spec.  Frames are decoded on ``pool``'s threads.
    Raises :class:`ColumnError` when anything is off."""
    codec, frames = _check_spec(spec, dtype, count, member.size)
    z = zstd()
    starts = np.cumsum([[0, 0]] + frames, axis=0)[:-1].tolist()
    for i, ((_, at), (items, size)) in enumerate(zip(starts, frames, strict=True)):
        try:  # every frame's header first: nothing is allocated for sizes the frames do not declare
            declared = z.frame_content_size(member[at:at + size])
        except z.ZstdError as e:
            raise ColumnError(f"frame {i}: not a valid zstd frame ({e})") from None
        if declared != items * dtype.itemsize:
            raise ColumnError(f"frame {i}: a zstd frame of {declared} bytes (-1: unknown) where "
                              f"{items * dtype.itemsize} are expected")
    out = np.empty(count, dtype)

    def one(i: int) -> None:
        (item, at), (items, size) = starts[i], frames[i]
        frame, nbytes = member[at:at + size], items * dtype.itemsize
        try:
            data = np.frombuffer(z.ZstdDecompressor().decompress(frame, allow_extra_data=False), np.uint8)
        except z.ZstdError as e:
            raise ColumnError(f"frame {i}: not a valid zstd frame ({e})") from None
        if data.size != nbytes:
            raise ColumnError(f"frame {i}: {data.size} bytes decompressed, {nbytes} expected")
        part = out[item:item + items]
        if "shuffle" in codec:
            _unshuffle(data, part)
        else:
            part.view(np.uint8)[:] = data
        if "delta" in codec:
            np.cumsum(part, dtype=dtype, out=part)  # wraps modulo the dtype's range, as the delta did

    _map(pool, one, range(len(frames)))
    if crc32(out) != spec["crc32"]:
        raise ColumnError(f"decodes to data that fails its CRC-32 (manifest crc32 {spec['crc32']})")
    return out
