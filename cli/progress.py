"""The progress display of the long-running commands (demo, link, backfill, catch-up, sweep)."""

from __future__ import annotations

from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn


def counting(console: Console, *, of_total: bool = True, transient: bool = True) -> Progress:
    """A bar with "done/total" (or just "done" when the total is not known up front)."""
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}" if of_total else "{task.completed}"),
        TimeElapsedColumn(),
        console=console,
        transient=transient,
    )


def spinner(console: Console) -> Progress:
    """A spinner with a changing description, for work whose size is not known."""
    return Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    )
