"""Triton's cache never hands an instrumented binary to a plain compile, nor the reverse (no GPU)."""

import pathlib

import pytest
import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource

from kperf import override, stages
from kperf.compile_api import default_attrs
from kperf.dialect.options import ProfileConfig
from kperf.examples import matmul as mm

TARGET = GPUTarget("cuda", 90, 32)


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setattr(triton.knobs.cache, "dir", str(tmp_path / "cache"))
    monkeypatch.setattr(triton.knobs.compilation, "always_compile", False)
    stages.install()
    return tmp_path


def _compile(mode=""):
    attrs = default_attrs(mm.SIGNATURE, mm.matmul_kernel)
    src = ASTSource(mm.matmul_kernel, mm.SIGNATURE, mm.CONSTEXPRS, attrs)
    return triton.compile(src, target=TARGET, options={**mm.COMPILE_OPTIONS, "instrumentation_mode": mode})


def _records(k) -> int:
    return k.asm["ptx"].count("// kperf record #")


def test_plain_and_instrumented_alternate_without_leaking(cache):
    plain = _compile()
    src_only = _compile(stages.instrumentation_mode(ProfileConfig()))
    auto = _compile(stages.instrumentation_mode(ProfileConfig(auto="mma,loops")))
    assert _records(plain) == 0 and plain.metadata.profile_scratch_size == 0
    assert _records(src_only) == 6
    assert _records(auto) > 6
    assert len({plain.hash, src_only.hash, auto.hash}) == 3
    # every later compile is a cache hit of its own kind
    assert _compile().hash == plain.hash and _records(_compile()) == 0
    # selectors are put in a canonical order
    assert _compile(stages.instrumentation_mode(ProfileConfig(auto="loops,mma"))).hash == auto.hash
    assert _records(_compile(stages.instrumentation_mode(ProfileConfig()))) == 6


def test_override_edits_recompile_and_never_reach_plain_runs(cache):
    folder = cache / "ovr"
    with override.dumped(folder) as written:
        _compile()
    path = pathlib.Path(written[0])
    plain = _compile()  # compiled (and cached) before any override is used

    override.insert(folder, "mma")
    with override.applied(folder, ProfileConfig()) as cfg1:
        first = _compile(stages.instrumentation_mode(cfg1))
    assert first.metadata.kperf["override_file"] == str(path)

    override.insert(folder, "loops")  # edit the file: more records
    with override.applied(folder, ProfileConfig()) as cfg2:
        second = _compile(stages.instrumentation_mode(cfg2))
    assert cfg1.override != cfg2.override
    assert second.hash != first.hash and _records(second) > _records(first)

    # plain compiles after the override runs still get the plain binary (no override, no records)
    again = _compile()
    assert again.hash == plain.hash and _records(again) == 0
    assert "override_file" not in (getattr(again.metadata, "kperf", None) or {})
    # and an instrumented compile without the folder does not pick up the overridden binary
    src_only = _compile(stages.instrumentation_mode(ProfileConfig()))
    assert src_only.hash not in (first.hash, second.hash) and _records(src_only) == 6


def test_override_mode_without_an_active_folder_is_an_error(cache):
    from kperf.dialect.errors import KperfError
    with pytest.raises(KperfError) as e:
        _compile(stages.instrumentation_mode(ProfileConfig(override="0123456789abcdef")))
    assert "no override folder is active" in str(e.value) and "kperf run --override" in str(e.value)
