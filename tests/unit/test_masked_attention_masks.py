"""Block masks on the host (examples/block_masks.py) and the work-time join (examples/masked_imbalance.py).

The block lists are built from each family's definition, never from a dense mask: here they are checked
against the dense element mask (a block is full exactly when every element is visible; every visible
element lies in a listed block), as FlexAttention's ``BlockMask`` would hold them.
"""

from __future__ import annotations

import pathlib

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from kperf.examples import block_masks as bmk  # noqa: E402
from kperf.examples import masked_imbalance as mi  # noqa: E402

SPECS = [
    ("dense", lambda: bmk.dense(2, 3, 256, 32, 32)),
    ("causal", lambda: bmk.causal(2, 3, 256, 32, 64)),
    ("sliding_window", lambda: bmk.sliding_window(2, 3, 256, 32, 32, windows=[16, 50, 100])),
    ("sliding_window_default", lambda: bmk.sliding_window(1, 5, 2048, 128, 128)),
    ("document", lambda: bmk.document(3, 2, 256, 64, 32, seed=5, mean_len=40)),
    ("bigbird", lambda: bmk.bigbird(2, 3, 512, 32, 32, seed=2)),
]


def _dense_blocks(spec):
    m = bmk.element_mask(spec).expand(spec.batch, spec.heads, spec.seq_len, spec.seq_len)
    b = m.reshape(spec.batch, spec.heads, spec.n_m, spec.block_m, spec.n_n, spec.block_n).transpose(3, 4)
    b = b.reshape(*b.shape[:4], -1)
    return b.all(-1).numpy(), b.any(-1).numpy()


@pytest.mark.parametrize("make", [m for _, m in SPECS], ids=[n for n, _ in SPECS])
def test_blocks_match_the_dense_mask(make):
    spec = make()
    full, partial = bmk.classify(spec)
    all_visible, any_visible = _dense_blocks(spec)
    assert (full == all_visible).all()
    assert not (full & partial).any()
    assert ((full | partial) >= any_visible).all(), "a visible element would be skipped"
    # one test per block: exact for these families (no block is 'partial' yet fully hidden)
    assert (partial == (any_visible & ~all_visible)).all()


@pytest.mark.parametrize("make", [m for _, m in SPECS], ids=[n for n, _ in SPECS])
def test_lists_are_ascending_and_counted(make):
    spec = make()
    lists = bmk.block_lists(spec)
    full, partial = bmk.classify(spec)
    for num, idx, sel in ((lists.full_num, lists.full_idx, full), (lists.part_num, lists.part_idx, partial)):
        assert (num == sel.sum(-1)).all()
        n = idx.shape[-1]
        listed = np.arange(n) < num[..., None]
        assert (np.take_along_axis(sel, idx, -1) == listed).all()  # the first num entries, and only those
        inc = np.diff(idx, axis=-1) > 0
        assert (inc | ~listed[..., 1:]).all()  # ascending key blocks
    assert lists.work.shape == (lists.n_tiles,)
    assert bmk.flops(lists, 128) == 4 * spec.block_m * spec.block_n * 128 * lists.work.sum()


def test_families_differ_per_head_and_batch():
    w = bmk.block_lists(bmk.sliding_window(1, 5, 4096))
    per_head = w.work.reshape(5, -1).sum(-1)
    assert len(set(per_head.tolist())) == 5  # windows 256 .. 4096: five different amounts of work
    bb = bmk.bigbird(1, 4, 2048, seed=0)
    assert len({bb.blocks[0, h].tobytes() for h in range(4)}) == 4  # random blocks drawn per head
    d = bmk.document(3, 1, 2048, seed=0)
    assert len({d.doc[b].tobytes() for b in range(3)}) == 3  # documents drawn per batch element
    assert bmk.block_lists(bmk.causal(1, 1, 1024)).work.tolist() == list(range(1, 9))


def test_lpt_order_is_descending_and_stable():
    lists = bmk.block_lists(bmk.bigbird(1, 4, 4096, seed=1))
    order = lists.lpt_order()
    assert sorted(order.tolist()) == list(range(lists.n_tiles))
    w = lists.work[order]
    assert (np.diff(w) <= 0).all()
    ties = np.diff(w) == 0
    assert (np.diff(order)[ties] > 0).all()  # equal work keeps tile (head-major) order
    assert lists.work[order[0]] == lists.spec.n_n  # the global query blocks visit every key block


