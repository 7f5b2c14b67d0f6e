"""``kperf merge``: every rank of a multi-GPU job on one timeline, and who held the others up.

    kperf merge out/ [more files or folders] [--out merged.json] [--csv DIR] [--no-align]

Reads the ranks' saved profiles (``kperf.distributed.session`` writes ``rank<r>.kperf``; files and
folders in any mix, from any machine), aligns their clocks to rank 0's (:mod:`kperf.tracing.clock_sync`),
prints the per-rank and across-rank tables (:mod:`kperf.tracing.rank_stats`) and, with ``--out``, writes
one Chrome JSON trace with a process per rank (:mod:`kperf.tracing.merge_trace`).  Wired into the
``kperf`` command by :func:`add_merge_commands`; failures are ``KperfError`` for ``kperf.cli``'s one
error boundary.
"""

from __future__ import annotations

import pathlib

from kperf.cli_common import HelpFormatter
from kperf.dialect.errors import KperfError

TABLES = ("clocks", "ranks", "kernels", "steps")


def cmd_merge(args) -> int:
    from kperf.tracing.merge import merge_files
    from kperf.tracing.rank_stats import rank_report
    include = args.tables.split(",") if args.tables else list(TABLES)
    bad = [t for t in include if t not in TABLES]
    if bad:
        raise KperfError(f"--tables: unknown table {', '.join(bad)}", fix=f"choose among {','.join(TABLES)}")
    if args.out is not None:
        _check_out(args.out)
    merged = merge_files(args.profiles, align=not args.no_align)
    rep = rank_report(merged)
    print(rep.to_text(args.unit, args.rows or None, include))
    if args.csv:
        files = rep.to_csv(args.csv)
        print(f"\nkperf: {len(files)} CSV tables written to {args.csv}/")
    if args.out is not None:
        from kperf.tracing.merge_trace import write_merged_trace
        s = write_merged_trace(args.out, merged, select=args.select, report=rep)
        size = pathlib.Path(args.out).stat().st_size / 1e6
        print(f"\nkperf: merged trace of {s['ranks']} ranks ({s['intervals']:,} intervals) written to "
              f"{args.out} ({size:.1f} MB); see it with: kperf view {args.out}")
    return 0


def _check_out(out: str) -> None:
    from kperf.tracing.labels import named_format
    if named_format(out) != "chrome":
        raise KperfError(f"--out {out}: the merged trace is Chrome JSON, so its name ends in .json or "
                         ".json.gz",
                         fix=f"e.g. --out {pathlib.Path(out).with_suffix('')}.json")


def add_merge_commands(sub) -> None:
    """``kperf merge``: the parser, wired to :func:`cmd_merge` (returns the exit status)."""
    m = sub.add_parser("merge", help="put the ranks of a multi-GPU job on one timeline, with per-rank "
                                     "statistics", formatter_class=HelpFormatter,
                       description="Merge the profiles of a multi-GPU job's ranks (kperf.distributed.session "
                                   "writes OUT_DIR/rank<r>.kperf on every rank): align every rank's clock to "
                                   "rank 0's through the clock exchange recorded at session start and end, "
                                   "print per-rank and across-rank tables (clock offsets and their error "
                                   "bounds, busy time, imbalance, the straggler rank of every step) and, "
                                   "with --out, write one trace with a process per rank. docs/multi-gpu.md "
                                   "says how alignment works and how far to trust it.")
    m.add_argument("profiles", metavar="PROFILE", nargs="+",
                   help="ranks' .kperf files, or folders holding them (their rank*.kperf files)")
    m.add_argument("--out", metavar="TRACE",
                   help="write the merged Chrome JSON trace here (.json or .json.gz)")
    m.add_argument("--csv", metavar="DIR", help="also write every table as DIR/merge_<table>.csv")
    m.add_argument("--tables", help=f"comma-separated tables to print (default: all): {','.join(TABLES)}")
    m.add_argument("--select", metavar="SPEC", help="which CTAs of each launch the trace holds: all, "
                   "first-wave, ctas:0-15, ... (default: all up to 1M events per launch, else the first "
                   "wave)")
    m.add_argument("--no-align", action="store_true",
                   help="keep each rank's own globaltimer (skip the clock alignment; for comparison)")
    m.add_argument("--unit", default="us", choices=["ns", "us", "ms", "s"], help="time unit")
    m.add_argument("--rows", type=int, default=40, help="rows per table, 0 for all")
    m.set_defaults(func=cmd_merge)
