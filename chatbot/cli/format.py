"""How the commands print numbers and progress: one helper each, shared by all."""

from __future__ import annotations

import time
from typing import Any

import click

BAR_WIDTH = 20


def fmt(value: Any, digits: int = 2) -> str:
    """A figure for a person: "-" for None (nothing measured), floats to `digits`
    places, thousands separated (1,234.57; 12,000)."""
    if value is None:
        return "-"
    return f"{value:,.{digits}f}" if isinstance(value, float) else f"{value:,}"


def bar(done: int, total: int | None, width: int = BAR_WIDTH) -> str:
    """A text progress bar, "[#####...............]"; all dots when the total is not
    known yet (None or 0)."""
    filled = min(width, round(width * done / total)) if total else 0
    return "[" + "#" * filled + "." * (width - filled) + "]"


class StatusLine:
    """One line on stderr, redrawn in place (at most ten times a second, but always for
    a new stage or the last step), and cleared by `close`. Shown only when `show` (a
    terminal): piped or logged stderr gets none of it."""

    def __init__(self, show: bool, interval: float = 0.1) -> None:
        self.show = show
        self.interval = interval
        self.last = 0.0
        self.text = ""
        self.width = 0

    def update(self, text: str, *, force: bool = False) -> None:
        """Show `text` (forced: even within the interval)."""
        now = time.monotonic()
        if not self.show or (not force and now - self.last < self.interval):
            return
        self.last, self.text = now, text
        pad = " " * max(0, self.width - len(text))
        self.width = len(text)
        click.echo("\r" + text + pad, err=True, nl=False)

    def progress(self, label: str, done: int, total: int | None) -> None:
        """A bar, the count and what is counted: "[###...] 1,200/5,000 replies"."""
        count = f"{done:,}/{total:,}" if total else f"{done:,}"
        self.update(f"{bar(done, total)} {count} {label}",
                    force=done == 0 or (bool(total) and done >= total))

    def close(self) -> None:
        """Clear the line, leaving the cursor at its start."""
        if self.show and self.width:
            click.echo("\r" + " " * self.width + "\r", err=True, nl=False)
            self.width = 0
