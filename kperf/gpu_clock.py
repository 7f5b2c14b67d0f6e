"""The GPU's ``%globaltimer`` against the host's clock: probe samples for ``phi = globaltimer - host``.

Every profiled event is in its GPU's globaltimer ns; to put ranks of a job on one axis
(:mod:`kperf.tracing.clock_sync`) each rank relates that clock to its host's ``CLOCK_REALTIME``, which
the ranks then relate to each other.  A sample is a message each way with four readings,
``(host_send, gpu_recv, gpu_send, host_recv)``, and bounds ``phi`` by the round trip whatever the
latencies.  Two probes, both Triton kernels of one warp (the profiler's own compiler, nothing else):

- ``pingpong``: one launch of a kernel that spins on a flag in pinned host memory (UVA-mapped, so the
  GPU reads it over PCIe): the host reads its clock and raises the flag, the kernel reads the
  globaltimer as soon as it sees it and again right before writing both readings back, the host
  reads its clock as soon as they arrive.  A round trip is a few microseconds, so is the bound.  The
  kernel stops on its own after :data:`SPIN_TIMEOUT_NS` of globaltimer whatever the host does, and
  a round the kernel gave up on is marked (-1) and dropped, never taken for a sample;
- ``bracket``: a launch that stores the globaltimer, bracketed by the host's clock around launch and
  synchronisation: simple, but its bound is the whole launch-to-sync round trip (tens of us).

``probe()`` tries ``pingpong`` and falls back to ``bracket`` if it fails (a driver that does not map
pinned memory, a timeout): the method goes into the record, so the merge knows what it got.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable

import triton
import triton.language as tl

#: the pingpong kernel stops spinning after this long (globaltimer ns) whatever the host does
SPIN_TIMEOUT_NS = 200_000_000
#: the host gives up on a round after this long (s)
HOST_TIMEOUT_S = 0.2
METHODS = ("auto", "pingpong", "bracket", "none")


@triton.jit
def _now():
    return tl.inline_asm_elementwise("mov.u64 $0, %globaltimer;", "=l", [], dtype=tl.int64, is_pure=False,
                                     pack=1)


@triton.jit
def _fence_system():
    # make this thread's stores to host memory visible before the next ones (and to the host)
    return tl.inline_asm_elementwise("fence.sc.sys;\n\tmov.u32 $0, 0;", "=r", [], dtype=tl.int32,
                                     is_pure=False, pack=1)


@triton.jit
def _store_now_kernel(out_ptr):
    tl.store(out_ptr, _now())


@triton.jit
def _pingpong_kernel(box_ptr, rounds, timeout_ns):
    start = _now()
    for k in range(rounds):
        want = (k + 1).to(tl.int64)
        seen = tl.load(box_ptr, volatile=True)
        now = _now()
        while (seen < want) & (now - start < timeout_ns):
            seen = tl.load(box_ptr, volatile=True)
            now = _now()
        recv = tl.where(seen >= want, _now(), -1)
        tl.store(box_ptr + 1 + 2 * k, recv)
        _fence_system()
        tl.store(box_ptr + 2 + 2 * k, tl.where(seen >= want, _now(), -1))
        _fence_system()


def _pingpong(rounds: int, clock: Callable[[], int]) -> list[list[int]]:
    import torch
    box = torch.zeros(1 + 2 * rounds, dtype=torch.int64, pin_memory=True)
    view = box.numpy()
    torch.cuda.synchronize()
    _pingpong_kernel[(1,)](box, rounds, SPIN_TIMEOUT_NS, num_warps=1)
    out = []
    try:
        for k in range(rounds):
            send = clock()
            view[0] = k + 1
            deadline = time.monotonic() + HOST_TIMEOUT_S
            while view[2 + 2 * k] == 0 or view[1 + 2 * k] == 0:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"no answer from the GPU in round {k}")
            recv = clock()
            if view[1 + 2 * k] < 0:
                raise TimeoutError(f"the GPU gave up waiting in round {k}")
            out.append([send, int(view[1 + 2 * k]), int(view[2 + 2 * k]), recv])
    finally:
        view[0] = rounds + 1  # let a kernel still spinning go
        torch.cuda.synchronize()
    return out


def _bracket(rounds: int, clock: Callable[[], int]) -> list[list[int]]:
    import torch
    g = torch.zeros(rounds, dtype=torch.int64, device="cuda")
    _store_now_kernel[(1,)](g, num_warps=1)  # compiled and loaded before the first timed round
    torch.cuda.synchronize()
    hosts = []
    for k in range(rounds):
        before = clock()
        _store_now_kernel[(1,)](g[k:], num_warps=1)
        torch.cuda.synchronize()
        hosts.append((before, clock()))
    gs = g.tolist()
    return [[h0, t, t, h1] for (h0, h1), t in zip(hosts, gs, strict=True)]


def probe(rounds: int = 8, method: str = "auto", clock: Callable[[], int] = time.time_ns
          ) -> tuple[str, list[list[int]]]:
    """``(method used, samples)`` of this process's current GPU; ``("none", [])`` without one."""
    import torch
    if method == "none" or not torch.cuda.is_available():
        return "none", []
    if method in ("auto", "pingpong"):
        try:
            return "pingpong", _pingpong(rounds, clock)
        except Exception as e:  # noqa: BLE001 - any failure of the fast probe falls back to the simple one
            if method == "pingpong":
                raise
            warnings.warn(f"kperf: the pingpong GPU clock probe failed ({type(e).__name__}: {e}); "
                          "using the bracket probe (a wider error bound)", stacklevel=2)
    return "bracket", _bracket(rounds, clock)
