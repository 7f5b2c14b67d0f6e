"""Compile small transformer pieces with ``torch.compile`` (Inductor), forward and backward, for
``kperf corpus record``: the Triton kernels Inductor generates for them are the corpus.

    kperf corpus record tests/corpus/inductor.tar.xz --label inductor -- \\
        tests/corpus/drivers/inductor_blocks.py --dtype bf16 --mode default --workloads gpt2,llama

Workloads: ``gpt2`` (LayerNorm, causal attention written out, tanh GELU, dropout), ``llama`` (RMSNorm,
RoPE, grouped-query SDPA, SwiGLU), ``mlp`` (a linear stack: with ``--mode max-autotune`` Inductor's
matmul templates, persistent TMA ones included), ``flex`` (FlexAttention with a causal block mask, and
decoding), ``loss`` (embedding, LM head, cross-entropy), ``adamw`` (a compiled optimizer step), ``moe``
(router softmax, top-k, sort, cumsum, scatter), ``reductions`` (odd sizes, welford, argmax, logsumexp).
Inductor needs a CUDA GPU to generate Triton; ``--backend aot_eager`` runs the same code on a CPU to check
the driver itself.
"""

from __future__ import annotations

import argparse
import functools
import math

import torch
import torch.nn.functional as F
from _cases import DEVICE, Cases, backward, randn
from torch import nn

D, HEADS, T, B = 256, 4, 128, 2


class GPT2Block(nn.Module):
    def __init__(self, d=D, heads=HEADS, p=0.1):
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.qkv, self.proj = nn.Linear(d, 3 * d), nn.Linear(d, d)
        self.fc, self.out = nn.Linear(d, 4 * d), nn.Linear(4 * d, d)
        self.drop, self.heads = nn.Dropout(p), heads
        self.register_buffer("mask", torch.tril(torch.ones(T, T, dtype=torch.bool)))

    def forward(self, x):
        b, t, d = x.shape
        q, k, v = (z.view(b, t, self.heads, d // self.heads).transpose(1, 2)
                   for z in self.qkv(self.ln1(x)).split(d, dim=-1))
        att = (q @ k.transpose(-2, -1)) / math.sqrt(d // self.heads)
        att = self.drop(F.softmax(att.masked_fill(~self.mask[:t, :t], float("-inf")), dim=-1))
        x = x + self.drop(self.proj((att @ v).transpose(1, 2).reshape(b, t, d)))
        return x + self.drop(self.out(F.gelu(self.fc(self.ln2(x)), approximate="tanh")))


class RMSNorm(nn.Module):
    def __init__(self, d, eps=1e-6):
        super().__init__()
        self.weight, self.eps = nn.Parameter(torch.ones(d)), eps

    def forward(self, x):
        h = x.float()
        return (h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + self.eps)).to(x.dtype) * self.weight


def rotate(x, cos, sin):
    x1, x2 = x.chunk(2, dim=-1)
    return x * cos + torch.cat((-x2, x1), dim=-1) * sin


class LlamaBlock(nn.Module):
    def __init__(self, d=D, heads=HEADS, kv_heads=2, hidden=688):
        super().__init__()
        self.heads, self.kv_heads, self.hd = heads, kv_heads, d // heads
        self.n1, self.n2 = RMSNorm(d), RMSNorm(d)
        self.wq, self.wk = nn.Linear(d, d, bias=False), nn.Linear(d, kv_heads * self.hd, bias=False)
        self.wv, self.wo = nn.Linear(d, kv_heads * self.hd, bias=False), nn.Linear(d, d, bias=False)
        self.gate, self.up = nn.Linear(d, hidden, bias=False), nn.Linear(d, hidden, bias=False)
        self.down = nn.Linear(hidden, d, bias=False)
        inv = 1.0 / (10000 ** (torch.arange(0, self.hd, 2).float() / self.hd))
        freqs = torch.outer(torch.arange(T).float(), inv)
        emb = torch.cat((freqs, freqs), dim=-1)
        self.register_buffer("cos", emb.cos())
        self.register_buffer("sin", emb.sin())

    def forward(self, x):
        b, t, d = x.shape
        h = self.n1(x)
        q = self.wq(h).view(b, t, self.heads, self.hd).transpose(1, 2)
        k = self.wk(h).view(b, t, self.kv_heads, self.hd).transpose(1, 2)
        v = self.wv(h).view(b, t, self.kv_heads, self.hd).transpose(1, 2)
        cos, sin = self.cos[:t].to(x.dtype), self.sin[:t].to(x.dtype)
        q, k = rotate(q, cos, sin), rotate(k, cos, sin)
        rep = self.heads // self.kv_heads
        k, v = k.repeat_interleave(rep, dim=1), v.repeat_interleave(rep, dim=1)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True).transpose(1, 2).reshape(b, t, d)
        x = x + self.wo(y)
        h = self.n2(x)
        return x + self.down(F.silu(self.gate(h)) * self.up(h))


