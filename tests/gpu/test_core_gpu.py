"""GPU checks of the core path: results unchanged, every record present, sane timelines."""

from __future__ import annotations

import numpy as np
import pytest

from bench.timing import device_times_ms

pytestmark = pytest.mark.gpu

torch = pytest.importorskip("torch")


def _check_timeline(prof, n_ctas, num_warps, records_per_warp):
    (dec,) = prof.decoded()
    ev = dec.events
    assert dec.problems == []
    assert dec.lost_total == 0
    assert int(dec.ctas["ok"].sum()) == n_ctas
    assert len(ev) == n_ctas * num_warps * records_per_warp
    # per warp, in program order, cycles never go back
    key = ev["cta"].astype(np.int64) * 1024 + ev["warp"]
    same = key[1:] == key[:-1]
    assert np.all(np.diff(ev["cycles"])[same] >= 0)
    assert np.all(np.diff(ev["time_ns"])[same] >= 0)
    iv, unmatched = dec.intervals()
    assert len(unmatched) == 0
    assert len(iv) == len(ev) // 2
    assert np.all(iv["end_ns"] >= iv["start_ns"])
    assert 0.5 < dec.clock_ghz < 3.0
    return dec


def test_vector_add_records_and_results():
    import kperf
    from kperf.examples import vector_add as va
    x = torch.rand(1 << 20, device="cuda")
    y = torch.rand(1 << 20, device="cuda")
    plain = va.add(x, y)
    k = kperf.profile(va.add_kernel)
    out = va.add(x, y, kernel=k)
    torch.cuda.synchronize()
    assert torch.equal(out, plain)
    prof = kperf.results(k)
    n_ctas = (1 << 20) // 1024
    _check_timeline(prof, n_ctas, 4, 4)


@pytest.mark.parametrize("clock", ["clock", "clock64", "globaltimer"])
def test_gemm_records_monotonic_and_output_identical(clock, profiled_gemm):
    prof, n_ctas, per_warp = profiled_gemm(clock=clock)
    _check_timeline(prof, n_ctas, 8, per_warp)


