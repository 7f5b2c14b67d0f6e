"""A tritonbench-style benchmark of kperf's attention kernels, with a ``kperf`` metric.

``python -m kperf.tritonbench_ext --op flash_attention
--only kperf_vanilla,kperf_ws_pingpong,sdpa_flash,sdpa_cudnn --metrics tflops,kperf --batch 16
--n-heads 16 --d-head 128 --seq-len 4096 --causal`` times every variant (TFLOPS, tritonbench's FLOP
count) and, for the ``kperf`` metric, profiles one launch per variant and shape and writes a Chrome
trace and a summary table (``--output-dir``).  Sweeps:
``--seq-lens 128:16384`` / ``--batches 1:128`` (``--max-tokens`` caps ``batch * seq_len``).

``python -m kperf.tritonbench_ext --op masked_attention --mask bigbird --metrics tflops,kperf --batch 1
--n-heads 16 --d-head 128 --seq-len 32768`` does the same for masked attention (issue 21): the four
schedules of ``examples/masked_attention.py`` (``kperf_grid``, ``kperf_lpt_grid``, ``kperf_persistent``,
``kperf_persistent_grouped``), the same kernel on every block (``kperf_dense``), FlexAttention with the
same block lists (``flex_attention``) and SDPA with the dense boolean mask (``sdpa_mask``), on
``examples/block_masks.py``'s masks (``--mask causal,sliding_window,document,bigbird`` or ``all``, the
default, with each family's parameters).  TFLOPS count the visited key blocks only; the ``kperf``
metric profiles one whole launch per kernel variant and shape and puts the imbalance figures of
``examples/masked_imbalance.py`` (span, tail / span, SM idle at the end, SM busy max / mean) next to
the time.  Same flags, sweeps, loop and table as flash_attention.

When the ``tritonbench`` package is importable, the flash_attention variants and the metric are
registered into its flash_attention operator and tritonbench's own loop runs them (``--standalone``
forces this package's loop; masked_attention always runs in it: tritonbench has no such operator).
Modules: ``args`` (command line, sweep plan), ``variants`` (flash_attention's, and the ``Variant``
every operator uses), ``masked`` (masked_attention's variants, masks, inputs and FLOP count),
``kperf_metric``, ``runner`` (own loop, the operators), ``tritonbench_adapter``.
"""

from .args import Shape, SweepPlan, flops, get_parser, parse_args, sweep_plan
from .masked import MASKED_VARIANTS
from .variants import VARIANTS, Variant, select

__all__ = ["MASKED_VARIANTS", "Shape", "SweepPlan", "VARIANTS", "Variant", "flops", "get_parser",
           "parse_args", "select", "sweep_plan"]
