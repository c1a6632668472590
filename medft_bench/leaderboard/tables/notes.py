"""Tables about the inputs and the published numbers: files skipped, records counted once, references."""

from __future__ import annotations

from medft_bench.leaderboard import references
from medft_bench.leaderboard.load import Inputs
from medft_bench.leaderboard.tables.model import Table, cell, left, right


def problems_table(inputs: Inputs) -> Table | None:
    rows = [[cell(p.path), cell(p.reason, "warn")] for p in inputs.problems]
    if not rows:
        return None
    return Table("problems", "Files skipped (not valid records)", [left("file", key=True), left("reason")], rows,
                 caption=f"{len(rows)} problem{'s' if len(rows) != 1 else ''}; none of these enter any table.")


def notes_table(inputs: Inputs) -> Table | None:
    rows = [[cell(n.kind), cell(n.cell_id), cell(n.dropped), cell(n.kept)] for n in inputs.notes]
    if not rows:
        return None
    return Table("duplicates", "Records counted once",
                 [left("kind", key=True), left("cell", key=True), left("not counted"), left("counted")], rows,
                 caption="duplicate: same config_hash (ok before diverged before failed, then the latest); "
                         "superseded: same cell and group, another configuration (the latest finished counts).")


def reference_tables(datasets: set[str] | None = None) -> list[Table]:
    out = []
    for src in references.sources(datasets):
        cols = src["columns"]
        rows = [[cell(references.format_value(r.get(k), src["decimals"])) for k, _ in cols] for r in src["rows"]]
        names = ("dataset", "model", "backbone", "scheme", "strategy")
        columns = [left(h, key=k in names) if k in names else right(h) for k, h in cols]
        out.append(Table(f"ref-{src['id']}", f"{src['paper']} — {src['table']}", columns, rows,
                         caption=f"Protocol: {src['protocol']}"))
    return out
