"""The ``kperf`` metric: profile one launch of a variant at one shape, write a trace and a summary.

For each (variant, shape) it writes into ``<out>/<variant>/<shape tag>[_causal]/``:

- ``summary.txt``: the profiled shape, then ``Profile.table()`` (count / total / mean / p50 / p95 / max
  per scope, over every event of every CTA) and the launch lines (clock, lost events);
- ``stats.json``: the same statistics as data (``Profile.stats()``);
- ``chrome_trace.json.gz``: the first ``trace_ctas`` CTAs as a Chrome/Perfetto trace (a full launch at
  these sizes is tens of millions of events: too many for a browser; the statistics keep them all).

A launch whose profile buffer would exceed ``max_mb`` is profiled at a smaller batch (same heads,
sequence length and head dim, so the same per-CTA work); ``summary.txt`` says so.

masked_attention (:func:`profile_masked`) writes the same three files into
``<out>/<variant>/<shape tag>/`` (the tag ends in the mask), for the whole launch always: its imbalance
is a property of the whole launch, which a smaller batch would not have.  ``summary.txt`` and
``stats.json`` then lead with ``examples/masked_imbalance.py``'s figures (kperf's ``imbalance`` and
``sms`` tables joined with each tile's key blocks), and the table's ``kperf`` cell gives four of them
next to the variant's time (:func:`imbalance_cell`): the profiled launch's span, its tail (first SM out
of work to the end) over the span, the SM time idle at the end, and the busiest SM's busy time over the
mean.
"""

from __future__ import annotations

import json
import math
import pathlib

import numpy as np

from kperf.dialect.errors import KperfError

from .args import Shape
from .variants import capacity_for

# warps of the profiled kernels: 12 for the Gluon pipelines (4 producer + 2 x 4 consumer); the
# tutorial kernel's warp specialization uses no more.  Only used to size the profiled batch.
KERNEL_WARPS = 12
RECORD_BYTES = 8


def buffer_bytes_per_batch(shape: Shape, capacity: int) -> int:
    """Profile-buffer bytes one batch element needs: CTAs (one per 128 query rows and head) x CTA bytes."""
    ctas = shape.n_heads * math.ceil(shape.seq_len / 128)
    return ctas * KERNEL_WARPS * capacity * RECORD_BYTES


