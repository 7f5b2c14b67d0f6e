"""Statistics at the scale of a real launch: the offline commands on one 16.8M-event saved profile.

A GEMM-shaped launch (4096 CTAs x 8 warps x 512 records = 16.8M events, 32-bit clock, 132 SMs;
``tests/unit/reference_encoder.bulk_buffer``) is saved as a ``.kperf`` file by the tests' reference
writer (``tests/unit/reference_saved_writer.py``, written from docs/saved-profile.md, not kperf's own
saver, so the run also checks the format document).  Each command then runs as its own process,
as a user runs it, timed (wall clock) with its peak resident memory (``ru_maxrss`` of that child,
from ``os.wait4``):

- ``kperf report P``, ``kperf report P --tables scopes``, ``kperf diff P P``,
  ``kperf export P --format csv``, ``kperf plot P``;
- the decoder on the raw buffer in a fresh process: the first call (events/s) and the best of three;
- a process that only imports the CLI, the floor under every command.

Every command runs ``--rounds`` times (default 3), round by round, and its median run counts (the
machine may be shared); children keep Python's bytecode cache, as an installed kperf does.

    python3 -m bench.analytics_scale --out bench/results/cpu-<date>

Writes ``analytics_scale.json`` (every number, the machine, the command) and prints a table.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

from bench.timing import cpu_run_info

SCOPES = ["load", "mma", "epilogue", "store"]
TARGETS = {"report": (3.0, 1500.0), "diff": (5.0, 1500.0)}  # seconds, MB of peak RSS (issue 17)
DECODE_TARGET = 50e6  # events/s on the first call


def write_profile(path: str, ctas: int, warps: int, capacity: int) -> int:
    """The benchmark's profile at ``path`` (reference writer, raw buffer payload); returns its events."""
    from tests.unit.reference_encoder import bulk_buffer
    from tests.unit.reference_saved_writer import SavedLaunchSpec, write_saved_profile
    g, raw = bulk_buffer(ctas, warps, capacity, n_scopes=len(SCOPES))
    n = ctas * warps * capacity
    write_saved_profile(path, [SavedLaunchSpec(kernel="matmul_kernel", n_ctas=ctas, num_warps=warps,
                                               capacity=capacity, scopes=SCOPES, grid=(ctas, 1, 1),
                                               n_events=n, buffer=raw)])
    return n


