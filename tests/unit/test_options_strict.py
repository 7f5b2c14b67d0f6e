"""ProfileConfig checks every option's type and range when it is made, and every error names the option:
in Python (``option capacity``), in kperf.profile / kperf.session (``kperf.profile(capacity=...)``), in a
pass pipeline (``kperf-lower-ptx{sms=[a]}``) and on the command line (``--capacity``)."""

from __future__ import annotations

import math

import numpy as np
import pytest

import kperf
from kperf.cli import main
from kperf.dialect.errors import KperfError
from kperf.dialect.layout import Geometry
from kperf.dialect.options import MAX_CAPACITY, MAX_WARPS, OptionError, ProfileConfig


@pytest.mark.parametrize("options, option, words", [
    ({"sms": "12"}, "sms", "got str '12'"),  # once iterated into SMs (1, 2)
    ({"sms": 5}, "sms", "tuple of SM ids"),
    ({"sms": (1, "2")}, "sms", "got '2'"),
    ({"sms": (True,)}, "sms", "got True"),
    ({"sms": (1024,)}, "sms", "[0, 1023]"),
    ({"record_cost": math.inf}, "record_cost", "finite"),  # once turned every time into NaN
    ({"record_cost": math.nan}, "record_cost", "finite"),
    ({"record_cost": -1.0}, "record_cost", ">= 0"),
    ({"record_cost": "3"}, "record_cost", "number of cycles"),
    ({"capacity": True}, "capacity", "got bool True"),  # a bool is an int in Python
    ({"capacity": 64.0}, "capacity", "got float"),
    ({"capacity": 0}, "capacity", "[1, 4194304]"),
    ({"capacity": 2**40}, "capacity", "[1, 4194304]"),  # once compiled into a 32-bit compare
    ({"capacity": MAX_CAPACITY + 1}, "capacity", "[1, 4194304]"),
    ({"capacity": 1000, "strategy": "wrap"}, "capacity", "power-of-two"),
    ({"fold": "yes"}, "fold", "True or False"),
    ({"fold": 1}, "fold", "True or False"),
    ({"fold": True, "strategy": "wrap"}, "fold", "keep-first"),
    ({"clone": "no"}, "clone", "True or False"),
    ({"merge_blocks": 0}, "merge_blocks", "True or False"),
    ({"hoist_tags": "yes"}, "hoist_tags", "True or False"),
    ({"defer_stores": "yes"}, "defer_stores", "True or False"),
    ({"hoist_arith": True}, "hoist_arith", "unknown hoist_arith True"),
    ({"hoist_arith": "some"}, "hoist_arith", "unknown hoist_arith 'some'"),
    ({"vector_pointer": "yes"}, "vector_pointer", "True or False"),
    ({"strategy": "latest"}, "strategy", "unknown strategy 'latest'"),
    ({"strategy": None}, "strategy", "unknown strategy None"),
    ({"clock": ["clock"]}, "clock", "unknown clock"),
    ({"store": "disk"}, "store", "unknown store"),
    ({"granularity": "thread"}, "granularity", "unknown granularity"),
    ({"warp_mask": -1}, "warp_mask", "[0, 4294967295]"),
    ({"warp_mask": 1 << 32}, "warp_mask", "[0, 4294967295]"),
    ({"warp_mask": False}, "warp_mask", "got bool"),
    ({"cta_stride": 0}, "cta_stride", "[1, 4294967295]"),
    ({"cta_stride": 2.0}, "cta_stride", "got float"),
    ({"cta_stride": 1 << 32}, "cta_stride", "[1, 4294967295]"),
    ({"auto": 3}, "auto", "must be a string"),
    ({"auto": "mma,bogus"}, "auto", "unknown auto-insertion selector 'bogus'"),
    ({"override": None}, "override", "must be a string"),
])
def test_every_option_is_checked_and_named(options, option, words):
    with pytest.raises(OptionError) as e:
        ProfileConfig(**options)
    assert e.value.option == option
    assert str(e.value).startswith(f"option {option}: ") and words in str(e.value), str(e.value)
    assert isinstance(e.value, KperfError)


