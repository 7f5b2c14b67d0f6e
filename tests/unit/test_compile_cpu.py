"""Compile through kperf for sm_90 without a GPU: records in TTGIR and PTX, ptxas, SASS cost."""

import re

import pytest
import triton
import triton.language as tl

import kperf
from kperf.dialect.errors import KperfError
from kperf.dialect.options import ProfileConfig
from kperf.examples import matmul as mm


@pytest.fixture(scope="module")
def gemm_report():
    return kperf.compile(mm.matmul_kernel, signature=mm.SIGNATURE, constexprs=mm.CONSTEXPRS,
                         target="cuda:90", **mm.COMPILE_OPTIONS)


@pytest.mark.compile_side
def test_gemm_records_in_ttgir_ptx_and_sass(gemm_report):
    r = gemm_report
    assert r.scopes.names() == ["load", "mma", "epilogue"]
    # the K loop was pipelined (async copies) and still holds its 4 records
    assert "ttg.async_copy_global_to_local" in r.ttgir
    loop = r.ttgir[r.ttgir.index("scf.for"):]
    assert loop.count("// kperf.record start") >= 2
    assert r.num_records == 6
    assert len(re.findall(r"st\.global\.v2\.b32 \[%kp_ptr\+\d+\], \{%kt, %kc\}", r.ptx)) == 6
    assert r.ptx.count("mov.u32 %kc, %clock;") == 6
    assert r.sass.count("SR_CLOCKLO") >= 6  # 6 records + the header's clock64
    assert r.geometry.num_warps == 8
    assert r.metadata["profile_scratch_size"] == r.geometry.cta_bytes


@pytest.mark.compile_side
def test_gemm_sass_cost_per_record_is_held(gemm_report):
    """Measured on sm_90 with the wheel's ptxas: 4 SASS per record in the K loop, ~6 on average."""
    r = gemm_report
    assert r.local_memory_ops == r.local_memory_ops_plain == 0
    assert r.sass_per_record <= 7.0, r.summary()
    assert r.sass_fixed_cost <= 45, r.summary()


def _k_loop(sass: str) -> list[str]:
    """The SASS instructions of the K loop: from the head of the first backward branch past an HGMMA to it.

    Found by addresses, not by a window of text around the HGMMA: ptxas releases lay the loop out
    differently (Triton 3.9 assembles sm_90 with CUDA 13's ptxas).
    """
    lines = re.findall(r"/\*([0-9a-f]{4,})\*/\s+([^;]*);", sass)
    first = next(i for i, (_, text) in enumerate(lines) if "HGMMA" in text)
    for addr, text in lines[first:]:
        target = re.search(r"\bBRA\b.*0x([0-9a-f]+)", text)
        if target and int(target.group(1), 16) < int(lines[first][0], 16):
            head, tail = int(target.group(1), 16), int(addr, 16)
            return [text for a, text in lines if head <= int(a, 16) <= tail]
    raise AssertionError("no loop around the HGMMA")


@pytest.mark.compile_side
def test_hot_loop_records_cost_four_sass_instructions(gemm_report):
    """In the K loop: CS2R clock, MOV tag, ISETP bound check, STG with a folded offset."""
    body = _k_loop(gemm_report.sass)
    stores = [re.search(r"STG\.E\.64 desc\[UR\d+\]\[R\d+\.64(\+0x[0-9a-f]+)?\]", s) for s in body]
    stores = [m for m in stores if m]
    assert len(stores) == 4 and sum(1 for s in body if "SR_CLOCKLO" in s) == 4  # the loop's 4 records
    assert len([m for m in stores if m.group(1)]) >= 3  # offsets folded into the store


def test_plain_compile_is_unchanged_by_carriers():
    """Carriers without profiling leave the SASS identical to a kernel with no scopes at all."""
    @triton.jit
    def with_scopes(x_ptr, n, BLOCK: tl.constexpr):
        offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
        with kperf.scope("io"):
            x = tl.load(x_ptr + offs, mask=offs < n)
            tl.store(x_ptr + offs, x * 2, mask=offs < n)

    @triton.jit
    def without_scopes(x_ptr, n, BLOCK: tl.constexpr):
        offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
        x = tl.load(x_ptr + offs, mask=offs < n)
        tl.store(x_ptr + offs, x * 2, mask=offs < n)

    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    from kperf.sass import disassemble, instructions
    sig = {"x_ptr": "*fp32", "n": "i32", "BLOCK": "constexpr"}
    attrs = {(0,): [["tt.divisibility", 16]]}
    sass = []
    for fn in (with_scopes, without_scopes):
        k = triton.compile(ASTSource(fn, sig, {"BLOCK": 1024}, attrs), target=GPUTarget("cuda", 90, 32))
        sass.append(instructions(disassemble(k.asm["cubin"])))
    assert sass[0] == sass[1]


@pytest.mark.parametrize("config", [ProfileConfig(clock="clock64"), ProfileConfig(clock="globaltimer"),
                                    ProfileConfig(strategy="wrap", capacity=256)])
def test_other_configs_assemble(config):
    r = kperf.compile(mm.matmul_kernel, signature=mm.SIGNATURE, constexprs=mm.CONSTEXPRS, config=config,
                      **mm.COMPILE_OPTIONS)
    assert r.num_records == 6
    assert r.geometry.record_bytes == (8 if config.clock == "clock" else 16)
    assert r.local_memory_ops == 0


@triton.jit(noinline=True)
def _noinline_helper(x_ptr):
    with kperf.scope("inside"):
        tl.store(x_ptr, 1.0)


@triton.jit
def _calls_noinline(x_ptr):
    _noinline_helper(x_ptr)


def test_records_in_noinline_function_fail_loudly():
    with pytest.raises(KperfError, match="noinline") as e:
        kperf.compile(_calls_noinline, signature={"x_ptr": "*fp32"})
    assert "fix:" in str(e.value)


@triton.jit
def _unbalanced(x_ptr):
    kperf.enter_scope("open")
    tl.store(x_ptr, 1.0)


def test_unbalanced_scopes_fail_with_source_location():
    with pytest.raises(KperfError, match="never closed") as e:
        kperf.compile(_unbalanced, signature={"x_ptr": "*fp32"})
    assert "test_compile_cpu.py:" in str(e.value)


@pytest.mark.parametrize("target", ["hip:gfx942", "cuda:60", "cuda"])
def test_unsupported_targets(target):
    with pytest.raises(KperfError, match="target|NVIDIA"):
        kperf.compile(_unbalanced, signature={"x_ptr": "*fp32"}, target=target)


@triton.jit
def _no_scopes(x_ptr):
    tl.store(x_ptr, 1.0)


def test_kernel_without_scopes_is_reported():
    with pytest.raises(KperfError, match="no kperf scopes"):
        kperf.compile(_no_scopes, signature={"x_ptr": "*fp32"})


def test_scope_outside_kernel_is_an_error():
    with pytest.raises(KperfError, match="inside a @triton.jit"):
        with kperf.scope("host"):
            pass
