"""Measured memory traffic of a kperf profile: Nsight Compute's numbers for each profiled launch, stored in
the saved profile itself (its ``traffic.json`` member, :func:`kperf.tracing.saved.attach_traffic`).

``kperf ncu`` runs a script under ``ncu`` (kperf/ncu.py); this module is the offline half: it reads
ncu's raw CSV page, matches every measured launch to the kperf launch it is (by kernel name and launch
order, :func:`match`), stores and finds the numbers, and turns them into tables.  Inside the ``.kperf``
zip they travel with the profile when it is copied or renamed; storing them rewrites the file but copies
the launches' members byte for byte, and measuring again replaces them.  Profiles measured by an
earlier kperf have them in a side file instead (``profile.kperf`` -> ``profile.traffic.json``), which
:func:`find` still reads when the profile holds none.

Matching: for each kernel name, ncu's launches whose grid has the profiled launch's CTA count, in
launch order, pair with the profile's launches of that name in launch order.  When ncu saw more such
launches than kperf profiled (a plain reference run of the same kernel, an autotuner's timing runs),
the last ones pair (those runs come first) and the others are listed as unmatched; the rule and every
unmatched launch are reported, never hidden.
"""

from __future__ import annotations

import csv
import datetime
import io
import json
import math
import os
import re
import zipfile
from collections.abc import Sequence

import numpy as np

from kperf.dialect.errors import KperfError
from kperf.dialect.layout import Geometry

from .atomic import atomic_file
from .saved import SUFFIX, TRAFFIC, attach_traffic, read_traffic
from .saved_checks import TRAFFIC_FORMAT, TRAFFIC_VERSION, check_traffic, traffic_error
from .tables import Table

FORMAT = TRAFFIC_FORMAT
VERSION = TRAFFIC_VERSION

# the memory-workload metrics kperf asks ncu for (names as `ncu --query-metrics` lists them, with rollup)
DRAM_READ, DRAM_WRITE = "dram__bytes_read.sum", "dram__bytes_write.sum"
L2_BYTES, L2_FROM_SM = "lts__t_bytes.sum", "lts__t_sectors_srcunit_tex.sum"
SM_READ, SM_WRITE = "l1tex__m_xbar2l1tex_read_bytes.sum", "l1tex__m_l1tex2xbar_write_bytes.sum"
METRICS = (DRAM_READ, DRAM_WRITE, L2_BYTES, L2_FROM_SM, SM_READ, SM_WRITE, "lts__t_sector_hit_rate.pct",
           "l1tex__t_sector_hit_rate.pct", "l1tex__data_pipe_lsu_wavefronts_mem_shared.sum",
           "smsp__sass_inst_executed_op_shared_ld.sum", "gpu__time_duration.sum", "launch__grid_size",
           "launch__block_size", "launch__registers_per_thread", "launch__shared_mem_per_block")
# what ncu's raw page tells of the device, kept beside the requested metrics
DEVICE = {"device__attribute_l2_cache_size": "l2_bytes",
          "device__attribute_max_shared_memory_per_multiprocessor": "smem_per_sm_bytes",
          "device__attribute_multiprocessor_count": "sms"}
_UNIT_SCALE = {"byte": 1, "kbyte": 1e3, "mbyte": 1e6, "gbyte": 1e9, "tbyte": 1e12, "nsecond": 1,
               "usecond": 1e3, "msecond": 1e6, "second": 1e9}
_ID_COLUMNS = {"ID": "id", "Kernel Name": "kernel", "Grid Size": "grid", "Block Size": "block",
               "Device": "device", "Process ID": "pid"}


def sidecar_path(profile: str | os.PathLike) -> str:
    """Where an earlier kperf ncu put a saved profile's traffic: ``run.kperf`` -> ``run.traffic.json``."""
    p = os.fspath(profile)
    return (p[: -len(".kperf")] if p.endswith(".kperf") else p) + ".traffic.json"


def _number(text: str) -> float | None:
    """A number of ncu's page; None for none (``n/a``, empty, ``nan``)."""
    t = (text or "").strip().replace(",", "")
    try:
        v = float(t)
    except ValueError:
        return None
    return v if math.isfinite(v) else None


