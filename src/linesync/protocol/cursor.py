"""Cursors: how far a client has read a namespace's journal.

A cursor is ``<journal id>.<jid>.<nonce>``: the journal's identity (random,
minted when the namespace is created or reset), the last JID read, and the
random nonce of the entry at that JID. A server that was reset mints a new
journal id; a server restored from an older backup no longer has the entry
with that nonce at that JID (or any entry there). Either way the cursor is
refused with ``cursor_invalid`` instead of silently skipping entries.
"""

from __future__ import annotations

import re
from typing import NamedTuple

from linesync.protocol.errors import Code, LinesyncError

_CURSOR = re.compile(r"([0-9a-f]{16})\.(0|[1-9][0-9]{0,17})\.([0-9a-f]{8}|[0-9a-f]{16}|0)")


class Cursor(NamedTuple):
    journal: str
    jid: int
    nonce: str

    def __str__(self) -> str:
        return f"{self.journal}.{self.jid}.{self.nonce}"


def start(journal: str) -> Cursor:
    """The cursor before the first entry of a journal."""
    return Cursor(journal, 0, "0")


def parse(text: str) -> Cursor:
    m = _CURSOR.fullmatch(text)  # (``$`` would let a trailing newline through)
    if not m:
        raise LinesyncError(Code.BAD_CURSOR, "cursor is malformed")
    return Cursor(m.group(1), int(m.group(2)), m.group(3))
