"""Tune the Gluon FA3 pipeline (``examples/fa3_pipelines.py``): time configurations of ``fa3_fwd_kernel``.

    python3 -m bench.fa3_tune --out bench/results/<device>-<date>/fa3_tune        # GPU, about 4 minutes
    python3 -m bench.fa3_tune --cpu-check [--all]                                 # no GPU: compile filter

A candidate is named ``<pipeline>_n<BLOCK_N>_k<K buffers>v<V buffers>_r<consumer regs>[_er]``, e.g.
``ws_overlap_n128_k2v2_r240`` (exactly the ``ws_overlap`` pipeline) or ``ws_pingpong_n128_k3v2_r240_er``
(``_er``: FA3's order, O rescaled under the QK^T wgmma).  Trailing switches of ``Pipeline``: ``_em``
one softmax exponential in four by a polynomial on the FMA pipe (``exp_emulation``); ``_sf`` / ``_sc`` /
``_sn`` a CTA fence / a clock read / a 0 ns sleep that keeps the softmax above the PV wait
(``sched_fence="membar"`` / ``"clock"`` / ``"nanosleep"``); ``_tm`` the row max as a tree (``tree_max``);
``_up`` P packed by Triton's own conversion, a PRMT per register (``pack_fix=False``).  Timing with
``--interleave N`` (one process, every candidate N times in turn) repeats within about 1%; separate
processes per candidate (``--rounds``) drift by up to 15%.  ``CANDIDATES`` is the grid ``GRID`` less what
``--cpu-check --all`` rejected for sm_90 (head dim 128, fp16): too much shared memory, register spills,
or wgmma serialized by ptxas (warning C7515).  Triton 3.6 needs power-of-two block shapes, so FA3's
BLOCK_N = 176 is not in the grid; ``n192`` runs 192-key blocks as 128 + 64 sub-tiles.

GPU run, each step in its own subprocess under a timeout (a hang or a crash costs one candidate):
1. in parallel (``--jobs``): compile + smoke check of every candidate against PyTorch SDPA in float32
   (B=2, H=4, S=1024, non-causal and causal, max |err| <= 0.01); the compiled kernels stay in Triton's
   cache for step 2.
2. one at a time: TFLOPS (``triton.testing.do_bench`` median, tritonbench's FLOP count) at batch 16,
   16 heads, head dim 128, fp16, seq 4096 / 8192 / 16384, non-causal; baselines ``kperf_vanilla`` (the
   Triton tutorial kernel) and ``sdpa_cudnn``.
3. causal at the same lengths for the ``--causal-top`` best candidates and the baselines.

Prints a table (TFLOPS and the ratio to vanilla; issue 6 asks for >= 1.2x) and writes ``tune.json``
and ``tune.md`` to ``--out``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import pathlib
import re
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor

from bench.timing import log, run_info

ROOT = pathlib.Path(__file__).resolve().parent.parent  # the workers run `python3 -m bench.fa3_tune` here
SEQS = (4096, 8192, 16384)
BASELINES = ("kperf_vanilla", "sdpa_cudnn")
NAME_RE = re.compile(r"^(?P<base>[a-z_0-9]+?)_n(?P<n>\d+)_k(?P<k>\d+)v(?P<v>\d+)_r(?P<r>\d+)"
                     r"(?P<er>_er)?(?P<em>_em)?(?P<sf>_s[fcn])?(?P<tm>_tm)?(?P<up>_up)?$")

# The grid: (pipeline, BLOCK_N, K buffers, V buffers, consumer registers, early rescale).
GRID = ([(base, 128, k, v, r, er) for base in ("ws_overlap", "ws_pingpong")
         for (k, v) in ((2, 2), (3, 2), (2, 3), (3, 3), (4, 2)) for r in (240, 232) for er in (False, True)]
        + [(base, 64, k, v, 240, er) for base in ("ws_overlap", "ws_pingpong") for (k, v) in ((4, 4), (6, 4))
           for er in (False, True)]
        + [(base, 256, 2, 1, 240, er) for base in ("ws", "ws_overlap", "ws_pingpong") for er in (False, True)
           if not (er and base == "ws")]
        + [(base, 192, 2, 2, 240, er) for base in ("ws_overlap", "ws_pingpong") for er in (False, True)])

# candidate suffix -> Pipeline.sched_fence
SCHED_FENCES = {None: "", "_sf": "membar", "_sc": "clock", "_sn": "nanosleep"}

# GRID less the candidates `--cpu-check --all` rejected (see the module docstring), in grid order.
# All 50 BLOCK_N 64/128 points compile (fp16, d128, non-causal) without spills; the three BLOCK_N = 256
# points spill (14 to 367 local-memory ops; the overlapped ones also serialize wgmma); the four 192 points
# compile clean with Triton's own P packing (``_up``; their instrumented builds spill: see
# docs/fa3-walkthrough.md).  Numbers measured before pack_fix became the default (commit 258327a and
# earlier) are for what is now ``_up``.  The 16 timed:
CANDIDATES: list[str] = [
    "ws_overlap_n128_k2v2_r240",  # = ws_overlap
    "ws_overlap_n128_k2v2_r240_er",
    "ws_overlap_n128_k2v2_r232_er",
    "ws_overlap_n128_k3v2_r240",
    "ws_overlap_n128_k2v3_r240",
    "ws_overlap_n128_k2v3_r240_er",
    "ws_overlap_n128_k3v3_r240_er",
    "ws_pingpong_n128_k2v2_r240",  # = ws_pingpong
    "ws_pingpong_n128_k2v2_r240_er",
    "ws_pingpong_n128_k2v3_r240_er",
    "ws_pingpong_n128_k3v3_r240_er",  # = ws_pingpong_s3 + early rescale
    "ws_overlap_n64_k4v4_r240_er",
    "ws_pingpong_n64_k4v4_r240_er",
    "ws_overlap_n128_k4v2_r240_er",
    "ws_overlap_n192_k2v2_r240_up",  # 128 + 64 sub-tiles; the first block padded when 192 does not divide
    "ws_pingpong_n192_k2v2_r240_up",
]


def name_of(base: str, n: int, k: int, v: int, r: int, er: bool) -> str:
    # 192-key blocks spill with pack_fix (28 local-memory ops at head dim 128): Triton's own packing there
    return f"{base}_n{n}_k{k}v{v}_r{r}{'_er' if er else ''}{'_up' if n == 192 else ''}"


def load_fa3():
    from kperf.examples import fa3_pipelines
    return fa3_pipelines


def pipeline(name: str):
    """The ``fa3_pipelines.Pipeline`` a candidate name describes (head dim 128 buffering)."""
    from kperf.dialect.errors import KperfError
    m = NAME_RE.match(name)
    if not m:
        raise KperfError(f"bad candidate name {name!r}",
                         fix="use <pipeline>_n<BLOCK_N>_k<K>v<V>_r<regs>[_er], "
                             "e.g. ws_overlap_n128_k2v2_r240")
    fa3 = load_fa3()
    base = fa3.get_pipeline(m["base"])
    return dataclasses.replace(base, name=name, block_n=int(m["n"]), stages=((128, int(m["k"])),),
                               v_stages=((128, int(m["v"])),), consumer_regs=int(m["r"]),
                               early_rescale=bool(m["er"]), exp_emulation=bool(m["em"]),
                               sched_fence=SCHED_FENCES[m["sf"]], tree_max=bool(m["tm"]),
                               pack_fix=not m["up"],
                               description=f"tuning candidate {name}")


# --- CPU: compile filter ------------------------------------------------------------------------------

def cpu_check(name: str, causal: bool = False) -> dict:
    """Compile one candidate for sm_90 (fp16, d 128, plain: what is timed); shared memory, spills, wgmma
    serialization from ptxas -v."""
    import triton

    from kperf import sass, triton_compat
    fa3 = load_fa3()
    p = pipeline(name)
    row = {"name": name, "causal": causal, "smem_estimate": p.smem_bytes(128)}
    t0 = time.time()
    try:
        constexprs = p.constexprs(head_dim=128, causal=causal)
        attrs = {(5,): [["tt.divisibility", 16]]}
        source_class = triton_compat.source_class(fa3.fa3_fwd_kernel)
        source = source_class(fa3.fa3_fwd_kernel, fa3.signature(p), constexprs, attrs)
        k = triton.compile(source, target=triton_compat.gpu_target(90), options=fa3.COMPILE_OPTIONS)
    except Exception as e:
        last = str(e).splitlines()[-1][:200] if str(e) else ""
        row.update(ok=False, reason=f"compile: {type(e).__name__}: {last}")
        return row
    row["shared"] = k.metadata.shared
    row["spill_ops"] = sass.local_memory_ops(sass.disassemble(k.asm["cubin"]))
    with tempfile.TemporaryDirectory() as tmp:
        src = pathlib.Path(tmp) / "k.ptx"
        src.write_text(k.asm["ptx"])
        cubin = str(src.with_suffix(".cubin"))
        ptxas = [triton_compat.ptxas_path(90), "-arch=sm_90a", "-v", str(src), "-o", cubin]
        res = subprocess.run(ptxas, capture_output=True, text=True)
    msg = res.stdout + res.stderr
    row["serialized"] = "C7515" in msg or "serialized" in msg
    regs = re.findall(r"Used (\d+) registers", msg)
    row["registers"] = int(regs[0]) if regs else None
    row["compile_s"] = round(time.time() - t0, 1)
    reasons = []
    if row["shared"] > fa3.SMEM_LIMIT:
        reasons.append(f"shared {row['shared']} > {fa3.SMEM_LIMIT}")
    if row["spill_ops"]:
        reasons.append(f"{row['spill_ops']} local-memory ops (spills)")
    if row["serialized"]:
        reasons.append("ptxas serialized wgmma (C7515)")
    row.update(ok=not reasons, reason="; ".join(reasons))
    return row


def run_cpu_check(names: list[str], causal: bool) -> list[dict]:
    rows = []
    for name in names:
        row = cpu_check(name, causal)
        rows.append(row)
        print(f"{name:<34} {'ok  ' if row['ok'] else 'DROP'} shared {row.get('shared', '-'):>6} "
              f"spill ops {row.get('spill_ops', '-')} {row.get('reason', '')}", flush=True)
    return rows


# --- GPU worker (one candidate, one subprocess) ---------------------------------------------------------

def variant(name: str):
    """A baseline of ``kperf.tritonbench_ext`` or a candidate, as a tritonbench_ext ``Variant``."""
    from kperf.tritonbench_ext.variants import VARIANTS, Variant
    if name in BASELINES:
        return VARIANTS[name]
    fa3 = load_fa3()
    p = pipeline(name)
    return Variant(name, "kperf", p.description,
                   lambda q, k, v, causal, sm_scale:
                   lambda: fa3.fa3_attention(q, k, v, causal, sm_scale, pipeline=p))


def interleaved(names: list[str], seqs: list[int], causal: bool, batch: int, rounds: int, rep: float) -> dict:
    """Time every candidate in one process, ``rounds`` times in turn per length (each a ``do_bench`` of
    ``rep`` ms, the order rotated each round), so that the GPU's clock and power states, which drift over
    seconds, hit all candidates alike.  Per candidate and length: median TFLOPS and every round's value."""
    from bench.fa3_sweep import time_shape
    from kperf.tritonbench_ext.args import Shape
    variants = [variant(n) for n in names]
    out: dict = {n: {"name": n} for n in names}
    for s in seqs:
        timed = time_shape(variants, Shape(batch, 16, s, 128), causal, 0.0, rep, rounds, rotate=True)
        for n, r in timed.items():
            out[n].update(r if "error" in r else {str(s): r})
    return out


