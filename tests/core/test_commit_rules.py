"""The commit rules (``linesync.server.commit``), table by table, on an in-memory view.

Every table row sets a namespace up with batches that must all be accepted,
then runs the batch under test through ``plan_commit`` and checks the result of
each op and the entries it writes. A Hypothesis test at the end runs random
batches and checks the journal's invariants after each one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypeVar

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from linesync.core import blocklist as bl
from linesync.core import paths
from linesync.core.ids import ChunkId, chunk_id, pack_ids, unpack_ids
from linesync.protocol.errors import Code, LinesyncError
from linesync.protocol.schemas import CommitOp, CommitResult, Content, Kind
from linesync.server.commit import Limits, Plan, plan_commit
from tests.support.memview import MemView

C = [chunk_id(b"chunk %d" % i) for i in range(10)]
SIZE = {c: 10 + i for i, c in enumerate(C)}  # sizes differ, so a wrong sum is caught


def size_of(ids: Sequence[ChunkId]) -> int:
    return sum(SIZE[c] for c in ids)


# -- op builders ---------------------------------------------------------------


def file(path: str, ids: Sequence[ChunkId], base: int = 0, size: int | None = None) -> CommitOp:
    return CommitOp(
        path=path,
        kind=Kind.FILE,
        base_jid=base,
        size=size_of(ids) if size is None else size,
        mtime_ns=1_000,
        content=Content(ids=pack_ids(ids)),
    )


def edit(
    path: str,
    base: int,
    edits: Sequence[tuple[int, int, Sequence[ChunkId]]],
    size: int,
    content_base: int | None = None,
) -> CommitOp:
    """A file version sent as a delta against ``content_base`` (default: ``base``)."""
    return CommitOp(
        path=path,
        kind=Kind.FILE,
        base_jid=base,
        size=size,
        mtime_ns=2_000,
        content=Content(
            base=base if content_base is None else content_base,
            edits=[(s, d, pack_ids(ins)) for s, d, ins in edits],
        ),
    )


def mkdir(path: str, base: int = 0) -> CommitOp:
    return CommitOp(path=path, kind=Kind.DIRECTORY, base_jid=base)


def link(path: str, target: str, base: int = 0) -> CommitOp:
    return CommitOp(path=path, kind=Kind.SYMLINK, base_jid=base, target=target)


def rm(path: str, base: int) -> CommitOp:
    return CommitOp(path=path, kind=Kind.TOMBSTONE, base_jid=base)


def move(
    src: str, dst: str, move_base: int, kind: Kind = Kind.FILE, size: int = 0, base: int = 0
) -> CommitOp:
    return CommitOp(
        path=dst, kind=kind, base_jid=base, size=size, move_from=src, move_base=move_base
    )


# -- running -------------------------------------------------------------------


def namespace(*batches: Sequence[CommitOp]) -> MemView:
    """A namespace holding every test chunk, after ``batches`` (all accepted)."""
    view = MemView(SIZE)
    for batch in batches:
        plan = view.commit(batch, device="setup")
        bad = [r for r in plan.results if r.status != "ok"]
        assert not bad, f"setup refused: {bad}"
    return view


def run(view: MemView, ops: Sequence[CommitOp], device: str = "dev1") -> Plan:
    """Plan a batch and apply it (a refused batch raises before anything changes)."""
    return view.commit(ops, device=device)


def summary(r: CommitResult) -> tuple[object, ...]:
    """A result as a short tuple: ("ok", jid) / ("missing", [ids]) /
    ("conflict", reason, current path or None, current jid or None)."""
    if r.status == "ok":
        return ("ok", r.jid)
    if r.status == "missing":
        assert r.missing is not None
        return ("missing", unpack_ids(r.missing))
    cur = r.current
    return ("conflict", r.reason, cur.path if cur else None, cur.jid if cur else None)


def written(plan: Plan) -> list[tuple[int, str, str, str | None]]:
    """The plan's writes as (jid, path, kind, moved_from)."""
    return [(w.row.jid, w.row.path, w.row.kind.value, w.row.moved_from) for w in plan.writes]


def refused(view: MemView, ops: Sequence[CommitOp], code: Code) -> LinesyncError:
    head, rows = view.head, dict(view.rows)
    with pytest.raises(LinesyncError) as info:
        run(view, ops)
    assert info.value.code is code, info.value
    assert (view.head, view.rows) == (head, rows), "a refused batch changed the namespace"
    return info.value


# -- creating and editing files ------------------------------------------------


def test_create_file_writes_its_blocklist_and_takes_up_its_chunks() -> None:
    view = namespace()
    ids = [C[0], C[1], C[0]]
    plan = run(view, [file("a.txt", ids)])
    assert [summary(r) for r in plan.results] == [("ok", 1)]
    (w,) = plan.writes
    assert (w.row.jid, w.row.path, w.row.kind, w.row.size) == (1, "a.txt", Kind.FILE, 31)
    assert (w.row.device, w.row.base_jid, w.row.mtime_ns) == ("dev1", 0, 1_000)
    assert w.row.chash == bl.content_hash(ids)
    assert w.blocklist == ids
    assert w.new_chunks == [C[0], C[1]]
    assert view.blocklist(1) == ids


def test_empty_file_is_a_file_not_a_tombstone() -> None:
    view = namespace()
    plan = run(view, [file("empty", [])])
    assert [summary(r) for r in plan.results] == [("ok", 1)]
    assert view.rows["empty"].kind is Kind.FILE and view.rows["empty"].live
    assert view.blocklist(1) == []


