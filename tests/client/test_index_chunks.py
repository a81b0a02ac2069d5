"""The index's chunk bookkeeping: where local files hold chunks (layouts), the
chunk cache, and the upgrade of an index made by the previous release."""

from __future__ import annotations

import random
import sqlite3
from collections.abc import Iterator, Mapping
from pathlib import Path

from linesync.client.index import _DIRTY, _MIGRATIONS, SCHEMA_VERSION, Index
from linesync.core.ids import ChunkId, chunk_id


def _chunks(*texts: bytes) -> tuple[list[ChunkId], list[int]]:
    return [chunk_id(t) for t in texts], [len(t) for t in texts]


def _index(tmp_path: Path) -> Index:
    return Index.open(tmp_path / "index.sqlite3")


def test_layout_offsets_follow_an_edit_and_a_delete(tmp_path: Path) -> None:
    ix = _index(tmp_path)
    a, b, c, d = b"alpha\n", b"bravo bravo\n", b"charlie\n", b"delta delta delta\n"
    ids, sizes = _chunks(a, b, c)
    ix.set_layout("f.txt", ids, sizes)
    found = ix.find_chunks(ids)
    assert found == {ids[0]: [("f.txt", 0, 6)], ids[1]: [("f.txt", 6, 12)],
                     ids[2]: [("f.txt", 18, 8)]}  # fmt: skip

    # A line inserted at the top: every offset moves, "b" is gone.
    ids2, sizes2 = _chunks(d, a, c)
    ix.set_layout("f.txt", ids2, sizes2)
    found = ix.find_chunks([*ids, chunk_id(d)])
    assert found == {chunk_id(d): [("f.txt", 0, 18)], ids[0]: [("f.txt", 18, 6)],
                     ids[2]: [("f.txt", 24, 8)]}  # fmt: skip
    rows = ix.db.execute("SELECT COUNT(*) FROM file_chunks WHERE path='f.txt'").fetchone()[0]
    assert rows == 3

    # Another file with a chunk in common: both places; then one is deleted.
    ix.set_layout("g.txt", *_chunks(c))
    assert sorted(ix.find_chunks([ids[2]])[ids[2]]) == [("f.txt", 24, 8), ("g.txt", 0, 8)]
    ix.set_local("f.txt", None)
    assert ix.find_chunks([ids[2]]) == {ids[2]: [("g.txt", 0, 8)]}
    assert ix.find_chunks([ids[0]]) == {}


def test_a_repeated_chunk_is_found_at_its_first_place(tmp_path: Path) -> None:
    ix = _index(tmp_path)
    ids, sizes = _chunks(b"x\n", b"yy\n", b"x\n")
    ix.set_layout("f", ids, sizes)
    assert ix.find_chunks([ids[0]]) == {ids[0]: [("f", 0, 2)]}


class _Watched(Mapping[ChunkId, bytes]):
    """A mapping that records which chunks were read from it."""

    def __init__(self, data: dict[ChunkId, bytes]) -> None:
        self.data = data
        self.read: list[ChunkId] = []

    def __getitem__(self, key: ChunkId) -> bytes:
        self.read.append(key)
        return self.data[key]

    def __iter__(self) -> Iterator[ChunkId]:
        return iter(self.data)

    def __len__(self) -> int:
        return len(self.data)


def test_cache_put_reads_only_chunks_it_does_not_hold(tmp_path: Path) -> None:
    ix = _index(tmp_path)
    old = {chunk_id(t): t for t in (b"one\n" * 50, b"two\n" * 50)}
    ix.cache_put(old)
    new = b"three\n" * 50
    both = _Watched({**old, chunk_id(new): new})
    ix.cache_put(both)
    assert both.read == [chunk_id(new)]
    assert ix.cache_get_many(list(both)) == both.data


def test_cache_trim_keeps_the_cache_under_its_bound(tmp_path: Path) -> None:
    ix = _index(tmp_path)
    blobs = [random.Random(i).randbytes(1000) for i in range(40)]  # incompressible
    for i, blob in enumerate(blobs):
        ix.cache_put({chunk_id(blob): blob})
        ix.cache_trim(4000)  # a few compressed chunks fit
        total = ix.db.execute("SELECT COALESCE(SUM(size), 0) FROM cache").fetchone()[0]
        assert total <= 4000, f"after {i + 1} puts the cache holds {total} bytes"
    assert chunk_id(blobs[-1]) in ix.cache_get_many([chunk_id(blobs[-1])])  # newest kept
    assert not ix.cache_get_many([chunk_id(blobs[0])])  # oldest dropped


