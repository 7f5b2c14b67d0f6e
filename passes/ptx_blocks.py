"""Where the record counter must be current: the block boundaries of a kernel body.

``kperf-lower-ptx`` bumps its per-warp record counter (and, with ``fold``, clamps the slot pointer)
once per straight-line run of records instead of once per record; a run has to end wherever control
can join or leave, so that every path reaching a line agrees on the count.  PTX text marks more
places as labels and branches than the control flow has:

- labels no instruction names: LLVM's ``$L__tmpN`` / ``$L__func_begin0`` debug-line labels, which
  Triton's PTX has between almost every pair of source lines;
- record-free spin loops: a label and the branches back to it with nothing between them that records,
  leaves the loop or is targeted from elsewhere.  Every TMA barrier wait compiles to one
  (``waitLoop: mbarrier.try_wait ...; @!complete bra.uni waitLoop;``); each trip adds no record, so
  the count on leaving is the count on entering.

Treating those as boundaries cost, per warp-specialized attention iteration, six counter bumps instead
of one (SASS: a constant move, an add-and-min, two address instructions each); ``boundaries`` leaves
them out.  ``merge=False`` keeps every label and branch a boundary, as kperf did before.

Labels are scoped by braces (the inline asm of each TMA wait declares its own ``waitLoop``), so a
reference binds to the declaration in its innermost enclosing scope, as in ptxas.  Any name of a
label on any instruction or directive line counts as a reference, branch or not: a label whose
address is taken (``brx.idx`` tables) stays a boundary.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from .ptx import BLOCK_ENDING_OPS, Entry, Kind, PtxLine

_NAME = re.compile(r"[$%]?[A-Za-z_$][\w$]*")


def boundaries(lines: list[PtxLine], entry: Entry, records: Iterable[int], merge: bool = True) -> set[int]:
    """Indices of the body lines before which the counter must be bumped (labels, branches, returns).

    ``records``: the indices of lines that belong to a record (its carrier's asm lines).
    """
    body = range(entry.body_start + 1, entry.body_end)
    ending = {i for i in body if lines[i].kind is Kind.INSTRUCTION and lines[i].op in BLOCK_ENDING_OPS}
    labels = [i for i in body if lines[i].kind is Kind.LABEL]
    if not merge:
        return ending | set(labels)
    refs = label_references(lines, body, labels)
    recording = set(records)
    out = set(ending)
    for head in labels:
        users = refs.get(head, [])
        if not users:
            continue  # a debug label: nothing jumps here
        if _spin_loop(lines, head, users, recording, refs):
            out.difference_update(users)  # the back edges carry the count unchanged
            continue
        out.add(head)
    return out


def label_references(lines: list[PtxLine], body: range, labels: list[int]) -> dict[int, list[int]]:
    """For each label line, the lines that name it (resolved through brace scopes)."""
    names = {lines[i].label for i in labels}
    chains: dict[int, tuple[int, ...]] = {}  # line -> its enclosing brace lines, outermost first
    decl: dict[tuple[str, int], int] = {}  # (name, scope) -> label line
    stack: list[int] = []
    for i in body:
        line = lines[i]
        chains[i] = tuple(stack)
        if line.kind is Kind.LABEL:
            decl[(line.label, stack[-1] if stack else -1)] = i
        for _ in range(max(line.braces, 0)):
            stack.append(i)
        for _ in range(max(-line.braces, 0)):
            if stack:
                stack.pop()
    refs: dict[int, list[int]] = {}
    for i in body:
        line = lines[i]
        if line.kind not in (Kind.INSTRUCTION, Kind.DIRECTIVE, Kind.OTHER):
            continue
        for name in set(_NAME.findall(line.code)) & names:
            target = _resolve(name, chains[i], decl)
            if target is not None:
                refs.setdefault(target, []).append(i)
    return refs


def _resolve(name: str, chain: tuple[int, ...], decl: dict[tuple[str, int], int]) -> int | None:
    for scope in (*reversed(chain), -1):
        if (name, scope) in decl:
            return decl[(name, scope)]
    return None


def _spin_loop(lines: list[PtxLine], head: int, users: list[int], recording: set[int],
               refs: dict[int, list[int]]) -> bool:
    """Whether ``head`` and its users form a loop that records nothing and is left only by falling out."""
    if any(u <= head or lines[u].kind is not Kind.INSTRUCTION or lines[u].op != "bra" for u in users):
        return False
    tail = max(users)
    for j in range(head + 1, tail + 1):
        line = lines[j]
        if j in recording or line.is_return:
            return False
        if line.kind is Kind.INSTRUCTION and line.op in BLOCK_ENDING_OPS and j not in users:
            return False  # a way out of the loop (or a call)
        if line.kind is Kind.LABEL and refs.get(j):
            return False  # entered from elsewhere
    return True
