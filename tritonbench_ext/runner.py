"""This package's own benchmark loop (used when tritonbench is not importable, or with --standalone),
and the operators it runs.

Per shape of the sweep plan: random inputs (seeded), then per variant: one call (compiles, and the
output is checked against PyTorch SDPA in float32 when ``accuracy`` is asked for), the latency
(``bench_ms``: ``triton.testing.do_bench``, or replayed from a CUDA graph with ``--cudagraph``),
TFLOPS from the operator's FLOP count, speedup over
the operator's baseline (when it runs, else the first variant), and the ``kperf`` metric.  A
variant that fails at one shape gets its error in the table and the run goes on (tritonbench's
``--keep-going``); one that does not run there by design (``variants.Skipped``) says so.

An :class:`Operator` holds what differs from one ``--op`` to another: the variants, the inputs, the
FLOP count, the reference, the ``kperf`` metric and what a row records (:data:`OPERATORS`:
``flash_attention``, whose FLOPs are tritonbench's; ``masked_attention``, ``masked.py``: visited key
blocks only, the ``kperf`` cell gives the launch's imbalance figures, baseline ``kperf_grid``).  The
loop, the timing and the table are the same for both.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import pathlib
import time
from collections.abc import Callable

from kperf.dialect.errors import KperfError

from . import args as cli
from . import masked
from .kperf_metric import profile_masked, profile_variant
from .variants import VARIANTS, Skipped, Variant, select

TOLERANCE = {"fp16": 1e-2, "bf16": 2e-2}  # max |out - SDPA fp32| on N(0, 1) inputs
X_LABEL = "(Batch, Heads, SeqLen, Dhead)"


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
    return tuple(torch.randn(shape.dims, device="cuda", dtype=dt, generator=gen) for _ in range(3))


def _reference(q, k, v, causal: bool, sm_scale: float):
    import torch
    from torch.nn.attention import SDPBackend, sdpa_kernel
    with sdpa_kernel([SDPBackend.MATH]):
        return torch.nn.functional.scaled_dot_product_attention(q.float(), k.float(), v.float(),
                                                                is_causal=causal, scale=sm_scale)


# --- operators ------------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Operator:
    """What one ``--op`` benchmarks; ``inputs`` below is what ``setup`` returns: the arguments of every
    variant's ``make``."""

    name: str
    variants: dict[str, Variant]
    baseline: str  # the speedup metric's reference when it runs (else the first variant)
    x_label: str  # the table's first column
    tritonbench: bool  # tritonbench has this operator: with tritonbench importable its loop runs it
    setup: Callable  # (shape, args) -> inputs, on the GPU
    flops: Callable  # (shape, args, inputs) -> FLOPs of one call
    reference: Callable  # (inputs, args) -> float32 reference output, or None where none is made
    profile: Callable  # (variant, shape, inputs, args, out_dir) -> the kperf metric's results entries
    row_info: Callable  # (shape, args, inputs) -> what a results row records next to ``results``
    run_info: Callable  # (args) -> what results.json records about the operator's own flags

    def select(self, only: list[str] | None, skip: list[str] = ()) -> list[Variant]:
        return select(only, skip, self.variants)


def _flash_setup(shape: cli.Shape, args: argparse.Namespace) -> tuple:
    sm_scale = args.sm_scale if args.sm_scale is not None else cli.default_sm_scale(shape.d_head)
    return (*_inputs(shape, args.precision, seed=0), args.causal, sm_scale)


def _kperf_entries(info: dict, cell) -> dict:
    info.pop("profile")
    return {"kperf": cell, "kperf_info": info}


def _flash_profile(var: Variant, shape: cli.Shape, inputs: tuple, args, out_dir: pathlib.Path) -> dict:
    if not var.profilable:
        return {"kperf": "n/a (not a Triton kernel)"}
    info = profile_variant(var, shape, dtype=args.precision, causal=inputs[3], sm_scale=inputs[4],
                           out_dir=out_dir / "kperf", trace_ctas=args.kperf_trace_ctas,
                           max_mb=args.kperf_max_mb)
    return _kperf_entries(info, info["dir"])


def _masked_profile(var: Variant, shape: cli.Shape, inputs: tuple, args, out_dir: pathlib.Path) -> dict:
    if not var.profilable:
        return {"kperf": "n/a (not a Triton kernel)"}
    info = profile_masked(var, shape, inputs[0], dtype=args.precision, out_dir=out_dir / "kperf",
                          trace_ctas=args.kperf_trace_ctas)
    return _kperf_entries(info, info.pop("cell"))


OPERATORS: dict[str, Operator] = {
    "flash_attention": Operator(
        name="flash_attention", variants=VARIANTS, baseline="sdpa_cudnn", x_label=X_LABEL, tritonbench=True,
        setup=_flash_setup, flops=lambda shape, args, inputs: cli.flops(shape, args.causal),
        reference=lambda inputs, args: _reference(*inputs), profile=_flash_profile,
        row_info=lambda shape, args, inputs: {"causal": args.causal},
        run_info=lambda args: {"causal": args.causal}),
    "masked_attention": Operator(
        name="masked_attention", variants=masked.MASKED_VARIANTS, baseline=masked.BASELINE,
        x_label=X_LABEL[:-1] + ", Mask)", tritonbench=False, setup=masked.setup,
        flops=lambda shape, args, inputs: masked.flops(shape, args, inputs[0].lists),
        reference=masked.reference, profile=_masked_profile, row_info=masked.row_info,
        run_info=masked.run_info),
}


