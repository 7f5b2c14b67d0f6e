"""Host time per call of the FA3 wrappers at a tiny shape, where the GPU outruns the host.

    python3 -m bench.fa3_host_time [--out DIR]        # needs a Hopper GPU

Per variant: host time per call (the loop without synchronising), wall time per call (synchronised
at the end: the rate do_bench sees when the host is the bottleneck), and a cProfile of 200 calls (top
entries by cumulative time) so the expensive host steps are named.  Then the steps of the Gluon
wrapper timed alone (no profiler): host descriptors, the JIT launch with prebuilt arguments, the
whole wrapper.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import pathlib
import pstats
import sys
import time

from bench.timing import per_call_us


def gluon_steps(q, k, v, calls: int, pipeline: str = "ws_overlap") -> dict:
    """Microseconds per call of each host step of ``fa3_attention`` (the GPU synchronised once at the end)."""
    import torch

    from kperf.examples import fa3_pipelines as fa3
    p = fa3.get_pipeline(pipeline)
    Z, H, n, d = q.shape
    o = torch.empty_like(q)
    descs = lambda: fa3.tensor_descriptors(p, q, k, v, o)  # noqa: E731
    dq, dk, dv, do = descs()
    cx = p.constexprs(head_dim=d, causal=False)
    grid = (fa3.grid_ctas(p, q),)
    launch = lambda: fa3.fa3_fwd_kernel[grid](dq, dk, dv, do, 0.1, n, Z * H, **cx, **fa3.COMPILE_OPTIONS)  # noqa: E731
    launch()
    torch.cuda.synchronize()
    out = {"tile_layouts": per_call_us(lambda: fa3.tile_layouts("fp16", d, p.kv_box), calls),
           "4 descriptors": per_call_us(descs, calls),
           "constexprs": per_call_us(lambda: p.constexprs(head_dim=d, causal=False), calls),
           "JIT launch": per_call_us(launch, calls),
           "whole wrapper": per_call_us(lambda: fa3.fa3_attention(q, k, v, False, pipeline=p), calls)}
    torch.cuda.synchronize()
    return out


def main(argv=None) -> int:
    import torch

    from kperf.tritonbench_ext.variants import VARIANTS
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--variants", default="kperf_vanilla,kperf_ws_overlap,kperf_ws_pingpong_persistent")
    ap.add_argument("--shape", default="16,16,128,128", help="batch,heads,seq,head_dim")
    ap.add_argument("--calls", type=int, default=200)
    ap.add_argument("--out")
    args = ap.parse_args(argv)
    shape = tuple(int(x) for x in args.shape.split(","))
    q, k, v = (torch.randn(shape, device="cuda", dtype=torch.float16) for _ in range(3))
    res = {}
    for name in args.variants.split(","):
        fn = VARIANTS[name].make(q, k, v, False, shape[-1] ** -0.5)
        for _ in range(5):
            fn()
        torch.cuda.synchronize()
        t = time.perf_counter()
        for _ in range(args.calls):
            fn()
        host = (time.perf_counter() - t) / args.calls
        torch.cuda.synchronize()
        wall = (time.perf_counter() - t) / args.calls
        prof = cProfile.Profile()
        prof.enable()
        for _ in range(args.calls):
            fn()
        prof.disable()
        torch.cuda.synchronize()
        s = io.StringIO()
        pstats.Stats(prof, stream=s).sort_stats("cumulative").print_stats(25)
        res[name] = {"host_us_per_call": host * 1e6, "wall_us_per_call": wall * 1e6, "profile": s.getvalue()}
        print(f"{name:<32} host {host * 1e6:7.1f} us/call  wall {wall * 1e6:7.1f} us/call", flush=True)
    res["gluon_steps_us"] = steps = gluon_steps(q, k, v, args.calls)
    for name, r in res.items():
        if "profile" in r:
            print(f"\n===== {name}\n{r['profile']}")
    print("Gluon wrapper steps (us per call): " + ", ".join(f"{k} {v:.1f}" for k, v in steps.items()))
    if args.out:
        pathlib.Path(args.out).mkdir(parents=True, exist_ok=True)
        (pathlib.Path(args.out) / "host_time.json").write_text(json.dumps(res, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