@pytest.mark.parametrize(
    ("held", "ids", "missing"),
    [
        pytest.param([], [C[0]], [C[0]], id="one-missing"),
        pytest.param([C[0], C[2]], [C[3], C[0], C[1], C[3], C[4]], [C[3], C[1], C[4]],
                     id="in-blocklist-order-without-duplicates"),
        pytest.param([C[1]], [C[2], C[1], C[2]], [C[2]], id="repeated-missing-once"),
    ],
)  # fmt: skip
def test_missing_chunks_are_listed_in_order(
    held: list[ChunkId], ids: list[ChunkId], missing: list[ChunkId]
) -> None:
    view = MemView({c: SIZE[c] for c in held})
    plan = run(view, [file("f", ids)])
    assert [summary(r) for r in plan.results] == [("missing", missing)]
    assert plan.writes == [] and view.head == 0


def test_missing_chunks_then_upload_then_commit_again() -> None:
    view = MemView()
    op = file("f", [C[1], C[2]])
    assert summary(run(view, [op]).results[0]) == ("missing", [C[1], C[2]])
    view.hold({C[1]: SIZE[C[1]], C[2]: SIZE[C[2]]})
    assert summary(run(view, [op]).results[0]) == ("ok", 1)


@pytest.mark.parametrize(
    "size", [pytest.param(0, id="zero"), pytest.param(20, id="short"), pytest.param(22, id="long")]
)
def test_declared_size_must_match_chunk_sizes(size: int) -> None:
    view = namespace()
    refused(view, [file("f", [C[0], C[1]], size=size)], Code.SIZE_MISMATCH)  # really 21


@pytest.mark.parametrize(
    ("limits", "ids"),
    [
        pytest.param(Limits(max_file_size=20), [C[0], C[1]], id="file-too-large"),
        pytest.param(Limits(max_blocklist=2), [C[0], C[1], C[2]], id="too-many-chunks"),
    ],
)
def test_limits_refuse_the_batch(limits: Limits, ids: list[ChunkId]) -> None:
    view = namespace()
    with pytest.raises(LinesyncError) as info:
        plan_commit(view, [file("f", ids)], "dev1", 0, limits)
    assert info.value.code is Code.FILE_TOO_LARGE


def test_edit_with_full_ids_is_stored_as_a_delta_against_the_current_version() -> None:
    view = namespace([file("f", [C[0], C[1], C[2]])])
    new = [C[0], C[5], C[2]]
    plan = run(view, [file("f", new, base=1)])
    assert [summary(r) for r in plan.results] == [("ok", 2)]
    (w,) = plan.writes
    assert w.blocklist == new
    assert w.row.base_jid == 1
    assert w.delta_base == 1 and bl.apply([C[0], C[1], C[2]], w.delta or []) == new


@pytest.mark.parametrize(
    ("edits", "expected"),
    [
        pytest.param([(1, 1, [C[5]])], [C[0], C[5], C[2]], id="replace-middle"),
        pytest.param([(0, 0, [C[6]])], [C[6], C[0], C[1], C[2]], id="insert-at-start"),
        pytest.param([(3, 0, [C[6], C[7]])], [C[0], C[1], C[2], C[6], C[7]], id="append"),
        pytest.param([(0, 3, [])], [], id="truncate-to-empty"),
        pytest.param([(0, 1, []), (2, 1, [C[8]])], [C[1], C[8]], id="two-edits"),
        pytest.param([], [C[0], C[1], C[2]], id="no-edit-touch"),
    ],
)
def test_edit_with_a_delta(
    edits: list[tuple[int, int, list[ChunkId]]], expected: list[ChunkId]
) -> None:  # noqa: E501
    view = namespace([file("f", [C[0], C[1], C[2]])])
    plan = run(view, [edit("f", 1, edits, size_of(expected))])
    assert [summary(r) for r in plan.results] == [("ok", 2)]
    (w,) = plan.writes
    assert w.blocklist == expected
    assert w.row.chash == bl.content_hash(expected)
    assert w.delta_base == 1
    assert w.new_chunks == list(dict.fromkeys(c for _, _, ins in edits for c in ins))


def test_delta_needs_only_the_chunks_it_inserts() -> None:
    view = namespace([file("f", [C[0], C[1]])])
    view.chunks = {C[0]: SIZE[C[0]], C[1]: SIZE[C[1]]}
    plan = run(view, [edit("f", 1, [(1, 0, [C[7], C[0], C[8]])], size_of(C[:2]))])
    assert [summary(r) for r in plan.results] == [("missing", [C[7], C[8]])]


def test_delta_size_is_checked() -> None:
    view = namespace([file("f", [C[0], C[1], C[2]])])
    refused(view, [edit("f", 1, [(1, 1, [C[5]])], size=size_of([C[0], C[1], C[2]]))],
            Code.SIZE_MISMATCH)  # fmt: skip


def test_delta_against_an_older_version_of_another_path() -> None:
    """A delta's base may be any file version of the namespace, not only the current one."""
    view = namespace([file("f", [C[0], C[1]])], [file("f", [C[2]], base=1)])
    plan = run(view, [edit("g", 0, [(2, 0, [C[3]])], size_of([C[0], C[1], C[3]]), 1)])
    assert [summary(r) for r in plan.results] == [("ok", 3)]
    assert view.blocklist(3) == [C[0], C[1], C[3]]


