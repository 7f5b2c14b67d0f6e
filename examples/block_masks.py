"""Block-sparse attention masks on the host: mask families, block lists, work per tile, LPT order.

A mask is described at two levels, as FlexAttention's ``BlockMask`` does:

- the *element* mask (:class:`MaskSpec`): query ``q`` may see key ``k`` when it lies in the head's band
  ``-right[h] < q - k < left[h]`` (causal: ``right = 1``; a sliding window: ``left = W``), in the same
  document (``doc[b, q] == doc[b, k]``, documents packed in order), and, if the family has one, in a
  block set (BigBird's global, window and random blocks, drawn per head);
- the *block* lists (:class:`BlockLists`), per (batch, head, query block): the key blocks that are fully
  visible (``full_*``: no element mask needed) and those that are partly visible (``part_*``: the kernel
  applies the element mask), like ``BlockMask``'s ``full_kv_num_blocks``/``full_kv_indices`` and
  ``kv_num_blocks``/``kv_indices``.  A key block in neither list is skipped.

The blocks are classified from the mask's *definition*, never from a dense element mask, so building the
lists at 32768 tokens costs the same numpy work as at 512: each test (band, document, block set) says for
a block, from the index ranges at its corners, "all visible", "none visible" or "mixed", and the three
combine as an AND.  The result is exact for the band and the block set; for the AND of several tests a
block may come out "partial" while no element of it is visible, which costs time, never correctness
(tests/unit/test_masked_attention_masks.py checks the lists against the dense mask).

Work per tile (one query block of one (batch, head)) is the number of key blocks it visits; sorting the
tiles by descending work gives the LPT order the balanced kernels take tiles in (strict, or by powers of
two of work to keep heads together: :func:`schedule_order`; ``examples/masked_attention.py``,
``docs/masked-attention.md``).  Everything here is numpy, vectorised
over (batch, head, query block, key block); the dense element mask and the FlexAttention block mask are
torch, made on the device they are used on.
"""

from __future__ import annotations

import dataclasses
import inspect

import numpy as np

NONE = 1 << 30  # a band edge that never cuts: fits int32 and any q - k at these lengths
FAMILIES = ("causal", "sliding_window", "document", "bigbird")


@dataclasses.dataclass(frozen=True)
class MaskSpec:
    """An element mask over ``batch x heads x seq_len x seq_len`` with its block size.

    ``left``/``right``: int64 ``[H]``; ``doc``: int32 ``[B, S]`` non-decreasing per row; ``blocks``: bool
    ``[B or 1, H, M, N]`` block set or None (every block allowed)."""

    name: str
    batch: int
    heads: int
    seq_len: int
    block_m: int
    block_n: int
    left: np.ndarray
    right: np.ndarray
    doc: np.ndarray
    blocks: np.ndarray | None = None

    @property
    def n_m(self) -> int:
        return self.seq_len // self.block_m

    @property
    def n_n(self) -> int:
        return self.seq_len // self.block_n


def _spec(name, batch, heads, seq_len, block_m, block_n, *, left=NONE, right=NONE, doc=None, blocks=None):
    if seq_len % block_m or seq_len % block_n:
        raise ValueError(f"seq_len {seq_len} must be a multiple of the block sizes {block_m}, {block_n}")
    left = np.broadcast_to(np.asarray(left, np.int64), (heads,)).copy()
    right = np.broadcast_to(np.asarray(right, np.int64), (heads,)).copy()
    doc = np.zeros((batch, seq_len), np.int32) if doc is None else np.asarray(doc, np.int32)
    if doc.shape != (batch, seq_len) or (np.diff(doc, axis=1) < 0).any():
        raise ValueError("doc must be [batch, seq_len] document ids, non-decreasing along each row")
    return MaskSpec(name, batch, heads, seq_len, block_m, block_n, left, right, doc, blocks)


def dense(batch, heads, seq_len, block_m=128, block_n=128, seed=0) -> MaskSpec:
    """No mask: every block full (the dense kernel is the masked kernel on these lists)."""
    return _spec("dense", batch, heads, seq_len, block_m, block_n)


