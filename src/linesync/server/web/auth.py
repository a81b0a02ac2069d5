"""Who a web request is: its session cookie checked by the API's own rules.

The session token goes through ``Context.auth`` and ``Context.namespace``
exactly as a bearer token would (the same lookup, failure counting, rate
limits, roles and membership): the request is handed to them as a view
whose Authorization header carries the cookie's token. Nothing here decides
an access rule of its own, except CSRF and origin checks for writes.
"""

from __future__ import annotations

from dataclasses import dataclass

from starlette.requests import Request

from linesync.protocol.errors import Code, LinesyncError
from linesync.server.context import TOKEN_FORM, Context
from linesync.server.model import Namespace, TokenInfo
from linesync.server.web import security


class SignedOut(Exception):
    """No valid session: a page sends the browser to the sign-in page, an
    action answers 401."""


@dataclass(frozen=True, slots=True)
class Session:
    token: str
    info: TokenInfo

    @property
    def csrf(self) -> str:
        return security.csrf_token(self.token)

    @property
    def read_only(self) -> bool:
        return self.info.role != "rw"


def as_bearer(request: Request, token: str, ns: int | None = None) -> Request:
    """``request`` as the API's handlers see one carrying ``token`` as its bearer
    token (and ``ns`` as its namespace path parameter)."""
    headers = [(k, v) for k, v in request.scope["headers"] if k != b"authorization"]
    headers.append((b"authorization", b"Bearer " + token.encode("ascii")))
    scope = dict(request.scope, headers=headers)
    if ns is not None:
        scope["path_params"] = {**request.scope.get("path_params", {}), "ns": ns}
    return Request(scope)


# Bytes of a Cookie header read at most: the HTTP server takes headers of any
# length, and parsing megabytes of cookies costs a fraction of a second, before
# any session is known (the web's own cookies are a few dozen bytes).
MAX_COOKIE_HEADER = 16 * 2**10


def cookies(request: Request) -> dict[str, str]:
    """The request's cookies; none when its Cookie header is absurdly long."""
    if len(request.headers.get("cookie", "")) > MAX_COOKIE_HEADER:
        return {}
    return request.cookies


def cookie_token(request: Request) -> str | None:
    raw = cookies(request).get(security.COOKIE)
    return raw if raw is not None and TOKEN_FORM.fullmatch(raw) else None


async def session(ctx: Context, request: Request) -> Session:
    """The request's session; SignedOut without a valid one (no cookie, or a
    token revoked, expired or unknown)."""
    token = cookie_token(request)
    if token is None:
        raise SignedOut()
    try:
        info = await ctx.auth(as_bearer(request, token))
    except LinesyncError as exc:
        if exc.code is Code.UNAUTHENTICATED:
            raise SignedOut() from exc
        raise
    return Session(token, info)


def check_write(request: Request, sess: Session, form_csrf: str | None) -> None:
    """A state-changing request must carry the session's CSRF token (form field
    or header) and, when it says where it comes from, come from this origin."""
    if not origin_ok(request):
        raise LinesyncError(Code.FORBIDDEN, "cross-origin request refused")
    given = request.headers.get(security.CSRF_HEADER) or form_csrf
    if not security.csrf_ok(sess.token, given):
        raise LinesyncError(
            Code.FORBIDDEN, "missing or wrong CSRF token; reload the page and try again"
        )


def origin_ok(request: Request) -> bool:
    host = request.headers.get("host", "")
    return security.same_origin(request.headers.get("origin"), request.headers.get("referer"), host)


def require_rw(sess: Session) -> None:
    if sess.read_only:
        raise LinesyncError(Code.FORBIDDEN, "this session is read-only")


async def namespace(
    ctx: Context, request: Request, sess: Session, ns_id: int, write: bool
) -> Namespace:
    """The namespace by the API's rules: 404 for one the user is no member of,
    403 for a write with a read-only session or membership."""
    _, ns = await ctx.namespace(as_bearer(request, sess.token, ns_id), write, charge=False)
    return ns
