"""MLIR string literals: the value of one, and one for a value, escaped as MLIR's printer does.

Carriers hold their PTX text in such a literal (``"// kperf.record start \\22load\\22\\0A..."``):
``kperf.dialect.record`` writes them, ``kperf.dialect.ttgir_text`` reads them.
"""

from __future__ import annotations


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