@pytest.mark.parametrize(
    ("edits", "content_base"),
    [
        pytest.param([(4, 0, [C[5]])], None, id="start-past-end"),
        pytest.param([(2, 2, [])], None, id="delete-past-end"),
        pytest.param([(2, 1, []), (1, 1, [])], None, id="unsorted"),
        pytest.param([(0, 2, []), (1, 1, [])], None, id="overlapping"),
        pytest.param([(0, 0, [])], 2, id="base-is-a-directory"),
        pytest.param([(0, 0, [])], 4, id="base-is-a-tombstone"),
        pytest.param([(0, 0, [])], 99, id="base-does-not-exist"),
    ],
)
def test_bad_delta(edits: list[tuple[int, int, list[ChunkId]]], content_base: int | None) -> None:
    view = namespace([file("f", [C[0], C[1], C[2]]), mkdir("d"), file("g", [])], [rm("g", 3)])
    refused(view, [edit("f", 1, edits, size=0, content_base=content_base)], Code.BAD_DELTA)


def test_bad_delta_insert_ids() -> None:
    view = namespace([file("f", [C[0]])])
    op = CommitOp(
        path="f", kind=Kind.FILE, base_jid=1, content=Content(base=1, edits=[(0, 0, "AAA")])
    )
    refused(view, [op], Code.BAD_DELTA)


def test_malformed_full_ids_are_a_bad_request() -> None:
    view = namespace()
    op = CommitOp(path="f", kind=Kind.FILE, content=Content(ids="A" * 42))
    refused(view, [op], Code.BAD_REQUEST)


# -- bases, conflicts and retries ----------------------------------------------


@pytest.mark.parametrize(
    ("op", "current"),
    [
        pytest.param(file("f", [C[3]], base=1), ("f", 2), id="edit-on-stale-base"),
        pytest.param(file("f", [C[3]], base=0), ("f", 2), id="create-over-existing"),
        pytest.param(edit("f", 1, [(0, 1, [C[3]])], SIZE[C[3]]), ("f", 2),
                     id="delta-on-stale-base"),
        pytest.param(rm("f", 1), ("f", 2), id="delete-on-stale-base"),
        pytest.param(mkdir("f", 1), ("f", 2), id="mkdir-on-stale-base"),
        pytest.param(file("nope", [C[3]], base=1), None, id="base-on-absent-path"),
        pytest.param(file("gone", [C[3]], base=3), ("gone", 4), id="edit-of-deleted"),
        pytest.param(move("m", "f", 5, base=1, size=SIZE[C[4]]), ("f", 2), id="move-onto-stale"),
    ],
)  # fmt: skip
def test_stale_base_is_a_conflict_with_the_current_entry(
    op: CommitOp, current: tuple[str, int] | None
) -> None:
    view = namespace([file("f", [C[0]])], [file("f", [C[1]], base=1)],
                     [file("gone", [C[2]])], [rm("gone", 3)], [file("m", [C[4]])])  # fmt: skip
    plan = run(view, [op], device="dev2")
    (r,) = plan.results
    assert summary(r) == ("conflict", "changed", *(current or (None, None)))
    assert plan.writes == []
    if current is not None:
        assert r.current is not None and r.current.device == "setup"


# ops to retry: each runs on `namespace(RETRY_SETUP)` (f=1, d=2, d/x=3, l=4)
RETRY_SETUP = [file("f", [C[0], C[1]]), mkdir("d"), file("d/x", [C[2]]), link("l", "f")]
RETRY_OPS = [
    pytest.param([file("new", [C[0]])], id="create-file"),
    pytest.param([file("f", [C[3]], base=1)], id="edit-full-ids"),
    pytest.param([edit("f", 1, [(1, 1, [C[3]])], size_of([C[0], C[3]]))], id="edit-delta"),
    pytest.param([mkdir("e")], id="mkdir"),
    pytest.param([link("l", "g", base=4)], id="symlink"),
    pytest.param([rm("f", 1)], id="delete"),
    pytest.param([move("f", "g", 1, size=size_of(C[:2]))], id="move-file"),
    pytest.param([move("l", "l2", 4, kind=Kind.SYMLINK)], id="move-symlink"),
    pytest.param([move("d", "e", 2, kind=Kind.DIRECTORY)], id="move-directory"),
    pytest.param([mkdir("e"), file("e/y", [C[4]])], id="mkdir-and-file"),
]


@pytest.mark.parametrize("ops", RETRY_OPS)
def test_retry_by_the_same_device_is_ok_with_the_same_jid(ops: list[CommitOp]) -> None:
    view = namespace(RETRY_SETUP)
    first = run(view, ops)
    assert all(r.status == "ok" for r in first.results), first.results
    head = view.head
    again = run(view, ops)
    assert [summary(r) for r in again.results] == [summary(r) for r in first.results]
    assert again.writes == [] and view.head == head


@pytest.mark.parametrize("ops", RETRY_OPS)
def test_same_op_from_another_device_is_a_conflict(ops: list[CommitOp]) -> None:
    view = namespace(RETRY_SETUP)
    first = run(view, ops, device="dev1")
    again = run(view, ops[:1], device="dev2")
    jid = first.results[0].jid
    (r,) = again.results
    assert (r.status, r.reason) == ("conflict", "changed")
    assert r.current is not None and (r.current.path, r.current.jid) == (ops[0].path, jid)
    assert again.writes == []


@pytest.mark.parametrize(
    ("setup", "op", "current"),
    [
        pytest.param([file("f", [C[0]])], file("f", [C[1]]), ("f", 1), id="other-content"),
        pytest.param([file("f", [C[0]])], file("f", [C[0]], size=SIZE[C[0]], base=0),
                     None, id="same-op-is-a-retry"),
        pytest.param([mkdir("d")], mkdir("d", base=0), None, id="same-mkdir-is-a-retry"),
        # f moved to g (g=2, f tombstone=3), then f created again (4) and moved onto g
        # with a stale base: not the first move again, since its source is another version
        pytest.param([file("f", [C[0]]), move("f", "g", 1, size=SIZE[C[0]]),
                      file("f", [C[0]], base=3)],
                     move("f", "g", 4, size=SIZE[C[0]]), ("g", 2), id="move-of-a-new-source"),
    ],
)  # fmt: skip
def test_an_op_that_is_not_the_applied_one_is_not_a_retry(
    setup: list[CommitOp], op: CommitOp, current: tuple[str, int] | None
) -> None:
    view = MemView(SIZE)
    for setup_op in setup:
        assert run(view, [setup_op]).results[0].status == "ok"
    head = view.head
    plan = run(view, [op])
    if current is None:
        assert [summary(r) for r in plan.results] == [("ok", head)]
    else:
        assert [summary(r) for r in plan.results] == [("conflict", "changed", *current)]
    assert plan.writes == []


