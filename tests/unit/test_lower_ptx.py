"""kperf-lower-ptx on hand-written PTX: what it emits where, and what it rejects."""

import re
import subprocess

import pytest

from kperf.dialect.errors import KperfError
from kperf.dialect.options import ProfileConfig
from kperf.dialect.record import RecordOp
from kperf.passes.lower_ptx import LowerPtxPass
from kperf.triton_compat import ptxas_path

# kperf's PTX through each Triton release's ptxas (3.9 assembles sm_90 with CUDA 13's)
pytestmark = pytest.mark.compile_side


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
    ptx = LowerPtxPass(ProfileConfig(fold=False), 4).apply(STRAIGHT).ptx
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
    ptx = LowerPtxPass(ProfileConfig(), 4).apply(kernel(body)).ptx
    lines = ptx.splitlines()
    bumps = [i for i, line in enumerate(lines) if "add.u32 %kp_n, %kp_n, 1;" in line]
    bra = next(i for i, line in enumerate(lines) if "bra $L__BB0_2" in line)
    label = next(i for i, line in enumerate(lines) if line.startswith("$L__BB0_2:"))
    assert len(bumps) == 2 and bumps[0] < bra and bra < bumps[1] < label


def test_predicated_ret_gets_a_guarded_finalize():
    body = "\n".join([carrier("start", "a", 0, "%r1"), carrier("end", "a", 0, "%r2"), "\t@%p1 ret;",
                      "\tret;"])
    ptx = LowerPtxPass(ProfileConfig(), 4).apply(kernel(body)).ptx
    assert "@!%p1 bra $KP_RET_SKIP_0;" in ptx
    assert ptx.count("kperf: finalize") == 2


def test_wrap_masks_the_slot():
    ptx = LowerPtxPass(ProfileConfig(strategy="wrap", capacity=256), 4).apply(STRAIGHT).ptx
    assert "and.b32 %ks, %ks, 255;" in ptx


@pytest.mark.parametrize("clock, src", [("clock64", "%clock64"), ("globaltimer", "%globaltimer")])
def test_64bit_clocks_use_16_byte_records(clock, src):
    ptx = LowerPtxPass(ProfileConfig(clock=clock), 4).apply(STRAIGHT).ptx
    assert f"mov.u64 %kc, {src};" in ptx
    assert "[%kp_ptr+16]" in ptx


def test_record_without_id_is_rejected():
    body = "\n".join([carrier("start", "a", None, "%r1"), "\tret;"])
    with pytest.raises(KperfError, match="without a scope id"):
        LowerPtxPass(ProfileConfig(), 4).apply(kernel(body))


def test_record_in_a_func_is_rejected():
    ptx = STRAIGHT + "\n.func helper()\n{\n" + carrier("start", "b", 1, "%r1") + "\n\tret;\n}\n"
    with pytest.raises(KperfError, match="noinline"):
        LowerPtxPass(ProfileConfig(), 4).apply(ptx)


def test_no_ret_is_rejected():
    with pytest.raises(KperfError, match="ret"):
        LowerPtxPass(ProfileConfig(), 4).apply(kernel(carrier("start", "a", 0, "%r1")))


def test_assembles_with_ptxas(tmp_path):
    ptx = LowerPtxPass(ProfileConfig(), 4).apply(STRAIGHT).ptx
    src = tmp_path / "k.ptx"
    src.write_text(ptx)
    subprocess.run([ptxas_path(90), "--gpu-name=sm_90a", str(src), "-o", str(tmp_path / "k.cubin")],
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
    ProfileConfig(defer_stores=True, hoist_arith="all"),
    ProfileConfig(defer_stores=True, store="smem", capacity=64, fold=False, clock="clock64"),
    ProfileConfig(defer_stores=True, strategy="wrap", capacity=64, sms=(1, 40)),
]


