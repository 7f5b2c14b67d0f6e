"""Faults and concurrency on the GPU: a profiled kernel that faults ends in a clear report, not a raw
CUDA traceback or a hang; two processes that compile and run the same instrumented kernel at once share
Triton's cache and both get complete, identical profiles.

Each case runs in its own process: a CUDA fault (illegal address) is sticky and leaves the process that
hit it unable to use the GPU, so the test process must not be the one that faults.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

torch = pytest.importorskip("torch")

pytestmark = pytest.mark.gpu

FAULTING = textwrap.dedent("""
    import torch, triton, kperf
    from kperf.examples import vector_add as va
    x = torch.randn(1024, device="cuda")
    with kperf.session(OUT) as s:
        n = 1 << 30                      # far past the 4 KB tensors: an illegal address
        out = torch.empty_like(x)
        va.add_kernel[(triton.cdiv(n, 1024),)](x, x, out, n, BLOCK=1024)
    """)

INTERRUPTED = textwrap.dedent("""
    import json, os, signal, threading, torch, kperf
    from kperf.examples import vector_add as va
    x = torch.randn(1 << 14, device="cuda")
    threading.Timer(2.0, lambda: os.kill(os.getpid(), signal.SIGINT)).start()
    launches = 0
    try:
        with kperf.session(capacity=8) as s:
            while True:                  # Ctrl-C lands somewhere in here
                va.add(x, x)
                torch.cuda.synchronize()
                launches += 1
    except KeyboardInterrupt:
        pass
    k = kperf.profile(va.add_kernel)     # the process goes on profiling
    out = va.add(x, x, kernel=k)
    d = kperf.results(k).launches[0].decoded()
    print(json.dumps({"interrupted_after": launches, "session_launches": len(s.launches),
                      "identical": bool(torch.equal(out, x + x)), "events": int(len(d.events)),
                      "problems": list(d.problems)}))
    """)

CONCURRENT = textwrap.dedent("""
    import json, sys, torch, kperf
    from kperf.examples import matmul as mm
    torch.manual_seed(int(sys.argv[1]))
    a = torch.randn(1024, 1024, device="cuda", dtype=torch.float16)
    b = torch.randn(1024, 1024, device="cuda", dtype=torch.float16)
    plain = mm.matmul(a, b)
    k = kperf.profile(mm.matmul_kernel)
    out = mm.matmul(a, b, kernel=k)
    d = kperf.results(k).launches[0].decoded()
    print(json.dumps({"identical": bool(torch.equal(out, plain)), "events": int(len(d.events)),
                      "lost": int(d.lost_total), "problems": list(d.problems)}))
    """)


def _python(code: str, *args: str, env: dict):
    return subprocess.Popen([sys.executable, "-c", code, *args], env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def test_a_faulting_kernel_ends_in_a_clear_report(tmp_path):
    code = f"OUT = {str(tmp_path / 'out')!r}\n" + FAULTING
    proc = _python(code, env=os.environ.copy())
    try:
        out, err = proc.communicate(timeout=180)  # never a hang
    except subprocess.TimeoutExpired:
        proc.kill()
        raise
    assert proc.returncode != 0
    assert "KperfError" in err and "profile buffer cannot be read" in err and "compute-sanitizer" in err, err
    assert not (tmp_path / "out" / "chrome_trace.json").exists()  # nothing half-written


def test_two_processes_compile_and_run_the_same_instrumented_kernel(tmp_path):
    env = {**os.environ, "TRITON_CACHE_DIR": str(tmp_path / "cache")}  # empty: both compile at once
    procs = [_python(CONCURRENT, str(seed), env=env) for seed in (1, 2)]
    results = []
    for p in procs:
        out, err = p.communicate(timeout=300)
        assert p.returncode == 0, err[-3000:]
        results.append(json.loads(out.strip().splitlines()[-1]))
    expected_events = (1024 // 128) ** 2 * 8 * (4 * (1024 // 64) + 2)  # CTAs x warps x records per warp
    for r in results:
        assert r == {"identical": True, "events": expected_events, "lost": 0, "problems": []}, r


def test_an_interrupted_session_leaves_the_process_profiling():
    proc = _python(INTERRUPTED, env=os.environ.copy())
    out, err = proc.communicate(timeout=180)
    assert proc.returncode == 0, err[-3000:]
    r = json.loads(out.strip().splitlines()[-1])
    assert r["interrupted_after"] > 0 and r["session_launches"] >= r["interrupted_after"], r
    # 16 CTAs x 4 warps x 4 records (two scopes) in the launch after the interrupt
    assert r == {**r, "identical": True, "events": 16 * 4 * 4, "problems": []}, r
