"""A warp-specialized Hopper attention forward kernel (FlashAttention-2 style) with TMA descriptors.

In the style of Triton's fused-attention tutorial (python/tutorials/06-fused-attention.py, v3.6): Q, K
and V are ``[Z, H, N_CTX, HEAD_DIM]`` fp16/bf16 tensors read through device-side TMA tensor
descriptors; the K/V loop is ``tl.range(..., warp_specialize=True)``, so on Hopper Triton splits it into
a producer partition (TMA loads) and consumer warpgroups (wgmma + softmax). Causal attention runs one
loop over the key blocks up to the diagonal and masks the diagonal blocks (the tutorial's two-loop
split crashes Triton 3.6's Hopper warp specialization pass).

The kernel has no kperf scopes: Triton's warp specialization would delete them. Profile it through the
final TTGIR instead (``@kperf.profile(auto="mma,tma")`` or the override workflow, see
docs/instrumenting-compiled-kernels.md).

Run it (needs a Hopper GPU): ``python examples/attention.py --out out/attention`` checks the result
against torch, profiles one launch with automatic insertion and writes ``chrome_trace.json``.

Compile-only use: ``SIGNATURE``, ``CONSTEXPRS`` and ``COMPILE_OPTIONS`` describe one configuration
(fp16, d=128, non-causal, 128x128 tiles, 4 warps per warpgroup, 2 stages) for ``kperf.compile`` /
``triton.compile`` with ``GPUTarget("cuda", 90, 32)``; ``signature(...)``/``constexprs(...)`` build
others.
"""

from __future__ import annotations

import argparse
import math

import triton
import triton.language as tl

import kperf

LOG2E = 1.44269504


@triton.jit
def _attn_fwd_inner(acc, l_i, m_i, q, desc_k, desc_v, offset_y, start_m, qk_scale,
                    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, CAUSAL: tl.constexpr,
                    offs_m: tl.constexpr, offs_n: tl.constexpr, N_CTX: tl.constexpr,
                    WARP_SPECIALIZE: tl.constexpr):
    # Causal: the key blocks up to and including the diagonal, in one loop (Triton 3.6's Hopper warp
    # specialization fails on the tutorial's two-loop split), masking only the diagonal blocks.
    if CAUSAL:
        hi = (start_m + 1) * BLOCK_M
    else:
        hi = N_CTX
    diag = start_m * BLOCK_M
    offsetkv_y = offset_y
    for start_n in tl.range(0, hi, BLOCK_N, warp_specialize=WARP_SPECIALIZE):
        start_n = tl.multiple_of(start_n, BLOCK_N)
        k = desc_k.load([offsetkv_y, 0]).T
        qk = tl.dot(q, k)
        if CAUSAL:
            mask = (start_n < diag) | (offs_m[:, None] >= (start_n + offs_n[None, :]))
            qk = qk * qk_scale + tl.where(mask, 0, -1.0e6)
            m_ij = tl.maximum(m_i, tl.max(qk, 1))
            qk -= m_ij[:, None]
        else:
            m_ij = tl.maximum(m_i, tl.max(qk, 1) * qk_scale)
            qk = qk * qk_scale - m_ij[:, None]
        p = tl.math.exp2(qk)
        alpha = tl.math.exp2(m_i - m_ij)
        l_ij = tl.sum(p, 1)
        acc = acc * alpha[:, None]
        v = desc_v.load([offsetkv_y, 0])
        acc = tl.dot(p.to(v.dtype), v, acc)
        l_i = l_i * alpha + l_ij
        m_i = m_ij
        offsetkv_y += BLOCK_N
    return acc, l_i, m_i


