"""The thread pool that decoding, pairing and the statistics share.

All work on blocks (of whole warps, CTAs or intervals, small enough to stay in cache) with numpy calls
that release the GIL, so a few threads speed them up; small launches stay on the calling thread,
where starting a pool would cost more than it saves.  :func:`imap_blocks` hands results back in order
as they come, for work whose results are folded in one order (sums that must add up the same way).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

#: launches with fewer events are decoded (and paired) on the calling thread only
PARALLEL_MIN_EVENTS = 1 << 19


def default_threads() -> int:
    """Threads for decoding and pairing: the CPUs this process may use, at most 8."""
    try:
        n = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        n = os.cpu_count() or 1
    return max(1, min(n, 8))


def map_blocks(fn: Callable[..., Any], items: Sequence[tuple], n_events: int, threads: int | None) -> list:
    """``[fn(*item) for item in items]``, on a thread pool when the work is large enough.

    ``n_events`` is the size of the whole job (it decides whether a pool pays off); ``threads`` is
    the caller's limit (``None``: :func:`default_threads`).  Results come back in the order of ``items``.
    """
    threads = default_threads() if threads is None else max(1, int(threads))
    if threads == 1 or len(items) < 2 or n_events < PARALLEL_MIN_EVENTS:
        return [fn(*it) for it in items]
    with ThreadPoolExecutor(max_workers=min(threads, len(items))) as ex:
        return list(ex.map(lambda it: fn(*it), items))


def imap_blocks(fn: Callable[..., Any], items: Sequence[tuple], n_events: int, threads: int | None,
                ahead: int = 2) -> Iterator[Any]:
    """``fn(*item)`` for each item, yielded in order as :func:`map_blocks` computes them, with at most
    ``ahead`` results per thread waiting: a caller that folds the results in order (sums that must add
    up in one order) keeps the work parallel and the memory of a few blocks."""
    threads = default_threads() if threads is None else max(1, int(threads))
    if threads == 1 or len(items) < 2 or n_events < PARALLEL_MIN_EVENTS:
        yield from (fn(*it) for it in items)
        return
    with ThreadPoolExecutor(max_workers=min(threads, len(items))) as ex:
        pending = [ex.submit(fn, *it) for it in items[: threads * ahead]]
        for i in range(len(items)):
            yield pending[i].result()
            pending[i] = None  # let the result go once the caller has it
            j = i + threads * ahead
            if j < len(items):
                pending.append(ex.submit(fn, *items[j]))
