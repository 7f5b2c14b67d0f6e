"""Masked attention on Hopper: correctness, TFLOPS against FlexAttention and SDPA, kperf imbalance, one run.

    python3 -m bench.masked_attention --out DIR [--phases correct,time,traces,flex]
    python3 -m bench.masked_attention --out DIR --summarize     # DIR/results.md from the phases' JSON

Phases (each writes ``DIR/<phase>.json`` after every row, so a run cut short keeps what it measured):

1. ``correct``: every schedule of examples/masked_attention.py (``grid``, ``lpt_grid``, ``persistent``,
   ``persistent_grouped``) and the dense kernel against PyTorch SDPA (math backend, float32, the dense
   element mask) for every mask family, fp16, head dim 128, 2 x 4 heads x 2048 tokens; the schedules
   must agree bit for bit.
2. ``time``: per sequence length (``--seq-lens``, batch = ``--tokens`` / length, ``--heads`` heads, head
   dim 128, fp16, random N(0, 1) inputs) and family: median time (``triton.testing.do_bench``, CUDA
   events, L2 flushed before each call) of the three schedules, of the dense kernel (every block), and of
   SDPA with the dense boolean mask where that mask has at most ``--sdpa-max-elems`` elements.  TFLOPS
   count the visited (not fully masked) key blocks only: ``4 * 128 * 128 * d`` per block, for every
   implementation alike.
3. ``traces``: at ``--trace-seq-len`` each schedule of each family under ``kperf.profile``: kperf's
   imbalance figures and the work-time join of ``examples/masked_imbalance.py`` (``traces.json``), the
   statistics report, every tile's (CTA, SM, work, start, end) as ``tiles_<family>_<schedule>.csv.gz``,
   for ``grid`` and ``persistent`` a Perfetto trace of SMs 0-7 (the whole launch on those SMs: its tail
   too) and, for BigBird, the saved ``.kperf`` profiles.
4. ``flex``: FlexAttention (``torch.compile(flex_attention)``, compiled once per length: the same
   ``mask_mod`` and tensor shapes serve every family) with a ``BlockMask`` holding exactly the kernels'
   block lists; its output is compared with the ``grid`` kernel's.  Last, as its compiles are the slow
   part.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import statistics
import sys
import time

from bench.timing import log, run_info

FAMILIES = ("causal", "sliding_window", "document", "bigbird")
SEQ_LENS = (4096, 8192, 16384, 32768)
SCHEDULES = ("grid", "lpt_grid", "persistent", "persistent_grouped")


def bench_ms(fn, warmup: float, rep: float) -> float:
    import triton
    return float(triton.testing.do_bench(fn, warmup=warmup, rep=rep, return_mode="median"))


def _qkv(shape, seed: int = 0):
    import torch
    gen = torch.Generator(device="cuda").manual_seed(seed)
    return tuple(torch.randn(shape, device="cuda", dtype=torch.float16, generator=gen) for _ in range(3))


class Doc:
    """One phase's results file, saved after every change."""

    def __init__(self, path: pathlib.Path, argv):
        self.path, self.data = path, {**run_info(argv), "rows": []}
        self.save()

    def add(self, row: dict) -> None:
        self.data["rows"].append(row)
        self.save()

    def save(self) -> None:
        self.path.write_text(json.dumps(self.data, indent=1, default=str))


# --- phases ------------------------------------------------------------------------------------------------

def phase_correct(args, doc: Doc) -> None:
    import torch

    from kperf.examples import block_masks as bmk
    from kperf.examples import masked_attention as ma
    q, k, v = _qkv((2, 4, 2048, 128), seed=1)
    for family in ("dense",) + FAMILIES:
        spec = bmk.make_mask(family, 2, 4, 2048, seed=1)
        p = ma.prepare(spec, "cuda")
        ref = ma.reference(q, k, v, spec)
        outs = {s: ma.masked_attention(q, k, v, p, s, out=torch.full_like(q, float("nan")))
                for s in (SCHEDULES if family != "dense" else ("grid",))}
        row = {"family": family, "same_bits": all(torch.equal(o, outs["grid"]) for o in outs.values())}
        row.update({f"err_{s}": float((o.float() - ref).abs().max()) for s, o in outs.items()})
        row["ok"] = row["same_bits"] and all(row[f"err_{s}"] <= 1e-2 for s in outs)
        doc.add(row)
        log(f"correct {family}: {row}")


