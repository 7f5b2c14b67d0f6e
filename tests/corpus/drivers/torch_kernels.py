"""Drive the Triton kernels PyTorch ships in its wheel, for ``kperf corpus record``.

    kperf corpus record tests/corpus/torch.tar.xz --label torch -- tests/corpus/drivers/torch_kernels.py

Two sets (PyTorch's BSD-3-Clause code, run unchanged): ``torch.sparse._triton_ops`` (block-sparse matmul,
sampled addmm, block-sparse softmax and attention) and the kernels of
``torch.testing._internal.triton_utils``, which PyTorch's own tests launch directly and through
``torch.compile`` (Inductor's user-defined-kernel path: a kernel and its autotuning configs compiled by
Inductor).
"""

from __future__ import annotations

import functools

import torch
import triton
from _cases import DEVICE, Cases, randn


def sparse(dt):
    from torch.sparse import _triton_ops as ops
    dense = randn(256, 256, dtype=dt)
    mask = torch.rand(8, 8, device=DEVICE) < 0.4
    dense = dense * mask.repeat_interleave(32, 0).repeat_interleave(32, 1).to(dt)
    bsr = dense.to_sparse_bsr((32, 32))
    ops.bsr_dense_mm(bsr, randn(256, 128, dtype=dt))
    ops.sampled_addmm(bsr, randn(256, 64, dtype=dt), randn(64, 256, dtype=dt))
    ops.bsr_softmax(bsr)
    q, k, v = (randn(2, 256, 64, dtype=dt) for _ in range(3))
    ops._scaled_dot_product_attention(q, k, v, bsr)
    ops.bsr_scatter_mm(bsr, randn(256, 64, dtype=dt))


def _testing_module():
    """``torch.testing._internal.triton_utils``; its package imports ``expecttest`` (a test dependency of
    PyTorch's, absent from most installs), which these kernels do not use: a stand-in is put in its place."""
    import sys
    import types
    try:
        import expecttest  # noqa: F401
    except ImportError:
        stub = types.ModuleType("expecttest")
        stub.TestCase = type("TestCase", (), {})
        sys.modules["expecttest"] = stub
    from torch.testing._internal import triton_utils
    return triton_utils


def testing_kernels(compiled: bool):
    tu = _testing_module()
    n = 4096
    x, y = randn(n), randn(n)

    def add(x, y):
        out = torch.empty_like(x)
        tu.add_kernel[(triton.cdiv(n, 256),)](x, y, out, n, BLOCK_SIZE=256)
        tu.add_kernel_autotuned[lambda meta: (triton.cdiv(n, meta["BLOCK_SIZE"]),)](x, y, out, n)
        tu.add_kernel_with_block_ptr[(triton.cdiv(n, 128),)](x, y, out, n, BLOCK_SIZE=128)
        tu.atomic_add_kernel[(triton.cdiv(n, 128),)](x, y, out, n, BLOCK_SIZE=128)
        tu.add_4_times_kernel[(triton.cdiv(n, 128),)](x, y, out, n, BLOCK_SIZE=128)
        tu.cond_op_kernel[(triton.cdiv(n, 128),)](x, y, out, n, BLOCK_SIZE=128)
        tu.mul2_kernel[(triton.cdiv(n, 512),)](x, out, n, BLOCK_SIZE=512)
        tu.indirection_kernel[(triton.cdiv(n, 128),)](x, out, n, BLOCK_SIZE=128, ACTIVATION="add_kernel")
        tu.add_kernel_with_scaling[(triton.cdiv(n, 256),)](x, y, out, n, 2.0, BLOCK_SIZE=256)
        return out
    a, b = randn(64, 64), randn(64, 64)

    def two_d(a, b):
        out = torch.empty_like(a)
        grid = lambda meta: (triton.cdiv(64, meta["BLOCK_SIZE_X"]), triton.cdiv(64, meta["BLOCK_SIZE_Y"]))  # noqa: E731
        tu.add_kernel_2d_autotuned[grid](a, b, out, 64, 64)
        tu.double_strided_kernel[(4, 4)](a, out, a.stride(0), out.stride(0), X_BLOCK_SIZE=16, Y_BLOCK_SIZE=16)
        return out
    run_add, run_2d = (torch.compile(add), torch.compile(two_d)) if compiled else (add, two_d)
    run_add(x, y)
    run_2d(a, b)
    if not compiled:
        m = torch.tensor([64], device=DEVICE, dtype=torch.int32)
        h = randn(64, 64, dtype=torch.float16)
        out = torch.empty(64, 64, device=DEVICE, dtype=torch.float16)
        tiles = lambda meta: (triton.cdiv(64, meta["BLOCK_SIZE_M"]) * triton.cdiv(64, meta["BLOCK_SIZE_N"]),)  # noqa: E731
        tu.strange_config_matmul_kernel[tiles](h, h, out, m, 64, 64)
        i = torch.randint(0, 100, (128,), device=DEVICE, dtype=torch.int32)
        tu.inline_asm_kernel_is_pure_true[(1,)](i, i, i.clone(), n=3, BLOCK=128)


def main() -> None:
    cases = Cases("torch")
    for dt in (torch.float16, torch.bfloat16, torch.float32):
        cases.run(f"sparse[{str(dt).removeprefix('torch.')}]", functools.partial(sparse, dt))
    cases.run("testing_kernels[launched]", functools.partial(testing_kernels, False))
    if DEVICE == "cuda":  # Inductor generates Triton for GPUs only
        cases.run("testing_kernels[torch.compile]", functools.partial(testing_kernels, True))
    cases.summary()


if __name__ == "__main__":
    main()
