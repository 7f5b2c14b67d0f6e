"""The record op, its carrier, the TTGIR scanner and the scope-table verifier."""

import pytest

from kperf.dialect.errors import KperfError
from kperf.dialect.mlir_string import decode_mlir_string, encode_mlir_string
from kperf.dialect.record import RecordOp, parse_carrier
from kperf.dialect.scope_table import build_scope_table
from kperf.dialect.ttgir_text import scan
from kperf.passes.materialize import MaterializePass


def test_record_print_and_carrier_round_trip():
    op = RecordOp("start", 'we"ird {name}')
    assert op.print() == 'kperf.record start "we\\"ird {name}"'
    back = parse_carrier(op.with_id(7).carrier_asm())
    assert (back.kind, back.name, back.scope_id) == ("start", 'we"ird {name}', 7)


def test_every_carrier_form_comes_from_the_record_op():
    op = RecordOp("start", "load")
    assert op.carrier_ttgir("%0") + " loc(#loc3)" == TTGIR.splitlines()[3].strip()  # as Triton prints it
    assert op.carrier_builder_args("i32") == (op.carrier_asm(), "=r", [], ["i32"], False, 1)
    assert parse_carrier(op.carrier_asm()) == op


def test_carrier_of_other_asm_is_none():
    assert parse_carrier("mov.u32 $0, %clock;") is None


@pytest.mark.parametrize("bad", ['// kperf.record begin "x"', "// kperf.record start x",
                                 '// kperf.record end "x" id=seven'])
def test_malformed_carrier_raises(bad):
    with pytest.raises(KperfError):
        parse_carrier(bad)


def test_bad_kind_and_name():
    with pytest.raises(KperfError, match="start"):
        RecordOp("stop", "x")
    with pytest.raises(KperfError, match="non-empty"):
        RecordOp("start", "")


def test_mlir_string_escaping_round_trip():
    value = '// kperf.record start "a\\b"\n\tmov.u32 $0, 0;'
    lit = encode_mlir_string(value)
    assert "\n" not in lit
    assert decode_mlir_string(lit[1:-1]) == value


def _ops(*spec):
    return [RecordOp(k, n, loc=f"k.py:{i}") for i, (k, n) in enumerate(spec)]


def test_scope_table_nesting_and_order():
    ops = _ops(("start", "outer"), ("start", "inner"), ("end", "inner"), ("end", "outer"))
    table = build_scope_table([ops])
    assert [(s.id, s.name, s.parent) for s in table.scopes] == [(0, "outer", -1), (1, "inner", 0)]


@pytest.mark.parametrize("spec, message", [
    ((("end", "a"),), "no matching start"),
    ((("start", "a"),), "never closed"),
    ((("start", "a"), ("start", "b"), ("end", "a"), ("end", "b")), "still open"),
    ((("start", "a"), ("start", "a"), ("end", "a"), ("end", "a")), "inside itself"),
])
def test_unbalanced_scopes_are_errors_with_location(spec, message):
    with pytest.raises(KperfError, match=message) as e:
        build_scope_table([_ops(*spec)])
    assert "k.py:" in str(e.value) and "fix:" in str(e.value)


CARRIER_ATTRS = '{constraints = "=r", packed_element = 1 : i32, pure = false} -> i32'
TTGIR = '''#loc3 = loc("/src/kern.py":12:8)
module attributes {"ttg.num-warps" = 4 : i32} {
  tt.func public @kern(%arg0: !tt.ptr<f32>) attributes {noinline = false} {
    %0 = tt.elementwise_inline_asm "// kperf.record start \\22load\\22\\0A\\09mov.u32 $0, 0;" ATTRS loc(#loc3)
    scf.for %i = %c0 to %c4 step %c1 : i32 {
      kperf.record start "inner" loc(#loc3)
      proton.record end "inner"
    }
    %1 = tt.elementwise_inline_asm "// kperf.record end \\22load\\22\\0A\\09mov.u32 $0, 0;" ATTRS
    tt.return
  }
}
'''.replace("ATTRS", CARRIER_ATTRS)


def test_scan_finds_carriers_and_textual_records_by_block():
    mod = scan(TTGIR, "kern.ttgir")
    assert [(s.op.kind, s.op.name, s.textual) for s in mod.sites] == [
        ("start", "load", False), ("start", "inner", True), ("end", "inner", True), ("end", "load", False)]
    assert mod.sites[0].op.loc == "kern.py:12"
    assert mod.sites[0].block == mod.sites[3].block != mod.sites[1].block
    assert mod.sites[0].func == "kern" and mod.sites[0].func_is_kernel


def test_materialize_numbers_scopes_and_makes_carriers():
    res = MaterializePass().apply(TTGIR, "kern.ttgir")
    assert res.num_records == 4
    assert res.table.names() == ["load", "inner"]
    assert "kperf.record start" not in res.text.replace("// kperf.record start", "")
    assert "proton.record" not in res.text
    assert res.text.count("id=0") == 2 and res.text.count("id=1") == 2
    again = scan(res.text)
    assert all(not s.textual and s.op.scope_id is not None for s in again.sites)


