"""The ``kperf`` commands that compile kernels through kperf: run, dump, insert, compile, opt.

``kperf compile FILE.py:KERNEL`` reads the compile arguments a file declares for its kernel, so a
newcomer does not retype them as JSON: module-level ``SIGNATURE`` (Triton types by argument name),
``CONSTEXPRS`` (constexpr values) and ``COMPILE_OPTIONS`` (``num_warps``, ``num_stages``, ...), as
``examples/*.py`` declare them.  ``--signature`` / ``--constexprs`` add to or override those key by key,
``--num-warps`` / ``--num-stages`` override the options.  A constexpr without a value is one error that
names the missing arguments and the flag that gives them (before Triton sees the kernel).

``--emit`` output is the command's data: it goes alone to ``--out FILE`` (the summary stays on stdout),
or to stdout with the summary moved to stderr, so ``kperf compile ... --emit ptx > k.ptx`` and
``--out k.ptx`` both give a clean PTX file.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import runpy
import signal
import sys
import threading
import traceback

from kperf.cli_common import (
    HelpFormatter,
    ScriptError,
    add_config_args,
    config,
    flag_words,
    json_object,
    regex,
)
from kperf.dialect.errors import KperfError

#: what a kernel's file may declare for `kperf compile` (module-level names)
DECLARED = {"signature": "SIGNATURE", "constexprs": "CONSTEXPRS", "options": "COMPILE_OPTIONS"}
_SIG_EXAMPLE = '{"x": "*fp32", "n": "i32", "BLOCK": "constexpr"}'


def _run_script(script: str, argv: list[str]) -> None:
    """Run a user's script as ``__main__``; ``sys.exit(0)`` in it ends it normally."""
    if not os.path.isfile(script):
        raise KperfError(f"no script at {script}", fix="give the path of a Python file")
    sys.argv = [script, *argv]
    _run_main(lambda: runpy.run_path(script, run_name="__main__"), script, "script")


def _run_module(module: str, argv: list[str]) -> None:
    """Run ``module`` as ``python -m module`` would (the working folder first on ``sys.path``)."""
    import importlib.util
    sys.argv = [module, *argv]
    sys.path.insert(0, os.getcwd())
    try:
        found = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        found = None
    if found is None:
        raise KperfError(f"-m {module}: no module named {module!r}",
                         fix="give a module importable from the working folder or the installed packages, "
                             "as for python3 -m MODULE")
    _run_main(lambda: runpy.run_module(module, run_name="__main__", alter_sys=True), module, "module")


def _run_main(run, name: str, kind: str) -> None:
    """Run a program's ``__main__``: ``sys.exit(0)`` ends it normally, a nonzero exit goes on up; its own
    error is printed with its traceback (from the program's frames on) and becomes a ``ScriptError``."""
    try:
        run()
    except SystemExit as e:
        if e.code not in (None, 0):
            raise
    except KperfError:
        raise
    except Exception as e:
        from kperf.compile_api import kperf_cause
        if kperf_cause(e) is not None:
            raise
        tb = e.__traceback__  # a script's own error: its traceback from the script's frames on
        while kind == "script" and tb is not None and tb.tb_next is not None and \
                os.path.realpath(tb.tb_frame.f_code.co_filename) != os.path.realpath(name):
            tb = tb.tb_next
        traceback.print_exception(type(e), e, tb)
        raise ScriptError(f"{name} raised {type(e).__name__}: {e}",
                          fix=f"the traceback above shows where in the {kind}") from e


def run_program(script: str | None, module: str | None, argv: list[str]) -> None:
    """Run a script or a module (``-m``) as ``python3`` would: its folder (or the working folder) first
    on ``sys.path``, ``sys.argv`` its own; both are put back afterwards."""
    saved = list(sys.path), list(sys.argv)
    try:
        if module:
            _run_module(module, argv)
        else:
            sys.path.insert(0, os.path.dirname(os.path.abspath(script)))
            _run_script(script, argv)
    finally:
        sys.path[:], sys.argv[:] = saved


class Terminated(KeyboardInterrupt):
    """SIGTERM (a job scheduler's or ``timeout``'s default signal) in ``kperf run``'s program: raised like
    Ctrl-C, so the program's own interrupt handling runs (pytest still writes its report) and the
    launches so far are written."""


def _terminated(signum, frame):
    raise Terminated()


