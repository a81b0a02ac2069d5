"""HTTP handlers of API v1 (see docs/PROTOCOL.md for the contract)."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator
from email.utils import formatdate

from prometheus_client import CONTENT_TYPE_LATEST
from starlette.convertors import IntegerConvertor, register_url_convertor
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from linesync import __version__
from linesync.core import blocklist as bl
from linesync.core import paths
from linesync.core.ids import ChunkId, b64encode, pack_ids, unpack_ids
from linesync.protocol import cursor as cursors
from linesync.protocol import folding, inline, version
from linesync.protocol.errors import Code, LinesyncError
from linesync.protocol.framing import END, MAGIC, MEDIA_TYPE, FrameReader, encode_frame
from linesync.protocol.schemas import (
    CommitOp,
    CommitRequest,
    CommitResponse,
    Content,
    Entry,
    HeadResponse,
    HistoryResponse,
    IdsRequest,
    InlineChunk,
    Kind,
    ListResponse,
    MeResponse,
    MissingResponse,
    NamespaceInfo,
    PendingFile,
    PendingRequest,
    PendingResponse,
    RestoreRequest,
    UploadResponse,
)
from linesync.server import longpoll
from linesync.server.budget import reservation
from linesync.server.chunks import FLUSH_BYTES, READ_BYTES, ZERO_ID, Work
from linesync.server.context import Context
from linesync.server.folds import Fold, fold_of, is_folder_move
from linesync.server.model import Namespace, Row, Sources
from linesync.server.responses import json_response
from linesync.server.wire import delta_content, entry_out, full_content


def _int_param(request: Request, name: str, default: int, lo: int, hi: int) -> int:
    raw = request.query_params.get(name)
    if raw is None:
        return default
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 19:  # "²".isdigit() too
        raise LinesyncError(Code.BAD_REQUEST, f"{name} must be a non-negative integer")
    value = int(raw)
    if not lo <= value <= hi:
        raise LinesyncError(Code.BAD_REQUEST, f"{name} must be between {lo} and {hi}")
    return value


_SESSION = re.compile(r"[A-Za-z0-9_-]{1,32}")
OWN_MAX = 1024  # commits of its own session a long-poll sleeps through at most


def _session_param(request: Request) -> str | None:
    """A client's session (one watcher's requests): its long-poll is not woken
    by its own commits, whose answers carried their news."""
    raw = request.query_params.get("session")
    if raw is not None and not _SESSION.fullmatch(raw):
        raise LinesyncError(Code.BAD_REQUEST, "session must be 1 to 32 of A-Z a-z 0-9 _ -")
    return raw


def _session_key(device: str, request: Request) -> str | None:
    """The session, bound to the token's device: another device naming it
    cannot make this device's long-poll sleep through its commits."""
    session = _session_param(request)
    return None if session is None else f"{device}\0{session}"


def _ids(text: str, limit: int) -> list[ChunkId]:
    try:
        ids = unpack_ids(text)
    except ValueError as exc:
        raise LinesyncError(Code.BAD_REQUEST, str(exc)) from exc
    if len(ids) > limit:
        raise LinesyncError(Code.BATCH_TOO_LARGE, f"more than {limit} chunk ids")
    return ids


def _cursor_of(ns: Namespace, jid: int, nonce: str) -> str:
    return str(cursors.Cursor(ns.journal, jid, nonce))


async def healthz(ctx: Context, request: Request) -> Response:
    return json_response(
        {"status": "ok", "version": __version__, "protocol": list(version.SERVER_SPEAKS)}
    )


async def metrics(ctx: Context, request: Request) -> Response:
    await ctx.auth(request, scope="metrics")
    ctx.metrics.set("linesync_long_polls_waiting", ctx.notifier.waiting)
    return Response(ctx.metrics.render(), media_type=CONTENT_TYPE_LATEST)


