"""On a GPU: a real GEMM profile through save -> kperf report / diff / plot / export, with exact counts.

examples/matmul.py at M=N=K=1024 with 128x128x64 tiles and 8 warps: 64 CTAs, 16 K-iterations, so
every warp records 16 "load" and 16 "mma" intervals and one "epilogue".  The statistics must count
exactly that, and their invariants must hold on real timestamps.
"""

from __future__ import annotations

import numpy as np
import pytest

pytestmark = pytest.mark.gpu

torch = pytest.importorskip("torch")

CTAS, WARPS, ITERS = 64, 8, 1024 // 64


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    import kperf
    from kperf.examples import matmul as mm

    a = torch.randn(1024, 1024, device="cuda", dtype=torch.float16)
    b = torch.randn(1024, 1024, device="cuda", dtype=torch.float16)
    k = kperf.profile(mm.matmul_kernel)
    mm.matmul(a, b, kernel=k)
    torch.cuda.synchronize()
    out = tmp_path_factory.mktemp("gemm")
    return kperf.results(k).save(out)["profile"]


def test_report_counts_and_invariants(saved):
    from kperf.tracing import stats

    rep = stats.report(saved)
    sc = {r["scope"]: r for r in rep["scopes"].rows()}
    assert sc["load"]["count"] == sc["mma"]["count"] == CTAS * WARPS * ITERS
    assert sc["epilogue"]["count"] == CTAS * WARPS
    for r in sc.values():
        assert 0 < r["p50_ns"] <= r["p95_ns"] <= r["max_ns"] < 1e6
        assert r["mean_cycles"] > 0
    boundaries = {(r["before"], r["after"]) for r in rep["gaps"].rows()}
    assert boundaries == {(stats.CTA_START, "load"), ("load", "mma"), ("mma", "load"), ("mma", "epilogue"),
                          ("epilogue", stats.CTA_END)}
    assert one(rep["gaps"], before="mma", after="load")["count"] == CTAS * WARPS * (ITERS - 1)
    idle = one(rep["idle"], role=stats.ALL_WARPS)
    assert idle["warps"] == CTAS * WARPS and 0 <= idle["idle_frac"] < 1
    gap_total = sum(r["total_ns"] for r in rep["gaps"].rows())
    assert gap_total == pytest.approx(idle["idle_ns"], rel=1e-6)
    im = one(rep["imbalance"], launch=rep["imbalance"]["launch"][0])
    assert im["ctas"] == CTAS and 1 <= im["cta_max_over_mean"] < 2 and im["kernel_span_ns"] > 0
    assert np.all((rep["sms"]["ghz"] > 0.5) & (rep["sms"]["ghz"] < 3.0))


def test_cli_on_real_profile(saved, tmp_path, capsys):
    from kperf.cli import main

    assert main(["report", saved, "--csv", str(tmp_path / "csv")]) == 0
    assert main(["diff", saved, saved]) == 0
    assert "only A" not in capsys.readouterr().out
    out = str(tmp_path / "t.pftrace")
    assert main(["export", saved, "--format", "perfetto", "--first-wave", "--out", out]) == 0
    pytest.importorskip("matplotlib")
    assert main(["plot", saved, "--out", str(tmp_path / "plots"), "--ctas", "0-1"]) == 0
    assert (tmp_path / "plots" / "timeline.png").stat().st_size > 10_000


def one(table, **match):
    rows = table.where(**match)
    assert len(rows) == 1, (match, rows)
    return rows[0]
