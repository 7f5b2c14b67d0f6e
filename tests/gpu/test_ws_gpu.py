"""On a Hopper GPU: the warp-specialized attention kernel profiled by automatic insertion.

Outputs stay bit-identical; the trace shows the producer warpgroup issuing TMA loads and the consumer
warpgroups waiting for them and running wgmma, with flows from each TMA issue to the wait it feeds.
With ``KPERF_OUT`` set, writes ``ws_attention_trace.json`` (Chrome/Perfetto) and
``ws_attention_summary.json`` there.
"""

import json
import os
import pathlib

import numpy as np
import pytest

import kperf

pytestmark = pytest.mark.gpu


def _hopper():
    import torch
    return torch.cuda.is_available() and torch.cuda.get_device_capability()[0] == 9


@pytest.fixture(scope="module")
def attn():
    if not _hopper():
        pytest.skip("needs a Hopper GPU (sm_90)")
    from kperf.examples import attention
    return attention


@pytest.mark.parametrize("causal,head_dim,dtype", [(False, 128, "float16"), (True, 64, "bfloat16")])
def test_outputs_unchanged_with_auto_insertion(attn, causal, head_dim, dtype):
    import torch
    torch.manual_seed(0)
    dt = getattr(torch, dtype)
    q, k, v = (torch.randn(2, 8, 1024, head_dim, device="cuda", dtype=dt) for _ in range(3))
    plain = attn.attention(q, k, v, causal)
    torch.testing.assert_close(plain, attn.reference(q, k, v, causal), atol=2e-2, rtol=0)
    profiled = kperf.profile(attn.attn_fwd_kernel, auto="mma,tma")
    out = attn.attention(q, k, v, causal, kernel=profiled)
    torch.cuda.synchronize()
    assert torch.equal(out, plain)
    assert kperf.results(profiled).decoded()[0].events.size > 0


def test_trace_shows_producer_and_consumers_with_tma_waits_and_wgmma(attn):
    import torch
    torch.manual_seed(0)
    q, k, v = (torch.randn(4, 16, 4096, 128, device="cuda", dtype=torch.float16) for _ in range(3))
    plain = attn.attention(q, k, v)
    profiled = kperf.profile(attn.attn_fwd_kernel, auto="mma,tma")
    out = attn.attention(q, k, v, kernel=profiled)
    torch.cuda.synchronize()
    assert torch.equal(out, plain)

    launch = kperf.results(profiled).launches[-1]
    d = launch.decoded()
    assert d.lost_total == 0 and not d.problems, d.summary()
    roles = d.warp_roles
    assert roles and roles[0].startswith("default (producer, TMA") and "consumer" in roles[4]
    names = {int(k): v for k, v in d.scopes.items()}
    ev = d.events
    scope_name = np.array([names[int(s)] for s in range(max(names) + 1)], dtype=object)
    warp_kind = np.array(["producer" if "producer" in r else "consumer" for r in roles])
    kinds = warp_kind[ev["warp"]]
    ev_names = scope_name[ev["scope"]]
    producer_scopes = set(ev_names[kinds == "producer"])
    consumer_scopes = set(ev_names[kinds == "consumer"])
    assert any(n.startswith("tma.load") for n in producer_scopes)
    assert not any(n.startswith("wgmma") for n in producer_scopes)
    assert any(n.startswith("tma.wait") for n in consumer_scopes)
    assert any(n.startswith("wgmma") for n in consumer_scopes)

    intervals, unmatched = d.intervals()
    assert len(unmatched) == 0
    flows = launch.flows()
    assert len(flows) > 0
    in_flight = flows["dst_ns"] - flows["src_ns"]
    assert np.median(in_flight) > 0  # a TMA load completes after it is issued

    out_dir = os.environ.get("KPERF_OUT")
    if out_dir:
        out = pathlib.Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        from kperf.tracing.chrome import write_chrome_trace
        write_chrome_trace(out / "ws_attention_trace.json", d, flows=flows)
        dur = intervals["end_ns"] - intervals["start_ns"] if "end_ns" in intervals.dtype.names else None
        per_scope = {}
        if dur is not None:
            for sid in np.unique(intervals["scope"]):
                sel = intervals["scope"] == sid
                role = sorted(set(warp_kind[intervals["warp"][sel]]))
                per_scope[names[int(sid)]] = {"count": int(sel.sum()), "mean_ns": float(dur[sel].mean()),
                                              "p50_ns": float(np.median(dur[sel])), "warps": role}
        summary = {
            "device": torch.cuda.get_device_name(), "shape": [4, 16, 4096, 128], "dtype": "fp16",
            "auto": "mma,tma", "outputs_identical": True, "events": int(len(ev)), "ctas": int(d.n_ctas),
            "clock_ghz": float(d.clock_ghz), "warp_roles": roles, "flows": int(len(flows)),
            "tma_in_flight_ns": {"median": float(np.median(in_flight)),
                                 "p95": float(np.percentile(in_flight, 95))},
            "scopes": per_scope,
        }
        (out / "ws_attention_summary.json").write_text(json.dumps(summary, indent=1))
