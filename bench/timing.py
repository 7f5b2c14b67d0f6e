"""How the benchmarks time things, in one place, so every number in bench/results is taken the same way.

Device time of a kernel comes from the torch profiler (CUPTI): only the kernel's own execution counts,
not the host work of a profiler between launches (kperf's buffer copies, Proton's hooks), nor the
memset of a profile buffer, which is a kernel of another name.  A launch is picked out by its kernel's
name (a prefix: Triton names the CUDA function after the ``@jit`` function).  CUDA events around a
call measure what a caller waits for instead, the profiler's launch-side work included.

Host times are ``time.perf_counter`` deltas; the first run in a process (page faults, caches warming)
is kept apart from the best of the repeats.  Every results file also records what it was measured on
(``run_info``).
"""

from __future__ import annotations

import datetime
import platform
import statistics
import sys
import time

import numpy as np

_START = time.time()  # when the first benchmark module loaded: log() counts from here

# -- device time ------------------------------------------------------------------------------------------

def device_times_ms(fn, n: int, name: str) -> list[float]:
    """Kernel-only device times (ms) of ``n`` calls of ``fn``, from the torch profiler.

    Each call must launch exactly one kernel whose name starts with ``name``; anything else raises.
    """
    return interleaved_device_times_ms({"": fn}, n, name)[""]


def interleaved_device_times_ms(fns: dict, n: int, name: str) -> dict[str, list[float]]:
    """Kernel-only device times (ms) of ``n`` cycles, each calling every one of ``fns`` once (the order
    rotated per cycle), from one torch profiler capture: ``{key: [time of cycle 0, ...]}``.

    Adjacent launches run at nearly the same SM clock, so the ratio of a variant's time to the plain
    kernel's in the same cycle cancels a clock that a power cap moves over tens of milliseconds (an
    8192^3 GEMM on an H100 at its cap: 1410-1980 MHz within a second), which medians of separate runs of
    ``n`` launches each do not.  Each call must launch exactly one kernel whose name starts with
    ``name``, on one stream (their order of execution is their order of launch)."""
    import torch
    from torch.profiler import ProfilerActivity, profile
    keys = list(fns)
    seq = []
    with profile(activities=[ProfilerActivity.CUDA]) as p:
        for i in range(n):
            for k in keys[i % len(keys):] + keys[:i % len(keys)]:
                fns[k]()
                seq.append(k)
        torch.cuda.synchronize()
    kernels = sorted((e for e in p.events() if e.name.startswith(name) and e.device_time > 0),
                     key=lambda e: e.time_range.start)
    if len(kernels) != len(seq):
        raise RuntimeError(f"expected {len(seq)} {name} kernels in the profile, found {len(kernels)}")
    out: dict[str, list[float]] = {k: [] for k in keys}
    for k, e in zip(seq, kernels, strict=True):
        out[k].append(e.device_time / 1e3)
    return out


def paired_overhead(variant_ms: list[float], plain_ms: list[float]) -> float:
    """Median over cycles of the variant's time over the plain kernel's in the same cycle, minus 1."""
    return float(np.median(np.asarray(variant_ms) / np.asarray(plain_ms))) - 1


def cuda_event_ms(fn, n: int) -> list[float]:
    """Milliseconds between CUDA events recorded before and after each of ``n`` calls of ``fn``."""
    import torch
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    out = []
    for _ in range(n):
        start.record()
        fn()
        end.record()
        end.synchronize()
        out.append(start.elapsed_time(end))
    return out


def iqr(xs) -> float:
    """Interquartile range: the spread reported next to every median."""
    q1, q3 = np.percentile(xs, [25, 75])
    return float(q3 - q1)


def against_plain(times_ms, plain_ms: float, prefix: str = "") -> dict:
    """``<prefix>ms_median``, ``<prefix>ms_iqr`` and ``<prefix>overhead`` (median / ``plain_ms`` - 1)."""
    med = statistics.median(times_ms)
    return {f"{prefix}ms_median": med, f"{prefix}ms_iqr": iqr(times_ms),
            f"{prefix}overhead": med / plain_ms - 1}


# -- host time --------------------------------------------------------------------------------------------

def first_and_best(fn, repeat: int) -> tuple[float, float, object]:
    """Seconds of the first of ``repeat`` calls of ``fn``, of the fastest, and the last call's result."""
    times, out = [], None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return times[0], min(times), out


def per_call_us(fn, calls: int) -> float:
    """Host microseconds per call over ``calls`` back-to-back calls (no synchronisation)."""
    t = time.perf_counter()
    for _ in range(calls):
        fn()
    return (time.perf_counter() - t) / calls * 1e6


def log(msg: str) -> None:
    """Print ``msg`` after the seconds since the benchmark started (progress of runs that take minutes)."""
    print(f"[{time.time() - _START:7.1f}s] {msg}", flush=True)


# -- what a result was measured on ------------------------------------------------------------------------

def run_info(argv: list[str] | None = None) -> dict:
    """Device, date, versions and the command line, for the head of a results file."""
    import torch
    import triton
    args = argv if argv is not None else sys.argv[1:]
    return {"device": torch.cuda.get_device_name(), "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
            "command": "python3 " + " ".join([command_name()] + list(args)),
            "torch": torch.__version__, "triton": triton.__version__, "python": platform.python_version()}


def cpu_run_info(argv: list[str] | None = None) -> dict:
    """Machine, date and command line of a CPU-only benchmark, for the head of its results file."""
    from bench.host_throughput import machine
    args = argv if argv is not None else sys.argv[1:]
    return {"machine": machine(), "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
            "command": "python3 " + " ".join([command_name()] + list(args))}


def command_name() -> str:
    """How this benchmark was started: ``-m bench.<name>`` when run as a module."""
    main = sys.modules.get("__main__")
    spec = getattr(main, "__spec__", None)
    return f"-m {spec.name}" if spec is not None and spec.name else sys.argv[0]
