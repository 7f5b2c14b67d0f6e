"""Host-side throughput of kperf's data path on a GEMM-sized launch (no GPU needed).

A synthetic profile buffer the size of the core issue's GEMM 8192^3 launch (4096 CTAs x 8 warps x 512
records = 16.7M events, 32-bit clock, 132 SMs at 2 GHz; tests/unit/reference_encoder.bulk_buffer) is
decoded (including clock unwrapping and alignment onto one ns axis), paired, and written as the default
trace (first wave) in Perfetto and Chrome form; the same with an outer scope around every warp's records
(so pairing takes its general, sorting path); and the perfetto package's Python protos are timed on a
few thousand slices for comparison with kperf's own encoder.

    python3 -m bench.host_throughput --out bench/results/cpu-<date>

Writes ``host_throughput.json`` (every timing, the machine, the command) and prints a table.
Timings: ``first`` is the first run in the process (fresh memory: page faults included), ``best``
the best of ``--repeat`` runs.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import resource
import sys
import tempfile
import time

import numpy as np

from bench.timing import command_name, first_and_best
from kperf.dialect.layout import TAG_SCOPE_SHIFT, TAG_VALID
from kperf.tracing import decode, write_chrome_trace, write_perfetto_trace
from kperf.tracing.intervals import pair_columns
from tests.unit.reference_encoder import bulk_buffer  # the tests' independent encoder (run from the root)

SCOPES = ["load", "mma", "epilogue", "store", "kloop"]


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def nested_buffer(g, raw: bytes) -> bytes:
    """Every warp: outer scope 4 around 255 adjacent (start, end) pairs."""
    a = np.frombuffer(bytearray(raw), g.cta_dtype())
    tag = a["records"]["tag"]
    C = g.capacity
    i = np.arange(1, C - 1)
    tag[:, :, 0] = TAG_VALID | (4 << TAG_SCOPE_SHIFT)
    tag[:, :, 1 : C - 1] = TAG_VALID | ((((i - 1) // 2) % 4) << TAG_SCOPE_SHIFT) | ((i - 1) & 1)
    tag[:, :, C - 1] = TAG_VALID | (4 << TAG_SCOPE_SHIFT) | 1
    return a.tobytes()


def python_protos_rate(n_slices: int = 5000) -> float | None:
    """Slices per second when every packet is a perfetto_trace_pb2 object (BEGIN with 4 annotations + END)."""
    try:
        from perfetto.protos.perfetto.trace import perfetto_trace_pb2 as pb
    except ImportError:
        return None
    t = time.perf_counter()
    trace = pb.Trace()
    for i in range(n_slices):
        p = trace.packet.add()
        p.timestamp = 1000 + 100 * i
        p.trusted_packet_sequence_id = 1
        p.sequence_flags = 2
        te = p.track_event
        te.type = pb.TrackEvent.TYPE_SLICE_BEGIN
        te.track_uuid = 10 + i % 64
        te.name_iid = 1 + i % 4
        for k, v in ((1, i % 4), (2, i % 4096), (3, i % 8), (4, 100)):
            a = te.debug_annotations.add()
            a.name_iid = k
            a.int_value = v
        q = trace.packet.add()
        q.timestamp = 1050 + 100 * i
        q.trusted_packet_sequence_id = 1
        q.sequence_flags = 2
        q.track_event.type = pb.TrackEvent.TYPE_SLICE_END
        q.track_event.track_uuid = 10 + i % 64
    data = trace.SerializeToString()
    dt = time.perf_counter() - t
    assert len(data) > 0
    return n_slices / dt


def decoder(g):
    """The decode every measurement uses: keep-first, the GEMM's scope names."""
    return lambda buf: decode(buf, g, strategy="keep-first", scopes=SCOPES, kernel="matmul")


def measure_decode_pair(dec, raw, E: int, repeat: int, res: dict):
    """Decode and pair the launch; returns the decoded launch and its pairs (kept: they count in peak RSS)."""
    first, best, d = first_and_best(lambda: dec(raw), repeat)
    res["decode_s"] = {"first": first, "best": best}
    fp, bp, p = first_and_best(lambda: pair_columns(d.columns), repeat)
    res["pair_s"] = {"first": fp, "best": bp}
    assert len(p) == E // 2 and not d.problems
    res["decode_pair_events_per_s"] = {"first": E / (first + fp), "best": E / (best + bp)}
    res["rss_mb_after_decode_pair"] = rss_mb()
    return d, p


