"""bench/heldout_smoke.py's plumbing without a GPU: a variant's process that fails is reported with its
error, one that runs past the time limit as hung; the GPU run says which builds finish."""

from __future__ import annotations

from bench import heldout_smoke


def test_a_failing_variant_is_reported_with_its_error(monkeypatch):
    monkeypatch.setitem(heldout_smoke.VARIANTS, "broken", ("undefined_name", 3, True))  # the child raises
    r, = heldout_smoke.run_variants(["broken"], timeout=120)
    assert r["variant"] == "broken" and r["seconds"] >= 0
    assert r["result"] == "failed" and "NameError" in r["error"]


def test_variants_run_at_once_and_a_hung_one_says_where_it_was(monkeypatch):
    """A child past its deadline dumps its stacks (faulthandler) and exits; one that cannot is killed."""
    stuck = ("(__import__('faulthandler').dump_traceback_later(1, exit=True), "
             "__import__('time').sleep(60))")
    monkeypatch.setitem(heldout_smoke.VARIANTS, "stuck", (stuck, 3, True))
    monkeypatch.setitem(heldout_smoke.VARIANTS, "deaf", ("__import__('time').sleep(60)", 3, True))
    monkeypatch.setitem(heldout_smoke.VARIANTS, "broken", ("undefined_name", 3, True))
    rows = heldout_smoke.run_variants(["stuck", "deaf", "broken"], timeout=1)
    assert [r["variant"] for r in rows] == ["stuck", "deaf", "broken"]
    stuck_row, deaf_row, broken_row = rows
    assert stuck_row["result"] == "hung" and stuck_row["where"]  # the frames it was in
    assert deaf_row["result"] == "hung" and "where" not in deaf_row and deaf_row["seconds"] < 30
    assert broken_row["result"] == "failed"


def test_the_variants_cover_both_suspects():
    v = set(heldout_smoke.VARIANTS.values())
    assert {(True, 3, True), (True, 2, True), (False, 3, True), (False, 2, True)} <= v  # WS x stages
    assert {(True, 3, False), (False, 2, False)} <= v  # and descriptors made on the device
