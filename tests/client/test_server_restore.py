"""The server is reset, or restored from an older backup: clients notice that
their cursor is invalid and re-sync without losing local work."""

from __future__ import annotations

import shutil

from linesync.client.api import Client
from tests.client.conftest import files
from tests.support.server import ServerProc


def test_a_server_restored_from_an_older_backup_loses_no_local_work(
    pair: tuple[Client, Client], server: ServerProc
) -> None:
    a, b = pair
    (a.folder / "old.md").write_text("from before the backup\n")
    assert a.sync_once().converged and b.sync_once().converged
    server.stop()
    backup = server.data.with_name("backup")
    shutil.copytree(server.data, backup)
    server.start()
    for c in (a, b):  # the server's port changed with the restart
        c.config = c.config.__class__(**{**c.config.__dict__, "server": server.url})
        c.config.save(c.folder)
    (a.folder / "after.md").write_text("written after the backup\n")
    (a.folder / "old.md").write_text("edited after the backup\n")
    assert a.sync_once().converged and b.sync_once().converged
    assert files(a.folder) == files(b.folder)
    server.stop()  # disaster: the server comes back from the backup
    shutil.rmtree(server.data)
    shutil.copytree(backup, server.data)
    server.start()
    for c in (a, b):
        c.config = c.config.__class__(**{**c.config.__dict__, "server": server.url})
        c.config.save(c.folder)
    said: list[str] = []
    a, b = Client(a.folder, report=said.append), Client(b.folder, report=said.append)
    ra = a.sync_once()
    rb = b.sync_once()
    ra2 = a.sync_once()
    assert sum("reset or restored" in m for m in said) == 2, said  # both noticed
    assert ra.converged and rb.converged and ra2.converged, (ra.problems, rb.problems)
    assert ra.deleted_local == 0 and rb.deleted_local == 0
    got_a, got_b = files(a.folder), files(b.folder)
    assert got_a == got_b
    contents = set(got_a.values())
    # Every version a user saved is still on disk: nothing was taken for deleted.
    assert b"written after the backup\n" in contents
    assert b"edited after the backup\n" in contents
