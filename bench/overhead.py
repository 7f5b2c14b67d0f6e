"""Kernel-time overhead of kperf's lowering variants vs upstream Proton, side by side in one run.

Cases (each: plain, every kperf variant, Proton with the same scopes):

- ``gemm``: fp16 GEMM 8192^3 in Triton DSL (128x128x64 tiles, 8 warps, 3 stages), scopes "load" and
  "mma" = 4 records per K iteration on every warp (bench/gemm_overhead.py's kernel);
- ``gluon``: examples/gluon_matmul.py (TMA + async wgmma, 4 stages, 8 warps), scopes "tma_wait" and
  "wgmma" = 4 records per K iteration;
- ``attention``: examples/attention.py, warp-specialized forward; its records come from kperf's
  automatic insertion on the final TTGIR (``auto=``) when this checkout has it, else the case is
  skipped with the reason printed.  Source scopes inside a warp-specialized loop are deleted by
  Triton, so Proton is measured there through a TTGIR override (bench/proton_override.py): the same
  auto-inserted sites written as ``proton.record`` lines, compiled with Triton's own override under
  Proton's instrumentation mode; a run-time failure is printed as the reason;
- ``heldout``: bench/heldout_attention.py, a warp-specialized attention forward written outside
  ``examples/`` (host TMA descriptors, head dim 64, 128 x 64 tiles) that no lowering choice was tuned
  on, ``auto="mma,tma"``, Proton as for ``attention``; ``heldout-no-ws``: the same kernel with
  ``warp_specialize=False`` (software-pipelined TMA + wgmma; its warp-specialized build hangs or gives
  NaN in plain Triton 3.6 on an H100, bench/results/h100-2026-12-06-s11).

Method: the same kernel source is compiled plain (scopes are no-op carriers), per kperf variant, and
with Proton (``triton.profiler``, ``backend="instrumentation"``, default mode).  Kernel-only device
times come from the torch profiler (CUPTI), so neither profiler's host work between launches counts.
``--rounds`` rounds, each running every variant ``--reps`` times back to back, variants in a rotated
order per round; overhead = median(variant) / median(plain) - 1, with the IQR of each set and the
per-round overheads.  Correctness first: each variant's output must equal the plain output bit for
bit, and each variant's events are counted against what its sampling should keep.  One launch per
variant is also timed alone (CUPTI) and decoded: the trace's kernel span (first CTA entry to last CTA
exit, clocks aligned to ``%globaltimer``) against that launch's kernel time.

    python3 -m bench.overhead --out bench/results/overhead          # full
    python3 -m bench.overhead --quick --out /tmp/overhead            # about 5 minutes on an H100
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import statistics
import sys
import tempfile
import time

from bench.kernel_source import twin_of
from bench.timing import (
    against_plain,
    device_times_ms,
    interleaved_device_times_ms,
    iqr,
    paired_overhead,
    run_info,
)

# name -> ProfileConfig keywords.  Capacity 520 holds the 8192^3 GEMM's 514 records per warp.
VARIANTS = {
    "check": {"fold": False},  # a capacity check per record (the default before fold was measured)
    "premerge": {"merge_blocks": False},  # fold, the counter bumped at every label and branch (before)
    "default": {},  # fold for keep-first, merged blocks
    "uniform-pointer": {"vector_pointer": False},  # ptxas may keep the record pointer in uniform regs
    "instr-only": {"sms": (0,), "clone": False},  # every record's instructions, stores only on SM 0
    "smem": {"store": "auto"},
    "smem-fold": {"store": "auto", "fold": True},
    "clock64-fold": {"clock": "clock64", "fold": True},
    "warpgroup": {"granularity": "warpgroup"},
    "warpgroup-fold": {"granularity": "warpgroup", "fold": True},
    "warpgroup-smem": {"granularity": "warpgroup", "store": "auto"},
    # one recording warp per role: the producer's and the first consumer warpgroup's (in a kernel
    # that is not warp-specialized, warp 0), staged in shared memory
    "role-smem": {"granularity": "role", "store": "auto"},
    "cta-fold": {"granularity": "cta", "fold": True},
    "cta-stride-4-fold": {"cta_stride": 4, "fold": True},
    "cta-stride-8": {"cta_stride": 8},
    "sms-1-in-8": {"sms": tuple(range(0, 132, 8)), "fold": True},
    # sampling on top of the cheapest per-CTA lowering (one warp per warpgroup, records staged in smem)
    "warpgroup-smem-cta-stride-8": {"granularity": "warpgroup", "store": "auto", "cta_stride": 8},
    "warpgroup-smem-sms-1-in-8": {"granularity": "warpgroup", "store": "auto",
                                  "sms": tuple(range(0, 132, 8))},
    # and on top of one recording warp per role (the cheapest with records on every role, s11)
    "role-smem-cta-stride-8": {"granularity": "role", "store": "auto", "cta_stride": 8},
    "role-smem-sms-1-in-8": {"granularity": "role", "store": "auto", "sms": tuple(range(0, 132, 8))},
    # one recording warp that does not issue the Gluon GEMM's TMA loads (warp 0 does): whether the
    # records cost more on the warp on the loads' critical path (a kernel of 8 warps or more)
    "warp7-smem": {"warp_mask": 1 << 7, "store": "auto"},
    # the instructions alone (stores predicated off outside SM 0): what role-smem's stores cost
    "role-smem-instr-only": {"granularity": "role", "store": "auto", "sms": (0,), "clone": False},
    # records on SM 0 only, every other CTA in the uninstrumented copy: what the clone itself costs
    # (before s13's own registers for the copy, ptxas ordered its loops unlike the plain kernel's:
    # bench.sass_cost's loop_order)
    "role-smem-clone-only": {"granularity": "role", "store": "auto", "sms": (0,)},
    # each tag word in a register set once (one SASS instruction less per record in a loop; s13; off: s14)
    "role-smem-hoist": {"granularity": "role", "store": "auto", "hoist_tags": True},
    "role-smem-hoist-sms-1-in-8": {"granularity": "role", "store": "auto", "hoist_tags": True,
                                   "sms": tuple(range(0, 132, 8))},
    # the arithmetic a record pins after a barrier wait moved in front of it (s14, kperf.passes.ptx_hoist):
    # every scope's records ("all"), or automatic insertion's only ("auto", the default since s14, so
    # role-smem-arith-auto is role-smem; the Gluon GEMM's scopes are the source's)
    "role-smem-arith": {"granularity": "role", "store": "auto", "hoist_arith": "all"},
    "role-smem-arith-auto": {"granularity": "role", "store": "auto", "hoist_arith": "auto"},
    "role-smem-arith-instr-only": {"granularity": "role", "store": "auto", "hoist_arith": "all", "sms": (0,),
                                   "clone": False},
    # a record's clock read where it stands, its tag move and store in the next wgmma's window (s14)
    "role-smem-defer": {"granularity": "role", "store": "auto", "defer_stores": True},
    "role-smem-arith-defer": {"granularity": "role", "store": "auto", "hoist_arith": "all",
                              "defer_stores": True},
    "role-smem-arith-defer-sms-1-in-8": {"granularity": "role", "store": "auto", "hoist_arith": "all",
                                         "defer_stores": True, "sms": tuple(range(0, 132, 8))},
    # records stored to global memory from the recording lane (no staging, no copy-out at the CTA's end)
    "role-global": {"granularity": "role", "store": "global"},
    "role-global-arith": {"granularity": "role", "store": "global", "hoist_arith": "all"},
    "role-global-sms-1-in-8": {"granularity": "role", "store": "global", "sms": tuple(range(0, 132, 8))},
    "role-smem-arith-sms-1-in-8": {"granularity": "role", "store": "auto", "hoist_arith": "all",
                                   "sms": tuple(range(0, 132, 8))},
}
QUICK_VARIANTS = ("check", "default", "smem-fold", "warpgroup-fold", "cta-stride-4-fold")


# ------------------------------------------------------------------------------------------ cases


class Case:
    """One kernel: ``run(kernel)`` launches it and returns the output; ``kernel_name`` filters CUPTI."""

    name = ""
    kernel_name = ""
    records_per_warp = 0  # records each recording warp executes (for the expected-event count)
    n_ctas = 0
    num_warps = 0

    def run(self, kernel):
        raise NotImplementedError

    def kperf_kernel(self):
        raise NotImplementedError

    def proton_kernel(self):
        """(kernel, None) or (None, reason)."""
        raise NotImplementedError


class GemmCase(Case):
    name = "gemm"

    def __init__(self, size: int):
        import torch

        from bench import gemm_overhead as go
        self.go, self.S = go, size
        tmp = pathlib.Path(tempfile.mkdtemp(prefix="kperf_bench_"))
        self.kernel = go.load_kernel("kperf", "import kperf", "kperf.scope", tmp)
        self.tmp = tmp
        self.kernel_name = "gemm_kperf"
        torch.manual_seed(0)
        self.a = torch.randn(size, size, device="cuda", dtype=torch.float16)
        self.b = torch.randn(size, size, device="cuda", dtype=torch.float16)
        self.c = torch.empty(size, size, device="cuda", dtype=torch.float16)
        self.n_ctas, self.num_warps = (size // 128) ** 2, 8
        self.records_per_warp = 4 * (size // 64)

    def run(self, kernel):
        self.go.launch(kernel, self.a, self.b, self.c, self.S)
        return self.c

    def kperf_kernel(self):
        return self.kernel

    def proton_kernel(self):
        import triton.profiler.language as pl
        pl.enable_semantic("triton")
        k = self.go.load_kernel("proton", "import triton.profiler.language as pl", "pl.scope", self.tmp)
        return k, "gemm_proton"


class GluonCase(Case):
    name = "gluon"

    def __init__(self, size: int):
        import torch

        from kperf.examples import gluon_matmul as gm
        self.gm, self.S = gm, size
        self.kernel_name = "gluon_matmul_kernel"
        torch.manual_seed(0)
        self.a = torch.randn(size, size, device="cuda", dtype=torch.float16)
        self.b = torch.randn(size, size, device="cuda", dtype=torch.float16)
        self.n_ctas, self.num_warps = (size // gm.BM) * (size // gm.BN), gm.NUM_WARPS
        self.records_per_warp = 4 * (size // gm.BK)

    def run(self, kernel):
        return self.gm.matmul(self.a, self.b, kernel=kernel)

    def kperf_kernel(self):
        return self.gm.gluon_matmul_kernel

    def proton_kernel(self):
        mod = twin_of(self.gm, {"import kperf\n": "import kperf\nimport triton.profiler.language as pl\n",
                                "kperf.scope(": "pl.scope(",
                                "def gluon_matmul_kernel(": "def gluon_proton_kernel(",
                                "kernel=gluon_matmul_kernel": "kernel=gluon_proton_kernel"}, "_gluon_proton")
        self.gm_proton = mod
        return mod.gluon_proton_kernel, "gluon_proton_kernel"

    def run_proton(self, kernel):
        return self.gm_proton.matmul(self.a, self.b, kernel=kernel)


class AttentionCase(Case):
    name = "attention"

    def __init__(self, n_ctx: int):
        import dataclasses

        from kperf.dialect.options import ProfileConfig
        from kperf.examples import attention as at
        if "auto" not in {f.name for f in dataclasses.fields(ProfileConfig)}:
            raise RuntimeError("this checkout's ProfileConfig has no `auto` option (automatic insertion on "
                               "the final TTGIR), and source scopes cannot survive warp specialization")
        self._inputs(at, "attn_fwd_kernel", n_ctx, (4, 16, 128), block_m=128)

    def _inputs(self, module, kernel_name: str, n_ctx: int, zhd: tuple, block_m: int) -> None:
        """Random fp16 q, k, v of (z, h, n_ctx, d) for ``module``'s kernel; records from auto-insertion."""
        import torch
        self.at, self.kernel_name = module, kernel_name
        torch.manual_seed(0)
        z, h, d = zhd
        self.q, self.k, self.v = (torch.randn(z, h, n_ctx, d, device="cuda", dtype=torch.float16)
                                  for _ in range(3))
        self.n_ctas = None  # counted from the decode (auto insertion decides the records)
        self.grid_ctas = (n_ctx // block_m) * z * h
        self.extra_config = {"auto": "mma,tma"}

    def run(self, kernel):
        return self.at.attention(self.q, self.k, self.v, kernel=kernel)

    def kperf_kernel(self):
        return self.at.attn_fwd_kernel

    def proton_kernel(self):
        return self.at.attn_fwd_kernel, self.kernel_name

    def measure_proton(self, n: int, ref, plain_ms: float) -> dict:
        """Proton at kperf's auto-inserted sites, through a TTGIR override (bench/proton_override.py)."""
        from bench import proton_override as po
        try:
            folder = tempfile.mkdtemp(prefix="kperf_proton_ovr_")
            kernel = self.kperf_kernel()
            folders = po.prepare_for_case(folder, kernel, getattr(self, "options", None))
            r = po.measure(self.run, kernel, ref, n, self.kernel_name, folders["proton_dir"],
                           plain_ms, n_ctas=self.grid_ctas, expected_records=folders["records"])
        except Exception as e:  # Proton's dialect or runtime may refuse the records: say why
            return {"proton_skipped": f"Proton failed at run time with TTGIR override records: "
                                      f"{type(e).__name__}: {e}"}
        r["proton_override_dir"] = folders["proton_dir"]
        return r


class HeldoutCase(AttentionCase):
    """bench/heldout_attention.py: WS attention written outside examples/, auto-inserted records."""

    name = "heldout"

    def __init__(self, n_ctx: int, warp_specialize: bool = True, build: dict | None = None,
                 name: str | None = None):
        from bench import heldout_attention as ha
        self._inputs(ha, "heldout_attn_kernel", n_ctx, (4, 32, 64), block_m=ha.BLOCK_M)
        self.warp_specialize = warp_specialize
        self.build = build or {}  # attention()'s keywords: descriptors, tiles, stages
        self.options = dict(ha.COMPILE_OPTIONS)
        if "num_stages" in self.build:
            self.options["num_stages"] = self.build["num_stages"]
        self.name = name or ("heldout" if warp_specialize else "heldout-no-ws")

    def run(self, kernel):
        return self.at.attention(self.q, self.k, self.v, kernel=kernel, warp_specialize=self.warp_specialize,
                                 **self.build)

    def check_plain(self, out) -> float:
        """Largest error of the plain kernel against fp32 attention on the first 4 heads (each (batch,
        head) is independent; the whole reference would take 17 GB)."""
        ref = self.at.reference(self.q[:1, :4], self.k[:1, :4], self.v[:1, :4])
        return float((out[:1, :4].float() - ref.float()).abs().max())

    def kperf_kernel(self):
        return self.at.heldout_attn_kernel


def _heldout_ws_build() -> dict:
    """The held-out kernel's warp-specialized build that runs on Hopper with Triton 3.6."""
    from bench import heldout_attention as ha
    return ha.WS_BUILD


# ------------------------------------------------------------------------------------------ measuring


def expected_events(case: Case, cfg, decoded) -> int | None:
    """Events the variant should keep: sampled CTAs x recording warps x records per warp."""
    if not case.records_per_warp:
        return None
    sampled = int((decoded.ctas["ok"] & ~decoded.ctas["sampled_out"]).sum())
    if cfg.cta_stride > 1 and not cfg.sms:
        assert sampled == len(range(0, case.n_ctas, cfg.cta_stride))
    return sampled * decoded.geometry.slots * case.records_per_warp


def measure_case(case: Case, variants: dict, reps: int, rounds: int,
                 interleave: bool = False) -> tuple[dict, object]:
    """Plain and every kperf variant, ``rounds`` x ``reps`` launches; the result and the plain output.
    ``interleave``: each round runs ``reps`` cycles of one launch per variant (``timing``'s
    ``interleaved_device_times_ms``), and each variant also gets the paired overhead."""
    import torch

    import kperf
    from kperf.dialect.options import ProfileConfig

    extra = getattr(case, "extra_config", {})
    cap = {"capacity": 520} if case.records_per_warp and case.records_per_warp <= 512 else {}
    configs = {n: ProfileConfig(**{**cap, **kw, **extra}) for n, kw in variants.items()}
    plain_kernel = case.kperf_kernel()
    ref = case.run(plain_kernel).clone()
    torch.cuda.synchronize()
    res: dict = {"variants": {}}
    if hasattr(case, "check_plain"):
        res["plain_max_abs_error_vs_fp32"] = case.check_plain(ref)
    runners = {"plain": lambda: case.run(plain_kernel)}
    profiled = {}
    for name, cfg in configs.items():
        k = kperf.profile(plain_kernel, config=cfg)
        res["variants"][name] = first_launches(case, k, cfg, ref)
        profiled[name] = k
        runners[name] = (lambda k=k: case.run(k))
    times = {n: [] for n in runners}
    per_round = {n: [] for n in runners}
    order = list(runners)
    for r in range(rounds):
        if interleave:
            got = interleaved_device_times_ms(runners, reps, case.kernel_name)
        else:
            got = {n: device_times_ms(runners[n], reps, case.kernel_name)
                   for n in order[r % len(order):] + order[:r % len(order)]}
        for n, t in got.items():
            times[n] += t
            per_round[n].append(statistics.median(t))
        for k in profiled.values():
            k.reset()  # drop the host copies of the buffers
    plain = statistics.median(times["plain"])
    res["plain_ms_median"], res["plain_ms_iqr"] = plain, iqr(times["plain"])
    res["interleaved"] = interleave
    for n, entry in res["variants"].items():
        entry.update(against_plain(times[n], plain))
        pairs = zip(per_round[n], per_round["plain"], strict=True)
        entry["overhead_per_round"] = [v / p - 1 for v, p in pairs]
        if interleave:  # the same cycle's plain launch as the baseline of each launch
            entry["overhead_paired"] = paired_overhead(times[n], times["plain"])
    res["all_ms"] = times
    return res, ref


def first_launches(case: Case, k, cfg, ref) -> dict:
    """Compile and check one variant: output identity, events, losses; then one launch timed alone
    (CUPTI) and decoded, for the trace's kernel span against that launch's kernel time."""
    import torch

    import kperf
    t0 = time.perf_counter()
    out = case.run(k)
    torch.cuda.synchronize()
    (dec,) = kperf.results(k).decoded()
    entry = {"config": cfg.to_mode().split(",code=")[0],
             "compile_and_first_launch_s": time.perf_counter() - t0,
             "output_identical": bool(torch.equal(out, ref)), "events": int(dec.n_events),
             "events_expected": expected_events(case, cfg, dec), "lost": int(dec.lost_total),
             "problems": dec.problems, "sampled_out_ctas": int(dec.ctas["sampled_out"].sum()),
             "geometry": dec.geometry.to_json()}
    del dec
    k.reset()
    (ms,) = device_times_ms(lambda: case.run(k), 1, case.kernel_name)
    (dec,) = kperf.results(k).decoded()
    span_ms = dec.duration_ns / 1e6
    entry.update(span_launch_kernel_ms=ms, span_ms=span_ms, span_vs_kernel=span_ms / ms - 1,
                 span_launch_lost=int(dec.lost_total), span_launch_problems=dec.problems)
    del dec
    k.reset()
    return entry


def measure_proton(case: Case, n: int, ref, plain_ms: float) -> dict:
    """Proton on the same sites, ``n`` timed launches, and its host time per launch: its instrumentation
    mode parses every launch's buffer on the host (seconds per launch on the WS attention), so it gets
    fewer launches than kperf's variants (``--proton-launches``)."""
    t0 = time.perf_counter()
    r = _measure_proton(case, n, ref, plain_ms)
    if "proton_ms_all" in r:  # the first launch (compile, checks) and the n timed ones
        r["proton_wall_s_per_launch"] = (time.perf_counter() - t0) / (n + 1)
    return r


def _measure_proton(case: Case, n: int, ref, plain_ms: float) -> dict:
    import torch
    if hasattr(case, "measure_proton"):
        return case.measure_proton(n, ref, plain_ms)
    kernel, name = case.proton_kernel()
    if kernel is None:
        return {"proton_skipped": name}
    import triton.profiler as proton
    tmp = tempfile.mkdtemp(prefix="kperf_proton_")
    run = getattr(case, "run_proton", case.run)
    proton.start(os.path.join(tmp, f"proton_{case.name}"), backend="instrumentation")
    try:
        out = run(kernel)
        torch.cuda.synchronize()
        identical = bool(torch.equal(out, ref))
        times = device_times_ms(lambda: run(kernel), n, name)
    finally:
        proton.finalize()
    return {**against_plain(times, plain_ms, "proton_"), "proton_output_identical": identical,
            "proton_ms_all": times}


# ------------------------------------------------------------------------------------------ main


def main(argv=None) -> int:
    import torch

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cases", default="gemm,gluon,attention")
    p.add_argument("--only", default=None, help="run only these cases (comma separated; overrides --cases)")
    p.add_argument("--variants", default=None, help="comma-separated names from VARIANTS (default: all)")
    p.add_argument("--size", type=int, default=8192, help="GEMM M=N=K")
    p.add_argument("--n-ctx", type=int, default=8192, help="attention sequence length")
    p.add_argument("--reps", type=int, default=20)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--quick", action="store_true",
                   help=f"variants {','.join(QUICK_VARIANTS)}, 10 reps x 2 rounds")
    p.add_argument("--interleave", action="store_true",
                   help="one launch per variant in turn, and each variant's overhead against the plain "
                        "launch of the same cycle (for kernels whose clock a power cap moves)")
    p.add_argument("--no-proton", action="store_true")
    p.add_argument("--proton-launches", type=int, default=10,
                   help="timed launches of Proton's build (its host work per launch takes seconds)")
    p.add_argument("--out", required=True, help="output directory (overhead.json)")
    args = p.parse_args(argv)
    if not torch.cuda.is_available():
        raise SystemExit("bench.overhead needs a CUDA GPU")
    names = args.variants.split(",") if args.variants else list(QUICK_VARIANTS if args.quick else VARIANTS)
    unknown = [n for n in names if n not in VARIANTS]
    if unknown:
        raise SystemExit(f"unknown variants {unknown}; known: {', '.join(VARIANTS)}")
    variants = {n: VARIANTS[n] for n in names}
    reps, rounds = (10, 2) if args.quick else (args.reps, args.rounds)
    out_dir = pathlib.Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    result = {**run_info(argv), "reps": reps, "rounds": rounds, "cases": {}}
    makers = {"gemm": lambda: GemmCase(args.size), "gluon": lambda: GluonCase(args.size),
              "attention": lambda: AttentionCase(args.n_ctx), "heldout": lambda: HeldoutCase(args.n_ctx),
              "heldout-no-ws": lambda: HeldoutCase(args.n_ctx, warp_specialize=False),
              "heldout-ws": lambda: HeldoutCase(args.n_ctx, name="heldout-ws", build=_heldout_ws_build())}
    for cname in (args.only or args.cases).split(","):
        t0 = time.perf_counter()
        try:
            case = makers[cname]()
        except Exception as e:  # report, never hide
            result["cases"][cname] = {"skipped": f"{type(e).__name__}: {e}"}
            print(f"\n== {cname}: skipped: {type(e).__name__}: {e}")
            continue
        ref = None
        try:
            r, ref = measure_case(case, variants, reps, rounds, interleave=args.interleave)
        except Exception as e:
            import traceback
            r = {"error": f"{type(e).__name__}: {e}", "traceback": traceback.format_exc()}
        r["wall_s"] = time.perf_counter() - t0
        result["cases"][cname] = r
        _write(out_dir, result)  # kperf's numbers kept and shown, whatever Proton then does
        if ref is None or args.no_proton:
            print_case(cname, r)
            continue
        print_case(f"{cname} (kperf; Proton next)", r)
        r.update(measure_proton(case, args.proton_launches, ref, r["plain_ms_median"]))
        r["wall_s"] = time.perf_counter() - t0
        _write(out_dir, result)
        print_case(cname, r)
    print(f"\nwrote {out_dir / 'overhead.json'}")
    return 0


