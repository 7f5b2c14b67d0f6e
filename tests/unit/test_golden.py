"""Every example kernel and lowering variant compiles to the PTX and SASS captured in tests/data/golden/
(golden_cases.py says how and when to regenerate them).

The files were captured with Triton 3.6 (its LLVM and its ptxas): another Triton release compiles the
same kernels to other PTX and SASS whatever kperf does, so there each case is still compiled (and must
hold its records) but the comparison is skipped.
"""

from __future__ import annotations

import difflib
import gzip
import json

import golden_cases as gc
import pytest

from kperf import triton_compat

INDEX = json.loads((gc.GOLDEN / "index.json").read_text())
CASES = gc.cases()


def test_every_case_has_golden_files():
    assert sorted(CASES) == sorted(INDEX), "golden_cases.py and tests/data/golden/index.json disagree"
    for name in CASES:
        for suffix in (".ptx.gz", ".sass.gz"):
            assert (gc.GOLDEN / (gc.file_stem(name) + suffix)).is_file(), name


def _first_difference(name: str, suffix: str, text: str) -> str:
    with gzip.open(gc.GOLDEN / (gc.file_stem(name) + suffix), "rt") as f:
        golden = f.read()
    diff = difflib.unified_diff(golden.splitlines(), text.splitlines(), "golden", "now", n=2, lineterm="")
    return "\n".join(list(diff)[:40])


GOLDEN_TRITON = (3, 6)
# one case per example kernel in the compile-side subset (tests/unit/conftest.py): the kernels other
# compile-side tests build already (Triton's cache hands them over), plus the smallest FA3 pipeline
COMPILE_SIDE = {"vector_add/default", "matmul/default", "gluon_matmul/default", "attention/auto-mma-tma",
                "fa3/ws-fp16-d128"}


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.compile_side) if n in COMPILE_SIDE else n
                                  for n in sorted(CASES)])
def test_compiles_to_the_golden_ptx_and_sass(name):
    ptx, sass = gc.build(CASES[name])
    if triton_compat.VERSION != GOLDEN_TRITON:
        assert "// kperf record #" in ptx and "SR_CLOCKLO" in sass
        pytest.skip(f"compiled; the golden PTX/SASS are Triton 3.6's (its LLVM and ptxas), Triton "
                    f"{'.'.join(map(str, triton_compat.VERSION))} compiles the same kernel to other code")
    want = INDEX[name]
    assert gc.digest(ptx) == want["ptx_sha256"], _first_difference(name, ".ptx.gz", ptx)
    assert gc.digest(sass) == want["sass_sha256"], _first_difference(name, ".sass.gz", sass)
