"""The web interface from an attacker's side: big uploads and zips stream
through bounded memory, and past their caps they are refused with a message."""

from __future__ import annotations

import asyncio
import html
import http.client
import io
import os
import re
import zipfile
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest

from linesync.protocol.schemas import CommitOp, Content, Kind
from linesync.server.web import files, pages
from tests.support.api import Remote, User, new_user
from tests.support.resources import MB, Meter, pid_of, rss
from tests.support.server import ServerProc
from tests.web.webclient import Web, multipart

BIG = 48 * 2**20


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProc]:
    proc = ServerProc(tmp_path_factory.mktemp("bounds") / "server").start()
    yield proc
    proc.stop()


def signed_in(srv: ServerProc) -> tuple[Web, User]:
    user = new_user(srv)
    web = Web(srv.url)
    assert web.signin(user.name, user.token).status == 303
    return web, user


def test_a_big_upload_and_its_zip_stream_through_bounded_memory(server: ServerProc) -> None:
    web, user = signed_in(server)
    data = os.urandom(BIG)
    csrf = web.get(f"/web/ns/{user.ns}/browse").csrf()
    web.post(f"/web/ns/{user.ns}/mkdir", {"csrf": csrf, "folder": "", "name": "big"})
    body, ctype = multipart({"csrf": csrf, "folder": "big"}, [("files", "blob.bin", data)])
    pid = pid_of(server)
    before = rss(pid)
    with Meter(pid) as up:
        r = web.request("POST", f"/web/ns/{user.ns}/upload", body, {"Content-Type": ctype})
    assert r.status == 303, r.text[:300]
    del body
    # Its zip, read in pieces here (the server must not hold it either).
    parts = urlsplit(server.url)
    with Meter(pid) as down:
        conn = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=60)
        conn.request("GET", f"/web/ns/{user.ns}/zip?path=big", headers={
            "Cookie": "; ".join(f"{k}={v}" for k, v in web.cookies.items()),
            "Accept-Encoding": "gzip",  # as a browser asks: a zip is sent as it is
        })  # fmt: skip
        resp = conn.getresponse()
        assert resp.status == 200 and resp.getheader("content-encoding") == "identity"
        got = bytearray()
        while piece := resp.read(2**20):
            got += piece
        conn.close()
    zf = zipfile.ZipFile(io.BytesIO(bytes(got)))
    assert zf.namelist() == ["blob.bin"] and zf.read("blob.bin") == data
    print(f"\nupload of {BIG // 2**20} MiB: {up.usage}; its zip: {down.usage}")
    # Holding the file whole would take more than its size (48 MiB) on top.
    assert up.usage.peak_rss < before + 40 * MB, (before, str(up.usage))
    assert down.usage.peak_rss < before + 40 * MB, (before, str(down.usage))


def test_an_upload_past_the_cap_is_refused_before_it_is_read(server: ServerProc) -> None:
    web, user = signed_in(server)
    csrf = web.get(f"/web/ns/{user.ns}/browse").csrf()
    body, ctype = multipart({"csrf": csrf, "folder": ""}, [("files", "x", b"x")])
    r = web.request(
        "POST",
        f"/web/ns/{user.ns}/upload",
        body,
        {"Content-Type": ctype, "Content-Length": str(pages.MAX_UPLOAD_BYTES + 1)},
    )
    assert r.status == 413 and "at most 1024 MiB" in r.text


def test_a_zip_past_the_cap_is_refused_with_a_message(server: ServerProc) -> None:
    web, user = signed_in(server)
    n = files.MAX_ZIP_FILES + 1

    async def fill() -> None:
        async with Remote(server.url, user.token) as r:
            (res,) = await r.commit(user.ns, [CommitOp(path="many", kind=Kind.DIRECTORY)])
            assert res.status == "ok"
            for start in range(0, n, 1000):
                ops = [
                    CommitOp(path=f"many/{i:05d}", kind=Kind.FILE, content=Content(ids=""))
                    for i in range(start, min(n, start + 1000))
                ]
                assert {x.status for x in await r.commit(user.ns, ops)} == {"ok"}

    asyncio.run(fill())
    r = web.get(f"/web/ns/{user.ns}/zip?path=many")
    assert r.status == 413 and f"more than {files.MAX_ZIP_FILES} files" in r.text
    # The folder pages still list them all, MAX_LISTED a page, each once.
    url, seen = f"/web/ns/{user.ns}/browse?path=many", []
    for _ in range(n // pages.MAX_LISTED + 2):
        page = web.get(url)
        assert page.status == 200
        listed = re.findall(r'data-path="many/(\d{5})"', page.text)
        assert 0 < len(listed) <= pages.MAX_LISTED
        seen += listed
        nxt = re.search(r'href="([^"]+)" id="next-page"', page.text)
        if nxt is None:
            break
        url = html.unescape(nxt.group(1))
    assert seen == [f"{i:05d}" for i in range(n)]
