"""kperf.tracing.saved and Profile.save/load: lossless round trips and clear errors on bad files."""

from __future__ import annotations

import json
import os
import pathlib
import sys
import zipfile

import known_profiles as kp
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


@pytest.mark.parametrize("version, payload", [(None, "packed"), (2, "packed"), (1, "buffer")])
def test_round_trip_buffer_and_columns(tmp_path, version, payload):
    a = small(0)
    b = small(3, keep_raw=False)  # no buffer kept: its decoded tables are saved
    assert a.lost_total == 1
    path = save_profile(tmp_path / "p.kperf", [a, b], device="NVIDIA H100 80GB HBM3", version=version)
    m = read_manifest(path)
    assert m["format"] == "kperf-profile" and m["version"] == (version or 2)
    assert m["device"] == "NVIDIA H100 80GB HBM3"
    assert [e["payload"] for e in m["launches"]] == [payload, "columns"]
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
    path = save_profile(tmp_path / "p.kperf", [small()], version=1)
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
    expect_error(tmp_path / "size.kperf", "column headers (launches/0/headers.zst): count 1, expected 5")
    path = save_profile(tmp_path / "p1.kperf", [small()], version=1)
    rewrite_manifest(path, tmp_path / "size1.kperf", lambda m: m["launches"][0].update(n_ctas=5))
    expect_error(tmp_path / "size1.kperf", "expected 5 CTAs")


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


# ------------------------------------------------------------------ format version 2: packed buffers


