"""Protocol version negotiation on the server's side (PROTOCOL.md §1.4): an
ASGI middleware that announces the versions this server speaks on every
response and refuses a request whose ``Linesync-Protocol`` header names none
of them. Requests without the header (curl, WebDAV, browsers, clients from
before negotiation) pass untouched."""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from linesync.protocol import version
from linesync.protocol.errors import Code, LinesyncError
from linesync.server.responses import error_response

_NAME = version.HEADER.lower().encode()
_VALUE = version.format_versions(version.SERVER_SPEAKS).encode()


class Negotiation:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def announce(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", ()), (_NAME, _VALUE)]
            await send(message)

        claimed = [v for k, v in scope["headers"] if k == _NAME]
        if claimed:
            refusal = version.server_verdict(b",".join(claimed).decode("latin-1"))
            if refusal is not None:
                exc = LinesyncError(Code(refusal.code), refusal.message)
                await error_response(exc)(scope, receive, announce)
                return
        await self.app(scope, receive, announce)
