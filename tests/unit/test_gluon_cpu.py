"""kperf.scope in a Gluon kernel: the Hopper TMA + wgmma GEMM of examples/gluon_matmul.py compiled
through kperf for sm_90 without a GPU (Gluon compiles straight to TTGIR; num_warps travels both as
the kernel's constexpr and as the compile option that sets ``ttg.num-warps``)."""

from __future__ import annotations

import re

import pytest

from kperf.dialect.options import ProfileConfig
from kperf.examples import gluon_matmul as gm


@pytest.fixture(scope="module")
def report():
    return gm.compile_report()


@pytest.mark.compile_side
def test_records_reach_ttgir_and_ptx_and_assemble(report):
    carriers = re.findall(r'kperf\.record (start|end) \\22(\w+)\\22 id=(\d+)', report.ttgir)
    assert [(k, n) for k, n, _ in carriers] == [("start", "tma_wait"), ("end", "tma_wait"),
                                                ("start", "wgmma"), ("end", "wgmma")]
    assert report.num_records == 4 and len(report.scopes) == 2
    assert report.ptx.count("// kperf record #") == 4
    assert report.cubin[:4] == b"\x7fELF"
    assert report.local_memory_ops == report.local_memory_ops_plain == 0


@pytest.mark.compile_side
def test_records_sit_around_the_wait_and_the_wgmma(report):
    ptx = report.ptx
    order = [m.group(0) for m in re.finditer(
        r"kperf record #\d|mbarrier\.try_wait|wgmma\.mma_async|wgmma\.wait_group", ptx)]
    i0 = order.index("kperf record #0")
    assert "mbarrier.try_wait" in order[i0:order.index("kperf record #1")]
    between = order[order.index("kperf record #2"):order.index("kperf record #3")]
    assert "wgmma.mma_async" in between and "wgmma.wait_group" in between
    sass = report.sass
    assert "HGMMA" in sass and sass.count("SR_CLOCKLO") >= 4 + 2  # records + header/finalize pairs


@pytest.mark.parametrize("cfg", [ProfileConfig(fold=True), ProfileConfig(store="auto", fold=True),
                                 ProfileConfig(granularity="warpgroup"), ProfileConfig(cta_stride=8)])
def test_variants_compile_for_the_gluon_gemm(cfg):
    r = gm.compile_report(config=cfg)
    assert r.num_records == 4 and r.local_memory_ops == 0
    assert r.sass_per_record <= 8, r.summary()
