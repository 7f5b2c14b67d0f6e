"""Block-sparse (masked) attention forward for Hopper in Triton, in four schedules, with kperf scopes.

Masked attention is not balanced by construction as dense attention is: with a causal, sliding-window,
document or BigBird mask, one query block visits one key block and another visits all of them.  The
kernels skip the key blocks the mask hides entirely, from per-tile block lists like FlexAttention's
``BlockMask`` (``examples/block_masks.py``): per (batch, head, query block) a list of *full* key blocks
(no mask needed) and a list of *partial* ones (the element mask is applied in the kernel: a per-head
band ``-right[h] < q - k < left[h]`` and packed document ids, which cover causal, sliding-window and
document masks; BigBird's block set has no partial blocks).  fp16/bf16, head dim 64 or 128,
``[B, H, S, D]`` tensors read through device-side TMA descriptors.

Schedules (``schedule=``), the same tile code (:func:`_attend_tile`) in each:

- ``grid``: one CTA per tile in tile order (head-major, query blocks ascending), as the dense tutorial
  kernel does.  The hardware hands CTAs to SMs in id order as SMs free up, so a long tile that comes
  late (the last head's global BigBird rows, the last documents' ends) runs alone at the end of the
  launch while the other SMs idle: kperf's ``imbalance`` table shows it as the tail and SM idle share.
- ``lpt_grid``: one CTA per tile, CTA ``i`` taking the ``i``-th tile of the LPT order (descending work,
  computed on the host from the mask): the hardware's in-order dispatch then is greedy list scheduling
  in LPT order.
- ``persistent``: one CTA per SM slot; each CTA takes the next tile of the LPT order from a global
  counter (``atomic_add``) until none is left, so whichever CTA is free first takes the longest tile
  left.  A CTA draws its next ticket when it starts a tile (the atomic's round trip hides behind the
  tile); the last CTA to finish resets the counter for the next launch (no memset kernel).
- ``persistent_grouped``: the same kernel on an LPT order over powers of two of work, tile order inside
  one (``BlockLists.lpt_order(grouped=True)``): strict LPT runs every head at once when many tiles have
  about the same work, and kperf's ns-per-block figure shows what that costs in L2 misses.

Scopes (per warp): ``tile`` (one tile, around the rest), ``full_blocks``, ``partial_blocks``,
``epilogue``.  They sit around loops, not inside them, so the loop's software pipelining is the plain
kernel's.  Under ``TRITON_INTERPRET=1`` (CPU tests) the scopes are no-ops: kperf records need the compiler.

Compile-only (no GPU): ``kperf compile examples/masked_attention.py:masked_attn_fwd`` (``SIGNATURE``,
``CONSTEXPRS``, ``COMPILE_OPTIONS``: fp16, head dim 128; ``signature(dtype, persistent)`` for the others).

Run it (needs a Hopper GPU): ``python examples/masked_attention.py --family bigbird --out out/masked``
checks the four schedules against PyTorch SDPA in float32, profiles ``grid`` and ``persistent`` and
prints the imbalance statistics of each (``examples/masked_imbalance.py``); ``bench/masked_attention.py``
is the full benchmark, ``docs/masked-attention.md`` the walk-through.
"""

from __future__ import annotations

import argparse
import math
import os
import types

import triton
import triton.language as tl

import kperf
from kperf.examples import block_masks as bmk

# kperf.scope needs the compiler; the interpreter runs the kernel as Python, where these do nothing
_INTERPRET = os.environ.get("TRITON_INTERPRET", "0") == "1"


class _NoScope:
    def __init__(self, name, _semantic=None):
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


prof = types.ModuleType("no_scopes") if _INTERPRET else kperf  # a module: Triton resolves it in kernels
if _INTERPRET:
    prof.scope = _NoScope

SCHEDULES = ("grid", "lpt_grid", "persistent", "persistent_grouped")
LOG2E = 1.44269504


# --- device code -------------------------------------------------------------------------------------------