def _triple(text: str) -> list[int] | None:
    nums = [int(x) for x in re.findall(r"\d+", text or "")]
    return nums[:3] if nums else None


def parse_raw_csv(text: str) -> tuple[list[dict], dict[str, str]]:
    """ncu's ``--csv --page raw`` output as one dict per launch (ids, kernel, grid, ``metrics``), and units.

    Lines before the header (``==PROF==`` messages, the script's output) are skipped; values in
    scaled units (``Mbyte``, ``usecond``) are brought to bytes and nanoseconds."""
    lines = text.splitlines()
    start = next((i for i, ln in enumerate(lines) if ln.startswith('"ID"')), None)
    if start is None:
        raise KperfError("ncu's output holds no raw page (no line starting with \"ID\")",
                         fix="check that ncu profiled at least one kernel (--kernels matches its name?)")
    rows = list(csv.reader(io.StringIO("\n".join(lines[start:]))))
    head, units, data = rows[0], rows[1] if len(rows) > 1 else [], rows[2:]
    if units and _number(units[0]) is not None:  # no units row
        data, units = rows[1:], [""] * len(head)
    out, unit_of = [], {}
    for row in data:
        if len(row) != len(head):
            continue
        rec: dict = {"metrics": {}}
        for name, unit, value in zip(head, units, row, strict=True):
            if name in _ID_COLUMNS:
                rec[_ID_COLUMNS[name]] = value
            elif "__" in name:
                v = _number(value)
                scale = _UNIT_SCALE.get(unit.strip().lower(), 1)
                rec["metrics"][name] = None if v is None else v * scale
                unit_of[name] = "byte" if unit.strip().lower().endswith("byte") else \
                    "nsecond" if unit.strip().lower().endswith("second") else unit.strip()
        rec["id"] = int(_number(rec.get("id", "")) or 0)
        rec["grid"], rec["block"] = _triple(rec.get("grid", "")), _triple(rec.get("block", ""))
        rec["kernel"] = base_name(rec.get("kernel", ""))
        out.append(rec)
    return out, unit_of


def base_name(kernel: str) -> str:
    """A kernel's function name without arguments or a return type (``void f<int>(float*)`` -> ``f``)."""
    k = re.sub(r"\(.*$", "", kernel.strip())
    k = re.sub(r"<.*>$", "", k)
    return k.split()[-1] if k.split() else kernel


def _ctas(grid: Sequence[int] | None) -> int | None:
    return int(np.prod(grid)) if grid else None


def match(ncu_rows: list[dict], launches: list[dict]) -> dict:
    """Pair ncu's launches with the profile's (manifest entries: ``launch``, ``kernel``, ``n_ctas``).

    Returns ``{"pairs": [(launch entry, ncu row)], "unmatched_ncu": [...], "unmatched_profile": [...],
    "notes": [...]}`` (see the module docstring for the rule)."""
    pairs, un_ncu, un_prof, notes = [], [], [], []
    names = list(dict.fromkeys(e["kernel"] for e in launches))
    for name in names:
        mine = sorted((e for e in launches if e["kernel"] == name), key=lambda e: e["launch"])
        theirs = sorted((r for r in ncu_rows if r["kernel"] == name), key=lambda r: r["id"])
        ctas = {e["n_ctas"] for e in mine}
        fits = [r for r in theirs if _ctas(r.get("grid")) in ctas or r.get("grid") is None]
        un_ncu += [dict(r, reason="grid differs from every profiled launch") for r in theirs if r not in fits]
        if len(fits) > len(mine):
            extra = fits[: len(fits) - len(mine)]
            notes.append(f"{name}: ncu measured {len(fits)} launches, kperf profiled {len(mine)}; the last "
                         f"{len(mine)} are matched (ncu IDs {', '.join(str(r['id']) for r in extra)} were "
                         "earlier plain launches)")
            un_ncu += [dict(r, reason="an earlier launch kperf did not profile") for r in extra]
            fits = fits[len(extra):]
        elif len(fits) < len(mine):
            notes.append(f"{name}: kperf profiled {len(mine)} launches, ncu measured {len(fits)}; "
                         f"launches {', '.join(str(e['launch']) for e in mine[len(fits):])} have no numbers")
            un_prof += [e["launch"] for e in mine[len(fits):]]
        pairs += list(zip(mine, fits, strict=False))
    un_ncu += [dict(r, reason="kernel not in the profile") for r in ncu_rows if r["kernel"] not in names]
    return {"pairs": pairs, "unmatched_ncu": un_ncu, "unmatched_profile": un_prof, "notes": notes}


