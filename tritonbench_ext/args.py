"""The command line, in tritonbench's vocabulary, and the sweep plan it describes.

tritonbench (pytorch-labs/tritonbench) runs ``python run.py --op flash_attention --only a,b
--metrics latency,tflops --batch 4 --n-heads 48 --d-head 64 --seq-len 1024 --causal``; with
``--seq-len S --num-inputs N`` it runs S, 2S, ..., 2^(N-1) S.  This module accepts the same flags
(``--precision`` fp16/bf16, ``--warmup``/``--rep`` in ms) and adds two sweeps tritonbench lacks:
``--seq-lens`` and ``--batches``, each a comma list or a power-of-two range ``LO:HI``; and
``--max-tokens`` to cap ``batch * seq_len`` (shapes over the cap are skipped and listed).
"""

from __future__ import annotations

import argparse
import dataclasses
import math

from kperf.dialect.errors import KperfError

OPS = ("flash_attention",)
METRICS = ("latency", "tflops", "speedup", "accuracy", "kperf")
DEFAULT_METRICS = ("latency", "tflops")
PRECISIONS = ("fp16", "bf16")


@dataclasses.dataclass(frozen=True)
class Shape:
    """One input of the flash_attention operator, tritonbench's x value ``(Batch, Heads, SeqLen, Dhead)``."""

    batch: int
    n_heads: int
    seq_len: int
    d_head: int

    @property
    def tokens(self) -> int:
        return self.batch * self.seq_len

    @property
    def tag(self) -> str:
        return f"b{self.batch}_h{self.n_heads}_s{self.seq_len}_d{self.d_head}"

    def x_val(self) -> tuple[int, int, int, int]:
        return (self.batch, self.n_heads, self.seq_len, self.d_head)


@dataclasses.dataclass(frozen=True)
class SweepPlan:
    """The shapes to run, in order, and the ones the token cap removed."""

    shapes: tuple[Shape, ...]
    skipped: tuple[Shape, ...] = ()

    def describe(self) -> str:
        lines = [f"{len(self.shapes)} shapes: " + ", ".join(s.tag for s in self.shapes)]
        if self.skipped:
            lines.append("skipped over --max-tokens: " + ", ".join(s.tag for s in self.skipped))
        return "\n".join(lines)


def int_list(text: str) -> list[int]:
    """``"1,2,8"`` -> [1, 2, 8]; ``"128:1024"`` -> [128, 256, 512, 1024] (powers of two from LO to HI)."""
    text = text.strip()
    try:
        if ":" in text:
            lo, hi = (int(x) for x in text.split(":"))
            if lo <= 0 or hi < lo:
                raise ValueError
            out = []
            v = lo
            while v <= hi:
                out.append(v)
                v *= 2
            return out
        values = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a comma list of positive ints or a range LO:HI, got {text!r}") from None
    if not values or min(values) <= 0:
        raise argparse.ArgumentTypeError(f"expected positive ints, got {text!r}")
    return values


