"""kperf.schedule: the plain and instrumented SASS of a kernel compared segment by segment (CPU only).

Synthetic listings check the alignment rules; real sm_90 compiles check what ptxas does: in the FA3
overlap pipeline the plain kernel runs the softmax's exponentials after the PV wgmma wait, the
instrumented one before it (records pin the order), and a CTA fence keeps the plain kernel's order.
"""

from __future__ import annotations

import dataclasses

import pytest

import kperf
from kperf import schedule
from kperf.dialect.errors import KperfError
from kperf.dialect.options import ProfileConfig
from kperf.examples import fa3_pipelines as fa3
from kperf.examples import matmul as mm
from kperf.examples import vector_add as va

DEPBAR_PV = "WARPGROUP.DEPBAR.LE gsb0, 0x0"


def sass(*instructions: str) -> str:
    """A ``cuobjdump -sass``-style listing of ``instructions`` (16 bytes apart, control words omitted)."""
    lines = ["\tcode for sm_90a", "\t\tFunction : k"]
    lines += [f"        /*{16 * i:04x}*/                   {text} ;   /* 0x000000000000 */"
              for i, text in enumerate(instructions)]
    return "\n".join(lines) + "\n"


ISSUE = ["WARPGROUP.ARRIVE", "HGMMA.64x128x16.F32 R24, gdesc[UR4], R24, gsb0",
         "WARPGROUP.ARRIVE", "HGMMA.64x128x16.F32 R88, R180, gdesc[UR8].tnspB, R88, gsb0",
         "WARPGROUP.DEPBAR.LE gsb0, 0x1"]
EXP = [f"MUFU.EX2 R{i}, R{i}" for i in range(40, 43)]
RECORD = ["CS2R.32 R5, SR_CLOCKLO", "@!P1 IMAD.MOV.U32 R4, RZ, RZ, -0x80000000",
          "@!P1 STG.E.64 desc[UR4][R14.64+0x50], R4"]
FINALIZE = ["CS2R R6, SR_CLOCKLO", "@P0 STG.E.128 desc[UR4][R2.64+0x20], R4", "@!P0 EXIT"]


def test_softmax_sunk_below_the_pv_wait_is_reported():
    plain = sass(*ISSUE, "FMNMX R3, R1, R2, !PT", DEPBAR_PV, *EXP, "FADD R9, R40, R41", "EXIT", "BRA 0x140")
    inst = sass(*ISSUE, *RECORD, "FMNMX R3, R1, R2, !PT", *EXP, "FADD R9, R40, R41", *RECORD, DEPBAR_PV,
                *FINALIZE, "EXIT", "BRA 0x1c0")
    d = schedule.compare(plain, inst)
    assert d.aligned and d.sync_points == (7, 8, 7) and not d.unaligned and d.totals == {}
    got = {(x.segment_index, x.opcode_class, x.plain, x.instrumented) for x in d}
    assert got == {(5, "MUFU.EX2", 0, 3), (5, "FADD", 0, 1), (6, "MUFU.EX2", 3, 0), (6, "FADD", 1, 0)}
    moved = [x for x in d if x.segment_index == 5 and x.opcode_class == "MUFU.EX2"][0]
    assert (moved.before, moved.after) == ("WARPGROUP.DEPBAR.LE gsb0, 0x1", DEPBAR_PV)
    assert moved.instrumented_span == (0x40, 0x100) and moved.plain_span == (0x40, 0x60)
    assert d.across(DEPBAR_PV) == {"MUFU.EX2": [3], "FADD": [1]}
    assert d.headline() == ("schedule differs from the plain kernel: 3 MUFU.EX2 cross `WARPGROUP.DEPBAR.LE "
                            "gsb0, 0x0` at 1 place (the plain kernel runs them after it; also 1 FADD); "
                            "see report.schedule_drift")
    assert "3 MUFU.EX2 cross" in d.summary() and "7 of the plain kernel's 7 sync points" in d.summary()


