"""kperf.tracing.stats on profiles with known contents (tests/unit/known_profiles.py), on random data
against brute force, and invariants on real profiles dropped into tests/data/."""

from __future__ import annotations

import json
import pathlib

import known_profiles as kp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kperf.dialect.errors import KperfError
from kperf.dialect.layout import Geometry
from kperf.tracing import decode, stats
from kperf.tracing.saved import SUFFIX, load_profile

DATA = pathlib.Path(__file__).resolve().parents[1] / "data"


def one(table, **match):
    rows = table.where(**match)
    assert len(rows) == 1, (match, rows)
    return rows[0]


# --------------------------------------------------------------------------- known contents


@pytest.mark.parametrize("clock", ["clock64", "globaltimer"])
def test_scope_stats_known(clock):
    t = stats.scope_stats(kp.vanilla(clock=clock))
    assert list(t["scope"]) == ["mma", "load", "store", "wait"]  # by total, largest first
    expect = {"load": (9, 1000.0), "mma": (6, 2000.0), "store": (3, 500.0), "wait": (3, 100.0)}
    for scope, (n, dur) in expect.items():
        r = one(t, scope=scope)
        assert r["kernel"] == "attn" and r["count"] == n
        assert r["total_ns"] == pytest.approx(n * dur)
        for k in ("mean_ns", "p50_ns", "p95_ns", "max_ns"):
            assert r[k] == pytest.approx(dur)
        if clock == "clock64":  # 2 GHz: cycles are twice the ns
            assert r["total_cycles"] == pytest.approx(2 * n * dur)
            assert r["p95_cycles"] == pytest.approx(2 * dur)
        else:  # globaltimer records no cycles
            assert np.isnan(r["mean_cycles"])
    assert one(t, scope="mma")["share_frac"] == pytest.approx(12000 / 22800)


def test_scope_never_run_is_listed():
    d = kp.build(scopes=kp.SCOPES + ["epilogue"])
    r = one(stats.scope_stats(d), scope="epilogue")
    assert r["count"] == 0 and r["total_ns"] == 0 and np.isnan(r["mean_ns"])


def test_role_stats_and_default_role():
    t = stats.role_stats(kp.vanilla())
    assert {(r["role"], r["scope"]) for r in t.rows()} == {
        ("producer", "load"), ("consumer", "mma"), ("consumer", "store"), ("consumer", "wait")}
    t = stats.role_stats(kp.vanilla(roles=False))
    assert set(t["role"]) == {stats.ALL_WARPS}
    assert stats.warp_role_names(kp.vanilla(), 3) == ["producer", "consumer", "warp 2"]


def test_cta_spans_known():
    t = stats.cta_spans(kp.vanilla())
    assert list(t["cta"]) == [0, 1, 2] and list(t["sm"]) == [0, 1, 0]
    np.testing.assert_allclose(t["start_ns"], [0, 500, 7000], atol=1e-6)
    np.testing.assert_allclose(t["span_ns"], [6000, 8000, 6000], atol=1e-6)
    np.testing.assert_allclose(t["busy_ns"], 5500, atol=1e-6)  # union of all warps' scopes
    np.testing.assert_allclose(t["idle_ns"], [500, 2500, 500], atol=1e-6)
    assert list(t["events"]) == [14, 14, 14] and list(t["intervals"]) == [7, 7, 7]


def test_overlap_known():
    t = stats.overlap(kp.vanilla())
    r = one(t, scope="load", covered_by="mma")  # 2 of 3 loads sit inside an mma of the other warp
    assert r["scope_total_ns"] == pytest.approx(9000)
    assert r["covered_ns"] == pytest.approx(6000) and r["covered_frac"] == pytest.approx(2 / 3)
    assert one(t, scope="mma", covered_by="load")["covered_frac"] == pytest.approx(0.5)
    assert one(t, scope="wait", covered_by="store")["covered_frac"] == pytest.approx(1.0)  # nested
    assert one(t, scope="store", covered_by="wait")["covered_frac"] == pytest.approx(0.2)
    assert one(t, scope="load", covered_by="store")["covered_ns"] == 0
    assert not t.where(scope="load", covered_by="load")
    assert len(stats.overlap(kp.vanilla(), min_frac=0.01)) == 4  # load/mma both ways, store/wait both ways


