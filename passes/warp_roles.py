"""The role of each warp of a warp-specialized kernel, read from its final TTGIR text.

Warps ``0 .. num-warps-1`` run the ``default`` region of ``ttg.warp_specialize``; partitions get
consecutive warps after them, larger partitions first (Triton's AllocateWarpGroups order, stable for
equal sizes; checked against the partition table in the PTX by tests/unit/test_auto_insert.py).
A role says what a region does: ``producer, TMA`` (issues TMA loads, no MMA), ``consumer wgN, MMA``
(runs wgmma or dot) or ``other``, plus the partition's ``requestedRegisters`` when set.  An analysis,
not a pass: the stage hook stores the roles with the kernel for the trace viewers.
"""

from __future__ import annotations

import dataclasses
import re

from kperf.dialect.ttgir_text import Token, tokenize_line

_ROLE_OPS = {"ttng.async_tma_copy_global_to_local", "ttng.warp_group_dot", "tt.dot",
             "ttg.async_copy_global_to_local", "tt.load"}


@dataclasses.dataclass
class _Region:
    name: str  # "default" or "partitionN"
    warps: int
    ops: set[str] = dataclasses.field(default_factory=set)  # the _ROLE_OPS it holds
    regs: int | None = None  # requestedRegisters
    start: int = 0  # its first warp


def warp_roles(text: str) -> list[str]:
    """One role string per warp of a warp-specialized kernel, from its final TTGIR text; [] otherwise."""
    regions = _ws_regions(text)
    if not regions:
        return []
    start = regions[0].warps
    parts = regions[1:]
    for k in sorted(range(len(parts)), key=lambda k: -parts[k].warps):  # stable for equal sizes
        parts[k].start = start
        start += parts[k].warps
    roles = ["unused"] * start
    consumer = 0
    for r in sorted(regions, key=lambda r: r.start):
        kind = _role(r, consumer)
        consumer += kind.startswith("consumer")
        roles[r.start:r.start + r.warps] = [f"{r.name} ({kind})"] * r.warps
    return roles


def role_starts(roles: list[str]) -> tuple[int, ...]:
    """The first warp of each role from ``warp_roles``' list: producer, consumer (its first warpgroup:
    the others run the same code on other rows), other partitions; () if not warp-specialized."""
    seen: dict[str, int] = {}
    for w, r in enumerate(roles):
        if r != "unused":
            seen.setdefault(_kind(r), w)
    return tuple(sorted(seen.values()))


def repeated_role_regions(roles: list[str]) -> tuple[str, ...]:
    """The regions (``partitionN``) whose role an earlier region already has: under
    ``granularity="role"`` none of their warps records."""
    seen: set[str] = set()
    repeated: list[str] = []
    for w, r in enumerate(roles):
        if r == "unused" or (w and roles[w - 1] == r):
            continue
        kind = _kind(r)
        if kind in seen:
            repeated.append(r.split()[0])
        seen.add(kind)
    return tuple(repeated)


def _kind(role: str) -> str:
    """``partition1 (consumer wg1, MMA, 232 regs)`` -> ``consumer, MMA``."""
    inner = role[role.find("(") + 1:role.rfind(")")] if "(" in role else role
    return ", ".join(p for p in (re.sub(r" wg\d+$", "", q.strip()) for q in inner.split(","))
                     if not p.endswith(" regs"))


def _role(r: _Region, consumer: int) -> str:
    if r.ops & {"ttng.warp_group_dot", "tt.dot"}:
        kind = f"consumer wg{consumer}, MMA"
    elif "ttng.async_tma_copy_global_to_local" in r.ops:
        kind = "producer, TMA"
    elif r.ops & {"ttg.async_copy_global_to_local", "tt.load"}:
        kind = "producer"
    else:
        kind = "other"
    return kind + (f", {r.regs} regs" if r.regs else "")


def _ws_regions(text: str) -> list[_Region]:
    """The regions of the module's first ``ttg.warp_specialize``, in order, with the ops they hold."""
    base, regs, ws_depth, depth = 4, [], None, 0
    regions: list[_Region] = []
    for lineno, line in enumerate(text.splitlines(), 1):
        s = line.strip()
        if not s or s.startswith("#"):
            continue
        toks = tokenize_line(line, lineno)
        words = [t.text for t in toks]
        if s.startswith("module") and "ttg.num-warps" in words:
            base = _attr_int(toks, "ttg.num-warps") or base
        if ws_depth is None and "ttg.warp_specialize" in words and not regions:
            ws_depth, regs = depth, _attr_array(toks, "requestedRegisters")
        elif ws_depth is not None and depth == ws_depth and words:
            region = _region_head(words, base)
            if region is not None:
                regions.append(region)
            elif words[0] == "}":
                ws_depth = -1  # the op is closed; later ops are outside it
        elif ws_depth is not None and depth > ws_depth >= 0 and regions:
            regions[-1].ops.update(w for w in words if w in _ROLE_OPS)
        depth += sum((t.text == "{") - (t.text == "}") for t in toks if t.kind == "punct")
    for k, p in enumerate(regions[1:]):
        p.regs = regs[k] if k < len(regs) else None
    return regions


def _region_head(words: list[str], base: int) -> _Region | None:
    """The region a line at the op's own depth opens (``default {``, ``} partition0(...) num_warps(4) {``)."""
    head = words[1] if words[0] == "}" and len(words) > 1 else words[0]
    if head == "default":
        return _Region("default", base)
    if head.startswith("partition"):
        nw = next((int(words[k + 2]) for k in range(len(words) - 2)
                   if words[k] == "num_warps" and words[k + 1] == "("), 4)
        return _Region(head, nw)
    return None


def _attr_int(toks: list[Token], name: str) -> int | None:
    for k, t in enumerate(toks[:-2]):
        if t.text == name and toks[k + 1].text == "=":
            return int(toks[k + 2].text)
    return None


def _attr_array(toks: list[Token], name: str) -> list[int]:
    for k, t in enumerate(toks):
        if t.text == name and k + 3 < len(toks) and toks[k + 1].text == "=" and toks[k + 2].text == "array":
            vals = []
            for u in toks[k + 3:]:
                if u.text == ">":
                    break
                if u.kind == "word" and u.text.lstrip("-").isdigit():
                    vals.append(int(u.text))
            return vals
    return []