def test_materialize_rejects_records_in_noinline_function():
    text = TTGIR.replace("tt.func public @kern", "tt.func private @helper").replace(
        "attributes {noinline = false}", "attributes {noinline = true}")
    with pytest.raises(KperfError, match="noinline") as e:
        MaterializePass().apply(text)
    assert "fix:" in str(e.value)


def test_malformed_textual_record_names_its_line():
    text = TTGIR.replace('kperf.record start "inner"', "kperf.record start inner")
    with pytest.raises(KperfError, match="kern.ttgir:6"):
        MaterializePass().apply(text, "kern.ttgir")


def _one_line(line: str) -> str:
    """TTGIR with ``line`` as the scf.for body's only record lines' first line (others removed)."""
    return TTGIR.replace('      kperf.record start "inner" loc(#loc3)\n      proton.record end "inner"\n',
                         line + "\n")


@pytest.mark.parametrize("lines, kinds, name", [
    (['tt.proton_record <0, "start", "cycle", "warpgroup">', 'tt.proton_record <0, "end", "cycle", "warp">'],
     ["start", "end"], "region 0"),
    (["proton.record() {isStart = true, regionId = 7 : i32}",
      "proton.record() {isStart = false, regionId = 7 : i32, metric = \"cycle\"} loc(#loc3)"],
     ["start", "end"], "region 7"),
])
def test_older_proton_record_forms_are_read(lines, kinds, name):
    res = MaterializePass().apply(_one_line("\n".join("      " + ln for ln in lines)), "kern.ttgir")
    sites = [s for s in scan(res.text).sites if s.op.name == name]
    assert [s.op.kind for s in sites] == kinds and res.table.names() == ["load", name]
    assert "proton" not in res.text and "isStart" not in res.text


@pytest.mark.parametrize("line, said", [
    ('tt.proton_record <0, "begin", "cycle", "warpgroup">', 'kperf.record start "name"'),
    ("tt.proton_record <x>", "tt.proton_record <REGION"),
    ("proton.record() {isStart = true}", "regionId = N"),
    ("proton.record() {isStart = maybe, regionId = 1 : i32}", "isStart = true|false"),
    ("proton.record() {isStart = true, region = 1 : i32}", "not one of isStart, regionId"),
    ("proton.record start %0", "proton.init_scope is not read"),
    ('"proton.record"() <{isStart = true, name = "x"}> : () -> ()', "generic form"),
])
def test_malformed_proton_records_show_the_syntax(line, said):
    with pytest.raises(KperfError) as e:
        scan(_one_line("      " + line), "kern.ttgir")
    assert said in str(e.value) and "kern.ttgir:6" in str(e.value) and "fix:" in str(e.value)


@pytest.mark.parametrize("tail", ["garbage", 'loc(#loc3) extra', '"second"', "{x = 1}", "loc(#loc3"])
def test_text_after_a_record_is_an_error(tail):
    with pytest.raises(KperfError, match="kern.ttgir:6: unexpected text after the record") as e:
        scan(_one_line(f'      kperf.record start "x" {tail}\n      kperf.record end "x"'), "kern.ttgir")
    assert "fix:" in str(e.value)


def test_record_location_and_comment_are_kept_and_names_may_hold_loc():
    text = _one_line('      kperf.record start "a loc(b)"  loc(#loc3) // note\n'
                     '      kperf.record end "a loc(b)"')
    res = MaterializePass().apply(text, "kern.ttgir")
    line = res.text.splitlines()[5]
    assert line.startswith("      %kperf_rec_1 = tt.elementwise_inline_asm")
    assert line.endswith("pure = false} -> i32 loc(#loc3) // note")
    assert res.text.splitlines()[6].endswith("-> i32")  # no location: none made up from the name
    sites = scan(text, "kern.ttgir").sites
    assert sites[1].op.loc == "kern.py:12" and sites[2].op.loc == "kern.ttgir:7"


def test_kernel_signatures_and_line_locations():
    from kperf.dialect.ttgir_text import kernel_signatures, locations_to_lines
    text = ('tt.func private @helper(%x: i32) {\n'
            '  tt.func public @k(%a: tensor<4x4xf16, #blocked> {tt.d = 1} loc("a"(#loc)),\n'
            '    %b: !tt.tensordesc<tensor<64x64xf16>> loc(#loc2)) -> i32 {\n')
    types = ["tensor<4x4xf16, #blocked>", "!tt.tensordesc<tensor<64x64xf16>>"]
    assert kernel_signatures(text) == [("k", types, 2)]
    moved = locations_to_lines(TTGIR, "f")
    assert moved.splitlines()[3].endswith('loc("f":4:5)')
    assert moved.splitlines()[0] == TTGIR.splitlines()[0]  # the #loc alias lines stay
    assert len(moved.splitlines()) == len(TTGIR.splitlines())
