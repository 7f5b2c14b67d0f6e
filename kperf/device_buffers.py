"""Profile buffers on the device: zeroed on the launch's stream, never in a memory pool kperf does not own.

Inductor's CUDA graph trees (``torch.compile(mode="reduce-overhead")``) warm up and record with every
allocation of their thread routed to the trees' private pool, and manage that pool as their own: before a
recording they check that every live block in it is an output they track (on an H100, torch 2.11: "Detected
9 tensor(s) in the cudagraph pool not tracked as outputs" -- kperf's buffers from the warm-up), and when
they return to an earlier state of the tree they free whatever was allocated since, so a profile buffer
kept there could be handed to the model's tensors while a kernel still writes records into it.

So kperf allocates outside every pool whenever it may:

- while this thread's allocations are routed to a pool (``torch._C``'s begin/end-allocate-to-pool calls,
  which the trees make, are watched: ``install``), and
- during a CUDA graph capture that lets other threads allocate (``capture_error_mode`` "thread_local", the
  trees' recordings, or "relaxed"),

the buffer is allocated by a worker thread on a stream of its own and zeroed on the launch's stream (in a
capture the memset is captured, so every replay zeroes it).  A "global" capture (``torch.cuda.graph``'s
default) forbids allocating device memory from any thread: there the buffer comes from the graph's pool,
which nothing else uses while the graph lives and kperf holds the buffer.

Outside captures and pools, a launch's buffer is carved from a zeroed slab of its stream (``Slabs``):
one allocation and one memset per slab instead of one each per launch (a ``torch.zeros`` per launch is
a fill kernel per launch and, torch's allocator serving requests up to 1 MiB from 2 MiB segments, a new
segment every few launches while all are held).  A slab's region is handed out once, so it is still zero
when its launch runs, after the slab's memset on the same stream.
"""

from __future__ import annotations

import concurrent.futures
import sys
import threading

#: torch._C calls that route this thread's (or its current stream's) allocations to a private pool
ROUTE_BEGIN = ("_cuda_beginAllocateCurrentThreadToPool", "_cuda_beginAllocateCurrentStreamToPool")
ROUTE_END = "_cuda_endAllocateToPool"
#: capture modes in which another thread may allocate device memory while this one captures
OFF_THREAD_CAPTURE_MODES = ("thread_local", "relaxed")

_routing = threading.local()  # .depth: begin-allocate-to-pool calls on this thread not yet ended
_originals: dict = {}  # torch._C name -> the function kperf wrapped
_worker: concurrent.futures.ThreadPoolExecutor | None = None
_worker_lock = threading.Lock()
_side_streams: dict = {}  # device index -> the worker's allocation stream


def routed() -> bool:
    """Whether this thread's allocations currently go to a private pool kperf watched being entered."""
    return getattr(_routing, "depth", 0) > 0


def off_pool(capture_mode: str | None) -> bool:
    """Where this launch's buffer must come from: outside every pool (True), or the current allocation's
    pool.  ``capture_mode``: the ``capture_error_mode`` of the capture under way on this thread, or None."""
    if capture_mode is not None:
        return capture_mode in OFF_THREAD_CAPTURE_MODES
    return routed()


def _wrap_begin(original):
    def begin(*args, **kwargs):
        out = original(*args, **kwargs)
        _routing.depth = getattr(_routing, "depth", 0) + 1
        return out
    return begin


def _end(*args, **kwargs):
    try:
        return _originals[ROUTE_END](*args, **kwargs)
    finally:
        _routing.depth = max(0, getattr(_routing, "depth", 0) - 1)


def install() -> None:
    """Watch ``torch._C``'s allocate-to-pool calls (once, when torch is imported; for the process's life:
    a pool entered while kperf was not watching would go unseen)."""
    torch = sys.modules.get("torch")
    if torch is None or _originals:
        return
    for name in ROUTE_BEGIN:
        if callable(getattr(torch._C, name, None)):
            _originals[name] = getattr(torch._C, name)
            setattr(torch._C, name, _wrap_begin(_originals[name]))
    if _originals and callable(getattr(torch._C, ROUTE_END, None)):
        _originals[ROUTE_END] = getattr(torch._C, ROUTE_END)
        setattr(torch._C, ROUTE_END, _end)


def uninstall() -> None:
    """Put ``torch._C``'s functions back (tests)."""
    torch = sys.modules.get("torch")
    for name, fn in _originals.items():
        setattr(torch._C, name, fn)
    _originals.clear()
    _routing.depth = 0


class Streams:
    """Torch streams for the raw handles Triton launches on other than the current stream: an
    ``ExternalStream`` made once per handle."""

    def __init__(self):
        self._external: dict = {}

    def external(self, handle):
        s = self._external.get(handle)
        if s is None:
            import torch
            s = self._external[handle] = torch.cuda.ExternalStream(handle)
        return s