async def openapi(ctx: Context, request: Request) -> Response:
    from linesync.server.openapi import schema

    return json_response(schema(ctx.config))


async def me(ctx: Context, request: Request) -> Response:
    token = await ctx.auth(request)
    assert token.role != "metrics"  # auth() refuses those here
    spaces = await ctx.meta.namespaces_of(token.user_id)
    infos = []
    for ns in spaces:
        head = await ctx.meta.head(ns.id)
        infos.append(
            NamespaceInfo(
                id=ns.id,
                name=ns.name,
                role=ns.role,
                cursor=_cursor_of(ns, head.jid, head.nonce),
                head=head.jid,
            )
        )
    answer = MeResponse(
        user=token.user, device=token.device, token_role=token.role, namespaces=infos,
        protocol=list(version.SERVER_SPEAKS),
    )  # fmt: skip
    # The server's clock, for `linesync doctor` (uvicorn's Date header is off).
    return json_response(answer, headers={"Date": formatdate(usegmt=True)})


async def head(ctx: Context, request: Request) -> Response:
    _, ns = await ctx.namespace(request, write=False)
    h = await ctx.meta.head(ns.id)
    return json_response(HeadResponse(cursor=_cursor_of(ns, h.jid, h.nonce), jid=h.jid))


async def _check_cursor(ctx: Context, ns: Namespace, text: str | None) -> cursors.Cursor:
    if text is None or text == "":
        return cursors.start(ns.journal)
    cur = cursors.parse(text)
    if cur.journal != ns.journal:
        raise LinesyncError(
            Code.CURSOR_INVALID, "the journal was reset since this cursor was issued"
        )
    if await ctx.meta.nonce(ns.id, cur.jid) != cur.nonce:
        raise LinesyncError(
            Code.CURSOR_INVALID,
            "this cursor does not match the journal (was the server restored from a backup?)",
        )
    return cur


# Blocklist ids one list page may compare (a page past it ends early, "more"):
# a diff costs CPU in proportion, and a row may hold 2^20 ids on each side.
LIST_WORK_IDS = 4 * 2**20
# Diffs of more ids than this run on a worker thread, not the event loop.
_DIFF_INLINE_IDS = 20_000
# A list page reads its files' blocklists a slice at a time: so many files, or
# so many bytes of them (a blocklist has an id per chunk), whichever comes first.
SOURCES_SLICE = 128
# Chunks a page notes the client holds, to leave them out of its inline chunks
# (best effort: past it, no more are noted), and deleted versions it looks at.
HOLDS_MAX = 2**18
HELD_TOMBSTONES = 64
# A page's inline chunks are chosen among about this many times the budget.
INLINE_CANDIDATES = 4
SOURCES_SLICE_BYTES = 64 * 2**20
# Folded folder moves (``fold=1``): at most so many a page, and journal rows read for them.
FOLD_MOVES = 16
FOLD_READ_ROWS = 8192


def _slice(rows: list[Row], start: int, skip: range) -> list[Row]:
    out: list[Row] = []
    size = 0
    for r in rows[start : start + SOURCES_SLICE]:
        if r.jid in skip or r.kind is not Kind.FILE:
            continue
        if out and size + r.size > SOURCES_SLICE_BYTES:
            break
        out.append(r)
        size += r.size
    return out


async def _diff(old: list[ChunkId], new: list[ChunkId]) -> bl.Delta:
    if len(old) + len(new) <= _DIFF_INLINE_IDS:
        return bl.diff(old, new)
    return await asyncio.to_thread(bl.diff, old, new)


