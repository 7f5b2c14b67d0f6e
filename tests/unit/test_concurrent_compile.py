"""Two processes compiling the same instrumented kernel at once share Triton's cache safely: both
succeed, and both get the same binary as a compile alone (Triton writes cache entries atomically; kperf's
stage hook keeps no state between processes).  The GPU side of this is tests/gpu/test_faults_gpu.py."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

COMPILE = textwrap.dedent("""
    import hashlib, kperf
    from kperf.examples import vector_add as va
    sig = {"x_ptr": "*fp32", "y_ptr": "*fp32", "out_ptr": "*fp32", "n": "i32", "BLOCK": "constexpr"}
    r = kperf.compile(va.add_kernel, signature=sig, constexprs={"BLOCK": 1024}, num_warps=4)
    print(r.num_records, hashlib.sha256(r.cubin).hexdigest())
    """)


def test_two_processes_compile_the_same_instrumented_kernel_into_one_cache(tmp_path):
    env = {**os.environ, "TRITON_CACHE_DIR": str(tmp_path / "cache")}
    procs = [subprocess.Popen([sys.executable, "-c", COMPILE], env=env, text=True, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE) for _ in range(2)]
    outs = []
    for p in procs:
        out, err = p.communicate(timeout=300)
        assert p.returncode == 0, err[-3000:]
        outs.append(out.split())
    again = subprocess.run([sys.executable, "-c", COMPILE], env=env, text=True, capture_output=True,
                           check=True)
    assert outs[0] == outs[1] == again.stdout.split()
    assert outs[0][0] == "4"
