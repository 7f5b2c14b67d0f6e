"""Multi-GPU profiles merged onto one axis: the clock bounds hold, stragglers are found, the trace and
the command show them.  Simulated ranks (rank_profiles.py) with known clocks: no processes, no torch."""

from __future__ import annotations

import argparse
import zipfile

import numpy as np
import orjson
import pytest
import rank_profiles as rp

from kperf.cli_merge import add_merge_commands
from kperf.dialect.errors import KperfError
from kperf.tracing.clock_sync import (
    Offset,
    RankClock,
    SyncPoint,
    host_offset,
    intersect,
    rank_clock,
    sync_point,
)
from kperf.tracing.merge import merge_files
from kperf.tracing.merge_trace import write_merged_trace
from kperf.tracing.rank_file import TAG_MEMBER, load_ranks, read_rank_tag, save_rank_profile
from kperf.tracing.rank_stats import rank_report
from kperf.tracing.saved import load_profile, save_profile

WORLD = 3
STEPS = 4
LATE_RANK, LATE_STEP, LATE_NS = 2, 2, 500_000  # rank 2 starts step 2 half a millisecond late
DUR = {"matmul": 100_000, "reduce": 30_000}


def _true_starts(rank: int) -> list[tuple[str, int]]:
    """(kernel, true start) of the rank's launches: per step a matmul, then a reduce."""
    out = []
    for k in range(STEPS):
        t = rp.T0 + 10_000_000 + k * 20_000_000 + (LATE_NS if (rank, k) == (LATE_RANK, LATE_STEP) else 0)
        out += [("matmul", t), ("reduce", t + 1_000_000)]
    return out


@pytest.fixture(scope="module")
def job(tmp_path_factory):
    """Three ranks' files in one folder; returns (folder, thetas, phis)."""
    out = tmp_path_factory.mktemp("job")
    thetas, phis = rp.clocks(WORLD, seed=1)
    rng = np.random.default_rng(7)
    start = rp.exchange(rng, thetas, phis, "start", rp.T0)
    end = rp.exchange(rng, thetas, phis, "end", rp.T0 + 1_000_000_000)
    for r in range(WORLD):
        launches = [rp.launch(t + thetas[r] + phis[r], DUR[k], i + 1, k)
                    for i, (k, t) in enumerate(_true_starts(r))]
        save_rank_profile(out / f"rank{r}.kperf", launches, rp.tag(r, WORLD, [start[r], end[r]]),
                          device="Simulated GPU")
    return out, thetas, phis


def test_the_barrier_bound_always_holds_and_is_tight():
    for seed in range(40):
        thetas, phis = rp.clocks(2, seed)
        rec = rp.exchange(np.random.default_rng(seed), thetas, phis, "start", rp.T0)[1]
        off = host_offset(rec["host"], rec["host_ref"])
        assert off.consistent and abs(off.est - thetas[1]) <= off.err, (seed, off, thetas)
        assert off.err < 40_000  # intersecting rounds beats the widest round (up to 70 us)


def test_ranks_of_one_machine_share_its_clock_and_need_no_barrier_bound():
    thetas, phis = [0, 0], [1_000_000, -2_000_000]  # one host clock, two GPUs
    rec = rp.exchange(np.random.default_rng(3), thetas, phis, "start", rp.T0, domains=["n0/b", "n0/b"])[1]
    shared = sync_point(rec, is_reference=False)
    assert shared.host_link == "shared"
    assert abs(shared.delta.est - (phis[0] - phis[1])) <= shared.delta.err < 10_000  # the probes' bounds
    other = sync_point({**rec, "domain": "n1/c"}, is_reference=False)  # another machine: barriers
    assert other.host_link == "barriers" and other.delta.err > shared.delta.err


def test_rounds_that_disagree_fall_back_to_the_narrowest_and_say_so():
    off = intersect(np.array([0, 100]), np.array([50, 400]))  # [0, 50] and [100, 400] never meet
    assert not off.consistent and off.est == 25 and off.err == 25


def test_drift_is_linear_between_the_points_and_the_bound_grows_past_them():
    c = RankClock((SyncPoint(0, Offset(1_000, 10.0, 8)), SyncPoint(1_000_000_000, Offset(2_000, 30.0, 8))))
    d, e = c.shift(np.array([0, 500_000_000, 1_000_000_000, 2_000_000_000]))
    assert d.tolist() == [1_000, 1_500, 2_000, 3_000]
    assert e[:3].tolist() == [10.0, 20.0, 30.0] and e[3] == 30.0 + 40.0
    assert c.drift_ppm == pytest.approx(1.0)


