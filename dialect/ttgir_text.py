"""A scanner for the parts of TTGIR text that kperf reads: strings, blocks, functions, locations.

Not a general MLIR parser.  It tokenizes string literals properly (so braces and quotes inside asm
strings never confuse it), tracks region nesting and block labels, knows which ``tt.func`` it is in,
resolves ``#locN`` aliases to ``file:line``, and finds every record: carriers
(``tt.elementwise_inline_asm`` whose text is a kperf record) and textual ``kperf.record`` /
``proton.record`` ops written into override files (``kperf.dialect.record.parse_record_line`` reads
them, older Proton forms included).  ``kernel_signatures`` reads each kernel's name and argument types.
"""

from __future__ import annotations

import dataclasses

from .errors import KperfError
from .mlir_string import decode_mlir_string, encode_mlir_string
from .record import TEXTUAL_OP_NAMES, RecordOp, parse_carrier, parse_record_line

INLINE_ASM_OP = "tt.elementwise_inline_asm"


@dataclasses.dataclass
class Token:
    kind: str  # "string", "punct", "word"
    text: str  # string value for "string", raw text otherwise
    start: int  # column of the first character in the line
    end: int  # column after the last character


def tokenize_line(line: str, lineno: int = 0, path: str = "<ttgir>") -> list[Token]:
    """Tokens of one TTGIR line; ``//`` comments are dropped.  Unterminated strings raise."""
    tokens: list[Token] = []
    i, n = 0, len(line)
    while i < n:
        c = line[i]
        if c.isspace():
            i += 1
        elif c == '"':
            j = i + 1
            while j < n and line[j] != '"':
                j += 2 if line[j] == "\\" else 1
            if j >= n:
                raise KperfError("unterminated string literal", where=f"{path}:{lineno}",
                                 fix="close the string with a double quote on the same line")
            tokens.append(Token("string", decode_mlir_string(line[i + 1:j]), i, j + 1))
            i = j + 1
        elif c == "/" and line.startswith("//", i):
            break
        elif c in "{}()[]<>,:=":
            tokens.append(Token("punct", c, i, i + 1))
            i += 1
        else:
            j = i
            while j < n and not line[j].isspace() and line[j] not in '"{}()[]<>,:=':
                j += 1
            tokens.append(Token("word", line[i:j], i, j))
            i = j
    return tokens


@dataclasses.dataclass
class RecordSite:
    """Where one record stands in the module text."""

    op: RecordOp
    lineno: int  # 1-based
    block: tuple  # identity of the enclosing block: brace path plus block label
    func: str
    func_is_kernel: bool
    func_noinline: bool
    textual: bool  # a kperf.record / proton.record line (not yet a carrier)
    string_token: Token | None = None  # the carrier's asm string, for rewriting
    loc_start: int | None = None  # column of a textual record's trailing ``loc(...)``


@dataclasses.dataclass
class ScannedModule:
    lines: list[str]
    sites: list[RecordSite]
    locs: dict[str, str]  # "#loc12" -> "file.py:24"
    path: str


def _resolve_locs(lines: list[str]) -> dict[str, str]:
    """Map each ``#locN`` alias to the first ``"file":line`` it leads to."""
    raw: dict[str, list[Token]] = {}
    for line in lines:
        if line.startswith("#loc"):
            name, _, rest = line.partition("=")
            try:
                raw[name.strip()] = tokenize_line(rest)
            except KperfError:
                continue

    resolved: dict[str, str] = {}

    def resolve(name: str, depth: int = 0) -> str | None:
        if name in resolved:
            return resolved[name]
        toks = raw.get(name)
        if toks is None or depth > 32:
            return None
        result = _loc_from_tokens(toks, lambda ref: resolve(ref, depth + 1))
        if result:
            resolved[name] = result
        return result

    for name in raw:
        resolve(name)
    return resolved


def _loc_from_tokens(toks: list[Token], resolve) -> str | None:
    for k, t in enumerate(toks):
        # "file":line:col
        if (t.kind == "string" and k + 2 < len(toks) and toks[k + 1].text == ":"
                and toks[k + 2].kind == "word" and toks[k + 2].text.isdigit()):
            return f"{t.text.rsplit('/', 1)[-1]}:{toks[k + 2].text}"
        if t.kind == "word" and t.text.startswith("#loc"):
            got = resolve(t.text)
            if got:
                return got
    return None


def loc_file_line(loc: str) -> str | None:
    """``file.py:LINE`` of a printed, alias-free location (``loc(callsite("x"("f.py":3:1) at ...))``)."""
    return _loc_from_tokens(tokenize_line(loc), lambda ref: None)


