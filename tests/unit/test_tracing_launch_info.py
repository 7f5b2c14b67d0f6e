"""Launch info (``DecodedLaunch.info``) through saved profiles, and the per-kernel table (``kernels``)
that sums up a profile of many launches, against direct computations on decoded launches."""

from __future__ import annotations

import json
import zipfile

import numpy as np
import pytest
from random_profiles import random_launch
from reference_saved_writer import SavedLaunchSpec, write_saved_profile

from kperf.cli import main
from kperf.dialect.errors import KperfError
from kperf.profile_data import Profile
from kperf.tracing import load_profile, save_profile, stats
from kperf.tracing.record_checks import REJECT_INVALID_TAG, REJECTED_DTYPE
from kperf.tracing.saved import SavedLaunch, read_manifest

INFO = {"inductor_ops": "aten.addmm, aten.relu", "source_nodes": ["linear", "relu"], "replay": 3,
        "cuda_graph": 1, "launch_path": "inductor", "ms": 0.25, "captured": True}


def launch(seed=0, **kw):
    return random_launch(seed, n_ctas=4, steps=8, **kw)


@pytest.mark.parametrize("version, keep_raw", [(2, True), (1, True), (2, False)])
def test_info_survives_save_and_load(tmp_path, version, keep_raw):
    a, b = launch(1, launch=0), launch(2, launch=1)
    a.info = dict(INFO, replay=np.int64(3), ms=np.float32(0.25), source_nodes=("linear", "relu"))
    if not keep_raw:
        a.raw = b.raw = None
    path = save_profile(tmp_path / "p.kperf", [a, b], version=version)
    m = read_manifest(path)
    assert m["version"] == version and m["launches"][0]["info"] == INFO
    assert "info" not in m["launches"][1]  # a launch without info writes what it wrote before
    x, y = load_profile(path)
    assert x.info == INFO and y.info is None
    assert isinstance(x.info["replay"], int) and x.info["source_nodes"] == ["linear", "relu"]
    assert "  info: inductor_ops=aten.addmm, aten.relu; source_nodes=linear, relu; replay=3" in x.summary()
    assert Profile.load(path).table() == Profile([SavedLaunch(a), SavedLaunch(b)]).table()


def test_an_old_file_without_info_loads(tmp_path):
    """A version 1 file written from docs/saved-profile.md alone (no info key, as every file before it)."""
    d = launch(4)
    spec = dict(kernel="k", n_ctas=d.n_ctas, num_warps=d.geometry.num_warps, capacity=d.geometry.capacity,
                clock=d.geometry.clock, scopes=[d.scopes[i] for i in sorted(d.scopes)], n_events=d.n_events,
                t0_ns=int(d.t0_ns))
    path = write_saved_profile(tmp_path / "old.kperf", [SavedLaunchSpec(buffer=bytes(d.raw), **spec)])
    [got] = load_profile(path)
    assert got.info is None and got.n_events == d.n_events
    assert stats.kernel_stats([got]).rows()[0]["info"] == ""


def test_info_that_cannot_be_saved_names_the_launch_and_the_value(tmp_path):
    d = launch(5, launch=7)
    d.info = {"ops": ["aten.mm", 3]}
    with pytest.raises(KperfError, match=r"cannot save launch 7: info\['ops'\] is \['aten.mm', 3\]") as e:
        save_profile(tmp_path / "p.kperf", [d])
    assert "str() the others" in e.value.fix and not (tmp_path / "p.kperf").exists()


def rewrite_info(src, dst, info):
    with zipfile.ZipFile(src) as z, zipfile.ZipFile(dst, "w") as out:
        for item in z.infolist():
            data = z.read(item.filename)
            if item.filename == "manifest.json":
                m = json.loads(data)
                m["launches"][0]["info"] = info
                data = json.dumps(m).encode()
            out.writestr(item, data)