def test_rank_zero_is_its_own_reference_exactly(job):
    folder, thetas, phis = job
    rec = read_rank_tag(folder / "rank0.kperf")["sync"]
    clock = rank_clock(rec, is_reference=True)
    assert all(p.delta.est == 0 and p.delta.err == 0 for p in clock.points)


def test_every_rank_lands_on_rank_0s_axis_within_its_bound(job):
    folder, thetas, phis = job
    m = merge_files([folder])
    t = m.launches
    true = np.array([s + phis[0] for r in range(WORLD) for _, s in _true_starts(r)], np.int64)
    miss = np.abs(t["start_ns"] - true)
    assert (miss <= t["err_ns"] + 1).all(), (miss, t["err_ns"])
    assert (t["err_ns"][t["rank"] > 0] < 60_000).all() and (t["err_ns"][t["rank"] == 0] == 0).all()
    clocks = rank_report(m)["clocks"]
    for r in range(1, WORLD):
        truth = phis[0] - phis[r] - thetas[r]
        assert abs(clocks["offset_start_ns"][r] - truth) <= clocks["err_start_ns"][r] + 1


def test_without_alignment_the_ranks_are_seconds_apart(job):
    t = merge_files([job[0]], align=False).launches
    assert np.ptp(t["start_ns"][t["step"] == 0]) > 1e8


def test_the_straggler_of_each_step_is_found(job):
    rep = rank_report(merge_files([job[0]]))
    steps = rep["steps"]
    top = steps.rows()[0]  # latest straggler first
    assert (top["kernel"], top["step"], top["straggler"]) == ("matmul", LATE_STEP, LATE_RANK) and top["sure"]
    assert top["late_ns"] == pytest.approx(LATE_NS, abs=2 * top["err_ns"] + 1)
    assert top["late_start_ns"] == pytest.approx(LATE_NS, abs=2 * top["err_ns"] + 1)
    assert abs(top["slow_ns"]) < 100  # it started late; its GPU was not slower
    others = steps.select(steps["step"] != LATE_STEP)  # (the reduce after the late matmul is late too)
    assert (others["late_ns"] <= others["err_ns"] + 1).all()
    ranks = rep["ranks"]
    assert ranks["straggler_steps"][LATE_RANK] >= 1 and ranks["launches"].tolist() == [2 * STEPS] * WORLD
    kernels = rep["kernels"]
    assert kernels["kernel"].tolist() == ["matmul", "reduce"] and kernels["steps"].tolist() == [STEPS, STEPS]
    text = rep.to_text()
    assert "3 ranks, 24 launches, 2 kernels, clocks aligned to rank 0's" in text and "straggler" in text


def test_the_merged_trace_has_a_process_per_rank_on_one_axis(job, tmp_path):
    m = merge_files([job[0]])
    s = write_merged_trace(tmp_path / "m.json", m)
    tr = orjson.loads((tmp_path / "m.json").read_bytes())
    ev = tr["traceEvents"]
    procs = {e["pid"]: e["args"]["name"] for e in ev if e["name"] == "process_name"}
    assert procs == {0: "rank", 1: "rank", 2: "rank"}
    names = {(e["pid"], e["tid"]): e["args"]["name"] for e in ev if e["name"] == "thread_name"}
    assert sum(n == "kernels" for n in names.values()) == WORLD
    assert "launch 1 matmul CTA 0 (warp 0)" in names.values()
    kernel_tids = {k for k, n in names.items() if n == "kernels"}
    slices = [e for e in ev if e["ph"] == "X" and (e["pid"], e["tid"]) in kernel_tids]
    scopes = [e for e in ev if e["ph"] == "X" and (e["pid"], e["tid"]) not in kernel_tids]
    assert len(slices) == 2 * STEPS * WORLD and len(scopes) == s["intervals"] == 4 * len(slices)
    t = m.launches
    base = t["start_ns"].min()
    for e in slices:
        row = t[(t["rank"] == e["pid"]) & (t["launch"] == e["args"]["launch"])][0]
        assert e["ts"] == pytest.approx((row["start_ns"] - base) / 1000, abs=1e-3)
    late = [e for e in slices if e["args"].get("straggler") and e["args"]["step"] == LATE_STEP
            and e["name"] == "matmul"]
    assert [e["pid"] for e in late] == [LATE_RANK]
    assert tr["otherData"]["kperf"]["aligned"] and len(tr["otherData"]["kperf"]["ranks"]) == WORLD


