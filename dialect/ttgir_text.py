"""A scanner for the parts of TTGIR text that kperf reads: strings, blocks, functions, locations.

Not a general MLIR parser.  It tokenizes string literals properly (so braces and quotes inside asm
strings never confuse it), tracks region nesting and block labels, knows which ``tt.func`` it is in,
resolves ``#locN`` aliases to ``file:line``, and finds every record: carriers
(``tt.elementwise_inline_asm`` whose text is a kperf record) and textual ``kperf.record`` /
``proton.record`` ops written into override files.
"""

from __future__ import annotations

import dataclasses

from .errors import KperfError
from .record import OP_NAMES, RecordOp, parse_carrier

INLINE_ASM_OP = "tt.elementwise_inline_asm"


def decode_mlir_string(body: str) -> str:
    """The value of an MLIR string literal's body (between the quotes): ``\\XX`` hex and ``\\\\``/``\\"``."""
    out = bytearray()
    i = 0
    raw = body.encode("utf-8")
    while i < len(raw):
        c = raw[i]
        if c == 0x5C and i + 1 < len(raw):  # backslash
            nxt = raw[i + 1:i + 3]
            try:
                out.append(int(nxt.decode("ascii"), 16))
                i += 3
                continue
            except (ValueError, UnicodeDecodeError):
                simple = {ord("n"): 10, ord("t"): 9, ord("\\"): 0x5C, ord('"'): 0x22}
                if raw[i + 1] in simple:
                    out.append(simple[raw[i + 1]])
                    i += 2
                    continue
        out.append(c)
        i += 1
    return out.decode("utf-8")


def encode_mlir_string(value: str) -> str:
    """An MLIR string literal (with quotes) for ``value``, escaping as MLIR's printer does."""
    parts = ['"']
    for byte in value.encode("utf-8"):
        ch = chr(byte)
        if ch in '"\\' or byte < 0x20 or byte >= 0x7F:
            parts.append(f"\\{byte:02X}")
        else:
            parts.append(ch)
    parts.append('"')
    return "".join(parts)


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
        first = tokens[0].text
        if first in OP_NAMES:
            where = f"{path}:{lineno}"
            if len(tokens) < 3 or tokens[1].kind != "word" or tokens[2].kind != "string":
                raise KperfError(f"malformed {first} op: {stripped.strip()!r}", where=where,
                                 fix=f'write it as: {first} start "name"   (or end)')
            kind = tokens[1].text
            if kind not in ("start", "end"):
                raise KperfError(f"{first} kind must be 'start' or 'end', got {kind!r}", where=where,
                                 fix=f'write it as: {first} start "name"')
            loc = _line_loc(tokens, locs) or where
            sites.append(RecordSite(RecordOp(kind, tokens[2].text, None, loc), lineno,
                                    (tuple(brace_path), block_label[-1]), func, func_is_kernel,
                                    func_noinline, textual=True))
        elif "tt.elementwise_inline_asm" in words:
            string = next((t for t in tokens if t.kind == "string"), None)
            if string is not None:
                op = parse_carrier(string.text, where=f"{path}:{lineno}")
                if op is not None:
                    loc = _line_loc(tokens, locs) or f"{path}:{lineno}"
                    op = RecordOp(op.kind, op.name, op.scope_id, loc)
                    sites.append(RecordSite(op, lineno, (tuple(brace_path), block_label[-1]), func,
                                            func_is_kernel, func_noinline, textual=False,
                                            string_token=string))
        for t in tokens:
            if t.kind != "punct":
                continue
            if t.text == "{":
                serial += 1
                brace_path.append(serial)
                block_label.append("")
            elif t.text == "}":
                if not brace_path:
                    raise KperfError("unbalanced '}'", where=f"{path}:{lineno}")
                brace_path.pop()
                block_label.pop()
        if func and len(brace_path) <= func_depth:  # the function's body closed on this line
            func, func_is_kernel, func_noinline, func_depth = "", False, False, -1
    return ScannedModule(lines, sites, locs, path)
