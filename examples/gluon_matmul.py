"""A pipelined Hopper GEMM in Gluon (TMA loads into a ring of shared-memory stages, async wgmma),
with kperf scopes around the TMA wait and the wgmma of every K iteration.

Run it (needs a Hopper GPU): ``python examples/gluon_matmul.py --out out/gluon_matmul``; it checks the
result against torch, profiles one launch and writes ``chrome_trace.json``.  Without a GPU,
``tests/unit/test_gluon_cpu.py`` compiles it through kperf for sm_90 (see ``compile_report``).

Per K iteration ``k`` (stage ``s = k % STAGES``): wait for stage ``s``'s TMA barrier ("tma_wait"),
issue the wgmma on it and wait until at most one wgmma is in flight ("wgmma"); the wgmma of
iteration ``k - 1`` has then finished, so its stage is refilled with the tiles of ``k + STAGES - 1``.
"""

from __future__ import annotations

import argparse

from triton.experimental import gluon
from triton.experimental.gluon import language as gl
from triton.experimental.gluon.language.nvidia.hopper import (
    fence_async_shared,
    mbarrier,
    tma,
    warpgroup_mma,
    warpgroup_mma_wait,
)

import kperf
from kperf.triton_compat import gluon_tma_load, gluon_tma_store  # renamed in Triton 3.8


@gluon.constexpr_function
def mma_warps(num_warps):
    """wgmma tiling: warpgroups stacked along M."""
    return [num_warps, 1]


@gluon.jit
def gluon_matmul_kernel(a_desc, b_desc, c_desc, STAGES: gl.constexpr, num_warps: gl.constexpr):
    BM: gl.constexpr = c_desc.block_type.shape[0]
    BN: gl.constexpr = c_desc.block_type.shape[1]
    BK: gl.constexpr = a_desc.block_type.shape[1]
    dtype: gl.constexpr = a_desc.dtype
    K = a_desc.shape[1]
    off_m = gl.program_id(0) * BM
    off_n = gl.program_id(1) * BN

    a_bufs = gl.allocate_shared_memory(dtype, [STAGES, BM, BK], a_desc.layout)
    b_bufs = gl.allocate_shared_memory(dtype, [STAGES, BK, BN], b_desc.layout)
    bars = gl.allocate_shared_memory(gl.int64, [STAGES, 1], mbarrier.MBarrierLayout())
    for i in gl.static_range(STAGES):
        mbarrier.init(bars.index(i), count=1)

    mma_layout: gl.constexpr = gl.NVMMADistributedLayout(version=[3, 0], warps_per_cta=mma_warps(num_warps),
                                                         instr_shape=[16, BN, 16])
    acc = gl.zeros((BM, BN), dtype=gl.float32, layout=mma_layout)
    num_k = gl.cdiv(K, BK)
    nbytes: gl.constexpr = a_desc.block_type.nbytes + b_desc.block_type.nbytes

    for i in gl.static_range(STAGES - 1):  # prologue: fill all stages but one
        mbarrier.expect(bars.index(i), nbytes)
        gluon_tma_load(a_desc, [off_m, i * BK], bars.index(i), a_bufs.index(i))
        gluon_tma_load(b_desc, [i * BK, off_n], bars.index(i), b_bufs.index(i))

    for k in range(num_k):
        s = k % STAGES
        with kperf.scope("tma_wait"):
            mbarrier.wait(bars.index(s), (k // STAGES) & 1)
        with kperf.scope("wgmma"):
            acc = warpgroup_mma(a_bufs.index(s), b_bufs.index(s), acc, is_async=True)
            acc = warpgroup_mma_wait(num_outstanding=1, deps=(acc, ))
        kn = k + STAGES - 1
        if kn < num_k:  # refill the stage the previous wgmma has finished reading
            sn = kn % STAGES
            mbarrier.expect(bars.index(sn), nbytes)
            gluon_tma_load(a_desc, [off_m, kn * BK], bars.index(sn), a_bufs.index(sn))
            gluon_tma_load(b_desc, [kn * BK, off_n], bars.index(sn), b_bufs.index(sn))

    acc = warpgroup_mma_wait(num_outstanding=0, deps=(acc, ))
    for i in gl.static_range(STAGES):
        mbarrier.invalidate(bars.index(i))

    c_smem = gl.allocate_shared_memory(c_desc.dtype, [BM, BN], c_desc.layout)
    c_smem.store(acc.to(c_desc.dtype))
    fence_async_shared()
    gluon_tma_store(c_desc, [off_m, off_n], c_smem)
    tma.store_wait(pendings=0)


BM, BN, BK, STAGES, NUM_WARPS = 128, 128, 64, 4, 8


def descriptors(a, b, c):
    """Gluon TMA descriptors for fp16 ``a`` (M x K), ``b`` (K x N), ``c`` (M x N), row-major."""
    from triton.experimental.gluon.nvidia.hopper import TensorDescriptor

    def desc(t, block):
        layout = gl.NVMMASharedLayout.get_default_for(block, gl.float16)
        return TensorDescriptor(t, list(t.shape), list(t.stride()), block, layout)

    return desc(a, [BM, BK]), desc(b, [BK, BN]), desc(c, [BM, BN])


def matmul(a, b, kernel=gluon_matmul_kernel):
    import torch
    M, K = a.shape
    _, N = b.shape
    if M % BM or N % BN or K % BK:
        raise ValueError(f"gluon_matmul needs M % {BM} == N % {BN} == K % {BK} == 0, got {M}x{N}x{K}")
    c = torch.empty((M, N), device=a.device, dtype=torch.float16)
    kernel[(M // BM, N // BN)](*descriptors(a, b, c), STAGES, num_warps=NUM_WARPS)
    return c


def compile_report(size: int = 8192, config=None, target="cuda:90"):
    """``kperf.compile`` of the kernel for ``size``^3 without a GPU (CPU tensors stand in for shapes)."""
    import torch
    from triton.runtime.jit import mangle_type
    a = torch.empty(size, size, dtype=torch.float16)
    descs = descriptors(a, a, a)
    sig = {"a_desc": mangle_type(descs[0]), "b_desc": mangle_type(descs[1]), "c_desc": mangle_type(descs[2]),
           "STAGES": "constexpr", "num_warps": "constexpr"}
    return kperf.compile(gluon_matmul_kernel, signature=sig,
                         constexprs={"STAGES": STAGES, "num_warps": NUM_WARPS},
                         attrs={}, target=target, config=config, num_warps=NUM_WARPS)


def main(argv=None):
    import torch
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--size", type=int, default=4096)
    p.add_argument("--out", default="out/gluon_matmul")
    args = p.parse_args(argv)
    from kperf.examples.gpu import require_gpu
    require_gpu("examples/gluon_matmul.py", hopper=True,
                compile_hint="python3 -c 'from kperf.examples import gluon_matmul as g; "
                             "print(g.compile_report().summary())'")
    torch.manual_seed(0)
    a = torch.randn(args.size, args.size, device="cuda", dtype=torch.float16)
    b = torch.randn(args.size, args.size, device="cuda", dtype=torch.float16)
    ref = matmul(a, b)
    torch.testing.assert_close(ref, (a.float() @ b.float()).half(), rtol=1e-2, atol=1e-1)
    profiled = kperf.profile(gluon_matmul_kernel)
    out = matmul(a, b, kernel=profiled)
    torch.testing.assert_close(out, ref, rtol=0, atol=0)
    prof = kperf.results(profiled)
    print(prof.table())
    print(f"trace: {prof.to_chrome_trace(f'{args.out}/chrome_trace.json')}")


if __name__ == "__main__":
    main()
