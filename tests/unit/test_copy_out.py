"""The device-held buffers' spills (kperf.copy_out.DeviceHeld), without a GPU: the GPU's drain and the
host copies are swapped for recorders, so what is checked is when a spill starts, on which thread, that
at most one is in flight, and that results wait for it."""

from __future__ import annotations

import threading

import pytest

from kperf.copy_out import DeviceHeld


def NO_CUDA(held):  # what the launching thread would take from CUDA for the copies
    return None


class Rec:
    def __init__(self, nbytes: int):
        self.nbytes, self.host, self.error = nbytes, None, None

    def landed(self, host):
        self.host = host

    def lost(self, error):
        self.error = error


class Recorder:
    """Lands records (after an optional gate opens) and says on which thread each batch landed."""

    def __init__(self):
        self.batches, self.gate = [], threading.Event()
        self.gate.set()
        self.active = self.most_active = 0

    def land(self, held, copies=None):
        self.active += 1
        self.most_active = max(self.most_active, self.active)
        self.gate.wait(5)
        self.batches.append(([r.nbytes for r in held], threading.current_thread().name))
        for r in held:
            r.landed(b"x" * r.nbytes)
        self.active -= 1


def test_a_spill_starts_at_half_the_budget_on_a_worker_thread():
    """The drain and what the copies take from CUDA happen on the launching thread (a capture on
    another thread would refuse them on the worker); the copies and the host side on the worker."""
    rec, where = Recorder(), []
    held = DeviceHeld(sync=lambda held: where.append(("sync", threading.current_thread().name)),
                      prepare=lambda held: where.append(("prepare", threading.current_thread().name)),
                      land=rec.land)
    rs = [Rec(10) for _ in range(5)]
    for r in rs[:2]:
        held.add(r, budget=40)
    assert rec.batches == [] and held.bytes == 20  # exactly half: held on
    held.add(rs[2], budget=40)  # 30 > 20: spilled, beside the launching thread
    held.spill()  # results: wait for it
    assert rec.batches[0][0] == [10, 10, 10] and rec.batches[0][1].startswith("kperf-spill")
    assert held.spills == 1 and held.bytes == 0 and all(r.host for r in rs[:3])
    here = threading.current_thread().name
    assert where == [("sync", here), ("prepare", here)]


def test_at_most_one_spill_is_in_flight_and_results_wait_for_it():
    rec = Recorder()
    held = DeviceHeld(sync=lambda held: None, prepare=NO_CUDA, land=rec.land)
    rec.gate.clear()  # the first spill's copies hang until the gate opens
    for r in (Rec(30), Rec(30)):
        held.add(r, budget=40)  # each is over half: the second must wait for the first
        if not rec.gate.is_set():
            threading.Timer(0.2, rec.gate.set).start()
    assert rec.batches and rec.batches[0][0] == [30]  # the second add waited for the first spill
    last = Rec(5)
    held.add(last, budget=40)
    held.spill()  # lands the second spill (awaited) and the one still held, on this thread
    assert [b[0] for b in rec.batches] == [[30], [30], [5]] and last.host
    assert rec.batches[2][1] == threading.current_thread().name and held.spills == 2
    assert rec.most_active == 1, "two spills were in flight at once"


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
        held.add(rs[0], budget=40)
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
