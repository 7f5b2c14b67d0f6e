"""Where the bytes go beside where they must go: each measured launch's traffic next to its data-movement
bound at the GPU's capacities (:mod:`.bounds`, :mod:`.traffic`).

A kernel's problem (a GEMM, an attention forward, any einsum) is described once, as a small dict
(``{"kernel": "matmul", "kind": "gemm", "m": 8192, ...}``: :func:`problem_from`), stored with the measured
traffic by ``kperf ncu`` or given to ``kperf traffic``.  Two levels are compared:

- DRAM bytes (read + write) against the bound at the L2's capacity: L2 is the buffer in front of DRAM;
- the bytes between L2 and the SMs (read in, TMA copies too, and written back) against the bound at
  one SM's shared memory: with every SM's work run
  one after another in one such buffer, the sum of their traffic is at least the one-buffer bound, so
  the bound at the per-SM capacity bounds the whole kernel's L2-to-SM traffic (docs/bounds.md).
"""

from __future__ import annotations

import re

import numpy as np

from kperf.dialect.errors import KperfError

from . import bounds
from .tables import Table
from .traffic import DRAM_READ, DRAM_WRITE, find, l2_sm_bytes, traffic_table

KINDS = ("gemm", "einsum", "attention")


def problem_from(kind: str, kernel: str = ".", **fields) -> dict:
    """A problem description, checked by computing its bound once (a bad one is a KperfError now)."""
    if kind not in KINDS:
        raise KperfError(f"unknown problem kind {kind!r}", fix=f"use one of {', '.join(KINDS)}")
    try:
        re.compile(kernel)
    except re.error as e:
        raise KperfError(f"kernel pattern {kernel!r} is not a regular expression ({e})",
                         fix="e.g. matmul_kernel") from None
    p = {"kernel": kernel, "kind": kind, **{k: v for k, v in fields.items() if v is not None}}
    problem_bound(p, [1.0])
    return p


def problem_bound(p: dict, capacities: list[float]) -> bounds.Bound:
    """The :class:`~.bounds.Bound` of a problem description at ``capacities``."""
    kind = p.get("kind")
    args = {k: v for k, v in p.items() if k not in ("kernel", "kind")}
    try:
        if kind == "gemm":
            return bounds.gemm(args.pop("m"), args.pop("n"), args.pop("k"), capacities=capacities, **args)
        if kind == "einsum":
            return bounds.einsum(args.pop("einsum"), args.pop("shape"), capacities=capacities, **args)
        if kind == "attention":
            return bounds.attention(args.pop("batch"), args.pop("heads"), args.pop("seq"), args.pop("d_head"),
                                    capacities=capacities, **args)
    except (KeyError, TypeError) as e:
        raise KperfError(f"the {kind} problem {p} lacks or has an unknown field ({e})",
                         fix="gemm: m, n, k, dtype; einsum: einsum, shape, dtype; "
                             "attention: batch, heads, seq, d_head, causal, dtype") from None
    raise KperfError(f"unknown problem kind {kind!r}", fix=f"use one of {', '.join(KINDS)}")


def capacities_of(data: dict, l2: float | None = None, smem: float | None = None) -> dict[str, float]:
    """The L2 and per-SM shared-memory bytes: given, else the measured device's, else its name's."""
    dev = data.get("device") or {}
    known = bounds.gpu_capacities(dev.get("name")) or {}
    caps = {"l2": l2 or dev.get("l2_bytes") or known.get("l2"),
            "smem": smem or dev.get("smem_per_sm_bytes") or known.get("smem")}
    if not caps["l2"] or not caps["smem"]:
        raise KperfError(f"the L2 and shared-memory sizes of device {dev.get('name')!r} are not known",
                         fix="give them: --l2 50MiB --smem 228KiB")
    return {k: float(v) for k, v in caps.items()}


def _rows(data: dict, problems: list[dict], caps: dict[str, float]) -> list[dict]:
    rows = []
    for p in problems:
        b = problem_bound(p, [caps["l2"], caps["smem"]])
        at_l2, at_smem = b.at(caps["l2"]), b.at(caps["smem"])
        for x in data["launches"]:
            if not re.search(p["kernel"], x["kernel"]):
                continue
            dram = sum(float(x["metrics"].get(n) or np.nan) for n in (DRAM_READ, DRAM_WRITE))
            records = float(x.get("kperf_record_bytes") or 0)
            for level, raw, at in (("DRAM (L2 capacity)", dram, at_l2),
                                   ("L2<->SM (SMEM capacity)", l2_sm_bytes(x), at_smem)):
                bound = float(at["min_bytes"]) if at["fits"] else np.nan
                measured = raw - records
                rows.append({"kernel": x["kernel"], "launch": x["launch"], "problem": b.problem["name"],
                             "level": level, "capacity_bytes": int(at["capacity_bytes"]),
                             "measured_bytes": measured, "kperf_record_bytes": records, "bound_bytes": bound,
                             "compulsory_bytes": float(b.compulsory_bytes),
                             "measured_over_bound": measured / bound if bound else np.nan,
                             "measured_flops_per_byte": b.flops / measured if measured else np.nan,
                             "bound_flops_per_byte": at["intensity"] or np.nan, "variant": at.get("variant")})
    return rows


def bounds_table(data: dict, problems: list[dict] | None = None, *, l2: float | None = None,
                 smem: float | None = None) -> Table:
    """Achieved bytes against the bound at the L2 and shared-memory capacities, per matched launch."""
    problems = problems if problems is not None else data.get("problems") or []
    caps = capacities_of(data, l2, smem)
    rows = _rows(data, problems, caps)
    names = ["kernel", "launch", "level", "capacity_bytes", "measured_bytes", "kperf_record_bytes",
             "bound_bytes", "compulsory_bytes", "measured_over_bound", "measured_flops_per_byte",
             "bound_flops_per_byte", "variant", "problem"]
    types = {"launch": np.int64, "capacity_bytes": np.int64, "kernel": object, "level": object,
             "variant": object, "problem": object}
    t = Table("bounds", "Measured traffic against the attainable bound (Orojenesis-style, docs/bounds.md)",
              {n: np.array([r[n] for r in rows], dtype=types.get(n, np.float64)) for n in names})
    if not problems:
        t.notes.append("no problem described: give --gemm M,N,K, --attention B,H,SEQ,D or --einsum/--shape")
    elif not rows:
        t.notes.append("no measured launch's kernel matches a described problem's kernel pattern")
    t.notes.append(f"capacities: L2 {caps['l2']:,.0f} bytes, shared memory {caps['smem']:,.0f} bytes per SM")
    t.notes.append("measured_bytes leaves out kperf_record_bytes, the stores of kperf's own records")
    return t


def report_tables(profile_path) -> list[Table]:
    """The tables ``kperf report`` adds for a profile with measured traffic (``kperf ncu``,
    :func:`.traffic.find`): the traffic and, when a problem was described, the bounds; none without."""
    data = find(profile_path)
    if data is None:
        return []
    return [traffic_table(data)] + ([bounds_table(data)] if data.get("problems") else [])
