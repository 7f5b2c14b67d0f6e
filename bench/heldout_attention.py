"""A held-out warp-specialized attention forward for the overhead benchmark (``bench.overhead``'s
``heldout`` case), written outside ``examples/`` and never used to choose kperf's lowering.

FlashAttention-2 forward in the style of Triton's fused-attention tutorial (Tri Dao's algorithm,
https://tridao.me/publications/flash2/flash2.pdf; the tutorial's credits: OpenAI kernel team), written
for this benchmark rather than copied: Q, K and V are read through host-side TMA tensor descriptors
(``triton.tools.tensor_descriptor.TensorDescriptor``, the tutorial's Hopper path), the key loop is
``tl.range(..., warp_specialize=True)``, and the defaults differ from ``examples/attention.py`` on
purpose: head dim 64, 128 x 64 tiles, 3 stages, the softmax scale folded into the exponent base.  O is
written with a plain store: Triton 3.6's Hopper warp specialization fails on a host-descriptor store in
the epilogue ("tt.descriptor_store op tensor descriptor block and tensor types must match").  kperf
instruments it only through automatic insertion (``auto="mma,tma"``):
Triton's warp specialization would delete source scopes in the loop.

Its warp-specialized build is not usable on Hopper with Triton 3.6: on an H100 (2026-12-06,
bench/results/h100-2026-12-06-s11/heldout_smoke.json) the plain build hung in its first launch, before
kperf was involved, with host TMA descriptors (2 and 3 stages), and gave NaN with descriptors made on the
device; the build without warp specialization (``warp_specialize=False``: software-pipelined TMA + wgmma)
matched the fp32 reference (max abs error 6.1e-5) with host and device descriptors.  Triton's
fused-attention tutorial tests and benchmarks warp specialization only on Blackwell.
``bench/heldout_smoke.py`` runs each build.
"""

from __future__ import annotations

import math

import triton
import triton.language as tl

BLOCK_M, BLOCK_N, NUM_WARPS, NUM_STAGES = 128, 64, 4, 3


@triton.jit
def _as_descriptor(arg, n_rows, HEAD_DIM: tl.constexpr, BLOCK: tl.constexpr):
    """A host descriptor as passed, or a device-side one over ``[n_rows, HEAD_DIM]`` from a pointer."""
    if isinstance(arg, tl.tensor_descriptor):
        return arg
    else:
        return tl.make_tensor_descriptor(arg, shape=[n_rows, HEAD_DIM], strides=[HEAD_DIM, 1],
                                         block_shape=[BLOCK, HEAD_DIM])


@triton.jit
def heldout_attn_kernel(desc_q, desc_k, desc_v, out_ptr, lse_ptr, scale_log2, N_CTX,
                        HEAD_DIM: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
                        WARP_SPECIALIZE: tl.constexpr = True):
    """One CTA: BLOCK_M query rows of one (batch x head); ``lse_ptr`` gets each row's log2-sum-exp2.
    ``desc_q/k/v``: host TMA descriptors, or the tensors' pointers (descriptors made on the device)."""
    pid_m = tl.program_id(0)
    bh = tl.program_id(1)
    n_rows = tl.num_programs(1) * N_CTX
    desc_q = _as_descriptor(desc_q, n_rows, HEAD_DIM, BLOCK_M)
    desc_k = _as_descriptor(desc_k, n_rows, HEAD_DIM, BLOCK_N)
    desc_v = _as_descriptor(desc_v, n_rows, HEAD_DIM, BLOCK_N)
    row0 = bh * N_CTX  # first row of this (batch, head) in the [Z*H*N_CTX, HEAD_DIM] views
    q = desc_q.load([row0 + pid_m * BLOCK_M, 0])
    run_max = tl.full([BLOCK_M], float("-inf"), tl.float32)
    run_sum = tl.zeros([BLOCK_M], tl.float32)
    out = tl.zeros([BLOCK_M, HEAD_DIM], tl.float32)
    for kv in tl.range(0, N_CTX, BLOCK_N, warp_specialize=WARP_SPECIALIZE):
        k = desc_k.load([row0 + kv, 0])
        s = tl.dot(q, tl.trans(k)) * scale_log2  # scores in log2 units
        new_max = tl.maximum(run_max, tl.max(s, 1))
        p = tl.math.exp2(s - new_max[:, None])
        correction = tl.math.exp2(run_max - new_max)
        run_sum = run_sum * correction + tl.sum(p, 1)
        v = desc_v.load([row0 + kv, 0])
        out = tl.dot(p.to(v.dtype), v, out * correction[:, None])
        run_max = new_max
    out = out / run_sum[:, None]
    rows = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    tl.store(lse_ptr + bh * N_CTX + rows, run_max + tl.math.log2(run_sum))
    cols = tl.arange(0, HEAD_DIM)
    tl.store(out_ptr + (row0 + rows)[:, None] * HEAD_DIM + cols[None, :], out.to(q.dtype))


