"""The command line, in tritonbench's vocabulary, and the sweep plan it describes.

tritonbench (pytorch-labs/tritonbench) runs ``python run.py --op flash_attention --only a,b
--metrics latency,tflops --batch 4 --n-heads 48 --d-head 64 --seq-len 1024 --causal``; with
``--seq-len S --num-inputs N`` it runs S, 2S, ..., 2^(N-1) S.  This module accepts the same flags
(``--precision`` fp16/bf16, ``--warmup``/``--rep`` in ms) and adds two sweeps tritonbench lacks:
``--seq-lens`` and ``--batches``, each a comma list or a power-of-two range ``LO:HI``; and
``--max-tokens`` to cap ``batch * seq_len`` (shapes over the cap are skipped and listed).

``--op masked_attention`` takes the same shape flags and sweeps, and ``--mask`` (a comma list of
``examples/block_masks.py``'s families, or ``all``: the default, as tritonbench's flex_attention
operator runs every mask type) with each family's parameters (``--windows``, ``--doc-mean-len``,
``--global-blocks``, ...; unset, the family's defaults in ``block_masks``).  Its plan runs every mask at
every (batch, sequence length); a flag of one operator given to the other is an error, not ignored.
"""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import math

from kperf.dialect.errors import KperfError
from kperf.examples import block_masks as bmk

OPS = ("flash_attention", "masked_attention")
METRICS = ("latency", "tflops", "speedup", "accuracy", "kperf")
DEFAULT_METRICS = ("latency", "tflops")
PRECISIONS = ("fp16", "bf16")
MASKS = bmk.FAMILIES
MASK_BLOCK = 128  # the masks' block size (block_masks' default, the kernels' BLOCK_M and BLOCK_N)
SDPA_MAX_ELEMS = 1 << 32  # the largest B * H * S * S dense boolean mask SDPA (and the reference) gets
# masked_attention's mask parameters: the families each one applies to
MASK_PARAMS = {"windows": ("sliding_window",), "doc_mean_len": ("document",), "global_blocks": ("bigbird",),
               "window_blocks": ("bigbird",), "random_blocks": ("bigbird",),
               "mask_seed": ("document", "bigbird")}


@dataclasses.dataclass(frozen=True)
class Shape:
    """One input: tritonbench's x value ``(Batch, Heads, SeqLen, Dhead)``, and the mask family for
    masked_attention (``(Batch, Heads, SeqLen, Dhead, Mask)``; None for flash_attention)."""

    batch: int
    n_heads: int
    seq_len: int
    d_head: int
    mask: str | None = None

    @property
    def tokens(self) -> int:
        return self.batch * self.seq_len

    @property
    def tag(self) -> str:
        tag = f"b{self.batch}_h{self.n_heads}_s{self.seq_len}_d{self.d_head}"
        return tag if self.mask is None else f"{tag}_{self.mask}"

    @property
    def dims(self) -> tuple[int, int, int, int]:
        """``(B, H, S, D)``: the shape of q, k and v."""
        return (self.batch, self.n_heads, self.seq_len, self.d_head)

    def x_val(self) -> tuple:
        return self.dims if self.mask is None else (*self.dims, self.mask)


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


def _default(fn, name: str):
    return inspect.signature(fn).parameters[name].default


def _add_mask_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("masked_attention (examples/block_masks.py; unset: the family's default)")
    g.add_argument("--mask", type=csv_list, default=None,
                   help=f"comma-separated mask families from {', '.join(MASKS)}, or all (default: all)")
    g.add_argument("--windows", type=int_list, default=None,
                   help="sliding_window: window in tokens, per head, cycled (e.g. 1024, or 256:4096 = the "
                        "default: 256 << (h %% 5), capped at the sequence)")
    g.add_argument("--doc-mean-len", type=int, default=None,
                   help="document: mean document length in tokens (default: seq-len / 8)")
    for name, what in (("global_blocks", "leading global blocks"), ("window_blocks", "blocks in the band"),
                       ("random_blocks", "random key blocks per query block and head")):
        g.add_argument("--" + name.replace("_", "-"), type=int, default=None,
                       help=f"bigbird: {what} (default {_default(bmk.bigbird, name)})")
    g.add_argument("--mask-seed", type=int, default=None,
                   help="document, bigbird: seed of the random lengths / blocks (default 0)")
    g.add_argument("--sdpa-max-elems", type=int, default=None,
                   help="largest dense boolean mask (B * H * S * S elements) for sdpa_mask and the "
                        f"accuracy reference; larger shapes skip them (default {SDPA_MAX_ELEMS})")


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m kperf.tritonbench_ext",
        description="Benchmark kperf's attention pipelines against PyTorch SDPA in tritonbench's style "
                    "(--op flash_attention), or the masked-attention schedules against FlexAttention and "
                    "SDPA with a dense mask (--op masked_attention); the kperf metric writes a kperf trace "
                    "and a summary per variant and shape.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples: python -m kperf.tritonbench_ext --op flash_attention "
               "--only kperf_vanilla,kperf_ws_pingpong,sdpa_flash,sdpa_cudnn --metrics tflops,kperf "
               "--batch 16 --n-heads 16 --d-head 128 --seq-len 4096 --causal\n"
               "          python -m kperf.tritonbench_ext --op masked_attention --mask bigbird "
               "--metrics tflops,kperf --batch 1 --n-heads 16 --d-head 128 --seq-len 32768")
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
    p.add_argument("--causal", action="store_true", help="causal attention (flash_attention)")
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
                   help="flash_attention: profile-buffer budget of one profiled launch, MiB; larger shapes "
                        "are profiled at a smaller batch (said in the summary).  masked_attention always "
                        "profiles the whole launch (its imbalance is the whole launch's)")
    p.add_argument("--standalone", action="store_true",
                   help="use this package's loop even when the tritonbench package is importable")
    p.add_argument("--csv", action="store_true",
                   help="print the table as CSV (';'-separated, as tritonbench)")
    _add_mask_flags(p)
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
    if args.op == "masked_attention":
        _check_masked(args)
    else:
        given = [f for f in ("mask", "sdpa_max_elems", *MASK_PARAMS) if getattr(args, f) is not None]
        if given:
            raise KperfError(f"--{given[0].replace('_', '-')} is a masked_attention flag",
                             fix=f"drop it, or use --op masked_attention (this is --op {args.op})")
        args.masks = [None]
    return args


