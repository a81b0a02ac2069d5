"""The mass-delete rail's decisions (pure): a deletion is judged whole, after
it settled, with recent deletions counted in, against the tree before it."""

from __future__ import annotations

import pytest

from linesync.client.rail import (
    SECOND,
    Action,
    Hold,
    Rail,
    describe,
    digest,
    judge,
    prune,
    recent_count,
)

T0 = 1_700_000_000 * SECOND
WATCH = Rail(settle_ns=2 * SECOND)
ONE_SHOT = Rail()


def _hold(**kw: object) -> Hold:
    base: dict[str, object] = dict(
        since_ns=T0, changed_ns=T0, digest=digest(["a"]), count=1, total=100, recent=0
    )
    base.update(kw)
    return Hold(**base)  # type: ignore[arg-type]


# (files to delete, synced files, recently deleted, action for a one-shot sync)
JUDGED = [
    (0, 100, 0, Action.NONE),
    (1, 100, 0, Action.SEND),
    (9, 10, 0, Action.SEND),  # under the floor: a small folder may be emptied
    (10, 19, 0, Action.REFUSE),  # 10 of 19: most of it
    (10, 20, 0, Action.SEND),  # exactly half is not "most"
    (73, 117, 0, Action.REFUSE),  # the audit's smaller case
    (2000, 2140, 0, Action.REFUSE),  # the audit's rm -rf
    (579, 1140, 0, Action.REFUSE),  # what the old rail saw, too late
    (363, 2140, 0, Action.SEND),  # ...and the first round it let through alone
    # Recent deletions count with the pending ones, against the tree before them:
    (622, 1777, 363, Action.SEND),  # 985 of 2140
    (600, 1000, 500, Action.REFUSE),  # 1100 of 1500
    (5, 10, 6, Action.REFUSE),  # 11 of 16: over the floor only together
]


@pytest.mark.parametrize(("files", "synced", "recent", "action"), JUDGED)
def test_a_one_shot_sync_judges_the_whole_deletion(
    files: int, synced: int, recent: int, action: Action
) -> None:
    paths = [f"p{i}" for i in range(files)]
    v = judge(
        None, pending=digest(paths), paths=files, files=files, synced_files=synced,
        recent=recent, now_ns=T0, rail=ONE_SHOT,
    )  # fmt: skip
    assert v.action is action
    if action is Action.NONE:
        assert v.hold is None
    else:
        assert v.hold is not None
        assert (v.hold.count, v.hold.total, v.hold.recent) == (files, synced + recent, recent)
        assert v.hold.refused == (action is Action.REFUSE)


def test_a_confirmed_deletion_is_sent_whatever_its_size() -> None:
    v = judge(None, pending=digest(["x"]), paths=2000, files=2000, synced_files=2140, recent=0,
              now_ns=T0, rail=ONE_SHOT, confirmed=True)  # fmt: skip
    assert v.action is Action.SEND


def test_folders_alone_are_sent_and_count_for_nothing() -> None:
    v = judge(None, pending=digest(["d"]), paths=30, files=0, synced_files=10, recent=0,
              now_ns=T0, rail=ONE_SHOT)  # fmt: skip
    assert v.action is Action.SEND and v.hold is not None and v.hold.count == 0


def test_a_watcher_waits_until_the_deletion_stops_growing() -> None:
    """rm -rf seen over several scans: nothing is sent while the set changes;
    once it is quiet for the settle time it is judged whole (and refused)."""
    synced = 2140
    seen = [363, 985, 1561, 2000]
    hold: Hold | None = None
    t = T0
    for n in seen:
        paths = [f"big/f{i:04}" for i in range(n)]
        v = judge(hold, pending=digest(paths), paths=n + 1, files=n, synced_files=synced,
                  recent=0, now_ns=t, rail=WATCH)  # fmt: skip
        assert v.action is Action.WAIT, n
        assert v.wake_ns == t + 2 * SECOND
        assert v.hold is not None and v.hold.since_ns == T0 and v.hold.changed_ns == t
        hold = v.hold
        t += SECOND // 2
    paths = [f"big/f{i:04}" for i in range(2000)]
    # The same set a moment later: not settled yet.
    v = judge(hold, pending=digest(paths), paths=2001, files=2000, synced_files=synced,
              recent=0, now_ns=t, rail=WATCH)  # fmt: skip
    assert v.action is Action.WAIT and v.wake_ns == hold.changed_ns + 2 * SECOND
    # Quiet long enough: judged whole.
    later = hold.changed_ns + 2 * SECOND
    v = judge(v.hold, pending=digest(paths), paths=2001, files=2000, synced_files=synced,
              recent=0, now_ns=later, rail=WATCH)  # fmt: skip
    assert v.action is Action.REFUSE
    assert v.hold is not None and v.hold.refused
    assert (v.hold.count, v.hold.total, v.hold.since_ns) == (2000, 2140, T0)


