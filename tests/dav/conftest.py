from __future__ import annotations

import pytest

from tests.scenarios.conftest import world  # noqa: F401  (folders syncing as linesync clients)
from tests.support.api import User, new_user
from tests.support.server import ServerProc


@pytest.fixture
def user(srv: ServerProc) -> User:
    """A fresh user with a read-write token on the module's server."""
    return new_user(srv)
