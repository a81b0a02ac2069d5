"""Renaming, moving and deleting through the web interface: a rename or move
is one move in the journal (a syncing client sees a move, and the history
follows the file); a folder is deleted with everything in it, in commits of
the server's batch size; nothing is lost on a refused request."""

from __future__ import annotations

import asyncio

from linesync.protocol.schemas import CommitOp, Content, Entry, Kind
from tests.support.api import Remote, User
from tests.support.server import ServerProc
from tests.web.test_http import signed_in, upload
from tests.web.webclient import Web


async def _journal(srv: ServerProc, user: User) -> list[Entry]:
    """The current entry of every path (a page at a time)."""
    out: list[Entry] = []
    async with Remote(srv.url, user.token) as r:
        cursor = None
        for _ in range(100):
            page = await r.list_changes(user.ns, cursor)
            out += page.entries
            cursor = page.cursor
            if not page.more:
                return out
    raise AssertionError("no end")


def _post(web: Web, user: User, action: str, **fields: str) -> int:
    csrf = web.get(f"/web/ns/{user.ns}/browse").csrf()
    return web.post(f"/web/ns/{user.ns}/{action}", {"csrf": csrf, **fields}).status


def _live(srv: ServerProc, user: User) -> dict[str, Entry]:
    return {e.path: e for e in asyncio.run(_journal(srv, user)) if e.kind is not Kind.TOMBSTONE}


def test_rename_and_move_are_moves_in_the_journal(srv: ServerProc) -> None:
    web, user = signed_in(srv)
    assert upload(web, user.ns, "notes.md", b"one\ntwo\n").status == 303
    assert _post(web, user, "mkdir", folder="", name="archive") == 303
    before = _live(srv, user)["notes.md"]
    assert _post(web, user, "move", path="notes.md", to="archive/old notes.md") == 303
    live = _live(srv, user)
    assert "notes.md" not in live
    moved = live["archive/old notes.md"]
    assert moved.moved_from == "notes.md" and moved.size == before.size
    got = web.get(f"/web/ns/{user.ns}/download?path=archive/old%20notes.md")
    assert got.body == b"one\ntwo\n"
    # A folder moves whole; a case-only rename is allowed.
    assert _post(web, user, "move", path="archive", to="Archive") == 303
    assert set(_live(srv, user)) == {"Archive", "Archive/old notes.md"}
    # The page offers both.
    page = web.get(f"/web/ns/{user.ns}/browse?path=Archive").text
    assert f'action="/web/ns/{user.ns}/move"' in page and "Rename" in page


def test_a_refused_move_changes_nothing(srv: ServerProc) -> None:
    web, user = signed_in(srv)
    for name in ("a.txt", "b.txt"):
        assert upload(web, user.ns, name, name.encode()).status == 303
    assert _post(web, user, "mkdir", folder="", name="d") == 303
    before = _live(srv, user)
    for to, why in [
        ("b.txt", "exists already"),
        ("B.TXT", "differs from it only in case"),
        ("../x", ""),
        ("nope/a.txt", "its folder does not exist"),
    ]:
        r = web.post(f"/web/ns/{user.ns}/move",
                     {"csrf": web.csrf(), "path": "a.txt", "to": to})  # fmt: skip
        assert r.status in (400, 404, 409), (to, r.status)
        assert why in r.text, (to, r.text[:500])
    r = web.post(f"/web/ns/{user.ns}/move", {"csrf": web.csrf(), "path": "d", "to": "d/e"})
    assert r.status == 400 and "inside itself" in r.text
    r = web.post(f"/web/ns/{user.ns}/move", {"csrf": web.csrf(), "path": "gone", "to": "x"})
    assert r.status == 404
    assert _live(srv, user) == before


def test_a_folder_is_deleted_with_everything_in_it(srv: ServerProc) -> None:
    """1,500 entries: more than one commit holds (the server's batch is 1,000)."""
    web, user = signed_in(srv)

    async def fill() -> None:
        async with Remote(srv.url, user.token) as r:
            ops = [CommitOp(path="big", kind=Kind.DIRECTORY),
                   CommitOp(path="big/sub", kind=Kind.DIRECTORY)]  # fmt: skip
            ops += [CommitOp(path=f"big/sub/{i:04}", kind=Kind.FILE, content=Content(ids=""))
                    for i in range(1500)]  # fmt: skip
            ops.append(CommitOp(path="keep.txt", kind=Kind.FILE, content=Content(ids="")))
            for i in range(0, len(ops), 1000):
                assert {x.status for x in await r.commit(user.ns, ops[i : i + 1000])} == {"ok"}

    asyncio.run(fill())
    assert _post(web, user, "delete", path="big") == 303
    assert set(_live(srv, user)) == {"keep.txt"}
    # Each deleted file keeps its history (and can be undeleted).
    hist = web.get(f"/web/ns/{user.ns}/history?path=big/sub/0042")
    assert hist.status == 200
    page = web.get(f"/web/ns/{user.ns}/browse?deleted=1").text
    assert 'data-path="big"' in page
