"""kperf-lower-ptx on hand-written PTX: what it emits where, and what it rejects."""

import re

import pytest

from kperf.dialect.options import ProfileConfig
from kperf.dialect.errors import KperfError
from kperf.dialect.record import RecordOp
from kperf.passes.lower_ptx import LowerPtxPass


def carrier(kind, name, sid, reg):
    op = RecordOp(kind, name, sid)
    return f"\t// begin inline asm\n\t{op.carrier_comment()}\n\tmov.u32 {reg}, 0;\n\t// end inline asm"


def kernel(body: str) -> str:
    return f""".version 8.7
.target sm_90a
.address_size 64
.visible .entry k(
	.param .u64 .ptr .global .align 1 k_param_0,
	.param .u64 .ptr .global .align 1 k_param_1,
	.param .u64 .ptr .global .align 1 k_param_2
)
.reqntid 128
{{
	.reg .pred 	%p<3>;
	.reg .b32 	%r<10>;
{body}
}}
"""


STRAIGHT = kernel("\n".join([carrier("start", "a", 0, "%r1"), "\tadd.s32 %r3, %r1, 1;",
                             carrier("end", "a", 0, "%r2"), "\tret;"]))


def test_straight_line_counts_are_bumped_before_finalize():
    ptx = LowerPtxPass(ProfileConfig(fold=False), 4).apply_text(STRAIGHT).ptx
    bump = ptx.index("add.u32 %kp_n, %kp_n, 2;")
    final = ptx.index("kperf: finalize")
    assert bump < final < ptx.index("\tret;")
    assert ptx.count("add.u32 %kp_n, %kp_n") == 1
    # record k of the block: compare against capacity - k, store at offset 8k
    assert "setp.lt.and.u32 %kq, %kp_n, 1024, %kp_l0;" in ptx
    assert "setp.lt.and.u32 %kq, %kp_n, 1023, %kp_l0;" in ptx
    assert "[%kp_ptr+0]" in ptx and "[%kp_ptr+8]" in ptx
    assert "ld.param.u64 %d0, [k_param_2];" in ptx  # the profile buffer is the last parameter


def test_branches_and_labels_flush_the_counter():
    body = "\n".join([carrier("start", "a", 0, "%r1"), "\t@%p1 bra $L__BB0_2;",
                      carrier("end", "a", 0, "%r2"), "$L__BB0_2:", "\tret;"])
    ptx = LowerPtxPass(ProfileConfig(), 4).apply_text(kernel(body)).ptx
    lines = ptx.splitlines()
    bumps = [i for i, l in enumerate(lines) if "add.u32 %kp_n, %kp_n, 1;" in l]
    bra = next(i for i, l in enumerate(lines) if "bra $L__BB0_2" in l)
    label = next(i for i, l in enumerate(lines) if l.startswith("$L__BB0_2:"))
    assert len(bumps) == 2 and bumps[0] < bra and bra < bumps[1] < label


def test_predicated_ret_gets_a_guarded_finalize():
    body = "\n".join([carrier("start", "a", 0, "%r1"), carrier("end", "a", 0, "%r2"), "\t@%p1 ret;", "\tret;"])
    ptx = LowerPtxPass(ProfileConfig(), 4).apply_text(kernel(body)).ptx
    assert "@!%p1 bra $KP_RET_SKIP_0;" in ptx
    assert ptx.count("kperf: finalize") == 2


def test_wrap_masks_the_slot():
    ptx = LowerPtxPass(ProfileConfig(strategy="wrap", capacity=256), 4).apply_text(STRAIGHT).ptx
    assert "and.b32 %ks, %ks, 255;" in ptx


@pytest.mark.parametrize("clock, src", [("clock64", "%clock64"), ("globaltimer", "%globaltimer")])
def test_64bit_clocks_use_16_byte_records(clock, src):
    ptx = LowerPtxPass(ProfileConfig(clock=clock), 4).apply_text(STRAIGHT).ptx
    assert f"mov.u64 %kc, {src};" in ptx
    assert "[%kp_ptr+16]" in ptx


def test_record_without_id_is_rejected():
    body = "\n".join([carrier("start", "a", None, "%r1"), "\tret;"])
    with pytest.raises(KperfError, match="without a scope id"):
        LowerPtxPass(ProfileConfig(), 4).apply_text(kernel(body))


