"""WebDAV from the other side: what big requests cost the server. A 300 MB
PUT and GET and a PROPFIND of a folder of 50,000 entries stay within a
bounded amount of the server's memory (RSS of the real process)."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import http.client
import random
from collections.abc import Iterator
from urllib.parse import urlsplit

from tests.support.api import Remote, User, dir_op
from tests.support.resources import MB, peak_rss, pid_of, reset_peak_rss, rss
from tests.support.server import ServerProc

SIZE = 300 * 2**20
BLOCK = 2**20


def blocks(seed: int = 7) -> Iterator[bytes]:
    rng = random.Random(seed)
    for _ in range(SIZE // BLOCK):
        yield rng.randbytes(BLOCK)


def _connect(srv: ServerProc) -> http.client.HTTPConnection:
    u = urlsplit(srv.url)
    return http.client.HTTPConnection(u.hostname or "127.0.0.1", u.port, timeout=300)


def _auth(user: User) -> str:
    return "Basic " + base64.b64encode(f"{user.name}:{user.token}".encode()).decode()


def test_propfind_of_a_folder_of_50000_entries_streams(srv: ServerProc, user: User) -> None:
    entries = 50_000

    async def fill() -> None:
        async with Remote(srv.url, user.token) as r:
            await r.commit(user.ns, [dir_op("big")])
            for start in range(0, entries, 1000):
                ops = [dir_op(f"big/folder {i:05d}") for i in range(start, start + 1000)]
                results = await r.commit(user.ns, ops)
                assert all(x.status == "ok" for x in results)

    asyncio.run(fill())
    pid = pid_of(srv)
    base = rss(pid)
    reset_peak_rss(pid)
    con = _connect(srv)
    con.request(
        "PROPFIND", f"/dav/{user.name}/big/", headers={"Authorization": _auth(user), "Depth": "1"}
    )
    r = con.getresponse()
    assert r.status == 207
    count, tail, size = 0, b"", 0
    while piece := r.read(BLOCK):
        size += len(piece)
        count += (tail + piece).count(b"<D:response>") - tail.count(b"<D:response>")
        tail = piece[-16:]
    con.close()
    growth = peak_rss(pid) - base
    print(f"PROPFIND of {entries} entries: {size / MB:.0f} MB, RSS growth {growth / MB:.0f} MB")
    assert count == entries + 1
    assert growth < 60 * MB, growth


def test_a_300_mb_put_and_get_stay_bounded(srv: ServerProc, user: User) -> None:
    pid = pid_of(srv)
    expected = hashlib.sha256()
    for b in blocks():
        expected.update(b)
    base = rss(pid)
    reset_peak_rss(pid)
    con = _connect(srv)
    con.putrequest("PUT", f"/dav/{user.name}/big.bin")
    con.putheader("Authorization", _auth(user))
    con.putheader("Content-Length", str(SIZE))
    con.endheaders()
    for b in blocks():
        con.send(b)
    r = con.getresponse()
    assert r.status == 201, r.read()
    con.close()
    put_growth = peak_rss(pid) - base
    reset_peak_rss(pid)
    con = _connect(srv)
    con.request("GET", f"/dav/{user.name}/big.bin", headers={"Authorization": _auth(user)})
    r = con.getresponse()
    assert r.status == 200 and int(r.headers["content-length"]) == SIZE
    got = hashlib.sha256()
    while piece := r.read(BLOCK):
        got.update(piece)
    con.close()
    get_growth = peak_rss(pid) - base
    print(f"server RSS growth: PUT {put_growth / MB:.0f} MB, GET {get_growth / MB:.0f} MB")
    assert got.hexdigest() == expected.hexdigest()
    assert put_growth < 200 * MB, put_growth
    assert get_growth < 200 * MB, get_growth
