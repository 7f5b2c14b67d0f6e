"""Accuracy of kperf's timings on work of known length, and the cost of one record.

A calibration kernel (Triton DSL, 4 warps, one element per thread) runs ``--reps`` times per warp:

- scope ``empty``: an end record right after a start record (reported: the end record's clock read
  waits behind the start record's store, so it measures more than records cost around real work);
- scope ``fma``: a chain of ``N`` dependent ``fma.rn.f32`` in inline asm, bracketed inside the same asm
  block by two ``%clock`` reads whose difference is stored: kperf's duration of the scope must match
  that in-asm length (plus the cost of one record, which ``record_cost`` subtracts).  The in-asm
  bracket is the reference, not a nominal latency: a dependent FMA takes 4 cycles, but an unrolled
  chain longer than the instruction cache adds fetch stalls (on an H100, 1024 FMAs took ~6.2 cycles
  each), and both measurements see those;
- scope ``sleep``: ``nanosleep`` bracketed, inside the same asm block, by two ``%globaltimer`` reads
  whose difference is stored: kperf's duration in ns (SM cycles through the measured clock rate)
  must match it.

and kernel time: the trace span of a profiled 8192^3 GEMM (earliest CTA entry to latest CTA exit,
globaltimer) against the CUPTI device time of the same launch.

    python3 -m bench.calibration --out bench/results/calibration      # writes calibration.json
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import statistics
import sys

import numpy as np
import triton
import triton.language as tl

import kperf
from bench.timing import cuda_event_ms, device_times_ms, run_info

NUM_WARPS = 4
BLOCK = 32 * NUM_WARPS


def fma_chain_asm(n: int) -> str:
    """Outputs: $0 the chain's result, $1 its length in cycles by %clock; inputs: $2 x, $3 y."""
    return ("{ .reg .u32 ca, cb;\n mov.u32 ca, %clock;\n mov.b32 $0, $2;\n"
            + " fma.rn.f32 $0, $0, $3, $3;\n" * n
            + " mov.u32 cb, %clock;\n sub.u32 $1, cb, ca; }")


def sleep_asm(ns: int) -> str:
    return ("{ .reg .u64 ta, tb;\n mov.u64 ta, %globaltimer;\n"
            f" nanosleep.u32 {ns};\n"
            " mov.u64 tb, %globaltimer;\n sub.u64 tb, tb, ta;\n cvt.u32.u64 $0, tb; }")


@triton.jit
def calibration_kernel(out_ptr, gt_ptr, fc_ptr, x0, FMA_ASM: tl.constexpr, SLEEP_ASM: tl.constexpr,
                       REPS: tl.constexpr, BLOCK: tl.constexpr):
    pid = tl.program_id(0)
    offs = tl.arange(0, BLOCK)
    x = tl.zeros([BLOCK], tl.float32) + x0
    y = x * 0.5 + 1.0
    for r in range(REPS):
        with kperf.scope("empty"):
            pass
        with kperf.scope("fma"):
            x, c = tl.inline_asm_elementwise(FMA_ASM, "=f,=r,f,f", [x, y], dtype=(tl.float32, tl.int32),
                                             is_pure=False, pack=1)
        with kperf.scope("sleep"):
            g = tl.inline_asm_elementwise(SLEEP_ASM, "=r,f", [x], dtype=tl.int32, is_pure=False, pack=1)
        tl.store(gt_ptr + (pid * REPS + r) * BLOCK + offs, g)
        tl.store(fc_ptr + (pid * REPS + r) * BLOCK + offs, c)
    tl.store(out_ptr + pid * BLOCK + offs, x)


def scope_cycles(dec, name: str) -> np.ndarray:
    """Durations (cycles) of every interval of scope ``name``."""
    iv, _ = dec.intervals()
    sid = {v: k for k, v in dec.scopes.items()}[name]
    sel = iv[iv["scope"] == sid]
    return (sel["end_cycles"] - sel["start_cycles"]).astype(np.int64), sel


