"""A client given several URLs of one server goes to the next one that
answers, at once, when one cannot be reached."""

from __future__ import annotations

import asyncio
import socket

import pytest

from linesync.client.config import check_server_url
from linesync.client.remote import Remote, RemoteUnavailable
from tests.support.server import ServerProc


def _dead_url() -> str:
    """A URL nothing listens on (a port bound and closed again)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def test_a_request_goes_to_the_next_url_when_one_is_down(server: ServerProc) -> None:
    dead = _dead_url()

    async def go() -> None:
        async with Remote(f"{dead},{server.url}", server.token) as r:
            me = await r.me()
            assert me.user == "admin"
            assert r.url == server.url  # and it stays there
            await r.me()
            assert r.url == server.url

    asyncio.run(go())


def test_every_url_down_is_unavailable_after_one_try_each() -> None:
    urls = [_dead_url(), _dead_url(), _dead_url()]
    tried: list[str] = []

    async def go() -> None:
        async with Remote(",".join(urls), "lst_" + "x" * 32) as r:
            real = r._exchange

            async def spy(*args: object, **kw: object) -> tuple[int, bytes]:
                tried.append(r.url)
                return await real(*args, **kw)  # type: ignore[arg-type]

            r._exchange = spy  # type: ignore[method-assign]
            with pytest.raises(RemoteUnavailable):
                await r.me()

    asyncio.run(go())
    assert tried == urls


def test_server_url_lists_are_checked_one_by_one() -> None:
    assert check_server_url(" http://a:1/ , https://b ") == "http://a:1,https://b"
    with pytest.raises(ValueError, match="not a server URL"):
        check_server_url("http://a:1,b:2")
    with pytest.raises(ValueError, match="names no server"):
        check_server_url(",")