def run_child(argv: list[str], log: str) -> dict:
    """Run ``argv`` as a child process; wall seconds, its own peak RSS (MB) and exit status."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}  # as installed: .pyc kept
    with open(log, "w") as out:
        t = time.perf_counter()
        p = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=env)
        _, status, usage = os.wait4(p.pid, 0)
        wall = time.perf_counter() - t
    p.returncode = os.waitstatus_to_exitcode(status)
    res = {"wall_s": wall, "peak_rss_mb": usage.ru_maxrss / 1024.0, "user_s": usage.ru_utime,
           "sys_s": usage.ru_stime, "rc": p.returncode}
    if p.returncode:
        with open(log) as f:
            res["output_tail"] = f.read()[-2000:]
    return res


def median_run(samples: list[dict]) -> dict:
    """The sample of median wall time, with every sample's wall time and peak RSS alongside."""
    ok = sorted((r for r in samples if r["rc"] == 0), key=lambda r: r["wall_s"]) or samples
    out = dict(ok[len(ok) // 2])
    out["wall_s_all"] = [r["wall_s"] for r in samples]
    out["peak_rss_mb_max"] = max(r["peak_rss_mb"] for r in samples)
    return out


def decode_child(path: str) -> None:
    """(child) Time decode() of the profile's raw buffer: first call in this process, then two more."""
    import zipfile

    import numpy as np

    from kperf.dialect.layout import Geometry
    from kperf.tracing import decode
    with zipfile.ZipFile(path) as z:
        m = json.loads(z.read("manifest.json"))["launches"][0]
        raw = np.frombuffer(z.read("launches/0/buffer.bin"), np.uint8)
    g = Geometry.from_json(m["geometry"])
    times = []
    for _ in range(3):
        t = time.perf_counter()
        d = decode(raw, g, strategy=m["strategy"], n_ctas=m["n_ctas"], scopes=SCOPES, kernel=m["kernel"])
        times.append(time.perf_counter() - t)
    assert d.n_events == m["n_events"] and not d.problems, d.problems
    print(json.dumps({"events": d.n_events, "first_s": times[0], "best_s": min(times)}))


def commands(profile: str, work: str) -> dict[str, list[str]]:
    py = [sys.executable, "-m", "kperf.cli"]
    return {
        "import_only": [sys.executable, "-c", "import kperf.cli, kperf.tracing.stats"],
        "report": py + ["report", profile],
        "report_scopes_only": py + ["report", profile, "--tables", "scopes"],
        "diff": py + ["diff", profile, profile],
        "export_csv": py + ["export", profile, "--format", "csv", "--out", os.path.join(work, "csv")],
        "plot": py + ["plot", profile, "--out", os.path.join(work, "plots")],
    }


def measure(profile: str, n_events: int, work: str, rounds: int) -> dict:
    """Every command ``rounds`` times, round by round (so a busy moment of the machine hits all of
    them alike); each command's median."""
    cmds = commands(profile, work)
    run_child(cmds["import_only"], os.path.join(work, "warm.log"))  # bytecode written once, as installed
    samples: dict[str, list[dict]] = {name: [] for name in list(cmds) + ["decode"]}
    for _ in range(rounds):
        for name, argv in cmds.items():
            samples[name].append(run_child(argv, os.path.join(work, f"{name}.log")))
        log = os.path.join(work, "decode.log")
        r = run_child([sys.executable, "-m", "bench.analytics_scale", "--decode-child", profile], log)
        with open(log) as f:
            r.update(json.loads(f.read().strip().splitlines()[-1]) if r["rc"] == 0 else {})
        if r["rc"] == 0:
            r["first_events_per_s"] = n_events / r["first_s"]
            r["best_events_per_s"] = n_events / r["best_s"]
        samples["decode"].append(r)
    res = {name: median_run(v) for name, v in samples.items() if name != "decode"}
    dec = sorted((r for r in samples["decode"] if r["rc"] == 0), key=lambda r: r["first_s"]) \
        or samples["decode"]
    res["decode"] = dict(dec[len(dec) // 2])
    res["decode"]["first_s_all"] = [r.get("first_s") for r in samples["decode"]]
    res["commands"] = {name: argv[1:] for name, argv in cmds.items()}
    return res


def verdicts(res: dict) -> dict:
    out = {}
    for name, (sec, mb) in TARGETS.items():
        r = res[name]
        out[name] = {"target_s": sec, "target_mb": mb,
                     "met": r["rc"] == 0 and r["wall_s"] <= sec and r["peak_rss_mb_max"] < mb}
    d = res["decode"]
    out["decode"] = {"target_events_per_s": DECODE_TARGET,
                     "met": d["rc"] == 0 and d.get("first_events_per_s", 0) >= DECODE_TARGET}
    return out


def print_table(res: dict) -> None:
    print(f"{'command (median of rounds)':<34} {'wall s':>8} {'peak MB':>8} {'user s':>8}  rc  all wall s")
    for name, r in res["runs"].items():
        if name in ("decode", "commands"):
            continue
        runs = " ".join(f"{w:.2f}" for w in r["wall_s_all"])
        print(f"{name:<34} {r['wall_s']:>8.2f} {r['peak_rss_mb_max']:>8.0f} {r['user_s']:>8.2f}  {r['rc']}"
              f"   {runs}")
    d = res["runs"]["decode"]
    if d["rc"] == 0:
        print(f"decode in a fresh process (median of rounds): first {d['first_s']:.3f} s "
              f"({d['first_events_per_s'] / 1e6:.0f}M events/s), best of 3 {d['best_s']:.3f} s "
              f"({d['best_events_per_s'] / 1e6:.0f}M events/s); process peak {d['peak_rss_mb']:.0f} MB")
    for name, v in res["targets"].items():
        print(f"target {name}: {'met' if v['met'] else 'MISSED'}")


def _git_head() -> str | None:
    """The commit the tree is based on (the tree itself may hold uncommitted changes)."""
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", help="directory for analytics_scale.json")
    ap.add_argument("--ctas", type=int, default=4096)
    ap.add_argument("--warps", type=int, default=8)
    ap.add_argument("--capacity", type=int, default=512)
    ap.add_argument("--rounds", type=int, default=3, help="runs of every command (the median counts)")
    ap.add_argument("--decode-child", metavar="PROFILE", help=argparse.SUPPRESS)
    ap.add_argument("--write-child", metavar="PROFILE", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.decode_child:
        decode_child(args.decode_child)
        return 0
    if args.write_child:
        write_profile(args.write_child, args.ctas, args.warps, args.capacity)
        return 0
    if not args.out:
        ap.error("--out is required")
    os.makedirs(args.out, exist_ok=True)
    with tempfile.TemporaryDirectory() as work:
        profile = os.path.join(work, "gemm.kperf")
        t = time.perf_counter()
        # written by a child, so that this process stays small: a child's peak RSS starts from its parent's
        shape = ["--ctas", str(args.ctas), "--warps", str(args.warps), "--capacity", str(args.capacity)]
        subprocess.run([sys.executable, "-m", "bench.analytics_scale", "--write-child", profile, *shape],
                       check=True)
        n = args.ctas * args.warps * args.capacity
        res = {"events": n, "profile_mb": os.path.getsize(profile) / 1e6,
               "write_profile_s": time.perf_counter() - t, "load_avg_before": os.getloadavg()}
        res["runs"] = measure(profile, n, work, args.rounds)
    res["load_avg_after"] = os.getloadavg()
    res["targets"] = verdicts(res["runs"])
    res.update(cpu_run_info(argv))
    res["git_head"] = _git_head()
    with open(os.path.join(args.out, "analytics_scale.json"), "w") as f:
        json.dump(res, f, indent=1)
    print_table(res)
    return 0


if __name__ == "__main__":
    sys.exit(main())
