"""The device-held buffers' spills (kperf.copy_out.DeviceHeld), without a GPU: the GPU's drain and the
host copies are swapped for recorders, so what is checked is when a spill starts, what it moves, and what
a fault or a missing staging buffer does to the launches it held."""

from __future__ import annotations

import threading

import pytest

from kperf.copy_out import DeviceHeld


def NO_CUDA(held):  # what a spill would take from CUDA for the copies
    return None


class Rec:
    def __init__(self, nbytes: int):
        self.nbytes, self.host, self.error = nbytes, None, None

    def landed(self, host):
        self.host = host

    def lost(self, error):
        self.error = error


class Recorder:
    """Lands records and says on which thread each batch landed."""

    def __init__(self):
        self.batches = []

    def land(self, held, copies=None):
        self.batches.append(([r.nbytes for r in held], threading.current_thread().name))
        for r in held:
            r.landed(b"x" * r.nbytes)


def test_a_spill_starts_when_the_bytes_held_reach_the_budget_and_runs_on_the_launching_thread():
    """The drain, what the copies take from CUDA, and the copies all happen on the launching thread
    (a worker was slower on the H100 host: the interpreter lock went back and forth per copy)."""
    rec, where = Recorder(), []
    held = DeviceHeld(sync=lambda held: where.append(("sync", threading.current_thread().name)),
                      prepare=lambda held: where.append(("prepare", threading.current_thread().name)),
                      land=rec.land)
    rs = [Rec(10) for _ in range(5)]
    for r in rs[:3]:
        held.add(r, budget=40)
    assert rec.batches == [] and held.bytes == 30  # under the budget: held on
    held.add(rs[3], budget=40)  # 40 reaches it: every held buffer goes out now
    here = threading.current_thread().name
    assert rec.batches == [([10, 10, 10, 10], here)] and held.spills == 1 and held.bytes == 0
    assert where == [("sync", here), ("prepare", here)] and all(r.host for r in rs[:4])
    held.add(rs[4], budget=40)
    held.spill()  # results: the rest, not counted as a budget spill
    assert rec.batches[1] == ([10], here) and held.spills == 1 and rs[4].host


def test_a_buffer_larger_than_the_budget_goes_out_at_once():
    rec = Recorder()
    held = DeviceHeld(sync=lambda held: None, prepare=NO_CUDA, land=rec.land)
    held.add(Rec(50), budget=40)
    assert [b[0] for b in rec.batches] == [[50]] and held.bytes == 0


def test_a_fault_while_draining_marks_the_spilled_launches_lost():
    def sync(held):
        raise RuntimeError("CUDA error: an illegal memory access was encountered")
    rec = Recorder()
    held = DeviceHeld(sync=sync, prepare=NO_CUDA, land=rec.land)
    rs = [Rec(30), Rec(30)]
    held.add(rs[0], budget=None)
    held.add(rs[1], budget=None)
    assert held.spills == 0 and held.bytes == 60  # no budget: held until results
    held.spill()
    assert rec.batches == [] and all("illegal memory access" in str(r.error) for r in rs)


def test_a_spill_error_other_than_a_fault_reaches_the_results():
    def land(held, copies):
        raise ValueError("staging buffer too small")
    held = DeviceHeld(sync=lambda held: None, prepare=NO_CUDA, land=land)
    held.add(Rec(30), budget=40)
    with pytest.raises(ValueError, match="staging"):
        held.spill()


def test_chunks_land_in_one_host_array_each_and_every_record_gets_its_own_bytes(monkeypatch):
    """The host side of a spill on CPU tensors: records go out in chunks that fit the staging buffer,
    each chunk's records view one host array, and every record's view holds exactly its own bytes."""
    import numpy as np
    import torch

    from kperf import copy_out

    class Stream:
        waits = 0

        def synchronize(self):
            Stream.waits += 1

    class Launch(Rec):
        def __init__(self, i, n):
            super().__init__(n)
            self.buf = torch.arange(n, dtype=torch.int64).add(i).remainder(251).to(torch.uint8)

        def device_buffer(self):
            return self.buf
    held = [Launch(i, n) for i, n in enumerate((300, 500, 400, 1200, 100))]
    staging = torch.empty(1200, dtype=torch.uint8)  # as big as the largest buffer (plain memory: no GPU)
    copy_out._chunks_to_host(held, Stream(), staging)
    for r in held:
        assert np.array_equal(r.host, r.buf.numpy())
    bases = [r.host.base for r in held]
    assert bases[0] is bases[1] is bases[2]  # 300 + 500 + 400 fill the 1200-byte staging buffer
    assert bases[3] is not bases[2] and bases[4] is not bases[3]  # the largest buffer fills it alone
    assert Stream.waits == 3


def test_a_spill_that_cannot_get_staging_memory_keeps_the_buffers_held_and_says_so():
    def prepare(held):
        raise RuntimeError("CUDA error: out of memory (pinned)")
    rec = Recorder()
    held = DeviceHeld(sync=lambda held: None, prepare=prepare, land=rec.land)
    rs = [Rec(30), Rec(30)]
    with pytest.warns(UserWarning, match="could not spill 1 profile buffers.*stay on the device"):
        held.add(rs[0], budget=30)
    held.add(rs[1], budget=None)
    assert held.bytes == 60 and rec.batches == [] and not any(r.error for r in rs)


def test_buffers_back_to_back_in_one_allocation_go_out_in_one_copy(monkeypatch):
    """Regions of one slab (with alignment gaps) are one run, one copy; a buffer of another allocation,
    or one that does not follow, starts a new run; every record still gets exactly its own bytes."""
    import numpy as np
    import torch

    from kperf import copy_out

    slab = torch.arange(4096, dtype=torch.int64).remainder(251).to(torch.uint8)
    other = torch.arange(300, dtype=torch.int64).add(7).remainder(251).to(torch.uint8)

    class Launch(Rec):
        def __init__(self, buf):
            super().__init__(buf.numel())
            self.buf = buf

        def device_buffer(self):
            return self.buf
    held = [Launch(slab[0:300]), Launch(slab[384:900]), Launch(slab[1024:1500]),  # 128-byte aligned regions
            Launch(other), Launch(slab[2000:2100]), Launch(slab[1500:1600])]  # another allocation; backwards
    runs = copy_out._runs(held, room=4096)
    assert [len(r.members) for r in runs] == [3, 1, 1, 1]
    assert runs[0].span == 1500 and [at for _, at in runs[0].members] == [0, 384, 1024]
    assert [len(r.members) for r in copy_out._runs(held, room=1000)] == [2, 1, 1, 1, 1]  # a run fits staging

    class Stream:
        def synchronize(self):
            pass
    copies = []
    staging = torch.empty(4096, dtype=torch.uint8)
    real_copy = torch.Tensor.copy_

    def counting_copy(self, src, non_blocking=False):
        copies.append(src.numel())
        return real_copy(self, src, non_blocking)
    monkeypatch.setattr(torch.Tensor, "copy_", counting_copy)
    copy_out._chunks_to_host(held, Stream(), staging)
    monkeypatch.undo()
    assert copies == [1500, 300, 100, 100]
    for r in held:
        assert np.array_equal(r.host, r.buf.numpy())
