"""The pass protocol: a frozen dataclass with a kebab-case ``name``, typed options and ``apply``.

As in xDSL, a pass's options are its dataclass fields: ``kperf-lower-ptx{num-warps=8,clock=clock64}``
sets ``num_warps`` and ``config.clock`` (a field whose type is itself a dataclass, such as
``ProfileConfig``, contributes its fields as options).  Option names are the field names in kebab case;
values are parsed by the field's type (``int``, ``float``, ``bool`` as true/false, ``str``, tuples as
``[a,b]`` or ``a+b``, ``X | None`` with ``none``).  Unknown options and bad values raise ``KperfError``
naming the pass's options.

Every pass has ``apply(module, path=...)`` returning a result object; what ``module`` is depends on
the stage the pass runs at (``INPUT``): TTGIR text (``kperf-materialize``), Triton's MLIR module,
changed in place (``kperf-auto-insert``), or PTX text (``kperf-lower-ptx``).  Text passes also
have ``run_text``, text in and text out, which ``kperf opt`` chains.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any, ClassVar

from kperf.dialect.errors import KperfError

TRUE, FALSE, NONE = ("true", "True", "1"), ("false", "False", "0"), ("none", "None")


@dataclasses.dataclass(frozen=True)
class PassOption:
    """One ``name{option=value}`` option: the field it sets (``("config", "clock")``) and its type."""

    name: str
    path: tuple[str, ...]
    type: Any


class KperfPass:
    """Base of kperf's passes; subclasses are frozen dataclasses and define ``name``, ``INPUT``, ``apply``."""

    name: ClassVar[str]
    INPUT: ClassVar[str]  # what apply() takes: "ttgir" text, an "mlir" module or "ptx" text

    def apply(self, module, path: str = "<input>"):
        raise NotImplementedError

    def run_text(self, text: str, path: str = "<input>") -> str:
        """The pass on text, for ``kperf opt``: the output text."""
        raise KperfError(f"{self.name} works on {self.INPUT}, not on text",
                         fix="run it where that input exists (kperf's stage hook, or `kperf insert`)")

    @classmethod
    def options(cls) -> dict[str, PassOption]:
        """Every option by its kebab-case name."""
        return {o.name: o for o in _field_options(cls, ())}

    @classmethod
    def from_options(cls, values: dict[str, str]) -> KperfPass:
        """The pass with its options parsed from ``name{k=v}`` strings (the rest keep their defaults)."""
        known = cls.options()
        nested: dict[str, Any] = {}
        for key, text in values.items():
            if key not in known:
                raise KperfError(f"unknown option {key!r} of pass {cls.name}",
                                 fix=f"options of {cls.name}: {', '.join(known) or 'none'}")
            opt = known[key]
            slot = nested
            for part in opt.path[:-1]:
                slot = slot.setdefault(part, {})
            slot[opt.path[-1]] = parse_value(text, opt.type, f"{cls.name}{{{key}={text}}}")
        return _build(cls, nested, cls.name)


def _field_options(cls, prefix: tuple[str, ...]) -> list[PassOption]:
    hints = typing.get_type_hints(cls)
    out = []
    for f in dataclasses.fields(cls):
        kind = hints[f.name]
        if dataclasses.is_dataclass(kind):
            out += _field_options(kind, (*prefix, f.name))
        else:
            out.append(PassOption(f.name.replace("_", "-"), (*prefix, f.name), kind))
    return out


def _build(cls, values: dict[str, Any], pass_name: str):
    """``cls(**values)``, nested dataclass fields built from their sub-dicts first."""
    hints = typing.get_type_hints(cls)
    kwargs = {k: _build(hints[k], v, pass_name) if isinstance(v, dict) else v for k, v in values.items()}
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as e:  # a value of the right syntax that the class refuses
        raise KperfError(f"bad options for {pass_name}: {e}") from None


def parse_value(text: str, kind, where: str):
    """``text`` as a value of type ``kind``; a KperfError naming the expected syntax otherwise."""
    args = typing.get_args(kind)
    if typing.get_origin(kind) in (typing.Union, types.UnionType):
        if text in NONE and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return parse_value(text, inner[0], where)
    if kind is tuple or typing.get_origin(kind) is tuple:
        items = text[1:-1] if text.startswith("[") and text.endswith("]") else text
        elem = args[0] if args else str
        parts = (t.strip() for t in items.replace("+", ",").split(","))
        return tuple(parse_value(t, elem, where) for t in parts if t)
    if kind is bool:
        if text not in TRUE + FALSE:
            raise KperfError(f"{where}: expected true or false, got {text!r}", fix="write true or false")
        return text in TRUE
    if kind in (int, float):
        try:
            return int(text, 0) if kind is int else float(text)
        except ValueError:
            expected = "an int" if kind is int else "a number"
            raise KperfError(f"{where}: expected {expected}, got {text!r}",
                             fix=f"give {expected} (`kperf opt --help` lists the passes)") from None
    if kind is str:
        return text
    raise KperfError(f"{where}: options of type {kind} cannot be given as text")
