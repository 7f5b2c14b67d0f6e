"""kperf.tritonbench_ext's masked_attention operator without a GPU: the command line and its mask flags,
the sweep plan, the variant registry, the FLOP count (visited key blocks) against hand counts, the table
and its kperf cell, and the same no-GPU message as flash_attention."""

from __future__ import annotations

import types

import numpy as np
import pytest

from kperf.dialect.errors import KperfError
from kperf.examples import block_masks as bmk
from kperf.tritonbench_ext import args as cli
from kperf.tritonbench_ext import kperf_metric, masked, runner, variants
from kperf.tritonbench_ext.__main__ import main

GPU_COMMAND = ["--op", "masked_attention", "--mask", "bigbird", "--metrics", "tflops,kperf", "--batch", "1",
               "--n-heads", "16", "--d-head", "128", "--seq-len", "32768"]
BLOCK_FLOPS = 4 * 128 * 128  # per key block and unit of head dim: two 128 x 128 x d matmuls


def _masked(*argv):
    return cli.parse_args(["--op", "masked_attention", *argv])


def test_masked_command_line_parses():
    a = cli.parse_args(GPU_COMMAND)
    assert a.op == "masked_attention" and a.masks == ["bigbird"] and a.metrics == ["tflops", "kperf"]
    plan = cli.sweep_plan(a)
    assert plan.shapes == (cli.Shape(1, 16, 32768, 128, "bigbird"),)
    assert plan.shapes[0].tag == "b1_h16_s32768_d128_bigbird"
    assert plan.shapes[0].x_val() == (1, 16, 32768, 128, "bigbird")
    assert plan.shapes[0].dims == (1, 16, 32768, 128)
    assert [v.name for v in runner.OPERATORS["masked_attention"].select(None)] == list(masked.MASKED_VARIANTS)


def test_default_masks_and_plan_order():
    a = _masked("--batches", "1,2", "--seq-lens", "256,512", "--max-tokens", "512")
    assert a.masks == list(bmk.FAMILIES)  # all, as tritonbench's flex_attention runs every mask type
    plan = cli.sweep_plan(a)
    # batches, then sequence lengths, then every mask at each
    assert [(s.batch, s.seq_len, s.mask) for s in plan.shapes] == [
        (1, 256, m) for m in bmk.FAMILIES] + [(1, 512, m) for m in bmk.FAMILIES] + [
        (2, 256, m) for m in bmk.FAMILIES]
    assert [(s.batch, s.seq_len) for s in plan.skipped] == [(2, 512)] * 4
    assert _masked("--mask", "all").masks == list(bmk.FAMILIES)
    assert _masked("--mask", "document,causal").masks == ["document", "causal"]


def test_flash_attention_plan_is_unchanged():
    a = cli.parse_args(["--seq-len", "1024"])
    assert a.masks == [None]
    (shape,) = cli.sweep_plan(a).shapes
    assert shape == cli.Shape(4, 48, 1024, 64) and shape.mask is None
    assert shape.x_val() == (4, 48, 1024, 64) and shape.tag == "b4_h48_s1024_d64"


def test_mask_flags_reach_the_mask():
    a = _masked("--mask", "sliding_window,document,bigbird", "--windows", "128,4096", "--doc-mean-len", "64",
                "--global-blocks", "1", "--window-blocks", "1", "--random-blocks", "0", "--mask-seed", "3")
    sw = masked.mask_spec(cli.Shape(1, 3, 1024, 64, "sliding_window"), a)
    assert sw.left.tolist() == [128, 1024, 128]  # cycled over the heads, capped at the sequence
    doc = masked.mask_spec(cli.Shape(2, 1, 1024, 64, "document"), a)
    assert np.array_equal(doc.doc, bmk.document(2, 1, 1024, seed=3, mean_len=64).doc)
    bb = masked.mask_spec(cli.Shape(1, 2, 512, 64, "bigbird"), a)
    # one global block, the diagonal only, no random blocks
    expect = np.eye(4, dtype=bool) | (np.arange(4)[:, None] == 0) | (np.arange(4)[None, :] == 0)
    assert np.array_equal(bb.blocks[0, 1], expect)
    # unset flags: block_masks' defaults
    d = masked.mask_spec(cli.Shape(1, 5, 8192, 64, "sliding_window"), _masked())
    assert np.array_equal(d.left, bmk.sliding_window(1, 5, 8192).left)


