"""kperf.tracing.write_chrome_trace: valid JSON that chrome://tracing and Perfetto read as intended."""

from __future__ import annotations

import gzip
import io
import json
import time

import numpy as np
import pytest
from reference_encoder import CtaSpec, bulk_buffer, encode

from kperf.dialect.layout import Geometry
from kperf.tracing import decode, pair, write_chrome_trace
from kperf.tracing.flows import FLOW_DTYPE

G0 = 1_700_000_000_000_000_000
CS = 1 << 36


def cta(warps, i, sm, *, t0=0, clock="clock"):
    """A CTA at 2 GHz entering t0 ns after G0; record times are cycles after its entry."""
    cs = CS + 2 * t0
    base = G0 + t0 if clock == "globaltimer" else cs
    scale = 0.5 if clock == "globaltimer" else 1  # globaltimer records are ns
    return CtaSpec(warps=[[(s, e, base + int(t * scale)) for s, e, t in w] for w in warps],
                   sm=sm, ctaid=(i, 0, 0),
                   gtime_start=G0 + t0, clock_start=cs, gtime_end=G0 + t0 + 10_000, clock_end=cs + 20_000)


def nested(scale=1):
    return [(0, False, 10 * scale), (1, False, 100 * scale), (1, True, 2100 * scale), (0, True, 3010 * scale)]


def launch(launch_no=0, *, t0=0, clock="clock", capacity=8, strategy="keep-first", extra=None):
    g = Geometry(2, capacity, clock)
    ctas = [cta([nested(), nested()], 0, sm=12, t0=t0, clock=clock),
            cta([nested(), extra or nested()], 1, sm=3, t0=t0 + 500, clock=clock)]
    return decode(encode(g, strategy, ctas), g, strategy=strategy, launch=launch_no,
                  scopes=["outer", "inner"])


def load(path):
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "rb") as f:
        return json.loads(f.read())


def by_ph(trace, ph):
    return [e for e in trace["traceEvents"] if e["ph"] == ph]


def meta(trace, name):
    return {(e["pid"], e.get("tid")): e["args"]
            for e in trace["traceEvents"] if e["ph"] == "M" and e["name"] == name}


def check_ids(trace):
    pids = {e["pid"] for e in trace["traceEvents"]}
    tids = {e["tid"] for e in trace["traceEvents"] if "tid" in e}
    assert min(pids) >= 0 and min(tids) > max(pids)
    assert not pids & tids, "a tid equal to a pid makes Perfetto merge thread and process"
    return pids, tids


def test_basic_trace(tmp_path):
    d = launch()
    path = tmp_path / "t.json"
    summary = write_chrome_trace(path, d)
    tr = load(path)
    assert tr["displayTimeUnit"] == "ns"
    check_ids(tr)
    # one process per SM, named "SM" with the SM's number as pid: Perfetto shows "SM 12" (name, pid)
    procs = meta(tr, "process_name")
    assert {pid: a["name"] for (pid, _), a in procs.items()} == {12: "SM", 3: "SM"}
    threads = meta(tr, "thread_name")
    tsort = meta(tr, "thread_sort_index")
    names = [threads[k]["name"] for k in sorted(threads, key=lambda k: tsort[k]["sort_index"])]
    assert names == ["CTA 0 (warp 0)", "CTA 0 (warp 1)", "CTA 1 (warp 0)", "CTA 1 (warp 1)"]
    # the threads of CTA 0 live in the process of SM 12
    assert {p for (p, _), a in threads.items() if a["name"].startswith("CTA 0")} == {12}

    xs = by_ph(tr, "X")
    assert len(xs) == 8 == summary["intervals"]
    outer = [e for e in xs if e["name"] == "outer" and e["args"]["cta"] == 0 and e["args"]["warp"] == 0][0]
    # 2 GHz: record at +10 cycles = 5 ns after entry; 3000 cycles = 1.5 us
    assert outer["ts"] == pytest.approx(0.005, abs=1e-9)
    assert outer["dur"] == pytest.approx(1.5, abs=1e-9)
    assert outer["args"] == {"cta": 0, "warp": 0, "scope": 0, "cycles": 3000}
    inner1 = [e for e in xs if e["name"] == "inner" and e["args"]["cta"] == 1][0]
    assert inner1["ts"] == pytest.approx(0.5 + 0.05, abs=1e-9)  # CTA 1 enters 500 ns later
    assert tr["otherData"]["kperf"]["launches"][0]["problems"] == []


