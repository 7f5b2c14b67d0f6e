"""Capture small real profiles on a GPU as raw device buffers, for tests that run anywhere later.

    python3 -m bench.capture_real_profiles --out DIR

For each case writes ``DIR/<case>.npz`` holding the raw profile buffer exactly as the GPU wrote it
(``buffer``, uint8) and ``info`` (JSON: kernel name, scope table, geometry, strategy, CTA count,
device), which ``kperf.tracing.decode`` turns back into the launch; and prints a summary line per
case.  It also prints the clock map of a large GEMM launch (no buffer kept: 134 MB).
"""

from __future__ import annotations

import argparse
import json
import pathlib

import numpy as np
import torch

import kperf
from kperf.examples import matmul as mm
from kperf.examples import vector_add as va


def save(out: pathlib.Path, case: str, launch) -> None:
    k = launch.kernel
    info = {
        "kernel": k.name, "scopes": k.scopes.to_json(), "num_warps": k.geometry.num_warps,
        "capacity": k.geometry.capacity, "clock": k.geometry.clock, "strategy": k.strategy,
        "n_ctas": launch.n_ctas, "device": torch.cuda.get_device_name(),
        "torch": torch.__version__, "triton": __import__("triton").__version__,
    }
    buf = np.array(launch.host_bytes(), copy=True)
    np.savez_compressed(out / f"{case}.npz", buffer=buf, info=np.array(json.dumps(info)))
    d = launch.decoded()
    print(f"{case:24s} {len(d.events):>10,} events  {d.lost_total:>6} lost  {d.duration_ns / 1e3:9.1f} us  "
          f"{d.clock_ghz:.3f} GHz  problems={d.problems}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--out", required=True)
    args = p.parse_args()
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)

    a = torch.randn(1024, 1024, device="cuda", dtype=torch.float16)
    b = torch.randn(1024, 1024, device="cuda", dtype=torch.float16)
    k = kperf.profile(mm.matmul_kernel)
    mm.matmul(a, b, kernel=k)
    save(out, "gemm1024_clock", kperf.results(k).launches[-1])

    k = kperf.profile(mm.matmul_kernel, capacity=64)
    mm.matmul(a, b, kernel=k)
    save(out, "gemm1024_overflow64", kperf.results(k).launches[-1])

    k = kperf.profile(mm.matmul_kernel, capacity=64, strategy="wrap")
    mm.matmul(a, b, kernel=k)
    save(out, "gemm1024_wrap64", kperf.results(k).launches[-1])

    x = torch.rand(1 << 18, device="cuda")
    k = kperf.profile(va.add_kernel, clock="globaltimer")
    va.add(x, x, kernel=k)
    save(out, "vector_add_globaltimer", kperf.results(k).launches[-1])

    # a long launch: how far the SM clocks move, and how well the map follows them
    a = torch.randn(8192, 8192, device="cuda", dtype=torch.float16)
    b = torch.randn(8192, 8192, device="cuda", dtype=torch.float16)
    k = kperf.profile(mm.matmul_kernel)
    mm.matmul(a, b, kernel=k)
    mm.matmul(a, b, kernel=k)
    launch = kperf.results(k).launches[-1]
    # the CTA headers alone (4096 x 64 bytes): the clock pairs, for studying the clock map offline
    g = launch.kernel.geometry
    headers = np.frombuffer(launch.host_bytes(), g.cta_dtype(), count=launch.n_ctas)["header"]
    np.save(out / "gemm8192_headers.npy", np.array(headers, copy=True))
    d = launch.decoded()
    sc = d.sm_clocks
    summary = {
        "events": int(len(d.events)), "lost": int(d.lost_total), "problems": d.problems,
        "duration_us": d.duration_ns / 1e3, "launch_ghz": d.clock_ghz,
        "sm_ghz_min": float(sc["ghz_min"].min()), "sm_ghz_max": float(sc["ghz_max"].max()),
        "segments_median": float(np.median(sc["n_segments"])),
        "max_residual_ns": float(sc["max_residual_ns"].max()),
        "rms_residual_ns_median": float(np.median(sc["rms_ns"])),
    }
    (out / "gemm8192_clock_map.json").write_text(json.dumps(summary, indent=1))

    print("gemm8192 clock map:", json.dumps(summary))


if __name__ == "__main__":
    main()
