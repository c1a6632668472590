"""Terminal output: rich tables (best in each case highlighted, Δ against FT green/red) on a terminal, plain
text tables (tabulate) when stdout is not a terminal or with ``--plain``.

Both fit the terminal's width: a table too wide for it is split into parts, each repeating the table's key
columns (dataset, backbone, ... : what names a row), and free text wraps. No column is ever left out; the
Markdown pages keep every table whole. A field longer than ``text.DISPLAY_LIMIT`` characters is shortened here
(saying so), so that the output's time is bounded whatever a record holds; the pages and CSVs keep it whole.
"""

from __future__ import annotations

import shutil
import sys
import textwrap
from collections.abc import Callable
from typing import Any, TextIO

from medft_bench.leaderboard.aggregate import Group
from medft_bench.leaderboard.load import Inputs
from medft_bench.leaderboard.metadata import metadata_lines
from medft_bench.leaderboard.page import leaderboard_page
from medft_bench.leaderboard.tables.model import FREE_TEXT, Cell, Table
from medft_bench.text import printable, shortened

RICH_STYLES = {"best": "bold green", "pos": "green", "neg": "red", "warn": "yellow", "muted": "dim"}
BEST_MARK = " *"
DEFAULT_WIDTH = 100  # plain text when the width is unknown (not a terminal, no COLUMNS)
MIN_WRAP = 20  # free text never wraps narrower than this


def terminal_width() -> int:
    """The terminal's columns ($COLUMNS first), else DEFAULT_WIDTH."""
    return shutil.get_terminal_size((DEFAULT_WIDTH, 24)).columns


def for_terminal(table: Table) -> Table:
    """``table`` with every text :func:`~medft_bench.text.shortened` (cells, title, caption, notes)."""
    return Table(table.key, shortened(table.title), table.columns,
                 [[Cell(shortened(c.text), c.style) for c in row] for row in table.rows], shortened(table.caption),
                 [shortened(n) for n in table.notes])


def _longest(table: Table, i: int) -> int:
    return max((len(line) for row in table.rows for line in row[i].text.split("\n")), default=0)


def wrap_width(table: Table, i: int) -> int | None:
    """Where column ``i``'s text wraps: its own setting when its text is longer, FREE_TEXT for long free text,
    else None (names and numbers stay on one line)."""
    col, longest = table.columns[i], max(_longest(table, i), len(table.columns[i].header))
    limit = col.wrap if col.wrap is not None else FREE_TEXT
    return limit if longest > limit else None


def split_columns(table: Table, fits: Callable[[list[int]], bool]) -> list[list[int]]:
    """Column indices of each part: the key columns, then as many of the others (in order) as ``fits``
    allows; a column that does not fit even alone with the keys gets a part of its own."""
    keys = [i for i, col in enumerate(table.columns) if col.key]
    parts: list[list[int]] = []
    current: list[int] = []
    for i in (i for i, col in enumerate(table.columns) if not col.key):
        if current and not fits(sorted(keys + current + [i])):
            parts.append(current)
            current = []
        current.append(i)
    parts.append(current)
    return [sorted(keys + p) for p in parts]


def _part_title(table: Table, k: int, n: int) -> str:
    if n == 1:
        return table.title
    keys = ", ".join(col.header for col in table.columns if col.key)
    return f"{table.title} [part {k} of {n}" + (f"; {keys} repeated]" if keys else "]")


# ---------------------------------------------------------------------------------------------- plain text


def _wrapped(text: str, width: int | None) -> str:
    """``text`` wrapped at spaces to ``width``; a word longer than that (a model name, a path) stays whole, so that
    no identifier is broken mid-word: its column grows instead."""
    if width is None:
        return text
    return "\n".join(textwrap.fill(line, width, break_long_words=False, break_on_hyphens=False) or line
                     for line in text.split("\n"))


def _tabulate(table: Table, cols: list[int], wraps: dict[int, int | None]) -> str:
    from tabulate import tabulate

    rows = [[_wrapped(row[i].text + (BEST_MARK if row[i].style == "best" and row[i].text else ""), wraps.get(i))
             for i in cols] for row in table.rows]
    return tabulate(rows, headers=[_wrapped(table.columns[i].header, wraps.get(i)) for i in cols],
                    tablefmt="simple", colalign=["right" if table.columns[i].align == "r" else "left" for i in cols],
                    disable_numparse=True)


def _line_width(text: str) -> int:
    return max((len(line) for line in text.split("\n")), default=0)


def _floor(table: Table, i: int) -> int:
    """The narrowest column ``i`` may wrap to: MIN_WRAP, or its longest word when that is longer."""
    words = (w for row in table.rows for w in row[i].text.split())
    return max(MIN_WRAP, max(map(len, words), default=0))


