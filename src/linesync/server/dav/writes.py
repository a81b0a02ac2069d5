"""Writing handlers: PUT, MKCOL, DELETE and PROPPATCH. Each change is a
commit in the namespace's journal (a new version with history, seen by
linesync clients at once), with the JID the path has now as its base."""

from __future__ import annotations

from starlette.responses import Response

from linesync.core import blocklist as bl
from linesync.core import paths
from linesync.core.ids import ChunkId, pack_ids
from linesync.protocol.schemas import CommitOp, CommitResult, Content, Kind
from linesync.server.budget import reservation
from linesync.server.chunks import FLUSH_BYTES
from linesync.server.dav import content, rules, tree, xmlbody
from linesync.server.dav.base import Call, conflict_error, now_ns
from linesync.server.dav.reads import LIVE, XML, read_body
from linesync.server.dav.rules import DavError
from linesync.server.model import Row

TRIES = 5  # commits a PUT tries when other writers keep changing the path


async def parent_folder(call: Call, path: str) -> None:
    """409 unless ``path``'s parent is a folder (RFC 4918 §9.7.1, §9.3.1)."""
    row = await call.live(paths.parent(path))
    if row is None or row.kind is not Kind.DIRECTORY:
        raise DavError(409, "the parent folder does not exist")


def _mtime(call: Call) -> int:
    """The client's modification time when it tells one (X-OC-Mtime, seconds,
    as ownCloud and Nextcloud clients send it), else now."""
    raw = call.request.headers.get("x-oc-mtime", "")
    if raw.isascii() and raw.isdigit() and len(raw) < 12:
        return int(raw) * 10**9
    return now_ns()


def file_op(path: str, base_jid: int, ids: list[ChunkId], size: int, mtime: int,
            exec_: bool = False) -> CommitOp:  # fmt: skip
    return CommitOp(
        path=path, kind=Kind.FILE, base_jid=base_jid, size=size,
        mtime_ns=mtime, exec=exec_, content=Content(ids=pack_ids(ids)),
    )  # fmt: skip


async def put(call: Call) -> Response:
    if call.path == "":
        raise DavError(405, "the namespace's root is a folder")
    h = call.request.headers
    if "content-range" in h:
        raise DavError(400, "partial PUT (Content-Range) is not supported")
    row = await call.live(call.path)
    if row is not None and row.kind is Kind.DIRECTORY:
        raise DavError(405, "a folder cannot be written with PUT")
    await parent_folder(call, call.path)
    await call.check_preconditions(row)
    created = row is None
    call.check_locks(changed=[call.path] + ([paths.parent(call.path)] if created else []))
    cfg = call.ctx.config
    await reservation(call.request).take(cfg.max_chunk + 2 * FLUSH_BYTES + 2 * content.BATCH)
    limit = cfg.limits.max_file_size
    f, size, text = await content.spool(call.ctx, call.ctx.stream(call.request, limit))
    try:
        ids = await content.store(call.ctx, call.ns.id, f, text)
    finally:
        content.close_quietly(f)
    mtime = _mtime(call)
    checked = row.jid if row is not None else 0  # the version the conditions held for
    for _ in range(TRIES):
        base = await call.entry_at(call.path)
        now = base if base is not None and base.live else None
        if now is not None and now.jid != checked:
            # Someone wrote meanwhile: the request's conditions again, against that.
            if now.kind is Kind.DIRECTORY:
                raise DavError(409, "a folder was made at this path meanwhile")
            await call.check_preconditions(now)
        base_jid = base.jid if base is not None else 0
        op = file_op(call.path, base_jid, ids, size, mtime, now.exec if now else False)
        (result,) = await call.commit([op])
        if result.status == "ok":
            etag = rules.etag(Row(jid=result.jid or 0, path=call.path, kind=Kind.FILE,
                                  chash=bl.content_hash(ids)))  # fmt: skip
            return Response(status_code=201 if created else 204, headers={"etag": etag})
        if result.reason != "changed":
            raise conflict_error(result)
        checked = now.jid if now is not None else 0
    raise DavError(409, "the file keeps changing; try again")


async def mkcol(call: Call) -> Response:
    h = call.request.headers
    if h.get("content-length", "0") != "0" or "transfer-encoding" in h:
        raise DavError(415, "MKCOL takes no body")
    if call.path == "":
        raise DavError(405, "the namespace's root exists")
    base = await call.entry_at(call.path)
    if base is not None and base.live:
        raise DavError(405, "something exists at this path already")
    await parent_folder(call, call.path)
    await call.check_preconditions(None)
    call.check_locks(changed=[call.path, paths.parent(call.path)])
    op = CommitOp(path=call.path, kind=Kind.DIRECTORY, base_jid=base.jid if base else 0,
                  mtime_ns=now_ns())  # fmt: skip
    (result,) = await call.commit([op])
    if result.status != "ok":
        if result.reason == "changed":
            raise DavError(405, "something was made at this path meanwhile")
        raise conflict_error(result)
    return Response(status_code=201)


async def remove_tree(call: Call, row: Row) -> None:
    """Delete ``row`` (a folder with everything in it), as one commit when the
    commit rules allow (deepest entries first)."""
    for _ in range(TRIES):
        rows = [row]
        if row.kind is Kind.DIRECTORY:
            rows += await tree.subtree(call.ctx.meta, call.ns.id, row.path, tree.MAX_TREE)
            if len(rows) - 1 > tree.MAX_TREE:
                raise DavError(403, f"the folder holds more than {tree.MAX_TREE} entries: "
                                    "delete it with a linesync client")  # fmt: skip
        rows.sort(key=lambda r: r.path, reverse=True)
        ops = [CommitOp(path=r.path, kind=Kind.TOMBSTONE, base_jid=r.jid) for r in rows]
        results = await call.commit(ops)
        if all(r.status == "ok" for r in results):
            call.state.props.drop(call.ns.id, row.path)
            call.state.locks.drop_under(call.ns.id, row.path)
            return
        now = await call.live(row.path)
        if now is None:
            return
        row = now
    raise DavError(409, "the folder keeps changing while it is deleted; try again")


async def delete(call: Call) -> Response:
    if call.path == "":
        raise DavError(403, "the namespace's root cannot be deleted")
    row = await call.live(call.path)
    if row is None:
        raise DavError(404, "no such file or folder")
    await call.check_preconditions(row)
    call.check_locks(changed=[paths.parent(call.path)], tree_paths=[call.path])
    await remove_tree(call, row)
    return Response(status_code=204)


async def proppatch(call: Call) -> Response:
    changes = xmlbody.parse_proppatch(await read_body(call))
    row = await call.live(call.path)
    if row is None:
        raise DavError(404, "no such file or folder")
    await call.check_preconditions(row)
    call.check_locks(changed=[call.path])
    protected = [c.name for c in changes if c.name in LIVE]
    href = call.href(row.path, row.kind is Kind.DIRECTORY)
    if protected:
        others = [xmlbody.tag(c.name) for c in changes if c.name not in LIVE]
        body = xmlbody.response(href, [(403, [xmlbody.tag(n) for n in protected]), (424, others)])
    else:
        call.state.props.apply(call.ns.id, row.path, [(c.name, c.value) for c in changes])
        body = xmlbody.response(href, [(200, [xmlbody.tag(c.name) for c in changes])])
    return Response(xmlbody.HEAD + body + xmlbody.TAIL, status_code=207, media_type=XML)


def first_failure(results: list[CommitResult]) -> CommitResult | None:
    """The first op that did not go through, if any."""
    return next((r for r in results if r.status != "ok"), None)