def _time_family(args, q, k, v, spec, p, dense_ms: float) -> dict:
    import torch

    from kperf.examples import block_masks as bmk
    from kperf.examples import masked_attention as ma
    fl = bmk.flops(p.lists, q.shape[-1])
    row = {"family": spec.name, "seq_len": spec.seq_len, "batch": spec.batch, "heads": spec.heads,
           "density": p.lists.density(), "visible_blocks": p.lists.visible_blocks(), "gflop": fl / 1e9,
           "work_max_over_mean": float(p.lists.work.max() / p.lists.work.mean()), "ms": {"dense": dense_ms}}
    outs = {}
    for s in SCHEDULES:
        outs[s] = ma.masked_attention(q, k, v, p, s)
        row["ms"][s] = bench_ms(lambda s=s: ma.masked_attention(q, k, v, p, s), args.warmup, args.rep)
    row["schedules_same_bits"] = all(torch.equal(o, outs["grid"]) for o in outs.values())
    n_mask = spec.batch * spec.heads * spec.seq_len ** 2
    if n_mask <= args.sdpa_max_elems:
        mask = bmk.element_mask(spec, "cuda")
        sdpa = torch.nn.functional.scaled_dot_product_attention
        try:
            row["sdpa_max_abs_diff"] = float((sdpa(q, k, v, attn_mask=mask).float() - outs["grid"].float())
                                             .abs().max())
            row["ms"]["sdpa_mask"] = bench_ms(lambda: sdpa(q, k, v, attn_mask=mask), args.warmup, args.rep)
        except torch.cuda.OutOfMemoryError:
            row["sdpa_error"] = "CUDA OOM"
        del mask
        torch.cuda.empty_cache()
    row["tflops"] = {n: fl / (ms * 1e-3) / 1e12 for n, ms in row["ms"].items()}
    return row


