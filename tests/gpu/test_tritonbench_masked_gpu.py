"""The masked_attention operator of kperf.tritonbench_ext end to end on a Hopper GPU: every variant runs,
the masked ones match SDPA in float32, the kperf metric profiles whole launches (output unchanged, no
record lost) and puts the imbalance figures in the table; SDPA over --sdpa-max-elems is skipped."""

from __future__ import annotations

import json

import pytest

pytestmark = pytest.mark.gpu

torch = pytest.importorskip("torch")


def _hopper():
    if torch.cuda.get_device_capability()[0] != 9:
        pytest.skip("the masked-attention kernels use Hopper TMA descriptors (sm_90)")


def test_masked_operator_runs_end_to_end(tmp_path):
    _hopper()
    from kperf.tritonbench_ext.__main__ import main
    from kperf.tritonbench_ext.masked import MASKED_VARIANTS
    rc = main(["--op", "masked_attention", "--mask", "bigbird,document", "--metrics",
               "tflops,speedup,accuracy,kperf", "--batch", "2", "--n-heads", "4", "--d-head", "128",
               "--seq-len", "2048", "--standalone", "--output-dir", str(tmp_path), "--rep", "20",
               "--warmup", "5"])
    assert rc == 0
    doc = json.loads((tmp_path / "results.json").read_text())
    assert [r["mask"] for r in doc["rows"]] == ["bigbird", "document"]
    for row in doc["rows"]:
        res = row["results"]
        assert set(res) == set(MASKED_VARIANTS)
        errors = {n: m["error_msg"] for n, m in res.items() if "error_msg" in m}
        assert not errors
        assert all(m["tflops"] > 0 for m in res.values())
        assert res["kperf_grid"]["speedup"] == 1.0
        checked = [n for n, v in MASKED_VARIANTS.items() if v.checked]
        assert all(res[n]["accuracy"] is True for n in checked), {n: res[n]["max_abs_err"] for n in checked}
        assert "accuracy" not in res["kperf_dense"]
        for name in (n for n in res if n.startswith("kperf_")):
            info = res[name]["kperf_info"]
            assert info["output_identical"] and info["lost"] == 0, (name, info)
            assert res[name]["kperf"].startswith("span ") and "tail/span" in res[name]["kperf"]
            assert 0 <= info["imbalance"]["tail_frac"] <= 1 and info["imbalance"]["sm_max_over_mean"] >= 1
            assert (tmp_path / "kperf" / name / f"b2_h4_s2048_d128_{row['mask']}" / "summary.txt").exists()
        assert all(res[n]["kperf"].startswith("n/a") for n in ("flex_attention", "sdpa_mask"))
    table = (tmp_path / "table.txt").read_text()
    assert "(Batch, Heads, SeqLen, Dhead, Mask)" in table and "SM idle at end" in table


def test_sdpa_over_the_cap_is_skipped(tmp_path):
    _hopper()
    from kperf.tritonbench_ext.__main__ import main
    rc = main(["--op", "masked_attention", "--mask", "causal", "--only",
               "kperf_persistent_grouped,sdpa_mask", "--metrics", "tflops,accuracy", "--batch", "1",
               "--n-heads", "2", "--d-head", "64", "--seq-len", "1024", "--sdpa-max-elems", "1000",
               "--standalone", "--output-dir", str(tmp_path), "--rep", "10", "--warmup", "2"])
    assert rc == 0
    (row,) = json.loads((tmp_path / "results.json").read_text())["rows"]
    assert "over --sdpa-max-elems 1000" in row["results"]["sdpa_mask"]["skipped"]
    assert row["results"]["kperf_persistent_grouped"]["tflops"] > 0
    assert "accuracy" not in row["results"]["kperf_persistent_grouped"]  # no reference over the cap
    assert row["reference"].startswith("skipped")
