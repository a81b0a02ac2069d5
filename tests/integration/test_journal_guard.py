"""A commit names the journal its JIDs come from: after a reset it is refused,
never matched against unrelated new entries."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest

from linesync.client.remote import Remote
from linesync.protocol.errors import Code, LinesyncError
from linesync.protocol.schemas import CommitOp, Content, Kind
from tests.support.api import User
from tests.support.server import ServerProc


def test_commit_and_restore_against_a_reset_journal_are_refused(
    srv: ServerProc, user: User
) -> None:
    async def go() -> None:
        async with Remote(srv.url, user.token) as r:
            ns = user.ns
            old = (await r.head(ns)).cursor.split(".")[0]
            (res,) = await r.commit(ns, [CommitOp(path="d", kind=Kind.DIRECTORY)], journal=old)
            assert res.status == "ok"
            srv.admin("namespace", "reset", user.name, "--yes")
            new = (await r.head(ns)).cursor.split(".")[0]
            assert new != old
            stale = CommitOp(path="e", kind=Kind.DIRECTORY)
            with pytest.raises(LinesyncError) as err:
                await r.commit(ns, [stale], journal=old)
            assert err.value.code is Code.CURSOR_INVALID
            with pytest.raises(LinesyncError) as err:
                await r.restore(ns, "d", 1, 0, journal=old)
            assert err.value.code is Code.CURSOR_INVALID
            assert (await r.head(ns)).jid == 0
            (res,) = await r.commit(ns, [stale], journal=new)
            assert res.status == "ok" and res.jid == 1

    asyncio.run(go())


def test_content_with_both_ids_and_edits_is_refused(srv: ServerProc, user: User) -> None:
    async def go() -> None:
        async with Remote(srv.url, user.token) as r:
            op = CommitOp(path="f", kind=Kind.FILE, content=Content(ids="", edits=[]))
            with pytest.raises(LinesyncError) as err:
                await r.commit(user.ns, [op])
            assert err.value.code is Code.BAD_REQUEST

    asyncio.run(go())


def test_method_not_allowed_names_the_allowed_methods(srv: ServerProc) -> None:
    async def go() -> None:
        async with aiohttp.ClientSession() as s, s.delete(srv.url + "/v1/me") as resp:
            assert resp.status == 405
            assert "GET" in resp.headers["Allow"].split(", ")
            assert (await resp.json())["error"]["code"] == "method_not_allowed"

    asyncio.run(go())
