"""Packed buffers: a launch's profile buffer as saved by format version 2, lossless in a few bytes per event.

A raw buffer (docs/buffer-format.md) is mostly predictable: record slots past a warp's count are zero,
tags repeat the kernel's scope sequence warp after warp, and a warp's clock readings rise by a few
hundred cycles a record.  So the buffer is split into columns (docs/saved-profile.md, "Packed buffers"):

- ``headers``: the 64-byte CTA headers (``|V64``, one per CTA), byte-shuffled;
- ``counts``: the count words (``<u4``, ``slots`` per CTA), byte-shuffled;
- one column per record field (``tag``, ``pad`` for 16-byte records, ``time``) over the *kept* records
  only: the first ``min(count, capacity)`` slots of every warp, in (CTA, slot, index) order; ``time``
  delta-coded (wrapping, so a 32-bit clock that wraps costs nothing and a warp's first record costs
  one large delta), all byte-shuffled;
- ``rest``, only when not all zero: the whole buffer with the bytes above zeroed (count padding,
  slots past the kept records, sinks, region padding: whatever a damaged or unusual buffer holds
  there), so that the buffer comes back byte for byte and the decoder judges it as it judged the
  original.

Loading rebuilds the buffer and decodes it with the current decoder, as for a version 1 ``buffer``
payload, so version 2 keeps version 1's promise that a newer decoder reads old files with its fixes.
Every step is vectorised numpy (boolean-mask gathers and scatters on one-item-per-record views of the
record slots); the columns' frames are (de)compressed on a few threads (zstd releases the GIL).
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import os
from collections.abc import Callable

import numpy as np

from kperf.dialect.layout import CTA_HEADER_BYTES, Geometry, record_dtype

from .codec import FRAME_ITEMS, ColumnError, decode_column, encode_column

HEADER_DTYPE = np.dtype("V64")
COUNT_DTYPE = np.dtype("<u4")
assert HEADER_DTYPE.itemsize == CTA_HEADER_BYTES
#: the codec of each column the writer uses (the reader takes any codec a spec names)
CODECS = {"headers": ("shuffle", "zstd"), "counts": ("shuffle", "zstd"), "tag": ("shuffle", "zstd"),
          "pad": ("shuffle", "zstd"), "time": ("delta", "shuffle", "zstd"), "rest": ("zstd",)}


def _pool(frames: int):
    """Threads for columns of up to ``frames`` zstd frames each; none for one frame (a small launch),
    where starting threads would cost more than they save."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    threads = min(8, cpus, frames)
    return concurrent.futures.ThreadPoolExecutor(threads) if threads > 1 else contextlib.nullcontext()