def test_ts_has_ns_precision(tmp_path):
    g = Geometry(1, 4, "globaltimer")
    c = CtaSpec(warps=[[(0, False, G0 + 1_234_567), (0, True, G0 + 1_234_568)]], gtime_start=G0,
                clock_start=CS, gtime_end=G0 + 2_000_000, clock_end=CS + 4_000_000)
    d = decode(encode(g, "keep-first", [c]), g, strategy="keep-first")
    buf = io.BytesIO()
    write_chrome_trace(buf, d, ["s"])
    [x] = by_ph(json.loads(buf.getvalue()), "X")
    assert x["ts"] == 1234.567 and x["dur"] == 0.001
    assert "cycles" not in x["args"]  # globaltimer: no cycle counts


def test_warp_names(tmp_path):
    path = tmp_path / "t.json"
    write_chrome_trace(path, launch(), warp_names={0: "producer", 1: "consumer \"1\""})
    names = sorted(a["name"] for a in meta(load(path), "thread_name").values())
    assert names == ['CTA 0 consumer "1" (warp 1)', "CTA 0 producer (warp 0)", 'CTA 1 consumer "1" (warp 1)',
                     "CTA 1 producer (warp 0)"]


def test_scope_names_fallback_and_override(tmp_path):
    path = tmp_path / "t.json"
    write_chrome_trace(path, launch(), {0: "k_loop"})
    assert {e["name"] for e in by_ph(load(path), "X")} == {"k_loop", "scope 1"}


def test_lost_records_are_announced(tmp_path):
    d = launch(capacity=2)  # each warp keeps 2 of 4 records
    assert d.lost_total == 8
    path = tmp_path / "t.json.gz"
    summary = write_chrome_trace(path, d)
    with open(path, "rb") as f:
        assert f.read(2) == b"\x1f\x8b"
    tr = load(path)
    check_ids(tr)
    assert summary["lost_records"] == 8
    notice = [e for e in by_ph(tr, "i") if e.get("s") == "g" and "lost" in e["name"]]
    assert len(notice) == 1 and notice[0]["name"] == "kperf: 8 records lost"
    assert notice[0]["args"]["lost_records"] == 8 and len(notice[0]["args"]["per_warp"]) == 4
    per_thread = [e for e in by_ph(tr, "i") if e.get("s") == "t" and e["name"].startswith("lost ")]
    assert len(per_thread) == 4 and all(e["name"] == "lost 2 records" for e in per_thread)
    assert all(e["args"]["where"] == "after the kept records" for e in per_thread)
    # keep-first kept "S0 S1": both are unmatched starts, shown as instants
    unmatched = [e for e in by_ph(tr, "i") if e["args"].get("unmatched")]
    assert len(unmatched) == 8
    assert {e["name"] for e in unmatched} == {"outer (start, no end)", "inner (start, no end)"}
    assert tr["otherData"]["kperf"]["lost_records"] == 8


def test_problems_are_in_the_trace(tmp_path):
    g = Geometry(1, 4)
    ctas = [cta([nested()], 0, sm=1), CtaSpec(warps=[], zeroed=True)]
    d = decode(encode(g, "keep-first", ctas), g, strategy="keep-first")
    assert d.problems
    path = tmp_path / "t.json"
    write_chrome_trace(path, d)
    tr = load(path)
    [p] = [e for e in by_ph(tr, "i") if "decode problem" in e["name"]]
    assert p["args"]["problems"] == d.problems


def test_several_launches_in_one_file(tmp_path):
    d1 = launch(0, t0=0)
    d2 = launch(1, t0=50_000)  # 50 us later
    path = tmp_path / "t.json"
    write_chrome_trace(path, [d1, d2])
    tr = load(path)
    pids, tids = check_ids(tr)
    assert pids == {3, 12} and len(tids) == 8  # the launches share the SMs' processes; own threads
    threads = meta(tr, "thread_name")
    assert sorted(a["name"] for a in threads.values())[::4] == ["launch 0 CTA 0 (warp 0)",
                                                               "launch 1 CTA 0 (warp 0)"]
    xs = by_ph(tr, "X")
    tid_launch = {t: a["name"].split(" CTA")[0] for (_, t), a in threads.items()}
    t1 = [e["ts"] for e in xs if tid_launch[e["tid"]] == "launch 0"]
    t2 = [e["ts"] for e in xs if tid_launch[e["tid"]] == "launch 1"]
    assert max(t1) < min(t2)
    assert min(t2) - min(t1) == pytest.approx(50.0, abs=1e-6)