def _block(cls, dt, mode, backend):
    model = cls().to(DEVICE, dt).train()
    step = torch.compile(model, mode=mode, backend=backend)
    backward(step(randn(B, T, D, dtype=dt, grad=True)))


def mlp(dt, mode, backend):
    model = nn.Sequential(nn.Linear(D, 512), nn.GELU(), nn.Linear(512, D), nn.ReLU()).to(DEVICE, dt)
    backward(torch.compile(model, mode=mode, backend=backend)(randn(T * B, D, dtype=dt, grad=True)))


def flex(dt, mode, backend):
    from torch.nn.attention.flex_attention import create_block_mask, flex_attention
    mask = create_block_mask(lambda b, h, q, kv: q >= kv, None, None, 256, 256, device=DEVICE)
    q, k, v = (randn(1, HEADS, 256, 64, dtype=dt, grad=True) for _ in range(3))
    attend = torch.compile(flex_attention, mode=mode, backend=backend)
    backward(attend(q, k, v, block_mask=mask))
    bias = randn(256, dtype=dt)
    backward(attend(q, k, v, score_mod=lambda s, b, h, qi, kv: s + bias[qi - kv].float()))
    dq = randn(1, HEADS, 1, 64, dtype=dt)  # one query: Inductor's decoding template
    attend(dq, k.detach(), v.detach())


def loss(dt, mode, backend):
    emb, head = nn.Embedding(1000, D).to(DEVICE, dt), nn.Linear(D, 1000, bias=False).to(DEVICE, dt)

    def step(tokens, targets):
        logits = head(emb(tokens)).float()
        return F.cross_entropy(logits.view(-1, 1000), targets.view(-1), label_smoothing=0.1)
    tokens = torch.randint(0, 1000, (B, T), device=DEVICE)
    backward(torch.compile(step, mode=mode, backend=backend)(tokens, tokens.roll(1, 1)))


def adamw(dt, mode, backend):
    params = [randn(*s, dtype=dt, grad=True) for s in ((D, D), (D,), (4 * D, D), (1000, D))]
    for p in params:
        p.grad = torch.randn_like(p)
    opt = torch.optim.AdamW(params, lr=1e-3, weight_decay=0.1)
    torch.compile(opt.step, mode=mode, backend=backend)()


def moe(dt, mode, backend):
    def route(x, w):
        probs = F.softmax(x @ w, dim=-1, dtype=torch.float32)
        weights, experts = torch.topk(probs, 2, dim=-1)
        order = torch.sort(experts.view(-1), stable=True)
        counts = torch.zeros(8, device=x.device, dtype=torch.int64).index_add_(
            0, experts.view(-1), torch.ones_like(experts.view(-1)))
        return weights / weights.sum(-1, keepdim=True), order.indices, torch.cumsum(counts, 0)
    x, w = randn(T * B, D, dtype=dt, grad=True), randn(D, 8, dtype=dt, grad=True)
    weights, _, _ = torch.compile(route, mode=mode, backend=backend)(x, w)
    backward(weights)


def reductions(dt, mode, backend):
    def stats(x):
        mean, var = torch.var_mean(x, dim=-1, keepdim=True)
        y = F.layer_norm(x, x.shape[-1:])
        return y * torch.logsumexp(x, -1, keepdim=True), mean, var, x.argmax(-1), x.amax(0)
    x = randn(300, 1000, dtype=dt, grad=True)
    out = torch.compile(stats, mode=mode, backend=backend)(x)
    backward(out[0], out[1], out[2])


WORKLOADS = {"gpt2": functools.partial(_block, GPT2Block), "llama": functools.partial(_block, LlamaBlock),
             "mlp": mlp, "flex": flex, "loss": loss, "adamw": adamw, "moe": moe, "reductions": reductions}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dtype", default="fp32,bf16", help="comma-separated: fp32, bf16")
    p.add_argument("--mode", default="default", help="comma-separated torch.compile modes")
    p.add_argument("--workloads", default=",".join(WORKLOADS),
                   help=f"comma-separated: {', '.join(WORKLOADS)}")
    p.add_argument("--backend", default="inductor", help="aot_eager: check the driver without a GPU")
    args = p.parse_args()
    import torch._inductor.config as inductor
    if hasattr(inductor.triton, "enable_persistent_tma_matmul"):  # TMA matmul templates under max-autotune
        inductor.triton.enable_persistent_tma_matmul = True
    dtypes = {"fp32": torch.float32, "bf16": torch.bfloat16}
    cases = Cases("inductor")
    for mode in args.mode.split(","):
        for dt in args.dtype.split(","):
            for name in args.workloads.split(","):
                run = functools.partial(WORKLOADS[name], dtypes[dt], None if mode == "default" else mode,
                                        args.backend)
                cases.run(f"{name}[{dt},{mode}]", run)
    cases.summary()


if __name__ == "__main__":
    main()
