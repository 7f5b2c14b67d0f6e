"""GPU checks of every launch path a session sees: CUDA graphs, compiled kernels called directly,
autotuners, torch.compile (Inductor: default, max-autotune, reduce-overhead), sampling and budgets."""

from __future__ import annotations

import numpy as np
import pytest

pytestmark = pytest.mark.gpu

torch = pytest.importorskip("torch")


def _complete(dec, records_per_warp=None):
    """Every CTA ran, nothing lost or rejected, cycles never go back within a warp."""
    assert dec.problems == [] and dec.lost_total == 0 and dec.rejected_total == 0
    assert int(dec.ctas["ok"].sum()) == dec.n_ctas
    ev = dec.events
    key = ev["cta"].astype(np.int64) * 1024 + ev["warp"]
    same = key[1:] == key[:-1]
    assert np.all(np.diff(ev["cycles"])[same] >= 0)
    if records_per_warp is not None:
        assert len(ev) == dec.n_ctas * dec.geometry.num_warps * records_per_warp


def _vector_add():
    import triton
    import triton.language as tl

    import kperf

    @triton.jit
    def scaled_add(x, y, out, n, BLOCK: tl.constexpr):
        i = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
        with kperf.scope("load"):
            a = tl.load(x + i, mask=i < n)
            b = tl.load(y + i, mask=i < n)
        with kperf.scope("store"):
            tl.store(out + i, a * 2 + b, mask=i < n)
    return scaled_add


