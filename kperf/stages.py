"""kperf's place in Triton's compile pipeline: one stage-inspection hook, chained with any other.

For a compile whose ``instrumentation_mode`` is a kperf mode (see ``kperf.dialect.options``):

- after ``ttir``: count the record carriers the source produced;
- after ``ttgir`` (the final, pipelined and warp-specialized TTGIR): ``kperf-materialize`` numbers the
  scopes, verifies them and stores the scope table in ``metadata["kperf"]``; a record lost between
  TTIR and TTGIR (Triton's warp specialization deletes records inside ``warp_specialize`` loops) is an
  error, never a silently thinner trace;
- after ``ptx``: ``kperf-lower-ptx`` turns carriers into clock reads and stores, and the profile
  buffer's per-CTA size goes into ``metadata["profile_scratch_size"]`` so Triton's launcher asks the
  profile allocator for it.

Compiles in any other mode pass through untouched (carriers then cost nothing).

The hook is one object, ``HOOK`` (a ``StageHook``): installed once, chained with whatever hook was
there, and holding the override folders in use (``kperf.override_folder.Overrides``), which
``kperf dump`` and ``kperf run --override`` swap in for the duration of a run.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import pathlib

from kperf import triton_compat, ttgir_module
from kperf.dialect.errors import KperfError, error_chain
from kperf.dialect.layout import ALIGNMENT
from kperf.dialect.options import ProfileConfig
from kperf.dialect.selectors import SELECTORS
from kperf.override_folder import Overrides, source_key
from kperf.passes.auto_insert import AutoInsertPass
from kperf.passes.lower_ptx import LowerPtxPass
from kperf.passes.materialize import MaterializePass
from kperf.passes.warp_roles import repeated_role_regions, role_starts, warp_roles

METADATA_KEY = "kperf"


@functools.cache
def code_hash() -> str:
    """A hash of the kperf sources that shape a compiled kernel, so Triton's cache sees kperf changes."""
    import kperf.dialect
    import kperf.passes
    h = hashlib.sha256()
    for pkg in (kperf.dialect, kperf.passes):
        for f in sorted(pathlib.Path(pkg.__file__).parent.glob("*.py")):
            h.update(f.read_bytes())
    h.update(pathlib.Path(__file__).read_bytes())
    h.update(pathlib.Path(triton_compat.__file__).read_bytes())  # how kperf drives this Triton
    return h.hexdigest()[:16]


@functools.lru_cache(maxsize=256)
def instrumentation_mode(config: ProfileConfig) -> str:
    """The ``instrumentation_mode`` Triton gets for ``config``: its options and kperf's code hash.

    Triton reads its own tools (sanitizers) out of the same option; ``triton_compat.check_mode`` makes
    sure this Triton does not find one in kperf's string.  Cached: every profiled launch asks (16 us
    to build here, against 18 us for a whole small launch).
    """
    return triton_compat.check_mode(f"{config.to_mode()},code={code_hash()}")


def _count_carriers(text: str) -> int:
    return text.count("kperf.record start") + text.count("kperf.record end")


def _name_of(metadata: dict) -> str:
    return metadata.get("name") or "kernel"


