"""LOCK and UNLOCK (WebDAV class 2). A LOCK on an unmapped URL makes an
empty file there (RFC 4918 §7.3), committed like any PUT; a LOCK without a
body refreshes the lock whose token its If header submits. UNLOCK is for
the user who took the lock, or the namespace's owner."""

from __future__ import annotations

from starlette.responses import Response

from linesync.core import paths
from linesync.server.dav import rules, xmlbody
from linesync.server.dav.base import Call, conflict_error, now_ns
from linesync.server.dav.locks import Lock
from linesync.server.dav.reads import XML, read_body
from linesync.server.dav.rules import DavError
from linesync.server.dav.writes import file_op, parent_folder


def _answer(call: Call, lk: Lock, status: int, token_header: bool) -> Response:
    root = call.href(lk.root, lk.root == "" or lk.depth == "infinity")
    body = xmlbody.lock_answer(
        xmlbody.activelock(lk.scope, lk.depth, lk.owner, lk.timeout, lk.token, root)
    )
    headers = {"lock-token": f"<{lk.token}>"} if token_header else {}
    return Response(body, status_code=status, media_type=XML, headers=headers)


async def lock(call: Call) -> Response:
    body = await read_body(call)
    h = call.request.headers
    seconds = rules.timeout(h.get("timeout"))
    row = await call.live(call.path)
    if not body.strip():
        if not call.if_lists:
            raise DavError(400, "a lock refresh names its lock in an If header")
        held = [
            lk
            for t in call.submitted
            if (lk := call.state.locks.get(t)) is not None
            and lk.ns_id == call.ns.id
            and lk.covers(call.path)
        ]
        if not held:
            raise DavError(412, "no lock of this resource is named in the If header",
                           condition="lock-token-matches-request-uri")  # fmt: skip
        await call.check_preconditions(row)
        call.state.locks.refresh(held[0], seconds)
        return _answer(call, held[0], 200, token_header=False)
    info = xmlbody.parse_lockinfo(body)
    depth = rules.depth(h.get("depth"))
    if depth == "1":
        raise DavError(400, "a lock's Depth is 0 or infinity")
    await call.check_preconditions(row)
    if row is None:
        await parent_folder(call, call.path)
        call.check_locks(changed=[paths.parent(call.path)])
    lk = call.state.locks.create(
        call.ns.id, call.path, depth, info.scope, info.owner, seconds, call.token.user_id
    )
    if row is None:
        before = await call.entry_at(call.path)
        op = file_op(call.path, before.jid if before is not None else 0, [], 0, now_ns())
        try:
            (result,) = await call.commit([op])
        except BaseException:
            call.state.locks.remove(lk.token)
            raise
        if result.status != "ok":
            call.state.locks.remove(lk.token)
            raise conflict_error(result)
    return _answer(call, lk, 201 if row is None else 200, token_header=True)


async def _owner(call: Call) -> bool:
    """Does the namespace belong to the user asking? Its owner may end any
    lock in it (RFC 4918 §6.3 leaves that to the server): a member who left,
    or who locked the whole namespace for a day, would otherwise keep every
    WebDAV writer out until the lock expired or the server restarted."""
    rec = await call.ctx.meta.namespace_record(call.ns.id)
    return rec is not None and rec.owner == call.token.user


async def unlock(call: Call) -> Response:
    token = rules.lock_token_header(call.request.headers.get("lock-token"))
    lk = call.state.locks.get(token)
    if lk is None or lk.ns_id != call.ns.id or not lk.covers(call.path):
        raise DavError(409, "no such lock on this resource",
                       condition="lock-token-matches-request-uri")  # fmt: skip
    if lk.user_id != call.token.user_id and not await _owner(call):
        raise DavError(403, "this lock was taken by another user")
    call.state.locks.remove(token)
    return Response(status_code=204)