def record_fields(g: Geometry) -> dict[str, tuple[np.dtype, int]]:
    """Record field name -> (its little-endian dtype, its offset in u32 words), in record order."""
    rd = record_dtype(g.clock)
    return {name: (np.dtype(rd.fields[name][0]).newbyteorder("<"), rd.fields[name][1] // 4)
            for name in rd.names}


#: record slots as one numpy item each: numpy scatters and gathers these far faster than sub-arrays or
#: void items (the 16-byte records are only ever copied as complex numbers, never computed on)
_SLOT_DTYPES = {8: np.dtype("<u8"), 16: np.dtype("<c16")}


def _slots(b: np.ndarray, g: Geometry) -> np.ndarray:
    """The record slots of the ``(n, cta_bytes)`` buffer ``b`` as a ``(n, slots, capacity + sink)`` view,
    one item per record (records start on 16-byte boundaries: header 64, counts padded to 16)."""
    area = b[:, g.records_offset:g.records_offset + g.slots * g.warp_bytes]
    return area.view(_SLOT_DTYPES[g.record_bytes]).reshape(len(b), g.slots, g.capacity + g.sink)


def _kept(counts: np.ndarray, g: Geometry, n: int) -> np.ndarray:
    """``(n, slots, capacity + sink)`` bool: the record slots that hold a warp's kept records."""
    k = np.minimum(counts.reshape(n, g.slots), g.capacity)
    return np.arange(g.capacity + g.sink) < k[:, :, None]


def pack(raw: np.ndarray, g: Geometry, n: int) -> dict[str, np.ndarray]:
    """The columns of the buffer ``raw`` (``n`` CTA regions, uint8) (module docstring)."""
    b = raw.reshape(n, g.cta_bytes)
    counts_end = g.counts_offset + 4 * g.slots
    cols = {"headers": b[:, :CTA_HEADER_BYTES].copy().view(HEADER_DTYPE).reshape(-1),
            "counts": b[:, g.counts_offset:counts_end].copy().view(COUNT_DTYPE).reshape(-1)}
    kept = _kept(cols["counts"], g, n)
    slots = _slots(b, g)
    words = slots[kept].view("<u4").reshape(-1, g.record_bytes // 4)  # (events, words per record)
    for name, (dtype, at) in record_fields(g).items():
        width = dtype.itemsize // 4
        cols[name] = np.ascontiguousarray(words[:, at:at + width]).view(dtype).reshape(-1)
    tail = g.records_offset + g.slots * g.warp_bytes
    if b[:, counts_end:g.records_offset].any() or b[:, tail:].any() or slots[~kept].view("<u8").any():
        image = b.copy()
        image[:, :counts_end] = 0
        _slots(image, g)[kept] = 0
        cols["rest"] = image.reshape(-1)
    return cols


def unpack(cols: dict[str, np.ndarray], g: Geometry, n: int) -> np.ndarray:
    """The buffer (uint8, ``n`` CTA regions) that :func:`pack` made ``cols`` of."""
    buf = cols["rest"] if "rest" in cols else np.zeros(n * g.cta_bytes, np.uint8)  # decoded afresh: ours
    b = buf.reshape(n, g.cta_bytes)
    b[:, :CTA_HEADER_BYTES] = cols["headers"].view(np.uint8).reshape(n, CTA_HEADER_BYTES)
    b[:, g.counts_offset:g.counts_offset + 4 * g.slots] = cols["counts"].view(np.uint8).reshape(n, -1)
    kept = _kept(cols["counts"], g, n)
    fields = record_fields(g)
    events = len(cols["time"])
    words = np.empty((events, g.record_bytes // 4), "<u4")
    for name, (dtype, at) in fields.items():
        words[:, at:at + dtype.itemsize // 4] = cols[name].view("<u4").reshape(events, -1)
    _slots(b, g)[kept] = words.reshape(-1).view(_SLOT_DTYPES[g.record_bytes])
    return buf


def expected(g: Geometry, n: int, counts: np.ndarray | None) -> dict[str, tuple[np.dtype, int]]:
    """Column name -> (dtype, count) the format prescribes (the record columns once ``counts`` is known)."""
    out = {"headers": (HEADER_DTYPE, n), "counts": (COUNT_DTYPE, n * g.slots),
           "rest": (np.dtype("|u1"), n * g.cta_bytes)}
    if counts is not None:
        events = int(np.minimum(counts, g.capacity).sum(dtype=np.int64))
        out.update({name: (dtype, events) for name, (dtype, _) in record_fields(g).items()})
    return out


def write_columns(raw: np.ndarray, g: Geometry, n: int, level: int) -> tuple[dict, list[tuple[str, bytes]]]:
    """``({column: spec}, [(column, member bytes)])`` of a launch's buffer, compressed on a few threads."""
    cols = pack(raw, g, n)
    with _pool(max(len(a) for a in cols.values()) // FRAME_ITEMS + 1) as pool:
        done = {name: encode_column(a, CODECS[name], level, pool=pool) for name, a in cols.items()}
    specs = {name: spec for name, (_, spec) in done.items()}
    return specs, [(name, data) for name, (data, _) in done.items()]


def read_columns(specs: dict, g: Geometry, n: int, member: Callable[[str], np.ndarray], prefix: str
                 ) -> dict[str, np.ndarray]:
    """The columns of a packed launch: ``specs`` from its manifest entry, ``member(name)`` the bytes
    (uint8) of the member ``name``, the column's zstd frames, ``<prefix><column>.zst``.  A column that
    does not decode is a :class:`ColumnError` naming it."""
    unknown = sorted(set(specs) - {"headers", "counts", "rest", *record_fields(g)})
    if unknown:
        raise ColumnError(f"packed columns {', '.join(map(str, unknown))[:80]} are not columns of a "
                          f"{g.clock} buffer")
    cols: dict[str, np.ndarray] = {}
    frames = [s.get("frames") for s in specs.values() if isinstance(s, dict)]
    want = expected(g, n, None)
    with _pool(max((len(f) for f in frames if isinstance(f, list)), default=1)) as pool:
        for name in ("headers", "counts", *record_fields(g), "rest"):
            if name == "rest" and name not in specs:
                continue
            if name not in specs:
                raise ColumnError(f"column {name}: missing from the launch's packed columns")
            if name not in want:  # the record columns: their length follows from the counts
                want = expected(g, n, cols["counts"])
            dtype, count = want[name]
            try:
                data = member(f"{prefix}{name}.zst")
                cols[name] = decode_column(data, specs[name], dtype, count, pool=pool)
            except ColumnError as e:
                raise type(e)(f"column {name} ({prefix}{name}.zst): {e}") from None
    return cols
