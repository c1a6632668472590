"""The leaderboard: result records in, Markdown pages, an HTML page, terminal tables, PNG plots, CSV and
``summary.json`` out.

``python -m medft_bench.leaderboard [RESULTS_DIR ...]``; see ``docs/leaderboard.md``. Modules, in the order
the data flows: :mod:`.load` (inputs, validation, deduplication) -> :mod:`.aggregate` (groups, rows over
seeds, cases, ranks) with :mod:`.stats`, :mod:`.claims` and :mod:`.recommend` -> :mod:`.tables`
(display-neutral tables) -> :mod:`.render_markdown`, :mod:`.render_html`, :mod:`.render_rich` (fitted to the
terminal), :mod:`.plots`, :mod:`.summary`, :mod:`.export` (CSV); :mod:`.publish` runs it all.
:mod:`.compare` sets two result sets side by side.

Nothing is imported here: ``python -m medft_bench.leaderboard`` imports this package before its ``__main__``,
which says how to run it when the dependencies are missing (:mod:`medft_bench.install`) rather than failing here.
"""
