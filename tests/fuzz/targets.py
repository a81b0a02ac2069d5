"""Fuzz targets: each takes one input (bytes) and raises only on a bug.

The contract under test: on any input, the frame decoder, the commit decoder
and the path rules raise only the project's own errors -- ``LinesyncError``,
``paths.PathError``, and for JSON ``msgspec.DecodeError`` (``ValidationError``
is one), which ``Context.decode`` turns into a 400 -- and keep the properties
checked here with ``assert``. Anything else (IndexError, struct.error,
UnicodeError, a zstd error, ...) would reach the server's catch-all as a 500.

The targets are plain functions, so pytest replays the corpus without atheris
(``test_fuzz.py``); ``python -m tests.fuzz TARGET`` runs one under atheris with
coverage. Inputs:

- ``frames``: byte 0 picks the reader's payload limit and the decoder's output
  limit, byte 1 seeds where the body is cut into pieces, the rest is a chunk
  stream body.
- ``commit``: a commit request's JSON body.
- ``paths``: UTF-8 text (invalid bytes become lone surrogates); fields split
  at a double NUL are also tried as pairs and triples of paths.
"""

from __future__ import annotations

import random
import unicodedata
from collections.abc import Callable, Sequence
from typing import TypeVar

import msgspec

from linesync.core import paths as P
from linesync.core.ids import ChunkId, chunk_id, pack_ids, unpack_ids
from linesync.protocol import codec, inline
from linesync.protocol.errors import Code, LinesyncError
from linesync.protocol.framing import Frame, FrameReader, encode_frames
from linesync.protocol.schemas import CommitOp, CommitRequest, Content, InlineChunk, Kind
from linesync.server.chunks import ChunkService, Intake
from linesync.server.commit import Limits, Plan, plan_commit, validate_op
from linesync.server.config import ServerConfig
from linesync.server.metrics import Metrics
from tests.support.memview import MemView

T = TypeVar("T")

# -- frames ----------------------------------------------------------------------

# Payload limits the reader is tried with (byte 0 of the input picks one).
FRAME_LIMITS = (0, 1, 16, 100, 4096, 2**20)
# Piece sizes a body is cut into (byte 1 seeds the choice).
PIECES = (0, 1, 2, 3, 5, 6, 7, 33, 34, 38, 39, 64, 4096)
DECODE_LIMITS = (2**16, 64, 4096)  # output bounds for codec.decode (byte 0 picks one)


def _read(body: bytes, sizes: Sequence[int], max_payload: int) -> list[Frame] | Code:
    """The frames of ``body`` fed in pieces of ``sizes``, or the error's code."""
    reader = FrameReader(max_payload=max_payload)
    out: list[Frame] = []
    pos = 0
    try:
        for n in sizes:
            out += reader.feed(body[pos : pos + n])
            pos += n
        assert pos >= len(body)
        reader.close()
    except LinesyncError as exc:
        return exc.code
    return out


def _decode(kind: int, payload: bytes, base: bytes | None, limit: int) -> bytes | None:
    try:
        out = codec.decode(kind, payload, base, limit)
    except LinesyncError:
        return None
    assert len(out) <= limit, "codec.decode went past its limit"
    return out