def _ptxas(tmp_path, ptx: str) -> bytes:
    src = tmp_path / "k.ptx"
    src.write_text(ptx)
    cmd = [ptxas_path(90), "--gpu-name=sm_90a", str(src), "-o", str(tmp_path / "k.cubin")]
    r = subprocess.run(cmd, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    return (tmp_path / "k.cubin").read_bytes()


@pytest.mark.parametrize("cfg", VARIANT_CONFIGS, ids=lambda c: c.to_mode().split(",code")[0][6:])
def test_variants_assemble_with_predicated_rets_and_branches(cfg, tmp_path):
    body = "\n".join([carrier("start", "a", 0, "%r1"), "\t@%p1 bra $L__BB0_2;", carrier("end", "a", 0, "%r2"),
                      "\t@%p2 ret;", "$L__BB0_2:", carrier("start", "b", 1, "%r3"), "\tret;"])
    res = LowerPtxPass(cfg, 4, shared_bytes=0).apply(kernel(body))
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
    res = LowerPtxPass(ProfileConfig(fold=True), 4).apply(STRAIGHT)
    assert res.geometry.sink == res.max_block_records == 2
    assert "min.u32 %kp_m, %kp_n, 1024;" in res.ptx
    assert "mad.wide.u32 %kp_ptr, %kp_m, 8, %kp_rbase;" in res.ptx  # the lane-varying pointer
    assert "setp.lt" not in res.ptx.split("kperf record #0", 1)[1].split("kperf: finalize")[0]
    assert "@%kp_l0 st.global.v2.b32 [%kp_ptr+8]" in res.ptx


def test_smem_needs_the_shared_size():
    with pytest.raises(KperfError, match="shared memory size"):
        LowerPtxPass(ProfileConfig(store="smem"), 4).apply(STRAIGHT)


# -- exit, one-line parameter lists, PTX lowered already ----------------------------------------------

PARAMS = ".param .u64 .ptr .global .align 1 k_param_{}"
MULTI_LINE_ENTRY = "k(\n" + ",\n".join("\t" + PARAMS.format(i) for i in range(3)) + "\n)"
ONE_LINE_ENTRY = "k(" + ", ".join(PARAMS.format(i) for i in range(3)) + ")"


def test_exit_gets_the_epilogue_like_ret(tmp_path):
    body = "\n".join([carrier("start", "a", 0, "%r1"), carrier("end", "a", 0, "%r2"), "\texit;"])
    ptx = LowerPtxPass(ProfileConfig(fold=False), 4).apply(kernel(body)).ptx
    bump, final = ptx.index("add.u32 %kp_n, %kp_n, 2;"), ptx.index("kperf: finalize")
    assert bump < final < ptx.index("\texit;")
    assert _ptxas(tmp_path, ptx)[:4] == b"\x7fELF"


def test_predicated_exit_is_guarded_like_a_predicated_ret(tmp_path):
    body = "\n".join([carrier("start", "a", 0, "%r1"), carrier("end", "a", 0, "%r2"), "\t@!%p1 exit;",
                      "\tret;"])
    res = LowerPtxPass(ProfileConfig(cta_stride=2), 4).apply(kernel(body))
    main, plain = res.ptx.split("$KP_PLAIN:", 1)
    assert "@%p1 bra $KP_RET_SKIP_0;" in main and main.count("kperf: finalize") == 2
    assert "\texit;\n$KP_RET_SKIP_0:" in main
    # the sampled-out copy closes its header before the exit too
    assert "@%kpc_p1 bra $KP_PLAIN_RET_SKIP_0;" in plain and plain.count("close the header") == 2
    assert _ptxas(tmp_path, res.ptx)[:4] == b"\x7fELF"


def test_the_uninstrumented_copy_has_registers_of_its_own(tmp_path):
    """Sharing virtual registers with the instrumented body, the copy's loops came out of ptxas in another
    order than the plain kernel's (bench/results/cpu-2026-12-06-s13-order/): it gets its own arrays,
    an inner scope's array is renamed with its uses, and no kperf value stays live through it (the
    sampled-out CTA's epilogue works out its region again)."""
    body = "\n".join([carrier("start", "a", 0, "%r1"), "\tadd.s32 %r2, %r1, 1;",
                      "\t{ .reg .pred %p<2>; setp.eq.s32 %p1, %r2, 0; }",
                      carrier("end", "a", 0, "%r3"), "\t@%p2 ret;", "\tret;"])
    res = LowerPtxPass(ProfileConfig(cta_stride=2), 4).apply(kernel(body))
    head, plain = res.ptx.split("$KP_PLAIN:", 1)
    assert ".reg .pred %kpc_p<3>;" in head and ".reg .b32 %kpc_r<10>;" in head
    assert "add.s32 %kpc_r2, %kpc_r1, 1;" in plain and "{ .reg .pred %kpc_p<2>; setp.eq.s32 %kpc_p1," in plain
    assert not re.search(r"%(p|r)\d", plain)  # no register of the instrumented body
    assert "@!%kpc_p2 bra $KP_PLAIN_RET_SKIP_0;" in plain  # the guard branches around a predicated ret
    assert plain.count("ld.param.u64 %d0") == 2  # each return of the copy finds the CTA's region again
    assert _ptxas(tmp_path, res.ptx)[:4] == b"\x7fELF"


def test_a_kernel_with_neither_ret_nor_exit_is_rejected():
    with pytest.raises(KperfError, match="`ret` or `exit`"):
        LowerPtxPass(ProfileConfig(), 4).apply(kernel(carrier("start", "a", 0, "%r1") + "\n\ttrap;"))


def test_exit_with_operands_is_not_a_return():  # `exit` takes none: such a line ends no kernel
    with pytest.raises(KperfError, match="`ret` or `exit`"):
        LowerPtxPass(ProfileConfig(), 4).apply(kernel("\texit %r1;"))


def test_one_line_parameter_list_is_read(tmp_path):
    assert MULTI_LINE_ENTRY in STRAIGHT
    one_line = STRAIGHT.replace(MULTI_LINE_ENTRY, ONE_LINE_ENTRY)
    res = LowerPtxPass(ProfileConfig(), 4).apply(one_line)
    assert "ld.param.u64 %d0, [k_param_2];" in res.ptx and res.num_records == 2
    multi = LowerPtxPass(ProfileConfig(), 4).apply(STRAIGHT).ptx
    assert res.ptx == multi.replace(MULTI_LINE_ENTRY, ONE_LINE_ENTRY)
    assert _ptxas(tmp_path, res.ptx)[:4] == b"\x7fELF"


@pytest.mark.parametrize("entry, message", [("k()", "no parameters"),
                                            ("k(" + PARAMS.format(0), "not closed")])
def test_bad_parameter_lists_are_rejected(entry, message):
    ptx = STRAIGHT.replace(MULTI_LINE_ENTRY, entry)
    if message == "not closed":
        ptx = ptx.split(entry)[0] + entry + "\n"
    with pytest.raises(KperfError, match=message):
        LowerPtxPass(ProfileConfig(), 4).apply(ptx)


def test_ptx_lowered_already_is_refused():
    once = LowerPtxPass(ProfileConfig(), 4).apply(STRAIGHT).ptx
    with pytest.raises(KperfError, match="lowered by kperf-lower-ptx already") as e:
        LowerPtxPass(ProfileConfig(), 4).apply(once)
    assert "line " in str(e.value) and "fix:" in str(e.value)


def test_kperf_registers_alone_mark_lowered_ptx():
    with pytest.raises(KperfError, match="already"):
        LowerPtxPass(ProfileConfig(), 4).apply(kernel("\tmov.u32 %kp_n, 0;\n\tret;"))


def test_record_in_a_func_with_a_return_value_names_the_function():
    helper = "\n.func (.param .b32 func_retval0) helper(\n)\n{\n" + carrier("start", "b", 1, "%r1")
    helper += "\n\tret;\n}\n"
    with pytest.raises(KperfError, match="PTX function helper"):
        LowerPtxPass(ProfileConfig(), 4).apply(STRAIGHT + helper)


def test_hoisted_tags_are_set_once_and_stored_from_their_registers(tmp_path):
    """``hoist_tags``: one register per distinct tag, set after the declarations from an opaque zero;
    the records store from it instead of moving the tag into a register each time."""
    body = "\n".join([carrier("start", "a", 0, "%r1"), carrier("end", "a", 0, "%r2"),
                      carrier("start", "a", 0, "%r3"), carrier("start", "b", 1, "%r4"), "\tret;"])
    res = LowerPtxPass(ProfileConfig(hoist_tags=True, clock="clock64"), 4).apply(kernel(body))
    head, records = res.ptx.split("kperf record #0", 1)
    assert "shr.u32 %kp_z, %kp_z, 31;" in head and ".reg .b32 %kp_tag<3>;" in head
    assert head.count("add.u32 %kp_tag") == 3  # a's start and end, b's start
    assert "mov.u32 %kt," not in records and "cvt.u64.u32 %kt64, %kp_tag0;" in records
    assert records.count("cvt.u64.u32 %kt64, %kp_tag0;") == 2  # a's start, twice
    assert _ptxas(tmp_path, res.ptx)[:4] == b"\x7fELF"
    plain = LowerPtxPass(ProfileConfig(clock="clock64"), 4).apply(kernel(body)).ptx
    assert "%kp_tag" not in plain and plain.count("mov.u32 %kt,") == 4
