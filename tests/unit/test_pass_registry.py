"""One pass protocol and one registry: typed options from ``name{key=value}``, pipelines, ``kperf opt``."""

import dataclasses

import pytest
from test_lower_ptx import STRAIGHT

from kperf.cli import main
from kperf.dialect.errors import KperfError
from kperf.dialect.options import ProfileConfig
from kperf.passes import get_all_passes, get_pass, parse_pipeline, run_text_pipeline
from kperf.passes.auto_insert import AutoInsertPass
from kperf.passes.lower_ptx import LowerPtxPass
from kperf.passes.materialize import MaterializePass


def test_every_pass_is_a_frozen_dataclass_named_in_kebab_case():
    registry = get_all_passes()
    assert set(registry) == {"kperf-auto-insert", "kperf-materialize", "kperf-lower-ptx"}
    for name, getter in registry.items():
        cls = getter()
        assert cls.name == name and cls.INPUT in ("ttgir", "mlir", "ptx")
        assert dataclasses.is_dataclass(cls) and cls.__dataclass_params__.frozen
        assert all(opt == opt.lower() and "_" not in opt for opt in cls.options())


def test_lower_ptx_options_are_typed_fields_and_config_fields():
    p = get_pass("kperf-lower-ptx{num-warps=8,clock=clock64,capacity=512,fold=false,sms=[1,40],"
                 "shared-bytes=none,records=true}")
    assert p == LowerPtxPass(ProfileConfig(clock="clock64", capacity=512, fold=False, sms=(1, 40)), 8)
    assert get_pass("kperf-lower-ptx") == LowerPtxPass(ProfileConfig(), 4)
    assert get_pass("kperf-lower-ptx{shared-bytes=0x100}").shared_bytes == 256


def test_auto_insert_is_in_the_registry():
    assert get_pass("kperf-auto-insert{selectors=[mma,tma]}") == AutoInsertPass(("mma", "tma"))
    assert get_pass("kperf-auto-insert{selectors=mma+loops}").selectors == ("loops", "mma")  # canonical
    with pytest.raises(KperfError, match="works on mlir, not on text"):
        get_pass("kperf-auto-insert{selectors=mma}").run_text("module {}")


def test_pipeline_of_several_passes():
    passes = parse_pipeline("kperf-materialize, kperf-lower-ptx{num-warps=8,clock=clock}")
    assert passes == [MaterializePass(), LowerPtxPass(ProfileConfig(clock="clock"), 8)]


def test_run_text_pipeline_is_the_pass_on_text():
    want = LowerPtxPass(ProfileConfig(strategy="wrap", capacity=256), 4).apply(STRAIGHT).ptx
    assert run_text_pipeline("kperf-lower-ptx{strategy=wrap,capacity=256}", STRAIGHT) == want


def test_kperf_opt_runs_a_pipeline(tmp_path, capsys):
    src = tmp_path / "k.ptx"
    src.write_text(STRAIGHT)
    assert main(["opt", "-p", "kperf-lower-ptx{num-warps=4,clock=clock64}", str(src)]) == 0
    assert capsys.readouterr().out == LowerPtxPass(ProfileConfig(clock="clock64"), 4).apply(STRAIGHT).ptx


@pytest.mark.parametrize("spec, message, fix", [
    ("kperf-lower-ptx{bogus=1}", "unknown option 'bogus' of pass kperf-lower-ptx", "num-warps"),
    ("kperf-materialize{num-warps=4}", "unknown option 'num-warps' of pass kperf-materialize", "none"),
    ("kperf-lower-ptx{num_warps=4}", "unknown option 'num_warps'", "num-warps"),
    ("kperf-lower-ptx{num-warps=eight}", "expected an int, got 'eight'", None),
    ("kperf-lower-ptx{fold=maybe}", "expected true or false", None),
    ("kperf-lower-ptx{record-cost=high}", "expected a number", None),
    ("kperf-lower-ptx{clock=sundial}", "unknown clock 'sundial'", "clock64"),
    ("kperf-lower-ptx{sms=[a]}", r"kperf-lower-ptx\{sms=\[a\]\}: expected an int, got 'a'", None),
    ("kperf-auto-insert{selectors=[nope]}", "unknown auto-insertion selector", "mma"),
])
def test_unknown_options_and_bad_values_are_rejected(spec, message, fix):
    with pytest.raises(KperfError, match=message) as e:
        get_pass(spec)
    if fix:
        assert "fix:" in str(e.value) and fix in str(e.value).split("fix:")[1]


@pytest.mark.parametrize("spec, message", [
    ("", "empty pass pipeline"),
    ("kperf-lower-ptx{num-warps=8", "unclosed"),
    ("kperf-lower-ptx{num-warps=8}}", "unbalanced '}'"),
    ("kperf-lower-ptx}", "unbalanced '}'"),
    ("kperf-lower-ptx{num-warps}", "is not key=value"),
    ("kperf-lower-ptx{=8}", "is not key=value"),
    ("kperf-lower-ptx{num-warps=8}x", "text after the options"),
    ("kperf-lower-ptx,,kperf-materialize", "malformed pass ''"),
    ("kperf-lower-ptx{num-warps=4,num-warps=8}", "given twice"),
    ("kperf-lower-ptx{sms=[1,2}", "unbalanced"),
    ("kperf-lowerptx", "unknown pass 'kperf-lowerptx'"),
])
def test_malformed_pipelines_are_rejected(spec, message):
    with pytest.raises(KperfError, match=message) as e:
        parse_pipeline(spec)
    assert "fix:" in str(e.value) or "twice" in message


def test_get_pass_wants_exactly_one():
    with pytest.raises(KperfError, match="expected one pass, got 2"):
        get_pass("kperf-materialize,kperf-materialize")


def test_kperf_opt_reports_a_bad_pipeline(tmp_path, capsys):
    src = tmp_path / "k.ptx"
    src.write_text(STRAIGHT)
    assert main(["opt", "-p", "kperf-lower-ptx{capacity=big}", str(src)]) != 0
    assert "expected an int" in capsys.readouterr().err
