"""Reading handlers: OPTIONS, PROPFIND, GET and HEAD.

A PROPFIND answer streams: the folder's children are rendered as they are
read, a page at a time (``tree.children``), so a folder of any size costs a
bounded amount of memory. Depth infinity is refused (RFC 4918 §9.1 allows
it: DAV:propfind-finite-depth)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from html import escape

from starlette.responses import Response, StreamingResponse

from linesync.protocol.schemas import Kind
from linesync.server.budget import reservation
from linesync.server.chunks import READ_BYTES
from linesync.server.dav import content, rules, tree, xmlbody
from linesync.server.dav.base import Call
from linesync.server.dav.rules import DavError
from linesync.server.dav.xmlbody import DAV, Propfind, dav, tag, text
from linesync.server.model import Namespace, Row

ALLOW = "OPTIONS, GET, HEAD, PUT, DELETE, MKCOL, COPY, MOVE, PROPFIND, PROPPATCH, LOCK, UNLOCK"
XML = "application/xml; charset=utf-8"

LIVE = tuple(
    dav(n)
    for n in (
        "resourcetype",
        "getcontentlength",
        "getlastmodified",
        "getetag",
        "creationdate",
        "displayname",
        "getcontenttype",
        "supportedlock",
        "lockdiscovery",
    )
)


def options() -> Response:
    return Response(
        status_code=200,
        headers={"dav": "1, 2", "allow": ALLOW, "ms-author-via": "DAV", "content-length": "0"},
    )


def live_value(call: Call, row: Row, name: str) -> str | None:
    """A live property of ``row``, rendered; None where it has none."""
    local = name[len(DAV) + 2 :] if name.startswith("{" + DAV + "}") else None
    folder = row.kind is Kind.DIRECTORY
    if local == "resourcetype":
        return tag(name, "<D:collection/>" if folder else "")
    if local == "displayname":
        return tag(name, text(row.path.rpartition("/")[2] if row.path else call.ns.name))
    if local == "getetag" and row.jid:
        return tag(name, text(rules.etag(row)))
    if local == "getlastmodified" and row.jid:
        return tag(name, rules.http_date(row.mtime_ns))
    if local == "creationdate" and row.jid:
        return tag(name, rules.iso_date(row.created or row.mtime_ns / 1e9))
    if local == "getcontentlength" and not folder:
        return tag(name, str(row.size))
    if local == "getcontenttype" and not folder:
        return tag(name, rules.content_type(row.path))
    if local == "supportedlock":
        return xmlbody.SUPPORTEDLOCK
    if local == "lockdiscovery":
        return tag(name, activelocks(call, row.path))
    return None


def activelocks(call: Call, path: str) -> str:
    return "".join(
        xmlbody.activelock(
            lk.scope,
            lk.depth,
            lk.owner,
            lk.timeout,
            lk.token,
            call.href(lk.root, lk.root == "" or lk.depth == "infinity"),
        )  # fmt: skip
        for lk in call.state.locks.covering(call.ns.id, path)
    )


def render(call: Call, row: Row, pf: Propfind) -> str:
    href = call.href(row.path, row.kind is Kind.DIRECTORY)
    dead = call.state.props.get(call.ns.id, row.path)
    if pf.kind == "propname":
        names = [n for n in LIVE if live_value(call, row, n) is not None] + list(dead)
        return xmlbody.response(href, [(200, [tag(n) for n in names])])
    if pf.kind == "allprop":
        found = [v for n in LIVE if (v := live_value(call, row, n)) is not None]
        found += [xmlbody.element(e) for e in dead.values()]
        return xmlbody.response(href, [(200, found)])
    ok: list[str] = []
    missing: list[str] = []
    for n in pf.names:
        value = live_value(call, row, n)
        if value is None and n in dead:
            value = xmlbody.element(dead[n])
        if value is None:
            missing.append(tag(n))
        else:
            ok.append(value)
    return xmlbody.response(href, [(200, ok), (404, missing)])


async def read_body(call: Call) -> bytes:
    out = bytearray()
    async for piece in call.ctx.stream(call.request, xmlbody.MAX_BODY):
        out += piece
    return bytes(out)


async def propfind(call: Call) -> Response:
    depth = rules.depth(call.request.headers.get("depth"))
    if depth == "infinity":
        raise DavError(403, "Depth: infinity is not served; ask with Depth 1",
                       condition="propfind-finite-depth")  # fmt: skip
    pf = xmlbody.parse_propfind(await read_body(call))
    row = await call.live(call.path)
    if row is None:
        raise DavError(404, "no such file or folder")
    meta, ns_id = call.ctx.meta, call.ns.id

    async def body() -> AsyncIterator[bytes]:
        yield (xmlbody.HEAD + render(call, row, pf)).encode()
        if depth == "1" and row.kind is Kind.DIRECTORY:
            batch: list[str] = []
            async for child in tree.children(meta, ns_id, row.path):
                batch.append(render(call, child, pf))
                if len(batch) >= 100:
                    yield "".join(batch).encode()
                    batch = []
            if batch:
                yield "".join(batch).encode()
        yield xmlbody.TAIL.encode()

    return StreamingResponse(body(), status_code=207, media_type=XML)


def namespaces_answer(names: list[Namespace], depth: str) -> Response:
    """PROPFIND on /dav/: the user's namespaces, as folders."""
    out = [xmlbody.HEAD]
    folder = tag(dav("resourcetype"), "<D:collection/>")
    out.append(xmlbody.response(rules.PREFIX + "/", [(200, [folder])]))
    if depth != "0":
        for ns in names:
            props = [folder, tag(dav("displayname"), text(ns.name))]
            out.append(xmlbody.response(rules.href(ns.name, "", True), [(200, props)]))
    out.append(xmlbody.TAIL)
    return Response("".join(out), status_code=207, media_type=XML)


