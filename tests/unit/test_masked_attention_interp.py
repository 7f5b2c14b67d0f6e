"""The masked-attention kernels (examples/masked_attention.py) under Triton's interpreter, on the CPU.

Every mask family and every schedule (``grid``, ``lpt_grid``, ``persistent``, ``persistent_grouped``; the
dense kernel is ``grid`` on an all-full block list) against PyTorch SDPA in float32 with the dense element
mask, at sizes where every family has partial blocks and the per-head and per-batch masks differ.  One
subprocess runs them all (masked_attention_interp_run.py says why), about 6 s of CPU.
"""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys

import pytest

HERE = pathlib.Path(__file__).resolve().parent
TOL_FP16 = 1e-2  # max |out - SDPA fp32| on N(0, 1) inputs, as the GPU tests use


@pytest.fixture(scope="module")
def interpreted():
    env = {**os.environ, "TRITON_INTERPRET": "1"}
    run = subprocess.run([sys.executable, str(HERE / "masked_attention_interp_run.py")], capture_output=True,
                         text=True, env=env, cwd=HERE.parents[1], timeout=300)
    assert run.returncode == 0, run.stderr[-4000:]
    return json.loads(run.stdout.strip().splitlines()[-1])


FAMILIES = ("causal", "sliding_window", "document", "bigbird")
SCHEDULES = ("grid", "lpt_grid", "persistent", "persistent_grouped")
CASES = [("dense", "grid")] + [(f, s) for f in FAMILIES for s in SCHEDULES]


def test_every_family_and_schedule_ran(interpreted):
    assert [(r["family"], r["schedule"]) for r in interpreted] == CASES
    partial = {r["family"]: r["partial_blocks"] for r in interpreted}
    assert partial["causal"] and partial["sliding_window"] and partial["document"]  # the element mask ran
    assert partial["bigbird"] == 0 and partial["dense"] == 0  # block-granular: all listed blocks full


@pytest.mark.parametrize("i", range(len(CASES)), ids=[f"{f}-{s}" for f, s in CASES])
def test_matches_sdpa_fp32(interpreted, i):
    r = interpreted[i]
    assert r["finite"], f"{r}: NaN or inf left in the output (an element not written, or 0/0)"
    assert r["err"] <= TOL_FP16, f"{r['family']} {r['schedule']}: max |err| {r['err']:.3e}"


def test_persistent_queue_hands_out_every_tile_once_and_resets(interpreted):
    for r in (r for r in interpreted if r["schedule"].startswith("persistent")):
        assert r["tickets_logged"] == r["tiles"], r
        assert r["queue_after"] == [0, 0], f"{r['family']}: the next launch would start at {r['queue_after']}"


def test_schedules_agree_bit_for_bit(interpreted):
    """The schedules differ only in which CTA runs a tile, never in a tile's arithmetic."""
    errs = {}
    for r in interpreted:
        errs.setdefault(r["family"], set()).add(r["err"])
    assert all(len(e) == 1 for e in errs.values()), errs
