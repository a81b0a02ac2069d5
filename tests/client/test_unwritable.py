"""An entry of the server this folder's file system cannot hold (a path or a
name too long, a name it refuses, a symlink where it has none) is skipped and
reported once, never stops the rest of the sync, is never read as a local
deletion, and is tried again when the server's entry changes (finding 6 of the
audit: one such symlink made every sync fail with "did not settle in 8 rounds")."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import io
import os
from collections.abc import Iterable
from pathlib import Path

from linesync.cli.main import main as cli_main
from linesync.client.api import Client
from linesync.client.config import INDEX_FILE
from linesync.client.engine import Engine, SyncResult
from linesync.client.index import Index
from linesync.client.localfs import STATE_DIR, LocalFS
from linesync.client.model import Stat
from linesync.client.remote import Remote
from linesync.protocol.schemas import CommitOp, Kind
from tests.client.conftest import files
from tests.support.api import dir_op, put_file
from tests.support.server import ServerProc


def _server_live(server: ServerProc) -> dict[str, Kind]:
    async def go() -> dict[str, Kind]:
        out: dict[str, Kind] = {}
        async with Remote(server.url, server.token) as r:
            cursor = None
            for _ in range(100):
                resp = await r.list_changes(1, cursor)
                out.update((e.path, e.kind) for e in resp.entries)
                cursor = resp.cursor
                if not resp.more:
                    break
        return {p: k for p, k in out.items() if k is not Kind.TOMBSTONE}

    return asyncio.run(go())


def _commit(server: ServerProc, ops: list[CommitOp]) -> list[int]:
    async def go() -> list[int]:
        async with Remote(server.url, server.token) as r:
            res = await r.commit(1, ops)
        assert all(x.status == "ok" for x in res), res
        return [x.jid or 0 for x in res]

    return asyncio.run(go())


def _put(server: ServerProc, path: str, data: bytes, base: int = 0) -> int:
    async def go() -> int:
        async with Remote(server.url, server.token) as r:
            return await put_file(r, 1, path, data, base)

    return asyncio.run(go())


def _status(folder: Path) -> str:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert cli_main(["status", str(folder)]) == 0
    return out.getvalue()


def test_a_path_too_long_for_this_disk_is_skipped_reported_once_and_never_deleted(
    pair: tuple[Client, Client], server: ServerProc
) -> None:
    a, b = pair
    (a.folder / "notes.md").write_text("one\n")
    assert a.sync_once().converged and b.sync_once().converged
    # 16 folders of 250 bytes and a file: 4,091 bytes, a valid linesync path
    # (at most 4,096), but under B's folder longer than Linux's PATH_MAX.
    dirs = ["/".join([c * 250 for c in "abcdefghijklmnop"][: i + 1]) for i in range(16)]
    deep = dirs[-1] + "/" + "f" * 72 + ".md"
    assert len(deep.encode()) == 4091
    assert len(str(b.folder / deep)) >= 4096
    _commit(server, [dir_op(d) for d in dirs])
    jid = _put(server, deep, b"planted by another member\n")
    (a.folder / "notes.md").write_text("two\n")  # ...and life goes on
    assert a.sync_once().converged

    r = b.sync_once()
    assert r.converged, r  # everything else synced: no "did not settle"
    assert r.rounds <= 3, r
    assert (b.folder / "notes.md").read_text() == "two\n"
    said = [p for p in r.problems if deep in p]
    assert len(said) == 1 and "cannot hold it (File name too long)" in said[0], r.problems
    assert r.skipped == {deep: "File name too long"}
    # Reported once: the next syncs are quiet about it, and delete nothing.
    for _ in range(2):
        r = b.sync_once()
        assert r.converged and r.problems == [] and r.deleted_remote == 0, r
        assert r.skipped == {deep: "File name too long"}
    assert _server_live(server)[deep] is Kind.FILE
    assert "skipped " + deep in _status(b.folder)
    assert "File name too long" in _status(b.folder)
    # B's own changes still go up.
    (b.folder / "from-b.md").write_text("b\n")
    r = b.sync_once()
    assert r.converged and r.uploaded == 1 and r.deleted_remote == 0
    assert a.sync_once().converged and (a.folder / "from-b.md").read_text() == "b\n"

    # The server's entry changes: B tries again (and reports it again, since
    # this disk still cannot hold it).
    _put(server, deep, b"changed\n", base=jid)
    r = b.sync_once()
    assert r.converged and [p for p in r.problems if deep in p], r
    assert _server_live(server)[deep] is Kind.FILE

    # It goes: the skip goes with it, and the status is clean.
    async def remove() -> None:
        async with Remote(server.url, server.token) as rem:
            cur = {e.path: e.jid for e in (await rem.list_changes(1)).entries}
            await rem.commit(1, [CommitOp(path=deep, kind=Kind.TOMBSTONE, base_jid=cur[deep])])

    asyncio.run(remove())
    r = b.sync_once()
    assert r.converged and r.skipped == {}, r
    assert "skipped" not in _status(b.folder)


class _RefusingFS(LocalFS):
    """A file system that refuses some names (as FAT refuses ``:``, or a
    filesystem with another encoding refuses a name) and has no symlinks."""

    refuse = errno.EILSEQ

    def write_file(
        self, path: str, pieces: Iterable[bytes], *, mtime_ns: int, exec: bool,
        expect: Stat | None, sync_dir: bool = True,
    ) -> Stat:  # fmt: skip
        if ":" in path:
            raise OSError(self.refuse, os.strerror(self.refuse), path)
        return super().write_file(
            path, pieces, mtime_ns=mtime_ns, exec=exec, expect=expect, sync_dir=sync_dir
        )

    def put_in_place(self, tmp: Path, path: str, expect: Stat | None) -> Stat:
        if ":" in path:  # the temporary name was fine; the name it goes to is not
            self.discard(tmp)
            raise OSError(self.refuse, os.strerror(self.refuse), path)
        return super().put_in_place(tmp, path, expect)

    def symlink(self, path: str, target: str, expect: Stat | None) -> Stat:
        raise OSError(errno.EPERM, os.strerror(errno.EPERM), path)

    def mkdir(self, path: str) -> None:
        if path.endswith("?"):
            raise OSError(errno.EINVAL, os.strerror(errno.EINVAL), path)
        super().mkdir(path)


def _sync(client: Client, fs: LocalFS | None = None) -> SyncResult:
    async def go() -> SyncResult:
        index = Index.open(client.folder / STATE_DIR / INDEX_FILE)
        try:
            async with Remote(client.config.server, client.config.token) as remote:
                engine = Engine(client.folder, client.config, remote, index, fs=fs)
                return await engine.sync_once()
        finally:
            index.close()

    return asyncio.run(go())


def test_names_and_symlinks_this_file_system_refuses_are_skipped_until_they_change(
    pair: tuple[Client, Client], server: ServerProc
) -> None:
    a, b = pair
    (a.folder / "link").symlink_to("notes.md")
    (a.folder / "notes.md").write_text("notes\n")
    assert a.sync_once().converged
    assert _sync(b).converged  # B gets the symlink while its disk still takes them
    assert os.readlink(b.folder / "link") == "notes.md"
    (a.folder / "12:30 meeting.md").write_text("agenda\n")
    (a.folder / "what?").mkdir()
    (a.folder / "what?/inside.md").write_text("inside\n")
    (a.folder / "link").unlink()
    (a.folder / "link").symlink_to("elsewhere.md")  # B cannot make the new one
    (a.folder / "plain.md").write_text("plain\n")
    assert a.sync_once().converged

    fs = _RefusingFS(b.folder)
    r = _sync(b, fs)
    assert r.converged, r
    assert (b.folder / "plain.md").read_text() == "plain\n"
    assert set(r.skipped) == {"12:30 meeting.md", "what?", "link"}, r
    assert sum("cannot hold it" in p for p in r.problems) == 3, r.problems
    # The old symlink stays as it was: nothing is deleted, here or there.
    assert os.readlink(b.folder / "link") == "notes.md"
    assert not (b.folder / "what?").exists()
    r = _sync(b, _RefusingFS(b.folder))
    assert r.converged and r.problems == [] and r.deleted_remote == 0, r
    live = _server_live(server)
    assert {"12:30 meeting.md", "what?", "what?/inside.md", "link"} <= set(live)

    # The server's entries change; this time the disk takes them.
    (a.folder / "12:30 meeting.md").write_text("agenda, edited\n")
    (a.folder / "link").unlink()
    (a.folder / "link").symlink_to("plain.md")
    assert a.sync_once().converged
    r = _sync(b)
    assert r.converged, r
    assert set(r.skipped) == {"what?"}  # unchanged there: still skipped
    assert (b.folder / "12:30 meeting.md").read_text() == "agenda, edited\n"
    assert os.readlink(b.folder / "link") == "plain.md"
    assert "what?/inside.md" not in files(b.folder)
