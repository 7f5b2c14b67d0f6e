"""This package's own benchmark loop (used when tritonbench is not importable, or with --standalone).

Per shape of the sweep plan: random inputs (seeded), then per variant: one call (compiles, and the
output is checked against PyTorch SDPA in float32 when ``accuracy`` is asked for), the latency
(``bench_ms``: ``triton.testing.do_bench``, or replayed from a CUDA graph with ``--cudagraph``),
TFLOPS from tritonbench's FLOP count, speedup over
the baseline (``sdpa_cudnn`` when it runs, else the first variant), and the ``kperf`` metric.  A
variant that fails at one shape gets its error in the table and the run goes on (tritonbench's
``--keep-going``).
"""

from __future__ import annotations

import json
import pathlib
import time

from kperf.dialect.errors import KperfError

from . import args as cli
from .kperf_metric import profile_variant
from .variants import select

TOLERANCE = {"fp16": 1e-2, "bf16": 2e-2}  # max |out - SDPA fp32| on N(0, 1) inputs


def bench_ms(fn, *, warmup: float, rep: float, cudagraph: bool = False) -> float:
    """Median milliseconds of one call of ``fn``.

    Default: ``triton.testing.do_bench`` (CUDA events around each call, L2 flushed before it).  The flush
    keeps the GPU busy while the host prepares the call, but a call whose host side (argument binding,
    descriptors, launch) outlasts it is timed with part of its host time: short sequences, for the Gluon
    pipelines.  ``cudagraph``: ``triton.testing.do_bench_cudagraph`` (tritonbench's ``--cudagraph``): the
    calls replay from one CUDA graph, so no host time, and L2 is not flushed between them.
    """
    import triton
    if cudagraph:
        return triton.testing.do_bench_cudagraph(fn, rep=rep, return_mode="median")
    return triton.testing.do_bench(fn, warmup=warmup, rep=rep, return_mode="median")


def _inputs(shape: cli.Shape, dtype: str, seed: int):
    import torch
    gen = torch.Generator(device="cuda").manual_seed(seed)
    dt = {"fp16": torch.float16, "bf16": torch.bfloat16}[dtype]
    return tuple(torch.randn(shape.x_val(), device="cuda", dtype=dt, generator=gen) for _ in range(3))


def _reference(q, k, v, causal: bool, sm_scale: float):
    import torch
    from torch.nn.attention import SDPBackend, sdpa_kernel
    with sdpa_kernel([SDPBackend.MATH]):
        return torch.nn.functional.scaled_dot_product_attention(q.float(), k.float(), v.float(),
                                                                is_causal=causal, scale=sm_scale)


def bench_shape(shape: cli.Shape, variants, args, out_dir: pathlib.Path) -> dict:
    """Every metric of every variant at one shape: ``{variant: {metric: value}}``."""
    sm_scale = args.sm_scale if args.sm_scale is not None else cli.default_sm_scale(shape.d_head)
    q, k, v = _inputs(shape, args.precision, seed=0)
    ref = _reference(q, k, v, args.causal, sm_scale) if "accuracy" in args.metrics else None
    timed = {"latency", "tflops", "speedup"} & set(args.metrics)
    results: dict[str, dict] = {}
    for var in variants:
        m: dict = {}
        try:
            fn = var.make(q, k, v, args.causal, sm_scale)
            out = fn()
            if ref is not None:
                err = (out.float() - ref).abs().max().item()
                m["max_abs_err"] = err
                m["accuracy"] = bool(err <= TOLERANCE[args.precision])
            if timed:
                ms = bench_ms(fn, warmup=args.warmup, rep=args.rep, cudagraph=args.cudagraph)
                m["latency"] = ms
                m["tflops"] = cli.flops(shape, args.causal) / (ms * 1e-3) / 1e12
            if "kperf" in args.metrics:
                if var.profilable:
                    info = profile_variant(var, shape, dtype=args.precision, causal=args.causal,
                                           sm_scale=sm_scale, out_dir=out_dir / "kperf",
                                           trace_ctas=args.kperf_trace_ctas, max_mb=args.kperf_max_mb)
                    info.pop("profile")
                    m["kperf"] = info["dir"]
                    m["kperf_info"] = info
                else:
                    m["kperf"] = "n/a (not a Triton kernel)"
        except Exception as e:  # one failing variant must not stop the sweep; its error goes in the table
            import torch
            oom = isinstance(e, torch.cuda.OutOfMemoryError)
            m["error_msg"] = "CUDA OOM" if oom else f"{type(e).__name__}: {e}"
        results[var.name] = m
    if "speedup" in args.metrics:
        base = "sdpa_cudnn" if "sdpa_cudnn" in results else variants[0].name
        b = results[base].get("latency")
        for m in results.values():
            m["speedup"] = b / m["latency"] if b and m.get("latency") else None
    return results


def format_table(rows: list[dict], metrics: list[str], csv: bool = False) -> str:
    """tritonbench's layout: one row per x value, one column per ``<variant>-<metric>``."""
    if not rows:
        return "(no results)"
    variants = list(rows[0]["results"])
    shown = [m for m in metrics if m != "kperf"] + (["kperf"] if "kperf" in metrics else [])
    headers = ["(Batch, Heads, SeqLen, Dhead)"] + [f"{v}-{m}" for v in variants for m in shown]
    body = []
    for row in rows:
        cells = [str(tuple(row["x_val"]))]
        for v in variants:
            r = row["results"][v]
            for m in shown:
                if "error_msg" in r and m not in r:
                    cells.append(f"error: {r['error_msg'][:60]}")
                    continue
                val = r.get(m)
                cells.append("" if val is None else f"{val:.3f}" if isinstance(val, float) else str(val))
        body.append(cells)
    if csv:
        return "\n".join(";".join(r) for r in [headers] + body)
    widths = [max(len(r[i]) for r in [headers] + body) for i in range(len(headers))]
    return "\n".join("  ".join(c.rjust(w) for c, w in zip(r, widths, strict=True)) for r in [headers] + body)


def run(args) -> dict:
    """Run the plan; write ``results.json`` and ``table.txt`` under ``args.output_dir``; return the
    results."""
    import torch
    if not torch.cuda.is_available():
        raise KperfError("the benchmark needs a CUDA GPU (none found)",
                         fix="run it on a Hopper GPU; without one, the CPU tests compile every variant")
    plan = cli.sweep_plan(args)
    variants = select(args.only, args.skip)
    out_dir = pathlib.Path(args.output_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = []
    t0 = time.time()
    for shape in plan.shapes:
        res = bench_shape(shape, variants, args, out_dir)
        rows.append({"x_val": list(shape.x_val()), "causal": args.causal, "results": res})
        summary = ", ".join(
            f"{v} {r['tflops']:.0f}" if r.get("tflops") else f"{v} {r.get('error_msg', '-')[:40]}"
            for v, r in res.items())
        print(f"[{time.time() - t0:7.1f}s] {shape.tag}" + ("_causal" if args.causal else "") + ": " + summary,
              flush=True)
    doc = {"op": args.op, "precision": args.precision, "causal": args.causal, "metrics": args.metrics,
           "cudagraph": args.cudagraph,
           "device": torch.cuda.get_device_name(), "torch": torch.__version__,
           "skipped_shapes": [s.x_val() for s in plan.skipped], "rows": rows}
    (out_dir / "results.json").write_text(json.dumps(doc, indent=1, default=str))
    table = format_table(rows, args.metrics, csv=args.csv)
    (out_dir / "table.txt").write_text(table + "\n")
    print(table)
    return doc
