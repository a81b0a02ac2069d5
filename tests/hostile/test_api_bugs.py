"""Regressions for the server bugs the OpenAPI work turned up (issue 9, finding 12).

Each one was a 500 (an unhandled exception) or an answer the document does not
allow, for a request any token holder, or anyone, can send.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import requests
import zstandard

from linesync.core.ids import chunk_id, pack_ids
from linesync.protocol.codec import Codec
from linesync.protocol.framing import MEDIA_TYPE, Frame, FrameReader, encode_frames
from linesync.server.openapi import schema
from tests.support.api import admin
from tests.support.server import ServerProc


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProc]:
    proc = ServerProc(tmp_path_factory.mktemp("bugs") / "server").start()
    try:
        yield proc
    finally:
        proc.stop()


def _get(live: ServerProc, url_path: str, **params: str) -> requests.Response:
    headers = {"Authorization": f"Bearer {live.token}"}
    return requests.get(live.url + url_path, params=params, headers=headers, timeout=10)


# Digits that str.isdigit() accepts and int() refuses (superscripts, circled
# digits), and ones int() reads as numbers (Arabic-Indic, fullwidth, mathematical).
NOT_ASCII_DIGITS = ["²", "①", "١", "０", "𝟗", "1²", "٣٠"]


@pytest.mark.parametrize("value", NOT_ASCII_DIGITS)
@pytest.mark.parametrize(
    ("path", "name", "extra"),
    [
        ("/v1/ns/1/list", "limit", {}),
        ("/v1/ns/1/list", "wait", {}),
        ("/v1/ns/1/list", "inline", {}),
        ("/v1/ns/1/history", "limit", {"path": "a"}),
        ("/v1/ns/1/history", "before", {"path": "a"}),
    ],
)
def test_query_integers_are_ascii_digits(
    live: ServerProc, path: str, name: str, extra: dict[str, str], value: str
) -> None:
    """`GET /v1/ns/1/list?limit=²` was a 500 (routes._int_param: "²".isdigit() is
    true, int("²") raises ValueError), and `limit=١` was read as 1 although the
    protocol says plain decimal digits. Both are 400 bad_request now."""
    got = _get(live, path, **extra, **{name: value})
    assert got.status_code == 400, got.text
    assert got.json()["error"]["code"] == "bad_request"


@pytest.mark.parametrize(
    "path",
    [
        "/v1/ns/{big}/head",
        "/v1/ns/{big}/list",
        "/v1/ns/1/entries/{big}",
        "/v1/ns/{big}/entries/1",
    ],
)
@pytest.mark.parametrize("digits", [20, 4301, 10_000])
def test_long_path_integers_are_not_found(live: ServerProc, path: str, digits: int) -> None:
    """`GET /v1/ns/<5000 digits>/head` was a 500 with a traceback in the log
    (starlette's int convertor hit Python's 4300-digit limit for int()). An id
    is at most 19 digits; a longer one matches no route: 404 not_found."""
    got = _get(live, path.format(big="9" * digits))
    assert got.status_code == 404, got.text
    assert got.json()["error"]["code"] == "not_found"


@pytest.mark.parametrize("path", ["/v1/me", "/v1/ns/1/head", "/v1/ns/1/list"])
def test_metrics_token_on_the_api_is_documented(live: ServerProc, path: str) -> None:
    """A metrics token on a read endpoint gets 403, which the document did not
    list for any read operation (only for writes)."""
    token = live.admin("token", "create", "admin", "--device", "scraper" + path.replace("/", "-"),
                       "--metrics").splitlines()[-1]  # fmt: skip
    got = requests.get(live.url + path, headers={"Authorization": f"Bearer {token}"}, timeout=10)
    assert got.status_code == 403
    method = schema()["paths"][path.replace("/1/", "/{ns}/")]["get"]
    assert "403" in method["responses"]
    codes = method["responses"]["403"]["content"]["application/json"]["schema"]["allOf"][1]
    assert got.json()["error"]["code"] in codes["properties"]["error"]["properties"]["code"]["enum"]


def test_metrics_answers_are_documented(live: ServerProc) -> None:
    """/metrics needs a metrics token now: 401 without one, 403 with a device
    token. The document listed only 200."""
    responses = schema()["paths"]["/metrics"]["get"]["responses"]
    plain = requests.get(live.url + "/metrics", timeout=10)
    device = _get(live, "/metrics")
    assert (plain.status_code, device.status_code) == (401, 403)
    assert {"200", "401", "403"} <= set(responses)


def test_a_truncated_zstd_payload_is_refused(live: ServerProc) -> None:
    """A zstd frame whose last 4 bytes (its checksum) are cut off still decodes
    to the whole chunk in codec.decode, so the upload is taken (200), stored as
    sent, and served as the stored form of that chunk to every namespace: here to
    bob, who uploaded a whole frame of the same chunk later. A strict decoder
    refuses it ("did not decompress full frame"). docs/PROTOCOL.md §5.3: a
    payload that is not valid zstd is refused with 400 bad_request."""
    data = b"a line that repeats\n" * 200
    cut = zstandard.ZstdCompressor(level=3, write_checksum=True).compress(data)[:-4]
    whole = zstandard.ZstdCompressor(level=3).compress(data)
    admin(live, "user", "add", "bob")
    bob = admin(live, "token", "create", "bob", "--device", "phone").splitlines()[-1]

    def upload(token: str, ns: int, payload: bytes) -> requests.Response:
        body = encode_frames([Frame(chunk_id(data), Codec.ZSTD, None, payload)])
        headers = {"Authorization": f"Bearer {token}", "Content-Type": MEDIA_TYPE}
        return requests.post(f"{live.url}/v1/ns/{ns}/chunks", data=body, headers=headers,
                             timeout=10)  # fmt: skip

    first = upload(live.token, 1, cut)
    assert upload(bob, 2, whole).status_code == 200
    got = requests.post(f"{live.url}/v1/ns/2/chunks/get", json={"ids": pack_ids([chunk_id(data)])},
                        headers={"Authorization": f"Bearer {bob}"}, timeout=10)  # fmt: skip
    served = FrameReader(2**20).feed(got.content)[0].payload
    assert served != cut, "bob is served the truncated frame someone else uploaded"
    assert (first.status_code, first.json()["error"]["code"]) == (400, "bad_request")
