"""bench/overhead.py's report without a GPU: kperf's variants are shown (and written) before Proton runs,
whose host work per launch takes seconds on the WS attention (an H100 run lost the attention's kperf
numbers to a time limit while Proton ran); with Proton, its overhead, the ratio and its wall time per
launch."""

from __future__ import annotations

from bench.overhead import print_case


def _result(**proton) -> dict:
    variant = {"ms_median": 1.02, "ms_iqr": 0.001, "overhead": 0.02, "overhead_per_round": [0.02, 0.021],
               "output_identical": True, "problems": [], "events_expected": 10, "events": 10, "lost": 0,
               "span_vs_kernel": -0.001}
    return {"plain_ms_median": 1.0, "plain_ms_iqr": 0.001, "variants": {"warpgroup-smem": variant},
            **proton}


def test_kperf_variants_are_shown_without_proton(capsys):
    print_case("attention (kperf; Proton next)", _result())
    out = capsys.readouterr().out
    assert "== attention (kperf; Proton next)" in out and "warpgroup-smem" in out and "+2.00%" in out
    assert "proton " not in out


def test_proton_row_has_its_overhead_the_ratio_and_its_wall_time_per_launch(capsys):
    print_case("attention", _result(proton_overhead=0.25, proton_ms_median=1.25, proton_ms_iqr=0.002,
                                    proton_output_identical=True, proton_wall_s_per_launch=4.5))
    out = capsys.readouterr().out
    assert "0.08" in out  # kperf's overhead is 0.08 of Proton's
    assert "+25.00%" in out and "4.50 s of wall time per launch" in out
