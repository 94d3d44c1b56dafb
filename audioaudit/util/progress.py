"""A rich progress bar with count, rate and ETA (on stderr), or a no-op when disabled."""

from __future__ import annotations

import contextlib
from typing import Callable, Iterator


@contextlib.contextmanager
def progress_bar(total: int, description: str, *, enabled: bool = True, unit: str = "clips") -> Iterator[Callable[[int], None]]:
    """Yields ``advance(n=1)``. Shows ``done/total``, ``unit``/s and time remaining."""
    if not enabled or total <= 0:
        yield lambda n=1: None
        return
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        ProgressColumn,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )
    from rich.text import Text

    class RateColumn(ProgressColumn):
        def render(self, task) -> Text:
            speed = task.finished_speed or task.speed
            return Text("-- " + unit + "/s" if speed is None else f"{speed:.1f} {unit}/s", style="cyan")

    columns = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), RateColumn(),
               TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn()]
    with Progress(*columns, console=Console(stderr=True)) as prog:
        task = prog.add_task(description, total=total)
        yield lambda n=1: prog.advance(task, n)