async def _content_for(
    row: Row, src: Sources | None, moved_same: bool = False
) -> tuple[Content | None, list[tuple[ChunkId, tuple[ChunkId, ...]]], int]:
    """A file's content as a delta against the version the client holds (``src``:
    the same path's, or a move source's), else in full; the chunks the delta
    adds, each with a base chunk for compact inline transfer; and the number of
    blocklist ids this took (the work it cost). None: the same bytes as the
    version the client holds at the path, or (``moved_same``, §4.16) at the
    move's source."""
    if row.kind is not Kind.FILE or src is None:
        return None, [], 0
    ids = src.ids
    base, base_ids = src.base, src.base_ids
    if base is not None and base_ids is not None:
        work = len(ids) + len(base_ids)
        delta = await _diff(base_ids, ids)
        if not delta and (base.path == row.path or moved_same):
            return None, [], work  # the same bytes as the version the client holds there
        if bl.delta_size(delta) < len(ids):
            pairs = inline.replaced_bases(base_ids, delta)
            return delta_content(base.jid, delta), pairs, work
    return full_content(ids), [(c, ()) for c in dict.fromkeys(ids)], len(ids)


async def list_changes(ctx: Context, request: Request) -> Response:
    # A long-poll parks between passes (server/longpoll.py): a pass after the
    # first was woken by a commit or its deadline.
    poll: longpoll.Poll | None = request.scope.get(longpoll.KEY)
    again = poll is not None and poll.cursor is not None
    # Whoever waited must still be let in: a token revoked or expired (or a member
    # removed) meanwhile gets an error, not the news.
    token, ns = await ctx.namespace(request, write=False, charge=not again)
    cfg = ctx.config
    limit = _int_param(request, "limit", cfg.max_list_page, 1, cfg.max_list_page)
    wait = _int_param(request, "wait", 0, 0, int(cfg.max_wait_seconds)) if poll else 0
    inline = _int_param(request, "inline", 0, 0, cfg.max_inline_bytes)
    # Uploads in progress, for a client that streams: those after this one are news.
    seen = _int_param(request, "pending", -1, 0, 2**62) if "pending" in request.query_params else -1
    session = _session_key(token.device, request)
    if poll is not None and poll.cursor is not None:
        cur, deadline, own = poll.cursor, poll.deadline, poll.own
        if ns.journal != cur.journal:
            raise LinesyncError(Code.CURSOR_INVALID, "the journal was reset while waiting")
        woke = poll.woke
        if session is not None and woke is not None and len(own) < OWN_MAX:
            own.extend(jids for who, jids in woke.commits if who == session)
    else:
        cur = await _check_cursor(ctx, ns, request.query_params.get("cursor"))
        deadline = time.monotonic() + wait
        own = []  # JIDs this session committed while it waited
    event = ctx.notifier.event(ns.id)
    rows, head_jid = await ctx.meta.changes(ns.id, cur.jid, limit)
    if head_jid < cur.jid:
        raise LinesyncError(Code.CURSOR_INVALID, "cursor is ahead of the journal")
    if not again:
        ctx.metrics.lag.observe(head_jid - cur.jid)
    # Rows are the latest entry of each path: one another device wrote is news,
    # one this session wrote last is not (its commit's answer said so).
    news = any(not any(r.jid in jids for jids in own) for r in rows)
    announced = ctx.pending.current(ns.id) if seen >= 0 else None
    news = news or any(a.seq > seen and a.device != token.device for a in announced or ())
    if poll is not None and not news and deadline > time.monotonic() and not ctx.notifier.closing:
        poll.own = own
        return poll.park(event, cur, deadline)
    if own and not news:
        # The wait ran out with nothing but this session's own commits past the
        # cursor: it knows them from their answers, so nothing to send (a poll
        # from the journal's start, begun as a first upload, would otherwise
        # bring that whole upload back).
        return json_response(ListResponse(entries=[], cursor=str(cur)))
    fold = request.query_params.get("fold") == "1"
    page = await _page(ctx, ns, cur, rows, head_jid, limit, inline, fold=fold)
    if announced is not None:  # (none: left out, as on every answer to a watcher)
        page.pending = [
            PendingFile(seq=a.seq, path=a.path, size=a.size)
            for a in ctx.pending.current(ns.id)
            if a.device != token.device
        ] or None
    return json_response(page)


