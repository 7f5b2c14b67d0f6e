"""The PTX line model (kperf.passes.ptx): each line classified once, the entry found from it."""

import pytest

from kperf.dialect.errors import KperfError
from kperf.passes.ptx import Kind, classify, find_entry, parse


@pytest.mark.parametrize("text, kind", [
    ("", Kind.BLANK), ("   \t", Kind.BLANK), ("\t// demoted variable", Kind.COMMENT),
    ("\t// begin inline asm", Kind.ASM_BEGIN), ("\t// end inline asm", Kind.ASM_END),
    ("\t.reg .b32 \t%r<10>;", Kind.DIRECTIVE), (".visible .entry k(", Kind.DIRECTIVE),
    ("$L__BB0_2:", Kind.LABEL), ("{", Kind.OPEN), ("\t{ // kperf record", Kind.OPEN),
    ("}", Kind.CLOSE), (")", Kind.OTHER), ("\tadd.s32 %r3, %r1, 1; // x", Kind.INSTRUCTION),
])
def test_kinds(text, kind):
    assert classify(text).kind is kind


def test_instruction_fields():
    line = classify("\t@!%p1 st.global.v2.b32 [%rd1+8], {%r1, %r2}; // store")
    assert (line.pred, line.opcode, line.op, line.operands) == ("@!%p1", "st.global.v2.b32", "st",
                                                                "[%rd1+8], {%r1, %r2}")
    assert line.code == "@!%p1 st.global.v2.b32 [%rd1+8], {%r1, %r2};" and line.braces == 0
    assert line.statement == "st.global.v2.b32 [%rd1+8], {%r1, %r2};"
    assert not line.ends_block and not line.is_return and not line.leaves


@pytest.mark.parametrize("text, is_return, ends_block, leaves", [
    ("\tret;", True, True, True), ("\tret.uni;", True, True, True), ("\texit;", True, True, True),
    ("\t@%p1 exit;", True, True, False), ("\t@%p2 ret;", True, True, False),
    ("\tbra.uni $L__BB0_1;", False, True, True), ("\t@%p1 bra $L__BB0_1;", False, True, False),
    ("\tcall.uni foo, (%r1);", False, True, False), ("\ttrap;", False, True, False),
    ("$L__BB0_1:", False, True, False), ("\t.loc 1 2 3", False, False, False),
    ("\t{ .reg .pred p; @p bra L; }", False, False, False),  # a compound asm line is no instruction
])
def test_control_flow(text, is_return, ends_block, leaves):
    line = classify(text)
    assert (line.is_return, line.ends_block, line.leaves) == (is_return, ends_block, leaves)


def test_label_and_directive_names():
    assert classify("$L__BB0_2:").label == "$L__BB0_2"
    assert classify("\t.shared .align 16 .b8 smem[];").directive == ".shared"


PTX = """.version 8.7
.target sm_90a
.func helper()
{
\tret;
}
// .globl\tk
.visible .entry k(
\t.param .u64 k_param_0,
\t.param .u64 .ptr .global .align 1 k_param_1
)
.reqntid 128
{
\t.reg .pred \t%p<3>;

\t.shared .align 16 .b8 buf[16];
\tmov.u32 %r1, 0;
\t{ .reg .b32 t;
\t}
\tret;
}
"""


def test_entry_multi_line_params_body_and_declarations():
    lines = parse(PTX)
    e = find_entry(lines)
    assert (e.name, e.params, e.last_param) == ("k", ("k_param_0", "k_param_1"), "k_param_1")
    assert lines[e.start].code.startswith(".visible .entry")
    assert lines[e.body_start].code == "{" and e.body_start == 12
    assert lines[e.decl_end].code == "mov.u32 %r1, 0;"
    assert lines[e.body_end].code == "}" and e.body_end == len(lines) - 2
    assert e.in_body(e.decl_end) and not e.in_body(e.body_end)


def test_entry_one_line_params():
    ptx = PTX.replace("k(\n\t.param .u64 k_param_0,\n\t.param .u64 .ptr .global .align 1 k_param_1\n)",
                      "k(.param .u64 k_param_0, .param .u64 k_param_1)")
    assert find_entry(parse(ptx)).params == ("k_param_0", "k_param_1")


@pytest.mark.parametrize("edit, message", [
    (lambda p: p + p[p.index(".visible"):], "found 2"),
    (lambda p: p.replace(".visible .entry", ".visible .func"), "found 0"),
    (lambda p: p[:p.rindex("}")], "unbalanced braces"),
    (lambda p: p.replace(".reqntid 128\n{", ".reqntid 128\n"), "no body"),
])
def test_entry_errors(edit, message):
    with pytest.raises(KperfError, match=message):
        find_entry(parse(edit(PTX)))
