"""Getting profile buffers off the GPU, and the device memory kperf may hold meanwhile.

A profiled launch's buffer stays on the device after the launch (``DeviceHeld``): copying each buffer
out as its launch finishes would cost the launching thread more than a short kernel (pinning host memory,
or first-touching ordinary memory, runs at about 0.1-0.8 ms per MiB).  Held buffers go to the host
together, through one reused pinned staging buffer, when results are asked for or when the bytes held
pass the capture's ``memory_budget`` (a spill: one wait for the GPU, then bulk copies).  So a session
over thousands of launches costs each launch a memset and some bookkeeping, holds at most the budget on
the device, and pays the copies once, at the end or at a spill.
"""

from __future__ import annotations

import collections
import re
import threading

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
    pinned staging buffer, when results are asked for or when the bytes held pass the budget.
    """

    def __init__(self):
        self._held: list = []  # LaunchRecords whose buffers are still on the device, in launch order
        self.bytes = 0
        self.spills = 0  # bulk spills forced by the budget
        self._lock = threading.RLock()

    def add(self, record, budget: int | None) -> None:
        with self._lock:
            self._held.append(record)
            self.bytes += record.nbytes
            over = budget is not None and self.bytes > budget
        if over:
            self.spills += 1
            self.spill()

    def spill(self) -> None:
        """Move every held buffer to host memory (waits for the GPU once)."""
        import torch
        with self._lock:
            held, self._held, self.bytes = self._held, [], 0
            if not held:
                return
            try:
                torch.cuda.synchronize()  # every launch's kernel done, whatever its stream
            except RuntimeError as e:  # a fault: every buffer not yet out is lost with it
                for r in held:
                    r.lost(e)
                return
            _to_host(held)


def _to_host(held: list) -> None:
    """Copy ``held`` records' device buffers out through pinned staging chunks of ``STAGING`` bytes."""
    import torch
    i = 0
    while i < len(held):
        chunk, size = [], 0
        while i < len(held) and (not chunk or size + held[i].nbytes <= STAGING):
            chunk.append(held[i])
            size += held[i].nbytes
            i += 1
        staging = PINNED.get(max(size, STAGING))
        off = 0
        for r in chunk:
            staging[off:off + r.nbytes].copy_(r.device_buffer(), non_blocking=True)
            off += r.nbytes
        torch.cuda.current_stream().synchronize()
        off = 0
        for r in chunk:
            r.landed(staging[off:off + r.nbytes].numpy().copy())
            off += r.nbytes
        PINNED.put(staging)


#: Bytes of the pinned buffer spills go through (made once, then reused).
STAGING = 64 << 20
HELD = DeviceHeld()