def csv_list(text: str) -> list[str]:
    return [x.strip() for x in text.split(",") if x.strip()]


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m kperf.tritonbench_ext",
        description="Benchmark kperf's attention pipelines against PyTorch SDPA in tritonbench's style; "
                    "the kperf metric writes a kperf trace and a summary per variant and shape.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="example: python -m kperf.tritonbench_ext --op flash_attention "
               "--only kperf_vanilla,kperf_ws_pingpong,sdpa_flash,sdpa_cudnn --metrics tflops,kperf "
               "--batch 16 --n-heads 16 --d-head 128 --seq-len 4096 --causal")
    p.add_argument("--op", default="flash_attention", help=f"operator (one of: {', '.join(OPS)})")
    p.add_argument("--only", type=csv_list, default=None,
                   help="comma-separated variants to run (default: every available one)")
    p.add_argument("--skip", type=csv_list, default=[], help="comma-separated variants to leave out")
    p.add_argument("--metrics", type=csv_list, default=list(DEFAULT_METRICS),
                   help=f"comma-separated metrics: {', '.join(METRICS)}")
    p.add_argument("--precision", default="fp16", choices=PRECISIONS, help="input dtype")
    p.add_argument("--batch", type=int, default=4, help="batch size")
    p.add_argument("--n-heads", type=int, default=48, help="number of heads")
    p.add_argument("--d-head", type=int, default=64, help="head dimension (64 or 128)")
    p.add_argument("--seq-len", type=int, default=None,
                   help="sequence length (default: tritonbench's sweep 128 .. 16384)")
    p.add_argument("--num-inputs", type=int, default=None,
                   help="with --seq-len S: run S, 2S, ..., as tritonbench does")
    p.add_argument("--causal", action="store_true", help="causal attention")
    p.add_argument("--sm-scale", type=float, default=None, help="softmax scale (default 1/sqrt(d-head))")
    p.add_argument("--seq-lens", type=int_list, default=None, help="sweep: sequence lengths, e.g. 128:16384")
    p.add_argument("--batches", type=int_list, default=None, help="sweep: batch sizes, e.g. 1:128")
    p.add_argument("--max-tokens", type=int, default=None,
                   help="skip shapes whose batch * seq_len exceeds this (memory / time cap)")
    p.add_argument("--warmup", type=float, default=25.0, help="warm-up time per measurement, ms")
    p.add_argument("--rep", type=float, default=100.0, help="measured time per measurement, ms")
    p.add_argument("--cudagraph", action="store_true",
                   help="time calls replayed from a CUDA graph (no host launch time; L2 not flushed)")
    p.add_argument("--output-dir", default="out/tritonbench_ext",
                   help="results.json, the table, and the kperf traces/summaries go here")
    p.add_argument("--kperf-trace-ctas", type=int, default=8,
                   help="CTAs written to each Chrome trace (statistics always cover every CTA)")
    p.add_argument("--kperf-max-mb", type=int, default=1024,
                   help="profile-buffer budget of one profiled launch, MiB; larger shapes are profiled "
                        "at a smaller batch (said in the summary)")
    p.add_argument("--standalone", action="store_true",
                   help="use this package's loop even when the tritonbench package is importable")
    p.add_argument("--csv", action="store_true",
                   help="print the table as CSV (';'-separated, as tritonbench)")
    return p


def parse_args(argv=None) -> argparse.Namespace:
    """Parse and check the command line (errors name the flag and the accepted values)."""
    args = get_parser().parse_args(argv)
    if args.op not in OPS:
        raise KperfError(f"unknown --op {args.op!r}", fix=f"use --op {' or '.join(OPS)}")
    unknown = [m for m in args.metrics if m not in METRICS]
    if unknown:
        raise KperfError(f"unknown metric(s) {', '.join(unknown)}",
                         fix=f"use --metrics from {', '.join(METRICS)}")
    if args.d_head not in (64, 128):
        raise KperfError(f"--d-head {args.d_head} is not supported", fix="use --d-head 64 or 128")
    for flag in ("batch", "n_heads", "num_inputs", "max_tokens", "seq_len"):
        v = getattr(args, flag)
        if v is not None and v <= 0:
            raise KperfError(f"--{flag.replace('_', '-')} must be positive, got {v}")
    if args.kperf_trace_ctas < 0 or args.kperf_max_mb <= 0:
        raise KperfError("--kperf-trace-ctas must be >= 0 and --kperf-max-mb > 0")
    return args


def sweep_plan(args: argparse.Namespace) -> SweepPlan:
    """The shapes ``args`` asks for, tritonbench's order: sequence lengths, then batches."""
    if args.seq_lens is not None:
        seq_lens = list(args.seq_lens)
    elif args.seq_len is not None:
        n = args.num_inputs or 1
        seq_lens = [args.seq_len * 2 ** i for i in range(n)]
    else:
        seq_lens = [2 ** i for i in range(7, 15)]  # tritonbench's default: 128 .. 16384
    batches = list(args.batches) if args.batches is not None else [args.batch]
    shapes, skipped = [], []
    for b in batches:
        for s in seq_lens:
            shape = Shape(b, args.n_heads, s, args.d_head)
            (skipped if args.max_tokens and shape.tokens > args.max_tokens else shapes).append(shape)
    return SweepPlan(tuple(shapes), tuple(skipped))


def flops(shape: Shape, causal: bool) -> float:
    """Forward FLOPs as tritonbench counts them: 2 matmuls of 2*B*H*N*N*D each, halved for causal."""
    f = 4.0 * shape.batch * shape.n_heads * shape.seq_len * shape.seq_len * shape.d_head
    return f * 0.5 if causal else f


def default_sm_scale(d_head: int) -> float:
    return 1.0 / math.sqrt(d_head)
