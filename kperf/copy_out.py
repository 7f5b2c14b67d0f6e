"""Getting profile buffers off the GPU, and the device memory kperf may hold meanwhile.

A profiled launch's buffer stays on the device after the launch (``DeviceHeld``): copying each buffer
out as its launch finishes would cost the launching thread more than a short kernel (pinning host memory,
or first-touching ordinary memory, runs at about 0.1-0.8 ms per MiB).  Held buffers go to the host
together, through one reused pinned staging buffer, when results are asked for or when the bytes held
reach the capture's ``memory_budget`` (a spill: one wait for the GPU, then bulk copies).  So a session
over thousands of launches costs each launch some bookkeeping (its buffer is carved from a zeroed slab),
holds at most the budget on the device, and pays the copies at the end or at a spill.
"""

from __future__ import annotations

import collections
import re
import threading
import warnings

from kperf.dialect.errors import KperfError

#: The default for ``kperf.session(memory_budget=...)``: device bytes of profile buffers held before a spill.
DEFAULT_BUDGET = 1 << 30
_UNITS = {"": 1, "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "kib": 1 << 10, "mib": 1 << 20,
          "gib": 1 << 30}


def parse_bytes(value, option: str = "memory_budget") -> int:
    """Bytes from an int or a string such as ``"512MiB"`` / ``"2 GB"``; anything else raises."""
    if isinstance(value, bool):
        value = None
    if isinstance(value, int) and value > 0:
        return value
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*", value) if isinstance(value, str) else None
    if m and m.group(2).lower() in _UNITS and float(m.group(1)) > 0:
        return int(float(m.group(1)) * _UNITS[m.group(2).lower()])
    raise KperfError(f"{option}: expected a positive number of bytes (an int, or e.g. '512MiB', '2GB'), "
                     f"got {value!r}", fix=f"pass {option}=2 << 30 or {option}='2GiB'")


class PinnedPool:
    """Pinned staging buffers, reused by size (pinning fresh host memory is slow, reusing it is free).
    Up to ``keep`` bytes of free buffers are kept."""

    def __init__(self, keep: int = 256 << 20):
        self.keep = keep
        self._free: dict[int, list] = collections.defaultdict(list)
        self._lock = threading.Lock()
        self.free_bytes = 0

    def get(self, nbytes: int):
        with self._lock:
            free = self._free.get(nbytes)
            if free:
                self.free_bytes -= nbytes
                return free.pop()
        import torch
        return torch.empty(nbytes, dtype=torch.uint8, pin_memory=True)

    def put(self, buf) -> None:
        n = buf.numel()
        with self._lock:
            if self.free_bytes + n <= self.keep:
                self._free[n].append(buf)
                self.free_bytes += n


PINNED = PinnedPool()


class DeviceHeld:
    """Profile buffers kept on the device after their launches, spilled to host memory in bulk.

    Copying each launch's buffer out as it finishes costs the host more than a short kernel: the pinned
    memory a copy lands in, or the first touch of ordinary memory it is moved to, costs about 0.1 to
    0.8 ms per MiB, paid on the launching thread (measured on the H100 host: 419 us per 512 KiB launch).
    So a launch keeps its buffer where it is, and the buffers go to the host together, through one reused
    pinned staging buffer, when results are asked for or when the bytes held reach the budget (a spill:
    one wait for the GPU, one copy per run of buffers back to back in a slab, one host array per 64 MiB).

    The spill runs on the launching thread.  A worker thread copying beside it was slower on the H100
    host (174 against 122 us per launch, ``bench/results/h100-2026-12-06-s12``): each copy call hands the
    interpreter lock back and forth with a launching thread that is busy in Python.
    """

    def __init__(self, sync=None, prepare=None, land=None):
        self._held: list = []  # LaunchRecords whose buffers are still on the device, in launch order
        self.bytes = 0
        self.spills = 0  # spills forced by the budget
        self._lock = threading.RLock()
        # drain the GPU; take the staging buffer and copy streams; copy and land: swappable, so a spill is
        # testable without a GPU
        self._sync, self._prepare = sync or _synchronize, prepare or _Copies
        self._land = land or _to_host

    def add(self, record, budget: int | None) -> None:
        with self._lock:
            self._held.append(record)
            self.bytes += record.nbytes
            if budget is None or self.bytes < budget:
                return
            self.spills += 1
            self._move(forced=True)

    def spill(self) -> None:
        """Move every held buffer to host memory now (waits for the GPU once)."""
        with self._lock:
            self._move(forced=False)

    def _move(self, forced: bool) -> None:
        """Every held buffer to the host.  A fault while draining loses them (each launch says so); no
        staging memory for a spill the budget ``forced`` keeps them held, for results to move, and warns;
        for results it raises."""
        held, self._held, self.bytes = self._held, [], 0
        if not held:
            return
        try:
            self._sync(held)
        except RuntimeError as e:  # a fault: every buffer not yet out is lost with it
            for r in held:
                r.lost(e)
            return
        try:
            copies = self._prepare(held)
        except Exception as e:
            if not forced:
                raise
            self._held[:0], self.bytes = held, self.bytes + sum(r.nbytes for r in held)
            warnings.warn(f"kperf: could not spill {len(held)} profile buffers to the host "
                          f"({type(e).__name__}: {e}); they stay on the device", stacklevel=3)
            return
        self._land(held, copies)


