"""kperf's place in Triton's compile pipeline: one stage-inspection hook, chained with any other.

For a compile whose ``instrumentation_mode`` is a kperf mode (see ``kperf.config``):

- after ``ttir``: count the record carriers the source produced;
- after ``ttgir`` (the final, pipelined and warp-specialized TTGIR): ``kperf-materialize`` numbers the
  scopes, verifies them and stores the scope table in ``metadata["kperf"]``; a record lost between
  TTIR and TTGIR (Triton's warp specialization deletes records inside ``warp_specialize`` loops) is an
  error, never a silently thinner trace;
- after ``ptx``: ``kperf-lower-ptx`` turns carriers into clock reads and stores, and the profile
  buffer's per-CTA size goes into ``metadata["profile_scratch_size"]`` so Triton's launcher asks the
  profile allocator for it.

Compiles in any other mode pass through untouched (carriers then cost nothing).
"""

from __future__ import annotations

import os
import tempfile

import triton
from triton._C.libtriton import ir

from kperf.config import ProfileConfig
from kperf.dialect.errors import KperfError
from kperf.layout import ALIGNMENT
from kperf.passes.lower_ptx import LowerPtxPass
from kperf.passes.materialize import MaterializePass

METADATA_KEY = "kperf"

_previous_hook = None
_installed = False


def _count_carriers(text: str) -> int:
    return text.count("kperf.record start") + text.count("kperf.record end")


def _reparse(text: str, like) -> object:
    fd, path = tempfile.mkstemp(suffix=".ttgir", prefix="kperf_")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        mod = ir.parse_mlir_module(path, like.context)
        mod.context = like.context
        return mod
    finally:
        os.unlink(path)


def _name_of(metadata: dict) -> str:
    return metadata.get("name") or "kernel"


def instrument_stages(stages: dict, config: ProfileConfig) -> None:
    """Wrap ``stages['ttir'|'ttgir'|'ptx']`` in place so they build an instrumented kernel."""
    ttir, ttgir, ptx = stages.get("ttir"), stages["ttgir"], stages["ptx"]

    if ttir is not None:
        def ttir_stage(src, metadata):
            mod = ttir(src, metadata)
            metadata.setdefault(METADATA_KEY, {})["ttir_records"] = _count_carriers(mod.str())
            return mod
        stages["ttir"] = ttir_stage

    def ttgir_stage(src, metadata):
        mod = ttgir(src, metadata)
        text = mod.str()
        info = metadata.setdefault(METADATA_KEY, {})
        if "kperf.record" not in text and "proton.record" not in text:
            info.update(num_records=0)
            if info.get("ttir_records"):
                _raise_lost(info["ttir_records"], 0)
            return mod
        result = MaterializePass().apply_text(text, path=f"{_name_of(metadata)}.ttgir")
        before = info.get("ttir_records")
        if before is not None and result.num_records < before:
            _raise_lost(before, result.num_records)
        info.update(config=config.to_mode(), scopes=result.table.to_json(), num_records=result.num_records)
        return _reparse(result.text, mod)

    def ptx_stage(src, metadata):
        text = ptx(src, metadata)
        info = metadata.setdefault(METADATA_KEY, {})
        if not info.get("num_records"):
            return text
        lowered = LowerPtxPass(config, int(metadata["num_warps"])).apply_text(text)
        g = lowered.geometry
        metadata["profile_scratch_size"] = g.cta_bytes
        metadata["profile_scratch_align"] = ALIGNMENT
        info.update(num_warps=g.num_warps, capacity=g.capacity, clock=g.clock, strategy=config.strategy,
                    cta_bytes=g.cta_bytes, ptx_records=lowered.num_records)
        return lowered.ptx

    stages["ttgir"] = ttgir_stage
    stages["ptx"] = ptx_stage


def _raise_lost(before: int, after: int) -> None:
    raise KperfError(
        f"{before - after} of {before} kperf records written in the kernel source were removed by Triton's "
        "passes between TTIR and TTGIR (warp specialization deletes records inside warp_specialize loops)",
        fix="move the scopes outside the warp-specialized loop, or instrument the final TTGIR "
            "(TTGIR override files or automatic insertion)")


def _hook(backend, stages, options, language, capability):
    if _previous_hook is not None:
        _previous_hook(backend, stages, options, language, capability)
    mode = getattr(options, "instrumentation_mode", "")
    if not ProfileConfig.is_kperf_mode(mode):
        return
    target = getattr(backend, "target", None)
    if target is not None and (target.backend != "cuda" or int(target.arch) < 70):
        raise KperfError(f"kperf supports NVIDIA GPUs of compute capability 7.0 and newer, not {target}",
                         fix="run on a CUDA GPU, or compile for GPUTarget('cuda', 90, 32)")
    instrument_stages(stages, ProfileConfig.from_mode(mode))


def install() -> None:
    """Install kperf's stage hook once, chaining whatever hook was there."""
    global _previous_hook, _installed
    if _installed:
        return
    current = triton.knobs.runtime.add_stages_inspection_hook
    _previous_hook = current if current is not _hook else None
    triton.knobs.runtime.add_stages_inspection_hook = _hook
    _installed = True


def uninstall() -> None:
    """Put back the hook that was installed before kperf's."""
    global _previous_hook, _installed
    if not _installed:
        return
    if triton.knobs.runtime.add_stages_inspection_hook is _hook:
        triton.knobs.runtime.add_stages_inspection_hook = _previous_hook
    _previous_hook = None
    _installed = False
