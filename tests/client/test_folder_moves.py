"""The mover of a folder foresees the entries the server writes for it
(``protocol.folding.layout``): its remote view afterwards is the one a fresh
device lists, without a list of its own; and when the count of entries the
server wrote says otherwise, what it foresaw is dropped and listed instead."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from linesync.client.api import Client
from linesync.client.engine import open_folder
from linesync.client.model import Node, Version
from linesync.client.remote import Remote
from linesync.protocol import folding
from tests.client.conftest import files
from tests.support.server import ServerProc


def _remote_view(c: Client) -> dict[str, Version]:
    _, index = open_folder(c.folder)
    try:
        return {
            p: s.remote for p, s in index.states().items() if s.remote is not None and s.remote.jid
        }
    finally:
        index.close()


def _fill(root: Path) -> dict[str, bytes]:
    out = {f"notes/s{i % 3}/n{i:02d}.md": f"note {i}\n".encode() * (i + 1) for i in range(30)}
    for rel, data in out.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    (root / "notes/link").symlink_to("s0/n00.md")
    return out


@pytest.fixture
def lists(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The entries each list request brought."""
    seen: list[int] = []
    real = Remote.list_changes

    async def counting(self: Remote, *args: Any, **kw: Any) -> Any:
        resp = await real(self, *args, **kw)
        seen.append(len(resp.entries))
        return resp

    monkeypatch.setattr(Remote, "list_changes", counting)
    return seen


def test_the_mover_takes_what_the_server_wrote_without_listing_it(
    server: ServerProc, tmp_path: Path, lists: list[int]
) -> None:
    user = "admin"
    a = Client.init(tmp_path / "A", server=server.url, token=server.new_token(user, "a"))
    contents = _fill(a.folder)
    assert a.sync_once().converged
    (a.folder / "notes").rename(a.folder / "kept")
    lists.clear()
    r = a.sync_once()
    assert r.converged and r.moved == 31 and r.uploaded == 0, r
    # (A one-shot sync lists once, for others' changes: none.)
    assert lists == [0], "the mover listed its own folder move"
    # A device that lists it all sees the very view the mover foresaw.
    c = Client.init(tmp_path / "C", server=server.url, token=server.new_token(user, "c"))
    assert c.sync_once().converged
    assert _remote_view(a) == _remote_view(c)
    moved = {"kept" + p[len("notes") :]: d for p, d in contents.items()}
    assert {p: d for p, d in files(c.folder).items() if p != "kept/link"} == moved


def test_a_foreseen_move_the_server_did_otherwise_is_listed(
    server: ServerProc, tmp_path: Path, lists: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Fault injection: the mover foresees one thing too many (a view the
    server disagrees with). The entries' count gives it away: the foreseen
    entries are dropped, and a list brings the server's, before any plan
    could download the thing that is not there."""
    user = "admin"
    a = Client.init(tmp_path / "A", server=server.url, token=server.new_token(user, "a"))
    contents = _fill(a.folder)
    assert a.sync_once().converged
    real = folding.layout

    def one_too_many(
        jid: int, src: str, dst: str, moved: Sequence[tuple[str, Node]]
    ) -> list[folding.Implied[Node]]:
        return real(jid, src, dst, [*moved, (src + "/~phantom", moved[0][1])])

    monkeypatch.setattr(folding, "layout", one_too_many)
    (a.folder / "notes").rename(a.folder / "kept")
    lists.clear()
    r = a.sync_once()
    assert r.converged and not r.problems and r.downloaded == 0, r
    assert sum(lists) >= 2 * 31 + 2, f"the mover did not list what it could not foresee: {lists}"
    view = _remote_view(a)
    assert "kept/~phantom" not in view
    monkeypatch.undo()
    c = Client.init(tmp_path / "C", server=server.url, token=server.new_token(user, "c"))
    assert c.sync_once().converged
    assert _remote_view(a) == _remote_view(c)
    assert len([p for p in files(a.folder) if p.startswith("kept/")]) == len(contents) + 1
