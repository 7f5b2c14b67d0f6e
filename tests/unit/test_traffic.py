"""Measured traffic of a profile (kperf.tracing.traffic, kperf ncu / traffic / bounds commands) on a
raw CSV page shaped as Nsight Compute writes it: launches matched to the profile, the numbers stored in
the profile (and an earlier kperf's side file, still read), the tables, the bounds next to the measured
bytes, and the errors."""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess

import numpy as np
import pytest

from kperf.cli_bounds import add_bounds_commands, parse_size
from kperf.dialect.errors import KperfError
from kperf.ncu import _check, choose_metrics, find_ncu
from kperf.tracing import bounds, traffic
from kperf.tracing.traffic_bounds import bounds_table, problem_from

HEAD = ('"ID","Process ID","Process Name","Host Name","Kernel Name","Context","Stream","Block Size",'
        '"Grid Size",'
        '"Device","CC","dram__bytes_read.sum","dram__bytes_write.sum","gpu__time_duration.sum",'
        '"lts__t_bytes.sum","lts__t_sector_hit_rate.pct","lts__t_sectors_srcunit_tex.sum",'
        '"l1tex__m_xbar2l1tex_read_bytes.sum","l1tex__m_l1tex2xbar_write_bytes.sum",'
        '"device__attribute_l2_cache_size"')
UNITS = '"","","","","","","","","","","","byte","Mbyte","usecond","byte","%","sector","byte","byte","byte"'


def _row(i, kernel, grid, read, write_mb, us, sectors):
    return (f'"{i}","7","python3","h","{kernel}","1","7","(256, 1, 1)","({grid}, 1, 1)","0","9.0",'
            f'"{read:,}","{write_mb}","{us}","9,000,000,000","90.5","{sectors}","17,179,869,184",'
            f'"134,217,728","52,428,800"')


RAW = "\n".join(["==PROF== Connected to process 7", "some output of the script", HEAD, UNITS,
                 _row(0, "distribution_elementwise_grid_stride_kernel", 1024, 1000, 0.002, 5, 3),
                 _row(1, "matmul_kernel", 4096, 1_000_000_000, 130, 1500, 500_000_000),
                 _row(2, "matmul_kernel", 4096, 1_100_000_000, 140, 1600, 510_000_000)])
MANIFEST = {"device": "NVIDIA H100 80GB HBM3",
            "launches": [{"launch": 1, "kernel": "matmul_kernel", "n_ctas": 4096}]}
GEMM = problem_from("gemm", "matmul", m=8192, n=8192, k=8192, dtype="fp16")


def test_raw_page_parses_into_base_units():
    rows, units = traffic.parse_raw_csv(RAW)
    assert [r["id"] for r in rows] == [0, 1, 2]
    r = rows[2]
    assert r["kernel"] == "matmul_kernel" and r["grid"] == [4096, 1, 1] and r["block"] == [256, 1, 1]
    assert r["metrics"]["dram__bytes_read.sum"] == 1.1e9 and r["metrics"]["dram__bytes_write.sum"] == 1.4e8
    assert r["metrics"]["gpu__time_duration.sum"] == 1.6e6 and units["gpu__time_duration.sum"] == "nsecond"
    assert traffic.base_name("void gemm<128>(float*, int)") == "gemm"


def test_measured_launches_match_profiled_ones_and_an_earlier_side_file_is_read(tmp_path):
    rows, units = traffic.parse_raw_csv(RAW)
    data = traffic.build(MANIFEST, rows, units, problems=[GEMM])
    (m,) = data["launches"]
    assert (m["launch"], m["ncu_id"]) == (1, 2)  # the earlier plain launch (ID 1) is not the profiled one
    assert {u["ncu_id"] for u in data["unmatched_ncu"]} == {0, 1}
    assert "the last 1 are matched" in data["notes"][0]
    path = traffic.save(traffic.sidecar_path(tmp_path / "profile.kperf"), data)  # as kperf ncu wrote it once
    assert path.endswith("profile.traffic.json")
    back = traffic.load(tmp_path / "profile.kperf")
    assert back == traffic.load(path)
    t = traffic.traffic_table(back)
    assert t["dram_read_bytes"].tolist() == [1.1e9] and t["l2_sm_bytes"].tolist() == [2**34 + 2**27]
    assert back["device"]["l2_bytes"] == 52428800  # from ncu's device attributes
    assert traffic.trace_args(back)[1]["dram_read_bytes"] == 1.1e9
    assert t["l2_hit_frac"][0] == pytest.approx(0.905)


