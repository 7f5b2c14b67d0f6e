"""The ``kperf.record`` op: the start or the end of a named scope.

Textual syntax in TTGIR (one op per line, no results)::

    kperf.record start "load" loc(#loc12)
    kperf.record end "load"

Upstream Proton's ``proton.record start "name"`` is accepted as the same op, and so are the forms older
Proton releases wrote, which name a numbered region instead of a scope (the scope is named ``region N``)::

    proton.record() {isStart = true, regionId = 1 : i32}      # Proton before named scopes
    tt.proton_record <1, "start", "cycle", "warpgroup">        # an early prototype (triton_gpu dialect era)

Only a ``loc(...)`` may follow the record on its line (``parse_record_line``); kperf times every warp,
whatever granularity an old Proton record names.

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
LEGACY_OP_NAMES = ("tt.proton_record",)  # an early Proton prototype's op (positional attributes)
TEXTUAL_OP_NAMES = OP_NAMES + LEGACY_OP_NAMES  # what a textual record line starts with
REGION_SCOPE = "region {}"  # the scope name of an old Proton record's region id
_LEGACY_ATTRS = ("isStart", "regionId", "metric", "granularity", "useDeviceBuffer")
# The carrier's ``tt.elementwise_inline_asm`` attributes: one i32 result that nothing reads ("=r"),
# not pure (so MLIR neither drops nor hoists it), one element per asm instance.
CARRIER_CONSTRAINTS = "=r"
CARRIER_PURE = False
CARRIER_PACK = 1


def _check_name(name: str, where: str | None) -> None:
    if not isinstance(name, str) or not name:
        raise KperfError(f"a scope name must be a non-empty string, got {name!r}", where=where,
                         fix='name the scope: kperf.record start "load"')
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
            raise KperfError(f"kperf.record kind must be 'start' or 'end', got {self.kind!r}", where=self.loc,
                             fix='write kperf.record start "name" or kperf.record end "name"')
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


_CARRIER_FIX = ('a carrier\'s asm text is `// kperf.record start|end "name"` (optionally ` id=N`): fix '
                'it, or replace the op by a textual kperf.record start "name" line')


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
                         where=where, fix=_CARRIER_FIX)
    name, end = _parse_json_string(rest, where, first)
    tail = rest[end:].strip()
    scope_id = None
    if tail:
        if not tail.startswith("id=") or not tail[3:].isdigit():
            raise KperfError(f"malformed kperf carrier {first!r}: unexpected {tail!r}", where=where,
                             fix=_CARRIER_FIX)
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
        raise KperfError(f"unterminated or malformed scope name in {line!r} ({e.msg})", where=where,
                         fix='close the quotes; escape \\ and " inside the name: kperf.record start "a\\"b"'
                         ) from None
    if not isinstance(value, str):
        raise KperfError(f"expected a quoted scope name in {line!r}", where=where,
                         fix='write the name in double quotes: kperf.record start "name"')
    return value, end


# -- textual record lines (override files) -------------------------------------------------------------

def parse_record_line(line: str, tokens: list, where: str) -> tuple[RecordOp, int | None]:
    """The record a textual record line holds, and the index of the token opening its ``loc(...)``.

    ``tokens`` are the line's tokens (``kperf.dialect.ttgir_text.tokenize_line``: objects with ``kind``,
    ``text``, ``start``) and start with one of ``TEXTUAL_OP_NAMES``.  Anything after the record but one
    trailing ``loc(...)`` is an error: it would vanish when the line becomes a carrier.
    """
    first = tokens[0]
    if first.kind == "string":
        raise KperfError(f"the generic form of {first.text} is not read: {line.strip()!r}", where=where,
                         fix=f'write it as: {first.text} start "name"   (or end)')
    if first.text in LEGACY_OP_NAMES:
        kind, name, end = _legacy_positional(line, tokens, where)
    elif len(tokens) > 1 and tokens[1].text == "(":
        kind, name, end = _legacy_attributes(line, tokens, where)
    else:
        kind, name, end = _current(line, tokens, where)
    return RecordOp(kind, name, None, where), _loc_index(line, tokens, end, where)


def _current(line: str, tokens: list, where: str) -> tuple[str, str, int]:
    """``kperf.record start "name"`` / ``proton.record end "name"``."""
    op = tokens[0].text
    fix = f'write it as: {op} start "name"   (or end)'
    if len(tokens) < 3 or tokens[1].kind != "word" or tokens[2].kind != "string":
        hint = ""
        if len(tokens) >= 3 and tokens[2].text.startswith("%"):
            hint = f" (a scope value such as {tokens[2].text} from proton.init_scope is not read)"
        raise KperfError(f"malformed {op} op: {line.strip()!r}{hint}", where=where, fix=fix)
    kind = tokens[1].text
    if kind not in KINDS:
        raise KperfError(f"{op} kind must be 'start' or 'end', got {kind!r}", where=where,
                         fix=f'write it as: {op} start "name"')
    return kind, tokens[2].text, 3


def _legacy_positional(line: str, tokens: list, where: str) -> tuple[str, str, int]:
    """``tt.proton_record <REGION, "start"|"end", "cycle", "warpgroup">``: scope ``region REGION``."""
    op = tokens[0].text
    close = _closing(tokens, 1)
    parts = _split_commas(tokens[2:close]) if close is not None else []
    if (len(parts) < 2 or len(parts[0]) != 1 or not parts[0][0].text.isdigit() or len(parts[1]) != 1
            or parts[1][0].kind != "string" or parts[1][0].text not in KINDS):
        raise KperfError(f"malformed {op} op: {line.strip()!r}", where=where,
                         fix=f'write it as: {op} <REGION, "start", "cycle", "warpgroup">  (or "end"), '
                             'or in the current syntax: kperf.record start "name"')
    return parts[1][0].text, REGION_SCOPE.format(int(parts[0][0].text)), close + 1


def _legacy_attributes(line: str, tokens: list, where: str) -> tuple[str, str, int]:
    """``proton.record() {isStart = true, regionId = 1 : i32}``: scope ``region 1``."""
    op = tokens[0].text
    fix = f'write it as: {op}() {{isStart = true, regionId = 1 : i32}}  (isStart = false ends it), or in ' \
          'the current syntax: kperf.record start "name"'
    close = _closing(tokens, 3) if len(tokens) > 3 and tokens[2].text == ")" else None
    if close is None:
        raise KperfError(f"malformed {op} op: {line.strip()!r}", where=where, fix=fix)
    attrs = {}
    for part in _split_commas(tokens[4:close]):
        if len(part) < 3 or part[1].text != "=" or part[0].text not in _LEGACY_ATTRS:
            raise KperfError(f"{op}() attribute {' '.join(t.text for t in part)!r} is not one of "
                             f"{', '.join(_LEGACY_ATTRS)}", where=where, fix=fix)
        attrs[part[0].text] = part[2]
    start, region = attrs.get("isStart"), attrs.get("regionId")
    if start is None or start.text not in ("true", "false") or region is None or not region.text.isdigit():
        raise KperfError(f"{op}() needs isStart = true|false and regionId = N: {line.strip()!r}", where=where,
                         fix=fix)
    return "start" if start.text == "true" else "end", REGION_SCOPE.format(int(region.text)), close + 1


_OPEN, _CLOSE = "([{<", ")]}>"


def _closing(tokens: list, at: int) -> int | None:
    """Index of the bracket closing the one at ``tokens[at]`` (None: unclosed, or no bracket there)."""
    if at >= len(tokens) or tokens[at].kind != "punct" or tokens[at].text not in _OPEN:
        return None
    depth = 0
    for k in range(at, len(tokens)):
        t = tokens[k]
        if t.kind == "punct" and t.text in _OPEN:
            depth += 1
        elif t.kind == "punct" and t.text in _CLOSE:
            depth -= 1
            if depth == 0:
                return k
    return None


def _split_commas(tokens: list) -> list[list]:
    """``tokens`` split at the commas outside brackets."""
    parts: list[list] = [[]]
    depth = 0
    for t in tokens:
        if t.kind == "punct" and t.text == "," and depth == 0:
            parts.append([])
            continue
        if t.kind == "punct":
            depth += (t.text in _OPEN) - (t.text in _CLOSE)
        parts[-1].append(t)
    return [p for p in parts if p]


def _loc_index(line: str, tokens: list, end: int, where: str) -> int | None:
    """Index of the trailing ``loc(...)`` after the record's last token ``end - 1``; other text raises."""
    if end >= len(tokens):
        return None
    if (tokens[end].text == "loc" and end + 1 < len(tokens) and tokens[end + 1].text == "("
            and _closing(tokens, end + 1) == len(tokens) - 1):
        return end
    raise KperfError(f"unexpected text after the record: {line[tokens[end].start:].strip()!r}", where=where,
                     fix="a record line holds one record and at most a trailing loc(...): put that text on a "
                         "line of its own, or delete it")


DIALECT = [RecordOp]