@pytest.mark.parametrize("argv, match", [
    (["--op", "masked_attention", "--causal"], "--causal is a flash_attention flag"),
    (["--op", "masked_attention", "--mask", "strided"], "unknown --mask strided"),
    (["--op", "masked_attention", "--mask", "causal", "--windows", "256"], "--windows applies to --mask"),
    (["--op", "masked_attention", "--mask", "causal", "--mask-seed", "1"], "document or bigbird"),
    (["--op", "masked_attention", "--seq-len", "200"], "200 are not whole 128-token blocks"),
    (["--op", "masked_attention", "--global-blocks", "-1"], "--global-blocks must be >= 0"),
    (["--op", "masked_attention", "--sdpa-max-elems", "0"], "--sdpa-max-elems must be positive"),
    (["--mask", "causal"], "--mask is a masked_attention flag"),
    (["--op", "flash_attention", "--random-blocks", "2"], "--random-blocks is a masked_attention flag"),
])
def test_bad_masked_arguments_are_clear_errors(argv, match):
    with pytest.raises(KperfError, match=match) as e:
        cli.parse_args(argv)
    assert e.value.fix


def test_masked_variant_registry():
    from kperf.examples import masked_attention as ma
    reg = masked.MASKED_VARIANTS
    assert masked.SCHEDULES == ma.SCHEDULES
    assert list(reg) == [f"kperf_{s}" for s in ma.SCHEDULES] + ["kperf_dense", "flex_attention", "sdpa_mask"]
    assert all(v.profilable == (v.kind == "kperf") for v in reg.values())
    # every variant needs a GPU: the Triton kernels a Hopper one (TMA descriptors), the baselines any CUDA GPU
    assert {n for n, v in reg.items() if v.device == "hopper"} == {n for n in reg if n.startswith("kperf_")}
    assert {reg["flex_attention"].device, reg["sdpa_mask"].device} == {"cuda"}
    assert all(v.device in variants.DEVICES for v in {**reg, **variants.VARIANTS}.values())
    assert [n for n, v in reg.items() if not v.checked] == ["kperf_dense"]  # not the masked function
    with pytest.raises(KperfError, match="not a Triton kernel"):
        reg["flex_attention"].profiled(None)
    with pytest.raises(KperfError, match="unknown variant.*kperf_ws_pingpong") as e:
        runner.OPERATORS["masked_attention"].select(["kperf_ws_pingpong"])
    assert "kperf_persistent_grouped" in e.value.fix


def test_operators():
    assert list(runner.OPERATORS) == list(cli.OPS)
    fa, ma = runner.OPERATORS["flash_attention"], runner.OPERATORS["masked_attention"]
    assert fa.variants is variants.VARIANTS and fa.tritonbench and fa.baseline == "sdpa_cudnn"
    assert ma.variants is masked.MASKED_VARIANTS and not ma.tritonbench and ma.baseline == "kperf_grid"
    assert ma.x_label == "(Batch, Heads, SeqLen, Dhead, Mask)"


