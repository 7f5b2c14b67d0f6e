"""Run the masked-attention kernels under Triton's interpreter and print one JSON line of results.

Started by tests/unit/test_masked_attention_interp.py in a fresh process with ``TRITON_INTERPRET=1``:
the interpreter must be on before ``triton.language`` is imported (its ``@jit`` helpers such as
``tl.zeros`` and ``tl.max`` are made interpretable at import), which a pytest process that already
imported Triton cannot undo.  Each case: random fp16/bf16 inputs, the output poisoned with NaN before
the call, max |out - SDPA float32| with the dense mask, and, for the persistent schedule, the ticket log
and the counter left for the next launch.
"""

from __future__ import annotations

import json
import os
import sys

import numpy as np


def _patch_interpreter_index():
    """Triton 3.6's interpreter turns a scalar into a 1-element array and calls ``int()`` on it for
    ``range(n)``; numpy >= 2.4 refuses that.  Read the one element instead (the interpreter's own
    restore undoes this after each launch, as it does its other patches)."""
    import triton.runtime.interpreter as interp
    original = interp._patch_lang_tensor

    def patched(tensor, scope):
        original(tensor, scope)
        scope.set_attr(tensor, "__index__", lambda self: int(np.asarray(self.handle.data).reshape(-1)[0]))
    interp._patch_lang_tensor = patched


def cases():
    """(name, spec, dtype, schedules): every family, with partial blocks, per-head masks (window, BigBird)
    and per-batch documents.  fp16 only: Triton 3.6's interpreter gets ``tl.dot`` on bf16 operands wrong
    (a 16 x 16 product is off by 1e10), so bf16 is checked on the GPU (tests/gpu)."""
    from kperf.examples import block_masks as bmk
    every = ("grid", "lpt_grid", "persistent", "persistent_grouped")
    return [
        ("dense", bmk.dense(1, 1, 64, 16, 16), "fp16", ("grid",)),
        ("causal", bmk.causal(1, 1, 64, 16, 16), "fp16", every),
        ("sliding_window", bmk.sliding_window(1, 2, 64, 16, 16, windows=[20, 40]), "fp16",
         every),
        ("document", bmk.document(2, 1, 64, 16, 16, seed=4, mean_len=20), "fp16",
         every),
        ("bigbird", bmk.bigbird(1, 2, 64, 16, 16, seed=1, global_blocks=1, window_blocks=1, random_blocks=1),
         "fp16", every),
    ]


def main() -> int:
    if os.environ.get("TRITON_INTERPRET") != "1":
        print("run with TRITON_INTERPRET=1", file=sys.stderr)
        return 2
    _patch_interpreter_index()
    import torch

    from kperf.examples import masked_attention as ma
    out = []
    gen = torch.Generator().manual_seed(0)
    for name, spec, dtype, schedules in cases():
        p = ma.prepare(spec, "cpu")
        dt = {"fp16": torch.float16, "bf16": torch.bfloat16}[dtype]
        q, k, v = (torch.randn((spec.batch, spec.heads, spec.seq_len, 64), generator=gen).to(dt)
                   for _ in range(3))
        ref = ma.reference(q, k, v, spec)
        for schedule in schedules:
            o = torch.full_like(q, float("nan"))
            p.tile_cta.fill_(-1)
            ma.masked_attention(q, k, v, p, schedule, num_warps=4, out=o, log_tiles=True)
            row = {"family": name, "schedule": schedule, "dtype": dtype,
                   "err": float((o.float() - ref).abs().max()), "finite": bool(torch.isfinite(o).all()),
                   "partial_blocks": int(p.lists.part_num.sum()), "visible_blocks": p.lists.visible_blocks()}
            if schedule.startswith("persistent"):
                row["queue_after"] = p.queue.tolist()
                row["tickets_logged"] = int((p.tile_cta >= 0).sum())
                row["tiles"] = p.lists.n_tiles
            out.append(row)
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
