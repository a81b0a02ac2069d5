"""Sign-in and sign-out, the namespaces page, devices and tokens, sharing."""

from __future__ import annotations

import re
import time

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from linesync.protocol.errors import Code, LinesyncError
from linesync.server.context import Context
from linesync.server.model import NamespaceRecord, TokenRecord, TokenRole
from linesync.server.stores.base import StoreError
from linesync.server.web import auth, security
from linesync.server.web.auth import Session, SignedOut
from linesync.server.web.common import back, field, form, render, small_form

_PRE = re.compile(r"[A-Za-z0-9_-]{32}")
_DEVICE = re.compile(r"[A-Za-z0-9._-]{1,64}")
_USER = re.compile(r"[^\x00-\x1f\x7f]{1,128}")
# Web sessions a user has at once (signing in past it ends the oldest), and
# tokens the web makes while the user has so many active ones.
MAX_SESSIONS = 20
MAX_TOKENS = 200
# What the sharing page may say after a change was refused (by its code).
_SHARE_ERRORS = {
    "owner": "Name another user than the owner.",
    "no-user": "There is no user by that name.",
    "failed": "Access could not be changed; try again.",
}
# Expiry choices of the token form, in days (0: never).
EXPIRY_DAYS = (7, 30, 90, 365, 0)


def _active(rec: TokenRecord, now: float) -> bool:
    return rec.revoked is None and (rec.expires is None or rec.expires > now)


def _secure(request: Request) -> bool:
    return request.url.scheme == "https"


def _safe_next(raw: str | None) -> str:
    """A page of ours to go to after sign-in (never another site)."""
    if raw and raw.startswith("/web/") and "\\" not in raw and not raw.startswith("//"):
        return raw
    return "/web/"


async def _maybe_session(ctx: Context, request: Request) -> Session | None:
    try:
        return await auth.session(ctx, request)
    except SignedOut:
        return None


async def signin_page(ctx: Context, request: Request) -> Response:
    if await _maybe_session(ctx, request) is not None:
        return RedirectResponse(_safe_next(request.query_params.get("next")), status_code=303)
    resp = _signin_form(request, request.query_params.get("next", ""), "", "")
    if security.COOKIE in auth.cookies(request):  # a session that ended: forget it
        resp.headers.append(
            "set-cookie", security.cookie_header(security.COOKIE, "", 0, _secure(request))
        )
    return resp


def _signin_form(request: Request, nxt: str, user: str, error: str, status: int = 200) -> Response:
    # The same value while it lasts: two sign-in tabs both work.
    pre = auth.cookies(request).get(security.PRE_COOKIE, "")
    if not _PRE.fullmatch(pre):
        pre = security.new_pre_session()
    resp = render(
        request, "signin.html", None, status=status,
        pre_csrf=security.csrf_token(pre), next=_safe_next(nxt), user=user, error=error,
    )  # fmt: skip
    resp.headers.append(
        "set-cookie", security.cookie_header(security.PRE_COOKIE, pre, 3600, _secure(request))
    )
    return resp


async def signin(ctx: Context, request: Request) -> Response:
    """User name and a token as password; a fresh session token on success."""
    data = await small_form(ctx, request)
    user = data.get("user")
    token = data.get("token")
    nxt = data.get("next")
    nxt = nxt if isinstance(nxt, str) else ""
    if not auth.origin_ok(request):
        raise LinesyncError(Code.FORBIDDEN, "cross-origin request refused")
    pre = auth.cookies(request).get(security.PRE_COOKIE, "")
    given = data.get(security.CSRF_FIELD)
    if not security.csrf_ok(pre, given if isinstance(given, str) else None):
        return _signin_form(request, nxt, "", "The form expired; please sign in again.", 403)
    if not isinstance(user, str) or not isinstance(token, str) or not user or not token:
        return _signin_form(request, nxt, "", "Enter your user name and a token.", 400)
    token = token.strip()
    address = request.client.host if request.client else ""
    info = None
    if token.isascii():
        try:  # counts a failure itself (and refuses an address past its allowance)
            info = await ctx.auth(auth.as_bearer(request, token))
        except LinesyncError as exc:
            if exc.code is Code.RATE_LIMITED:
                return _signin_form(request, nxt, user, exc.message, 429)
            if exc.code is Code.FORBIDDEN:  # a metrics-only token
                return _signin_form(request, nxt, user, "This token cannot sign in.", 403)
            if exc.code is not Code.UNAUTHENTICATED:
                raise
    else:
        ctx.auth_failures.allow(address)
    if info is not None and info.user != user:  # a real token, of someone else
        ctx.auth_failures.allow(address)
        ctx.metrics.inc("linesync_auth_failures_total")
        info = None
    if info is None:
        return _signin_form(request, nxt, user, "Wrong user name or token.", 401)
    expires = None
    now = time.time()
    records = await ctx.meta.list_tokens(info.user)
    for rec in records:
        if rec.id == info.token_id:
            expires = rec.expires
    sessions = [r for r in records if r.device.startswith("web-") and _active(r, now)]
    # A user's web sessions are bounded: the oldest ends when one more begins.
    for old in sorted(sessions, key=lambda r: r.created)[
        : max(0, len(sessions) + 1 - MAX_SESSIONS)
    ]:
        await ctx.meta.revoke_tokens(info.user, old.device)
    seconds = security.session_seconds(now, expires)
    if seconds <= 0:
        return _signin_form(request, nxt, user, "This token is about to expire.", 401)
    role: TokenRole = "ro" if info.role == "ro" else "rw"
    new = await ctx.meta.create_token(info.user, security.new_device(), role, now + seconds)
    resp = RedirectResponse(_safe_next(nxt), status_code=303)
    resp.headers.append(
        "set-cookie", security.cookie_header(security.COOKIE, new, seconds, _secure(request))
    )
    resp.headers.append(
        "set-cookie", security.cookie_header(security.PRE_COOKIE, "", 0, _secure(request))
    )
    return resp


