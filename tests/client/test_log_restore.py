"""`linesync log` dates versions by their commit (no 1970-01-01 for deletions
and folders), `restore` refuses another path's version unless `--copy` is
asked, and both sides count the same change the same way (findings 10 and 11
of the audit)."""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import time

import pytest

from linesync.cli.client_cmds import log_line
from linesync.cli.main import main as cli_main
from linesync.client.api import Client
from linesync.protocol.schemas import Entry, Kind
from tests.client.conftest import files

NOON = time.mktime((2024, 5, 1, 12, 0, 0, 0, 0, -1))  # local time, as log prints it


@pytest.mark.parametrize(
    ("entry", "want"),
    [
        (Entry(jid=3, path="a", kind=Kind.TOMBSTONE, device="laptop", committed=NOON),
         "jid      3  2024-05-01 12:00:00  deleted  by laptop"),
        (Entry(jid=1, path="d", kind=Kind.DIRECTORY, device="laptop", committed=NOON),
         "jid      1  2024-05-01 12:00:00  folder  by laptop"),
        (Entry(jid=2, path="f", kind=Kind.FILE, size=12, mtime_ns=int(NOON * 1e9),
               device="phone", committed=NOON + 0.4),
         "jid      2  2024-05-01 12:00:00  file, 12 bytes  by phone"),
        (Entry(jid=4, path="f", kind=Kind.FILE, size=12, mtime_ns=int((NOON - 3600) * 1e9),
               device="phone", committed=NOON),
         "jid      4  2024-05-01 12:00:00  file, 12 bytes, modified 2024-05-01 11:00:00  "
         "by phone"),
        (Entry(jid=5, path="l", kind=Kind.SYMLINK, target="notes.md", device="d",
               committed=NOON),
         "jid      5  2024-05-01 12:00:00  symlink -> notes.md  by d"),
        (Entry(jid=6, path="g", kind=Kind.FILE, size=1, device="d", moved_from="f",
               mtime_ns=int(NOON * 1e9), committed=NOON),
         "jid      6  2024-05-01 12:00:00  file, 1 bytes, moved from f  by d"),
        # A server without commit times: a file's own time; nothing for the rest.
        (Entry(jid=7, path="f", kind=Kind.FILE, size=1, mtime_ns=int(NOON * 1e9), device="d"),
         "jid      7  2024-05-01 12:00:00  file, 1 bytes  by d"),
        (Entry(jid=8, path="f", kind=Kind.TOMBSTONE, device="d"),
         "jid      8  -------------------  deleted  by d"),
    ],
)  # fmt: skip
def test_a_log_line(entry: Entry, want: str) -> None:
    assert log_line(entry) == want


def _cli(*args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = cli_main(list(args))
    return rc, out.getvalue(), err.getvalue()


def test_log_of_a_deleted_file_and_a_folder_shows_when_it_happened(
    pair: tuple[Client, Client],
) -> None:
    a, _ = pair
    (a.folder / "notes").mkdir()
    (a.folder / "notes/x.md").write_text("x\n")
    old = time.time() - 86400 * 400
    os.utime(a.folder / "notes/x.md", (old, old))  # a file last changed long ago
    assert a.sync_once().converged
    (a.folder / "notes/x.md").unlink()
    assert a.sync_once().converged
    today = time.strftime("%Y-%m-%d")
    rc, out, _ = _cli("log", str(a.folder), "notes/x.md")
    assert rc == 0
    deleted, created = out.splitlines()
    assert "1970" not in out
    assert today in deleted and "deleted" in deleted
    assert created.split()[2] == today  # when it was committed...
    assert f"modified {time.strftime('%Y-%m-%d', time.localtime(old))}" in created  # ...and its own
    rc, out, _ = _cli("log", str(a.folder), "notes")
    assert rc == 0 and today in out and "folder" in out and "1970" not in out


def test_restore_refuses_another_paths_version_and_copies_on_request(
    pair: tuple[Client, Client],
) -> None:
    a, b = pair
    (a.folder / "notes").mkdir()
    (a.folder / "merge.txt").write_text("merge\n")
    (a.folder / "other.txt").write_text("other\n")
    assert a.sync_once().converged
    rc, out, _ = _cli("log", str(a.folder), "notes")
    folder_jid = out.split()[1]
    rc, out, _ = _cli("log", str(a.folder), "other.txt")
    other_jid = out.split()[1]
    rc, out, err = _cli("restore", str(a.folder), "merge.txt", "--jid", folder_jid)
    assert rc == 1, (out, err)
    assert "is a version of 'notes', not of 'merge.txt'" in err
    assert "--copy" in err and "restored" not in out
    assert (a.folder / "merge.txt").read_text() == "merge\n"
    rc, out, err = _cli("restore", str(a.folder), "merge.txt", "--jid", other_jid)
    assert rc == 1 and "is a version of 'other.txt'" in err
    # On purpose: the other file's version becomes merge.txt's.
    rc, out, err = _cli("restore", str(a.folder), "merge.txt", "--jid", other_jid, "--copy")
    assert rc == 0, (out, err)
    assert f"copied jid {other_jid} to merge.txt" in out
    assert (a.folder / "merge.txt").read_text() == "other\n"
    assert b.sync_once().converged
    assert files(b.folder) == {"merge.txt": b"other\n", "other.txt": b"other\n"}


def test_both_sides_count_files_not_folders(pair: tuple[Client, Client]) -> None:
    a, b = pair
    (a.folder / "docs/sub").mkdir(parents=True)
    (a.folder / "docs/one.md").write_text("1\n")
    (a.folder / "docs/sub/two.md").write_text("2\n")
    ra, rb = a.sync_once(), b.sync_once()
    assert (ra.uploaded, rb.downloaded) == (2, 2)  # not 4 (two folders) against 2
    (a.folder / "docs").rename(a.folder / "papers")
    ra, rb = a.sync_once(), b.sync_once()
    assert (ra.moved, rb.moved) == (2, 2), (ra, rb)
    assert ra.uploaded == rb.downloaded == 0
    shutil.rmtree(a.folder / "papers")
    ra, rb = a.sync_once(), b.sync_once()
    assert (ra.deleted_remote, rb.deleted_local) == (2, 2), (ra, rb)
    assert files(b.folder) == {}