def test_records_and_finalize_alone_are_no_drift():
    body = [*ISSUE, "FMNMX R3, R1, R2, !PT", *EXP, DEPBAR_PV, "FADD R9, R40, R41"]
    inst = [*RECORD, *ISSUE, *RECORD, "FMNMX R3, R1, R2, !PT", *EXP, *RECORD, DEPBAR_PV, "FADD R9, R40, R41",
            *FINALIZE]
    d = schedule.compare(sass(*body, "EXIT", "BRA 0x100"), sass(*inst, "EXIT", "BRA 0x1e0"))
    assert d.aligned and not d and len(d) == 0 and d.crossings == () and d.headline() == ""
    assert d.sync_points == (7, 8, 7)  # the finalize's `@!P0 EXIT` is kperf's and stays unmatched
    assert "same count" in d.summary()


def test_lone_barrier_segment_is_not_compared():
    waits = [f"BAR.SYNC.DEFER_BLOCKING 0x{i:x}, 0x80" for i in range(1, 12)]
    plain = sass(*waits[:5], "FMUL R1, R1, R2", "BAR.SYNC.DEFER_BLOCKING 0xf", "FMUL R3, R1, R2", *waits[5:],
                 "EXIT")
    inst = sass(*waits[:5], "FMUL R1, R1, R2", *waits[5:], "FMUL R3, R1, R2", "EXIT")
    d = schedule.compare(plain, inst)
    assert d.aligned and d.unaligned == ((5, "BAR.SYNC.DEFER_BLOCKING 0x5, 0x80",
                                          "BAR.SYNC.DEFER_BLOCKING 0x6, 0x80"),)
    # the FMUL past the lone barrier is not reported there; its later segment (.. EXIT) is compared
    assert [(x.segment_index, x.plain, x.instrumented) for x in d] == [(11, 0, 1)]
    assert "; 1 segment not compared;" in d.headline()


def test_unalignable_listings_say_so():
    plain = sass(*[f"BAR.SYNC.DEFER_BLOCKING 0x{i:x}" for i in range(8)], *EXP, "EXIT")
    inst = sass(*[f"SYNCS.ARRIVE.TRANS64.A1T0 RZ, [UR4+0x{i:x}], RZ" for i in range(8)], *EXP, "EXIT")
    d = schedule.compare(plain, inst)
    assert not d.aligned and bool(d) and len(d) == 0
    assert d.note == ("8 of the plain kernel's 8 barriers, fences and waits and 8 of the instrumented "
                      "kernel's 8 have no partner")
    assert d.headline().startswith("schedule not compared with the plain kernel: 8 of the plain")
    cloned = schedule.compare(plain, plain, cloned=True)
    assert not cloned.aligned and "clone=False" in cloned.note
    assert not schedule.compare("", plain).aligned


def test_smem_store_leaves_shared_memory_to_kperf():
    plain = sass(*ISSUE, DEPBAR_PV, "EXIT")
    inst = sass(*ISSUE, "@!P1 STS.64 [R3+0x100], R4", DEPBAR_PV, "LDS.64 R4, [R3+0x100]", "EXIT")
    assert {x.opcode_class for x in schedule.compare(plain, inst)} == {"STS", "LDS"}
    assert not schedule.compare(plain, inst, store="smem")


# --- real sm_90 compiles (ptxas and cuobjdump from Triton's wheel) ----------------------------------


@pytest.fixture(scope="module")
def overlap():
    return fa3.compile_pipeline("ws_overlap", dtype="fp16", head_dim=128, causal=False)