# --- the loop ---------------------------------------------------------------------------------------------

def _check_device(var: Variant) -> None:
    import torch
    cap = torch.cuda.get_device_capability()
    if var.device == "hopper" and cap[0] < 9:
        raise KperfError(f"{var.name} needs a Hopper GPU (sm_90), found {torch.cuda.get_device_name()}, "
                         f"sm_{cap[0]}{cap[1]}", fix="run it on an H100 or H200")


def _measure(op: Operator, var: Variant, shape: cli.Shape, inputs: tuple, ref, fl: float, args,
             out_dir: pathlib.Path) -> dict:
    """Every metric of one variant at one shape (its error, or why it was skipped, in place of them)."""
    m: dict = {}
    try:
        _check_device(var)
        fn = var.make(*inputs)
        out = fn()
        if ref is not None and var.checked:
            err = (out.float() - ref).abs().max().item()
            m["max_abs_err"] = err
            m["accuracy"] = bool(err <= TOLERANCE[args.precision])
        if {"latency", "tflops", "speedup"} & set(args.metrics):
            ms = bench_ms(fn, warmup=args.warmup, rep=args.rep, cudagraph=args.cudagraph)
            m["latency"] = ms
            m["tflops"] = fl / (ms * 1e-3) / 1e12
        if "kperf" in args.metrics:
            m.update(op.profile(var, shape, inputs, args, out_dir))
    except Skipped as e:
        m["skipped"] = str(e)
    except Exception as e:  # one failing variant must not stop the sweep; its error goes in the table
        import torch
        oom = isinstance(e, torch.cuda.OutOfMemoryError)
        m["error_msg"] = "CUDA OOM" if oom else f"{type(e).__name__}: {e}"
    return m


def bench_shape(shape: cli.Shape, variants, args, out_dir: pathlib.Path, op: Operator | None = None) -> dict:
    """Every metric of every variant at one shape: the results row, ``{"x_val": ..., (the operator's row
    info), "results": {variant: {metric: value}}}``."""
    op = op or OPERATORS[args.op]
    inputs = op.setup(shape, args)
    ref = op.reference(inputs, args) if "accuracy" in args.metrics else None
    fl = op.flops(shape, args, inputs)
    results = {var.name: _measure(op, var, shape, inputs, ref, fl, args, out_dir) for var in variants}
    if "speedup" in args.metrics:
        base = op.baseline if op.baseline in results else variants[0].name
        b = results[base].get("latency")
        for m in results.values():
            m["speedup"] = b / m["latency"] if b and m.get("latency") else None
    return {"x_val": list(shape.x_val()), **op.row_info(shape, args, inputs), "results": results}


def format_table(rows: list[dict], metrics: list[str], csv: bool = False, x_label: str = X_LABEL) -> str:
    """tritonbench's layout: one row per x value, one column per ``<variant>-<metric>``."""
    if not rows:
        return "(no results)"
    variants = list(rows[0]["results"])
    shown = [m for m in metrics if m != "kperf"] + (["kperf"] if "kperf" in metrics else [])
    headers = [x_label] + [f"{v}-{m}" for v in variants for m in shown]
    body = []
    for row in rows:
        cells = [str(tuple(row["x_val"]))]
        for v in variants:
            r = row["results"][v]
            for m in shown:
                if "error_msg" in r and m not in r:
                    cells.append(f"error: {r['error_msg'][:60]}")
                    continue
                if "skipped" in r and m not in r:
                    cells.append(f"skipped: {r['skipped'][:60]}")
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
    op = OPERATORS[args.op]
    plan = cli.sweep_plan(args)
    variants = op.select(args.only, args.skip)
    out_dir = pathlib.Path(args.output_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = []
    t0 = time.time()
    for shape in plan.shapes:
        row = bench_shape(shape, variants, args, out_dir, op)
        rows.append(row)
        summary = ", ".join(
            f"{v} {r['tflops']:.0f}" if r.get("tflops") else
            f"{v} {r.get('error_msg', 'skipped' if 'skipped' in r else '-')[:40]}"
            for v, r in row["results"].items())
        print(f"[{time.time() - t0:7.1f}s] {shape.tag}" + ("_causal" if args.causal else "") + ": " + summary,
              flush=True)
    doc = {"op": args.op, "precision": args.precision, **op.run_info(args), "metrics": args.metrics,
           "cudagraph": args.cudagraph,
           "device": torch.cuda.get_device_name(), "torch": torch.__version__,
           "skipped_shapes": [s.x_val() for s in plan.skipped], "rows": rows}
    (out_dir / "results.json").write_text(json.dumps(doc, indent=1, default=str))
    table = format_table(rows, args.metrics, csv=args.csv, x_label=op.x_label)
    (out_dir / "table.txt").write_text(table + "\n")
    print(table)
    return doc
