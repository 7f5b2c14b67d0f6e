"""The ``kperf`` commands of data movement: attainable bounds, measured traffic, the two side by side.

    kperf bounds gemm --m 8192 --n 8192 --k 8192 --dtype bf16 [--capacity 50MiB,228KiB] [--gpu H100] [--json]
    kperf bounds attention --batch 4 --heads 16 --seq 4096 --d-head 128 [--causal] [--json]
    kperf bounds einsum --einsum mk,kn->mn --shape m=8192,n=8192,k=8192 [--json]
        the least DRAM-side traffic of any tiling and loop order per on-chip capacity (docs/bounds.md)
    kperf ncu OUT [--kernels REGEX] [--auto mma,tma] [--gemm M,N,K | --attention B,H,S,D | --einsum ...]
              -- script.py [args...]
        kperf run under Nsight Compute: OUT/profile.kperf with the measured traffic (DRAM, L2, shared memory)
    kperf traffic PROFILE [--gemm M,N,K | ...] [--l2 50MiB --smem 228KiB] [--json]
        the measured traffic of a profile's launches and, for a described problem, its bounds

``add_bounds_commands(sub)`` adds them to kperf's command parser (kperf/cli.py); every failure is a
``KperfError`` that the command's error boundary prints with its fix.
"""

from __future__ import annotations

import argparse
import json
import re
import sys

from kperf.dialect.errors import KperfError

_UNITS = {"": 1, "b": 1, "kb": 1000, "mb": 1000**2, "gb": 1000**3, "kib": 2**10, "mib": 2**20, "gib": 2**30}


def parse_size(text: str, flag: str = "--capacity") -> float:
    """``"50MiB"``, ``"228KiB"``, ``"233472"`` as bytes."""
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([a-zA-Z]*)\s*", str(text))
    unit = m and m.group(2).lower()
    if not m or unit not in _UNITS or float(m.group(1)) <= 0:
        raise KperfError(f"{flag}: {text!r} is not a size",
                         fix=f"e.g. {flag} 50MiB (B, KiB, MiB, GiB, KB, MB, GB)")
    return float(m.group(1)) * _UNITS[unit]


def _ints(text: str, flag: str, n: int, example: str) -> list[int]:
    parts = [p.strip() for p in str(text).split(",")]
    if len(parts) != n or not all(p.isdigit() and int(p) > 0 for p in parts):
        raise KperfError(f"{flag}: expected {n} positive integers, got {text!r}",
                         fix=f"e.g. {flag} {example}")
    return [int(p) for p in parts]


def _capacities(args) -> list[float] | None:
    from kperf.tracing.bounds import gpu_capacities
    caps = [parse_size(c) for spec in (args.capacity or []) for c in spec.split(",") if c.strip()]
    if args.gpu:
        known = gpu_capacities(args.gpu)
        if known is None:
            raise KperfError(f"--gpu: capacities of {args.gpu!r} are not known", fix="give --capacity sizes")
        caps += [float(known["l2"]), float(known["smem"])]
    return sorted(set(caps)) or None


def _emit(bound, args) -> int:
    if args.plot:
        from kperf.tracing.bounds_plot import plot_bounds
        print(f"kperf: plot written to {plot_bounds([bound], args.plot)}", file=sys.stderr)
    print(json.dumps(bound.to_json(), indent=1) if args.json else bound.to_text())
    return 0


def cmd_bounds_gemm(args) -> int:
    from kperf.tracing import bounds
    return _emit(bounds.gemm(args.m, args.n, args.k, args.dtype, batch=args.batch, out_dtype=args.out_dtype,
                             capacities=_capacities(args)), args)


def cmd_bounds_attention(args) -> int:
    from kperf.tracing import bounds
    return _emit(bounds.attention(args.batch, args.heads, args.seq, args.d_head, causal=args.causal,
                                  dtype=args.dtype, capacities=_capacities(args)), args)


def cmd_bounds_einsum(args) -> int:
    from kperf.tracing import bounds
    return _emit(bounds.einsum(args.einsum, args.shape, args.dtype, out_dtype=args.out_dtype,
                               capacities=_capacities(args)), args)


