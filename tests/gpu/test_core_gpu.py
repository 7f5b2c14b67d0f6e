"""GPU checks of the core path: results unchanged, every record present, sane timelines."""

from __future__ import annotations

import numpy as np
import pytest

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
    import vector_add as va
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
def test_gemm_records_monotonic_and_output_identical(clock):
    import kperf
    import matmul as mm
    torch.manual_seed(0)
    M = N = K = 1024
    a = torch.randn(M, K, device="cuda", dtype=torch.float16)
    b = torch.randn(K, N, device="cuda", dtype=torch.float16)
    plain = mm.matmul(a, b)
    k = kperf.profile(mm.matmul_kernel, clock=clock)
    out = mm.matmul(a, b, kernel=k)
    torch.cuda.synchronize()
    assert torch.equal(out, plain)
    n_ctas = (M // 128) * (N // 128)
    _check_timeline(kperf.results(k), n_ctas, 8, 4 * (K // 64) + 2)


def test_keep_first_overflow_is_exact():
    import kperf
    import matmul as mm
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
    import matmul as mm
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
    import vector_add as va
    x = torch.rand(1 << 16, device="cuda")
    with kperf.session(tmp_path, kernels="add") as s:
        va.add(x, x)
        va.add(x, x)
    assert len(s.launches) == 2
    trace = json.loads((tmp_path / "chrome_trace.json").read_text())
    assert any(e.get("ph") == "X" for e in trace["traceEvents"])
    assert (tmp_path / "summary.txt").exists()


def kernel_device_ms(fn, name: str) -> float:
    """Device time of the one kernel called ``name`` that ``fn`` launches, from the torch profiler (CUPTI)."""
    from torch.profiler import ProfilerActivity, profile
    with profile(activities=[ProfilerActivity.CUDA]) as p:
        fn()
        torch.cuda.synchronize()
    times = [e.device_time for e in p.events() if name in e.name]
    assert len(times) == 1, [e.name for e in p.events()]
    return times[0] / 1e3


def test_trace_duration_matches_kernel_time():
    """The span from the first CTA entry to the last CTA exit equals the kernel's device time (within 5%)."""
    import kperf
    import matmul as mm
    a = torch.randn(4096, 4096, device="cuda", dtype=torch.float16)
    b = torch.randn(4096, 4096, device="cuda", dtype=torch.float16)
    k = kperf.profile(mm.matmul_kernel)
    mm.matmul(a, b, kernel=k)  # compile + warm up
    torch.cuda.synchronize()
    k.reset()
    ms = kernel_device_ms(lambda: mm.matmul(a, b, kernel=k), "matmul_kernel")
    (dec,) = kperf.results(k).decoded()
    trace_ms = dec.duration_ns / 1e6
    assert abs(trace_ms - ms) / ms < 0.05, (trace_ms, ms)
