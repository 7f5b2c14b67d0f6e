"""kperf.tracing.diff on two profiles with known differences (tests/unit/known_profiles.py)."""

from __future__ import annotations

import csv

import known_profiles as kp
import numpy as np
import pytest

from kperf.dialect.errors import KperfError
from kperf.tracing.diff import diff


def one(table, **match):
    rows = table.where(**match)
    assert len(rows) == 1, (match, rows)
    return rows[0]


@pytest.fixture(scope="module")
def d():
    # B: loads take 0.8x as long, no "wait", a new "softmax"; two launches (per-launch figures compare)
    return diff(kp.vanilla(), [kp.improved(0.8), kp.improved(0.8, launch=1)], labels=("vanilla", "improved"))


def test_scopes(d):
    s = d["scopes"]
    load = one(s, scope="load")
    assert load["status"] == "both"
    assert (load["count_a"], load["count_b"]) == (9, 9)  # per launch
    assert load["total_a_ns"] == pytest.approx(9000) and load["total_b_ns"] == pytest.approx(7200)
    assert load["total_change_ns"] == pytest.approx(-1800)
    assert load["total_change_frac"] == pytest.approx(-0.2)
    for q in ("mean", "p50", "p95", "max"):
        assert load[f"{q}_a_ns"] == pytest.approx(1000) and load[f"{q}_b_ns"] == pytest.approx(800)
        assert load[f"{q}_change_frac"] == pytest.approx(-0.2)
    mma = one(s, scope="mma")
    assert mma["total_change_ns"] == pytest.approx(0) and mma["mean_change_frac"] == pytest.approx(0)
    wait = one(s, scope="wait")
    assert wait["status"] == "only A (vanilla)" and wait["count_b"] == 0 and wait["total_b_ns"] == 0
    assert wait["total_change_frac"] == pytest.approx(-1.0) and np.isnan(wait["mean_b_ns"])
    soft = one(s, scope="softmax")
    assert soft["status"] == "only B (improved)" and soft["count_a"] == 0
    assert soft["mean_b_ns"] == pytest.approx(40) and np.isnan(soft["total_change_frac"])
    assert list(s["scope"][:4]) == ["mma", "load", "store", "wait"]  # A's order, then B's extras


def test_bubbles_and_idle(d):
    g = d["gaps"]
    ll = one(g, role="producer", before="load", after="load")  # shorter loads: longer gaps between them
    assert ll["total_a_ns"] == pytest.approx(6000) and ll["total_b_ns"] == pytest.approx(7200)
    assert ll["mean_b_ns"] == pytest.approx(1200) and ll["total_change_frac"] == pytest.approx(0.2)
    assert one(g, role="consumer", before="store", after="softmax")["status"] == "only B (improved)"
    assert one(g, role="consumer", before="store", after="(CTA end)")["status"] == "only A (vanilla)"
    idle = d["idle"]
    p = one(idle, role="producer")
    assert p["idle_a_ns"] == pytest.approx(11000) and p["idle_b_ns"] == pytest.approx(12800)
    assert p["idle_share_a_frac"] == pytest.approx(0.55) and p["idle_share_b_frac"] == pytest.approx(0.64)
    assert p["idle_share_change_frac"] == pytest.approx(0.09)
    cta = one(idle, role="any warp (CTA)")
    assert cta["idle_b_ns"] == pytest.approx(20000 - 3 * 5340)  # per CTA: 800+2000+2000+500+40 ns busy
    span = one(d["launch"], metric="kernel span")
    assert span["value_a"] == pytest.approx(13000) and span["value_change"] == pytest.approx(0)


def test_text_and_csv(d, tmp_path):
    text = d.to_text(time_unit="ns")
    assert "A = vanilla" in text and "B = improved" in text
    assert "only B (improved)" in text and "-20.0" in text
    files = d.to_csv(tmp_path)
    assert sorted(files) == ["gaps", "idle", "launch", "scopes"]
    rows = {r["scope"]: r for r in csv.DictReader(open(files["scopes"]))}
    assert float(rows["load"]["total_change_frac"]) == pytest.approx(-0.2)
    assert rows["softmax"]["mean_a_ns"] == ""  # NaN: absent in A
    pytest.importorskip("pandas")
    assert d.to_pandas()["scopes"].set_index("scope").loc["load", "count_b"] == 9


def test_by_kernel_and_identical():
    same = diff(kp.vanilla(), kp.vanilla())
    assert np.allclose(same["scopes"]["total_change_ns"], 0)
    assert set(same["scopes"]["status"]) == {"both"}
    bk = diff(kp.vanilla(kernel="fa3"), kp.vanilla(kernel="fa3_v2"), by_kernel=True)
    assert {(r["kernel"], r["status"]) for r in bk["scopes"].rows()} == {
        ("fa3", "only A (A)"), ("fa3_v2", "only B (B)")}
    with pytest.raises(KperfError, match="profile A holds no launches"):
        diff([], kp.vanilla())
