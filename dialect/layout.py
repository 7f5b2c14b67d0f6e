"""The kperf profile buffer, version 2: the one place that states its layout.

The PTX lowering writes it, the decoder reads it, the reference encoder in the tests makes it;
each imports the constants below and no module spells an offset of its own.

A launch gets one buffer from Triton's profile allocator: ``n_ctas`` equal CTA regions, laid out by
the linear CTA id ``ctaid.x + nctaid.x * (ctaid.y + nctaid.y * ctaid.z)``.  All integers are
little-endian.

CTA region (``Geometry.cta_bytes`` bytes)::

    offset  size                         field
    0       CTA_HEADER_BYTES (64)        CTA header (CTA_HEADER_DTYPE), written by lane 0 of warp 0
    64      counts_bytes                 u32 per slot: how many records the slot's warp *attempted*
                                         (its final counter), padded to a multiple of 16 bytes
    ...     slots * slot_bytes           record slots, slot s at records_offset + s * slot_bytes

A *slot* belongs to one recording warp: ``Geometry.warps`` lists them in slot order (all warps by
default; ``granularity``/``warp_mask`` leave fewer).  Each slot holds ``capacity`` record slots
followed by ``sink`` spare slots that the ``fold`` lowering may scribble on once the warp is full;
the decoder never reads the sink.

CTA header: ``magic`` (MAGIC), ``version`` (u16, VERSION), ``flags`` (u16, FLAG_*), ``smid_start``
and ``smid_end`` (``%smid`` read at kernel entry and before ``ret``), ``gtime_start``/``clock_start``
and ``gtime_end``/``clock_end`` (``%globaltimer`` in ns and ``%clock64`` in cycles, read back to back
at entry and before ``ret`` by warp 0), ``ctaid_x/y/z`` and ``num_warps`` (all warps of the kernel,
recording or not).  The pairs let the host measure each SM's clock rate and place every CTA on one
nanosecond axis.  A CTA that sampling left out (``cta_stride``, ``sms``) still writes its header, with
``FLAG_SAMPLED_OUT`` set, and no records: it is neither missing nor corrupt, and loses nothing.

Record slot: ``RECORD32_DTYPE`` (8 bytes: tag, low 32 bits of the clock) for the 32-bit ``clock``
option, ``RECORD64_DTYPE`` (16 bytes: tag, zero, 64-bit time) for ``clock64`` and ``globaltimer``.

Tag word: bit 31 ``TAG_VALID`` is always set (an all-zero slot was never written), bit 0 is 1 for the
end of a scope and 0 for its start, bits 1..23 hold the scope id from the kernel's scope table, bits
24..30 are zero.

Strategy when a warp's ``capacity`` slots are full:

- ``keep-first``: records past ``capacity`` are not stored (or go to the sink); the count still
  grows, so ``count - capacity`` events are known lost, exactly, per warp.
- ``wrap``: record ``i`` goes to slot ``i % capacity`` (capacity is a power of two); the slots hold
  the latest ``capacity`` records, the oldest at slot ``count % capacity``.

Versions: 1 had a u32 ``version`` where version 2 has ``version`` and ``flags`` (u16 each; a version
1 header reads as version 1 with no flags), one slot per warp and no sink; it is what version 2 is
with the default geometry, and decoders read both (``SUPPORTED_VERSIONS``).
"""

from __future__ import annotations

import dataclasses
import functools

import numpy as np

MAGIC = 0x3146504B  # b"KPF1" read as a little-endian u32
VERSION = 2
SUPPORTED_VERSIONS = (1, 2)
FLAG_SAMPLED_OUT = 1  # header flag: sampling left this CTA out; it has no records

CTA_HEADER_DTYPE = np.dtype(
    [
        ("magic", "<u4"),
        ("version", "<u2"),
        ("flags", "<u2"),
        ("smid_start", "<u4"),
        ("smid_end", "<u4"),
        ("gtime_start", "<u8"),
        ("clock_start", "<u8"),
        ("gtime_end", "<u8"),
        ("clock_end", "<u8"),
        ("ctaid_x", "<u4"),
        ("ctaid_y", "<u4"),
        ("ctaid_z", "<u4"),
        ("num_warps", "<u4"),
    ]
)
CTA_HEADER_BYTES = CTA_HEADER_DTYPE.itemsize
assert CTA_HEADER_BYTES == 64

#: byte offset of each header field, for the PTX lowering
HEADER_OFFSETS = {name: CTA_HEADER_DTYPE.fields[name][1] for name in CTA_HEADER_DTYPE.names}

RECORD32_DTYPE = np.dtype([("tag", "<u4"), ("time", "<u4")])
RECORD64_DTYPE = np.dtype([("tag", "<u4"), ("pad", "<u4"), ("time", "<u8")])

TAG_VALID = 1 << 31
TAG_END = 1
TAG_SCOPE_SHIFT = 1
TAG_SCOPE_BITS = 23
MAX_SCOPES = 1 << TAG_SCOPE_BITS

