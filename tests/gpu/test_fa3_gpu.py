"""GPU checks of the FA3 pipelines: every variant equals PyTorch SDPA (fp32) on random inputs, fp16 and
bf16, head dim 64 and 128, causal and not; profiled launches leave the output unchanged and record
every partition; the tritonbench-style benchmark runs end to end."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

pytestmark = pytest.mark.gpu

torch = pytest.importorskip("torch")

from kperf.tritonbench_ext.runner import TOLERANCE, _reference  # noqa: E402
from kperf.tritonbench_ext.variants import VARIANTS  # noqa: E402

KPERF_VARIANTS = [n for n, v in VARIANTS.items() if v.kind == "kperf"]
CONFIGS = list(itertools.product(("fp16", "bf16"), (64, 128), (False, True)))


def _hopper():
    if torch.cuda.get_device_capability()[0] != 9:
        pytest.skip("the kperf attention kernels need a Hopper GPU (sm_90)")


def _qkv(shape, dtype, seed=0):
    gen = torch.Generator(device="cuda").manual_seed(seed)
    dt = {"fp16": torch.float16, "bf16": torch.bfloat16}[dtype]
    return tuple(torch.randn(shape, device="cuda", dtype=dt, generator=gen) for _ in range(3))


@pytest.mark.parametrize("name", KPERF_VARIANTS)
@pytest.mark.parametrize("cfg", CONFIGS, ids=[f"{t}-d{d}-{'causal' if c else 'full'}" for t, d, c in CONFIGS])
def test_variant_matches_sdpa_fp32(name, cfg):
    _hopper()
    dtype, d, causal = cfg
    # 384 tokens: three 128-row CTAs per head, several K/V blocks, the causal diagonal in each
    q, k, v = _qkv((2, 3, 384, d), dtype)
    ref = _reference(q, k, v, causal, d ** -0.5)
    out = VARIANTS[name].make(q, k, v, causal, d ** -0.5)()
    assert out.dtype == q.dtype and out.shape == q.shape
    err = (out.float() - ref).abs().max().item()
    assert err <= TOLERANCE[dtype], f"{name} {cfg}: max |err| {err:.3e}"


@pytest.mark.parametrize("name", list(VARIANTS))
def test_variant_replays_from_a_cuda_graph(name):
    """``--cudagraph`` timing captures each variant's call (host descriptors, JIT launch, output
    allocation) in a CUDA graph: the replay writes what an eager call returns, and is timed."""
    from kperf.tritonbench_ext.runner import bench_ms
    _hopper()
    q, k, v = _qkv((2, 4, 256, 128), "fp16", seed=5)
    fn = VARIANTS[name].make(q, k, v, False, 0.1)
    eager = fn()
    torch.cuda.synchronize()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        replayed = fn()
    replayed.zero_()
    graph.replay()
    torch.cuda.synchronize()
    assert torch.equal(replayed, eager)
    ms = bench_ms(fn, warmup=1, rep=5, cudagraph=True)
    assert 0 < ms < 1.0


@pytest.mark.parametrize("name", [n for n in KPERF_VARIANTS if n != "kperf_vanilla"])
def test_long_sequence_and_ragged_batch(name):
    """A longer sequence (many ring wraps, both ping-pong tokens cycling) and odd batch/head counts."""
    _hopper()
    q, k, v = _qkv((3, 5, 2048, 128), "fp16", seed=3)
    for causal in (False, True):
        ref = _reference(q, k, v, causal, 0.1)
        out = VARIANTS[name].make(q, k, v, causal, 0.1)()
        assert (out.float() - ref).abs().max().item() <= TOLERANCE["fp16"]


@pytest.mark.parametrize("pipeline", ["ws_overlap_persistent", "ws_pingpong_persistent"])
@pytest.mark.parametrize("cfg", [("fp16", 128, False), ("bf16", 64, True), ("fp16", 128, True)],
                         ids=["fp16-d128-full", "bf16-d64-causal", "fp16-d128-causal"])
def test_persistent_pipeline_with_many_tiles_per_cta(pipeline, cfg):
    """3 CTAs loop over 2 x 3 x 5 = 30 tiles: the K/V rings, the Q barriers and the ping-pong tokens run on
    across tiles of different lengths (causal), and O leaves through buffers reused one tile later."""
    _hopper()
    from kperf.examples import fa3_pipelines as fa3
    dtype, d, causal = cfg
    q, k, v = _qkv((2, 3, 640, d), dtype, seed=5)
    ref = _reference(q, k, v, causal, d ** -0.5)
    for ctas in (3, 7, None):
        out = fa3.fa3_attention(q, k, v, causal, d ** -0.5, pipeline=pipeline, ctas=ctas)
        err = (out.float() - ref).abs().max().item()
        assert err <= TOLERANCE[dtype], f"{pipeline} {cfg} ctas={ctas}: max |err| {err:.3e}"


@pytest.mark.parametrize("candidate", ["ws_n192_k2v2_r240", "ws_overlap_n192_k2v2_r240",
                                       "ws_pingpong_n192_k2v2_r240_er"])
@pytest.mark.parametrize("n_ctx", [128, 256, 512, 640, 1152])
def test_192_key_blocks_pad_the_first_block(candidate, n_ctx):
    """block_n = 192 (128 + 64 sub-tiles) on lengths 192 does not divide: the first block starts 64 or 128
    keys before the head (the previous head's keys, or TMA's zero fill before the tensor) and masks them;
    1152 = 6 x 192 has no pad.  Head dim 128 (the tuning candidates' buffering)."""
    _hopper()
    import dataclasses

    from bench import fa3_tune
    from kperf.examples import fa3_pipelines as fa3
    p = fa3_tune.pipeline(candidate)
    p64 = dataclasses.replace(p, stages=((64, 3),), v_stages=((64, 3),))
    for dtype, d, causal in [("fp16", 128, False), ("bf16", 64, False), ("fp16", 128, True),
                             ("bf16", 64, True)]:
        q, k, v = _qkv((2, 3, n_ctx, d), dtype, seed=n_ctx)
        ref = _reference(q, k, v, causal, d ** -0.5)
        out = fa3.fa3_attention(q, k, v, causal, d ** -0.5, pipeline=p if d == 128 else p64)
        err = (out.float() - ref).abs().max().item()
        assert err <= TOLERANCE[dtype], (f"{candidate} n_ctx={n_ctx} {dtype} d{d} causal={causal}: "
                                         f"|err| {err:.3e}")


@pytest.mark.parametrize("name", ["kperf_ws_overlap_persistent", "kperf_ws_pingpong_persistent"])
def test_profiled_persistent_launch_keeps_every_tile(name, tmp_path):
    """512 tiles on at most one CTA per SM: the warps' buffers hold every tile's records (none lost), and
    each consumer warp records one softmax per K/V block of each of its tiles."""
    _hopper()
    from kperf.tritonbench_ext.args import Shape
    from kperf.tritonbench_ext.kperf_metric import profile_variant
    info = profile_variant(VARIANTS[name], Shape(4, 16, 1024, 128), dtype="fp16", causal=False,
                           sm_scale=128 ** -0.5, out_dir=tmp_path, trace_ctas=2)
    prof = info.pop("profile")
    assert info["output_identical"] and info["lost"] == 0
    (dec,) = prof.decoded()
    assert dec.problems == []
    iv, unmatched = dec.intervals()
    assert len(unmatched) == 0
    names = {s.id: s.name for s in prof.launches[0].kernel.scopes.scopes}
    softmax = iv[np.array([names[int(s)] == "softmax" for s in iv["scope"]])]
    n_ctas = len(np.unique(iv["cta"]))
    assert n_ctas == min(512, torch.cuda.get_device_properties(0).multi_processor_count)
    # 512 tiles x 8 K/V blocks x 8 consumer warps softmax records in all
    assert len(softmax) == 512 * 8 * 8


@pytest.mark.parametrize("name", [n for n in KPERF_VARIANTS if n != "kperf_vanilla"])
def test_profiled_launch_is_identical_and_records_every_partition(name, tmp_path):
    _hopper()
    from kperf.tritonbench_ext.args import Shape
    from kperf.tritonbench_ext.kperf_metric import profile_variant
    info = profile_variant(VARIANTS[name], Shape(1, 4, 1024, 128), dtype="fp16", causal=False,
                           sm_scale=128 ** -0.5, out_dir=tmp_path, trace_ctas=2)
    prof = info.pop("profile")
    assert info["output_identical"]
    assert info["lost"] == 0
    (dec,) = prof.decoded()
    assert dec.problems == []
    iv, unmatched = dec.intervals()
    assert len(unmatched) == 0
    warps = np.unique(iv["warp"])
    assert set(range(12)) <= set(warps.tolist())  # producer warps 0-3, consumers 4-11
    names = {s.id: s.name for s in prof.launches[0].kernel.scopes.scopes}
    by_warp = {int(w): {names[int(s)] for s in np.unique(iv["scope"][iv["warp"] == w])} for w in warps}
    assert "wait_k_empty" in by_warp[0]
    assert "softmax" in by_warp[4] and "softmax" in by_warp[8]
    assert (tmp_path / name).exists() and info["trace"] and info["summary"]


def test_tritonbench_ext_runs_end_to_end(tmp_path):
    _hopper()
    from kperf.tritonbench_ext.__main__ import main
    rc = main(["--op", "flash_attention", "--only", "kperf_ws_pingpong,sdpa_flash", "--metrics",
               "tflops,accuracy,kperf", "--batch", "2", "--n-heads", "4", "--d-head", "128",
               "--seq-len", "1024", "--causal", "--standalone", "--output-dir", str(tmp_path), "--rep", "20",
               "--warmup", "5"])
    assert rc == 0
    import json
    doc = json.loads((tmp_path / "results.json").read_text())
    res = doc["rows"][0]["results"]
    assert res["kperf_ws_pingpong"]["accuracy"] is True and res["kperf_ws_pingpong"]["tflops"] > 0
    assert res["sdpa_flash"]["kperf"].startswith("n/a")
    assert (tmp_path / "kperf" / "kperf_ws_pingpong" / "b2_h4_s1024_d128_causal" / "summary.txt").exists()
