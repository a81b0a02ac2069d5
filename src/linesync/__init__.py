"""linesync: self-hosted file sync where a one-line edit sends about one line.

The public surface is :class:`Client` (embed a sync client) and
:class:`LinesyncError` (every error the protocol can report).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
__all__ = ["Client", "LinesyncError", "__version__"]

if TYPE_CHECKING:
    from linesync.client.api import Client
    from linesync.protocol.errors import LinesyncError


def __getattr__(name: str) -> Any:
    # Imported on first use, so that the server never loads the client.
    if name == "Client":
        from linesync.client.api import Client

        return Client
    if name == "LinesyncError":
        from linesync.protocol.errors import LinesyncError

        return LinesyncError
    raise AttributeError(f"module 'linesync' has no attribute {name!r}")
