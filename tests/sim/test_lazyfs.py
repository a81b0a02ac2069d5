"""The power-loss file system (tests/support/lazyfs.py): what survives a cut,
and what does not. Then the durability of `LocalFS` and SQLite on it."""

from __future__ import annotations

import asyncio
import errno
import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from linesync.client.index import Index
from linesync.client.localfs import LocalFS
from linesync.server.stores.sqlite import SqliteStore
from tests.support.lazyfs import LazyMount, fsync_dir, fsync_file

T = 1_700_000_000 * 10**9


@pytest.fixture
def disk(power_where: Path) -> Iterator[LazyMount]:
    mount = LazyMount(power_where / "backing", power_where / "mnt")
    mount.start()
    try:
        yield mount
    finally:
        mount.stop()


def reboot(disk: LazyMount) -> Path:
    disk.cut()
    disk.start()
    return disk.mountpoint


def test_only_what_was_fsynced_survives(disk: LazyMount) -> None:
    mnt = disk.mountpoint
    (mnt / "kept").write_bytes(b"kept")
    fsync_file(mnt / "kept")
    fsync_dir(mnt)
    (mnt / "kept").write_bytes(b"kept, then rewritten")  # not fsynced
    (mnt / "named").write_bytes(b"bytes never fsynced")
    fsync_dir(mnt)  # the name is durable, the bytes are not
    (mnt / "dir").mkdir()
    fsync_dir(mnt)
    (mnt / "dir" / "inside").write_bytes(b"x")
    fsync_file(mnt / "dir" / "inside")  # its name is in dir, never fsynced
    (mnt / "unnamed").write_bytes(b"bytes fsynced, name not")
    fsync_file(mnt / "unnamed")

    mnt = reboot(disk)
    assert sorted(os.listdir(mnt)) == ["dir", "kept", "named"]
    assert (mnt / "kept").read_bytes() == b"kept"
    assert (mnt / "named").read_bytes() == b""
    assert os.listdir(mnt / "dir") == []


def test_a_rename_is_durable_with_its_directory(disk: LazyMount) -> None:
    mnt = disk.mountpoint
    for name in ("a", "b", "c"):
        (mnt / name).mkdir()
        (mnt / name / "f").write_bytes(name.encode())
        fsync_file(mnt / name / "f")
        fsync_dir(mnt / name)
    fsync_dir(mnt)
    os.rename(mnt / "a" / "f", mnt / "a" / "g")  # never made durable
    os.rename(mnt / "b" / "f", mnt / "c" / "h")
    fsync_dir(mnt / "c")  # the new name is durable, the old one's removal is not

    mnt = reboot(disk)
    assert os.listdir(mnt / "a") == ["f"]
    assert os.listdir(mnt / "b") == ["f"]
    assert sorted(os.listdir(mnt / "c")) == ["f", "h"]
    assert (mnt / "c" / "h").read_bytes() == (mnt / "b" / "f").read_bytes() == b"b"


def test_times_modes_and_inodes_are_durable_with_the_file(disk: LazyMount) -> None:
    mnt = disk.mountpoint
    p = mnt / "f"
    p.write_bytes(b"data")
    os.utime(p, ns=(T, T))
    os.chmod(p, 0o755)
    fsync_file(p)
    fsync_dir(mnt)
    ino = os.stat(p).st_ino
    os.utime(p, ns=(T + 1, T + 1))  # not fsynced
    os.chmod(p, 0o644)

    s = os.stat(reboot(disk) / "f")
    assert (s.st_mtime_ns, s.st_mode & 0o777, s.st_ino) == (T, 0o755, ino)


def test_handles_from_before_a_cut_never_work_again(disk: LazyMount) -> None:
    """The processes of a machine that lost power, and what they leave behind,
    cannot write after the cut, even once the disk is back."""
    mnt = disk.mountpoint
    (mnt / "f").write_bytes(b"durable")
    fsync_file(mnt / "f")
    fsync_dir(mnt)
    fd = os.open(mnt / "f", os.O_RDWR)
    try:
        reboot(disk)
        with pytest.raises(OSError) as err:
            os.pwrite(fd, b"zombie", 0)
        assert err.value.errno in (errno.ENOTCONN, errno.EIO)
    finally:
        try:
            os.close(fd)
        except OSError:
            pass
    assert (mnt / "f").read_bytes() == b"durable"