def _run_program(args) -> int:
    """Run ``kperf run``'s program (``-m MODULE [args]`` or ``script.py [args]``); its exit status."""
    main_thread = threading.current_thread() is threading.main_thread()
    saved = signal.signal(signal.SIGTERM, _terminated) if main_thread else None
    try:
        if args.module:
            run_program(None, args.module[0], args.module[1:])
        else:
            run_program(args.script, None, args.args)
    except SystemExit as e:  # the program's own sys.exit(N): the profile is still written, then N
        return e.code if isinstance(e.code, int) else 1
    except KeyboardInterrupt as e:  # Ctrl-C, a time limit's SIGINT, SIGTERM: the launches so far are written
        how = "terminated (SIGTERM)" if isinstance(e, Terminated) else "interrupted"
        print(f"kperf: the program was {how}; writing what it launched so far", file=sys.stderr)
        return 143 if isinstance(e, Terminated) else 130
    finally:
        if main_thread:
            signal.signal(signal.SIGTERM, saved)
    return 0


def _write_coverage(out: str, s) -> str:
    """``OUT/coverage.txt``: every kernel launched in the session, launches profiled, why any were not;
    the table ("" when no kernel was launched)."""
    cov = s.coverage.table()
    if cov:
        os.makedirs(out, exist_ok=True)
        with open(os.path.join(out, "coverage.txt"), "w") as f:
            f.write(cov + "\n")
    return cov


def _load_kernel(spec: str) -> tuple[str, str, object, dict]:
    """``(path, name, kernel, the file's module namespace)`` of ``FILE.py:KERNEL``."""
    path, _, name = spec.rpartition(":")
    if not path or not name:
        raise KperfError(f"expected FILE.py:KERNEL, got {spec!r}",
                         fix="e.g. kperf compile examples/vector_add.py:add_kernel")
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
    return path, name, names[name], names


def _declared(names: dict, path: str, what: str) -> dict:
    """The dict the kernel's file declares as ``DECLARED[what]`` ({} when it declares none)."""
    value = names.get(DECLARED[what], {})
    if not isinstance(value, dict):
        raise KperfError(f"{path}: {DECLARED[what]} is a {type(value).__name__}, not a dict",
                         fix=f"declare {DECLARED[what]} = {{...}} at module level, or leave it out")
    return dict(value)


def compile_arguments(args, path: str, fn, names: dict) -> tuple[dict, dict, dict]:
    """``(signature, constexprs, options)`` of ``kperf compile``: the file's declarations, then the
    flags; every constexpr argument of the kernel must have a value."""
    from kperf.compile_api import unwrap_jit
    signature = {**_declared(names, path, "signature"),
                 **json_object(args.signature, "--signature", _SIG_EXAMPLE)}
    constexprs = {**_declared(names, path, "constexprs"),
                  **json_object(args.constexprs, "--constexprs", '{"BLOCK": 128}')}
    options = _declared(names, path, "options")
    for key, value in (("num_warps", args.num_warps), ("num_stages", args.num_stages)):
        if value is not None:
            options[key] = value
    if not signature:
        raise KperfError(f"no signature for {args.kernel}: the file declares no SIGNATURE",
                         fix=f"give --signature '{_SIG_EXAMPLE}' (Triton types by argument name), or "
                             f"declare SIGNATURE = {{...}} in {path} as examples/vector_add.py does")
    jit = unwrap_jit(fn)
    for name in constexprs:  # a constexpr given a value needs no type
        signature.setdefault(name, "constexpr")
    typed = {p.name for p in getattr(jit, "params", []) if getattr(p, "is_constexpr", False)}
    unset = [n for n in jit.arg_names if n not in constexprs and
             (signature.get(n) == "constexpr" or (n in typed and n not in signature))]
    if unset:
        example = ", ".join(f'"{n}": ...' for n in unset)
        raise KperfError(f"no value for constexpr argument {', '.join(map(repr, unset))} of {jit.__name__}",
                         fix=f"give {'them' if len(unset) > 1 else 'it'} with --constexprs '{{{example}}}', "
                             f"or declare CONSTEXPRS = {{...}} in {path}")
    return signature, constexprs, options


def _check_options(options: dict) -> None:
    n = options.get("num_warps", 4)
    if type(n) is not int or n < 1 or n & (n - 1) or n > 32:
        raise KperfError(f"--num-warps: must be a power of two from 1 to 32, got {n}", fix="use 4 or 8")
    stages = options.get("num_stages", 3)
    if type(stages) is not int or stages < 1:
        raise KperfError(f"--num-stages: must be at least 1, got {stages}", fix="use 2 to 4")


