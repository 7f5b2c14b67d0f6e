"""``kperf.distributed.session`` in real processes over a real process group (gloo, on CPU), then
``kperf merge``: the clock exchange goes through ``torch.distributed`` and the bounds it gives hold.

Three ranks forked from this process (torch is loaded once), each with a host clock seconds off the
others' and a simulated GPU whose globaltimer is milliseconds off its host (the probe is injected; no
GPU here).  Each rank stamps its launches with its simulated globaltimer right after a barrier and
records the true time; rank 2 starts step 1 100 ms late (more than a busy machine stalls a process).
"""

from __future__ import annotations

import json
import multiprocessing
import os
import time
import traceback

import numpy as np
import pytest
import rank_profiles as rp

torch = pytest.importorskip("torch")
dist = pytest.importorskip("torch.distributed")
import kperf.distributed  # noqa: E402 - loaded here once: the forked ranks inherit it (and Triton)

WORLD = 3
STEPS = 3
LATE = (2, 1)  # (rank, step)
SLEEP_S = 0.1
THETAS = [0, 3_000_000_000, -7_000_000_000]  # host clocks, ns
PHIS = [1_500_000, -2_000_000, 4_000_000]  # GPU globaltimers against their hosts, ns


def _rank(rank: int, store: str, out: str) -> None:
    try:
        from kperf.tracing.saved import SavedLaunch
        dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=WORLD)

        def clock() -> int:
            return time.time_ns() + THETAS[rank]

        def probe():  # the simulated GPU, read between two host reads
            rows = []
            for _ in range(4):
                a, g, b = clock(), clock() + PHIS[rank], clock()
                rows.append([a, g, g, b])
            return "bracket", rows

        truth = []
        with kperf.distributed.session(out, clock=clock, gpu_probe=probe, rounds=8) as s:
            for k in range(STEPS):
                dist.barrier()
                if (rank, k) == LATE:
                    time.sleep(SLEEP_S)
                true = time.time_ns()
                s.add(SavedLaunch(rp.launch(true + THETAS[rank] + PHIS[rank], 100_000, k + 1)))
                truth.append(true)
        with open(os.path.join(out, f"truth{rank}.json"), "w") as f:
            json.dump(truth, f)
        dist.destroy_process_group()
    except BaseException:
        with open(os.path.join(out, f"error{rank}.txt"), "w") as f:
            f.write(traceback.format_exc())
        os._exit(1)
    os._exit(0)


@pytest.fixture(scope="module")
def job(tmp_path_factory):
    out = tmp_path_factory.mktemp("dist")
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_rank, args=(r, str(out / "store"), str(out))) for r in range(WORLD)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    for p in procs:
        if p.is_alive():
            p.kill()
    errors = {f.name: f.read_text() for f in out.glob("error*.txt")}
    assert not errors and all(p.exitcode == 0 for p in procs), errors or [p.exitcode for p in procs]
    return out


def test_every_rank_saved_a_tagged_profile_with_both_exchanges(job):
    from kperf.tracing.rank_file import read_rank_tag
    for r in range(WORLD):
        tag = read_rank_tag(job / f"rank{r}.kperf")
        assert (tag["rank"], tag["world_size"], tag["backend"]) == (r, WORLD, "gloo")
        assert [p["phase"] for p in tag["sync"]] == ["start", "end"]
        assert all(len(p["host"]) == 8 and p["gpu_method"] == "bracket" for p in tag["sync"])


def test_merged_ranks_sit_within_the_bound_of_the_truth_and_the_straggler_shows(job, capsys):
    from kperf.tracing.merge import merge_files
    from kperf.tracing.rank_stats import rank_report
    m = merge_files([job])
    t = m.launches
    truth = np.array([v for r in range(WORLD) for v in json.loads((job / f"truth{r}.json").read_text())])
    miss = np.abs(t["start_ns"] - (truth + PHIS[0]))
    assert (miss <= t["err_ns"] + 1).all(), (miss, t["err_ns"])
    assert (t["err_ns"] < 20_000_000).all()  # a loaded 2-core machine: barriers of a few ms at worst
    rep = rank_report(m)
    late = rep["steps"].where(step=LATE[1])[0]
    assert late["straggler"] == LATE[0] and late["sure"] and late["late_ns"] > SLEEP_S * 1e9 * 0.8, late
    clocks = rep["clocks"]
    assert clocks["host_clock"].tolist() == ["reference", "barriers", "barriers"]  # (clocks of their own)
    for r in range(1, WORLD):
        truth_offset = PHIS[0] - PHIS[r] - THETAS[r]
        for when in ("start", "end"):
            assert abs(clocks[f"offset_{when}_ns"][r] - truth_offset) <= clocks[f"err_{when}_ns"][r] + 1
