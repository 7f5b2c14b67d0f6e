"""Decode raw profile buffers that an H100 wrote (bench/capture_real_profiles.py), on any machine."""

from __future__ import annotations

import json
import pathlib

import numpy as np
import pytest

from kperf.dialect.layout import Geometry
from kperf.tracing import decode

DATA = pathlib.Path(__file__).resolve().parents[1] / "data" / "h100"
# examples/matmul.py on 1024^3: 8x8 CTAs of 8 warps; 16 K-iterations x 4 records + 2 epilogue records
CTAS, WARPS, PER_WARP = 64, 8, 4 * (1024 // 64) + 2


def load(case: str):
    z = np.load(DATA / f"{case}.npz")
    info = json.loads(str(z["info"]))
    g = Geometry(info["num_warps"], info["capacity"], info["clock"])
    d = decode(z["buffer"], g, strategy=info["strategy"], n_ctas=info["n_ctas"], scopes=info["scopes"])
    return info, d


def _monotonic_per_warp(d) -> bool:
    e = d.events
    same = (e["cta"][1:] == e["cta"][:-1]) & (e["warp"][1:] == e["warp"][:-1])
    return bool((np.diff(e["cycles"])[same] >= 0).all() and (np.diff(e["time_ns"])[same] >= 0).all())


def test_gemm_every_record_present_and_sane():
    info, d = load("gemm1024_clock")
    assert "H100" in info["device"]
    assert d.problems == []
    assert d.lost_total == 0
    assert len(d.events) == CTAS * WARPS * PER_WARP
    assert _monotonic_per_warp(d)
    assert 1.0 < d.clock_ghz < 2.1  # H100 SXM boosts to 1.98 GHz
    iv, unmatched = d.intervals()
    assert len(unmatched) == 0 and len(iv) == len(d.events) // 2
    names = {s["name"] for s in info["scopes"]}
    assert {"load", "mma"} <= names
    # every CTA lies inside the launch, and the launch is a few microseconds long
    assert 1_000 < d.duration_ns < 100_000
    assert (iv["end_ns"] >= iv["start_ns"]).all()


@pytest.mark.parametrize("case,strategy",
                         [("gemm1024_overflow64", "keep-first"), ("gemm1024_wrap64", "wrap")])
def test_small_buffer_loses_an_exact_count(case, strategy):
    info, d = load(case)
    assert info["strategy"] == strategy and info["capacity"] == 64
    assert d.lost_total == CTAS * WARPS * (PER_WARP - 64)
    assert len(d.events) == CTAS * WARPS * 64
    seq = d.events["seq"]
    if strategy == "keep-first":
        assert seq.max() == 63  # the first 64 records of every warp
    else:
        assert seq.min() == PER_WARP - 64 and seq.max() == PER_WARP - 1  # the latest 64
    assert _monotonic_per_warp(d)


def test_cuda_graph_replays_of_an_inductor_kernel_each_carry_their_own_records():
    """torch.compile(mode="reduce-overhead") on an H100 (bench/results/h100-2026-12-06-s12): Inductor's
    layer-norm kernel, launched once while CUDA graph trees recorded and then replayed three times, kept
    as four launches. Each replay is its own launch with its own records (never the recording run's
    buffer again, nor another replay's), numbered, and in time order."""
    from kperf.profile_data import Profile
    launches = Profile.load(DATA / "reduce_overhead_layer_norm.kperf").decoded()
    assert [d.kernel for d in launches] == ["triton_per_fused_native_layer_norm_0"] * 4
    assert [(d.info or {}).get("replay") for d in launches] == [None, 1, 2, 3]
    assert {d.info["cuda_graph"] for d in launches[1:]} == {2}
    assert all(d.info["launch_path"] == "inductor" and d.info["inductor_ops"] == "aten.native_layer_norm"
               for d in launches)
    for d in launches:
        assert d.lost_total == 0 and d.problems == [] and d.n_events == 2 * d.n_ctas == 2048
        assert _monotonic_per_warp(d)
    assert np.all(np.diff([d.t0_ns for d in launches]) > 0)
    starts = [int(d.events["cycles"].min()) for d in launches]
    assert len(set(starts)) == 4 and starts == sorted(starts)  # four runs of the kernel, not one copied
