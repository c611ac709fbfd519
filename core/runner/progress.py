"""Progress display for long runs (rich on a terminal, a plain log otherwise, nothing when quiet)."""

from __future__ import annotations

import sys
import time
from types import TracebackType

__all__ = ["Progress"]


class Progress:
    """One overall bar over the run's (cell, seed) units, with the current step as its description.

    Args:
        total: Number of units.
        enabled: False silences it (``--quiet``).
    """

    def __init__(self, *, total: int, enabled: bool = True) -> None:
        self.total = total
        self.enabled = enabled and total > 0
        self.done = 0
        self._bar: object | None = None
        self._task: object | None = None
        self._started = time.monotonic()

    def __enter__(self) -> Progress:
        if not self.enabled:
            return self
        if sys.stderr.isatty():
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress as RichProgress,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )

            bar = RichProgress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                TimeRemainingColumn(),
                console=Console(stderr=True),
                transient=True,
            )
            bar.start()
            self._task = bar.add_task("starting", total=self.total)
            self._bar = bar
        return self

    def describe(self, text: str) -> None:
        """Show what is being computed now."""
        if not self.enabled:
            return
        if self._bar is not None:
            self._bar.update(self._task, description=text)  # type: ignore[attr-defined]
        else:
            elapsed = time.monotonic() - self._started
            print(f"[{self.done}/{self.total} {elapsed:6.1f}s] {text}", file=sys.stderr, flush=True)

    def advance(self, units: int = 1) -> None:
        """Mark units done."""
        self.done += units
        if self.enabled and self._bar is not None:
            self._bar.update(self._task, advance=units)  # type: ignore[attr-defined]

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None, tb: TracebackType | None) -> None:
        if self._bar is not None:
            self._bar.stop()  # type: ignore[attr-defined]
