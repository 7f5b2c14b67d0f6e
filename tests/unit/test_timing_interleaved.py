"""bench/timing.py's interleaved timing without a GPU: the profiler's kernel records (faked here, in the
order the device ran them) are handed back to the variant that launched each, cycle by cycle, whatever
order the profiler lists them in; other kernels (a profile buffer's memset) are not counted."""

from __future__ import annotations

import types

import pytest
import torch

from bench import timing


class FakeProfile:
    """Records every launch as a kernel event: time = the launching variant's cost this cycle."""

    launches: list = []

    def __init__(self, activities=None):
        FakeProfile.launches = []

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def events(self):
        evs = [types.SimpleNamespace(name=name, device_time=us, time_range=types.SimpleNamespace(start=i))
               for i, (name, us) in enumerate(FakeProfile.launches)]
        return list(reversed(evs))  # the profiler's listing order is not the launch order


def _launcher(kernel_us: float, cycle_clock: list):
    def launch():
        FakeProfile.launches.append(("gluon_matmul_kernel", kernel_us * cycle_clock[0]))
        FakeProfile.launches.append(("memset", 1.0))  # not the kernel: not counted
    return launch


def test_each_kernel_goes_back_to_its_variant_and_pairs_cancel_a_moving_clock(monkeypatch):
    monkeypatch.setattr(torch.profiler, "profile", FakeProfile)
    monkeypatch.setattr(torch.cuda, "synchronize", lambda *a: None)
    slow = [1.0]  # the clock a power cap moves: every launch of a cycle sees the same factor
    fns = {"plain": _launcher(1000.0, slow), "kperf": _launcher(1020.0, slow)}

    def cycle_of(fns):  # the factor changes between cycles, as the cap moves the clock
        calls = {"n": 0}

        def wrap(f):
            def g():
                calls["n"] += 1
                slow[0] = 1.0 + 0.3 * ((calls["n"] - 1) // 2 % 3)
                f()
            return g
        return {k: wrap(f) for k, f in fns.items()}
    got = timing.interleaved_device_times_ms(cycle_of(fns), 6, "gluon_matmul_kernel")
    assert [len(v) for v in got.values()] == [6, 6]
    assert got["plain"][:3] == [1.0, 1.3, 1.6] and got["kperf"][:3] == pytest.approx([1.02, 1.326, 1.632])
    assert timing.paired_overhead(got["kperf"], got["plain"]) == pytest.approx(0.02)


def test_a_missing_kernel_is_an_error_not_a_shifted_pairing(monkeypatch):
    monkeypatch.setattr(torch.profiler, "profile", FakeProfile)
    monkeypatch.setattr(torch.cuda, "synchronize", lambda *a: None)
    fns = {"plain": _launcher(1000.0, [1.0]), "kperf": lambda: None}
    with pytest.raises(RuntimeError, match="expected 4 gluon_matmul_kernel kernels.*found 2"):
        timing.interleaved_device_times_ms(fns, 2, "gluon_matmul_kernel")
