"""The kernel corpus: kernels nobody here wrote, each compiled through kperf for sm_90 and assembled.

``tests/corpus/*.tar.xz`` hold kernels recorded with ``kperf corpus record`` on an H100 (README.md in
this folder: their sources, versions and licenses, and how to record them again).  Every kernel is
compiled from its recorded TTIR for ``GPUTarget("cuda", 90, 32)`` with the automatic-insertion presets
``loops`` and ``mma,tma``; Triton's cubin stage assembles kperf's PTX with ptxas.  Each compile must end
in one of three ways (``kperf.corpus.check``): records wherever the preset selected ops, nothing selected
(no record asked for), or kperf's "cannot place a record around <op>" error naming the op.  Any other
failure is a kperf bug.  The terminal summary counts the kernels compiled, by source and preset
(``tests/conftest.py``).

The recorded TTIR is Triton 3.6's; Triton 3.8 and 3.9 changed how TTIR spells tensor-descriptor types
and cache policies and refuse the old spelling, so each kernel's TTIR is rewritten in the spelling of
the Triton that compiles it (``triton_compat.readable_ttir``, a fact per release).  CI runs the corpus
on 3.6 with the full suite and on 3.9 in the Triton matrix (``.ci/run``).
"""

from __future__ import annotations

import collections
import pathlib

import pytest

from kperf import corpus

HERE = pathlib.Path(__file__).parent
PRESETS = ("loops", "mma,tma")
ARCHIVES = sorted(HERE.glob("*.tar.xz"))
KERNELS = [k for archive in ARCHIVES for k in corpus.load(str(archive)).kernels]


def test_the_corpus_has_at_least_200_distinct_kernels_from_three_sources():
    labels = collections.Counter(k.label for k in KERNELS)
    assert set(labels) == {"inductor", "liger", "torch"}, labels
    assert len({k.to_json()["ttir_sha256"] for k in KERNELS}) == len(KERNELS) >= 200
    assert all(k.target == {"backend": "cuda", "arch": 90, "warp_size": 32} for k in KERNELS)
    assert {k.triton for k in KERNELS} == {"3.6.0"}


@pytest.mark.parametrize("preset", PRESETS)
@pytest.mark.parametrize("kernel", KERNELS, ids=lambda k: f"{k.label}/{k.id}")
def test_kernel_compiles_through_kperf(kernel, preset, record_property):
    outcome = corpus.check(kernel, preset)  # raises for anything but the three outcomes
    record_property("kperf_corpus", (kernel.label, preset, outcome.status))
    if outcome.status == "cannot place":
        assert "cannot place a record around " in outcome.message
        assert any(f"around {op} " in outcome.message for op in corpus.preset_ops(preset))
    elif outcome.status == "records":
        assert outcome.records > 0
    else:
        assert not outcome.selected
