"""kperf's own host time per profiled launch, without a GPU: the Python kperf adds around a launch.

Two parts, each timed over many calls on this machine's CPU:

- ``launch``: ``kernel[grid](...)`` of a ``kperf.profile`` kernel down to Triton's ``JITFunction.run``,
  which is replaced by a no-op (kperf's wrapper, the capture stack, the instrumentation-mode knob set and
  restored, sampling's check);
- ``exit``: the launch-exit hook for that launch with its profile buffer (a host tensor here): which
  captures take it, the launch record, the device-held bookkeeping.

What Triton's launch, the buffer's allocation and memset and CUDA's own calls cost is not in these
numbers (bench/session_scale.py measures the whole on a GPU).

    python3 -m bench.launch_host_cost [--calls 20000]
"""

from __future__ import annotations

import argparse
import time


def _per_call_us(fn, calls: int) -> float:
    fn(calls // 10)  # warm-up
    t = time.perf_counter()
    fn(calls)
    return (time.perf_counter() - t) / calls * 1e6


def launch_us(calls: int) -> float:
    import kperf
    from bench.session_scale import _kernel
    from kperf import launch_paths
    from kperf.runtime import DISPATCHER
    k = kperf.profile(_kernel())  # bench/session_scale.py's kernel
    DISPATCHER.activate()
    saved = launch_paths._originals["jit_run"]
    launch_paths._originals["jit_run"] = lambda self, *args, **kwargs: None  # Triton's part left out
    try:
        def loop(n):
            for _ in range(n):
                k[(1,)](None, None, None, 0, BLOCK=16)
        return _per_call_us(loop, calls)
    finally:
        launch_paths._originals["jit_run"] = saved
        DISPATCHER.deactivate()


def exit_us(calls: int) -> float:
    import torch

    from kperf import copy_out
    from kperf.dialect.layout import Geometry
    from kperf.dialect.scope_table import ScopeTable
    from kperf.runtime import Capture, Dispatcher, KernelInfo
    d, cap = Dispatcher(), Capture(memory_budget=None)
    d.push_kernel_capture(cap)
    g = Geometry(4, 6)
    d._kernels[7] = KernelInfo("k", "h", ScopeTable.from_json([]), g, "keep-first", 6)
    buf = torch.zeros(1024 * g.cta_bytes, dtype=torch.uint8)
    md = {"function": 7, "name": "k", "stream": 0}
    held, copy_out.HELD = copy_out.HELD, copy_out.DeviceHeld()  # the process's own held launches untouched
    try:
        def loop(n):
            for _ in range(n):
                d._tls.pending = buf
                d._on_launch_exit(md)
            assert len(cap.launches) == n and copy_out.HELD.bytes == n * buf.numel()
            copy_out.HELD = copy_out.DeviceHeld()
            cap.launches.clear()
        return _per_call_us(loop, calls)
    finally:
        copy_out.HELD = held


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--calls", type=int, default=20000)
    args = ap.parse_args(argv)
    a, b = launch_us(args.calls), exit_us(args.calls)
    print(f"launch {a:.1f} us + exit hook {b:.1f} us = {a + b:.1f} us of kperf's Python per profiled launch")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
