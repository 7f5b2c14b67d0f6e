"""``python -m kperf.tritonbench_ext ...``: see ``kperf.tritonbench_ext`` and ``--help``."""

from __future__ import annotations

import sys

from kperf.dialect.errors import KperfError


def main(argv=None) -> int:
    from . import args as cli
    from . import runner, tritonbench_adapter
    try:
        args = cli.parse_args(argv)
        op = runner.OPERATORS[args.op]
        op.select(args.only, args.skip)  # unknown names fail here, before any GPU work
        plan = cli.sweep_plan(args)
        print(plan.describe(), flush=True)
        if tritonbench_adapter.available() and not args.standalone:
            if op.tritonbench:
                tritonbench_adapter.run(args, plan.shapes)
                return 0
            print(f"tritonbench has no {args.op} operator: this package's own loop runs it", flush=True)
        runner.run(args)
    except KperfError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