@pytest.mark.parametrize("info, words", [
    ("aten.mm", "launches[0].info: expected an object of launch facts"),
    ([1], "launches[0].info: expected an object"),
    ({"ops": [1, 2]}, "launches[0].info['ops'] is [1, 2], not a string, an int"),
    ({"ops": {"a": 1}}, "launches[0].info['ops'] is {'a': 1}"),
    ({"replay": 2**70}, "launches[0].info['replay']: the int 1180591620717411303424 does not fit in 64 bits"),
    ({"ms": float("nan")}, "launches[0].info['ms']: nan is not a finite number"),
    ({"x": None}, "launches[0].info['x'] is None"),
])
def test_malformed_info_in_a_file_names_the_member_and_the_fix(tmp_path, info, words):
    d = launch(6)
    d.info = {"replay": 1}
    path = save_profile(tmp_path / "p.kperf", [d])
    rewrite_info(path, tmp_path / "bad.kperf", info)
    with pytest.raises(KperfError) as e:
        load_profile(tmp_path / "bad.kperf")
    assert str(e.value).startswith(f"{tmp_path / 'bad.kperf'} is not a readable kperf profile: ")
    assert words in str(e.value) and "save or copy it again" in e.value.fix
    rewrite_info(path, tmp_path / "null.kperf", None)  # null: no info, as in older files
    assert load_profile(tmp_path / "null.kperf")[0].info is None


# --------------------------------------------------------------------------- the kernels table


def direct_span(d) -> float:
    """A launch's kernel span, brute force: the earliest CTA entry (or event) to the latest CTA exit (or
    event), over the CTAs that ran."""
    first, last = np.inf, -np.inf
    t = d.columns["time_ns"]
    for c in d.ctas:
        if not c["ok"]:
            continue
        start = c["offset_ns"]
        ticks = (int(c["gtime_end"]) - int(c["gtime_start"]) if d.geometry.clock == "globaltimer"
                 else int(c["clock_end"]) - int(c["clock_start"]))
        end = start + c["ns_per_cycle"] * ticks if c["end_ok"] else start
        mine = t[np.repeat(d.columns.seg["cta"], d.columns.seg["n"]) == c["cta"]]
        if len(mine):
            start, end = min(start, mine.min()), max(end, mine.max())
        first, last = min(first, start), max(last, end)
    return last - first


def two_kernels():
    """Five launches of two kernels: losses (a small capacity) in one, rejected records in another, info
    partly shared."""
    out = []
    for i in range(5):
        d = random_launch(30 + i, launch=i, kernel="mm" if i % 2 == 0 else "softmax", n_ctas=3 + i,
                          capacity=4 if i == 2 else 64, steps=10)
        d.info = {"inductor_ops": ["aten.mm"] if i % 2 == 0 else "aten.softmax", "replay": i,
                  "launch_path": "inductor"}
        out.append(d)
    out[3].rejected = np.zeros(2, REJECTED_DTYPE)
    out[3].rejected["reason"] = REJECT_INVALID_TAG
    out[4].info = {"inductor_ops": ["aten.mm"], "replay": 4}  # no launch_path: not common to mm
    return out


def test_kernel_table_against_a_direct_computation():
    launches = two_kernels()
    assert launches[2].lost_total > 0
    t = stats.kernel_stats(launches)
    assert t.name == "kernels" and t.title == "Kernels (5 launches)"
    by = {r["kernel"]: r for r in t.rows()}
    for kernel, ids, info in (("mm", [0, 2, 4], "inductor_ops=aten.mm"),
                              ("softmax", [1, 3], "inductor_ops=aten.softmax; launch_path=inductor")):
        mine = [launches[i] for i in ids]
        spans = np.array([direct_span(d) for d in mine])
        r = by[kernel]
        assert (r["launches"], r["ctas"], r["events"], r["lost"], r["rejected"]) == (
            len(ids), sum(d.n_ctas for d in mine), sum(d.n_events for d in mine),
            sum(d.lost_total for d in mine), sum(len(d.rejected) for d in mine))
        assert r["span_total_ns"] == pytest.approx(spans.sum())
        assert r["span_mean_ns"] == pytest.approx(spans.mean())
        assert r["span_p50_ns"] == pytest.approx(np.median(spans))
        assert r["span_max_ns"] == pytest.approx(spans.max())
        assert r["info"] == info
    assert list(t["kernel"]) == sorted(by, key=lambda k: -by[k]["span_total_ns"])  # most kernel time first
    imb = stats.imbalance(launches)  # the same span as the per-launch table's
    assert by["mm"]["span_max_ns"] == pytest.approx(imb["kernel_span_ns"][[0, 2, 4]].max())


def test_kernel_table_in_report_csv_and_pandas(tmp_path):
    rep = stats.report(two_kernels())
    assert list(rep.tables)[0] == "kernels"
    assert "Kernels (5 launches)" in rep.to_text("us") and "inductor_ops=aten.mm" in rep.to_text("us")
    files = rep.to_csv(tmp_path)
    assert open(files["kernels"]).readline().strip() == (
        "kernel,launches,ctas,events,lost,rejected,span_total_ns,span_mean_ns,span_p50_ns,span_max_ns,info")
    pd = pytest.importorskip("pandas")
    df = rep["kernels"].to_pandas()
    assert isinstance(df, pd.DataFrame) and set(df["kernel"]) == {"mm", "softmax"}


