"""The masked_attention operator: kperf's masked-attention schedules against FlexAttention and SDPA.

One input is a :class:`~kperf.tritonbench_ext.args.Shape` with a mask family; its mask is
``examples/block_masks.py``'s (``--mask`` and the family's flags: :func:`mask_spec`) and every variant
gets the same :class:`MaskedCase` (q, k, v, the block lists on the device, the softmax scale).  The
variants (:data:`MASKED_VARIANTS`), called as ``bench/masked_attention.py`` calls them:

- ``kperf_grid``, ``kperf_lpt_grid``, ``kperf_persistent``, ``kperf_persistent_grouped``: the four
  schedules of ``examples/masked_attention.py`` on the mask's block lists (Hopper: TMA descriptors);
- ``kperf_dense``: the same kernel on every block (``block_masks.dense`` lists, ``grid``): what skipping
  the masked blocks saves.  It computes unmasked attention, so the accuracy metric leaves it out;
- ``flex_attention``: ``torch.compile(flex_attention)`` with a ``BlockMask`` holding exactly the same
  lists (``BlockMask.from_kv_blocks``: ``block_masks.flex_block_mask``);
- ``sdpa_mask``: PyTorch SDPA with the dense boolean element mask (every block computed, the mask read),
  only where that mask has at most ``--sdpa-max-elems`` elements (``B * H * S * S``), as the float32
  reference of the accuracy metric.

TFLOPS count the visited (not fully masked) key blocks only, ``4 * 128 * 128 * d`` FLOPs each
(:func:`flops`), for every variant alike: the dense kernel and SDPA are credited with the useful work
only, so the numbers compare how fast each gets the masked result.  The ``kperf`` metric profiles one
whole launch of a ``kperf_*`` variant (``masked_attention.profile_schedule``) and reports the imbalance
figures of ``examples/masked_imbalance.py`` (``kperf_metric.profile_masked``).
"""

from __future__ import annotations

import argparse

from kperf.examples import block_masks as bmk

from . import args as cli
from .variants import Skipped, Variant

# the schedules of examples/masked_attention.SCHEDULES (checked by the tests; that module loads Triton)
SCHEDULES = ("grid", "lpt_grid", "persistent", "persistent_grouped")
BASELINE = "kperf_grid"  # the speedup metric's reference: the straightforward schedule


def mask_spec(shape: cli.Shape, args: argparse.Namespace) -> bmk.MaskSpec:
    """The element mask of ``shape.mask`` at this shape, with the family's flags (unset: its defaults)."""
    params = {}
    if shape.mask == "sliding_window" and args.windows:
        w = args.windows
        params["windows"] = [min(w[h % len(w)], shape.seq_len) for h in range(shape.n_heads)]
    if shape.mask == "document" and args.doc_mean_len:
        params["mean_len"] = args.doc_mean_len
    if shape.mask == "bigbird":
        params.update({k: getattr(args, k) for k in ("global_blocks", "window_blocks", "random_blocks")
                       if getattr(args, k) is not None})
    return bmk.make_mask(shape.mask, shape.batch, shape.n_heads, shape.seq_len, cli.MASK_BLOCK,
                         cli.MASK_BLOCK, seed=args.mask_seed or 0, **params)


def flops(shape: cli.Shape, args: argparse.Namespace, lists: bmk.BlockLists | None = None) -> float:
    """Forward FLOPs of the visited key blocks (``lists``: the shape's block lists, made when not given)."""
    lists = bmk.block_lists(mask_spec(shape, args)) if lists is None else lists
    return bmk.flops(lists, shape.d_head)


def sdpa_max_elems(args: argparse.Namespace) -> int:
    return args.sdpa_max_elems or cli.SDPA_MAX_ELEMS


class MaskedCase:
    """One shape's inputs on the GPU: q, k, v (random N(0, 1)), the mask's prepared block lists, the
    softmax scale; the dense lists, the FlexAttention block mask and the dense element mask are made when
    a variant first asks for them (a shape whose SDPA is skipped never builds its ``S x S`` mask)."""

    def __init__(self, q, k, v, prepared, sm_scale: float, max_elems: int):
        self.q, self.k, self.v, self.prepared, self.sm_scale = q, k, v, prepared, sm_scale
        self.max_elems = max_elems
        self.reference_status = "not asked"  # what reference() made, for the results row
        self._cache: dict = {}

    @property
    def spec(self) -> bmk.MaskSpec:
        return self.prepared.spec

    @property
    def lists(self) -> bmk.BlockLists:
        return self.prepared.lists

    @property
    def mask_elems(self) -> int:
        s = self.spec
        return s.batch * s.heads * s.seq_len * s.seq_len

    def _once(self, key, make):
        if key not in self._cache:
            self._cache[key] = make()
        return self._cache[key]

    def dense(self):
        """The dense kernel's lists: every block of every tile full."""
        from kperf.examples import masked_attention as ma
        s = self.spec
        return self._once("dense", lambda: ma.prepare(bmk.dense(s.batch, s.heads, s.seq_len, s.block_m,
                                                                s.block_n), self.q.device))

    def flex_block_mask(self):
        return self._once("flex", lambda: bmk.flex_block_mask(self.lists, self.q.device))

    def dense_mask_fits(self) -> bool:
        return self.mask_elems <= self.max_elems

    def element_mask(self):
        """The dense boolean mask; :class:`Skipped` over ``--sdpa-max-elems``."""
        if not self.dense_mask_fits():
            raise Skipped(f"dense mask of {self.mask_elems} elements (B * H * S * S) is over "
                          f"--sdpa-max-elems {self.max_elems}",
                          fix="raise --sdpa-max-elems if the GPU holds it")
        return self._once("mask", lambda: bmk.element_mask(self.spec, self.q.device))