def _plain_part(table: Table, cols: list[int], width: int, wraps: dict[int, int | None]) -> str:
    """The part's text; its text columns (left-aligned: numbers never wrap) narrow, down to their floor, until it
    fits ``width``."""
    wraps = dict(wraps)
    text = _tabulate(table, cols, wraps)
    while _line_width(text) > width:
        now = {i: wraps.get(i) or max(_longest(table, i), len(table.columns[i].header)) for i in cols
               if table.columns[i].align == "l"}
        narrowable = [i for i, w in now.items() if w > _floor(table, i)]
        if not narrowable:
            break
        widest = max(narrowable, key=lambda i: now[i])
        wraps[widest] = max(_floor(table, widest), now[widest] - (_line_width(text) - width))
        text = _tabulate(table, cols, wraps)
    return text


def _wrap_lines(text: str, width: int, prefix: str = "", indent: str = "") -> list[str]:
    return textwrap.wrap(shortened(text), width, initial_indent=prefix, subsequent_indent=indent or " " * len(prefix),
                         break_on_hyphens=False) or [prefix.rstrip()]


def plain_table(table: Table, width: int = DEFAULT_WIDTH) -> str:
    """The table as plain text no wider than ``width`` (split into parts when it must be)."""
    table = for_terminal(table)
    wraps = {i: wrap_width(table, i) for i in range(len(table.columns))}
    parts = split_columns(table, lambda cols: _line_width(_plain_part(table, cols, width, wraps)) <= width)
    texts = [_plain_part(table, cols, width, wraps) for cols in parts]  # each part laid out once
    if any(_line_width(text) > width for text in texts):
        return _plain_records(table, width)
    lines: list[str] = []
    for k, text in enumerate(texts, 1):
        lines += _heading(_part_title(table, k, len(parts)), table.caption if k == 1 else "", width)
        lines.append(text)
        if k < len(parts):
            lines.append("")
    return "\n".join(lines + _trailer(table, width)) + "\n"


def _heading(title: str, caption: str, width: int) -> list[str]:
    """A plain table's title, underlined, and its caption in brackets."""
    title_lines = _wrap_lines(title, width)
    return [*title_lines, "=" * min(max(map(len, title_lines)), width),
            *(_wrap_lines(f"[{caption}]", width) if caption else [])]


def _trailer(table: Table, width: int) -> list[str]:
    """What follows a plain table: the best mark's meaning when a cell has it, then the notes."""
    lines = [f"{BEST_MARK.strip()} best in its case"] if any(c.style == "best" for r in table.rows for c in r) else []
    for n in table.notes:
        lines += _wrap_lines(n, width, "- ")
    return lines


def _fitted(text: str, width: int) -> list[str]:
    """``text`` wrapped at spaces to ``width``; a word still longer (a path, a hash) is broken after a ``/``, ``-``
    or ``_`` where it can be, and only where it has none of them at the width itself."""
    lines = []
    for line in textwrap.wrap(text, width, break_long_words=False, break_on_hyphens=False) or [""]:
        while len(line) > width:
            cut = max(line.rfind(sep, 0, width) for sep in "/-_") + 1 or width
            lines.append(line[:cut])
            line = line[cut:]
        lines.append(line)
    return lines


def _plain_records(table: Table, width: int) -> str:
    """A table whose columns do not fit side by side even one at a time (a 64-digit hash, a path, a long cell id
    beside its key columns), as psql's expanded display shows one: a block a row, its key values on the first
    line, then a line a field."""
    keys = [i for i, col in enumerate(table.columns) if col.key]
    lines = _heading(table.title, table.caption, width)
    for n, row in enumerate(table.rows, 1):
        named = " · ".join(row[i].text for i in keys if row[i].text) or f"row {n}"
        lines += ["", *_fitted(named, width)]
        for i, col in enumerate(table.columns):
            if i in keys or not row[i].text:
                continue
            value = row[i].text + (BEST_MARK if row[i].style == "best" else "")
            label = f"  {col.header}: "
            if len(label) + len(value) <= width and "\n" not in value:
                lines.append(label + value)
            else:
                lines += [label.rstrip(), *("    " + x for x in _fitted(value, width - 4))]
    return "\n".join([*lines, "", *_trailer(table, width)]) + "\n"


def render_plain(groups: list[Group], inputs: Inputs, meta: dict[str, Any], all_metrics: bool = False,
                 written: str | None = None, width: int = DEFAULT_WIDTH) -> str:
    page = leaderboard_page(groups, inputs, all_metrics)
    parts = [page.title, ""]
    for label, text in metadata_lines(meta):
        parts += _wrap_lines(f"{label}: {text}", width, indent="  ")
    parts.append("")
    for section in page.shown(groups_inline=True):
        heading_lines = _wrap_lines(section.heading or "", width)
        bar = "#" * min(max(map(len, heading_lines)), width)
        parts += [bar, *heading_lines, bar, ""]
        for text in filter(None, (section.caution and f"Caution — {section.caution}.", section.intro)):
            parts += [*_wrap_lines(text, width), ""]
        parts += [plain_table(table, width) for table in section.tables]
    if written:
        parts += _wrap_lines(written, width, indent="  ")
    return printable("\n".join(parts).rstrip() + "\n")  # headings and metadata hold record fields too