def test_raw_interval_arrays_are_placed_one_after_another(tmp_path):
    iv1, _ = pair(launch(0).events)
    iv2, _ = pair(launch(5).events)
    path = tmp_path / "t.json"
    write_chrome_trace(path, [iv1, iv2], ["outer", "inner"])
    tr = load(path)
    check_ids(tr)
    xs = by_ph(tr, "X")
    assert len(xs) == 16
    threads = meta(tr, "thread_name")
    first = [e for e in xs if threads[(e["pid"], e["tid"])]["name"].startswith("launch 0 ")]
    second = [e for e in xs if threads[(e["pid"], e["tid"])]["name"].startswith("launch 5 ")]
    assert len(first) == len(second) == 8
    assert max(e["ts"] + e["dur"] for e in first) < min(e["ts"] for e in second)


def test_events_before_the_first_entry_shift_the_axis(tmp_path):
    """A warp may record before warp 0 reads the header: the trace still starts at ts >= 0."""
    # CTA 1 enters 500 ns after the launch; this record comes 600 ns before that: at -100 ns
    d = launch(extra=[(0, False, -1200), (0, True, 400)])
    assert d.events["time_ns"].min() < 0
    buf = io.BytesIO()
    write_chrome_trace(buf, d)
    xs = by_ph(json.loads(buf.getvalue()), "X")
    assert min(e["ts"] for e in xs) == pytest.approx(0.0, abs=1e-9)
    outer0 = [e for e in xs if e["name"] == "outer" and e["args"]["cta"] == 0 and e["args"]["warp"] == 0][0]
    assert outer0["ts"] == pytest.approx(0.105, abs=1e-9)  # everything moved 100 ns right


def test_chrome_write_throughput(tmp_path):
    g, raw = bulk_buffer(n_ctas=256, num_warps=8, capacity=512)  # 1M events, 524k intervals
    d = decode(raw, g, strategy="keep-first")
    iv, _ = pair(d.events)
    best = float("inf")
    for i in range(2):
        path = tmp_path / f"big{i}.json"
        t = time.perf_counter()
        write_chrome_trace(path, d, ["a", "b", "c", "d"], select="all")
        best = min(best, time.perf_counter() - t)
    rate = len(iv) / best
    print(f"chrome: {rate / 1e6:.2f} M intervals/s ({2 * rate / 1e6:.2f} M events/s)")
    assert rate > 1e6, f"write_chrome_trace at {rate / 1e6:.2f} M intervals/s"
    tr = load(tmp_path / "big1.json")
    xs = by_ph(tr, "X")
    assert len(xs) == len(iv)
    check_ids(tr)


# --------------------------------------------------------------------------- flows


def innermost(xs, pid, tid, ts):
    """The slice that a flow event at ``ts`` on (pid, tid) binds to: of the slices open there
    (start <= ts < end, a slice ending at ts is over), the one that started last, as Perfetto's
    importer and chrome://tracing read it."""
    open_ = [e for e in xs if (e["pid"], e["tid"]) == (pid, tid) and e["ts"] <= ts < e["ts"] + e["dur"]]
    return max(open_, key=lambda e: (e["ts"], -e["dur"]), default=None)


def check_flows(tr, n):
    """Flow v1 events that Perfetto and chrome://tracing read: numeric ids, unique, one "s" and one
    "f" (bound to its enclosing slice) per id, "s" no later than "f", each inside the slice it binds
    to: an issue (tma.load, wgmma) for "s", the completion that waited for it for "f", same CTA."""
    starts, finishes = by_ph(tr, "s"), by_ph(tr, "f")
    assert len(starts) == len(finishes) == n
    for e in starts + finishes:
        assert type(e["id"]) is int and e["cat"] == "flow"
    assert len({e["id"] for e in starts}) == n and {e["id"] for e in starts} == {e["id"] for e in finishes}
    assert all(e["bp"] == "e" for e in finishes)
    xs = by_ph(tr, "X")
    fin = {e["id"]: e for e in finishes}
    complete = {"tma.load": "tma.wait", "wgmma": "wgmma.wait"}
    for s in starts:
        f = fin[s["id"]]
        assert s["name"] == f["name"] and s["ts"] <= f["ts"]
        src, dst = innermost(xs, s["pid"], s["tid"], s["ts"]), innermost(xs, f["pid"], f["tid"], f["ts"])
        assert src is not None and dst is not None, (s, f)
        assert src["name"] == s["name"] and src["ts"] == s["ts"]  # "s" at the issue slice's start
        assert dst["name"] == complete[s["name"]]
        assert dst["ts"] + dst["dur"] - f["ts"] == pytest.approx(0.001, abs=1e-9)  # 1 ns before its end
        assert src["args"]["cta"] == dst["args"]["cta"]
    return starts, finishes


