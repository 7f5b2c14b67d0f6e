"""Which builds of the held-out WS attention (bench/heldout_attention.py) finish on this GPU, plain.

On an H100 with Triton 3.6 (2026-12-06, bench/results/h100-2026-12-06-s11) its warp-specialized plain
build hung in its first launch (host TMA descriptors) or gave NaN (device descriptors); without warp
specialization it was right.  Each variant here (warp specialization, stages, host or device TMA
descriptors) runs in its own process, all at once under one time limit, so a hang costs only its own
process: plain kernel, one (batch, head)-independent check of the first 4 heads against an fp32
reference.  Written per variant: finished / hung (with where it was, from faulthandler) / failed (with
the error), the seconds taken and the largest difference from the reference.

    python3 -m bench.heldout_smoke --out $OUT/heldout_smoke.json [--timeout 60]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

#: name -> (warp specialization, stages, host descriptors[, BLOCK_N, head dim]).  On an H100 with Triton 3.6
#: (s11) the warp-specialized builds hung (host descriptors) or gave NaN (device descriptors) and the
#: others were right; the last three narrow that down towards examples/attention.py's tiles, which run
#: warp-specialized (head dim 128, 128-wide key blocks).
VARIANTS = {"ws-3-stages": (True, 3, True), "ws-2-stages": (True, 2, True),
            "no-ws-3-stages": (False, 3, True), "no-ws-2-stages": (False, 2, True),
            "ws-3-stages-device-desc": (True, 3, False), "no-ws-2-stages-device-desc": (False, 2, False),
            "ws-2-stages-bn128-device-desc": (True, 2, False, 128, 64),
            "ws-2-stages-d128-device-desc": (True, 2, False, 64, 128),
            "ws-2-stages-bn128-d128": (True, 2, True, 128, 128)}
#: The shape of the GPU test that hung (batch, heads, tokens, head dim).
SHAPE = (2, 32, 4096, 64)


def _child(ws: bool, stages: int, host: bool = True, deadline: float = 3600.0, block_n: int = 64,
           head_dim: int = 64) -> None:
    import faulthandler

    import torch
    faulthandler.dump_traceback_later(deadline, exit=True)  # a hang says where: compiling, or waiting

    from bench import heldout_attention as H
    torch.manual_seed(0)
    shape = (*SHAPE[:3], head_dim)
    q, k, v = (torch.randn(shape, device="cuda", dtype=torch.float16) for _ in range(3))
    out = H.attention(q, k, v, num_stages=stages, warp_specialize=ws, host_descriptors=host, block_n=block_n)
    torch.cuda.synchronize()
    ref = H.reference(q[:1, :4], k[:1, :4], v[:1, :4])
    print(json.dumps({"max_abs_diff": float((out[:1, :4].float() - ref.float()).abs().max())}))


def _start(name: str, deadline: float) -> subprocess.Popen:
    ws, stages, host, *tiles = VARIANTS[name]
    block_n, head_dim = tiles or (64, 64)
    code = (f"from bench.heldout_smoke import _child; "
            f"_child({ws}, {stages}, {host}, {deadline}, {block_n}, {head_dim})")
    return subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


def _finish(name: str, p: subprocess.Popen, t0: float, deadline: float) -> dict:
    try:  # the child dumps its stacks and exits at the deadline; the kill is for one that cannot
        out, err = p.communicate(timeout=max(1.0, deadline + 10 - time.perf_counter()))
    except subprocess.TimeoutExpired:
        p.kill()
        p.communicate()
        return {"variant": name, "result": "hung", "seconds": round(time.perf_counter() - t0, 1)}
    res = {"variant": name, "seconds": round(time.perf_counter() - t0, 1)}
    if "Timeout (" in err:  # faulthandler's dump: where each thread was
        return {**res, "result": "hung", "where": _stack_of_main_thread(err)}
    if p.returncode:
        return {**res, "result": "failed", "error": (err.strip().splitlines() or ["?"])[-1][:400]}
    return {**res, "result": "finished", **json.loads(out.strip().splitlines()[-1])}


def _stack_of_main_thread(dump: str, lines: int = 12) -> list[str]:
    """The innermost frames of the dump's last thread block (the main thread's, printed last)."""
    blocks = dump.split("\nThread ")
    frames = [ln.strip() for ln in blocks[-1].splitlines() if ln.strip().startswith("File ")]
    return frames[:lines]


def run_variants(names: list[str], timeout: float) -> list[dict]:
    """All variants at once, one process each (a hang holds only its own process and SMs it occupies;
    the others' kernels still finish), each given ``timeout`` seconds from the common start; a variant
    still running then dumps where it was (faulthandler) and is reported hung."""
    t0 = time.perf_counter()
    procs = {n: _start(n, timeout) for n in names}
    return [_finish(n, p, t0, t0 + timeout) for n, p in procs.items()]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--timeout", type=float, default=60.0)
    ap.add_argument("--variants", default=",".join(VARIANTS))
    args = ap.parse_args(argv)
    from bench.timing import run_info
    rows = run_variants(args.variants.split(","), args.timeout)
    with open(args.out, "w") as f:
        json.dump({"run": run_info(argv),
                   "shape": SHAPE, "timeout_s": args.timeout, "variants": rows}, f, indent=1)
    for r in rows:
        detail = r.get("max_abs_diff", r.get("error", " <- ".join(r.get("where", [])[:4])))
        print(f"{r['variant']:16} {r['result']:9} {r['seconds']:6.1f} s  {detail}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
