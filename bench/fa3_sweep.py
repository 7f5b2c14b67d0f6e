"""FA3 pipelines on Hopper: correctness, the reference's TFLOPS sweeps, and kperf traces, in one run.

    python3 -m bench.fa3_sweep --out bench/results/<device>-<date>/fa3

1. Correctness: every variant (kperf_vanilla, the Gluon pipelines, SDPA flash and cuDNN) against
   PyTorch SDPA (math backend) in float32, on N(0, 1) inputs, fp16 and bf16, head dim 64 and 128,
   causal and not (B=2, H=4, S=512).  A kperf variant wrong at fp16 / d128
   (the timed configuration) is left out of the timing.
2. Sweeps (fp16, 16 heads, head dim 128; the reference's figure): sequence length 128 .. 16384 at
   batch 16 (non-causal and causal), and batch 1 .. 128 at sequence length 4096 (non-causal).
   TFLOPS = tritonbench's FLOP count / median time of ``triton.testing.do_bench`` (CUDA events).
   ``--max-tokens`` caps batch * seq_len (default 524288: every shape above runs; 128 x 4096 needs
   about 8.6 GB for q, k, v, o).
3. kperf traces at 4096 tokens (batch ``--trace-batch``, non-causal): the vanilla kernel (automatic
   insertion), ``ws`` (the vanilla schedule in Gluon, same scope names as the improved ones) and the
   improved pipelines; per variant a summary, stats.json, a Chrome trace of ``--trace-ctas`` CTAs,
   the statistics report (bubbles, overlap), and diffs ws -> improved and vanilla -> improved.

Writes ``results.json`` (every number, with device and versions), ``sweep.md`` (tables) and the
trace folders under ``--out``; prints the tables.  About 4 minutes on an H100 (compiles included).
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys

from bench.timing import log, run_info

VARIANTS = ["kperf_vanilla", "kperf_ws", "kperf_ws_overlap", "kperf_ws_overlap_v3", "kperf_ws_pingpong",
            "kperf_ws_overlap_persistent", "kperf_ws_pingpong_persistent", "sdpa_flash", "sdpa_cudnn"]
SEQ_LENS = [128, 256, 512, 1024, 2048, 4096, 8192, 16384]
BATCHES = [1, 2, 4, 8, 16, 32, 64, 128]


def correctness(variants, tol) -> list[dict]:
    import torch

    from kperf.tritonbench_ext.runner import _reference
    rows = []
    gen = torch.Generator(device="cuda").manual_seed(1)
    for dtype in ("fp16", "bf16"):
        dt = {"fp16": torch.float16, "bf16": torch.bfloat16}[dtype]
        for d in (64, 128):
            q, k, v = (torch.randn((2, 4, 512, d), device="cuda", dtype=dt, generator=gen) for _ in range(3))
            for causal in (False, True):
                ref = _reference(q, k, v, causal, d ** -0.5)
                for var in variants:
                    row = {"variant": var.name, "dtype": dtype, "d_head": d, "causal": causal}
                    try:
                        out = var.make(q, k, v, causal, d ** -0.5)()
                        torch.cuda.synchronize()
                        err = (out.float() - ref).abs().max().item()
                        row.update(max_abs_err=err, ok=bool(err <= tol[dtype]))
                    except Exception as e:  # recorded, and the variant leaves the timing
                        row.update(ok=False, error=f"{type(e).__name__}: {str(e)[:300]}")
                    rows.append(row)
    return rows


def time_shape(variants, shape, causal: bool, warmup: float, rep: float, rounds: int = 1,
               rotate: bool = False, cudagraph: bool = False) -> dict:
    """TFLOPS of every variant on one shape: ``rounds`` rounds, each timing every variant in turn (so a
    drift of the GPU clock, e.g. power throttling, hits all alike; ``rotate``: round r starts at the r-th
    variant); per variant the median round, and every round's TFLOPS under ``"rounds"``.  ``cudagraph``:
    calls replayed from a CUDA graph (see ``tritonbench_ext.runner.bench_ms``)."""
    import torch

    from kperf.tritonbench_ext.args import flops
    from kperf.tritonbench_ext.runner import bench_ms
    gen = torch.Generator(device="cuda").manual_seed(0)
    q, k, v = (torch.randn(shape.x_val(), device="cuda", dtype=torch.float16, generator=gen)
               for _ in range(3))
    out, fns = {}, {}
    for var in variants:
        try:
            fns[var.name] = var.make(q, k, v, causal, shape.d_head ** -0.5)
            fns[var.name]()
        except Exception as e:
            out[var.name] = {"error": "CUDA OOM" if isinstance(e, torch.cuda.OutOfMemoryError)
                             else f"{type(e).__name__}: {str(e)[:200]}"}
            fns.pop(var.name, None)
            torch.cuda.empty_cache()
    times: dict[str, list[float]] = {n: [] for n in fns}
    names = list(fns)
    for r in range(rounds):
        order = names[r % len(names):] + names[:r % len(names)] if rotate and names else names
        for name in order:
            times[name].append(bench_ms(fns[name], warmup=warmup, rep=rep, cudagraph=cudagraph))
    for name, ms in times.items():
        ms = sorted(ms)
        tf = [flops(shape, causal) / (m * 1e-3) / 1e12 for m in ms]
        out[name] = {"ms": ms[len(ms) // 2], "tflops": tf[len(tf) // 2], "rounds": sorted(tf)}
    del q, k, v, fns
    return out


def md_table(title: str, key: str, rows: list[dict], names: list[str]) -> str:
    lines = [f"### {title}", "", f"| {key} | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
    for r in rows:
        cells = []
        for n in names:
            m = r["results"].get(n, {})
            cells.append(f"{m['tflops']:.0f}" if "tflops" in m else ("err" if "error" in m else "-"))
        lines.append(f"| {r[key]} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def traces(variants_by_name, out: pathlib.Path, batch: int, trace_ctas: int, improved: list[str]) -> dict:
    from kperf.tritonbench_ext.args import Shape
    from kperf.tritonbench_ext.kperf_metric import profile_variant
    shape = Shape(batch, 16, 4096, 128)
    profiles, info = {}, {}
    for name in ["kperf_vanilla", "kperf_ws"] + improved:
        var = variants_by_name.get(name)
        if var is None:
            continue
        try:
            res = profile_variant(var, shape, dtype="fp16", causal=False, sm_scale=128 ** -0.5,
                                  out_dir=out / "traces", trace_ctas=trace_ctas, max_mb=4096)
        except Exception as e:
            info[name] = {"error": f"{type(e).__name__}: {str(e)[:300]}"}
            log(f"trace {name}: {info[name]['error']}")
            continue
        prof = res.pop("profile")
        profiles[name] = prof
        try:
            (pathlib.Path(res["dir"]) / "report.txt").write_text(str(prof.report()) + "\n")
        except Exception as e:  # the statistics report is optional evidence; the summary is written
            res["report_error"] = f"{type(e).__name__}: {e}"
        info[name] = res
        log(f"trace {name}: {res['intervals']} intervals, lost {res['lost']}, "
            f"identical output {res['output_identical']} -> {res['dir']}")
    try:
        from kperf.tracing.diff import diff
    except ImportError as e:
        info["diff_error"] = f"kperf.tracing.diff unavailable: {e}"
        return info
    for a, b in [("kperf_ws", imp) for imp in improved] + [("kperf_vanilla", imp) for imp in improved[:1]]:
        if a in profiles and b in profiles:
            d = diff(profiles[a], profiles[b], labels=(a, b))
            path = out / "traces" / f"diff_{a}__{b}.txt"
            path.write_text(d.to_text(max_rows=None) + "\n")
            info[f"diff {a} -> {b}"] = str(path)
    return info


def parse_args(argv):
    from kperf.tritonbench_ext.args import int_list
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, help="output folder (results.json, sweep.md, traces/)")
    ap.add_argument("--variants", default=",".join(VARIANTS))
    ap.add_argument("--improved", default="kperf_ws_overlap,kperf_ws_pingpong_persistent",
                    help="improved pipelines to trace and diff against kperf_ws / kperf_vanilla")
    ap.add_argument("--max-tokens", type=int, default=524288, help="cap on batch * seq_len")
    ap.add_argument("--warmup", type=float, default=25.0, help="do_bench warm-up, ms")
    ap.add_argument("--rep", type=float, default=100.0, help="do_bench measured time, ms")
    ap.add_argument("--cudagraph", action="store_true",
                    help="time calls replayed from a CUDA graph: no host launch time (which bounds short "
                         "sequences otherwise), L2 not flushed")
    ap.add_argument("--seq-lens", type=int_list, default=SEQ_LENS, help="sequence lengths (LO:HI or a,b,c)")
    ap.add_argument("--batches", type=int_list, default=BATCHES, help="batch sweep sizes (LO:HI or a,b,c)")
    ap.add_argument("--skip-batch", action="store_true", help="leave out the batch sweep")
    ap.add_argument("--rounds", type=int, default=3,
                    help="time every variant this many times in turn per shape; report the median")
    ap.add_argument("--trace-batch", type=int, default=1, help="batch of the traced launches (S=4096, H=16)")
    ap.add_argument("--trace-ctas", type=int, default=8, help="CTAs in each Chrome trace")
    ap.add_argument("--skip-causal", action="store_true", help="leave out the causal sequence sweep")
    ap.add_argument("--traces-only", action="store_true", help="only the kperf traces, summaries and diffs")
    return ap.parse_args(argv)


def checked(variants, doc: dict, tolerance, save) -> list:
    """Run the correctness phase into ``doc``; returns the variants to time."""
    doc["correctness"] = correctness(variants, tolerance)
    save()
    for r in doc["correctness"]:
        if not r["ok"]:
            log(f"INCORRECT {r}")
    n_ok = sum(r["ok"] for r in doc["correctness"])
    log(f"correctness: {n_ok}/{len(doc['correctness'])} ok; failing: {failing(doc)}")
    # timing runs fp16 / head dim 128: a kperf variant wrong there is not timed (wrong elsewhere: noted only)
    wrong = {r["variant"] for r in doc["correctness"]
             if not r["ok"] and r["dtype"] == "fp16" and r["d_head"] == 128}
    return [v for v in variants if v.name not in wrong or v.kind == "baseline"]


def failing(doc: dict) -> list[str]:
    return sorted({r["variant"] for r in doc["correctness"] if not r["ok"]})


def sweep(timed, args, doc: dict, save) -> None:
    """Time every shape of every sweep into ``doc["sweeps"]``, saving after each."""
    from kperf.tritonbench_ext.args import Shape
    sweeps = {"seq_len (batch 16)": [("seq_len", Shape(16, 16, s, 128), False) for s in args.seq_lens],
              "batch (seq_len 4096)": [("batch", Shape(b, 16, 4096, 128), False) for b in args.batches]}
    if args.skip_batch:
        del sweeps["batch (seq_len 4096)"]
    if not args.skip_causal:
        sweeps["seq_len (batch 16, causal)"] = [("seq_len", Shape(16, 16, s, 128), True)
                                                for s in args.seq_lens]
    doc["sweeps"], doc["skipped_shapes"] = {}, []
    for title, items in sweeps.items():
        rows = doc["sweeps"][title] = []
        for key, shape, causal in items:
            if shape.tokens > args.max_tokens:
                doc["skipped_shapes"].append(shape.x_val())
                continue
            res = time_shape(timed, shape, causal, args.warmup, args.rep, args.rounds,
                             cudagraph=args.cudagraph)
            rows.append({key: getattr(shape, key), "shape": shape.x_val(), "causal": causal, "results": res})
            log(f"{title} {shape.tag}: " + ", ".join(f"{n} {m.get('tflops', float('nan')):.0f}"
                                                     for n, m in res.items()))
            save()


def markdown(doc: dict, args, names: list[str]) -> str:
    """sweep.md: the TFLOPS tables, the method and the correctness line."""
    md = [f"# FA3 sweep on {doc['device']} ({doc['date']})", "",
          f"torch {doc['torch']}, triton {doc['triton']}, cuDNN {doc['cudnn']}; fp16, 16 heads, "
          f"head dim 128; TFLOPS (forward, causal counts half the FLOPs); per shape {args.rounds} rounds "
          f"time every variant in turn, the table shows each variant's median round (all rounds in "
          f"results.json); timed with "
          + ("CUDA graphs (no host launch time, L2 not flushed)." if args.cudagraph
             else "`triton.testing.do_bench` (L2 flushed before each call)."),
          f"Command: `{doc['command']}`", ""]
    for title, rows in doc["sweeps"].items():
        if rows:
            key = "batch" if "batch" in rows[0] else "seq_len"
            md += [md_table(f"TFLOPS vs {title}", key, rows, names), ""]
    n_ok = sum(r["ok"] for r in doc["correctness"])
    md.append(f"Correctness: {n_ok}/{len(doc['correctness'])} configurations within tolerance "
              f"{doc['tolerance']} of SDPA fp32; failing variants: {failing(doc) or 'none'}.")
    if doc["skipped_shapes"]:
        md.append(f"Skipped over --max-tokens {args.max_tokens}: {doc['skipped_shapes']}")
    return "\n".join(md)


def main(argv=None) -> int:
    args = parse_args(argv)
    import torch
    if not torch.cuda.is_available():
        raise SystemExit("bench.fa3_sweep needs a CUDA GPU (Hopper); none found")
    from kperf.tritonbench_ext.runner import TOLERANCE
    from kperf.tritonbench_ext.variants import select

    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    variants = select(args.variants.split(","))
    doc = {**run_info(argv), "capability": list(torch.cuda.get_device_capability()),
           "cudnn": torch.backends.cudnn.version(), "tolerance": TOLERANCE}
    log(f"{doc['device']}, torch {doc['torch']}, triton {doc['triton']}")

    def save():  # after every phase: a run cut short (hang, timeout) keeps what it measured
        (out / "results.json").write_text(json.dumps(doc, indent=1, default=str))

    timed = variants if args.traces_only else checked(variants, doc, TOLERANCE, save)
    if not args.traces_only:
        sweep(timed, args, doc, save)
    improved = [n for n in args.improved.split(",") if n in {v.name for v in timed}]
    doc["traces"] = traces({v.name: v for v in timed}, out, args.trace_batch, args.trace_ctas, improved)
    save()
    if args.traces_only:
        log(f"wrote {out / 'results.json'} (traces only)")
        return 0
    md = markdown(doc, args, [v.name for v in timed])
    (out / "sweep.md").write_text(md + "\n")
    save()
    print(md)
    log(f"wrote {out / 'results.json'} and {out / 'sweep.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
