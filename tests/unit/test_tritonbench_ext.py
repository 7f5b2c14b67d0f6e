"""kperf.tritonbench_ext without a GPU: the command line, the sweep plan, variants, tables, the
tritonbench adapter's plan (and its registration where tritonbench is importable)."""

from __future__ import annotations

import pytest

from kperf.dialect.errors import KperfError
from kperf.examples import fa3_pipelines
from kperf.tritonbench_ext import args as cli
from kperf.tritonbench_ext import kperf_metric, runner, tritonbench_adapter, variants
from kperf.tritonbench_ext.__main__ import main

EXAMPLE = ["--op", "flash_attention", "--only", "kperf_vanilla,kperf_ws_pingpong,sdpa_flash,sdpa_cudnn",
           "--metrics", "tflops,kperf", "--batch", "16", "--n-heads", "16", "--d-head", "128",
           "--seq-len", "4096", "--causal"]


def test_issue_command_line_parses():
    a = cli.parse_args(EXAMPLE)
    assert a.op == "flash_attention" and a.causal and a.precision == "fp16"
    assert a.only == ["kperf_vanilla", "kperf_ws_pingpong", "sdpa_flash", "sdpa_cudnn"]
    assert a.metrics == ["tflops", "kperf"]
    plan = cli.sweep_plan(a)
    assert plan.shapes == (cli.Shape(16, 16, 4096, 128),) and plan.skipped == ()
    assert [v.name for v in variants.select(a.only)] == a.only


def test_tritonbench_defaults_and_num_inputs_doubling():
    a = cli.parse_args([])
    assert (a.batch, a.n_heads, a.d_head, a.metrics) == (4, 48, 64, ["latency", "tflops"])
    assert [s.seq_len for s in cli.sweep_plan(a).shapes] == [128, 256, 512, 1024, 2048, 4096, 8192, 16384]
    a = cli.parse_args(["--seq-len", "1024", "--num-inputs", "3"])
    assert [s.seq_len for s in cli.sweep_plan(a).shapes] == [1024, 2048, 4096]


def test_sweeps_ranges_lists_and_token_cap():
    a = cli.parse_args(["--seq-lens", "128:16384", "--batch", "16", "--n-heads", "16", "--d-head", "128"])
    assert [s.seq_len for s in cli.sweep_plan(a).shapes] == [2 ** i for i in range(7, 15)]
    a = cli.parse_args(["--batches", "1:128", "--seq-len", "4096", "--max-tokens", "262144"])
    plan = cli.sweep_plan(a)
    assert [s.batch for s in plan.shapes] == [1, 2, 4, 8, 16, 32, 64]
    assert [s.batch for s in plan.skipped] == [128]
    assert "skipped over --max-tokens: b128_" in plan.describe()
    a = cli.parse_args(["--batches", "3,5", "--seq-lens", "256,512"])
    assert [(s.batch, s.seq_len) for s in cli.sweep_plan(a).shapes] == [(3, 256), (3, 512), (5, 256),
                                                                         (5, 512)]


@pytest.mark.parametrize("argv, match", [
    (["--op", "gemm"], "unknown --op"),
    (["--metrics", "tflops,ncu_rep"], "unknown metric"),
    (["--d-head", "96"], "--d-head 96"),
    (["--batch", "0"], "--batch must be positive"),
])
def test_bad_arguments_are_clear_errors(argv, match):
    with pytest.raises(KperfError, match=match):
        cli.parse_args(argv)


@pytest.mark.parametrize("text", ["0:8", "8:4", "a,b", ""])
def test_bad_int_lists(text):
    import argparse
    with pytest.raises(argparse.ArgumentTypeError):
        cli.int_list(text)


def test_main_reports_errors_with_exit_code_2(capsys):
    assert main(["--only", "kperf_nope"]) == 2
    err = capsys.readouterr().err
    assert "unknown variant(s) kperf_nope" in err and "fix:" in err


def test_flops_match_tritonbench():
    s = cli.Shape(16, 16, 4096, 128)
    assert cli.flops(s, False) == 4 * 16 * 16 * 4096 * 4096 * 128
    assert cli.flops(s, True) == cli.flops(s, False) / 2


