"""Register kperf's variants and the ``kperf`` metric into the real tritonbench (when it is importable).

tritonbench keeps its registry in ``tritonbench.utils.triton_op``: ``REGISTERED_BENCHMARKS[op]``
(name -> ``BenchmarkOperatorBackend``, filled by ``@register_benchmark`` or
``register_benchmark_mannually``) and ``REGISTERED_METRICS[op]`` (custom metric names); a benchmark is
a method ``(self, q, k, v) -> callable`` of the operator class, a custom metric a method
``(self, fn, example_inputs, metrics)`` called with the benchmark's callable (its ``_name`` attribute
is the benchmark name).  ``register()`` adds one method per variant and the ``kperf`` metric to
``tritonbench.operators.flash_attention.operator.Operator``; ``run(args)`` then drives tritonbench's
own loop (``Operator(tb_args, extra_args).run()``), once per batch size of the sweep.

Only flash_attention is registered: tritonbench has no operator for ``--op masked_attention``.  Its
flex_attention operator is the nearest, but its inputs are its own (``(q, k, v, score_mod, block_mask,
mod_type, kernel_options)``), its mask types are not ``examples/block_masks.py``'s (no BigBird, documents
packed across the batch) and its FLOP count is not the visited blocks', so registering the masked
variants there would time other masks; ``runner`` runs that operator instead.
"""

from __future__ import annotations

import importlib.util
import pathlib

from kperf.dialect.errors import KperfError

from .args import Shape
from .kperf_metric import profile_variant
from .variants import VARIANTS

OP = "flash_attention"
_state = {"out_dir": pathlib.Path("out/tritonbench_ext"), "trace_ctas": 8, "max_mb": 1024,
          "registered": False}


def available() -> bool:
    """Whether the tritonbench package can be imported here."""
    return importlib.util.find_spec("tritonbench") is not None


def _bench_method(variant):
    def bench(self, q, k, v):
        return variant.make(q, k, v, self.causal, self.sm_scale)
    bench.__name__ = variant.name
    bench.__doc__ = variant.description
    return bench


def _kperf_metric(self, fn, example_inputs, metrics):
    """tritonbench custom metric: profile one launch, return the folder with trace and summary."""
    variant = VARIANTS.get(getattr(fn, "_name", ""))
    if variant is None or not variant.profilable:
        return None
    q, _, _ = example_inputs
    dtype = {"torch.float16": "fp16", "torch.bfloat16": "bf16"}[str(q.dtype)]
    info = profile_variant(variant, Shape(*q.shape), dtype=dtype, causal=self.causal, sm_scale=self.sm_scale,
                           out_dir=_state["out_dir"] / "kperf", trace_ctas=_state["trace_ctas"],
                           max_mb=_state["max_mb"])
    return info["dir"]


def register(*, out_dir=None, trace_ctas: int | None = None, max_mb: int | None = None):
    """Add the variants and the ``kperf`` metric to tritonbench's flash_attention operator; returns it."""
    if not available():
        raise KperfError("tritonbench is not importable", fix="pip install tritonbench, or use --standalone")
    from tritonbench.operators.flash_attention import operator as fa
    from tritonbench.utils import triton_op as tb
    if out_dir is not None:
        _state["out_dir"] = pathlib.Path(out_dir)
    if trace_ctas is not None:
        _state["trace_ctas"] = trace_ctas
    if max_mb is not None:
        _state["max_mb"] = max_mb
    if _state["registered"]:
        return fa.Operator
    for variant in VARIANTS.values():
        setattr(fa.Operator, variant.name, _bench_method(variant))
        tb.register_benchmark_mannually(OP, variant.name, baseline=False, enabled=True, label=variant.name)
    fa.Operator.kperf = _kperf_metric
    metrics = tb.REGISTERED_METRICS.setdefault(OP, [])
    if "kperf" not in metrics:
        metrics.append("kperf")
    _state["registered"] = True
    return fa.Operator


def tritonbench_argv(args, batch: int, seq_len: int, num_inputs: int) -> list[str]:
    """tritonbench's command line for one batch size and a doubling run of sequence lengths."""
    argv = ["--op", OP, "--mode", "fwd", "--precision", args.precision, "--metrics", ",".join(args.metrics),
            "--num-inputs", str(num_inputs), "--batch", str(batch), "--n-heads", str(args.n_heads),
            "--d-head", str(args.d_head), "--seq-len", str(seq_len)]
    if args.only:
        argv += ["--only", ",".join(args.only)]
    if args.causal:
        argv.append("--causal")
    if args.cudagraph:
        argv.append("--cudagraph")
    return argv


def _runs(args, shapes: tuple[Shape, ...]):
    """Group the plan into tritonbench runs: per batch, sequence lengths that double from the first."""
    by_batch: dict[int, list[int]] = {}
    for s in shapes:
        by_batch.setdefault(s.batch, []).append(s.seq_len)
    for batch, seqs in by_batch.items():
        start = 0
        while start < len(seqs):
            n = 1
            while start + n < len(seqs) and seqs[start + n] == seqs[start] * 2 ** n:
                n += 1
            yield batch, seqs[start], n
            start += n


def run(args, shapes: tuple[Shape, ...]):
    """Run the sweep through tritonbench's own operator loop; prints tritonbench's tables."""
    from tritonbench.utils.parser import get_parser
    operator_cls = register(out_dir=args.output_dir, trace_ctas=args.kperf_trace_ctas,
                            max_mb=args.kperf_max_mb)
    outputs = []
    for batch, seq_len, n in _runs(args, shapes):
        tb_args, extra = get_parser().parse_known_args(tritonbench_argv(args, batch, seq_len, n))
        op = operator_cls(tb_args=tb_args, extra_args=extra)
        op.run(warmup=int(args.warmup), rep=int(args.rep))
        print(op.output)
        outputs.append(op.output)
    return outputs
