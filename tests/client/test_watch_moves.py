"""A watcher sends a folder move as a move: no content goes up again, however
the events arrive (the destination's parent made just before, files carried)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest

from linesync.client.api import Client
from linesync.client.remote import Remote
from tests.support.watch import wait_until, watching


@pytest.fixture
def uploaded(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Content the clients send (chunk uploads, inline chunks, new paths)."""
    seen: list[str] = []
    lock = threading.Lock()
    upload, commit_full = Remote.upload, Remote.commit_full

    async def counting_upload(self: Remote, ns: int, frames: Any) -> Any:
        with lock:
            seen.extend(f"chunk {f.chunk_id.hex()[:8]}" for f in frames)
        return await upload(self, ns, frames)

    async def counting_commit(self: Remote, ns: int, ops: Any, chunks: Any = (), **kw: Any) -> Any:
        with lock:
            seen.extend(f"inline chunk {len(c.data)} B" for c in chunks)
            seen.extend(f"new {op.path}" for op in ops if op.base_jid == 0 and not op.move_from)
        return await commit_full(self, ns, ops, chunks, **kw)

    monkeypatch.setattr(Remote, "upload", counting_upload)
    monkeypatch.setattr(Remote, "commit_full", counting_commit)
    yield seen


def _tree(root: Any, n: int) -> dict[str, bytes]:
    files = {
        f"notes/sub{i % 4}/n{i:03}.md": (f"# note {i}\n" + "line\n" * (40 + i)).encode()
        for i in range(n)
    }
    for rel, data in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    return files


@pytest.mark.parametrize("into_new_parent", [False, True])
def test_a_watched_folder_move_uploads_no_content(
    pair: tuple[Client, Client], uploaded: list[str], into_new_parent: bool
) -> None:
    a, b = pair
    files = _tree(a.folder, 100)
    assert a.sync_once().converged and b.sync_once().converged
    dst = "archive/2026/notes" if into_new_parent else "notes-moved"
    with watching(a, b) as (wa, wb):
        assert wait_until(lambda: len(wa.snapshot()) >= 1 and len(wb.snapshot()) >= 1, 20)
        uploaded.clear()
        (a.folder / dst).parent.mkdir(parents=True, exist_ok=True)
        (a.folder / "notes").rename(a.folder / dst)
        moved = {dst + r[len("notes") :]: d for r, d in files.items()}
        assert wait_until(
            lambda: (
                all((b.folder / r).is_file() for r in moved) and not (b.folder / "notes").exists()
            ),
            30,
        )
    assert {r: (b.folder / r).read_bytes() for r in moved} == moved
    # Only the new parent folders are new paths: every file went as part of the move.
    parents = {"new archive", "new archive/2026"} if into_new_parent else set()
    assert set(uploaded) <= parents, uploaded


def test_a_watcher_whose_event_thread_dies_is_restarted_and_catches_up(
    pair: tuple[Client, Client], monkeypatch: pytest.MonkeyPatch
) -> None:
    """An error inside watchdog's thread ends it; the loop notices, starts a
    new one and scans the whole folder, so the change made meanwhile goes up."""
    import linesync.client.api as api
    from linesync.client.watcher import FolderWatcher

    monkeypatch.setattr(api, "WATCHER_CHECK", 0.3)
    started: list[FolderWatcher] = []
    start = FolderWatcher.start

    def recording_start(self: FolderWatcher) -> None:
        start(self)
        started.append(self)

    monkeypatch.setattr(FolderWatcher, "start", recording_start)
    a, b = pair
    (a.folder / "x.md").write_bytes(b"one\n")
    assert a.sync_once().converged and b.sync_once().converged
    with watching(a) as (wa,):
        assert wait_until(lambda: len(wa.snapshot()) >= 1 and len(started) == 1, 20)
        observer = started[0]._observer
        assert observer is not None
        observer.stop()  # the event thread ends, as it does on an error inside it
        observer.join(5)
        (a.folder / "x.md").write_bytes(b"two\n")
        assert wait_until(lambda: len(started) == 2, 10)
        assert wait_until(
            lambda: b.sync_once().converged and (b.folder / "x.md").read_bytes() == b"two\n", 20
        )