def calibrate(config: dict | None = None, n_fma=(256, 1024, 4096), sleep_ns: int = 20000, reps: int = 8,
              ctas: int = 264, cost_fma=(64, 128)) -> dict:
    """Run the calibration kernel under ``ProfileConfig(**config)``; returns the measured errors.

    The record cost is measured on short chains (``cost_fma``: kperf's interval minus the in-asm
    bracket) and checked on the others (``n_fma``), so the corrected errors are not circular."""
    import torch
    cfg = kperf.ProfileConfig(**(config or {}))
    out = {"config": cfg.to_mode().split(",code=")[0], "fma": {}, "cost_fma": {}}
    costs, back_to_back = [], []
    for n in (*cost_fma, *n_fma):
        k = kperf.profile(calibration_kernel, config=cfg)
        o = torch.empty(ctas * BLOCK, device="cuda", dtype=torch.float32)
        gt = torch.zeros(ctas * reps * BLOCK, device="cuda", dtype=torch.int32)
        fc = torch.zeros(ctas * reps * BLOCK, device="cuda", dtype=torch.int32)
        k[(ctas,)](o, gt, fc, 1.0, FMA_ASM=fma_chain_asm(n), SLEEP_ASM=sleep_asm(sleep_ns), REPS=reps,
                   BLOCK=BLOCK, num_warps=NUM_WARPS)
        torch.cuda.synchronize()
        (dec,) = kperf.results(k).decoded()
        assert dec.lost_total == 0 and not dec.problems, dec.summary()
        empty, _ = scope_cycles(dec, "empty")
        fma, _ = scope_cycles(dec, "fma")
        back_to_back.append(float(np.median(empty)))
        # the reference: the chain's own %clock bracket (lane 0 of each warp), median over all
        want = float(np.median(fc.view(ctas, reps, NUM_WARPS, 32)[:, :, :, 0].cpu().numpy()))
        if n in cost_fma and n not in n_fma:
            costs.append(float(np.median(fma)) - want)  # what the records add to an interval around work
            out["cost_fma"][n] = {"median_cycles": float(np.median(fma)), "in_asm_cycles": want}
            continue
        out["fma"][n] = {"median_cycles": float(np.median(fma)), "expected_cycles": want,
                         "in_asm_cycles_per_fma": want / n,
                         "error": float(np.median(fma)) / want - 1,
                         "p05_p95": [float(np.percentile(fma, 5)), float(np.percentile(fma, 95))]}
        if n == n_fma[-1]:
            # sleep: kperf ns (cycles through the fitted SM clock) vs the in-asm globaltimer delta
            _, sl = scope_cycles(dec, "sleep")
            kperf_ns = sl["end_ns"] - sl["start_ns"]
            truth = gt.view(ctas, reps, NUM_WARPS, 32)[:, :, :, 0].cpu().numpy().astype(np.float64)
            # intervals are sorted by (cta, warp, start seq): reorder the truth the same way
            t = truth.transpose(0, 2, 1).reshape(-1)
            ratio = kperf_ns / t
            out["sleep"] = {"requested_ns": sleep_ns, "globaltimer_ns_median": float(np.median(t)),
                            "kperf_ns_median": float(np.median(kperf_ns)),
                            "error_median": float(np.median(ratio) - 1),
                            "error_p05_p95": [float(np.percentile(ratio, 5) - 1),
                                              float(np.percentile(ratio, 95) - 1)],
                            "clock_ghz": dec.clock_ghz}
    # the record cost: kperf's interval minus the in-asm bracket of the same work.  An empty scope
    # (end right after start) measures more: the end record's clock read waits behind the start
    # record's store, which real work hides; it is reported, not used.
    out["record_cost_cycles"] = statistics.median(costs)
    out["empty_scope_cycles"] = statistics.median(back_to_back)
    for n in n_fma:
        r = out["fma"][n]
        corrected = r["median_cycles"] - out["record_cost_cycles"]
        r["error_after_subtracting"] = corrected / r["expected_cycles"] - 1
    if len(n_fma) >= 2:
        slope, icept = np.polyfit(list(n_fma), [out["fma"][n]["median_cycles"] for n in n_fma], 1)
        out["fma_fit"] = {"cycles_per_fma": float(slope), "intercept_cycles": float(icept)}
    return out


def kernel_time(config: dict | None = None, size: int = 8192) -> dict:
    """Trace span of one profiled GEMM launch vs its CUPTI device time (and the plain kernel's)."""
    import torch

    from kperf.examples import matmul as mm
    cfg = kperf.ProfileConfig(**{"capacity": 520, **(config or {})})
    a = torch.randn(size, size, device="cuda", dtype=torch.float16)
    b = torch.randn(size, size, device="cuda", dtype=torch.float16)
    k = kperf.profile(mm.matmul_kernel, config=cfg)
    mm.matmul(a, b, kernel=k)  # compile and warm up
    torch.cuda.synchronize()
    k.reset()
    (dev,) = device_times_ms(lambda: mm.matmul(a, b, kernel=k), 1, "matmul_kernel")
    (dec,) = kperf.results(k).decoded()
    span_ms = dec.duration_ns / 1e6
    # CUDA events around the plain kernel, for reference (no profile buffer memset inside the window)
    mm.matmul(a, b)
    ev = cuda_event_ms(lambda: mm.matmul(a, b), 5)
    return {"config": cfg.to_mode().split(",code=")[0], "trace_span_ms": span_ms, "cupti_kernel_ms": dev,
            "error_vs_cupti": span_ms / dev - 1, "plain_cuda_event_ms_median": statistics.median(ev),
            "problems": dec.problems}


VARIANTS = {"check": {"fold": False}, "default": {}, "smem-fold": {"store": "auto", "fold": True},
            "clock64": {"clock": "clock64"}}


def main(argv=None) -> int:
    import torch
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, help="output directory (calibration.json)")
    p.add_argument("--variants", default=",".join(VARIANTS))
    args = p.parse_args(argv)
    if not torch.cuda.is_available():
        raise SystemExit("bench.calibration needs a CUDA GPU")
    res = {**run_info(argv), "capability": list(torch.cuda.get_device_capability()), "variants": {}}
    print(f"{'variant':<11} {'record cost':>11} {'empty':>6} {'cyc/FMA':>8} " +
          " ".join(f"{'fma' + str(n):>9}" for n in (256, 1024, 4096)) +
          f" {'256-cost':>9} {'sleep':>8} {'span':>8}")
    for name in args.variants.split(","):
        c = calibrate(VARIANTS[name])
        kt = kernel_time(VARIANTS[name])
        res["variants"][name] = {"calibration": c, "kernel_time": kt}
        print(f"{name:<11} {c['record_cost_cycles']:>11.1f} {c['empty_scope_cycles']:>6.0f} "
              f"{c['fma_fit']['cycles_per_fma']:>8.3f} " +
              " ".join(f"{c['fma'][n]['error']:>+9.2%}" for n in (256, 1024, 4096)) +
              f" {c['fma'][256]['error_after_subtracting']:>+9.2%}" +
              f" {c['sleep']['error_median']:>+8.2%} {kt['error_vs_cupti']:>+8.2%}")
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "calibration.json").write_text(json.dumps(res, indent=1, default=float) + "\n")
    print(f"wrote {out / 'calibration.json'}")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
