"""A benchmark's table: a title, its goal, rows, and each row's verdict, as text and as markdown."""

from __future__ import annotations

import dataclasses
import statistics
from collections.abc import Callable, Sequence
from typing import Any


@dataclasses.dataclass
class Table:
    """One benchmark's figures: column names, rows of cells, and notes printed under them."""

    title: str
    goal: str
    columns: list[str]
    rows: list[list[Any]] = dataclasses.field(default_factory=list)
    notes: list[str] = dataclasses.field(default_factory=list)

    def markdown(self) -> str:
        """The table as a markdown section."""
        lines = [f"## {self.title}", "", f"Goal: {self.goal}", "",
                 "| " + " | ".join(self.columns) + " |", "|" + "---|" * len(self.columns)]
        lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in self.rows]
        lines += [""] + [f"{note}  " for note in self.notes]
        return "\n".join(lines).rstrip() + "\n"

    def text(self) -> str:
        """The table as aligned plain text for the terminal."""
        cells = [self.columns] + [[_cell(c) for c in row] for row in self.rows]
        widths = [max(len(r[i]) for r in cells) for i in range(len(self.columns))]
        out = [f"== {self.title} (goal: {self.goal})"]
        out += ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in cells]
        return "\n".join(out + self.notes) + "\n"


def verdict(ok: bool) -> str:
    """The word each row ends with."""
    return "meets" if ok else "misses"


def median_of(runs: int, measure: Callable[[], float]) -> float:
    """Median of runs calls of measure()."""
    return statistics.median(measure() for _ in range(runs))


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 100 else f"{value:.0f}"
    return str(value)


def medians(samples: Sequence[Sequence[float]]) -> list[float]:
    """Column-wise medians of rows of samples."""
    return [statistics.median(column) for column in zip(*samples, strict=True)]