def test_cuda_graph_replays_each_give_their_own_records():
    import kperf
    k = kperf.profile(_vector_add())
    n = 1 << 20
    x, y = torch.rand(n, device="cuda"), torch.rand(n, device="cuda")
    out = torch.empty_like(x)
    k[(n // 1024,)](x, y, out, n, BLOCK=1024)  # warm up (compile) outside the capture
    torch.cuda.synchronize()
    k.reset()
    g = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g):
        k[(n // 1024,)](x, y, out, n, BLOCK=1024)
    assert not k.launches  # capture runs nothing
    for i in range(3):
        x.fill_(float(i))
        g.replay()
        torch.cuda.synchronize()
        assert torch.equal(out, x * 2 + y)
    decs = kperf.results(k).decoded()
    assert [d.info["replay"] for d in decs] == [1, 2, 3]
    assert len({d.info["cuda_graph"] for d in decs}) == 1
    for d in decs:
        _complete(d, records_per_warp=4)
    # each replay ran after the previous one: its records are later, not a copy of the same buffer
    starts = [int(d.events["time_ns"].min()) + d.t0_ns for d in decs]
    assert starts == sorted(starts) and len(set(starts)) == 3


def test_session_profiles_a_compiled_kernel_called_directly():
    import triton

    import kperf
    fn = _vector_add()
    n = 1 << 16
    x, y = torch.rand(n, device="cuda"), torch.rand(n, device="cuda")
    out = torch.empty_like(x)
    src = triton.compiler.ASTSource(fn, {"x": "*fp32", "y": "*fp32", "out": "*fp32", "n": "i32",
                                         "BLOCK": "constexpr"}, {"BLOCK": 1024})
    compiled = triton.compile(src)  # plain, before any session: a library's own kernel cache
    compiled[(n // 1024, 1, 1)](x, y, out, n, 1024)  # a compiled kernel takes its constexprs too
    plain = out.clone()
    out.zero_()
    with kperf.session() as s:
        compiled[(n // 1024, 1, 1)](x, y, out, n, 1024)
    torch.cuda.synchronize()
    assert torch.equal(out, plain)
    (dec,) = s.decoded()
    _complete(dec, records_per_warp=4)
    assert dec.info["launch_path"] == "compiled kernel"
    assert s.coverage.unseen() == []


def test_session_sampling_and_budget_bound_what_is_held():
    import kperf
    fn = _vector_add()
    n = 1 << 16
    x, y = torch.rand(n, device="cuda"), torch.rand(n, device="cuda")
    out = torch.empty_like(x)
    with kperf.session(every=10, memory_budget=64 << 10) as s:
        for _ in range(100):
            fn[(n // 1024,)](x, y, out, n, BLOCK=1024)
    rows = {k: (n_all, p) for k, n_all, p, _ in s.coverage.rows()}
    assert rows["scaled_add"] == (100, 10)
    assert len(s.launches) == 10
    for d in s.decoded():
        _complete(d, records_per_warp=4)
    # the capacity fitted to the kernel: 4 records per warp (no loop), not the default 1024
    assert s.launches[0].kernel.geometry.capacity == 4


def _block():
    """A small transformer block (pre-norm attention + MLP), nobody's kernel: Inductor writes them."""
    from bench.inductor_block import block
    return block(dim=256, heads=4)


def test_torch_compile_block_forward_backward_every_kernel_profiled():
    import kperf
    torch.manual_seed(0)
    block = _block()
    x = torch.randn(4, 128, 256, device="cuda", requires_grad=True)
    f = torch.compile(block)
    f(x).sum().backward()  # compiled (and tuned) plain, before the session
    grad_plain, out_plain = x.grad.clone(), f(x).detach().clone()
    x.grad = None
    with kperf.session(auto="kernel") as s:
        out = f(x)
        out.sum().backward()
    torch.cuda.synchronize()
    assert torch.equal(out.detach(), out_plain) and torch.equal(x.grad, grad_plain)
    rows = s.coverage.rows()
    assert rows and all(p == n for _, n, p, _ in rows), s.coverage.table()
    assert s.coverage.unseen() == []
    inductor = [d for d in s.decoded() if (d.info or {}).get("launch_path") == "inductor"]
    assert inductor, "no launch came through Inductor"
    assert any("aten." in d.info.get("inductor_ops", "") for d in inductor)
    for d in s.decoded():
        _complete(d)
    # after the session the same compiled function runs plain again: nothing captured, same results
    with kperf.session(kernels="no-such-kernel") as quiet:
        assert torch.equal(f(x).detach(), out_plain)
    assert not quiet.launches


def test_max_autotune_tunes_plain_and_profiles_the_winning_template():
    import torch._inductor.config as cfg

    import kperf
    torch.manual_seed(0)
    lin = torch.nn.Linear(256, 512).cuda()
    x = torch.randn(512, 256, device="cuda")
    with cfg.patch(max_autotune_gemm_backends="TRITON"):  # a Triton template must win (no cuBLAS)
        f = torch.compile(lambda t: torch.nn.functional.gelu(lin(t)), mode="max-autotune-no-cudagraphs")
        ref = f(x).clone()  # tuned here, plain
        with kperf.session(auto="kernel") as s:
            out = f(x)
    torch.cuda.synchronize()
    assert torch.equal(out, ref)
    assert s.coverage.unseen() == [] and s.launches, s.coverage.table()
    assert any("mm" in d.kernel for d in s.decoded())
    for d in s.decoded():
        _complete(d)


def test_reduce_overhead_cudagraph_replays_are_captured():
    import kperf
    torch.manual_seed(0)
    block = _block()
    x = torch.randn(4, 128, 256, device="cuda")
    with torch.no_grad():
        f = torch.compile(block, mode="reduce-overhead")
        ref = block(x)
        with kperf.session(auto="kernel") as s:
            outs = [f(x).clone() for _ in range(5)]  # warm-up, recording, then replays
    torch.cuda.synchronize()
    for o in outs:
        torch.testing.assert_close(o, ref, rtol=2e-3, atol=2e-3)
    replays = [d for d in s.decoded() if "replay" in (d.info or {})]
    assert replays, s.coverage.table()
    for d in s.decoded():
        _complete(d)
    by_kernel = {}
    for d in replays:
        by_kernel.setdefault(d.kernel, []).append(d.info["replay"])
    assert all(sorted(r) == r and len(set(r)) == len(r) for r in by_kernel.values())
