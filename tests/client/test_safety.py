"""The client's safety rails: nothing is deleted because of an error, a
vanished folder, a damaged index or a mass deletion."""

from __future__ import annotations

import asyncio
import os
import shutil
from pathlib import Path

import pytest

from linesync.client.api import Client
from linesync.client.engine import MassDelete
from linesync.client.localfs import FolderBusy, FolderMissing
from linesync.client.remote import Remote, RemoteUnavailable
from tests.client.conftest import files
from tests.support.server import ServerProc


def _fill(folder: Path, n: int) -> None:
    (folder / "docs").mkdir()
    for i in range(n):
        (folder / f"docs/f{i:02d}.md").write_text(f"file {i}\n")


def test_mass_delete_is_refused_without_confirmation(pair: tuple[Client, Client]) -> None:
    a, b = pair
    _fill(a.folder, 20)
    assert a.sync_once().converged and b.sync_once().converged
    for p in (a.folder / "docs").glob("f1*.md"):
        p.unlink()
    for p in (a.folder / "docs").glob("f0[0-5].md"):
        p.unlink()
    with pytest.raises(MassDelete):
        a.sync_once()
    assert len(files(b.folder)) == 20 and b.sync_once().converged
    assert len(files(b.folder)) == 20  # nothing was deleted on the server
    r = a.sync_once(allow_mass_delete=True)
    assert r.converged and r.deleted_remote == 16
    b.sync_once()
    assert sorted(files(b.folder)) == [f"docs/f{i:02d}.md" for i in range(6, 10)]


def test_a_missing_folder_stops_sync_and_deletes_nothing(pair: tuple[Client, Client]) -> None:
    a, b = pair
    _fill(a.folder, 3)
    a.sync_once()
    b.sync_once()
    moved = a.folder.with_name("A-unmounted")
    a.folder.rename(moved)
    with pytest.raises(FileNotFoundError):
        Client(a.folder).sync_once()
    # The folder exists again but empty (a mount point without its disk).
    a.folder.mkdir()
    shutil.copytree(moved / ".linesync", a.folder / ".linesync")
    shutil.rmtree(a.folder / ".linesync")
    with pytest.raises((FileNotFoundError, FolderMissing)):
        Client(a.folder).sync_once()
    assert len(files(b.folder)) == 3 and b.sync_once().converged and len(files(b.folder)) == 3


def test_a_deleted_index_is_rebuilt_without_deleting_or_reuploading(
    pair: tuple[Client, Client], server: ServerProc
) -> None:
    a, b = pair
    _fill(a.folder, 5)
    a.sync_once()
    b.sync_once()
    (b.folder / "docs/f00.md").write_text("edited while the index was lost\n")
    for name in os.listdir(b.folder / ".linesync"):
        if name.startswith("index"):
            os.unlink(b.folder / ".linesync" / name)
    r = b.sync_once()
    assert r.converged, r.problems
    assert r.deleted_local == 0 and r.deleted_remote == 0
    a.sync_once()
    got = files(a.folder)
    assert len(got) == 5 or any("conflict" in p for p in got)
    assert b"edited while the index was lost\n" in got.values()


def test_a_corrupt_index_is_rebuilt(pair: tuple[Client, Client]) -> None:
    a, b = pair
    _fill(a.folder, 3)
    a.sync_once()
    index = a.folder / ".linesync" / "index.sqlite3"
    index.write_bytes(b"this is not a database" * 100)
    for suffix in ("-wal", "-shm"):
        index.with_name(index.name + suffix).unlink(missing_ok=True)
    r = a.sync_once()
    assert r.converged and r.deleted_local == 0 and r.deleted_remote == 0
    b.sync_once()
    assert files(a.folder) == files(b.folder) and len(files(b.folder)) == 3


def test_an_unreachable_server_deletes_nothing(
    pair: tuple[Client, Client], server: ServerProc
) -> None:
    a, _ = pair
    _fill(a.folder, 3)
    a.sync_once()
    server.stop()
    (a.folder / "docs/f00.md").unlink()
    with pytest.raises(RemoteUnavailable):
        a.sync_once()
    assert len(files(a.folder)) == 2
    server.start()
    a.config = a.config.__class__(**{**a.config.__dict__, "server": server.url})
    a.config.save(a.folder)
    r = a.sync_once()
    assert r.converged and r.deleted_remote == 1


def test_a_file_emptied_without_a_new_mtime_is_not_synced(pair: tuple[Client, Client]) -> None:
    a, b = pair
    (a.folder / "precious.md").write_text("important\n")
    a.sync_once()
    b.sync_once()
    st = (a.folder / "precious.md").stat()
    (a.folder / "precious.md").write_bytes(b"")
    os.utime(a.folder / "precious.md", ns=(st.st_atime_ns, st.st_mtime_ns))
    r = a.sync_once()
    assert any("emptied" in p for p in r.problems)
    b.sync_once()
    assert (b.folder / "precious.md").read_text() == "important\n"


def test_a_revoked_token_stops_at_once(pair: tuple[Client, Client], server: ServerProc) -> None:
    a, _ = pair
    (a.folder / "x.md").write_text("x\n")
    assert a.sync_once().converged
    server.admin("token", "revoke", "admin", "--device", "alpha")
    (a.folder / "y.md").write_text("y\n")
    from linesync.protocol.errors import LinesyncError

    with pytest.raises(LinesyncError) as err:
        a.sync_once()
    assert err.value.code.value == "unauthenticated"
    assert sorted(files(a.folder)) == ["x.md", "y.md"]

    async def server_has() -> list[str]:
        async with Remote(server.url, server.token) as r:
            return [e.path for e in (await r.list_changes(1)).entries if e.kind.value == "file"]

    assert asyncio.run(server_has()) == ["x.md"]


def test_two_processes_never_sync_one_folder_at_once(pair: tuple[Client, Client]) -> None:
    """A second sync of a folder that is being synced stops with a clear error
    (and the CLI with exit code 4); once the first is done, it goes on."""
    import fcntl
    import subprocess
    import sys

    a, _ = pair
    (a.folder / "note.md").write_text("hello\n")
    fd = os.open(a.folder / ".linesync" / "lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # "another process" syncs
        with pytest.raises(FolderBusy, match="another linesync process is syncing"):
            a.sync_once()
        cli = subprocess.run(
            [sys.executable, "-m", "linesync", "sync", str(a.folder), "--quiet"],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert cli.returncode == 4, cli
        assert "another linesync process is syncing" in cli.stderr
    finally:
        os.close(fd)
    r = a.sync_once()
    assert r.converged and r.uploaded == 1


def test_temporary_files_of_a_dead_process_are_removed(pair: tuple[Client, Client]) -> None:
    a, b = pair
    (a.folder / "sub").mkdir()
    (a.folder / "sub/keep.md").write_text("kept\n")
    # What a client killed mid-download leaves: partial bytes under our temp prefix.
    (a.folder / ".linesync-tmp-0123456789ab").write_bytes(b"partial")
    (a.folder / "sub/.linesync-tmp-ba9876543210").write_bytes(b"partial too")
    r = a.sync_once()
    assert r.converged and r.uploaded == 1  # keep.md (folders are not counted), no leftover
    assert files(a.folder) == {"sub/keep.md": b"kept\n"}
    assert b.sync_once().converged and files(b.folder) == {"sub/keep.md": b"kept\n"}
