"""Progress bars for host-side work that takes seconds: one helper, so every bar behaves alike.

A bar is drawn (``tqdm``, on stderr) only when stderr is a terminal and the work is large enough to
take about a second (:data:`MIN_EVENTS` events and more), so pipes, logs and tests' captured output
never see one; without tqdm the work goes on without a bar.  ``show=True``/``False`` overrides.
"""

from __future__ import annotations

import sys
from typing import Any

#: events above which the statistics of a profile take about a second on a 2-core machine
MIN_EVENTS = 4_000_000


class _NoBar:
    """What :func:`progress` gives when no bar is drawn: accepts the calls, draws nothing."""

    def update(self, n: int = 1) -> None:
        pass

    def set_postfix_str(self, s: str = "", refresh: bool = True) -> None:
        pass

    def close(self) -> None:
        pass

    def __enter__(self) -> _NoBar:
        return self

    def __exit__(self, *exc) -> None:
        pass


def progress(total: int, desc: str, *, events: int, unit: str = "it", show: bool | None = None) -> Any:
    """A tqdm bar of ``total`` steps for work over ``events`` events (or a silent stand-in)."""
    if show is False or (show is None and (events < MIN_EVENTS or not _terminal())):
        return _NoBar()
    try:
        from tqdm import tqdm
    except ImportError:  # a convenience: the work goes on without it
        return _NoBar()
    return tqdm(total=total, desc=desc, unit=unit, leave=False, file=sys.stderr)


def _terminal() -> bool:
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):  # replaced or closed stderr
        return False