def profiled_batch(shape: Shape, max_mb: int, capacity: int) -> int:
    per = buffer_bytes_per_batch(shape, capacity)
    return max(1, min(shape.batch, (max_mb << 20) // per))


def _stats_records(stats: np.ndarray) -> list[dict]:
    out = []
    for row in stats:
        rec = {}
        for name in stats.dtype.names:
            v = row[name].item()
            rec[name] = None if isinstance(v, float) and math.isnan(v) else v
        out.append(rec)
    return out


def write_trace_subset(prof, path: pathlib.Path, max_ctas: int) -> str | None:
    """A Chrome trace of the first ``max_ctas`` CTAs of every launch in ``prof`` (None if 0)."""
    if max_ctas <= 0:
        return None
    from kperf.tracing.chrome import write_chrome_trace
    parts = []
    for dec in prof.decoded():
        iv, _ = dec.intervals()
        parts.append(iv[iv["cta"] < max_ctas])
    write_chrome_trace(path, parts, scope_names=prof.launches[0].kernel.scopes)
    return str(path)


def _jsonable(d: dict) -> dict:
    out = {}
    for k, v in d.items():
        v = v.item() if hasattr(v, "item") else v
        out[k] = None if isinstance(v, float) and math.isnan(v) else v
    return out


def write_profile_files(d: pathlib.Path, header: list[str], prof, meta: dict, trace_ctas: int) -> dict:
    """``summary.txt`` (``header`` lines, then the scope table), ``stats.json`` (``meta`` and the
    statistics) and the trace of the first ``trace_ctas`` CTAs, in folder ``d``; returns their paths."""
    d.mkdir(parents=True, exist_ok=True)
    (d / "summary.txt").write_text("\n".join(header) + prof.table() + "\n")
    (d / "stats.json").write_text(json.dumps({**meta, "stats": _stats_records(prof.stats())}, indent=1))
    trace = write_trace_subset(prof, d / "chrome_trace.json.gz", trace_ctas)
    return {"dir": str(d), "summary": str(d / "summary.txt"), "stats": str(d / "stats.json"), "trace": trace}


def profile_variant(variant, shape: Shape, *, dtype: str, causal: bool, sm_scale: float,
                    out_dir: str | pathlib.Path, trace_ctas: int = 8, max_mb: int = 1024,
                    seed: int = 0) -> dict:
    """Profile one launch of ``variant`` at ``shape`` (random inputs) and write its files.

    Returns a dict: ``dir``, ``summary``, ``stats``, ``trace``, ``profiled_batch``, ``intervals``,
    ``lost``, ``output_identical`` (the profiled output equals the unprofiled one, bit for bit).
    """
    import torch
    if not variant.profilable:
        raise KperfError(f"{variant.name} is not a Triton kernel: kperf cannot profile it",
                         fix="ask for the kperf metric on kperf_* variants only")
    capacity = capacity_for(shape.seq_len)
    batch = profiled_batch(shape, max_mb, capacity)
    run_shape = Shape(batch, shape.n_heads, shape.seq_len, shape.d_head)
    gen = torch.Generator(device="cuda").manual_seed(seed)
    dt = {"fp16": torch.float16, "bf16": torch.bfloat16}[dtype]
    q, k, v = (torch.randn(run_shape.x_val(), device="cuda", dtype=dt, generator=gen) for _ in range(3))
    plain = variant.make(q, k, v, causal, sm_scale)()
    out, prof = variant.profiled(q, k, v, causal, sm_scale)
    identical = bool(torch.equal(out, plain))
    d = pathlib.Path(out_dir) / variant.name / (shape.tag + ("_causal" if causal else ""))
    note = (f"profiled at batch {batch} instead of {shape.batch}: the full launch's profile buffer exceeds "
            f"--kperf-max-mb {max_mb}" if batch != shape.batch else "profiled at the full shape")
    header = [f"variant: {variant.name} ({variant.description})",
              f"shape (B, H, S, D): {shape.x_val()}, {dtype}, causal={causal}; {note}",
              f"profiled output identical to the unprofiled one: {identical}", ""]
    meta = {"variant": variant.name, "shape": shape.x_val(), "profiled_batch": batch, "dtype": dtype,
            "causal": causal}
    files = write_profile_files(d, header, prof, meta, trace_ctas)
    return {**files, "profiled_batch": batch, "intervals": int(len(prof.intervals())),
            "lost": int(prof.lost_total), "output_identical": identical, "profile": prof}


# the imbalance figures the table shows next to the time (examples/masked_imbalance.py's keys)
CELL = (("span", "kernel_span_ns", "{:.0f}us", 1e-3), ("tail/span", "tail_frac", "{:.1%}", 1),
        ("SM idle at end", "end_idle_frac", "{:.1%}", 1),
        ("SM busy max/mean", "sm_max_over_mean", "{:.3f}", 1))


def imbalance_cell(summary: dict) -> str:
    """``span 1518us, tail/span 38.2%, SM idle at end 34.3%, SM busy max/mean 1.529``."""
    parts = []
    for label, key, fmt, scale in CELL:
        v = summary.get(key)
        parts.append(f"{label} " + ("-" if v is None or v != v else fmt.format(v * scale)))
    return ", ".join(parts)


def profile_masked(variant, shape: Shape, case, *, dtype: str, out_dir: str | pathlib.Path,
                   trace_ctas: int = 8) -> dict:
    """Profile one whole launch of the masked-attention ``variant`` on ``case`` (``masked.MaskedCase``)
    and write its files; returns ``profile_variant``'s keys (``profiled_batch`` is the batch) and
    ``imbalance`` (the summary of ``examples/masked_imbalance.py``) and ``cell`` (:func:`imbalance_cell`)."""
    import torch

    from kperf.examples import masked_imbalance as mi
    if not variant.profilable:
        raise KperfError(f"{variant.name} is not a Triton kernel: kperf cannot profile it",
                         fix="ask for the kperf metric on kperf_* variants only")
    plain = variant.make(case)()
    out, prof, summary = variant.profiled(case)
    identical = bool(torch.equal(out, plain))
    header = [f"variant: {variant.name} ({variant.description})",
              f"shape (B, H, S, D): {shape.dims}, mask {shape.mask}, {dtype}; the whole launch profiled",
              f"profiled output identical to the unprofiled one: {identical}", "",
              "imbalance (examples/masked_imbalance.py):", mi.format_summary(summary), ""]
    summary = _jsonable(summary)  # NaN (no fit) -> None
    meta = {"variant": variant.name, "shape": shape.dims, "mask": shape.mask, "profiled_batch": shape.batch,
            "dtype": dtype, "imbalance": summary}
    files = write_profile_files(pathlib.Path(out_dir) / variant.name / shape.tag, header, prof, meta,
                                trace_ctas)
    return {**files, "profiled_batch": shape.batch, "intervals": int(len(prof.intervals())),
            "lost": int(prof.lost_total), "output_identical": identical, "imbalance": summary,
            "cell": imbalance_cell(summary), "profile": prof}
