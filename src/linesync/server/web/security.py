"""Sessions, CSRF and origin checks of the web interface: pure, no I/O.

A session is a device token (``web-<8 hex>``) kept in the ``linesync_session``
cookie; nothing about it is stored beyond the token itself, so any server
process sharing the database accepts it, and revoking the token signs the
browser out. The CSRF token of a session is derived from it
(HMAC-SHA256 keyed by the session token over a fixed label): nothing to
store, and it changes with the session.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from urllib.parse import urlsplit

COOKIE = "linesync_session"
# Before sign-in: a random value in a cookie and in the sign-in form (double
# submit), so that another site cannot sign a browser in as someone else.
PRE_COOKIE = "linesync_signin"
CSRF_FIELD = "csrf"
CSRF_HEADER = "x-csrf-token"
_CSRF_LABEL = b"linesync web csrf v1"
SESSION_SECONDS = 30 * 24 * 3600
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

# Sent with every page of the web interface.
PAGE_HEADERS = {
    "content-security-policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    ),
    "x-content-type-options": "nosniff",
    "referrer-policy": "same-origin",
    "x-frame-options": "DENY",
    "cache-control": "no-store",
}


def csrf_token(session: str) -> str:
    """The CSRF token of a session (or of a sign-in form's random value)."""
    return hmac.new(session.encode(), _CSRF_LABEL, hashlib.sha256).hexdigest()


def csrf_ok(session: str, given: str | None) -> bool:
    """Is ``given`` the CSRF token of ``session``? (Compared in constant time.)"""
    if not given or not session:
        return False
    return hmac.compare_digest(csrf_token(session).encode(), given.encode("utf-8", "replace"))


def new_device() -> str:
    """A device name for a new web session."""
    return f"web-{secrets.token_hex(4)}"


def new_pre_session() -> str:
    return secrets.token_urlsafe(24)


def same_origin(origin: str | None, referer: str | None, host: str) -> bool:
    """May a state-changing request with these headers go on? The Origin header
    (else the Referer) must name this host (and port) when present; ``"null"``
    (an opaque origin) never matches. The scheme is not compared: behind a TLS
    proxy the server may see plain http. Neither header: allowed (old clients
    and privacy settings leave both out; the CSRF token still guards)."""
    claimed = origin if origin is not None else referer
    if claimed is None:
        return True
    if claimed == "null":
        return False
    parts = urlsplit(claimed)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return False
    return parts.netloc.lower() == host.lower()


def cookie_header(name: str, value: str, max_age: int, secure: bool, http_only: bool = True) -> str:
    """A Set-Cookie value: SameSite=Strict, Path=/, HttpOnly, Secure over https.
    ``max_age`` 0 deletes the cookie."""
    parts = [f"{name}={value}", "Path=/", f"Max-Age={max(0, max_age)}", "SameSite=Strict"]
    if http_only:
        parts.append("HttpOnly")
    if secure:
        parts.append("Secure")
    return "; ".join(parts)


def session_seconds(now: float, token_expires: float | None, wanted: int = SESSION_SECONDS) -> int:
    """How long a new session lasts: ``wanted``, but never past the expiry of the
    token signed in with (a session must not outlive its credentials)."""
    if token_expires is None:
        return wanted
    return max(0, min(wanted, int(token_expires - now)))
