from __future__ import annotations

from pathlib import Path


def files(folder: Path) -> dict[str, bytes]:
    return {
        p.relative_to(folder).as_posix(): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and ".linesync" not in p.relative_to(folder).parts
    }
