"""A pytest plugin for long suites cut off by a time limit: each failing test's report is appended, as it
happens, to the file named by ``KPERF_FAILURES_TO`` (pytest prints failures only at the end, which a
killed run never reaches; Liger-Kernel's suite under bench/liger_suite.sh is such a run).

    KPERF_FAILURES_TO=out/failures.txt python3 -m pytest -p bench.pytest_failures_now ...
"""

from __future__ import annotations

import os


def pytest_runtest_logreport(report) -> None:
    path = os.environ.get("KPERF_FAILURES_TO")
    if not path or not report.failed:
        return
    with open(path, "a") as f:
        f.write(f"==== {report.nodeid} ({report.when})\n{report.longreprtext}\n")
        for name, text in report.sections:  # the test's own output (Liger's tests print the differences)
            if "stdout" in name or "stderr" in name:
                f.write(f"---- {name}\n{text}\n")