def cmd_compile(args) -> int:
    import kperf
    from kperf.tracing.atomic import write_text
    if args.out and not args.emit:
        raise KperfError("--out FILE takes what --emit asks for, and no --emit is given",
                         fix="add --emit ttgir|ptx|sass|sass_plain|schedule, or leave out --out")
    path, _, fn, names = _load_kernel(args.kernel)
    signature, constexprs, options = compile_arguments(args, path, fn, names)
    _check_options(options)
    cfg = config(args, auto=args.auto) if args.auto else config(args)
    report = kperf.compile(fn, signature=signature, constexprs=constexprs, target=args.target, config=cfg,
                           **options)
    lines = [report.summary()] + [f"  scope {s.id}: {s.name!r} parent={s.parent} at {s.loc}"
                                  for s in report.scopes.scopes]
    text = None
    if args.emit == "schedule":
        text = report.schedule_drift.summary()
    elif args.emit:
        text = getattr(report, args.emit)
    if text is not None and not text.endswith("\n"):
        text += "\n"
    if args.out:
        write_text(args.out, text)
        lines.append(f"kperf: {args.emit} written to {args.out}")
    elif text is not None:  # stdout carries the emitted text only; the summary goes to stderr
        print("\n".join(lines), file=sys.stderr)
        sys.stdout.write(text)
        return 0
    print("\n".join(lines))
    return 0


# --------------------------------------------------------------------------- run, dump, insert, opt


def _check_out_folder(out: str) -> None:
    """``kperf run --out`` names a folder; a trace or profile file name there is a mistake."""
    from kperf.tracing.labels import named_format
    if named_format(out) or out.endswith(".kperf"):
        raise KperfError(f"--out {out} names a file, but kperf run writes a folder (profile.kperf, "
                         "chrome_trace.json, summary.txt)", fix=f"give a folder, e.g. --out "
                         f"{pathlib.Path(out).with_suffix('').with_suffix('')}")


def cmd_run(args) -> int:
    import kperf
    from kperf import override
    folder, auto = getattr(args, "override", None), getattr(args, "auto", None)
    _check_out_folder(args.out)
    cfg = config(args)
    if auto:
        config(args, auto=auto)  # a bad selector names --auto before the script starts
    regex(args.kernels, "--kernels")
    if bool(args.module) == bool(args.script):
        raise KperfError("kperf run needs a script or -m MODULE (one of them)",
                         fix="kperf run script.py [args], or kperf run [options] -m pytest [pytest args]")
    if args.module:
        args.args = []
    with override.applied(folder, cfg, auto=auto) as cfg:
        with kperf.session(args.out, kernels=args.kernels, config=cfg, every=args.every,
                           max_launches=args.max_launches, memory_budget=args.memory_budget) as s:
            code = _run_program(args)
    cov = _write_coverage(args.out, s)
    if not s.launches:
        print("kperf: no launch of a kernel with kperf scopes was seen", file=sys.stderr)
        if cov:
            print(f"kperf: kernels launched:\n{cov}", file=sys.stderr)
        return code  # the program's status, as with launches: a test suite whose tests all skip still passes
    print(flag_words(s.table(), args.flags))  # "raise capacity to 2048 (--capacity)"
    print(f"kperf: trace written to {args.out}/chrome_trace.json, profile to {args.out}/profile.kperf")
    print(f"kperf: next: kperf report {args.out} | kperf view {args.out} | "
          f"kperf plot {args.out} --out {args.out}/plots")
    if code:
        print(f"kperf: the program exited with status {code}", file=sys.stderr)
    return code


def cmd_dump(args) -> int:
    from kperf import override
    with override.dumped(args.out) as written:
        run_program(args.script, None, args.args)
    if not written:
        print("kperf: no kernel was compiled; nothing dumped", file=sys.stderr)
        return 1
    for path in sorted(set(written)):
        print(f"kperf: wrote {path}")
    return 0


def cmd_insert(args) -> int:
    from kperf import override
    regex(args.kernels, "--kernels")
    for path, n in override.insert(args.dir, args.auto, kernels=args.kernels, out=args.out):
        print(f"kperf: {n} records in {path}")
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


# --------------------------------------------------------------------------- the parsers


_AUTO_HELP = "insert records around these ops: presets mma, tma, waits, loops, or TTGIR op names"


