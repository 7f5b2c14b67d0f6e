"""``kperf corpus``: record the Triton kernels a program compiles, and compile a corpus through kperf.

    kperf corpus record OUT [--label NAME] -- script.py [args...]
    kperf corpus record OUT [--label NAME] -m module [args...]
    kperf corpus check CORPUS [--auto loops] [--kernels REGEX] [--target cuda:90]

``record`` runs the program as ``kperf run`` does (``__main__``, its arguments in ``sys.argv``, the
script's folder or the working folder first on ``sys.path``) with :mod:`kperf.corpus`'s recorder
installed; OUT is a folder or a ``.tar.xz`` file.  ``check`` compiles every kernel of a corpus from its
TTIR through kperf and says, kernel by kernel, whether it has records, had nothing to select, or could
not be instrumented ("cannot place"); any other failure makes the exit status 1.
"""

from __future__ import annotations

import argparse
import os
import re
import sys

from kperf.cli_common import HelpFormatter, regex
from kperf.dialect.errors import KperfError


def _program(args) -> tuple[str | None, str | None, list[str]]:
    """``(script, module, argv)`` of ``record``'s command line (``--`` before the script is optional)."""
    rest = list(args.command)
    while rest and rest[0] in ("--label", "-m"):  # options after OUT (argparse's remainder took them)
        if len(rest) < 2:
            example = "inductor" if rest[0] == "--label" else "my_package.train"
            raise KperfError(f"{rest[0]} needs a value", fix=f"e.g. {rest[0]} {example}")
        setattr(args, "label" if rest[0] == "--label" else "module", rest[1])
        rest = rest[2:]
    if rest and rest[0] == "--":
        rest = rest[1:]
    if args.module:
        return None, args.module, rest
    if not rest:
        raise KperfError("no program to record", fix="give it after --: kperf corpus record OUT -- script.py "
                         "[args], or kperf corpus record OUT -m module [args]")
    return rest[0], None, rest[1:]


def _run(script: str | None, module: str | None, argv: list[str]) -> None:
    from kperf.cli_compile import run_program
    run_program(script, module, argv)


def cmd_corpus_record(args) -> int:
    from kperf import corpus
    script, module, argv = _program(args)
    corpus.check_out(args.out)
    if script is not None and not os.path.isfile(script):
        raise KperfError(f"no script at {script}", fix="give the path of a Python file after --")
    label = args.label or (module or os.path.splitext(os.path.basename(script))[0])
    recorder = corpus.Recorder(label)
    failure = None
    with corpus.recording_environment(), recorder:
        try:
            _run(script, module, argv)
        except BaseException as e:  # a failed or interrupted program: keep what it compiled until then
            failure = e
    if recorder.kernels:
        _report(args.out, recorder, corpus.save_recorded(args.out, recorder))
    if failure is not None:
        raise failure
    if not recorder.kernels:
        seen = f" ({recorder.compiles} compiles: {', '.join(recorder.skipped)})" if recorder.compiles else ""
        print(f"kperf: no Triton kernel with a TTIR was compiled in this process{seen}; nothing recorded",
              file=sys.stderr)
        return 1
    return 0


def _report(out: str, recorder, added) -> None:
    files = recorder.files()
    print(f"kperf: recorded {len(recorder.kernels)} kernels ({len(added)} new in {out}) from "
          f"{len(files)} files; {recorder.compiles} compiles seen")
    for name, n in sorted(files.items(), key=lambda item: (-item[1], item[0])):
        print(f"  {n:4d}  {name}")
    for reason, n in sorted(recorder.skipped.items()):
        print(f"kperf: {n} compiles not recorded: {reason}")
    for err in recorder.errors[:5]:
        print(f"kperf: a compile could not be recorded: {err}", file=sys.stderr)


def cmd_corpus_check(args) -> int:
    from kperf import corpus
    from kperf.dialect.options import ProfileConfig
    ProfileConfig(auto=args.auto)  # a bad selector is named before any compile
    pattern = re.compile(regex(args.kernels, "--kernels") or "")
    kernels = [k for k in corpus.load(args.corpus).kernels if pattern.search(k.id)]
    if not kernels:
        raise KperfError(f"no kernel of {args.corpus} matches --kernels {args.kernels!r}",
                         fix="leave out --kernels, or match kernel ids (kernel name and TTIR hash)")
    counts, failed = {}, []
    for k in kernels:
        try:
            o = corpus.check(k, args.auto, args.target)
        except KperfError as e:
            failed.append(k.id)
            print(f"FAILED {k.id}: {e}")
            continue
        counts[o.status] = counts.get(o.status, 0) + 1
        detail = f"{o.records} records" if o.status == "records" else (o.message or o.status)
        print(f"{o.status:16s} {k.id}: {detail}")
    summary = ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))
    print(f"kperf: {len(kernels) - len(failed)} of {len(kernels)} kernels compiled with --auto {args.auto} "
          f"({summary or 'none'}){f'; {len(failed)} failed' if failed else ''}")
    return 1 if failed else 0


def add_corpus_commands(sub) -> None:
    c = sub.add_parser("corpus", formatter_class=HelpFormatter,
                       help="record the Triton kernels a program compiles; compile them through kperf")
    csub = c.add_subparsers(dest="corpus_cmd", required=True)
    r = csub.add_parser("record", formatter_class=HelpFormatter,
                        help="run a program and record every Triton kernel it compiles",
                        description="Run a script (after --) or a module (-m) and record every Triton "
                                    "kernel compiled in its process (source, signature, constexprs, options, "
                                    "target, TTIR) into OUT, a folder or a .tar.xz file. Inductor is made to "
                                    "compile in this process (TORCHINDUCTOR_COMPILE_THREADS=1, its FX-graph "
                                    "and autograd caches off) unless the environment sets those.")
    r.add_argument("out", metavar="OUT", help="the corpus: a folder or a .tar.xz file (added to if there)")
    r.add_argument("--label", default=None, help="where the kernels come from (default: the script's name)")
    r.add_argument("-m", dest="module", default=None, metavar="MODULE", help="run a module, as python3 -m")
    r.add_argument("command", nargs=argparse.REMAINDER, help="-- script.py [args...] (or the module's args)")
    r.set_defaults(func=cmd_corpus_record)
    k = csub.add_parser("check", formatter_class=HelpFormatter,
                        help="compile every kernel of a corpus through kperf (no GPU needed)")
    k.add_argument("corpus", help="a corpus folder or .tar.xz file")
    k.add_argument("--auto", default="loops", help="automatic-insertion selectors: loops, mma,tma, ...")
    k.add_argument("--kernels", default=None, help="only kernels whose id matches this regex")
    k.add_argument("--target", default="cuda:90", help="the GPU to compile for")
    k.set_defaults(func=cmd_corpus_check)
