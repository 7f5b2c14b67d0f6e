"""The kernel corpus: kernels nobody here wrote, each compiled through kperf for sm_90 and assembled.

``tests/corpus/*.tar.xz`` hold kernels recorded with ``kperf corpus record`` on an H100 (README.md in
this folder: their sources, versions and licenses, and how to record them again).  Every kernel is
compiled from its recorded TTIR for ``GPUTarget("cuda", 90, 32)`` with the automatic-insertion presets
``loops`` and ``mma,tma``; Triton's cubin stage assembles kperf's PTX with ptxas.  Each compile must end
in one of three ways (``kperf.corpus.check``): records wherever the preset selected ops, nothing selected
(no record asked for), or kperf's "cannot place a record around <op>" error naming the op.  Any other
failure is a kperf bug.  The terminal summary counts the kernels compiled, by source and preset
(``tests/conftest.py``).

The recorded TTIR is Triton 3.6's.  Triton 3.7 reads it and the corpus runs there too; 3.8 and 3.9
cannot parse all of it (``UNREADABLE``: checked against each release's wheel), so there these tests
are skipped with that reason.  CI runs them on 3.6 (``.ci/run``); the Triton matrix runs the
compile-side unit tests only.
"""

from __future__ import annotations

import collections
import pathlib

import pytest

from kperf import corpus, triton_compat

HERE = pathlib.Path(__file__).parent
PRESETS = ("loops", "mma,tma")
ARCHIVES = sorted(HERE.glob("*.tar.xz"))
KERNELS = [k for archive in ARCHIVES for k in corpus.load(str(archive)).kernels]
#: Triton releases that cannot parse the corpus's TTIR (recorded with Triton 3.6), and what they refuse.
UNREADABLE = {
    (3, 8): "Triton 3.8 spells tensor-descriptor types !tt.tensordesc<64x64xbf16> where 3.6 wrote "
            "!tt.tensordesc<tensor<64x64xbf16>>: the corpus's TMA kernels do not parse",
    (3, 9): "Triton 3.9 spells tensor-descriptor types as 3.8 does and tt.load's eviction policy as "
            "{cachePolicy = #tt.cache_policy<...>} where 3.6 wrote evictionPolicy = evict_last: most of "
            "the corpus's Inductor kernels do not parse",
}

pytestmark = pytest.mark.skipif(triton_compat.VERSION in UNREADABLE,
                                reason=UNREADABLE.get(triton_compat.VERSION, ""))


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
