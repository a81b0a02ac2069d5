"""The HTTP and WebDAV header rules the handlers apply, as pure functions:
request paths and Destination URLs, Depth, Overwrite, Range, ETags, dates,
Timeout and the ``If:`` header (RFC 4918 §10.4). No I/O."""

from __future__ import annotations

import datetime as dt
import email.utils
import mimetypes
import re
from dataclasses import dataclass
from urllib.parse import quote, unquote_to_bytes, urlsplit

from linesync.core import paths
from linesync.protocol.schemas import Kind
from linesync.server.model import Row

PREFIX = "/dav"
MAX_TIMEOUT = 24 * 3600  # seconds a lock lasts at most (a client refreshes it)
DEFAULT_TIMEOUT = 3600


class DavError(Exception):
    """A request refused with ``status``; ``condition``: an RFC 4918 precondition
    element (DAV: local name) for an error body; ``headers``: more headers."""

    def __init__(
        self,
        status: int,
        message: str,
        condition: str | None = None,
        headers: dict[str, str] | None = None,
        href: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.condition = condition
        self.headers = headers or {}
        self.href = href


@dataclass(frozen=True, slots=True)
class Target:
    """What a /dav URL names: a namespace (None: the list of namespaces) and a
    path in it ("" for its root)."""

    namespace: str | None
    path: str


def _segment(raw: str) -> str:
    try:
        text = unquote_to_bytes(raw).decode("utf-8")
    except UnicodeDecodeError:
        raise DavError(400, "the URL is not valid UTF-8 once percent-decoded") from None
    if "/" in text:
        raise DavError(400, "a name holds an encoded '/'")
    return text


def parse_target(raw_path: str) -> Target:
    """The namespace and path of a request path as sent (still percent-encoded):
    ``/dav/NAMESPACE/a/b``; names are NFC-normalized and checked by the path
    rules (PathError for a name they refuse)."""
    raw_path = raw_path.split("?", 1)[0].split("#", 1)[0]
    if raw_path == PREFIX or raw_path == PREFIX + "/":
        return Target(None, "")
    if not raw_path.startswith(PREFIX + "/"):
        raise DavError(404, "not a WebDAV URL (they start with /dav/)")
    parts = raw_path[len(PREFIX) + 1 :].split("/")
    if parts and parts[-1] == "":
        parts.pop()  # a collection's trailing slash
    names = [_segment(p) for p in parts]
    if not names or not names[0]:
        raise DavError(400, "no namespace in the URL")
    rest = names[1:]
    if not rest:
        return Target(names[0], "")
    return Target(names[0], paths.normalize("/".join(rest)))


def destination(header: str | None, host: str | None) -> Target:
    """The Destination header of a COPY or MOVE: an absolute URL on this server
    (or an absolute path)."""
    if not header:
        raise DavError(400, "COPY and MOVE need a Destination header")
    url = urlsplit(header)
    if url.scheme and url.scheme not in ("http", "https"):
        raise DavError(400, "Destination is not an http URL")
    if url.netloc and host and url.netloc.lower() != host.lower():
        raise DavError(502, "Destination is on another server")
    return parse_target(url.path)


def href(namespace: str, path: str, collection: bool) -> str:
    """The URL path of a resource, percent-encoded."""
    out = f"{PREFIX}/{quote(namespace, safe='')}/"
    if path:
        out += quote(path, safe="/")
        if collection:
            out += "/"
    return out


def depth(header: str | None, default: str = "infinity") -> str:
    """'0', '1' or 'infinity'."""
    if header is None:
        return default
    value = header.strip().lower()
    if value not in ("0", "1", "infinity"):
        raise DavError(400, "Depth must be 0, 1 or infinity")
    return value


def overwrite(header: str | None) -> bool:
    if header is None:
        return True
    value = header.strip().upper()
    if value not in ("T", "F"):
        raise DavError(400, "Overwrite must be T or F")
    return value == "T"


_RANGE = re.compile(r"bytes=(\d{0,19})-(\d{0,19})")


def byte_range(header: str | None, size: int) -> tuple[int, int] | None:
    """The single byte range (start, end exclusive) a Range header asks for;
    None: the whole entity (no header, one we ignore such as several ranges).
    DavError 416 for a range past the end."""
    if header is None:
        return None
    m = _RANGE.fullmatch(header.strip().replace(" ", ""))
    if m is None:
        return None  # several ranges or another unit: the whole entity (RFC 9110 §14.2)
    first, last = m.group(1), m.group(2)
    if not first and not last:
        return None
    if not first:  # the last N bytes
        n = int(last)
        if n == 0:
            raise DavError(416, "empty suffix range", headers={"content-range": f"bytes */{size}"})
        return max(0, size - n), size
    start = int(first)
    end = min(int(last) + 1, size) if last else size
    if last and int(last) < start:
        return None  # invalid: ignored
    if start >= size:
        raise DavError(
            416, "range starts past the end", headers={"content-range": f"bytes */{size}"}
        )
    return start, end


def etag(row: Row) -> str:
    """A strong ETag: a file's content hash (the same bytes, the same tag), a
    folder's JID."""
    if row.kind is Kind.FILE and row.chash is not None:
        return f'"{row.chash.hex()[:40]}"'
    return f'"j{row.jid}"'


def http_date(ns: int) -> str:
    return email.utils.formatdate(ns / 1e9, usegmt=True)


def iso_date(seconds: float) -> str:
    when = dt.datetime.fromtimestamp(seconds, dt.UTC).replace(microsecond=0)
    return when.isoformat().replace("+00:00", "Z")


def content_type(name: str) -> str:
    guessed, _ = mimetypes.guess_type(name, strict=False)
    return guessed or "application/octet-stream"


def timeout(header: str | None) -> int:
    """Seconds a new or refreshed lock lasts: the first value of a Timeout
    header we can use, within MAX_TIMEOUT."""
    if not header:
        return DEFAULT_TIMEOUT
    for item in header.split(","):
        item = item.strip()
        if item.lower() == "infinite":
            return MAX_TIMEOUT
        if item.lower().startswith("second-") and item[7:].isdigit() and len(item) < 30:
            return max(1, min(int(item[7:]), MAX_TIMEOUT))
    return DEFAULT_TIMEOUT


def lock_token_header(header: str | None) -> str:
    """The token of an UNLOCK's Lock-Token header (``<token>``)."""
    value = (header or "").strip()
    if not (value.startswith("<") and value.endswith(">")) or len(value) < 3:
        raise DavError(400, "UNLOCK needs a Lock-Token header: <token>")
    return value[1:-1]


# -- If: (RFC 4918 §10.4) -------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Condition:
    negated: bool
    token: str | None = None  # a state token (lock token, or DAV:no-lock)
    etag: str | None = None  # an entity tag, as written (quoted, maybe W/)


@dataclass(frozen=True, slots=True)
class IfList:
    resource: str | None  # a tagged list's URL path (percent-encoded); None: the request's
    conditions: tuple[Condition, ...]


# An If header holds at most so many lists, and conditions in all: each tagged
# list costs a lookup of its resource, and the HTTP server takes headers of
# any length (a megabyte of tagged lists cost seconds of work).
MAX_IF_LISTS = 64
MAX_IF_CONDITIONS = 256

_IF_TOKEN = re.compile(
    r"\s*(?:<(?P<tag>[^>]*)>\s*)?\(\s*(?P<body>[^)]*)\)",
)
_COND = re.compile(r'\s*(?P<not>Not\s*)?(?:<(?P<token>[^>]*)>|\[(?P<etag>(?:W/)?"[^"]*")\])', re.I)


def parse_if(header: str | None) -> list[IfList]:
    """The lists of an If header; DavError 400 when it cannot be parsed."""
    if header is None:
        return []
    if len(header) > 64 * 1024:
        raise DavError(400, "the If header is too long")
    out: list[IfList] = []
    count = 0
    pos, text = 0, header.strip()
    tag: str | None = None
    while pos < len(text):
        m = _IF_TOKEN.match(text, pos)
        if m is None:
            raise DavError(400, "malformed If header")
        if m.group("tag") is not None:
            tag = urlsplit(m.group("tag")).path or m.group("tag")
        elif not out:
            tag = None
        conds: list[Condition] = []
        body = m.group("body")
        cpos = 0
        while body[cpos:].strip():
            c = _COND.match(body, cpos)
            if c is None:
                raise DavError(400, "malformed If header condition")
            conds.append(Condition(bool(c.group("not")), c.group("token"), c.group("etag")))
            cpos = c.end()
            count += 1
            if count > MAX_IF_CONDITIONS:
                raise DavError(400, f"the If header has more than {MAX_IF_CONDITIONS} conditions")
        if not conds:
            raise DavError(400, "an If header list is empty")
        out.append(IfList(tag, tuple(conds)))
        if len(out) > MAX_IF_LISTS:
            raise DavError(400, f"the If header has more than {MAX_IF_LISTS} lists")
        pos = m.end()
        while pos < len(text) and text[pos].isspace():
            pos += 1
    return out


def submitted_tokens(lists: list[IfList]) -> set[str]:
    """Every lock token the If header names (what the client holds)."""
    return {c.token for lst in lists for c in lst.conditions if c.token and not c.negated}


def etag_matches(given: str, current: str | None) -> bool:
    if current is None:
        return False
    return given.removeprefix("W/") == current.removeprefix("W/")


def match_header(header: str | None, current: str | None) -> bool:
    """If-Match / If-None-Match: does the header name the current ETag (``*``:
    any existing resource)?"""
    assert header is not None
    items = [i.strip() for i in header.split(",") if i.strip()]
    if "*" in items:
        return current is not None
    return any(etag_matches(i, current) for i in items)
