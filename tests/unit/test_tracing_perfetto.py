"""kperf.tracing.write_perfetto_trace: read back with the perfetto package's own protos.

(``perfetto.trace_processor`` needs a prebuilt binary fetched from the internet, so it is not used here.)
"""

from __future__ import annotations

import gzip
import time

import numpy as np
import pytest
from reference_encoder import CtaSpec, bulk_buffer, encode

from kperf.dialect.layout import Geometry
from kperf.tracing import FLOW_DTYPE, decode, write_perfetto_trace

pb = pytest.importorskip("perfetto.protos.perfetto.trace.perfetto_trace_pb2")

G0 = 1_700_000_000_000_000_000
CS = 1 << 36
TE = None  # TrackEvent enum values, filled below
BEGIN, END, INSTANT, COUNTER = 1, 2, 3, 4


def cta(warps, i, sm, *, t0=0):
    cs = CS + 2 * t0  # 2 GHz
    return CtaSpec(warps=[[(s, e, cs + t) for s, e, t in w] for w in warps], sm=sm, ctaid=(i, 0, 0),
                   gtime_start=G0 + t0, clock_start=cs, gtime_end=G0 + t0 + 10_000, clock_end=cs + 20_000)


def nested():
    return [(0, False, 10), (1, False, 100), (1, True, 2100), (0, True, 3010)]


def launch(**kw):
    g = Geometry(2, kw.pop("capacity", 8), "clock")
    warps1 = kw.pop("warps1", [nested(), nested()])
    ctas = [cta([nested(), nested()], 0, sm=12), cta(warps1, 1, sm=3, t0=500)]
    return decode(encode(g, "keep-first", ctas), g, strategy="keep-first", scopes=["outer", "inner"], **kw)


class Trace:
    """A parsed trace: tracks by uuid, interned names, events per track."""

    def __init__(self, path):
        data = open(path, "rb").read()
        if str(path).endswith(".gz"):
            data = gzip.decompress(data)
        t = pb.Trace()
        t.ParseFromString(data)
        self.packets = list(t.packet)
        self.tracks = {p.track_descriptor.uuid: p.track_descriptor for p in self.packets
                       if p.HasField("track_descriptor")}
        self.names, self.annots = {}, {}
        for p in self.packets:
            if p.HasField("interned_data"):
                self.names.update({e.iid: e.name for e in p.interned_data.event_names})
                self.annots.update({e.iid: e.name for e in p.interned_data.debug_annotation_names})
        self.events = [(p.timestamp, p.track_event) for p in self.packets if p.HasField("track_event")]
        assert all(p.trusted_packet_sequence_id == 1 for p in self.packets)

    def path(self, uuid):
        out = []
        while uuid:
            d = self.tracks[uuid]
            out.append(d.name)
            uuid = d.parent_uuid
        return " / ".join(reversed(out))

    def name(self, te):
        return te.name or self.names[te.name_iid]

    def args(self, te):
        return {(a.name or self.annots[a.name_iid]): (a.string_value or a.int_value)
                for a in te.debug_annotations}

    def of_type(self, typ):
        return [(ts, te) for ts, te in self.events if te.type == typ]


