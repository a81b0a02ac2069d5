"""What every web handler shares: templates, the page wrapper (security
headers, errors as pages, signed-out browsers sent to sign in) and form
reading with CSRF checks."""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode

import jinja2
from starlette.datastructures import FormData, UploadFile
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.templating import Jinja2Templates
from starlette.types import Message

from linesync.core import paths
from linesync.protocol.errors import Code, LinesyncError
from linesync.server.context import Context
from linesync.server.stores.urls import transient
from linesync.server.web import auth, security, tree
from linesync.server.web.auth import Session, SignedOut

log = logging.getLogger("linesync.server.web")

HERE = Path(__file__).parent
templates = Jinja2Templates(
    env=jinja2.Environment(loader=jinja2.FileSystemLoader(str(HERE / "templates")), autoescape=True)
)
templates.env.filters["size"] = tree.human_size
templates.env.filters["when"] = tree.when
templates.env.filters["when_ns"] = lambda ns: tree.when(ns / 1e9) if ns else ""

Handler = Callable[[Context, Request], Awaitable[Response]]

# Form fields (not files) of one request at most, bytes of one field (in an
# upload), and bytes of a form without files.
MAX_FIELDS = 64
MAX_FIELD_BYTES = 64 * 2**10
MAX_FORM_BYTES = 64 * 2**10


def wants_json(request: Request) -> bool:
    return "application/json" in request.headers.get("accept", "")


def render(
    request: Request,
    name: str,
    sess: Session | None,
    status: int = 200,
    **context: Any,
) -> Response:
    response: Response = templates.TemplateResponse(
        request,
        name,
        {"session": sess, "csrf": sess.csrf if sess else "", **context},
        status_code=status,
    )
    return response


def back(url: str, **query: str) -> Response:
    """To ``url`` (a page of ours) after a form: 303, so a reload never posts again."""
    tail = urlencode({k: v for k, v in query.items() if v})
    return RedirectResponse(f"{url}?{tail}" if tail else url, status_code=303)


def page(ctx: Context, handler: Handler) -> Callable[[Request], Awaitable[Response]]:
    """A web endpoint: security headers on every answer, errors as pages (or
    JSON for scripts), a browser without a session sent to sign in (pages) or
    answered 401 (actions)."""

    async def endpoint(request: Request) -> Response:
        try:
            response = await handler(ctx, request)
        except SignedOut:
            if request.method in security.SAFE_METHODS:
                response = back("/web/signin", next=_next_of(request))
            else:
                response = _error(request, 401, "please sign in again")
            if security.COOKIE in auth.cookies(request):
                # A revoked or expired session: the browser forgets it, so that
                # it stops counting as a failed sign-in of its address at every
                # click (the sign-in page it is sent to would count it again).
                secure = request.url.scheme == "https"
                response.headers.append(
                    "set-cookie", security.cookie_header(security.COOKIE, "", 0, secure)
                )
        except LinesyncError as exc:
            response = _error(request, exc.code.status, exc.message, exc)
        except paths.PathError as exc:
            response = _error(request, 400, f"bad path: {exc}")
        except HTTPException as exc:  # a malformed form body
            response = _error(request, exc.status_code, str(exc.detail))
        except ClientDisconnect:
            response = Response(status_code=499)
        except BaseException as exc:
            if not transient(exc):
                raise
            log.warning("%s %s: store unavailable: %r", request.method, request.url.path, exc)
            response = _error(request, 503, "the server's database is unavailable; try again")
        for k, v in security.PAGE_HEADERS.items():
            response.headers.setdefault(k, v)
        return response

    return endpoint


def body_timeout(handler: Handler) -> Handler:
    """``handler`` with its request's body under the server's idle timeout, as
    ``Context.stream`` reads one: for a handler that lets Starlette read the
    body (a multipart upload), which would otherwise wait for a stalled body
    for ever, holding a connection the connection cap cannot take back."""

    async def timed(ctx: Context, request: Request) -> Response:
        receive = request.receive

        async def receive_timed() -> Message:
            try:
                async with asyncio.timeout(ctx.config.body_idle_timeout):
                    return await receive()
            except TimeoutError:
                raise LinesyncError(Code.REQUEST_TIMEOUT, "request body stalled") from None

        return await handler(ctx, Request(request.scope, receive_timed))

    return timed


def _next_of(request: Request) -> str:
    """Where to go after sign-in: this page (a path of ours, never another site)."""
    target = request.url.path
    if request.url.query:
        target += "?" + request.url.query
    return target if target.startswith("/web/") and not target.startswith("//") else ""


def _error(
    request: Request, status: int, message: str, exc: LinesyncError | None = None
) -> Response:
    headers: dict[str, str] = {}
    if exc is not None and exc.code is Code.RATE_LIMITED:
        headers["retry-after"] = str(math.ceil(float(exc.detail.get("retry_after", 1))))
    if wants_json(request) or request.method not in security.SAFE_METHODS and _is_script(request):
        return JSONResponse({"error": message}, status_code=status, headers=headers)
    resp = render(request, "error.html", None, status=status, message=message, status_code=status)
    resp.headers.update(headers)
    return resp


def _is_script(request: Request) -> bool:
    return request.headers.get("x-requested-with", "") == "linesync-web"


async def small_form(ctx: Context, request: Request) -> FormData:
    """A urlencoded form of at most MAX_FORM_BYTES, read with the API's body
    limits (declared and streamed length, stalls): Starlette's own parser would
    take a urlencoded body of any size."""
    ctype = request.headers.get("content-type", "").partition(";")[0].strip().lower()
    if ctype != "application/x-www-form-urlencoded":
        raise LinesyncError(Code.UNSUPPORTED_MEDIA_TYPE, "expected a form")
    raw = bytearray()
    async for piece in ctx.stream(request, MAX_FORM_BYTES):
        raw += piece
    try:
        pairs = parse_qsl(raw.decode("utf-8"), keep_blank_values=True, max_num_fields=MAX_FIELDS)
    except (UnicodeDecodeError, ValueError) as exc:
        raise LinesyncError(Code.BAD_REQUEST, f"malformed form: {exc}") from exc
    items: list[tuple[str, str | UploadFile]] = list(pairs)
    return FormData(items)


async def form(ctx: Context, request: Request, sess: Session) -> FormData:
    """A form without files, CSRF and origin checked."""
    data = await small_form(ctx, request)
    csrf = data.get(security.CSRF_FIELD)
    auth.check_write(request, sess, csrf if isinstance(csrf, str) else None)
    return data


def field(data: FormData, name: str, default: str | None = None) -> str:
    value = data.get(name, default)
    if not isinstance(value, str):
        raise LinesyncError(Code.BAD_REQUEST, f"the form lacks {name!r}")
    return value


def int_field(data: FormData, name: str) -> int:
    raw = field(data, name)
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 18:
        raise LinesyncError(Code.BAD_REQUEST, f"{name} must be a number")
    return int(raw)


def int_query(request: Request, name: str) -> int:
    raw = request.query_params.get(name, "")
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 18:
        raise LinesyncError(Code.BAD_REQUEST, f"{name} must be a number")
    return int(raw)