def _devices(held: list) -> list:
    return list(dict.fromkeys(r.device_buffer().device for r in held))


def _synchronize(held: list) -> None:
    import torch
    for device in _devices(held):
        torch.cuda.synchronize(device)  # every launch's kernel done, whatever its stream


class _Copies:
    """What a spill's copies need from CUDA: one pinned staging buffer and a copy stream per device."""

    def __init__(self, held: list):
        import torch
        self.staging = PINNED.get(max(STAGING, max(r.nbytes for r in held)))
        self.streams = {d: torch.cuda.Stream(d) for d in _devices(held)}

    def done(self) -> None:
        PINNED.put(self.staging)


def _to_host(held: list, copies: _Copies) -> None:
    """Copy ``held`` records' device buffers out through ``copies``' staging buffer, a chunk at a time.

    Each chunk lands in one host array that the chunk's records view: one large allocation and one copy,
    instead of an allocation and a first touch per record.
    The copies go on kperf's own stream (the GPU was drained first), off the launching stream."""
    import torch
    try:
        for device, stream in copies.streams.items():
            with torch.cuda.stream(stream):
                _chunks_to_host([r for r in held if r.device_buffer().device == device], stream,
                                copies.staging)
    finally:
        copies.done()


def _chunks_to_host(held: list, stream, staging) -> None:
    """Copy ``held`` out through ``staging`` a chunk at a time: one copy per run of buffers that lie back
    to back in one allocation (a slab's regions), one wait, then one host array per chunk."""
    import numpy as np
    room = staging.numel()
    runs = _runs(held, room)
    i = 0
    while i < len(runs):
        chunk, size = [], 0
        while i < len(runs) and (not chunk or size + runs[i].span <= room):
            chunk.append(runs[i])
            size += runs[i].span
            i += 1
        off = 0
        for run in chunk:
            staging[off:off + run.span].copy_(run.source(), non_blocking=True)
            off += run.span
        stream.synchronize()
        host = np.empty(size, dtype=np.uint8)
        np.copyto(host, staging[:size].numpy())
        off = 0
        for run in chunk:
            for r, at in run.members:
                r.landed(host[off + at:off + at + r.nbytes])
            off += run.span


class _Run:
    """Records whose device buffers lie back to back (up to alignment gaps) in one allocation, copied out
    with one copy: a spill of a slab's 64 launches is one copy instead of 64."""

    #: Largest gap between two buffers still copied together (slab regions are 128-byte aligned).
    GAP = 4096

    def __init__(self, record, buf):
        self.storage, self.start = buf.untyped_storage(), _byte_offset(buf)
        self.end, self.members, self.device = self.start + record.nbytes, [(record, 0)], buf.device

    def take(self, record, buf, room: int) -> bool:
        """Add ``record`` if its buffer follows this run's in the same allocation within ``room`` bytes."""
        if not buf.is_contiguous() or buf.untyped_storage().data_ptr() != self.storage.data_ptr():
            return False
        at = _byte_offset(buf)
        if not 0 <= at - self.end <= self.GAP or at + record.nbytes - self.start > room:
            return False
        self.members.append((record, at - self.start))
        self.end = at + record.nbytes
        return True

    @property
    def span(self) -> int:
        return self.end - self.start

    def source(self):
        import torch
        return torch.empty(0, dtype=torch.uint8, device=self.device).set_(self.storage, self.start,
                                                                          (self.span,))


def _byte_offset(buf) -> int:
    return buf.storage_offset() * buf.element_size()


def _runs(held: list, room: int) -> list:
    runs: list = []
    for r in held:
        buf = r.device_buffer()
        if not (runs and runs[-1].take(r, buf, room)):
            if not buf.is_contiguous():
                buf = buf.contiguous()  # a copy of its own (not a slab region): a run alone
            runs.append(_Run(r, buf))
    return runs


#: Bytes of the pinned buffer spills go through (made once, then reused).
STAGING = 64 << 20
HELD = DeviceHeld()