def worker(name: str, mode: str, seqs: list[int], causal: bool, batch: int, warmup: float,
           rep: float) -> dict:
    import torch
    out: dict = {"name": name}
    if mode == "smoke":
        fa3 = load_fa3()
        gen = torch.Generator(device="cuda").manual_seed(1)
        q, k, v = (torch.randn((2, 4, 1024, 128), device="cuda", dtype=torch.float16, generator=gen)
                   for _ in range(3))
        for c in (False, True):
            t0 = time.time()
            o = variant(name).make(q, k, v, c, q.shape[-1] ** -0.5)()
            torch.cuda.synchronize()
            err = (o.float() - fa3.sdpa_reference(q, k, v, c)).abs().max().item()
            out["causal" if c else "full"] = {"max_abs_err": err, "ok": bool(err <= 0.01),
                                              "first_call_s": round(time.time() - t0, 1)}
        out["ok"] = out["full"]["ok"] and out["causal"]["ok"]
        return out
    from bench.fa3_sweep import time_shape
    from kperf.tritonbench_ext.args import Shape
    for s in seqs:
        r = time_shape([variant(name)], Shape(batch, 16, s, 128), causal, warmup, rep)[name]
        if "error" in r:
            raise RuntimeError(r["error"])
        out[str(s)] = r
    return out