def test_tracks_slices_and_annotations(tmp_path):
    d = launch(kernel="mm", warp_roles=["producer", "consumer"])
    s = write_perfetto_trace(tmp_path / "t.pftrace", d)
    tr = Trace(tmp_path / "t.pftrace")
    warp_tracks = {tr.path(u) for u, t in tr.tracks.items()
                   if "warp " in t.name and not t.HasField("counter")}
    assert warp_tracks == {"launch 0: mm / SM 12 / CTA 0 / producer (warp 0)",
                           "launch 0: mm / SM 12 / CTA 0 / consumer (warp 1)",
                           "launch 0: mm / SM 3 / CTA 1 / producer (warp 0)",
                           "launch 0: mm / SM 3 / CTA 1 / consumer (warp 1)"}
    begins, ends = tr.of_type(BEGIN), tr.of_type(END)
    assert len(begins) == len(ends) == s["slices"] == 8
    # per track: begin/end properly nested, in time order
    by_track = {}
    for ts, te in tr.events:
        if te.type in (BEGIN, END):
            name = tr.name(te) if te.type == BEGIN else None
            by_track.setdefault(te.track_uuid, []).append((ts, te.type, name))
    for evs in by_track.values():
        assert [e[1] for e in evs] == [BEGIN, BEGIN, END, END]
        assert [e[2] for e in evs[:2]] == ["outer", "inner"]
        assert [e[0] for e in evs] == sorted(e[0] for e in evs)
    ts, te = begins[0]
    assert tr.args(te) == {"scope": 0, "cta": 0, "warp": 0, "cycles": 3000}
    # CTA 1 entered 500 ns after CTA 0; 2 GHz: 10 cycles = 5 ns after entry, outer lasts 1500 ns
    outer = sorted((ts, tr.path(te.track_uuid)) for ts, te in begins if tr.name(te) == "outer")
    assert [t for t, _ in outer] == [5, 5, 505, 505]
    end_ts = sorted(ts for ts, te in ends)
    assert end_ts[-1] == 505 + 1500


def test_counter_tracks(tmp_path):
    d = launch()
    write_perfetto_trace(tmp_path / "t.pftrace", d)
    tr = Trace(tmp_path / "t.pftrace")
    counters = {u: t.name for u, t in tr.tracks.items() if t.HasField("counter")}
    assert sorted(counters.values()) == ["warps in inner", "warps in outer"]
    outer = [(ts, te.counter_value) for ts, te in tr.of_type(COUNTER)
             if counters[te.track_uuid] == "warps in outer"]
    assert outer == [(5, 2), (505, 4), (1505, 2), (2005, 0)]


def test_unmatched_lost_and_notes(tmp_path):
    # CTA 1 warp 1: capacity 3 keeps S0 S1 E1, so outer's start never sees its end (1 record lost)
    d = launch(capacity=3)
    assert d.lost_total == 4  # every warp lost its last record
    write_perfetto_trace(tmp_path / "t.pftrace", d)
    tr = Trace(tmp_path / "t.pftrace")
    inst = tr.of_type(INSTANT)
    names = sorted(tr.name(te) for _, te in inst)
    assert names.count("outer (start, no end)") == 4 and names.count("lost records") == 4
    lost = [tr.args(te) for _, te in inst if tr.name(te) == "lost records"]
    assert lost[0] == {"lost": 1, "count": 4, "kept": 3}
    [note] = [te for _, te in inst if tr.name(te).startswith("kperf:")]
    args = tr.args(note)
    assert "4 records lost" in args["lost records"] and "4 starts without end" in args["unmatched"]


def test_flows(tmp_path):
    d = launch()
    flows = np.zeros(3, FLOW_DTYPE)
    flows[0] = (0, 0, 50.0, 1, 1000.0, 1)
    flows[1] = (1, 1, 600.0, 0, 900.0, 0)
    flows[2] = (7, 0, 1.0, 1, 2.0, 0)  # a CTA not in the launch: left out
    s = write_perfetto_trace(tmp_path / "t.pftrace", d, flows=flows)
    assert s["flows"] == 2 and s["flows_skipped"] == 1
    tr = Trace(tmp_path / "t.pftrace")
    src = {te.flow_ids[0]: (ts, tr.path(te.track_uuid), tr.name(te)) for ts, te in tr.events if te.flow_ids}
    dst = {te.terminating_flow_ids[0]: (ts, tr.path(te.track_uuid)) for ts, te in tr.events
           if te.terminating_flow_ids}
    assert src.keys() == dst.keys() and len(src) == 2
    pairs = sorted((src[k], dst[k]) for k in src)
    assert pairs[0] == ((50, "launch 0 / SM 12 / CTA 0 / warp 0", "inner"),
                        (1000, "launch 0 / SM 12 / CTA 0 / warp 1"))