def test_record_in_a_func_is_rejected():
    ptx = STRAIGHT + "\n.func helper()\n{\n" + carrier("start", "b", 1, "%r1") + "\n\tret;\n}\n"
    with pytest.raises(KperfError, match="noinline"):
        LowerPtxPass(ProfileConfig(), 4).apply_text(ptx)


def test_no_ret_is_rejected():
    with pytest.raises(KperfError, match="ret"):
        LowerPtxPass(ProfileConfig(), 4).apply_text(kernel(carrier("start", "a", 0, "%r1")))


def test_assembles_with_ptxas(tmp_path):
    import subprocess
    from triton import knobs
    ptx = LowerPtxPass(ProfileConfig(), 4).apply_text(STRAIGHT).ptx
    src = tmp_path / "k.ptx"
    src.write_text(ptx)
    subprocess.run([knobs.nvidia.ptxas.path, "--gpu-name=sm_90a", str(src), "-o", str(tmp_path / "k.cubin")],
                   check=True, capture_output=True)
    assert re.search(rb"\x7fELF", (tmp_path / "k.cubin").read_bytes()[:4])


VARIANT_CONFIGS = [
    ProfileConfig(fold=True),
    ProfileConfig(store="smem", capacity=64),
    ProfileConfig(store="smem", capacity=64, fold=True, clock="clock64"),
    ProfileConfig(granularity="warpgroup"),
    ProfileConfig(warp_mask=0b1010),
    ProfileConfig(cta_stride=2),
    ProfileConfig(sms=(1, 40)),
    ProfileConfig(strategy="wrap", capacity=64, store="smem"),
]


def _ptxas(tmp_path, ptx: str) -> bytes:
    import subprocess
    from triton import knobs
    src = tmp_path / "k.ptx"
    src.write_text(ptx)
    r = subprocess.run([knobs.nvidia.ptxas.path, "--gpu-name=sm_90a", str(src), "-o", str(tmp_path / "k.cubin")],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    return (tmp_path / "k.cubin").read_bytes()


@pytest.mark.parametrize("cfg", VARIANT_CONFIGS, ids=lambda c: c.to_mode().split(",code")[0][6:])
def test_variants_assemble_with_predicated_rets_and_branches(cfg, tmp_path):
    body = "\n".join([carrier("start", "a", 0, "%r1"), "\t@%p1 bra $L__BB0_2;", carrier("end", "a", 0, "%r2"),
                      "\t@%p2 ret;", "$L__BB0_2:", carrier("start", "b", 1, "%r3"), "\tret;"])
    res = LowerPtxPass(cfg, 4, shared_bytes=0).apply_text(kernel(body))
    assert res.store == ("smem" if cfg.store == "smem" else "global")
    cubin = _ptxas(tmp_path, res.ptx)
    assert cubin[:4] == b"\x7fELF"
    if cfg.store == "smem":  # the kernel had no shared memory: kperf declares Triton's array itself
        assert ".extern .shared .align 16 .b8 global_smem[];" in res.ptx
        assert res.shared_bytes == res.geometry.slots * res.geometry.warp_bytes
    if cfg.samples_ctas:  # the plain copy: renamed labels, its own guarded ret
        plain = res.ptx.split("$KP_PLAIN:", 1)[1]
        assert "$L__BB0_2_kp_plain:" in plain and "bra $L__BB0_2_kp_plain;" in plain
        assert "$KP_PLAIN_RET_SKIP_0:" in plain and "kperf record" not in plain


def test_fold_clamps_once_per_block_and_sizes_the_sink():
    res = LowerPtxPass(ProfileConfig(fold=True), 4).apply_text(STRAIGHT)
    assert res.geometry.sink == res.max_block_records == 2
    assert "min.u32 %kp_m, %kp_n, 1024;" in res.ptx and "mad.wide.u32 %kp_ptr, %kp_m, 8, %kp_base;" in res.ptx
    assert "setp.lt" not in res.ptx.split("kperf record #0", 1)[1].split("kperf: finalize")[0]
    assert "@%kp_l0 st.global.v2.b32 [%kp_ptr+8]" in res.ptx


def test_smem_needs_the_shared_size():
    with pytest.raises(KperfError, match="shared memory size"):
        LowerPtxPass(ProfileConfig(store="smem"), 4).apply_text(STRAIGHT)
