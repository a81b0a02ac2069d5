"""A small HTTP client for the web interface's tests: a real socket per
request (http.client), cookies kept as a browser would (by name), every
answer returned whole with all its headers (repeated Set-Cookie too)."""

from __future__ import annotations

import http.client
import re
import secrets
from dataclasses import dataclass, field
from urllib.parse import urlencode, urlsplit

_CSRF = re.compile(r'name="csrf" value="([^"]*)"')


@dataclass
class Resp:
    status: int
    headers: list[tuple[str, str]]
    body: bytes

    def header(self, name: str) -> str | None:
        for k, v in self.headers:
            if k.lower() == name.lower():
                return v
        return None

    def cookies(self) -> list[str]:
        return [v for k, v in self.headers if k.lower() == "set-cookie"]

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")

    @property
    def location(self) -> str:
        return self.header("location") or ""

    def csrf(self) -> str:
        m = _CSRF.search(self.text)
        assert m, f"no csrf field in the page: {self.text[:300]}"
        return m.group(1)


def multipart(fields: dict[str, str], files: list[tuple[str, str, bytes]]) -> tuple[bytes, str]:
    """A multipart/form-data body: ``files`` as (field, filename, bytes)."""
    boundary = "----linesync" + secrets.token_hex(8)
    out = bytearray()
    for k, v in fields.items():
        out += f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode()
    for name, filename, data in files:
        out += (
            f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; '
            f'filename="{filename}"\r\nContent-Type: application/octet-stream\r\n\r\n'
        ).encode()
        out += data + b"\r\n"
    out += f"--{boundary}--\r\n".encode()
    return bytes(out), f"multipart/form-data; boundary={boundary}"


@dataclass
class Web:
    url: str
    cookies: dict[str, str] = field(default_factory=dict)
    urls: list[str] = field(default_factory=list)  # every URL asked for
    bodies: list[bytes] = field(default_factory=list)  # every page's body

    @property
    def origin(self) -> str:
        return self.url.rstrip("/")

    def request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
        origin: str | None | bool = True,
    ) -> Resp:
        parts = urlsplit(self.url)
        conn = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=60)
        hdrs = dict(headers or {})
        if self.cookies:
            hdrs["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        if origin is True and method != "GET" and "Origin" not in hdrs:
            hdrs["Origin"] = self.origin
        elif isinstance(origin, str):
            hdrs["Origin"] = origin
        self.urls.append(path)
        try:
            conn.request(method, path, body=body, headers=hdrs)
            r = conn.getresponse()
            resp = Resp(r.status, r.getheaders(), r.read())
        finally:
            conn.close()
        self.bodies.append(resp.body)
        for raw in resp.cookies():
            name, _, rest = raw.partition("=")
            value = rest.split(";", 1)[0]
            if "Max-Age=0" in raw:
                self.cookies.pop(name, None)
            else:
                self.cookies[name] = value
        return resp

    def get(self, path: str, **kw: object) -> Resp:
        return self.request("GET", path, **kw)  # type: ignore[arg-type]

    def post(
        self,
        path: str,
        fields: dict[str, str],
        origin: str | None | bool = True,
        headers: dict[str, str] | None = None,
    ) -> Resp:
        hdrs = {"Content-Type": "application/x-www-form-urlencoded", **(headers or {})}
        return self.request("POST", path, urlencode(fields).encode(), hdrs, origin)

    def upload(
        self,
        path: str,
        fields: dict[str, str],
        files: list[tuple[str, str, bytes]],
        headers: dict[str, str] | None = None,
    ) -> Resp:
        body, ctype = multipart(fields, files)
        return self.request("POST", path, body, {"Content-Type": ctype, **(headers or {})})

    def signin(self, user: str, token: str) -> Resp:
        page = self.get("/web/signin")
        return self.post(
            "/web/signin", {"csrf": page.csrf(), "user": user, "token": token, "next": ""}
        )

    def csrf(self) -> str:
        return self.get("/web/").csrf()
