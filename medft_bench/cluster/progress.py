"""One progress line for a cluster run: cells done / running / queued / failed, and time left; and
:func:`clock`, the one way the cluster's progress lines (Ray's, a Slurm task's log) write a duration."""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from typing import TextIO


def clock(seconds: float) -> str:
    """``12.3s``, ``14m05s``, ``5h31m``: tenths under a minute, whole seconds under an hour, then minutes."""
    if seconds < 59.95:
        return f"{max(0.0, seconds):.1f}s"
    whole = int(round(seconds))
    h, rest = divmod(whole, 3600)
    m, s = divmod(rest, 60)
    return f"{h}h{m:02d}m" if h else f"{m}m{s:02d}s"


@dataclass
class Progress:
    total: int
    engine: str
    stream: TextIO = field(default_factory=lambda: sys.stderr)
    every_s: float = 5.0
    done: int = 0  # records written by this run
    reused: int = 0
    skipped: int = 0
    failed: int = 0  # no record, or a record with status failed
    running: int = 0
    cancelled: int = 0  # interrupted or out of time: not run, left for the next run
    cell_seconds: list[float] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)
    _last: float = 0.0
    _last_line: str = ""

    @property
    def queued(self) -> int:
        return self.total - self.done - self.reused - self.skipped - self.failed - self.running - self.cancelled

    def time_left(self, slots: int) -> float | None:
        """Mean seconds of the cells computed so far x cells left / cells at a time; None before the first."""
        if not self.cell_seconds:
            return None
        mean = sum(self.cell_seconds) / len(self.cell_seconds)
        return mean * (self.queued + self.running) / max(1, slots)

    def line(self, slots: int) -> str:
        left = self.time_left(slots)
        elapsed = clock(time.monotonic() - self.started)
        return (f"[{self.engine}] done {self.done} (+{self.reused} reused, {self.skipped} skipped) · running "
                f"{self.running} · queued {self.queued} · failed {self.failed} · {elapsed} elapsed · left "
                f"{'?' if left is None else '~' + clock(left)}"
                + (f" · cancelled {self.cancelled}" if self.cancelled else ""))

    def show(self, slots: int, *, force: bool = False) -> None:
        """Print the line when it changed and ``every_s`` passed (always with ``force``)."""
        now = time.monotonic()
        text = self.line(slots)
        body = text.split(" · ")[:4]
        if force and text == self._last_line:
            return
        if force or (body != self._last_line.split(" · ")[:4] and now - self._last >= self.every_s) \
                or now - self._last >= 12 * self.every_s:
            print(text, file=self.stream, flush=True)
            self._last, self._last_line = now, text
