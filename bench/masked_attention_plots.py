"""Pictures of the masked-attention traces (no GPU): per-SM timelines of tiles before and after, and work
against time per tile, from the ``tiles_<family>_<schedule>.csv.gz`` files bench/masked_attention.py wrote.

    python3 -m bench.masked_attention_plots DIR/traces --out DIR [--families bigbird,document]

Writes ``timeline_<family>.png`` (one row per SM, one bar per tile coloured by its key blocks; the
unbalanced ``grid`` launch above, ``--after`` below, on one time axis) and ``work_vs_time.png`` (tile
duration against key blocks, every family, ``grid``).  Needs matplotlib (``pip install 'kperf[plot]'``).
"""

from __future__ import annotations

import argparse
import gzip
import pathlib
import sys

import numpy as np


def load_tiles(path: pathlib.Path) -> dict[str, np.ndarray]:
    with gzip.open(path, "rt") as f:
        names = f.readline().strip().split(",")
        data = np.loadtxt(f, delimiter=",", ndmin=2)
    return {n: data[:, i] for i, n in enumerate(names)}


def _timeline(ax, tiles: dict, title: str, norm, cmap) -> None:
    sms = np.unique(tiles["sm"]).astype(int)
    row = np.searchsorted(sms, tiles["sm"].astype(int))
    start, dur = tiles["start_ns"] / 1e3, (tiles["end_ns"] - tiles["start_ns"]) / 1e3
    colors = cmap(norm(tiles["work"]))
    ax.barh(row, dur, left=start, height=0.9, color=colors, linewidth=0)
    end = start + dur
    last = np.zeros(len(sms))
    np.maximum.at(last, row, end)
    ax.axvline(end.max(), color="k", lw=0.8)
    ax.set_title(f"{title}: span {end.max():.0f} us, first SM done at {last.min():.0f} us", fontsize=9)
    ax.set_ylabel("SM")
    ax.set_ylim(-1, len(sms))


def timeline_png(tdir: pathlib.Path, family: str, after: str, out: pathlib.Path) -> str:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import LogNorm
    before = load_tiles(tdir / f"tiles_{family}_grid.csv.gz")
    later = load_tiles(tdir / f"tiles_{family}_{after}.csv.gz")
    norm = LogNorm(vmin=1, vmax=max(before["work"].max(), 2))
    cmap = plt.get_cmap("viridis")
    fig, axes = plt.subplots(2, 1, figsize=(9, 6.5), sharex=True)
    _timeline(axes[0], before, f"{family}, grid (tile order)", norm, cmap)
    _timeline(axes[1], later, f"{family}, {after} (LPT order)", norm, cmap)
    axes[1].set_xlabel("time since the launch's first CTA (us)")
    fig.colorbar(plt.cm.ScalarMappable(norm=norm, cmap=cmap), ax=axes, label="key blocks per tile")
    path = out / f"timeline_{family}.png"
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return str(path)


def scatter_png(tdir: pathlib.Path, families: list[str], out: pathlib.Path) -> str:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6, 4))
    for family in families:
        t = load_tiles(tdir / f"tiles_{family}_grid.csv.gz")
        ax.scatter(t["work"], (t["end_ns"] - t["start_ns"]) / 1e3, s=3, label=family, alpha=0.5)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("key blocks of the tile")
    ax.set_ylabel("tile time (us, kperf 'tile' scope)")
    ax.legend(fontsize=8, markerscale=3)
    path = out / "work_vs_time.png"
    fig.savefig(path, dpi=80, bbox_inches="tight")
    plt.close(fig)
    return str(path)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("traces", help="the traces folder bench/masked_attention.py wrote")
    ap.add_argument("--out", required=True)
    ap.add_argument("--families", default="bigbird,document")
    ap.add_argument("--after", default="persistent_grouped", help="the schedule drawn under grid")
    args = ap.parse_args(argv)
    tdir, out = pathlib.Path(args.traces), pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for family in args.families.split(","):
        print(timeline_png(tdir, family, args.after, out))
    names = (p.name[len("tiles_"):-len("_grid.csv.gz")] for p in tdir.glob("tiles_*_grid.csv.gz"))
    every = sorted(n for n in names if not n.endswith("_lpt"))  # tiles_<family>_lpt_grid: lpt_grid
    print(scatter_png(tdir, every, out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
