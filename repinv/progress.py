"""Progress on long work: a rich progress bar on a terminal, plain lines at a steady interval otherwise.

With stderr redirected (``nohup``, CI, a cluster's log file), a progress bar would be drawn once, at the end; a log
gets instead one line every ``REPINV_PROGRESS_SECONDS`` seconds (default 30) and one when the work ends: what is
done of how much, the caller's status (loss, images/s …), the time elapsed and the time remaining.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, ProgressColumn, TextColumn, TimeRemainingColumn

__all__ = ["console", "progress_bar", "hms"]

#: Results (tables, summaries) go to stdout; progress bars to stderr, so redirected output stays clean.
console = Console()
_progress_console = Console(stderr=True)
#: Seconds between plain progress lines when stderr is not a terminal.
DEFAULT_LINE_SECONDS = 30.0


def hms(seconds: float) -> str:
    """``HH:MM:SS`` for a number of seconds (negative counts as 0)."""
    return time.strftime("%H:%M:%S", time.gmtime(max(0.0, seconds)))


@contextmanager
def progress_bar(description: str, total: int | None, enabled: bool = True, own_eta: bool = False,
                 unit: str = "") -> Iterator[Callable[..., None]]:
    """A progress context; yields ``advance(n=1, **fields)``; the field ``status`` is shown beside the progress.

    Args:
        description: what is being done.
        total: the number of units, or ``None`` when unknown.
        enabled: ``False`` gives a no-op ``advance``.
        own_eta: the caller puts its own estimate in ``status`` (e.g. one bounded by a time budget), so none is
            computed here.
        unit: what is counted, shown after the count (``"s"`` for seconds of a time budget); none for items.
    """
    if not enabled:
        yield lambda n=1, **fields: None
    elif not _progress_console.is_terminal:
        with _plain_lines(description, total, own_eta, unit) as advance:
            yield advance
    else:
        count = TextColumn(f"{{task.completed:,.0f}}/{{task.total:,.0f}} {unit}") if unit else MofNCompleteColumn()
        columns: list[ProgressColumn] = [TextColumn("[bold]{task.description}"), BarColumn(), count,
                                         TextColumn("{task.fields[status]}")]
        if not own_eta:
            columns.append(TimeRemainingColumn())
        with Progress(*columns, console=_progress_console, transient=False) as progress:
            task = progress.add_task(description, total=total, status="")

            def advance(n: int = 1, **fields: object) -> None:
                progress.update(task, advance=n, **fields)  # type: ignore[arg-type]  # rich types **fields too narrowly

            yield advance


@contextmanager
def _plain_lines(description: str, total: int | None, own_eta: bool, unit: str) -> Iterator[Callable[..., None]]:
    """Progress as plain lines on stderr, one per interval and one at the end."""
    interval = float(os.environ.get("REPINV_PROGRESS_SECONDS", DEFAULT_LINE_SECONDS))
    started = last = time.monotonic()
    done, status, shown = 0, "", -1

    def line() -> None:
        nonlocal shown
        shown, elapsed = done, time.monotonic() - started
        count = f"{done:,}" + (f"/{total:,}" if total else "") + (f" {unit}" if unit else "")
        parts = [f"{description}: {count}" + (f" ({100 * done / max(total, 1):.0f}%)" if total else "")]
        parts += [status] if status else []
        parts.append(f"elapsed {hms(elapsed)}")
        if total and done and not own_eta:
            parts.append(f"remaining {hms(elapsed / done * (total - done))}")
        print(" · ".join(parts), file=sys.stderr, flush=True)

    def advance(n: int = 1, **fields: object) -> None:
        nonlocal done, status, last
        done += n
        status = str(fields.get("status", status))
        if time.monotonic() - last >= interval:
            last = time.monotonic()
            line()

    yield advance
    if shown != done:  # the end, unless the last line already said it
        line()
