"""Worker processes: an ordered, bounded-prefetch ``map`` over spawned processes."""

from __future__ import annotations

import os
import signal
from collections import deque
from typing import Callable, Iterable, Iterator


def _ignore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C and stops the pool


def ordered_map(fn: Callable, args: Iterable, workers: int, prefetch: int | None = None) -> Iterator:
    """``map(fn, args)`` in ``workers`` spawned processes, in order, at most ``prefetch``
    tasks ahead (bounded memory). ``workers <= 0`` runs in this process."""
    if workers <= 0:
        yield from map(fn, args)
        return
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    prefetch = prefetch or 4 * workers
    ex = ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn"), initializer=_ignore_sigint)
    queue: deque = deque()
    try:
        for a in args:
            queue.append(ex.submit(fn, a))
            if len(queue) >= prefetch:
                yield queue.popleft().result()
        while queue:
            yield queue.popleft().result()
    finally:
        ex.shutdown(wait=False, cancel_futures=True)


def default_workers() -> int:
    """Decode processes beside the model by default: one core left for the model, at most 4."""
    return max(1, min(4, (os.cpu_count() or 2) - 1))


def resolve_workers(workers: int | None) -> int:
    """``None`` -> :func:`default_workers`; else the number asked for (0: decode in this process)."""
    return default_workers() if workers is None else int(workers)
