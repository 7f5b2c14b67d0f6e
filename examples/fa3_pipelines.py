"""FA3-style Hopper attention-forward pipelines in Gluon, instrumented with kperf scopes.

The vanilla kernel (``examples/attention.py``) is Triton's fused-attention tutorial with
``warp_specialize=True``: the compiler decides the producer/consumer split and the schedule inside each
consumer warpgroup.  Its kperf trace shows each consumer warpgroup doing QK^T, then softmax, then PV in
sequence, so the tensor cores idle while the warpgroup is in softmax (the bubble).  The pipelines here
write the schedule out by hand in Gluon (``triton.experimental.gluon``), where the Triton DSL cannot
express it:

- every pipeline: one CTA computes 128 query rows of one (batch, head); a 4-warp producer partition
  loads Q once and streams K and V through two rings of ``stages`` shared-memory buffers with TMA
  (separate ready/empty mbarriers for K and V, so K runs ahead of V); two 4-warp consumer warpgroups
  own 64 query rows each, run wgmma from shared memory for S = Q K^T and wgmma with P in registers for
  O += P V, and release each K/V buffer when their wgmma that reads it has retired.
- ``ws``: the consumers run QK^T -> softmax -> PV in sequence (the vanilla schedule, in Gluon).
- ``ws_overlap``: FA3's intra-warpgroup pipelining: in iteration j the warpgroup issues S_j = Q K_j^T
  and O += P_{j-1} V_{j-1} back to back, waits only for S_j, runs the softmax of block j while the PV
  wgmma of block j-1 is still on the tensor cores, then waits for it and rescales O.
- ``ws_pingpong``: ``ws_overlap`` plus FA3's inter-warpgroup ping-pong: two mbarrier tokens make the
  consumer warpgroups issue their wgmma in turns, so one warpgroup's softmax runs while the other's
  GEMMs own the tensor cores.
- ``ws_pingpong_s3``: ``ws_pingpong`` with three K and V buffers instead of two (deeper prefetch);
  ``ws_overlap_v3``: ``ws_overlap`` with a third V buffer (the producer waited on V, not K).
- ``ws_overlap_persistent`` / ``ws_pingpong_persistent``: one CTA per SM loops over the tiles; the
  producer loads the next tile's Q (once both consumers released it) and K/V while the consumers finish
  the last PV and store O through their own buffers: no per-CTA pipeline fill and drain.

Scopes (per warp, in the kperf trace): producer ``wait_q_empty``, ``load_q``, ``wait_k_empty``,
``wait_v_empty``; consumers ``wait_q``, ``wait_k`` / ``wait_v`` (TMA data not yet there), ``turn``
(ping-pong: waiting for the other warpgroup's GEMMs), ``qk`` / ``pv`` (serial: issue and wait),
``issue`` and ``wait_qk`` / ``wait_pv`` (overlapped), ``softmax``, ``epilogue``.

Run it (needs a Hopper GPU): ``python examples/fa3_pipelines.py --out out/fa3`` checks every pipeline
against PyTorch SDPA (fp32) and writes a kperf trace and summary per pipeline.  Compile-only:
``compile_pipeline("ws_pingpong", dtype="fp16", head_dim=128, causal=False)`` (no GPU needed).
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import math
import pathlib

from triton.experimental import gluon
from triton.experimental.gluon import language as gl
from triton.experimental.gluon.language.nvidia.hopper import (
    fence_async_shared,
    mbarrier,
    tma,
    warpgroup_mma,
    warpgroup_mma_wait,
)

import kperf
from kperf.dialect.errors import KperfError
from kperf.triton_compat import gluon_tma_load, gluon_tma_store  # renamed in Triton 3.8

BLOCK_M = gl.constexpr(128)  # query rows per CTA: two consumer warpgroups of 64 rows
WG_M = gl.constexpr(64)  # query rows per consumer warpgroup (one m64 wgmma)
LOG2E = 1.4426950408889634
SMEM_LIMIT = 232448  # bytes of shared memory a CTA may use on sm_90


# --- device code --------------------------------------------------------------------------------------


@gluon.jit
def _tile(tile, n_m, N_CTX, BLOCK_N: gl.constexpr, SPLIT_N: gl.constexpr, CAUSAL: gl.constexpr):
    """Tile ``tile`` (query blocks of one head are consecutive): its first Q row and first K/V row in the
    [Z * H * N_CTX, HEAD_DIM] views, the index of its first query row within the head, its K/V blocks of
    BLOCK_N + SPLIT_N keys, and ``pad``: block j covers keys ``j * (BLOCK_N + SPLIT_N) - pad`` onwards.

    With SPLIT_N the block (192 keys) need not divide the sequence: non-causal, the first block starts
    ``pad`` keys before the head (masked in its softmax), so the loop itself needs no mask; causal, the
    causal mask already hides keys past the sequence."""
    start_m = tile % n_m
    if CAUSAL:
        start_m = n_m - 1 - start_m  # longest rows first: better tail balance
    kv_row = (tile // n_m) * N_CTX
    BLOCK_KV: gl.constexpr = BLOCK_N + SPLIT_N
    if CAUSAL:
        n_blocks = ((start_m + 1) * BLOCK_M + BLOCK_KV - 1) // BLOCK_KV  # the mask trims the last block
        pad = 0
    elif SPLIT_N > 0:
        n_blocks = (N_CTX + BLOCK_KV - 1) // BLOCK_KV
        pad = n_blocks * BLOCK_KV - N_CTX
    else:
        n_blocks = N_CTX // BLOCK_N
        pad = 0
    return kv_row + start_m * BLOCK_M, kv_row, start_m * BLOCK_M, n_blocks, pad


@gluon.jit
def _load_block(desc, row, bar, smem, smem2, BLOCK_N: gl.constexpr, SPLIT_N: gl.constexpr):
    """TMA loads of one K or V block into ``smem`` (BLOCK_N rows) and, with SPLIT_N, ``smem2``: one box, or
    (SPLIT_N) boxes of SPLIT_N rows into the slices of ``smem`` and into ``smem2``, all behind ``bar``."""
    if SPLIT_N > 0:
        for h in gl.static_range(BLOCK_N // SPLIT_N):
            gluon_tma_load(desc, [row + h * SPLIT_N, 0], bar,
                                            smem.slice(h * SPLIT_N, SPLIT_N))
        gluon_tma_load(desc, [row + BLOCK_N, 0], bar, smem2)
    else:
        gluon_tma_load(desc, [row, 0], bar, smem)


@gluon.jit
def _load_ring(desc, row, it, empty, ready, smem, smem2, nbytes, NBUF: gl.constexpr, WAIT_SCOPE: gl.constexpr,
               BLOCK_N: gl.constexpr, SPLIT_N: gl.constexpr):
    """Load the ``it``-th K (or V) block into its ring entry ``it % NBUF`` once the consumers freed it."""
    b = it % NBUF
    with kperf.scope(WAIT_SCOPE):
        mbarrier.wait(empty.index(b), (it // NBUF) & 1)
    mbarrier.expect(ready.index(b), nbytes)
    _load_block(desc, row, ready.index(b), smem.index(b), smem2.index(b), BLOCK_N, SPLIT_N)


@gluon.jit
def _fa3_load(desc_q, desc_k, desc_v, q_smem, k_smem, v_smem, k2_smem, v2_smem, q_bars, q_empty, k_ready,
              k_empty, v_ready, v_empty, n_m, n_tiles, N_CTX, BLOCK_N: gl.constexpr, SPLIT_N: gl.constexpr,
              STAGES: gl.constexpr, V_STAGES: gl.constexpr, CAUSAL: gl.constexpr):
    """Producer partition: per tile, Q once (one 64-row half per consumer, when the consumers have released
    the previous tile's Q), then K_j and V_j into their rings (with SPLIT_N, as boxes of SPLIT_N rows behind
    one barrier); the rings run on across tiles."""
    it = 0  # K/V blocks loaded so far (all tiles of this CTA): the ring index and phase
    i = 0  # tiles so far: the Q phase
    kv_bytes: gl.constexpr = desc_k.block_type.nbytes * ((BLOCK_N + SPLIT_N) // desc_k.block_type.shape[0])
    for tile in range(gl.program_id(0), n_tiles, gl.num_programs(0)):
        q_row, kv_row, first_row, n_blocks, pad = _tile(tile, n_m, N_CTX, BLOCK_N, SPLIT_N, CAUSAL)
        for wg in gl.static_range(2):
            with kperf.scope("wait_q_empty"):
                mbarrier.wait(q_empty.index(wg), i & 1)
            with kperf.scope("load_q"):
                mbarrier.expect(q_bars.index(wg), desc_q.block_type.nbytes)
                gluon_tma_load(desc_q, [q_row + wg * 64, 0], q_bars.index(wg),
                                                q_smem.index(wg))
        for j in range(n_blocks):
            row = kv_row + j * (BLOCK_N + SPLIT_N) - pad
            _load_ring(desc_k, row, it, k_empty, k_ready, k_smem, k2_smem, kv_bytes, STAGES, "wait_k_empty",
                       BLOCK_N, SPLIT_N)
            _load_ring(desc_v, row, it, v_empty, v_ready, v_smem, v2_smem, kv_bytes, V_STAGES, "wait_v_empty",
                       BLOCK_N, SPLIT_N)
            it += 1
        i += 1


@gluon.jit
def _causal_mask(s, start_n, first_row, BLOCK_N: gl.constexpr, S_L: gl.constexpr):
    """-inf where key index > query index; only blocks that reach past this warpgroup's first row."""
    if start_n + BLOCK_N > first_row:
        cols = start_n + gl.arange(0, BLOCK_N, layout=gl.SliceLayout(0, S_L))
        rows = first_row + gl.arange(0, 64, layout=gl.SliceLayout(1, S_L))
        s = gl.where(gl.expand_dims(cols, 0) <= gl.expand_dims(rows, 1), s, float("-inf"))
    return s


