"""bench/pytest_failures_now.py: a failing test's report, with what the test printed, is in the file the
moment it fails (a suite killed by its time limit never prints its failures section)."""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[2]


def test_each_failure_is_written_as_it_happens(tmp_path):
    (tmp_path / "test_some.py").write_text(
        "def test_ok():\n    pass\n\n"
        "def test_off():\n    print('max_abs=0.31')\n    assert 1 == 2\n")
    out = tmp_path / "failures.txt"
    path = f"{ROOT}:{os.environ.get('PYTHONPATH', '')}"
    env = {**os.environ, "KPERF_FAILURES_TO": str(out), "PYTHONPATH": path}
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p",
                        "bench.pytest_failures_now", str(tmp_path / "test_some.py")],
                       cwd=tmp_path, env=env, capture_output=True, text=True)
    assert r.returncode == 1, r.stdout + r.stderr
    text = out.read_text()
    assert "test_some.py::test_off (call)" in text and "assert 1 == 2" in text and "max_abs=0.31" in text
    assert "test_ok" not in text