def instrument_stages(stages: dict, config: ProfileConfig, options=None, source=None,
                      overrides: Overrides | None = None) -> None:
    """Wrap ``stages['ttir'|'ttgir'|'ptx']`` in place so they build an instrumented kernel.

    ``source`` is the kernel's override key (``override_folder.source_key()``) and ``overrides`` the
    folders in use; both matter only when ``config.override`` asks for an override file.
    """
    overrides = overrides or Overrides()
    ttir, ttgir, ptx = stages.get("ttir"), stages["ttgir"], stages["ptx"]

    if ttir is not None:
        def ttir_stage(src, metadata):
            mod = ttir(src, metadata)
            metadata.setdefault(METADATA_KEY, {})["ttir_records"] = _count_carriers(mod.str())
            return mod
        stages["ttir"] = ttir_stage

    def ttgir_stage(src, metadata):
        mod = ttgir(src, metadata)
        info = metadata.setdefault(METADATA_KEY, {})
        overridden = None
        if config.override:  # an override file replaces the final TTGIR (kperf.override)
            replaced, overridden = overrides.load(config.override, source, options, mod)
            mod = replaced or mod
        auto, roles = _auto_insert(mod, config, _name_of(metadata)) if config.auto else (None, None)
        text = mod.str()
        roles = warp_roles(text) if roles is None else roles
        if roles:
            info["warp_roles"] = roles
        if overridden is not None:
            info["override_file"] = str(overridden)
        if "kperf.record" not in text and "proton.record" not in text:
            info.update(num_records=0)
            if info.get("ttir_records") and overridden is None:
                _raise_lost(info["ttir_records"], 0)
            return mod
        result = MaterializePass().apply(text, path=str(overridden or f"{_name_of(metadata)}.ttgir"))
        before = info.get("ttir_records")
        from_source = result.num_records - (auto.num_records if auto else 0)
        if before is not None and overridden is None and from_source < before:
            _raise_lost(before, from_source)
        info.update(config=instrumentation_mode(config), scopes=result.table.to_json(),
                    num_records=result.num_records, record_bound=result.record_bound)
        if auto is not None and auto.flows:
            info["flows"] = flows_to_ids(auto.flows, result.table)
        if auto is not None:  # hoist_arith="auto": the scopes around one op each (not loops, not the kernel)
            info["auto_scopes"] = sorted({result.table.id_of(s.name) for s in auto.sites
                                          if getattr(SELECTORS.get(s.op), "kind", "") != "loop"})
        return ttgir_module.parse(result.text, mod.context)

    def ptx_stage(src, metadata):
        text = ptx(src, metadata)
        info = metadata.setdefault(METADATA_KEY, {})
        if not info.get("num_records"):
            return text
        lowered = fitted_lowering(config, metadata, text, info.get("record_bound"))
        g = lowered.geometry
        metadata[triton_compat.SCRATCH_SIZE] = g.cta_bytes
        metadata[triton_compat.SCRATCH_ALIGN] = ALIGNMENT
        if lowered.shared_bytes is not None:
            metadata["shared"] = lowered.shared_bytes  # smem staging area past the kernel's own
        info.update(num_warps=g.num_warps, capacity=g.capacity, clock=g.clock, strategy=config.strategy,
                    cta_bytes=g.cta_bytes, ptx_records=lowered.num_records, geometry=g.to_json(),
                    store=lowered.store)
        return lowered.ptx

    stages["ttgir"] = ttgir_stage
    stages["ptx"] = ptx_stage
    _tag_errors(stages)


def _auto_insert(mod, config: ProfileConfig, name: str):
    """Records around ops of the final TTGIR (``kperf.passes.auto_insert``): its result, and the warp
    roles when ``granularity="role"`` read them first (to leave a repeated role's partition out; inserted
    records change no warp's role), else None."""
    roles = warp_roles(mod.str()) if config.granularity == "role" else None
    skip = repeated_role_regions(roles) if roles else ()
    builder = triton_compat.mlir_builder(mod.context)
    auto = AutoInsertPass(tuple(config.auto.split("+")), skip_regions=skip).apply(
        mod, builder, triton_compat.IR, path=f"{name}.ttgir")
    return auto, roles


def fitted_config(config: ProfileConfig, bound: int | None, ptx_records: int) -> ProfileConfig:
    """``config`` with ``capacity`` cut to what one warp can write, when the kernel proves a bound.

    A kernel whose records all sit outside loops writes at most one record per site and warp
    (``record_bound``; the PTX may hold copies of a site on different paths, so the larger count is
    used).  A smaller buffer is a smaller memset and copy per launch; ``wrap`` keeps a power of two."""
    if not bound:
        return config
    need = max(bound, ptx_records)
    if config.strategy == "wrap":
        need = 1 << (need - 1).bit_length()
    if need >= config.capacity:
        return config
    return dataclasses.replace(config, capacity=need)


def fitted_lowering(config: ProfileConfig, metadata: dict, ptx: str, bound: int | None):
    """The PTX lowering of ``ptx``, its capacity fitted to the kernel where it can be (``fitted_config``)."""
    lowered = lower_pass(config, metadata).apply(ptx)
    fitted = fitted_config(config, bound, lowered.num_records)
    return lowered if fitted is config else lower_pass(fitted, metadata).apply(ptx)


def lower_pass(config: ProfileConfig, metadata: dict, records: bool = True) -> LowerPtxPass:
    """The PTX lowering for a kernel at Triton's ptx stage (its warps, shared memory and target)."""
    target = metadata.get("target")
    capability = int(getattr(target, "arch", 90) or 90)
    info = metadata.get(METADATA_KEY, {})
    roles = info.get("warp_roles", [])
    return LowerPtxPass(config, int(metadata["num_warps"]), role_starts=role_starts(roles),
                        auto_scopes=tuple(info.get("auto_scopes", ())),
                        records=records, shared_bytes=int(metadata.get("shared") or 0),
                        capability=capability)


