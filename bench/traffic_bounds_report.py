"""Plots and a table from what bench/traffic_bounds.sh measured: each case's measured bytes next to its
data-movement bound curve (runs anywhere; needs matplotlib).

    python3 -m bench.traffic_bounds_report RESULTS_DIR

Reads RESULTS_DIR/<case>.traffic.json; writes RESULTS_DIR/<case>_bounds.png, bounds_table.md and
bounds.json (the bounds' JSON, with each curve), and prints the table.
"""

from __future__ import annotations

import argparse
import json
import pathlib

from kperf.tracing import bounds, traffic
from kperf.tracing.bounds_plot import plot_bounds
from kperf.tracing.traffic_bounds import bounds_table, capacities_of, problem_bound


def _case(path: pathlib.Path, out: pathlib.Path) -> tuple[list[str], dict]:
    data = traffic.load(path)
    caps = capacities_of(data)
    name = path.name.replace(".traffic.json", "")
    (problem,) = data["problems"]
    b = problem_bound(problem, [caps["l2"], caps["smem"]])
    t = bounds_table(data)
    rows = t.rows()
    last = max(r["launch"] for r in rows)  # launches of one kernel measure alike: one point per level
    measured = [(f"measured {r['level']}, launch {r['launch']}", r["capacity_bytes"], r["measured_bytes"])
                for r in rows if r["launch"] == last]
    curves = [b]
    if problem["kind"] == "gemm" and problem["m"] == 8192:  # the Orojenesis comparison: a smaller GEMM
        curves.append(bounds.gemm(2048, 2048, 2048, problem.get("dtype", "fp16")))
    plot_bounds(curves, out / f"{name}_bounds.png", marks={"L2": caps["l2"], "SMEM/SM": caps["smem"]},
                measured=measured, title=f"{b.problem['name']}\nbound and measured on "
                                         f"{data['device']['name']}")
    lines = [f"| {name} | {r['kernel']} {r['launch']} | {r['level']} | {r['capacity_bytes']:,} | "
             f"{r['measured_bytes']:,.0f} | {r['kperf_record_bytes']:,.0f} | {r['bound_bytes']:,.0f} | "
             f"{r['compulsory_bytes']:,.0f} | {r['measured_over_bound']:.2f} | "
             f"{r['measured_flops_per_byte']:,.0f} | "
             f"{r['bound_flops_per_byte']:,.0f} | {r['variant']} |" for r in rows]
    return lines, b.to_json()


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("results")
    out = pathlib.Path(p.parse_args(argv).results)
    head = ["| case | kernel, launch | level | capacity (B) | measured (B) | kperf records (B) | bound (B) | "
            "compulsory (B) | measured / bound | measured FLOP/B | bound FLOP/B | variant |",
            "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    lines, all_json = [], {}
    for path in sorted(out.glob("*.traffic.json")):
        rows, j = _case(path, out)
        lines += rows
        all_json[path.name.replace(".traffic.json", "")] = j
    text = "\n".join(head + lines) + "\n"
    (out / "bounds_table.md").write_text(text)
    (out / "bounds.json").write_text(json.dumps(all_json, indent=1))
    print(text)


if __name__ == "__main__":
    main()
