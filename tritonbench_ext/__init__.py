"""A tritonbench-style benchmark of kperf's attention pipelines, with a ``kperf`` metric.

``python -m kperf.tritonbench_ext --op flash_attention
--only kperf_vanilla,kperf_ws_pingpong,sdpa_flash,sdpa_cudnn --metrics tflops,kperf --batch 16
--n-heads 16 --d-head 128 --seq-len 4096 --causal`` times every variant (TFLOPS, tritonbench's FLOP
count) and, for the ``kperf`` metric, profiles one launch per variant and shape and writes a Chrome
trace and a summary table (``--output-dir``).  Sweeps:
``--seq-lens 128:16384`` / ``--batches 1:128`` (``--max-tokens`` caps ``batch * seq_len``).

When the ``tritonbench`` package is importable, the variants and the metric are registered into its
flash_attention operator and tritonbench's own loop runs them (``--standalone`` forces this
package's loop).  Modules: ``args`` (command line, sweep plan), ``variants``, ``kperf_metric``,
``runner`` (own loop), ``tritonbench_adapter``.
"""

from .args import Shape, SweepPlan, flops, get_parser, parse_args, sweep_plan
from .variants import VARIANTS, Variant, select

__all__ = ["Shape", "SweepPlan", "VARIANTS", "Variant", "flops", "get_parser", "parse_args", "select",
           "sweep_plan"]