def test_variants_registry():
    assert set(variants.VARIANTS) == {"kperf_vanilla", "sdpa_flash", "sdpa_cudnn"} | {
        f"kperf_{n}" for n in fa3_pipelines.PIPELINES}
    assert list(variants.GLUON_PIPELINES) == list(fa3_pipelines.PIPELINES)
    assert all(v.profilable == (v.kind == "kperf") for v in variants.VARIANTS.values())
    with pytest.raises(KperfError, match="not a Triton kernel"):
        variants.VARIANTS["sdpa_cudnn"].profiled(None, None, None, False, 1.0)
    assert [v.name for v in variants.select(None, ["sdpa_flash"])][-1] == "sdpa_cudnn"


def test_profile_capacity_and_batch_budget():
    assert variants.capacity_for(4096) == 2048  # 16 records x 64 blocks + 64 -> next power of two
    assert variants.capacity_for(128) == 128
    s = cli.Shape(16, 16, 4096, 128)
    per = kperf_metric.buffer_bytes_per_batch(s, 2048)
    assert per == 16 * 32 * 12 * 2048 * 8
    assert kperf_metric.profiled_batch(s, 1024, 2048) == (1024 << 20) // per
    assert kperf_metric.profiled_batch(s, 1 << 20, 2048) == 16
    assert kperf_metric.profiled_batch(cli.Shape(1, 64, 16384, 128), 1, 8192) == 1


def test_table_layout_is_tritonbench_style():
    rows = [{"x_val": [16, 16, 4096, 128], "results": {
        "kperf_ws_pingpong": {"latency": 1.5, "tflops": 600.25, "kperf": "out/k"},
        "sdpa_cudnn": {"error_msg": "CUDA OOM"}}}]
    text = runner.format_table(rows, ["latency", "tflops", "kperf"])
    head = text.splitlines()[0].split()
    assert head[:4] == ["(Batch,", "Heads,", "SeqLen,", "Dhead)"]
    assert head[4:] == ["kperf_ws_pingpong-latency", "kperf_ws_pingpong-tflops", "kperf_ws_pingpong-kperf",
                        "sdpa_cudnn-latency", "sdpa_cudnn-tflops", "sdpa_cudnn-kperf"]
    assert "600.250" in text and "out/k" in text and "error: CUDA OOM" in text
    csv = runner.format_table(rows, ["tflops"], csv=True).splitlines()
    assert csv[0] == "(Batch, Heads, SeqLen, Dhead);kperf_ws_pingpong-tflops;sdpa_cudnn-tflops"
    assert csv[1].startswith("(16, 16, 4096, 128);600.250;error")


def test_tritonbench_run_grouping_and_argv():
    a = cli.parse_args(["--batches", "1,2", "--seq-lens", "128:512", *EXAMPLE[2:6]])
    runs = list(tritonbench_adapter._runs(a, cli.sweep_plan(a).shapes))
    assert runs == [(1, 128, 3), (2, 128, 3)]
    a2 = cli.parse_args(["--seq-lens", "256,512,2048"])
    assert list(tritonbench_adapter._runs(a2, cli.sweep_plan(a2).shapes)) == [(4, 256, 2), (4, 2048, 1)]
    argv = tritonbench_adapter.tritonbench_argv(cli.parse_args(EXAMPLE), 16, 4096, 1)
    assert argv[:2] == ["--op", "flash_attention"] and "--causal" in argv
    for flag, value in [("--batch", "16"), ("--n-heads", "16"), ("--d-head", "128"), ("--seq-len", "4096"),
                        ("--metrics", "tflops,kperf"), ("--num-inputs", "1")]:
        assert argv[argv.index(flag) + 1] == value
    assert "--cudagraph" not in argv
    with_graphs = cli.parse_args([*EXAMPLE, "--cudagraph"])
    assert "--cudagraph" in tritonbench_adapter.tritonbench_argv(with_graphs, 16, 4096, 1)


def test_register_into_real_tritonbench():
    if not tritonbench_adapter.available():
        pytest.skip("tritonbench is not importable here: the adapter is exercised where it is installed")
    from tritonbench.utils import triton_op as tb
    op_cls = tritonbench_adapter.register(out_dir="out/test_tb")
    for name in variants.VARIANTS:
        assert callable(getattr(op_cls, name))
        assert name in tb.REGISTERED_BENCHMARKS["flash_attention"]
    assert "kperf" in tb.REGISTERED_METRICS["flash_attention"]


def test_without_gpu_the_runner_says_so():
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    with pytest.raises(KperfError, match="needs a CUDA GPU"):
        runner.run(cli.parse_args(["--standalone"]))
