"""Progress bars on stderr for long commands, only when a person is watching."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from newsletter.progress import ProgressHook

if TYPE_CHECKING:
    from rich.console import Console


def wanted(*, quiet: bool = False, json_output: bool = False) -> bool:
    """Draw bars only on a terminal, and never with --quiet or --json."""
    return not quiet and not json_output and sys.stderr.isatty()


@contextmanager
def progress_bar(
    description: str, *, enabled: bool, console: Console | None = None
) -> Iterator[ProgressHook | None]:
    """Yield a hook that advances a rich progress bar (None when not ``enabled``)."""
    if not enabled:
        yield None
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
        task = progress.add_task(description, total=None)

        def hook(advance: int, total: int | None) -> None:
            if total is not None:
                progress.update(task, total=total)
            progress.advance(task, advance)

        yield hook
