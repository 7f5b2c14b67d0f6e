"""A session over many short launches: host time per launch, memory held, time to results.

The case from issue 16: 1000 launches of a small ``@kperf.profile`` kernel (1024 CTAs of 4 warps, about
17 us each on an H100).  Measured in one process, side by side:

- ``plain``: the kernel without kperf, 1000 launches back to back (wall time / launch, after a sync);
- ``copy``: one device-to-host copy of the kernel's profile buffer into pinned memory (CUDA events), the
  copy every profiled launch needs;
- ``kperf``: the same 1000 launches under ``kperf.profile`` (default options) and under a session with
  ``every=10``; per launch wall time, device memory kperf held at the end of the loop
  (``torch.cuda.memory_allocated`` above the plain run's), pinned bytes held, and the seconds from the
  last launch to decoded results and ``table()``.

    python3 -m bench.session_scale --out bench/results/.../session_scale.json [--launches 1000]
"""

from __future__ import annotations

import argparse
import json
import pathlib
import time

from bench.timing import run_info

BLOCK = 4096


def _kernel():
    import triton
    import triton.language as tl

    import kperf

    @triton.jit
    def step(x, y, out, n, BLOCK: tl.constexpr):
        i = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
        with kperf.scope("load"):
            a = tl.load(x + i, mask=i < n)
            b = tl.load(y + i, mask=i < n)
        with kperf.scope("compute"):
            c = tl.sqrt(a * a + b * b) * 0.5 + a
        with kperf.scope("store"):
            tl.store(out + i, c, mask=i < n)
    return step


def _loop(launch, n: int) -> float:
    """Seconds per launch of ``n`` launches back to back (the GPU drained before and after)."""
    import torch
    torch.cuda.synchronize()
    t = time.perf_counter()
    for _ in range(n):
        launch()
    torch.cuda.synchronize()
    return (time.perf_counter() - t) / n


def _copy_us(nbytes: int, reps: int = 200) -> float:
    import torch
    dev = torch.zeros(nbytes, dtype=torch.uint8, device="cuda")
    host = torch.empty(nbytes, dtype=torch.uint8, pin_memory=True)
    a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    host.copy_(dev, non_blocking=True)
    a.record()
    for _ in range(reps):
        host.copy_(dev, non_blocking=True)
    b.record()
    b.synchronize()
    return a.elapsed_time(b) * 1e3 / reps


def _host_profile(launch, n: int, top: int = 25, sync=None) -> list:
    """Where the host time of ``n`` more launches goes (cProfile, own time per function, top ``top``):
    which part of a profiled launch -- kperf's Python, Triton's launcher, the buffer's allocation and
    memset -- sets the per-launch time on this machine."""
    import cProfile
    import pstats
    if sync is None:
        import torch
        sync = torch.cuda.synchronize
    sync()
    pr = cProfile.Profile()
    pr.enable()
    for _ in range(n):
        launch()
    pr.disable()
    sync()
    st = pstats.Stats(pr).stats
    where = {k: f"{k[0].split('site-packages/')[-1]}:{k[1]}({k[2]})" for k in st}
    rows = sorted(((v[2] / n * 1e6, v[3] / n * 1e6, v[1] / n, where[k]) for k, v in st.items()),
                  reverse=True)[:top]
    return [{"own_us_per_launch": round(own, 2), "cumulative_us_per_launch": round(cum, 2),
             "calls_per_launch": calls, "function": name} for own, cum, calls, name in rows]


def _held_zeros_us(nbytes: int, n: int) -> float:
    """Per launch: allocating and zeroing ``n`` device buffers of ``nbytes`` one by one, all kept until
    the end: what a profiled launch paid for its buffer before kperf carved buffers from slabs."""
    import torch
    torch.cuda.synchronize()
    torch.cuda.empty_cache()  # from the driver, as kperf's first 1000 launches got theirs
    t = time.perf_counter()
    held = [torch.zeros(nbytes, dtype=torch.uint8, device="cuda") for _ in range(n)]
    torch.cuda.synchronize()
    per = (time.perf_counter() - t) / n
    del held
    return per * 1e6


