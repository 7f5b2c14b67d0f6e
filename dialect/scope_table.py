"""The scope table: id, name, parent and source location of every scope of one kernel.

Built from a kernel's records in program-text order; travels in the kernel metadata under
``metadata["kperf"]["scopes"]`` as a list of ``{"id", "name", "parent", "loc"}`` dicts
(``parent`` is -1 at top level) and is what the decoder uses to name events.
"""

from __future__ import annotations

import dataclasses

from .errors import KperfError
from .layout import MAX_SCOPES
from .record import RecordOp


@dataclasses.dataclass(frozen=True)
class Scope:
    id: int
    name: str
    parent: int  # -1 at top level
    loc: str | None = None


@dataclasses.dataclass
class ScopeTable:
    scopes: list[Scope] = dataclasses.field(default_factory=list)

    def id_of(self, name: str) -> int:
        for s in self.scopes:
            if s.name == name:
                return s.id
        raise KeyError(name)

    def names(self) -> list[str]:
        return [s.name for s in self.scopes]

    def to_json(self) -> list[dict]:
        return [dataclasses.asdict(s) for s in self.scopes]

    @classmethod
    def from_json(cls, data: list[dict]) -> ScopeTable:
        return cls([Scope(int(d["id"]), str(d["name"]), int(d["parent"]), d.get("loc")) for d in data])

    def __len__(self) -> int:
        return len(self.scopes)


def build_scope_table(blocks: list[list[RecordOp]]) -> ScopeTable:
    """Verify the records block by block and number the scopes in order of first appearance.

    Each block's records must nest properly: every start has its end later in the same block, ends
    close the innermost open scope, and no scope opens inside itself.  ``with kperf.scope(...)``
    always produces such blocks; hand-placed enter/exit calls or records in override files may not.
    """
    table = ScopeTable()
    by_name: dict[str, int] = {}
    for records in blocks:
        stack: list[RecordOp] = []
        for op in records:
            if op.is_start:
                if any(s.name == op.name for s in stack):
                    raise KperfError(f'scope "{op.name}" opens inside itself', where=op.loc,
                                     fix="close it before opening it again, "
                                         "or give the inner one another name")
                if op.name not in by_name:
                    if len(table.scopes) >= MAX_SCOPES:
                        raise KperfError(f"more than {MAX_SCOPES} scopes in one kernel", where=op.loc)
                    parent = by_name[stack[-1].name] if stack else -1
                    by_name[op.name] = len(table.scopes)
                    table.scopes.append(Scope(len(table.scopes), op.name, parent, op.loc))
                stack.append(op)
            else:
                if not stack:
                    raise KperfError(f'end of scope "{op.name}" has no matching start in the same block',
                                     where=op.loc,
                                     fix="open and close a scope in the same block; "
                                         "`with kperf.scope(name):` does this for you")
                if stack[-1].name != op.name:
                    raise KperfError(f'end of scope "{op.name}" while "{stack[-1].name}" '
                                     f"(opened at {stack[-1].loc}) is still open", where=op.loc,
                                     fix="close scopes in the reverse order of opening them")
                stack.pop()
        if stack:
            open_ = stack[-1]
            raise KperfError(f'scope "{open_.name}" is opened but never closed in its block',
                             where=open_.loc,
                             fix="add the matching end (kperf.exit_scope / `kperf.record end`) in the same "
                                 "block, or use `with kperf.scope(name):`")
    return table