def test_fewer_measured_launches_leave_profiled_ones_unmatched():
    rows, _ = traffic.parse_raw_csv(RAW)
    two = {"launches": [{"launch": i, "kernel": "matmul_kernel", "n_ctas": 4096} for i in (1, 2, 3)]}
    m = traffic.match(rows, two["launches"])
    assert [(e["launch"], r["id"]) for e, r in m["pairs"]] == [(1, 1), (2, 2)]
    assert m["unmatched_profile"] == [3]
    other_grid = traffic.match(rows, [{"launch": 1, "kernel": "matmul_kernel", "n_ctas": 64}])
    assert not other_grid["pairs"] and len(other_grid["unmatched_ncu"]) == 3


def test_bounds_beside_measured_bytes():
    rows, units = traffic.parse_raw_csv(RAW)
    data = traffic.build(MANIFEST, rows, units, problems=[GEMM])
    data["launches"][0]["kperf_record_bytes"] = 10**8  # kperf's own stores are not the kernel's traffic
    t = bounds_table(data)
    dram, l2 = t.rows()
    caps = bounds.GPU_CAPACITIES["H100"]
    want = bounds.gemm(8192, 8192, 8192, "fp16", capacities=[caps["l2"]]).at(caps["l2"])["min_bytes"]
    assert dram["capacity_bytes"] == caps["l2"] and dram["bound_bytes"] == want
    assert dram["measured_bytes"] == 1.1e9 + 1.4e8 - 1e8 and dram["kperf_record_bytes"] == 1e8
    assert dram["measured_over_bound"] == pytest.approx(1.14e9 / want)
    assert l2["capacity_bytes"] == caps["smem"] and l2["measured_bytes"] == 2**34 + 2**27 - 1e8
    assert l2["bound_bytes"] > dram["bound_bytes"]  # a smaller buffer must move more
    assert "no problem described" in bounds_table(data, []).notes[0]
    with pytest.raises(KperfError, match="not known"):
        bounds_table(dict(data, device={"name": "Tesla K80"}))


def _cli(argv, capsys):
    p = argparse.ArgumentParser(prog="kperf")
    add_bounds_commands(p.add_subparsers(dest="cmd", required=True))
    args = p.parse_args(argv)
    assert args.func(args) == 0
    return capsys.readouterr().out


def test_commands(tmp_path, capsys):
    out = _cli(["bounds", "gemm", "--m", "2048", "--n", "2048", "--k", "2048", "--dtype", "bf16", "--json",
                "--capacity", "50MiB,228KiB"], capsys)
    j = json.loads(out)
    assert j["compulsory_bytes"] == 3 * 2048 * 2048 * 2
    assert [p["capacity_bytes"] for p in j["capacities"]] == [228 * 1024, 50 * 2**20]
    assert all(p["min_bytes"] and p["intensity"] for p in j["capacities"])
    text = _cli(["bounds", "attention", "--batch", "1", "--heads", "2", "--seq", "512", "--d-head", "64",
                 "--causal", "--gpu", "H100"], capsys)
    assert "causal" in text and "50 MiB" in text
    rows, units = traffic.parse_raw_csv(RAW)
    traffic.save(tmp_path / "profile.traffic.json", traffic.build(MANIFEST, rows, units))
    from kperf.tracing.traffic_bounds import report_tables
    assert [t.name for t in report_tables(tmp_path / "profile.kperf")] == ["traffic"]
    assert report_tables(tmp_path / "other.kperf") == []
    shown = _cli(["traffic", str(tmp_path / "profile.kperf"), "--gemm", "8192,8192,8192",
                  "--problem-kernel", "matmul"], capsys)
    assert "Measured memory traffic" in shown and "DRAM (L2 capacity)" in shown and "L2<->SM" in shown


