"""Rebuild the example profiles in this folder from the raw H100 buffers in tests/data/h100/.

    python3 examples/profiles/make_profiles.py

Each ``.kperf`` file holds one launch's profile buffer exactly as the GPU wrote it (re-decoded
whenever it is loaded), compressed; README.md in this folder says which run produced the buffers.
"""

from __future__ import annotations

import json
import pathlib

import numpy as np

from kperf.dialect.layout import Geometry
from kperf.tracing import decode
from kperf.tracing.saved import save_profile

HERE = pathlib.Path(__file__).resolve().parent
RAW = HERE.parents[1] / "tests" / "data" / "h100"
#: profile name -> raw buffer: the same GEMM launch profiled with 1024 and with 64 record slots per warp
PROFILES = {"gemm1024.kperf": "gemm1024_clock.npz", "gemm1024_cap64.kperf": "gemm1024_overflow64.npz"}


def build(name: str, raw: str, out: pathlib.Path = HERE) -> str:
    """Decode one raw buffer and save it as a compressed ``.kperf`` profile; returns its path."""
    z = np.load(RAW / raw)
    info = json.loads(str(z["info"]))
    g = Geometry(info["num_warps"], info["capacity"], info["clock"])
    d = decode(z["buffer"], g, strategy=info["strategy"], n_ctas=info["n_ctas"], scopes=info["scopes"],
               kernel=info["kernel"])
    return save_profile(out / name, [d], device=info["device"], compress=True)


def main() -> None:
    for name, raw in PROFILES.items():
        path = build(name, raw)
        print(f"{path}: {pathlib.Path(path).stat().st_size / 1e3:.0f} kB")


if __name__ == "__main__":
    main()
