"""The ``kperf.record`` op: the start or the end of a named scope.

Textual syntax in TTGIR (one op per line, no results)::

    kperf.record start "load" loc(#loc12)
    kperf.record end "load"

Upstream Proton's ``proton.record start "name"`` is accepted as the same op.

Triton cannot compile an unknown op, so a record travels through Triton's pipeline as its *carrier*:
a side-effecting, zero-operand ``tt.elementwise_inline_asm`` whose PTX body is a comment naming the
record plus ``mov.u32 $0, 0;``.  Left alone, a carrier compiles to nothing (SASS is unchanged); the
PTX lowering (``kperf.passes.lower_ptx``) replaces each carrier with a clock read and a store.

Carrier text, before scope ids are assigned and after::

    // kperf.record start "load"
    // kperf.record start "load" id=3

``RecordOp`` is the one place that builds a carrier, in each form a caller needs: the asm text
(``carrier_asm``), the TTGIR line an override file's textual record becomes (``carrier_ttgir``) and the
arguments of Triton's ``create_inline_asm`` (``carrier_builder_args``, for ``kperf.language`` and
automatic insertion); ``parse_carrier`` reads one back.
"""

from __future__ import annotations

import dataclasses
import json

from .errors import KperfError
from .mlir_string import encode_mlir_string

KINDS = ("start", "end")
CARRIER_PREFIX = "// kperf.record "
CARRIER_BODY = "mov.u32 $0, 0;"
OP_NAMES = ("kperf.record", "proton.record")
# The carrier's ``tt.elementwise_inline_asm`` attributes: one i32 result that nothing reads ("=r"),
# not pure (so MLIR neither drops nor hoists it), one element per asm instance.
CARRIER_CONSTRAINTS = "=r"
CARRIER_PURE = False
CARRIER_PACK = 1


def _check_name(name: str, where: str | None) -> None:
    if not isinstance(name, str) or not name:
        raise KperfError(f"a scope name must be a non-empty string, got {name!r}", where=where)
    if any(c in name for c in "\n\r\0"):
        raise KperfError(f"scope name {name!r} contains a line break or NUL", where=where,
                         fix="use a single-line name")


@dataclasses.dataclass(frozen=True)
class RecordOp:
    """``kperf.record <start|end> "name"``; ``scope_id`` is set once the scope table exists."""

    kind: str
    name: str
    scope_id: int | None = None
    loc: str | None = None  # "file:line" where known, for messages and trace args

    name_str = "kperf.record"
    assembly_format = 'kperf.record <start|end> "<name>"'

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise KperfError(f"kperf.record kind must be 'start' or 'end', got {self.kind!r}", where=self.loc)
        _check_name(self.name, self.loc)

    @property
    def is_start(self) -> bool:
        return self.kind == "start"

    # -- textual op -----------------------------------------------------------------------------
    def print(self) -> str:
        return f"{self.name_str} {self.kind} {json.dumps(self.name)}"

    # -- carrier ----------------------------------------------------------------------------------
    def carrier_comment(self) -> str:
        """The PTX comment line that names this record inside its carrier."""
        text = f"{CARRIER_PREFIX}{self.kind} {json.dumps(self.name)}"
        if self.scope_id is not None:
            text += f" id={self.scope_id}"
        return text

    def carrier_asm(self) -> str:
        """The inline-asm text of the carrier (what ``tt.elementwise_inline_asm`` holds)."""
        return f"{self.carrier_comment()}\n\t{CARRIER_BODY}"

    def carrier_builder_args(self, result_type) -> tuple:
        """The arguments of Triton's ``builder.create_inline_asm`` that build this carrier.

        ``result_type`` is the builder's i32 type; the caller calls the builder (dialect does not
        import Triton): ``builder.create_inline_asm(*op.carrier_builder_args(i32))``.
        """
        return self.carrier_asm(), CARRIER_CONSTRAINTS, [], [result_type], CARRIER_PURE, CARRIER_PACK

    def carrier_ttgir(self, ssa: str) -> str:
        """This carrier as the TTGIR line Triton prints for it (no indent, no location)."""
        return (f"{ssa} = tt.elementwise_inline_asm {encode_mlir_string(self.carrier_asm())} "
                f'{{constraints = "{CARRIER_CONSTRAINTS}", packed_element = {CARRIER_PACK} : i32, '
                f"pure = {str(CARRIER_PURE).lower()}}} -> i32")

    def with_id(self, scope_id: int) -> RecordOp:
        return dataclasses.replace(self, scope_id=scope_id)


def parse_carrier(text: str, where: str | None = None) -> RecordOp | None:
    """The record an inline-asm text (or a PTX comment line) carries, or None if it is no carrier."""
    text = text.strip()
    if not text.startswith(CARRIER_PREFIX.strip()):
        return None
    first = text.splitlines()[0].strip()
    rest = first[len(CARRIER_PREFIX):].strip()
    kind, _, rest = rest.partition(" ")
    if kind not in KINDS:
        raise KperfError(f"malformed kperf carrier {first!r}: expected 'start' or 'end' after 'kperf.record'",
                         where=where)
    name, end = _parse_json_string(rest, where, first)
    tail = rest[end:].strip()
    scope_id = None
    if tail:
        if not tail.startswith("id=") or not tail[3:].isdigit():
            raise KperfError(f"malformed kperf carrier {first!r}: unexpected {tail!r}", where=where)
        scope_id = int(tail[3:])
    return RecordOp(kind, name, scope_id, where)


def _parse_json_string(text: str, where: str | None, line: str) -> tuple[str, int]:
    """Parse a double-quoted string at the start of ``text``; return it and the index after it."""
    if not text.startswith('"'):
        raise KperfError(f"expected a quoted scope name in {line!r}", where=where,
                         fix='write the name in double quotes: kperf.record start "name"')
    try:
        value, end = json.JSONDecoder().raw_decode(text)
    except json.JSONDecodeError as e:
        raise KperfError(f"unterminated or malformed scope name in {line!r} ({e.msg})", where=where) from None
    if not isinstance(value, str):
        raise KperfError(f"expected a quoted scope name in {line!r}", where=where)
    return value, end


DIALECT = [RecordOp]
