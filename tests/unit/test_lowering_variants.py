"""Lowering variants (store, fold, granularity, sampling, clocks) on the real GEMM, compiled for sm_90
without a GPU: each assembles with the wheel's ptxas, costs what it should in SASS, never spills;
and the buffers they leave (format v2: slots, sink, sampled-out CTAs) decode exactly."""

from __future__ import annotations

import re

import numpy as np
import pytest
import reference_encoder as ref

import kperf
from kperf.dialect.errors import KperfError
from kperf.dialect.layout import FLAG_SAMPLED_OUT, Geometry
from kperf.dialect.options import ProfileConfig
from kperf.examples import matmul as mm
from kperf.passes.lower_ptx import LowerPtxPass
from kperf.tracing.decode import decode

# (config, max SASS instructions per record site (whole kernel, epilogue scope included), max fixed)
VARIANTS = {
    "check": (ProfileConfig(fold=False), 7.0, 40),  # a capacity check per record (the default before fold)
    "fold": (ProfileConfig(fold=True), 6.0, 40),
    "smem": (ProfileConfig(store="smem", capacity=520), 6.0, 80),
    "smem-fold": (ProfileConfig(store="smem", capacity=520, fold=True), 5.0, 80),
    "clock64": (ProfileConfig(clock="clock64"), 8.0, 40),
    "globaltimer-fold": (ProfileConfig(clock="globaltimer", fold=True), 7.0, 40),
    "warpgroup-fold": (ProfileConfig(granularity="warpgroup", fold=True), 8.0, 80),
    "cta-fold": (ProfileConfig(granularity="cta", fold=True), 8.0, 80),
    "warp-mask": (ProfileConfig(warp_mask=0b10010001), 11.0, 80),
    "cta-stride-4": (ProfileConfig(cta_stride=4, fold=True), 7.0, 1000),
    "sms": (ProfileConfig(sms=(0, 1, 64, 131)), 7.0, 1000),
    "cta-stride-noclone": (ProfileConfig(cta_stride=4, clone=False), 7.0, 60),
    "wrap-smem": (ProfileConfig(strategy="wrap", capacity=512, store="smem"), 7.0, 80),
}


def _compile(cfg):
    return kperf.compile(mm.matmul_kernel, signature=mm.SIGNATURE, constexprs=mm.CONSTEXPRS, config=cfg,
                         **mm.COMPILE_OPTIONS)


def _loops(sass: str) -> list[int]:
    """Instruction counts of the SASS loops (from each backward branch to its target)."""
    ins = [(int(m.group(1), 16), m.group(2).strip())
           for m in re.finditer(r"^\s*/\*([0-9a-f]{4,})\*/\s+([^;]*);", sass, re.MULTILINE)]
    out = []
    for addr, text in ins:
        m = re.search(r"BRA\s+0x([0-9a-f]+)", text)
        if m and int(m.group(1), 16) < addr:
            lo = int(m.group(1), 16)
            out.append(sum(1 for a, t in ins if lo <= a <= addr and not t.startswith("NOP")))
    return out


@pytest.fixture(scope="module")
def plain_k_loop():
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    from kperf.compile_api import default_attrs
    from kperf.sass import disassemble
    src = ASTSource(mm.matmul_kernel, mm.SIGNATURE, mm.CONSTEXPRS,
                    default_attrs(mm.SIGNATURE, mm.matmul_kernel))
    k = triton.compile(src, target=GPUTarget("cuda", 90, 32), options={**mm.COMPILE_OPTIONS})
    (n,) = _loops(disassemble(k.asm["cubin"]))
    return n


@pytest.mark.parametrize("name", list(VARIANTS))
def test_variant_assembles_within_sass_bounds(name, plain_k_loop):
    cfg, per_record, fixed = VARIANTS[name]
    r = _compile(cfg)
    assert r.num_records == 6
    assert r.local_memory_ops == r.local_memory_ops_plain == 0, "records must not spill"
    assert r.sass_per_record <= per_record, r.summary()
    assert 0 < r.sass_fixed_cost <= fixed, r.summary()
    # the K loop: 4 records per iteration; its instrumented copy is the first loop
    k_loop = _loops(r.sass)[0]
    added = k_loop - plain_k_loop
    bound = {"check": 22, "fold": 19, "smem": 19, "smem-fold": 16}.get(name, 36)
    assert 4 * 3 <= added <= bound, f"{name}: K loop {plain_k_loop} -> {k_loop} SASS"
    info = r.metadata["kperf"]
    assert Geometry.from_json(info["geometry"]) == r.geometry
    assert info["store"] == ("smem" if cfg.store == "smem" else "global")


def test_fold_and_smem_cost_fewer_instructions_in_the_k_loop():
    loop = {n: _loops(_compile(VARIANTS[n][0]).sass)[0] for n in ("check", "fold", "smem-fold")}
    assert loop["smem-fold"] < loop["fold"] < loop["check"], loop


def test_smem_staging_extends_shared_memory_and_the_copy_out():
    r = _compile(VARIANTS["smem"][0])
    g = r.geometry
    assert r.metadata["shared"] == 98304 + g.slots * g.warp_bytes
    assert "st.shared.v2.b32" in r.ptx and "ld.shared.v2.b32" in r.ptx and "bar.warp.sync" in r.ptx
    assert "st.global.v2.b32 [%kp_ptr" not in r.ptx


def test_smem_that_does_not_fit_is_an_error_or_falls_back():
    with pytest.raises(KperfError, match="shared memory") as e:
        _compile(ProfileConfig(store="smem", capacity=4096))
    assert "capacity<=" in e.value.fix and "store='auto'" in e.value.fix
    r = _compile(ProfileConfig(store="auto", capacity=4096))
    assert r.metadata["kperf"]["store"] == "global" and r.metadata["shared"] == 98304


