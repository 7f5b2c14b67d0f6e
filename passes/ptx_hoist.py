"""Arithmetic a record would pin after a barrier wait, moved back in front of it (``hoist_arith``).

ptxas moves no instruction across a clock read (``%clock``, ``%clock64``, ``%globaltimer``: checked on
the held-out WS attention's PTX, where the same records reading ``%nsmid`` instead left ptxas free).
In a plain warp-specialized consumer loop ptxas computes the next ``wgmma``'s shared memory descriptors
before the barrier wait on its tile; with records around the wait and the ``wgmma``, that arithmetic
sits between clock reads after the wait and runs on the critical path once the tile has landed
(bench/results/cpu-2026-12-06-s14-arith/).

``hoist`` gives ptxas that freedom back for the scopes in ``movable``: a pure integer instruction
(register arithmetic, no memory, no special register, no floating-point type: that is the kernel's math,
not an op's operands) that follows a record of such a scope is moved up in front of it, across other
records of such scopes, barrier waits (``bar.sync``, inline ``mbarrier.try_wait`` spin loops, fences)
and independent instructions, when

- what it reads is defined above its new place and nothing it crosses reads or writes what it defines;
- it leaves scopes only: every scope whose end record it crosses it also crosses the start of, so it
  ends up inside no scope it was not in (a start crossed alone takes it out of that op's scope);
- it feeds, through pure instructions, a non-pure instruction before the next end record (the timed
  op's operands, a descriptor, an address): arithmetic whose value is needed only later stays where
  ptxas may sink it into the op's asynchronous window.

It goes to the highest such place, in front of a record.  ``movable`` says whose records may be crossed:
those of automatic insertion around one op each (``hoist_arith="auto"``, the default; not loop or kernel
bodies, whose content is all of it), or every scope's (``"all"``: the address arithmetic of the op a
``kperf.scope`` wraps then leaves the scope; the op's own instructions and the math stay).
"""

from __future__ import annotations

import dataclasses
import re

from kperf.dialect.record import parse_carrier

from .ptx import Entry, Kind, PtxLine
from .ptx_blocks import label_references

#: Opcodes (without modifiers) that only compute registers from registers and immediates; with a
#: floating-point type (``_FLOAT``) they are the kernel's math, not an op's operands, and stay.
PURE_OPS = frozenset((
    "add", "sub", "mul", "mad", "mul24", "mad24", "sad", "div", "rem", "abs", "neg", "min", "max", "popc",
    "clz", "bfind", "brev", "bfe", "bfi", "prmt", "and", "or", "xor", "not", "cnot", "lop3", "shf", "shl",
    "shr", "cvt", "cvta", "mov", "selp", "set", "setp", "slct"))
_FLOAT = re.compile(r"\.(?:f|bf|tf|e4m|e5m|e2m|e3m)\d")
#: LLVM's virtual registers (``%r12``, ``%rd3``, ``%p1``, ``%f7``...); any other ``%`` name is special.
_VREG = re.compile(r"%(?:p|rs|r|rd|rq|f|fd|h|hh)\d+$")
_TOKEN = re.compile(r"%[A-Za-z_$][\w$]*")
_SYNC_LINE_OPS = ("bar", "barrier", "fence")  # bar.sync, barrier.sync, fence.proxy.async; wgmma.fence below


@dataclasses.dataclass
class _Unit:
    lines: list[PtxLine]
    kind: str  # "record", "pure", "sync", "neutral", "stop" (any other instruction), "control"
    defs: frozenset[str] = frozenset()
    uses: frozenset[str] = frozenset()
    scope: int | None = None  # records: the scope id
    start: bool = False  # records: a start record


def hoist(lines: list[PtxLine], entry: Entry, movable: set[int]) -> list[PtxLine]:
    """``lines`` with pure instructions moved in front of the records of the scopes in ``movable``
    (scope ids of automatic insertion) as the module docstring says; the same lines otherwise."""
    if not movable:
        return lines
    body = _units(lines, entry.decl_end, entry.body_end)
    i = 0
    while i < len(body):
        u = body[i]
        if u.kind == "pure":
            to = _target(body, i, movable)
            if to is not None and _feeds_op(body, i):
                body.insert(to, body.pop(i))
        i += 1
    return lines[:entry.decl_end] + [ln for u in body for ln in u.lines] + lines[entry.body_end:]


