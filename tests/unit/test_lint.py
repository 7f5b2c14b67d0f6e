"""The repository's own checks run with the tests: ruff's rule sets and the import contracts.

The contracts (``[tool.importlinter]`` in pyproject.toml) are checked by import-linter on the package as
it installs: ``dialect/``, ``passes/``, ``tracing/``, ... are mapped into ``kperf`` by setuptools'
package-dir, so they are laid out as ``kperf/<name>`` in a scratch folder first.
"""

from __future__ import annotations

import os
import pathlib
import shutil
import subprocess
import sys
import tomllib

ROOT = pathlib.Path(__file__).resolve().parents[2]


def test_ruff_finds_nothing():
    run = subprocess.run([sys.executable, "-m", "ruff", "check", "--no-cache", str(ROOT)],
                         capture_output=True, text=True, cwd=ROOT)
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-2000:]


def _installed_layout(dest: pathlib.Path) -> None:
    setup = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    for package in setup["packages"]:
        src = ROOT / setup["package-dir"][package]
        target = dest.joinpath(*package.split("."))
        target.mkdir(parents=True, exist_ok=True)
        for f in src.glob("*.py"):
            shutil.copy(f, target / f.name)


def test_import_contracts_are_kept(tmp_path):
    _installed_layout(tmp_path / "site")
    env = {**os.environ, "PYTHONPATH": str(tmp_path / "site")}
    lint = shutil.which("lint-imports")
    assert lint, "import-linter is missing: pip install -e '.[test]'"
    run = subprocess.run([lint, "--no-cache", str(ROOT / "pyproject.toml")], capture_output=True, text=True,
                         cwd=tmp_path, env=env)
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-2000:]
    assert "0 broken" in run.stdout


def test_the_offline_side_loads_without_triton_or_torch():
    code = "import sys, kperf.tracing, kperf.dialect; assert not {'triton', 'torch'} & set(sys.modules)"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)