def _profiled(fn, launches: int, grid, args, host_profile: bool = False, **options) -> dict:
    """kperf.profile over ``launches`` launches: time per launch, memory held, time to results."""
    import torch

    import kperf
    k = kperf.profile(fn, **options)
    k[grid](*args, BLOCK=BLOCK)  # compile
    torch.cuda.synchronize()
    k.reset()
    base = torch.cuda.memory_allocated()
    try:
        from kperf.copy_out import HELD
        spills0 = HELD.spills
    except ImportError:
        spills0 = 0
    per = _loop(lambda: k[grid](*args, BLOCK=BLOCK), launches)
    held_dev = torch.cuda.memory_allocated() - base
    if not k.launches:
        raise RuntimeError(f"kperf.profile recorded none of {launches} launches")
    first = k.launches[0]  # kept: the host profile below resets the kernel's launches
    try:  # what kperf holds after the loop: device buffers (issue 16) / pinned copies (before)
        from kperf.copy_out import HELD
        held_host, spills = 0, HELD.spills - spills0
    except ImportError:
        held_host, spills = sum(r.n_ctas * r.kernel.geometry.cta_bytes for r in k.launches), 0
    t = time.perf_counter()
    prof = kperf.results(k)
    decs = prof.decoded()
    table = prof.table()
    to_results = time.perf_counter() - t
    events = sum(d.n_events for d in decs)
    lost = sum(int(d.lost_total) for d in decs)
    g = first.kernel.geometry
    hot = None
    if host_profile:  # after the results: these launches are not among those counted above
        k.reset()
        hot = _host_profile(lambda: k[grid](*args, BLOCK=BLOCK), min(launches, 200))
        k.reset()
    return {"us_per_launch": per * 1e6, "device_bytes_held": held_dev, "pinned_bytes_held": held_host,
            "results_s": to_results, "launches": len(decs), "events": events, "lost": lost,
            "capacity": g.capacity, "buffer_bytes": first.n_ctas * g.cta_bytes,
            "table_lines": table.count("\n") + 1,
            "problems": [p for d in decs for p in d.problems][:5],
            "rejected": sum(int(getattr(d, "rejected_total", 0)) for d in decs),
            "spills": spills, **({"host_profile": hot} if hot else {})}


def main(argv=None) -> int:
    import torch

    import kperf
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--launches", type=int, default=1000)
    p.add_argument("--out", required=True)
    p.add_argument("--baseline", action="store_true",
                   help="only the default kperf.profile case (for a checkout from before sessions at scale)")
    p.add_argument("--host-profile", action="store_true",
                   help="also profile 200 more launches' host time by function (cProfile) into the JSON")
    args = p.parse_args(argv)
    fn = _kernel()
    n = 1024 * BLOCK
    x, y = torch.rand(n, device="cuda"), torch.rand(n, device="cuda")
    out = torch.empty_like(x)
    grid = (1024,)
    fn[grid](x, y, out, n, BLOCK=BLOCK)
    plain_out = out.clone()
    plain = _loop(lambda: fn[grid](x, y, out, n, BLOCK=BLOCK), args.launches)
    res = {"run": run_info(argv), "launches": args.launches, "plain_us_per_launch": plain * 1e6}
    res["kperf_profile"] = _profiled(fn, args.launches, grid, (x, y, out, n), host_profile=args.host_profile)
    assert torch.equal(out, plain_out), "kperf changed the kernel's output"
    res["copy_us"] = _copy_us(res["kperf_profile"]["buffer_bytes"])
    res["held_zeros_us"] = _held_zeros_us(res["kperf_profile"]["buffer_bytes"], args.launches)
    if args.baseline:
        return _write(res, args)
    res["kperf_profile_small_budget"] = _profiled(fn, args.launches, grid, (x, y, out, n),
                                                  memory_budget="64MiB")
    res["kperf_profile_again"] = _profiled(fn, args.launches, grid, (x, y, out, n))  # run-to-run spread
    with kperf.session(every=10) as s:
        t = time.perf_counter()
        for _ in range(args.launches):
            fn[grid](x, y, out, n, BLOCK=BLOCK)
        torch.cuda.synchronize()
        per = (time.perf_counter() - t) / args.launches
    t = time.perf_counter()
    s.decoded()
    res["session_every_10"] = {"us_per_launch": per * 1e6, "profiled": len(s.launches),
                               "results_s": time.perf_counter() - t, "coverage": s.coverage.rows()}
    return _write(res, args)


def _write(res: dict, args) -> int:
    target = 2 * (res["plain_us_per_launch"] + res["copy_us"])
    res["target_us_per_launch"] = target
    path = pathlib.Path(args.out)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(res, indent=1))
    kp = res["kperf_profile"]
    print(f"plain {res['plain_us_per_launch']:.1f} us/launch, copy {res['copy_us']:.1f} us "
          f"({kp['buffer_bytes']} B), target <= {target:.1f} us; a held buffer of its own per launch "
          f"{res.get('held_zeros_us', float('nan')):.1f} us")
    for name in ("kperf_profile", "kperf_profile_again", "kperf_profile_small_budget"):
        if name not in res:
            continue
        r = res[name]
        print(f"{name}: {r['us_per_launch']:.1f} us/launch, "
              f"device held {r['device_bytes_held'] / 2**20:.1f} MiB, "
              f"pinned held {r['pinned_bytes_held'] / 2**20:.1f} MiB, results {r['results_s']:.2f} s, "
              f"{r['events']} events, lost {r['lost']}, capacity {r['capacity']}, spills {r['spills']}")
    r = res.get("session_every_10")
    if r is None:
        return 0
    print(f"session every=10: {r['us_per_launch']:.1f} us/launch, {r['profiled']} profiled, "
          f"results {r['results_s']:.2f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