@triton.jit
def attn_fwd_kernel(sm_scale, M, Z, H, Q, K, V, Out, N_CTX: tl.constexpr, HEAD_DIM: tl.constexpr,
                    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, CAUSAL: tl.constexpr,
                    WARP_SPECIALIZE: tl.constexpr):
    """One CTA computes BLOCK_M query rows of one (batch, head); M gets the row log-sum-exp (base 2)."""
    tl.static_assert(BLOCK_N <= HEAD_DIM)
    dtype = Out.dtype.element_ty
    start_m = tl.program_id(0)
    off_hz = tl.program_id(1)
    off_z = off_hz // H
    off_h = off_hz % H
    y_dim = Z * H * N_CTX
    desc_q = tl.make_tensor_descriptor(Q, shape=[y_dim, HEAD_DIM], strides=[HEAD_DIM, 1],
                                       block_shape=[BLOCK_M, HEAD_DIM])
    desc_k = tl.make_tensor_descriptor(K, shape=[y_dim, HEAD_DIM], strides=[HEAD_DIM, 1],
                                       block_shape=[BLOCK_N, HEAD_DIM])
    desc_v = tl.make_tensor_descriptor(V, shape=[y_dim, HEAD_DIM], strides=[HEAD_DIM, 1],
                                       block_shape=[BLOCK_N, HEAD_DIM])
    desc_o = tl.make_tensor_descriptor(Out, shape=[y_dim, HEAD_DIM], strides=[HEAD_DIM, 1],
                                       block_shape=[BLOCK_M, HEAD_DIM])
    offset_y = off_z * (N_CTX * H) + off_h * N_CTX
    qo_offset_y = offset_y + start_m * BLOCK_M
    offs_m = start_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_n = tl.arange(0, BLOCK_N)
    m_i = tl.zeros([BLOCK_M], dtype=tl.float32) - float("inf")
    l_i = tl.zeros([BLOCK_M], dtype=tl.float32) + 1.0
    acc = tl.zeros([BLOCK_M, HEAD_DIM], dtype=tl.float32)
    qk_scale = sm_scale * 1.44269504  # exp(x) = exp2(x * log2(e))
    q = desc_q.load([qo_offset_y, 0])
    acc, l_i, m_i = _attn_fwd_inner(acc, l_i, m_i, q, desc_k, desc_v, offset_y, start_m, qk_scale,
                                    BLOCK_M, BLOCK_N, CAUSAL, offs_m, offs_n, N_CTX, WARP_SPECIALIZE)
    m_i += tl.math.log2(l_i)
    acc = acc / l_i[:, None]
    tl.store(M + off_hz * N_CTX + offs_m, m_i)
    desc_o.store([qo_offset_y, 0], acc.to(dtype))


# --- compile-only description of one configuration (fp16, d=128, non-causal, WS) ---------------------

def signature(dtype: str = "fp16") -> dict[str, str]:
    """Triton signature of ``attn_fwd_kernel`` for ``dtype`` in ``("fp16", "bf16")``."""
    return {"sm_scale": "fp32", "M": "*fp32", "Z": "i32", "H": "i32", "Q": f"*{dtype}", "K": f"*{dtype}",
            "V": f"*{dtype}", "Out": f"*{dtype}", "N_CTX": "constexpr", "HEAD_DIM": "constexpr",
            "BLOCK_M": "constexpr", "BLOCK_N": "constexpr", "CAUSAL": "constexpr",
            "WARP_SPECIALIZE": "constexpr"}


def constexprs(*, n_ctx: int = 4096, head_dim: int = 128, causal: bool = False, block_m: int = 128,
               block_n: int | None = None, warp_specialize: bool = True) -> dict:
    """Constexpr values of ``attn_fwd_kernel`` (``block_n`` defaults as in ``attention``)."""
    return {"N_CTX": n_ctx, "HEAD_DIM": head_dim, "BLOCK_M": block_m,
            "BLOCK_N": block_n or default_block_n(head_dim), "CAUSAL": causal,
            "WARP_SPECIALIZE": warp_specialize}


def default_block_n(head_dim: int) -> int:
    return 128 if head_dim >= 128 else 64


SIGNATURE = signature("fp16")
CONSTEXPRS = constexprs()
COMPILE_OPTIONS = {"num_warps": 4, "num_stages": 2}


# --- host side ---------------------------------------------------------------------------------------

def _alloc_scratch(size: int, alignment: int, stream):
    import torch
    return torch.empty(size, dtype=torch.int8, device="cuda")


