"""Names of conflict copies: ``name (conflict from DEVICE YYYY-MM-DD HHMMSS).ext``,
so that the extension still opens the file in the right program."""

from __future__ import annotations

import time

from linesync.core import paths


def _split_ext(name: str) -> tuple[str, str]:
    dot = name.rfind(".")
    if dot <= 0:  # no extension, or a dot file such as ".bashrc"
        return name, ""
    return name[:dot], name[dot:]


def conflict_name(
    path: str, device: str, what: str = "conflict", when: float | None = None, n: int = 1
) -> str:
    folder, _, name = path.rpartition("/")
    stem, ext = _split_ext(name)
    stamp = time.strftime("%Y-%m-%d %H%M%S", time.localtime(when))
    dev = "".join(c if c.isalnum() or c in "-_." else "-" for c in device) or "device"
    suffix = f" {n}" if n > 1 else ""
    new = f"{stem} ({what} from {dev} {stamp}{suffix}){ext}"
    out = f"{folder}/{new}" if folder else new
    return paths.normalize(out)
