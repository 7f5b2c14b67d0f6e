"""Shared pieces of the fuzz suite (``tests/unit/test_fuzz_*.py``).

Every fuzz test runs a fixed number of hypothesis cases with a fixed seed (``derandomize=True``, no
example database), so CI runs the same cases every time and a failure reproduces anywhere.  Each case
ends in one named *outcome*; a test counts its outcomes in an :class:`Outcomes` tally, prints it
(``pytest -s`` or ``-rP`` shows it) and checks that the cases really ran.  An outcome that is none of
the allowed ones fails the case at once, with the input printed by hypothesis (shrunk to a minimal
example).  ``KPERF_FUZZ_COLLECT=1`` instead collects every unexplained case of the run (outcome
``UNEXPLAINED``) and fails at the end listing them all: to see every kind of failure at once.
"""

from __future__ import annotations

import collections
import os

from hypothesis import HealthCheck, settings

from kperf.dialect.errors import KperfError


def fuzz_settings(max_examples: int) -> settings:
    """Deterministic settings: the same ``max_examples`` cases on every run, no deadline (CI machines
    differ in speed), no example database (nothing carried between runs)."""
    return settings(max_examples=max_examples, deadline=None, derandomize=True, database=None,
                    print_blob=False,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                           HealthCheck.filter_too_much])


COLLECT = os.environ.get("KPERF_FUZZ_COLLECT") == "1"


class Outcomes(collections.Counter):
    """Outcome name -> cases; ``check`` asserts the case count and prints the tally."""

    def __init__(self):
        super().__init__()
        self.failures: list[str] = []

    def run(self, fn, *args, describe: str = "") -> None:
        """Count the outcome ``fn(*args)`` names; in collect mode a failure is counted, not raised."""
        if not COLLECT:
            self[fn(*args)] += 1
            return
        try:
            self[fn(*args)] += 1
        except Exception as e:  # noqa: BLE001 - collect mode lists every kind of failure
            self["UNEXPLAINED"] += 1
            self.failures.append(f"{type(e).__name__}: {str(e)[:400]} <- {describe[:600]}")

    def check(self, name: str, at_least: int, must_see: tuple = ()) -> None:
        """``must_see``: outcome names (or tuples of alternatives) that some case must have ended in."""
        total = sum(self.values())
        print(f"fuzz {name}: {total} cases: " + ", ".join(f"{k} {v}" for k, v in sorted(self.items())))
        assert not self.failures, (f"{name}: {len(self.failures)} unexplained cases:\n"
                                   + "\n".join(self.failures))
        assert total >= at_least, f"{name}: only {total} cases ran (expected at least {at_least})"
        missing = [k for k in must_see if not any(self[x] for x in (k if isinstance(k, tuple) else (k,)))]
        assert not missing, f"{name}: no case ended as {missing}: the fuzzing no longer reaches them ({self})"


def clear_error(err: BaseException, *, names: str | None = None) -> str:
    """Check that ``err`` is a KperfError with a message (naming ``names`` when given); the outcome
    name: ``error+fix`` when it also says how to fix it, else ``error``."""
    assert isinstance(err, KperfError), f"not a KperfError: {type(err).__name__}: {err}"
    text = str(err)
    assert text.strip(), "a KperfError without a message"
    if names is not None:
        assert names in text, f"the error does not name {names!r}: {text}"
    return "error+fix" if err.fix else "error"
