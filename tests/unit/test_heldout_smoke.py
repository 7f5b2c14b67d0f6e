"""bench/heldout_smoke.py's plumbing without a GPU: a variant's process that fails is reported with its
error, one that runs past the time limit as hung; the GPU run says which builds finish."""

from __future__ import annotations

from bench import heldout_smoke


def test_a_failing_variant_is_reported_with_its_error(monkeypatch):
    monkeypatch.setitem(heldout_smoke.VARIANTS, "broken", ("undefined_name", 3))  # the child raises
    r, = heldout_smoke.run_variants(["broken"], timeout=120)
    assert r["variant"] == "broken" and r["seconds"] >= 0
    assert r["result"] == "failed" and "NameError" in r["error"]


def test_variants_run_at_once_and_one_past_the_time_limit_is_hung(monkeypatch):
    monkeypatch.setitem(heldout_smoke.VARIANTS, "broken", ("undefined_name", 3))
    rows = heldout_smoke.run_variants(["ws-3-stages", "broken"], timeout=0.05)
    assert [r["variant"] for r in rows] == ["ws-3-stages", "broken"]
    assert {r["result"] for r in rows} == {"hung"}


def test_the_variants_cover_both_suspects():
    assert set(heldout_smoke.VARIANTS.values()) == {(True, 3), (True, 2), (False, 3), (False, 2)}