# ---------------------------------------------------------------------------------------------- rich


def _build(table: Table, cols: list[int], title: str, caption: str) -> Any:
    from rich import box
    from rich.table import Table as RichTable
    from rich.text import Text

    rt = RichTable(title=Text(title, style="bold"), caption=None,
                   show_lines=any(c.wrap for c in table.columns),
                   header_style="bold", box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True,
                   show_edge=False)  # the edge columns are blank in this box: 2 columns a table can use
    for i in cols:
        col, longest = table.columns[i], _longest(table, i)
        wraps = wrap_width(table, i) is not None
        # Never narrower than its header, nor, unless it wraps, than its longest text: rich shrinks a table that
        # is too wide by cutting into its columns, and a cut number is a wrong number. The planner splits instead.
        head = max((len(w) for w in col.header.split()), default=0) if wraps else len(col.header)
        rt.add_column(Text(col.header), justify="right" if col.align == "r" else "left", no_wrap=not wraps,
                      overflow="fold", min_width=max(head, min(longest, FREE_TEXT // 2) if wraps else longest))
    for row in table.rows:
        rt.add_row(*[Text(row[i].text, style=RICH_STYLES.get(row[i].style or "", "")) for i in cols])
    return rt


def rich_tables(table: Table, console: Any) -> list[Any]:
    """The table as rich tables that fit ``console.width``: one, or parts repeating the key columns (their
    captions and notes: :func:`rich_captions`)."""
    from rich.measure import Measurement

    table = for_terminal(table)
    wide = console.options.update_width(10_000)  # measured unconstrained: rich measures a table already shrunk

    def fits(cols: list[int]) -> bool:
        return Measurement.get(console, wide, _build(table, cols, "", "")).minimum <= console.width

    parts = split_columns(table, fits)
    return [_build(table, cols, _part_title(table, k, len(parts)), "") for k, cols in enumerate(parts, 1)]


def rich_captions(table: Table, n_parts: int) -> list[Any]:
    """What follows each of the ``n_parts`` parts: the caption after the first, the notes after the last, as
    text that wraps at the console's width (a rich table's own caption is cut to the table's width)."""
    from rich.text import Text

    table = for_terminal(table)
    out = []
    for k in range(1, n_parts + 1):
        lines = [*([table.caption] if table.caption and k == 1 else []), *(table.notes if k == n_parts else [])]
        out.append(Text("\n".join(lines), style="dim") if lines else None)
    return out


def render_rich(groups: list[Group], inputs: Inputs, meta: dict[str, Any], all_metrics: bool = False,
                written: str | None = None, console: Any = None) -> None:
    from rich.console import Console
    from rich.text import Text

    console = console or Console()
    page = leaderboard_page(groups, inputs, all_metrics)
    _rule(console, page.title, "bold")
    for label, text in metadata_lines(meta):
        console.print(Text.assemble((f"{label}: ", "bold"), printable(shortened(text))))
    for section in page.shown(groups_inline=True):
        heading = section.heading or ""
        loud = "SYNTHETIC" in heading or "RANDOM" in heading
        _rule(console, printable(shortened(heading)), "bold magenta" if loud else "bold")
        if section.caution:
            console.print(Text(printable(shortened(f"Caution — {section.caution}.")), style="bold magenta"))
        if section.intro:
            console.print(Text(shortened(section.intro), style="dim"))
        for table in section.tables:
            _print_table(table, console)
    if written:
        console.print(Text(written, style="bold"))


def _rule(console: Any, heading: str, style: str) -> None:
    """A heading in a rule when it fits the width, else a rule over the heading wrapped whole (a rule's title is
    cut with an ellipsis where it does not fit)."""
    from rich.text import Text

    if len(heading) + 4 <= console.width:
        console.rule(Text(heading, style=style))
    else:
        console.rule()
        console.print(Text(heading, style=style))


def _print_table(table: Table, console: Any) -> None:
    parts = rich_tables(table, console)
    for rt, caption in zip(parts, rich_captions(table, len(parts))):
        console.print(rt)
        if caption is not None:
            console.print(caption)


def print_report(groups: list[Group], inputs: Inputs, meta: dict[str, Any], *, plain: bool | None = None,
                 all_metrics: bool = False, written: str | None = None, stream: TextIO | None = None,
                 width: int | None = None) -> None:
    """Rich on a terminal, plain text otherwise (or when ``plain`` is True), ``width`` columns wide (default:
    the terminal's, else DEFAULT_WIDTH)."""
    stream = stream or sys.stdout
    if plain is None:
        plain = not (hasattr(stream, "isatty") and stream.isatty())
    if plain:
        stream.write(render_plain(groups, inputs, meta, all_metrics, written, width or terminal_width()))
        stream.flush()
        return
    from rich.console import Console

    render_rich(groups, inputs, meta, all_metrics, written, console=Console(file=stream, width=width))
