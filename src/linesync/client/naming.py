"""Names of conflict copies: ``name (conflict from DEVICE YYYY-MM-DD HHMMSS).ext``,
so that the extension still opens the file in the right program. The naming
itself (both ways) is :mod:`linesync.core.conflicts`; the client's name for
making one is :func:`conflict_name`."""

from __future__ import annotations

from linesync.core.conflicts import (
    ConflictCopy,
    device_label,
    format_conflict_name,
    parse_conflict_name,
)

conflict_name = format_conflict_name

__all__ = [
    "ConflictCopy",
    "conflict_name",
    "device_label",
    "format_conflict_name",
    "parse_conflict_name",
]