def test_the_user_mode_makes_only_the_users_changes_durable(disk: LazyMount) -> None:
    """Inside `user()`, each change is durable at once, name by name; another
    pending name in the same directory stays pending."""
    mnt = disk.mountpoint
    (mnt / "pending").write_bytes(b"not the user's")
    with disk.user():
        (mnt / "d").mkdir()
        (mnt / "d" / "saved").write_bytes(b"the user's save")
        os.utime(mnt / "d" / "saved", ns=(T, T))
        (mnt / "moved").write_bytes(b"m")
        os.rename(mnt / "moved", mnt / "d" / "moved")

    mnt = reboot(disk)
    assert sorted(os.listdir(mnt)) == ["d"]
    assert sorted(os.listdir(mnt / "d")) == ["moved", "saved"]
    assert (mnt / "d" / "saved").read_bytes() == b"the user's save"
    assert os.stat(mnt / "d" / "saved").st_mtime_ns == T


@pytest.mark.parametrize("synchronous", ["FULL", "OFF"])
def test_sqlite_keeps_its_commits_only_with_fsync(disk: LazyMount, synchronous: str) -> None:
    """WAL with synchronous=FULL (as the server and the index use it) keeps
    every committed transaction through a cut; with synchronous=OFF (no
    fsync) the model loses them, as a real power cut would."""
    db = sqlite3.connect(disk.mountpoint / "db.sqlite3", isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute(f"PRAGMA synchronous={synchronous}")
    db.execute("CREATE TABLE t (x INTEGER)")
    for i in range(50):
        db.execute("INSERT INTO t VALUES (?)", (i,))
    mnt = reboot(disk)
    try:
        again = sqlite3.connect(mnt / "db.sqlite3", isolation_level=None)
        try:
            tables = again.execute("SELECT name FROM sqlite_master").fetchall()
            count = again.execute("SELECT COUNT(*) FROM t").fetchone()[0] if tables else 0
            assert again.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        finally:
            again.close()
    finally:
        try:
            db.close()
        except sqlite3.Error:
            pass
    assert count == (50 if synchronous == "FULL" else 0)


# -- LocalFS: what the engine writes is as durable as what it records ---------------


def test_a_written_file_keeps_its_time_through_a_power_cut(disk: LazyMount) -> None:
    """Regression: `write_file` set the file's time after its fsync, so after a
    cut a downloaded file had the time of the write, not the server's; the
    next scan then took it for a local edit and uploaded it again."""
    fs = LocalFS(disk.mountpoint)
    stat = fs.write_file("a.txt", [b"hello\n"], mtime_ns=T, exec=True, expect=None)
    assert stat.mtime_ns == T
    s = os.stat(reboot(disk) / "a.txt")
    assert (s.st_mtime_ns, bool(s.st_mode & 0o100)) == (T, True)
    assert (disk.mountpoint / "a.txt").read_bytes() == b"hello\n"


def test_a_touch_is_durable_before_it_returns(disk: LazyMount) -> None:
    """Regression: `touch` (a remote chmod or time change applied to the same
    bytes) made nothing durable: after a cut the old exec bit and time came
    back, the index had recorded the new ones, and the next scan uploaded the
    old ones as a local change, undoing the other device's chmod."""
    fs = LocalFS(disk.mountpoint)
    stat = fs.write_file("run.sh", [b"echo hi\n"], mtime_ns=T, exec=False, expect=None)
    fs.touch("run.sh", T + 5, True, stat)
    s = os.stat(reboot(disk) / "run.sh")
    assert (s.st_mtime_ns, bool(s.st_mode & 0o100)) == (T + 5, True)


def test_every_change_of_localfs_survives_a_power_cut(disk: LazyMount) -> None:
    """Each of LocalFS's changes is durable when it returns."""
    fs = LocalFS(disk.mountpoint)
    fs.mkdir("d")
    fs.mkdir("d/e")
    a = fs.write_file("d/a.txt", [b"a\n"], mtime_ns=T, exec=False, expect=None)
    fs.write_file("d/e/b.txt", [b"b\n"], mtime_ns=T, exec=False, expect=None)
    fs.symlink("link", "d/a.txt", None)
    fs.rename("d/a.txt", "d/e/moved.txt", a, None)
    gone = fs.write_file("gone.txt", [b"x\n"], mtime_ns=T, exec=False, expect=None)
    fs.remove("gone.txt", gone)
    fs.mkdir("empty")
    assert fs.rmdir("empty")

    mnt = reboot(disk)
    found = sorted(str(p.relative_to(mnt)) for p in mnt.rglob("*"))
    assert found == ["d", "d/e", "d/e/b.txt", "d/e/moved.txt", "link"]
    assert (mnt / "d/e/moved.txt").read_bytes() == b"a\n"
    assert os.readlink(mnt / "link") == "d/a.txt"


# -- SQLite's own files are durable, the folder that holds them must be too ---------


def test_the_servers_commits_survive_a_power_cut_in_a_new_data_directory(
    disk: LazyMount,
) -> None:
    """Regression: SQLite makes the names of its files durable (it fsyncs
    their folder), but nothing made the data directory's own name durable: a
    power cut soon after a first start took the directory, with every commit
    the server had acknowledged, away."""
    path = disk.mountpoint / "srv" / "data" / "meta.sqlite3"

    async def first() -> None:
        store = await SqliteStore.open(path)
        try:
            await store.create_user("alice")
        finally:
            await store.close()

    async def users() -> list[str]:
        store = await SqliteStore.open(path)
        try:
            return [r[0] for r in store.db.execute("SELECT name FROM users")]
        finally:
            await store.close()

    asyncio.run(first())
    reboot(disk)
    assert asyncio.run(users()) == ["alice"]


def test_the_index_survives_a_power_cut_right_after_it_was_created(disk: LazyMount) -> None:
    """Regression: the same for a client: ``.linesync/`` was created and never
    made durable in the folder, so a cut soon after `init` left the folder
    without its state (the next sync then refuses: not a linesync folder)."""
    folder = disk.mountpoint / "Notes"
    folder.mkdir()
    fsync_dir(disk.mountpoint)  # the user's folder is there to stay
    index = Index.open(folder / ".linesync" / "index.sqlite3")
    index.set("cursor", "7")
    index.close()
    reboot(disk)
    index = Index.open(folder / ".linesync" / "index.sqlite3")
    try:
        assert index.get("cursor") == "7"
    finally:
        index.close()


def test_a_torn_cut_keeps_some_unsynced_changes(power_where: Path) -> None:
    """`cut(tear=seed)`: some unsynced pages of a file reach the disk first
    (the file's size grows to cover them), in order or not, and some pending
    names (a new file's empty), as the seed draws; the fsynced bytes stay."""
    page = 4096
    old = b"o" * (2 * page)
    new = bytes(range(256)) * (6 * page // 256)
    outcomes: set[str] = set()
    for seed in range(12):
        disk = LazyMount(power_where / f"backing{seed}", power_where / f"mnt{seed}")
        disk.start()
        try:
            mnt = disk.mountpoint
            (mnt / "f").write_bytes(old)
            fsync_file(mnt / "f")
            fsync_dir(mnt)
            with open(mnt / "f", "ab") as f:
                f.write(new)  # pages 2..7, never fsynced
            (mnt / "unsynced-name").write_bytes(b"x")
            disk.cut(tear=seed)
            disk.start()
            names = sorted(os.listdir(mnt))
            assert names in (["f"], ["f", "unsynced-name"])
            outcomes.add("name kept" if len(names) == 2 else "name lost")
            if len(names) == 2:
                assert (mnt / "unsynced-name").read_bytes() in (b"", b"x")
            got = (mnt / "f").read_bytes()
        finally:
            disk.stop()
        assert got[: len(old)] == old
        tail = got[len(old) :]
        assert len(tail) % page == 0 and len(tail) <= len(new)
        kept = [tail[i : i + page] == new[i : i + page] for i in range(0, len(tail), page)]
        # A page that did not reach the disk reads as zeros (a hole), never as garbage.
        assert all(k or tail[i * page : (i + 1) * page] == bytes(page) for i, k in enumerate(kept))
        if not tail:
            outcomes.add("none")
        elif all(kept):
            outcomes.add("in order")
        else:
            outcomes.add("with holes")
    assert outcomes == {"none", "in order", "with holes", "name kept", "name lost"}
