"""Liger-Kernel's tests plain and under kperf (bench/liger_suite.sh): per-test outcomes of both runs, the
tests whose outcome differs, and each of those run again alone, plain and under kperf, one after the
other (the suite runs both at once, and an autotuned kernel's numerics may follow the config its timing
runs pick under that contention): a difference kperf causes comes back every time.

    python3 -m bench.liger_compare OUT [--rerun N]   (OUT: liger_suite.sh's folder; from Liger's checkout)
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import xml.etree.ElementTree as ET

OUTCOMES = ("passed", "failed", "skipped")


def node_id(classname: str, name: str) -> str:
    """JUnit's ``test.transformers.test_swiglu`` + ``test_x[a]`` ->
    ``test/transformers/test_swiglu.py::test_x[a]`` (the form the verbose log prints, so a run with XML
    and one cut off compare)."""
    return f"{classname.replace('.', '/')}.py::{name}"


def outcomes(out: str, run: str) -> tuple[dict[str, str], bool]:
    """Per test: passed/failed/skipped, over the run's parts (``{run}.*`` for one pytest over every file,
    ``{run}_<name>.*`` for one per test file); each part from its JUnit XML, or from its log's verbose
    lines when the time limit stopped pytest before it wrote the XML (then the tests it never finished are
    missing, and the run is not complete)."""
    res: dict[str, str] = {}
    whole = True
    for part in _parts(out, run):
        got, done = _part_outcomes(os.path.join(out, part))
        res.update(got)
        whole = whole and done
    return res, whole


def _parts(out: str, run: str) -> list[str]:
    names = {os.path.splitext(f)[0] for f in os.listdir(out) if f.endswith((".xml", ".log"))}
    return sorted(n for n in names if n == run or n.startswith(f"{run}_") and "failures" not in n)


def _interrupted(log: str) -> bool:
    """Whether pytest's log says a time limit's SIGINT stopped it (its XML then holds what finished)."""
    if not os.path.exists(log):
        return False
    with open(log, errors="replace") as f:
        # pytest's banner of an interrupted run: Ctrl-C / SIGINT, or SIGTERM under `kperf run`
        return any(re.match(r"!{3,} .*(KeyboardInterrupt|Terminated) !{3,}", line) for line in f)


def _part_outcomes(stem: str) -> tuple[dict[str, str], bool]:
    res: dict[str, str] = {}
    if os.path.exists(f"{stem}.xml"):
        for case in ET.parse(f"{stem}.xml").getroot().iter("testcase"):
            if not case.get("name"):  # the test a time limit interrupted (pytest still writes the XML)
                continue
            kinds = {child.tag for child in case}
            res[node_id(case.get("classname", ""), case.get("name", ""))] = (
                "failed" if kinds & {"failure", "error"} else "skipped" if "skipped" in kinds else "passed")
        return res, not _interrupted(f"{stem}.log")
    with open(f"{stem}.log", errors="replace") as f:
        for line in f:
            m = re.match(r"(test/\S+::\S+) (PASSED|FAILED|ERROR|SKIPPED)", line)
            if m:
                res[m.group(1)] = {"ERROR": "failed"}.get(m.group(2), m.group(2).lower())
    return res, False


def compare(out: str) -> dict:
    (plain, plain_whole), (prof, prof_whole) = outcomes(out, "plain"), outcomes(out, "kperf")
    both = plain.keys() & prof.keys()  # a run cut off by the time limit: compare what both finished

    def count(r):
        return {k: sum(1 for v in r.values() if v == k) for k in OUTCOMES}
    return {"plain": count(plain), "kperf": count(prof),
            "complete": {"plain": plain_whole, "kperf": prof_whole},
            "compared": len(both), "differing_tests": sorted(k for k in both if plain[k] != prof[k]),
            "outcomes": {k: [plain[k], prof[k]] for k in sorted(both) if plain[k] != prof[k]},
            "only_one_finished": sorted((plain.keys() | prof.keys()) - both),
            "exit_statuses_differ": exits_differ(out)}


def exits_differ(out: str) -> dict[str, list[int]]:
    """Test files whose pytest exited with another status under ``kperf run`` than plain (from
    liger_suite.sh's ``times.txt``): ``kperf run`` must keep the program's status."""
    path = os.path.join(out, "times.txt")
    if not os.path.exists(path):
        return {}
    seen: dict[str, dict[str, int]] = {}
    with open(path) as f:
        for line in f:
            m = re.match(r"(plain|kperf run) (\S+): exit (\d+)", line)
            if m:
                seen.setdefault(m.group(2), {})[m.group(1)] = int(m.group(3))
    return {n: [w["plain"], w["kperf run"]] for n, w in sorted(seen.items())
            if len(w) == 2 and w["plain"] != w["kperf run"]}


def rerun(tests: list[str], out: str, times: int, timeout: float = 240.0) -> list[dict]:
    """Each differing test alone, plain then under ``kperf run``, ``times`` times: the outcomes."""
    rows = []
    for i in range(times):
        for how, cmd in (("plain", [sys.executable, "-m", "pytest"]),
                         ("kperf", ["kperf", "run", "--auto", "kernel", "--max-launches", "2", "--out",
                                    os.path.join(out, f"rerun_kperf_{i}"), "-m", "pytest"])):
            for t in tests:
                try:
                    p = subprocess.run([*cmd, "-q", "-p", "no:cacheprovider", t], capture_output=True,
                                       text=True, timeout=timeout)
                    result = {0: "passed", 1: "failed", 5: "not collected"}.get(p.returncode,
                                                                                f"exit {p.returncode}")
                except subprocess.TimeoutExpired:
                    result = "time limit"
                rows.append({"test": t, "run": how, "round": i, "result": result})
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out")
    ap.add_argument("--rerun", type=int, default=2, help="rounds of the differing tests alone (0: none)")
    args = ap.parse_args(argv)
    summary = compare(args.out)
    if summary["differing_tests"] and args.rerun:
        summary["reruns"] = rerun(summary["differing_tests"], args.out, args.rerun)
    with open(os.path.join(args.out, "liger_summary.json"), "w") as f:
        json.dump(summary, f, indent=1)
    diff = summary["differing_tests"]
    print("plain", summary["plain"], "| kperf", summary["kperf"], "| complete", summary["complete"],
          "| compared", summary["compared"], "| differing", len(diff), diff[:10],
          "| exit statuses differ (plain, kperf)", summary["exit_statuses_differ"])
    for r in summary.get("reruns", []):
        print(f"  alone, round {r['round']}: {r['run']:5} {r['result']:12} {r['test']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
