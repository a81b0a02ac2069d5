"""Plain records the server's layers pass between them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from linesync.core.ids import ChunkId
from linesync.protocol.schemas import Kind

Role = Literal["rw", "ro"]  # a member's access to a namespace
# A token's: read-write, read-only, or /metrics only (no namespace at all).
TokenRole = Literal["rw", "ro", "metrics"]


@dataclass(frozen=True, slots=True)
class Row:
    """A journal entry without its blocklist."""

    jid: int
    path: str
    kind: Kind
    size: int = 0
    mtime_ns: int = 0
    exec: bool = False
    target: str | None = None
    device: str = ""
    base_jid: int = 0
    moved_from: str | None = None
    chash: bytes | None = None  # content hash of the blocklist (files only)
    created: float | None = None  # when the server wrote it (unix seconds), where known

    @property
    def live(self) -> bool:
        return self.kind is not Kind.TOMBSTONE


@dataclass(frozen=True, slots=True)
class Sources:
    """What a list answer needs to send a file entry's content: its blocklist,
    and the version the client holds (``base``, of the same path or of the
    move's source, with its blocklist), if any."""

    ids: list[ChunkId]
    base: Row | None = None
    base_ids: list[ChunkId] | None = None


@dataclass(frozen=True, slots=True)
class TokenRecord:
    """A token as the admin commands list it, never its secret. Times are
    unix seconds; ``revoked`` None: not revoked; ``expires`` None: never."""

    id: int
    user: str
    device: str
    role: TokenRole
    created: float
    revoked: float | None
    expires: float | None


@dataclass(frozen=True, slots=True)
class NamespaceRecord:
    """A namespace as the admin commands list it: its head JID, and the
    users it is shared with (besides its owner) with their roles."""

    id: int
    name: str
    owner: str
    head: int
    members: dict[str, Role]


@dataclass(frozen=True, slots=True)
class TokenInfo:
    token_id: int
    user_id: int
    user: str
    device: str
    role: TokenRole


@dataclass(frozen=True, slots=True)
class Namespace:
    id: int
    name: str
    journal: str
    head: int
    role: Role  # the asking user's role in it


@dataclass(frozen=True, slots=True)
class ChunkLoc:
    chunk_id: bytes
    pack: str
    offset: int
    length: int
    codec: int
    raw_size: int