def _wrap_globaltimer_with_sink():
    """wrap, 16-byte records, a sink and a warp subset: every part of the layout a packed buffer splits."""
    g = Geometry(4, 4, "globaltimer", warps=(1, 3), sink=2)
    w = [((i // 2) % 2, bool(i % 2), G0 + 100 + 10 * i) for i in range(10)]  # capacity 4: 6 lost
    ctas = [CtaSpec(warps=[w, w[:4]], sm=1, ctaid=(c, 0, 0), gtime_start=G0 + 50, clock_start=0,
                    gtime_end=G0 + 900, clock_end=0) for c in range(2)]
    return decode(encode(g, "wrap", ctas), g, strategy="wrap", scopes=["a", "b"], launch=7)


def _h100(case):
    z = np.load(pathlib.Path(__file__).resolve().parents[1] / "data" / "h100" / f"{case}.npz")
    info = json.loads(str(z["info"]))
    g = Geometry(info["num_warps"], info["capacity"], info["clock"])
    return decode(z["buffer"], g, strategy=info["strategy"], n_ctas=info["n_ctas"], scopes=info["scopes"])


def _with_junk():
    """small()'s buffer with bytes where a real launch leaves zeros (count padding, a slot past its count,
    the region's padding): the packed form must keep them, and the decoder report them as before."""
    d = small()
    raw = bytearray(np.asarray(d.raw).tobytes())
    g = d.geometry
    raw[g.counts_offset + 4 * g.slots] = 0x5A
    raw[g.records_offset + g.warp_bytes + 3 * g.record_bytes + 1] = 0x77  # slot 1 holds 2 records
    raw[g.cta_bytes - 1] = 0x11
    return decode(bytes(raw), g, strategy="keep-first", scopes=["a", "b"], kernel="k")


PROFILES = {"small": small, "clock64": kp.vanilla, "warp_subset": lambda: kp.with_flows()[0],
            "wrap_globaltimer_sink": _wrap_globaltimer_with_sink, "junk": _with_junk,
            **{case: (lambda case=case: _h100(case))
               for case in ("gemm1024_clock", "gemm1024_overflow64", "gemm1024_wrap64")}}


@pytest.mark.parametrize("name", sorted(PROFILES))
def test_version_2_loads_exactly_what_version_1_loads(tmp_path, name):
    d = PROFILES[name]()
    v1 = load_profile(save_profile(tmp_path / "v1.kperf", [d], version=1))[0]
    path = save_profile(tmp_path / "v2.kperf", [d], version=2)
    v2 = load_profile(path)[0]
    assert np.asarray(v2.raw).tobytes() == np.asarray(d.raw).tobytes()  # the buffer, byte for byte
    for back in (v1, v2):
        same(d, back)
        assert back.rejected.tobytes() == d.rejected.tobytes()
        assert back.sm_clocks.tobytes() == d.sm_clocks.tobytes()  # bytes: NaN rates compare equal
    packed = read_manifest(path)["launches"][0]["packed"]
    assert ("rest" in packed) == (name == "junk")  # zeros where a real launch leaves zeros cost nothing
    if name == "junk":
        assert d.problems
    if name.startswith("gemm1024"):
        assert os.path.getsize(path) < 1.5 * d.n_events  # bytes per event (docs/saved-profile.md)
    assert _read_by_the_doc(path) == [np.asarray(d.raw).tobytes()]


def _read_by_the_doc(path) -> list[bytes]:
    """The buffers of a version 2 file, rebuilt from docs/saved-profile.md and docs/buffer-format.md alone
    (zip, JSON, zstandard, numpy; a loop per record), never through kperf.tracing."""
    import struct
    import zlib

    import zstandard
    out = []
    with zipfile.ZipFile(path) as z:
        m = json.loads(z.read("manifest.json"))
        for e in m["launches"]:
            g, n, packed = e["geometry"], e["n_ctas"], e["packed"]
            rb = 8 if g["clock"] == "clock" else 16
            slots = g["num_warps"] if g["warps"] is None else len(g["warps"])
            per_slot = g["capacity"] + g["sink"]
            records_offset = 64 + -(-4 * slots // 16) * 16
            cta_bytes = -(-(records_offset + slots * per_slot * rb) // 128) * 128

            def column(name, e=e, z=z, packed=packed):
                spec, data, parts, at = packed[name], z.read(f"launches/{e['index']}/{name}.zst"), [], 0
                dt = np.dtype(spec["dtype"])
                for items, size in spec["frames"]:
                    a = np.frombuffer(zstandard.ZstdDecompressor().decompress(data[at:at + size]), np.uint8)
                    at += size
                    if "shuffle" in spec["codec"]:
                        a = a.reshape(dt.itemsize, items).T.copy()
                    a = a.reshape(-1).view(dt)
                    parts.append(np.cumsum(a, dtype=dt) if "delta" in spec["codec"] else a)
                a = np.concatenate(parts)
                assert zlib.crc32(a.tobytes()) == spec["crc32"]
                return a

            buf = bytearray(column("rest").tobytes() if "rest" in packed else bytes(n * cta_bytes))
            headers, counts = column("headers").tobytes(), column("counts").tolist()
            fields = {f: (column(f), at) for f, at in (("tag", 0), ("pad", 4), ("time", 4 if rb == 8 else 8))
                      if rb == 16 or f != "pad"}
            k = 0
            for c in range(n):
                base = c * cta_bytes
                buf[base:base + 64] = headers[64 * c:64 * c + 64]
                for s in range(slots):
                    count = counts[c * slots + s]
                    struct.pack_into("<I", buf, base + 64 + 4 * s, count)
                    for j in range(min(count, g["capacity"])):
                        rec = base + records_offset + (s * per_slot + j) * rb
                        for col, at in fields.values():
                            buf[rec + at:rec + at + col.itemsize] = col[k].tobytes()
                        k += 1
            out.append(bytes(buf))
    return out


def _rezip(src, dst, member=None, change=None, manifest=None):
    """A copy of ``src`` with ``change(bytes) -> bytes`` applied to ``member`` (its zip CRC made right, so
    the content itself must be checked) and ``manifest(m)`` to the manifest."""
    with zipfile.ZipFile(src) as z, zipfile.ZipFile(dst, "w") as out:
        for item in z.infolist():
            data = z.read(item.filename)
            if item.filename == member:
                data = change(data)
            if item.filename == "manifest.json" and manifest:
                m = json.loads(data)
                manifest(m)
                data = json.dumps(m).encode()
            if data is not None:
                out.writestr(item, data)
    return dst


def _flip(data: bytes, at: float = 0.5) -> bytes:
    b = bytearray(data)
    b[int(len(b) * at)] ^= 0x10
    return bytes(b)


def test_version_2_damaged_members_are_refused(tmp_path):
    path = save_profile(tmp_path / "p.kperf", [kp.vanilla()])
    with zipfile.ZipFile(path) as z:
        members = [n for n in z.namelist() if n.endswith(".zst")]
    assert sorted(members) == [f"launches/0/{c}.zst" for c in ("counts", "headers", "pad", "tag", "time")]
    for name in members:
        for at in (0.1, 0.5, 0.97):  # the frame header, its data, its checksum
            bad = _rezip(path, tmp_path / "bad.kperf", name, lambda d, at=at: _flip(d, at))
            err = expect_error(bad, f"({name})")
            assert "not a readable kperf profile" in str(err)
        expect_error(_rezip(path, tmp_path / "cut.kperf", name, lambda d: d[:-7]), f"({name})")
        expect_error(_rezip(path, tmp_path / "gone.kperf", name, lambda d: None), f"member {name} is missing")
    data = bytearray(open(path, "rb").read())  # a flip inside the stored file: the zip CRC catches it
    with zipfile.ZipFile(path) as z:
        info = z.getinfo("launches/0/time.zst")
    data[info.header_offset + 30 + len(info.filename) + info.compress_size // 2] ^= 0x01
    (tmp_path / "flip.kperf").write_bytes(bytes(data))
    expect_error(tmp_path / "flip.kperf", "member launches/0/time.zst fails its CRC check")


def _spec(column, **change):
    return lambda m: m["launches"][0]["packed"][column].update(change)


@pytest.mark.parametrize("change, words", [
    (_spec("time", crc32=12345), "column time (launches/0/time.zst): decodes to data that fails its CRC-32"),
    (_spec("time", codec=["shuffle", "zstd"]), "fails its CRC-32"),  # a step left out
    (_spec("tag", codec=["zstd", "shuffle"]), "is not a subsequence of ['delta', 'shuffle', 'zstd']"),
    (_spec("tag", codec="zstd"), "column tag (launches/0/tag.zst): codec 'zstd' is not a list"),
    (_spec("time", dtype="<u8"), "column time (launches/0/time.zst): dtype '<u8', expected '<u4'"),
    (_spec("time", count=5), "count 5, expected 6"),
    (_spec("counts", frames=[[2, 5]]), "frames of 2 items in 5 bytes"),
    (_spec("counts", frames=[]), "is not a list of [items, bytes] pairs"),
    (lambda m: m["launches"][0]["packed"].pop("tag"), "column tag: missing from the launch's packed columns"),
    (lambda m: m["launches"][0]["packed"].update(sink={}), "packed columns sink are not columns of a clock"),
    (lambda m: m["launches"][0].update(packed=[]), "launches[0].packed: expected an object"),
])
def test_version_2_edited_column_specs_are_refused(tmp_path, change, words):
    path = save_profile(tmp_path / "p.kperf", [small()])
    err = expect_error(_rezip(path, tmp_path / "bad.kperf", manifest=change), words)
    assert str(err).startswith(str(tmp_path / "bad.kperf"))


def test_version_2_unknown_codec_step_asks_for_a_newer_kperf(tmp_path):
    path = save_profile(tmp_path / "p.kperf", [small()])
    bad = _rezip(path, tmp_path / "bad.kperf", manifest=_spec("time", codec=["delta", "lz9", "zstd"]))
    err = expect_error(bad, "launch 0: column time (launches/0/time.zst): its codec uses the step 'lz9', "
                            "unknown to this kperf")
    assert "upgrade kperf" in err.fix


def test_without_zstandard_version_1_is_saved_and_read_and_version_2_asks_for_it(tmp_path, monkeypatch):
    v2 = save_profile(tmp_path / "v2.kperf", [small()])
    monkeypatch.setitem(sys.modules, "zstandard", None)  # import zstandard now raises ImportError
    err = expect_error(v2, "reading")
    assert "needs the zstandard package" in str(err) and err.fix == "pip install zstandard"
    assert str(v2) in str(err)
    with pytest.warns(UserWarning, match="zstandard is not installed: saving format version 1"):
        v1 = save_profile(tmp_path / "v1.kperf", [small()])
    assert read_manifest(v1)["version"] == 1
    same(small(), load_profile(v1)[0])
    with pytest.raises(KperfError, match="saving format version 2 needs the zstandard package") as e:
        save_profile(tmp_path / "x.kperf", [small()], version=2)
    assert e.value.fix == "pip install zstandard"
    with pytest.raises(KperfError, match="cannot save format version 3"):
        save_profile(tmp_path / "x.kperf", [small()], version=3)


# ------------------------------------------------------------------ measured traffic (traffic.json member)


TRAFFIC = {"format": "kperf-traffic", "version": 1, "device": {"name": "NVIDIA H100 80GB HBM3"},
           "launches": [{"launch": 0, "kernel": "k", "ncu_id": 2, "kperf_record_bytes": 640,
                         "metrics": {"dram__bytes_read.sum": 1.1e9, "dram__bytes_write.sum": None}}],
           "unmatched_ncu": [], "unmatched_profile": [], "notes": [], "problems": []}


def _raw_members(path) -> dict[str, tuple]:
    """Each member's local header, stored bytes and central-directory fields, as they lie in the file."""
    data = pathlib.Path(path).read_bytes()
    out = {}
    with zipfile.ZipFile(path) as z:
        for i in z.infolist():
            n, m = int.from_bytes(data[i.header_offset + 26:i.header_offset + 28], "little"), \
                int.from_bytes(data[i.header_offset + 28:i.header_offset + 30], "little")
            start = i.header_offset + 30 + n + m
            out[i.filename] = (data[i.header_offset:start], data[start:start + i.compress_size],
                               i.CRC, i.compress_type, i.date_time)
    return out


@pytest.mark.parametrize("version, compress", [(1, False), (2, False), (1, True)])
def test_traffic_is_attached_replaced_and_removed_copying_the_rest_byte_for_byte(tmp_path, version,
                                                                                   compress):
    from kperf.tracing.saved import attach_traffic, read_traffic
    path = save_profile(tmp_path / "p.kperf", [small(0), small(3, keep_raw=False)], version=version,
                        compress=compress)
    original, members = pathlib.Path(path).read_bytes(), _raw_members(path)
    assert read_traffic(path) is None  # a profile without the member: none, and it loads as before
    assert attach_traffic(path, TRAFFIC) == path
    assert read_traffic(path) == TRAFFIC and read_manifest(path)["version"] == version
    got = _raw_members(path)
    assert list(got) == [*members, "traffic.json"]
    assert all(got[name] == raw for name, raw in members.items())  # copied, not recompressed
    for a, b in zip((small(0), small(3, keep_raw=False)), load_profile(path), strict=True):
        same(a, b)
    again = {**TRAFFIC, "notes": ["measured again"]}
    attach_traffic(path, again)
    assert read_traffic(path) == again and list(_raw_members(path)) == [*members, "traffic.json"]
    attach_traffic(path, None)
    assert pathlib.Path(path).read_bytes() == original
    assert not [f for f in os.listdir(tmp_path) if ".tmp-" in f]


def test_traffic_travels_with_a_copied_profile_and_older_readers_ignore_it(tmp_path):
    """The reason for a member: a copy or a renamed file keeps its numbers.  Top-level members a reader does
    not know are ignored, so kperf before traffic.json loads such a file (its launches) as it is."""
    import shutil

    from kperf.tracing.saved import attach_traffic, read_traffic
    path = attach_traffic(save_profile(tmp_path / "p.kperf", [small()]), TRAFFIC)
    copy = shutil.copy(path, tmp_path / "renamed.kperf")
    assert read_traffic(copy) == TRAFFIC
    with zipfile.ZipFile(copy, "a") as z:
        z.writestr("from_a_newer_kperf.json", b"{}")
    same(small(), load_profile(copy)[0])


def test_a_member_written_with_data_descriptors_is_copied_with_them(tmp_path):
    """A zip written to a stream (sizes after the data) keeps its data descriptors when traffic is added."""
    import io

    from kperf.tracing.saved import attach_traffic, read_traffic

    class Stream(io.RawIOBase):
        def __init__(self):
            self.data = bytearray()

        def writable(self):
            return True

        def write(self, b):
            self.data += b
            return len(b)

    path = save_profile(tmp_path / "p.kperf", [small()], version=1)
    stream = Stream()
    with zipfile.ZipFile(path) as z, zipfile.ZipFile(stream, "w") as out:
        for item in z.infolist():
            with out.open(zipfile.ZipInfo(item.filename, item.date_time), "w") as w:
                w.write(z.read(item))
    streamed = tmp_path / "streamed.kperf"
    streamed.write_bytes(bytes(stream.data))
    assert all(i.flag_bits & 0x08 for i in zipfile.ZipFile(streamed).infolist())
    attach_traffic(streamed, TRAFFIC)
    with zipfile.ZipFile(streamed) as z:
        assert z.testzip() is None
    assert read_traffic(streamed) == TRAFFIC
    same(small(), load_profile(streamed)[0])


def _with_member(path, dst, data: bytes):
    """``path`` with a traffic.json member of exactly ``data`` (written by another tool)."""
    import shutil
    shutil.copy(path, dst)
    with zipfile.ZipFile(dst, "a") as z:
        z.writestr("traffic.json", data)
    return dst


@pytest.mark.parametrize("data, words", [
    (b"{not json", "cannot read it"),
    (b"[" * 100_000, "nests too deeply"),
    (json.dumps({**TRAFFIC, "format": "kperf-profile"}).encode(),
     "format 'kperf-profile', not 'kperf-traffic'"),
    (json.dumps({**TRAFFIC, "version": 0}).encode(), "traffic.version: expected an int in [1, 2)"),
    (json.dumps({**TRAFFIC, "launches": {}}).encode(), "traffic.launches: expected a list"),
    (json.dumps({**TRAFFIC, "launches": [{**TRAFFIC["launches"][0], "metrics": {"x": "1"}}]}).encode(),
     "traffic.launches[0].metrics: expected an object of finite numbers or nulls"),
    (json.dumps({**TRAFFIC, "launches": [{**TRAFFIC["launches"][0], "ncu_id": 2**64}]}).encode(),
     "traffic.launches[0].ncu_id: expected an int"),
    (json.dumps({**TRAFFIC, "problems": [{"kind": "gemm", "kernel": "("}]}).encode(), "traffic.problems"),
    (json.dumps({**TRAFFIC, "device": {"l2_bytes": -1}}).encode(), "traffic.device.l2_bytes"),
], ids=["not-json", "deep", "format", "version", "launches", "metrics", "ncu_id", "problems", "device"])
def test_a_damaged_traffic_member_is_a_clear_error_and_the_launches_still_load(tmp_path, data, words):
    from kperf.tracing.saved import read_traffic
    path = save_profile(tmp_path / "p.kperf", [small()])
    bad = _with_member(path, tmp_path / "bad.kperf", data)
    with pytest.raises(KperfError, match="is not readable measured traffic") as e:
        read_traffic(bad)
    assert str(e.value).startswith(f"{bad} (member traffic.json)") and words in str(e.value), str(e.value)
    assert "kperf ncu" in e.value.fix and "attach_traffic(PROFILE, None)" in e.value.fix
    same(small(), load_profile(bad)[0])


def test_newer_traffic_asks_for_a_newer_kperf_and_bad_traffic_is_not_stored(tmp_path):
    from kperf.tracing.saved import attach_traffic, read_traffic
    path = save_profile(tmp_path / "p.kperf", [small()])
    newer = _with_member(path, tmp_path / "v2.kperf", json.dumps({**TRAFFIC, "version": 2}).encode())
    with pytest.raises(KperfError, match="traffic of format version 2; this kperf reads version 1") as e:
        read_traffic(newer)
    assert "upgrade kperf" in e.value.fix
    before = pathlib.Path(path).read_bytes()
    with pytest.raises(KperfError, match="launches.0..kernel: expected a string"):
        attach_traffic(path, {**TRAFFIC, "launches": [{**TRAFFIC["launches"][0], "kernel": 7}]})
    assert pathlib.Path(path).read_bytes() == before
    # a flipped byte of the stored member fails its CRC
    good = attach_traffic(save_profile(tmp_path / "q.kperf", [small()]), TRAFFIC)
    data = bytearray(pathlib.Path(good).read_bytes())
    data[data.index(b'"kperf-traffic"') + 3] ^= 1
    (tmp_path / "flip.kperf").write_bytes(bytes(data))
    with pytest.raises(KperfError, match="Bad CRC-32"):
        read_traffic(tmp_path / "flip.kperf")
    with pytest.raises(KperfError, match="no saved profile"):
        attach_traffic(tmp_path / "none.kperf", TRAFFIC)


def test_a_member_of_an_unknown_compression_method_is_a_clean_error(tmp_path):
    path = save_profile(tmp_path / "p.kperf", [small()], version=1)
    data = bytearray(pathlib.Path(path).read_bytes())
    entry = data.index(b"launches/0/buffer.bin", data.index(b"PK\x01\x02")) - 46  # its directory entry
    data[entry + 10] = 99  # the compression method: none zipfile knows
    (tmp_path / "bad.kperf").write_bytes(bytes(data))
    expect_error(tmp_path / "bad.kperf", "cannot read launches/0/buffer.bin (That compression method is not")
