"""``hoist_arith`` (kperf.passes.ptx_hoist): the pure arithmetic an automatic record would pin after a
barrier wait goes back in front of the wait, and nothing else moves."""

import re

import pytest
from test_lower_ptx import _ptxas, carrier, kernel

from kperf.dialect.options import ProfileConfig
from kperf.passes.lower_ptx import LowerPtxPass
from kperf.passes.ptx import find_entry, parse
from kperf.passes.ptx_hoist import hoist

pytestmark = pytest.mark.compile_side

WAIT = ["\t// begin inline asm", "\t{", "\t.reg .pred complete;", "\twaitLoop:",
        "\tmbarrier.try_wait.parity.shared.b64 complete, [%r5], %r6;", "\t@!complete bra.uni waitLoop;",
        "\t}", "\t// end inline asm"]
OP = ["\t// begin inline asm", "\tst.shared.u32 [%r9], %r8;", "\t// end inline asm"]  # the timed op


def consumer(start_op="start", op_scope=1) -> str:
    """A wait timed by scope 0, then an op timed by ``op_scope`` whose address is computed between them
    (``%r7``, ``%r9``) and a value it does not use (``%r4``, needed after the op only)."""
    return kernel("\n".join([
        "\tmov.u32 %r5, 64;", "\tmov.u32 %r6, 0;",
        carrier("start", "tma.wait k.py:3", 0, "%r1"), "\tbar.sync 2, 128;", *WAIT,
        carrier("end", "tma.wait k.py:3", 0, "%r2"),
        "\tmul.lo.s32 %r7, %r5, 3;", "\tadd.s32 %r4, %r5, 1;",
        carrier(start_op, "wgmma k.py:4", op_scope, "%r3"),
        "\tadd.s32 %r9, %r7, 16;", "\tmov.u32 %r8, 1;", *OP,
        carrier("end", "wgmma k.py:4", op_scope, "%r3"),
        "\tst.shared.u32 [%r4], %r8;", "\tret;"]))


def body_code(ptx: str) -> list[str]:
    lines = parse(ptx)
    e = find_entry(lines)
    return [ln.code for ln in lines[e.decl_end:e.body_end] if ln.code]


def test_address_arithmetic_goes_in_front_of_the_wait():
    ptx = consumer()
    moved = hoist(parse(ptx), find_entry(parse(ptx)), {0, 1})
    code = [ln.code for ln in moved if ln.code]
    first_record = next(i for i, c in enumerate(code) if c.startswith("mov.u32 %r1"))
    for inst in ("mul.lo.s32 %r7, %r5, 3;", "add.s32 %r9, %r7, 16;", "mov.u32 %r8, 1;"):
        assert code.index(inst) < first_record, inst  # feeds the op: before the wait's start record
    assert code.index("add.s32 %r4, %r5, 1;") > code.index("mbarrier.try_wait.parity.shared.b64 complete, "
                                                           "[%r5], %r6;")  # used after the op: stays
    assert sorted(code) == sorted(ln.code for ln in parse(ptx) if ln.code)  # the same lines, reordered


def test_records_written_in_the_source_are_never_crossed():
    ptx = consumer()
    assert body_code("\n".join(ln.text for ln in hoist(parse(ptx), find_entry(parse(ptx)), {0}))) \
        .index("add.s32 %r9, %r7, 16;") > body_code(ptx).index("mov.u32 %r3, 0;")  # scope 1 is the user's
    assert hoist(parse(ptx), find_entry(parse(ptx)), set()) == parse(ptx)


def test_nothing_moves_into_a_scope_it_was_not_in():
    """An end record crossed without its start would put the arithmetic inside that scope."""
    ptx = kernel("\n".join([
        "\tmov.u32 %r5, 64;", carrier("start", "a", 0, "%r1"), *OP[:1], "\tst.shared.u32 [%r5], %r5;",
        *OP[2:], carrier("end", "a", 0, "%r2"), "\tadd.s32 %r9, %r5, 16;", *OP, "\tret;"]))
    assert hoist(parse(ptx), find_entry(parse(ptx)), {0}) == parse(ptx)


