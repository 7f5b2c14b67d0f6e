"""A tensor algorithm written as an einsum (``"mk,kn->mn"`` with ``m=8192,n=8192,k=8192``): the problem
that the data-movement bounds (:mod:`.bounds`) search mappings for.

The einsum is all that the bounds need to know of a kernel: which dimensions index which tensor (so
which loops reuse a tensor's tile) and each tensor's size in bytes.  Specs are parsed here, once, and
every mistake is a ``KperfError`` that names the letter or size at fault, so the search itself can
assume a well-formed problem.
"""

from __future__ import annotations

import dataclasses
import math
import re

from kperf.dialect.errors import KperfError

# bytes per element of the dtypes a kernel's tensors are stored in
DTYPE_BYTES = {"fp8": 1, "e4m3": 1, "e5m2": 1, "int8": 1, "fp16": 2, "bf16": 2, "fp32": 4, "tf32": 4,
               "int32": 4, "fp64": 8}
_SPEC = re.compile(r"^\s*([a-z]+(?:\s*,\s*[a-z]+)*)\s*->\s*([a-z]*)\s*$")


def dtype_bytes(dtype: str | int) -> int:
    """Bytes per element of ``dtype`` (a name of :data:`DTYPE_BYTES` or a positive byte count)."""
    if isinstance(dtype, int) and not isinstance(dtype, bool):
        if dtype > 0:
            return dtype
    elif isinstance(dtype, str) and dtype.lower() in DTYPE_BYTES:
        return DTYPE_BYTES[dtype.lower()]
    raise KperfError(f"unknown dtype {dtype!r}", fix=f"use one of {', '.join(DTYPE_BYTES)} or a byte count")


@dataclasses.dataclass(frozen=True)
class Einsum:
    """``inputs -> output`` over named dimensions; every tensor is dense, each element ``bytes`` wide.

    Attributes:
        inputs: the input tensors' index letters, e.g. ``("mk", "kn")``.
        output: the output's letters, e.g. ``"mn"``; a letter in no output is a reduction.
        sizes: ``{letter: extent}`` for every letter.
        bytes: bytes per element of each tensor, inputs then output.
    """

    inputs: tuple[str, ...]
    output: str
    sizes: dict[str, int]
    bytes: tuple[int, ...]

    @property
    def tensors(self) -> tuple[str, ...]:
        return (*self.inputs, self.output)

    @property
    def dims(self) -> tuple[str, ...]:
        """Every letter, in order of first appearance."""
        return tuple(dict.fromkeys("".join(self.tensors)))

    def elements(self, tensor: str) -> int:
        return math.prod(self.sizes[c] for c in tensor)

    @property
    def flops(self) -> int:
        """Multiply-adds counted as two operations, over the whole iteration space."""
        return 2 * math.prod(self.sizes[d] for d in self.dims)

    @property
    def compulsory_bytes(self) -> int:
        """Every input read once and the output written once: no mapping moves less."""
        return sum(self.elements(t) * b for t, b in zip(self.tensors, self.bytes, strict=True))

    def to_json(self) -> dict:
        return {"einsum": f"{','.join(self.inputs)}->{self.output}", "sizes": dict(self.sizes),
                "bytes": list(self.bytes), "flops": self.flops, "compulsory_bytes": self.compulsory_bytes}


def parse_shape(text: str | dict) -> dict[str, int]:
    """``"m=8192,n=8192,k=4096"`` (or a dict) as ``{letter: extent}``."""
    if isinstance(text, dict):
        items = list(text.items())
    else:
        items = []
        for part in filter(None, (p.strip() for p in str(text).split(","))):
            name, eq, value = part.partition("=")
            if not eq:
                raise KperfError(f"--shape: {part!r} is not LETTER=SIZE",
                                 fix="e.g. --shape m=8192,n=8192,k=8192")
            items.append((name.strip(), value.strip()))
    sizes = {}
    for name, value in items:
        try:
            n = int(value)
        except (TypeError, ValueError):
            n = 0
        if not re.fullmatch(r"[a-z]", str(name)) or n < 1:
            raise KperfError(f"--shape: {name}={value} is not a lower-case letter and a positive size",
                             fix="e.g. --shape m=8192,n=8192,k=8192")
        sizes[name] = n
    return sizes


def parse_einsum(spec: str, shape: str | dict, dtype: str | int = "fp16", out_dtype: str | int | None = None
                 ) -> Einsum:
    """The :class:`Einsum` of ``spec`` (``"mk,kn->mn"``) with ``shape`` (``"m=..,n=..,k=.."``)."""
    m = _SPEC.match(spec or "")
    if not m:
        raise KperfError(f"--einsum: cannot read {spec!r}",
                         fix="write inputs and output as index letters, e.g. --einsum mk,kn->mn")
    inputs = tuple(p.strip() for p in m.group(1).split(","))
    output = m.group(2)
    for t in (*inputs, output):
        if len(set(t)) != len(t):
            raise KperfError(f"--einsum: {t!r} repeats a letter (a diagonal), which the bounds do not model",
                             fix="give each dimension of a tensor its own letter")
    loose = set(output) - set("".join(inputs))
    if loose:
        raise KperfError(f"--einsum: output letter(s) {''.join(sorted(loose))} index no input",
                         fix="every output letter must appear in an input")
    sizes = parse_shape(shape)
    used = dict.fromkeys("".join((*inputs, output)))
    missing = [c for c in used if c not in sizes]
    extra = [c for c in sizes if c not in used]
    if missing or extra:
        raise KperfError(f"--shape: {'no size for ' + ','.join(missing) if missing else ''}"
                         f"{'; ' if missing and extra else ''}"
                         f"{'size for unused letter ' + ','.join(extra) if extra else ''}",
                         fix=f"give one size per letter of the einsum: {','.join(f'{c}=N' for c in used)}")
    b, ob = dtype_bytes(dtype), dtype_bytes(out_dtype if out_dtype is not None else dtype)
    return Einsum(inputs, output, {c: sizes[c] for c in used}, (b,) * len(inputs) + (ob,))
