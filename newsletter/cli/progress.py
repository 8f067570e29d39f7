"""Progress bars on stderr for long commands, only when a person is watching."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from newsletter.progress import ProgressHook

if TYPE_CHECKING:
    from rich.console import Console
    from rich.progress import TaskID


def wanted(*, quiet: bool = False, json_output: bool = False) -> bool:
    """Draw bars only on a terminal, and never with --quiet or --json."""
    return not quiet and not json_output and sys.stderr.isatty()


@contextmanager
def progress_bars(
    *, enabled: bool, console: Console | None = None
) -> Iterator[Callable[[str], ProgressHook | None]]:
    """Yield ``bar(description)``: a hook for one more bar of the same display (several
    phases of one command, e.g. ingest then embed), shown from its first call; every
    hook is None when not ``enabled``."""
    if not enabled:
        yield lambda _description: None
        return
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        SpinnerColumn,
        TextColumn,
        TimeElapsedColumn,
    )

    with Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console or Console(stderr=True),
        transient=True,
    ) as progress:

        def bar(description: str) -> ProgressHook:
            task: list[TaskID] = []

            def hook(advance: int, total: int | None) -> None:
                if not task:
                    task.append(progress.add_task(description, total=total))
                elif total is not None:
                    progress.update(task[0], total=total)
                progress.advance(task[0], advance)

            return hook

        yield bar


@contextmanager
def progress_bar(
    description: str, *, enabled: bool, console: Console | None = None
) -> Iterator[ProgressHook | None]:
    """Yield a hook that advances one rich progress bar (None when not ``enabled``)."""
    with progress_bars(enabled=enabled, console=console) as bar:
        yield bar(description)