def test_flows_bind_to_issue_and_completion(tmp_path):
    import known_profiles as kp

    d, flows = kp.with_flows()
    summary = write_chrome_trace(tmp_path / "t.json", d, flows=flows)
    tr = load(tmp_path / "t.json")
    assert summary["flows"] == len(flows) == 15
    starts, finishes = check_flows(tr, 15)
    # 4 of each CTA's 5 completions end where the next scope starts: "f" is 1 ns inside its own slice
    xs = by_ph(tr, "X")
    starts_at = {(e["tid"], round(e["ts"] * 1000)) for e in xs}  # (thread, start ns)
    abutted = [f for f in finishes if (f["tid"], round(f["ts"] * 1000) + 1) in starts_at]
    assert len(abutted) == 12
    # the issue and completion times are those of the flows (CTA 0 enters at 0)
    cta0_threads = {k for k, a in meta(tr, "thread_name").items() if a["name"].startswith("CTA 0 ")}
    fin = {f["id"]: f["ts"] for f in finishes}
    cta0 = sorted((s["ts"], fin[s["id"]]) for s in starts if (s["pid"], s["tid"]) in cta0_threads)
    assert cta0 == pytest.approx([(0.1, 0.399), (0.3, 0.599), (0.4, 0.799), (0.5, 0.899), (0.6, 0.799)],
                                 abs=1e-9)


def test_flow_ids_are_unique_across_launches_and_follow_the_subset(tmp_path):
    import known_profiles as kp

    (a, fa), (b, fb) = kp.with_flows(launch=0), kp.with_flows(launch=1)
    path = tmp_path / "t.json"
    assert write_chrome_trace(path, [a, b], flows={0: fa, 1: fb})["flows"] == 30
    starts, _ = check_flows(load(path), 30)
    assert sorted(e["id"] for e in starts) == list(range(1, 31))
    # a subset of the CTAs keeps the flows of those CTAs only
    summary = write_chrome_trace(path, [a, b], flows=[fa, fb], select="ctas:1")
    tr = load(path)
    assert summary["flows"] == 10
    starts, _ = check_flows(tr, 10)
    threads = meta(tr, "thread_name")
    assert {threads[(e["pid"], e["tid"])]["name"] for e in starts} == {
        f"launch {n} CTA 1 {role}" for n in (0, 1) for role in ("producer (warp 0)", "consumer (warp 4)")}


def test_flows_outside_the_trace_are_left_out(tmp_path):
    d = launch()
    flows = np.zeros(3, FLOW_DTYPE)
    flows[0] = (0, 0, 5.0, 1, 1505.0, 1)  # warp 0's outer starts at 5 ns, warp 1's outer ends at 1505
    flows[1] = (7, 0, 1.0, 1, 2.0, 0)  # a CTA not in the launch
    flows[2] = (1, 0, np.nan, 1, 2.0, 0)  # no time
    buf = io.BytesIO()
    assert write_chrome_trace(buf, d, flows=flows)["flows"] == 1
    tr = json.loads(buf.getvalue())
    [s], [f] = by_ph(tr, "s"), by_ph(tr, "f")
    assert (s["id"], s["name"], s["ts"]) == (1, "inner", 0.005)
    assert f["id"] == 1 and f["ts"] == pytest.approx(1.504, abs=1e-9)  # 1 ns inside outer, which ends there
    assert innermost(by_ph(tr, "X"), f["pid"], f["tid"], f["ts"])["name"] == "outer"