async def _folds(ctx: Context, ns: Namespace, rows: list[Row], bound: int) -> dict[int, Fold]:
    """The moves among ``rows`` (a list page's, complete up to ``bound``) whose
    entries are all in the page, by JID. A folder move's costs a few journal
    rows read, a bounded number in all."""
    out: dict[int, Fold] = {}
    # A file or symlink move: its source's tombstone is the next entry.
    for row, nxt in zip(rows, rows[1:], strict=False):
        source_gone = (nxt.jid, nxt.path, nxt.live) == (row.jid + 1, row.moved_from, False)
        if source_gone and row.kind is not Kind.DIRECTORY:
            out[row.jid] = Fold(nxt.jid, folding.implied_count(0), None)
    budget = FOLD_READ_ROWS
    moves = [i for i, row in enumerate(rows) if is_folder_move(row)]
    for i in moves[:FOLD_MOVES]:
        row = rows[i]
        # Its last entry: the source folder's tombstone, unless written over since.
        end = next((r.jid for r in rows[i + 1 :] if r.path == row.moved_from), None)
        if end is None or end > bound or end - row.jid > budget:
            continue
        budget -= end - row.jid
        f = fold_of(row, await ctx.meta.journal(ns.id, row.jid, end))
        if f is not None and f.end == end:
            out[row.jid] = f
    return out


async def _page(
    ctx: Context,
    ns: Namespace,
    cur: cursors.Cursor,
    rows: list[Row],
    head_jid: int,
    limit: int,
    inline: int,
    skip: range = range(0),
    fold: bool = False,
) -> ListResponse:
    """A list answer for ``rows`` (the changes after ``cur``, at most ``limit``),
    leaving out the entries whose JIDs are in ``skip``; with ``fold``, leaving
    out those a folder move in it implies."""
    cfg = ctx.config
    bound = head_jid if len(rows) < limit else rows[-1].jid  # the page is complete up to here
    folds = await _folds(ctx, ns, rows, bound) if fold else {}
    folded = 0  # rows up to this JID are implied by a folded move's entry
    entries: list[Entry] = []
    work = Work(cfg.max_recompress_bytes)
    inline_chunks: list[InlineChunk] = []
    candidates: list[tuple[ChunkId, tuple[ChunkId, ...]]] = []
    want = 0  # the candidates' bytes, about
    page_bytes = 0
    page_work = 0
    more = len(rows) == limit
    last = rows[-1].jid if rows else head_jid
    sources: dict[int, Sources] = {}
    client_holds: set[ChunkId] = set()  # the chunks of the versions the client holds
    listed = 0  # rows this page took
    for i, row in enumerate(rows):
        if row.jid <= folded:  # (taken with the move's entry, before the page's bounds)
            last, listed = row.jid, i + 1
            continue
        if page_bytes > cfg.max_list_bytes or page_work > LIST_WORK_IDS:
            more = True  # the rest comes on the next page
            break
        last = row.jid
        listed = i + 1
        if row.jid in skip:
            continue
        if row.jid not in sources and row.kind is Kind.FILE:
            # A slice at a time: the bounds above are checked between slices.
            sources = await ctx.meta.sources(ns.id, _slice(rows, i, skip), cur.jid)
        src = sources.get(row.jid)
        if src is not None and src.base_ids is not None and len(client_holds) < HOLDS_MAX:
            client_holds.update(src.base_ids)
        content, pairs, cost = await _content_for(row, src, fold)
        page_work += cost
        entries.append(entry_out(row, content))
        if (f := folds.get(row.jid)) is not None:
            entries[-1].implied, entries[-1].digest, folded = f.implied, f.digest, f.end
        page_bytes += 200 + len(row.path) + (len(content.ids or "") if content else 0)
        if pairs and want < INLINE_CANDIDATES * inline:
            candidates.extend(pairs)
            # About what they weigh (a delta's chunks: a few lines each).
            want += row.size if content is not None and content.ids else len(pairs) * 8192
    if candidates:
        # Not inline: what the client holds already, in a file this page changes
        # or deletes (files swapped, a file moved and edited at once: a new file
        # and a tombstone), as it finds them there. A few deletions looked at.
        gone = [
            r.base_jid
            for r in rows[:listed]
            if r.kind is Kind.TOMBSTONE and 0 < r.base_jid <= cur.jid
        ]
        for jid in gone[:HELD_TOMBSTONES]:
            if len(client_holds) >= HOLDS_MAX:
                break
            client_holds.update(await ctx.meta.blocklist(ns.id, jid) or ())
        candidates = [p for p in candidates if p[0] not in client_holds]
    if candidates:  # in page order, loaded a group at a time, until the budget is spent
        inline_chunks = await ctx.chunks.inline_out(ns.id, candidates, inline, work)
    if not more:
        last = head_jid
    nonce = await ctx.meta.nonce(ns.id, last) or "0"
    return ListResponse(
        entries=entries, cursor=_cursor_of(ns, last, nonce), more=more, chunks=inline_chunks
    )