@triton.jit
def _visit_blocks(acc, l_i, m_i, q, desc_k, desc_v, kv_row, idx_ptr, n_blocks, qk_scale, rows, doc_q,
                  doc_ptr, left, right, MASKED: tl.constexpr, BLOCK_N: tl.constexpr):
    """Online softmax over the ``n_blocks`` key blocks listed at ``idx_ptr``; ``MASKED``: apply the element
    mask (band and document), with -inf scores and a row maximum that stays finite for rows that have seen
    no visible key yet (their terms are all zero, not NaN)."""
    offs_n = tl.arange(0, BLOCK_N)
    for i in range(n_blocks):
        start_n = tl.load(idx_ptr + i) * BLOCK_N
        k = desc_k.load([kv_row + start_n, 0])
        qk = tl.dot(q, k.T) * qk_scale
        if MASKED:
            cols = start_n + offs_n
            d = rows[:, None] - cols[None, :]
            doc_k = tl.load(doc_ptr + cols)
            keep = (d < left) & (-d < right) & (doc_q[:, None] == doc_k[None, :])
            qk = tl.where(keep, qk, float("-inf"))
        m_ij = tl.maximum(m_i, tl.max(qk, 1))
        if MASKED:
            m_ij = tl.where(m_ij == float("-inf"), -1.0e30, m_ij)
        p = tl.math.exp2(qk - m_ij[:, None])
        alpha = tl.math.exp2(m_i - m_ij)
        l_i = l_i * alpha + tl.sum(p, 1)
        v = desc_v.load([kv_row + start_n, 0])
        acc = tl.dot(p.to(v.dtype), v, acc * alpha[:, None])
        m_i = m_ij
    return acc, l_i, m_i


