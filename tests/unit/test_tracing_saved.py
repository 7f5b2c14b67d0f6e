"""kperf.tracing.saved and Profile.save/load: lossless round trips and clear errors on bad files."""

from __future__ import annotations

import json
import zipfile

import numpy as np
import pytest
from reference_encoder import CtaSpec, bulk_buffer, encode

from kperf.dialect.errors import KperfError
from kperf.dialect.layout import Geometry
from kperf.profile_data import Profile
from kperf.tracing import decode, load_profile, save_profile
from kperf.tracing.saved import SavedLaunch, read_manifest

G0 = 1_700_000_000_000_000_000


def small(launch=0, **kw):
    g = Geometry(2, 4, "clock")
    w = [(0, False, 1010), (0, True, 1110), (1, False, 1200), (1, True, 1300), (0, False, 1400)]
    ctas = [CtaSpec(warps=[w, w[:2]], sm=5, ctaid=(0, 0, 0), gtime_start=G0, clock_start=1000,
                    gtime_end=G0 + 5000, clock_end=11_000)]
    return decode(encode(g, "keep-first", ctas), g, strategy="keep-first", launch=launch, scopes=["a", "b"],
                  kernel="k", warp_roles=["producer", "consumer"], grid=(1, 1, 1), **kw)


def same(a, b):
    assert np.array_equal(a.events, b.events)
    assert np.array_equal(a.intervals()[0], b.intervals()[0])
    assert np.array_equal(a.ctas, b.ctas) and np.array_equal(a.lost, b.lost)
    assert (a.kernel, a.warp_roles, a.grid, a.scopes, a.strategy, a.geometry) == \
           (b.kernel, b.warp_roles, b.grid, b.scopes, b.strategy, b.geometry)
    assert (a.lost_total, a.problems, a.t0_ns) == (b.lost_total, b.problems, b.t0_ns)


def test_round_trip_buffer_and_columns(tmp_path):
    a = small(0)
    b = small(3, keep_raw=False)  # no buffer kept: its decoded tables are saved
    assert a.lost_total == 1
    path = save_profile(tmp_path / "p.kperf", [a, b], device="NVIDIA H100 80GB HBM3")
    m = read_manifest(path)
    assert m["format"] == "kperf-profile" and m["version"] == 1 and m["device"] == "NVIDIA H100 80GB HBM3"
    assert [e["payload"] for e in m["launches"]] == ["buffer", "columns"]
    assert m["launches"][0]["kernel"] == "k" and m["launches"][0]["scopes"] == [[0, "a"], [1, "b"]]
    a2, b2 = load_profile(path)
    same(a, a2)
    same(b, b2)
    assert b2.launch == 3 and a2.raw is not None


def test_big_round_trip_is_fast(tmp_path):
    import time
    g, raw = bulk_buffer(n_ctas=512, num_warps=8, capacity=512)  # 2.1M events
    d = decode(raw, g, strategy="keep-first", scopes=4)
    t = time.perf_counter()
    save_profile(tmp_path / "big.kperf", [d])
    [e] = load_profile(tmp_path / "big.kperf")
    dt = time.perf_counter() - t
    assert np.array_equal(e.columns["cycles"], d.columns["cycles"]) and len(e.pairs()) == len(d.pairs())
    assert dt < 5.0, f"save + load of 2.1M events took {dt:.2f} s"


def test_profile_save_and_load(tmp_path):
    prof = Profile([SavedLaunch(small(0)), SavedLaunch(small(1))])
    out = prof.save(tmp_path / "run")
    assert set(out) == {"profile", "trace", "summary"}
    again = Profile.load(tmp_path / "run")  # the directory finds its profile.kperf
    assert len(again) == 2 and again.table() == prof.table()
    only = prof.save(tmp_path / "x.kperf")
    assert only == {"profile": str(tmp_path / "x.kperf")}
    assert np.array_equal(Profile.load(only["profile"]).events(), prof.events())
    assert Profile.load(only["profile"]).to_perfetto(tmp_path / "t.pftrace").endswith("t.pftrace")


def test_empty_profile_is_refused(tmp_path):
    with pytest.raises(KperfError, match="no launches"):
        save_profile(tmp_path / "e.kperf", [])
    assert not (tmp_path / "e.kperf").exists()


def expect_error(path, words):
    with pytest.raises(KperfError) as e:
        load_profile(path)
    assert words in str(e.value), str(e.value)
    assert e.value.fix
    return e.value