def _signed_out(request: Request) -> Response:
    resp = back("/web/signin")
    resp.headers.append(
        "set-cookie", security.cookie_header(security.COOKIE, "", 0, _secure(request))
    )
    return resp


async def signout(ctx: Context, request: Request) -> Response:
    sess = await auth.session(ctx, request)
    await form(ctx, request, sess)
    await ctx.meta.revoke_tokens(sess.info.user, sess.info.device)
    return _signed_out(request)


async def home(ctx: Context, request: Request) -> Response:
    sess = await auth.session(ctx, request)
    spaces = await ctx.meta.namespaces_of(sess.info.user_id)
    return render(request, "home.html", sess, spaces=spaces)


# -- devices and tokens --------------------------------------------------------


async def _tokens_page(
    ctx: Context, request: Request, sess: Session, new: str = "", error: str = "", status: int = 200
) -> Response:
    now = time.time()
    records = [
        r
        for r in await ctx.meta.list_tokens(sess.info.user)
        # Ended web sessions are no devices to manage.
        if r.revoked is None
        and not (r.device.startswith("web-") and r.expires is not None and r.expires <= now)
    ]
    rows = [
        {
            "device": r.device,
            "role": r.role,
            "created": r.created,
            "expires": r.expires,
            "expired": r.expires is not None and r.expires <= now,
            "current": r.id == sess.info.token_id,
        }
        for r in sorted(records, key=lambda r: (r.device, r.created))
    ]
    return render(request, "tokens.html", sess, status=status, tokens=rows, new_token=new,
                  error=error, expiry_days=EXPIRY_DAYS)  # fmt: skip


async def tokens(ctx: Context, request: Request) -> Response:
    sess = await auth.session(ctx, request)
    return await _tokens_page(ctx, request, sess)


async def token_create(ctx: Context, request: Request) -> Response:
    """A new token, shown once in this answer (never in a URL, never again)."""
    sess = await auth.session(ctx, request)
    data = await form(ctx, request, sess)
    auth.require_rw(sess)
    device = field(data, "device").strip()
    if not _DEVICE.fullmatch(device):
        return await _tokens_page(
            ctx, request, sess, error="A device name is 1 to 64 of A-Z a-z 0-9 . _ -", status=400
        )
    role: TokenRole = "ro" if field(data, "role", "rw") == "ro" else "rw"
    raw_days = field(data, "days", "30")
    if not raw_days.isdigit() or int(raw_days) not in EXPIRY_DAYS:
        raise LinesyncError(Code.BAD_REQUEST, "pick an expiry from the list")
    days = int(raw_days)
    expires = time.time() + days * 86400 if days else None
    now = time.time()
    active = [r for r in await ctx.meta.list_tokens(sess.info.user) if _active(r, now)]
    if len(active) >= MAX_TOKENS:
        return await _tokens_page(
            ctx, request, sess, status=409,
            error=f"You have {MAX_TOKENS} tokens: revoke some before you make another.",
        )  # fmt: skip
    new = await ctx.meta.create_token(sess.info.user, device, role, expires)
    return await _tokens_page(ctx, request, sess, new=new, status=201)


async def token_revoke(ctx: Context, request: Request) -> Response:
    """Revoke a device's tokens; one's own session's device signs out."""
    sess = await auth.session(ctx, request)
    data = await form(ctx, request, sess)
    device = field(data, "device")
    if device != sess.info.device:
        auth.require_rw(sess)
    await ctx.meta.revoke_tokens(sess.info.user, device)
    if device == sess.info.device:
        return _signed_out(request)
    return back("/web/tokens")


# -- sharing -------------------------------------------------------------------


async def _record(ctx: Context, ns_id: int) -> NamespaceRecord:
    """The namespace's record (the caller checked that the user is a member)."""
    rec = await ctx.meta.namespace_record(ns_id)
    if rec is None:
        raise LinesyncError(Code.NOT_FOUND, "namespace not found")
    return rec


async def share_page(ctx: Context, request: Request) -> Response:
    sess = await auth.session(ctx, request)
    ns = await auth.namespace(ctx, request, sess, request.path_params["ns"], write=False)
    rec = await _record(ctx, ns.id)
    # Only a message of ours: the query string is anyone's to write (a link
    # from elsewhere must not put its words on the page).
    error = _SHARE_ERRORS.get(request.query_params.get("error", ""), "")
    owner = rec.owner == sess.info.user
    return render(request, "share.html", sess, ns=ns, rec=rec, owner=owner, error=error)


async def share(ctx: Context, request: Request) -> Response:
    """Give a user access (rw or ro), or take it away: the owner only."""
    sess = await auth.session(ctx, request)
    data = await form(ctx, request, sess)
    auth.require_rw(sess)
    ns = await auth.namespace(ctx, request, sess, request.path_params["ns"], write=False)
    rec = await _record(ctx, ns.id)
    if rec.owner != sess.info.user:
        raise LinesyncError(Code.FORBIDDEN, "only the namespace's owner can share it")
    user = field(data, "user").strip()
    action = field(data, "role", "rw")
    url = f"/web/ns/{ns.id}/share"
    if not _USER.fullmatch(user) or user == rec.owner:
        return back(url, error="owner")
    if action not in ("rw", "ro", "none"):
        raise LinesyncError(Code.BAD_REQUEST, "role is rw, ro or none")
    try:
        await ctx.meta.share(rec.name, user, None if action == "none" else action)  # type: ignore[arg-type]
    except StoreError as exc:
        return back(url, error="no-user" if str(exc).startswith("no user") else "failed")
    return back(url)
