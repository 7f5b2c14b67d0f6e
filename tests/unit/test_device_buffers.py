"""Where profile buffers come from: outside any pool this thread is routed to (Inductor's CUDA graph trees
route their warm-ups and recordings to a pool they check and recycle), or the graph's pool in a "global"
capture, where no thread may allocate device memory.  The GPU test
``test_reduce_overhead_cudagraph_replays_are_captured`` runs the real trees."""

from __future__ import annotations

import threading

import pytest
import torch

from kperf import cuda_graphs, device_buffers


@pytest.fixture
def fake_routing(monkeypatch):
    """torch._C's allocate-to-pool calls replaced by recorders, then watched as kperf watches them."""
    calls = []
    device_buffers.uninstall()
    for name in (*device_buffers.ROUTE_BEGIN, device_buffers.ROUTE_END):
        monkeypatch.setattr(torch._C, name, lambda *a, _n=name: calls.append((_n, a)), raising=False)
    device_buffers.install()
    yield calls
    device_buffers.uninstall()


def test_a_thread_routed_to_a_pool_is_seen_until_the_route_ends(fake_routing):
    assert not device_buffers.routed()
    torch._C._cuda_beginAllocateCurrentThreadToPool(0, (1, 2))  # what the trees' pool manager calls
    assert device_buffers.routed()
    other = []
    t = threading.Thread(target=lambda: other.append(device_buffers.routed()))
    t.start()
    t.join()
    assert other == [False]  # the route is this thread's
    torch._C._cuda_endAllocateToPool(0, (1, 2))
    assert not device_buffers.routed()
    torch._C._cuda_endAllocateToPool(0, (1, 2))  # an end kperf saw no begin for
    assert not device_buffers.routed()
    assert [c[0] for c in fake_routing] == ["_cuda_beginAllocateCurrentThreadToPool",
                                            "_cuda_endAllocateToPool", "_cuda_endAllocateToPool"]
    assert fake_routing[0][1] == (0, (1, 2))  # torch's own function still does the routing


def test_uninstall_puts_torch_back(fake_routing):
    wrapped = torch._C._cuda_endAllocateToPool
    device_buffers.uninstall()
    assert torch._C._cuda_endAllocateToPool is not wrapped
    torch._C._cuda_endAllocateToPool(0, (1, 2))
    assert fake_routing[-1][0] == "_cuda_endAllocateToPool"


@pytest.mark.parametrize("mode, routed, expected", [
    (None, False, False),  # an ordinary launch: the current allocation, as any tensor
    (None, True, True),  # a trees' warm-up: never their pool
    ("thread_local", False, True),  # a trees' recording: another thread may allocate
    ("relaxed", True, True),
    ("global", True, False),  # no thread may allocate: the graph's own pool
])
def test_the_buffer_leaves_every_pool_where_it_may(fake_routing, mode, routed, expected):
    if routed:
        torch._C._cuda_beginAllocateCurrentThreadToPool(0, (1, 2))
    assert device_buffers.off_pool(mode) is expected


def test_an_off_pool_allocation_runs_on_kperfs_worker_thread():
    seen = []

    def allocate(nbytes, device):
        seen.append((threading.get_ident(), threading.current_thread().name))
        return torch.zeros(nbytes, dtype=torch.uint8)
    buf = device_buffers.allocate_off_pool(64, 0, allocate)
    assert buf.numel() == 64
    ident, name = seen[0]
    assert ident != threading.get_ident() and name.startswith("kperf-alloc")


@pytest.mark.parametrize("args, kwargs, mode", [
    ((), {}, "global"),  # torch.cuda.CUDAGraph.capture_begin's default
    ((None, "relaxed"), {}, "relaxed"),
    ((), {"pool": None, "capture_error_mode": "thread_local"}, "thread_local"),  # torch.cuda.graph's call
])
def test_the_capture_wrapper_knows_the_capture_mode(monkeypatch, args, kwargs, mode):
    seen = []
    monkeypatch.setitem(cuda_graphs._originals, "capture_begin",
                        lambda self, *a, **k: seen.append(cuda_graphs.capture_mode()))
    monkeypatch.setitem(cuda_graphs._originals, "capture_end", lambda self, *a, **k: None)

    class Graph:
        pass
    g = Graph()
    assert cuda_graphs.capture_mode() is None
    cuda_graphs._capture_begin(g, *args, **kwargs)
    cuda_graphs._capture_end(g)
    assert seen == [mode] and cuda_graphs.capture_mode() is None


def _cpu_slab(made):
    def make(n):
        made.append(n)
        return torch.zeros(n, dtype=torch.uint8)
    return make