@gluon.jit
def _pad_mask(s, start_n, BLOCK_N: gl.constexpr, S_L: gl.constexpr):
    """-inf on keys before the head (negative key index): only the first block of a padded head."""
    if start_n < 0:
        cols = start_n + gl.arange(0, BLOCK_N, layout=gl.SliceLayout(0, S_L))
        s = gl.where(gl.expand_dims(cols, 0) >= 0, s, float("-inf"))
    return s


@gluon.jit
def _mask_block(s, s2, start_n, first_row, BLOCK_N: gl.constexpr, SPLIT_N: gl.constexpr, S_L: gl.constexpr,
                S2_L: gl.constexpr, CAUSAL: gl.constexpr, PAD: gl.constexpr):
    """The masks of the block whose first key is ``start_n``: causal, or (PAD, SPLIT_N) the keys before the
    head that a padded first block covers.  ``s2``: the SPLIT_N sub-tile (``s`` again without one)."""
    if CAUSAL:
        s = _causal_mask(s, start_n, first_row, BLOCK_N, S_L)
        if SPLIT_N > 0:
            s2 = _causal_mask(s2, start_n + BLOCK_N, first_row, SPLIT_N, S2_L)
    elif PAD and SPLIT_N > 0:
        s = _pad_mask(s, start_n, BLOCK_N, S_L)
        s2 = _pad_mask(s2, start_n + BLOCK_N, SPLIT_N, S2_L)
    return s, s2


# 2^x for x <= 0, four elements at a time: three on the MUFU unit (ex2.approx), the fourth on the FMA
# pipe (FA4's trick): round x to an integer n with the 1.5 * 2^23 shifter, 2^(x - n) by a degree-3
# polynomial on [-0.5, 0.5] (relative error 7.7e-5, below P's fp16/bf16 rounding), n added to the
# exponent field.  x is clamped at -126, so 2^-inf gives 1.2e-38 instead of 0.
_EXP2_MIXED_ASM = gl.constexpr("""{
.reg .f32 x, t, j, f, p;
.reg .b32 e;
ex2.approx.ftz.f32 $0, $4;
ex2.approx.ftz.f32 $1, $5;
ex2.approx.ftz.f32 $2, $6;
max.ftz.f32 x, $7, 0fC2FC0000;
add.rn.ftz.f32 t, x, 0f4B400000;
sub.rn.ftz.f32 j, t, 0f4B400000;
sub.rn.ftz.f32 f, x, j;
fma.rn.ftz.f32 p, f, 0f3D61A4DB, 0f3E786D5B;
fma.rn.ftz.f32 p, p, f, 0f3F317A8E;
fma.rn.ftz.f32 p, p, f, 0f3F7FFB57;
mov.b32 e, t;
shl.b32 e, e, 23;
mov.b32 $3, p;
add.s32 $3, $3, e;
}""")


@gluon.jit
def _exp2(x, EXP_EMU: gl.constexpr):
    if EXP_EMU:
        return gl.inline_asm_elementwise(_EXP2_MIXED_ASM, "=r,=r,=r,=r,r,r,r,r", [x], dtype=gl.float32,
                                         is_pure=True, pack=4)
    else:
        return gl.exp2(x)