# -- tombstones ----------------------------------------------------------------


def test_delete_writes_a_tombstone_based_on_the_deleted_version() -> None:
    view = namespace([file("f", [C[0]])])
    plan = run(view, [rm("f", 1)])
    assert [summary(r) for r in plan.results] == [("ok", 2)]
    assert written(plan) == [(2, "f", "tombstone", None)]
    assert plan.writes[0].row.base_jid == 1 and plan.writes[0].blocklist is None
    assert view.blocklist(2) is None and view.blocklist(1) == [C[0]]


@pytest.mark.parametrize(
    ("op", "jid"),
    [
        pytest.param(rm("never", 0), 0, id="absent"),
        pytest.param(rm("gone", 2), 2, id="already-deleted"),
    ],
)
def test_delete_of_what_is_not_there_is_ok_without_a_write(op: CommitOp, jid: int) -> None:
    view = namespace([file("gone", [C[0]])], [rm("gone", 1)])
    plan = run(view, [op], device="dev2")
    assert [summary(r) for r in plan.results] == [("ok", jid)]
    assert plan.writes == [] and view.head == 2


# -- tree rules: parent, not_empty ---------------------------------------------


def test_directory_create() -> None:
    view = namespace()
    plan = run(view, [mkdir("d"), mkdir("d/e")])
    assert [summary(r) for r in plan.results] == [("ok", 1), ("ok", 2)]
    assert written(plan) == [(1, "d", "directory", None), (2, "d/e", "directory", None)]
    assert view.blocklist(1) is None


PARENT_SETUP = [file("f", [C[0]]), mkdir("gone"), link("l", "f")]  # f=1 gone=2 l=3, then rm gone=4


@pytest.mark.parametrize(
    ("op", "current"),
    [
        pytest.param(file("nodir/x", [C[1]]), None, id="file-in-missing-parent"),
        pytest.param(mkdir("nodir/x"), None, id="dir-in-missing-parent"),
        pytest.param(link("a/b/c", "f"), None, id="symlink-in-missing-grandparent"),
        pytest.param(file("f/x", [C[1]]), ("f", 1), id="parent-is-a-file"),
        pytest.param(mkdir("l/x"), ("l", 3), id="parent-is-a-symlink"),
        pytest.param(file("gone/x", [C[1]]), ("gone", 4), id="parent-is-deleted"),
        pytest.param(move("f", "nodir/f", 1, size=SIZE[C[0]]), None, id="move-into-missing-parent"),
    ],
)  # fmt: skip
def test_parent_must_be_a_live_directory(op: CommitOp, current: tuple[str, int] | None) -> None:
    view = namespace(PARENT_SETUP, [rm("gone", 2)])
    plan = run(view, [op])
    assert [summary(r) for r in plan.results] == [
        ("conflict", "parent", *(current or (None, None)))
    ]
    assert plan.writes == []


@pytest.mark.parametrize(
    "op",
    [
        pytest.param(rm("d", 1), id="delete-folder-with-children"),
        pytest.param(file("d", [C[1]], base=1), id="file-replaces-folder"),
        pytest.param(link("d", "x", base=1), id="symlink-replaces-folder"),
        pytest.param(move("f", "d", 4, base=1, size=SIZE[C[0]]), id="file-moved-onto-folder"),
        pytest.param(move("e", "d", 5, kind=Kind.DIRECTORY, base=1), id="folder-moved-onto-folder"),
    ],
)  # fmt: skip
def test_folder_with_live_children_is_not_empty(op: CommitOp) -> None:
    view = namespace([mkdir("d"), mkdir("d/sub"), file("d/sub/x", [C[0]]), file("f", [C[0]]),
                      mkdir("e")])  # fmt: skip
    plan = run(view, [op])
    (r,) = plan.results
    assert (r.status, r.reason) == ("conflict", "not_empty")
    assert plan.writes == []


@pytest.mark.parametrize(
    "op",
    [
        pytest.param(rm("d", 1), id="delete-empty-folder"),
        pytest.param(file("d", [C[1]], base=1), id="file-replaces-empty-folder"),
        pytest.param(mkdir("d", base=1), id="folder-touch"),
    ],
)
def test_folder_without_live_children_can_go(op: CommitOp) -> None:
    view = namespace([mkdir("d"), file("d/x", [C[0]])], [rm("d/x", 2)])
    plan = run(view, [op])
    assert [summary(r) for r in plan.results] == [("ok", 4)]


def test_folder_with_children_can_be_touched_and_replaced_by_a_file_when_emptied() -> None:
    view = namespace([mkdir("d"), file("d/x", [C[0]])])
    plan = run(view, [mkdir("d", base=1), rm("d/x", 2), file("d", [C[1]], base=3)])
    assert [summary(r) for r in plan.results] == [("ok", 3), ("ok", 4), ("ok", 5)]


# -- tree rules: case collisions -----------------------------------------------