def test_gaps_known():
    t = stats.gaps(kp.vanilla())
    expect = {  # (role, before, after): (count, total, p50)
        ("producer", stats.CTA_START, "load"): (3, 300, 100),
        ("producer", "load", "load"): (6, 6000, 1000),
        ("producer", "load", stats.CTA_END): (3, 900 + 2900 + 900, 900),
        ("consumer", stats.CTA_START, "mma"): (3, 3600, 1200),
        ("consumer", "mma", "mma"): (3, 300, 100),
        ("consumer", "mma", "store"): (3, 300, 100),
        ("consumer", "store", stats.CTA_END): (3, 100 + 2100 + 100, 100),
    }
    got = {(r["role"], r["before"], r["after"]): r for r in t.rows()}
    assert set(got) == set(expect)  # "wait" is nested in "store": not a top-level boundary
    for k, (n, total, p50) in expect.items():
        assert got[k]["count"] == n
        assert got[k]["total_ns"] == pytest.approx(total)
        assert got[k]["p50_ns"] == pytest.approx(p50)
    assert got[("producer", "load", stats.CTA_END)]["max_ns"] == pytest.approx(2900)


def test_idle_known_and_consistent_with_gaps():
    d = kp.vanilla()
    t = stats.idle(d)
    p, c, cta = one(t, role="producer"), one(t, role="consumer"), one(t, role="any warp (CTA)")
    assert (p["warps"], c["warps"], cta["warps"]) == (3, 3, 3)
    assert p["span_ns"] == pytest.approx(20000) and p["busy_ns"] == pytest.approx(9000)
    assert p["idle_ns"] == pytest.approx(11000) and p["idle_frac"] == pytest.approx(0.55)
    assert c["busy_ns"] == pytest.approx(13500) and c["idle_ns"] == pytest.approx(6500)
    assert cta["busy_ns"] == pytest.approx(16500) and cta["idle_ns"] == pytest.approx(3500)
    g = stats.gaps(d)
    for role in ("producer", "consumer"):  # a warp's gaps add up to its idle time
        assert sum(r["total_ns"] for r in g.where(role=role)) == pytest.approx(one(t, role=role)["idle_ns"])


def test_imbalance_and_sms_known():
    im = one(stats.imbalance(kp.vanilla()), launch=0)
    assert (im["ctas"], im["sms"]) == (3, 2) and im["waves"] == pytest.approx(1.5)
    assert im["kernel_span_ns"] == pytest.approx(13000)
    assert im["cta_mean_ns"] == pytest.approx(20000 / 3) and im["cta_max_ns"] == pytest.approx(8000)
    assert im["cta_max_over_mean"] == pytest.approx(8000 / (20000 / 3))
    assert im["sm_busy_mean_ns"] == pytest.approx(10000) and im["sm_busy_max_ns"] == pytest.approx(12000)
    assert im["tail_ns"] == pytest.approx(13000 - 8500)  # SM 1 ran out of work at 8500
    assert im["sm_idle_frac"] == pytest.approx(1 - 20000 / (2 * 13000))
    sms = stats.sm_stats(kp.vanilla())
    assert list(sms["sm"]) == [0, 1] and list(sms["ctas"]) == [2, 1]
    np.testing.assert_allclose(sms["busy_ns"], [12000, 8000], atol=1e-6)
    np.testing.assert_allclose(sms["ghz"], kp.GHZ, rtol=1e-9)


def test_several_launches_and_kernels():
    launches = [kp.vanilla(), kp.vanilla(launch=1), kp.improved(0.5, kernel="attn_v2", launch=2)]
    t = stats.scope_stats(launches)
    assert one(t, kernel="attn", scope="load")["count"] == 18
    assert one(t, kernel="attn_v2", scope="load")["mean_ns"] == pytest.approx(500)
    assert one(t, kernel="attn_v2", scope="softmax")["count"] == 3
    assert not t.where(kernel="attn", scope="softmax")  # not in that kernel's scope table
    im = stats.imbalance(launches)
    assert list(im["launch"]) == [0, 1, 2] and list(im["ctas"]) == [3, 3, 3]
    cta = stats.cta_spans(launches)
    assert len(cta) == 9 and list(cta["launch"]) == [0] * 3 + [1] * 3 + [2] * 3


def test_report_text_csv_pandas(tmp_path):
    rep = stats.report(kp.vanilla())
    text = rep.to_text(time_unit="ns")
    for title in ("Scopes", "Scopes per warp role", "Idle gaps", "Idle time", "Overlap", "Load imbalance",
                  "SMs"):
        assert title in text
    assert "12,000.000" in text and "(CTA start)" in text and "producer" in text
    files = rep.to_csv(tmp_path / "csv")
    assert sorted(files) == sorted(rep.tables)
    import csv
    rows = list(csv.DictReader(open(files["scopes"])))
    assert rows[0]["scope"] == "mma" and float(rows[0]["total_ns"]) == pytest.approx(12000)
    assert rows[0]["count"] == "6"
    pd = pytest.importorskip("pandas")
    dfs = rep.to_pandas()
    assert isinstance(dfs["gaps"], pd.DataFrame)
    assert dfs["scopes"].set_index("scope").loc["load", "count"] == 9


