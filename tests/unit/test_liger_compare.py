"""bench/liger_compare.py without a GPU: a run that wrote its JUnit XML and one cut off by the time limit
(only its verbose log) compare test by test; differing tests are listed with both outcomes, and each is
run again alone, plain and under kperf."""

from __future__ import annotations

import json

from bench import liger_compare as lc

XML = """<?xml version="1.0" encoding="utf-8"?><testsuites><testsuite name="pytest">
<testcase classname="test.transformers.test_swiglu" name="test_a[x-1]"/>
<testcase classname="test.transformers.test_swiglu" name="test_b"><failure message="off"/></testcase>
<testcase classname="test.transformers.test_swiglu" name="test_c"><skipped message="no"/></testcase>
</testsuite></testsuites>"""
LOG = """test/transformers/test_swiglu.py::test_a[x-1] PASSED [ 10%]
test/transformers/test_swiglu.py::test_b PASSED [ 20%]
"""


def test_a_cut_off_run_compares_with_a_whole_one(tmp_path):
    (tmp_path / "plain.xml").write_text(XML)
    (tmp_path / "kperf.log").write_text(LOG)  # killed by the time limit: no XML
    s = lc.compare(str(tmp_path))
    assert s["complete"] == {"plain": True, "kperf": False}
    assert s["plain"] == {"passed": 1, "failed": 1, "skipped": 1} and s["compared"] == 2
    assert s["differing_tests"] == ["test/transformers/test_swiglu.py::test_b"]
    assert s["outcomes"] == {"test/transformers/test_swiglu.py::test_b": ["failed", "passed"]}
    assert s["only_one_finished"] == ["test/transformers/test_swiglu.py::test_c"]


def test_differing_tests_are_rerun_alone_both_ways(tmp_path, monkeypatch):
    (tmp_path / "plain.xml").write_text(XML)
    (tmp_path / "kperf.log").write_text(LOG)
    calls = []

    class Done:
        returncode = 1

    def fake_run(cmd, **kw):
        calls.append(cmd)
        return Done()
    monkeypatch.setattr(lc.subprocess, "run", fake_run)
    assert lc.main([str(tmp_path), "--rerun", "2"]) == 0
    runs = json.loads((tmp_path / "liger_summary.json").read_text())["reruns"]
    assert [(r["run"], r["round"], r["result"]) for r in runs] == [
        ("plain", 0, "failed"), ("kperf", 0, "failed"), ("plain", 1, "failed"), ("kperf", 1, "failed")]
    assert calls[1][:2] == ["kperf", "run"] and calls[0][-1] == "test/transformers/test_swiglu.py::test_b"


def test_one_run_per_test_file_is_merged_and_complete_only_when_every_file_finished(tmp_path):
    other = XML.replace("test_swiglu", "test_geglu")
    (tmp_path / "plain_swiglu.xml").write_text(XML)
    (tmp_path / "plain_geglu.xml").write_text(other)
    (tmp_path / "kperf_swiglu.xml").write_text(XML)
    (tmp_path / "kperf_geglu.log").write_text(LOG.replace("test_swiglu", "test_geglu"))  # cut off
    (tmp_path / "kperf_geglu_failures.txt").write_text("")  # not a part
    s = lc.compare(str(tmp_path))
    assert s["plain"] == {"passed": 2, "failed": 2, "skipped": 2}
    assert s["complete"] == {"plain": True, "kperf": False} and s["compared"] == 5
    assert s["differing_tests"] == ["test/transformers/test_geglu.py::test_b"]


def test_a_part_the_time_limit_interrupted_is_not_complete_though_it_wrote_its_xml(tmp_path):
    (tmp_path / "plain_b.xml").write_text(
        '<testsuites><testsuite><testcase classname="test.transformers.test_b" name="test_p"/>'
        '<testcase time="0.000"/></testsuite></testsuites>')
    (tmp_path / "plain_b.log").write_text(".\n!!!!!!!!!! KeyboardInterrupt !!!!!!!!!!\n1 passed in 9.86s\n")
    got, whole = lc.outcomes(str(tmp_path), "plain")
    assert got == {"test/transformers/test_b.py::test_p": "passed"} and whole is False


def test_a_test_file_whose_exit_status_differs_under_kperf_is_named(tmp_path):
    """What s12 found: every embedding test skipped, pytest exited 0 plain and 1 under `kperf run`."""
    (tmp_path / "times.txt").write_text("kperf run embedding: exit 1 in 24 s\nkperf run jsd: exit 0 in 47 s\n"
                                        "plain embedding: exit 0 in 23 s\nplain jsd: exit 0 in 47 s\n"
                                        "plain swiglu: exit 137 in 430 s\n")
    assert lc.exits_differ(str(tmp_path)) == {"embedding": [0, 1]}
    assert lc.compare(str(tmp_path))["exit_statuses_differ"] == {"embedding": [0, 1]}
