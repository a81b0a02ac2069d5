"""The metadata store interface: users, tokens, namespaces, journal, chunk index.

Every implementation runs the same contract suite (tests/contract). The
embedded default is SQLite (``sqlite.py``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from linesync.core.ids import ChunkId
from linesync.protocol.schemas import CommitOp, CommitResult
from linesync.server.commit import Limits
from linesync.server.model import (
    ChunkLoc,
    Namespace,
    NamespaceRecord,
    Role,
    Row,
    Sources,
    TokenInfo,
    TokenRecord,
    TokenRole,
)

# Told of every commit that wrote entries: (namespace, session, the JIDs it
# wrote). ``None`` for the namespace: commits may have been missed (a lost
# connection to a shared database); every waiter should read its journal again.
CommitListener = Callable[[int | None, str | None, range], None]


class StoreError(Exception):
    """An admin operation that cannot be done (unknown user, duplicate name...)."""


@dataclass(frozen=True)
class CommitOutcome:
    results: list[CommitResult]
    head: int  # after the commit
    head_before: int
    nonce: str  # of the entry at ``head``


@dataclass(frozen=True)
class Head:
    journal: str
    jid: int
    nonce: str


@dataclass(frozen=True)
class GcStats:
    stale_refs: int
    chunks_deleted: int
    bytes_freed: int


class AdminStore(Protocol):
    """Users, tokens, namespaces and who may use them."""

    async def create_user(self, name: str) -> int: ...
    async def create_token(
        self, user: str, device: str, role: TokenRole, expires: float | None = None
    ) -> str:
        """A new token; ``expires``: unix seconds from which ``authenticate``
        refuses it (None: never; a time already past is stored as given). A
        non-finite ``expires`` is a StoreError."""
        ...

    async def revoke_tokens(self, user: str, device: str | None = None) -> int: ...
    async def list_tokens(self, user: str | None = None) -> list[TokenRecord]:
        """Every token (of ``user``), oldest first."""
        ...

    async def list_users(self) -> list[str]: ...
    async def create_namespace(self, name: str, owner: str) -> int: ...
    async def share(self, namespace: str, user: str, role: Role | None) -> None: ...
    async def list_namespaces(self) -> list[NamespaceRecord]: ...
    async def reset_namespace(self, namespace: str) -> None: ...

    async def authenticate(self, token: str) -> TokenInfo | None:
        """The token's owner, or None for an unknown, revoked or expired token
        (``expires`` at or before the current time)."""
        ...

    async def namespace(self, ns_id: int, user_id: int) -> Namespace | None: ...
    async def namespaces_of(self, user_id: int) -> list[Namespace]: ...
    async def namespace_record(self, ns_id: int) -> NamespaceRecord | None:
        """One namespace as ``list_namespaces`` gives it (None: no such id)."""
        ...


class JournalStore(Protocol):
    """Each namespace's journal: commits, and what list pages read."""

    async def commit(
        self,
        ns_id: int,
        ops: Sequence[CommitOp],
        device: str,
        limits: Limits,
        session: str | None = None,
    ) -> CommitOutcome:
        """Plan and write a batch; once it is durable, every listener (of every
        process sharing the store) is told, with ``session``."""
        ...

    def subscribe(self, listener: CommitListener) -> None:
        """Call ``listener`` for each commit from now on, this process's and
        (for a shared store) every other's."""
        ...

    async def head(self, ns_id: int) -> Head: ...
    async def nonce(self, ns_id: int, jid: int) -> str | None: ...
    async def changes(self, ns_id: int, after: int, limit: int) -> tuple[list[Row], int]: ...
    async def version_at(self, ns_id: int, path: str, jid: int) -> Row | None: ...
    async def entry(self, ns_id: int, jid: int) -> Row | None: ...
    async def journal(self, ns_id: int, after: int, upto: int) -> list[Row]:
        """Every entry with ``after < jid <= upto``, in JID order."""
        ...

    async def blocklist(self, ns_id: int, jid: int) -> list[ChunkId] | None: ...
    async def sources(self, ns_id: int, rows: Sequence[Row], since: int) -> dict[int, Sources]:
        """For each file among ``rows`` (by JID): its blocklist, and the file
        version the path (or the move's source) had at ``since``, with its
        blocklist. One call for a slice of a list page."""
        ...

    async def history(self, ns_id: int, path: str, before: int, limit: int) -> list[Row]: ...

    async def children(
        self, ns_id: int, folder: str, after: str, limit: int, deleted: bool = False
    ) -> list[Row]:
        """The current entries right inside ``folder`` ("" for the top) whose
        paths sort after ``after`` ("": from the first), at most ``limit``, by
        path (byte order of UTF-8); tombstones too with ``deleted``. Costs in
        proportion to the children and child folders read, not to the
        namespace's size."""
        ...

    async def under(
        self, ns_id: int, folder: str, after: str, limit: int, deleted: bool = False
    ) -> list[Row]:
        """The live current entries anywhere below ``folder`` ("" for all),
        after ``after``, at most ``limit``, by path; tombstones too with
        ``deleted``."""
        ...

    async def find(self, ns_id: int, text: str, after: str, limit: int) -> list[Row]:
        """The live current files whose path contains ``text`` (exactly, case
        and all), after ``after``, at most ``limit``, by path. Reads the
        namespace's current entries inside the database."""
        ...


