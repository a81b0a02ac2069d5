"""The OpenAPI document states the limits of the server it describes.

``schema(config)`` must carry every bound a request can run into with the value
``config`` enforces (finding 12: ``limit``, ``wait`` and ``inline`` had no
maximum), describe every operation's answers, and hold links that point at
real operations and parameters. No server needed: the served document is
checked against ``schema(config)`` in ``test_schemathesis.py``.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any

import pytest

from linesync.core.ids import pack_ids
from linesync.protocol import version
from linesync.server.config import ServerConfig
from linesync.server.openapi import VERSIONS_PATTERN, schema

SMALL = ServerConfig(
    max_list_page=7,
    max_wait_seconds=2.5,
    max_inline_bytes=999,
    max_batch_paths=3,
    max_inline_chunks=5,
    max_ids_per_request=11,
)


def _params(doc: dict[str, Any], path: str, method: str = "get") -> dict[str, Any]:
    return {p["name"]: p["schema"] for p in doc["paths"][path][method].get("parameters", [])}


@pytest.mark.parametrize("config", [ServerConfig(), SMALL], ids=["defaults", "small"])
def test_bounds_are_the_configs(config: ServerConfig) -> None:
    doc = schema(config)
    listing = _params(doc, "/v1/ns/{ns}/list")
    page = config.max_list_page
    assert listing["limit"] == {"type": "integer", "minimum": 1, "maximum": page, "default": page}
    # The server reads whole seconds (int(max_wait_seconds)).
    assert listing["wait"]["maximum"] == int(config.max_wait_seconds)
    assert listing["inline"]["maximum"] == config.max_inline_bytes
    assert all(listing[n]["minimum"] == 0 for n in ("wait", "inline"))
    assert _params(doc, "/v1/ns/{ns}/history")["limit"]["maximum"] == 1000
    parts = doc["components"]["schemas"]
    commit = parts["CommitRequest"]["properties"]
    assert commit["ops"]["maxItems"] == config.max_batch_paths
    assert commit["chunks"]["maxItems"] == config.max_inline_chunks
    most = len(pack_ids([bytes(32)] * config.max_ids_per_request))
    assert parts["IdsRequest"]["properties"]["ids"]["maxLength"] == most
    assert parts["MissingRequest"]["properties"]["ids"]["maxLength"] == most
    assert parts["ListResponse"]["properties"]["entries"]["maxItems"] == config.max_list_page
    limits = doc["info"]["x-linesync-limits"]
    for name, value in limits.items():
        where = config.limits if name in ("max_file_size", "max_blocklist") else config
        assert getattr(where, name) == value, name


def test_defaults_as_the_protocol_states_them() -> None:
    """The numbers docs/PROTOCOL.md §2.8 gives for a server with the defaults."""
    doc = schema()
    listing = _params(doc, "/v1/ns/{ns}/list")
    assert (listing["limit"]["maximum"], listing["wait"]["maximum"]) == (1000, 60)
    assert listing["inline"]["maximum"] == 262_144
    assert doc == schema(ServerConfig())
    assert doc != schema(dataclasses.replace(ServerConfig(), max_wait_seconds=1.0))


def test_every_operation_is_described() -> None:
    doc = schema()
    ids: set[str] = set()
    for path, item in doc["paths"].items():
        for method, op in item.items():
            where = f"{method.upper()} {path}"
            assert op["operationId"] not in ids, where
            ids.add(op["operationId"])
            assert "security" in op, where
            answers = op["responses"]
            assert "200" in answers and not any(s.startswith("5") and s != "503" for s in answers)
            if op["security"]:
                # Every operation that needs a token says how it is refused.
                assert {"401", "403", "429"} <= set(answers), where
                assert answers["401"]["headers"]["WWW-Authenticate"]["required"]
                assert answers["429"]["headers"]["Retry-After"]["required"]
            for status, answer in answers.items():
                if status != "200":
                    body = answer["content"]["application/json"]["schema"]["allOf"]
                    codes = body[1]["properties"]["error"]["properties"]["code"]["enum"]
                    assert codes and all(re.fullmatch(r"[a-z_]+", c) for c in codes), where
    assert doc["paths"]["/metrics"]["get"]["security"] == [{"metrics": []}]
    assert doc["paths"]["/healthz"]["get"]["security"] == []


def test_links_point_at_operations_and_their_parameters() -> None:
    doc = schema()
    ops = {op["operationId"]: (path, op) for path, item in doc["paths"].items()
           for op in item.values()}  # fmt: skip
    count = 0
    for path, item in doc["paths"].items():
        for op in item.values():
            for name, link in op["responses"]["200"].get("links", {}).items():
                count += 1
                target_path, target = ops[link["operationId"]]
                names = {p["name"] for p in target.get("parameters", [])}
                assert set(link.get("parameters", {})) <= names, (path, name)
                if "requestBody" in link:
                    assert "requestBody" in target, (path, name)
                for expr in link.get("parameters", {}).values():
                    assert expr.startswith(("$response.body#/", "$request.")), expr
    assert count >= 15


def _codes(answer: dict[str, Any]) -> list[str]:
    body = answer["content"]["application/json"]["schema"]["allOf"]
    return list(body[1]["properties"]["error"]["properties"]["code"]["enum"])


def test_every_operation_names_the_protocol_versions_both_ways() -> None:
    """PROTOCOL §1.4 on each operation: the optional ``Linesync-Protocol``
    request header, the refusals it can bring (426 ``client_too_old``, 400
    ``client_too_new``, 400 ``bad_request`` for a malformed one), and the
    server's own header on every answer."""
    doc = schema()
    header = version.HEADER
    pattern = re.compile(VERSIONS_PATTERN)
    ops = [(f"{m.upper()} {p}", op) for p, item in doc["paths"].items() for m, op in item.items()]
    assert sum(where.split()[1].startswith("/v1/") for where, _ in ops) >= 12
    for where, op in ops:
        params = [p for p in op["parameters"] if p["in"] == "header" and p["name"] == header]
        assert len(params) == 1, where
        param = params[0]
        assert param["required"] is False, where
        assert "426 `client_too_old`" in param["description"], where
        assert "400 `client_too_new`" in param["description"], where
        answers = op["responses"]
        assert _codes(answers["426"]) == ["client_too_old"], where
        assert {"client_too_new", "bad_request"} <= set(_codes(answers["400"])), where
        for status, answer in answers.items():
            sent = answer["headers"][header]
            always = not (op["operationId"] == "list" and status == "200")
            assert sent["required"] is always, (where, status)
            assert sent["schema"]["pattern"] == VERSIONS_PATTERN, (where, status)
        # What the client sends, and what the server answers, fit the schema.
        assert pattern.fullmatch(version.format_versions(version.CLIENT_SPEAKS))
        assert pattern.fullmatch(version.format_versions(version.SERVER_SPEAKS))
    # The schema of the header against the parser, as a table.
    for text, parses in [("1", True), ("1, 2", True), ("0 ,9999", True), ("1,2,3", True),
                         ("", False), ("1,", False), ("x", False), ("12345", False),
                         ("-1", False), ("1;2", False), ("1" * 101, False)]:  # fmt: skip
        fits = bool(pattern.fullmatch(text)) and len(text) <= version.MAX_HEADER
        try:
            version.parse_versions(text)
            ok = True
        except ValueError:
            ok = False
        assert fits is parses and ok is parses, text
    # The refusals are the ones the server makes, with the statuses listed.
    old = version.server_verdict("0")
    new = version.server_verdict(str(version.MAX_VERSION))
    bad = version.server_verdict("x")
    assert old is not None and (old.code, old.status) == ("client_too_old", 426)
    assert new is not None and (new.code, new.status) == ("client_too_new", 400)
    assert bad is not None and (bad.code, bad.status) == ("bad_request", 400)
