"""What a capture saw: per kernel, the launches it profiled and why it did not profile the others.

A session over real work meets kernels kperf cannot or should not profile: kernels with nothing to
record, launches left out by sampling, kernels compiled plain and launched through a path kperf does
not instrument.  Each such launch is counted here under its reason, so the session can say which
launches it did not see and why instead of producing a thinner trace in silence.
"""

from __future__ import annotations

import collections

from kperf.dialect.errors import KperfError

NO_RECORDS = "no records (no kperf.scope in the source and auto= selected no op)"
PLAIN = ("compiled plain and launched directly, so kperf could not swap in an instrumented build "
         "(e.g. loaded before kperf was active through a launcher kperf does not wrap)")
SAMPLED = "left out by sampling (every=)"
LIMIT = "past max_launches"


def build_failure(kernel: str, error: Exception, stage: str | None = None) -> str:
    """The reason an instrumented build of ``kernel`` failed, warned once: a ``KperfError`` (what kperf
    cannot do, e.g. place a record), or any error in a compile ``stage`` of the instrumented build, lets
    the launch run plain; any other error is the program's and is raised again."""
    import warnings

    from kperf.compile_api import kperf_cause
    cause = kperf_cause(error)
    if cause is None and stage is None:
        raise error
    first = (str(cause or error).splitlines() or [type(error).__name__])[0]
    where = "" if cause is not None else f"its {stage} stage failed: {type(error).__name__}: "
    warnings.warn(f"kperf: {kernel} runs uninstrumented: {where}{cause or error}", stacklevel=4)
    return f"could not be instrumented ({where}{first})"


class Sampling:
    """Which launches of each kernel a capture keeps: every ``every``-th, at most ``max_launches``."""

    def __init__(self, every: int = 1, max_launches: int | None = None, api: str = "kperf.session"):
        if isinstance(every, bool) or not isinstance(every, int) or every < 1:
            raise KperfError(f"{api}(every=...): expected a whole number >= 1, got {every!r}",
                             fix="every=1 profiles every launch; every=10 one launch in ten of each kernel")
        if max_launches is not None and (isinstance(max_launches, bool) or not isinstance(max_launches, int)
                                         or max_launches < 1):
            raise KperfError(f"{api}(max_launches=...): expected a whole number >= 1 or None, got "
                             f"{max_launches!r}", fix="max_launches=None keeps every sampled launch")
        self.every, self.max_launches = every, max_launches
        #: Whether some launches may be left out (then a launch is sampled before it runs, to run it plain).
        self.active = every > 1 or max_launches is not None
        self._seen: collections.Counter = collections.Counter()
        self._kept: collections.Counter = collections.Counter()

    def take(self, kernel: str) -> str | None:
        """None when this launch of ``kernel`` is to be profiled, else the reason it is not."""
        n = self._seen[kernel]
        self._seen[kernel] = n + 1
        if n % self.every:
            return SAMPLED
        if self.max_launches is not None and self._kept[kernel] >= self.max_launches:
            return LIMIT
        self._kept[kernel] += 1
        return None


class Coverage:
    """Launches per kernel: profiled, and not profiled by reason."""

    def __init__(self):
        self._profiled: collections.Counter = collections.Counter()
        self._skipped: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)

    def profiled(self, kernel: str) -> None:
        self._profiled[kernel] += 1

    def skipped(self, kernel: str, reason: str) -> None:
        self._skipped[kernel][reason] += 1

    def rows(self) -> list[tuple[str, int, int, str]]:
        """``(kernel, launches, profiled, reasons)`` per kernel, most launches first."""
        out = []
        for k in set(self._profiled) | set(self._skipped):
            skipped = self._skipped.get(k, {})
            launches = self._profiled[k] + sum(skipped.values())
            reasons = "; ".join(f"{n} {r}" for r, n in sorted(skipped.items(), key=lambda x: -x[1]))
            out.append((k, launches, self._profiled[k], reasons))
        return sorted(out, key=lambda r: (-r[1], r[0]))

    def unseen(self) -> list[tuple[str, int, str]]:
        """``(kernel, launches not profiled, reasons)`` for kernels with launches kperf did not profile,
        leaving out launches skipped on purpose (sampling)."""
        out = []
        for k, skipped in self._skipped.items():
            real = {r: n for r, n in skipped.items() if r not in (SAMPLED, LIMIT)}
            if real:
                out.append((k, sum(real.values()), "; ".join(sorted(real))))
        return sorted(out, key=lambda r: (-r[1], r[0]))

    def table(self) -> str:
        """A text table of ``rows()`` (empty string when nothing was launched)."""
        rows = self.rows()
        if not rows:
            return ""
        w = max(len("kernel"), *(len(r[0]) for r in rows))
        lines = [f"{'kernel':<{w}}  {'launches':>8}  {'profiled':>8}  not profiled"]
        lines += [f"{k:<{w}}  {n:>8}  {p:>8}  {why}" for k, n, p, why in rows]
        return "\n".join(lines)