def test_good_values_are_normalised():
    cfg = ProfileConfig(capacity=np.int64(64), sms=[3, 1, 3], record_cost=2, warp_mask=np.uint32(5),
                        cta_stride=np.int32(2), fold=np.bool_(True))
    assert (cfg.capacity, cfg.sms, cfg.record_cost, cfg.warp_mask, cfg.cta_stride) == (64, (1, 3), 2.0, 5, 2)
    assert type(cfg.capacity) is int and type(cfg.record_cost) is float
    assert ProfileConfig.from_mode(cfg.to_mode()) == cfg
    assert ProfileConfig(capacity=MAX_CAPACITY, strategy="wrap").capacity == 1 << 22


def test_the_capacity_bound_keeps_every_32_bit_quantity_of_the_lowering_in_range():
    """The lowering multiplies by cta_bytes and warp_bytes and compares with capacity as u32 immediates
    (passes/ptx_snippets.py): at MAX_CAPACITY with the widest records, the most warps and a fold sink as
    large again, all stay below 2**32; twice MAX_CAPACITY would not."""
    g = Geometry(MAX_WARPS, MAX_CAPACITY, "clock64", sink=MAX_CAPACITY - 1)
    assert g.cta_bytes < 1 << 32 and g.warp_bytes < 1 << 32 and g.capacity < 1 << 32
    assert Geometry(MAX_WARPS, 2 * MAX_CAPACITY, "clock64").cta_bytes >= 1 << 32
    with pytest.raises(OptionError, match="2\\*\\*22") as e:
        ProfileConfig(capacity=2 * MAX_CAPACITY)
    assert "32 bits" in e.value.fix


def test_renamed_names_the_flag():
    with pytest.raises(OptionError) as e:
        ProfileConfig(capacity=0)
    err = e.value.renamed("--capacity")
    assert str(err).startswith("--capacity: must be in [1, 4194304]") and err.fix == e.value.fix


@pytest.mark.parametrize("call, words", [
    (lambda: kperf.profile(capacity="12"), "kperf.profile(capacity=...): must be an int"),
    (lambda: kperf.profile(sms="12"), "kperf.profile(sms=...): must be a tuple of SM ids"),
    (lambda: kperf.profile(capcity=5), "kperf.profile: unknown option 'capcity'"),
    (lambda: kperf.profile(config=5), "config must be a ProfileConfig"),
    (lambda: kperf.profile(config=ProfileConfig(), capacity=4), "either config= or individual options"),
    (lambda: kperf.profile(profile_autotune="yes"), "profile_autotune must be True or False"),
    (lambda: kperf.session(record_cost=math.inf), "kperf.session(record_cost=...): must be a finite"),
    (lambda: kperf.session(fold="yes"), "kperf.session(fold=...): must be True or False"),
    (lambda: kperf.session(kernels="("), "kperf.session(kernels=...): '(' is not a regular expression"),
    (lambda: kperf.session(kernels=3), "kperf.session(kernels=...): expected a kernel-name regex"),
    (lambda: kperf.session(on_trace_ready=3), "on_trace_ready must be callable"),
    (lambda: kperf.session(out_dir=3), "out_dir must be a folder path"),
])
def test_profile_and_session_options_are_checked(call, words):
    with pytest.raises(KperfError) as e:
        call()
    assert words in str(e.value), str(e.value)


@pytest.fixture
def kernel_file(tmp_path):
    path = tmp_path / "k.py"
    path.write_text("import triton\nimport triton.language as tl\nimport kperf\n\n\n@triton.jit\n"
                    "def add(x, n, BLOCK: tl.constexpr):\n    with kperf.scope('load'):\n"
                    "        i = tl.arange(0, BLOCK)\n        tl.store(x + i, i, mask=i < n)\n")
    return path