@pytest.mark.parametrize("argv, shape, blocks", [
    # causal, 4 query blocks: 1 + 2 + 3 + 4 key blocks per head
    (["--mask", "causal"], cli.Shape(1, 2, 512, 64, "causal"), 2 * 10),
    # a 128-token window: the diagonal block and the one before it (both partial), 1 for the first block
    (["--mask", "sliding_window", "--windows", "128"], cli.Shape(1, 1, 512, 64, "sliding_window"), 7),
    # 8 blocks, 2 global, a 3-block band, no random blocks: 8 + 8 + 4 + 5 + 5 + 5 + 5 + 4 per head
    (["--mask", "bigbird", "--random-blocks", "0"], cli.Shape(2, 3, 1024, 128, "bigbird"), 2 * 3 * 44),
])
def test_flops_count_visited_blocks(argv, shape, blocks):
    a = _masked(*argv)
    assert masked.flops(shape, a) == BLOCK_FLOPS * shape.d_head * blocks
    lists = bmk.block_lists(masked.mask_spec(shape, a))
    assert lists.visible_blocks() == blocks
    inputs = (types.SimpleNamespace(lists=lists),)
    assert runner.OPERATORS["masked_attention"].flops(shape, a, inputs) == BLOCK_FLOPS * shape.d_head * blocks


def test_without_gpu_both_operators_say_the_same(capsys):
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    with pytest.raises(KperfError, match="needs a CUDA GPU"):
        runner.run(cli.parse_args(["--op", "masked_attention", "--standalone"]))
    errors = []
    for op in ("flash_attention", "masked_attention"):
        assert main(["--op", op, "--seq-len", "256", "--standalone"]) == 2
        errors.append(capsys.readouterr().err)
    assert errors[0] == errors[1] and "needs a CUDA GPU" in errors[0] and "fix:" in errors[0]


def test_table_kperf_cell_and_skipped_variant():
    summary = {"kernel_span_ns": 1517.5e3, "tail_frac": 0.382, "end_idle_frac": 0.343,
               "sm_max_over_mean": 1.529}
    cell = kperf_metric.imbalance_cell(summary)
    assert cell == "span 1518us, tail/span 38.2%, SM idle at end 34.3%, SM busy max/mean 1.529"
    assert kperf_metric.imbalance_cell({**summary, "tail_frac": float("nan")}).count("-") == 1
    rows = [{"x_val": [1, 16, 32768, 128, "bigbird"], "mask": "bigbird", "results": {
        "kperf_grid": {"latency": 1.5, "tflops": 224.0, "kperf": cell},
        "sdpa_mask": {"skipped": "dense mask of 17179869184 elements (B * H * S * S) is over ..."}}}]
    op = runner.OPERATORS["masked_attention"]
    text = runner.format_table(rows, ["tflops", "kperf"], x_label=op.x_label)
    head = text.splitlines()[0]
    assert head.split()[:5] == ["(Batch,", "Heads,", "SeqLen,", "Dhead,", "Mask)"]
    assert head.split()[5:] == ["kperf_grid-tflops", "kperf_grid-kperf", "sdpa_mask-tflops",
                                "sdpa_mask-kperf"]
    assert "(1, 16, 32768, 128, 'bigbird')" in text and "224.000" in text and cell in text
    assert text.count("skipped: dense mask") == 2


def test_sdpa_skips_masks_over_the_cap():
    a = _masked("--mask", "causal", "--sdpa-max-elems", "1000")
    lists = bmk.block_lists(masked.mask_spec(cli.Shape(1, 1, 256, 64, "causal"), a))
    case = masked.MaskedCase(None, None, None, types.SimpleNamespace(spec=lists.spec, lists=lists), 0.125,
                             masked.sdpa_max_elems(a))
    assert case.mask_elems == 256 * 256 and not case.dense_mask_fits()
    with pytest.raises(variants.Skipped, match="over --sdpa-max-elems 1000"):
        masked.MASKED_VARIANTS["sdpa_mask"].make(case)
    assert masked.row_info(cli.Shape(1, 1, 256, 64, "causal"), a, (case,))["reference"] == "not asked"
    assert masked.reference((case,), a) is None
    assert masked.row_info(cli.Shape(1, 1, 256, 64, "causal"), a, (case,))["reference"] == \
        "skipped: over --sdpa-max-elems"
    assert masked.sdpa_max_elems(_masked()) == cli.SDPA_MAX_ELEMS
