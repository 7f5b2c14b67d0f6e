"""Size, save and load time of saved profiles (``.kperf``), format version 1 against version 2.

Profiles, each decoded once, then saved in both versions and loaded back (the loads must be equal to
each other and to the original: events, intervals, CTA and lost tables):

- ``gemm8192_h100_gaps``: the shape of the issue's GEMM 8192^3 launch on the H100 (4096 CTAs x 8 warps
  x 514 records = 16.8M events, capacity 1024, 32-bit clock: a 269 MB buffer), each warp's records
  built from the real H100 GEMM buffer in tests/data/h100 (its tag sequence, and blocks of 4 gaps
  between records drawn at random from its warps' K iterations, so the gaps are real but shuffled:
  harder to compress than a real launch, whose iterations repeat);
- ``gemm8192_synthetic``: tests/unit/reference_encoder.bulk_buffer's GEMM (4096 x 8 x 512, every
  record 100 cycles after the last: as bench/host_throughput.py; compresses unrealistically well);
- the real H100 buffers of tests/data/h100 (GEMM 1024^3, capacity 1024 and 64, keep-first and wrap);
- with ``--gpu``: a GEMM 8192^3 profiled on this machine's GPU (examples/matmul.py's kernel).

    python3 -m bench.saved_size --out bench/results/cpu-<date>

Writes ``saved_size.json`` (every number, the machine, the command) and prints a table.  Times are
``first`` (first run in the process) and ``best`` of ``--repeat``; load includes decoding.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import sys
import tempfile
import zipfile

import numpy as np

from bench.host_throughput import rss_mb
from bench.timing import cpu_run_info, first_and_best
from kperf.dialect.layout import Geometry
from kperf.tracing import decode, load_profile, save_profile
from tests.unit.reference_encoder import bulk_buffer  # the tests' independent encoder (run from the root)

DATA = pathlib.Path(__file__).resolve().parents[1] / "tests" / "data" / "h100"


def real(case: str):
    z = np.load(DATA / f"{case}.npz")
    info = json.loads(str(z["info"]))
    g = Geometry(info["num_warps"], info["capacity"], info["clock"])
    return decode(z["buffer"], g, strategy=info["strategy"], n_ctas=info["n_ctas"], scopes=info["scopes"],
                  kernel=info["kernel"])


def h100_gaps(n_ctas: int = 4096, iterations: int = 128, capacity: int = 1024, seed: int = 0):
    """The GEMM 8192^3 launch's shape with the real H100 GEMM's tags and record gaps (module docstring)."""
    src = real("gemm1024_clock")
    z = np.load(DATA / "gemm1024_clock.npz")
    gs = src.geometry
    a = np.frombuffer(z["buffer"], gs.cta_dtype())
    per = int(a["counts"].max())  # 4 per K iteration + 2 (epilogue)
    rec = a["records"][:, :, :per].reshape(-1, per)
    gaps = np.diff(rec["time"].astype(np.int64), axis=1)  # (warps, per - 1)
    blocks = gaps[:, : 4 * ((per - 2) // 4 - 1)].reshape(-1, 4)  # every K iteration but the last
    tails = gaps[:, 4 * ((per - 2) // 4 - 1):]  # the last iteration and the epilogue
    n_rec = 4 * iterations + 2
    g, raw = bulk_buffer(n_ctas, gs.num_warps, capacity)  # headers: spans long enough for n_rec records
    out = np.frombuffer(bytearray(raw), g.cta_dtype())
    rng = np.random.default_rng(seed)
    W = n_ctas * g.num_warps
    d = np.empty((W, n_rec - 1), np.int64)
    d[:, : 4 * (iterations - 1)] = blocks[rng.integers(0, len(blocks), (W, iterations - 1))].reshape(W, -1)
    d[:, 4 * (iterations - 1):] = tails[rng.integers(0, len(tails), W)]
    start = out["header"]["clock_start"].astype(np.int64).repeat(g.num_warps) + 1500
    t = np.concatenate([start[:, None], start[:, None] + np.cumsum(d, axis=1)], axis=1)
    out["records"]["tag"] = 0
    out["records"]["time"] = 0
    out["records"]["tag"][:, :, :n_rec] = rec["tag"][0, [0, 1, 2, 3] * iterations + [per - 2, per - 1]]
    out["records"]["time"][:, :, :n_rec] = (t & 0xFFFFFFFF).reshape(n_ctas, g.num_warps, n_rec)
    out["counts"] = n_rec
    return decode(out.view(np.uint8).reshape(-1), g, strategy="keep-first", scopes=src.scopes,
                  kernel="matmul_kernel")


def synthetic():
    g, raw = bulk_buffer(4096, 8, 512)
    return decode(raw, g, strategy="keep-first", scopes=4, kernel="matmul")


def gpu_gemm(size: int = 8192):
    """A GEMM ``size``^3 profiled on this machine's GPU (kperf.profile's defaults)."""
    import torch

    import kperf
    from kperf.examples import matmul as mm
    torch.manual_seed(0)
    a = torch.randn(size, size, device="cuda", dtype=torch.float16)
    b = torch.randn(size, size, device="cuda", dtype=torch.float16)
    k = kperf.profile(mm.matmul_kernel)
    mm.matmul(a, b, kernel=k)
    mm.matmul(a, b, kernel=k)
    return kperf.results(k).launches[-1].decoded(), torch.cuda.get_device_name()


def _equal(a, b) -> bool:
    return (np.array_equal(a.events, b.events) and np.array_equal(a.intervals()[0], b.intervals()[0])
            and np.array_equal(a.ctas, b.ctas) and np.array_equal(a.lost, b.lost)
            and a.problems == b.problems)


def measure(d, tmp: str, repeat: int, levels=()) -> dict:
    E = d.n_events
    res: dict = {"events": E, "n_ctas": d.n_ctas, "geometry": d.geometry.to_json(), "strategy": d.strategy,
                 "buffer_bytes": int(np.asarray(d.raw).size), "problems": d.problems}
    loads = []
    for v in (1, 2):
        path = os.path.join(tmp, f"v{v}.kperf")
        f, b, _ = first_and_best(lambda: save_profile(path, [d], version=v), repeat)  # noqa: B023
        lf, lb, [back] = first_and_best(lambda: load_profile(path), repeat)  # noqa: B023
        size = os.path.getsize(path)
        res[f"v{v}"] = {"bytes": size, "bytes_per_event": size / E, "save_s": {"first": f, "best": b},
                        "load_s": {"first": lf, "best": lb}}
        loads.append(back)
        if v == 2:  # bytes per event of each packed column (its zstd frames)
            with zipfile.ZipFile(path) as z:
                res["v2"]["columns_bytes_per_event"] = {
                    i.filename.rsplit("/", 1)[-1][:-4]: i.file_size / E for i in z.infolist()
                    if i.filename.endswith(".zst")}
                res["v2"]["manifest_bytes"] = z.getinfo("manifest.json").file_size
    res["loads_equal_original"] = all(_equal(d, x) for x in loads)
    res["ratio_v1_over_v2"] = res["v1"]["bytes"] / res["v2"]["bytes"]
    for level in levels:
        path = os.path.join(tmp, f"l{level}.kperf")
        f, b, _ = first_and_best(lambda: save_profile(path, [d], version=2, level=level), repeat)  # noqa: B023
        lf, lb, _ = first_and_best(lambda: load_profile(path), repeat)  # noqa: B023
        res.setdefault("v2_levels", {})[str(level)] = {
            "bytes_per_event": os.path.getsize(path) / E, "save_s_best": b, "load_s_best": lb}
    return res


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True, help="directory for saved_size.json")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--levels", default="1,3,9", help="zstd levels to compare on the first profile")
    ap.add_argument("--gpu", action="store_true", help="also profile a GEMM 8192^3 on this GPU")
    args = ap.parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    levels = [int(x) for x in args.levels.split(",") if x]
    res: dict = {"profiles": {}}
    makers = [("gemm8192_h100_gaps", h100_gaps), ("gemm8192_synthetic", synthetic)]
    makers += [(c, lambda c=c: real(c)) for c in ("gemm1024_clock", "gemm1024_overflow64", "gemm1024_wrap64")]
    if args.gpu:
        makers.insert(0, ("gemm8192_gpu", lambda: gpu_gemm()[0]))
    with tempfile.TemporaryDirectory() as tmp:
        for i, (name, make) in enumerate(makers):
            d = make()
            res["profiles"][name] = measure(d, tmp, args.repeat, levels if i == 0 else ())
            print_row(name, res["profiles"][name])
            del d
    res["rss_mb_peak"] = rss_mb()
    res.update(cpu_run_info(argv))
    with open(os.path.join(args.out, "saved_size.json"), "w") as f:
        json.dump(res, f, indent=1)
    return 0 if all(p["loads_equal_original"] for p in res["profiles"].values()) else 1


def print_row(name: str, r: dict) -> None:
    v1, v2 = r["v1"], r["v2"]
    print(f"{name:22s} {r['events']:>11,} events  "
          f"v1 {v1['bytes'] / 1e6:8.2f} MB {v1['bytes_per_event']:6.2f} B/ev  "
          f"v2 {v2['bytes'] / 1e6:7.2f} MB {v2['bytes_per_event']:5.3f} B/ev  "
          f"save s v1 {v1['save_s']['best']:.2f} v2 {v2['save_s']['best']:.2f}  "
          f"load s v1 {v1['load_s']['best']:.2f} v2 {v2['load_s']['best']:.2f}  "
          f"equal {r['loads_equal_original']}")
    print(f"{'':22s} v2 columns, B/event: " + ", ".join(f"{k} {x:.4f}" for k, x in
                                                        r["v2"]["columns_bytes_per_event"].items()))
    for level, x in r.get("v2_levels", {}).items():
        print(f"{'':22s} zstd level {level}: {x['bytes_per_event']:.3f} B/event, "
              f"save {x['save_s_best']:.2f} s, load {x['load_s_best']:.2f} s")


if __name__ == "__main__":
    sys.exit(main())