def descriptors(q, k, v, block_n: int = BLOCK_N):
    """Host TMA descriptors over the ``[Z*H*N_CTX, HEAD_DIM]`` views of ``[Z, H, N_CTX, HEAD_DIM]`` inputs."""
    from triton.tools.tensor_descriptor import TensorDescriptor
    d = q.shape[-1]

    def desc(t, rows):
        flat = t.reshape(-1, d)
        return TensorDescriptor(flat, list(flat.shape), list(flat.stride()), [rows, d])

    return desc(q, BLOCK_M), desc(k, block_n), desc(v, block_n)


def _alloc_scratch(size: int, alignment: int, stream):
    import torch
    return torch.empty(size, dtype=torch.int8, device="cuda")


def attention(q, k, v, *, kernel=heldout_attn_kernel, sm_scale: float | None = None,
              num_stages: int = NUM_STAGES, warp_specialize: bool = True, host_descriptors: bool = True,
              block_n: int = BLOCK_N):
    """``softmax(q k^T * sm_scale) v`` for contiguous ``[Z, H, N_CTX, HEAD_DIM]`` fp16/bf16 tensors.
    ``host_descriptors=False`` passes the tensors and makes the TMA descriptors on the device."""
    import torch
    z, h, n_ctx, d = q.shape
    if n_ctx % BLOCK_M or n_ctx % block_n:
        raise ValueError(f"N_CTX={n_ctx} must be a multiple of {BLOCK_M} and {block_n}")
    sm_scale = 1.0 / math.sqrt(d) if sm_scale is None else sm_scale
    q, k, v = q.contiguous(), k.contiguous(), v.contiguous()
    o = torch.empty_like(q)
    lse = torch.empty((z, h, n_ctx), device=q.device, dtype=torch.float32)
    grid = (n_ctx // BLOCK_M, z * h)
    if host_descriptors:
        descs = descriptors(q, k, v, block_n)
    else:
        triton.set_allocator(_alloc_scratch)  # device-side descriptors live in global scratch
        descs = (q, k, v)
    kernel[grid](*descs, o, lse, sm_scale * 1.4426950408889634, n_ctx, HEAD_DIM=d,
                 BLOCK_M=BLOCK_M, BLOCK_N=block_n, WARP_SPECIALIZE=warp_specialize, num_warps=NUM_WARPS,
                 num_stages=num_stages)
    return o


def reference(q, k, v, sm_scale: float | None = None):
    import torch
    sm_scale = 1.0 / math.sqrt(q.shape[-1]) if sm_scale is None else sm_scale
    s = torch.matmul(q.float(), k.float().transpose(-1, -2)) * sm_scale
    return torch.matmul(torch.softmax(s, dim=-1), v.float()).to(q.dtype)


def signature(head_dim: int = 64, dtype: str = "fp16") -> dict[str, str]:
    """For ``kperf.compile`` without a GPU: host descriptors are ``tensordesc<...>`` arguments."""
    return {"desc_q": f"tensordesc<{dtype}[{BLOCK_M}, {head_dim}]>",
            "desc_k": f"tensordesc<{dtype}[{BLOCK_N}, {head_dim}]>",
            "desc_v": f"tensordesc<{dtype}[{BLOCK_N}, {head_dim}]>",
            "out_ptr": f"*{dtype}",
            "lse_ptr": "*fp32", "scale_log2": "fp32", "N_CTX": "i32", "HEAD_DIM": "constexpr",
            "BLOCK_M": "constexpr", "BLOCK_N": "constexpr", "WARP_SPECIALIZE": "constexpr"}


SIGNATURE = signature()
CONSTEXPRS = {"HEAD_DIM": 64, "BLOCK_M": BLOCK_M, "BLOCK_N": BLOCK_N, "WARP_SPECIALIZE": True}
COMPILE_OPTIONS = {"num_warps": NUM_WARPS, "num_stages": NUM_STAGES}
#: ``attention()``'s keywords for the warp-specialized build that runs right on an H100 with Triton 3.6
#: (bench/results/h100-2026-12-06-s12/heldout_smoke.json): with host descriptors the WS builds hang, with
#: device descriptors, 64-wide key blocks and 3 stages they give NaN
WS_BUILD = {"host_descriptors": False, "block_n": 128, "num_stages": 2}