def test_missing_and_directory(tmp_path):
    expect_error(tmp_path / "nope.kperf", "no saved profile")
    expect_error(tmp_path, "is a directory")


def test_truncated(tmp_path):
    path = save_profile(tmp_path / "p.kperf", [small()])
    data = open(path, "rb").read()
    for cut in (10, len(data) // 2, len(data) - 30):
        bad = tmp_path / f"cut{cut}.kperf"
        bad.write_bytes(data[:cut])
        expect_error(bad, "not a readable kperf profile")


def test_corrupt_buffer_fails_the_crc(tmp_path):
    path = save_profile(tmp_path / "p.kperf", [small()])
    data = bytearray(open(path, "rb").read())
    with zipfile.ZipFile(path) as z:
        info = z.getinfo("launches/0/buffer.bin")
    data[info.header_offset + 30 + len(info.filename) + 20 + 100] ^= 0xFF  # inside the stored buffer
    (tmp_path / "bad.kperf").write_bytes(bytes(data))
    expect_error(tmp_path / "bad.kperf", "CRC")


def rewrite_manifest(src, dst, change):
    with zipfile.ZipFile(src) as z, zipfile.ZipFile(dst, "w") as out:
        for item in z.infolist():
            data = z.read(item.filename)
            if item.filename == "manifest.json":
                m = json.loads(data)
                change(m)
                data = json.dumps(m).encode()
            out.writestr(item, data)


def test_other_format_version(tmp_path):
    path = save_profile(tmp_path / "p.kperf", [small()])
    rewrite_manifest(path, tmp_path / "v9.kperf", lambda m: m.update(version=9))
    err = expect_error(tmp_path / "v9.kperf", "format version 9")
    assert "upgrade kperf" in err.fix
    rewrite_manifest(path, tmp_path / "other.kperf", lambda m: m.update(format="something"))
    expect_error(tmp_path / "other.kperf", "not a kperf profile")
    rewrite_manifest(path, tmp_path / "none.kperf", lambda m: m.update(launches=[]))
    expect_error(tmp_path / "none.kperf", "holds no launches")
    rewrite_manifest(path, tmp_path / "size.kperf", lambda m: m["launches"][0].update(n_ctas=5))
    expect_error(tmp_path / "size.kperf", "expected 5 CTAs")


def test_not_a_zip(tmp_path):
    (tmp_path / "j.kperf").write_text('{"traceEvents": []}')
    expect_error(tmp_path / "j.kperf", "not a zip archive")


def test_failed_save_leaves_nothing(tmp_path):
    with pytest.raises(KperfError):
        save_profile(tmp_path / "p.kperf", [small(), "not a launch"])
    assert list(tmp_path.iterdir()) == []


# ------------------------------------------------------------------ malformed manifests and decoded tables


@pytest.mark.parametrize("change, words", [
    (lambda m: m["launches"][0].update(geometry=None), "launches[0].geometry: expected an object, got None"),
    (lambda m: m["launches"][0].update(index=2**80), "launches[0].index: expected an int in [0, 1)"),
    (lambda m: m["launches"][0].update(index=True), "launches[0].index: expected an int"),
    (lambda m: m["launches"][0].update(n_ctas="1"), "launches[0].n_ctas: expected an int"),
    (lambda m: m["launches"][0].update(launch=-1), "launches[0].launch: expected an int in [0, 4294967296)"),
    (lambda m: m["launches"][0].update(strategy=3), "launches[0].strategy: expected one of keep-first, wrap"),
    (lambda m: m["launches"][0].update(scopes=[[0]]), "launches[0].scopes: expected a list of [id, name]"),
    (lambda m: m["launches"][0].update(grid=[0, 1, 1]), "launches[0].grid: expected a list of 1 to 3"),
    (lambda m: m["launches"][0].update(grid=[1, 1, 1, 1]), "launches[0].grid: expected 1 to 3"),
    (lambda m: m["launches"][0].update(warp_roles="producer"), "launches[0].warp_roles: expected a list"),
    (lambda m: m["launches"][0].update(clock_ghz="fast"), "launches[0].clock_ghz: expected a number"),
    (lambda m: m["launches"][0].update(problems="none"), "launches[0].problems: expected a list of strings"),
    (lambda m: m["launches"][0].update(t0_ns=1.5), "launches[0].t0_ns: expected an int"),
    (lambda m: m["launches"][0].pop("lost_total"), "launches[0].lost_total: expected an int"),
    (lambda m: m["launches"][0].update(payload=None), "launches[0].payload: expected a string"),
    (lambda m: m["launches"][0]["geometry"].update(capacity=2**40),
     "launches[0].geometry.capacity: expected an int in [1, 4194305)"),
    (lambda m: m["launches"][0]["geometry"].update(num_warps="2"), "launches[0].geometry.num_warps"),
    (lambda m: m["launches"][0]["geometry"].update(clock="sundial"), "launches[0].geometry.clock: expected"),
    (lambda m: m["launches"][0]["geometry"].update(warps=[1, 0]), "launches[0].geometry: warps must be"),
    (lambda m: m.update(launches={"0": 1}), "manifest.json.launches: expected a list"),
    (lambda m: m["launches"].__setitem__(0, 7), "launches[0]: expected an object, got 7"),
    (lambda m: m.update(version=True), "format version True"),
])
def test_malformed_manifests_name_the_file_and_the_field(tmp_path, change, words):
    path = save_profile(tmp_path / "p.kperf", [small()])
    rewrite_manifest(path, tmp_path / "bad.kperf", change)
    err = expect_error(tmp_path / "bad.kperf", words)
    assert str(err).startswith(str(tmp_path / "bad.kperf"))


def test_two_launches_pointing_at_one_buffer_are_refused(tmp_path):
    path = save_profile(tmp_path / "p.kperf", [small(0), small(1)])
    rewrite_manifest(path, tmp_path / "dup.kperf", lambda m: m["launches"][1].update(index=0))
    err = expect_error(tmp_path / "dup.kperf", "launches[1].index: 0 again (launches[0] has it)")
    assert "two launches would read one buffer" in str(err)


def test_deeply_nested_manifest_is_a_clean_error(tmp_path):
    bad = tmp_path / "deep.kperf"
    with zipfile.ZipFile(bad, "w") as z:
        z.writestr("manifest.json", "[" * 100_000 + "]" * 100_000)
    expect_error(bad, "nests too deeply")


def rewrite_member(src, dst, member, array):
    import io
    with zipfile.ZipFile(src) as z, zipfile.ZipFile(dst, "w") as out:
        for item in z.infolist():
            data = z.read(item.filename)
            if item.filename == member:
                b = io.BytesIO()
                np.save(b, array)
                data = b.getvalue()
            out.writestr(item, data)


def test_decoded_tables_with_nan_or_reversed_times_are_refused(tmp_path):
    d = small(keep_raw=False)
    path = save_profile(tmp_path / "c.kperf", [d])
    same(d, load_profile(path)[0])  # the unchanged tables load
    t = d.columns["time_ns"].copy()
    t[2] = np.nan
    rewrite_member(path, tmp_path / "nan.kperf", "launches/0/time_ns.npy", t)
    expect_error(tmp_path / "nan.kperf", "launch 0 time_ns: 1 of 6 event times are NaN or infinite")
    iv = d.intervals()[0][0]  # the first interval: move its end before its start
    t = d.columns["time_ns"].copy()
    ends = np.flatnonzero((d.columns["time_ns"] == iv["end_ns"]) & d.columns["is_end"])
    t[ends[0]] = iv["start_ns"] - 50.0
    rewrite_member(path, tmp_path / "rev.kperf", "launches/0/time_ns.npy", t)
    err = expect_error(tmp_path / "rev.kperf", "launch 0: 1 scope intervals end before they start")
    assert f"CTA {int(iv['cta'])} warp {int(iv['warp'])}" in str(err)


@pytest.mark.parametrize("member, array, words", [
    ("time_ns", np.zeros(3), "launch 0 time_ns: expected 6 events"),
    ("time_ns", np.zeros(6, np.int64), "launch 0 time_ns: expected 6 events of kind 'f'"),
    ("seg_n", np.array([-1, 8]), "a negative event count"),
    ("seg_cta", np.zeros(5, np.int64), "launch 0 seg_cta: expected one int per segment"),
    ("ctas", np.zeros(1, np.float64), "launch 0 ctas: not a table of ctas"),
])
def test_malformed_decoded_tables_name_the_member(tmp_path, member, array, words):
    path = save_profile(tmp_path / "c.kperf", [small(keep_raw=False)])
    rewrite_member(path, tmp_path / "bad.kperf", f"launches/0/{member}.npy", array)
    expect_error(tmp_path / "bad.kperf", words)


def test_a_damaged_npy_header_is_a_clean_error(tmp_path):
    path = save_profile(tmp_path / "c.kperf", [small(keep_raw=False)])
    with zipfile.ZipFile(path) as z:
        good = z.read("launches/0/seg_cta.npy")
    for bad in (good.replace(b"{", b"(", 1),  # the header dict does not tokenize
                good.replace(b"'shape': (", b"'shape': (9"),  # a shape that the data does not fill
                good[:9], b"\x93NUMPY\x09\x00"):
        with zipfile.ZipFile(path) as z, zipfile.ZipFile(tmp_path / "bad.kperf", "w") as out:
            for item in z.infolist():
                out.writestr(item, bad if item.filename == "launches/0/seg_cta.npy" else z.read(item))
        err = expect_error(tmp_path / "bad.kperf", "member launches/0/seg_cta.npy is not a valid array")
        assert str(err).startswith(str(tmp_path / "bad.kperf"))


@pytest.mark.parametrize("keep_raw", [True, False])
def test_warp_roles_must_name_every_warp(tmp_path, keep_raw):
    path = save_profile(tmp_path / "p.kperf", [small(keep_raw=keep_raw)])
    rewrite_manifest(path, tmp_path / "bad.kperf", lambda m: m["launches"][0]["warp_roles"].pop())
    expect_error(tmp_path / "bad.kperf", "launches[0].warp_roles: expected one role per warp (2 strings")


def _cols(d, name, change):
    a = (d.columns.seg[name[4:]] if name.startswith("seg_") else d.columns[name]).copy()
    change(a)
    return a


@pytest.mark.parametrize("member, change, words", [
    ("seg_cta", lambda a: a.__setitem__(0, 1 << 27),
     "launch 0 seg_cta: a CTA outside [0, 1) (the CTA table)"),
    ("seg_cta", lambda a: a.__setitem__(0, -1), "seg_cta: a CTA outside [0, 1)"),
    ("seg_warp", lambda a: a.__setitem__(1, 2), "launch 0 seg_warp: a warp outside [0, 2)"),
    ("seg_warp", lambda a: a.__setitem__(1, 0), "segments not in (CTA, warp) order, once each"),
    ("seg_sm", lambda a: a.__setitem__(0, 4), "seg_sm: not the SM of the segment's CTA"),
    ("seg_launch", lambda a: a.__setitem__(0, 9), "seg_launch: not the launch number 0"),
    ("scope", lambda a: a.__setitem__(3, 7), "launch 0 scope: a scope id not in the scope table"),
    ("is_end", lambda a: a.view(np.uint8).__setitem__(2, 2),
     "launch 0 is_end: a bool byte other than 0 or 1"),
])
def test_decoded_ids_are_checked(tmp_path, member, change, words):
    d = small(keep_raw=False)
    path = save_profile(tmp_path / "c.kperf", [d])
    rewrite_member(path, tmp_path / "bad.kperf", f"launches/0/{member}.npy", _cols(d, member, change))
    err = expect_error(tmp_path / "bad.kperf", words)
    assert "the first:" in str(err)


def test_scope_ids_must_be_in_the_scope_table(tmp_path):
    path = save_profile(tmp_path / "c.kperf", [small(keep_raw=False)])
    rewrite_manifest(path, tmp_path / "bad.kperf", lambda m: m["launches"][0]["scopes"].pop())
    expect_error(tmp_path / "bad.kperf", "launch 0 scope: a scope id not in the scope table "
                                         "(launches[].scopes) (2 of 6 events; the first: event 2, value 1)")
    rewrite_manifest(path, tmp_path / "n.kperf", lambda m: m["launches"][0].update(n_ctas=2))
    expect_error(tmp_path / "n.kperf", "launch 0 ctas: 1 CTAs, but the manifest says n_ctas 2")


def test_failed_save_names_the_path(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(KperfError, match=f"cannot write {blocker}/p.kperf"):
        save_profile(blocker / "p.kperf", [small()])
    old = save_profile(tmp_path / "p.kperf", [small()])
    before = open(old, "rb").read()
    with pytest.raises(KperfError):
        save_profile(old, [small(), "not a launch"])
    assert open(old, "rb").read() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file", "p.kperf"]