def test_flows_of_a_warp_specialised_kernel(tmp_path):
    """Every flow that automatic insertion pairs is written, each id once, across launches."""
    import known_profiles as kp

    (a, fa), (b, fb) = kp.with_flows(launch=0), kp.with_flows(launch=1)
    s = write_perfetto_trace(tmp_path / "t.pftrace", [a, b], flows=[fa, fb])
    assert s["flows"] == 30 and s["flows_skipped"] == 0
    tr = Trace(tmp_path / "t.pftrace")
    src = [te.flow_ids[0] for _, te in tr.events if te.flow_ids]
    dst = [te.terminating_flow_ids[0] for _, te in tr.events if te.terminating_flow_ids]
    assert len(set(src)) == len(src) == 30 and sorted(src) == sorted(dst)
    assert {tr.name(te) for _, te in tr.events if te.flow_ids} == {"tma.load", "wgmma"}


def test_subset_gzip_and_several_launches(tmp_path):
    a, b = launch(launch=0), launch(launch=1)
    s = write_perfetto_trace(tmp_path / "t.pftrace.gz", [a, b], select="ctas:1")
    tr = Trace(tmp_path / "t.pftrace.gz")
    ctas = {t.name for t in tr.tracks.values() if t.name.startswith("CTA")}
    assert ctas == {"CTA 1"} and s["slices"] == 8
    launches = sorted(t.name for t in tr.tracks.values() if t.name.startswith("launch"))
    assert launches == ["launch 0", "launch 1"]
    info = s["launches"][0]
    assert info["selection"] == "ctas:1" and info["ctas"] == 1
    assert info["events"] == 8 and info["events_total"] == 16


def test_default_subset_of_a_large_launch(tmp_path, capsys):
    g, raw = bulk_buffer(n_ctas=600, num_warps=4, capacity=512)  # 1.2M events, 132 SMs: waves of 132
    d = decode(raw, g, strategy="keep-first")
    s = write_perfetto_trace(tmp_path / "t.pftrace", d)
    info = s["launches"][0]
    assert info["selection"] == "first-wave" and info["automatic"] and info["ctas"] == 132
    assert s["slices"] == 132 * 4 * 256
    err = capsys.readouterr().err
    assert "first wave" in err and "select='all'" in err
    tr = Trace(tmp_path / "t.pftrace")
    [note] = [te for _, te in tr.of_type(INSTANT) if tr.name(te).startswith("kperf:")]
    assert "left out" in tr.args(note)["holds"]


def test_failed_write_leaves_nothing(tmp_path):
    d = launch()
    with pytest.raises(TypeError):
        write_perfetto_trace(tmp_path / "t.pftrace", d, flows=np.zeros(2, np.int64))
    assert list(tmp_path.iterdir()) == []


def test_perfetto_write_throughput(tmp_path):
    """Encoding stays vectorised: 1M events (500k slices) well under the floor."""
    g, raw = bulk_buffer(n_ctas=256, num_warps=8, capacity=512)
    d = decode(raw, g, strategy="keep-first")
    d.pairs()
    best = float("inf")
    for i in range(2):
        t = time.perf_counter()
        s = write_perfetto_trace(tmp_path / f"t{i}.pftrace", d, select="all", progress=False)
        best = min(best, time.perf_counter() - t)
    rate = s["slices"] / best
    print(f"perfetto: {rate / 1e6:.2f} M slices/s")
    assert s["slices"] == 256 * 8 * 256 and rate > 3e5, f"{rate / 1e6:.2f} M slices/s"


