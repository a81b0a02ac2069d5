"""Dead properties (PROPPATCH), per server process and in memory, keyed by
(namespace, path): moved by MOVE, copied by COPY, dropped by DELETE. They
are not in the journal: a restart forgets them, and linesync clients never
see them."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from linesync.core import paths
from linesync.server.dav.rules import DavError

MAX_BYTES = 64 * 2**20  # of property values held at once, over every namespace
# Of one namespace's: its users cannot take all of MAX_BYTES from the others.
MAX_NS_BYTES = 8 * 2**20
# Of one resource's properties: a PROPFIND renders them whole (with a hundred
# listed resources at a time), however many ask for them at once.
MAX_PATH_BYTES = 64 * 2**10
# What an element or attribute costs in memory beyond its text (a parsed
# element is some 80 bytes for a few serialized ones: counting only the
# serialized bytes let 64 MiB of empty elements hold a gigabyte).
ITEM_BYTES = 128


def _size(elem: ET.Element) -> int:
    items = sum(1 + len(e.attrib) for e in elem.iter())
    return len(ET.tostring(elem)) + 64 + ITEM_BYTES * items


class DeadProps:
    def __init__(
        self,
        max_bytes: int = MAX_BYTES,
        max_path_bytes: int = MAX_PATH_BYTES,
        max_ns_bytes: int = MAX_NS_BYTES,
    ) -> None:
        self.max_bytes = max_bytes
        self.max_path_bytes = max_path_bytes
        self.max_ns_bytes = max_ns_bytes
        self.used = 0
        self.ns_used: dict[int, int] = {}
        self.by_ns: dict[int, dict[str, dict[str, ET.Element]]] = {}

    def _count(self, ns_id: int, delta: int) -> None:
        self.used += delta
        self.ns_used[ns_id] = self.ns_used.get(ns_id, 0) + delta

    def get(self, ns_id: int, path: str) -> dict[str, ET.Element]:
        return self.by_ns.get(ns_id, {}).get(path, {})

    def apply(self, ns_id: int, path: str, changes: list[tuple[str, ET.Element | None]]) -> None:
        """Set (element) or remove (None) each property, all or nothing."""
        props = dict(self.get(ns_id, path))
        delta = 0
        for name, value in changes:
            old = props.pop(name, None)
            if old is not None:
                delta -= _size(old)
            if value is not None:
                props[name] = value
                delta += _size(value)
        if delta > 0:
            if self.used + delta > self.max_bytes:
                raise DavError(507, "no room for more properties on this server")
            if self.ns_used.get(ns_id, 0) + delta > self.max_ns_bytes:
                raise DavError(
                    507, f"a namespace's properties take at most {self.max_ns_bytes} bytes"
                )
            if sum(_size(e) for e in props.values()) > self.max_path_bytes:
                raise DavError(
                    507, f"a resource's properties take at most {self.max_path_bytes} bytes"
                )
        self._count(ns_id, delta)
        space = self.by_ns.setdefault(ns_id, {})
        if props:
            space[path] = props
        else:
            space.pop(path, None)

    def _subtree(self, ns_id: int, path: str) -> list[str]:
        space = self.by_ns.get(ns_id, {})
        if path == "":
            return list(space)
        return [p for p in space if p == path or paths.is_under(p, path)]

    def drop(self, ns_id: int, path: str) -> None:
        space = self.by_ns.get(ns_id, {})
        for p in self._subtree(ns_id, path):
            self._count(ns_id, -sum(_size(e) for e in space.pop(p).values()))

    def copy(self, ns_id: int, src: str, dst: str, move: bool = False) -> None:
        """The properties of ``src`` and below at ``dst`` (moved, or copied: a
        copy past MAX_BYTES or MAX_NS_BYTES leaves the rest out, as the limits
        would have refused them to a PROPPATCH)."""
        space = self.by_ns.get(ns_id, {})
        self.drop(ns_id, dst)
        for p in self._subtree(ns_id, src):
            props = space.pop(p) if move else dict(space[p])
            if not move:
                size = sum(_size(e) for e in props.values())
                full = self.ns_used.get(ns_id, 0) + size > self.max_ns_bytes
                if full or self.used + size > self.max_bytes:
                    continue
                self._count(ns_id, size)
            space[paths.rebase(p, src, dst) if src else f"{dst}/{p}"] = props