STREAMS = Streams()


def _allocate_on_worker(nbytes: int, device: int):
    import torch
    stream = _side_streams.get(device)
    if stream is None:
        stream = _side_streams[device] = torch.cuda.Stream(device)
    with torch.cuda.stream(stream):
        return torch.empty(nbytes, dtype=torch.uint8, device=f"cuda:{device}")


def allocate_off_pool(nbytes: int, device: int, allocate=_allocate_on_worker):
    """``nbytes`` of device memory from kperf's worker thread: no pool this thread is routed to, nor a
    capture's pool, sees the allocation (their filters are by thread or by capturing stream)."""
    global _worker
    with _worker_lock:
        if _worker is None:
            _worker = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="kperf-alloc")
    return _worker.submit(allocate, nbytes, device).result()


def _claim(buf, stream):
    """Zero an off-pool buffer on ``stream`` (before the kernel) and tie its reuse to that stream's work."""
    import torch
    with torch.cuda.stream(stream):
        buf.zero_()
    buf.record_stream(stream)
    return buf


class Slabs:
    """Zeroed buffers carved from slabs, one current slab per stream: 64 buffers' worth, between
    ``min_bytes`` and ``max_bytes`` (a buffer larger than that gets a slab of its own).

    A region is handed out once; a slab's memory goes back to torch's allocator when every buffer carved
    from it is gone (each is a view that keeps the slab alive), so kperf holds at most one partly used
    slab per stream beyond its buffers, until ``release``."""

    def __init__(self, min_bytes: int = 1 << 20, max_bytes: int = 32 << 20):
        self.min_bytes, self.max_bytes = min_bytes, max_bytes
        self._current: dict = {}  # stream key -> [slab, bytes handed out]
        self._lock = threading.Lock()
        self.slabs = 0  # slabs made (a count for tests and benchmarks)

    def take(self, size: int, alignment: int, stream_key, make):
        """``size`` zeroed bytes at a multiple of ``alignment`` (a power of two); ``make(n)`` returns a new
        zeroed slab of ``n`` bytes on the stream of ``stream_key``."""
        with self._lock:
            cur = self._current.get(stream_key)
            if cur is not None:
                start = (cur[1] + alignment - 1) & -alignment
                if start + size <= cur[0].numel():
                    cur[1] = start + size
                    return cur[0][start:start + size]
            slab = make(max(min(64 * size, self.max_bytes), self.min_bytes, size))
            self.slabs += 1
            self._current[stream_key] = [slab, size]
            return slab[:size]

    def release(self) -> None:
        """Forget the current slabs (their memory goes once the buffers carved from them are gone)."""
        with self._lock:
            self._current.clear()


SLABS = Slabs()


def zeroed_buffer(size: int, stream_handle, *, capture_mode: str | None = None,
                  unseen_capture: bool = False, alignment: int = 128):
    """A zeroed device buffer of ``size`` bytes for a launch on ``stream_handle``, zeroed before the
    kernel runs.  ``capture_mode``: that of the CUDA graph capture under way on this thread, if any (see
    ``off_pool``); ``unseen_capture``: the current stream captures a graph kperf did not see begin.  A
    capture (whose replays must each zero the buffer) or a pool routed to gets a buffer of its own;
    anything else a region of its stream's slab."""
    import torch
    device = torch.cuda.current_device()
    raw = torch._C._cuda_getCurrentRawStream(device)
    on = None if stream_handle is None or stream_handle == raw else stream_handle  # None: the current one
    if off_pool(capture_mode):
        stream = torch.cuda.current_stream() if on is None else STREAMS.external(on)
        return _claim(allocate_off_pool(size, device), stream)
    if capture_mode is None and not unseen_capture:
        return SLABS.take(size, max(alignment, 1), (device, raw if on is None else on),
                          lambda n: _zeros(n, on))
    return _zeros(size, on)  # in a capture: from the graph's pool, and the memset is captured with it


def _zeros(size: int, stream_handle):
    """``torch.zeros`` on the current stream (``stream_handle`` None) or on that stream."""
    import torch
    if stream_handle is None:
        return torch.zeros(size, dtype=torch.uint8, device="cuda")
    with torch.cuda.stream(STREAMS.external(stream_handle)):
        return torch.zeros(size, dtype=torch.uint8, device="cuda")


def copy(buf):
    """A device copy of ``buf`` on the current stream (a CUDA graph replay's records), outside any pool
    this thread is routed to."""
    if not routed():
        return buf.clone()
    import torch
    out = allocate_off_pool(buf.numel(), buf.device.index)
    stream = torch.cuda.current_stream()
    out.copy_(buf)
    out.record_stream(stream)
    return out