def test_buffers_are_carved_from_zeroed_slabs_aligned_and_disjoint():
    made = []
    slabs = device_buffers.Slabs(min_bytes=4096, max_bytes=1 << 20)
    bufs = [slabs.take(1024, 128, "s0", _cpu_slab(made)) for _ in range(65)]
    assert made == [65536, 65536]  # one slab (one allocation, one memset) per 64 buffers
    assert all(b.numel() == 1024 and not b.any() for b in bufs)
    base = bufs[0].data_ptr()
    assert [b.data_ptr() - base for b in bufs[:64]] == [1024 * i for i in range(64)]
    odd = [slabs.take(1000, 128, "s1", _cpu_slab(made)) for _ in range(3)]
    # each start aligned (from the slab's start), none overlapping
    assert [b.data_ptr() - odd[0].data_ptr() for b in odd] == [0, 1024, 2048]


def test_each_stream_has_its_own_slab_and_a_large_buffer_its_own():
    made = []
    slabs = device_buffers.Slabs(min_bytes=4096, max_bytes=1 << 16)
    a, b = slabs.take(512, 128, "s0", _cpu_slab(made)), slabs.take(512, 128, "s1", _cpu_slab(made))
    assert made == [32768, 32768] and a.data_ptr() != b.data_ptr()
    big = slabs.take(1 << 20, 128, "s0", _cpu_slab(made))
    assert made[-1] == 1 << 20 and big.numel() == 1 << 20


def test_a_slab_is_freed_once_its_buffers_and_the_pool_let_go():
    import weakref
    made = []
    slabs = device_buffers.Slabs(min_bytes=4096, max_bytes=1 << 16)
    buf = slabs.take(512, 128, "s0", _cpu_slab(made))
    base = buf._base
    assert base is not None and base.numel() == 32768  # a view of the slab
    slab_ref = weakref.ref(base)
    del buf, base
    assert slab_ref() is not None  # still the stream's current slab
    slabs.release()
    assert slab_ref() is None


def test_where_a_launch_buffer_comes_from(monkeypatch):
    """Ordinary launches share their stream's slab; a capture kperf saw in global mode, or one it did not
    see begin, gets a buffer of its own (from the graph's pool: every replay zeroes it again)."""
    own = []
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(torch._C, "_cuda_getCurrentRawStream", lambda d: 7, raising=False)

    def zeros(n, on):
        own.append((n, on))
        return torch.zeros(n, dtype=torch.uint8)
    monkeypatch.setattr(device_buffers, "_zeros", zeros)
    monkeypatch.setattr(device_buffers, "SLABS", device_buffers.Slabs(min_bytes=4096, max_bytes=1 << 20))
    a = device_buffers.zeroed_buffer(1024, None)
    b = device_buffers.zeroed_buffer(1024, 7)  # the current stream's handle: the same slab
    assert own == [(65536, None)] and b.data_ptr() - a.data_ptr() == 1024
    device_buffers.zeroed_buffer(1024, 9)  # another stream: its own slab, zeroed on that stream
    assert own[-1] == (65536, 9)
    device_buffers.zeroed_buffer(1024, None, capture_mode="global")
    assert own[-1] == (1024, None)
    device_buffers.zeroed_buffer(2048, None, unseen_capture=True)  # a capture kperf did not see begin
    assert own[-1] == (2048, None)


def test_a_launch_in_a_capture_kperf_did_not_see_is_asked_once_and_left_out(monkeypatch):
    """The allocation asks whether the stream captures a graph kperf did not see begin (one CUDA query
    per launch); its buffer is then not carved from a slab, and the launch-exit hook leaves the launch
    out with a warning, reading the same answer."""
    from kperf import copy_out
    from kperf.dialect.layout import Geometry
    from kperf.dialect.scope_table import ScopeTable
    from kperf.runtime import Capture, Dispatcher, KernelInfo
    asked, given = [], []
    monkeypatch.setattr(cuda_graphs, "capturing_unseen", lambda: asked.append(1) or True)
    monkeypatch.setattr(device_buffers, "zeroed_buffer",
                        lambda size, stream, **kw: given.append(kw) or torch.zeros(size, dtype=torch.uint8))
    monkeypatch.setattr(copy_out, "HELD", copy_out.DeviceHeld())
    d, cap = Dispatcher(), Capture(memory_budget=None)
    d.push_kernel_capture(cap)
    g = Geometry(4, 2)
    d._kernels[7] = KernelInfo("k", "h", ScopeTable.from_json([]), g, "keep-first", 2)
    d._allocate(3 * g.cta_bytes, 128, 0)
    assert given[0]["unseen_capture"] is True and given[0]["capture_mode"] is None
    with pytest.warns(UserWarning, match="capture began before kperf was watching"):
        d._on_launch_exit({"function": 7, "name": "k", "stream": 0})
    assert asked == [1] and cap.launches == []