def test_sampling_clones_the_body_for_sampled_out_ctas():
    r = _compile(VARIANTS["cta-stride-4"][0])
    assert "@!%kp_s bra $KP_PLAIN;" in r.ptx and "rem.u32 %t12, %t7, 4;" in r.ptx
    # the plain copy keeps its carriers as comments and has its own labels
    plain = r.ptx.split("$KP_PLAIN:", 1)[1]
    assert "kperf record #" not in plain and "_kp_plain:" in plain
    assert len(_loops(r.sass)) == 2
    r2 = _compile(ProfileConfig(sms=(3, 70)))
    assert "kp_sm_mask[3] = {8, 0, 64}" in r2.ptx


def test_granularity_leaves_slots_for_recording_warps_only():
    for cfg, warps in ((ProfileConfig(granularity="warpgroup"), (0, 4)),
                       (ProfileConfig(granularity="cta"), (0,)),
                       (ProfileConfig(granularity="role"), (0,)),  # not warp-specialized: one role
                       (ProfileConfig(warp_mask=0b110), (1, 2))):
        r = _compile(cfg)
        assert r.geometry.warps == warps
        assert r.geometry.cta_bytes < Geometry(8, cfg.capacity).cta_bytes


def test_config_round_trips_through_the_mode_string():
    for cfg, _, _ in VARIANTS.values():
        assert ProfileConfig.from_mode(cfg.to_mode()) == cfg
    with pytest.raises(KperfError, match="no warp records"):
        ProfileConfig(granularity="cta", warp_mask=0b10).recording_warps(8)
    assert ProfileConfig(granularity="role").recording_warps(12, (0, 4)) == (0, 4)
    assert ProfileConfig(granularity="role", warp_mask=0b10000).recording_warps(12, (0, 4)) == (4,)
    with pytest.raises(KperfError, match="fold"):
        ProfileConfig(strategy="wrap", capacity=256, fold=True)


# ----------------------------------------------------------------------------------- format v2 decode


def _warp_records(n, t0=1000, scope=0):
    return [(scope, i % 2 == 1, t0 + 10 * i) for i in range(n)]


@pytest.mark.parametrize("clock", ["clock", "clock64"])
def test_v2_compact_slots_sink_and_sampled_out_ctas_decode_exactly(clock):
    g = Geometry(8, 16, clock, warps=(0, 4), sink=4)
    clk = ref.SmClock(1.5, 10_000)
    ctas = []
    for c in range(6):
        sampled_out = c % 3 != 0
        spec = ref.make_cta(clock, clk, sm=c, t_start=0, t_end=5000, ctaid=(c, 0, 0),
                            warps_ns=[] if sampled_out else [[(0, i % 2 == 1, 100 + 20 * i) for i in range(n)]
                                                             for n in (10, 22)])
        if sampled_out:
            spec.flags = FLAG_SAMPLED_OUT
        ctas.append(spec)
    buf = ref.encode(g, "keep-first", ctas)
    dec = decode(buf, g, strategy="keep-first", scopes=["a"])
    assert dec.problems == []
    exp = ref.expected_events(g, "keep-first", ctas)
    assert len(dec.events) == len(exp) == 2 * (10 + 16)
    assert sorted(set(dec.events["warp"].tolist())) == [0, 4]
    assert dec.lost_total == 2 * (22 - 16)
    assert set(dec.lost["warp"].tolist()) == {4}
    assert dec.ctas["sampled_out"].tolist() == [False, True, True, False, True, True]
    assert dec.ctas["ok"].all()
    assert "4 CTAs sampled out" in dec.summary()


def test_v1_buffers_still_decode():
    g = Geometry(4, 8)
    spec = ref.make_cta("clock", ref.SmClock(1.0, 0), 0, 0, 1000, [_warp_records(4)] * 4)
    spec.version = 1
    dec = decode(ref.encode(g, "keep-first", [spec]), g, strategy="keep-first")
    assert dec.problems == [] and len(dec.events) == 16


def test_lowering_writes_version_2_and_the_sampled_out_flag():
    from test_lower_ptx import STRAIGHT
    ptx = LowerPtxPass(ProfileConfig(cta_stride=3), 4).apply(STRAIGHT).ptx
    assert f"selp.u32 %t10, 2, {2 | FLAG_SAMPLED_OUT << 16}, %kp_s;" in ptx
    assert np.dtype(ref.CTA_HEADER_DTYPE)["flags"] == np.dtype("<u2")


def test_record_cost_subtraction_shrinks_each_interval_by_its_records():
    from kperf.accuracy import subtract_record_cost
    g = Geometry(2, 16)
    # warp 0: a(start) b(start) b(end) a(end): 100 cycles apart at 1 GHz
    recs = [(0, False, 0), (1, False, 100), (1, True, 200), (0, True, 300)]
    spec = ref.make_cta("clock", ref.SmClock(1.0, 5000), 0, 0, 1000,
                        [[(s, e, 10 + t) for s, e, t in recs]] * 2)
    dec = decode(ref.encode(g, "keep-first", [spec]), g, strategy="keep-first", scopes=["a", "b"])
    subtract_record_cost(dec, 10.0)
    iv, unmatched = dec.intervals()
    assert len(unmatched) == 0
    d = dict(zip(iv["scope"].tolist(), (iv["end_cycles"] - iv["start_cycles"]).tolist(), strict=True))
    assert d == {0: 300 - 3 * 10, 1: 100 - 10}
    dur_ns = (iv["end_ns"] - iv["start_ns"])[iv["scope"] == 1]
    assert np.allclose(dur_ns, 90.0, atol=1.0)