def _line_loc(tokens: list[Token], locs: dict[str, str]) -> str | None:
    for k, t in enumerate(tokens):
        if t.kind == "word" and t.text == "loc" and k + 1 < len(tokens) and tokens[k + 1].text == "(":
            return _loc_from_tokens(tokens[k + 2:], lambda ref: locs.get(ref))
    return None


def _textual_site(tokens: list[Token], line: str, lineno: int, where: str, locs: dict[str, str],
                  block: tuple, func_info: tuple[str, bool, bool]) -> RecordSite:
    """The record site of a textual ``kperf.record start|end "name"`` op (or an older Proton form)."""
    op, loc_at = parse_record_line(line, tokens, where)
    loc = (_line_loc(tokens[loc_at:], locs) if loc_at is not None else None) or where
    return RecordSite(RecordOp(op.kind, op.name, None, loc), lineno, block, *func_info, textual=True,
                      loc_start=tokens[loc_at].start if loc_at is not None else None)


def _carrier_site(tokens: list[Token], lineno: int, where: str, locs: dict[str, str], block: tuple,
                  func_info: tuple[str, bool, bool]) -> RecordSite | None:
    """The record site of an inline-asm carrier op, or None when the asm carries no record."""
    string = next((t for t in tokens if t.kind == "string"), None)
    if string is None:
        return None
    op = parse_carrier(string.text, where=where)
    if op is None:
        return None
    loc = _line_loc(tokens, locs) or where
    op = RecordOp(op.kind, op.name, op.scope_id, loc)
    return RecordSite(op, lineno, block, *func_info, textual=False, string_token=string)


def _track_braces(tokens: list[Token], brace_path: list[int], block_label: list[str], serial: int,
                  where: str) -> int:
    """Push/pop the brace stack for the line's braces; return the new brace serial."""
    for t in tokens:
        if t.kind != "punct":
            continue
        if t.text == "{":
            serial += 1
            brace_path.append(serial)
            block_label.append("")
        elif t.text == "}":
            if not brace_path:
                raise KperfError("unbalanced '}': it closes no open region", where=where,
                                 fix="delete the extra '}' or add the '{' it closes")
            brace_path.pop()
            block_label.pop()
    return serial


def scan(text: str, path: str = "<ttgir>") -> ScannedModule:
    """Find every record in a TTGIR module's text, with its block, function and source location."""
    lines = text.splitlines()
    locs = _resolve_locs(lines)
    sites: list[RecordSite] = []
    brace_path: list[int] = []  # stack of opening-brace serials
    block_label: list[str] = [""]  # label of the current block at each depth
    serial = 0
    func, func_is_kernel, func_noinline, func_depth = "", False, False, -1
    for idx, line in enumerate(lines):
        lineno = idx + 1
        stripped = line.lstrip()
        if stripped.startswith("#") or not stripped:
            continue
        tokens = tokenize_line(line, lineno, path)
        if not tokens:
            continue
        words = [t.text for t in tokens if t.kind == "word"]
        if stripped.startswith("^") and tokens[0].kind == "word":
            block_label[-1] = tokens[0].text
        if "tt.func" in words:
            after = words[words.index("tt.func") + 1:]
            func = next((w[1:] for w in after if w.startswith("@")), "?")
            func_is_kernel = "private" not in after[:2]
            func_noinline = "noinline" in words
            func_depth = len(brace_path)
        where = f"{path}:{lineno}"
        block = (tuple(brace_path), block_label[-1])
        func_info = (func, func_is_kernel, func_noinline)
        if tokens[0].text in TEXTUAL_OP_NAMES:
            sites.append(_textual_site(tokens, line, lineno, where, locs, block, func_info))
        elif "tt.elementwise_inline_asm" in words:
            site = _carrier_site(tokens, lineno, where, locs, block, func_info)
            if site is not None:
                sites.append(site)
        serial = _track_braces(tokens, brace_path, block_label, serial, where)
        if func and len(brace_path) <= func_depth:  # the function's body closed on this line
            func, func_is_kernel, func_noinline, func_depth = "", False, False, -1
    return ScannedModule(lines, sites, locs, path)


def kernel_signatures(text: str, path: str = "<ttgir>") -> list[tuple[str, list[str], int]]:
    """``(name, argument types, line)`` of every ``tt.func`` that is not private, in module order.

    Argument types are printed without attributes or locations (``!tt.ptr<f16>``, ``i32``), so a file
    Triton printed and one edited by hand compare equal when their types do.
    """
    lines = text.splitlines()
    out = []
    for idx, line in enumerate(lines):
        if "tt.func" not in line or line.lstrip().startswith(("//", "#")):
            continue
        tokens = tokenize_line(line, idx + 1, path)
        words = [t.text for t in tokens if t.kind == "word"]
        if "tt.func" not in words or "private" in words[words.index("tt.func") + 1:][:1]:
            continue
        k = next((k for k, t in enumerate(tokens) if t.kind == "word" and t.text.startswith("@")), None)
        if k is None:
            continue
        for extra in lines[idx + 1:idx + 200]:  # a hand-wrapped argument list continues on later lines
            if _args_closed(tokens, k + 1):
                break
            tokens += tokenize_line(extra, 0, path)
        out.append((tokens[k].text[1:], _arg_types(tokens, k + 1), idx + 1))
    return out


