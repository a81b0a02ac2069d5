"""What every metadata store shares: token hashing, the blocklist cache, and
how deep a chain of blocklist deltas may grow."""

from __future__ import annotations

import hashlib
import secrets
from collections import OrderedDict

from linesync.core.ids import ChunkId

# A file version's blocklist is stored as a delta against an older version's
# when that is at most half the size, up to this many deltas deep.
MAX_DELTA_DEPTH = 32


def hash_token(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8")).digest()


def new_token() -> str:
    return "lst_" + secrets.token_urlsafe(24)  # 192 random bits


class BlocklistCache:
    """Resolved blocklists by (ns, journal, jid), bounded by the number of ids
    held. A version's blocklist never changes, and a reset mints a new journal
    id, so entries never go stale, also across server processes."""

    def __init__(self, max_ids: int) -> None:
        self.data: OrderedDict[tuple[int, str, int], list[ChunkId]] = OrderedDict()
        self.max_ids = max_ids
        self.size = 0

    def get(self, key: tuple[int, str, int]) -> list[ChunkId] | None:
        ids = self.data.get(key)
        if ids is not None:
            self.data.move_to_end(key)
        return ids

    def put(self, key: tuple[int, str, int], ids: list[ChunkId]) -> None:
        if key in self.data or len(ids) > self.max_ids // 4:
            return
        self.data[key] = ids
        self.size += len(ids)
        while self.size > self.max_ids:
            _, old = self.data.popitem(last=False)
            self.size -= len(old)
