"""Every example kernel and lowering variant compiles to the PTX and SASS captured in tests/data/golden/
(golden_cases.py says how and when to regenerate them)."""

from __future__ import annotations

import difflib
import gzip
import json

import golden_cases as gc
import pytest

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


@pytest.mark.parametrize("name", sorted(CASES))
def test_compiles_to_the_golden_ptx_and_sass(name):
    ptx, sass = gc.build(CASES[name])
    want = INDEX[name]
    assert gc.digest(ptx) == want["ptx_sha256"], _first_difference(name, ".ptx.gz", ptx)
    assert gc.digest(sass) == want["sass_sha256"], _first_difference(name, ".sass.gz", sass)
