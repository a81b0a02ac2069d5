"""Our client stays within the server's budget per request: an upload carries
at most 32 MiB of decompressed chunks (and about 8 MiB of payload), a commit at
most 1,024 inline chunks and 16 MiB of them decompressed, and at most 16 MiB of
base chunks they are decoded against."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import pytest

from linesync.client import base as engine_base
from linesync.client import committing
from linesync.client.api import Client
from linesync.client.remote import Remote
from linesync.client.retry import RetryPolicy
from linesync.client.transfer import InlineRoom, prepare_file, split
from linesync.protocol import codec, inline
from linesync.protocol.framing import Frame
from linesync.protocol.schemas import CommitOp, CommitResponse, InlineChunk, UploadResponse
from tests.client.conftest import files
from tests.support.server import ServerProc

MiB = 2**20


def _compressible_text(lines: int) -> bytes:
    """One chunk a line, each different, each a few dozen bytes compressed."""
    return "".join(f"{i:06d} " + "a" * 3000 + "\n" for i in range(lines)).encode()


def _compressible_binary(mib: int) -> bytes:
    """128 KiB chunks, each different, each about 60 bytes compressed."""
    return b"".join(os.urandom(16) + bytes(64 * 1024 - 16) for _ in range(mib * 16))


def _raw(chunks: Sequence[InlineChunk]) -> int:
    return sum(len(d) for d in inline.decode(chunks, lambda _: None).values())


def test_prepare_file_keeps_inline_chunks_within_the_room() -> None:
    data = _compressible_text(4000)
    ids, chunks = split(data)
    assert len(set(ids)) == 4000
    whole = prepare_file("n.txt", ids, chunks, size=len(data), mtime_ns=1,
                         room=InlineRoom(bytes=10 * MiB))  # fmt: skip
    assert len(whole.inline) == 1024  # the count, not the bytes, stops it
    assert whole.inline_raw == _raw(whole.inline) <= 16 * MiB
    few = prepare_file("n.txt", ids, chunks, size=len(data), mtime_ns=1,
                       room=InlineRoom(bytes=10 * MiB, chunks=10, raw=5 * 3008))  # fmt: skip
    assert len(few.inline) == 5 and few.inline_raw == 5 * 3008
    # The room left after a file is what the next file of the commit gets.
    left = InlineRoom(bytes=10 * MiB).less(whole)
    assert (left.chunks, left.raw) == (0, 16 * MiB - whole.inline_raw)


def test_inline_chunks_against_bases_stay_within_the_base_budget() -> None:
    old = _compressible_text(200)
    new = old.replace(b"000007 ", b"edit07 ").replace(b"000150 ", b"edit50 ")
    old_ids, old_chunks = split(old)
    ids, chunks = split(new)
    kw = dict(size=len(new), mtime_ns=1, base_jid=1, base_ids=old_ids,
              base_chunks=old_chunks.get)  # fmt: skip
    full = prepare_file("n.txt", ids, chunks, **kw)  # type: ignore[arg-type]
    assert len(full.inline) == 2 and all(c.base is not None for c in full.inline)
    assert full.inline_bases == 2 * 3008
    tight = prepare_file("n.txt", ids, chunks, room=InlineRoom(bases=3008), **kw)  # type: ignore[arg-type]
    assert len(tight.inline) == 2 and tight.inline_bases == 3008
    assert sum(c.base is None for c in tight.inline) == 1  # the second goes on its own


class _Spy(Remote):
    commits: list[tuple[int, int]] = []  # (inline chunks, their bytes decompressed)
    uploads: list[tuple[int, int, int]] = []  # (frames, payload bytes, decompressed)
    ops: list[int] = []  # ops per commit request
    sizes: list[int] = []  # bytes of the files each commit request writes

    async def commit_full(
        self,
        ns: int,
        ops: Sequence[CommitOp],
        chunks: Sequence[InlineChunk] = (),
        *,
        journal: str | None = None,
        since: str | None = None,
    ) -> CommitResponse:
        _Spy.commits.append((len(chunks), _raw(chunks)))
        _Spy.ops.append(len(ops))
        _Spy.sizes.append(sum(op.size for op in ops))
        return await super().commit_full(ns, ops, chunks, journal=journal, since=since)

    async def upload(self, ns: int, frames: Sequence[Frame]) -> UploadResponse:
        raw = sum(len(codec.decode(f.codec, f.payload, None, MiB)) for f in frames)
        _Spy.uploads.append((len(frames), sum(len(f.payload) for f in frames), raw))
        return await super().upload(ns, frames)


class _SpyClient(Client):
    def _remote(self, retry: RetryPolicy | None = None) -> Remote:
        return _Spy(self.config.server, self.config.token, retry=retry)


def test_a_sync_of_big_compressible_files_keeps_every_request_in_budget(
    server: ServerProc, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # New files here go inline, as they do below UPLOAD_AHEAD_BYTES (and as
    # edits always do): the inline limits are what this test pushes against.
    monkeypatch.setattr(committing, "UPLOAD_AHEAD_BYTES", 2**40)
    a = Client.init(tmp_path / "A", server=server.url, token=server.new_token("admin", "a"))
    b = Client.init(tmp_path / "B", server=server.url, token=server.new_token("admin", "b"))
    notes = _compressible_text(4000)  # 4,000 chunks of ~26 bytes compressed
    (a.folder / "notes.txt").write_bytes(notes)
    _Spy.commits, _Spy.uploads = [], []
    r = _SpyClient(a.folder).sync_once()
    assert r.converged and r.uploaded == 1, r
    assert max(n for n, _ in _Spy.commits) == 1024, _Spy.commits  # the count stops it
    big = _compressible_binary(80)  # 640 chunks: 80 MiB that compress to ~40 KB
    (a.folder / "big.bin").write_bytes(big)
    r = _SpyClient(a.folder).sync_once()
    assert r.converged and r.uploaded == 1, r
    for n, raw in _Spy.commits:
        assert n <= 1024 and raw <= 16 * MiB, _Spy.commits
    # The bytes stop it: one more 128 KiB chunk would not have fit.
    assert 16 * MiB - 128 * 1024 < max(raw for _, raw in _Spy.commits) <= 16 * MiB
    for frames, payload, raw in _Spy.uploads:
        assert raw <= 32 * MiB and payload <= engine_base.UPLOAD_BATCH_BYTES + MiB, _Spy.uploads
        assert frames <= engine_base.UPLOAD_BATCH_FRAMES
    # What did not go inline went up, a request per 32 MiB at most.
    sent = sum(raw for _, raw in _Spy.commits) + sum(raw for *_, raw in _Spy.uploads)
    assert sent >= len(big) + len(notes)
    assert 32 * MiB - 128 * 1024 < max(raw for *_, raw in _Spy.uploads) <= 32 * MiB
    assert b.sync_once().converged
    got = files(b.folder)
    assert got["big.bin"] == big and got["notes.txt"] == notes


def test_a_commit_of_many_big_blocklists_is_split_by_its_body_size(
    server: ServerProc, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def fill(c: Client) -> None:
        for i in range(6):  # 1,000 chunk ids each: about 44 KB of JSON a file
            (c.folder / f"f{i}.txt").write_bytes(
                b"".join(f"{i} {n:06d} ".encode() + b"b" * 3000 + b"\n" for n in range(1000))
            )

    a = Client.init(tmp_path / "A", server=server.url, token=server.new_token("admin", "a"))
    fill(a)
    _Spy.ops = []
    assert _SpyClient(a.folder).sync_once().converged
    assert max(_Spy.ops) == 6, _Spy.ops  # by default they fit one request
    monkeypatch.setattr(committing, "COMMIT_BODY_BYTES", 64 * 1024)  # a small cap, same rule
    b = Client.init(tmp_path / "B", server=server.url, token=server.new_token("admin", "b"))
    fill(b)
    for p in b.folder.glob("f*.txt"):  # other bytes than A's: uploads, not merges
        p.write_bytes(p.read_bytes().replace(b"b" * 3000, b"c" * 3000))
    (b.folder / "sub").mkdir()
    for p in b.folder.glob("f*.txt"):
        p.rename(b.folder / "sub" / p.name)
    _Spy.ops = []
    r = _SpyClient(b.folder).sync_once()
    assert r.converged and r.uploaded == 6, r
    # Split by the body cap; the six files and their folder each committed once
    # (the chunks went up first: no commit refused and sent again).
    assert max(_Spy.ops) < 6 and len(_Spy.ops) >= 2 and sum(_Spy.ops) == 7, _Spy.ops


def test_many_new_files_go_up_before_one_commit(server: ServerProc, tmp_path: Path) -> None:
    """Past UPLOAD_AHEAD_BYTES of new files, their chunks are uploaded first
    (in budget) and the files committed once: no commit is refused for
    missing chunks, and none carries them inline."""
    a = Client.init(tmp_path / "A", server=server.url, token=server.new_token("admin", "a"))
    for i in range(40):
        (a.folder / f"f{i:02d}.txt").write_bytes(_compressible_text(300 + i))
    _Spy.commits, _Spy.uploads, _Spy.ops = [], [], []
    r = _SpyClient(a.folder).sync_once()
    assert r.converged and r.uploaded == 40, r
    assert _Spy.uploads and all(n == 0 for n, _ in _Spy.commits), _Spy.commits
    # 37 MiB of files: two commits (the content cap, 32 MiB), each file in
    # one of them, none refused and sent again.
    assert len(_Spy.commits) == 2 and sum(_Spy.ops) == 40, _Spy.ops
    for frames, payload, raw in _Spy.uploads:
        assert raw <= 32 * MiB and payload <= engine_base.UPLOAD_BATCH_BYTES + MiB
        assert frames <= engine_base.UPLOAD_BATCH_FRAMES


def test_a_commit_holds_a_bounded_amount_of_file_content(
    server: ServerProc, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The files a commit uploads are held in memory until the server answers:
    a first sync of many medium files commits them a few MiB at a time (past
    COMMIT_CONTENT_BYTES), not all at once."""
    monkeypatch.setattr(committing, "COMMIT_CONTENT_BYTES", MiB)
    a = Client.init(tmp_path / "A", server=server.url, token=server.new_token("admin", "a"))
    size = 0
    for i in range(8):
        data = _compressible_text(130 + i)  # about 400 KB each
        (a.folder / f"f{i}.txt").write_bytes(data)
        size = max(size, len(data))
    _Spy.ops, _Spy.sizes = [], []
    r = _SpyClient(a.folder).sync_once()
    assert r.converged and r.uploaded == 8, r
    assert len(_Spy.sizes) >= 3 and sum(_Spy.ops) == 8, (_Spy.ops, _Spy.sizes)
    assert max(_Spy.sizes) < MiB + size, _Spy.sizes  # past the cap by one file at most
    b = Client.init(tmp_path / "B", server=server.url, token=server.new_token("admin", "b"))
    assert b.sync_once().converged
    assert files(b.folder) == files(a.folder)
