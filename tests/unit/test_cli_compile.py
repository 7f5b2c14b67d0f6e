"""`kperf compile FILE.py:KERNEL` on CPU: the summary, the scopes, and each --emit."""

from __future__ import annotations

import json
import pathlib

import pytest

from kperf.cli import main
from kperf.examples import matmul as mm

MATMUL = str(pathlib.Path(mm.__file__).resolve()) + ":matmul_kernel"
ARGS = ["compile", MATMUL, "--signature", json.dumps(mm.SIGNATURE), "--constexprs", json.dumps(mm.CONSTEXPRS),
        "--num-warps", str(mm.COMPILE_OPTIONS["num_warps"]),
        "--num-stages", str(mm.COMPILE_OPTIONS["num_stages"])]


@pytest.fixture(scope="module")
def outputs():
    """stdout of `kperf compile` per --emit (one compile each; Triton's cache makes the later ones cheap)."""
    import contextlib
    import io
    out = {}
    for emit in (None, "sass", "sass_plain", "schedule"):
        buf = io.StringIO()
        with contextlib.redirect_stdout(buf):
            assert main(ARGS + (["--emit", emit] if emit else [])) == 0
        out[emit] = buf.getvalue()
    return out


def test_summary_names_the_schedule_drift_and_the_scopes(outputs):
    text = outputs[None]
    assert "schedule differs from the plain kernel: 7 F2FP cross `BAR.SYNC.DEFER_BLOCKING 0x0`" in text
    assert "  scope 0: " in text


def test_emit_sass_plain_and_schedule(outputs):
    base = len(outputs[None])
    sass, plain = outputs["sass"][base:], outputs["sass_plain"][base:]
    assert "HGMMA" in sass and "HGMMA" in plain
    assert "SR_CLOCKLO" in sass and "SR_CLOCKLO" not in plain  # kperf's clock reads are in one only
    schedule = outputs["schedule"][base:]
    assert "sync points matched in the instrumented SASS" in schedule and "F2FP" in schedule


def test_bad_kernel_reference(capsys):
    assert main(["compile", "matmul_kernel", "--signature", "{}"]) == 2
    assert "expected FILE.py:KERNEL" in capsys.readouterr().err
