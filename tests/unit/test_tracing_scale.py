"""The statistics at scale keep their numbers: the tables computed launch by launch, piece by piece,
from sorted columns agree with a plain per-interval reference on small random profiles, and do not
change when the pieces, the kept values or the sweep blocks are made tiny (what a large profile or a
long session takes).  Speed and memory at scale are measured by bench/analytics_scale.py, not here."""

from __future__ import annotations

import importlib
from collections import defaultdict

import numpy as np
import pytest
from random_profiles import random_profile
from reference_saved_writer import SavedLaunchSpec, write_saved_profile

from kperf.dialect.errors import KperfError
from kperf.tracing import stats
from kperf.tracing.diff import diff
from kperf.tracing.frame import cta_bounds
from kperf.tracing.saved import load_profile

frame_mod = importlib.import_module("kperf.tracing.frame")
group_mod = importlib.import_module("kperf.tracing.group_stats")
algebra_mod = importlib.import_module("kperf.tracing.interval_algebra")
progress_mod = importlib.import_module("kperf.tracing.progress")

# globaltimer clock with a 1 ns step: every time is a whole ns, so unions can be counted in 1-ns cells
PROFILES = {
    "gt": dict(clock="globaltimer", n_launches=2, n_scopes=4, num_warps=3, capacity=16),
    "wide": dict(clock="globaltimer", n_launches=1, n_scopes=11, num_warps=4, capacity=64, steps=30),
    "lost": dict(clock="globaltimer", n_launches=3, n_scopes=3, num_warps=2, capacity=6),
}


@pytest.fixture(scope="module", params=list(PROFILES))
def prof(request):
    return random_profile(7 + list(PROFILES).index(request.param), **PROFILES[request.param])


def _intervals(launches):
    """Every interval as a dict, from the per-launch INTERVAL_DTYPE table (the plain path)."""
    out = []
    for li, d in enumerate(launches):
        iv, _ = d.intervals()
        names = dict(d.scopes)
        roles = d.warp_roles or ["all warps"] * 64
        for r in iv.tolist():
            rec = dict(zip(iv.dtype.names, r, strict=True))
            rec.update(li=li, name=names[rec["scope"]], role=roles[rec["warp"]], kernel=d.kernel)
            out.append(rec)
    return out


def _summary(xs):
    return len(xs), float(np.sum(xs)), float(np.percentile(xs, 50)), float(np.percentile(xs, 95)), max(xs)


def test_scopes_match_a_plain_reference(prof):
    by = defaultdict(list)
    for r in _intervals(prof):
        by[(r["kernel"], r["name"])].append(r["end_ns"] - r["start_ns"])
    t = stats.scope_stats(prof)
    for row in t.rows():
        if not row["count"]:
            continue
        n, total, p50, p95, mx = _summary(by[(row["kernel"], row["scope"])])
        assert row["count"] == n
        assert row["total_ns"] == pytest.approx(total, rel=1e-12)
        assert (row["p50_ns"], row["p95_ns"], row["max_ns"]) == pytest.approx((p50, p95, mx), rel=1e-12)
    assert int(t["count"].sum()) == sum(len(v) for v in by.values())


def test_gaps_match_a_plain_reference(prof):
    by = defaultdict(list)
    warps = defaultdict(list)
    for r in _intervals(prof):
        if r["depth"] == 0:
            warps[(r["li"], r["cta"], r["warp"])].append(r)
    for (li, cta, _), ivs in warps.items():
        start, end = cta_bounds(prof[li])
        ivs.sort(key=lambda r: r["start_ns"])
        k, role = ivs[0]["kernel"], ivs[0]["role"]
        by[(k, role, stats.CTA_START, ivs[0]["name"])].append(max(ivs[0]["start_ns"] - start[cta], 0.0))
        for a, b in zip(ivs[:-1], ivs[1:], strict=True):
            by[(k, role, a["name"], b["name"])].append(max(b["start_ns"] - a["end_ns"], 0.0))
        by[(k, role, ivs[-1]["name"], stats.CTA_END)].append(max(end[cta] - ivs[-1]["end_ns"], 0.0))
    t = stats.gaps(prof)
    assert len(t) == len(by)
    for row in t.rows():
        n, total, p50, p95, mx = _summary(by[(row["kernel"], row["role"], row["before"], row["after"])])
        assert row["count"] == n and row["total_ns"] == pytest.approx(total, rel=1e-12, abs=1e-9)
        assert (row["p50_ns"], row["p95_ns"], row["max_ns"]) == pytest.approx((p50, p95, mx), abs=1e-9)


def _cells(ivs, lo: int, hi: int) -> np.ndarray:
    """1-ns cells of [lo, hi) covered by the intervals (whole-ns times)."""
    c = np.zeros(hi - lo, bool)
    for r in ivs:
        c[int(r["start_ns"]) - lo : int(r["end_ns"]) - lo] = True
    return c