def test_fa3_overlap_softmax_runs_after_the_pv_wait_in_the_plain_kernel(overlap):
    """Measured: in each consumer partition's loop the instrumented kernel issues the 66 MUFU.EX2 between
    the QK^T wait and the PV wait; the plain kernel issues none there and all 66 at the end of the
    iteration, after the PV wait and the V-buffer release."""
    d = overlap.schedule_drift
    assert d.aligned and d.totals == {}
    assert d.across(DEPBAR_PV)["MUFU.EX2"] == [66, 66]
    ex2 = [x for x in d if x.opcode_class == "MUFU.EX2"]
    assert [(x.plain, x.instrumented) for x in ex2] == [(0, 66), (66, 0)] * 2
    assert [x.after for x in ex2[::2]] == [DEPBAR_PV] * 2
    assert all(" BRA " in x.after for x in ex2[1::2])  # the loop's back branch
    assert ("132 MUFU.EX2 cross `WARPGROUP.DEPBAR.LE gsb0, 0x0` at 2 places (the plain kernel runs them "
            "after it") in overlap.summary()
    assert overlap.sass_plain.count("MUFU.EX2") == overlap.sass.count("MUFU.EX2")


@pytest.mark.parametrize("mode, sass_op", [("membar", "MEMBAR.ALL.CTA"), ("clock", "SR_CLOCKLO"),
                                           ("nanosleep", "NANOSLEEP")])
def test_fa3_sched_fence_keeps_the_softmax_above_the_pv_wait(mode, sass_op):
    """Each mode pins the order (one instruction per consumer loop, two loops); a clock read ptxas could
    fold away would pin nothing, so the clock mode's CS2R must survive."""
    p = dataclasses.replace(fa3.get_pipeline("ws_overlap"), sched_fence=mode)
    r = fa3.compile_pipeline(p, dtype="fp16", head_dim=128, causal=False)
    d = r.schedule_drift
    assert d.aligned
    assert "MUFU.EX2" not in d.across(DEPBAR_PV)
    assert not [x for x in d if x.opcode_class == "MUFU.EX2"]
    plain = fa3.compile_pipeline("ws_overlap", dtype="fp16", head_dim=128, causal=False)
    assert r.sass_plain.count(sass_op) == plain.sass_plain.count(sass_op) + 2


def test_fa3_sched_fence_rejects_an_unknown_mode():
    with pytest.raises(KperfError, match="sched_fence 'fence' is not one of") as e:
        dataclasses.replace(fa3.get_pipeline("ws_overlap"), sched_fence="fence").constexprs(head_dim=128,
                                                                                            causal=False)
    assert "'clock'" in e.value.fix


def test_gemm_epilogue_converts_before_the_barrier_in_the_plain_kernel():
    """Measured: the plain GEMM packs 7 of its 32 F2FP before the epilogue's CTA barrier, the
    instrumented one all after it; nothing else moves."""
    r = kperf.compile(mm.matmul_kernel, signature=mm.SIGNATURE, constexprs=mm.CONSTEXPRS, target="cuda:90",
                      **mm.COMPILE_OPTIONS)
    d = r.schedule_drift
    assert d.aligned and d.sync_points == (15, 15, 15) and not d.unaligned
    assert [(c.sync_point, c.opcode_class, c.count) for c in d.crossings] == [
        ("BAR.SYNC.DEFER_BLOCKING 0x0", "F2FP", -7)]
    assert r.summary().splitlines()[1] == (
        "schedule differs from the plain kernel: 7 F2FP cross `BAR.SYNC.DEFER_BLOCKING 0x0` at 1 place "
        "(the plain kernel runs them before it); see report.schedule_drift")


VA = dict(signature={"x_ptr": "*fp32", "y_ptr": "*fp32", "out_ptr": "*fp32", "n": "i32",
                     "BLOCK": "constexpr"}, constexprs={"BLOCK": 1024}, target="cuda:90", num_warps=4)


def test_vector_add_schedule_is_unchanged():
    r = kperf.compile(va.add_kernel, **VA)
    d = r.schedule_drift
    assert d.aligned and not d and d.sync_points == (2, 2, 2)
    assert len(r.summary().splitlines()) == 1


def test_cloned_body_is_not_compared():
    d = kperf.compile(va.add_kernel, config=ProfileConfig(cta_stride=2), **VA).schedule_drift
    assert not d.aligned and "clone=False" in d.note
    r = kperf.compile(va.add_kernel, config=ProfileConfig(cta_stride=2, clone=False), **VA)
    assert r.schedule_drift.aligned
