"""The table model: a table is plain data (columns with their settings, rows of text cells with a style),
built once and rendered by every output; nothing here knows about groups or metrics."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from medft_bench.text import printable


@dataclass
class Cell:
    text: str
    style: str | None = None  # best | pos | neg | warn | muted

    def __post_init__(self) -> None:
        # Made safe here, where every cell is made: a record's fields and file names reach the terminal (plain and
        # rich), the pages and ``compare`` through cells, never raw.
        self.text = printable(self.text)

    def __str__(self) -> str:
        return self.text


FREE_TEXT = 40  # a column whose longest text is longer wraps (reasons, paths, claims); names and numbers do not


@dataclass(frozen=True)
class Column:
    """One column's settings, kept together: its header, alignment, whether it names the row (a key column is
    repeated in every part when a table too wide for the terminal is split), and where free text wraps."""

    header: str
    align: str = "l"  # "l" or "r"
    key: bool = False
    wrap: int | None = None  # wrap text at this many characters; None: FREE_TEXT when longer than that

    def __post_init__(self) -> None:
        object.__setattr__(self, "header", printable(self.header))
        if self.align not in ("l", "r"):
            raise ValueError(f"column {self.header!r}: align must be 'l' or 'r', not {self.align!r}")


def left(header: str, *, key: bool = False, wrap: int | None = None) -> Column:
    return Column(header, "l", key, wrap)


def right(header: str) -> Column:
    return Column(header, "r")


@dataclass
class Table:
    key: str
    title: str
    columns: list[Column]
    rows: list[list[Cell]]
    caption: str = ""
    notes: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.title, self.caption = printable(self.title), printable(self.caption)
        self.notes = [printable(n) for n in self.notes]
        for row in self.rows:
            if len(row) != len(self.columns):
                raise ValueError(f"table {self.key!r}: a row has {len(row)} cells for {len(self.columns)} columns")

    @property
    def headers(self) -> list[str]:
        return [col.header for col in self.columns]

    def turned(self, corner: str) -> Table:
        """The same cells with rows and columns swapped: each value column becomes a row named by its header (the
        new key column, headed ``corner``), each row a column headed by its key cells. A table of few cases and many
        strategies then reads down the page, every result in view, instead of past the screen's right edge."""
        keys = [i for i, col in enumerate(self.columns) if col.key]
        values = [i for i, col in enumerate(self.columns) if not col.key]
        columns = [left(corner, key=True)]
        columns += [right(" · ".join(row[i].text for i in keys if row[i].text)) for row in self.rows]
        rows = [[Cell(self.columns[j].header), *(row[j] for row in self.rows)] for j in values]
        return Table(self.key, self.title, columns, rows, self.caption, list(self.notes))


def cell(value: Any, style: str | None = None) -> Cell:
    """A table cell showing ``value`` (None: empty) in ``style``."""
    return Cell("" if value is None else str(value), style)