def test_table_text_units_and_limits():
    t = stats.scope_stats(kp.vanilla())
    us = t.to_text(time_unit="us", max_rows=2)
    assert "total_us" in us and "12.000" in us and "... 2 more rows" in us
    with pytest.raises(KperfError, match="unknown time unit"):
        t.to_text(time_unit="hours")
    assert "(no rows)" in t.select(np.zeros(len(t), bool)).to_text()


def test_empty_and_misuse():
    with pytest.raises(KperfError, match="no launches"):
        stats.report([])
    with pytest.raises(KperfError, match="decoded launches"):
        stats.report([object()])
    with pytest.raises(KperfError, match="by="):
        stats.scope_stats(kp.vanilla(), by="sm")
    # a launch whose warps recorded nothing: tables are empty, nothing raises
    g = Geometry(2, 8, "clock64")
    from reference_encoder import CtaSpec, encode
    ctas = [CtaSpec(warps=[[], []], sm=0, gtime_start=1 << 40, clock_start=1 << 30,
                    gtime_end=(1 << 40) + 10_000, clock_end=(1 << 30) + 20_000)]
    d = decode(encode(g, "keep-first", ctas), g, strategy="keep-first", scopes=["a"])
    rep = stats.report(d)
    assert one(rep["scopes"], scope="a")["count"] == 0
    assert len(rep["gaps"]) == 0 and len(rep["overlap"]) == 0
    assert one(rep["imbalance"], launch=0)["ctas"] == 1
    assert "(no rows)" in rep.to_text()


def test_profile_stats_and_table():
    """kperf.Profile.stats()/table() keep their shape and now use kperf.tracing.stats."""
    from kperf.profile_data import STATS_DTYPE, Profile

    class Kernel:
        name = "attn"

    class Launch:  # a LaunchRecord already decoded
        kernel = Kernel()

        def __init__(self, d):
            self.d = d

        def decoded(self):
            return self.d

    d = kp.vanilla(kernel="")
    d.kernel = ""
    prof = Profile([Launch(d)])
    st = prof.stats()
    assert st.dtype == STATS_DTYPE
    row = st[st["scope"] == "load"][0]
    assert row["kernel"] == "attn" and row["count"] == 9 and row["p95_ns"] == pytest.approx(1000)
    assert row["mean_cycles"] == pytest.approx(2000)
    text = prof.table(time_unit="ns")
    assert "load" in text and "9000.000" in text
    assert "Idle gaps" in str(prof.report())


# --------------------------------------------------------------------------- against brute force


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 4), st.floats(0, 1000, allow_nan=False)), min_size=1, max_size=60))
def test_group_summary_matches_numpy(pairs):
    gid = np.array([p[0] for p in pairs], np.int64)
    x = np.array([p[1] for p in pairs])
    s = stats.group_summary(gid, 5, x)
    for g in range(5):
        v = x[gid == g]
        assert s["count"][g] == len(v)
        if len(v):
            assert s["total"][g] == pytest.approx(v.sum())
            assert s["p50"][g] == pytest.approx(np.percentile(v, 50))
            assert s["p95"][g] == pytest.approx(np.percentile(v, 95))
            assert s["max"][g] == v.max()
        else:
            assert np.isnan(s["mean"][g])


intervals = st.lists(st.tuples(st.integers(0, 3), st.integers(0, 200), st.integers(0, 60)), max_size=40)


@settings(max_examples=80, deadline=None)
@given(intervals, intervals)
def test_union_and_covered_match_brute_force(segs, queries):
    """On an integer grid: union lengths and covered lengths equal counting covered unit cells."""
    g = np.array([s[0] for s in segs], np.int64)
    a = np.array([s[1] for s in segs], np.float64)
    b = a + np.array([s[2] for s in segs], np.float64)
    ug, us, ue = stats.union(g, a, b)
    cells = np.zeros((4, 300), bool)
    for gi, ai, bi in zip(g.tolist(), a.astype(int).tolist(), b.astype(int).tolist(), strict=True):
        cells[gi, ai:bi] = True
    for gi in range(4):
        assert (ue - us)[ug == gi].sum() == pytest.approx(cells[gi].sum())
    assert (np.diff(us)[np.diff(ug) == 0] > 0).all()  # disjoint and sorted within a group
    qg = np.array([q[0] for q in queries], np.int64)
    qa = np.array([q[1] for q in queries], np.float64)
    qb = qa + np.array([q[2] for q in queries], np.float64)
    got = stats.covered(ug, us, ue, qg, qa, qb)
    want = [cells[gi, ai:bi].sum() for gi, ai, bi in zip(qg.tolist(), qa.astype(int).tolist(),
                                                         qb.astype(int).tolist(), strict=True)]
    np.testing.assert_allclose(got, want, atol=1e-6)