def problem_of(args) -> dict | None:
    """The problem the --gemm / --attention / --einsum flags describe (None when none is given)."""
    from kperf.tracing.traffic_bounds import problem_from
    given = [f for f in ("gemm", "attention", "einsum") if getattr(args, f)]
    if len(given) > 1:
        raise KperfError(f"several problems given (--{', --'.join(given)})",
                         fix="describe one kernel at a time")
    kernel = args.problem_kernel or "."
    if args.gemm:
        m, n, k = _ints(args.gemm, "--gemm", 3, "8192,8192,8192")
        return problem_from("gemm", kernel, m=m, n=n, k=k, dtype=args.dtype)
    if args.attention:
        b, h, s, d = _ints(args.attention, "--attention", 4, "4,16,4096,128")
        return problem_from("attention", kernel, batch=b, heads=h, seq=s, d_head=d, causal=args.causal,
                            dtype=args.dtype)
    if args.einsum:
        if not args.shape:
            raise KperfError("--einsum needs --shape",
                             fix="e.g. --einsum mk,kn->mn --shape m=8192,n=8192,k=8192")
        return problem_from("einsum", kernel, einsum=args.einsum, shape=args.shape, dtype=args.dtype)
    return None


def _split_command(args) -> list[str]:
    """The script and its arguments; options written between OUT and ``--`` are this command's own
    (argparse hands everything after the first positional to the script otherwise)."""
    cmd = list(args.command)
    if "--" not in cmd:
        return cmd
    i = cmd.index("--")
    if i:
        given = args.ncu_parser.parse_args([*cmd[:i], args.out])
        for k, v in vars(given).items():
            if k != "command" and v != args.ncu_parser.get_default(k):
                setattr(args, k, v)
    return cmd[i + 1:]


def cmd_ncu(args) -> int:
    from kperf.ncu import measure
    cmd = _split_command(args)
    if not cmd:
        raise KperfError("no script given", fix="kperf ncu OUT -- script.py [args...]")
    problem = problem_of(args)
    data = measure(args.out, cmd[0], cmd[1:], ncu=args.ncu, kernels=args.kernels, auto=args.auto,
                   metrics=args.metrics.split(",") if args.metrics else None,
                   problems=[problem] if problem else None)
    _print_traffic(data, args, problem)
    print(f"kperf: measured traffic stored in {args.out}/profile.kperf; "
          f"next: kperf traffic {args.out}/profile.kperf")
    return 0


def cmd_traffic(args) -> int:
    from kperf.tracing import traffic
    data = traffic.load(args.profile)
    _print_traffic(data, args, problem_of(args))
    return 0


def _print_traffic(data: dict, args, problem: dict | None) -> None:
    from kperf.tracing.traffic import traffic_table
    from kperf.tracing.traffic_bounds import bounds_table
    problems = [problem] if problem else data.get("problems") or []
    l2 = parse_size(args.l2, "--l2") if getattr(args, "l2", None) else None
    smem = parse_size(args.smem, "--smem") if getattr(args, "smem", None) else None
    tables = [traffic_table(data)] + ([bounds_table(data, problems, l2=l2, smem=smem)] if problems else [])
    if getattr(args, "json", False):
        print(json.dumps({t.name: t.rows() for t in tables}, indent=1, default=str))
    else:
        print("\n\n".join(t.to_text() for t in tables))
    if getattr(args, "csv", None):
        for t in tables:
            print(f"kperf: {t.to_csv(f'{args.csv}/{t.name}.csv')}")


def _add_capacity_args(p) -> None:
    p.add_argument("--capacity", action="append", metavar="SIZE[,SIZE]",
                   help="on-chip capacities to report, e.g. 50MiB,228KiB (default: powers of two)")
    p.add_argument("--gpu", help="also that GPU's L2 and per-SM shared memory (H100, H200)")
    p.add_argument("--json", action="store_true", help="print JSON (compulsory_bytes; per capacity "
                   "min_bytes, intensity, mapping; each variant's whole curve)")
    p.add_argument("--plot", metavar="FILE", help="also draw the curve (needs matplotlib)")


def _add_problem_args(p) -> None:
    p.add_argument("--gemm", metavar="M,N,K", help="the kernel is an M x N x K GEMM")
    p.add_argument("--attention", metavar="B,H,SEQ,D", help="the kernel is an attention forward")
    p.add_argument("--causal", action="store_true", help="with --attention: causal")
    p.add_argument("--einsum", help="the kernel is this einsum, e.g. mk,kn->mn (with --shape)")
    p.add_argument("--shape", help="sizes of the einsum's letters, e.g. m=8192,n=8192,k=8192")
    p.add_argument("--dtype", default="fp16", help="element type of the tensors (default fp16)")
    p.add_argument("--problem-kernel", metavar="REGEX",
                   help="the kernels the problem describes (default all)")