@pytest.mark.parametrize(
    ("a", "b"),
    [
        pytest.param("Recipe.md", "recipe.md", id="case"),
        pytest.param("Straße", "STRASSE", id="sharp-s-casefolds-to-ss"),
        pytest.param("straße", "strasse", id="sharp-s-lowercase"),
        pytest.param("Énigme", "énigme", id="accented-capital"),
        pytest.param("ﬁle.txt", "FILE.txt", id="ligature-casefolds"),
        pytest.param("ΣΟΦΟΣ", "σοφος", id="greek-final-sigma"),
    ],
)
def test_fold_key_collisions(a: str, b: str) -> None:
    assert paths.is_valid(a) and paths.is_valid(b)
    assert paths.fold_key(a) == paths.fold_key(b)
    view = namespace([file(a, [C[0]])])
    for op in (file(b, [C[1]]), mkdir(b), link(b, "t")):
        plan = run(view, [op])
        assert [summary(r) for r in plan.results] == [("conflict", "case_collision", a, 1)]
        assert plan.writes == []


@pytest.mark.parametrize(
    ("a", "b"),
    [
        pytest.param("a.md", "b.md", id="different-names"),
        pytest.param("é", "e", id="accent-is-not-case"),
        pytest.param("ss", "s", id="different-lengths"),
    ],
)
def test_no_collision_between_different_keys(a: str, b: str) -> None:
    assert paths.fold_key(a) != paths.fold_key(b)
    view = namespace([file(a, [C[0]])])
    assert [summary(r) for r in run(view, [file(b, [C[1]])]).results] == [("ok", 2)]


def test_collision_within_a_folder_and_with_a_folder() -> None:
    view = namespace([mkdir("Docs"), file("Docs/A.md", [C[0]])])
    plan = run(view, [file("Docs/a.md", [C[1]]), mkdir("docs")])
    assert [summary(r) for r in plan.results] == [
        ("conflict", "case_collision", "Docs/A.md", 2),
        ("conflict", "case_collision", "Docs", 1),
    ]


def test_case_variant_of_a_deleted_path_is_free() -> None:
    view = namespace([file("Recipe.md", [C[0]])], [rm("Recipe.md", 1)])
    assert [summary(r) for r in run(view, [file("recipe.md", [C[1]])]).results] == [("ok", 3)]


def test_case_only_rename_via_move_is_allowed() -> None:
    view = namespace([file("Recipe.md", [C[0], C[1]])])
    plan = run(view, [move("Recipe.md", "recipe.md", 1, size=size_of(C[:2]))])
    assert [summary(r) for r in plan.results] == [("ok", 2)]
    assert written(plan) == [
        (2, "recipe.md", "file", "Recipe.md"),
        (3, "Recipe.md", "tombstone", None),
    ]  # noqa: E501
    assert set(view.live()) == {"recipe.md"}
    assert view.blocklist(2) == [C[0], C[1]]


def test_case_only_rename_of_a_folder_moves_its_children() -> None:
    view = namespace([mkdir("Docs"), file("Docs/a", [C[0]])])
    plan = run(view, [move("Docs", "docs", 1, kind=Kind.DIRECTORY)])
    assert [summary(r) for r in plan.results] == [("ok", 3)]
    assert set(view.live()) == {"docs", "docs/a"}


# -- moves ---------------------------------------------------------------------


def test_file_move_is_a_new_entry_and_a_tombstone_without_chunks() -> None:
    view = namespace([file("a.txt", [C[0], C[1], C[0]]), mkdir("d")])
    view.chunks = {}  # nothing may be asked for: the content is already in the journal
    plan = run(view, [move("a.txt", "d/b.txt", 1, size=size_of([C[0], C[1], C[0]]))])
    assert [summary(r) for r in plan.results] == [("ok", 3)]
    assert written(plan) == [(3, "d/b.txt", "file", "a.txt"), (4, "a.txt", "tombstone", None)]
    new, gone = plan.writes
    assert new.blocklist == [C[0], C[1], C[0]] and new.new_chunks == []
    assert new.row.chash == bl.content_hash([C[0], C[1], C[0]])
    assert (new.row.base_jid, gone.row.base_jid) == (0, 1)
    assert new.delta_base == 1 and new.delta == []


@pytest.mark.parametrize(
    "size", [pytest.param(0, id="zero"), pytest.param(SIZE[C[0]] + 1, id="off-by-one")]
)
def test_file_move_size_must_match_the_source(size: int) -> None:
    view = namespace([file("a", [C[0]])])
    refused(view, [move("a", "b", 1, size=size)], Code.SIZE_MISMATCH)


def test_move_with_new_content_is_a_move_and_an_edit() -> None:
    view = namespace([file("a", [C[0], C[1]])])
    delta = Content(base=1, edits=[(1, 1, pack_ids([C[2]]))])
    op = CommitOp(
        path="b", kind=Kind.FILE, size=size_of([C[0], C[2]]), move_from="a", move_base=1,
        content=delta,
    )  # fmt: skip
    plan = run(view, [op])
    assert [summary(r) for r in plan.results] == [("ok", 2)]
    assert written(plan) == [(2, "b", "file", "a"), (3, "a", "tombstone", None)]
    assert view.blocklist(2) == [C[0], C[2]]


def test_symlink_move_keeps_its_target() -> None:
    view = namespace([link("l", "some/where")])
    plan = run(view, [move("l", "m", 1, kind=Kind.SYMLINK)])
    assert [summary(r) for r in plan.results] == [("ok", 2)]
    assert view.rows["m"].target == "some/where" and view.rows["m"].moved_from == "l"


