"""Kernel-time overhead of kperf vs upstream Proton on the fp16 GEMM, side by side in one run.

fp16 GEMM M=N=K=8192 (128x128x64 tiles, 8 warps, 3 stages), two scopes ("load", "mma") = 4 records
per K iteration on every warp.  The same kernel source is compiled three ways: plain (kperf off: the
scope carriers are PTX comments), kperf (default config), and Proton instrumentation (Triton-DSL
semantic enabled, default mode).  Kernel-only device times come from the torch profiler (CUPTI), so
the host work of either profiler between launches is not counted; medians of ``--reps`` launches,
plain and kperf interleaved.

    python3 -m bench.gemm_overhead --out bench/results/gemm_overhead.json
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import statistics
import sys
import tempfile
import time

from bench.kernel_source import import_source
from bench.timing import device_times_ms, run_info

TEMPLATE = '''
import triton
import triton.language as tl
{imports}


@triton.jit
def gemm_{tag}(a_ptr, b_ptr, c_ptr, M, N, K, stride_am, stride_bk, stride_cm,
               BM: tl.constexpr, BN: tl.constexpr, BK: tl.constexpr, GROUP_M: tl.constexpr):
    pid = tl.program_id(0)
    num_pid_m = tl.cdiv(M, BM)
    num_pid_n = tl.cdiv(N, BN)
    group = GROUP_M * num_pid_n
    first_m = (pid // group) * GROUP_M
    size_m = min(num_pid_m - first_m, GROUP_M)
    pid_m = first_m + (pid % group) % size_m
    pid_n = (pid % group) // size_m
    rm = (pid_m * BM + tl.arange(0, BM)) % M
    rn = (pid_n * BN + tl.arange(0, BN)) % N
    rk = tl.arange(0, BK)
    a_ptrs = a_ptr + rm[:, None] * stride_am + rk[None, :]
    b_ptrs = b_ptr + rk[:, None] * stride_bk + rn[None, :]
    acc = tl.zeros((BM, BN), dtype=tl.float32)
    for k in range(0, tl.cdiv(K, BK)):
        with {scope}("load"):
            a = tl.load(a_ptrs)
            b = tl.load(b_ptrs)
        with {scope}("mma"):
            acc = tl.dot(a, b, acc)
        a_ptrs += BK
        b_ptrs += BK * stride_bk
    c_ptrs = c_ptr + rm[:, None] * stride_cm + rn[None, :]
    tl.store(c_ptrs, acc.to(tl.float16))
'''


def load_kernel(tag: str, imports: str, scope: str, tmp: pathlib.Path):
    """The GEMM kernel ``gemm_<tag>`` with ``scope`` as its scope call (``kperf.scope`` or ``pl.scope``)."""
    mod = import_source(TEMPLATE.format(tag=tag, imports=imports, scope=scope), f"_bench_gemm_{tag}", tmp)
    return getattr(mod, f"gemm_{tag}")


def launch(kernel, a, b, c, size):
    import triton
    grid = (triton.cdiv(size, 128) * triton.cdiv(size, 128),)
    kernel[grid](a, b, c, size, size, size, a.stride(0), b.stride(0), c.stride(0), BM=128, BN=128, BK=64,
                 GROUP_M=8, num_warps=8, num_stages=3)


def main(argv=None) -> int:
    import torch

    import kperf

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size", type=int, default=8192)
    p.add_argument("--reps", type=int, default=20)
    p.add_argument("--rounds", type=int, default=3, help="alternating plain/kperf rounds")
    p.add_argument("--no-proton", action="store_true")
    p.add_argument("--out", default=None, help="JSON results file")
    args = p.parse_args(argv)

    tmp = pathlib.Path(tempfile.mkdtemp(prefix="kperf_bench_"))
    kperf_src = load_kernel("kperf", "import kperf", "kperf.scope", tmp)
    profiled = kperf.profile(kperf_src)
    S = args.size
    torch.manual_seed(0)
    a = torch.randn(S, S, device="cuda", dtype=torch.float16)
    b = torch.randn(S, S, device="cuda", dtype=torch.float16)
    c_plain = torch.empty(S, S, device="cuda", dtype=torch.float16)
    c_kperf = torch.empty_like(c_plain)

    launch(kperf_src, a, b, c_plain, S)
    launch(profiled, a, b, c_kperf, S)
    torch.cuda.synchronize()
    identical = bool(torch.equal(c_plain, c_kperf))
    profiled.reset()

    plain_ms, kperf_ms = [], []
    for _ in range(args.rounds):
        plain_ms += device_times_ms(lambda: launch(kperf_src, a, b, c_plain, S), args.reps, "gemm_kperf")
        kperf_ms += device_times_ms(lambda: launch(profiled, a, b, c_kperf, S), args.reps, "gemm_kperf")

    result = {
        **run_info(argv),
        "gemm": {"M": S, "N": S, "K": S, "tiles": "128x128x64", "num_warps": 8, "num_stages": 3,
                 "records_per_k_iteration": 4},
        "plain_ms_median": statistics.median(plain_ms),
        "kperf_ms_median": statistics.median(kperf_ms),
        "plain_ms_all": plain_ms, "kperf_ms_all": kperf_ms,
        "kperf_overhead": statistics.median(kperf_ms) / statistics.median(plain_ms) - 1,
        "kperf_output_identical": identical,
        **host_side(profiled.launches[-1], tmp, S),
    }

    if not args.no_proton:
        try:
            result.update(run_proton(a, b, S, args.reps, tmp, c_plain))
        except Exception as e:  # report, never hide
            result["proton_error"] = f"{type(e).__name__}: {e}"
    if "proton_ms_median" in result:
        result["proton_overhead"] = result["proton_ms_median"] / result["plain_ms_median"] - 1
        result["kperf_over_proton_overhead_ratio"] = result["kperf_overhead"] / result["proton_overhead"]

    if args.out:
        pathlib.Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        pathlib.Path(args.out).write_text(json.dumps(result, indent=2, default=float) + "\n")
    print_summary(result)
    return 0


def host_side(launch, tmp: pathlib.Path, S: int) -> dict:
    """The events of one profiled launch against the expected count, and the host's decode, pair and
    Chrome-trace times for it."""
    import kperf
    one = kperf.Profile([launch])
    t0 = time.perf_counter()
    (dec,) = one.decoded()
    t1 = time.perf_counter()
    iv, unmatched = dec.intervals()
    t2 = time.perf_counter()
    trace = pathlib.Path(tmp) / "gemm_trace.json"
    one.to_chrome_trace(trace)
    t3 = time.perf_counter()
    n_ctas = (S // 128) ** 2
    return {
        "kperf_events": int(len(dec.events)), "kperf_events_expected": n_ctas * 8 * 4 * (S // 64),
        "kperf_lost": int(dec.lost_total), "kperf_problems": dec.problems,
        "kperf_unmatched": int(len(unmatched)),
        "kperf_clock_ghz": dec.clock_ghz,
        "kperf_trace_span_ms": dec.duration_ns / 1e6,
        "host_decode_s": t1 - t0, "host_pair_s": t2 - t1, "host_chrome_trace_s": t3 - t2,
        "chrome_trace_bytes": trace.stat().st_size,
    }


def print_summary(result: dict) -> None:
    summary = {k: v for k, v in result.items() if not k.endswith("_all")}
    print(json.dumps(summary, indent=2, default=float))
    print(f"\n{'variant':<10} {'median ms':>10} {'overhead':>9}")
    print(f"{'plain':<10} {result['plain_ms_median']:>10.4f} {'':>9}")
    print(f"{'kperf':<10} {result['kperf_ms_median']:>10.4f} {result['kperf_overhead']:>+9.2%}")
    if "proton_ms_median" in result:
        print(f"{'proton':<10} {result['proton_ms_median']:>10.4f} {result['proton_overhead']:>+9.2%}")


def run_proton(a, b, S, n, tmp, c_ref):
    import torch
    import triton.profiler as proton
    import triton.profiler.language as pl
    pl.enable_semantic("triton")
    kernel = load_kernel("proton", "import triton.profiler.language as pl", "pl.scope", tmp)
    c = torch.empty_like(c_ref)
    proton.start(str(tmp / "proton_gemm"), backend="instrumentation")
    try:
        launch(kernel, a, b, c, S)
        torch.cuda.synchronize()
        identical = bool(torch.equal(c, c_ref))
        times = device_times_ms(lambda: launch(kernel, a, b, c, S), n, "gemm_proton")
        t0 = time.perf_counter()
    finally:
        proton.finalize()
    t1 = time.perf_counter()
    return {"proton_ms_median": statistics.median(times), "proton_ms_all": times,
            "proton_output_identical": identical, "proton_finalize_s": t1 - t0,
            "proton_launches_in_finalize": n + 1}


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
