"""Worker processes: an ordered, bounded-prefetch ``map`` over spawned processes."""

from __future__ import annotations

import contextlib
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


def cpu_count() -> int:
    """Cores this process may run on (the affinity mask, e.g. a container's share)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def default_workers() -> int:
    """Decode processes beside the model by default: one core left for the model, at most 4."""
    return max(1, min(4, cpu_count() - 1))


def model_threads(decode_workers: int) -> int:
    """Threads for the model beside ``decode_workers`` decode processes: the cores they leave.
    torch's default (every core) oversubscribes a small box when a decoder runs beside it:
    end-to-end / bare-model rate 0.64 on 2 cores, 0.91 with 1 model thread (FACTS.md)."""
    return max(1, cpu_count() - max(0, int(decode_workers)))


@contextlib.contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """Run the block with ``n`` torch intra-op threads (None: leave them), then restore."""
    if n is None:
        yield
        return
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(max(1, int(n)))
    try:
        yield
    finally:
        torch.set_num_threads(before)


def resolve_workers(workers: int | None) -> int:
    """``None`` -> :func:`default_workers`; else the number asked for (0: decode in this process)."""
    return default_workers() if workers is None else int(workers)
