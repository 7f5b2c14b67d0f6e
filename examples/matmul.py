"""A pipelined fp16 GEMM with kperf scopes inside the K loop.

Run it (needs a CUDA GPU): ``python examples/matmul.py --out out/matmul``; it checks the result
against torch, profiles one launch and writes ``chrome_trace.json`` (open it in https://ui.perfetto.dev
or chrome://tracing).
"""

from __future__ import annotations

import argparse

import triton
import triton.language as tl

import kperf


@triton.jit
def matmul_kernel(a_ptr, b_ptr, c_ptr, M, N, K, stride_am, stride_ak, stride_bk, stride_bn, stride_cm,
                  stride_cn, BM: tl.constexpr, BN: tl.constexpr, BK: tl.constexpr, GROUP_M: tl.constexpr):
    pid = tl.program_id(0)
    num_pid_m = tl.cdiv(M, BM)
    num_pid_n = tl.cdiv(N, BN)
    group = GROUP_M * num_pid_n
    first_m = (pid // group) * GROUP_M
    size_m = min(num_pid_m - first_m, GROUP_M)
    pid_m = first_m + (pid % group) % size_m
    pid_n = (pid % group) // size_m
    rm = (pid_m * BM + tl.arange(0, BM)) % M
    rn = (pid_n * BN + tl.arange(0, BN)) % N
    rk = tl.arange(0, BK)
    a_ptrs = a_ptr + rm[:, None] * stride_am + rk[None, :] * stride_ak
    b_ptrs = b_ptr + rk[:, None] * stride_bk + rn[None, :] * stride_bn
    acc = tl.zeros((BM, BN), dtype=tl.float32)
    for k in range(0, tl.cdiv(K, BK)):
        with kperf.scope("load"):
            a = tl.load(a_ptrs, mask=rk[None, :] < K - k * BK, other=0.0)
            b = tl.load(b_ptrs, mask=rk[:, None] < K - k * BK, other=0.0)
        with kperf.scope("mma"):
            acc = tl.dot(a, b, acc)
        a_ptrs += BK * stride_ak
        b_ptrs += BK * stride_bk
    with kperf.scope("epilogue"):
        rcm = pid_m * BM + tl.arange(0, BM)
        rcn = pid_n * BN + tl.arange(0, BN)
        c_ptrs = c_ptr + rcm[:, None] * stride_cm + rcn[None, :] * stride_cn
        tl.store(c_ptrs, acc.to(tl.float16), mask=(rcm[:, None] < M) & (rcn[None, :] < N))


SIGNATURE = {"a_ptr": "*fp16", "b_ptr": "*fp16", "c_ptr": "*fp16", "M": "i32", "N": "i32", "K": "i32",
             "stride_am": "i32", "stride_ak": "constexpr", "stride_bk": "i32", "stride_bn": "constexpr",
             "stride_cm": "i32", "stride_cn": "constexpr", "BM": "constexpr", "BN": "constexpr",
             "BK": "constexpr", "GROUP_M": "constexpr"}
CONSTEXPRS = {"stride_ak": 1, "stride_bn": 1, "stride_cn": 1, "BM": 128, "BN": 128, "BK": 64, "GROUP_M": 8}
COMPILE_OPTIONS = {"num_warps": 8, "num_stages": 3}


def matmul(a, b, kernel=matmul_kernel, BM=128, BN=128, BK=64, num_warps=8, num_stages=3):
    import torch
    M, K = a.shape
    _, N = b.shape
    c = torch.empty((M, N), device=a.device, dtype=torch.float16)
    grid = (triton.cdiv(M, BM) * triton.cdiv(N, BN),)
    kernel[grid](a, b, c, M, N, K, a.stride(0), a.stride(1), b.stride(0), b.stride(1), c.stride(0),
                 c.stride(1), BM=BM, BN=BN, BK=BK, GROUP_M=8, num_warps=num_warps, num_stages=num_stages)
    return c


def main(argv=None):
    import torch
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--size", type=int, default=4096)
    p.add_argument("--out", default="out/matmul")
    args = p.parse_args(argv)
    from kperf.examples.gpu import require_gpu
    require_gpu("examples/matmul.py", compile_hint="kperf compile examples/matmul.py:matmul_kernel")
    torch.manual_seed(0)
    a = torch.randn(args.size, args.size, device="cuda", dtype=torch.float16)
    b = torch.randn(args.size, args.size, device="cuda", dtype=torch.float16)
    ref = matmul(a, b)
    profiled = kperf.profile(matmul_kernel)
    out = matmul(a, b, kernel=profiled)
    torch.testing.assert_close(out, ref, rtol=0, atol=0)
    prof = kperf.results(profiled)
    print(prof.table())
    path = prof.to_chrome_trace(f"{args.out}/chrome_trace.json")
    print(f"trace: {path}")


if __name__ == "__main__":
    main()
