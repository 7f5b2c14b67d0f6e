"""The benchmarked implementations ("variants", tritonbench's benchmark functions) of flash_attention.

``kperf_*`` variants are the Triton kernels in this repository's ``examples/``: ``kperf_vanilla`` is
the warp-specialized tutorial kernel (``examples/attention.py``); ``kperf_ws*`` are the Gluon
pipelines of ``examples/fa3_pipelines.py``.  ``sdpa_flash`` / ``sdpa_cudnn`` are PyTorch SDPA
restricted to one backend.  ``Variant.make(q, k, v, causal, sm_scale)`` returns the zero-argument
callable that is timed; ``Variant.profiled(...)`` runs one launch under ``kperf.profile`` and returns
the ``kperf.Profile``.

:class:`Variant` and :func:`select` serve every operator: a variant's ``make`` and ``profiled`` take
that operator's inputs (``masked.py``: one ``MaskedCase``), and ``device`` says what it runs on.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from kperf.dialect.errors import KperfError


def capacity_for(seq_len: int, per_block: int = 16, fixed: int = 64) -> int:
    """Record slots per warp (a power of two) for a CTA looping over ``seq_len`` keys in blocks of 64 or
    more, with up to ``per_block`` records per block per warp: every event fits, none is lost."""
    need = per_block * -(-seq_len // 64) + fixed
    return 1 << (need - 1).bit_length()


#: what a variant needs: a Hopper GPU (sm_90: TMA descriptors, wgmma), or any CUDA GPU
DEVICES = ("hopper", "cuda")


class Skipped(KperfError):
    """A variant that does not run at this shape by design (said in the table, not an error)."""


@dataclasses.dataclass(frozen=True)
class Variant:
    name: str
    kind: str  # "kperf" (a Triton/Gluon kernel kperf can profile) or "baseline"
    description: str
    _make: Callable = dataclasses.field(repr=False, compare=False)
    _profile: Callable | None = dataclasses.field(default=None, repr=False, compare=False)
    device: str = "hopper"  # one of DEVICES
    checked: bool = True  # the accuracy metric applies: it computes the operator's function

    def make(self, *inputs) -> Callable:
        """The zero-argument callable that is timed (flash_attention: ``make(q, k, v, causal, sm_scale)``)."""
        return self._make(*inputs)

    @property
    def profilable(self) -> bool:
        return self._profile is not None

    def profiled(self, *inputs):
        """Run one launch with kperf profiling on; returns ``(output, kperf.Profile)`` (masked_attention:
        and the imbalance summary)."""
        if self._profile is None:
            raise KperfError(f"{self.name} is not a Triton kernel: kperf cannot profile it",
                             fix="ask for the kperf metric on kperf_* variants only")
        return self._profile(*inputs)


# --- kperf_* variants ---------------------------------------------------------------------------------

def _vanilla_make(q, k, v, causal, sm_scale):
    from kperf.examples import attention
    return lambda: attention.attention(q, k, v, causal, sm_scale)


def _vanilla_profile(q, k, v, causal, sm_scale):
    import kperf
    from kperf.examples import attention
    try:
        kernel = kperf.profile(attention.attn_fwd_kernel, auto="mma,tma", capacity=capacity_for(q.shape[2]))
    except (TypeError, KperfError) as e:
        raise KperfError(f"kperf_vanilla has no kperf scopes in its source and this kperf cannot insert "
                         f"them automatically ({e})",
                         fix="profile it once automatic insertion (@kperf.profile(auto=...)) "
                             "is available") from e
    out = attention.attention(q, k, v, causal, sm_scale, kernel=kernel)
    return out, kperf.results(kernel)


def _gluon_make(pipeline: str):
    def make(q, k, v, causal, sm_scale):
        from kperf.examples import fa3_pipelines as fa3
        return lambda: fa3.fa3_attention(q, k, v, causal, sm_scale, pipeline=pipeline)
    return make


def _gluon_profile(pipeline: str):
    def profile(q, k, v, causal, sm_scale):
        import kperf
        from kperf.examples import fa3_pipelines as fa3
        n_tiles = q.shape[0] * q.shape[1] * (q.shape[2] // fa3.BLOCK_M.value)
        # a persistent CTA loops over tiles: its warps record every tile's blocks
        tiles = -(-n_tiles // fa3.grid_ctas(fa3.get_pipeline(pipeline), q))
        kernel = kperf.profile(fa3.fa3_fwd_kernel, capacity=capacity_for(q.shape[2] * tiles))
        out = fa3.fa3_attention(q, k, v, causal, sm_scale, pipeline=pipeline, kernel=kernel)
        return out, kperf.results(kernel)
    return profile


# --- baselines ----------------------------------------------------------------------------------------

def _sdpa_make(backend_name: str):
    def make(q, k, v, causal, sm_scale):
        import torch
        from torch.nn.attention import SDPBackend, sdpa_kernel
        backend = getattr(SDPBackend, backend_name)

        def run():
            with sdpa_kernel([backend]):
                return torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=causal,
                                                                        scale=sm_scale)
        return run
    return make


def _build() -> dict[str, Variant]:
    out = {"kperf_vanilla": Variant(
        "kperf_vanilla", "kperf",
        "Triton tutorial kernel, TMA + warp_specialize=True (examples/attention.py)",
        _vanilla_make, _vanilla_profile)}
    for name, desc in GLUON_PIPELINES.items():
        out[f"kperf_{name}"] = Variant(f"kperf_{name}", "kperf", desc, _gluon_make(name),
                                       _gluon_profile(name))
    out["sdpa_flash"] = Variant("sdpa_flash", "baseline", "PyTorch SDPA, flash backend",
                                _sdpa_make("FLASH_ATTENTION"), device="cuda")
    out["sdpa_cudnn"] = Variant("sdpa_cudnn", "baseline", "PyTorch SDPA, cuDNN backend",
                                _sdpa_make("CUDNN_ATTENTION"), device="cuda")
    return out


# The Gluon pipelines (names as in examples/fa3_pipelines.PIPELINES; checked by the tests).
GLUON_PIPELINES = {
    "ws": "Gluon: producer warp + 2 consumer warpgroups, QK^T -> softmax -> PV in sequence",
    "ws_overlap": "Gluon: + intra-warpgroup overlap (softmax of block j under PV of block j-1)",
    "ws_overlap_v3": "Gluon: ws_overlap with a third V buffer (head dim 128; four at 64)",
    "ws_pingpong": "Gluon: + ping-pong between the two consumer warpgroups",
    "ws_pingpong_s3": "Gluon: ws_pingpong with one more K/V buffer",
    "ws_overlap_persistent": "Gluon: ws_overlap, persistent (one CTA per SM; the next tile loads early)",
    "ws_pingpong_persistent": "Gluon: ws_pingpong, persistent (one CTA per SM; the next tile loads early)",
}

VARIANTS: dict[str, Variant] = _build()


def select(only: list[str] | None, skip: list[str] = (), registry: dict[str, Variant] | None = None
           ) -> list[Variant]:
    """The variants ``--only`` / ``--skip`` name, in the order given (default: all, baselines last), from
    ``registry`` (default: flash_attention's)."""
    registry = VARIANTS if registry is None else registry
    names = list(only) if only else list(registry)
    unknown = [n for n in list(names) + list(skip) if n not in registry]
    if unknown:
        raise KperfError(f"unknown variant(s) {', '.join(unknown)}",
                         fix=f"use names from {', '.join(registry)}")
    return [registry[n] for n in names if n not in skip]
