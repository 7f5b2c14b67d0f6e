"""kperf passes and their registry: ``get_pass("kperf-lower-ptx{num-warps=8,clock=clock64}")``."""

from __future__ import annotations

from kperf.dialect.errors import KperfError


class _TextPass:
    def __init__(self, name: str, options: dict[str, str]):
        self.name, self.options = name, options

    def run(self, text: str, path: str = "<input>") -> str:
        if self.name == "kperf-materialize":
            from .materialize import MaterializePass
            return MaterializePass().apply_text(text, path).text
        from kperf.dialect.options import ProfileConfig
        from .lower_ptx import LowerPtxPass
        opts = dict(self.options)
        num_warps = int(opts.pop("num-warps", 4))
        cfg = ProfileConfig(**{k: (int(v) if k == "capacity" else v) for k, v in opts.items()})
        return LowerPtxPass(cfg, num_warps).apply_text(text).ptx


PASSES = ("kperf-materialize", "kperf-lower-ptx")


def get_pass(spec: str) -> _TextPass:
    """Parse ``name{key=value,...}`` into a runnable pass."""
    name, _, rest = spec.partition("{")
    if name not in PASSES:
        raise KperfError(f"unknown pass {name!r}", fix=f"use one of {', '.join(PASSES)}")
    options = {}
    if rest:
        if not rest.endswith("}"):
            raise KperfError(f"malformed pass options in {spec!r}", fix="write name{key=value,key=value}")
        for item in filter(None, rest[:-1].split(",")):
            k, eq, v = item.partition("=")
            if not eq:
                raise KperfError(f"option {item!r} in {spec!r} has no value")
            options[k.strip()] = v.strip()
    return _TextPass(name, options)