def _args_closed(tokens: list[Token], at: int) -> bool:
    depth = 0
    for t in tokens[at:]:
        if t.kind == "punct" and t.text in "([{<":
            depth += 1
        elif t.kind == "punct" and t.text in ")]}>":
            depth -= 1
            if depth == 0:
                return True
    return False


def _arg_types(tokens: list[Token], at: int) -> list[str]:
    """The types of the argument list opening at ``tokens[at]`` (``(%a: T {attrs} loc(..), ...)``)."""
    types: list[str] = []
    depth, current, in_type = 0, [], False
    for t in tokens[at:]:
        punct = t.kind == "punct"
        if depth == 1 and punct and t.text in ",)":  # one argument ends
            if current:
                types.append(_type_text(current))
            current, in_type = [], False
            if t.text == ")":
                break
            continue
        if depth == 1 and punct and t.text == ":":
            in_type = True
            continue
        if depth == 1 and (t.text == "{" or t.text == "loc"):
            in_type = False  # the argument's attributes and location follow its type
        if punct and t.text in "([{<":
            depth += 1
        elif punct and t.text in ")]}>":
            depth -= 1
        if in_type:
            current.append(t)
    return types


def _type_text(tokens: list[Token]) -> str:
    out = ""
    for t in tokens:
        out += f'"{t.text}"' if t.kind == "string" else t.text
        if t.text == ",":
            out += " "
    return out


def locations_to_lines(text: str, file: str) -> str:
    """``text`` with each inline ``loc(...)`` replaced by ``loc("file":LINE:COL)`` of its own line.

    MLIR names a verifier error by the op's location; after this it names the op's line in the text,
    which is how ``kperf.ttgir_module`` points such an error at ``file:line``.  ``#locN = ...`` lines stay.
    """
    out = []
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.startswith("#loc") and "loc(" in line:
            for start, end in reversed(_loc_spans(tokenize_line(line, lineno))):
                col = len(line) - len(line.lstrip()) + 1
                line = f"{line[:start]}loc({encode_mlir_string(file)}:{lineno}:{col}){line[end:]}"
        out.append(line)
    return "\n".join(out) + "\n"


def _loc_spans(tokens: list[Token]) -> list[tuple[int, int]]:
    """Column spans of the ``loc(...)`` attributes among a line's tokens."""
    spans, k = [], 0
    while k < len(tokens) - 1:
        if tokens[k].kind == "word" and tokens[k].text == "loc" and tokens[k + 1].text == "(":
            depth, close = 0, len(tokens) - 1
            for j in range(k + 1, len(tokens)):
                if tokens[j].kind == "punct" and tokens[j].text in "()":
                    depth += 1 if tokens[j].text == "(" else -1
                if depth == 0:
                    close = j
                    break
            spans.append((tokens[k].start, tokens[close].end))
            k = close
        k += 1
    return spans


_LOOP_OPS = ("scf.for", "scf.while")


def scanned_record_bound(mod: ScannedModule) -> int | None:
    """The most records one warp can write in one launch, when the text proves it: the number of record
    sites, if none sits inside a loop (``scf.for``, either region of ``scf.while``) or in a function
    other than the kernel (which could be called many times).  None when the count depends on the run."""
    path = mod.path
    if any(not s.func_is_kernel for s in mod.sites):
        return None
    in_loop_lines = set()
    stack: list[bool] = []  # per open brace: does it open a loop body?
    for idx, line in enumerate(mod.lines):
        stripped = line.lstrip()
        if stripped.startswith("#") or not stripped:
            continue
        tokens = tokenize_line(line, idx + 1, path)
        words = {t.text for t in tokens if t.kind == "word"}
        loop_line = any(op in words for op in _LOOP_OPS) or "do" in words
        if any(stack):
            in_loop_lines.add(idx + 1)
        for t in tokens:
            if t.kind == "punct" and t.text == "{":
                stack.append(loop_line)
            elif t.kind == "punct" and t.text == "}" and stack:
                stack.pop()
    if any(s.lineno in in_loop_lines for s in mod.sites):
        return None
    return len(mod.sites)