def _target(body: list[_Unit], i: int, movable: set[int]) -> int | None:
    """The highest index in front of a record that unit ``i`` may move to, or None."""
    p, best = body[i], None
    open_ends: list[int] = []  # scopes whose end record was crossed, their start not yet
    for j in range(i - 1, -1, -1):
        u = body[j]
        if u.kind in ("stop", "control") or (u.defs & (p.uses | p.defs)) or (u.uses & p.defs):
            break
        if u.kind != "record":
            continue
        if u.scope not in movable:
            break
        if not u.start:
            open_ends.append(u.scope)
        elif u.scope in open_ends:
            open_ends.remove(u.scope)
        if not open_ends:
            best = j
    return best


def _feeds_op(body: list[_Unit], i: int) -> bool:
    """Whether unit ``i``'s value reaches a non-pure instruction before the next end record."""
    live = set(body[i].defs)
    for u in body[i + 1:]:
        if u.kind == "control" or (u.kind == "record" and not u.start):
            return False
        if u.uses & live:
            if u.kind != "pure":
                return True
            live |= u.defs
    return False


def _units(lines: list[PtxLine], start: int, end: int) -> list[_Unit]:
    """The body lines ``[start, end)`` as units: an inline asm block is one unit, any other line one."""
    body = range(start, end)
    refs = label_references(lines, body, [i for i in body if lines[i].kind is Kind.LABEL])
    targets = {i for i, users in refs.items() if users}  # label lines something branches to or names
    out, i = [], start
    while i < end:
        line = lines[i]
        if line.kind is Kind.ASM_BEGIN:
            j = i
            while j < end and lines[j].kind is not Kind.ASM_END:
                j += 1
            out.append(_asm_unit(lines[i:j + 1]))
            i = j + 1
            continue
        out.append(_line_unit(line, i in targets))
        i += 1
    return out


def _asm_unit(block: list[PtxLine]) -> _Unit:
    op = parse_carrier(block[1].text) if len(block) > 1 else None
    code = [ln for ln in block if ln.kind is Kind.INSTRUCTION]
    written = frozenset(t for ln in code for t in _tokens(_operands(ln)[:1]))
    named = frozenset(t for ln in code for t in _tokens(_operands(ln)) + _tokens([ln.pred]))
    if op is not None and op.scope_id is not None:
        return _Unit(block, "record", written, named - written, op.scope_id, op.is_start)
    spin = code and all(ln.op == "bra" or ln.opcode.startswith(("mbarrier.try_wait", "mbarrier.test_wait"))
                        for ln in code)
    if spin and not written:
        return _Unit(block, "sync", frozenset(), named)
    return _Unit(block, "stop", named, named)  # what it reads or writes is not told apart: both


def _line_unit(line: PtxLine, target: bool) -> _Unit:
    if line.kind in (Kind.BLANK, Kind.COMMENT) or (line.kind is Kind.DIRECTIVE and line.directive == ".loc"):
        return _Unit([line], "neutral")
    if line.kind is Kind.LABEL:
        return _Unit([line], "control" if target else "neutral")
    if line.kind is not Kind.INSTRUCTION or line.ends_block:
        return _Unit([line], "control")
    ops = _operands(line)
    defs, uses = frozenset(_tokens(ops[:1])), frozenset(_tokens(ops[1:]) + _tokens([line.pred]))
    if line.op in PURE_OPS and not _FLOAT.search(line.opcode) and all(_VREG.match(t) for t in defs | uses) \
            and defs:
        return _Unit([line], "pure", defs, uses)
    if (line.op in _SYNC_LINE_OPS or line.opcode == "wgmma.fence.sync.aligned") and not line.pred:
        return _Unit([line], "sync", frozenset(), defs | uses)
    return _Unit([line], "stop", defs | uses, defs | uses)  # a store's first operand is read


def _operands(line: PtxLine) -> list[str]:
    """An instruction's operands, split at the commas outside braces and brackets."""
    out, depth, cur = [], 0, ""
    for ch in line.operands:
        if ch in "{[":
            depth += 1
        elif ch in "}]":
            depth -= 1
        if ch == "," and depth == 0:
            out.append(cur)
            cur = ""
        else:
            cur += ch
    return out + [cur] if cur.strip() else out


def _tokens(parts: list[str]) -> list[str]:
    return [t for part in parts for t in _TOKEN.findall(part)]