def measure_default_trace(dec, raw, kind: str, path: str, repeat: int) -> dict:
    """The default trace of the launch (first wave), written from a fresh decode: write alone, and
    decode + pair + write."""
    writer = write_perfetto_trace if kind == "perfetto" else write_chrome_trace
    d1 = dec(raw)
    t = time.perf_counter()
    s = writer(path, d1)
    w_first = time.perf_counter() - t
    _, w_best, _ = first_and_best(lambda: writer(path, d1), repeat)
    e2e = []
    for _ in range(repeat):
        t = time.perf_counter()
        writer(path, dec(raw))
        e2e.append(time.perf_counter() - t)
    info = s["launches"][0]
    subset = info.get("subset", {})
    return {"write_s": {"first": w_first, "best": w_best},
            "decode_pair_write_s": {"first": e2e[0], "best": min(e2e)},
            "bytes": os.path.getsize(path), "selection": info.get("selection", subset.get("selection")),
            "events_in_trace": info.get("events", subset.get("events")),
            "slices": s.get("slices", s.get("intervals"))}


def measure_traces(dec, raw, d, repeat: int, res: dict) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        for kind, name in (("perfetto", "t.pftrace"), ("chrome", "t.json")):
            path = os.path.join(tmp, name)
            res[f"default_trace_{kind}"] = measure_default_trace(dec, raw, kind, path, repeat)
        # the whole launch as a Perfetto trace (select="all")
        path = os.path.join(tmp, "all.pftrace")
        t = time.perf_counter()
        s = write_perfetto_trace(path, d, select="all", progress=False)
        res["all_events_perfetto"] = {"write_s": time.perf_counter() - t, "bytes": os.path.getsize(path),
                                      "slices": s["slices"]}
    res["rss_mb_after_traces"] = rss_mb()  # peak so far: decode + pair + every trace above


def measure_align(g, raw, d, E: int, repeat: int) -> tuple[float, float]:
    """The clock map applied to every event alone (part of decode): first and best seconds."""
    from kperf.tracing.clocks import fit_clocks
    cta = np.repeat(d.columns.seg["cta"], d.columns.seg["n"])
    h = np.frombuffer(raw, g.cta_dtype())["header"]

    def i64(field):
        return h[field].astype(np.int64)

    def align():
        fit = fit_clocks(clock="clock", sm_start=i64("smid_start"), sm_end=i64("smid_end"),
                         gtime_start=i64("gtime_start"), clock_start=i64("clock_start"),
                         gtime_end=i64("gtime_end"), clock_end=i64("clock_end"),
                         ok=np.ones(len(h), bool), end_ok=np.ones(len(h), bool))
        cyc = d.columns["cycles"]
        for a in range(0, E, 1 << 16):
            fit.to_ns(cta[a : a + (1 << 16)], cyc[a : a + (1 << 16)])
    fa, ba, _ = first_and_best(align, repeat)
    return fa, ba


def measure_nested(dec, raw2, E: int, repeat: int) -> dict:
    """The general pairing path: an outer scope around every warp's records."""
    f2, b2, d2 = first_and_best(lambda: dec(raw2), repeat)
    fp2, bp2, p2 = first_and_best(lambda: pair_columns(d2.columns), repeat)
    assert len(p2) == E // 2 and int(p2.depth.max()) == 1
    return {"decode_s": {"first": f2, "best": b2}, "pair_s": {"first": fp2, "best": bp2},
            "decode_pair_events_per_s": E / (b2 + bp2)}