def _made_by(path: Path, version: int) -> sqlite3.Connection:
    """An index as the release with schema ``version`` made it."""
    db = sqlite3.connect(path, isolation_level=None)
    for v in range(version):
        for stmt in _MIGRATIONS[v].split(";"):
            if stmt.strip():
                db.execute(stmt)
    db.execute(f"PRAGMA user_version={version}")
    return db


def test_an_index_of_schema_2_is_upgraded(tmp_path: Path) -> None:
    path = tmp_path / "index.sqlite3"
    db = _made_by(path, 2)
    cid = chunk_id(b"kept\n")
    db.execute("INSERT INTO cache (id, data, size, used) VALUES (?, ?, 5, 1.0)",
               (cid, b"\x28\xb5\x2f\xfd\x20\x05\x29\x00\x00kept\n"))  # fmt: skip
    db.execute("INSERT INTO file_chunks VALUES (?, 'old.txt', 0, 5)", (cid,))
    db.close()

    ix = Index.open(path)
    assert ix.db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert ix.cache_get_many([cid]) == {cid: b"kept\n"}  # the cache survives
    assert ix.find_chunks([cid]) == {}  # old layouts were hints: dropped
    ix.set_layout("new.txt", [cid], [5])
    assert ix.find_chunks([cid]) == {cid: [("new.txt", 0, 5)]}


def test_an_index_of_the_previous_release_is_upgraded_and_finds_what_disagrees(
    tmp_path: Path,
) -> None:
    """Schema 3 to 4: the paths whose views disagree, and the synced files,
    come from partial indexes; the answers are those of the rows."""
    path = tmp_path / "index.sqlite3"
    db = _made_by(path, SCHEMA_VERSION - 1)
    rows = [  # path, s_kind, s_jid, r_kind, r_jid, l_kind, l_chash, s_chash
        ("same.md", "file", 1, "file", 1, "file", b"h", b"h"),
        ("edited.md", "file", 2, "file", 2, "file", b"new", b"old"),
        ("theirs.md", "file", 3, "file", 9, "file", b"h", b"h"),
        ("gone.md", "file", 4, "file", 4, None, None, b"h"),
        ("folder", "directory", 5, "directory", 5, "directory", None, None),
    ]
    db.executemany(
        "INSERT INTO paths (path, s_kind, s_jid, r_kind, r_jid, l_kind, l_chash, s_chash) "
        "VALUES (?,?,?,?,?,?,?,?)",
        rows,
    )
    db.close()
    ix = Index.open(path)
    assert ix.db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert sorted(ix.dirty()) == ["edited.md", "gone.md", "theirs.md"]
    assert ix.synced_files() == 4
    plan = " ".join(
        str(r) for r in ix.db.execute(f"EXPLAIN QUERY PLAN SELECT path FROM paths WHERE {_DIRTY}")
    )
    assert "paths_dirty" in plan
    ix.set_local("same.md", None)  # kept up to date as rows change
    assert "same.md" in ix.dirty()


def test_read_before_knows_only_the_bytes_it_was_told(tmp_path: Path) -> None:
    from linesync.core.ids import file_hash

    ix = _index(tmp_path)
    ids, sizes = _chunks(b"one\n", b"two\n")
    ix.set_layout("f", ids, sizes, file_hash([b"one\n", b"two\n"]))
    chash = ix.db.execute("SELECT chash FROM layouts WHERE path='f'").fetchone()[0]
    assert ix.read_before("f", file_hash([b"one\ntwo\n"])) == chash  # pieces don't matter
    assert ix.read_before("f", file_hash([b"one\nTWO\n"])) is None
    assert ix.read_before("g", file_hash([b"one\ntwo\n"])) is None
    ix.set_layout("f", *_chunks(b"one\n"))  # changed, no hash given: nothing claimed
    assert ix.read_before("f", file_hash([b"one\ntwo\n"])) is None
    assert ix.read_before("f", file_hash([b"one\n"])) is None
