"""COPY and MOVE within a namespace. A MOVE is one move op in the journal
(a folder moves whole, as a linesync client's folder move does); a COPY
writes new entries that reference the same chunks (nothing is uploaded or
stored again). Overwrite: T replaces what is at the destination (a folder
there is deleted first), F refuses with 412."""

from __future__ import annotations

from starlette.responses import Response

from linesync.core import paths
from linesync.protocol.schemas import CommitOp, Content, Kind
from linesync.server.dav import rules, tree
from linesync.server.dav.base import Call, conflict_error, now_ns
from linesync.server.dav.rules import DavError
from linesync.server.dav.writes import first_failure, parent_folder, remove_tree
from linesync.server.model import Row


async def _prepare(call: Call, move: bool) -> tuple[Row, str, Row | None, str]:
    """The source, the destination path, what is there now, and the depth."""
    h = call.request.headers
    dst = rules.destination(h.get("destination"), h.get("host"))
    src = await call.live(call.path)
    if src is None:
        raise DavError(404, "no such file or folder")
    depth = rules.depth(h.get("depth"))
    if src.kind is Kind.DIRECTORY and (depth == "1" or (move and depth != "infinity")):
        raise DavError(400, "Depth must be infinity (or 0 for a COPY of a folder)")
    if dst.namespace != call.ns.name:
        raise DavError(502, "the destination is in another namespace (copy it from a client)")
    if call.path == "" or dst.path == "":
        raise DavError(403, "the namespace's root cannot be moved, copied or replaced")
    if dst.path == call.path:
        raise DavError(403, "the source and the destination are the same")
    if paths.is_under(dst.path, call.path):
        raise DavError(409, "a folder cannot go inside itself")
    if paths.is_under(call.path, dst.path):
        raise DavError(403, "the destination holds the source (they overlap)")
    there = await call.live(dst.path)
    if there is not None and not rules.overwrite(h.get("overwrite")):
        raise DavError(412, "the destination exists and Overwrite is F")
    await parent_folder(call, dst.path)
    await call.check_preconditions(src)
    if move:
        call.check_locks(changed=[paths.parent(call.path)], tree_paths=[call.path])
    if there is not None:
        call.check_locks(changed=[paths.parent(dst.path)], tree_paths=[dst.path])
    else:
        call.check_locks(changed=[dst.path, paths.parent(dst.path)])
    return src, dst.path, there, depth


async def _clear(call: Call, src: Row, dst: str, there: Row | None) -> int:
    """Make room at ``dst``; the base JID an op writing there needs. A file
    replacing a file is one op (no deletion first)."""
    if there is not None:
        if there.kind is Kind.FILE and src.kind is Kind.FILE:
            return there.jid
        await remove_tree(call, there)
    before = await call.entry_at(dst)
    return before.jid if before is not None else 0


async def move(call: Call) -> Response:
    src, dst, there, _ = await _prepare(call, move=True)
    base = await _clear(call, src, dst, there)
    op = CommitOp(
        path=dst, kind=src.kind, base_jid=base, size=src.size if src.kind is Kind.FILE else 0,
        mtime_ns=src.mtime_ns, exec=src.exec, move_from=src.path, move_base=src.jid,
    )  # fmt: skip
    (result,) = await call.commit([op])
    if result.status != "ok":
        raise conflict_error(result)
    call.state.props.copy(call.ns.id, src.path, dst, move=True)
    call.state.locks.drop_under(call.ns.id, src.path)
    return Response(status_code=204 if there is not None else 201)


def _copy_op(row: Row, path: str, base: int) -> CommitOp:
    if row.kind is Kind.FILE:  # the same blocklist, by reference to the version copied
        return CommitOp(
            path=path, kind=Kind.FILE, base_jid=base, size=row.size, mtime_ns=now_ns(),
            exec=row.exec, content=Content(base=row.jid, edits=[]),
        )  # fmt: skip
    return CommitOp(path=path, kind=row.kind, base_jid=base, mtime_ns=now_ns(), target=row.target)


async def copy(call: Call) -> Response:
    src, dst, there, depth = await _prepare(call, move=False)
    meta, ns_id = call.ctx.meta, call.ns.id
    rows: list[Row] = []
    if src.kind is Kind.DIRECTORY and depth == "infinity":
        rows = await tree.subtree(meta, ns_id, src.path, tree.MAX_TREE)
        if len(rows) > tree.MAX_TREE:
            raise DavError(507, f"the folder holds more than {tree.MAX_TREE} entries: "
                                "copy it with a linesync client")  # fmt: skip
    base = await _clear(call, src, dst, there)
    # What is at each destination path now (a tombstone: the base its op
    # needs), read in one go; past twice the copy's size, looked up one by one.
    before: dict[str, int] = {}
    complete = True
    if rows:
        found = await tree.subtree(meta, ns_id, dst, 2 * len(rows), deleted=True)
        before = {r.path: r.jid for r in found}
        complete = len(found) <= 2 * len(rows)
    ops = [_copy_op(src, dst, base)]
    for r in rows:
        path = paths.rebase(r.path, src.path, dst)
        if path not in before and not complete:
            now = await call.entry_at(path)
            before[path] = now.jid if now is not None else 0
        ops.append(_copy_op(r, path, before.get(path, 0)))
    failed = first_failure(await call.commit(ops))
    if failed is not None:
        raise conflict_error(failed)
    call.state.props.copy(call.ns.id, src.path, dst)
    return Response(status_code=204 if there is not None else 201)
