"""Folded folder moves (PROTOCOL §4.16): what both sides know of the entries a
folder move writes, so that a list answer can leave them out.

A folder move of ``src`` (n things below it, folders too) to ``dst`` writes, in
one commit and in this order: the folder's entry at ``dst`` (JID ``J``), an
entry for each thing at its new path in path order (``J+1`` .. ``J+n``), a
tombstone for each at its old path in reverse order (``J+n+1`` .. ``J+2n``),
and the source folder's tombstone (``J+2n+1``). A client that holds exactly
what the server moved (``digest`` says so) can write those ``2n+1`` entries
itself; one that does not asks again without folding.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

import blake3

from linesync.core import paths

N = TypeVar("N")


def digest(src_jid: int, moved: Sequence[tuple[str, int]]) -> str:
    """What a folder move moved: the source folder's JID, and each thing below
    it as (its path relative to the folder, its JID), in path order."""
    h = blake3.blake3(b"%d\n" % src_jid)
    for rel, jid in moved:
        h.update(rel.encode("utf-8", "surrogatepass") + b"\x00%d\n" % jid)
    return h.hexdigest(length=8)


def implied_count(moved: int) -> int:
    """The entries a folder move of ``moved`` things writes after its own."""
    return 2 * moved + 1


@dataclass(frozen=True, slots=True)
class Implied(Generic[N]):
    """One entry a folded move stands for: a thing at its new path (``node``
    set, ``moved_from`` its old path) or a tombstone (``node`` None)."""

    jid: int
    path: str
    node: N | None
    moved_from: str | None = None


def layout(jid: int, src: str, dst: str, moved: Sequence[tuple[str, N]]) -> list[Implied[N]]:
    """The entries a folder move of ``src`` to ``dst`` (its own entry at
    ``jid``) writes after its own, in JID order, for the things ``moved`` (each
    thing below ``src`` as (path, node), in path order)."""
    n = len(moved)
    out = [
        Implied(jid + 1 + k, paths.rebase(path, src, dst), node, path)
        for k, (path, node) in enumerate(moved)
    ]
    out += [Implied(jid + n + 1 + k, path, None) for k, (path, _) in enumerate(reversed(moved))]
    out.append(Implied(jid + 2 * n + 1, src, None))
    return out


def unfold(
    jid: int,
    src: str,
    dst: str,
    implied: int,
    expect: str,
    src_jid: int,
    held: Sequence[tuple[str, int, N]],
) -> list[Implied[N]] | None:
    """``layout`` for a folded move the server listed (``implied`` entries,
    ``expect`` its digest), from what the client holds: ``src_jid``, the
    source folder's JID, and ``held``, every live thing below ``src`` as
    (path, JID, node) in path order. None when that is not what the server
    moved."""
    if implied != implied_count(len(held)):
        return None
    if digest(src_jid, [(p[len(src) + 1 :], j) for p, j, _ in held]) != expect:
        return None
    return layout(jid, src, dst, [(p, node) for p, _, node in held])
