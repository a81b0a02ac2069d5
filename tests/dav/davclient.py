"""A raw WebDAV client for the tests: one request per connection, Basic auth,
every answer returned (status, headers, body), never raised."""

from __future__ import annotations

import base64
import http.client
import os
import shutil
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from urllib.parse import quote, urlsplit

import pytest


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes

    def xml(self) -> ET.Element:
        return ET.fromstring(self.body)


class Dav:
    def __init__(self, url: str, user: str, password: str) -> None:
        u = urlsplit(url)
        self.host, self.port = u.hostname or "127.0.0.1", u.port or 80
        self.user, self.password = user, password

    def url(self, ns: str, path: str = "") -> str:
        return f"/dav/{quote(ns, safe='')}/{quote(path)}"

    def req(
        self,
        method: str,
        target: str,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
        auth: bool | tuple[str, str] = True,
    ) -> Answer:
        hdrs = dict(headers or {})
        if auth:
            user, pw = auth if isinstance(auth, tuple) else (self.user, self.password)
            cred = base64.b64encode(f"{user}:{pw}".encode()).decode()
            hdrs["Authorization"] = f"Basic {cred}"
        con = http.client.HTTPConnection(self.host, self.port, timeout=120)
        try:
            con.request(method, target, body=body, headers=hdrs)
            r = con.getresponse()
            data = r.read()
            return Answer(r.status, {k.lower(): v for k, v in r.getheaders()}, data)
        finally:
            con.close()


PROPFIND_ALL = b'<?xml version="1.0"?><D:propfind xmlns:D="DAV:"><D:allprop/></D:propfind>'


def hrefs(answer: Answer) -> list[str]:
    return [e.text or "" for e in answer.xml().iter("{DAV:}href")]


def need_tool(name: str) -> str:
    """The tool's path; skipped when missing, failed under CI=true (make unit
    installs it: tests/support/ensure_dav_tools.sh)."""
    found = shutil.which(name)
    if found is None:
        msg = f"{name} is not installed (run: sh tests/support/ensure_dav_tools.sh)"
        if os.environ.get("CI") == "true":
            pytest.fail(msg)
        pytest.skip(msg)
    return found
