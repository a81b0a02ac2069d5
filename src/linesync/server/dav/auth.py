"""Who a WebDAV request is: HTTP Basic, the user's name and a token as the
password, checked by the API's own code (``Context.auth``: the same lookup,
expiry and revocation, failed sign-ins counted per address, rate limits);
the token's user must be the name given. A namespace is found by name among
the user's own: another user's namespace answers as a missing one would."""

from __future__ import annotations

import base64
import binascii

from starlette.requests import Request

from linesync.protocol.errors import Code, LinesyncError
from linesync.server.context import Context
from linesync.server.dav.rules import DavError
from linesync.server.model import Namespace, TokenInfo

CHALLENGE = {"www-authenticate": 'Basic realm="linesync", charset="UTF-8"'}


def _credentials(request: Request) -> tuple[str, str]:
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "basic" or not value.strip():
        raise DavError(
            401, "sign in with your user name and a token as password", headers=CHALLENGE
        )
    try:
        raw = base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        raise DavError(400, "malformed Basic credentials") from None
    user, sep, token = raw.partition(":")
    if not sep:
        raise DavError(400, "malformed Basic credentials")
    return user, token


def _as_bearer(request: Request, token: str) -> Request:
    headers = [(k, v) for k, v in request.scope["headers"] if k != b"authorization"]
    headers.append((b"authorization", b"Bearer " + token.encode("utf-8", "replace")))
    return Request(dict(request.scope, headers=headers))


async def authenticate(ctx: Context, request: Request) -> TokenInfo:
    user, token = _credentials(request)
    try:
        info = await ctx.auth(_as_bearer(request, token))
    except LinesyncError as exc:
        if exc.code is Code.UNAUTHENTICATED:
            raise DavError(401, "wrong user name or token", headers=CHALLENGE) from None
        if exc.code is Code.RATE_LIMITED:
            wait = str(exc.detail.get("retry_after", 1))
            raise DavError(429, exc.message, headers={"retry-after": wait}) from None
        if exc.code is Code.FORBIDDEN:
            raise DavError(403, exc.message) from None
        raise
    if info.user != user:
        # As a wrong password: counted against the address like one.
        address = request.client.host if request.client else ""
        ctx.auth_failures.allow(address)
        ctx.metrics.inc("linesync_auth_failures_total")
        raise DavError(401, "wrong user name or token", headers=CHALLENGE)
    return info


async def namespace(ctx: Context, token: TokenInfo, name: str, write: bool) -> Namespace:
    found = next((ns for ns in await ctx.meta.namespaces_of(token.user_id) if ns.name == name),
                 None)  # fmt: skip
    if found is None:
        raise DavError(404, "no such namespace")
    if write and token.role != "rw":
        raise DavError(403, "this token is read-only")
    if write and found.role != "rw":
        raise DavError(403, "you have read-only access to this namespace")
    return found