def test_a_small_deletion_waits_too_then_goes() -> None:
    v = judge(None, pending=digest(["a.md"]), paths=1, files=1, synced_files=50, recent=0,
              now_ns=T0, rail=WATCH)  # fmt: skip
    assert v.action is Action.WAIT
    v = judge(v.hold, pending=digest(["a.md"]), paths=1, files=1, synced_files=50, recent=0,
              now_ns=T0 + 2 * SECOND, rail=WATCH)  # fmt: skip
    assert v.action is Action.SEND


def test_a_refusal_stays_refused_while_it_grows_and_ends_when_undone() -> None:
    refused = _hold(count=80, total=100, refused=True, changed_ns=T0)
    paths81 = [f"p{i}" for i in range(81)]
    v = judge(refused, pending=digest(paths81), paths=81, files=81, synced_files=100, recent=0,
              now_ns=T0 + 10 * SECOND, rail=WATCH)  # fmt: skip
    assert v.action is Action.WAIT  # changed: settles again...
    assert v.hold is not None and v.hold.refused  # ...and still reads as refused meanwhile
    assert v.hold.since_ns == T0
    # The user put everything back: nothing pending, nothing held.
    v = judge(v.hold, pending=digest([]), paths=0, files=0, synced_files=100, recent=0,
              now_ns=T0 + 11 * SECOND, rail=WATCH)  # fmt: skip
    assert v.action is Action.NONE and v.hold is None


def test_files_added_while_a_deletion_is_pending_do_not_dilute_it() -> None:
    first = judge(None, pending=digest(["x"]), paths=60, files=60, synced_files=100, recent=0,
                  now_ns=T0, rail=WATCH)  # fmt: skip
    assert first.hold is not None and first.hold.total == 100
    # Another device adds 100 files meanwhile: 60 of 200 would not be "most".
    v = judge(first.hold, pending=digest(["x"]), paths=60, files=60, synced_files=200,
              recent=0, now_ns=T0 + 3 * SECOND, rail=WATCH)  # fmt: skip
    assert v.action is Action.REFUSE
    assert v.hold is not None and (v.hold.count, v.hold.total) == (60, 100)


def test_a_partial_undo_that_leaves_a_small_deletion_lets_it_go() -> None:
    refused = _hold(count=80, total=100, refused=True)
    v = judge(refused, pending=digest(["p1", "p2"]), paths=2, files=2, synced_files=100,
              recent=0, now_ns=T0 + 5 * SECOND, rail=ONE_SHOT)  # fmt: skip
    assert v.action is Action.SEND and v.hold is not None and not v.hold.refused


def test_recent_deletions_expire_from_the_window() -> None:
    recent = [(T0, 300), (T0 + 100 * SECOND, 5), (T0 + 200 * SECOND, 7)]
    now = T0 + 220 * SECOND
    assert recent_count(recent, now, 120 * SECOND) == 12
    assert prune(recent, now, 120 * SECOND) == recent[1:]
    assert recent_count(recent, now, 300 * SECOND) == 312
    # A clock that went back: entries "from the future" are not trusted either.
    assert recent_count(recent, T0 - SECOND, 120 * SECOND) == 0


def test_the_hold_survives_the_index_and_a_damaged_one_is_judged_afresh() -> None:
    h = _hold(count=7, total=9, recent=2, refused=True)
    assert Hold.loads(h.dumps()) == h
    assert Hold.loads(None) is None
    assert Hold.loads("{not json") is None
    assert Hold.loads('{"since_ns": 1}') is None


def test_the_refusal_tells_how_many_of_how_many_and_what_to_do() -> None:
    text = describe(_hold(count=2000, total=2140, refused=True))
    assert "2000 of 2140" in text and "--confirm-deletes" in text and "put them back" in text


def test_the_digest_does_not_depend_on_order() -> None:
    assert digest(["a", "b"]) == digest(["b", "a"]) != digest(["a"])
    assert digest(["a", "b"]) != digest(["ab"])