@pytest.mark.parametrize(
    ("op", "current"),
    [
        pytest.param(move("a", "b", 1, size=SIZE[C[1]]), ("a", 2), id="source-edited"),
        pytest.param(move("a", "b", 0, size=SIZE[C[1]]), ("a", 2), id="move-base-zero"),
        pytest.param(move("gone", "b", 3, size=SIZE[C[2]]), ("gone", 4), id="source-deleted"),
        pytest.param(move("never", "b", 7, size=SIZE[C[2]]), None, id="source-never-existed"),
        pytest.param(move("never", "b", 0, size=0), None, id="source-never-existed-base-0"),
        pytest.param(move("nodir", "e", 7, kind=Kind.DIRECTORY), None,
                     id="dir-source-never-existed"),
    ],
)  # fmt: skip
def test_move_of_a_source_that_moved_on_is_source_changed(
    op: CommitOp, current: tuple[str, int] | None
) -> None:
    view = namespace([file("a", [C[0]])], [file("a", [C[1]], base=1)],
                     [file("gone", [C[2]])], [rm("gone", 3)])  # fmt: skip
    plan = run(view, [op])
    assert [summary(r) for r in plan.results] == [
        ("conflict", "source_changed", *(current or (None, None)))
    ]
    assert plan.writes == [] and view.head == 4


@pytest.mark.parametrize(
    "op",
    [
        pytest.param(move("d", "e", 1, kind=Kind.FILE), id="file-op-from-folder"),
        pytest.param(move("f", "g", 2, kind=Kind.DIRECTORY), id="folder-op-from-file"),
        pytest.param(move("f", "g", 2, kind=Kind.SYMLINK), id="symlink-op-from-file"),
    ],
)
def test_move_must_keep_the_kind(op: CommitOp) -> None:
    view = namespace([mkdir("d"), file("f", [C[0]])])
    refused(view, [op], Code.BAD_REQUEST)


def directory_tree() -> MemView:
    return namespace(
        [
            mkdir("a"),  # 1
            file("a/x", [C[0]]),  # 2
            mkdir("a/sub"),  # 3
            file("a/sub/y", [C[1], C[2]]),  # 4
            link("a/z", "x"),  # 5
            file("a-b", [C[3]]),  # 6: shares a prefix, is not inside
            file("a/old", [C[4]]),  # 7
            mkdir("m"),  # 8
        ],
        [rm("a/old", 7)],  # 9
    )


def test_directory_move_recreates_every_live_descendant() -> None:
    view = directory_tree()
    plan = run(view, [move("a", "m/a2", 1, kind=Kind.DIRECTORY)])
    assert [summary(r) for r in plan.results] == [("ok", 10)]
    assert written(plan) == [
        (10, "m/a2", "directory", "a"),
        # descendants in path order, so each parent comes before its children
        (11, "m/a2/sub", "directory", "a/sub"),
        (12, "m/a2/sub/y", "file", "a/sub/y"),
        (13, "m/a2/x", "file", "a/x"),
        (14, "m/a2/z", "symlink", "a/z"),
        # then the sources, children before their parents, and the folder last
        (15, "a/z", "tombstone", None),
        (16, "a/x", "tombstone", None),
        (17, "a/sub/y", "tombstone", None),
        (18, "a/sub", "tombstone", None),
        (19, "a", "tombstone", None),
    ]
    rows = {w.row.path: w for w in plan.writes}
    assert rows["m/a2/sub/y"].blocklist == [C[1], C[2]]
    assert rows["m/a2/sub/y"].row.size == size_of([C[1], C[2]])
    assert rows["m/a2/sub/y"].new_chunks == []
    assert rows["m/a2/z"].row.target == "x"
    assert all(w.row.device == "dev1" for w in plan.writes)
    assert [rows[p].row.base_jid for p in ("a/z", "a/x", "a/sub/y", "a/sub", "a")] == [
        5,
        2,
        4,
        3,
        1,
    ]
    assert set(view.live()) == {"a-b", "m", "m/a2", "m/a2/sub", "m/a2/sub/y", "m/a2/x", "m/a2/z"}
    assert view.blocklist(12) == [C[1], C[2]]


def test_directory_move_tombstones_every_child_before_its_parent() -> None:
    view = directory_tree()
    plan = run(view, [move("a", "b", 1, kind=Kind.DIRECTORY)])
    gone = [w.row.path for w in plan.writes if w.row.kind is Kind.TOMBSTONE]
    for i, p in enumerate(gone):
        assert not any(paths.is_under(q, p) for q in gone[i + 1 :]), gone


def test_directory_move_onto_deleted_paths_bases_on_their_tombstones() -> None:
    view = namespace([mkdir("a"), file("a/x", [C[0]]), mkdir("b"), file("b/x", [C[1]])],
                     [rm("b/x", 4), rm("b", 3)])  # fmt: skip
    plan = run(view, [move("a", "b", 1, kind=Kind.DIRECTORY, base=6)])
    assert [summary(r) for r in plan.results] == [("ok", 7)]
    assert [(w.row.path, w.row.base_jid) for w in plan.writes[:2]] == [("b", 6), ("b/x", 5)]


@pytest.mark.parametrize(
    ("src", "dst"),
    [
        pytest.param("a", "a", id="onto-itself"),
        pytest.param("a", "a/sub/a", id="into-its-descendant"),
        pytest.param("a", "a/new", id="into-itself"),
    ],
)
def test_moving_a_folder_into_itself_is_a_bad_request(src: str, dst: str) -> None:
    view = directory_tree()
    refused(view, [move(src, dst, 1, kind=Kind.DIRECTORY)], Code.BAD_REQUEST)


# -- batches see their own earlier ops -----------------------------------------


