"""``python -m kperf.tritonbench_ext ...``: see ``kperf.tritonbench_ext`` and ``--help``."""

from __future__ import annotations

import sys

from kperf.dialect.errors import KperfError


def main(argv=None) -> int:
    from . import args as cli
    from . import runner, tritonbench_adapter, variants
    try:
        args = cli.parse_args(argv)
        variants.select(args.only, args.skip)  # unknown names fail here, before any GPU work
        plan = cli.sweep_plan(args)
        print(plan.describe(), flush=True)
        if tritonbench_adapter.available() and not args.standalone:
            tritonbench_adapter.run(args, plan.shapes)
        else:
            runner.run(args)
    except KperfError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