def _check_masked(args: argparse.Namespace) -> None:
    """masked_attention's flags: known families, parameters of a family that runs, whole blocks."""
    if args.causal:
        raise KperfError("--causal is a flash_attention flag: in masked_attention the mask says what each "
                         "query sees", fix="use --mask causal")
    masks = list(MASKS) if args.mask in (None, ["all"]) else list(args.mask)
    unknown = [m for m in masks if m not in MASKS]
    if unknown or not masks:
        raise KperfError(f"unknown --mask {', '.join(unknown) or '(empty)'}",
                         fix=f"use --mask with families from {', '.join(MASKS)}, or all")
    for flag, families in MASK_PARAMS.items():
        if getattr(args, flag) is not None and not set(families) & set(masks):
            raise KperfError(f"--{flag.replace('_', '-')} applies to --mask {' or '.join(families)}, "
                             "which this run leaves out",
                             fix=f"add {families[0]} to --mask, or drop the flag")
    least_values = {"doc_mean_len": 1, "sdpa_max_elems": 1, "global_blocks": 0, "window_blocks": 0,
                    "random_blocks": 0}
    for flag, least in least_values.items():
        v = getattr(args, flag)
        if v is not None and v < least:
            what = "positive" if least else ">= 0"
            raise KperfError(f"--{flag.replace('_', '-')} must be {what}, got {v}",
                             fix=f"give --{flag.replace('_', '-')} a value {what}, or leave it out (its "
                                 "default)")
    odd = [s for s in seq_lens(args) if s % MASK_BLOCK]
    if odd:
        raise KperfError(f"sequence length(s) {', '.join(map(str, odd))} are not whole {MASK_BLOCK}-token "
                         "blocks", fix=f"use multiples of {MASK_BLOCK} (the masks' and kernels' block size)")
    args.masks = masks


def seq_lens(args: argparse.Namespace) -> list[int]:
    """The sequence lengths of the sweep: ``--seq-lens``, ``--seq-len`` doubled ``--num-inputs`` times, or
    tritonbench's default 128 .. 16384."""
    if args.seq_lens is not None:
        return list(args.seq_lens)
    if args.seq_len is not None:
        return [args.seq_len * 2 ** i for i in range(args.num_inputs or 1)]
    return [2 ** i for i in range(7, 15)]


def sweep_plan(args: argparse.Namespace) -> SweepPlan:
    """The shapes ``args`` asks for, tritonbench's order: sequence lengths, then batches; for
    masked_attention every mask at each (batch, sequence length)."""
    batches = list(args.batches) if args.batches is not None else [args.batch]
    masks = getattr(args, "masks", None) or [None]
    shapes, skipped = [], []
    for b in batches:
        for s in seq_lens(args):
            for mask in masks:
                shape = Shape(b, args.n_heads, s, args.d_head, mask)
                (skipped if args.max_tokens and shape.tokens > args.max_tokens else shapes).append(shape)
    return SweepPlan(tuple(shapes), tuple(skipped))


def flops(shape: Shape, causal: bool) -> float:
    """Forward FLOPs as tritonbench counts them: 2 matmuls of 2*B*H*N*N*D each, halved for causal."""
    f = 4.0 * shape.batch * shape.n_heads * shape.seq_len * shape.seq_len * shape.d_head
    return f * 0.5 if causal else f


def default_sm_scale(d_head: int) -> float:
    return 1.0 / math.sqrt(d_head)
