"""Run one attention variant once on a small shape and check it against SDPA; exit 0 when correct.

    python3 -m bench.fa3_smoke VARIANT

Used by bench/gpu_run.sh under ``timeout`` before the sweep, so that a pipeline that deadlocks (a
barrier protocol bug hangs the GPU until the process dies) is left out of the sweep instead of
stalling it.
"""

from __future__ import annotations

import sys

import torch

from kperf.tritonbench_ext.variants import select


def main() -> int:
    (variant,) = select([sys.argv[1]])
    torch.manual_seed(0)
    # 512 tiles of 128 rows: several per CTA for the persistent pipelines
    q, k, v = (torch.randn(4, 16, 1024, 128, device="cuda", dtype=torch.float16) for _ in range(3))
    sm_scale = 128 ** -0.5
    ok = True
    for causal in (False, True):
        out = variant.make(q, k, v, causal, sm_scale)()
        torch.cuda.synchronize()
        ref = torch.nn.functional.scaled_dot_product_attention(q.float(), k.float(), v.float(),
                                                               is_causal=causal, scale=sm_scale)
        err = (out.float() - ref).abs().max().item()
        print(f"{variant.name} causal={causal}: max abs error {err:.2e}")
        ok &= err < 2e-2
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