def test_grouped_order_keeps_heads_together():
    """Descending by powers of two of work, tile order inside one: for a causal mask the tiles that run
    together (the first 132) come from 5 heads instead of all 16; the last tiles are the lightest."""
    lists = bmk.block_lists(bmk.causal(1, 16, 8192))  # 64 query blocks a head, work 1 .. 64
    grouped, strict = bmk.schedule_order(lists, "persistent_grouped"), lists.lpt_order()
    assert sorted(grouped.tolist()) == list(range(lists.n_tiles))
    assert (np.diff(np.ceil(np.log2(lists.work[grouped]))) <= 0).all()
    heads = lambda order: len(np.unique(order[:132] // lists.spec.n_m))  # noqa: E731  (first wave)
    assert heads(strict) == 16 and heads(grouped) == 5
    assert lists.work[grouped[-16:]].max() == 1
    assert (bmk.schedule_order(lists, "grid") == np.arange(lists.n_tiles)).all()


def test_bad_masks_are_refused():
    with pytest.raises(ValueError, match="multiple of the block"):
        bmk.causal(1, 1, 1000)
    with pytest.raises(ValueError, match="non-decreasing"):
        bmk._spec("x", 1, 1, 64, 16, 16, doc=np.r_[np.ones(32), np.zeros(32)][None])
    with pytest.raises(ValueError, match="unknown mask family"):
        bmk.make_mask("strided", 1, 1, 256)


def test_flex_block_mask_holds_our_lists_and_mask_mod():
    spec = bmk.document(2, 3, 256, 32, 32, seed=1, mean_len=50)
    lists = bmk.block_lists(spec)
    bm = bmk.flex_block_mask(lists, "cpu")
    assert torch.equal(bm.kv_num_blocks, torch.as_tensor(lists.part_num))
    assert torch.equal(bm.full_kv_num_blocks, torch.as_tensor(lists.full_num))
    assert tuple(bm.BLOCK_SIZE) == (32, 32)
    others = (bmk.bigbird(2, 3, 256, 32, 32, seed=3),
              bmk.sliding_window(2, 3, 256, 32, 32, windows=[8, 40, 99]))
    for s in (spec, *others):
        b, h, q, k = (torch.arange(n).view(*[-1 if i == j else 1 for i in range(4)])
                      for j, n in enumerate((s.batch, s.heads, s.seq_len, s.seq_len)))
        got = bmk.flex_mask_mod(s, "cpu")(b, h, q, k)
        assert torch.equal(got, bmk.element_mask(s).expand_as(got))


# --- the work-time join ------------------------------------------------------------------------------------

class _FakeLaunch:
    """What tile_table reads of a DecodedLaunch: intervals() and scopes."""

    def __init__(self, rows):
        dt = np.dtype([("cta", "<u4"), ("sm", "<u4"), ("warp", "<u2"), ("scope", "<u4"), ("start_ns", "<f8"),
                       ("end_ns", "<f8")])
        self.iv = np.array(rows, dt)
        self.scopes = {0: "tile", 1: "full_blocks"}

    def intervals(self):
        return self.iv, None


def test_persistent_tiles_join_in_ticket_order():
    lists = bmk.block_lists(bmk.causal(1, 1, 1024))  # 8 tiles of work 1 .. 8
    order = lists.lpt_order()  # tiles 7, 6, ..., 0
    tile_cta = np.array([0, 1, 1, 0, 1, 0, 0, 1], np.int32)  # which CTA drew tickets 0 .. 7
    rows, t = [], {0: 0.0, 1: 0.0}
    for ticket, cta in enumerate(tile_cta):  # each tile takes 10 ns per block; warp 1 and scope 1: ignored
        dur = 10.0 * lists.work[order[ticket]]
        rows += [(cta, 5 + cta, 0, 0, t[cta], t[cta] + dur), (cta, 5 + cta, 1, 0, t[cta], t[cta] + 1),
                 (cta, 5 + cta, 0, 1, t[cta], t[cta] + 1)]
        t[cta] += dur
    rows = rows[::-1]  # the join must not rely on the intervals' order
    tab = mi.tile_table(_FakeLaunch(rows), lists, "persistent", tile_cta)
    assert tab["missing"] == 0 and len(tab["work"]) == 8
    assert np.allclose(tab["end_ns"] - tab["start_ns"], 10.0 * tab["work"])
    assert sorted(tab["tile"].tolist()) == list(range(8))
    assert mi.pearson(tab["work"], tab["end_ns"] - tab["start_ns"]) == pytest.approx(1.0)
    assert mi._fit(tab["work"], tab["end_ns"] - tab["start_ns"]) == pytest.approx((10.0, 0.0), abs=1e-6)


def test_grid_schedules_map_ctas_to_tiles():
    lists = bmk.block_lists(bmk.causal(1, 2, 512))
    ctas = np.arange(lists.n_tiles)
    assert mi.tiles_of_ctas(lists, "grid", ctas)[1].tolist() == ctas.tolist()
    assert mi.tiles_of_ctas(lists, "lpt_grid", ctas)[1].tolist() == lists.lpt_order().tolist()
    log = np.zeros(lists.n_tiles, np.int32)  # one CTA drew every ticket
    tiles = mi.tiles_of_ctas(lists, "persistent_grouped", ctas, log)[1]
    assert tiles.tolist() == bmk.schedule_order(lists, "persistent_grouped").tolist()
    with pytest.raises(ValueError, match="log_tiles"):
        mi.tiles_of_ctas(lists, "persistent", ctas)


def test_summary_runs_on_a_real_h100_profile():
    """The join and kperf's tables together on a real launch (examples/profiles: the 1024^3 GEMM, 64 CTAs,
    its ``epilogue`` scope standing in for ``tile``): every CTA joined, the figures in range."""
    import kperf
    prof = kperf.Profile.load(pathlib.Path(__file__).parents[2] / "examples/profiles/gemm1024.kperf")
    dec = prof.decoded()[0]
    dec.scopes = {i: ("tile" if n == "epilogue" else n) for i, n in dec.scopes.items()}
    lists = bmk.block_lists(bmk.causal(1, 1, 64 * 128))  # 64 tiles of 1 .. 64 blocks, one per CTA
    s, tiles = mi.summarize(prof, lists, "grid")
    assert s["ctas"] == s["tiles"] == 64 and s["tiles_missing"] == 0
    assert 0 < s["end_idle_frac"] <= s["sm_idle_frac"] < 1 and 0 < s["tail_frac"] < 1
    assert s["sm_tile_max_over_mean"] >= 1 and 0 <= s["imbalance_loss_frac"] < 1
    assert "SM idle at the end" in mi.format_summary(s)
