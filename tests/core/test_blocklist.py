from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from linesync.core import blocklist as bl
from linesync.core.ids import b64decode, chunk_id, pack_ids, unpack_ids

IDS = [chunk_id(bytes([i])) for i in range(12)]
id_lists = st.lists(st.sampled_from(IDS), max_size=40)


@given(id_lists, id_lists)
def test_diff_then_apply_gives_the_new_list(base: list[bytes], new: list[bytes]) -> None:
    delta = bl.diff(base, new)
    assert bl.apply(base, delta) == new
    assert bl.decode_delta(bl.encode_delta(delta)) == delta


@given(id_lists)
def test_diff_of_equal_lists_is_empty(ids: list[bytes]) -> None:
    assert bl.diff(ids, ids) == []


def test_one_changed_chunk_is_one_small_edit() -> None:
    base = [chunk_id(str(i).encode()) for i in range(5000)]
    new = list(base)
    new[2500] = chunk_id(b"edited")
    assert bl.diff(base, new) == [bl.Edit(2500, 1, (new[2500],))]
    inserted = [chunk_id(b"top"), *base]
    assert bl.diff(base, inserted) == [bl.Edit(0, 0, (inserted[0],))]


def test_scattered_edits_stay_separate() -> None:
    base = [chunk_id(str(i).encode()) for i in range(1000)]
    new = list(base)
    new[10] = chunk_id(b"x")
    new[900] = chunk_id(b"y")
    delta = bl.diff(base, new)
    assert bl.delta_size(delta) == 4
    assert bl.removed(base, delta) == [base[10], base[900]]
    assert bl.inserted(delta) == [new[10], new[900]]


@pytest.mark.parametrize(
    "delta",
    [
        [bl.Edit(5, 1, ())],  # past the end
        [bl.Edit(2, 1, ()), bl.Edit(1, 1, ())],  # unsorted
        [bl.Edit(0, 3, ()), bl.Edit(2, 1, ())],  # overlapping
        [bl.Edit(0, -1, ())],
    ],
)
def test_apply_refuses_deltas_that_do_not_fit(delta: list[bl.Edit]) -> None:
    with pytest.raises(bl.DeltaError):
        bl.apply(IDS[:4], delta)


def test_truncated_stored_delta_is_refused() -> None:
    raw = bl.encode_delta([bl.Edit(0, 1, (IDS[0],))])
    with pytest.raises(bl.DeltaError):
        bl.decode_delta(raw[:-1])


@given(id_lists)
def test_packed_ids_round_trip(ids: list[bytes]) -> None:
    assert unpack_ids(pack_ids(ids)) == ids


@pytest.mark.parametrize("bad", ["!!!!", "AAA", "A" * 42])
def test_malformed_packed_ids_are_refused(bad: str) -> None:
    with pytest.raises(ValueError):
        unpack_ids(bad)


def test_content_hash_depends_on_order() -> None:
    assert bl.content_hash(IDS[:2]) != bl.content_hash(IDS[1::-1])
    assert bl.content_hash([]) == bl.content_hash([])


def test_base64url_has_one_spelling_per_value() -> None:
    assert b64decode("AA") == b"\x00"
    with pytest.raises(ValueError):
        b64decode("AB")  # same value with unused bits set
    with pytest.raises(ValueError):
        b64decode("AA==")  # padding is not sent
