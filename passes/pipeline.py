"""The pipeline syntax: ``pass-a{key=value,key=[x,y]},pass-b``, split into names and option strings.

Pure syntax: which names and options exist is the registry's business (``kperf.passes``).  Commas
separate passes at the top level and options inside ``{}``; a list value goes in ``[]`` so its commas
stay inside it.
"""

from __future__ import annotations

import dataclasses

from kperf.dialect.errors import KperfError

SYNTAX = "name{key=value,key=value},name"


@dataclasses.dataclass(frozen=True)
class PassSpec:
    name: str
    options: dict[str, str]


def split_top_level(text: str, spec: str) -> list[str]:
    """``text`` split at commas outside ``{}`` and ``[]``."""
    parts, open_, start = [], [], 0
    for i, c in enumerate(text):
        if c in "{[":
            open_.append(c)
        elif c in "}]":
            if not open_ or open_.pop() != "{["["}]".index(c)]:
                raise KperfError(f"unbalanced {c!r} in pass pipeline {spec!r}", fix=f"write {SYNTAX}")
        elif c == "," and not open_:
            parts.append(text[start:i])
            start = i + 1
    if open_:
        raise KperfError(f"unclosed {open_[-1]!r} in pass pipeline {spec!r}", fix=f"write {SYNTAX}")
    return [*parts, text[start:]]


def parse_pass_spec(text: str, spec: str) -> PassSpec:
    """One ``name{key=value,...}``."""
    text = text.strip()
    name, brace, rest = text.partition("{")
    name = name.strip()
    if not name or any(c in name for c in "}[]= "):
        raise KperfError(f"malformed pass {text!r} in pipeline {spec!r}", fix=f"write {SYNTAX}")
    options: dict[str, str] = {}
    if not brace:
        return PassSpec(name, options)
    if not rest.endswith("}"):
        raise KperfError(f"text after the options of {name} in pipeline {spec!r}",
                         fix="end each pass's options with '}' and separate passes with ','")
    for item in split_top_level(rest[:-1], spec):
        if not item.strip():
            continue
        key, eq, value = item.partition("=")
        key = key.strip()
        if not eq or not key:
            raise KperfError(f"option {item.strip()!r} of {name} in pipeline {spec!r} is not key=value",
                             fix=f"write {SYNTAX}")
        if key in options:
            raise KperfError(f"option {key!r} of {name} given twice in pipeline {spec!r}")
        options[key] = value.strip()
    return PassSpec(name, options)


def parse_pipeline_spec(spec: str) -> list[PassSpec]:
    """Every pass of ``spec``, in order."""
    if not spec.strip():
        raise KperfError("empty pass pipeline", fix=f"write {SYNTAX}")
    return [parse_pass_spec(part, spec) for part in split_top_level(spec, spec)]
