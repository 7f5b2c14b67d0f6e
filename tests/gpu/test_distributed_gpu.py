"""On a GPU: the globaltimer probes, and ``kperf.distributed.session`` of world size 1 over NCCL, merged.

The probes' samples must bound ``phi = globaltimer - host`` consistently, and the profiled launches'
globaltimer stamps, mapped through the measured ``phi``, must fall between the session's start and end
on the host clock: the check that the GPU-to-host mapping is right, which a second GPU cannot add to.
"""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.gpu

torch = pytest.importorskip("torch")


def test_both_probes_bound_the_gpu_clock_and_agree():
    from kperf.gpu_clock import probe
    from kperf.tracing.clock_sync import gpu_offset
    method, rows = probe(8, "pingpong")
    pp = gpu_offset(rows)
    _, rows_b = probe(8, "bracket")
    br = gpu_offset(rows_b)
    assert method == "pingpong" and len(rows) == 8 and pp.consistent and br.consistent
    assert abs(pp.est - br.est) <= pp.err + br.err + 1_000  # (the bound, plus 1 us of drift between them)
    assert pp.err < 20_000 and br.err < 200_000, (pp, br)
    print(f"\npingpong: phi {pp.est} ns +- {pp.err:.0f}; bracket: +- {br.err:.0f}")


@pytest.fixture(scope="module")
def world_of_one(tmp_path_factory):
    import torch.distributed as dist
    store = tmp_path_factory.mktemp("store") / "store"
    dist.init_process_group("nccl", init_method=f"file://{store}", rank=0, world_size=1)
    yield tmp_path_factory.mktemp("ranks")
    dist.destroy_process_group()


def test_a_world_of_one_is_profiled_tagged_and_merged(world_of_one):
    import kperf.distributed
    from kperf.examples.matmul import matmul, matmul_kernel
    from kperf.tracing.clock_sync import gpu_offset
    from kperf.tracing.merge import merge_files
    from kperf.tracing.rank_file import read_rank_tag
    from kperf.tracing.rank_stats import rank_report
    a = torch.randn(1024, 1024, device="cuda", dtype=torch.float16)
    b = torch.randn(1024, 1024, device="cuda", dtype=torch.float16)
    plain = matmul(a, b, kernel=matmul_kernel)
    with kperf.distributed.session(world_of_one) as s:
        outs = [matmul(a, b) for _ in range(3)]
    assert all(torch.equal(o, plain) for o in outs) and len(s.launches) == 3
    tag = read_rank_tag(world_of_one / "rank0.kperf")
    assert (tag["rank"], tag["world_size"], tag["backend"]) == (0, 1, "nccl")
    m = merge_files([world_of_one])
    t = m.launches
    assert len(t) == 3 and (t["shift_ns"] == 0).all() and t["step"].tolist() == [0, 1, 2]
    # the launches ran between the start's and the end's host readings, seen through the measured phi
    start, end = tag["sync"]
    lo = start["host"][0][0] + gpu_offset(start["gpu"]).est - gpu_offset(start["gpu"]).err
    hi = end["host"][-1][1] + gpu_offset(end["gpu"]).est + gpu_offset(end["gpu"]).err
    assert lo <= int(t["start_ns"].min()) and int(t["end_ns"].max()) <= hi, (lo, t["start_ns"], hi)
    steps = rank_report(m)["steps"]
    assert (steps["ranks"] == 1).all() and "one rank only" in steps.notes[0]
