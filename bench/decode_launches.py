"""Decoding many small launches: what ``kperf.tracing.decode`` costs per launch, and big launches' rate.

A session over real work captures hundreds to thousands of short launches, each decoded on its own, so
the decoder's fixed cost per launch (per-CTA and per-SM work, a few hundred numpy calls) matters as
much as its rate on one big launch.  Cases (``tests/unit/reference_encoder.bulk_buffer``, 32-bit clock,
132 SMs):

- ``small``: 1024 CTAs x 4 warps x 6 records (24,576 events); its CTA headers' globaltimer readings
  lie 10 us apart, so every SM's clock is one straight line;
- ``small-gtime``: the same launch with the headers' globaltimer readings on a 32 ns step and the CTAs'
  starts jittered, as an H100 writes them: every SM then gets a piecewise-linear clock map (the
  common case of a real launch that runs several waves);
- ``h100-gemm``: the real H100 buffer ``tests/data/h100/gemm1024_clock.npz`` (64 CTAs, 33,792 events);
- ``big``: 1056 CTAs x 8 warps x 1024 records (8.65M events) and ``big-16m``: 4096 x 8 x 512 (16.8M).

Each case is decoded ``--n`` times per round (``launch=i``, as a session numbers them); a round's time
is its mean per decode, and the median of ``--rounds`` rounds counts (the machine may be shared).
``--threads 1,2,4`` also decodes ``--n`` small launches on that many threads at once (what a
``Profile.decoded()`` on a thread pool would gain).  ``--tracing DIR`` decodes with a copy of the
tracing package at ``DIR`` instead of the installed one, e.g. the previous commit's::

    git archive HEAD tracing | tar -x -C /tmp/before
    python3 -m bench.decode_launches --tracing /tmp/before/tracing --out /tmp/before-results
    python3 -m bench.decode_launches --out bench/results/cpu-<date>-decode

Writes ``decode_launches.json`` (every number, the machine, the command) and prints a table.
"""

from __future__ import annotations

import argparse
import datetime
import gc
import importlib
import importlib.util
import json
import os
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from bench.host_throughput import machine
from bench.timing import command_name
from kperf.dialect.layout import Geometry
from tests.unit.reference_encoder import bulk_buffer  # the tests' independent encoder (run from the root)

H100 = os.path.join(os.path.dirname(__file__), "..", "tests", "data", "h100", "gemm1024_clock.npz")
G0 = 1_700_000_000_000_000_000


