"""What the client knows about one path: the three views of the sync engine.

- ``remote``: the server's current entry for the path, as of the client's
  cursor (a tombstone keeps its JID with no node).
- ``synced``: what both sides last agreed on; the merge base.
- ``local``: what the last scan found on disk.
"""

from __future__ import annotations

from dataclasses import dataclass

from linesync.protocol.schemas import Kind


@dataclass(frozen=True, slots=True)
class Node:
    """A live file, folder or symlink, without its bytes."""

    kind: Kind
    size: int = 0
    mtime_ns: int = 0
    exec: bool = False
    target: str | None = None
    chash: bytes | None = None  # content hash of a file's blocklist

    def same_content(self, other: Node | None) -> bool:
        """Equal for sync purposes, apart from the modification time."""
        if other is None or other.kind is not self.kind:
            return False
        if self.kind is Kind.FILE:
            return self.chash == other.chash and self.exec == other.exec
        if self.kind is Kind.SYMLINK:
            return self.target == other.target
        return True

    def same(self, other: Node | None) -> bool:
        """Equal, modification time of files included."""
        if not self.same_content(other):
            return False
        assert other is not None
        return self.kind is not Kind.FILE or self.mtime_ns == other.mtime_ns


@dataclass(frozen=True, slots=True)
class Version:
    """A journal entry the client knows: its JID and, unless it is a tombstone, its node."""

    jid: int
    node: Node | None
    moved_from: str | None = None

    @property
    def live(self) -> bool:
        return self.node is not None


@dataclass(frozen=True, slots=True)
class Stat:
    """What identifies a file's bytes on disk without reading them."""

    size: int
    mtime_ns: int
    ctime_ns: int
    ino: int


@dataclass(frozen=True, slots=True)
class Local:
    node: Node
    stat: Stat


@dataclass(frozen=True, slots=True)
class PathState:
    path: str
    remote: Version | None = None
    synced: Version | None = None
    local: Local | None = None

    @property
    def remote_node(self) -> Node | None:
        return self.remote.node if self.remote else None

    @property
    def synced_node(self) -> Node | None:
        return self.synced.node if self.synced else None

    @property
    def local_node(self) -> Node | None:
        return self.local.node if self.local else None
