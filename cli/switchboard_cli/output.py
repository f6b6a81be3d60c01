"""Human output: rich tables for lists, two-column panels for single objects, short sentences for actions."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime

from rich import box
from rich.table import Table
from rich.text import Text

from .context import console

__all__ = ["details", "note", "short_time", "table"]


def short_time(value: datetime | None) -> str:
    if value is None:
        return "-"
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def table(columns: Sequence[str], rows: Iterable[Sequence[object]], *, empty: str = "nothing yet") -> None:
    cells = [[("-" if cell is None or cell == "" else str(cell)) for cell in row] for row in rows]
    out = console()
    if not cells:
        out.print(Text(empty, style="dim"))
        return
    grid = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False)
    for column in columns:
        grid.add_column(column, overflow="fold")
    for row in cells:
        grid.add_row(*(Text(cell) for cell in row))
    out.print(grid)


def details(pairs: Iterable[tuple[str, object]], *, title: str | None = None) -> None:
    out = console()
    if title:
        out.print(Text(title, style="bold"))
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="dim")
    grid.add_column()
    for label, value in pairs:
        grid.add_row(label, Text("-" if value is None or value == "" else str(value)))
    out.print(grid)


def note(message: str) -> None:
    """One plain line on stdout (human mode only)."""
    console().print(Text(message))
