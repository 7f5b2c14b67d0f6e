"""The ``kperf`` command.

    kperf run [--out DIR] [--kernels REGEX] [--capacity N] [--clock C] script.py [args...]
        run a Python script with every instrumented launch profiled; writes DIR/chrome_trace.json
    kperf compile FILE.py:KERNEL --signature JSON [--constexprs JSON] [--target cuda:90]
        compile a kernel through kperf without a GPU; print records, SASS cost, PTX on request
    kperf opt -p PASS FILE
        run one kperf pass on a file: kperf-materialize (TTGIR) or kperf-lower-ptx (PTX)
"""

from __future__ import annotations

import argparse
import json
import runpy
import sys

from kperf.dialect.errors import KperfError


def _config(args):
    from kperf.config import ProfileConfig
    return ProfileConfig(capacity=args.capacity, strategy=args.strategy, clock=args.clock)


def _add_config_args(p):
    p.add_argument("--capacity", type=int, default=1024, help="record slots per warp (default 1024)")
    p.add_argument("--strategy", default="keep-first", choices=["keep-first", "wrap"])
    p.add_argument("--clock", default="clock", choices=["clock", "clock64", "globaltimer"])


def cmd_run(args) -> int:
    import kperf
    sys.argv = [args.script, *args.args]
    with kperf.session(args.out, kernels=args.kernels, config=_config(args)) as s:
        runpy.run_path(args.script, run_name="__main__")
    if not s.launches:
        print("kperf: no launch of a kernel with kperf scopes was seen", file=sys.stderr)
        return 1
    print(s.table())
    print(f"kperf: trace written to {args.out}/chrome_trace.json")
    return 0


def cmd_compile(args) -> int:
    import kperf
    path, _, name = args.kernel.rpartition(":")
    if not path or not name:
        raise KperfError(f"expected FILE.py:KERNEL, got {args.kernel!r}")
    fn = runpy.run_path(path)[name]
    report = kperf.compile(fn, signature=json.loads(args.signature),
                           constexprs=json.loads(args.constexprs or "{}"), target=args.target,
                           config=_config(args), num_warps=args.num_warps, num_stages=args.num_stages)
    print(report.summary())
    for s in report.scopes.scopes:
        print(f"  scope {s.id}: {s.name!r} parent={s.parent} at {s.loc}")
    if args.emit:
        print(getattr(report, args.emit))
    return 0


def cmd_opt(args) -> int:
    from kperf.passes import get_pass
    text = open(args.file).read() if args.file != "-" else sys.stdin.read()
    sys.stdout.write(get_pass(args.pass_pipeline).run(text, args.file))
    return 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="kperf", description="Intra-kernel profiler for Triton kernels.")
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run", help="run a script and profile its instrumented kernels")
    r.add_argument("--out", default="kperf_out", help="output folder (default kperf_out)")
    r.add_argument("--kernels", default=None, help="profile only kernels whose name matches this regex")
    _add_config_args(r)
    r.add_argument("script")
    r.add_argument("args", nargs=argparse.REMAINDER)
    r.set_defaults(func=cmd_run)
    c = sub.add_parser("compile", help="compile a kernel through kperf (no GPU needed)")
    c.add_argument("kernel", help="FILE.py:KERNEL")
    c.add_argument("--signature", required=True, help='JSON, e.g. \'{"x": "*fp32", "n": "i32"}\'')
    c.add_argument("--constexprs", default=None, help="JSON of constexpr values")
    c.add_argument("--target", default="cuda:90")
    c.add_argument("--num-warps", type=int, default=4)
    c.add_argument("--num-stages", type=int, default=3)
    c.add_argument("--emit", choices=["ttgir", "ptx", "sass"], default=None)
    _add_config_args(c)
    c.set_defaults(func=cmd_compile)
    o = sub.add_parser("opt", help="run a kperf pass on a TTGIR or PTX file")
    o.add_argument("-p", dest="pass_pipeline", required=True,
                   help="kperf-materialize | kperf-lower-ptx{num-warps=8,capacity=1024,...}")
    o.add_argument("file")
    o.set_defaults(func=cmd_opt)
    args = p.parse_args(argv)
    try:
        return args.func(args)
    except KperfError as e:
        print(f"kperf: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
