"""A PTX line model: every line of a PTX module classified once, and the kernel entry found from it.

The lowering asks the same few questions of every line (is it a label, a branch, a ``ret`` or
``exit``, the start of an inline-asm block, a declaration, how many braces does it open); ``parse``
answers them once per line, so the lowering never splits strings itself.  A line's *code* is its text
before any ``//`` comment, stripped.  Kinds:

===========  =====================================================================================
BLANK        only whitespace
COMMENT      only a ``//`` comment (LLVM's inline-asm markers are ASM_BEGIN / ASM_END)
ASM_BEGIN    ``// begin inline asm``: the lines up to ASM_END are the asm text of one inline asm
ASM_END      ``// end inline asm``
DIRECTIVE    code starts with ``.``: ``.reg``, ``.shared``, ``.param``, ``.visible .entry k(``, ...
LABEL        ``$L__BB0_2:``
OPEN/CLOSE   code starts with ``{`` / ``}``: a scope, or a compound inline-asm line ``{ .reg ...``
INSTRUCTION  ``[@[!]pred] opcode[.modifiers] operands;`` (the first statement, when a line has two)
OTHER        anything else (the ``)`` that closes a parameter list, initializer data)
===========  =====================================================================================

PTX is one statement per line in what LLVM (and so Triton) emits; the model relies on that.
"""

from __future__ import annotations

import dataclasses
import enum

from kperf.dialect.errors import KperfError

#: the fix for PTX that is not one kernel as Triton writes it
ONE_KERNEL = "give the PTX of one Triton kernel, as Triton's ptx stage or a TRITON_DUMP_DIR .ptx file has it"

BEGIN_ASM = "// begin inline asm"
END_ASM = "// end inline asm"
RETURNS = ("ret", "ret.uni", "exit")  # the instructions that end the kernel for a thread
#: Opcodes (without modifiers) after which control may not fall through to the next line.
BLOCK_ENDING_OPS = ("bra", "brx", "call", "ret", "exit", "trap")
BODY_DECLARATIONS = (".reg", ".shared", ".local")  # the declarations a kernel body starts with


class Kind(enum.Enum):
    BLANK = "blank"
    COMMENT = "comment"
    ASM_BEGIN = "asm-begin"
    ASM_END = "asm-end"
    DIRECTIVE = "directive"
    LABEL = "label"
    OPEN = "open"
    CLOSE = "close"
    INSTRUCTION = "instruction"
    OTHER = "other"


@dataclasses.dataclass(frozen=True)
class PtxLine:
    text: str  # the line as written
    kind: Kind
    code: str  # the text before any // comment, stripped
    braces: int = 0  # "{" minus "}" in the code
    pred: str = ""  # instructions: "@%p1" or "@!%p1", "" when unpredicated
    opcode: str = ""  # instructions: with modifiers, "st.global.v2.b32"
    operands: str = ""  # instructions: the text between the opcode and the ";"

    @property
    def op(self) -> str:
        """The opcode without modifiers: ``bra`` for ``bra.uni``."""
        return self.opcode.split(".", 1)[0]

    @property
    def label(self) -> str:
        return self.code[:-1] if self.kind is Kind.LABEL else ""

    @property
    def directive(self) -> str:
        """The first word of a directive: ``.reg``."""
        return self.code.split(None, 1)[0] if self.kind is Kind.DIRECTIVE else ""

    @property
    def statement(self) -> str:
        """An instruction's code without its predicate: ``ret;`` for ``@%p1 ret;``."""
        return self.code[len(self.pred):].strip()

    @property
    def is_return(self) -> bool:
        """``ret``, ``ret.uni`` or ``exit``, predicated or not: where a thread's kernel ends."""
        return self.kind is Kind.INSTRUCTION and self.opcode in RETURNS and not self.operands

    @property
    def ends_block(self) -> bool:
        """A label, branch, call, return or trap as the text has it (``kperf.passes.ptx_blocks`` decides which
        of these the record counter must be current across)."""
        return self.kind is Kind.LABEL or (self.kind is Kind.INSTRUCTION and self.op in BLOCK_ENDING_OPS)

    @property
    def leaves(self) -> bool:
        """An unconditional return or branch: control never reaches the next line."""
        branch = self.kind is Kind.INSTRUCTION and self.op in ("bra", "brx")
        return not self.pred and (self.is_return or branch)


