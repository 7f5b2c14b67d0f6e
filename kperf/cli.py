"""The ``kperf`` command: its parser, ``--version`` and its one error boundary.

    kperf run [--out DIR] [--kernels REGEX] [--capacity N] [--clock C] script.py [args...]
        run a Python script with every instrumented launch profiled; writes DIR/profile.kperf and a trace
    kperf compile FILE.py:KERNEL [--auto mma,tma] [--emit ptx --out FILE] [--signature JSON ...]
        compile a kernel through kperf without a GPU (arguments from the file's SIGNATURE, CONSTEXPRS,
        COMPILE_OPTIONS); print records, SASS cost, and TTGIR/PTX/SASS on request
    kperf dump --out DIR script.py [args...]
        run a script; write the final TTGIR of every kernel it compiles into DIR (override layout)
    kperf insert DIR --auto mma,tma [--kernels REGEX] [--out DIR2]
        insert records around ops of those TTGIR files (in place, or into DIR2)
    kperf run --override DIR script.py / kperf run --auto mma,tma script.py
        profile with the override files' records / with records inserted automatically
    kperf opt -p PIPELINE FILE
        run kperf's text passes on a file: kperf-materialize (TTGIR), kperf-lower-ptx{num-warps=8} (PTX)
    kperf report PROFILE [--csv DIR]      statistics tables of a saved profile (a .kperf file or its folder)
    kperf view TRACE_OR_PROFILE           offline Perfetto UI on 127.0.0.1
    kperf diff A B                        compare two saved profiles scope by scope
    kperf export PROFILE --out FILE.json|FILE.pftrace|DIR [--format chrome|perfetto|csv] [--select SPEC]
    kperf plot PROFILE --out DIR          timeline and histogram images
    kperf merge PROFILES... [--out merged.json] [--csv DIR]   put a multi-GPU job's ranks on one timeline
    kperf bounds gemm|attention|einsum ...  least off-chip traffic any schedule needs, per on-chip capacity
    kperf ncu OUT -- script.py            kperf run under Nsight Compute: measured traffic per launch
    kperf corpus record OUT -- script.py  record every Triton kernel a program compiles (source, TTIR, ...)
    kperf corpus check CORPUS --auto loops   compile a recorded corpus through kperf (no GPU needed)
    kperf --version                       kperf's and Triton's versions

The commands live in kperf/cli_compile.py, kperf/cli_report.py, kperf/cli_bounds.py,
kperf/cli_merge.py and kperf/cli_corpus.py; what they share in
kperf/cli_common.py.  Every failure is one ``kperf: error: <cause>`` line and a ``fix:`` line on stderr,
in the command's words (flags, not Python keywords: :func:`kperf.cli_common.in_flag_words`), exit status
2 for bad input and 1 for a failed script or an internal error; ``kperf --debug ...`` adds the traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import traceback

from kperf.cli_bounds import add_bounds_commands
from kperf.cli_common import HelpFormatter, ScriptError, in_flag_words
from kperf.cli_compile import add_compile_commands, cmd_compile, cmd_dump, cmd_insert, cmd_opt, cmd_run
from kperf.cli_corpus import add_corpus_commands, cmd_corpus_check, cmd_corpus_record
from kperf.cli_merge import add_merge_commands, cmd_merge
from kperf.cli_report import add_report_commands, cmd_diff, cmd_export, cmd_plot, cmd_report, cmd_view
from kperf.dialect.errors import KperfError

# the commands are re-exported: main() calls each through this module's namespace, so a test or a
# wrapper can replace one (kperf.cli.cmd_report = ...)
__all__ = ["cmd_compile", "cmd_corpus_check", "cmd_corpus_record", "cmd_diff", "cmd_dump", "cmd_export",
           "cmd_insert", "cmd_merge", "cmd_opt", "cmd_plot", "cmd_report", "cmd_run", "cmd_view", "main",
           "version_text"]


def version_text() -> str:
    """``kperf 0.1.0 (Triton 3.6.0); supports triton<3.10,>=3.6``: from the installed packages' metadata,
    without importing them."""
    from importlib.metadata import PackageNotFoundError, version

    def of(package: str) -> str | None:
        try:
            return version(package)
        except PackageNotFoundError:
            return None

    triton = of("triton")
    text = f"kperf {of('kperf') or 'unknown (not installed)'} (Triton {triton or 'not installed'})"
    try:  # the Triton releases this kperf supports, as its package declares them (no Triton import)
        from importlib.metadata import requires
        needs = next((r for r in requires("kperf") or [] if r.replace(" ", "").startswith("triton")), None)
    except PackageNotFoundError:
        needs = None
    return f"{text}; supports {needs}" if needs else text


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
    p = argparse.ArgumentParser(prog="kperf", description="Intra-kernel profiler for Triton kernels. "
                                "No GPU? Try: kperf report examples/profiles/gemm1024.kperf (README).",
                                formatter_class=HelpFormatter)
    p.add_argument("--version", action="version", version=version_text(),
                   help="print kperf's and Triton's versions and exit")
    p.add_argument("--debug", action="store_true", help="on an error, also print the Python traceback")
    sub = p.add_subparsers(dest="cmd", required=True)
    add_compile_commands(sub)
    add_report_commands(sub)
    add_bounds_commands(sub)
    add_merge_commands(sub)
    add_corpus_commands(sub)
    for command in sub.choices.values():
        command.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                             help="on an error, also print the Python traceback")
        flags = frozenset(s for action in command._actions for s in action.option_strings)
        command.set_defaults(flags=flags)
    return p


def main(argv=None) -> int:
    """The ``kperf`` command; every failure is one ``kperf: error: ...`` line and its fix.

    Exit status: 0 on success, 2 for bad input (usage, files, options: a ``KperfError``), 1 when the
    profiled script failed or on an internal error.  ``--debug`` also prints the traceback.
    """
    args = _parser().parse_args(argv)
    command = globals().get(args.func.__name__, args.func)  # looked up here: replaceable (__all__)
    try:
        return command(args)
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
        if status == 2:
            err = in_flag_words(err, args.flags)
        if args.debug:
            traceback.print_exception(exc)
        print(f"kperf: error: {err}", file=sys.stderr)
        return status


if __name__ == "__main__":
    sys.exit(main())
