import pytest


def _has_cuda() -> bool:
    try:
        import torch
        return torch.cuda.is_available()
    except Exception:
        return False


def pytest_collection_modifyitems(config, items):
    if _has_cuda():
        # under pytest-xdist (-n auto --dist loadgroup) every GPU test runs in one worker, one at a time:
        # tests that time kernels or fill the GPU's memory must not share the card with each other
        for item in items:
            if "gpu" in item.keywords:
                item.add_marker(pytest.mark.xdist_group("gpu"))
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


# -- the kernel corpus's count (tests/corpus/test_corpus.py): how many kernels compiled, by source and preset.
# Each corpus test records (source, preset, outcome) as a user property; reports from every xdist worker
# come through here, so the count is the whole run's.

_CORPUS_TEST = "test_kernel_compiles_through_kperf["
_CORPUS_PRESETS = ("loops", "mma,tma")
_corpus_outcomes: list[tuple[str, str, str]] = []


def pytest_runtest_logreport(report):
    if report.when != "call" or _CORPUS_TEST not in report.nodeid:
        return
    outcome = next((tuple(v) for k, v in report.user_properties if k == "kperf_corpus"), None)
    if report.failed or outcome is None:
        params = report.nodeid.split(_CORPUS_TEST, 1)[1].rstrip("]")
        preset = next((p for p in _CORPUS_PRESETS if params.endswith(f"-{p}")), "?")
        outcome = (params.split("/", 1)[0], preset, "failed")
    _corpus_outcomes.append(outcome)


def pytest_terminal_summary(terminalreporter):
    if not _corpus_outcomes:
        return
    import collections
    counts = collections.Counter(_corpus_outcomes)
    kinds = ("records", "nothing selected", "cannot place", "failed")
    groups = sorted({(preset, label) for label, preset, _ in counts})
    compiled = sum(n for (_, _, status), n in counts.items() if status != "failed")
    write = terminalreporter.write_line
    write(f"kperf corpus: {compiled} of {len(_corpus_outcomes)} kernel compiles through kperf for sm_90 "
          "passed (assembled by ptxas, or 'cannot place' named the op)")
    write(f"  {'preset':8s} {'source':9s} {'kernels':>7s} " + " ".join(f"{k:>16s}" for k in kinds))
    for preset, label in groups:
        row = [counts[(label, preset, k)] for k in kinds]
        write(f"  {preset:8s} {label:9s} {sum(row):7d} " + " ".join(f"{n:16d}" for n in row))
