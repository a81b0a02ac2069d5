"""``linesync-server [OPTIONS]``: the same as ``linesync serve [OPTIONS]``, for
service managers and container images that want the server by its own name."""

from __future__ import annotations

import sys


def main() -> int:
    from linesync.cli.main import main as linesync

    return linesync(["serve", *sys.argv[1:]])