@pytest.mark.parametrize(
    ("ops", "expected"),
    [
        pytest.param([mkdir("d"), file("d/x", [C[0]])], [("ok", 2), ("ok", 3)],
                     id="mkdir-then-file-inside"),
        pytest.param([mkdir("d"), mkdir("d/e"), file("d/e/x", [C[0]])],
                     [("ok", 2), ("ok", 3), ("ok", 4)], id="nested-mkdirs"),
        pytest.param([rm("f", 1), mkdir("f", base=2)], [("ok", 2), ("ok", 3)],
                     id="delete-file-then-mkdir-same-path"),
        pytest.param([rm("f", 1), file("F", [C[1]])], [("ok", 2), ("ok", 3)],
                     id="delete-then-create-case-variant"),
        pytest.param([file("g", [C[0]]), file("G", [C[1]])],
                     [("ok", 2), ("conflict", "case_collision", "g", 2)],
                     id="two-case-variants-in-one-batch"),
        pytest.param([file("g", [C[0]]), edit("g", 2, [(1, 0, [C[1]])], size_of(C[:2]))],
                     [("ok", 2), ("ok", 3)], id="create-then-delta-on-it"),
        pytest.param([file("g", [C[0]]), move("g", "h", 2, size=SIZE[C[0]])],
                     [("ok", 2), ("ok", 3)], id="create-then-move-it"),
        pytest.param([mkdir("d"), file("d/x", [C[0]]), rm("d", 2)],
                     [("ok", 2), ("ok", 3), ("conflict", "not_empty", "d/x", 3)],
                     id="mkdir-file-then-delete-folder"),
        pytest.param([mkdir("d"), file("d/x", [C[0]]), rm("d/x", 3), rm("d", 2)],
                     [("ok", 2), ("ok", 3), ("ok", 4), ("ok", 5)],
                     id="emptied-folder-can-go"),
        pytest.param([rm("f", 1), file("f/x", [C[0]])],
                     [("ok", 2), ("conflict", "parent", "f", 2)], id="file-inside-deleted-path"),
        pytest.param([file("g", [C[9]]), file("g/x", [C[0]])],
                     [("missing", [C[9]]), ("conflict", "parent", None, None)],
                     id="missing-op-writes-nothing"),
    ],
)  # fmt: skip
def test_ops_see_earlier_ops_of_the_same_batch(
    ops: list[CommitOp], expected: list[tuple[object, ...]]
) -> None:
    view = namespace([file("f", [C[0]])])
    view.chunks.pop(C[9])
    plan = run(view, ops)
    assert [summary(r) for r in plan.results] == expected
    assert [w.row.jid for w in plan.writes] == list(range(2, view.head + 1))


# -- rule order ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("op", "reason"),
    [
        pytest.param(file("nodir/x", [C[9]]), "parent", id="parent-before-missing"),
        pytest.param(file("f", [C[9]]), "changed", id="changed-before-missing"),
        pytest.param(file("F", [C[9]]), "case_collision", id="collision-before-missing"),
        pytest.param(file("f", [C[0]], base=0, size=1), "changed", id="changed-before-size"),
        pytest.param(rm("d", 2), "not_empty", id="not-empty"),
    ],
)
def test_conflicts_are_decided_before_content(op: CommitOp, reason: str) -> None:
    view = namespace([file("f", [C[0]]), mkdir("d"), file("d/x", [C[1]])])
    view.chunks.pop(C[9])
    (r,) = run(view, [op]).results
    assert (r.status, r.reason) == ("conflict", reason)


# -- shape errors --------------------------------------------------------------


FULL = Content(ids=pack_ids([C[0]]))


@pytest.mark.parametrize(
    "op",
    [
        pytest.param(CommitOp(path="f", kind=Kind.FILE, size=0), id="file-without-content"),
        pytest.param(CommitOp(path="f", kind=Kind.FILE, content=FULL, size=10, target="x"),
                     id="file-with-target"),
        pytest.param(CommitOp(path="f", kind=Kind.FILE, content=Content()), id="content-empty"),
        pytest.param(CommitOp(path="f", kind=Kind.FILE, size=10,
                              content=Content(ids=pack_ids([C[0]]), base=1, edits=[])),
                     id="content-ids-and-base"),
        pytest.param(CommitOp(path="f", kind=Kind.FILE, content=Content(base=1)),
                     id="delta-without-edits"),
        pytest.param(CommitOp(path="d", kind=Kind.DIRECTORY, content=FULL),
                     id="directory-with-content"),
        pytest.param(CommitOp(path="d", kind=Kind.DIRECTORY, size=3), id="directory-with-size"),
        pytest.param(CommitOp(path="d", kind=Kind.DIRECTORY, target="x"),
                     id="directory-with-target"),
        pytest.param(CommitOp(path="l", kind=Kind.SYMLINK), id="symlink-without-target"),
        pytest.param(CommitOp(path="l", kind=Kind.SYMLINK, target="a\x00b"),
                     id="target-with-nul"),
        pytest.param(CommitOp(path="l", kind=Kind.SYMLINK, target="x", content=FULL),
                     id="symlink-with-content"),
        pytest.param(CommitOp(path="t", kind=Kind.TOMBSTONE, move_from="f", move_base=1),
                     id="tombstone-with-move-from"),
        pytest.param(CommitOp(path="t", kind=Kind.TOMBSTONE, size=1), id="tombstone-with-size"),
        pytest.param(CommitOp(path="t", kind=Kind.TOMBSTONE, target="x"),
                     id="tombstone-with-target"),
        pytest.param(CommitOp(path="t", kind=Kind.TOMBSTONE, content=FULL),
                     id="tombstone-with-content"),
    ],
)  # fmt: skip
def test_shape_errors_refuse_the_whole_batch(op: CommitOp) -> None:
    view = namespace([file("f", [C[0]])])
    refused(view, [mkdir("fine"), op, mkdir("fine2")], Code.BAD_REQUEST)


