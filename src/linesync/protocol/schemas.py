"""Wire schemas of API v1, shared by the server and the client.

JSON bodies are decoded straight into these structs (msgspec validates types
and bounds); rules that span fields live in the server's validation.
Binary values travel as base64url without padding; one chunk id travels as
64 hex characters, a list of ids "packed" (see ``linesync.core.ids``).
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Literal

import msgspec

API_VERSION = 1

Jid = Annotated[int, msgspec.Meta(ge=0, le=2**62)]
Size = Annotated[int, msgspec.Meta(ge=0, le=2**62)]
MtimeNs = Annotated[int, msgspec.Meta(ge=-(2**62), le=2**62)]
# Characters, not bytes: the path rules (4096 UTF-8 bytes) answer bad_path past that.
PathStr = Annotated[str, msgspec.Meta(min_length=1, max_length=16384)]
# Packed chunk ids: room for a blocklist of the server's most ids (2**20, 43
# characters each: a text file of about 2 GiB).
Packed = Annotated[str, msgspec.Meta(pattern="^[A-Za-z0-9_-]*$", max_length=43 * 2**20)]
Target = Annotated[str, msgspec.Meta(min_length=1, max_length=4096)]
DeltaEdit = tuple[Jid, Jid, Packed]


class Kind(StrEnum):
    FILE = "file"
    DIRECTORY = "directory"
    SYMLINK = "symlink"
    TOMBSTONE = "tombstone"


class Content(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    """A file's blocklist: either ``ids`` in full, or ``edits`` against version ``base``."""

    ids: Packed | None = None
    base: Jid | None = None
    edits: list[DeltaEdit] | None = None


class InlineChunk(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    """Chunk bytes carried inside a JSON body; the receiver computes the id.

    ``codec`` "zstd-dict" means zstd with the concatenated bytes of the chunks
    ``base`` (packed ids, at most 255) as raw-content dictionary: a changed
    chunk costs about what changed.
    """

    data: Annotated[str, msgspec.Meta(max_length=2 * 2**20)]
    codec: Literal["raw", "zstd", "zstd-dict"] = "zstd"
    base: Packed | None = None


class CommitOp(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    """One path to commit. ``base_jid`` is the JID of the entry at ``path`` that the
    client based this version on (0 when it believes the path never existed).
    A move names its source in ``move_from`` with the source's JID in ``move_base``."""

    path: PathStr
    kind: Kind
    base_jid: Jid = 0
    size: Size = 0
    mtime_ns: MtimeNs = 0
    exec: bool = False
    target: Target | None = None
    content: Content | None = None
    move_from: PathStr | None = None
    move_base: Jid = 0


Journal = Annotated[str, msgspec.Meta(pattern="^[0-9a-f]{16}$")]


class CommitRequest(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    """``journal``: the journal id the client's JIDs come from (the first part of
    its cursor); a commit against a reset journal is refused with cursor_invalid
    instead of being matched against unrelated entries. ``since``: a cursor; the
    answer then also carries the changes after it (as ``/list`` would, without
    inline chunks and without the entries this commit wrote), saving the client
    a request."""

    ops: list[CommitOp]
    chunks: list[InlineChunk] = []
    journal: Journal | None = None
    since: Annotated[str, msgspec.Meta(max_length=64)] | None = None


class Entry(msgspec.Struct, omit_defaults=True):
    """A journal entry as the server reports it."""

    jid: Jid
    path: str
    kind: Kind
    size: Size = 0
    mtime_ns: MtimeNs = 0
    exec: bool = False
    target: str | None = None
    device: str = ""
    base_jid: Jid = 0
    moved_from: str | None = None
    content: Content | None = None
    # When the server wrote the entry (unix seconds); in history answers only.
    committed: float | None = None
    # A folded folder move (list with ``fold=1``, PROTOCOL §4.16): the entries
    # after this one it stands for, and a digest of what it moved.
    implied: int = 0
    digest: str | None = None


class CommitResult(msgspec.Struct, omit_defaults=True):
    """``status`` is "ok" (``jid`` set), "missing" (``missing`` lists the chunk ids
    the namespace lacks) or "conflict" (``reason`` and the ``current`` entry)."""

    path: str
    status: Literal["ok", "missing", "conflict"]
    jid: Jid | None = None
    missing: Packed | None = None
    reason: str | None = None
    current: Entry | None = None


class CommitResponse(msgspec.Struct, omit_defaults=True):
    """``cursor``: the journal's head after this commit; ``head_before``: the head
    JID it started from. A client whose cursor was at ``head_before`` knows every
    entry up to ``cursor`` (its own) and may move its cursor there. When the
    request gave ``since``, ``changes`` is there instead of those two."""

    results: list[CommitResult]
    cursor: str = ""
    head_before: Jid = 0
    changes: ListResponse | None = None


class PendingFile(msgspec.Struct):
    """An upload in progress elsewhere (streaming sync): ``seq`` names it."""

    seq: Jid
    path: str
    size: Jid


class ListResponse(msgspec.Struct, omit_defaults=True):
    """``pending``: the uploads in progress in the namespace, when asked for
    and there are any."""

    entries: list[Entry]
    cursor: str
    more: bool = False
    chunks: list[InlineChunk] = []
    pending: list[PendingFile] | None = None


class PendingRequest(msgspec.Struct, forbid_unknown_fields=True):
    """An upload about to start: the file's path, size and blocklist (packed)."""

    path: str
    size: Jid
    ids: Packed


class PendingResponse(msgspec.Struct, omit_defaults=True):
    """An announcement; ``ids`` (packed) when it is asked for by its ``seq``."""

    seq: Jid
    path: str
    size: Jid
    ids: Packed = ""


class HeadResponse(msgspec.Struct):
    cursor: str
    jid: Jid


class HistoryResponse(msgspec.Struct, omit_defaults=True):
    entries: list[Entry]


class IdsRequest(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    """``ids`` packed; for chunk downloads ``bases`` may name, per id, a chunk the
    client already holds (all-zero id for none) to receive a zstd-dict delta,
    and ``available`` asks for those of the chunks the namespace holds, the
    others left out (an upload in progress) instead of an error."""

    ids: Packed
    bases: Packed | None = None
    available: bool = False


class MissingResponse(msgspec.Struct):
    missing: Packed


class UploadResponse(msgspec.Struct):
    """``stored``: chunks accepted into the namespace; ``bytes``: their size,
    uncompressed. Both are the same whether or not the server already had them."""

    stored: int
    bytes: int


class RestoreRequest(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    """Make version ``jid`` current at ``path`` again. ``jid`` must be a version of
    ``path`` itself unless ``copy`` is true (then another path's version is copied
    to ``path``)."""

    path: PathStr
    jid: Jid
    base_jid: Jid = 0
    journal: Journal | None = None
    copy: bool = False


class NamespaceInfo(msgspec.Struct):
    id: int
    name: str
    role: Literal["rw", "ro"]
    cursor: str
    head: Jid


class MeResponse(msgspec.Struct):
    user: str
    device: str
    token_role: Literal["rw", "ro"]
    namespaces: list[NamespaceInfo]
    # The protocol versions the server speaks (protocol/version.py); absent
    # from servers older than negotiation, which speak version 1.
    protocol: list[int] = msgspec.field(default_factory=lambda: [1])


class ErrorBody(msgspec.Struct):
    code: str
    message: str
    detail: dict[str, int | str] | None = None


class ErrorResponse(msgspec.Struct):
    error: ErrorBody