def setup(shape: cli.Shape, args: argparse.Namespace) -> tuple[MaskedCase]:
    """The variants' inputs at ``shape`` (seeded: every variant and run sees the same)."""
    import torch

    from kperf.examples import masked_attention as ma
    torch.cuda.empty_cache()  # the previous shape's inputs and masks are gone: hand their memory back
    gen = torch.Generator(device="cuda").manual_seed(0)
    dt = {"fp16": torch.float16, "bf16": torch.bfloat16}[args.precision]
    q, k, v = (torch.randn(shape.dims, device="cuda", dtype=dt, generator=gen) for _ in range(3))
    sm_scale = args.sm_scale if args.sm_scale is not None else cli.default_sm_scale(shape.d_head)
    prepared = ma.prepare(mask_spec(shape, args), "cuda")
    return (MaskedCase(q, k, v, prepared, sm_scale, sdpa_max_elems(args)),)


def reference(case: tuple[MaskedCase], args: argparse.Namespace):
    """PyTorch SDPA (math backend) in float32 with the dense mask; None over ``--sdpa-max-elems`` or when
    its ``S x S`` float32 scores do not fit (the row says which)."""
    import torch

    from kperf.examples import masked_attention as ma
    (c,) = case
    if not c.dense_mask_fits():
        c.reference_status = "skipped: over --sdpa-max-elems"
        return None
    try:
        ref = ma.reference(c.q, c.k, c.v, c.spec, c.sm_scale)
    except torch.cuda.OutOfMemoryError:
        c.reference_status = "skipped: CUDA OOM"
        torch.cuda.empty_cache()
        return None
    c.reference_status = "sdpa math fp32"
    return ref


def row_info(shape: cli.Shape, args: argparse.Namespace, case: tuple[MaskedCase]) -> dict:
    """What a results row records about the mask: density, visited blocks, GFLOP, work spread."""
    (c,) = case
    work = c.lists.work
    return {"mask": shape.mask, "density": c.lists.density(), "visible_blocks": c.lists.visible_blocks(),
            "gflop": bmk.flops(c.lists, shape.d_head) / 1e9,
            "work_max_over_mean": float(work.max() / work.mean()) if work.mean() else None,
            "reference": c.reference_status}


def run_info(args: argparse.Namespace) -> dict:
    return {"masks": args.masks, "sdpa_max_elems": sdpa_max_elems(args),
            "mask_params": {k: getattr(args, k) for k in cli.MASK_PARAMS if getattr(args, k) is not None}}


# --- variants -----------------------------------------------------------------------------------------

def _schedule_make(schedule: str, dense: bool = False):
    def make(case: MaskedCase):
        from kperf.examples import masked_attention as ma
        p = case.dense() if dense else case.prepared
        return lambda: ma.masked_attention(case.q, case.k, case.v, p, schedule, case.sm_scale)
    return make


def _schedule_profile(schedule: str, dense: bool = False):
    def profile(case: MaskedCase):
        from kperf.examples import masked_attention as ma
        p = case.dense() if dense else case.prepared
        res = ma.profile_schedule(case.q, case.k, case.v, p, schedule, sm_scale=case.sm_scale)
        return res["out"], res["profile"], res["summary"]
    return profile


def _flex_make(case: MaskedCase):
    from kperf.examples import masked_attention as ma
    fn, bm = ma.compiled_flex_attention(), case.flex_block_mask()
    return lambda: fn(case.q, case.k, case.v, block_mask=bm, scale=case.sm_scale)


def _sdpa_make(case: MaskedCase):
    import torch
    mask = case.element_mask()
    sdpa = torch.nn.functional.scaled_dot_product_attention
    return lambda: sdpa(case.q, case.k, case.v, attn_mask=mask, scale=case.sm_scale)


SCHEDULE_DESCRIPTIONS = {
    "grid": "one CTA per tile, tile order (head-major, query blocks ascending)",
    "lpt_grid": "one CTA per tile, CTA i takes the i-th tile of the LPT order (descending work)",
    "persistent": "one CTA per SM slot, tiles from a global counter in LPT order",
    "persistent_grouped": "persistent, LPT over powers of two of work, tile order inside one (L2 reuse)",
}


def _build() -> dict[str, Variant]:
    out = {f"kperf_{s}": Variant(f"kperf_{s}", "kperf", f"masked kernel, schedule {s}: {d}",
                                 _schedule_make(s), _schedule_profile(s))
           for s, d in SCHEDULE_DESCRIPTIONS.items()}
    out["kperf_dense"] = Variant("kperf_dense", "kperf", "masked kernel on every block (grid): no skipping",
                                 _schedule_make("grid", dense=True), _schedule_profile("grid", dense=True),
                                 checked=False)
    out["flex_attention"] = Variant(
        "flex_attention", "baseline", "torch.compile(flex_attention), BlockMask.from_kv_blocks, same lists",
        _flex_make, device="cuda")
    out["sdpa_mask"] = Variant("sdpa_mask", "baseline", "PyTorch SDPA with the dense boolean mask",
                               _sdpa_make, device="cuda")
    return out


MASKED_VARIANTS: dict[str, Variant] = _build()