def classify(text: str) -> PtxLine:
    """One line of PTX."""
    stripped = text.strip()
    if stripped == BEGIN_ASM:
        return PtxLine(text, Kind.ASM_BEGIN, "")
    if stripped == END_ASM:
        return PtxLine(text, Kind.ASM_END, "")
    code = text.split("//", 1)[0].strip()
    if not code:
        return PtxLine(text, Kind.COMMENT if stripped else Kind.BLANK, "")
    braces = code.count("{") - code.count("}")
    if code.startswith("."):
        return PtxLine(text, Kind.DIRECTIVE, code, braces)
    if code.endswith(":"):
        return PtxLine(text, Kind.LABEL, code, braces)
    if code[0] in "{}":
        return PtxLine(text, Kind.OPEN if code[0] == "{" else Kind.CLOSE, code, braces)
    if not (code[0].isalpha() or code[0] == "@"):
        return PtxLine(text, Kind.OTHER, code, braces)
    pred, stmt = "", code
    if code.startswith("@"):
        pred, _, stmt = code.replace("\t", " ").partition(" ")
    first = stmt.split(";", 1)[0].strip()
    opcode, _, operands = first.partition(" ")
    return PtxLine(text, Kind.INSTRUCTION, code, braces, pred, opcode, operands.strip())


def parse(ptx: str) -> list[PtxLine]:
    return [classify(line) for line in ptx.split("\n")]


@dataclasses.dataclass(frozen=True)
class Entry:
    """The kernel: its ``.entry`` line, parameters and body, as indices into the line list."""

    name: str
    params: tuple[str, ...]  # parameter names, in order
    start: int  # the `.entry` line
    body_start: int  # the line holding the body's opening "{"
    decl_end: int  # the first line after the body's leading declarations
    body_end: int  # the body's closing "}"

    @property
    def last_param(self) -> str:
        return self.params[-1]

    def in_body(self, i: int) -> bool:
        """Line ``i`` is strictly inside the body's braces."""
        return self.body_start < i < self.body_end


def find_entry(lines: list[PtxLine]) -> Entry:
    """The module's one ``.entry``: its parameters (on one line or many) and its body."""
    starts = [i for i, line in enumerate(lines) if ".entry" in line.code.split()[:2]]
    if len(starts) != 1:
        raise KperfError(f"expected one .entry in the PTX, found {len(starts)}",
                         fix=ONE_KERNEL)
    start = starts[0]
    name = lines[start].code.split(".entry", 1)[1].split("(")[0].strip()
    params, header_end = _params(lines, start, name)
    if not params:
        raise KperfError(f"kernel {name} has no parameters; Triton always passes the profile buffer last",
                         fix=ONE_KERNEL)
    body_start = next((j for j in range(header_end, len(lines)) if lines[j].code == "{"), None)
    if body_start is None:
        raise KperfError(f"kernel {name} has no body: no line holds its opening '{{'",
                         fix=ONE_KERNEL)
    decl_end = body_start + 1
    while decl_end < len(lines) and (lines[decl_end].kind is Kind.BLANK
                                     or lines[decl_end].directive in BODY_DECLARATIONS):
        decl_end += 1
    depth = 0
    for end in range(body_start, len(lines)):
        depth += lines[end].braces
        if depth == 0:
            return Entry(name, params, start, body_start, decl_end, end)
    raise KperfError(f"unbalanced braces in the body of kernel {name}", fix=ONE_KERNEL)


def _params(lines: list[PtxLine], start: int, name: str) -> tuple[tuple[str, ...], int]:
    """The parameter names of the entry at ``start`` and the index of the line closing their list."""
    text, depth = "", 0
    for j in range(start, len(lines)):
        code = lines[j].code
        if "(" not in text + code and code == "{":
            return (), j  # `.entry k` with no parameter list
        text += " " + code
        depth += code.count("(") - code.count(")")
        if "(" in text and depth <= 0:
            inner = text.split("(", 1)[1].rsplit(")", 1)[0]
            decls = (d.split() for d in inner.split(","))
            return tuple(d[-1] for d in decls if d and d[0] == ".param"), j
    raise KperfError(f"the parameter list of kernel {name} is not closed", fix=ONE_KERNEL)
