"""Progress bars for long work (rich), off when not wanted or when output is not a terminal."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, ProgressColumn, TextColumn, TimeRemainingColumn

__all__ = ["console", "progress_bar"]

#: Results (tables, summaries) go to stdout; progress bars to stderr, so redirected output stays clean.
console = Console()
_progress_console = Console(stderr=True)


@contextmanager
def progress_bar(description: str, total: int | None, enabled: bool = True,
                 own_eta: bool = False) -> Iterator[Callable[..., None]]:
    """A progress bar context; yields ``advance(n=1, **fields)``; the field ``status`` is shown beside the bar.

    Args:
        description: what is being done.
        total: the number of units, or ``None`` when unknown.
        enabled: ``False`` gives a no-op ``advance``.
        own_eta: the caller puts its own estimate in ``status`` (e.g. one bounded by a time budget), so rich's
            is not shown.
    """
    if not enabled:
        yield lambda n=1, **fields: None
        return
    columns: list[ProgressColumn] = [TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                                     TextColumn("{task.fields[status]}")]
    if not own_eta:
        columns.append(TimeRemainingColumn())
    with Progress(*columns, console=_progress_console, transient=False) as progress:
        task = progress.add_task(description, total=total, status="")

        def advance(n: int = 1, **fields: object) -> None:
            progress.update(task, advance=n, **fields)  # type: ignore[arg-type]  # rich types **fields too narrowly

        yield advance