def _add_bounds(sub) -> None:
    b = sub.add_parser("bounds", help="attainable data-movement bounds of a GEMM, attention or einsum",
                       description="The least backing-store traffic of any tiling and loop order per on-chip "
                                   "buffer capacity, the compulsory traffic and the attainable operational "
                                   "intensity (Orojenesis-style; docs/bounds.md).")
    kinds = b.add_subparsers(dest="problem", required=True)
    g = kinds.add_parser("gemm", help="C[m,n] = A[m,k] B[k,n]")
    for d in ("m", "n", "k"):
        g.add_argument(f"--{d}", type=int, required=True)
    g.add_argument("--batch", type=int, default=1, help="independent GEMMs (default 1)")
    g.add_argument("--dtype", default="fp16")
    g.add_argument("--out-dtype", default=None, help="the output's type (default: --dtype)")
    _add_capacity_args(g)
    g.set_defaults(func=cmd_bounds_gemm)
    a = kinds.add_parser("attention", help="softmax(Q K^T) V forward, fused and unfused")
    for d in ("batch", "heads", "seq", "d-head"):
        a.add_argument(f"--{d}", type=int, required=True)
    a.add_argument("--causal", action="store_true")
    a.add_argument("--dtype", default="fp16")
    _add_capacity_args(a)
    a.set_defaults(func=cmd_bounds_attention)
    e = kinds.add_parser("einsum", help="any einsum, e.g. a grouped GEMM gmk,gkn->gmn")
    e.add_argument("--einsum", required=True)
    e.add_argument("--shape", required=True)
    e.add_argument("--dtype", default="fp16")
    e.add_argument("--out-dtype", default=None)
    _add_capacity_args(e)
    e.set_defaults(func=cmd_bounds_einsum)


def add_bounds_commands(sub) -> None:
    """Add ``bounds``, ``ncu`` and ``traffic`` to kperf's subcommand parser ``sub``."""
    _add_bounds(sub)
    n = sub.add_parser("ncu", help="profile a script with kperf under Nsight Compute (memory traffic)",
                       description="Run `kperf run` under ncu with memory-workload metrics (DRAM, L2, shared "
                                   "memory); match every measured launch to its profiled launch; write "
                                   "OUT/profile.kperf with the measured traffic in it.")
    n.add_argument("out", metavar="OUT")
    n.add_argument("--kernels", help="only kernels whose name matches this regex (kperf and ncu)")
    n.add_argument("--auto", help="kperf run --auto selectors (e.g. mma,tma)")
    n.add_argument("--ncu", help="ncu executable (default: PATH, /usr/local/cuda*/bin, $KPERF_NCU)")
    n.add_argument("--metrics", help="comma-separated ncu metrics instead of kperf's memory set")
    _add_problem_args(n)
    n.add_argument("command", nargs=argparse.REMAINDER, metavar="-- script.py [args...]",
                   help="the script and its arguments, after --")
    n.set_defaults(func=cmd_ncu, ncu_parser=n)
    t = sub.add_parser("traffic", help="measured traffic of a profile and its bounds",
                       description="Print the traffic `kperf ncu` measured for a saved profile and, for a "
                                   "described problem, measured bytes against the bound at the L2 and shared-"
                                   "memory capacities.")
    t.add_argument("profile", metavar="PROFILE",
                   help="a profile.kperf, the folder holding it, or an earlier kperf's .traffic.json")
    _add_problem_args(t)
    t.add_argument("--l2", help="L2 bytes (default: the measured GPU's)")
    t.add_argument("--smem", help="shared memory per SM (default: the measured GPU's)")
    t.add_argument("--csv", metavar="DIR", help="also write the tables as CSV")
    t.add_argument("--json", action="store_true")
    t.set_defaults(func=cmd_traffic)


def main(argv=None) -> int:
    """``python -m kperf.cli_bounds bounds|ncu|traffic ...``: these commands alone (``kperf`` has them too
    once kperf/cli.py adds them); a failure is one ``kperf: error:`` line and its fix."""
    p = argparse.ArgumentParser(prog="kperf", description="Data-movement bounds and measured traffic.")
    add_bounds_commands(p.add_subparsers(dest="cmd", required=True))
    args = p.parse_args(argv)
    try:
        return args.func(args)
    except KperfError as e:
        print(f"kperf: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