@pytest.mark.parametrize("call,needle", [
    (lambda: traffic.load("/nonexistent/x.traffic.json"),
     "no measured traffic at /nonexistent/x.traffic.json"),
    (lambda: parse_size("50 parsecs"), "not a size"),
    (lambda: traffic.load("/nonexistent/profile.kperf"),
     "no measured traffic for /nonexistent/profile.kperf: there is no /nonexistent/profile.kperf, and no "
     "/nonexistent/profile.traffic.json beside it"),
    (lambda: traffic.parse_raw_csv("==PROF== nothing"), "no raw page"),
    (lambda: find_ncu("/nonexistent/ncu"), "no executable"),
    (lambda: problem_from("gemm", "(", m=1, n=1, k=1), "not a regular expression"),
    (lambda: problem_from("conv", "."), "unknown problem kind"),
    (lambda: _check(subprocess.CompletedProcess([], 1, "==ERROR== ERR_NVGPUCTRPERM - no access", ""), "x"),
     "ERR_NVGPUCTRPERM"),
])
def test_errors_name_cause_and_fix(call, needle):
    with pytest.raises(KperfError, match=re.escape(needle)) as e:
        call()
    assert e.value.fix


def test_metrics_this_ncu_lacks_are_left_out():
    keep, lacking = choose_metrics(["dram__bytes_read.sum", "made__up.sum", "launch__grid_size"],
                                   {"dram__bytes_read"})
    assert keep == ["dram__bytes_read.sum", "launch__grid_size"] and lacking == ["made__up.sum"]
    assert choose_metrics(["a__b.sum"], None) == (["a__b.sum"], [])
    assert np.isfinite(parse_size("228KiB")) and parse_size("1.5 MB") == 1.5e6


FAKE_NCU = """#!/usr/bin/env bash
# stands in for ncu: version, metric list, the raw page of a saved report; a profiling run only logs its argv
case "$1" in
  --version) echo "NVIDIA (R) Nsight Compute Command Line Profiler"; echo "Version 2099.1 (fake)";;
  --query-metrics) printf 'Metric Name    Metric Description\\ndram__bytes_read   bytes read\\n'
                   printf 'dram__bytes_write   bytes written\\n';;
  --import) cat "$FAKE_RAW";;
  *) echo "$@" > "$FAKE_ARGV"; [ -n "$FAKE_DENY" ] && echo "==ERROR== ERR_NVGPUCTRPERM" && exit 1; exit 0;;
esac
"""


def test_kperf_ncu_end_to_end_with_a_stand_in_ncu(tmp_path, monkeypatch, capsys):
    """The command line ncu gets, the metrics it lacks left out, the report read back and matched."""
    from known_profiles import vanilla

    from kperf.ncu import measure
    from kperf.tracing.saved import save_profile
    ncu = tmp_path / "ncu"
    ncu.write_text(FAKE_NCU)
    ncu.chmod(0o755)
    out = tmp_path / "out"
    save_profile(out / "profile.kperf", [vanilla(launch=4)])  # what `kperf run` inside would write
    raw = RAW.replace("matmul_kernel", "attn").replace("(4096, 1, 1)", "(3, 1, 1)")
    (tmp_path / "raw.csv").write_text(raw)
    (out / "profile.traffic.json").write_text("{}")  # an earlier kperf ncu's, of the profile it replaced
    monkeypatch.setenv("FAKE_RAW", str(tmp_path / "raw.csv"))
    monkeypatch.setenv("FAKE_ARGV", str(tmp_path / "argv"))
    data = measure(str(out), "script.py", ["--size", "8"], ncu=str(ncu), kernels="attn",
                   problems=[problem_from("gemm", "attn", m=64, n=64, k=64)])
    argv = (tmp_path / "argv").read_text().split()
    assert argv[:2] == ["--metrics", "dram__bytes_read.sum,dram__bytes_write.sum,launch__grid_size,"
                        "launch__block_size,launch__registers_per_thread,launch__shared_mem_per_block"]
    assert argv[argv.index("--clock-control") + 1] == "none" and "regex:attn" in argv
    assert argv[-8:] == ["run", "--out", str(out), "--kernels", "attn", "script.py", "--size", "8"]
    assert [(x["launch"], x["ncu_id"]) for x in data["launches"]] == [(4, 2)]
    d = vanilla()  # its records, CTA headers and counts: what the plain kernel would not store
    want = d.n_events * d.geometry.record_bytes + d.n_ctas * d.geometry.records_offset
    assert data["launches"][0]["kperf_record_bytes"] == want > 0
    assert set(data["launches"][0]["metrics"]) == {"dram__bytes_read.sum", "dram__bytes_write.sum"}
    assert data["ncu"]["version"] == "Version 2099.1 (fake)" and "lts__t_bytes.sum" in data["ncu"]["lacking"]
    from kperf.tracing.saved import load_profile, read_traffic
    assert read_traffic(out / "profile.kperf") == data == traffic.load(out)  # in the profile; found from OUT
    assert data["launches"][0]["metrics"]["dram__bytes_read.sum"] == 1.1e9
    assert not (out / "profile.traffic.json").exists()
    assert load_profile(out / "profile.kperf")[0].n_events == vanilla().n_events
    monkeypatch.setenv("FAKE_DENY", "1")
    with pytest.raises(KperfError, match="ERR_NVGPUCTRPERM"):
        measure(str(out), "script.py", [], ncu=str(ncu))