def _write(out_dir: pathlib.Path, result: dict) -> None:
    (out_dir / "overhead.json").write_text(json.dumps(result, indent=1, default=float) + "\n")


def print_case(name: str, r: dict) -> None:
    print(f"\n== {name}")
    if "error" in r:
        print(f"  error: {r['error']}\n{r.get('traceback', '')}")
        return
    print(f"  plain {r['plain_ms_median']:.4f} ms (IQR {r['plain_ms_iqr']:.4f})")
    pov = r.get("proton_overhead")
    if "plain_max_abs_error_vs_fp32" in r:
        print(f"  plain output vs fp32 attention: max abs error {r['plain_max_abs_error_vs_fp32']:.2e}")
    print(f"  {'variant':<20} {'ms':>8} {'IQR':>7} {'overhead':>9} {'rounds':>17} {'vs Proton':>9} "
          f"{'events':>10} {'expected':>10} {'lost':>5} {'span':>7} ok")
    for v, e in r["variants"].items():
        ratio = f"{e['overhead'] / pov:9.2f}" if pov else f"{'-':>9}"
        rounds = "/".join(f"{x:+.1%}" for x in e["overhead_per_round"])
        ok = e["output_identical"] and not e["problems"] and (e["events_expected"] in (None, e["events"]))
        print(f"  {v:<20} {e['ms_median']:8.4f} {e['ms_iqr']:7.4f} {e['overhead']:+9.2%} {rounds:>17} "
              f"{ratio} "
              f"{e['events']:>10} {str(e['events_expected']):>10} {e['lost']:>5} {e['span_vs_kernel']:+7.2%} "
              f"{'yes' if ok else 'NO'}")
        if "overhead_paired" in e:
            print(f"      paired with the same cycle's plain launch: {e['overhead_paired']:+.2%}")
        for prob in e["problems"]:
            print(f"      problem: {prob}")
    if pov is not None:
        print(f"  {'proton':<20} {r['proton_ms_median']:8.4f} {r['proton_ms_iqr']:7.4f} {pov:+9.2%} "
              f"(output identical: {r['proton_output_identical']}; "
              f"{r.get('proton_wall_s_per_launch', float('nan')):.2f} s of wall time per launch)")
        ev = r.get("proton_events")
        if ev:
            print(f"      proton via TTGIR override: {r['proton_records']} records; events recorded "
                  f"{ev['events_recorded']}, kept {ev['events_kept']}, dropped {ev['events_dropped']} "
                  f"({ev['events_per_warp_capacity']} per warp fit its circular buffer)")
            if ev.get("problem"):
                print(f"      problem: {ev['problem']}")
    elif "proton_skipped" in r:
        print(f"  proton: skipped: {r['proton_skipped']}")


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
