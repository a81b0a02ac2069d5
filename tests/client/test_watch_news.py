"""A watching client takes a small change from the long-poll's answer itself:
no list request after the wake-up and no chunk fetch (the new chunk comes
inline), so a one-line edit elsewhere costs it one round trip."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest

from linesync.client.api import Client
from linesync.client.remote import Remote
from tests.support import corpus
from tests.support.watch import wait_until, watching


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> Iterator[Counter[str]]:
    """Requests the clients make, by kind (a list that waits is a long-poll)."""
    seen: Counter[str] = Counter()
    lock = threading.Lock()

    def counting(name: str, original: Any) -> Any:
        async def method(self: Remote, *args: Any, **kwargs: Any) -> Any:
            kind = "long-poll" if name == "list_changes" and kwargs.get("wait") else name
            with lock:
                seen[kind] += 1
            return await original(self, *args, **kwargs)

        return method

    for name in ("list_changes", "fetch", "entry", "commit_full", "upload"):
        monkeypatch.setattr(Remote, name, counting(name, getattr(Remote, name)))
    yield seen


def test_a_one_line_edit_reaches_a_watcher_in_the_long_polls_answer(
    pair: tuple[Client, Client], calls: Counter[str]
) -> None:
    a, b = pair
    big = corpus.markdown(1_000_000, seed=5)
    (a.folder / "notes.md").write_bytes(big)
    assert a.sync_once().converged and b.sync_once().converged
    edited = corpus.edit_middle_line(big)
    with watching(b) as (wb,):
        assert wait_until(lambda: len(wb.snapshot()) >= 1 and calls["long-poll"] >= 1, 20)
        polls_before = calls["long-poll"]
        calls.clear()
        calls["long-poll"] = polls_before
        (a.folder / "notes.md").write_bytes(edited)
        assert a.sync_once().converged
        assert wait_until(lambda: (b.folder / "notes.md").read_bytes() == edited, 20)
        # B's own write wakes its watcher: that round lists nothing either.
        rounds = len(wb.snapshot())
        assert wait_until(lambda: len(wb.snapshot()) > rounds, 5)
        time.sleep(0.3)
        got = dict(calls)
    assert got.get("list_changes", 0) == 0, got  # no list after the wake-up
    assert got.get("fetch", 0) == 0 and got.get("entry", 0) == 0, got  # the chunk came inline


def test_both_watching_an_edit_costs_a_commit_and_the_long_polls(
    pair: tuple[Client, Client], calls: Counter[str]
) -> None:
    """With both folders watched, an edit costs A one commit and B the
    long-poll's answer: A's own long-poll, answered with A's own commit, wakes
    no round, and neither side lists."""
    a, b = pair
    (a.folder / "notes.md").write_bytes(corpus.markdown(200_000, seed=6))
    assert a.sync_once().converged and b.sync_once().converged
    with watching(a, b) as (wa, wb):
        assert wait_until(lambda: calls["long-poll"] >= 2, 20)
        time.sleep(0.3)
        calls.clear()
        rounds_a = len(wa.snapshot())
        edited = corpus.edit_middle_line((a.folder / "notes.md").read_bytes())
        (a.folder / "notes.md").write_bytes(edited)
        assert wait_until(lambda: (b.folder / "notes.md").read_bytes() == edited, 20)
        time.sleep(1.0)  # what either side would do after it
        got = dict(calls)
        rounds = len(wa.snapshot()) - rounds_a
    assert got.get("commit_full") == 1, got
    assert got.get("list_changes", 0) == 0, got
    assert got.get("fetch", 0) == 0 and got.get("upload", 0) == 0, got
    assert rounds == 1, rounds  # the edit's round; not one more for A's own news


def test_a_watcher_starting_on_an_empty_folder_lists_the_namespace_once(
    pair: tuple[Client, Client], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Its long-poll starts after the first round: from the journal's start,
    it would bring back everything that round lists (and, on the device that
    uploads, its whole first upload at the poll's deadline)."""
    a, b = pair
    for i in range(60):
        (a.folder / f"n{i:02d}.md").write_bytes(corpus.markdown(2_000, seed=i))
    assert a.sync_once().converged
    lists: list[tuple[str | None, int]] = []  # cursor, wait
    lock = threading.Lock()
    real = Remote.list_changes

    async def spy(self: Remote, ns: int, cursor: str | None = None, **kw: Any) -> Any:
        with lock:
            lists.append((cursor, kw.get("wait", 0)))
        return await real(self, ns, cursor, **kw)

    monkeypatch.setattr(Remote, "list_changes", spy)
    with watching(b) as (wb,):
        assert wait_until(lambda: len(list(b.folder.glob("n*.md"))) == 60, 30)
        assert wait_until(lambda: any(w for _, w in lists), 10), lists
    assert [w for c, w in lists if c is None] == [0], lists  # the first round's list only
