"""File events from watchdog, turned into a "something changed" signal and
the set of paths they named.

The watcher is only a hint: the scan that follows is the truth, and it looks
at the paths the events named (and below them); a periodic full scan catches
what events may have missed. Events on the client's own state and temporary
files are ignored so that writing a downloaded file does not start another
round for nothing; so is a folder's own "modified" (its entries changed: the
events of those entries name them). One file of the client's state does wake
a round: the folder's settings (``.linesync/config.json``: a folder left out
or taken back in by ``linesync exclude``), so that a running ``sync --watch``
takes the change at once; a stat of it at each of the loop's checks catches
a change whose event was missed.
"""

from __future__ import annotations

import asyncio
import logging
import os
import unicodedata
import warnings
from pathlib import Path

from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer

from linesync.client.config import CONFIG_FILE
from linesync.client.localfs import STATE_DIR, TMP_PREFIX

log = logging.getLogger("linesync.client")


class _Handler(FileSystemEventHandler):
    def __init__(self, root: Path, loop: asyncio.AbstractEventLoop, watcher: FolderWatcher) -> None:
        self.root = str(root)
        self.loop = loop
        self.watcher = watcher

    def on_any_event(self, event: FileSystemEvent) -> None:
        if event.event_type in ("opened", "closed_no_write"):
            return
        if event.is_directory and event.event_type == "modified":
            return
        named: list[str] = []
        for raw in (event.src_path, getattr(event, "dest_path", "")):
            path = raw.decode() if isinstance(raw, bytes) else raw
            if not path or not (path == self.root or path.startswith(self.root + "/")):
                continue
            rel = path[len(self.root) :].lstrip("/")
            if rel == SETTINGS:
                self.loop.call_soon_threadsafe(self.watcher.note_settings)
                continue
            if rel.startswith(STATE_DIR) or rel.rsplit("/", 1)[-1].startswith(TMP_PREFIX):
                continue
            named.append(unicodedata.normalize("NFC", rel))
        if named:
            self.loop.call_soon_threadsafe(self.watcher.note, named)


SETTINGS = f"{STATE_DIR}/{CONFIG_FILE}"  # the folder's settings, relative to it


class FolderWatcher:
    """Sets ``dirty`` on a change (of the folder, or of its settings file);
    :meth:`take` gives the paths named since the last call (``""``: the
    folder itself)."""

    def __init__(self, root: Path, dirty: asyncio.Event) -> None:
        self.root = root
        self.dirty = dirty
        self.touched: set[str] = set()
        self._observer: Observer | None = None  # type: ignore[valid-type]
        self._settings = self._settings_stat()

    def note(self, named: list[str]) -> None:
        """(On the event loop.) Paths an event named."""
        self.touched.update(named)
        self.dirty.set()

    def note_settings(self) -> None:
        """(On the event loop.) An event named the settings file: a round reads
        them again (the folders left out, at its start)."""
        self._settings = self._settings_stat()
        self.dirty.set()

    def settings_changed(self) -> bool:
        """Whether the settings file changed since this was last asked (or an
        event named it): one stat, for a change whose event was missed."""
        now = self._settings_stat()
        changed, self._settings = now != self._settings, now
        return changed

    def _settings_stat(self) -> tuple[int, int, int, int] | None:
        try:
            s = os.stat(self.root / SETTINGS)
        except OSError:
            return None
        return (s.st_ino, s.st_size, s.st_mtime_ns, s.st_ctime_ns)

    def take(self) -> set[str]:
        out, self.touched = self.touched, set()
        return out

    def alive(self) -> bool:
        """Whether events still arrive: watchdog's thread can die (an error in
        it), and then only a full scan sees what changed."""
        return self._observer is not None and self._observer.is_alive()

    def restart(self) -> None:
        log.warning("the file watcher stopped; restarting it (the folder is scanned whole)")
        self.stop()
        self.start()

    def start(self) -> None:
        # A folder moved into a folder made just before is watched twice over
        # (inotify gives the moved folder's watch back): watchdog warns, harmlessly.
        warnings.filterwarnings(
            "ignore", message="Callback with id", category=RuntimeWarning, module="watchdog"
        )
        observer = Observer()
        observer.schedule(_Handler(self.root, asyncio.get_running_loop(), self),
                          str(self.root), recursive=True)  # fmt: skip
        observer.daemon = True
        observer.start()
        self._observer = observer

    def stop(self) -> None:
        if self._observer is not None:
            self._observer.stop()
            self._observer.join(timeout=5)
            self._observer = None
