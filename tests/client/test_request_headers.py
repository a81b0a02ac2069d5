"""What the client puts on the wire besides its bodies: every header byte is
paid on every request (PROTOCOL.md §2.2)."""

from __future__ import annotations

import asyncio

from linesync.client.remote import Remote
from linesync.protocol.framing import MEDIA_TYPE, Frame
from linesync.protocol.schemas import CommitOp, Kind

COMMIT_ANSWER = b'{"results":[{"path":"a.md","status":"ok","jid":7}],"cursor":"j.7.0"}'
UPLOAD_ANSWER = b'{"stored":0,"bytes":0}'


async def _requests(calls: int, go: object) -> list[bytes]:
    """The raw requests a client makes to a server that answers each with 200."""
    seen: list[bytes] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":")[1])
            body = await reader.readexactly(length) if length else b""
            if b"transfer-encoding: chunked" in head.lower():
                while (size := int((await reader.readline()).strip(), 16)) > 0:
                    body += await reader.readexactly(size + 2)
                await reader.readline()
            seen.append(head + body)
            answer = UPLOAD_ANSWER if b"/chunks" in head.split(b"\r\n")[0] else COMMIT_ANSWER
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
                         b"content-length: %d\r\n\r\n%s" % (len(answer), answer))  # fmt: skip
            await writer.drain()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        async with Remote(f"http://127.0.0.1:{port}", "tok") as remote:
            await go(remote)  # type: ignore[operator]
    finally:
        server.close()
    assert len(seen) == calls, seen
    return seen


def test_a_json_request_goes_without_a_content_type_and_a_chunk_upload_names_its_own() -> None:
    async def go(remote: Remote) -> None:
        await remote.commit(1, [CommitOp(path="a.md", kind=Kind.DIRECTORY)])
        await remote.upload(1, [Frame(b"\x00" * 32, 0, None, b"x")])

    commit, upload = asyncio.run(_requests(2, go))
    head = commit.split(b"\r\n\r\n")[0].lower()
    assert b"content-type" not in head, head
    assert b"authorization: bearer tok" in head
    assert commit.endswith(b'{"ops":[{"path":"a.md","kind":"directory"}]}')
    assert f"content-type: {MEDIA_TYPE}".encode() in upload.lower()
