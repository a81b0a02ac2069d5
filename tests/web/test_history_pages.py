"""A file's history past one page: every version can be reached, diffed
and restored, a page at a time."""

from __future__ import annotations

import asyncio
import re

from linesync.server.web.pages import HISTORY_PAGE
from tests.support.api import Remote, put_file
from tests.support.server import ServerProc
from tests.web.test_http import signed_in


def test_every_version_is_reached_a_page_at_a_time(srv: ServerProc) -> None:
    web, user = signed_in(srv)
    n = HISTORY_PAGE + 7

    async def versions() -> list[int]:
        jids: list[int] = []
        async with Remote(srv.url, user.token) as r:
            for i in range(n):
                jids.append(await put_file(r, user.ns, "log.txt", b"line %d\n" % i,
                                           jids[-1] if jids else 0))  # fmt: skip
        return jids

    jids = asyncio.run(versions())
    url, seen = f"/web/ns/{user.ns}/history?path=log.txt", []
    for _ in range(3):
        page = web.get(url)
        assert page.status == 200
        shown = [int(j) for j in re.findall(r"<strong>#(\d+)</strong>", page.text)]
        assert 0 < len(shown) <= HISTORY_PAGE
        seen += shown
        older = re.search(r'href="([^"]+)" id="older-versions"', page.text)
        if older is None:
            break
        url = older.group(1).replace("&amp;", "&")
    assert seen == jids[::-1]
    # The last page: the oldest version, restorable; "current" marks none of them.
    assert 'class="badge ok">current' not in page.text and "Restore this version" in page.text
    restore = web.post(f"/web/ns/{user.ns}/restore",
                       {"csrf": page.csrf(), "path": "log.txt", "jid": str(jids[0])})  # fmt: skip
    assert restore.status == 303
    got = web.get(f"/web/ns/{user.ns}/download?path=log.txt")
    assert got.body == b"line 0\n"
    bad = web.get(f"/web/ns/{user.ns}/history?path=log.txt&before=x")
    assert bad.status == 400