def causal(batch, heads, seq_len, block_m=128, block_n=128, seed=0) -> MaskSpec:
    """Causal: work grows linearly with the query block."""
    return _spec("causal", batch, heads, seq_len, block_m, block_n, right=1)


def sliding_window(batch, heads, seq_len, block_m=128, block_n=128, seed=0, windows=None) -> MaskSpec:
    """Causal sliding window, one width per head (default 256 << (h % 5): 256 .. 4096 tokens, as in models
    that mix local heads of several spans), capped at the sequence: heads differ in work per tile."""
    if windows is None:
        windows = [min(256 << (h % 5), seq_len) for h in range(heads)]
    return _spec("sliding_window", batch, heads, seq_len, block_m, block_n, left=windows, right=1)


def document(batch, heads, seq_len, block_m=128, block_n=128, seed=0, mean_len=None) -> MaskSpec:
    """Causal attention inside packed documents of random, heavy-tailed lengths (log-normal, mean
    ``seq_len / 8`` by default), drawn per batch element: the long documents' last blocks dominate."""
    rng = np.random.default_rng(seed)
    mean_len = mean_len or max(seq_len // 8, 1)
    doc = np.zeros((batch, seq_len), np.int32)
    for b in range(batch):  # a loop over batch elements; the lengths are drawn vectorised
        lengths = np.maximum(rng.lognormal(np.log(mean_len) - 0.5, 1.0, size=seq_len // 16 + 2), 1)
        ends = np.cumsum(np.ceil(lengths).astype(np.int64))
        doc[b] = np.searchsorted(ends, np.arange(seq_len), side="right")
    return _spec("document", batch, heads, seq_len, block_m, block_n, right=1, doc=doc)


def bigbird(batch, heads, seq_len, block_m=128, block_n=128, seed=0, global_blocks=2, window_blocks=3,
            random_blocks=3) -> MaskSpec:
    """BigBird/Longformer block sparsity (non-causal): ``global_blocks`` leading blocks that every query
    sees and that see every key, a band of ``window_blocks`` blocks around the diagonal, and
    ``random_blocks`` random key blocks per query block, drawn per head.  The global query blocks visit
    every key block: tens of times the work of the others."""
    if block_m != block_n:
        raise ValueError("bigbird needs square blocks (its window is counted in blocks)")
    rng = np.random.default_rng(seed)
    n = seq_len // block_m
    m_idx, n_idx = np.arange(n)[:, None], np.arange(n)[None, :]
    base = (m_idx < global_blocks) | (n_idx < global_blocks) | (np.abs(m_idx - n_idx) <= window_blocks // 2)
    blocks = np.broadcast_to(base, (1, heads, n, n)).copy()
    picks = rng.integers(0, n, size=(1, heads, n, random_blocks))
    np.put_along_axis(blocks, picks, True, axis=-1)
    return _spec("bigbird", batch, heads, seq_len, block_m, block_n, blocks=blocks)


def make_mask(family: str, batch: int, heads: int, seq_len: int, block_m: int = 128, block_n: int = 128,
              seed: int = 0, **params) -> MaskSpec:
    """The mask of ``family`` (one of :data:`FAMILIES` or ``"dense"``) at this shape; ``params``: the
    family's own keywords (``windows``, ``mean_len``, ``global_blocks``, ...), its defaults otherwise."""
    makers = {"dense": dense, "causal": causal, "sliding_window": sliding_window, "document": document,
              "bigbird": bigbird}
    if family not in makers:
        raise ValueError(f"unknown mask family {family!r}; choose among {', '.join(makers)}")
    return makers[family](batch, heads, seq_len, block_m, block_n, seed=seed, **params)


# --- blocks -----------------------------------------------------------------------------------------------

def classify(spec: MaskSpec) -> tuple[np.ndarray, np.ndarray]:
    """``(full, partial)``: bool ``[B, H, M, N]``; a block in neither is fully masked (skipped)."""
    qlo = np.arange(spec.n_m) * spec.block_m
    klo = np.arange(spec.n_n) * spec.block_n
    qhi, khi = qlo + spec.block_m - 1, klo + spec.block_n - 1
    dmin = (qlo[:, None] - khi[None, :])[None]  # the least and greatest q - k in the block, [1, M, N]
    dmax = (qhi[:, None] - klo[None, :])[None]
    lo, ro = spec.left[:, None, None], spec.right[:, None, None]
    band_full = (dmax < lo) & (dmin > -ro)  # [H, M, N]
    band_empty = (dmin >= lo) | (dmax <= -ro)
    d = spec.doc  # non-decreasing: a block's documents are the range between its corner rows' ids
    dq_lo, dq_hi, dk_lo, dk_hi = d[:, qlo][:, :, None], d[:, qhi][:, :, None], d[:, klo][:, None], \
        d[:, khi][:, None]
    doc_full = (dq_lo == dq_hi) & (dk_lo == dk_hi) & (dq_lo == dk_lo)  # [B, M, N]
    doc_empty = (dq_hi < dk_lo) | (dk_hi < dq_lo)
    allowed = np.ones((1, 1, 1, 1), bool) if spec.blocks is None else spec.blocks
    full = band_full[None] & doc_full[:, None] & allowed
    empty = band_empty[None] | doc_empty[:, None] | ~allowed
    full = np.broadcast_to(full, (spec.batch, spec.heads, spec.n_m, spec.n_n))
    return full.copy(), np.broadcast_to(~full & ~empty, full.shape).copy()


@dataclasses.dataclass(frozen=True)
class BlockLists:
    """Per (batch, head, query block): how many key blocks are full / partial and which, ascending
    (int32 ``[B, H, M]`` counts and ``[B, H, M, N]`` indices, padded past the count)."""

    spec: MaskSpec
    full_num: np.ndarray
    full_idx: np.ndarray
    part_num: np.ndarray
    part_idx: np.ndarray

    @property
    def work(self) -> np.ndarray:
        """Key blocks each tile visits, int64 ``[B * H * M]`` in tile order (tile = (b * H + h) * M + m)."""
        return (self.full_num.astype(np.int64) + self.part_num).reshape(-1)

    @property
    def n_tiles(self) -> int:
        return self.full_num.size

    def lpt_order(self, grouped: bool = False) -> np.ndarray:
        """Tiles by descending work (longest processing time first); ties keep tile order, so tiles of
        equal work stay grouped by head.  ``grouped``: descending over powers of two of work only, tile
        (head-major) order inside one: the heavy tiles still start first and the last ones are the
        lightest, while the tiles that run at the same time mostly share a (batch, head), whose K/V then
        stay in L2 (strict LPT runs every head at once when many tiles have about the same work, as
        causal masks' do)."""
        w = self.work
        if grouped:
            w = np.where(w > 0, np.ceil(np.log2(np.maximum(w, 1))), -1).astype(np.int64)
        return np.argsort(-w, kind="stable").astype(np.int32)

    def visible_blocks(self) -> int:
        """Key blocks visited over all tiles: the FLOP count's unit (4 * block_m * block_n * d each)."""
        return int(self.work.sum())

    def density(self) -> float:
        return self.visible_blocks() / (self.n_tiles * self.spec.n_n)


#: the schedules that take tiles in an LPT order, and whether it is the grouped one
LPT_SCHEDULES = {"lpt_grid": False, "persistent": False, "persistent_grouped": True}


def schedule_order(lists: BlockLists, schedule: str) -> np.ndarray:
    """The order in which ``schedule`` hands out tiles (CTA id or ticket -> tile)."""
    if schedule == "grid":
        return np.arange(lists.n_tiles, dtype=np.int32)
    return lists.lpt_order(grouped=LPT_SCHEDULES[schedule])


def block_lists(spec: MaskSpec) -> BlockLists:
    """The full and partial key-block lists of ``spec`` (vectorised: one stable argsort per kind)."""
    full, partial = classify(spec)

    def lists(sel):
        idx = np.argsort(~sel, axis=-1, kind="stable").astype(np.int32)  # selected blocks first, ascending
        return sel.sum(-1).astype(np.int32), idx
    fn, fi = lists(full)
    pn, pi = lists(partial)
    return BlockLists(spec, fn, fi, pn, pi)


def flops(lists: BlockLists, head_dim: int) -> float:
    """Forward FLOPs counting visited (not fully masked) blocks only: two matmuls per block."""
    s = lists.spec
    return 4.0 * s.block_m * s.block_n * head_dim * lists.visible_blocks()


# --- torch views: the dense mask (references, SDPA) and FlexAttention's BlockMask --------------------------

def element_mask(spec: MaskSpec, device="cpu"):
    """The element mask as a bool tensor broadcastable to ``[B, H, S, S]`` (a dimension of size 1 where
    the mask does not depend on it).  ``S * S`` per head and batch: for references and SDPA only."""
    import torch
    S = spec.seq_len
    pos = torch.arange(S, device=device)
    d = (pos[:, None] - pos[None, :])[None]  # [1, S, S]
    lo = torch.as_tensor(spec.left, device=device)[:, None, None]
    ro = torch.as_tensor(spec.right, device=device)[:, None, None]
    band = (d < lo) & (-d < ro)  # [H, S, S]
    if bool((spec.left == spec.left[0]).all() and (spec.right == spec.right[0]).all()):
        band = band[:1]
    mask = band[None]
    doc = torch.as_tensor(spec.doc, device=device)
    if bool((spec.doc != 0).any()):
        mask = mask & (doc[:, :, None] == doc[:, None, :])[:, None]
    if spec.blocks is not None:
        blk = torch.as_tensor(spec.blocks, device=device)
        mask = mask & blk.repeat_interleave(spec.block_m, 2).repeat_interleave(spec.block_n, 3)
    return mask


def flex_tensors(spec: MaskSpec, device):
    """The tensors a FlexAttention ``mask_mod`` reads, of the same shapes for every family at one shape
    (so one compiled kernel serves all families): left/right ``[H]``, doc ``[B, S]``, blocks
    ``[B, H, M, N]``."""
    import torch
    blocks = np.ones((spec.batch, spec.heads, spec.n_m, spec.n_n), bool)
    if spec.blocks is not None:
        blocks &= spec.blocks
    t = {"left": spec.left, "right": spec.right, "doc": spec.doc, "blocks": blocks}
    return {k: torch.as_tensor(np.ascontiguousarray(v), device=device) for k, v in t.items()}


def flex_mask_mod(spec: MaskSpec, device):
    """The element mask as a FlexAttention ``mask_mod(b, h, q_idx, kv_idx)``."""
    t = flex_tensors(spec, device)
    left, right, doc, blocks = t["left"], t["right"], t["doc"], t["blocks"]
    bm, bn = spec.block_m, spec.block_n

    def mask_mod(b, h, q_idx, kv_idx):
        d = q_idx - kv_idx
        return (d < left[h]) & (-d < right[h]) & (doc[b, q_idx] == doc[b, kv_idx]) & \
            blocks[b, h, q_idx // bm, kv_idx // bn]
    return mask_mod


def flex_block_mask(lists: BlockLists, device):
    """FlexAttention's ``BlockMask`` with exactly these block lists (``from_kv_blocks``: no dense mask is
    ever evaluated on the host) and :func:`flex_mask_mod` for the partial blocks."""
    import torch
    from torch.nn.attention.flex_attention import BlockMask
    s = lists.spec

    def t(a):
        return torch.as_tensor(np.ascontiguousarray(a), device=device)
    kw = {"BLOCK_SIZE": (s.block_m, s.block_n), "mask_mod": flex_mask_mod(s, device),
          "seq_lengths": (s.seq_len, s.seq_len)}
    if "compute_q_blocks" in inspect.signature(BlockMask.from_kv_blocks).parameters:
        kw["compute_q_blocks"] = False  # forward only: no transposed (q-block) lists needed
    return BlockMask.from_kv_blocks(t(lists.part_num), t(lists.part_idx), t(lists.full_num),
                                    t(lists.full_idx), **kw)