def _time_length(args, doc: Doc, S: int) -> None:
    from kperf.examples import block_masks as bmk
    from kperf.examples import masked_attention as ma
    B = max(args.tokens // S, 1)
    q, k, v = _qkv((B, args.heads, S, 128), seed=S)
    dense = ma.prepare(bmk.dense(B, args.heads, S), "cuda")
    dense_ms = bench_ms(lambda: ma.masked_attention(q, k, v, dense, "grid"), args.warmup, args.rep)
    for family in args.families:
        spec = bmk.make_mask(family, B, args.heads, S, seed=0)
        row = _time_family(args, q, k, v, spec, ma.prepare(spec, "cuda"), dense_ms)
        doc.add(row)
        log(f"time S={S} {family}: " + ", ".join(f"{n} {t:.0f}" for n, t in row["tflops"].items())
            + " TFLOPS (visible blocks)")


def phase_time(args, doc: Doc) -> None:
    import torch
    for S in args.seq_lens:
        _time_length(args, doc, S)
        torch.cuda.empty_cache()


def _write_tiles(path: pathlib.Path, tiles: dict) -> None:
    import gzip

    import numpy as np
    cols = ("cta", "sm", "tile", "work", "start_ns", "end_ns")
    body = np.column_stack([np.asarray(tiles[c], float) for c in cols])
    with gzip.open(path, "wt") as f:
        f.write(",".join(cols) + "\n")
        np.savetxt(f, body, fmt=["%d", "%d", "%d", "%d", "%.1f", "%.1f"], delimiter=",")


def phase_traces(args, doc: Doc, out: pathlib.Path) -> None:
    import torch

    from kperf.examples import block_masks as bmk
    from kperf.examples import masked_attention as ma
    S = args.trace_seq_len
    B = max(args.tokens // S, 1)
    q, k, v = _qkv((B, args.heads, S, 128), seed=11)
    tdir = out / "traces"
    tdir.mkdir(parents=True, exist_ok=True)
    for family in args.families:
        p = ma.prepare(bmk.make_mask(family, B, args.heads, S, seed=0), "cuda")
        plain = ma.masked_attention(q, k, v, p, "grid")
        for s in SCHEDULES:
            res = ma.profile_schedule(q, k, v, p, s)
            row = {"family": family, "seq_len": S, "batch": B, **res["summary"],
                   "output_identical": bool(torch.equal(res["out"], plain))}
            prof, stem = res["profile"], f"{family}_{s}"
            _write_tiles(tdir / f"tiles_{stem}.csv.gz", res["tiles"])
            (tdir / f"report_{stem}.txt").write_text(
                prof.report().to_text(max_rows=30, include=["scopes", "imbalance", "sms"]) + "\n")
            if s in ("grid", "persistent"):
                prof.to_perfetto(tdir / f"trace_{stem}_sms0-7.pftrace.gz", select="sms:0-7")
                if family == "bigbird":
                    prof.save(tdir / f"{stem}.kperf")
            doc.add(row)
            log(f"trace {stem}: span {row['kernel_span_ns'] / 1e3:.0f} us, tail {row['tail_frac']:.1%}, "
                f"SM idle {row['sm_idle_frac']:.1%}, r {row['work_time_r']:.2f}, lost {row['lost_records']}")


def _flex_length(args, doc: Doc, S: int, compiled) -> None:
    import torch

    from kperf.examples import block_masks as bmk
    from kperf.examples import masked_attention as ma
    B = max(args.tokens // S, 1)
    q, k, v = _qkv((B, args.heads, S, 128), seed=S)
    for family in args.families:
        spec = bmk.make_mask(family, B, args.heads, S, seed=0)
        p = ma.prepare(spec, "cuda")
        bm = bmk.flex_block_mask(p.lists, "cuda")
        t0 = time.time()
        out = compiled(q, k, v, block_mask=bm)
        torch.cuda.synchronize()
        ours = ma.masked_attention(q, k, v, p, "grid")
        row = {"family": family, "seq_len": S, "batch": B, "first_call_s": time.time() - t0,
               "max_abs_diff_vs_grid": float((out.float() - ours.float()).abs().max())}
        row["ms"] = bench_ms(lambda bm=bm: compiled(q, k, v, block_mask=bm), args.warmup, args.rep)
        row["tflops"] = bmk.flops(p.lists, 128) / (row["ms"] * 1e-3) / 1e12
        doc.add(row)
        log(f"flex S={S} {family}: {row['tflops']:.0f} TFLOPS, |flex - grid| "
            f"{row['max_abs_diff_vs_grid']:.2e}, first call {row['first_call_s']:.1f} s")


def phase_flex(args, doc: Doc) -> None:
    import torch

    from kperf.examples import masked_attention as ma
    compiled = ma.compiled_flex_attention()
    for S in args.seq_lens:
        _flex_length(args, doc, S, compiled)
        torch.cuda.empty_cache()


# --- summary -----------------------------------------------------------------------------------------------

def _load(out: pathlib.Path, phase: str) -> dict | None:
    path = out / f"{phase}.json"
    return json.loads(path.read_text()) if path.exists() else None


def timing_table(time_doc: dict, flex_doc: dict | None) -> list[str]:
    flex = {(r["family"], r["seq_len"]): r for r in (flex_doc or {}).get("rows", [])}
    cols = SCHEDULES + ("flex", "sdpa_mask", "dense")
    lines = ["| family | S | B | density | " + " | ".join(cols)
             + " | best balanced / grid | best balanced / flex |", "|---" * (len(cols) + 6) + "|"]
    for r in time_doc["rows"]:
        tf = dict(r["tflops"])
        f = flex.get((r["family"], r["seq_len"]))
        if f:
            tf["flex"] = f["tflops"]
        cells = [f"{tf[c]:.0f}" if c in tf else "-" for c in cols]
        best = max(tf[c] for c in SCHEDULES[2:] if c in tf)
        vs_flex = f"{best / tf['flex']:.2f}" if "flex" in tf else "-"
        lines.append(f"| {r['family']} | {r['seq_len']} | {r['batch']} | {r['density']:.3f} | "
                     + " | ".join(cells) + f" | {best / tf['grid']:.2f} | {vs_flex} |")
    return lines


def imbalance_table(trace_doc: dict) -> list[str]:
    keys = (("kernel span us", "kernel_span_ns", 1e-3, "{:.0f}"),
            ("tail / span", "tail_frac", 100, "{:.1f}%"), ("SM idle", "sm_idle_frac", 100, "{:.1f}%"),
            ("SM idle at end", "end_idle_frac", 100, "{:.1f}%"),
            ("SM busy max/mean", "sm_max_over_mean", 1, "{:.3f}"), ("CTA span cv", "cta_cv", 1, "{:.2f}"),
            ("work-time r", "work_time_r", 1, "{:.3f}"), ("ns / block", "ns_per_block", 1, "{:.0f}"),
            ("lost to imbalance", "imbalance_loss_frac", 100, "{:.1f}%"))
    lines = ["| family | schedule | " + " | ".join(k[0] for k in keys) + " |", "|---" * (len(keys) + 2) + "|"]
    for r in trace_doc["rows"]:
        lines.append(f"| {r['family']} | {r['schedule']} | "
                     + " | ".join(fmt.format(r[key] * sc) for _, key, sc, fmt in keys) + " |")
    return lines


def summarize(out: pathlib.Path) -> str:
    md = ["# Masked attention: results", ""]
    for phase in ("correct", "time", "traces", "flex"):
        d = _load(out, phase)
        if d is None:
            md.append(f"(no {phase}.json)")
            continue
        md.append(f"{phase}: {d['device']}, {d['date']}, torch {d['torch']}, triton {d['triton']}: "
                  f"`{d['command']}`")
    c = _load(out, "correct")
    if c:
        worst = [max(v for k, v in r.items() if k.startswith("err_")) for r in c["rows"]]
        md += ["", "Correctness (max |out - SDPA fp32| over the schedules, fp16, d128): " + "; ".join(
            f"{r['family']} {'ok' if r['ok'] else 'FAIL'} ({w:.1e})"
            for r, w in zip(c["rows"], worst, strict=True))]
    t, f = _load(out, "time"), _load(out, "flex")
    if t:
        md += ["", "## TFLOPS (visible key blocks only; fp16, d128, 16 heads)", ""] + timing_table(t, f)
        for s in SCHEDULES[1:]:
            gains = [r["tflops"][s] / r["tflops"]["grid"] for r in t["rows"] if s in r["tflops"]]
            if gains:
                md.append(f"\n{s} / grid: median {statistics.median(gains):.2f}, range {min(gains):.2f} - "
                          f"{max(gains):.2f}")
    tr = _load(out, "traces")
    if tr:
        md += ["", f"## kperf imbalance at S={tr['rows'][0]['seq_len']}", ""] + imbalance_table(tr)
    return "\n".join(md)


def parse_args(argv):
    from kperf.tritonbench_ext.args import int_list
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True)
    ap.add_argument("--phases", default="correct,time,traces,flex")
    ap.add_argument("--summarize", action="store_true", help="only write results.md from the phases' JSON")
    ap.add_argument("--families", default=",".join(FAMILIES))
    ap.add_argument("--seq-lens", type=int_list, default=list(SEQ_LENS))
    ap.add_argument("--tokens", type=int, default=32768, help="batch x sequence length of every shape")
    ap.add_argument("--heads", type=int, default=16)
    ap.add_argument("--trace-seq-len", type=int, default=32768)
    ap.add_argument("--warmup", type=float, default=10.0, help="do_bench warm-up, ms")
    ap.add_argument("--rep", type=float, default=80.0, help="do_bench measured time, ms")
    ap.add_argument("--sdpa-max-elems", type=int, default=1 << 32, help="largest dense mask for SDPA")
    args = ap.parse_args(argv)
    args.families = [f for f in args.families.split(",") if f]
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if not args.summarize:
        import torch
        if not torch.cuda.is_available():
            raise SystemExit("bench.masked_attention needs a Hopper GPU; none found")
        for phase in args.phases.split(","):
            doc = Doc(out / f"{phase}.json", argv)
            log(f"phase {phase} on {doc.data['device']}")
            run = {"correct": lambda d: phase_correct(args, d), "time": lambda d: phase_time(args, d),
                   "traces": lambda d: phase_traces(args, d, out), "flex": lambda d: phase_flex(args, d)}
            run[phase](doc)
    md = summarize(out)
    (out / "results.md").write_text(md + "\n")
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
