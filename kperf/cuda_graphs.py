"""Instrumented kernels inside CUDA graphs: capture keeps the buffer, every replay copies it out.

A launch captured into a CUDA graph (``torch.cuda.graph``, ``torch.compile(mode="reduce-overhead")``'s
CUDA graph trees) does not run at capture; it runs at every ``replay()``.  Handing its buffer to the
captures at capture time (what kperf does for an ordinary launch) would keep a buffer that the next
replay overwrites, and no replay's records of their own.  So during a capture:

- the profile allocator's buffer is allocated outside every pool where the capture lets another thread
  allocate (Inductor's trees capture in "thread_local" mode), else from the graph's memory pool
  (``kperf.device_buffers``); its memset is captured on the capturing stream, and kperf keeps it for the
  graph's lifetime, so nothing else reuses the memory: each replay zeroes it and the kernel fills it;
- the launch is remembered with the graph (``captured``), not copied.

After each ``replay()`` kperf queues, on the replaying stream, a device copy of every remembered buffer,
one ``LaunchRecord`` per launch per replay, tagged ``{"cuda_graph": g, "replay": n}``: each replay's records,
never a stale or mixed buffer (the copy is ordered after this replay and before any later one).  The
captures that get a replay's launches: the ``kperf.profile`` kernel that was capturing, and the sessions
open at replay time that want the kernel.  Replays outside any of them copy nothing.
"""

from __future__ import annotations

import dataclasses
import itertools
import threading
import weakref

from kperf import device_buffers

_state = threading.local()  # .graph: the CUDAGraph this thread is capturing
_launches: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # graph -> [CapturedLaunch]
_meta: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # graph -> {"id": int, "replays": int}
_ids = itertools.count(1)
_originals: dict = {}  # CUDAGraph method name -> the method kperf wrapped
_own: dict = {}  # name -> whether CUDAGraph itself defined it (else inherited)
_dispatcher = None
#: The coverage row of replays of graphs captured while kperf was not profiling.
UNWATCHED_GRAPH = "(CUDA graph replays)"
UNWATCHED_REASON = ("replays of a CUDA graph captured while kperf was not profiling (before the session, "
                    "or before import kperf): its Triton kernels, if any, were captured plain; capture the "
                    "graph inside the session, e.g. run torch.compile(mode='reduce-overhead')'s warm-up and "
                    "recording steps under it")


@dataclasses.dataclass
class CapturedLaunch:
    kernel: object  # runtime.KernelInfo
    buf: object  # the device buffer the graph writes on every replay
    n_ctas: int
    owners: list  # kperf.profile kernels capturing at the time (sessions are looked up at replay)
    info: dict | None


def capture_mode() -> str | None:
    """The ``capture_error_mode`` of the capture this thread is under (through ``torch.cuda.CUDAGraph``),
    or None when it is not capturing."""
    return getattr(_state, "mode", None) if getattr(_state, "graph", None) is not None else None


def capturing() -> bool:
    """Whether this thread is capturing a CUDA graph (through ``torch.cuda.CUDAGraph``)."""
    return getattr(_state, "graph", None) is not None


def capturing_unseen() -> bool:
    """Whether the current stream captures a graph kperf did not see begin (e.g. raw CUDA, or begun before
    ``import kperf``): a launch there cannot be replayed into a trace, so it is left out with a warning."""
    import torch
    return torch.cuda.is_current_stream_capturing()


def captured(kernel, buf, n_ctas: int, targets: list, info: dict | None) -> None:
    """Remember a launch captured into the graph this thread is capturing."""
    graph = _state.graph
    sessions = {id(s) for s in _dispatcher.sessions()} if _dispatcher is not None else set()
    owners = [t for t in targets if id(t) not in sessions]
    _launches.setdefault(graph, []).append(CapturedLaunch(kernel, buf, n_ctas, owners, info))


def _capture_begin(self, *args, **kwargs):
    meta = _meta.setdefault(self, {"id": next(_ids), "replays": 0})
    # whether kperf profiled while this graph was captured: if not, its Triton kernels went in plain
    meta["watched"] = _dispatcher is not None and _dispatcher.active
    _launches.pop(self, None)  # a graph captured again forgets what it held
    _state.graph = self
    _state.mode = kwargs.get("capture_error_mode", args[1] if len(args) > 1 else "global")
    try:
        return _originals["capture_begin"](self, *args, **kwargs)
    except BaseException:
        _state.graph = None
        raise


def _capture_end(self, *args, **kwargs):
    try:
        return _originals["capture_end"](self, *args, **kwargs)
    finally:
        _state.graph = None


def _replay(self, *args, **kwargs):
    out = _originals["replay"](self, *args, **kwargs)
    launches = _launches.get(self)
    if launches and _dispatcher is not None:
        meta = _meta[self]
        meta["replays"] += 1
        _copy_replay(launches, meta)
    elif _dispatcher is not None and _dispatcher.active and not _meta.get(self, {}).get("watched"):
        for s in _dispatcher.sessions():  # a replay the session cannot profile: said, not skipped in silence
            s.coverage.skipped(UNWATCHED_GRAPH, UNWATCHED_REASON)
    return out


def _reset(self, *args, **kwargs):
    _launches.pop(self, None)
    return _originals["reset"](self, *args, **kwargs)


def _copy_replay(launches: list[CapturedLaunch], meta: dict) -> None:
    sessions = _dispatcher.sessions()
    for cl in launches:
        name = cl.kernel.name
        targets = [t for t in dict.fromkeys(cl.owners + sessions) if t.wants(name) and t.take(name)]
        if targets:
            info = {**(cl.info or {}), "cuda_graph": meta["id"], "replay": meta["replays"]}
            # the next replay overwrites the graph's buffer: this replay's records go on in a copy (D2D,
            # ordered after the replay on this stream)
            _dispatcher.record(cl.kernel, device_buffers.copy(cl.buf), cl.n_ctas, None, targets, info)


def install(dispatcher) -> None:
    """Wrap ``torch.cuda.CUDAGraph``'s capture and replay (once, when torch is imported).

    The wrappers stay for the life of the process: a ``kperf.profile`` kernel is captured and its graph
    replayed outside any call kperf sees, so capture and replay must be watched all along (a capture or
    replay without kperf launches in it costs one Python call)."""
    global _dispatcher
    import sys
    device_buffers.install()
    torch = sys.modules.get("torch")
    if torch is None or _originals:
        return
    graph = torch.cuda.CUDAGraph
    for name, wrapper in (("capture_begin", _capture_begin), ("capture_end", _capture_end),
                          ("replay", _replay), ("reset", _reset)):
        _originals[name] = getattr(graph, name)
        _own[name] = name in graph.__dict__
        setattr(graph, name, wrapper)
    _dispatcher = dispatcher


def uninstall() -> None:
    """Put ``torch.cuda.CUDAGraph`` back (tests); graphs captured meanwhile stop being copied out."""
    global _dispatcher
    if not _originals:
        return
    import torch
    for name, fn in _originals.items():
        if _own[name]:
            setattr(torch.cuda.CUDAGraph, name, fn)
        else:  # inherited from torch._C._CUDAGraph: uncover it again
            delattr(torch.cuda.CUDAGraph, name)
    _originals.clear()
    _dispatcher = None
