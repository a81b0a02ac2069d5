"""Two folders synced from one process at once (two threads, as a program that
embeds the library for several folders, or the scale-out tests, does): each
folder's index keeps its chunk cache compressed, and zstd contexts are not
thread-safe. Shared by every index of the process, concurrent compressions
crashed the process (a segfault) or cached wrong bytes."""

from __future__ import annotations

import random
import threading
from pathlib import Path

from linesync.client.index import Index
from linesync.core.ids import chunk_id


def test_chunk_caches_of_two_folders_in_two_threads(tmp_path: Path) -> None:
    errors: list[str] = []
    gate = threading.Barrier(2, timeout=30)

    def work(n: int) -> None:
        rng = random.Random(n)
        index = Index.open(tmp_path / f"index{n}.sqlite3")
        try:
            gate.wait()
            for i in range(150):
                chunks = {}
                for _ in range(4):
                    data = rng.randbytes(16 * 1024) + bytes([i % 256]) * 112 * 1024
                    chunks[chunk_id(data)] = data
                index.cache_put(chunks)
                got = index.cache_get_many(list(chunks))
                if got != chunks:
                    errors.append(f"thread {n}, round {i}: the cache gave back other bytes")
                    return
        finally:
            index.close()

    threads = [threading.Thread(target=work, args=(n,)) for n in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not any(t.is_alive() for t in threads)
    assert not errors, errors
