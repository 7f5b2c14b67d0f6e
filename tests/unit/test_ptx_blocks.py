"""Where kperf-lower-ptx bumps the record counter: only where control flow joins or leaves (debug labels
and record-free spin loops are not such places); the lane-varying record pointer.  Hand-written PTX,
assembled with the wheel's ptxas; the WS attention kernel's PTX and SASS."""

import re
import subprocess

import pytest
from test_lower_ptx import carrier, kernel

from kperf.dialect.options import ProfileConfig
from kperf.passes.lower_ptx import LowerPtxPass
from kperf.passes.ptx import find_entry, parse
from kperf.passes.ptx_blocks import boundaries
from kperf.triton_compat import ptxas_path

pytestmark = pytest.mark.compile_side

SPIN = """\t// begin inline asm
\t{
\t.reg .pred complete;
\twaitLoop:
\tmbarrier.try_wait.parity.shared.b64 complete, [%r4], %r5;
\t@!complete bra.uni waitLoop;
\t}
\t// end inline asm"""


def _bumps(ptx: str) -> list[str]:
    return re.findall(r"kperf: (\d+) records in this block", ptx)


def _assemble(tmp_path, ptx: str) -> None:
    src = tmp_path / "k.ptx"
    src.write_text(ptx)
    r = subprocess.run([ptxas_path(90), "--gpu-name=sm_90a", str(src), "-o", str(tmp_path / "k.cubin")],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


def test_debug_labels_and_spin_loops_do_not_end_a_block(tmp_path):
    body = "\n".join([carrier("start", "wait", 0, "%r1"), "$L__tmp1:", SPIN, carrier("end", "wait", 0, "%r2"),
                      "$L__tmp2:", SPIN, carrier("start", "b", 1, "%r3"), "\tret;"])
    merged = LowerPtxPass(ProfileConfig(), 4).apply(kernel(body))
    assert _bumps(merged.ptx) == ["3"] and merged.geometry.sink == 3
    old = LowerPtxPass(ProfileConfig(merge_blocks=False), 4).apply(kernel(body))
    assert _bumps(old.ptx) == ["1", "1", "1"] and old.geometry.sink == 1
    _assemble(tmp_path, merged.ptx)


def test_a_loop_with_records_and_a_branch_target_still_end_blocks():
    body = "\n".join(["$L__BB0_1:", carrier("start", "it", 0, "%r1"), carrier("end", "it", 0, "%r2"),
                      "\t@%p1 bra $L__BB0_1;", carrier("start", "after", 1, "%r3"), "\tret;"])
    ptx = LowerPtxPass(ProfileConfig(), 4).apply(kernel(body)).ptx
    lines = ptx.splitlines()
    bump = next(i for i, line in enumerate(lines) if "kperf: 2 records" in line)
    bra = next(i for i, line in enumerate(lines) if "bra $L__BB0_1" in line)
    assert bump < bra and _bumps(ptx) == ["2", "1"]


def test_a_spin_loop_that_records_or_leaves_is_a_boundary():
    records_inside = "\n".join(["$L__BB0_3:", carrier("start", "x", 0, "%r1"), "\t@%p1 bra $L__BB0_3;",
                                carrier("end", "x", 0, "%r2"), "\tret;"])
    assert _bumps(LowerPtxPass(ProfileConfig(), 4).apply(kernel(records_inside)).ptx) == ["1", "1"]
    leaves = "\n".join([carrier("start", "x", 0, "%r1"), "$L__BB0_3:", "\t@%p2 bra $L__BB0_4;",
                        "\t@%p1 bra $L__BB0_3;", carrier("end", "x", 0, "%r2"), "$L__BB0_4:", "\tret;"])
    assert _bumps(LowerPtxPass(ProfileConfig(), 4).apply(kernel(leaves)).ptx) == ["1", "1"]


def test_labels_resolve_in_their_brace_scope():
    """Two asm blocks each declare ``waitLoop``; a branch outside both to a function-level label of the
    same name binds to that one, which stays a boundary."""
    body = "\n".join([carrier("start", "x", 0, "%r1"), SPIN, "waitLoop:", carrier("end", "x", 0, "%r2"), SPIN,
                      "\t@%p1 bra waitLoop;", "\tret;"])
    lines = parse(kernel(body))
    entry = find_entry(lines)
    bounds = boundaries(lines, entry, ())
    heads = [i for i, line in enumerate(lines) if line.label == "waitLoop"]
    assert [i in bounds for i in heads] == [False, True, False]


def test_merge_blocks_round_trips_through_the_mode_string():
    cfg = ProfileConfig(merge_blocks=False, vector_pointer=False)
    assert ProfileConfig.from_mode(cfg.to_mode()) == cfg
    assert ProfileConfig().merge_blocks and ProfileConfig().vector_pointer


def test_ws_attention_loop_bumps_the_counter_once_per_iteration():
    """The consumer loop of examples/attention.py (8 records an iteration, 4 TMA-wait spin loops)."""
    import kperf
    from kperf.examples import attention as A

    def ptx(**kw):
        return kperf.compile(A.attn_fwd_kernel, signature=A.SIGNATURE, constexprs=A.CONSTEXPRS,
                             config=ProfileConfig(auto="mma,tma", **kw), **A.COMPILE_OPTIONS)

    merged, old = ptx(), ptx(merge_blocks=False)
    assert merged.num_records == old.num_records == 36
    assert len(_bumps(merged.ptx)) < len(_bumps(old.ptx))
    assert sum(map(int, _bumps(merged.ptx))) == sum(map(int, _bumps(old.ptx)))
    assert merged.sass_per_record < old.sass_per_record - 1, (merged.summary(), old.summary())


def test_vector_pointer_gives_other_lanes_another_address(tmp_path):
    """Lane 0 stores at %kp_base + 8 n; the other lanes' (never used) pointers differ, so ptxas keeps the
    pointer in vector registers; shared-memory staging keeps its own 32-bit pointer."""
    ptx = LowerPtxPass(ProfileConfig(), 4).apply(STRAIGHT_SPIN).ptx
    assert "add.u64 %kp_rbase, %kp_base, %d7;" in ptx and "mov.u64 %kp_ptr, %kp_rbase;" in ptx
    assert "mad.wide.u32 %kp_ptr, %kp_m, 8, %kp_rbase;" in ptx
    _assemble(tmp_path, ptx)
    plain = LowerPtxPass(ProfileConfig(vector_pointer=False), 4).apply(STRAIGHT_SPIN).ptx
    assert "%kp_rbase" not in plain and "mov.u64 %kp_ptr, %kp_base;" in plain
    smem = LowerPtxPass(ProfileConfig(store="smem", capacity=64), 4, shared_bytes=0).apply(STRAIGHT_SPIN).ptx
    assert "%kp_rbase" not in smem


STRAIGHT_SPIN = kernel("\n".join([carrier("start", "a", 0, "%r1"), SPIN, carrier("end", "a", 0, "%r2"),
                                   "\tret;"]))
