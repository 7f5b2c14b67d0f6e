"""On a Hopper GPU: the lowering choices for TMA/wgmma and warp-specialized kernels keep every record.

Merged blocks (the counter bumped only where control flow joins or leaves), the lane-varying record
pointer and shared-memory staging with one recording warp per warpgroup must leave, in every warp of
every CTA, exactly the record stream of the lowering that bumps the counter at every label and branch
through a warp-uniform pointer (``merge_blocks=False, vector_pointer=False``, kperf's lowering before):
the same scopes in the same order, nothing lost, times increasing; and the kernel's output
bit-identical to the plain kernel's.  Kernels: the Gluon TMA + wgmma GEMM, the
warp-specialized attention of examples/ and the held-out one of bench/ (automatic insertion).
"""

import numpy as np
import pytest

import kperf
from kperf.dialect.options import ProfileConfig

pytestmark = pytest.mark.gpu


@pytest.fixture(scope="module")
def torch():
    import torch
    if not torch.cuda.is_available() or torch.cuda.get_device_capability()[0] != 9:
        pytest.skip("needs a Hopper GPU (sm_90)")
    return torch


def _streams(dec) -> dict:
    """(cta, warp) -> the warp's (scope, is_end) sequence in record order; asserts times increase."""
    ev = np.sort(dec.events, order=["cta", "warp", "seq"])
    key = ev["cta"].astype(np.int64) * 64 + ev["warp"]
    starts = np.flatnonzero(np.r_[True, key[1:] != key[:-1]])
    same = key[1:] == key[:-1]
    assert np.all(np.diff(ev["cycles"])[same] >= 0), "records of a warp out of time order"
    assert np.all(np.diff(ev["seq"].astype(np.int64))[same] == 1), "a gap in a warp's record sequence"
    out = {}
    for a, b in zip(starts, np.r_[starts[1:], len(ev)], strict=True):
        out[int(key[a])] = (ev["scope"][a:b].astype(np.int64) * 2 + ev["is_end"][a:b]).tobytes()
    return out


def _profile(run, kernel, plain, torch, **options):
    k = kperf.profile(kernel, config=ProfileConfig(**options))
    out = run(k)
    torch.cuda.synchronize()
    assert torch.equal(out, plain), options
    (dec,) = kperf.results(k).decoded()
    assert dec.lost_total == 0 and dec.problems == [], (options, dec.problems)
    return dec


def _check_variants(run, kernel, torch, variants, **common):
    plain = run(kernel).clone()
    base = _profile(run, kernel, plain, torch, merge_blocks=False, vector_pointer=False, **common)
    want = _streams(base)
    assert want
    for opts in variants:
        dec = _profile(run, kernel, plain, torch, **common, **opts)
        got = _streams(dec)
        if opts.get("granularity") in ("warpgroup", "role"):  # only the recording warps' streams
            recording = set(dec.geometry.warps)
            assert got == {k: v for k, v in want.items() if k % 64 in recording}, opts
        else:
            assert got == want, opts
        assert dec.n_events == sum(len(v) // 8 for v in got.values())
    return base


def test_gluon_gemm_lowerings_keep_every_record(torch):
    from kperf.examples import gluon_matmul as gm
    torch.manual_seed(0)
    a = torch.randn(2048, 2048, device="cuda", dtype=torch.float16)
    b = torch.randn(2048, 2048, device="cuda", dtype=torch.float16)
    base = _check_variants(lambda k: gm.matmul(a, b, kernel=k), gm.gluon_matmul_kernel, torch,
                           [{}, {"vector_pointer": False}, {"store": "auto", "granularity": "warpgroup"},
                            {"store": "auto"}, {"store": "auto", "granularity": "role"},
                            {"store": "auto", "granularity": "role", "hoist_tags": True},
                            {"defer_stores": True},
                            {"store": "auto", "granularity": "role", "hoist_arith": "all",
                             "defer_stores": True}])
    assert base.n_events == (2048 // 128) ** 2 * gm.NUM_WARPS * 4 * (2048 // gm.BK)


@pytest.mark.parametrize("which", ["examples", "heldout-no-ws", "heldout-ws"])
def test_ws_attention_lowerings_keep_every_record(torch, which):
    options = {}
    if which == "examples":
        from kperf.examples import attention as mod
        kernel, shape, warps = mod.attn_fwd_kernel, (2, 16, 4096, 128), 12
    else:
        from bench import heldout_attention as mod
        ws = which == "heldout-ws"
        kernel, shape, warps = mod.heldout_attn_kernel, (2, 32, 4096, 64), None if ws else mod.NUM_WARPS
        # the WS build that runs on Hopper with Triton 3.6 (others hang or give NaN before kperf is involved)
        options = {"warp_specialize": True, **mod.WS_BUILD} if ws else {"warp_specialize": False}
    torch.manual_seed(0)
    q, k, v = (torch.randn(shape, device="cuda", dtype=torch.float16) for _ in range(3))

    def run(kern):
        return mod.attention(q, k, v, kernel=kern, **options)

    ref = mod.reference(q[:1, :4], k[:1, :4], v[:1, :4])  # (batch, head) pairs are independent
    torch.testing.assert_close(run(kernel)[:1, :4], ref, atol=2e-2, rtol=0)
    base = _check_variants(run, kernel, torch, [{}, {"store": "auto", "granularity": "warpgroup"},
                                                {"store": "auto", "granularity": "role"},
                                                {"store": "auto", "granularity": "role", "hoist_tags": True},
                                                {"defer_stores": True},
                                                {"store": "auto", "granularity": "role", "hoist_arith": "all",
                                                 "defer_stores": True}],
                                auto="mma,tma")
    # every warp records (examples: the producer warpgroup and both consumer warpgroups; held-out: every
    # warp of the kernel as compiled, partitions included)
    assert len(np.unique(base.events["warp"])) == (warps or base.geometry.num_warps)