def test_a_rank_file_is_an_ordinary_saved_profile(job):
    launches = load_profile(job[0] / "rank1.kperf")
    assert len(launches) == 2 * STEPS and launches[0].kernel == "matmul"


def _cli(*argv) -> int:
    p = argparse.ArgumentParser(prog="kperf")
    add_merge_commands(p.add_subparsers(dest="cmd", required=True))
    args = p.parse_args(["merge", *map(str, argv)])
    return args.func(args)


def test_kperf_merge_prints_the_tables_and_writes_trace_and_csv(job, tmp_path, capsys):
    trace, csv = tmp_path / "m.json.gz", tmp_path / "csv"
    assert _cli(job[0], "--out", trace, "--csv", csv, "--tables", "ranks,steps") == 0
    out = capsys.readouterr().out
    assert "ranks: launches" in out and "steps (the k-th launch" in out and "clocks:" not in out
    assert trace.stat().st_size > 0
    assert sorted(p.name for p in csv.iterdir()) == [
        "merge_clocks.csv", "merge_kernels.csv", "merge_ranks.csv", "merge_steps.csv"]


@pytest.mark.parametrize("argv, says", [
    (["--out", "m.pftrace"], "merged trace is Chrome JSON"),
    (["--tables", "ranks,bogus"], "unknown table bogus"),
])
def test_kperf_merge_refuses_bad_flags(job, argv, says):
    with pytest.raises(KperfError, match=says):
        _cli(job[0], *argv)


def _copy_with_tag(src, dst, change):
    """``src`` rewritten with its rank record changed by ``change(tag)`` (None: no record)."""
    tag = read_rank_tag(src)
    launches = load_profile(src)
    if change is None:
        save_profile(dst, launches)
    else:
        save_rank_profile(dst, launches, change(dict(tag)))
    return dst


def test_files_of_different_jobs_or_the_same_rank_twice_are_refused(job, tmp_path):
    r1 = job[0] / "rank1.kperf"
    twice = _copy_with_tag(r1, tmp_path / "again.kperf", lambda t: t)
    with pytest.raises(KperfError, match="rank 1 is given twice"):
        load_ranks([r1, twice])
    other = _copy_with_tag(r1, tmp_path / "other.kperf", lambda t: {**t, "world_size": 8, "rank": 5})
    with pytest.raises(KperfError, match="jobs of different sizes"):
        load_ranks([r1, other])
    plain = _copy_with_tag(r1, tmp_path / "plain.kperf", None)
    with pytest.raises(KperfError, match="not a rank's profile"):
        load_ranks([r1, plain])
    ranks, notes = load_ranks([r1])
    assert "ranks 0, 2 are missing" in notes[0]


def test_a_damaged_rank_record_names_the_field(job, tmp_path):
    bad = tmp_path / "bad.kperf"
    with zipfile.ZipFile(job[0] / "rank1.kperf") as z, zipfile.ZipFile(bad, "w") as w:
        for n in z.namelist():
            data = z.read(n)
            if n == TAG_MEMBER:
                data = data.replace(b'"rank": 1', b'"rank": 9')
            w.writestr(n, data)
    with pytest.raises(KperfError, match=r"rank = 9, expected an int >= 0 and < 3") as e:
        read_rank_tag(bad)
    assert e.value.fix


def test_untagged_profiles_merge_unaligned_in_the_order_given(tmp_path):
    a = save_profile(tmp_path / "a.kperf", [rp.launch(rp.T0, 50_000, 1)])
    b = save_profile(tmp_path / "b.kperf", [rp.launch(rp.T0 + 7_000, 50_000, 1)])
    m = merge_files([a, b])
    assert not m.aligned and "not aligned" in m.notes[0]
    assert m.launches["rank"].tolist() == [0, 1]
    steps = rank_report(m)["steps"]
    assert steps["straggler"].tolist() == [1] and steps["late_ns"][0] == pytest.approx(3_500)


def test_a_plain_session_in_a_multi_process_job_says_to_use_the_distributed_one(tmp_path, monkeypatch):
    import kperf
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.warns(UserWarning, match="kperf.distributed.session"):
        with kperf.session(tmp_path):
            pass