@triton.jit
def _attend_tile(tile, desc_q, desc_k, desc_v, desc_o, full_num, full_idx, part_num, part_idx, left, right,
                 doc, H, S, n_kv, qk_scale, HEAD_DIM: tl.constexpr, BLOCK_M: tl.constexpr,
                 BLOCK_N: tl.constexpr):
    """One tile: query block ``tile % (S / BLOCK_M)`` of (batch, head) ``tile // (S / BLOCK_M)``; its
    full key blocks first (no mask), then its partial ones."""
    with prof.scope("tile"):
        n_m = S // BLOCK_M
        bh = tile // n_m
        start_m = (tile % n_m) * BLOCK_M
        kv_row = bh * S  # first row of this (batch, head) in the [B * H * S, D] views
        rows = start_m + tl.arange(0, BLOCK_M)
        doc_ptr = doc + (bh // H) * S
        doc_q = tl.load(doc_ptr + rows)
        h = bh % H
        lo = tl.load(left + h)
        ro = tl.load(right + h)
        q = desc_q.load([kv_row + start_m, 0])
        m_i = tl.zeros([BLOCK_M], dtype=tl.float32) - float("inf")
        l_i = tl.zeros([BLOCK_M], dtype=tl.float32)
        acc = tl.zeros([BLOCK_M, HEAD_DIM], dtype=tl.float32)
        with prof.scope("full_blocks"):
            acc, l_i, m_i = _visit_blocks(acc, l_i, m_i, q, desc_k, desc_v, kv_row, full_idx + tile * n_kv,
                                          tl.load(full_num + tile), qk_scale, rows, doc_q, doc_ptr, lo, ro,
                                          False, BLOCK_N)
        with prof.scope("partial_blocks"):
            acc, l_i, m_i = _visit_blocks(acc, l_i, m_i, q, desc_k, desc_v, kv_row, part_idx + tile * n_kv,
                                          tl.load(part_num + tile), qk_scale, rows, doc_q, doc_ptr, lo, ro,
                                          True, BLOCK_N)
        with prof.scope("epilogue"):
            l_i = tl.where(l_i == 0.0, 1.0, l_i)  # a row that sees nothing: 0, as FlexAttention gives
            desc_o.store([kv_row + start_m, 0], (acc / l_i[:, None]).to(q.dtype))


@triton.jit
def _descriptors(Q, K, V, Out, y_dim, HEAD_DIM: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr):
    desc_q = tl.make_tensor_descriptor(Q, shape=[y_dim, HEAD_DIM], strides=[HEAD_DIM, 1],
                                       block_shape=[BLOCK_M, HEAD_DIM])
    desc_k = tl.make_tensor_descriptor(K, shape=[y_dim, HEAD_DIM], strides=[HEAD_DIM, 1],
                                       block_shape=[BLOCK_N, HEAD_DIM])
    desc_v = tl.make_tensor_descriptor(V, shape=[y_dim, HEAD_DIM], strides=[HEAD_DIM, 1],
                                       block_shape=[BLOCK_N, HEAD_DIM])
    desc_o = tl.make_tensor_descriptor(Out, shape=[y_dim, HEAD_DIM], strides=[HEAD_DIM, 1],
                                       block_shape=[BLOCK_M, HEAD_DIM])
    return desc_q, desc_k, desc_v, desc_o


@triton.jit(do_not_specialize=["ordered"])  # 0 or 1: one compiled kernel for both grid schedules
def masked_attn_fwd(Q, K, V, Out, full_num, full_idx, part_num, part_idx, left, right, doc, order, ordered,
                    sm_scale, B, H, S, n_kv, HEAD_DIM: tl.constexpr, BLOCK_M: tl.constexpr,
                    BLOCK_N: tl.constexpr):
    """One CTA per tile: tile ``pid`` (``grid``), or ``order[pid]`` when ``ordered`` (``lpt_grid``; a
    run-time flag, so both schedules share one compiled kernel)."""
    pid = tl.program_id(0)
    tile = pid
    if ordered != 0:
        tile = tl.load(order + pid)
    desc_q, desc_k, desc_v, desc_o = _descriptors(Q, K, V, Out, B * H * S, HEAD_DIM, BLOCK_M, BLOCK_N)
    _attend_tile(tile, desc_q, desc_k, desc_v, desc_o, full_num, full_idx, part_num, part_idx, left, right,
                 doc, H, S, n_kv, sm_scale * 1.44269504, HEAD_DIM, BLOCK_M, BLOCK_N)


@triton.jit(do_not_specialize=["log_tiles"])
def masked_attn_fwd_persistent(Q, K, V, Out, full_num, full_idx, part_num, part_idx, left, right, doc, order,
                               queue, tile_cta, log_tiles, n_tiles, sm_scale, B, H, S, n_kv,
                               HEAD_DIM: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr):
    """Each CTA takes the next ticket ``t`` of ``queue[0]`` and runs tile ``order[t]`` until the tickets run
    out, drawing its next ticket before the tile so that the atomic's latency overlaps it; ``log_tiles``:
    ``tile_cta[t]`` gets the CTA, so the host knows each CTA's work.  ``queue[1]`` counts finished CTAs:
    the last one puts both counters back to 0 (every CTA has drawn its last ticket by then)."""
    pid = tl.program_id(0)
    desc_q, desc_k, desc_v, desc_o = _descriptors(Q, K, V, Out, B * H * S, HEAD_DIM, BLOCK_M, BLOCK_N)
    qk_scale = sm_scale * 1.44269504
    t = tl.atomic_add(queue, 1)
    while t < n_tiles:
        t_next = tl.atomic_add(queue, 1)
        if log_tiles != 0:
            tl.store(tile_cta + t, pid)
        _attend_tile(tl.load(order + t), desc_q, desc_k, desc_v, desc_o, full_num, full_idx, part_num,
                     part_idx, left, right, doc, H, S, n_kv, qk_scale, HEAD_DIM, BLOCK_M, BLOCK_N)
        t = t_next
    if tl.atomic_add(queue + 1, 1) == tl.num_programs(0) - 1:
        tl.atomic_xchg(queue, 0)
        tl.atomic_xchg(queue + 1, 0)


# --- compile-only description (fp16, head dim 128, 128 x 128 blocks) ----------------------------------------

def signature(dtype: str = "fp16", persistent: bool = False) -> dict[str, str]:
    """Triton signature of ``masked_attn_fwd`` (or ``masked_attn_fwd_persistent``) for ``dtype``."""
    sig = {n: f"*{dtype}" for n in ("Q", "K", "V", "Out")}
    sig.update({n: "*i32" for n in ("full_num", "full_idx", "part_num", "part_idx", "left", "right", "doc",
                                     "order")})
    sig.update({"queue": "*i32", "tile_cta": "*i32", "log_tiles": "i32", "n_tiles": "i32"} if persistent
               else {"ordered": "i32"})
    sig.update({"sm_scale": "fp32", "B": "i32", "H": "i32", "S": "i32", "n_kv": "i32"})
    return {**sig, "HEAD_DIM": "constexpr", "BLOCK_M": "constexpr", "BLOCK_N": "constexpr"}


SIGNATURE = signature()
CONSTEXPRS = {"HEAD_DIM": 128, "BLOCK_M": 128, "BLOCK_N": 128}
COMPILE_OPTIONS = {"num_warps": 8, "num_stages": 3}


# --- host side ---------------------------------------------------------------------------------------------

class Prepared:
    """A mask's block lists on the device, with the LPT order and the persistent kernel's tile counter;
    made once per mask and reused by every launch (the lists are the mask, not per-call data)."""

    def __init__(self, lists: bmk.BlockLists, device):
        import torch
        s = lists.spec

        def t(a):
            return torch.as_tensor(a, dtype=torch.int32).contiguous().to(device)
        self.lists, self.spec = lists, s
        self.full_num, self.full_idx = t(lists.full_num), t(lists.full_idx)
        self.part_num, self.part_idx = t(lists.part_num), t(lists.part_idx)
        self.left = t(lists.spec.left.clip(-bmk.NONE, bmk.NONE))
        self.right = t(lists.spec.right.clip(-bmk.NONE, bmk.NONE))
        self.doc = t(s.doc)
        self.order = t(lists.lpt_order())
        self.order_grouped = t(bmk.schedule_order(lists, "persistent_grouped"))
        self.queue = torch.zeros(2, dtype=torch.int32, device=device)
        self.tile_cta = torch.full((lists.n_tiles,), -1, dtype=torch.int32, device=device)


def prepare(spec: bmk.MaskSpec, device) -> Prepared:
    return Prepared(bmk.block_lists(spec), device)


def _alloc_scratch(size: int, alignment: int, stream):
    import torch
    return torch.empty(size, dtype=torch.int8, device="cpu" if _INTERPRET else "cuda")


_PROGRAMS: dict = {}


def persistent_programs(kernel, args, kwargs) -> int:
    """CTAs of the persistent launch: SMs x the CTAs one SM holds (shared memory and registers of the
    compiled ``kernel``, a plain ``@triton.jit`` one), found once per kernel and configuration."""
    if _INTERPRET:
        return 3
    key = (id(kernel), tuple(sorted((k, v) for k, v in kwargs.items() if not hasattr(v, "data_ptr"))),
           args[0].dtype)
    if key not in _PROGRAMS:
        from triton.runtime import driver
        c = kernel.warmup(*args, grid=(1,), **kwargs)
        c._init_handles()  # loads the binary: its register count is known from then on
        props = driver.active.utils.get_device_properties(args[0].device.index or 0)
        warps = kwargs.get("num_warps", 4)
        per_sm = min(props["max_shared_mem"] // max(c.metadata.shared + 1024, 1),
                     props.get("max_num_regs", 65536) // max(c.n_regs * 32 * warps, 1))
        _PROGRAMS[key] = props["multiprocessor_count"] * max(int(per_sm), 1)
    return _PROGRAMS[key]


def _check(q, k, v, p: Prepared):
    import torch
    s = p.spec
    if q.dtype not in (torch.float16, torch.bfloat16) or not (q.dtype == k.dtype == v.dtype):
        raise ValueError(f"q, k, v must share one dtype, fp16 or bf16; got {q.dtype}, {k.dtype}, {v.dtype}")
    if not (q.shape == k.shape == v.shape) or tuple(q.shape[:3]) != (s.batch, s.heads, s.seq_len):
        raise ValueError(f"q, k, v must be [B, H, S, D] = [{s.batch}, {s.heads}, {s.seq_len}, D] like the "
                         f"mask; got {tuple(q.shape)}, {tuple(k.shape)}, {tuple(v.shape)}")
    if q.shape[3] not in (64, 128):
        raise ValueError(f"head dim must be 64 or 128, got {q.shape[3]}")


def masked_attention(q, k, v, p: Prepared, schedule: str = "grid", sm_scale: float | None = None, *,
                     kernel=None, num_warps: int = 8, num_stages: int = 3, programs: int | None = None,
                     log_tiles: bool = False, out=None):
    """``softmax(q k^T * sm_scale + mask) v`` for ``[B, H, S, D]`` fp16/bf16 tensors and the mask ``p``
    (:func:`prepare`), skipping fully masked key blocks.  ``kernel``: ``masked_attn_fwd`` (grid
    schedules) or ``masked_attn_fwd_persistent``, e.g. wrapped by ``kperf.profile``; ``programs``: CTAs of
    the persistent launch (default: as many as the SMs hold the plain kernel, so a profiled launch has the
    timed launch's CTAs); ``out``: the output tensor to write (default: a new one)."""
    import torch
    if schedule not in SCHEDULES:
        raise ValueError(f"schedule must be one of {SCHEDULES}, got {schedule!r}")
    _check(q, k, v, p)
    s = p.spec
    B, H, S, D = q.shape
    sm_scale = 1.0 / math.sqrt(D) if sm_scale is None else sm_scale
    q, k, v = q.contiguous(), k.contiguous(), v.contiguous()
    o = torch.empty_like(q) if out is None else out
    triton.set_allocator(_alloc_scratch)  # device-side TMA descriptors live in global scratch
    common = (p.full_num, p.full_idx, p.part_num, p.part_idx, p.left, p.right, p.doc, p.order)
    kw = {"HEAD_DIM": D, "BLOCK_M": s.block_m, "BLOCK_N": s.block_n, "num_warps": num_warps,
          "num_stages": num_stages}
    if not schedule.startswith("persistent"):
        kernel = kernel or masked_attn_fwd
        kernel[(p.lists.n_tiles,)](q, k, v, o, *common, int(schedule == "lpt_grid"), sm_scale, B, H, S, s.n_n,
                                   **kw)
        return o
    kernel = kernel or masked_attn_fwd_persistent
    order = p.order_grouped if schedule == "persistent_grouped" else p.order
    args = (q, k, v, o, *common[:-1], order, p.queue, p.tile_cta, int(log_tiles), p.lists.n_tiles, sm_scale,
            B, H, S, s.n_n)
    n = programs or persistent_programs(masked_attn_fwd_persistent, args, kw)
    kernel[(n,)](*args, **kw)
    return o


def profile_schedule(q, k, v, p: Prepared, schedule: str, capacity: int | None = None,
                     sm_scale: float | None = None) -> dict:
    """One launch of ``schedule`` under ``kperf.profile``; returns ``profile``, ``out`` (the output),
    ``summary`` and ``tiles`` (``examples/masked_imbalance.py``: kperf's imbalance tables joined with
    the work per tile) and ``tile_cta`` (persistent schedules: the CTA that drew each ticket)."""
    from kperf.examples import masked_imbalance as mi
    persistent = schedule.startswith("persistent")
    base = masked_attn_fwd_persistent if persistent else masked_attn_fwd
    if capacity is None:  # 8 records per tile and warp; a persistent CTA runs a few times its share
        per_cta = 4 * -(-p.lists.n_tiles // 132) + 16 if persistent else 1
        capacity = 1 << (8 * per_cta + 8 - 1).bit_length()
    kernel = kperf.profile(base, capacity=capacity)
    p.tile_cta.fill_(-1)
    out = masked_attention(q, k, v, p, schedule, sm_scale, kernel=kernel, log_tiles=True)
    prof = kperf.results(kernel)
    tile_cta = p.tile_cta.cpu().numpy() if persistent else None
    summary, tiles = mi.summarize(prof, p.lists, schedule, tile_cta)
    summary["lost_records"] = int(prof.lost_total)
    return {"profile": prof, "out": out, "summary": summary, "tiles": tiles, "tile_cta": tile_cta}


_FLEX: dict = {}


def compiled_flex_attention():
    """``torch.compile(flex_attention, dynamic=False)``, made once per process: the FlexAttention baseline
    (with :func:`block_masks.flex_block_mask`, the same block lists).  Compiled for fixed shapes, once per
    sequence length (``block_masks.flex_tensors`` gives every family the same tensor shapes), so the
    recompile limit is raised to hold a sweep's lengths."""
    if "fn" not in _FLEX:
        import torch
        from torch.nn.attention.flex_attention import flex_attention
        torch._dynamo.config.cache_size_limit = max(torch._dynamo.config.cache_size_limit, 64)
        _FLEX["fn"] = torch.compile(flex_attention, dynamic=False)
    return _FLEX["fn"]


def reference(q, k, v, spec: bmk.MaskSpec, sm_scale: float | None = None):
    """PyTorch SDPA (math backend) in float32 with the dense element mask."""
    import torch
    from torch.nn.attention import SDPBackend, sdpa_kernel
    mask = bmk.element_mask(spec, q.device)
    with sdpa_kernel([SDPBackend.MATH]):
        return torch.nn.functional.scaled_dot_product_attention(q.float(), k.float(), v.float(),
                                                                attn_mask=mask, scale=sm_scale)


def main(argv=None):
    import torch
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--family", default="bigbird", choices=bmk.FAMILIES)
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--heads", type=int, default=16)
    ap.add_argument("--seq-len", type=int, default=16384)
    ap.add_argument("--head-dim", type=int, default=128, choices=(64, 128))
    ap.add_argument("--dtype", default="fp16", choices=("fp16", "bf16"))
    ap.add_argument("--out", default="out/masked_attention")
    args = ap.parse_args(argv)
    from kperf.examples import masked_imbalance as mi
    from kperf.examples.gpu import require_gpu
    require_gpu("examples/masked_attention.py", hopper=True,
                compile_hint="python3 -m pytest -q tests/unit/test_masked_attention_cpu.py (interpreter)")
    dt = {"fp16": torch.float16, "bf16": torch.bfloat16}[args.dtype]
    gen = torch.Generator(device="cuda").manual_seed(0)
    small = prepare(bmk.make_mask(args.family, 1, 4, 2048), "cuda")
    q, k, v = (torch.randn((1, 4, 2048, args.head_dim), device="cuda", dtype=dt, generator=gen)
               for _ in range(3))
    ref = reference(q, k, v, small.spec)
    for schedule in SCHEDULES:
        err = (masked_attention(q, k, v, small, schedule).float() - ref).abs().max().item()
        print(f"{schedule}: max |out - SDPA fp32| = {err:.2e}")
    p = prepare(bmk.make_mask(args.family, args.batch, args.heads, args.seq_len), "cuda")
    shape = (args.batch, args.heads, args.seq_len, args.head_dim)
    q, k, v = (torch.randn(shape, device="cuda", dtype=dt, generator=gen) for _ in range(3))
    for schedule in ("grid", "persistent"):
        res = profile_schedule(q, k, v, p, schedule)
        print(f"\n== {args.family} {schedule}\n" + mi.format_summary(res["summary"]))
        res["profile"].to_perfetto(f"{args.out}/{args.family}_{schedule}.pftrace.gz", select="sms:0-7")
    print(f"traces: {args.out}/")


if __name__ == "__main__":
    main()