def spawn(name: str, mode: str, args, causal: bool = False, timeout: float = 120.0) -> dict:
    """Run ``worker`` in a subprocess; a timeout, a crash or an exception becomes ``{"error": ...}``."""
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as f:
        path = f.name
    cmd = [sys.executable, "-m", "bench.fa3_tune", "--worker", name, "--mode", mode, "--result", path,
           "--batch", str(args.batch), "--seqs", ",".join(map(str, args.seqs)), "--warmup", str(args.warmup),
           "--rep", str(args.rep)]
    if causal:
        cmd.append("--causal")
    if mode == "interleave":
        cmd += ["--interleave", str(args.interleave)]
    t0 = time.time()
    try:
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=ROOT)
        text = pathlib.Path(path).read_text() if os.path.getsize(path) else ""
        if res.returncode or not text:
            tail = (res.stderr or res.stdout).strip().splitlines()[-3:]
            out = {"name": name, "error": f"exit {res.returncode}: {' | '.join(tail)[:400]}"}
        else:
            out = json.loads(text)
    except subprocess.TimeoutExpired:
        out = {"name": name, "error": f"timeout after {timeout:.0f} s"}
    finally:
        os.unlink(path)
    out["wall_s"] = round(time.time() - t0, 1)
    return out


# --- GPU driver ---------------------------------------------------------------------------------------

