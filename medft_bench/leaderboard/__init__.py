"""The leaderboard: result records in, Markdown pages, terminal tables, PNG plots and ``summary.json`` out.

``python -m medft_bench.leaderboard [RESULTS_DIR ...]``; see ``docs/leaderboard.md``. Modules, in the order
the data flows: :mod:`.load` (inputs, validation, deduplication) -> :mod:`.aggregate` (groups, rows over
seeds, cases, ranks) with :mod:`.stats` and :mod:`.claims` -> :mod:`.tables` (display-neutral tables) ->
:mod:`.render_markdown`, :mod:`.render_rich`, :mod:`.plots`, :mod:`.summary`; :mod:`.publish` runs it all.
"""

from medft_bench.leaderboard.publish import NoRecordsError, Published, publish

__all__ = ["NoRecordsError", "Published", "publish"]
