"""The mapping search behind the data-movement bounds: every tiling and loop order of an einsum with one
on-chip buffer, vectorized with numpy, reduced to the least backing-store traffic per buffer size.

The machine is Orojenesis' "Snowcat": one buffer of some capacity between the compute and a backing
store (DRAM behind L2, or L2 behind shared memory).  A mapping is a tile size per dimension and an
order of the loops over tiles (outermost first).  The buffer holds one tile of every tensor; a
tensor's tile is fetched again whenever a loop that indexes it advances, so the tile stays resident
across every loop inside the innermost loop that indexes it and is refetched for every loop outside
it that does not ("irrelevant" loops outside).  A tensor is therefore moved

    elements(tensor) * R,  R = product of the trip counts of the irrelevant loops outside the
                               innermost relevant loop that has more than one trip,

and the output, whose partial sums go out and come back when a reduction loop sits outside it,
``elements * (2R - 1)`` (written R times, read back R - 1).  The buffer's occupancy is the sum of the
tiles.  Over all mappings, the least traffic among those that fit a capacity is the bound at that
capacity; as capacity grows it falls to the compulsory traffic (each tensor moved once).

Tile sizes are powers of two and the divisors of each extent (and the extent).  A dimension that
indexes every tensor carries no reuse between its slices: it is taken as outermost with tile 1 and
multiplies the rest (exact, and it keeps the search to the dimensions that matter).  The search is a
few hundred thousand mappings for a GEMM, a few milliseconds.
"""

from __future__ import annotations

import dataclasses
import itertools
import math

import numpy as np

from kperf.dialect.errors import KperfError

from .einsum import Einsum

MAX_CANDIDATES = 40  # tile sizes tried per dimension
MAX_MAPPINGS = 3_000_000  # tilings x loop orders; past this the tile candidates are thinned


