"""Attainable data-movement bounds of tensor algorithms, in the spirit of Orojenesis (ISCA'24, "Mind the
Gap"): for each on-chip buffer capacity, the least traffic to the backing store that any mapping
(tiling and loop order) of the algorithm can reach, the compulsory traffic, and the attainable
operational intensity (FLOPs per byte moved).

Where the time goes (kperf's traces) says little about whether a kernel moves more bytes than it must;
these curves say how many it must move at least, so a measured byte count (``kperf ncu``) can be put
beside its floor: at the L2's capacity for DRAM traffic, at the shared memory's for L2-to-SM traffic.
The method, what the numbers mean and their limits: docs/bounds.md.

    >>> from kperf.tracing import bounds
    >>> b = bounds.gemm(8192, 8192, 8192, "bf16", capacities=[50 * 2**20])
    >>> b.to_json()["capacities"][0]["min_bytes"]

Problems: :func:`gemm` (batched with ``batch``), :func:`einsum` (any einsum, e.g. a grouped GEMM
``"gmk,gkn->gmn"``), :func:`attention` (the fused forward and the unfused QK^T, softmax, PV).
The search is :mod:`.bounds_search` (one einsum) and :mod:`.bounds_attention` (the fused forward).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

from kperf.dialect.errors import KperfError

from .bounds_attention import fused_search
from .bounds_search import at_capacity, search
from .einsum import Einsum, dtype_bytes, parse_einsum

# on-chip capacities (bytes) by device name: L2, and shared memory per SM (as the CUDA runtime reports
# them); a measured device's own numbers take precedence (kperf ncu records them)
GPU_CAPACITIES = {"H100": {"l2": 50 * 2**20, "smem": 228 * 2**10},
                  "H200": {"l2": 60 * 2**20, "smem": 228 * 2**10}}


def gpu_capacities(device: str | None) -> dict[str, int] | None:
    """The L2 and shared-memory capacities of a device named like ``"NVIDIA H100 80GB HBM3"``."""
    for key, caps in GPU_CAPACITIES.items():
        if device and key in device.upper():
            return dict(caps)
    return None


@dataclasses.dataclass
class Curve:
    """The least traffic per capacity of one problem (one variant): a falling step function.

    ``occupancy[i]`` is the buffer a Pareto-optimal mapping needs, ``min_bytes[i]`` its traffic,
    ``mappings[i]`` the mapping (tiles and loop order; for a sum of kernels, one per part).
    """

    name: str
    flops: float
    compulsory_bytes: float
    occupancy: np.ndarray
    min_bytes: np.ndarray
    mappings: list[dict]
    searched: int

    def at(self, capacity: float) -> dict:
        """The bound at ``capacity`` bytes: min_bytes and intensity (None where nothing fits)."""
        i = at_capacity(self.occupancy, self.min_bytes, capacity)
        if i < 0:
            return {"capacity_bytes": int(capacity), "min_bytes": None, "intensity": None, "fits": False,
                    "note": f"the smallest mapping needs {int(self.occupancy[0]):,} bytes"}
        b = float(self.min_bytes[i])
        return {"capacity_bytes": int(capacity), "min_bytes": int(round(b)), "intensity": self.flops / b,
                "fits": True, "occupancy_bytes": int(self.occupancy[i]), "mapping": self.mappings[i]}

    def compulsory_capacity(self) -> int:
        """The least capacity at which the bound is the compulsory traffic."""
        i = int(np.argmax(self.min_bytes <= self.compulsory_bytes * (1 + 1e-12)))
        return int(self.occupancy[i])

    def to_json(self) -> dict:
        return {"name": self.name, "compulsory_bytes": int(round(self.compulsory_bytes)),
                "flops": self.flops, "mappings_searched": self.searched,
                "compulsory_capacity_bytes": self.compulsory_capacity(),
                "curve": [{"occupancy_bytes": int(o), "min_bytes": int(round(t))}
                          for o, t in zip(self.occupancy.tolist(), self.min_bytes.tolist(), strict=True)]}


def einsum_curve(e: Einsum, name: str | None = None) -> Curve:
    """The :class:`Curve` of one einsum with one buffer level (:func:`.bounds_search.search`)."""
    f = search(e)
    spec = f"{','.join(e.inputs)}->{e.output}"
    return Curve(name or spec, float(e.flops), float(e.compulsory_bytes), f.occupancy, f.traffic,
                 [f.mapping(i, e.sizes) for i in range(len(f.occupancy))], f.searched)


def sum_curves(name: str, parts: Sequence[Curve], extra_bytes: float = 0.0) -> Curve:
    """Kernels run one after another, each with the whole buffer: traffic adds at every capacity.

    ``extra_bytes``: traffic no buffer saves (e.g. an unfused softmax reading S and writing P)."""
    points = np.unique(np.concatenate([p.occupancy for p in parts]))
    idx = np.stack([np.searchsorted(p.occupancy, points, side="right") - 1 for p in parts])
    ok = (idx >= 0).all(axis=0)
    points, idx = points[ok], idx[:, ok]
    total = sum(p.min_bytes[i] for p, i in zip(parts, idx, strict=True)) + extra_bytes
    drop = np.r_[True, total[1:] < total[:-1]]
    mappings = [{p.name: p.mappings[int(j)] for p, j in zip(parts, col, strict=True)} for col in idx.T[drop]]
    return Curve(name, sum(p.flops for p in parts), sum(p.compulsory_bytes for p in parts) + extra_bytes,
                 points[drop], total[drop], mappings, sum(p.searched for p in parts))


@dataclasses.dataclass
class Bound:
    """The bounds of one problem: one curve per variant (e.g. fused and unfused attention)."""

    problem: dict
    variants: dict[str, Curve]
    capacities: list[float]

    @property
    def flops(self) -> float:
        return min(c.flops for c in self.variants.values())

    @property
    def compulsory_bytes(self) -> float:
        """The least compulsory traffic among the variants (the algorithm's: each input and output once)."""
        return min(c.compulsory_bytes for c in self.variants.values())

    def at(self, capacity: float) -> dict:
        """The best variant's bound at ``capacity`` (min_bytes, intensity, variant, mapping)."""
        best = None
        for name, c in self.variants.items():
            p = c.at(capacity)
            if p["fits"] and (best is None or p["min_bytes"] < best["min_bytes"]):
                best = dict(p, variant=name, intensity=self.flops / p["min_bytes"])
        return best or dict(next(iter(self.variants.values())).at(capacity), variant=None)

    def to_json(self) -> dict:
        return {"format": "kperf-bounds", "version": 1, "problem": self.problem, "flops": self.flops,
                "compulsory_bytes": int(round(self.compulsory_bytes)),
                "capacities": [self.at(c) for c in self.capacities],
                "variants": {n: c.to_json() for n, c in self.variants.items()}}

    def to_text(self) -> str:
        """A table: capacity, least bytes, times compulsory, attainable intensity, the variant."""
        from .tables import align_columns
        rows = [self.at(c) for c in self.capacities]
        cells = [[_size(r["capacity_bytes"]) for r in rows],
                 [f"{r['min_bytes']:,}" if r["fits"] else "-" for r in rows],
                 [f"{r['min_bytes'] / self.compulsory_bytes:.2f}" if r["fits"] else "-" for r in rows],
                 [f"{r['intensity']:,.1f}" if r["fits"] else "-" for r in rows],
                 [r.get("variant") or "-" for r in rows]]
        head = (f"{self.problem['name']}: {self.flops:,.0f} FLOPs, compulsory traffic "
                f"{self.compulsory_bytes:,.0f} bytes")
        lines = align_columns(["capacity", "min_bytes", "x_compulsory", "flops_per_byte", "variant"], cells,
                              [True, True, True, True, False])
        return "\n".join([head, *lines])


def _size(b: float) -> str:
    for unit, n in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if b >= n:
            return f"{b / n:g} {unit}"
    return f"{b:g} B"


def default_capacities(curves: Sequence[Curve]) -> list[float]:
    """Powers of two from 1 KiB to the first at which every curve reaches its compulsory traffic."""
    top = max(c.compulsory_capacity() for c in curves)
    return [float(2**i) for i in range(10, max(11, int(np.ceil(np.log2(max(top, 1)))) + 2))]


def _bound(problem: dict, variants: dict[str, Curve], capacities) -> Bound:
    if capacities is None:
        capacities = default_capacities(list(variants.values()))
    caps = [float(c) for c in capacities]
    for c in caps:
        if not np.isfinite(c) or c <= 0:
            raise KperfError(f"capacity {c!r} is not a positive number of bytes", fix="e.g. 50MiB or 233472")
    return Bound(problem, variants, caps)


def einsum(spec: str, shape: str | dict, dtype: str | int = "fp16", *, out_dtype: str | int | None = None,
           capacities: Sequence[float] | None = None) -> Bound:
    """The bounds of any einsum, e.g. ``einsum("mk,kn->mn", "m=8192,n=8192,k=8192", "bf16")``."""
    e = parse_einsum(spec, shape, dtype, out_dtype)
    problem = dict(e.to_json(), name=f"einsum {e.to_json()['einsum']} "
                   + ",".join(f"{k}={v}" for k, v in e.sizes.items()))
    return _bound(problem, {"einsum": einsum_curve(e)}, capacities)


def gemm(m: int, n: int, k: int, dtype: str | int = "fp16", *, batch: int = 1,
         out_dtype: str | int | None = None, capacities: Sequence[float] | None = None) -> Bound:
    """C[m, n] = A[m, k] @ B[k, n] (``batch`` independent ones): the bound per capacity."""
    _positive(m=m, n=n, k=k, batch=batch)
    spec, shape = ("bmk,bkn->bmn", dict(b=batch, m=m, n=n, k=k)) if batch > 1 else \
        ("mk,kn->mn", dict(m=m, n=n, k=k))
    e = parse_einsum(spec, shape, dtype, out_dtype)
    name = f"gemm {f'{batch}x' if batch > 1 else ''}{m}x{n}x{k} {dtype}"
    return _bound(dict(e.to_json(), name=name), {"gemm": einsum_curve(e, "gemm")}, capacities)


def attention(batch: int, heads: int, seq: int, d_head: int, *, causal: bool = False,
              dtype: str | int = "fp16", capacities: Sequence[float] | None = None) -> Bound:
    """softmax(Q K^T) V per (batch, head), Q, K, V, O ``[seq, d_head]``: fused and unfused variants.

    Unfused is three kernels, each with the whole buffer: ``S = Q K^T`` (S written), the softmax (S read,
    P written), ``O = P V`` (P read); it computes all of S, so ``causal`` changes only the fused curve.
    FLOPs are those of the two products (halved when causal)."""
    _positive(batch=batch, heads=heads, seq=seq, d_head=d_head)
    b = dtype_bytes(dtype)
    slices = batch * heads
    io = float(4 * slices * seq * d_head * b)
    flops = 4.0 * slices * seq * seq * d_head / (2 if causal else 1)
    f = fused_search(slices, seq, d_head, b, causal)
    sizes = {"b": batch, "h": heads, "m": seq, "n": seq, "d": d_head}
    fused = Curve("fused", flops, io, f.occupancy, f.traffic,
                  [f.mapping(i, sizes) for i in range(len(f.occupancy))], f.searched)
    shape = dict(b=batch, h=heads, m=seq, n=seq, d=d_head)
    qk = einsum_curve(parse_einsum("bhmd,bhnd->bhmn", shape, b), "qk")
    pv = einsum_curve(parse_einsum("bhmn,bhnd->bhmd", shape, b), "pv")
    unfused = sum_curves("unfused", [qk, pv], extra_bytes=2.0 * slices * seq * seq * b)
    unfused.flops = flops
    problem = {"name": f"attention b={batch} h={heads} seq={seq} d={d_head}{' causal' if causal else ''} "
                       f"{dtype}", "batch": batch, "heads": heads, "seq": seq, "d_head": d_head,
               "causal": causal, "bytes": b, "flops": flops, "compulsory_bytes": int(io)}
    return _bound(problem, {"fused": fused, "unfused": unfused}, capacities)


def _positive(**values) -> None:
    for k, v in values.items():
        if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or v < 1:
            raise KperfError(f"{k} must be a positive integer, got {v!r}",
                             fix=f"e.g. --{k.replace('_', '-')} 128")