def _check_journal(ns: Namespace, journal: str | None) -> None:
    if journal is not None and journal != ns.journal:
        raise LinesyncError(
            Code.CURSOR_INVALID, "the journal was reset since this client last listed it"
        )


async def commit(ctx: Context, request: Request) -> Response:
    token, ns = await ctx.namespace(request, write=True)
    req = await ctx.decode(request, CommitRequest)
    _check_journal(ns, req.journal)
    since = await _check_cursor(ctx, ns, req.since) if req.since is not None else None
    if len(req.ops) > ctx.config.max_batch_paths:
        raise LinesyncError(
            Code.BATCH_TOO_LARGE, f"more than {ctx.config.max_batch_paths} paths in one commit"
        )
    if len(req.chunks) > ctx.config.max_inline_chunks:
        raise LinesyncError(
            Code.BATCH_TOO_LARGE,
            f"more than {ctx.config.max_inline_chunks} inline chunks in one commit",
        )
    if req.chunks:
        intake = ctx.chunks.intake(ns.id, ctx.config.max_inline_decoded)
        await intake.add(ctx.chunks.inline_frames(req.chunks))
        await intake.finish()
    session = _session_key(token.device, request)
    outcome = await ctx.meta.commit(ns.id, req.ops, token.device, ctx.config.limits, session)
    for r in outcome.results:
        ctx.metrics.inc("linesync_commit_paths_total", status=r.status)
    if any(r.status == "ok" for r in outcome.results):
        ctx.pending.settled(ns.id, (r.path for r in outcome.results if r.status == "ok"))
    changes = None
    if since is not None:
        # The list the client would ask for next, in the same answer, less the
        # entries this commit wrote: the client knows them from the results.
        limit = ctx.config.max_list_page
        rows, head_jid = await ctx.meta.changes(ns.id, since.jid, limit)
        own = range(outcome.head_before + 1, outcome.head + 1)
        changes = await _page(ctx, ns, since, rows, head_jid, limit, 0, own)
    if changes is not None:  # its cursor says all the top-level one would
        return json_response(CommitResponse(results=outcome.results, changes=changes))
    return json_response(
        CommitResponse(
            results=outcome.results,
            cursor=_cursor_of(ns, outcome.head, outcome.nonce),
            head_before=outcome.head_before,
        )
    )