def tile_candidates(extent: int) -> np.ndarray:
    """Tile sizes for a dimension of ``extent``: powers of two below it, its divisors, itself."""
    pows = [1 << i for i in range(max(extent.bit_length(), 1)) if 1 << i <= extent]
    divs = [d for i in range(1, math.isqrt(extent) + 1) if extent % i == 0 for d in (i, extent // i)]
    c = np.unique(np.array(pows + divs + [extent], dtype=np.int64))
    return _thin(c, MAX_CANDIDATES)


def _thin(c: np.ndarray, n: int) -> np.ndarray:
    """At most ``n`` of the sorted candidates ``c``, spread evenly, keeping the first and last."""
    if len(c) <= n:
        return c
    return c[np.unique(np.round(np.linspace(0, len(c) - 1, n)).astype(np.int64))]


@dataclasses.dataclass
class Frontier:
    """The Pareto-optimal mappings of one einsum: occupancy rising, traffic falling (both bytes).

    ``tiles[i]`` and ``orders[i]`` describe the mapping of point ``i`` over ``dims`` (the searched
    dimensions; the others have tile 1 and sit outermost).
    """

    occupancy: np.ndarray
    traffic: np.ndarray
    dims: tuple[str, ...]
    tiles: np.ndarray
    orders: list[str]
    searched: int
    fixed: dict[str, int] = dataclasses.field(default_factory=dict)  # tiles of unsearched dimensions

    def mapping(self, i: int, sizes: dict[str, int]) -> dict:
        """Point ``i``'s mapping as JSON: tile per dimension (all of them) and loop order, outermost first."""
        tiles = {d: self.fixed.get(d, 1) for d in sizes}
        tiles.update({d: int(t) for d, t in zip(self.dims, self.tiles[i], strict=True)})
        outer = "".join(d for d in sizes if d not in self.dims and d not in self.fixed and sizes[d] > 1)
        return {"tiles": tiles, "loop_order": outer + self.orders[i]}


def _factored(e: Einsum) -> tuple[list[str], int]:
    """The dimensions to search, and the product of the extents of those that index every tensor."""
    every = [d for d in e.dims if all(d in t for t in e.tensors)]
    search = [d for d in e.dims if d not in every and e.sizes[d] > 1]
    return search, math.prod(e.sizes[d] for d in every)


def _tilings(extents: list[int], n_orders: int) -> np.ndarray:
    """Every combination of tile candidates, shape (N, D); thinned to keep N * n_orders bounded."""
    cands = [tile_candidates(s) for s in extents]
    while math.prod(len(c) for c in cands) * n_orders > MAX_MAPPINGS:
        widest = max(range(len(cands)), key=lambda i: len(cands[i]))
        cands[widest] = _thin(cands[widest], max(2, len(cands[widest]) * 2 // 3))
    if not cands:
        return np.ones((1, 0), dtype=np.int64)
    grids = np.meshgrid(*cands, indexing="ij")
    return np.stack([g.ravel() for g in grids], axis=1)


def _reloads(trips: np.ndarray, relevant: np.ndarray, perm: tuple[int, ...]) -> np.ndarray:
    """R per tiling for one tensor and loop order: the trips of irrelevant loops outside its innermost
    relevant loop with more than one trip."""
    t = trips[:, perm]
    rel = relevant[list(perm)]
    moving = (t > 1) & rel
    inner = np.zeros_like(moving)
    if t.shape[1] > 1:
        inner[:, :-1] = np.logical_or.accumulate(moving[:, ::-1], axis=1)[:, ::-1][:, 1:]
    return np.where(inner & ~rel, t, 1).prod(axis=1, dtype=np.float64)


def search(e: Einsum) -> Frontier:
    """Every mapping of ``e`` with one buffer level; the Pareto frontier of (occupancy, traffic)."""
    dims, scale = _factored(e)
    extents = [e.sizes[d] for d in dims]
    perms = list(itertools.permutations(range(len(dims))))
    tiles = _tilings(extents, len(perms))
    trips = -(-np.array(extents, dtype=np.int64) // tiles) if dims else tiles
    occupancy = np.zeros(len(tiles), dtype=np.float64)
    rel = []
    for t, b in zip(e.tensors, e.bytes, strict=True):
        mask = np.array([d in t for d in dims], dtype=bool)
        rel.append(mask)
        occupancy += b * tiles[:, mask].prod(axis=1, dtype=np.float64)
    traffic = np.empty((len(perms), len(tiles)), dtype=np.float64)
    last = len(e.tensors) - 1
    for k, perm in enumerate(perms):
        total = np.zeros(len(tiles), dtype=np.float64)
        for i, (t, b) in enumerate(zip(e.tensors, e.bytes, strict=True)):
            r = _reloads(trips, rel[i], perm)
            moved = e.elements(t) / scale * b
            total += moved * (2 * r - 1 if i == last else r)
        traffic[k] = total
    occ = np.broadcast_to(occupancy, traffic.shape).ravel()
    return frontier(occ * 1.0, traffic.ravel() * scale, dims, tiles, perms, len(occ))


def frontier(occ, traffic, dims, tiles, perms, searched, fixed=None) -> Frontier:
    """The points where the least traffic among mappings of at most that occupancy drops."""
    order = np.lexsort((traffic, occ))
    t = traffic[order]
    best = np.minimum.accumulate(t)
    drop = np.r_[True, best[1:] < best[:-1]]
    keep = order[drop]
    n = len(tiles)
    names = ["".join(dims[j] for j in p) for p in perms]
    return Frontier(occ[keep], traffic[keep], tuple(dims), tiles[keep % n],
                    [names[k] for k in (keep // n).tolist()], searched, dict(fixed or {}))


def at_capacity(occupancy: np.ndarray, traffic: np.ndarray, capacity: float) -> int:
    """Index of the frontier point that bounds ``capacity`` (the last that fits); -1 when none fits."""
    if not np.isfinite(capacity) or capacity < 0:
        raise KperfError(f"capacity {capacity!r} is not a size in bytes", fix="give a positive byte count")
    return int(np.searchsorted(occupancy, capacity, side="right")) - 1
