"""File events from watchdog, turned into a "something changed" signal.

The watcher is only a hint: the scan that follows is the truth. Events on the
client's own state and temporary files are ignored so that writing a
downloaded file does not start another round for nothing.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer

from linesync.client.localfs import STATE_DIR, TMP_PREFIX


class _Handler(FileSystemEventHandler):
    def __init__(self, root: Path, loop: asyncio.AbstractEventLoop, dirty: asyncio.Event) -> None:
        self.root = str(root)
        self.loop = loop
        self.dirty = dirty

    def on_any_event(self, event: FileSystemEvent) -> None:
        if event.event_type in ("opened", "closed_no_write"):
            return
        for raw in (event.src_path, getattr(event, "dest_path", "")):
            path = raw.decode() if isinstance(raw, bytes) else raw
            if not path:
                continue
            rel = path[len(self.root) :].lstrip("/")
            if rel.startswith(STATE_DIR) or rel.rsplit("/", 1)[-1].startswith(TMP_PREFIX):
                continue
            self.loop.call_soon_threadsafe(self.dirty.set)
            return


class FolderWatcher:
    def __init__(self, root: Path, dirty: asyncio.Event) -> None:
        self.root = root
        self.dirty = dirty
        self._observer: Observer | None = None  # type: ignore[valid-type]

    def start(self) -> None:
        observer = Observer()
        observer.schedule(_Handler(self.root, asyncio.get_running_loop(), self.dirty),
                          str(self.root), recursive=True)  # fmt: skip
        observer.daemon = True
        observer.start()
        self._observer = observer

    def stop(self) -> None:
        if self._observer is not None:
            self._observer.stop()
            self._observer.join(timeout=5)
            self._observer = None