def test_sms_busiest_first_and_the_summary_names_the_first_view(tmp_path):
    """A launch is a top-level track (Perfetto expands a lone one), its counters first, then its SMs
    busiest first; the summary names the busiest SM and its CTAs (kperf view expands them)."""
    d = launch(warps1=[nested(), [(0, False, 10), (0, True, 3010)]])  # SM 3 (CTA 1) has fewer slices
    s = write_perfetto_trace(tmp_path / "t.pftrace", d)
    tr = Trace(tmp_path / "t.pftrace")
    roots = [t for t in tr.tracks.values() if not t.parent_uuid]
    assert [t.name for t in roots] == ["launch 0"]
    sms = sorted((t.sibling_order_rank, t.name) for t in tr.tracks.values() if t.name.startswith("SM "))
    assert [name for _, name in sms] == ["SM 12", "SM 3"]
    counters = [t.sibling_order_rank for t in tr.tracks.values() if t.HasField("counter")]
    assert max(counters) < sms[0][0]
    assert s["launches"][0]["busiest_sm"] == 12 and s["launches"][0]["busiest_sm_ctas"] == ["CTA 0"]
    s = write_perfetto_trace(tmp_path / "t.pftrace", launch())  # a tie: by number
    assert s["launches"][0]["busiest_sm"] == 3 and s["launches"][0]["busiest_sm_ctas"] == ["CTA 1"]


def annotations(te):
    """A track event's debug annotations with inline names, by name: (which value field, value)."""
    return {a.name: (a.WhichOneof("value"), getattr(a, a.WhichOneof("value"))) for a in te.debug_annotations}


def test_launch_args_as_typed_annotations_on_the_launch_track(tmp_path):
    """kperf ncu's numbers (any launch_args) on an instant at the launch's start, on its track: ints as
    int_value, fractions as double_value, text as string_value; missing numbers left out."""
    a, b = launch(launch=0, kernel="mm"), launch(launch=1, kernel="mm")
    args = {1: {"dram_read_bytes": np.float64(1.1e9), "l2_hit_pct": 90.5, "problem": "gemm",
                "l2_bytes": float("nan")}}
    s = write_perfetto_trace(tmp_path / "t.pftrace", [a, b], launch_args=args,
                             launch_args_name="memory traffic (ncu)")
    tr = Trace(tmp_path / "t.pftrace")
    [(ts, te)] = [(ts, te) for ts, te in tr.of_type(INSTANT) if te.name == "memory traffic (ncu)"]
    assert tr.path(te.track_uuid) == "launch 1: mm"
    assert ts == s["launches"][1]["trace_offset_ns"]
    assert annotations(te) == {"dram_read_bytes": ("int_value", 1_100_000_000),
                               "l2_hit_pct": ("double_value", 90.5), "problem": ("string_value", "gemm")}
    assert "args" not in s["launches"][0] and s["launches"][1]["args"]["l2_hit_pct"] == 90.5


def test_launch_info_as_annotations_without_launch_args(tmp_path):
    """DecodedLaunch.info on the launch-args instant of its track, typed; lists comma-separated; the
    caller's launch_args win on a name they share."""
    a, b = launch(launch=0, kernel="mm"), launch(launch=1, kernel="relu")
    b.info = {"inductor_ops": ["aten.addmm", "aten.relu"], "replay": 3, "cuda_graph": True, "ms": 0.5,
              "launch_path": "inductor"}
    s = write_perfetto_trace(tmp_path / "t.pftrace", [a, b], launch_args={1: {"launch_path": "given"}})
    tr = Trace(tmp_path / "t.pftrace")
    [(ts, te)] = [(ts, te) for ts, te in tr.of_type(INSTANT) if te.name == "launch args"]
    assert tr.path(te.track_uuid) == "launch 1: relu" and ts == s["launches"][1]["trace_offset_ns"]
    assert annotations(te) == {"inductor_ops": ("string_value", "aten.addmm, aten.relu"),
                               "replay": ("int_value", 3), "cuda_graph": ("bool_value", True),
                               "ms": ("double_value", 0.5), "launch_path": ("string_value", "given")}
    assert "args" not in s["launches"][0] and s["launches"][1]["args"]["replay"] == 3


def test_no_launch_args_writes_the_same_bytes(tmp_path):
    plain, none, other = (tmp_path / f"{n}.pftrace" for n in ("plain", "none", "other"))
    write_perfetto_trace(plain, launch())
    write_perfetto_trace(none, launch(), launch_args=None)
    write_perfetto_trace(other, launch(), launch_args={5: {"dram_read_bytes": 1}})  # no launch 5
    assert plain.read_bytes() == none.read_bytes() == other.read_bytes()