@pytest.mark.parametrize("flags, words", [
    (["--capacity", "0"], "--capacity: must be in [1, 4194304]"),
    (["--capacity", str(2**40)], "--capacity: must be in [1, 4194304]"),
    (["--capacity", "1000", "--strategy", "wrap"], "--capacity: --strategy wrap needs a power-of-two"),
    (["--cta-stride", "0"], "--cta-stride: "),
    (["--sms", "0-x"], "--sms: expected SM ids such as 0,8,16 or a range 0-131/8"),
])
def test_cli_errors_name_the_flag(kernel_file, capsys, flags, words):
    sig = '{"x": "*fp32", "n": "i32", "BLOCK": "constexpr"}'
    assert main(["compile", f"{kernel_file}:add", "--signature", sig, "--constexprs", '{"BLOCK": 64}',
                 *flags]) == 2
    err = capsys.readouterr().err
    assert err.startswith("kperf: error: ") and words in err and "\n  fix: " in err, err
    assert "Traceback" not in err


def test_cli_lowering_flags_reach_the_config():
    """kperf compile / kperf run take the lowering choices too, so `kperf compile` reports each one's
    SASS cost (issue 19); a flag not given keeps ProfileConfig's default."""
    import argparse

    from kperf.cli_common import add_config_args, config
    p = argparse.ArgumentParser()
    add_config_args(p)
    cfg = config(p.parse_args(["--granularity", "role", "--store", "auto", "--warp-mask", "0x11",
                               "--cta-stride", "2", "--sms", "0-16/8,20"]))
    assert (cfg.granularity, cfg.store, cfg.warp_mask, cfg.cta_stride, cfg.sms) == ("role", "auto", 0x11, 2,
                                                                                   (0, 8, 16, 20))
    default = config(p.parse_args([]))
    assert (default.granularity, default.store, default.cta_stride, default.sms) == ("warp", "global", 1, ())


def test_cli_auto_and_kernels_name_their_flags(tmp_path, capsys):
    script = tmp_path / "s.py"
    script.write_text("print('ran')\n")
    assert main(["run", "--auto", "mma,bogus", str(script)]) == 2
    err = capsys.readouterr().err
    assert "kperf: error: --auto: unknown auto-insertion selector 'bogus'" in err
    assert main(["run", "--kernels", "(", str(script)]) == 2
    assert "kperf: error: --kernels: '(' is not a regular expression" in capsys.readouterr().err
    assert "ran" not in capsys.readouterr().out  # refused before the script ran


def test_pass_pipeline_options_are_strict():
    from kperf.passes import get_pass
    with pytest.raises(KperfError, match="record_cost: must be a finite"):
        get_pass("kperf-lower-ptx{record-cost=inf}")
    with pytest.raises(KperfError, match=r"option capacity: must be in \[1, 4194304\]"):
        get_pass("kperf-lower-ptx{capacity=1099511627776}")
    assert get_pass("kperf-lower-ptx{sms=[3,1]}").config.sms == (1, 3)


@pytest.mark.parametrize("strategy", ["keep-first", "wrap"])
def test_the_largest_capacity_lowers_to_32_bit_immediates(strategy):
    """At MAX_CAPACITY, 32 warps and 16-byte records, every immediate of the lowered PTX that a u32
    instruction (mul.wide.u32 by cta_bytes / warp_bytes, min.u32 / setp.lt.u32 against the capacity)
    takes still fits in 32 bits."""
    import re

    from test_lower_ptx import STRAIGHT

    from kperf.passes.lower_ptx import LowerPtxPass
    ptx = LowerPtxPass(ProfileConfig(capacity=MAX_CAPACITY, clock="clock64", strategy=strategy),
                       MAX_WARPS).apply(STRAIGHT).ptx
    u32 = [line for line in ptx.splitlines() if re.search(r"\.(u32|b32|s32)\b", line)]
    values = [int(v) for line in u32 for v in re.findall(r"(?<![%\w.])(\d+)\b", line.split("//")[0])]
    assert values and max(values) < 1 << 32
    assert any(str(MAX_CAPACITY) in line or str(MAX_CAPACITY - 1) in line for line in u32)