def test_keep_first_overflow_is_exact():
    import kperf
    from kperf.examples import matmul as mm
    a = torch.randn(256, 4096, device="cuda", dtype=torch.float16)
    b = torch.randn(4096, 256, device="cuda", dtype=torch.float16)
    k = kperf.profile(mm.matmul_kernel, capacity=100)
    mm.matmul(a, b, kernel=k)
    (dec,) = kperf.results(k).decoded()
    per_warp = 4 * (4096 // 64) + 2
    n_warps = 4 * 8
    assert dec.lost_total == n_warps * (per_warp - 100)
    assert len(dec.events) == n_warps * 100
    assert "capacity" in kperf.results(k).table()


def test_wrap_keeps_latest():
    import kperf
    from kperf.examples import matmul as mm
    a = torch.randn(256, 4096, device="cuda", dtype=torch.float16)
    b = torch.randn(4096, 256, device="cuda", dtype=torch.float16)
    k = kperf.profile(mm.matmul_kernel, capacity=128, strategy="wrap")
    mm.matmul(a, b, kernel=k)
    (dec,) = kperf.results(k).decoded()
    per_warp = 4 * (4096 // 64) + 2
    assert len(dec.events) == 32 * 128
    assert dec.events["seq"].max() == per_warp - 1


def test_session_writes_trace(tmp_path):
    import json

    import kperf
    from kperf.examples import vector_add as va
    x = torch.rand(1 << 16, device="cuda")
    with kperf.session(tmp_path, kernels="add") as s:
        va.add(x, x)
        va.add(x, x)
    assert len(s.launches) == 2
    trace = json.loads((tmp_path / "chrome_trace.json").read_text())
    assert any(e.get("ph") == "X" for e in trace["traceEvents"])
    assert (tmp_path / "summary.txt").exists()


def test_trace_duration_matches_kernel_time():
    """The span from the first CTA entry to the last CTA exit equals the kernel's device time (within 5%)."""
    import kperf
    from kperf.examples import matmul as mm
    a = torch.randn(4096, 4096, device="cuda", dtype=torch.float16)
    b = torch.randn(4096, 4096, device="cuda", dtype=torch.float16)
    k = kperf.profile(mm.matmul_kernel)
    mm.matmul(a, b, kernel=k)  # compile + warm up
    torch.cuda.synchronize()
    k.reset()
    (ms,) = device_times_ms(lambda: mm.matmul(a, b, kernel=k), 1, "matmul_kernel")  # CUPTI, kernel only
    (dec,) = kperf.results(k).decoded()
    trace_ms = dec.duration_ns / 1e6
    assert abs(trace_ms - ms) / ms < 0.05, (trace_ms, ms)
    # the piecewise clock map follows the SM clocks through the launch (DVFS included)
    # (no problem: every (globaltimer, clock64) pair lies within 1 us of its SM's map; typically ~40 ns)
    assert dec.problems == []
    assert float(np.median(dec.sm_clocks["rms_ns"])) < 100.0
    print(f"\nSM clocks {dec.sm_clocks['ghz_min'].min():.3f}-{dec.sm_clocks['ghz_max'].max():.3f} GHz, "
          f"max residual {dec.sm_clocks['max_residual_ns'].max():.0f} ns, trace {trace_ms:.4f} ms, "
          f"CUPTI {ms:.4f} ms")


def _autotuned_add():
    """A fresh autotuner (its own cache and best config) over the example's ``add_kernel``."""
    import triton

    from kperf.examples import vector_add
    return triton.autotune(configs=[triton.Config({"BLOCK": 512}, num_warps=4),
                                    triton.Config({"BLOCK": 1024}, num_warps=4),
                                    triton.Config({"BLOCK": 2048}, num_warps=8)],
                           key=["n"])(vector_add.add_kernel)


@pytest.mark.parametrize("profile_autotune", [False, True])
def test_autotuned_kernel_profiles_launches_not_timing_runs(profile_autotune):
    import triton

    import kperf
    k = kperf.profile(_autotuned_add(), profile_autotune=profile_autotune)
    n = 1 << 22
    x, y = torch.rand(n, device="cuda"), torch.rand(n, device="cuda")
    out = torch.empty_like(x)
    k[lambda meta: (triton.cdiv(n, meta["BLOCK"]),)](x, y, out, n)  # tunes, then launches once
    k[lambda meta: (triton.cdiv(n, meta["BLOCK"]),)](x, y, out, n)  # cached choice
    torch.cuda.synchronize()
    assert torch.equal(out, x + y)
    prof = kperf.results(k)
    if not profile_autotune:
        assert len(prof) == 2  # the two launches; the autotuner's timing runs ran plain
    else:
        assert len(prof) > 2
    best = k.fn.best_config
    dec = prof.decoded()[-1]
    block = best.kwargs["BLOCK"]
    assert dec.geometry.num_warps == best.num_warps
    _check_timeline(kperf.Profile([prof.launches[-1]]), n // block, best.num_warps, 4)


def test_launches_on_two_streams_are_each_complete():
    import kperf
    from kperf.examples import matmul as mm
    torch.manual_seed(1)
    a1 = torch.randn(2048, 2048, device="cuda", dtype=torch.float16)
    b1 = torch.randn(2048, 2048, device="cuda", dtype=torch.float16)
    a2 = torch.randn(1024, 3072, device="cuda", dtype=torch.float16)
    b2 = torch.randn(3072, 1024, device="cuda", dtype=torch.float16)
    ref1, ref2 = mm.matmul(a1, b1), mm.matmul(a2, b2)
    k = kperf.profile(mm.matmul_kernel)
    s1, s2 = torch.cuda.Stream(), torch.cuda.Stream()
    torch.cuda.synchronize()
    with torch.cuda.stream(s1):
        o1 = mm.matmul(a1, b1, kernel=k)
    with torch.cuda.stream(s2):
        o2 = mm.matmul(a2, b2, kernel=k)
    torch.cuda.synchronize()
    assert torch.equal(o1, ref1) and torch.equal(o2, ref2)
    prof = kperf.results(k)
    assert len(prof) == 2
    d1, d2 = prof.decoded()
    assert d1.problems == [] and d2.problems == []
    assert len(d1.events) == 16 * 16 * 8 * (4 * (2048 // 64) + 2)
    assert len(d2.events) == 8 * 8 * 8 * (4 * (3072 // 64) + 2)
