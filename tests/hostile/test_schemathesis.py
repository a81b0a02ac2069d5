"""Hostile input: schemathesis against the server's own OpenAPI document.

Every operation of ``/v1/openapi.json`` gets a bounded, derandomized run of
generated requests (valid and invalid ones) against a real server process.
Each answer must not be a 5xx, must use a status code the document declares,
and must match the declared media type and schema.

The schema is loaded from ``linesync.server.openapi.schema()`` at import (so
pytest can make one test per operation); ``test_served_schema_is_the_one_tested``
checks the server serves exactly that document.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from linesync.protocol.framing import MEDIA_TYPE
from linesync.server.openapi import schema as openapi_schema
from tests.support.server import ServerProc

HOME_NS = 1  # the admin user's home namespace
# Per operation: bounded, so the whole module takes about 10 s on 2 cores.
MAX_EXAMPLES = 100

# The chunk upload body is opaque bytes (``format: binary``): send it as is.
schemathesis.serializer.alias(MEDIA_TYPE, "application/octet-stream")

schema = schemathesis.openapi.from_dict(openapi_schema())


@schema.hook
def before_generate_path_parameters(ctx: Any, strategy: st.SearchStrategy[Any]) -> Any:
    """Half the cases go to the home namespace, so they get past the 404 and
    reach the handlers; the other half keep the hostile ``ns`` values."""

    def home(params: Any) -> Any:
        if isinstance(params, dict) and "ns" in params:
            return {**params, "ns": HOME_NS}
        return params

    return st.one_of(strategy.map(home), strategy)


@schema.hook
def map_query(ctx: Any, query: Any) -> Any:
    """No long polls: ``list?wait=N`` legitimately holds the request up to 60 s
    when nothing changes, which no bounded run can afford (long polling has its
    own tests). Invalid ``wait`` values are left alone."""
    if isinstance(query, dict) and str(query.get("wait", "")).isdigit():
        query["wait"] = 0
    return query


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProc]:
    proc = ServerProc(tmp_path_factory.mktemp("hostile") / "server").start()
    try:
        yield proc
    finally:
        proc.stop()


def test_served_schema_is_the_one_tested(live: ServerProc) -> None:
    got = requests.get(live.url + "/v1/openapi.json", timeout=10)
    assert got.status_code == 200
    assert got.json() == openapi_schema()


CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


@schema.parametrize()
@settings(
    max_examples=MAX_EXAMPLES,
    derandomize=True,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
def test_api(case: schemathesis.Case, live: ServerProc) -> None:
    case.call_and_validate(
        base_url=live.url,
        headers={"Authorization": f"Bearer {live.token}"},
        checks=CHECKS,
        timeout=10,
    )