def test_dependences_hold():
    """An instruction stays below what defines its inputs, and below what reads or writes its output."""
    ptx = kernel("\n".join([
        carrier("start", "a", 0, "%r1"), "\tld.shared.u32 %r7, [%r5];", carrier("end", "a", 0, "%r2"),
        carrier("start", "b", 1, "%r3"), "\tadd.s32 %r9, %r7, 16;", *OP, carrier("end", "b", 1, "%r3"),
        "\tret;"]))
    code = [ln.code for ln in hoist(parse(ptx), find_entry(parse(ptx)), {0, 1}) if ln.code]
    assert code.index("ld.shared.u32 %r7, [%r5];") < code.index("add.s32 %r9, %r7, 16;") \
        < code.index("mov.u32 %r3, 0;")  # out of b only: a's load defines %r7


def test_lowered_kernel_assembles_and_keeps_every_record(tmp_path):
    for flag in ("off", "auto", "all"):
        res = LowerPtxPass(ProfileConfig(hoist_arith=flag, store="global"), 4, auto_scopes=(0, 1)) \
            .apply(consumer())
        assert res.num_records == 4 and len(re.findall(r"kperf record #\d", res.ptx)) == 4
        assert _ptxas(tmp_path, res.ptx)[:4] == b"\x7fELF"
    off = LowerPtxPass(ProfileConfig(hoist_arith="off"), 4, auto_scopes=(0, 1)).apply(consumer()).ptx
    on = LowerPtxPass(ProfileConfig(hoist_arith="auto"), 4, auto_scopes=(0, 1)).apply(consumer()).ptx
    assert on.index("mul.lo.s32 %r7") < on.index("kperf record #0")
    assert off.index("kperf record #0") < off.index("kperf record #1") < off.index("mul.lo.s32 %r7")


def test_deferred_stores_wait_for_the_wgmma_window(tmp_path):
    """``defer_stores``: each clock read stays where its record stands; the tag moves and stores come
    after the next ``wgmma.commit_group`` of the block, or before the block's counter bump."""
    body = "\n".join([carrier("start", "w", 0, "%r1"), "\twgmma.fence.sync.aligned;",
                      "\twgmma.commit_group.sync.aligned;", carrier("end", "w", 0, "%r2"),
                      "\tadd.s32 %r3, %r3, 1;", "\tret;"])
    for clock in ("clock", "clock64"):
        res = LowerPtxPass(ProfileConfig(defer_stores=True, clock=clock), 4).apply(kernel(body))
        ptx = res.ptx
        read0, read1 = ptx.index("kperf record #0: scope 0 start (stored later)"), \
            ptx.index("kperf record #1: scope 0 end (stored later)")
        store0, store1 = ptx.index("kperf record #0: scope 0 start (store)"), \
            ptx.index("kperf record #1: scope 0 end (store)")
        commit, bump = ptx.index("wgmma.commit_group"), ptx.index("add.u32 %kp_n, %kp_n, 2;")
        assert read0 < commit < store0 < read1 < store1 < bump < ptx.index("\tret;")
        assert "%kp_dc0" in ptx[store0:store1] and "%kp_dc0" in ptx[store1:bump]  # registers reused
        assert _ptxas(tmp_path, ptx)[:4] == b"\x7fELF"


def test_deferred_stores_hold_at_most_eight_clocks():
    body = "\n".join([carrier("start" if i % 2 == 0 else "end", "a", 0, f"%r{1 + i % 2}")
                      for i in range(10)] + ["\tret;"])
    ptx = LowerPtxPass(ProfileConfig(defer_stores=True), 4).apply(kernel(body)).ptx
    stores = [m.start() for m in re.finditer(r"kperf record #\d+: scope 0 \w+ \(store\)", ptx)]
    reads = [m.start() for m in re.finditer(r"\(stored later\)", ptx)]
    assert len(stores) == len(reads) == 10
    assert reads[7] < stores[0] < stores[7] < reads[8]  # the ninth read waits for the first eight stores
    assert ".reg .b32 %kp_dc<8>;" in ptx