def build(manifest: dict, ncu_rows: list[dict], units: dict, *, ncu: dict | None = None,
          device: dict | None = None, problems: list[dict] | None = None) -> dict:
    """The measured traffic of a profile (what :func:`save` stores in it) from its manifest and ncu's rows
    (``parse_raw_csv``)."""
    entries = [{"launch": e["launch"], "kernel": e.get("kernel") or "kernel", "n_ctas": e["n_ctas"],
                "record_bytes": record_bytes(e)} for e in manifest["launches"]]
    m = match(ncu_rows, entries)
    wanted = set((ncu or {}).get("metrics") or METRICS)
    device = dict(device or {"name": manifest.get("device")})
    for r in ncu_rows[:1]:
        for name, key in DEVICE.items():
            if r["metrics"].get(name) and key not in device:
                device[key] = int(r["metrics"][name])
    return {"format": FORMAT, "version": VERSION,
            "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
            "ncu": ncu or {}, "device": device, "units": {k: v for k, v in units.items() if k in wanted},
            "launches": [{"launch": e["launch"], "kernel": e["kernel"], "ncu_id": r["id"], "grid": r["grid"],
                          "block": r["block"], "kperf_record_bytes": e["record_bytes"],
                          "metrics": {k: v for k, v in r["metrics"].items() if k in wanted}}
                         for e, r in m["pairs"]],
            "unmatched_ncu": [{"ncu_id": r["id"], "kernel": r["kernel"], "reason": r["reason"]}
                              for r in m["unmatched_ncu"]],
            "unmatched_profile": m["unmatched_profile"], "notes": m["notes"], "problems": problems or []}


def record_bytes(entry: dict) -> int | None:
    """Bytes a profiled launch's kperf records add to its stores: its events, CTA headers and counts
    (what the plain kernel would not write); None when the manifest entry does not say."""
    try:
        g = Geometry.from_json(entry["geometry"])
        return int(entry["n_events"]) * g.record_bytes + int(entry["n_ctas"]) * g.records_offset
    except (KeyError, TypeError, ValueError):
        return None


def save(path: str | os.PathLike, data: dict) -> str:
    """Store ``data`` (:func:`build`'s) in the saved profile ``path`` (a ``.kperf`` file: its
    ``traffic.json`` member), or write it as a JSON file of its own (any other path)."""
    p = os.fspath(path)
    if _is_profile(p):
        return attach_traffic(p, data)
    with atomic_file(p, "w", encoding="utf-8") as f:
        json.dump(check_traffic(p, data), f, indent=1)
    return p


def _in_folder(path: str | os.PathLike) -> str:
    p = os.fspath(path)
    return os.path.join(p, "profile" + SUFFIX) if os.path.isdir(p) else p


def _is_profile(p: str) -> bool:
    return p.endswith(SUFFIX) or (os.path.isfile(p) and zipfile.is_zipfile(p))


def find(path: str | os.PathLike) -> dict | None:
    """The measured traffic of a saved profile (or of the ``profile.kperf`` in a folder), checked: the
    profile's ``traffic.json`` member, else the side file an earlier kperf ncu wrote next to it; None when
    there is neither.  A ``.json`` path (``x.traffic.json``) is read as a traffic file of its own."""
    p = _in_folder(path)
    if p.endswith(".json"):
        return _read_file(p) if os.path.exists(p) else None
    if os.path.exists(p) and _is_profile(p):  # another kind of file holds no member (its side file may)
        data = read_traffic(p)
        if data is not None:
            return data
    side = sidecar_path(p)
    return _read_file(side) if os.path.isfile(side) else None


