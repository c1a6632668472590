"""Terminal output: rich tables (best in row highlighted, Δ against FT green/red) on a terminal, plain
text tables (tabulate) when stdout is not a terminal or with ``--plain``."""

from __future__ import annotations

import sys
from typing import Any, TextIO

from medft_bench.leaderboard.aggregate import Group
from medft_bench.leaderboard.load import Inputs
from medft_bench.leaderboard.metadata import metadata_lines
from medft_bench.leaderboard.tables import Table, group_tables, notes_table, problems_table, survival_tables

RICH_STYLES = {"best": "bold green", "pos": "green", "neg": "red", "warn": "yellow", "muted": "dim"}
BEST_MARK = " *"


def _report_tables(groups: list[Group], inputs: Inputs, all_metrics: bool) -> list[tuple[str | None, Table]]:
    """(section heading or None, table) in display order."""
    out: list[tuple[str | None, Table]] = []
    for g in groups:
        for i, t in enumerate(group_tables(g, all_metrics)):
            out.append((g.key.label if i == 0 else None, t))
    for i, t in enumerate(survival_tables(groups)):
        out.append(("Study protocol against tuned protocol" if i == 0 else None, t))
    for extra in (problems_table(inputs), notes_table(inputs)):
        if extra is not None:
            out.append(("Inputs", extra))
    return out


def plain_table(table: Table) -> str:
    from tabulate import tabulate

    rows = [[cell.text + (BEST_MARK if cell.style == "best" and cell.text else "") for cell in row]
            for row in table.rows]
    align = ["right" if a == "r" else "left" for a in table.align]
    wrap = [table.wrap if a == "l" else None for a in table.align] if table.wrap else None
    text = tabulate(rows, headers=table.headers, tablefmt="simple", colalign=align, disable_numparse=True,
                    maxcolwidths=wrap)
    lines = [table.title, "=" * min(len(table.title), 100)]
    if table.caption:
        lines.append(f"[{table.caption}]")
    lines.append(text)
    if any(cell.style == "best" for row in table.rows for cell in row):
        lines.append(f"{BEST_MARK.strip()} best in row")
    lines += [f"- {n}" for n in table.notes]
    return "\n".join(lines) + "\n"


def render_plain(groups: list[Group], inputs: Inputs, meta: dict[str, Any], all_metrics: bool = False,
                 files: list[str] | None = None) -> str:
    parts = ["medft-bench leaderboard", ""]
    parts += [f"{label}: {text}" for label, text in metadata_lines(meta)]
    parts.append("")
    for heading, table in _report_tables(groups, inputs, all_metrics):
        if heading:
            parts += ["#" * min(len(heading), 100), heading, "#" * min(len(heading), 100), ""]
        parts.append(plain_table(table))
    if files:
        parts.append("Published: " + ", ".join(files))
    return "\n".join(parts).rstrip() + "\n"


def _build(table: Table, cols: list[int]) -> Any:
    from rich import box
    from rich.table import Table as RichTable
    from rich.text import Text

    caption = "\n".join([table.caption, *table.notes]) if table.caption else "\n".join(table.notes)
    rt = RichTable(title=Text(table.title, style="bold"), caption=Text(caption, style="dim") if caption else None,
                   caption_justify="left", show_lines=bool(table.wrap), header_style="bold", box=box.SIMPLE_HEAD)
    for i in cols:
        header, align = table.headers[i], table.align[i]
        longest = max((len(row[i].text) for row in table.rows), default=0)
        wraps = longest > 40  # free text (reasons, paths, claims) wraps; names and numbers stay on one line
        rt.add_column(Text(header), justify="right" if align == "r" else "left", no_wrap=not wraps,
                      overflow="fold" if wraps else "ellipsis", min_width=None if wraps else longest)
    for row in table.rows:
        rt.add_row(*[Text(row[i].text, style=RICH_STYLES.get(row[i].style or "", "")) for i in cols])
    return rt


def _rich_table(table: Table, console: Any) -> Any:
    """The rich table; on a terminal too narrow for it, without its optional columns (first first)."""
    from rich.measure import Measurement

    cols = list(range(len(table.headers)))
    rt = _build(table, cols)
    for name in table.optional:
        if Measurement.get(console, console.options.update(width=10_000), rt).maximum <= console.width:
            break
        cols = [i for i in cols if table.headers[i] != name]
        rt = _build(table, cols)
    return rt


def render_rich(groups: list[Group], inputs: Inputs, meta: dict[str, Any], all_metrics: bool = False,
                files: list[str] | None = None, console: Any = None) -> None:
    from rich.console import Console
    from rich.text import Text

    console = console or Console()
    console.rule(Text("medft-bench leaderboard", style="bold"))
    for label, text in metadata_lines(meta):
        console.print(Text.assemble((f"{label}: ", "bold"), text))
    for heading, table in _report_tables(groups, inputs, all_metrics):
        if heading:
            console.rule(Text(heading, style="bold magenta" if "SYNTHETIC" in heading or "RANDOM" in heading
                              else "bold"))
        console.print(_rich_table(table, console))
    if files:
        console.print(Text("Published: " + ", ".join(files), style="dim"))


def print_report(groups: list[Group], inputs: Inputs, meta: dict[str, Any], *, plain: bool | None = None,
                 all_metrics: bool = False, files: list[str] | None = None, stream: TextIO | None = None) -> None:
    """Rich on a terminal, plain text otherwise (or when ``plain`` is True)."""
    stream = stream or sys.stdout
    if plain is None:
        plain = not (hasattr(stream, "isatty") and stream.isatty())
    if plain:
        stream.write(render_plain(groups, inputs, meta, all_metrics, files))
        stream.flush()
        return
    from rich.console import Console

    render_rich(groups, inputs, meta, all_metrics, files, console=Console(file=stream))
