"""The FA3 pipelines compile for sm_90 through kperf without a GPU: records in every partition, no spills,
shared memory within the limit, the schedule each pipeline promises visible in the PTX."""

from __future__ import annotations

import itertools
import re
import subprocess

import pytest
import triton
from triton.backends.compiler import GPUTarget

from bench import fa3_tune
from kperf.dialect.errors import KperfError
from kperf.examples import fa3_pipelines as fa3

CONFIGS = list(itertools.product(("fp16", "bf16"), (64, 128), (False, True)))
PRODUCER_SCOPES = {"wait_q_empty", "load_q", "wait_k_empty", "wait_v_empty"}


def _id(cfg):
    dtype, d, causal = cfg
    return f"{dtype}-d{d}-{'causal' if causal else 'full'}"


@pytest.fixture(scope="module", params=list(fa3.PIPELINES), ids=list(fa3.PIPELINES))
def pipeline(request):
    return fa3.get_pipeline(request.param)


_reports: dict = {}


def report(name: str, cfg):
    key = (name, cfg)
    if key not in _reports:
        dtype, d, causal = cfg
        _reports[key] = fa3.compile_pipeline(name, dtype=dtype, head_dim=d, causal=causal)
    return _reports[key]


@pytest.mark.parametrize("cfg", CONFIGS, ids=[_id(c) for c in CONFIGS])
def test_pipeline_compiles_instrumented_without_spills(pipeline, cfg):
    r = report(pipeline.name, cfg)
    assert r.cubin and len(r.cubin) > 0
    assert r.local_memory_ops_plain == 0, "register spills"
    assert_spills_only_at_entry_and_exit(r)
    assert r.metadata["shared"] <= fa3.SMEM_LIMIT
    assert r.geometry.num_warps == 12  # 4 producer warps + 2 consumer warpgroups
    names = set(r.scopes.names())
    # records in the producer partition and in both consumer partitions
    assert PRODUCER_SCOPES <= names
    assert {"wait_q", "wait_k", "wait_v", "softmax", "epilogue"} <= names
    assert ("turn" in names) == pipeline.pingpong
    assert ({"issue", "wait_qk", "wait_pv", "rescale"} <= names) == pipeline.overlap
    assert ({"qk", "pv"} <= names) == (not pipeline.overlap)
    # each consumer partition has its own copy of the consumer records (overlap: prologue + loop)
    assert r.ttgir.count('kperf.record start \\22softmax\\22') == 2 * (2 if pipeline.overlap else 1)
    assert r.ttgir.count('kperf.record start \\22wait_k_empty\\22') == 1


def assert_spills_only_at_entry_and_exit(r):
    """The instrumented build may park one value in local memory at kernel entry and reload it before the
    end (ptxas does so for the persistent causal pipeline: kperf's buffer pointer for the finalize); a
    local-memory access anywhere in between would sit in the K/V loop and cost every block."""
    from kperf import sass
    lines = [ln for ln in sass.disassemble(r.cubin).splitlines() if re.search(r"/\*[0-9a-f]{4,}\*/", ln)]
    at = [i for i, ln in enumerate(lines) if re.search(r"\b(STL|LDL)", ln)]
    assert len(at) == r.local_memory_ops
    assert len(at) <= 2 and all(i < 0.05 * len(lines) or i > 0.95 * len(lines) for i in at), at


@pytest.mark.parametrize("cfg", [("fp16", 128, False), ("bf16", 64, True)], ids=_id)
def test_overlap_keeps_one_wgmma_group_in_flight(pipeline, cfg):
    """ws_overlap / ws_pingpong wait for S_j with the PV wgmma of block j-1 still running."""
    r = report(pipeline.name, cfg)
    waits = set(re.findall(r"wgmma\.wait_group\.sync\.aligned (\d+);", r.ptx))
    assert ("1" in waits) == pipeline.overlap
    # the P operand of the PV wgmma comes from registers (no shared-memory round trip)
    assert re.search(r"wgmma\.mma_async\.sync\.aligned\.m64n\d+k16\.f32\.(f16|bf16)\.(f16|bf16) "
                     r"\{[^}]*\}, \{", r.ptx)


