"""bench/inductor_block.py runs each compile mode in a process of its own (CUDA graph trees and Dynamo keep
state across compiles): a mode that fails there comes back as that mode's error, and the modes after it
still run.  Without a GPU every mode fails at its first CUDA tensor, which is what is checked here."""

from __future__ import annotations

import pytest
import torch

from bench import inductor_block


@pytest.mark.skipif(torch.cuda.is_available(), reason="on a GPU the modes run (tests/gpu, bench/gpu_run.sh)")
def test_a_mode_failing_in_its_process_comes_back_as_its_error(tmp_path):
    r = inductor_block._run_in_child("reduce-overhead-inference", tmp_path, timeout=240)
    assert r["mode"] == "reduce-overhead-inference"
    assert "CUDA" in r["error"] and "Traceback" in r["traceback"]


def test_every_mode_is_listed_once():
    assert len(set(inductor_block.MODES)) == len(inductor_block.MODES) == 4
    assert {"reduce-overhead", "reduce-overhead-inference"} <= set(inductor_block.MODES)
