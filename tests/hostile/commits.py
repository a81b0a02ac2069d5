"""Hypothesis strategies for commit bodies that a real namespace can act on.

Schemathesis draws commit bodies from the JSON schema alone: paths of random
characters, blocklists of random bytes, JIDs anywhere up to 2^62. Nearly all of
them are refused whole (400), so the commit rules (conflicts, moves, tree
rules, deltas, inline chunks, sizes) are never reached. ``commits`` draws from
a small world instead: the seeded namespace's paths and a few more (with case
twins and NFD spellings), its chunks, JIDs near its head, every kind and every
content form, right or slightly wrong (a size off by one, a delta past the end,
a chunk the namespace lacks), and inline chunks in every codec.
"""

from __future__ import annotations

import base64
import unicodedata
from typing import Any

import zstandard
from hypothesis import strategies as st

from linesync.core.ids import chunk_id, pack_ids

PATHS = [
    "docs", "docs/a.txt", "docs/b.txt", "Docs", "c.md", "b.md", "empty", "tool", "link",
    "many", "many/n1.txt", "many/m2.txt", "new", "new/deep", "new/deep/f.txt", "café.md",
    "sp ace",
]  # fmt: skip
# Paths the rules refuse (the whole batch then gets 400 bad_path): drawn rarely.
BAD_PATHS = [unicodedata.normalize("NFD", "café.md"), "x/../y", "/abs", "a\\b", "a//b"]
KINDS = ["file", "directory", "symlink", "tombstone"]


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


jids = st.integers(0, 80)
paths = st.integers(0, 24).flatmap(
    lambda n: st.sampled_from(BAD_PATHS) if n == 0 else st.sampled_from(PATHS)
)


@st.composite
def inline_chunks(draw: st.DrawFn, held: dict[bytes, bytes]) -> dict[str, Any]:
    data = draw(st.one_of(st.binary(max_size=200), st.sampled_from(sorted(held.values()))))
    codec = draw(st.sampled_from(["raw", "zstd", "zstd-dict"]))
    if codec == "raw":
        return {"data": _b64(data), "codec": "raw"}
    if codec == "zstd":
        return {"data": _b64(zstandard.ZstdCompressor(level=1).compress(data)), "codec": "zstd"}
    bases = draw(st.lists(st.sampled_from(sorted(held)), min_size=1, max_size=2))
    d = zstandard.ZstdCompressionDict(
        b"".join(held[b] for b in bases), dict_type=zstandard.DICT_TYPE_RAWCONTENT
    )
    payload = zstandard.ZstdCompressor(level=1, dict_data=d).compress(data)
    return {"data": _b64(payload), "codec": "zstd-dict", "base": pack_ids(bases)}


@st.composite
def ops(draw: st.DrawFn, held: dict[bytes, bytes]) -> dict[str, Any]:
    kind = draw(st.sampled_from(KINDS))
    op: dict[str, Any] = {"path": draw(paths), "kind": kind}
    if draw(st.booleans()):
        op["base_jid"] = draw(jids)
    if draw(st.integers(0, 3)) == 0:
        op["mtime_ns"] = draw(st.integers(-(2**62), 2**62))
    if kind == "file":
        ids = draw(st.lists(st.sampled_from(sorted(held)), max_size=3))
        if draw(st.integers(0, 5)) == 0:
            ids.append(chunk_id(b"a chunk nobody uploaded"))
        size = sum(len(held.get(i, b"?")) for i in ids) + draw(st.sampled_from([0, 0, 0, 1]))
        form = draw(st.sampled_from(["full", "full", "delta", "none"]))
        if form == "full":
            op["content"] = {"ids": pack_ids(ids)}
        elif form == "delta":
            start, delete = draw(jids), draw(st.integers(0, 3))
            op["content"] = {"base": draw(jids), "edits": [[start, delete, pack_ids(ids)]]}
            size = draw(st.integers(0, 2000))
        op["size"] = size
        op["exec"] = draw(st.booleans())
    elif kind == "symlink":
        op["target"] = draw(st.sampled_from(["docs/a.txt", "../out", "x" * 300, "é"]))
    if draw(st.integers(0, 3)) == 0:
        op["move_from"] = draw(paths)
        op["move_base"] = draw(jids)
    return op


@st.composite
def commits(draw: st.DrawFn, held: dict[bytes, bytes], max_ops: int) -> dict[str, Any]:
    body: dict[str, Any] = {"ops": draw(st.lists(ops(held), max_size=min(max_ops, 6)))}
    if draw(st.booleans()):
        body["chunks"] = draw(st.lists(inline_chunks(held), max_size=3))
    if draw(st.integers(0, 3)) == 0:
        body["since"] = ""
    return body