def attention(q, k, v, causal: bool = False, sm_scale: float | None = None, *, kernel=attn_fwd_kernel,
              block_m: int = 128, block_n: int | None = None, num_warps: int = 4, num_stages: int = 2,
              warp_specialize: bool = True, return_lse: bool = False):
    """``softmax(q @ k^T * sm_scale [+ causal mask]) @ v`` for ``[Z, H, N_CTX, HEAD_DIM]`` fp16/bf16 tensors.

    ``kernel`` may be ``attn_fwd_kernel`` wrapped by ``kperf.profile``. ``N_CTX`` must be a multiple of
    ``block_m`` and ``block_n``; ``HEAD_DIM`` 64 or 128.
    """
    import torch
    if q.dtype not in (torch.float16, torch.bfloat16) or not (q.dtype == k.dtype == v.dtype):
        raise ValueError(f"q, k, v must share one dtype, fp16 or bf16; got {q.dtype}, {k.dtype}, {v.dtype}")
    if q.shape != k.shape or q.shape != v.shape or q.dim() != 4:
        raise ValueError(f"q, k, v must be [Z, H, N_CTX, HEAD_DIM] of one shape; got {tuple(q.shape)}, "
                         f"{tuple(k.shape)}, {tuple(v.shape)}")
    Z, H, n_ctx, head_dim = q.shape
    block_n = block_n or default_block_n(head_dim)
    if head_dim not in (64, 128):
        raise ValueError(f"HEAD_DIM must be 64 or 128, got {head_dim}")
    if n_ctx % block_m or n_ctx % block_n:
        raise ValueError(f"N_CTX={n_ctx} must be a multiple of BLOCK_M={block_m} and BLOCK_N={block_n}")
    sm_scale = 1.0 / math.sqrt(head_dim) if sm_scale is None else sm_scale
    q, k, v = q.contiguous(), k.contiguous(), v.contiguous()
    o = torch.empty_like(q)
    lse = torch.empty((Z, H, n_ctx), device=q.device, dtype=torch.float32)
    triton.set_allocator(_alloc_scratch)  # device-side TMA descriptors live in global scratch
    grid = (triton.cdiv(n_ctx, block_m), Z * H, 1)
    kernel[grid](sm_scale, lse, Z, H, q, k, v, o, N_CTX=n_ctx, HEAD_DIM=head_dim, BLOCK_M=block_m,
                 BLOCK_N=block_n, CAUSAL=causal, WARP_SPECIALIZE=warp_specialize,
                 num_warps=num_warps, num_stages=num_stages)
    return (o, lse) if return_lse else o


def reference(q, k, v, causal: bool = False, sm_scale: float | None = None):
    """Plain-torch attention in fp32, cast back to the input dtype."""
    import torch
    sm_scale = 1.0 / math.sqrt(q.shape[-1]) if sm_scale is None else sm_scale
    s = torch.matmul(q.float(), k.float().transpose(-1, -2)) * sm_scale
    if causal:
        n = q.shape[-2]
        keep = torch.tril(torch.ones(n, n, device=q.device, dtype=torch.bool))
        s = s.masked_fill(~keep, float("-inf"))
    return torch.matmul(torch.softmax(s, dim=-1), v.float()).to(q.dtype)


def flops(z: int, h: int, n_ctx: int, head_dim: int, causal: bool) -> float:
    """Forward FLOPs (two matmuls), halved for causal as is customary."""
    f = 4.0 * z * h * n_ctx * n_ctx * head_dim
    return f / 2 if causal else f


def main(argv=None):
    import torch
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--heads", type=int, default=16)
    p.add_argument("--n-ctx", type=int, default=4096)
    p.add_argument("--head-dim", type=int, default=128, choices=(64, 128))
    p.add_argument("--dtype", default="fp16", choices=("fp16", "bf16"))
    p.add_argument("--causal", action="store_true")
    p.add_argument("--auto", default="mma,tma", help="kperf auto-insertion selectors (default: mma,tma)")
    p.add_argument("--out", default="out/attention")
    args = p.parse_args(argv)
    from kperf.examples.gpu import require_gpu
    require_gpu("examples/attention.py", hopper=True,
                compile_hint="kperf compile examples/attention.py:attn_fwd_kernel --auto mma,tma")
    torch.manual_seed(0)
    dt = torch.float16 if args.dtype == "fp16" else torch.bfloat16
    shape = (args.batch, args.heads, args.n_ctx, args.head_dim)
    q, k, v = (torch.randn(shape, device="cuda", dtype=dt) for _ in range(3))
    ref = attention(q, k, v, args.causal)
    torch.testing.assert_close(ref, reference(q, k, v, args.causal), atol=2e-2, rtol=0)
    profiled = kperf.profile(attn_fwd_kernel, auto=args.auto)
    out = attention(q, k, v, args.causal, kernel=profiled)
    torch.testing.assert_close(out, ref, rtol=0, atol=0)
    prof = kperf.results(profiled)
    print(prof.table())
    path = prof.to_chrome_trace(f"{args.out}/chrome_trace.json")
    print(f"trace: {path}")


if __name__ == "__main__":
    main()
