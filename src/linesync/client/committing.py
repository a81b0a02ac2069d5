"""Committing local changes: batches of ops with deltas and inline chunks,
the chunks the server lacks, and what each answer means for the index."""

from __future__ import annotations

import asyncio
from collections.abc import Collection, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor

import msgspec

from linesync.client import planner as pl
from linesync.client.base import (
    CACHE_MAX_FILE,
    CARRIED,
    COMMIT_BATCH,
    COMMIT_BODY_BYTES,
    COMMIT_CONTENT_BYTES,
    INLINE_BUDGET,
    UPLOAD_BATCH_BYTES,
    UPLOAD_BATCH_FRAMES,
    UPLOAD_BATCH_RAW,
    UPLOAD_CONCURRENCY,
    EngineBase,
    SyncResult,
    is_folder,
    log,
    node_of,
)
from linesync.client.bigfiles import STREAM_MIN, FileChunks, cut_file, size_of
from linesync.client.localfs import Changed
from linesync.client.model import Node, PathState, Stat, Version
from linesync.client.tasks import gather_all
from linesync.client.transfer import InlineRoom, prepare_file, resolve_content, split
from linesync.core import blocklist as bl
from linesync.core import paths
from linesync.core.ids import ChunkId, unpack_ids
from linesync.protocol import codec, folding
from linesync.protocol.errors import Code, LinesyncError
from linesync.protocol.framing import Frame
from linesync.protocol.schemas import (
    CommitOp,
    CommitResponse,
    CommitResult,
    InlineChunk,
    Kind,
)

_json = msgspec.json.Encoder()


# New files in a commit batch above this many bytes are uploaded before it.
UPLOAD_AHEAD_BYTES = 256 * 2**10
# An upload request's payload when other devices stream the file (see _upload_ahead).
STREAM_BATCH_BYTES = 2 * 2**20
MISSING_BATCH = 16384  # chunk ids per "which do you lack" request


def _new_file(op: pl.Upload | pl.DeleteRemote | pl.MoveRemote) -> bool:
    return isinstance(op, pl.Upload) and op.node.kind is Kind.FILE and op.base_jid == 0