def _dump_stage(stages: dict, overrides: Overrides, options, source) -> None:
    ttgir = stages["ttgir"]

    def ttgir_stage(src, metadata):
        mod = ttgir(src, metadata)
        overrides.dump(mod.str(), options, source)
        return mod
    stages["ttgir"] = ttgir_stage


def flows_to_ids(flows: list[dict], table) -> list[dict]:
    """Auto-insertion flow pairs with scope names replaced by scope ids (what the decoder sees)."""
    out = []
    for f in flows:
        g = {"kind": f["kind"], "issue": [table.id_of(n) for n in f["issue"]],
             "complete": [table.id_of(n) for n in f["complete"]]}
        if "pendings" in f:
            g["pendings"] = {str(table.id_of(n)): p for n, p in f["pendings"].items()}
        out.append(g)
    return out


def _raise_lost(before: int, after: int) -> None:
    raise KperfError(
        f"{before - after} of {before} kperf records written in the kernel source were removed by Triton's "
        "passes between TTIR and TTGIR (warp specialization deletes records inside warp_specialize loops)",
        fix="move the scopes outside the warp-specialized loop, or instrument the final TTGIR "
            "(TTGIR override files or automatic insertion)")


#: The attribute an error raised in a compile stage of an instrumented build carries: the stage's name.
FAILED_STAGE = "kperf_failed_stage"


def _tag_errors(stages: dict) -> None:
    """Make every stage's error say which stage of an instrumented build raised it (``failed_stage``)."""
    for name, stage in list(stages.items()):
        stages[name] = _tagged(name, stage)


def _tagged(name: str, stage):
    def run(src, metadata):
        try:
            return stage(src, metadata)
        except Exception as e:
            if getattr(e, FAILED_STAGE, None) is None:
                try:
                    setattr(e, FAILED_STAGE, name)
                except AttributeError:  # an exception type without a __dict__: not tagged
                    pass
            raise
    return run


def failed_stage(error: BaseException) -> str | None:
    """The compile stage of an instrumented build that raised ``error`` (or an error it wraps), else None:
    a launch that failed there never ran, so running it plain instead runs it once."""
    tags = (getattr(e, FAILED_STAGE, None) for e in error_chain(error))
    return next((stage for stage in tags if stage is not None), None)


class StageHook:
    """kperf's stage-inspection hook as installed in Triton: what it chains, and the override folders.

    ``overrides`` is read when a compile starts (``kperf.override`` swaps it for a dump or an override
    run); everything else a compile needs comes from its options.  Triton 3.7+ also calls the hook with
    no arguments for its part of the cache key (``triton_compat.stage_hook_key``).
    """

    def __init__(self):
        self.overrides = Overrides()
        self._previous = None
        self._installed = False

    def __call__(self, *args):
        if not args:  # Triton 3.7+: the hook's part of the cache key
            return triton_compat.stage_hook_key(self._previous)
        self._inspect(*args)

    def _inspect(self, backend, stages, options, language, capability):
        if self._previous is not None:
            self._previous(backend, stages, options, language, capability)
        overrides = self.overrides
        if overrides.dump_dir is not None:  # kperf dump: the final TTGIR, before any instrumentation
            _dump_stage(stages, overrides, options, source_key())
        mode = getattr(options, "instrumentation_mode", "")
        if not ProfileConfig.is_kperf_mode(mode):
            return
        target = getattr(backend, "target", None)
        if target is not None and (target.backend != "cuda" or int(target.arch) < 70):
            raise KperfError(f"kperf supports NVIDIA GPUs of compute capability 7.0 and newer, not {target}",
                             fix="run on a CUDA GPU, or compile for GPUTarget('cuda', 90, 32)")
        instrument_stages(stages, ProfileConfig.from_mode(mode), options, source_key(), overrides)

    def install(self) -> None:
        """Install the hook once, chaining whatever hook was there."""
        if self._installed:
            return
        current = triton_compat.get_knob("runtime.add_stages_inspection_hook")
        self._previous = current if current is not self else None
        triton_compat.set_knob("runtime.add_stages_inspection_hook", self)
        self._installed = True

    def uninstall(self) -> None:
        """Put back the hook that was installed before kperf's."""
        if not self._installed:
            return
        if triton_compat.get_knob("runtime.add_stages_inspection_hook") is self:
            triton_compat.set_knob("runtime.add_stages_inspection_hook", self._previous)
        self._previous = None
        self._installed = False


HOOK = StageHook()
install = HOOK.install
uninstall = HOOK.uninstall
