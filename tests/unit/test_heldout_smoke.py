"""bench/heldout_smoke.py's plumbing without a GPU: a variant's process that fails is reported with its
error, one that runs past the time limit as hung; the GPU run says which builds finish."""

from __future__ import annotations

from bench import heldout_smoke


def test_a_failing_variant_is_reported_with_its_error(monkeypatch):
    monkeypatch.setitem(heldout_smoke.VARIANTS, "broken", ("undefined_name", 3))  # the child raises
    r = heldout_smoke.run_variant("broken", timeout=120)
    assert r["variant"] == "broken" and r["seconds"] >= 0
    assert r["result"] == "failed" and "NameError" in r["error"]


def test_a_variant_past_its_time_limit_is_hung():
    assert heldout_smoke.run_variant("ws-3-stages", timeout=0.05)["result"] == "hung"


def test_the_variants_cover_both_suspects():
    assert set(heldout_smoke.VARIANTS.values()) == {(True, 3), (True, 2), (False, 3), (False, 2)}