class Committing(EngineBase):
    # -- remote changes ----------------------------------------------------------

    async def _commit(
        self, ops: list[pl.Upload | pl.DeleteRemote | pl.MoveRemote], result: SyncResult
    ) -> None:
        def order(op: pl.Upload | pl.DeleteRemote | pl.MoveRemote) -> tuple[int, int, str]:
            if isinstance(op, pl.DeleteRemote):
                return (2, -op.path.count("/"), op.path)
            path = op.dst if isinstance(op, pl.MoveRemote) else op.path
            if op.node.kind is not Kind.DIRECTORY and is_folder(self.index.state(path).remote_node):
                return (3, path.count("/"), path)  # a folder becomes a file: after its children go
            return (0 if op.node.kind is Kind.DIRECTORY else 1, path.count("/"), path)

        pending = sorted(ops, key=order)
        for _ in range(len(pending)):  # each batch takes at least one op
            if not pending:
                break
            batch, pending = pending[:COMMIT_BATCH], pending[COMMIT_BATCH:]
            try:
                pending = await self._commit_batch(batch, result) + pending
            finally:
                self.chunks.clear()  # (what the uploads kept for the cache)

    async def _commit_batch(
        self, ops: list[pl.Upload | pl.DeleteRemote | pl.MoveRemote], result: SyncResult
    ) -> list[pl.Upload | pl.DeleteRemote | pl.MoveRemote]:
        """Commit ``ops``, as many as one request's body may hold; the rest
        (past COMMIT_BODY_BYTES of ops, or COMMIT_CONTENT_BYTES of the files
        they upload) are given back for the next batch."""
        wire: list[CommitOp] = []
        chunks: list[InlineChunk] = []
        bodies: dict[int, Mapping[ChunkId, bytes]] = {}
        kept: list[pl.Upload | pl.DeleteRemote | pl.MoveRemote] = []
        room = InlineRoom(bytes=INLINE_BUDGET)
        # Many new files' bytes: their chunks go up first (those the server
        # lacks), then one commit, rather than a commit the server refuses for
        # missing chunks, the upload, and the commit again.
        ahead = sum(op.node.size for op in ops if isinstance(op, pl.Upload) and _new_file(op)) > (
            UPLOAD_AHEAD_BYTES
        )
        size = content_bytes = 0
        on_server = self._on_server(ops)
        for n, op in enumerate(ops):
            own_room = InlineRoom(bytes=0) if ahead and _new_file(op) else room
            try:
                built = self._wire_op(op, own_room, on_server)
            except (Changed, OSError) as exc:
                result.problems.append(f"{getattr(op, 'path', '')}: {exc}; retried next round")
                continue
            if built is None:
                continue
            commit_op, inl, body, left = built
            if own_room is room:
                room = left
            size += len(_json.encode(commit_op)) + sum(len(c.data) for c in inl)
            chunks.extend(inl)
            bodies[len(wire)] = body
            wire.append(commit_op)
            kept.append(op)
            if isinstance(op, pl.Upload) and op.node.size < STREAM_MIN:
                content_bytes += op.node.size
            full = size >= COMMIT_BODY_BYTES or content_bytes >= COMMIT_CONTENT_BYTES
            if full and n + 1 < len(ops):
                rest = ops[n + 1 :]
                break
        else:
            rest = []
        if not wire:
            return rest
        try:
            if ahead:
                await self._upload_ahead(
                    [bodies[i] for i, op in enumerate(kept) if _new_file(op)], on_server
                )
            await self._send_batch(wire, chunks, bodies, kept, result)
        except Changed as exc:  # a big file, read chunk by chunk while it is sent
            result.problems.append(f"{exc}; retried next round")
        return rest

    async def _upload_ahead(
        self, bodies: list[Mapping[ChunkId, bytes]], on_server: Collection[ChunkId]
    ) -> None:
        """Upload the chunks of these files that the server lacks (it holds
        ``on_server``: not asked about). A big file's upload is announced first:
        other devices fetch its chunks while they go up (streaming sync)."""
        every = {cid: body for body in bodies for cid in body if cid not in on_server}
        ids = list(every)
        absent: list[ChunkId] = []
        for i in range(0, len(ids), MISSING_BATCH):
            resp = await self.remote.missing(self.ns, ids[i : i + MISSING_BATCH])
            absent.extend(unpack_ids(resp.missing))
        lacking = set(absent)
        announced = False
        for body in bodies:
            if isinstance(body, FileChunks) and any(c in lacking for c in body):
                announced = await self._announce(body) or announced
        # Smaller requests for a file others fetch as it goes: the server shows
        # an upload's chunks when its request ends.
        batch = STREAM_BATCH_BYTES if announced else UPLOAD_BATCH_BYTES
        await self._upload({c: every[c] for c in absent}, batch)

    async def _announce(self, body: FileChunks) -> bool:
        try:
            await self.remote.announce(self.ns, body.path, body.total, body.ids)
            return True
        except LinesyncError as exc:  # a hint for others: the upload goes on without it
            log.info("%s: upload not announced (%s)", body.path, exc.message)
            return False

    async def _send_batch(
        self,
        wire: list[CommitOp],
        chunks: list[InlineChunk],
        bodies: dict[int, Mapping[ChunkId, bytes]],
        kept: list[pl.Upload | pl.DeleteRemote | pl.MoveRemote],
        result: SyncResult,
    ) -> None:
        for _attempt in range(3):
            # A folder move writes entries we cannot predict: list them afterwards.
            folder_move = any(
                isinstance(o, pl.MoveRemote) and o.node.kind is Kind.DIRECTORY for o in kept
            )
            since = None if folder_move else self.index.get("cursor")
            try:
                resp = await self.remote.commit_full(
                    self.ns, wire, chunks, journal=None if since else self.journal, since=since
                )
            except LinesyncError as exc:
                if exc.code is not Code.CURSOR_INVALID:
                    raise
                self.need_pull = True  # the journal was reset: the next pull re-syncs
                return
            results = resp.results
            chunks = []
            missing: dict[ChunkId, Mapping[ChunkId, bytes]] = {}
            retry: list[int] = []
            # Our view is the server's as of the commit's start: what a folder
            # move writes can be foreseen, and checked by the entries' count.
            cursor = self.index.get("cursor")
            foresee = (
                resp.changes is None
                and cursor is not None
                and int(cursor.split(".")[1]) == resp.head_before
                and self.index.get("cursor_clean", "1") == "1"
            )
            written: int | None = 0  # the entries the commit wrote (None: not known)
            # The paths whose entries a folder move wrote, as foreseen (None: not foreseen).
            foreseen: list[str] | None = [] if foresee else None
            with self.index.transaction():
                for i, r in enumerate(results):
                    if r.status == "missing":
                        for cid in unpack_ids(r.missing or ""):
                            missing[cid] = bodies[i]
                        retry.append(i)
                        continue
                    n = self._committed(kept[i], wire[i], r, bodies[i], result, foreseen)
                    if n is None or written is None:
                        written = None
                    elif r.jid is not None and r.jid > resp.head_before:
                        written += n  # (not a commit the server had already taken)
                if resp.changes is None:
                    self._follow(resp, written, foreseen or [])
            if resp.changes is not None:  # the server's own word on every entry
                await self._apply_page(resp.changes)
                self.need_pull = resp.changes.more
            if not retry:
                return
            await self._upload(missing)
            wire = [wire[i] for i in retry]
            kept = [kept[i] for i in retry]
            bodies = {n: bodies[i] for n, i in enumerate(retry)}
        result.problems.append("chunks went missing while committing; retried next round")

    def _follow(self, resp: CommitResponse, written: int | None, foreseen: list[str]) -> None:
        """Move the cursor past our own commit when nobody else committed in
        between and it wrote the entries we took into the view; else list next
        round, and forget the entries we foresaw a folder move write (the list
        brings those it did)."""
        cursor = self.index.get("cursor")
        at = int(cursor.split(".")[1]) if cursor else -1
        head = int(resp.cursor.split(".")[1]) if resp.cursor else -1
        if written is not None and resp.head_before == at and head == at + written:
            self.index.set("cursor", resp.cursor)
            return
        for path in foreseen:
            self.index.set_remote(path, None)
        if foreseen:  # (until then, what the move carried is not known: no plan without it)
            self.index.set("must_pull", "1")
        self.need_pull = True

    def _on_server(self, ops: list[pl.Upload | pl.DeleteRemote | pl.MoveRemote]) -> set[ChunkId]:
        """The chunks of the versions these ops delete or replace: the server
        holds them, so a file made of them (moved and edited at once, or files
        swapped) does not send them inline again. New paths cost no query."""
        out: set[ChunkId] = set()
        for op in ops:
            if isinstance(op, pl.MoveRemote) or not op.base_jid:
                continue
            remote = self.index.state(op.path).remote
            if remote is not None and remote.node is not None and remote.node.chash:
                out.update(self.index.blocklist(remote.node.chash) or ())
        return out

    def _wire_op(
        self,
        op: pl.Upload | pl.DeleteRemote | pl.MoveRemote,
        room: InlineRoom,
        on_server: Collection[ChunkId] = frozenset(),
    ) -> tuple[CommitOp, list[InlineChunk], Mapping[ChunkId, bytes], InlineRoom] | None:
        """The op as sent, its inline chunks (none of ``on_server``), its
        chunks' bytes, and the room left inline in this commit."""
        if isinstance(op, pl.DeleteRemote):
            return CommitOp(path=op.path, kind=Kind.TOMBSTONE, base_jid=op.base_jid), [], {}, room
        if isinstance(op, pl.MoveRemote):
            n = op.node
            size = n.size if n.kind is Kind.FILE else 0
            return (
                CommitOp(path=op.dst, kind=n.kind, base_jid=op.dst_base, size=size,
                         mtime_ns=n.mtime_ns if n.kind is Kind.FILE else 0, exec=n.exec,
                         target=n.target, move_from=op.src, move_base=op.src_jid),
                [], {}, room,
            )  # fmt: skip
        n = op.node
        if n.kind is not Kind.FILE:
            return (
                CommitOp(path=op.path, kind=n.kind, base_jid=op.base_jid, target=n.target),
                [],
                {},
                room,
            )
        state = self.index.state(op.path)
        ids, chunks, size = self._body(op.path, state, n)
        base_ver = state.remote if state.remote and state.remote.jid == op.base_jid else None
        base_ids = None
        if base_ver is not None and base_ver.node is not None and base_ver.node.chash:
            base_ids = self.index.blocklist(base_ver.node.chash)
        prep = prepare_file(
            op.path, ids, chunks, size=size, mtime_ns=n.mtime_ns, exec=n.exec,
            base_jid=op.base_jid if base_ids is not None else 0,
            base_ids=base_ids, base_chunks=self.chunks.local, room=room, on_server=on_server,
        )  # fmt: skip
        commit_op = prep.op
        if base_ids is None:
            commit_op = CommitOp(
                path=op.path, kind=Kind.FILE, base_jid=op.base_jid, size=size,
                mtime_ns=n.mtime_ns, exec=n.exec, content=prep.op.content,
            )  # fmt: skip
        return commit_op, prep.inline, chunks, room.less(prep)

    def _body(
        self, path: str, state: PathState, node: Node
    ) -> tuple[list[ChunkId], Mapping[ChunkId, bytes], int]:
        """The file's blocklist, its chunks by id and its size. A big file's
        chunks are read from disk one by one when they are sent."""
        if node.size < STREAM_MIN:
            data, stat = self.fs.read(path)
            ids, chunks = self._chunks_of(data, stat, state, node)
            return ids, chunks, len(data)
        assert node.chash is not None
        known, sizes = self.index.blocklist(node.chash), self.index.chunk_sizes(node.chash)
        found = self.fs.lstat(path)
        if known and sizes and found and state.local and state.local.stat == found[1]:
            ids = known  # cut as the scan cut it (the server checks each chunk's bytes)
        else:
            ids, sizes, _ = cut_file(self.fs, path)
            if bl.content_hash(ids) != node.chash:
                raise Changed("changed since it was scanned")
        return ids, FileChunks(self.fs, path, ids, sizes), sum(sizes)

    def _chunks_of(
        self, data: bytes, stat: Stat, state: PathState, node: Node
    ) -> tuple[list[ChunkId], dict[ChunkId, bytes]]:
        """The file's chunks: cut where the scan cut them when the file is as the
        scan saw it (the server checks every chunk's bytes against its id anyway),
        else cut and hashed again."""
        assert node.chash is not None
        ids = self.index.blocklist(node.chash)
        sizes = self.index.chunk_sizes(node.chash)
        if state.local is not None and state.local.stat == stat and ids and sizes:
            chunks: dict[ChunkId, bytes] = {}
            offset = 0
            for cid, size in zip(ids, sizes, strict=True):
                chunks.setdefault(cid, data[offset : offset + size])
                offset += size
            if offset == len(data):
                return ids, chunks
        ids, chunks = split(data)
        if bl.content_hash(ids) != node.chash:
            raise Changed("changed since it was scanned")
        return ids, chunks

    async def _upload(
        self, want: Mapping[ChunkId, Mapping[ChunkId, bytes]], batch_bytes: int = UPLOAD_BATCH_BYTES
    ) -> None:
        """Upload chunks (each id with the body that holds it) in batches of
        about ``batch_bytes`` (and at most UPLOAD_BATCH_RAW bytes once
        decompressed, UPLOAD_BATCH_FRAMES chunks: the server's budget per
        request), a few at once. Batches are read and compressed (in a
        thread) only as they go: a big file never is in memory whole."""
        batches = self._batches(want, batch_bytes)
        total = sum(size_of(body, cid) for cid, body in want.items())
        done = 0
        turn = asyncio.Lock()  # one reader of the batches at a time
        loop = asyncio.get_running_loop()
        # One thread makes every batch: its buffers come from one malloc arena
        # and are reused there (with a thread each, freed buffers piled up in
        # several arenas: a 200 MB upload reached 362 MiB under load).
        maker = ThreadPoolExecutor(1, thread_name_prefix="linesync-upload")

        async def sender() -> None:
            nonlocal done
            while True:
                async with turn:
                    batch = await loop.run_in_executor(maker, next, batches, None)
                if batch is None:
                    return
                frames, raw = batch
                await self.remote.upload(self.ns, frames)
                done += raw
                self.progress("upload", done, total)

        try:
            await gather_all(*(sender() for _ in range(UPLOAD_CONCURRENCY)))
        finally:
            maker.shutdown(wait=False)

    def _batches(
        self, want: Mapping[ChunkId, Mapping[ChunkId, bytes]], batch_bytes: int
    ) -> Iterator[tuple[list[Frame], int]]:
        """Batches of framed chunks, and the bytes they decompress to. The
        compressed chunks of files the cache will keep are kept for it."""
        frames: list[Frame] = []
        size = raw = 0
        for cid, body in want.items():
            data = body[cid]
            kind, payload = codec.encode(data)
            if kind is codec.Codec.ZSTD and not isinstance(body, FileChunks):
                self.chunks.keep_packed(cid, payload)
            if frames and (
                size + len(payload) > batch_bytes
                or raw + len(data) > UPLOAD_BATCH_RAW
                or len(frames) >= UPLOAD_BATCH_FRAMES
            ):
                yield frames, raw
                frames, size, raw = [], 0, 0
            frames.append(Frame(cid, kind, None, payload))
            size += len(payload)
            raw += len(data)
        if frames:
            yield frames, raw

    def _committed(
        self,
        op: pl.Upload | pl.DeleteRemote | pl.MoveRemote,
        wire: CommitOp,
        r: CommitResult,
        body: Mapping[ChunkId, bytes],
        result: SyncResult,
        foreseen: list[str] | None = None,
    ) -> int | None:
        """Take one op's result into the views; the entries the server wrote
        for it (None: not known here). ``foreseen``: see ``_moved_folder``."""
        with self.index.transaction():
            if r.status == "conflict":
                self._on_conflict(op, r, result)
                return None
            assert r.jid is not None
            if isinstance(op, pl.DeleteRemote):
                file = not is_folder(self.index.state(op.path).synced_node)
                v = Version(r.jid, None)
                self.index.set_remote(op.path, v)
                self.index.set_synced(op.path, v)
                if file:  # folders are not counted, on either side
                    result.deleted_remote += 1
                    self._note_deleted(1)
                return 1
            if isinstance(op, pl.MoveRemote):
                v = Version(r.jid, op.node, op.src)
                self.index.set_remote(op.dst, v)
                self.index.set_synced(op.dst, v)
                if op.node.kind is not Kind.DIRECTORY:
                    self.index.put_version(r.jid, op.node.chash)
                    gone = Version(r.jid + 1, None)  # the server writes the source's tombstone next
                    self.index.set_remote(op.src, gone)
                    self.index.set_synced(op.src, gone)
                    result.moved += 1
                    return 2
                return self._moved_folder(op, r.jid, result, foreseen)
            v = Version(r.jid, op.node)
            self.index.put_version(r.jid, op.node.chash)
            self.index.set_remote(op.path, v)
            self.index.set_synced(op.path, v)
            if op.node.kind is Kind.FILE and body and op.node.size <= CACHE_MAX_FILE:
                self.index.cache_put(body, self.chunks.packed)
            if op.node.kind is not Kind.DIRECTORY:  # folders are not counted
                result.uploaded += 1
            return 1

    def _moved_folder(
        self, op: pl.MoveRemote, jid: int, result: SyncResult, foreseen: list[str] | None
    ) -> int | None:
        """The views after our folder move (its entry at ``jid``); the entries
        it wrote, when known. With ``foreseen`` (our remote view is the
        server's as the move began), the remote view takes the entries the
        server wrote for everything below the folder, as it writes them
        (``protocol.folding``), and their paths are noted in ``foreseen``;
        else the source's things are gone from it until the next list."""
        below = self.index.states_at([op.src])
        top = below.pop(op.src, None)
        live = sorted(
            ((p, s.remote.node) for p, s in below.items() if s.remote and s.remote.node),
            key=lambda t: t[0],
        )
        implied: list[folding.Implied[Node]] = []
        if foreseen is not None:
            implied = folding.layout(jid, op.src, op.dst, live)
            self._take_implied(implied)
            foreseen.extend(v.path for v in implied)
        else:
            self.index.set("must_pull", "1")
            for p, s in [*below.items(), (op.src, top)]:
                if s is not None and s.remote is not None:
                    self.index.set_remote(p, Version(s.remote.jid, None))
        self.index.set_synced(op.src, None)
        at = {v.moved_from: v.jid for v in implied if v.moved_from}  # a carried thing's new JID
        for p, s in below.items():
            if s.synced is None or s.synced.node is None:
                continue
            if not is_folder(s.synced.node):
                result.moved += 1  # the files it carries, as the other side counts
            # What we agreed on travels with the thing: its next edit is then a
            # plain upload, not a conflict with itself. Agreed on the JID the
            # server gave it, when that is foreseen; else CARRIED (-1) until a
            # list says what the server carried (one it did not was deleted
            # there meanwhile).
            agreed = s.remote is not None and s.remote.jid == s.synced.jid and p in at
            new = Version(at[p] if agreed else CARRIED, s.synced.node)
            self.index.set_synced(paths.rebase(p, op.src, op.dst), new)
            self.index.set_synced(p, None)
        return 1 + len(implied) if foreseen is not None else None

    def _on_conflict(
        self, op: pl.Upload | pl.DeleteRemote | pl.MoveRemote, r: CommitResult, result: SyncResult
    ) -> None:
        """The server moved on: learn its current entry; the next round re-plans
        (a refused move as plain changes). A name that clashes by case becomes a
        conflict copy here."""
        if isinstance(op, pl.MoveRemote):
            self.refused_moves.add((op.src, op.dst))
        cur = r.current
        if cur is not None and cur.path == r.path:
            chash = None
            if cur.kind is Kind.FILE and cur.content is not None:
                ids = resolve_content(cur.content, self.index.version_blocklist)
                if ids is not None:
                    chash = bl.content_hash(ids)
                    self.index.put_blocklist(chash, ids, None)
            if cur.kind is Kind.FILE and chash is None:
                # Its content was left out: a file is never known without it.
                # The next list brings it whole.
                self.need_pull = True
            else:
                self.index.set_remote(
                    cur.path, Version(cur.jid, node_of(cur, chash), cur.moved_from)
                )
        if r.reason == "case_collision" and isinstance(op, (pl.Upload, pl.MoveRemote)):
            path = op.dst if isinstance(op, pl.MoveRemote) else op.path
            copy = self._free_name(path, "case conflict")
            found = self.fs.lstat(path)
            try:
                if found is not None:
                    folder = found[0].kind is Kind.DIRECTORY
                    self.fs.rename(path, copy, None if folder else found[1], None)
                    self.index.set_local(path, None)
                    result.conflicts.append(copy)
            except (Changed, OSError) as exc:
                result.problems.append(f"{path}: {exc}; retried next round")
        log.info("%s: conflict (%s)", r.path, r.reason)