ALIGNMENT = 128  # bytes; every CTA region starts on this boundary

CLOCKS = ("clock", "clock64", "globaltimer")
STRATEGIES = ("keep-first", "wrap")
STORES = ("global", "smem", "auto")
GRANULARITIES = ("warp", "warpgroup", "cta", "role")
MAX_SM_ID = 1023  # sms= sampling accepts SM ids up to this


def make_tag(scope_id: int, is_end: bool) -> int:
    """The tag word of a record (see module docstring)."""
    if not 0 <= scope_id < MAX_SCOPES:
        raise ValueError(f"scope id {scope_id} outside [0, {MAX_SCOPES})")
    return TAG_VALID | (scope_id << TAG_SCOPE_SHIFT) | (TAG_END if is_end else 0)


def record_dtype(clock: str) -> np.dtype:
    if clock not in CLOCKS:
        raise ValueError(f"unknown clock {clock!r}; expected one of {', '.join(CLOCKS)}")
    return RECORD32_DTYPE if clock == "clock" else RECORD64_DTYPE


def _round_up(n: int, m: int) -> int:
    return (n + m - 1) // m * m


@dataclasses.dataclass(frozen=True)
class Geometry:
    """Sizes and offsets of one CTA region, fixed at compile time.

    ``warps``: the warps that record, in slot order (``None``: every warp, slot = warp); ``sink``:
    spare record slots after each slot's ``capacity`` (the ``fold`` lowering's overflow area).
    """

    num_warps: int
    capacity: int  # record slots per warp
    clock: str = "clock"
    warps: tuple | None = None
    sink: int = 0

    def __post_init__(self) -> None:
        if self.num_warps <= 0:
            raise ValueError(f"num_warps must be positive, got {self.num_warps}")
        if self.capacity <= 0:
            raise ValueError(f"capacity must be positive, got {self.capacity}")
        if self.sink < 0:
            raise ValueError(f"sink must be >= 0, got {self.sink}")
        record_dtype(self.clock)
        if self.warps is not None:
            w = tuple(int(x) for x in self.warps)
            if not w or list(w) != sorted(set(w)) or w[0] < 0 or w[-1] >= self.num_warps:
                raise ValueError(f"warps must be distinct increasing warp indices below num_warps="
                                 f"{self.num_warps}, got {self.warps!r}")
            object.__setattr__(self, "warps", None if w == tuple(range(self.num_warps)) else w)

    @property
    def slots(self) -> int:
        """Record areas per CTA: one per recording warp."""
        return self.num_warps if self.warps is None else len(self.warps)

    @property
    def slot_warps(self) -> np.ndarray:
        """The warp index of each slot (int64 array of length ``slots``)."""
        if self.warps is None:
            return np.arange(self.num_warps, dtype=np.int64)
        return np.array(self.warps, np.int64)

    @property
    def record_bytes(self) -> int:
        return record_dtype(self.clock).itemsize

    @property
    def counts_offset(self) -> int:
        return CTA_HEADER_BYTES

    @property
    def counts_bytes(self) -> int:
        return _round_up(4 * self.slots, 16)

    @property
    def records_offset(self) -> int:
        return self.counts_offset + self.counts_bytes

    @property
    def warp_bytes(self) -> int:
        """Bytes from one slot's first record to the next slot's (capacity plus sink)."""
        return (self.capacity + self.sink) * self.record_bytes

    @functools.cached_property
    def cta_bytes(self) -> int:  # cached: read several times for every profiled launch
        return _round_up(self.records_offset + self.slots * self.warp_bytes, ALIGNMENT)

    def to_json(self) -> dict:
        """A dict for kernel metadata; ``Geometry.from_json`` reads it (and the older flat keys)."""
        return {"num_warps": self.num_warps, "capacity": self.capacity, "clock": self.clock,
                "warps": None if self.warps is None else list(self.warps), "sink": self.sink}

    @classmethod
    def from_json(cls, d: dict) -> Geometry:
        warps = d.get("warps")
        return cls(int(d["num_warps"]), int(d["capacity"]), d.get("clock", "clock"),
                   None if warps is None else tuple(warps), int(d.get("sink", 0)))

    def cta_dtype(self) -> np.dtype:
        """One CTA region as a numpy structured dtype (header, counts[slot], records[slot, slot_index]).

        ``records`` has ``capacity + sink`` entries per slot; the sink is never decoded.
        """
        fields = [
            ("header", CTA_HEADER_DTYPE),
            ("counts", "<u4", (self.slots,)),
        ]
        pad1 = self.counts_bytes - 4 * self.slots
        if pad1:
            fields.append(("_pad1", "u1", (pad1,)))
        fields.append(("records", record_dtype(self.clock), (self.slots, self.capacity + self.sink)))
        pad2 = self.cta_bytes - self.records_offset - self.slots * self.warp_bytes
        if pad2:
            fields.append(("_pad2", "u1", (pad2,)))
        dt = np.dtype(fields)
        assert dt.itemsize == self.cta_bytes
        return dt