async def restore(ctx: Context, request: Request) -> Response:
    token, ns = await ctx.namespace(request, write=True)
    req = await ctx.decode(request, RestoreRequest)
    _check_journal(ns, req.journal)
    if paths.normalize(req.path) != req.path:
        raise LinesyncError(Code.BAD_PATH, "path is not NFC-normalized")
    old = await ctx.meta.entry(ns.id, req.jid)
    if old is None:
        raise LinesyncError(Code.NOT_FOUND, f"no entry {req.jid} in this namespace")
    if old.kind is Kind.TOMBSTONE:
        raise LinesyncError(Code.BAD_REQUEST, f"entry {req.jid} is a deletion")
    if old.path != req.path and not req.copy:
        raise LinesyncError(
            Code.BAD_REQUEST,
            f"entry {req.jid} is a version of {old.path!r}, not of {req.path!r} "
            "(ask for a copy to put another path's version there)",
            version_of=old.path,
        )
    op = CommitOp(
        path=req.path,
        kind=old.kind,
        base_jid=req.base_jid,
        size=old.size,
        mtime_ns=old.mtime_ns,
        exec=old.exec,
        target=old.target,
        content=Content(base=old.jid, edits=[]) if old.kind is Kind.FILE else None,
    )
    outcome = await ctx.meta.commit(ns.id, [op], token.device, ctx.config.limits)
    return json_response(outcome.results[0])


async def announce(ctx: Context, request: Request) -> Response:
    """An upload about to start, for the namespace's other devices to stream."""
    token, ns = await ctx.namespace(request, write=True)
    length = request.headers.get("content-length", "")
    ctx.pending.check_room(int(length) if length.isdigit() and len(length) < 19 else 0)
    req = await ctx.decode(request, PendingRequest)
    if paths.normalize(req.path) != req.path:
        raise paths.PathError("path is not NFC-normalized")
    limits = ctx.config.limits
    if req.size > limits.max_file_size:
        raise LinesyncError(Code.FILE_TOO_LARGE, f"a file is at most {limits.max_file_size} bytes")
    ids = _ids(req.ids, limits.max_blocklist)
    if not ids:
        raise LinesyncError(Code.BAD_REQUEST, "an upload in progress has chunks")
    a = ctx.pending.announce(ns.id, req.path, req.size, b"".join(ids), token.device)
    ctx.notifier.publish(ns.id)
    return json_response(PendingResponse(seq=a.seq, path=a.path, size=a.size))


async def pending_ids(ctx: Context, request: Request) -> Response:
    """An upload in progress, with its blocklist."""
    _, ns = await ctx.namespace(request, write=False)
    a = ctx.pending.get(ns.id, request.path_params["seq"])
    if a is None:
        raise LinesyncError(Code.NOT_FOUND, "no such upload in progress (committed or dropped)")
    return json_response(PendingResponse(seq=a.seq, path=a.path, size=a.size, ids=b64encode(a.ids)))


async def missing(ctx: Context, request: Request) -> Response:
    _, ns = await ctx.namespace(request, write=True)
    req = await ctx.decode(request, IdsRequest)
    ids = _ids(req.ids, ctx.config.max_ids_per_request)
    absent = await ctx.meta.missing(ns.id, ids)
    return json_response(MissingResponse(missing=pack_ids(c for c in ids if c in absent)))


async def upload(ctx: Context, request: Request) -> Response:
    _, ns = await ctx.namespace(request, write=True)
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype != MEDIA_TYPE:
        raise LinesyncError(Code.UNSUPPORTED_MEDIA_TYPE, f"expected {MEDIA_TYPE}")
    cfg = ctx.config
    # What an upload holds at once: a frame being read, and records not yet written.
    await reservation(request).take(cfg.max_chunk + 2 * FLUSH_BYTES)
    reader = FrameReader(max_payload=cfg.max_chunk)
    intake = ctx.chunks.intake(ns.id, cfg.max_request_decoded)
    count = 0
    async for piece in ctx.stream(request, cfg.max_upload_body):
        frames = reader.feed(piece)
        count += len(frames)
        if count > cfg.max_ids_per_request:
            raise LinesyncError(Code.BATCH_TOO_LARGE, "too many chunks in one upload")
        if any(f.chunk_id == ZERO_ID for f in frames):
            raise LinesyncError(Code.BAD_FRAMING, "an uploaded chunk must carry its id")
        await intake.add(frames)
    reader.close()
    stored, received = await intake.finish()
    return json_response(UploadResponse(stored=stored, bytes=received))