def gtime_buffer(n_ctas: int, num_warps: int, capacity: int, n_sms: int = 132) -> tuple[Geometry, bytes]:
    """``bulk_buffer`` with the headers' globaltimer readings on a 32 ns step and the CTAs' starts
    jittered by up to 96 ns, as an H100 writes them (the records and clock64 readings unchanged)."""
    g, raw = bulk_buffer(n_ctas, num_warps, capacity, n_scopes=3, n_sms=n_sms)
    a = np.frombuffer(bytearray(raw), g.cta_dtype())
    h = a["header"]
    cta = np.arange(n_ctas)
    start_ns = cta // n_sms * 50_000 + (cta * 7919) % 97
    span = max(80_000, 100 * capacity + 20_000)  # cycles at 2 GHz, as bulk_buffer
    h["gtime_start"] = (G0 + start_ns) // 32 * 32
    h["gtime_end"] = (G0 + start_ns + span // 2 + 3) // 32 * 32
    return g, a.tobytes()


def cases(big: bool) -> dict:
    """{name: (geometry, buffer, decode keywords)}."""
    z = np.load(H100)
    info = json.loads(str(z["info"]))
    out = {
        "small": (*bulk_buffer(1024, 4, 6, n_scopes=3), {"scopes": 3}),
        "small-gtime": (*gtime_buffer(1024, 4, 6), {"scopes": 3}),
        "h100-gemm": (Geometry(info["num_warps"], info["capacity"], info["clock"]), z["buffer"],
                      {"scopes": info["scopes"], "n_ctas": info["n_ctas"]}),
    }
    if big:
        out["big"] = (*bulk_buffer(132 * 8, 8, 1024, n_scopes=3), {"scopes": 3})
        out["big-16m"] = (*bulk_buffer(4096, 8, 512, n_scopes=3), {"scopes": 3})
    return out


def load_decode(tracing: str | None):
    """``decode`` of the installed kperf, or of the tracing package copy at ``tracing``."""
    if tracing is None:
        return importlib.import_module("kperf.tracing.decode").decode
    init = os.path.join(tracing, "__init__.py")
    spec = importlib.util.spec_from_file_location("_tracing_under_test", init,
                                                  submodule_search_locations=[tracing])
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return importlib.import_module(spec.name + ".decode").decode


def time_case(decode, g, buf, kw: dict, n: int, rounds: int) -> dict:
    """Per-decode seconds of each round (``n`` decodes each), after one warm-up decode."""
    d = decode(buf, g, strategy="keep-first", **kw)
    events = len(d.columns)
    del d
    per = []
    for _ in range(rounds):
        gc.collect()
        t = time.perf_counter()
        for i in range(n):
            decode(buf, g, strategy="keep-first", launch=i, **kw)
        per.append((time.perf_counter() - t) / n)
    med = statistics.median(per)
    return {"events": events, "decodes_per_round": n, "rounds_s": per, "median_s": med,
            "events_per_s": events / med}


def time_threads(decode, g, buf, kw: dict, n: int, rounds: int, threads: int) -> dict:
    """Per-launch seconds of ``n`` decodes on ``threads`` threads at once."""
    per = []
    for _ in range(rounds):
        gc.collect()
        t = time.perf_counter()
        with ThreadPoolExecutor(threads) as ex:
            list(ex.map(lambda i: decode(buf, g, strategy="keep-first", launch=i, threads=1, **kw), range(n)))
        per.append((time.perf_counter() - t) / n)
    return {"threads": threads, "launches": n, "rounds_s": per, "median_s": statistics.median(per)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", help="directory for decode_launches.json")
    ap.add_argument("--tracing", help="decode with the tracing package copy in this directory")
    ap.add_argument("--n", type=int, default=50, help="small decodes per round")
    ap.add_argument("--rounds", type=int, default=7, help="rounds per case (the median counts)")
    ap.add_argument("--no-big", action="store_true", help="leave out the big launches")
    ap.add_argument("--threads", default="", help="also decode --n small launches on these thread counts")
    args = ap.parse_args(argv)
    decode = load_decode(args.tracing)
    res: dict = {"machine": machine(), "command": " ".join([command_name(), *sys.argv[1:]]),
                 "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
                 "tracing": args.tracing or "installed", "cases": {}, "threads": {}}
    for name, (g, buf, kw) in cases(not args.no_big).items():
        n = args.n if name not in ("big", "big-16m") else 1
        rounds = args.rounds if name not in ("big", "big-16m") else 3
        r = res["cases"][name] = time_case(decode, g, buf, kw, n, rounds)
        print(f"{name:12s} {r['events']:>10,} events  {r['median_s'] * 1e3:9.2f} ms per decode  "
              f"{r['events_per_s'] / 1e6:7.1f}M events/s", flush=True)
    for t in [int(x) for x in args.threads.split(",") if x]:
        for name in ("small", "small-gtime"):
            g, buf, kw = cases(False)[name]
            r = res["threads"][f"{name}/{t}"] = time_threads(decode, g, buf, kw, args.n * 4, args.rounds, t)
            print(f"{name:12s} on {t} threads: {r['median_s'] * 1e3:7.2f} ms per launch", flush=True)
    if args.out:
        os.makedirs(args.out, exist_ok=True)
        with open(os.path.join(args.out, "decode_launches.json"), "w") as f:
            json.dump(res, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