def test_busy_and_overlap_match_counted_cells(prof):
    ctas = defaultdict(list)
    for r in _intervals(prof):
        ctas[(r["li"], r["cta"])].append(r)
    want_busy, want_cov = {}, defaultdict(float)
    for key, ivs in ctas.items():
        lo = int(min(r["start_ns"] for r in ivs))
        hi = int(max(r["end_ns"] for r in ivs)) + 1
        want_busy[key] = _cells(ivs, lo, hi).sum()
        names = {r["name"] for r in ivs}
        for b in names:
            covered = _cells([r for r in ivs if r["name"] == b], lo, hi)
            for r in ivs:
                if r["name"] != b:
                    cov = covered[int(r["start_ns"]) - lo : int(r["end_ns"]) - lo].sum()
                    want_cov[(r["kernel"], r["name"], b)] += cov
    ct = stats.cta_spans(prof)
    numbers = {d.launch: li for li, d in enumerate(prof)}
    got = {(numbers[r["launch"]], r["cta"]): r["busy_ns"] for r in ct.rows()}
    for key, busy in want_busy.items():
        assert got[key] == pytest.approx(busy, abs=1e-9)
    for r in stats.overlap(prof).rows():
        want = want_cov[(r["kernel"], r["scope"], r["covered_by"])]
        assert r["covered_ns"] == pytest.approx(want, abs=1e-6)


def _every_table(launches) -> dict:
    rep = stats.report(launches)
    out = {n: {k: np.asarray(v) for k, v in t.columns.items()} for n, t in rep.tables.items()}
    d = diff(launches, launches[::-1])
    out.update({f"diff {n}": {k: np.asarray(v) for k, v in t.columns.items()} for n, t in d.tables.items()})
    return out


def test_tiny_pieces_kept_values_and_blocks_give_the_same_tables(monkeypatch):
    """What a large launch or a long session goes through (tables read in pieces, order statistics by
    radix selection past the values kept, the CTA walk in small blocks): the very same numbers."""
    launches = random_profile(3, 2, clock="clock64", n_scopes=11, num_warps=2, capacity=24, steps=24)
    want = _every_table(launches)
    monkeypatch.setattr(frame_mod, "CHUNK", 16)
    monkeypatch.setattr(group_mod, "KEEP_VALUES", 7)
    monkeypatch.setattr(group_mod, "COLLECT_VALUES", 3)
    monkeypatch.setattr(algebra_mod, "SWEEP_CELLS", 40)
    got = _every_table(launches)
    for name, cols in want.items():
        for c, v in cols.items():
            if name == "overlap" and c in ("covered_ns", "covered_frac"):  # sums in another order
                np.testing.assert_allclose(got[name][c], v, rtol=1e-12, err_msg=f"{name}.{c}")
            elif v.dtype.kind == "f":
                np.testing.assert_array_equal(got[name][c], v, err_msg=f"{name}.{c}")
            else:
                assert got[name][c].tolist() == v.tolist(), f"{name}.{c}"


def test_tables_are_computed_when_asked_for(monkeypatch):
    launches = random_profile(5, 1)

    def broken(_):
        raise AssertionError("overlap computed though not asked for")
    monkeypatch.setitem(stats.TABLES, "overlap", broken)
    rep = stats.report(launches)
    assert "overlap" in rep.tables and "scopes" in rep.tables  # names known, nothing computed
    assert "Scopes" in rep.to_text(include=["scopes", "gaps"])
    assert len(stats.report(launches, tables=["idle"]).tables) == 1
    with pytest.raises(KperfError, match="unknown table nope"):
        stats.report(launches, tables=["nope"])


def test_progress_bar_only_on_a_terminal(monkeypatch, capsys):
    launches = random_profile(5, 1)
    stats.report(launches).to_text()
    assert capsys.readouterr().err == ""  # small, and no terminal: never a bar
    monkeypatch.setattr(progress_mod, "MIN_EVENTS", 0)
    stats.report(launches).to_text()
    assert capsys.readouterr().err == ""  # captured output is no terminal
    monkeypatch.setattr(progress_mod, "_terminal", lambda: True)
    stats.report(launches).to_text()
    assert "statistics" in capsys.readouterr().err


def test_reference_writer_profiles_load_as_decoded(tmp_path):
    """Saved profiles written from docs/saved-profile.md alone (format version 1) load with kperf: a
    raw buffer, and decoded tables as .npy members; their statistics are those of the launch."""
    d = random_profile(11, 1, n_scopes=3)[0]
    names = [d.scopes[i] for i in sorted(d.scopes)]
    spec = dict(kernel="k", n_ctas=d.n_ctas, num_warps=d.geometry.num_warps, capacity=d.geometry.capacity,
                clock=d.geometry.clock, scopes=names, n_events=d.n_events, t0_ns=int(d.t0_ns))
    cols = {f"seg_{k}": v for k, v in d.columns.seg.items()} | dict(d.columns.cols)
    cols |= {"ctas": d.ctas, "lost": d.lost, "sm_clocks": d.sm_clocks}
    path = write_saved_profile(tmp_path / "p.kperf", [SavedLaunchSpec(buffer=bytes(d.raw), **spec),
                                                        SavedLaunchSpec(columns=cols, **spec)])
    a, b = load_profile(path)
    for got in (a, b):
        np.testing.assert_array_equal(got.columns["time_ns"], d.columns["time_ns"])
        np.testing.assert_array_equal(got.columns["scope"], d.columns["scope"])
    want = stats.scope_stats(d)
    for got in (a, b):
        got.warp_roles = d.warp_roles
        t = stats.scope_stats(got)
        np.testing.assert_array_equal(t["total_ns"], want["total_ns"])
        np.testing.assert_array_equal(t["p95_cycles"], want["p95_cycles"])