# --------------------------------------------------------------------------- real profiles


def _real_launches():
    """Real profiles in tests/data: saved profiles (``*.kperf``) and raw buffers (``*.npz`` from
    bench/capture_real_profiles.py).  These files are committed: one that no longer loads fails here
    instead of silently dropping out of the tests."""
    found = []
    for npz in sorted(DATA.glob("**/*.npz")):
        z = np.load(npz)
        assert "buffer" in z and "info" in z, f"{npz} holds no raw profile buffer (keys {list(z)})"
        info = json.loads(str(z["info"]))
        g = Geometry(info["num_warps"], info["capacity"], info["clock"])
        found.append((npz.name, [decode(z["buffer"], g, strategy=info["strategy"], n_ctas=info["n_ctas"],
                                        scopes=info["scopes"])]))
    for f in sorted(DATA.glob(f"**/*{SUFFIX}")):
        found.append((f.name, list(load_profile(f))))
    return found


REAL = _real_launches()
GEMM = DATA / "h100" / "gemm1024_clock.npz"


def test_the_real_profiles_are_there():
    assert GEMM.name in [name for name, _ in REAL], \
        f"{GEMM} is missing or no longer loads (bench/capture_real_profiles.py writes it)"


@pytest.mark.parametrize("name,launches", REAL, ids=[r[0] for r in REAL])
def test_real_profile_invariants(name, launches):
    rep = stats.report(launches)
    n_iv = sum(int(np.isfinite(d.intervals()[0]["start_ns"]).sum()) for d in launches)
    assert int(rep["scopes"]["count"].sum()) == n_iv
    sc = rep["scopes"]
    ran = sc["count"] > 0
    assert (sc["p50_ns"][ran] <= sc["p95_ns"][ran] + 1e-9).all()
    assert (sc["p95_ns"][ran] <= sc["max_ns"][ran] + 1e-9).all()
    assert (sc["mean_ns"][ran] >= 0).all()
    ov = rep["overlap"]["covered_frac"]
    assert ((ov >= 0) & (ov <= 1 + 1e-9)).all()
    ctas = rep["ctas"]
    assert (ctas["busy_ns"] <= ctas["span_ns"] * (1 + 1e-6) + 1).all()
    idle = rep["idle"]
    assert ((idle["idle_frac"] >= 0) & (idle["idle_frac"] <= 1)).all()
    gaps = rep["gaps"]
    for role in set(idle["role"]) - {"any warp (CTA)"}:
        total = sum(r["total_ns"] for r in gaps.where(role=role))
        idle_ns = one(idle, role=role)["idle_ns"]
        assert total == pytest.approx(idle_ns, rel=1e-3, abs=1.0)
    im = rep["imbalance"]
    assert (im["cta_max_over_mean"] >= 1 - 1e-9).all() and (im["sm_idle_frac"] >= -1e-9).all()


def test_real_h100_gemm_exact_structure():
    """examples/matmul.py, 1024^3 on an H100: 64 CTAs x 8 warps x 16 K-iterations, all events kept."""
    (_, (d,)), = [r for r in REAL if r[0] == GEMM.name]
    rep = stats.report(d)
    sc = {r["scope"]: r for r in rep["scopes"].rows()}
    assert sc["load"]["count"] == sc["mma"]["count"] == 64 * 8 * 16 and sc["epilogue"]["count"] == 64 * 8
    assert 50 < sc["mma"]["p50_ns"] < 1000 and sc["mma"]["p50_cycles"] > sc["mma"]["p50_ns"]  # ~1.7 GHz
    boundaries = {(r["before"], r["after"]): r["count"] for r in rep["gaps"].rows()}
    assert boundaries == {(stats.CTA_START, "load"): 512, ("load", "mma"): 8192, ("mma", "load"): 512 * 15,
                          ("mma", "epilogue"): 512, ("epilogue", stats.CTA_END): 512}
    im = one(rep["imbalance"], launch=d.launch)
    assert (im["ctas"], im["sms"]) == (64, 64) and im["waves"] == 1
    assert 1 <= im["cta_max_over_mean"] < 1.5 and 0 < im["tail_ns"] < im["kernel_span_ns"]