def _add_compile(sub) -> None:
    c = sub.add_parser(
        "compile", help="compile a kernel through kperf (no GPU needed)", formatter_class=HelpFormatter,
        description="Compile FILE.py:KERNEL instrumented and plain for a GPU target, without a GPU; print "
                    "the records, the scopes and their SASS cost. The compile arguments come from the "
                    "file's module-level SIGNATURE, CONSTEXPRS and COMPILE_OPTIONS (as examples/*.py "
                    "declare them); the flags below add to or override them.")
    c.add_argument("kernel", help="FILE.py:KERNEL, e.g. examples/vector_add.py:add_kernel")
    c.add_argument("--signature", default=None,
                   help=f"JSON of Triton types by argument name, e.g. '{_SIG_EXAMPLE}' (default: the file's "
                        "SIGNATURE)")
    c.add_argument("--constexprs", default=None,
                   help="JSON of constexpr values, e.g. '{\"BLOCK\": 1024}' (default: the file's CONSTEXPRS)")
    c.add_argument("--target", default="cuda:90", help="the GPU: cuda:90 (Hopper), cuda:80 (Ampere), ...")
    c.add_argument("--num-warps", type=int, default=None,
                   help="warps per CTA (default: the file's COMPILE_OPTIONS, else 4)")
    c.add_argument("--num-stages", type=int, default=None,
                   help="software pipelining stages (default: the file's COMPILE_OPTIONS, else 3)")
    c.add_argument("--auto", default=None, help=_AUTO_HELP + " (default: the kernel's own scopes only)")
    c.add_argument("--emit", choices=["ttgir", "ptx", "sass", "sass_plain", "schedule"], default=None,
                   help="also give the instrumented TTGIR / PTX / SASS, the plain kernel's SASS, or what "
                        "ptxas placed differently in the two (on stdout, the summary then on stderr)")
    c.add_argument("--out", metavar="FILE", default=None,
                   help="write the --emit output to FILE (nothing else in it; the summary on stdout)")
    add_config_args(c)
    c.set_defaults(func=cmd_compile)


def add_compile_commands(sub) -> None:
    """run, dump, insert, compile, opt: the commands that compile kernels through kperf."""
    r = sub.add_parser("run", help="run a script and profile its instrumented kernels",
                       formatter_class=HelpFormatter)
    r.add_argument("--out", default="kperf_out", metavar="DIR",
                   help="output folder: profile.kperf, chrome_trace.json, summary.txt")
    r.add_argument("--kernels", default=None, help="profile only kernels whose name matches this regex")
    add_config_args(r)
    r.add_argument("--override", default=None, metavar="DIR",
                   help="compile kernels from the TTGIR files in DIR (kperf dump / kperf insert)")
    r.add_argument("--auto", default=None, help=_AUTO_HELP)
    r.add_argument("--every", type=int, default=1, metavar="N",
                   help="profile one launch in N of each kernel (the others run the plain build)")
    r.add_argument("--max-launches", type=int, default=None, metavar="N",
                   help="profile at most N launches of each kernel")
    r.add_argument("--memory-budget", default="1GiB", metavar="BYTES",
                   help="device memory profile buffers may hold (e.g. 512MiB) before they are spilled to the "
                        "host together")
    r.add_argument("-m", dest="module", nargs=argparse.REMAINDER, default=None, metavar="MODULE ...",
                   help="run a module as python3 -m would (everything after it is its arguments)")
    r.add_argument("script", nargs="?")
    r.add_argument("args", nargs=argparse.REMAINDER)
    r.set_defaults(func=cmd_run)
    d = sub.add_parser("dump", formatter_class=HelpFormatter,
                       help="run a script and write the final TTGIR of its kernels to an override folder")
    d.add_argument("--out", required=True, metavar="DIR")
    d.add_argument("script")
    d.add_argument("args", nargs=argparse.REMAINDER)
    d.set_defaults(func=cmd_dump)
    ins = sub.add_parser("insert", help="insert records into the TTGIR files of an override folder",
                         formatter_class=HelpFormatter)
    ins.add_argument("dir")
    ins.add_argument("--auto", required=True, help=_AUTO_HELP)
    ins.add_argument("--kernels", default=None, help="only files of kernels whose name matches this regex")
    ins.add_argument("--out", default=None, metavar="DIR", help="write to DIR instead of in place")
    ins.set_defaults(func=cmd_insert)
    _add_compile(sub)
    o = sub.add_parser("opt", help="run a kperf pass on a TTGIR or PTX file", formatter_class=HelpFormatter)
    o.add_argument("-p", dest="pass_pipeline", required=True,
                   help="comma-separated passes: kperf-materialize | kperf-lower-ptx{num-warps=8,...}")
    o.add_argument("file")
    o.set_defaults(func=cmd_opt)
