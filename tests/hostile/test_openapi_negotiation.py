"""The OpenAPI document's ``Linesync-Protocol`` header, against a real server:
every operation the document lists answers a client too old, too new or
malformed with the status and code the document gives it, and every answer
carries the server's versions as the document says."""

from __future__ import annotations

import re
from pathlib import Path

import requests

from linesync.protocol import version
from linesync.server.openapi import VERSIONS_PATTERN, schema
from tests.support.server import ServerProc


def test_the_served_operations_refuse_and_announce_as_documented(tmp_path: Path) -> None:
    srv = ServerProc(tmp_path / "server").start()
    try:
        served = requests.get(srv.url + "/v1/openapi.json", timeout=10).json()
        assert served["paths"] == schema()["paths"]
        auth = {"Authorization": f"Bearer {srv.token}"}
        sent = 0
        for path, item in served["paths"].items():
            url = srv.url + path.replace("{ns}", "1").replace("{seq}", "1").replace("{jid}", "1")
            for method, op in item.items():
                for value, status, code in [("0", 426, "client_too_old"),
                                            ("9999", 400, "client_too_new"),
                                            ("1;2", 400, "bad_request")]:  # fmt: skip
                    got = requests.request(method, url, timeout=10,
                                           headers={**auth, version.HEADER: value})  # fmt: skip
                    sent += 1
                    where = f"{method.upper()} {path} with {value!r}"
                    assert got.status_code == status, (where, got.status_code, got.text)
                    assert got.json()["error"]["code"] == code, where
                    assert str(status) in op["responses"], where
                    answer = op["responses"][str(status)]
                    enum = answer["content"]["application/json"]["schema"]["allOf"][1]
                    assert code in enum["properties"]["error"]["properties"]["code"]["enum"]
                    assert re.fullmatch(VERSIONS_PATTERN, got.headers[version.HEADER]), where
                    assert answer["headers"][version.HEADER]["required"], where
                # Served as usual with the version both speak; the header answers.
                ok = requests.request(method, url, timeout=10,
                                      headers={**auth, version.HEADER: "1"})  # fmt: skip
                if ok.status_code != 200:  # (a POST without a body, say: refused for that)
                    refused = ok.json()["error"]["code"]
                    assert refused not in ("client_too_old", "client_too_new"), path
                assert ok.headers[version.HEADER] == version.format_versions(version.SERVER_SPEAKS)
        assert sent >= 3 * 12
    finally:
        srv.stop()
