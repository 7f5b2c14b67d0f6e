"""The one exception type the kperf dialect and passes raise for bad input."""

from __future__ import annotations

from collections.abc import Iterator


class KperfError(Exception):
    """Bad kperf input: the message names the cause, where it is, and the fix."""

    def __init__(self, message: str, *, where: str | None = None, fix: str | None = None):
        self.where = where
        self.fix = fix
        text = f"{where}: {message}" if where else message
        if fix:
            text += f"\n  fix: {fix}"
        super().__init__(text)


def error_chain(error: BaseException | None) -> Iterator[BaseException]:
    """``error`` and the errors it wraps (``__cause__``, else ``__context__``), each once."""
    seen = set()
    while error is not None and id(error) not in seen:
        yield error
        seen.add(id(error))
        error = error.__cause__ or error.__context__
