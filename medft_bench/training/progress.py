"""Progress of a cell's training: the engine reports an :class:`EpochEvent` after every epoch and never prints.

:class:`EpochProgress` shows the events as a live rich line on a terminal (stage, epoch/epochs, loss,
validation metric, images/s, time left), or as one plain line per epoch when the output is not a terminal
(CI logs); other code can follow the events with :func:`subscribe` (e.g. a grid runner forwarding them).
The mode: ``--progress`` / the engine's ``progress`` argument, else ``$MEDFT_PROGRESS``, else ``auto``.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType

from medft_bench.errors import MedftError

MODES = ("auto", "rich", "plain", "off")
PROGRESS_ENV = "MEDFT_PROGRESS"


@dataclass(frozen=True)
class EpochEvent:
    """One finished training epoch of a cell."""

    title: str  # the cell id (a tuned trial: with its learning rate)
    stage: str
    epoch: int  # 1-based, over every stage of the cell
    epochs: int  # the cell's epoch budget (early stopping may end it sooner)
    loss: float
    metric: str  # the validation metric that selects the checkpoint
    value: float
    images_per_s: float | None  # training images per second over this epoch (training and validation time)
    elapsed_s: float

    @property
    def left_s(self) -> float:
        """Time left at the pace so far, if every remaining epoch runs."""
        return self.elapsed_s / self.epoch * (self.epochs - self.epoch)

    def line(self) -> str:
        speed = f"  {self.images_per_s:,.0f} img/s" if self.images_per_s else ""
        return (f"{self.title}  {self.stage} epoch {self.epoch}/{self.epochs}  loss {self.loss:.4f}  "
                f"val {self.metric} {self.value:.4f}{speed}  {_clock(self.elapsed_s)} elapsed, "
                f"~{_clock(self.left_s)} left")


_LISTENERS: list[Callable[[EpochEvent], None]] = []


def subscribe(listener: Callable[[EpochEvent], None]) -> Callable[[], None]:
    """Call ``listener`` with every epoch event of this process; returns the function that unsubscribes it."""
    _LISTENERS.append(listener)
    return lambda: _LISTENERS.remove(listener) if listener in _LISTENERS else None


def resolve_mode(progress: bool | str | None) -> str:
    """``progress`` (True: rich, False: off, None: ``$MEDFT_PROGRESS`` or auto) as one of :data:`MODES`, with
    auto decided: rich when stderr is a terminal, plain otherwise."""
    if progress is True:
        mode = "rich"
    elif progress is False:
        mode = "off"
    else:
        mode = progress or os.environ.get(PROGRESS_ENV) or "auto"
    if mode not in MODES:
        raise MedftError(f"progress mode {mode!r}: use one of {', '.join(MODES)} (--progress, ${PROGRESS_ENV})")
    if mode == "auto":
        mode = "rich" if sys.stderr.isatty() else "plain"
    return mode


class EpochProgress:
    """Shows a cell's epochs (see the module doc); the engine calls :meth:`epoch` with each one's numbers."""

    def __init__(self, title: str, total_epochs: int, enabled: bool | str | None = None) -> None:
        self.mode = resolve_mode(enabled)
        if total_epochs <= 0 and self.mode == "rich":  # solved in closed form (a probe): no epoch to show
            self.mode = "off"
        self.title, self.total = title, max(1, total_epochs)
        self._progress = None
        self._task = None
        self._done = 0
        self._start = self._last = time.perf_counter()
        self._images = 0

    def __enter__(self) -> EpochProgress:
        self._start = self._last = time.perf_counter()
        if self.mode == "rich":
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
            from rich.table import Column

            # The cell id is long: it gives way first (an ellipsis), the numbers never do.
            self._progress = Progress(
                TextColumn("[bold]{task.description}", table_column=Column(no_wrap=True, overflow="ellipsis",
                                                                           ratio=1, min_width=12)),
                BarColumn(bar_width=10), MofNCompleteColumn(), TimeElapsedColumn(),
                TextColumn("{task.fields[info]}", table_column=Column(no_wrap=True)),
                console=Console(stderr=True), transient=False, expand=True,
            )
            self._progress.__enter__()
            self._task = self._progress.add_task(self.title, total=self.total, info="")
        return self

    def epoch(self, stage: str, loss: float, metric: str, value: float, images_seen: int) -> EpochEvent:
        """Report one finished epoch (``images_seen``: training images so far in this cell)."""
        now = time.perf_counter()
        self._done += 1
        new_images, self._images = images_seen - self._images, images_seen
        speed = new_images / (now - self._last) if now > self._last and new_images > 0 else None
        self._last = now
        event = EpochEvent(self.title, stage, self._done, max(self.total, self._done), loss, metric, value, speed,
                           now - self._start)
        if self._progress is not None:
            speed_text = f"  {speed:,.0f} img/s" if speed else ""
            self._progress.update(self._task, completed=self._done, info=(
                f"{stage}  loss {loss:.4f}  val {metric} {value:.4f}{speed_text}  ~{_clock(event.left_s)} left"))
        elif self.mode == "plain":
            print(event.line(), file=sys.stderr, flush=True)
        for listener in list(_LISTENERS):
            listener(event)
        return event

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None) -> None:
        if self._progress is not None:
            self._progress.__exit__(et, ev, tb)


def _clock(seconds: float) -> str:
    seconds = max(0, round(seconds))
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}" if seconds >= 3600 else \
        f"{seconds // 60}:{seconds % 60:02d}"