def load(path: str | os.PathLike) -> dict:
    """:func:`find`'s traffic; a KperfError naming where it looked when there is none."""
    data = find(path)
    if data is not None:
        return data
    p = _in_folder(path)
    where = f"at {p}"
    if not p.endswith(".json"):
        inside = f"{p} has no {TRAFFIC} member" if os.path.exists(p) else f"there is no {p}"
        where = f"for {p}: {inside}, and no {sidecar_path(p)} beside it"
    raise KperfError(f"no measured traffic {where}",
                     fix="measure it: kperf ncu OUT -- script.py (stores it in OUT/profile.kperf)")


def _read_file(p: str) -> dict:
    try:
        with open(p, encoding="utf-8") as f:
            data = json.load(f)
    except RecursionError:
        raise traffic_error(p, "it nests too deeply to be measured traffic") from None
    except (OSError, ValueError) as e:
        raise traffic_error(p, f"cannot read it ({e})") from None
    return check_traffic(p, data)


def _metric(launch: dict, name: str) -> float:
    v = launch["metrics"].get(name)
    return float("nan") if v is None else float(v)


def l2_sm_bytes(launch: dict) -> float:
    """Bytes between L2 and the SMs: read into L1TEX/shared memory (TMA copies too) plus written back;
    all L2 requests where ncu lacks those counters."""
    read, write = _metric(launch, SM_READ), _metric(launch, SM_WRITE)
    if read != read:
        return _metric(launch, L2_BYTES)
    return read + (write if write == write else 0.0)


def trace_args(data: dict) -> dict[int, dict]:
    """Per launch number, the measured numbers a trace shows on the launch (the writers' ``launch_args``,
    :mod:`.launch_args`; ``kperf export``/``view`` add the bounds, :mod:`.traffic_trace`); names end in
    their unit."""
    out = {}
    for x in data["launches"]:
        args = {"ncu_id": x["ncu_id"], "dram_read_bytes": _metric(x, DRAM_READ),
                "dram_write_bytes": _metric(x, DRAM_WRITE), "l2_bytes": _metric(x, L2_BYTES),
                "l2_sm_bytes": l2_sm_bytes(x), "l2_hit_pct": _metric(x, "lts__t_sector_hit_rate.pct"),
                "kperf_record_bytes": x.get("kperf_record_bytes")}
        out[int(x["launch"])] = {k: v for k, v in args.items() if v is not None and v == v}
    return out


def traffic_table(data: dict) -> Table:
    """One row per matched launch: DRAM bytes read and written, L2 traffic and hit rates, shared memory."""
    ls = data["launches"]
    col = lambda name, f=1.0: np.array([_metric(x, name) * f for x in ls], dtype=np.float64)  # noqa: E731
    t = Table("traffic", "Measured memory traffic (Nsight Compute), per profiled launch", {
        "kernel": np.array([x["kernel"] for x in ls], dtype=object),
        "launch": np.array([x["launch"] for x in ls], dtype=np.int64),
        "ncu_id": np.array([x["ncu_id"] for x in ls], dtype=np.int64),
        "dram_read_bytes": col(DRAM_READ), "dram_write_bytes": col(DRAM_WRITE),
        "l2_bytes": col(L2_BYTES), "l2_sm_bytes": np.array([l2_sm_bytes(x) for x in ls]),
        "kperf_record_bytes": np.array([x.get("kperf_record_bytes") or 0 for x in ls], dtype=np.float64),
        "l2_hit_frac": col("lts__t_sector_hit_rate.pct", 0.01),
        "l1_hit_frac": col("l1tex__t_sector_hit_rate.pct", 0.01),
        "smem_wavefronts": col("l1tex__data_pipe_lsu_wavefronts_mem_shared.sum"),
        "time_ns": col("gpu__time_duration.sum")})
    t.notes += list(data.get("notes", []))
    if data.get("unmatched_ncu"):
        t.notes.append(f"{len(data['unmatched_ncu'])} ncu launches matched no profiled launch (in the file's "
                       "unmatched_ncu)")
    return t