def _measured_profile(tmp_path, device="NVIDIA H100 80GB HBM3", where="member", version=2):
    """A saved profile (launch 4 of kernel attn, 3 CTAs) holding the traffic kperf ncu measures (``where``
    "side": in the side file an earlier kperf ncu wrote beside it)."""
    from known_profiles import vanilla

    from kperf.tracing.saved import read_manifest, save_profile
    path = str(save_profile(tmp_path / "profile.kperf", [vanilla(launch=4)], device=device, version=version))
    rows, units = traffic.parse_raw_csv(RAW.replace("matmul_kernel", "attn").replace("(4096, 1, 1)",
                                                                                      "(3, 1, 1)"))
    problems = [problem_from("gemm", "attn", m=64, n=64, k=64)]
    data = traffic.build(read_manifest(path), rows, units, problems=problems)
    traffic.save(path if where == "member" else traffic.sidecar_path(path), data)
    return path


def _perfetto_launch_notes(path):
    """{instant name: {annotation: value}} of the instants on the launch tracks of a Perfetto trace."""
    pb = pytest.importorskip("perfetto.protos.perfetto.trace.perfetto_trace_pb2")
    t = pb.Trace()
    t.ParseFromString(open(path, "rb").read())
    tracks = {p.track_descriptor.uuid: p.track_descriptor for p in t.packet if p.HasField("track_descriptor")}
    value = lambda a: getattr(a, a.WhichOneof("value"))  # noqa: E731
    return {p.track_event.name: {a.name: value(a) for a in p.track_event.debug_annotations} for p in t.packet
            if p.HasField("track_event") and p.track_event.name
            and tracks[p.track_event.track_uuid].name.startswith("launch ")}


