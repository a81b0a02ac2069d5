"""Server limits set on the command line: file size and stalled bodies."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from linesync.client.remote import Remote
from linesync.client.transfer import prepare_file, split
from linesync.protocol.errors import Code, LinesyncError
from tests.support.server import ServerProc


@pytest.fixture
def strict_server(tmp_path: Path) -> Iterator[ServerProc]:
    srv = ServerProc(tmp_path / "s", extra=["--max-file-size", "1000", "--body-timeout", "1"])
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()


def test_a_file_over_the_size_limit_is_refused(strict_server: ServerProc) -> None:
    async def go() -> None:
        async with Remote(strict_server.url, strict_server.token) as r:
            small = b"x" * 1000
            ids, chunks = split(small)
            prep = prepare_file("ok.txt", ids, chunks, size=len(small), mtime_ns=1)
            (res,) = await r.commit(1, [prep.op], prep.inline)
            assert res.status == "ok"
            big = b"y" * 1001
            ids, chunks = split(big)
            prep = prepare_file("big.txt", ids, chunks, size=len(big), mtime_ns=1)
            with pytest.raises(LinesyncError) as err:
                await r.commit(1, [prep.op], prep.inline)
            assert err.value.code is Code.FILE_TOO_LARGE
            assert (await r.head(1)).jid == 1
            assert (await r.history(1, "big.txt")).entries == []

    asyncio.run(go())


def test_a_stalled_body_times_out_and_others_are_served(strict_server: ServerProc) -> None:
    host, port = strict_server.url.removeprefix("http://").split(":")

    async def go() -> None:
        reader, writer = await asyncio.open_connection(host, int(port))
        writer.write(
            b"POST /v1/ns/1/commit HTTP/1.1\r\nHost: x\r\n"
            + f"Authorization: Bearer {strict_server.token}\r\n".encode()
            + b'Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{"ops": ['
        )
        await writer.drain()
        started = time.monotonic()
        async with Remote(strict_server.url, strict_server.token) as r:
            assert (await r.me()).user == "admin"  # served while the other stalls
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout=10)
        assert head.startswith(b"HTTP/1.1 408"), head
        assert time.monotonic() - started < 5
        writer.close()

    asyncio.run(go())
