"""GPU checks of the masked-attention kernels (examples/masked_attention.py): every mask family and schedule
against PyTorch SDPA in float32 with the dense element mask (fp16 and bf16, head dim 64 and 128), on
random inputs with the output poisoned first; at a real size (4096 tokens, 128 x 128 blocks); profiled
launches leave the output unchanged and lose no record; the persistent kernel's tile queue hands every
tile out once and resets itself between launches."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

pytestmark = pytest.mark.gpu

torch = pytest.importorskip("torch")

from kperf.examples import block_masks as bmk  # noqa: E402
from kperf.examples import masked_attention as ma  # noqa: E402

TOLERANCE = {"fp16": 1e-2, "bf16": 2e-2}  # max |out - SDPA fp32| on N(0, 1) inputs (tritonbench_ext.runner)
FAMILIES = ("dense",) + bmk.FAMILIES
CONFIGS = list(itertools.product(("fp16", "bf16"), (64, 128)))


def _hopper():
    if torch.cuda.get_device_capability()[0] != 9:
        pytest.skip("the masked-attention kernels use Hopper TMA descriptors (sm_90)")


def _qkv(shape, dtype, seed):
    gen = torch.Generator(device="cuda").manual_seed(seed)
    dt = {"fp16": torch.float16, "bf16": torch.bfloat16}[dtype]
    return tuple(torch.randn(shape, device="cuda", dtype=dt, generator=gen) for _ in range(3))


def _run(q, k, v, p, schedule, **kw):
    out = torch.full_like(q, float("nan"))  # every element must be written
    ma.masked_attention(q, k, v, p, schedule, out=out, **kw)
    torch.cuda.synchronize()
    return out


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("cfg", CONFIGS, ids=[f"{t}-d{d}" for t, d in CONFIGS])
def test_every_schedule_matches_sdpa_fp32(family, cfg):
    """Small blocks' worth of structure at 1024 tokens: 8 query blocks, per-head windows and random blocks,
    per-batch documents; the three schedules give the same bits."""
    _hopper()
    dtype, d = cfg
    spec = bmk.make_mask(family, 2, 3, 1024, seed=7)
    p = ma.prepare(spec, "cuda")
    q, k, v = _qkv((2, 3, 1024, d), dtype, seed=d)
    ref = ma.reference(q, k, v, spec)
    outs = {}
    for schedule in ma.SCHEDULES if family != "dense" else ("grid",):
        outs[schedule] = _run(q, k, v, p, schedule)
        err = (outs[schedule].float() - ref).abs().max().item()
        assert err <= TOLERANCE[dtype], f"{family} {schedule} {cfg}: max |err| {err:.3e}"
    assert all(torch.equal(o, outs["grid"]) for o in outs.values())


@pytest.mark.parametrize("family", bmk.FAMILIES)
def test_real_size(family):
    """4096 tokens, 16 heads, head dim 128, fp16: the default family parameters of the benchmark."""
    _hopper()
    spec = bmk.make_mask(family, 1, 16, 4096, seed=1)
    p = ma.prepare(spec, "cuda")
    q, k, v = _qkv((1, 16, 4096, 128), "fp16", seed=3)
    ref = ma.reference(q, k, v, spec)
    for schedule in ma.SCHEDULES:
        err = (_run(q, k, v, p, schedule).float() - ref).abs().max().item()
        assert err <= TOLERANCE["fp16"], f"{family} {schedule}: max |err| {err:.3e}"


@pytest.mark.parametrize("programs", [1, 3, 7])
def test_persistent_queue_across_launches(programs):
    """Few CTAs, many tiles of unequal work, three launches in a row on one queue: each launch hands every
    tile out exactly once (the ticket log) and leaves the counters at 0 for the next."""
    _hopper()
    spec = bmk.bigbird(2, 3, 2048, seed=4)
    p = ma.prepare(spec, "cuda")
    q, k, v = _qkv((2, 3, 2048, 64), "fp16", seed=programs)
    first = None
    for _ in range(3):
        p.tile_cta.fill_(-1)
        out = _run(q, k, v, p, "persistent", programs=programs, log_tiles=True)
        assert p.queue.tolist() == [0, 0]
        log = p.tile_cta.cpu().numpy()
        assert (log >= 0).all() and (log < programs).all()
        first = out if first is None else first
        assert torch.equal(out, first)
    assert len(np.unique(log)) == programs  # every CTA took tiles


@pytest.mark.parametrize("schedule", ma.SCHEDULES)
def test_profiled_launch_is_identical_and_complete(schedule):
    """kperf.profile on each schedule: the same output bits as the plain kernel, no lost record, a ``tile``
    interval for every tile, and the imbalance summary computed."""
    _hopper()
    spec = bmk.document(2, 4, 4096, seed=2)
    p = ma.prepare(spec, "cuda")
    q, k, v = _qkv((2, 4, 4096, 128), "fp16", seed=5)
    plain = _run(q, k, v, p, schedule)
    res = ma.profile_schedule(q, k, v, p, schedule)
    assert torch.equal(res["out"], plain)
    s = res["summary"]
    assert s["lost_records"] == 0 and s["tiles_missing"] == 0 and s["tiles"] == p.lists.n_tiles
    assert s["work_time_r"] > 0.5, s  # a tile's time follows its key blocks
    assert 0 <= s["sm_idle_frac"] < 1 and s["kernel_span_ns"] > 0