def timed_rounds(names: list[str], args, *, causal: bool, doc: dict, save) -> dict:
    """Time ``names`` ``args.rounds`` times in turn (round-robin, one subprocess each); per candidate and
    length the median TFLOPS over the rounds, with every round's value kept under ``"rounds"``."""
    if args.interleave:
        r = spawn(",".join(names), "interleave", args, causal=causal, timeout=args.time_timeout * len(names))
        if "error" in r:
            log(f"interleaved timing failed: {r['error']}")
            return {n: {"name": n, "error": r["error"]} for n in names}
        doc["causal_interleaved" if causal else "interleaved"] = r
        for n in names:
            log(f"{'causal ' if causal else ''}{n}: " + (r[n]["error"] if "error" in r[n] else " ".join(
                f"{s}: {r[n][str(s)]['tflops']:.0f}" for s in args.seqs)))
        return {n: r[n] for n in names}
    key = "causal_rounds" if causal else "rounds"
    doc[key] = []
    for i in range(args.rounds):
        doc[key].append({})
        for n in names:
            r = doc[key][i][n] = spawn(n, "time", args, causal=causal, timeout=args.time_timeout)
            save()
            log(f"{'causal ' if causal else ''}round {i + 1}/{args.rounds} {n}: "
                + (r["error"] if "error" in r
                   else " ".join(f"{s}: {r[str(s)]['tflops']:.0f}" for s in args.seqs))
                + f" ({r['wall_s']} s)")
    out = {}
    for n in names:
        runs = [rnd[n] for rnd in doc[key]]
        bad = [r for r in runs if "error" in r]
        if bad:
            out[n] = {"name": n, "error": bad[0]["error"]}
            continue
        out[n] = {"name": n}
        for s in args.seqs:
            t = sorted(r[str(s)]["tflops"] for r in runs)
            ms = sorted(r[str(s)]["ms"] for r in runs)
            out[n][str(s)] = {"tflops": t[len(t) // 2], "ms": ms[len(ms) // 2], "rounds": t}
    return out


def table(rows: dict, names: list[str], seqs, ref: dict | None) -> str:
    head = "| candidate | " + " | ".join(f"{s}" for s in seqs) + " | mean | vs vanilla |"
    lines = [head, "|---" * (len(seqs) + 3) + "|"]
    for n in names:
        r = rows.get(n, {})
        if "error" in r:
            lines.append(f"| {n} | " + " | ".join("err" for _ in seqs) + f" | - | {r['error'][:80]} |")
            continue
        t = [r[str(s)]["tflops"] for s in seqs]
        ratio = (" / ".join(f"{a / ref[str(s)]['tflops']:.2f}" for a, s in zip(t, seqs, strict=True))
                 if ref and "error" not in ref else "-")
        cells = " | ".join(f"{x:.0f}" for x in t)
        lines.append(f"| {n} | {cells} | {sum(t) / len(t):.0f} | {ratio} |")
    return "\n".join(lines)


def drive(args) -> int:
    import torch
    if not torch.cuda.is_available():
        raise SystemExit("bench.fa3_tune needs a CUDA GPU (Hopper) unless --cpu-check is given")
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    names = args.candidates.split(",") if args.candidates else list(CANDIDATES)
    for n in names:
        pipeline(n)  # bad names fail here, before any GPU work
    doc = {**run_info(),
           "shape": {"batch": args.batch, "heads": 16, "d_head": 128, "dtype": "fp16",
                     "seqs": list(args.seqs)},
           "candidates": names}
    save = lambda: (out / "tune.json").write_text(json.dumps(doc, indent=1))  # noqa: E731
    log(f"{doc['device']}: {len(names)} candidates + {len(BASELINES)} baselines; smoke with {args.jobs} jobs")

    with ThreadPoolExecutor(args.jobs) as pool:
        smoke = list(pool.map(lambda n: spawn(n, "smoke", args, timeout=args.compile_timeout),
                              list(BASELINES) + names))
    doc["smoke"] = {r["name"]: r for r in smoke}
    save()
    good = [r["name"] for r in smoke if r.get("ok") and r["name"] not in BASELINES]
    for r in smoke:
        if not r.get("ok"):
            why = r.get("error") or {k: r[k] for k in ("full", "causal") if k in r}
            log(f"smoke FAILED {r['name']}: {why}")
    log(f"smoke: {len(good)}/{len(names)} candidates correct")

    doc["full"] = timed_rounds(list(BASELINES) + good, args, causal=False, doc=doc, save=save)
    ok = [n for n in good if "error" not in doc["full"][n]]
    mean = lambda r: sum(r[str(s)]["tflops"] for s in args.seqs) / len(args.seqs)  # noqa: E731
    ranked = sorted(ok, key=lambda n: -mean(doc["full"][n]))
    doc["ranking"] = ranked
    ref = doc["full"].get("kperf_vanilla")

    doc["causal"] = {}
    if args.causal_top:
        doc["causal"] = timed_rounds(list(BASELINES) + ranked[:args.causal_top], args, causal=True, doc=doc,
                                     save=save)
    md = [f"# FA3 tuning on {doc['device']} ({doc['date']})", "",
          f"torch {doc['torch']}, triton {doc['triton']}; fp16, batch {args.batch}, 16 heads, head dim 128; "
          f"TFLOPS (do_bench median; with --rounds N, the median of N rounds that time every candidate in "
          f"turn, so slow drifts of the clock hit all alike; with --interleave N, one process times all of "
          f"them N times in turn, {args.rep:.0f} ms each). Rounds: {args.interleave or args.rounds}. "
          f"Command: `{doc['command']}`", "",
          "### non-causal", "", table(doc["full"], list(BASELINES) + ranked, args.seqs, ref)]
    if doc["causal"]:
        md += ["", "### causal (best non-causal candidates)", "",
               table(doc["causal"], list(doc["causal"]), args.seqs, doc["causal"].get("kperf_vanilla"))]
    bad = [n for n in names if n not in ok]
    if bad:
        md += ["", "Left out (smoke or timing failed): " + ", ".join(bad)]
    (out / "tune.md").write_text("\n".join(md) + "\n")
    save()
    print("\n".join(md))
    log(f"wrote {out / 'tune.json'} and {out / 'tune.md'}")
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", help="output folder (tune.json, tune.md)")
    ap.add_argument("--candidates", help="comma-separated candidate names (default: CANDIDATES)")
    ap.add_argument("--cpu-check", action="store_true",
                    help="compile candidates for sm_90 on the CPU and filter")
    ap.add_argument("--all", action="store_true", help="with --cpu-check: the whole GRID, not CANDIDATES")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--seqs", type=lambda s: [int(x) for x in s.split(",")], default=list(SEQS))
    ap.add_argument("--warmup", type=float, default=25.0, help="do_bench warm-up, ms")
    ap.add_argument("--rep", type=float, default=100.0, help="do_bench measured time, ms")
    ap.add_argument("--rounds", type=int, default=1, help="time every candidate this many times in turn")
    ap.add_argument("--interleave", type=int, default=0,
                    help="time all candidates in one process, N do_bench rounds each in turn "
                         "(instead of --rounds)")
    ap.add_argument("--causal-top", type=int, default=2, help="time causal for this many best candidates")
    ap.add_argument("--jobs", type=int, default=8, help="parallel compile + smoke subprocesses")
    ap.add_argument("--compile-timeout", type=float, default=240.0, help="s per compile + smoke subprocess")
    ap.add_argument("--time-timeout", type=float, default=120.0, help="s per timing subprocess")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--mode", choices=("smoke", "time", "interleave"), help=argparse.SUPPRESS)
    ap.add_argument("--result", help=argparse.SUPPRESS)
    ap.add_argument("--causal", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker and args.mode == "interleave":
        res = interleaved(args.worker.split(","), args.seqs, args.causal, args.batch, args.interleave,
                          args.rep)
        pathlib.Path(args.result).write_text(json.dumps(res))
        return 0
    if args.worker:
        res = worker(args.worker, args.mode, args.seqs, args.causal, args.batch, args.warmup, args.rep)
        pathlib.Path(args.result).write_text(json.dumps(res))
        return 0
    if args.cpu_check:
        names = ([name_of(*g) for g in GRID] if args.all
                 else (args.candidates.split(",") if args.candidates else list(CANDIDATES)))
        rows = run_cpu_check(names, causal=False)
        kept = [r["name"] for r in rows if r["ok"]]
        print(f"kept {len(kept)}/{len(rows)}:\n" + ",".join(kept))
        if args.out:
            pathlib.Path(args.out).mkdir(parents=True, exist_ok=True)
            (pathlib.Path(args.out) / "cpu_check.json").write_text(json.dumps(rows, indent=1))
        return 0 if kept else 1
    if not args.out:
        ap.error("--out is required for the GPU run")
    return drive(args)


if __name__ == "__main__":
    sys.exit(main())
