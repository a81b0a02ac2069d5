"""The signature promise: a one-line edit of a 4 MB text file costs each client
at most 1 KiB on the wire, every request and response header included."""

from __future__ import annotations

import asyncio

import pytest

from tests.support import corpus
from tests.support.server import ServerProc
from tests.support.wire import measure_edit

KIB = 1024


@pytest.mark.parametrize(
    "change",
    ["edit_middle", "insert_top", "append"],
)
def test_one_line_change_costs_under_1_kib_each_way(server: ServerProc, change: str) -> None:
    old = corpus.markdown(4_000_000)
    new = {
        "edit_middle": corpus.edit_middle_line(old),
        "insert_top": b"A new first line, inserted at the top.\n" + old,
        "append": old + b"One more line appended at the end.\n",
    }[change]
    cost = asyncio.run(measure_edit(server.url, server.token, "notes/big.md", old, new))
    assert cost.reconstructed, "the downloading client could not rebuild the new version"
    assert cost.upload.total <= KIB, cost.upload
    assert cost.download.total <= KIB, cost.download
