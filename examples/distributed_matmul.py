"""A data-parallel step on every rank of a torchrun job, profiled with ``kperf.distributed.session``.

    torchrun --nproc_per_node 2 examples/distributed_matmul.py --out out/dist
    kperf merge out/dist --out out/dist/merged.json

Every rank runs the example GEMM (``examples/matmul.py``, with kperf scopes) and then an all-reduce
of its result, the collective that makes every rank wait for the slowest; the session writes
``out/dist/rank<r>.kperf`` on each rank, and ``kperf merge`` puts them on one timeline with the
straggler of every step.  ``--delay-rank R --delay-ms T`` holds rank R back before each step on the
host, to see a straggler.  World size 1 works too (``--nproc_per_node 1``).  Needs a CUDA GPU per rank.
"""

from __future__ import annotations

import argparse
import os
import time


def main(argv=None) -> int:
    import torch
    import torch.distributed as dist

    import kperf.distributed
    from kperf.examples.gpu import require_gpu
    from kperf.examples.matmul import matmul

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size", type=int, default=2048)
    p.add_argument("--steps", type=int, default=4)
    p.add_argument("--out", default="out/dist")
    p.add_argument("--delay-rank", type=int, default=-1, help="rank held back before each step")
    p.add_argument("--delay-ms", type=float, default=0.0)
    args = p.parse_args(argv)
    require_gpu("examples/distributed_matmul.py",
                compile_hint="kperf compile examples/matmul.py:matmul_kernel")
    torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group("nccl")
    rank = dist.get_rank()
    torch.manual_seed(rank)
    a = torch.randn(args.size, args.size, device="cuda", dtype=torch.float16)
    b = torch.randn(args.size, args.size, device="cuda", dtype=torch.float16)
    plain = matmul(a, b)
    outs = []
    t = time.perf_counter()
    with kperf.distributed.session(args.out, kernels="matmul_kernel") as s:
        entered = time.perf_counter()
        for _ in range(args.steps):
            if rank == args.delay_rank:
                time.sleep(args.delay_ms / 1000)
            c = matmul(a, b)
            outs.append(c.clone())
            dist.all_reduce(c)
        left = time.perf_counter()
    done = time.perf_counter()
    assert all(torch.equal(o, plain) for o in outs), "the profiled GEMM's output differs from the plain one"
    spans = [(r["host"][-1][1] - r["host"][0][0]) / 1e6 for r in s.sync]
    print(f"rank {rank}: {len(s.launches)} launches profiled, outputs identical to the plain kernel's; "
          f"clock exchange {spans[0]:.2f} ms at start, {spans[1]:.2f} ms at end (gpu probe: "
          f"{s.sync[0]['gpu_method']}); session enter {1e3 * (entered - t):.1f} ms, exit and save "
          f"{1e3 * (done - left):.1f} ms", flush=True)
    dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