def test_processes_busiest_sm_first_and_grid_coordinates(tmp_path):
    """SMs are listed busiest first, ties by number (Perfetto orders JSON processes by slice count, and
    by first appearance on ties: the metadata comes in that order); a 2-D grid's CTAs carry (x,y,z)."""
    path = tmp_path / "t.json"
    write_chrome_trace(path, launch())  # 4 intervals on each SM: by number
    tr = load(path)
    assert [e["pid"] for e in tr["traceEvents"] if e["name"] == "process_name"] == [3, 12]
    assert {p: a["sort_index"] for (p, _), a in meta(tr, "process_sort_index").items()} == {3: 0, 12: 1}
    write_chrome_trace(path, launch(extra=[(0, False, 10), (0, True, 3010)]))  # SM 3: 3 intervals
    tr = load(path)
    assert [e["pid"] for e in tr["traceEvents"] if e["name"] == "process_name"] == [12, 3]
    g = Geometry(1, 8, "clock")
    specs = [cta([nested()], 0, sm=1), cta([nested()], 1, sm=2)]
    specs[1].ctaid = (1, 2, 0)
    d = decode(encode(g, "keep-first", specs), g, strategy="keep-first")
    write_chrome_trace(path, d, warp_names=["producer"])
    names = sorted(a["name"] for a in meta(load(path), "thread_name").values())
    assert names == ["CTA 0 (0,0,0) producer (warp 0)", "CTA 1 (1,2,0) producer (warp 0)"]


def test_launch_args_on_the_launch_and_in_other_data(tmp_path):
    """Numbers of a launch as a whole (kperf ncu's traffic): a global instant at the launch's start and
    otherData.kperf.launches[i].args; missing numbers left out, whole floats written as integers."""
    a, b = launch(0), launch(1, t0=20_000)
    args = {1: {"dram_read_bytes": np.float64(1.1e9), "l2_hit_pct": 90.5, "ncu_id": np.int64(7),
                "l2_bytes": float("nan"), "note": None}}
    path = tmp_path / "t.json"
    write_chrome_trace(path, [a, b], launch_args=args, launch_args_name="memory traffic (ncu)")
    tr = load(path)
    check_ids(tr)
    infos = tr["otherData"]["kperf"]["launches"]
    want = {"dram_read_bytes": 1_100_000_000, "l2_hit_pct": 90.5, "ncu_id": 7}
    assert "args" not in infos[0] and infos[1]["args"] == want
    [ev] = [e for e in tr["traceEvents"] if e["name"] == "memory traffic (ncu)"]
    assert (ev["ph"], ev["s"], ev["args"]) == ("i", "g", want)
    assert isinstance(ev["args"]["dram_read_bytes"], int)
    assert ev["ts"] == pytest.approx(infos[1]["trace_offset_ns"] / 1000) and infos[1]["trace_offset_ns"] > 0


def test_launch_info_joins_the_launch_args(tmp_path):
    """A launch's own facts (DecodedLaunch.info) show without the caller passing them: lists as one
    comma-separated string, a name the caller gives winning; a launch without info gets no instant."""
    a, b = launch(0), launch(1, t0=20_000)
    a.info = {"inductor_ops": ["aten.addmm", "aten.relu"], "replay": 3, "cuda_graph": True, "ms": 0.5}
    path = tmp_path / "t.json"
    write_chrome_trace(path, [a, b], launch_args={0: {"replay": "given"}, 1: {"dram_read_bytes": 7}})
    tr = load(path)
    infos = tr["otherData"]["kperf"]["launches"]
    want = {"inductor_ops": "aten.addmm, aten.relu", "replay": "given", "cuda_graph": True, "ms": 0.5}
    assert infos[0]["args"] == want and infos[1]["args"] == {"dram_read_bytes": 7}
    [ev] = [e for e in tr["traceEvents"] if e["name"] == "launch args" and e["ts"] == 0]
    assert ev["args"] == want
    write_chrome_trace(path, [a, b])
    infos = load(path)["otherData"]["kperf"]["launches"]
    assert infos[0]["args"]["replay"] == 3 and "args" not in infos[1]


def test_no_launch_args_writes_the_same_bytes(tmp_path):
    plain, none, other = (tmp_path / f"{n}.json" for n in ("plain", "none", "other"))
    write_chrome_trace(plain, launch())
    write_chrome_trace(none, launch(), launch_args=None)
    write_chrome_trace(other, launch(), launch_args={5: {"dram_read_bytes": 1}})  # no launch 5
    assert plain.read_bytes() == none.read_bytes() == other.read_bytes()
    with pytest.raises(TypeError, match="launch_args"):
        write_chrome_trace(tmp_path / "bad.json", launch(), launch_args={0: 3})