async def fetch(ctx: Context, request: Request) -> Response:
    _, ns = await ctx.namespace(request, write=False)
    req = await ctx.decode(request, IdsRequest)
    ids = _ids(req.ids, ctx.config.max_ids_per_request)
    bases: list[ChunkId | None] = [None] * len(ids)
    if req.bases is not None:
        raw_bases = _ids(req.bases, ctx.config.max_ids_per_request)
        if len(raw_bases) != len(ids):
            raise LinesyncError(Code.BAD_REQUEST, "bases must pair up with ids")
        bases = [None if b == bytes(32) else b for b in raw_bases]
    frames = await ctx.chunks.fetch(
        ns.id, ids, bases, ctx.config.max_download_body, available=req.available
    )
    # What a download holds at once: a group read from the packs, bases and their
    # prepared dictionaries.
    work = ctx.config.max_recompress_bytes if req.bases is not None else 0
    await reservation(request).take(2 * READ_BYTES + 2 * work)

    async def body() -> AsyncIterator[bytes]:
        yield MAGIC
        async for f in frames:
            yield encode_frame(f)
        yield END

    return StreamingResponse(body(), media_type=MEDIA_TYPE)


async def entry(ctx: Context, request: Request) -> Response:
    _, ns = await ctx.namespace(request, write=False)
    jid = request.path_params["jid"]
    row = await ctx.meta.entry(ns.id, jid) if jid < 2**62 else None
    if row is None:
        raise LinesyncError(Code.NOT_FOUND, "no such entry in this namespace")
    content = None
    if row.kind is Kind.FILE:
        ids = await ctx.meta.blocklist(ns.id, row.jid)
        assert ids is not None
        content = full_content(ids)
    return json_response(entry_out(row, content))


async def history(ctx: Context, request: Request) -> Response:
    _, ns = await ctx.namespace(request, write=False)
    path = request.query_params.get("path")
    if path is None:
        raise LinesyncError(Code.BAD_REQUEST, "path is required")
    if paths.normalize(path) != path:
        raise LinesyncError(Code.BAD_PATH, "path is not NFC-normalized")
    limit = _int_param(request, "limit", 100, 1, 1000)
    before = _int_param(request, "before", 2**62, 1, 2**62)
    rows = await ctx.meta.history(ns.id, path, before, limit)
    entries = [entry_out(r) for r in rows]
    for e, r in zip(entries, rows, strict=True):
        e.committed = r.created
    return json_response(HistoryResponse(entries=entries))


class _Id(IntegerConvertor):
    """An id in a path: at most 19 digits. A longer one matches no route (404)
    instead of reaching int(), which refuses more than 4300 digits (a 500)."""

    regex = "[0-9]{1,19}"


register_url_convertor("id", _Id())
NS = "/v1/ns/{ns:id}"
ROUTES = [
    ("GET", "/healthz", "healthz", healthz),
    ("GET", "/metrics", "metrics", metrics),
    ("GET", "/v1/openapi.json", "openapi", openapi),
    ("GET", "/v1/me", "me", me),
    ("GET", NS + "/head", "head", head),
    ("GET", NS + "/list", "list", list_changes),
    ("POST", NS + "/commit", "commit", commit),
    ("POST", NS + "/restore", "restore", restore),
    ("POST", NS + "/pending", "announce", announce),
    ("GET", NS + "/pending/{seq:id}", "pending", pending_ids),
    ("POST", NS + "/chunks/missing", "missing", missing),
    ("POST", NS + "/chunks", "upload", upload),
    ("POST", NS + "/chunks/get", "fetch", fetch),
    ("GET", NS + "/entries/{jid:id}", "entry", entry),
    ("GET", NS + "/history", "history", history),
]