@pytest.mark.parametrize("where, version", [("member", 2), ("member", 1), ("side", 2)])
def test_export_and_view_show_the_measured_traffic_on_the_launch(tmp_path, capsys, where, version):
    """kperf export (Chrome, Perfetto) and kperf view put the profile's measured numbers on their launch."""
    from kperf.cli import main
    from kperf.viewer import prepare_trace
    profile = _measured_profile(tmp_path, where=where, version=version)
    if where == "member":  # the numbers travel with the profile: a renamed copy elsewhere has them
        os.makedirs(tmp_path / "copy")
        profile = str(shutil.move(profile, tmp_path / "copy" / "renamed.kperf"))
    assert main(["export", profile, "--out", str(tmp_path / "t.json")]) == 0
    assert 'measured traffic of 1 launch ("memory traffic (ncu)" at each' in capsys.readouterr().out
    chrome = json.loads((tmp_path / "t.json").read_text())
    (info,) = chrome["otherData"]["kperf"]["launches"]
    args = info["args"]
    assert (args["ncu_id"], args["dram_read_bytes"], args["dram_write_bytes"]) == (2, 11 * 10**8, 14 * 10**7)
    assert args["l2_sm_bytes"] == 2**34 + 2**27 and args["l2_hit_pct"] == 90.5
    assert args["kperf_record_bytes"] > 0 and args["problem"].startswith("gemm")
    assert args["dram_bound_bytes"] == args["l2_sm_bound_bytes"] == 3 * 64 * 64 * 2  # fits: A, B, C once
    measured = 11e8 + 14e7 - args["kperf_record_bytes"]  # kperf's own stores left out
    assert args["dram_measured_over_bound"] == pytest.approx(measured / 24576)
    [ev] = [e for e in chrome["traceEvents"] if e["name"] == "memory traffic (ncu)"]
    assert ev["args"] == args and ev["s"] == "g" and ev["ts"] == info["trace_offset_ns"] / 1000
    assert main(["export", profile, "--out", str(tmp_path / "t.pftrace")]) == 0
    shown = _perfetto_launch_notes(tmp_path / "t.pftrace")["memory traffic (ncu)"]
    assert shown == args
    trace, _ = prepare_trace(profile if where == "member" else tmp_path, tmp_path / "view")  # or the folder
    assert _perfetto_launch_notes(trace)["memory traffic (ncu)"] == args


def test_a_trace_without_usable_numbers_is_still_written(tmp_path, capsys):
    """Bounds of a device of unknown capacities, or a broken traffic member: a warning, and the trace."""
    from kperf.cli import main
    profile = _measured_profile(tmp_path, device="Tesla K80")
    assert main(["export", profile, "--out", str(tmp_path / "t.json")]) == 0
    assert "leaves out the bounds" in capsys.readouterr().err
    args = json.loads((tmp_path / "t.json").read_text())["otherData"]["kperf"]["launches"][0]["args"]
    assert args["dram_read_bytes"] == 1_100_000_000 and "dram_bound_bytes" not in args
    import zipfile

    from kperf.tracing.saved import attach_traffic
    attach_traffic(profile, None)
    with zipfile.ZipFile(profile, "a") as z:  # a member another tool damaged
        z.writestr("traffic.json", "{not json")
    assert main(["export", profile, "--out", str(tmp_path / "t.pftrace")]) == 0
    err = capsys.readouterr().err
    assert "leaves out the measured traffic" in err and "(member traffic.json) is not readable" in err
    assert "fix:" in err
    assert "memory traffic (ncu)" not in _perfetto_launch_notes(tmp_path / "t.pftrace")


def test_report_and_traffic_show_the_numbers_stored_in_the_profile(tmp_path, capsys):
    """kperf report adds the traffic and bounds tables; kperf traffic reads a profile or its folder."""
    from kperf.cli import main
    profile = _measured_profile(tmp_path, version=1)
    assert not os.path.exists(traffic.sidecar_path(profile))
    assert main(["report", profile]) == 0
    out = capsys.readouterr().out
    assert "Measured memory traffic" in out and "DRAM (L2 capacity)" in out
    shown = _cli(["traffic", str(tmp_path), "--json"], capsys)
    assert json.loads(shown)["traffic"][0]["dram_read_bytes"] == 1.1e9
    from kperf.tracing.saved import attach_traffic
    attach_traffic(profile, None)  # a profile without measured traffic: the report it always had
    assert main(["report", profile]) == 0
    assert "Measured memory traffic" not in capsys.readouterr().out
    with pytest.raises(KperfError, match=f"{re.escape(profile)} has no traffic.json member, and no "):
        traffic.load(profile)


def test_measured_traffic_from_an_h100_passes_the_checks_and_is_stored_as_it_is(tmp_path):
    """The side files kperf ncu wrote on an H100 (bench/results) load, and go into a profile unchanged."""
    import pathlib

    from known_profiles import vanilla

    from kperf.tracing.saved import read_traffic, save_profile
    found = sorted((pathlib.Path(__file__).parents[2] / "bench" / "results").glob("*/*.traffic.json"))
    assert found
    path = save_profile(tmp_path / "p.kperf", [vanilla()])
    for side in found:
        data = traffic.load(side)
        assert traffic.save(path, data) == path and read_traffic(path) == data