def _ptxas_messages(ptx: str, tmp_path) -> str:
    from triton.backends.nvidia.compiler import get_ptxas
    src = tmp_path / "k.ptx"
    src.write_text(ptx)
    ptxas = get_ptxas(90).path
    res = subprocess.run([ptxas, "-arch=sm_90a", "-v", str(src), "-o", str(tmp_path / "k.cubin")],
                         capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    return res.stdout + res.stderr


@pytest.mark.parametrize("cfg", [("fp16", 128, False), ("bf16", 128, True), ("fp16", 64, False)], ids=_id)
def test_ptxas_does_not_serialize_wgmma(pipeline, cfg, tmp_path):
    """ptxas serializes wgmma (warning C7515) when it cannot prove register safety: that would undo the
    overlap.  Checked on the instrumented PTX, which is what a profiled run executes."""
    out = _ptxas_messages(report(pipeline.name, cfg).ptx, tmp_path)
    assert "serialized" not in out and "C7515" not in out, out
    # the persistent pipelines may park one 8-byte value at entry (see assert_spills_only_at_entry_and_exit)
    spilled = [int(n) for n in re.findall(r"(\d+) bytes spill stores", out)]
    assert spilled and max(spilled) <= (8 if pipeline.persistent else 0), out


def test_plain_compile_of_every_pipeline_is_free_of_kperf_records():
    """Without profiling, scopes are PTX comments only: the plain cubin has no clock reads of kperf's."""
    from triton.experimental.gluon._runtime import GluonASTSource
    p = fa3.get_pipeline("ws_pingpong")
    k = triton.compile(GluonASTSource(fa3.fa3_fwd_kernel, fa3.signature(p),
                                      p.constexprs(head_dim=128, causal=False),
                                      {(5,): [["tt.divisibility", 16]]}),
                       target=GPUTarget("cuda", 90, 32), options=fa3.COMPILE_OPTIONS)
    assert "kperf.record start" in k.asm["ptx"]  # carriers are comments...
    assert "%clock" not in k.asm["ptx"]  # ...and read no clock
    assert k.metadata.num_warps == 12


def test_pipeline_registry_and_errors():
    assert list(fa3.PIPELINES) == ["ws", "ws_overlap", "ws_overlap_v3", "ws_pingpong", "ws_pingpong_s3",
                                   "ws_overlap_persistent", "ws_pingpong_persistent"]
    assert fa3.get_pipeline("ws_overlap_v3").constexprs(head_dim=128, causal=False) == \
        fa3_tune.pipeline("ws_overlap_n128_k2v3_r240").constexprs(head_dim=128, causal=False)
    assert (fa3.get_pipeline("ws_overlap_persistent").smem_bytes(128)
            == (2 + 2) * 128 * 128 * 2 + 4 * 64 * 128 * 2)
    assert all(p.overlap for p in fa3.PIPELINES.values() if p.pingpong)  # ping-pong builds on the overlap
    assert fa3.get_pipeline("ws_pingpong_s3").stages_for(128) == 3
    with pytest.raises(KperfError, match="unknown FA3 pipeline"):
        fa3.get_pipeline("nope")
    with pytest.raises(KperfError, match="head dim 96"):
        fa3.get_pipeline("ws").stages_for(96)
    sig = fa3.signature("ws", dtype="bf16", head_dim=64)
    assert sig["desc_q"].startswith("tensordesc<bf16[64, 64],NVMMASharedLayout(")
    assert sig["desc_k"].startswith("tensordesc<bf16[128, 64],")
    assert sig["N_CTX"] == sig["n_bh"] == "i32" and sig["OVERLAP"] == sig["PERSISTENT"] == "constexpr"
    with pytest.raises(KperfError, match="fp32"):
        fa3.signature("ws", dtype="fp32")


def test_host_wrapper_rejects_bad_inputs_before_launch():
    torch = pytest.importorskip("torch")
    q = torch.zeros(1, 2, 256, 128, dtype=torch.float16)
    with pytest.raises(KperfError, match="one dtype"):
        fa3.fa3_attention(q, q.float(), q)
    with pytest.raises(KperfError, match="head dim must be 64 or 128"):
        x = torch.zeros(1, 2, 256, 96, dtype=torch.float16)
        fa3.fa3_attention(x, x, x)
    with pytest.raises(KperfError, match="multiple of 128"):
        x = torch.zeros(1, 2, 200, 64, dtype=torch.float16)
        fa3.fa3_attention(x, x, x)
    with pytest.raises(KperfError, match="one shape"):
        fa3.fa3_attention(q, q[:, :1], q)
    assert fa3.grid_ctas(fa3.get_pipeline("ws"), q) == 2 * (256 // 128)  # one CTA per tile
    with pytest.raises(KperfError, match="for persistent pipelines only"):
        fa3.grid_ctas(fa3.get_pipeline("ws"), q, ctas=3)
    with pytest.raises(KperfError, match="positive CTA count"):
        fa3.grid_ctas(fa3.get_pipeline("ws_overlap_persistent"), q, ctas=0)


def test_vanilla_kernel_compiles_for_sm90():
    """The vanilla tutorial kernel (examples/attention.py) compiles and assembles for every config."""
    from kperf.examples import attention
    for dtype, d, causal in CONFIGS:
        cx = attention.constexprs(n_ctx=1024, head_dim=d, causal=causal)
        src = triton.compiler.ASTSource(attention.attn_fwd_kernel, attention.signature(dtype), cx,
                                        {(i,): [["tt.divisibility", 16]] for i in range(1, 8)})
        k = triton.compile(src, target=GPUTarget("cuda", 90, 32), options=attention.COMPILE_OPTIONS)
        assert k.asm["cubin"]
        from kperf import sass
        assert sass.local_memory_ops(sass.disassemble(k.asm["cubin"])) == 0, (dtype, d, causal)


# --- tuning knobs (bench/fa3_tune.py) -------------------------------------------------------------------

def test_tuning_knobs_keep_every_pipeline_unchanged():
    for p in fa3.PIPELINES.values():
        for d in (64, 128):
            cx = p.constexprs(head_dim=d, causal=False)
            assert cx["STAGES"] == p.stages_for(d) and cx["V_STAGES"] == p.v_stages_for(d)
            assert cx["EARLY_RESCALE"] is False
            assert cx["BLOCK_N"] == 128 and cx["CONSUMER_REGS"] == 240
    assert fa3.get_pipeline("ws_pingpong_s3").smem_bytes(128) == (3 + 3) * 128 * 128 * 2 + 2 * 64 * 128 * 2
    tune = fa3_tune
    p = tune.pipeline("ws_pingpong_n64_k6v4_r232_er")
    assert (p.block_n, p.stages_for(128), p.v_stages_for(128), p.consumer_regs, p.early_rescale,
            p.pingpong) == (64, 6, 4, 232, True, True)
    base = tune.pipeline("ws_overlap_n128_k2v2_r240")
    assert base.constexprs(head_dim=128, causal=True) == \
        fa3.get_pipeline("ws_overlap").constexprs(head_dim=128, causal=True)
    with pytest.raises(KperfError, match="bad candidate name"):
        tune.pipeline("ws_overlap_n176")
    with pytest.raises(KperfError, match="powers of two"):
        tune.pipeline("ws_overlap_n176_k2v2_r240").constexprs(head_dim=128, causal=False)
    with pytest.raises(KperfError, match="needs overlap"):
        tune.pipeline("ws_n128_k2v2_r240_er").constexprs(head_dim=128, causal=False)


def test_192_key_blocks_are_128_plus_64_sub_tiles(tmp_path):
    """block_n = 192 (FA3's wider blocks, power-of-two shapes): K/V boxes of 64 rows (three TMA loads per
    block into the 128-row buffer's two slices and the 64-row one), two wgmma per GEMM, the overlap waits
    for both QK^T groups with both PV groups in flight; no spills in the plain build, and ptxas keeps
    the wgmma async.  The sequence only needs a multiple of 128 (the first block is padded)."""
    p = fa3_tune.pipeline("ws_pingpong_n192_k2v2_r240_up")
    cx = p.constexprs(head_dim=128, causal=False)
    assert (cx["BLOCK_N"], cx["SPLIT_N"], p.kv_box, p.seq_multiple) == (128, 64, 64, 128)
    assert fa3.signature(p)["desc_k"].startswith("tensordesc<fp16[64, 128],")
    assert p.smem_bytes(128) == (2 + 2) * 192 * 128 * 2 + 2 * 64 * 128 * 2
    r = fa3.compile_pipeline(p, dtype="fp16", head_dim=128, causal=True)
    assert r.local_memory_ops_plain == 0
    loads = re.findall(r"cp\.async\.bulk\.tensor\.2d\.shared::cluster\.global", r.ptx)
    assert len(loads) == 2 + 3 + 3  # Q, K, V
    shapes = set(re.findall(r"wgmma\.mma_async\.sync\.aligned\.(m64n\d+k16)", r.ptx))
    assert shapes == {"m64n128k16", "m64n64k16"}
    assert set(re.findall(r"wgmma\.wait_group\.sync\.aligned (\d+);", r.ptx)) == {"0", "2"}
    assert "C7515" not in _ptxas_messages(r.ptx, tmp_path)
    # the knob leaves the power-of-two pipelines as they were
    assert fa3.get_pipeline("ws_overlap").constexprs(head_dim=128, causal=False)["SPLIT_N"] == 0
    assert fa3.get_pipeline("ws_overlap").kv_box == 128


def test_layouts_are_built_once():
    """tile_layouts is cached: building the NVMMA layouts on every call cost host time per launch."""
    assert fa3.tile_layouts("fp16", 128, 128) is fa3.tile_layouts("fp16", 128, 128)


def test_host_wrapper_needs_a_multiple_of_block_n():
    torch = pytest.importorskip("torch")
    x = torch.zeros(1, 2, 384, 128, dtype=torch.float16)
    p = fa3_tune.pipeline("ws_n256_k2v1_r240")
    with pytest.raises(KperfError, match="multiple of 256"):
        fa3.fa3_attention(x, x, x, pipeline=p)
    y = torch.zeros(1, 2, 320, 128, dtype=torch.float16)
    with pytest.raises(KperfError, match="multiple of 128"):  # 192-key blocks pad, but Q tiles are 128 rows
        fa3.fa3_attention(y, y, y, pipeline=fa3_tune.pipeline("ws_overlap_n192_k2v2_r240"))


@pytest.mark.parametrize("name", fa3_tune.CANDIDATES)
def test_tuning_candidate_compiles_without_spills(name):
    """Every candidate bench/fa3_tune.py times fits shared memory, does not spill and keeps wgmma async."""
    row = fa3_tune.cpu_check(name)
    assert row["ok"], row
    assert row["shared"] <= fa3.SMEM_LIMIT and row["spill_ops"] == 0 and not row["serialized"]


@pytest.mark.parametrize("name", ["ws_overlap_n128_k2v3_r240_er", "ws_pingpong_n64_k4v4_r240_er"])
def test_tuning_candidate_causal_and_schedule(name, tmp_path):
    """Causal compiles too; the early rescale keeps one wgmma group in flight and ptxas keeps it async."""
    tune = fa3_tune
    assert tune.cpu_check(name, causal=True)["ok"]
    r = fa3.compile_pipeline(tune.pipeline(name), dtype="fp16", head_dim=128, causal=False)
    assert "1" in set(re.findall(r"wgmma\.wait_group\.sync\.aligned (\d+);", r.ptx))
    assert {"issue", "rescale", "wait_qk", "wait_pv"} <= set(r.scopes.names())
    assert r.local_memory_ops_plain == 0
    out = _ptxas_messages(r.ptx, tmp_path)
    assert "C7515" not in out, out


@pytest.mark.parametrize("dtype", ["fp16", "bf16"])
def test_p_packs_without_byte_permutes(dtype):
    """pack_fix (default): P leaves the softmax as 16-bit pairs in register order.  Triton 3.6's own
    conversion packs each pair swapped, and ptxas then spends a PRMT per register (32 per block and
    thread) to undo it, between the turn wait and the PV wgmma."""
    import dataclasses

    from kperf import sass
    base = fa3.get_pipeline("ws_overlap")
    assert base.pack_fix
    fixed = fa3.compile_pipeline(base, dtype=dtype, head_dim=128)
    triton_packed = fa3.compile_pipeline(dataclasses.replace(base, pack_fix=False), dtype=dtype, head_dim=128)
    assert sass.count_instructions(fixed.sass_plain) < sass.count_instructions(triton_packed.sass_plain)
    assert triton_packed.sass_plain.count("PRMT") >= 2 * 32  # both consumer loops
    assert fixed.sass_plain.count("PRMT") == 0 and fixed.local_memory_ops_plain == 0


def test_softmax_placement_and_row_max_knobs():
    """The plain kernel runs the softmax after the PV wait (ptxas sinks it there; the instrumented kernel
    keeps it before, which report.schedule_drift names); sched_fence pins it above the wait.  tree_max
    compiles without spills and leaves the exponentials alone."""
    import dataclasses
    wait = "WARPGROUP.DEPBAR.LE gsb0, 0x0"
    base = fa3.get_pipeline("ws_pingpong")
    plain_order = fa3.compile_pipeline(base, dtype="fp16", head_dim=128)
    assert plain_order.schedule_drift.across(wait).get("MUFU.EX2") == [66, 66]
    fenced = fa3.compile_pipeline(dataclasses.replace(base, sched_fence="membar"), dtype="fp16", head_dim=128)
    assert "MUFU.EX2" not in fenced.schedule_drift.across(wait)
    assert fenced.sass_plain.count("MEMBAR.ALL.CTA") == plain_order.sass_plain.count("MEMBAR.ALL.CTA") + 2
    tree = fa3.compile_pipeline(dataclasses.replace(base, tree_max=True), dtype="bf16", head_dim=64,
                                causal=True)
    assert tree.local_memory_ops_plain == 0 and tree.local_memory_ops == 0
    assert tree.sass_plain.count("MUFU.EX2") == plain_order.sass_plain.count("MUFU.EX2")
