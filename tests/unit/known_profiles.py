"""Profiles with known contents for the statistics, plot, diff and CLI tests.

Built with the reference encoder and decoded by ``kperf.tracing.decode``, so the whole path runs.
Times are exact: the globaltimer step is 1 ns, and for ``clock64`` every SM runs at exactly
``GHZ`` (the fitted rate is then exact), so every number in the tables below can be asserted.

``vanilla()``: kernel "attn", 3 CTAs of 2 warps on 2 SMs, warp 0 the "producer", warp 1 the
"consumer"; times in ns after each CTA's entry::

    producer  load [100,1100] [2100,3100] [4100,5100]
    consumer  mma  [1200,3200] [3300,5300]   store [5400,5900] with wait [5500,5600] nested
    CTA 0: SM 0, [0, 6000]     CTA 1: SM 1, [500, 8500]     CTA 2: SM 0, [7000, 13000]

``improved(factor)``: the same with every load ``factor`` times as long (shorter for factor < 1)
and no "wait" scope; a "softmax" scope exists only there.

``with_flows()``: kernel "attn_ws" as automatic insertion records a warp-specialised kernel, with the
issue -> completion arrows that ``kperf.tracing.flows.compute_flows`` pairs (``FLOWS``, the kernel's
``metadata["kperf"]["flows"]``).  8 warps, warps 0 (the "producer" group, warps 0-3) and 4 (the
"consumer" group, warps 4-7) record; 3 CTAs as above; times in ns after each CTA's entry::

    warp 0  tma.load [100,150] [300,350] [500,550]
    warp 4  tma.wait [200,400]  wgmma [400,450]  tma.wait [450,600]  wgmma [600,650]
            wgmma.wait [650,800]  tma.wait [800,900]

The k-th tma.load feeds the k-th tma.wait (ends 400, 600, 900); wgmma.wait (pendings 0) completes
both wgmma issues; 5 flows per CTA, 15 in all.  All completions but the last end a slice where the
next slice starts, the case where a flow's end binds to the wrong slice unless placed inside its own.
"""

from __future__ import annotations

from reference_encoder import SmClock, encode, make_cta

from kperf.dialect.layout import Geometry
from kperf.tracing import decode

G0 = 1_700_000_000_000_000_000
GHZ = 2.0
SCOPES = ["load", "mma", "store", "wait"]
CTAS = [(0, 0.0, 6000.0), (1, 500.0, 8500.0), (0, 7000.0, 13000.0)]  # (sm, start, end)
ROLES = ["producer", "consumer"]


def _warps(t0: float, load_ns: float = 1000.0, wait: bool = True, softmax: bool = False):
    L, M, S, W, X = 0, 1, 2, 3, 4
    prod = []
    for a in (100, 2100, 4100):
        prod += [(L, False, t0 + a), (L, True, t0 + a + load_ns)]
    cons = [(M, False, t0 + 1200), (M, True, t0 + 3200), (M, False, t0 + 3300), (M, True, t0 + 5300),
            (S, False, t0 + 5400)]
    if wait:
        cons += [(W, False, t0 + 5500), (W, True, t0 + 5600)]
    cons += [(S, True, t0 + 5900)]
    if softmax:
        cons += [(X, False, t0 + 5950), (X, True, t0 + 5990)]
    return [prod, cons]


def build(*, clock: str = "clock64", load_ns: float = 1000.0, wait: bool = True, softmax: bool = False,
          kernel: str = "attn", roles: bool = True, launch: int = 0, scopes=None):
    g = Geometry(2, 64, clock)
    sms = {0: SmClock(GHZ, 1 << 36), 1: SmClock(GHZ, 3 << 36)}
    ctas = [make_cta(clock, sms[sm], sm, t0, t1, _warps(t0, load_ns, wait, softmax), gtime_base=G0,
                     ctaid=(i, 0, 0), gtime_step=1)
            for i, (sm, t0, t1) in enumerate(CTAS)]
    names = scopes or (SCOPES + (["softmax"] if softmax else []))
    d = decode(encode(g, "keep-first", ctas), g, strategy="keep-first", launch=launch, scopes=names)
    assert not d.problems, d.problems
    d.kernel = kernel
    if roles:
        d.warp_roles = list(ROLES)
    return d


def vanilla(**kw):
    return build(**kw)


def improved(factor: float = 0.8, **kw):
    return build(load_ns=1000.0 * factor, wait=False, softmax=True, **kw)


FLOW_SCOPES = ["tma.load", "tma.wait", "wgmma", "wgmma.wait"]
FLOWS = [{"kind": "tma", "issue": [0], "complete": [1]},
         {"kind": "wgmma", "issue": [2], "complete": [3], "pendings": {"3": 0}}]
FLOWS_PER_CTA = 5


def _ws_warps(t0: float):
    TL, TW, MM, MW = 0, 1, 2, 3
    prod = [r for a in (100, 300, 500) for r in ((TL, False, t0 + a), (TL, True, t0 + a + 50))]
    cons = [(TW, False, t0 + 200), (TW, True, t0 + 400), (MM, False, t0 + 400), (MM, True, t0 + 450),
            (TW, False, t0 + 450), (TW, True, t0 + 600), (MM, False, t0 + 600), (MM, True, t0 + 650),
            (MW, False, t0 + 650), (MW, True, t0 + 800), (TW, False, t0 + 800), (TW, True, t0 + 900)]
    return [prod, cons]


def with_flows(*, launch: int = 0):
    """(the decoded launch, its ``FLOW_DTYPE`` flows); see the module docstring."""
    from kperf.tracing.flows import compute_flows

    g = Geometry(8, 64, "clock64", warps=(0, 4))
    sms = {0: SmClock(GHZ, 1 << 36), 1: SmClock(GHZ, 3 << 36)}
    ctas = [make_cta("clock64", sms[sm], sm, t0, t1, _ws_warps(t0), gtime_base=G0, ctaid=(i, 0, 0),
                     gtime_step=1)
            for i, (sm, t0, t1) in enumerate(CTAS)]
    d = decode(encode(g, "keep-first", ctas), g, strategy="keep-first", launch=launch, scopes=FLOW_SCOPES,
               warp_roles=["producer"] * 4 + ["consumer"] * 4, kernel="attn_ws")
    assert not d.problems, d.problems
    flows = compute_flows(d, FLOWS)
    assert len(flows) == FLOWS_PER_CTA * len(CTAS), flows
    return d, flows
