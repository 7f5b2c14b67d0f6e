"""Drive Liger-Kernel's Triton ops forward and backward at small sizes, for ``kperf corpus record``.

    kperf corpus record tests/corpus/liger.tar.xz --label liger -- tests/corpus/drivers/liger_ops.py [CASE...]

Liger-Kernel (BSD-2-Clause) is installed as its wheel; its own kernels run unchanged.  Each op runs in
fp32 and bf16 where it takes both (a different dtype is a different compiled kernel), with the variants
its options select at compile time (casting modes, label smoothing, softcap, z-loss, ...).
"""

from __future__ import annotations

import functools
import sys

import torch
from _cases import DEVICE, Cases, backward, randn
from liger_kernel.transformers import functional as lf

BT, H, V = 16, 256, 1024  # tokens, hidden, vocabulary


def norms(dt):
    x, w, b = randn(BT, H, dtype=dt, grad=True), randn(H, dtype=dt, grad=True), randn(H, dtype=dt, grad=True)
    for mode in ("llama", "gemma", "none"):
        backward(lf.liger_rms_norm(x, w, 1e-6, 0.0 if mode != "gemma" else 1.0, mode, False))
    backward(lf.liger_layer_norm(x, w, b, 1e-5))
    r = randn(BT, H, dtype=dt, grad=True)
    backward(*lf.liger_fused_add_rms_norm(x, r, w, 1e-6, 0.0, "llama", False))
    backward(lf.liger_poly_norm(x, randn(3, dtype=dt, grad=True), randn(dtype=dt, grad=True), 1e-6, False))
    backward(lf.liger_dyt(x, randn(1, dtype=dt, grad=True), w, b))
    g = randn(4, 8, 64, dtype=dt, grad=True)
    backward(lf.liger_group_norm(g, randn(8, dtype=dt, grad=True), randn(8, dtype=dt, grad=True), 8, 4, 1e-6))


def activations(dt):
    a, b = randn(BT, 688, dtype=dt, grad=True), randn(BT, 688, dtype=dt, grad=True)
    backward(lf.liger_swiglu(a, b))
    backward(lf.liger_geglu(a, b))
    backward(lf.liger_relu_squared(a))
    backward(lf.liger_softmax(randn(BT, 1000, dtype=dt, grad=True)))
    backward(lf.liger_sparsemax(randn(BT, 100, dtype=dt, grad=True)))


def rope(dt):
    heads, kv, s, d = 4, 2, 32, 64
    q, k = randn(2, heads, s, d, dtype=dt, grad=True), randn(2, kv, s, d, dtype=dt, grad=True)
    cos, sin = randn(1, s, d, dtype=dt), randn(1, s, d, dtype=dt)
    backward(*lf.liger_rope(q, k, cos, sin))
    qm, km = randn(2, heads, s, d, dtype=dt, grad=True), randn(2, kv, s, d, dtype=dt, grad=True)
    backward(*lf.liger_qwen2vl_mrope(qm, km, randn(3, 2, s, d, dtype=dt), randn(3, 2, s, d, dtype=dt),
                                     [8, 12, 12]))


def losses(dt):
    target = torch.randint(0, V, (BT,), device=DEVICE)
    target[:2] = -100
    for kw in ({}, {"label_smoothing": 0.1}, {"softcap": 30.0}, {"reduction": "sum"}, {"reduction": "none"},
               {"lse_square_scale": 1e-4, "return_z_loss": True}):
        logits = randn(BT, V, dtype=dt, grad=True)
        out = lf.liger_cross_entropy(logits, target, **kw)
        backward(out if isinstance(out, torch.Tensor) else out.loss)
    p = torch.log_softmax(randn(BT, V), -1).to(dt).requires_grad_(True)
    q = torch.log_softmax(randn(BT, V), -1).to(dt)
    backward(lf.liger_kl_div(p, q, reduction="batchmean"))
    backward(lf.liger_kl_div(p, q, reduction="sum", log_target=True))
    backward(lf.liger_jsd(p, q))
    backward(lf.liger_jsd(p, q, beta=0.0))
    backward(lf.liger_tvd(p.exp().detach().requires_grad_(True), q.exp()))


def fused_linear(dt):
    x, w = randn(BT, H, dtype=dt, grad=True, scale=0.1), randn(V, H, dtype=dt, grad=True, scale=0.1)
    target = torch.randint(0, V, (BT,), device=DEVICE)
    backward(lf.liger_fused_linear_cross_entropy(x, w, target))
    backward(lf.liger_fused_linear_cross_entropy(x, w, target, label_smoothing=0.1, softcap=20.0))
    tx, tw = randn(BT, H, dtype=dt, scale=0.1), randn(V, H, dtype=dt, scale=0.1)
    backward(lf.liger_fused_linear_jsd(x, w, tx, tw))


def attention(dt):
    scores = randn(2, 4, 32, 32, dtype=torch.float32, grad=True)
    backward(lf.liger_multi_token_attention(scores, randn(4, 4, 3, 3, grad=True), padding=1))
    q, k, v = (randn(1, 2, 64, 32, dtype=dt, grad=True) for _ in range(3))
    backward(lf.liger_fused_neighborhood_attention(q, k, v, kernel_size=7))


def embedding(dt):
    from liger_kernel.ops import LigerEmbeddingFunction
    weight = randn(V, H, dtype=dt, grad=True)
    backward(LigerEmbeddingFunction.apply(weight, torch.randint(0, V, (4, 8), device=DEVICE)))


def main() -> None:
    cases = Cases("liger")
    chosen = sys.argv[1:] or ["norms", "activations", "rope", "losses", "fused_linear", "attention",
                              "embedding"]
    for dt in (torch.float32, torch.bfloat16):
        name = str(dt).removeprefix("torch.")
        for fn in chosen:
            cases.run(f"{fn}[{name}]", functools.partial(globals()[fn], dt))
    cases.summary()


if __name__ == "__main__":
    main()
