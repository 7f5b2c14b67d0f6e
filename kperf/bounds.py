"""``kperf.bounds``: attainable data-movement bounds (Orojenesis-style), e.g. ``kperf.bounds.gemm(8192, 8192,
8192, "bf16", capacities=[50 * 2**20])``.

The math lives in the offline layer (:mod:`kperf.tracing.bounds`, no Triton or torch); this module only
gives it its short name.  docs/bounds.md says what the numbers mean.
"""

from __future__ import annotations

from kperf.tracing.bounds import GPU_CAPACITIES, Bound, Curve, attention, einsum, gemm, gpu_capacities

__all__ = ["GPU_CAPACITIES", "Bound", "Curve", "attention", "einsum", "gemm", "gpu_capacities"]