def machine() -> dict:
    out = {"cpu": platform.processor() or platform.machine(), "nproc": os.cpu_count(),
           "usable_cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
           "python": platform.python_version(), "numpy": np.__version__, "platform": platform.platform(),
           "load_avg": os.getloadavg()}
    try:
        out["cpu_model"] = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo")
                                if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True, help="directory for host_throughput.json")
    ap.add_argument("--ctas", type=int, default=4096)
    ap.add_argument("--warps", type=int, default=8)
    ap.add_argument("--capacity", type=int, default=512)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args(argv)
    os.makedirs(args.out, exist_ok=True)

    g, raw = bulk_buffer(args.ctas, args.warps, args.capacity)
    E = args.ctas * args.warps * args.capacity
    res: dict = {"events": E, "buffer_mb": len(raw) / 1e6, "rss_mb_start": rss_mb()}
    dec = decoder(g)
    d, p = measure_decode_pair(dec, raw, E, args.repeat, res)
    measure_traces(dec, raw, d, args.repeat, res)
    fa, ba = measure_align(g, raw, d, E, args.repeat)
    res["align_only_s"] = {"first": fa, "best": ba, "events_per_s": E / ba}
    raw2 = nested_buffer(g, raw)
    del d, p
    res["nested"] = measure_nested(dec, raw2, E, args.repeat)
    rate = python_protos_rate()
    if rate:
        res["python_protos_slices_per_s"] = rate
        per = res["all_events_perfetto"]
        res["kperf_encoder_slices_per_s"] = per["slices"] / per["write_s"]
    res["machine"] = machine()
    res["date"] = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    res["command"] = "python3 " + " ".join([command_name()] + (argv if argv is not None else sys.argv[1:]))
    with open(os.path.join(args.out, "host_throughput.json"), "w") as f:
        json.dump(res, f, indent=1)
    print_table(res, E)
    return 0


def print_table(res: dict, E: int) -> None:
    M = 1e6
    rows = [
        ("decode (unwrap + align), 16.7M events", res["decode_s"]),
        ("pair", res["pair_s"]),
    ]
    print(f"{'step':<44} {'first s':>8} {'best s':>8} {'M events/s (best)':>18}")
    for label, r in rows:
        print(f"{label:<44} {r['first']:>8.3f} {r['best']:>8.3f} {E / r['best'] / M:>18.1f}")
    r = res["decode_pair_events_per_s"]
    print(f"{'decode + pair':<44} {E / r['first']:>8.3f} {E / r['best']:>8.3f} {r['best'] / M:>18.1f}")
    a = res["align_only_s"]
    print(f"{'align only (clock map on every event)':<44} {a['first']:>8.3f} {a['best']:>8.3f} "
          f"{a['events_per_s'] / M:>18.1f}")
    n = res["nested"]
    print(f"{'nested scopes: decode + pair':<44} {n['decode_s']['first'] + n['pair_s']['first']:>8.3f} "
          f"{n['decode_s']['best'] + n['pair_s']['best']:>8.3f} {n['decode_pair_events_per_s'] / M:>18.1f}")
    for kind in ("perfetto", "chrome"):
        t = res[f"default_trace_{kind}"]
        print(f"{'default trace ' + kind + ' (' + str(t['selection']) + '): write':<44} "
              f"{t['write_s']['first']:>8.3f} {t['write_s']['best']:>8.3f}   {t['bytes'] / M:.1f} MB")
        print(f"{'  decode + pair + write':<44} {t['decode_pair_write_s']['first']:>8.3f} "
              f"{t['decode_pair_write_s']['best']:>8.3f}")
    a = res["all_events_perfetto"]
    print(f"{'whole launch, perfetto (select=all)':<44} {a['write_s']:>8.3f} {'':>8}   "
          f"{a['bytes'] / M:.1f} MB")
    if "python_protos_slices_per_s" in res:
        print(f"perfetto encoders: kperf {res['kperf_encoder_slices_per_s'] / M:.2f} M slices/s, "
              f"perfetto package protos {res['python_protos_slices_per_s'] / M:.3f} M slices/s")
    print(f"peak RSS: {res['rss_mb_start']:.0f} MB with the buffer built, "
          f"{res['rss_mb_after_decode_pair']:.0f} MB after decode + pair, "
          f"{res['rss_mb_after_traces']:.0f} MB after the traces (buffer {res['buffer_mb']:.0f} MB)")


if __name__ == "__main__":
    sys.exit(main())