def frames(data: bytes) -> None:
    if len(data) < 2:
        return
    max_payload = FRAME_LIMITS[data[0] % len(FRAME_LIMITS)]
    limit = DECODE_LIMITS[data[0] // len(FRAME_LIMITS) % len(DECODE_LIMITS)]
    body = data[2:]
    rng = random.Random(data[1])
    sizes: list[int] = []
    while sum(sizes) < len(body):
        sizes.append(rng.choice(PIECES))
    sizes.append(rng.choice(PIECES))  # perhaps an empty piece after the end
    whole = _read(body, [len(body)], max_payload)
    pieced = _read(body, sizes, max_payload)
    # Cutting a stream anywhere changes nothing: the same frames or the same error.
    assert whole == pieced, f"whole: {whole!r}, in pieces {sizes}: {pieced!r}"
    if isinstance(whole, Code):
        return
    # A stream the reader accepts is exactly the encoding of what it read.
    assert encode_frames(whole) == body
    for f in whole:
        assert len(f.chunk_id) == 32 and len(f.payload) <= max_payload
        assert (f.codec == codec.Codec.ZSTD_DICT) == (f.base is not None)
        # Decode against a dictionary made of the base ids (or an empty one).
        base = b"".join(f.base) if f.base is not None and data[1] % 2 else b""
        out = _decode(f.codec, f.payload, base if f.codec == codec.Codec.ZSTD_DICT else None, limit)
        if f.codec == codec.Codec.RAW:
            assert out == (f.payload if len(f.payload) <= limit else None)
        if f.codec == codec.Codec.ZSTD_DICT:
            try:
                codec.decode(f.codec, f.payload, None, limit)
                raise AssertionError("a zstd-dict payload decoded without its base")
            except LinesyncError:
                pass
        # What the encoder makes of these bytes decodes back to them.
        kind, enc = codec.encode(f.payload, base)
        back = _decode(kind, enc, base if kind == codec.Codec.ZSTD_DICT else None, limit)
        assert back == (f.payload if len(f.payload) <= limit else None)


# -- commit ----------------------------------------------------------------------

CONFIG = ServerConfig()
LIMITS = Limits(max_file_size=2**20, max_blocklist=64)
DEVICE = "fuzz"
# Chunks the namespace holds: C[0] is empty, C[1] a megabyte less a byte.
CHUNK_BYTES = [b"", b"x" * (2**20 - 1)] + [b"chunk %d\n" % i * (i + 1) for i in range(2, 8)]
C = [chunk_id(b) for b in CHUNK_BYTES]
HELD: dict[ChunkId, bytes] = dict(zip(C, CHUNK_BYTES, strict=True))
LONG = "/".join(["s" * 250] * 16)  # 4,015 bytes: a folder move may make it too long


def _op(path: str, kind: Kind, **kw: object) -> CommitOp:
    return CommitOp(path=path, kind=kind, mtime_ns=1_000, **kw)  # type: ignore[arg-type]


def _file(path: str, ids: Sequence[ChunkId], base: int = 0) -> CommitOp:
    size = sum(len(HELD[c]) for c in ids)
    content = Content(ids=pack_ids(ids))
    return _op(path, Kind.FILE, size=size, base_jid=base, content=content)


def _namespace() -> MemView:
    """A small namespace with one of each kind of entry, deleted ones, a
    symlink and a deep folder; JIDs 1 to about 40."""
    view = MemView({c: len(b) for c, b in HELD.items()})
    tree = [
        _op("a", Kind.DIRECTORY),
        _op("a/b", Kind.DIRECTORY),
        _file("a/x.txt", [C[2], C[3]]),
        _file("a/b/y.txt", [C[4]]),
        _file("top.txt", [C[5], C[6], C[5]]),
        _file("empty", []),
        _file("big.bin", [C[1], C[7]]),
        _op("lnk", Kind.SYMLINK, target="a/x.txt"),
        _op("Docs", Kind.DIRECTORY),
        _file("Docs/Readme.md", [C[7]]),
        _file("gone.txt", [C[2]]),
        _op("gone", Kind.DIRECTORY),
    ]
    deep = LONG.split("/")
    tree += [_op("L", Kind.DIRECTORY)]
    tree += [_op("L/" + "/".join(deep[: i + 1]), Kind.DIRECTORY) for i in range(len(deep))]
    tree += [_file(f"L/{LONG}/f", [C[3]])]
    view.commit(tree, device="setup")
    later = [
        _op("gone.txt", Kind.TOMBSTONE, base_jid=view.current("gone.txt").jid),  # type: ignore[union-attr]
        _op("gone", Kind.TOMBSTONE, base_jid=view.current("gone").jid),  # type: ignore[union-attr]
        _file("top.txt", [C[5], C[2], C[5]], base=view.current("top.txt").jid),  # type: ignore[union-attr]
    ]
    plan = view.commit(later, device="setup")
    assert all(r.status == "ok" for r in plan.results), plan.results
    return view


VIEW = _namespace()
SERVICE = ChunkService(None, None, CONFIG, Metrics())  # type: ignore[arg-type]


def _copy(view: MemView) -> MemView:
    out = MemView(view.chunks)
    out.rows, out.entries = dict(view.rows), dict(view.entries)
    out.blocklists, out.head = dict(view.blocklists), view.head
    return out


def _inline(chunks: list[InlineChunk]) -> dict[ChunkId, int]:
    """The server takes a commit's inline chunks in (as the commit route does,
    with every base the namespace holds loaded): their sizes by id. The client
    decodes the same chunks from a list answer."""
    stored: dict[ChunkId, int] = {}
    try:
        intake = Intake(SERVICE, 1, CONFIG.max_inline_decoded)
        got = SERVICE.inline_frames(chunks)
        intake.bases = {b: HELD[b] for f in got if f.base for b in f.base if b in HELD}
        decoded = intake._decode(got)
    except LinesyncError:
        pass
    else:
        for cid, record, size in decoded:
            data = codec.decode(record.codec, record.payload, None, CONFIG.max_chunk)
            assert chunk_id(data) == cid == record.chunk_id and len(data) == size
            stored[cid] = size
    try:
        out = inline.decode(chunks, HELD.get, CONFIG.max_chunk)
    except LinesyncError:
        return stored
    for cid, data in out.items():
        assert chunk_id(data) == cid and len(data) <= CONFIG.max_chunk
    return stored


def _check_plan(ops: list[CommitOp], plan: Plan, view: MemView) -> None:
    head = view.head
    assert len(plan.results) == len(ops)
    jids = [w.row.jid for w in plan.writes]
    assert jids == list(range(head + 1, head + 1 + len(jids))), f"JIDs {jids} after {head}"
    for op, r in zip(ops, plan.results, strict=True):
        assert r.path == op.path
        if r.status == "ok":
            assert r.jid is not None
            if r.jid > head:
                assert any(w.row.jid == r.jid and w.row.path == op.path for w in plan.writes)
        elif r.status == "missing":
            assert r.missing and set(unpack_ids(r.missing)).isdisjoint(view.chunks)
        else:
            assert r.status == "conflict" and r.reason
    for w in plan.writes:
        row = w.row
        assert P.is_valid(row.path), f"the plan writes an invalid path ({len(row.path)} chars)"
        if row.kind is Kind.FILE:
            assert w.blocklist is not None and len(w.blocklist) <= LIMITS.max_blocklist
            assert sum(view.chunks[c] for c in w.blocklist) == row.size
        if row.kind is Kind.SYMLINK:
            assert row.target is not None
    # The namespace after the batch keeps the tree rules.
    after = _copy(view)
    after.apply(plan)
    live = after.live()
    keys: dict[str, str] = {}
    for path, row in live.items():
        parent = P.parent(path)
        if parent:
            prow = live.get(parent)
            assert prow is not None and prow.kind is Kind.DIRECTORY, f"{path}: no parent"
        other = keys.setdefault(P.fold_key(path), path)
        assert other == path, f"{path} and {other} collide"
        assert row.kind is not Kind.TOMBSTONE


class _Draw:
    """Choices drawn from the bytes of an input, 0 once they run out."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def byte(self) -> int:
        self.pos += 1
        return self.data[self.pos - 1] if self.pos <= len(self.data) else 0

    def below(self, n: int) -> int:
        return (self.byte() | self.byte() << 8) % n if n > 0 else 0

    def pick(self, items: Sequence[T]) -> T:
        return items[self.below(len(items))]

    def text(self) -> str:
        n = self.byte() % 24
        raw = bytes(self.byte() for _ in range(n))
        return raw.decode("utf-8", "replace")  # JSON carries no lone surrogate


def _paths_of(view: MemView) -> list[str]:
    known = sorted(view.rows)
    twins = [p.upper() for p in known[:12]] + [p + "/n" for p in known[:12]]
    return known + twins + ["n", "a/n", "a/b/n", "Docs/n", "M", "Notes", "new/n", "a/x.txt/n"]


PATHS = _paths_of(VIEW)
KNOWN = [p for p in sorted(VIEW.rows) if "/" not in p]
UNKNOWN = chunk_id(b"not held")


def _ids(d: _Draw) -> list[ChunkId]:
    return [d.pick([*C, UNKNOWN]) for _ in range(d.below(5))]


def _path(d: _Draw) -> str:
    choice = d.below(8)
    if choice == 0:
        return d.text()
    if choice == 1:  # a long name: folder moves that may outgrow the path limit
        return d.pick(["", "a/", "L/"]) + "M" * (1 + d.below(255))
    return d.pick(PATHS)


def _jid(d: _Draw, path: str | None) -> int:
    row = VIEW.current(path) if path is not None else None
    choice = d.below(4)
    if choice in (0, 2) and row is not None:
        return row.jid
    if choice == 1:
        return 0
    return d.below(VIEW.head + 3)


def _drawn_op(d: _Draw) -> CommitOp:
    path = _path(d)
    kind = d.pick(list(Kind))
    move_from = d.pick(KNOWN) if d.below(4) == 0 else None
    content = None
    ids: list[ChunkId] = []
    if kind is Kind.FILE and d.below(3):
        if d.below(2):
            ids = _ids(d)
            content = Content(ids=pack_ids(ids))
        else:
            edits = [(d.below(4), d.below(3), pack_ids(_ids(d))) for _ in range(d.below(3))]
            content = Content(base=_jid(d, path), edits=edits)
    size = sum(len(HELD.get(c, b"")) for c in ids) if d.below(4) else d.below(2**21)
    target = None
    if kind is Kind.SYMLINK or d.below(8) == 0:
        target = d.pick(["a/x.txt", "../x", "", "/etc", "t" * 4095, "t" * 4096, d.text()])
    return CommitOp(
        path=path,
        kind=kind,
        base_jid=_jid(d, path),
        size=size,
        mtime_ns=d.below(3),
        exec=bool(d.below(2)),
        target=target,
        content=content,
        move_from=move_from,
        move_base=_jid(d, move_from),
    )


def _drawn_chunk(d: _Draw) -> InlineChunk:
    data = d.pick([*CHUNK_BYTES[2:], d.text().encode()])
    bases = [d.pick([*CHUNK_BYTES, b"not held"]) for _ in range(d.below(3))]
    c = inline.encode(data, [chunk_id(b) for b in bases], b"".join(bases) or None)
    tweak = d.below(6)
    if tweak == 0:  # a codec that does not go with its payload
        c.codec = d.pick(["raw", "zstd", "zstd-dict"])
    elif tweak == 1:
        c.data = c.data[: d.below(len(c.data) + 1)]
    elif tweak == 2:
        c.base = pack_ids([chunk_id(b) for b in bases]) if bases else d.text()
    return c


def _drawn_request(data: bytes) -> bytes:
    """A commit request drawn from the input, as its JSON body: commits that
    get past the decoder, for the rules behind it."""
    d = _Draw(data)
    req = CommitRequest(
        ops=[_drawn_op(d) for _ in range(1 + d.below(4))],
        chunks=[_drawn_chunk(d) for _ in range(d.below(3))],
    )
    return msgspec.json.encode(req)


def commit(data: bytes) -> None:
    """A JSON body if the input starts with "{"; else a request drawn from it."""
    body = data if data[:1] == b"{" else _drawn_request(data)
    try:
        req = msgspec.json.decode(body, type=CommitRequest)
    except msgspec.DecodeError:
        return  # a 400, from Context.decode
    # The commit route's own limits.
    if len(req.ops) > CONFIG.max_batch_paths or len(req.chunks) > CONFIG.max_inline_chunks:
        return
    view = VIEW
    if req.chunks:
        stored = _inline(req.chunks)
        if stored:
            view = _copy(VIEW)
            view.hold(stored)
    for op in req.ops:
        try:
            validate_op(op)
        except (LinesyncError, P.PathError):
            pass
    try:
        plan = plan_commit(view, req.ops, DEVICE, view.head, LIMITS)
    except LinesyncError:
        return
    _check_plan(req.ops, plan, view)


# -- paths -----------------------------------------------------------------------


def _one_path(text: str) -> str | None:
    """Check the rules on one path; its normal form, or None if it is invalid."""
    key = P.fold_key(text)  # any string, valid or not
    assert isinstance(key, str)
    try:
        n = P.normalize(text)
    except P.PathError:
        assert not P.is_valid(text)
        return None
    assert P.normalize(n) == n, "normalize is not idempotent"
    assert P.is_valid(n) and P.is_valid(text) == (text == n)
    assert n == unicodedata.normalize("NFC", text)
    raw = n.encode("utf-8")  # valid Unicode: no lone surrogate
    assert 0 < len(raw) <= P.MAX_PATH_BYTES
    assert not n.startswith("/") and "\\" not in n
    assert all(ord(ch) >= 0x20 and ord(ch) != 0x7F for ch in n), "a control character"
    segments = n.split("/")
    for s in segments:
        assert s not in ("", ".", ".."), f"segment {s!r}"
        assert len(s.encode("utf-8")) <= P.MAX_SEGMENT_BYTES
    ancestors = P.ancestors(n)
    assert ancestors == ["/".join(segments[:i]) for i in range(1, len(segments))]
    assert P.parent(n) == (ancestors[-1] if ancestors else "")
    for a in ancestors:
        assert P.is_valid(a) and P.is_under(n, a)
    assert not P.is_under(n, n)
    # The collision key does not depend on the normalization form.
    assert P.fold_key(unicodedata.normalize("NFD", n)) == P.fold_key(n)
    return n


def _two_paths(a: str, b: str, c: str) -> None:
    assert P.is_under(a, b) == (b in P.ancestors(a))
    try:
        moved = P.rebase(a, b, c)
    except P.PathError:
        assert (a != b and not P.is_under(a, b)) or not P.is_valid(c + a[len(b) :])
        return
    assert a == b or P.is_under(a, b)
    assert moved == c + a[len(b) :]
    assert P.is_valid(moved), "rebase made a path that breaks the rules"
    assert moved == c or P.is_under(moved, c)


def _stretch(path: str, size: int) -> str | None:
    """``path`` with segments of "z" added to make it ``size`` UTF-8 bytes long,
    if that makes a valid path."""
    out = path
    left = size - len(path.encode("utf-8"))
    while left >= 2:
        seg = "z" * min(left - 1, P.MAX_SEGMENT_BYTES)
        if left - 1 - len(seg) == 1:  # a last segment of one byte needs two
            seg = seg[:-1]
        out += "/" + seg
        left -= 1 + len(seg)
    return out if left == 0 and P.is_valid(out) else None


def path_rules(data: bytes) -> None:
    text = data.decode("utf-8", "surrogateescape")
    _one_path(text)
    fields = text.split("\x00\x00")
    valid = [n for n in map(_one_path, fields[:3] if len(fields) > 1 else []) if n]
    if len(valid) >= 2:
        a, b = valid[0], valid[1]
        c = valid[2] if len(valid) > 2 else b
        _two_paths(a, b, c)
        _two_paths(a, a, b)
        ancestors = P.ancestors(a)
        for anc in {*ancestors[:1], *ancestors[-1:]}:  # the outermost and the innermost
            _two_paths(a, anc, c)
            # Moved to a folder just short enough, or one byte too long.
            tail = len(a.encode("utf-8")) - len(anc.encode("utf-8"))
            for size in (P.MAX_PATH_BYTES - tail, P.MAX_PATH_BYTES - tail + 1):
                dest = _stretch(c, size)
                if dest is not None:
                    _two_paths(a, anc, dest)


TARGETS: dict[str, Callable[[bytes], None]] = {
    "frames": frames,
    "commit": commit,
    "paths": path_rules,
}
