"""Bytes on the wire for one change, per client, headers included.

Starts a real server, puts each client behind its own byte-counting proxy,
commits the old version (not counted), then counts the uploading client's
commit and the downloading client's long-poll answer. Run: `make bench`.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.support import corpus  # noqa: E402
from tests.support.server import ServerProc  # noqa: E402
from tests.support.wire import measure_edit  # noqa: E402


def cases() -> list[tuple[str, str, bytes, bytes]]:
    md = corpus.markdown(4_000_000)
    log = corpus.log_lines(5_000_000)
    blob = corpus.random_bytes(4 * 2**20)
    mid = len(blob) // 2
    return [
        ("one line edited, middle of 4 MB markdown", "notes.md", md, corpus.edit_middle_line(md)),
        ("one line inserted at the top of it", "notes.md", md, b"New first line.\n" + md),
        ("one line appended to a 5 MB log", "app.log", log, log + b"1700009999 INFO done\n"),
        (
            "4 KiB overwritten, middle of 4 MiB binary",
            "blob.bin",
            blob,
            blob[:mid] + corpus.random_bytes(4096, seed=9) + blob[mid + 4096 :],
        ),
    ]


async def run(url: str, token: str) -> list[str]:
    rows = ["| change | upload (up/down) | download (up/down) | rebuilt |", "|---|---|---|---|"]
    for i, (name, path, old, new) in enumerate(cases()):
        cost = await measure_edit(url, token, f"c{i}-{path}", old, new)
        up, down = cost.upload, cost.download
        rows.append(
            f"| {name} | {up.total} B ({up.up}/{up.down}) | {down.total} B "
            f"({down.up}/{down.down}) | {'yes' if cost.reconstructed else 'NO'} |"
        )
    return rows


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        srv = ServerProc(Path(tmp) / "server").start()
        try:
            rows = asyncio.run(run(srv.url, srv.token))
        finally:
            srv.stop()
    print("\n".join(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