def many_launches(n=25, lossy=(6, 17)):
    out = []
    for i in range(n):
        d = random_launch(100 + i, launch=i, kernel=("mm", "relu", "ln")[i % 3], n_ctas=2, steps=6,
                          capacity=2 if i in lossy else 64)
        d.info = {"inductor_ops": f"aten.{('mm', 'relu', 'ln')[i % 3]}", "replay": i}
        out.append(d)
    return out


def test_table_of_many_launches_lists_only_those_with_losses():
    launches = many_launches()
    assert [d.launch for d in launches if d.lost_total or d.problems] == [6, 17]
    text = Profile([SavedLaunch(d) for d in launches]).table(time_unit="ns")
    assert "Kernels (25 launches)" in text and "inductor_ops=aten.relu" in text
    shown = [line for line in text.splitlines() if line.startswith("[")]
    assert [line.split()[2] for line in shown] == ["6", "17"]
    assert "25 launches; only the 2 that lost or rejected records or report problems are listed" in text
    assert text.count("-> raise capacity to") == 2
    few = Profile([SavedLaunch(d) for d in launches[:20]]).table()  # 20 or fewer: every launch
    assert sum(line.startswith("[") for line in few.splitlines()) == 20 and "Kernels (20 launches)" in few
    one = Profile([SavedLaunch(launches[0])]).table()
    assert "Kernels (" not in one and "info: inductor_ops=aten.mm; replay=0" in one


def test_report_of_many_launches(tmp_path, capsys):
    path = save_profile(tmp_path / "p.kperf", many_launches(lossy=()))
    assert main(["report", path, "--tables", "kernels", "--unit", "ns", "--csv", str(tmp_path / "csv")]) == 0
    out = capsys.readouterr().out
    assert "25 launches; only the 0 that lost or rejected records" in out and "\nlaunch " not in out
    assert "Kernels (25 launches)" in out and "Scopes" not in out
    rows = {r["kernel"]: r for r in stats.kernel_stats(load_profile(path)).rows()}
    assert rows["mm"]["launches"] == 9 and rows["mm"]["info"] == "inductor_ops=aten.mm"
    assert (tmp_path / "csv" / "kernels.csv").exists()


def test_many_launches_with_the_same_kinds_of_problem_are_one_line_per_kind():
    """Past MANY_LAUNCHES launches, launches reporting only problems of one kind (numbers aside) are summed
    up in one line per kind; launches that lost records and rare problems keep their own lines."""
    import types

    from kperf.tracing.kernel_tables import GROUPED, MANY_LAUNCHES, launch_lines

    def launch(i, problems=(), lost=0):
        return types.SimpleNamespace(launch=i, problems=list(problems), lost_total=lost, rejected_total=0)
    residual = "clock map residual above 1000 ns on {} SMs (SM 3, 9; worst {} ns): times are approximate"
    launches = [launch(i, [residual.format(i % 7 + 1, 1000 + i)]) for i in range(40)]
    launches += [launch(40, lost=5), launch(41, ["2 CTAs never wrote exit timestamps"])]
    launches += [launch(i) for i in range(42, 42 + MANY_LAUNCHES)]

    def lines_of(d):
        return [f"launch {d.launch}"] + [f"  problem: {p}" for p in d.problems]
    lines = launch_lines(launches, lines_of)
    assert lines[0].startswith(f"{len(launches)} launches; only the 42 that")
    assert "launch 40" in lines and "launch 41" in lines
    assert "  problem: 2 CTAs never wrote exit timestamps" in lines
    [grouped] = [line for line in lines if line.startswith("40 launches")]
    assert grouped.startswith("40 launches (0, 1, 2, 3, 4, 5, ... (40 in all)) report: clock map residual")
    assert "worst 1000 ns" in grouped and "(launch 0; the others alike)" in grouped
    assert not any(line == "launch 7" for line in lines) and len(lines) == 1 + 1 + 2 + 1
    few = [launch(i, [residual.format(1, 1)]) for i in range(GROUPED)] + [launch(i) for i in range(30)]
    assert sum(line.startswith("launch ") for line in launch_lines(few, lines_of)) == GROUPED  # each its own
