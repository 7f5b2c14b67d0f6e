"""Vector add with one kperf scope per block: the smallest profiled kernel.

``python examples/vector_add.py --out out/vector_add`` (needs a CUDA GPU) checks the result, prints
the scope statistics and writes ``out/vector_add/chrome_trace.json``.  Without a GPU,
``kperf compile examples/vector_add.py:add_kernel`` compiles it with the arguments declared below
(``SIGNATURE``, ``CONSTEXPRS``, ``COMPILE_OPTIONS``).
"""

from __future__ import annotations

import argparse

import triton
import triton.language as tl

import kperf


@triton.jit
def add_kernel(x_ptr, y_ptr, out_ptr, n, BLOCK: tl.constexpr):
    pid = tl.program_id(0)
    offs = pid * BLOCK + tl.arange(0, BLOCK)
    mask = offs < n
    with kperf.scope("load"):
        x = tl.load(x_ptr + offs, mask=mask)
        y = tl.load(y_ptr + offs, mask=mask)
    with kperf.scope("store"):
        tl.store(out_ptr + offs, x + y, mask=mask)


# one compile configuration, for `kperf compile` and kperf.compile (no GPU needed)
SIGNATURE = {"x_ptr": "*fp32", "y_ptr": "*fp32", "out_ptr": "*fp32", "n": "i32", "BLOCK": "constexpr"}
CONSTEXPRS = {"BLOCK": 1024}
COMPILE_OPTIONS = {"num_warps": 4}


def add(x, y, kernel=add_kernel, BLOCK=1024):
    import torch
    out = torch.empty_like(x)
    n = x.numel()
    kernel[(triton.cdiv(n, BLOCK),)](x, y, out, n, BLOCK=BLOCK)
    return out


def main(argv=None):
    import torch
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--n", type=int, default=1 << 24)
    p.add_argument("--out", default="out/vector_add")
    args = p.parse_args(argv)
    from kperf.examples.gpu import require_gpu
    require_gpu("examples/vector_add.py", compile_hint="kperf compile examples/vector_add.py:add_kernel")
    x = torch.rand(args.n, device="cuda")
    y = torch.rand(args.n, device="cuda")
    with kperf.session(args.out) as s:
        out = add(x, y)
    torch.testing.assert_close(out, x + y, rtol=0, atol=0)
    print(s.table())
    print(f"trace: {args.out}/chrome_trace.json")


if __name__ == "__main__":
    main()