async def get(call: Call, head: bool) -> Response:
    row = await call.live(call.path)
    if row is None:
        raise DavError(404, "no such file or folder")
    await call.check_preconditions(row)
    if row.kind is Kind.DIRECTORY:
        return _listing(call, row, head)
    if row.kind is not Kind.FILE:
        raise DavError(404, "a symbolic link has no content over WebDAV")
    headers = {
        "etag": rules.etag(row),
        "last-modified": rules.http_date(row.mtime_ns),
        "accept-ranges": "bytes",
    }
    ctype = rules.content_type(row.path)
    wanted = rules.byte_range(call.request.headers.get("range"), row.size)
    if_range = call.request.headers.get("if-range")
    if wanted is not None and if_range is not None and if_range.strip() != headers["etag"]:
        wanted = None  # the client's copy is stale: the whole file
    start, end = wanted if wanted is not None else (0, row.size)
    status = 200
    if wanted is not None:
        status = 206
        headers["content-range"] = f"bytes {start}-{end - 1}/{row.size}"
    headers["content-length"] = str(end - start)
    if head or start == end:
        return Response(b"", status_code=status, headers=headers, media_type=ctype)
    ids = await call.ctx.meta.blocklist(call.ns.id, row.jid)
    if ids is None:
        raise DavError(404, "no such file")
    await reservation(call.request).take(2 * READ_BYTES)  # a group read, and its bytes
    return StreamingResponse(
        content.read(call.ctx, call.ns.id, ids, start, end), status_code=status, headers=headers,
        media_type=ctype,
    )  # fmt: skip


def _listing(call: Call, row: Row, head: bool) -> Response:
    """A folder asked for with GET: a plain HTML list of its entries."""
    if head:
        return Response(b"", media_type="text/html; charset=utf-8")
    meta, ns_id = call.ctx.meta, call.ns.id
    title = escape(f"{call.ns.name}/{row.path}")

    async def body() -> AsyncIterator[bytes]:
        yield (f"<!doctype html><meta charset=utf-8><title>{title}</title>"
               f"<h1>{title}</h1><ul>").encode()  # fmt: skip
        async for child in tree.children(meta, ns_id, row.path):
            folder = child.kind is Kind.DIRECTORY
            name = escape(child.path.rpartition("/")[2]) + ("/" if folder else "")
            link = escape(call.href(child.path, folder))
            yield f'<li><a href="{link}">{name}</a></li>'.encode()
        yield b"</ul>"

    return StreamingResponse(body(), media_type="text/html; charset=utf-8")