@pytest.mark.parametrize(
    "path",
    [
        pytest.param("e\u0301", id="nfd"),
        pytest.param("dir/Cafe\u0301.md", id="nfd-in-segment"),
        pytest.param("\u212b", id="angstrom-sign"),
        pytest.param("a//b", id="empty-segment"),
        pytest.param("../x", id="dotdot"),
        pytest.param("./x", id="dot"),
        pytest.param("/abs", id="absolute"),
        pytest.param("a\\b", id="backslash"),
        pytest.param("a\nb", id="control-char"),
        pytest.param("trailing/", id="trailing-slash"),
        pytest.param("x" * 256, id="long-segment"),
    ],
)
def test_bad_paths_refuse_the_batch(path: str) -> None:
    view = namespace([file("f", [C[0]])])
    for op in (mkdir(path), rm(path, 0), move(path, "g", 1, size=SIZE[C[0]]),
               move("f", path, 1, size=SIZE[C[0]])):  # fmt: skip
        err = refused(view, [mkdir("fine"), op], Code.BAD_PATH)
        assert isinstance(err.__cause__, paths.PathError)


# -- invariants under random batches -------------------------------------------

T = TypeVar("T")
SEGMENTS = ["a", "A", "ß", "SS"]
PATHS = SEGMENTS + [f"{p}/{q}" for p in SEGMENTS for q in SEGMENTS]
POOL = C[:5]  # C[4] is never held: commits that use it come back "missing"
HELD = {c: SIZE[c] for c in C[:4]}


@dataclass
class _Gen:
    view: MemView
    data: st.DataObject

    def draw(self, strategy: st.SearchStrategy[T]) -> T:
        return self.data.draw(strategy)

    def base(self, path: str) -> int:
        """Usually the path's current JID; sometimes 0, the head, or an older
        version of the path (stale)."""
        row = self.view.rows.get(path)
        good = row.jid if row else 0
        older = [j for j, e in self.view.entries.items() if e.path == path and j != good]
        return self.draw(st.sampled_from([good, good, good, 0, self.view.head, *older[-2:]]))

    def path(self) -> str:
        """Any path, a path that can be created now, or a live path."""
        live = sorted(self.view.live())
        dirs = {p for p, r in self.view.live().items() if r.kind is Kind.DIRECTORY}
        placeable = [p for p in PATHS if paths.parent(p) in dirs or not paths.parent(p)]
        pools = [PATHS, placeable, live] if live else [PATHS, placeable]
        return self.draw(st.sampled_from(self.draw(st.sampled_from(pools))))

    def op(self) -> CommitOp | None:
        v = self.view
        path = self.path()
        base = self.base(path)
        what = self.draw(st.sampled_from(["file", "delta", "dir", "link", "rm", "move"]))
        if what == "file":
            return file(path, self.draw(st.lists(st.sampled_from(POOL), max_size=4)), base=base)
        if what == "delta":
            row = v.rows.get(path)
            old = v.blocklist(row.jid) if row else None
            if row is None or old is None:
                return None
            start = self.draw(st.integers(0, len(old)))
            delete = self.draw(st.integers(0, len(old) - start))
            ins = self.draw(st.lists(st.sampled_from(POOL), max_size=2))
            new = old[:start] + ins + old[start + delete :]
            return edit(path, base, [(start, delete, ins)], size_of(new), content_base=row.jid)
        if what == "dir":
            return mkdir(path, base)
        if what == "link":
            return link(path, "t", base)
        if what == "rm":
            return rm(path, base)
        src = self.path()
        if src == path or paths.is_under(path, src):
            return None
        srow = v.rows.get(src)
        kind = srow.kind if srow and srow.live else Kind.FILE
        size = srow.size if srow else 0
        return move(src, path, self.base(src), kind=kind, size=size, base=base)


def check_invariants(view: MemView) -> None:
    assert sorted(view.entries) == list(range(1, view.head + 1)), "JIDs have a gap"
    live = view.live()
    for path in live:
        par = paths.parent(path)
        if par:
            assert par in live and live[par].kind is Kind.DIRECTORY, f"{path}: parent {par}"
    folds: dict[str, str] = {}
    for path in live:
        key = paths.fold_key(path)
        assert key not in folds, f"{path} and {folds[key]} collide"
        folds[key] = path
    for path, row in live.items():
        if row.kind is Kind.FILE:
            ids = view.blocklist(row.jid)
            assert ids is not None, f"{path}@{row.jid} has no blocklist"
            assert all(c in view.chunks for c in ids), f"{path}@{row.jid}: chunk not held"
            assert size_of(ids) == row.size, f"{path}@{row.jid}: size"


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_random_batches_keep_the_invariants(data: st.DataObject) -> None:
    view = MemView(HELD)
    gen = _Gen(view, data)
    for _ in range(data.draw(st.integers(1, 8))):
        ops = [op for op in (gen.op() for _ in range(data.draw(st.integers(1, 4)))) if op]
        head = view.head
        try:
            plan = plan_commit(view, ops, "dev", head, Limits())
        except LinesyncError as exc:
            # only content the generator cannot foresee may refuse a batch
            assert exc.code in (Code.BAD_REQUEST, Code.SIZE_MISMATCH, Code.BAD_DELTA), exc
            continue
        view.apply(plan)
        for op, r in zip(ops, plan.results, strict=True):
            if r.status == "ok" and r.jid:
                assert view.entries[r.jid].path == op.path
        assert view.head == head + len(plan.writes)
        check_invariants(view)
