"""`kperf compile FILE.py:KERNEL` on CPU: the summary, the scopes, and each --emit.

The GEMM example declares its compile arguments (SIGNATURE, CONSTEXPRS, COMPILE_OPTIONS), so the
command needs nothing but the kernel's name."""

from __future__ import annotations

import contextlib
import io
import pathlib

import pytest

from kperf.cli import main
from kperf.examples import matmul as mm

MATMUL = str(pathlib.Path(mm.__file__).resolve()) + ":matmul_kernel"


@pytest.fixture(scope="module")
def outputs(tmp_path_factory):
    """(stdout, stderr) of `kperf compile` per --emit; sass goes to a file (one compile each; Triton's
    cache makes the later ones cheaper)."""
    out = {}
    sass_file = tmp_path_factory.mktemp("emit") / "k.sass"
    for emit, extra in (("sass", ["--out", str(sass_file)]), ("sass_plain", []), ("schedule", [])):
        stdout, stderr = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
            assert main(["compile", MATMUL, "--emit", emit, *extra]) == 0
        out[emit] = (stdout.getvalue(), stderr.getvalue())
    out["sass_file"] = sass_file.read_text()
    return out


def test_summary_names_the_schedule_drift_and_the_scopes(outputs):
    text = outputs["sass"][0]  # --out FILE: the summary on stdout, the SASS in the file
    assert "schedule differs from the plain kernel: 7 F2FP cross `BAR.SYNC.DEFER_BLOCKING 0x0`" in text
    assert "  scope 0: " in text and "kperf: sass written to " in text


def test_emit_sass_plain_and_schedule(outputs):
    sass, (plain, plain_err) = outputs["sass_file"], outputs["sass_plain"]
    assert "HGMMA" in sass and "HGMMA" in plain
    assert "SR_CLOCKLO" in sass and "SR_CLOCKLO" not in plain  # kperf's clock reads are in one only
    # the emitted text alone on stdout (or in the file); the summary on stderr
    assert "records" not in sass.splitlines()[0] and "  scope 0: " not in plain and "  scope 0: " in plain_err
    schedule = outputs["schedule"][0]
    assert "sync points matched in the instrumented SASS" in schedule and "F2FP" in schedule


def test_bad_kernel_reference(capsys):
    assert main(["compile", "matmul_kernel", "--signature", "{}"]) == 2
    assert "expected FILE.py:KERNEL" in capsys.readouterr().err