@gluon.jit
def _halve_max(x, N: gl.constexpr, TOP: gl.constexpr):
    """[64, N] -> [64, N // 2]: the max of the column pairs that differ in the top (TOP) or lowest bit of the
    column index; both elements of a pair sit in the same thread's registers (no shuffles)."""
    if TOP:
        y = gl.permute(gl.reshape(x, [WG_M, 2, N // 2]), (0, 2, 1))
    else:
        y = gl.reshape(x, [WG_M, N // 2, 2])
    a, b = gl.split(y)
    return gl.maximum(a, b)


@gluon.jit
def _row_max(s, N: gl.constexpr):
    """``gl.max(s, axis=1)`` as a tree: Triton 3.6 reduces a thread's 2 x N / 8 values per row in one
    dependent chain of FMNMX; halving pairs inside the thread first leaves log2 levels."""
    x = _halve_max(s, N, True)
    x = _halve_max(x, N // 2, True)
    x = _halve_max(x, N // 4, True)
    if N >= 128:
        x = _halve_max(x, N // 8, True)
    if N >= 256:
        x = _halve_max(x, N // 16, True)
    x = _halve_max(x, 8, False)
    return gl.max(x, axis=1)


@gluon.jit
def _online_softmax(s, s2, m_i, l_i, qk_scale, SPLIT_N: gl.constexpr, S2_L: gl.constexpr,
                    EXP_EMU: gl.constexpr, TREE_MAX: gl.constexpr):
    """Base-2 online softmax of one score block (``s``, and the SPLIT_N sub-tile ``s2``): new row max,
    P (fp32; ``p2`` for the sub-tile, ``p`` again without one), row-sum update, rescale factor."""
    if TREE_MAX:
        m_blk = gl.convert_layout(_row_max(s, s.shape[1]), m_i.type.layout)
    else:
        m_blk = gl.max(s, axis=1)
    if SPLIT_N > 0:
        if TREE_MAX:
            m_blk = gl.maximum(m_blk, gl.convert_layout(_row_max(s2, SPLIT_N), m_i.type.layout))
        else:
            m_blk = gl.maximum(m_blk, gl.convert_layout(gl.max(s2, axis=1), m_i.type.layout))
    m_new = gl.maximum(m_i, m_blk * qk_scale)
    p = _exp2(s * qk_scale - gl.expand_dims(m_new, 1), EXP_EMU)
    alpha = gl.exp2(m_i - m_new)
    l_blk = gl.sum(p, axis=1)
    if SPLIT_N > 0:
        p2 = _exp2(s2 * qk_scale - gl.expand_dims(gl.convert_layout(m_new, gl.SliceLayout(1, S2_L)), 1),
                   EXP_EMU)
        l_blk = l_blk + gl.convert_layout(gl.sum(p2, axis=1), m_i.type.layout)
    else:
        p2 = p
    l_i = l_i * alpha + l_blk
    return p, p2, m_new, l_i, alpha


@gluon.jit
def _sched_fence(x, MODE: gl.constexpr):
    """``x`` (a row vector: 2 values per thread) unchanged, behind a point ptxas does not move instructions
    across.  Without one ptxas sinks the softmax below the wait for the previous block's PV wgmma (the
    instrumented kernel keeps it above: kperf's clock reads pin it).  MODE "membar": a CTA-scope fence
    (``MEMBAR.ALL.CTA``); "clock": a 64-bit clock read (``CS2R``, 4 instructions in all) whose top bit,
    masked to nothing, is or-ed into x (ptxas removes a clock read it can fold away, a 32-bit one masked
    by ``and 0`` included, and a removed read pins nothing); "nanosleep": ``NANOSLEEP 0``."""
    if MODE == "membar":
        asm: gl.constexpr = "fence.acq_rel.cta;\nmov.b32 $0, $2;\nmov.b32 $1, $3;"
    elif MODE == "clock":
        asm: gl.constexpr = """{
.reg .u64 t;
.reg .u32 z;
mov.u64 t, %clock64;
shr.u64 t, t, 63;
cvt.u32.u64 z, t;
and.b32 z, z, 2;
or.b32 $0, $2, z;
mov.b32 $1, $3;
}"""
    else:
        gl.static_assert(MODE == "nanosleep", "sched_fence must be '', 'membar', 'clock' or 'nanosleep'")
        asm: gl.constexpr = "nanosleep.u32 0;\nmov.b32 $0, $2;\nmov.b32 $1, $3;"
    return gl.inline_asm_elementwise(asm, "=r,=r,r,r", [x], dtype=x.dtype, is_pure=False, pack=2)


@gluon.jit
def _issue_qk(q, k_smem, k2_smem, st, BLOCK_N: gl.constexpr, SPLIT_N: gl.constexpr, S_L: gl.constexpr,
              S2_L: gl.constexpr):
    """Issue S = Q K^T for K ring entry ``st`` (one async wgmma group per sub-tile); returns the tokens."""
    s_tok = warpgroup_mma(q, k_smem.index(st).permute((1, 0)), gl.zeros([WG_M, BLOCK_N], gl.float32, S_L),
                          use_acc=False, is_async=True)
    if SPLIT_N > 0:
        s2_tok = warpgroup_mma(q, k2_smem.index(st).permute((1, 0)),
                               gl.zeros([WG_M, SPLIT_N], gl.float32, S2_L), use_acc=False, is_async=True)
    else:
        s2_tok = s_tok
    return s_tok, s2_tok


@gluon.jit
def _wait_qk(s_tok, s2_tok, PV_PENDING: gl.constexpr, SPLIT_N: gl.constexpr):
    """Wait for S (both sub-tiles), leaving the PV wgmma group(s) issued after it in flight if PV_PENDING."""
    if SPLIT_N > 0:
        s, s2 = warpgroup_mma_wait(2 if PV_PENDING else 0, deps=[s_tok, s2_tok])
    else:
        s = warpgroup_mma_wait(1 if PV_PENDING else 0, deps=[s_tok])
        s2 = s
    return s, s2


@gluon.jit
def _issue_pv(p16, p2_16, v_smem, v2_smem, vst, acc, SPLIT_N: gl.constexpr):
    """Issue O += P V for V ring entry ``vst`` (P from registers; the sub-tile's wgmma chains on the
    first)."""
    acc_tok = warpgroup_mma(p16, v_smem.index(vst), acc, is_async=True)
    if SPLIT_N > 0:
        acc_tok = warpgroup_mma(p2_16, v2_smem.index(vst), acc_tok, is_async=True)
    return acc_tok


@gluon.jit
def _wait_pv(acc_tok, p16, p2_16, SPLIT_N: gl.constexpr):
    """Wait for every wgmma group; P's registers stay live until then."""
    if SPLIT_N > 0:
        acc, p16, p2_16 = warpgroup_mma_wait(0, deps=[acc_tok, p16, p2_16])
    else:
        acc, p16 = warpgroup_mma_wait(0, deps=[acc_tok, p16])
        p2_16 = p16
    return acc, p16, p2_16


@gluon.jit
def _to_half(p, dtype: gl.constexpr, PACK_FIX: gl.constexpr):
    """``p.to(dtype)``; with PACK_FIX, each pair's ``cvt.rn.*x2.f32`` puts element 0 in the low half
    (Triton 3.6 packs the pair swapped, and ptxas then adds a PRMT per register to undo it)."""
    if not PACK_FIX:
        return p.to(dtype)
    elif dtype == gl.float16:
        return gl.inline_asm_elementwise("cvt.rn.f16x2.f32 $0, $2, $1;", "=r,r,r", [p], dtype=gl.float16,
                                         is_pure=True, pack=2)
    else:
        return gl.inline_asm_elementwise("cvt.rn.bf16x2.f32 $0, $2, $1;", "=r,r,r", [p], dtype=gl.bfloat16,
                                         is_pure=True, pack=2)


@gluon.jit
def _to_operand(p, p2, dtype: gl.constexpr, P_L: gl.constexpr, SPLIT_N: gl.constexpr, PACK_FIX: gl.constexpr):
    """P (and the sub-tile's P) as the register A operand of the PV wgmma."""
    p16 = gl.convert_layout(_to_half(p, dtype, PACK_FIX), P_L)
    if SPLIT_N > 0:
        p2_16 = gl.convert_layout(_to_half(p2, dtype, PACK_FIX), P_L)
    else:
        p2_16 = p16
    return p16, p2_16


@gluon.jit
def _consume_tile(desc_o, q, o_smem, k_smem, v_smem, k2_smem, v2_smem, q_bar, q_empty,  # noqa: C901
                  k_ready, k_empty, v_ready, v_empty, my_turn, other_turn, turn, q_row, first_row, n_blocks,
                  pad, it, i, qk_scale, WG: gl.constexpr, HEAD_DIM: gl.constexpr, BLOCK_N: gl.constexpr,
                  SPLIT_N: gl.constexpr, STAGES: gl.constexpr, CAUSAL: gl.constexpr, OVERLAP: gl.constexpr,
                  PINGPONG: gl.constexpr, V_STAGES: gl.constexpr, EARLY_RESCALE: gl.constexpr,
                  PERSISTENT: gl.constexpr, EXP_EMU: gl.constexpr, SCHED_FENCE: gl.constexpr,
                  TREE_MAX: gl.constexpr, PACK_FIX: gl.constexpr):
    """One tile for consumer warpgroup WG: its 64 query rows against the tile's K/V blocks; writes its O rows.

    ``it``: K/V blocks this warpgroup consumed before the tile (ring index and phase: block j of the tile is
    ring entry ``it + j``); ``i``: tiles before it (the Q phase); ``turn``: the ping-pong phase; block j
    covers keys ``j * (BLOCK_N + SPLIT_N) - pad`` onwards (see ``_tile``).
    Returns the ping-pong phase after the tile.
    """
    S_L: gl.constexpr = gl.NVMMADistributedLayout(version=[3, 0], warps_per_cta=[4, 1],
                                                  instr_shape=[16, BLOCK_N, 16])
    # the SPLIT_N sub-tile's scores (unused without one)
    S2_L: gl.constexpr = gl.NVMMADistributedLayout(version=[3, 0], warps_per_cta=[4, 1],
                                                   instr_shape=[16, SPLIT_N if SPLIT_N > 0 else BLOCK_N, 16])
    O_L: gl.constexpr = gl.NVMMADistributedLayout(version=[3, 0], warps_per_cta=[4, 1],
                                                  instr_shape=[16, HEAD_DIM, 16])
    P_L: gl.constexpr = gl.DotOperandLayout(operand_index=0, parent=O_L, k_width=2)
    ROW_L: gl.constexpr = gl.SliceLayout(1, S_L)
    OROW_L: gl.constexpr = gl.SliceLayout(1, O_L)
    BLOCK_KV: gl.constexpr = BLOCK_N + SPLIT_N
    dtype: gl.constexpr = q.dtype

    with kperf.scope("wait_q"):
        mbarrier.wait(q_bar, i & 1)
    m_i = gl.full([WG_M], float("-inf"), gl.float32, ROW_L)
    l_i = gl.zeros([WG_M], gl.float32, ROW_L)
    acc = gl.zeros([WG_M, HEAD_DIM], gl.float32, O_L)
    if OVERLAP:
        # prologue: S_0 and its softmax; the PV of block j-1 is issued together with S_j below
        st0 = it % STAGES
        with kperf.scope("wait_k"):
            mbarrier.wait(k_ready.index(st0), (it // STAGES) & 1)
        if PINGPONG:
            with kperf.scope("turn"):
                mbarrier.wait(my_turn, turn)
            turn ^= 1
        with kperf.scope("issue"):
            s_tok, s2_tok = _issue_qk(q, k_smem, k2_smem, st0, BLOCK_N, SPLIT_N, S_L, S2_L)
        if PINGPONG:
            mbarrier.arrive(other_turn, count=1)
        with kperf.scope("wait_qk"):
            s, s2 = _wait_qk(s_tok, s2_tok, False, SPLIT_N)
        mbarrier.arrive(k_empty.index(st0), count=1)
        with kperf.scope("softmax"):
            s, s2 = _mask_block(s, s2, -pad, first_row, BLOCK_N, SPLIT_N, S_L, S2_L, CAUSAL, True)
            p, p2, m_i, l_i, alpha = _online_softmax(s, s2, m_i, l_i, qk_scale, SPLIT_N, S2_L, EXP_EMU,
                                                     TREE_MAX)
            p16, p2_16 = _to_operand(p, p2, dtype, P_L, SPLIT_N, PACK_FIX)
        for j in range(1, n_blocks):
            g = it + j
            st = g % STAGES
            ph = (g // STAGES) & 1
            pst = (g - 1) % V_STAGES
            pph = ((g - 1) // V_STAGES) & 1
            with kperf.scope("wait_k"):
                mbarrier.wait(k_ready.index(st), ph)
            with kperf.scope("wait_v"):
                mbarrier.wait(v_ready.index(pst), pph)
            if PINGPONG:
                with kperf.scope("turn"):
                    mbarrier.wait(my_turn, turn)
                turn ^= 1
            if EARLY_RESCALE:  # FA3's order: rescale O by block j-1's factor while S_j is on the tensor cores
                with kperf.scope("issue"):
                    s_tok, s2_tok = _issue_qk(q, k_smem, k2_smem, st, BLOCK_N, SPLIT_N, S_L, S2_L)
                with kperf.scope("rescale"):
                    acc = acc * gl.expand_dims(gl.convert_layout(alpha, OROW_L), 1)
                with kperf.scope("issue"):
                    acc_tok = _issue_pv(p16, p2_16, v_smem, v2_smem, pst, acc, SPLIT_N)
            else:
                with kperf.scope("issue"):
                    s_tok, s2_tok = _issue_qk(q, k_smem, k2_smem, st, BLOCK_N, SPLIT_N, S_L, S2_L)
                    acc_tok = _issue_pv(p16, p2_16, v_smem, v2_smem, pst, acc, SPLIT_N)
            if PINGPONG:
                mbarrier.arrive(other_turn, count=1)
            with kperf.scope("wait_qk"):
                s, s2 = _wait_qk(s_tok, s2_tok, True, SPLIT_N)
            mbarrier.arrive(k_empty.index(st), count=1)
            with kperf.scope("softmax"):
                # only the first block (the prologue) can reach before the head
                s, s2 = _mask_block(s, s2, j * BLOCK_KV - pad, first_row, BLOCK_N, SPLIT_N, S_L, S2_L, CAUSAL,
                                    False)
                p, p2, m_i, l_i, alpha = _online_softmax(s, s2, m_i, l_i, qk_scale, SPLIT_N, S2_L, EXP_EMU,
                                                         TREE_MAX)
                if SCHED_FENCE != "":  # keep the softmax above the PV wait (l_i depends on every exponential)
                    l_i = _sched_fence(l_i, SCHED_FENCE)
            with kperf.scope("wait_pv"):
                acc, p16, p2_16 = _wait_pv(acc_tok, p16, p2_16, SPLIT_N)
            mbarrier.arrive(v_empty.index(pst), count=1)
            if EARLY_RESCALE:
                p16, p2_16 = _to_operand(p, p2, dtype, P_L, SPLIT_N, PACK_FIX)
            else:
                with kperf.scope("rescale"):
                    acc = acc * gl.expand_dims(gl.convert_layout(alpha, OROW_L), 1)
                    p16, p2_16 = _to_operand(p, p2, dtype, P_L, SPLIT_N, PACK_FIX)
        # every QK^T wgmma of the tile has retired: the producer may load the next tile's Q
        mbarrier.arrive(q_empty, count=1)
        # tail: PV of the last block
        lg = it + n_blocks - 1
        lst = lg % V_STAGES
        with kperf.scope("wait_v"):
            mbarrier.wait(v_ready.index(lst), (lg // V_STAGES) & 1)
        if PINGPONG:
            with kperf.scope("turn"):
                mbarrier.wait(my_turn, turn)
            turn ^= 1
        if EARLY_RESCALE:
            with kperf.scope("rescale"):
                acc = acc * gl.expand_dims(gl.convert_layout(alpha, OROW_L), 1)
        with kperf.scope("issue"):
            acc_tok = _issue_pv(p16, p2_16, v_smem, v2_smem, lst, acc, SPLIT_N)
        if PINGPONG:
            mbarrier.arrive(other_turn, count=1)
        with kperf.scope("wait_pv"):
            acc, p16, p2_16 = _wait_pv(acc_tok, p16, p2_16, SPLIT_N)
        mbarrier.arrive(v_empty.index(lst), count=1)
    else:
        for j in range(n_blocks):
            g = it + j
            st = g % STAGES
            with kperf.scope("wait_k"):
                mbarrier.wait(k_ready.index(st), (g // STAGES) & 1)
            with kperf.scope("qk"):
                s_tok, s2_tok = _issue_qk(q, k_smem, k2_smem, st, BLOCK_N, SPLIT_N, S_L, S2_L)
                s, s2 = _wait_qk(s_tok, s2_tok, False, SPLIT_N)
            mbarrier.arrive(k_empty.index(st), count=1)
            with kperf.scope("softmax"):
                s, s2 = _mask_block(s, s2, j * BLOCK_KV - pad, first_row, BLOCK_N, SPLIT_N, S_L, S2_L, CAUSAL,
                                    True)
                p, p2, m_i, l_i, alpha = _online_softmax(s, s2, m_i, l_i, qk_scale, SPLIT_N, S2_L, EXP_EMU,
                                                         TREE_MAX)
                acc = acc * gl.expand_dims(gl.convert_layout(alpha, OROW_L), 1)
                p16, p2_16 = _to_operand(p, p2, dtype, P_L, SPLIT_N, PACK_FIX)
            vst = g % V_STAGES
            with kperf.scope("wait_v"):
                mbarrier.wait(v_ready.index(vst), (g // V_STAGES) & 1)
            with kperf.scope("pv"):
                acc_tok = _issue_pv(p16, p2_16, v_smem, v2_smem, vst, acc, SPLIT_N)
                acc, p16, p2_16 = _wait_pv(acc_tok, p16, p2_16, SPLIT_N)
            mbarrier.arrive(v_empty.index(vst), count=1)
        mbarrier.arrive(q_empty, count=1)
    with kperf.scope("epilogue"):
        acc = acc / gl.expand_dims(gl.convert_layout(l_i, OROW_L), 1)
        if PERSISTENT:
            tma.store_wait(pendings=0)  # the previous tile's O store has read o_smem
        o_smem.store(acc.to(dtype))
        fence_async_shared()
        gluon_tma_store(desc_o, [q_row, 0], o_smem)
        if not PERSISTENT:
            tma.store_wait(pendings=0)
    return turn


@gluon.jit
def _fa3_consume(desc_o, q_smem, o_smem, k_smem, v_smem, k2_smem, v2_smem, q_bars, q_empty, k_ready, k_empty,
                 v_ready, v_empty, my_turn, other_turn, n_m, n_tiles, N_CTX, qk_scale, WG: gl.constexpr,
                 HEAD_DIM: gl.constexpr, BLOCK_N: gl.constexpr, SPLIT_N: gl.constexpr, STAGES: gl.constexpr,
                 CAUSAL: gl.constexpr, OVERLAP: gl.constexpr, PINGPONG: gl.constexpr, V_STAGES: gl.constexpr,
                 EARLY_RESCALE: gl.constexpr, PERSISTENT: gl.constexpr, EXP_EMU: gl.constexpr,
                 SCHED_FENCE: gl.constexpr, TREE_MAX: gl.constexpr, PACK_FIX: gl.constexpr):
    """Consumer warpgroup WG: every tile of this CTA (one without PERSISTENT), 64 query rows each."""
    if PERSISTENT:
        it = 0
        i = 0
        turn = 0
        for tile in range(gl.program_id(0), n_tiles, gl.num_programs(0)):
            q_row, kv_row, first_row, n_blocks, pad = _tile(tile, n_m, N_CTX, BLOCK_N, SPLIT_N, CAUSAL)
            turn = _consume_tile(desc_o, q_smem.index(WG), o_smem.index(WG), k_smem, v_smem, k2_smem,
                                 v2_smem, q_bars.index(WG), q_empty.index(WG), k_ready, k_empty, v_ready,
                                 v_empty, my_turn, other_turn, turn, q_row + WG * WG_M,
                                 first_row + WG * WG_M, n_blocks, pad, it, i, qk_scale, WG, HEAD_DIM, BLOCK_N,
                                 SPLIT_N, STAGES, CAUSAL, OVERLAP, PINGPONG, V_STAGES, EARLY_RESCALE,
                                 PERSISTENT, EXP_EMU, SCHED_FENCE, TREE_MAX, PACK_FIX)
            it += n_blocks
            i += 1
        tma.store_wait(pendings=0)
    else:  # one tile: no loop, so no loop-carried counters compete for registers
        q_row, kv_row, first_row, n_blocks, pad = _tile(gl.program_id(0), n_m, N_CTX, BLOCK_N, SPLIT_N,
                                                        CAUSAL)
        _consume_tile(desc_o, q_smem.index(WG), o_smem.index(WG), k_smem, v_smem, k2_smem, v2_smem,
                      q_bars.index(WG), q_empty.index(WG), k_ready, k_empty, v_ready, v_empty, my_turn,
                      other_turn, 0, q_row + WG * WG_M, first_row + WG * WG_M, n_blocks, pad, 0, 0, qk_scale,
                      WG, HEAD_DIM, BLOCK_N, SPLIT_N, STAGES, CAUSAL, OVERLAP, PINGPONG, V_STAGES,
                      EARLY_RESCALE, PERSISTENT, EXP_EMU, SCHED_FENCE, TREE_MAX, PACK_FIX)


@gluon.jit
def fa3_fwd_kernel(desc_q, desc_k, desc_v, desc_o, qk_scale, N_CTX, n_bh, HEAD_DIM: gl.constexpr,
                   BLOCK_N: gl.constexpr, STAGES: gl.constexpr, CAUSAL: gl.constexpr, OVERLAP: gl.constexpr,
                   PINGPONG: gl.constexpr, CONSUMER_REGS: gl.constexpr, V_STAGES: gl.constexpr,
                   EARLY_RESCALE: gl.constexpr, PERSISTENT: gl.constexpr, EXP_EMU: gl.constexpr = False,
                   SPLIT_N: gl.constexpr = 0, SCHED_FENCE: gl.constexpr = "", TREE_MAX: gl.constexpr = False,
                   PACK_FIX: gl.constexpr = True):
    """1-D grid over tiles (128 query rows of one of the ``n_bh`` = Z * H heads); descriptors over the
    [Z * H * N_CTX, HEAD_DIM] views of q, k, v, o.

    Without PERSISTENT the grid has one CTA per tile; with it, fewer CTAs (one per SM) each loop over tiles
    ``program_id, program_id + num_programs, ...``: the producer loads the next tile's Q and K/V while the
    consumers finish the last PV and store O (through their own O buffers, waited on one tile later).
    N_CTX must be a multiple of 128, and without SPLIT_N of BLOCK_N (the host wrapper checks).  STAGES /
    V_STAGES: K / V buffers; EARLY_RESCALE (with OVERLAP): rescale O while S_j is computed, before issuing
    PV (FA3's order).  SPLIT_N = 64: a K/V block is BLOCK_N + 64 keys (FA3's wider blocks with power-of-two
    shapes: two wgmma per GEMM); the K/V descriptors' boxes are then 64 rows.
    """
    gl.static_assert(HEAD_DIM == 64 or HEAD_DIM == 128, "HEAD_DIM must be 64 or 128")
    gl.static_assert(BLOCK_N == 64 or BLOCK_N == 128 or BLOCK_N == 256, "BLOCK_N must be 64, 128 or 256")
    gl.static_assert(SPLIT_N == 0 or (SPLIT_N == 64 and BLOCK_N == 128),
                     "SPLIT_N must be 0, or 64 with BLOCK_N 128")
    n_m = N_CTX // BLOCK_M
    n_tiles = n_m * n_bh
    dtype: gl.constexpr = desc_q.dtype
    q_smem = gl.allocate_shared_memory(dtype, [2, WG_M, HEAD_DIM], desc_q.layout)
    if PERSISTENT:
        o_smem = gl.allocate_shared_memory(dtype, [2, WG_M, HEAD_DIM], desc_o.layout)
    else:
        o_smem = q_smem  # one tile per CTA: its Q buffer is free by the epilogue and stages O
    gl.static_assert(desc_k.block_type.shape[0] == (SPLIT_N if SPLIT_N > 0 else BLOCK_N), "K/V box rows")
    k_smem = gl.allocate_shared_memory(dtype, [STAGES, BLOCK_N, HEAD_DIM], desc_k.layout)
    v_smem = gl.allocate_shared_memory(dtype, [V_STAGES, BLOCK_N, HEAD_DIM], desc_v.layout)
    if SPLIT_N > 0:
        k2_smem = gl.allocate_shared_memory(dtype, [STAGES, SPLIT_N, HEAD_DIM], desc_k.layout)
        v2_smem = gl.allocate_shared_memory(dtype, [V_STAGES, SPLIT_N, HEAD_DIM], desc_v.layout)
    else:  # not read
        k2_smem = k_smem
        v2_smem = v_smem
    q_bars = gl.allocate_shared_memory(gl.int64, [2, 1], mbarrier.MBarrierLayout())
    q_empty = gl.allocate_shared_memory(gl.int64, [2, 1], mbarrier.MBarrierLayout())
    turns = gl.allocate_shared_memory(gl.int64, [2, 1], mbarrier.MBarrierLayout())
    k_ready = gl.allocate_shared_memory(gl.int64, [STAGES, 1], mbarrier.MBarrierLayout())
    k_empty = gl.allocate_shared_memory(gl.int64, [STAGES, 1], mbarrier.MBarrierLayout())
    v_ready = gl.allocate_shared_memory(gl.int64, [V_STAGES, 1], mbarrier.MBarrierLayout())
    v_empty = gl.allocate_shared_memory(gl.int64, [V_STAGES, 1], mbarrier.MBarrierLayout())
    for i in gl.static_range(2):
        mbarrier.init(q_bars.index(i), count=1)
        mbarrier.init(q_empty.index(i), count=1)
        mbarrier.init(turns.index(i), count=1)
    for i in gl.static_range(STAGES):
        mbarrier.init(k_ready.index(i), count=1)
        mbarrier.init(k_empty.index(i), count=2)  # both consumer warpgroups release a buffer
    for i in gl.static_range(V_STAGES):
        mbarrier.init(v_ready.index(i), count=1)
        mbarrier.init(v_empty.index(i), count=2)
    fence_async_shared()
    for i in gl.static_range(2):  # every buffer starts empty
        mbarrier.arrive(q_empty.index(i), count=1)
    for i in gl.static_range(STAGES):
        mbarrier.arrive(k_empty.index(i), count=2)
    for i in gl.static_range(V_STAGES):
        mbarrier.arrive(v_empty.index(i), count=2)
    mbarrier.arrive(turns.index(0), count=1)  # warpgroup 0 issues first
    gl.warp_specialize([
        (_fa3_load, (desc_q, desc_k, desc_v, q_smem, k_smem, v_smem, k2_smem, v2_smem, q_bars, q_empty,
                     k_ready, k_empty, v_ready, v_empty, n_m, n_tiles, N_CTX, BLOCK_N, SPLIT_N, STAGES,
                     V_STAGES, CAUSAL)),
        (_fa3_consume, (desc_o, q_smem, o_smem, k_smem, v_smem, k2_smem, v2_smem, q_bars, q_empty,
                        k_ready, k_empty, v_ready, v_empty, turns.index(0), turns.index(1), n_m, n_tiles,
                        N_CTX, qk_scale, 0, HEAD_DIM, BLOCK_N, SPLIT_N, STAGES, CAUSAL, OVERLAP, PINGPONG,
                        V_STAGES, EARLY_RESCALE, PERSISTENT, EXP_EMU, SCHED_FENCE, TREE_MAX, PACK_FIX)),
        (_fa3_consume, (desc_o, q_smem, o_smem, k_smem, v_smem, k2_smem, v2_smem, q_bars, q_empty,
                        k_ready, k_empty, v_ready, v_empty, turns.index(1), turns.index(0), n_m, n_tiles,
                        N_CTX, qk_scale, 1, HEAD_DIM, BLOCK_N, SPLIT_N, STAGES, CAUSAL, OVERLAP, PINGPONG,
                        V_STAGES, EARLY_RESCALE, PERSISTENT, EXP_EMU, SCHED_FENCE, TREE_MAX, PACK_FIX)),
    ], [4, 4], [CONSUMER_REGS, CONSUMER_REGS])


# --- the pipelines --------------------------------------------------------------------------------------


#: ``Pipeline.sched_fence`` values (see ``_sched_fence``)
SCHED_FENCES = ("", "membar", "clock", "nanosleep")


@dataclasses.dataclass(frozen=True)
class Pipeline:
    """One schedule of ``fa3_fwd_kernel``: its constexpr switches and per-head-dim buffering.

    Args:
        name: the variant name (``kperf_<name>`` in the benchmark).
        overlap: FA3 intra-warpgroup pipelining (softmax of block j under the PV wgmma of block j-1).
        pingpong: consumer warpgroups take turns issuing wgmma (needs ``overlap``).
        stages: K buffers per head dim (``{64: 3, 128: 2}``); shared memory must fit in 227 KiB.
        block_n: keys per block: 64, 128 or 256, or 192 (FA3 uses 176 at head dim 128: fewer blocks, less
            per-block overhead).  Triton 3.6 block shapes, TMA boxes included, must be powers of two, so
            192 runs as two sub-tiles of 128 and 64 keys (``SPLIT_N``) and needs only a multiple of 128 as
            sequence length (the first block is padded and masked); the others need a multiple of block_n.
        consumer_regs: registers per thread requested for each consumer warpgroup (``setmaxnreg``); the
            producer (default partition) gets what is left: 24 at 240, 40 at 232 (2 x 4 + 4 warps).
        v_stages: V buffers per head dim, like ``stages``; ``None``: as many as K buffers.
        early_rescale: with ``overlap``, rescale O by the previous block's factor between issuing QK^T and
            PV (FA3's order: the rescale runs under the QK^T wgmma) instead of after the PV wait.
        persistent: one CTA per SM loops over the tiles; the next tile's Q and K/V load while this tile
            finishes, and O leaves through separate buffers (2 x 64 x head dim more shared memory).
        exp_emulation: one exponential in four of the softmax on the FMA pipe (a polynomial) instead of
            the MUFU unit, which the two consumer warpgroups share.
        sched_fence: with ``overlap``, what keeps ptxas from sinking the softmax below the wait for the
            previous block's PV wgmma (which it does otherwise, so the plain kernel does not run the order the
            trace shows): ``"membar"`` (a CTA fence), ``"clock"`` (a clock read, the cheapest) or
            ``"nanosleep"``; ``""``: none.  Each is measured slower than ptxas's own order (see
            ``_sched_fence`` and docs/fa3-walkthrough.md section 7).
        tree_max: the softmax's row max as a tree inside each thread (a dependent chain of 11 instructions
            instead of 37); measured neutral (non-causal) to +2% (causal).
        pack_fix: P converted to fp16/bf16 with each pair in register order; Triton 3.6's own conversion
            packs it swapped and ptxas adds a PRMT per register (32 per block and thread) to undo it,
            right before the PV wgmma is issued.  Measured +1-2%; on by default.
    """

    name: str
    overlap: bool
    pingpong: bool
    stages: tuple[tuple[int, int], ...] = ((64, 3), (128, 2))
    block_n: int = 128
    consumer_regs: int = 240
    description: str = ""
    v_stages: tuple[tuple[int, int], ...] | None = None
    early_rescale: bool = False
    persistent: bool = False
    exp_emulation: bool = False
    sched_fence: str = ""
    tree_max: bool = False
    pack_fix: bool = True

    def stages_for(self, head_dim: int) -> int:
        table = dict(self.stages)
        if head_dim not in table:
            raise KperfError(f"pipeline {self.name!r} has no configuration for head dim {head_dim}",
                             fix="use head dim 64 or 128")
        return table[head_dim]

    def v_stages_for(self, head_dim: int) -> int:
        if self.v_stages is None:
            return self.stages_for(head_dim)
        table = dict(self.v_stages)
        if head_dim not in table:
            raise KperfError(f"pipeline {self.name!r} has no V buffering for head dim {head_dim}",
                             fix="use head dim 64 or 128")
        return table[head_dim]

    def constexprs(self, *, head_dim: int, causal: bool) -> dict:
        if self.early_rescale and not self.overlap:
            raise KperfError(f"pipeline {self.name!r}: early_rescale needs overlap=True",
                             fix="set overlap=True or early_rescale=False")
        if self.sched_fence not in SCHED_FENCES:
            raise KperfError(f"pipeline {self.name!r}: sched_fence {self.sched_fence!r} is not one of "
                             f"{', '.join(map(repr, SCHED_FENCES))}",
                             fix="use '' (none), 'membar', 'clock' or 'nanosleep'")
        if self.block_n not in (64, 128, 192, 256):
            raise KperfError(f"pipeline {self.name!r}: block_n {self.block_n} is not 64, 128, 192 or 256",
                             fix="Triton 3.6 block shapes (TMA boxes, wgmma tiles) must be powers of two; "
                                 "192 runs as 128 + 64")
        return {"HEAD_DIM": head_dim, "BLOCK_N": self.tile_n, "SPLIT_N": self.block_n - self.tile_n,
                "STAGES": self.stages_for(head_dim),
                "CAUSAL": bool(causal), "OVERLAP": self.overlap, "PINGPONG": self.pingpong,
                "CONSUMER_REGS": self.consumer_regs, "V_STAGES": self.v_stages_for(head_dim),
                "EARLY_RESCALE": self.early_rescale, "PERSISTENT": self.persistent,
                "EXP_EMU": self.exp_emulation, "SCHED_FENCE": self.sched_fence,
                "TREE_MAX": self.tree_max, "PACK_FIX": self.pack_fix}

    @property
    def tile_n(self) -> int:
        """Rows of the first (power-of-two) K/V sub-tile: ``block_n``, or 128 of the 192."""
        return 128 if self.block_n == 192 else self.block_n

    @property
    def kv_box(self) -> int:
        """Rows of the K/V descriptors' TMA box: the block, or 64 (a 192-key block loads as three boxes)."""
        return 64 if self.block_n == 192 else self.block_n

    @property
    def seq_multiple(self) -> int:
        """What the sequence length must be a multiple of."""
        return BLOCK_M.value if self.block_n == 192 else max(BLOCK_M.value, self.block_n)

    def smem_bytes(self, head_dim: int, elem_bytes: int = 2) -> int:
        """Shared memory of the tiles (Q, O when persistent, K and V rings), without the mbarriers."""
        kv = (self.stages_for(head_dim) + self.v_stages_for(head_dim)) * self.block_n * head_dim
        qo = (2 if self.persistent else 1) * 2 * WG_M.value * head_dim
        return (kv + qo) * elem_bytes


PIPELINES: dict[str, Pipeline] = {p.name: p for p in (
    Pipeline("ws", overlap=False, pingpong=False,
             description="producer warp + 2 consumer warpgroups, QK^T -> softmax -> PV in sequence"),
    Pipeline("ws_overlap", overlap=True, pingpong=False,
             description="+ intra-warpgroup overlap: softmax(j) under PV(j-1)"),
    Pipeline("ws_overlap_v3", overlap=True, pingpong=False, stages=((64, 3), (128, 2)),
             v_stages=((64, 4), (128, 3)),
             description="ws_overlap with one more V buffer (the producer waited on V buffers, not K)"),
    Pipeline("ws_pingpong", overlap=True, pingpong=True,
             description="+ ping-pong: the two consumer warpgroups take turns on the tensor cores"),
    Pipeline("ws_pingpong_s3", overlap=True, pingpong=True, stages=((64, 4), (128, 3)),
             description="ws_pingpong with one more K and V buffer (deeper prefetch)"),
    Pipeline("ws_overlap_persistent", overlap=True, pingpong=False, persistent=True,
             description="ws_overlap, persistent: one CTA per SM loops over tiles, next tile loads early"),
    Pipeline("ws_pingpong_persistent", overlap=True, pingpong=True, persistent=True,
             description="ws_pingpong, persistent: one CTA per SM loops over tiles, next tile loads early"),
)}

DTYPES = {"fp16": "float16", "bf16": "bfloat16"}


def get_pipeline(name: str) -> Pipeline:
    if name not in PIPELINES:
        raise KperfError(f"unknown FA3 pipeline {name!r}", fix=f"use one of {', '.join(PIPELINES)}")
    return PIPELINES[name]


def _gl_dtype(dtype: str):
    if dtype not in DTYPES:
        raise KperfError(f"unsupported dtype {dtype!r}", fix="use 'fp16' or 'bf16'")
    return getattr(gl, DTYPES[dtype])


@functools.cache
def tile_layouts(dtype: str, head_dim: int, block_n: int):
    """The NVMMA shared layouts of the Q/O tiles ([64, d]) and the K/V tiles ([block_n, d]); cached: building
    them took a fifth of the wrapper's host time per call."""
    t = _gl_dtype(dtype)
    return (gl.NVMMASharedLayout.get_default_for([WG_M.value, head_dim], t),
            gl.NVMMASharedLayout.get_default_for([block_n, head_dim], t))


def signature(pipeline: str | Pipeline = "ws_pingpong", *, dtype: str = "fp16", head_dim: int = 128) -> dict:
    """Triton signature of ``fa3_fwd_kernel`` as the JIT specializes it (for compile-only use)."""
    p = get_pipeline(pipeline) if isinstance(pipeline, str) else pipeline
    lq, lk = tile_layouts(dtype, head_dim, p.kv_box)
    qo = f"tensordesc<{dtype}[{WG_M.value}, {head_dim}],{lq!r}>"
    kv = f"tensordesc<{dtype}[{p.kv_box}, {head_dim}],{lk!r}>"
    sig = {"desc_q": qo, "desc_k": kv, "desc_v": kv, "desc_o": qo, "qk_scale": "fp32", "N_CTX": "i32",
           "n_bh": "i32"}
    sig.update({name: "constexpr" for name in p.constexprs(head_dim=head_dim, causal=False)})
    return sig


COMPILE_OPTIONS = {"num_warps": 4}  # the producer partition; each consumer partition adds 4 warps


def compile_pipeline(pipeline: str | Pipeline = "ws_pingpong", *, dtype: str = "fp16", head_dim: int = 128,
                     causal: bool = False, target="cuda:90", config=None) -> kperf.CompileReport:
    """Compile one pipeline (a name or a ``Pipeline``) through kperf for ``target`` without a GPU
    (instrumented and plain)."""
    p = get_pipeline(pipeline) if isinstance(pipeline, str) else pipeline
    return kperf.compile(fa3_fwd_kernel, signature=signature(p, dtype=dtype, head_dim=head_dim),
                         constexprs=p.constexprs(head_dim=head_dim, causal=causal), target=target,
                         config=config, **COMPILE_OPTIONS)


# --- host side ------------------------------------------------------------------------------------------


def grid_ctas(pipeline: Pipeline, q, ctas: int | None = None) -> int:
    """CTAs ``fa3_attention`` launches for ``q`` of shape [Z, H, N_CTX, HEAD_DIM]: one per 128-row tile, or
    for a persistent pipeline ``ctas`` (default: one per SM of ``q``'s device), at most one per tile."""
    import torch
    Z, H, n_ctx, _ = q.shape
    n_tiles = n_ctx // BLOCK_M.value * Z * H
    if ctas is not None and (not pipeline.persistent or ctas < 1):
        raise KperfError(f"ctas={ctas} given for pipeline {pipeline.name!r}",
                         fix="ctas is a positive CTA count, for persistent pipelines only")
    if not pipeline.persistent:
        return n_tiles
    return min(n_tiles, ctas or torch.cuda.get_device_properties(q.device).multi_processor_count)


def tensor_descriptors(pipeline: Pipeline, q, k, v, o):
    """The host TMA descriptors of ``fa3_fwd_kernel`` (desc_q, desc_k, desc_v, desc_o) over the
    [Z * H * N_CTX, HEAD_DIM] views of contiguous q, k, v, o."""
    import torch
    from triton.experimental.gluon.nvidia.hopper import TensorDescriptor
    Z, H, n_ctx, head_dim = q.shape
    lq, lk = tile_layouts("fp16" if q.dtype == torch.float16 else "bf16", head_dim, pipeline.kv_box)
    rows = Z * H * n_ctx
    return (TensorDescriptor.from_tensor(q.view(rows, head_dim), [WG_M.value, head_dim], lq),
            TensorDescriptor.from_tensor(k.view(rows, head_dim), [pipeline.kv_box, head_dim], lk),
            TensorDescriptor.from_tensor(v.view(rows, head_dim), [pipeline.kv_box, head_dim], lk),
            TensorDescriptor.from_tensor(o.view(rows, head_dim), [WG_M.value, head_dim], lq))


def fa3_attention(q, k, v, causal: bool = False, sm_scale: float | None = None, *,
                  pipeline: str | Pipeline = "ws_pingpong", kernel=fa3_fwd_kernel, ctas: int | None = None):
    """``softmax(q @ k^T * sm_scale [+ causal mask]) @ v`` for ``[Z, H, N_CTX, HEAD_DIM]`` fp16/bf16 tensors.

    Args:
        pipeline: a name in ``PIPELINES`` or a ``Pipeline``.
        kernel: ``fa3_fwd_kernel``, or it wrapped by ``kperf.profile`` to record a trace.
        ctas: persistent pipelines only: how many CTAs loop over the tiles (default: one per SM, at most
            one per tile); fewer give each CTA more tiles (the tests use it).
    """
    import torch

    p = get_pipeline(pipeline) if isinstance(pipeline, str) else pipeline
    if q.dtype not in (torch.float16, torch.bfloat16) or not (q.dtype == k.dtype == v.dtype):
        raise KperfError(f"q, k, v must share one dtype, fp16 or bf16; got {q.dtype}, {k.dtype}, {v.dtype}",
                         fix="cast the inputs with .half() or .bfloat16()")
    if q.dim() != 4 or q.shape != k.shape or q.shape != v.shape:
        raise KperfError(f"q, k, v must be [Z, H, N_CTX, HEAD_DIM] of one shape; got {tuple(q.shape)}, "
                         f"{tuple(k.shape)}, {tuple(v.shape)}", fix="self-attention shapes only (no GQA)")
    Z, H, n_ctx, head_dim = q.shape
    if head_dim not in (64, 128):
        raise KperfError(f"head dim must be 64 or 128, got {head_dim}", fix="pad the head dim to 64 or 128")
    if n_ctx % p.seq_multiple:
        raise KperfError(f"sequence length {n_ctx} is not a multiple of {p.seq_multiple}",
                         fix=f"pad the sequence to a multiple of {p.seq_multiple}")
    sm_scale = 1.0 / math.sqrt(head_dim) if sm_scale is None else sm_scale
    q, k, v = (t.contiguous() for t in (q, k, v))
    o = torch.empty_like(q)
    grid = (grid_ctas(p, q, ctas),)
    kernel[grid](*tensor_descriptors(p, q, k, v, o), sm_scale * LOG2E, n_ctx, Z * H,
                 **p.constexprs(head_dim=head_dim, causal=causal), **COMPILE_OPTIONS)
    return o


def sdpa_reference(q, k, v, causal: bool = False, sm_scale: float | None = None):
    """PyTorch SDPA (math backend) in float32: the reference every pipeline is checked against."""
    import torch
    from torch.nn.attention import SDPBackend, sdpa_kernel
    with sdpa_kernel(SDPBackend.MATH):
        return torch.nn.functional.scaled_dot_product_attention(q.float(), k.float(), v.float(),
                                                                is_causal=causal, scale=sm_scale)


def flops(z: int, h: int, n_ctx: int, head_dim: int, causal: bool) -> float:
    """Forward FLOPs (two matmuls), halved for causal, as in Triton's tutorial and tritonbench."""
    f = 4.0 * z * h * n_ctx * n_ctx * head_dim
    return f / 2 if causal else f


def main(argv=None):
    import torch
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--heads", type=int, default=16)
    ap.add_argument("--n-ctx", type=int, default=4096)
    ap.add_argument("--head-dim", type=int, default=128, choices=(64, 128))
    ap.add_argument("--dtype", default="fp16", choices=tuple(DTYPES))
    ap.add_argument("--causal", action="store_true")
    ap.add_argument("--pipelines", default=",".join(PIPELINES), help="comma-separated names")
    ap.add_argument("--out", default="out/fa3")
    args = ap.parse_args(argv)
    from kperf.examples.gpu import require_gpu
    require_gpu("examples/fa3_pipelines.py", hopper=True,
                compile_hint="python3 -c 'from kperf.examples import fa3_pipelines as f; "
                             "print(f.compile_pipeline(\"ws_pingpong\").summary())'")
    torch.manual_seed(0)
    dt = getattr(torch, DTYPES[args.dtype])
    shape = (args.batch, args.heads, args.n_ctx, args.head_dim)
    q, k, v = (torch.randn(shape, device="cuda", dtype=dt) for _ in range(3))
    ref = sdpa_reference(q, k, v, args.causal)
    for name in args.pipelines.split(","):
        out = fa3_attention(q, k, v, args.causal, pipeline=name)
        err = (out.float() - ref).abs().max().item()
        profiled = kperf.profile(fa3_fwd_kernel)
        out_p = fa3_attention(q, k, v, args.causal, pipeline=name, kernel=profiled)
        same = torch.equal(out_p, out)
        files = kperf.results(profiled).save(pathlib.Path(args.out) / name)
        print(f"{name:<16} max |err| vs SDPA fp32 {err:.2e}; profiled output identical: {same}; "
              f"{files['trace']}")


if __name__ == "__main__":
    main()