class ChunkIndex(Protocol):
    """Where each chunk is stored, and which namespaces hold it."""

    async def missing(self, ns_id: int, ids: Sequence[ChunkId]) -> set[ChunkId]: ...
    async def locate(self, ns_id: int, ids: Sequence[ChunkId]) -> dict[ChunkId, ChunkLoc]: ...
    async def locate_stored(self, ids: Sequence[ChunkId]) -> dict[ChunkId, ChunkLoc]: ...
    async def add_chunks(self, ns_id: int, chunks: Sequence[ChunkLoc]) -> None:
        """The namespace holds these chunks now (as uploads); each is indexed at
        the location given, also one indexed already (the newest copy wins: an
        upload writes every chunk, so that its timing tells nothing)."""
        ...


class MaintenanceStore(Protocol):
    """Garbage collection, pack compaction and the consistency check."""

    async def gc(self, grace_seconds: float) -> tuple[GcStats, list[ChunkLoc]]: ...
    async def pack_usage(self) -> dict[str, int]: ...
    async def pack_chunks(self, pack: str) -> list[ChunkLoc]: ...
    async def chunks_in(self, packs: Sequence[str]) -> list[ChunkLoc]:
        """The indexed chunks stored in any of ``packs``, by pack and offset."""
        ...

    async def relocate(self, moves: Sequence[ChunkLoc]) -> None: ...
    async def all_chunks(self) -> list[ChunkLoc]: ...
    async def check_entries(self) -> list[str]:
        """What is wrong with the file entries: chunks not indexed or not held."""
        ...

    async def lease(self, name: str, holder: str, seconds: float) -> bool:
        """Take (or renew) the lease ``name`` for ``holder`` until ``seconds``
        from now; False while another holder's lease runs. One GC runner at a
        time across every process sharing the store."""
        ...

    async def retired(self) -> dict[str, float]:
        """Packs judged empty, each with when (unix seconds): deleted by a later
        round if still unused."""
        ...

    async def set_retired(self, add: Sequence[str], drop: Sequence[str]) -> None:
        """Retire ``add`` (as of now; one retired already keeps its time) and
        forget ``drop``."""
        ...


class MetadataStore(AdminStore, JournalStore, ChunkIndex, MaintenanceStore, Protocol):
    """Everything the server keeps apart from chunk bytes. A part of the
    server that needs one concern takes that protocol only."""

    async def close(self) -> None: ...
