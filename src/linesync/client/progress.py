"""Progress bars for long transfers: bytes and files, down and up, on stderr.

The engine reports ``progress(what, done, total)``: ``download`` and
``upload`` count bytes, ``download files`` and ``upload files`` count files
(totals are per round). :class:`Bars` turns those into rich progress bars,
but only once a round moves more than a small threshold (a one-line edit
shows nothing), and only where asked: by default when stderr is a terminal;
``--progress`` forces them, ``--no-progress`` turns them off.
"""

from __future__ import annotations

from rich.console import Console
from rich.filesize import decimal
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeRemainingColumn

THRESHOLD_BYTES = 4 * 2**20  # a round moving less than this shows nothing ...
THRESHOLD_FILES = 100  # ... unless it moves this many files
DIRECTIONS = ("download", "upload")


def console_for(force: bool | None) -> Console | None:
    """The console to draw on (stderr), or None for no bars: ``force`` True
    draws even where stderr is not a terminal, False never, None when it is."""
    if force is False:
        return None
    console = Console(stderr=True, force_terminal=True if force else None)
    return console if console.is_terminal else None


class Bars:
    """A ``progress`` callback for the engine that draws bars on ``console``."""

    def __init__(
        self,
        console: Console,
        threshold_bytes: int = THRESHOLD_BYTES,
        threshold_files: int = THRESHOLD_FILES,
    ) -> None:
        self.console = console
        self.threshold_bytes = threshold_bytes
        self.threshold_files = threshold_files
        self.progress: Progress | None = None
        self.tasks: dict[str, TaskID] = {}
        # Per direction: [bytes done, bytes total, files done, files total].
        self.seen: dict[str, list[int]] = {d: [0, 0, 0, 0] for d in DIRECTIONS}
        self.closed = False

    def __call__(self, what: str, done: int, total: int) -> None:
        if self.closed:
            return
        direction, _, unit = what.partition(" ")
        if direction not in self.seen:
            return
        row = self.seen[direction]
        if unit == "files":
            row[2], row[3] = done, total
        else:
            row[0], row[1] = done, total
        if self.progress is None:
            if row[1] < self.threshold_bytes and row[3] < self.threshold_files:
                return
            self.progress = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                TextColumn("{task.fields[amount]}"),
                TimeRemainingColumn(),
                console=self.console,
                transient=False,
            )
            self.progress.start()
        self._draw(direction)

    def _draw(self, direction: str) -> None:
        """One bar per direction: by bytes when the engine said how many, else
        by files; the text beside it says both."""
        assert self.progress is not None
        done, total, files, files_total = self.seen[direction]
        amount = f"{files}/{files_total} files" if files_total else ""
        if total:
            amount += f"{', ' if amount else ''}{decimal(done)} of {decimal(total)}"
        desc = "down" if direction == "download" else "up"
        measure = (done, total) if total else (files, files_total)
        task = self.tasks.get(direction)
        if task is None:
            task = self.tasks[direction] = self.progress.add_task(desc, total=1, amount="")
        self.progress.update(
            task, completed=measure[0], total=max(measure[1], measure[0], 1), amount=amount
        )

    def close(self) -> None:
        """Stop drawing (the bars drawn so far stay on the screen)."""
        self.closed = True
        if self.progress is not None:
            self.progress.stop()
            self.progress = None
