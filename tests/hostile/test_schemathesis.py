"""Hostile input: schemathesis against the OpenAPI document the server serves.

A real server process runs with small limits (``CONFIG``: so a fuzzer reaches
each bound cheaply, and ``wait`` is at most 1 s, so long polls stay short) and
serves the document of that config; ``test_served_schema_is_the_one_tested``
checks it is exactly the document tested here. Every operation, the binary
upload included (``frames.bodies``: well-formed frame bodies and ones with one
defect each), gets a bounded, derandomized run of valid and invalid requests,
under tokens of every kind; then a stateful run follows the document's links
(me → list → entry → chunks/get, commit → entry/history/restore, ...). Each
answer must not be a 5xx, must use a status the document lists for the
operation, with the media type, body schema (error codes included) and headers
it states; an upload answer must also be the one its defect calls for, and
every answer must come within its ``wait`` plus a few seconds.
"""

from __future__ import annotations

import collections
import dataclasses
import hashlib
import json
import time
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
    ignored_auth,
    missing_required_header,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
    unsupported_method,
)

from linesync.core.ids import chunk_id, pack_ids
from linesync.protocol import version
from linesync.protocol.codec import Codec
from linesync.protocol.framing import MEDIA_TYPE, Frame, encode_frames
from linesync.server.config import ServerConfig, tunable
from linesync.server.openapi import schema as openapi_schema
from tests.hostile import commits, frames
from tests.support.api import admin, ns_id
from tests.support.server import ServerProc

KiB = 2**10
# Small limits, so the generated requests reach them; the document states them.
CONFIG = ServerConfig(
    max_wait_seconds=1.0,
    max_list_page=20,
    max_inline_bytes=8 * KiB,
    max_batch_paths=16,
    max_inline_chunks=8,
    max_ids_per_request=64,
    max_chunk=16 * KiB,
    max_upload_body=128 * KiB,
    max_request_decoded=256 * KiB,
    max_json_body=2**20,
    max_download_body=64 * KiB,
    # Rate limits have their own tests (tests/attack): here they would only turn
    # most of the run into 429s (documented, but no coverage).
    rate_per_second=1e6,
    rate_burst=1e6,
    auth_fail_rate=1e6,
    auth_fail_burst=1e6,
)
LIMIT_ARGS = [
    f"--limit={name}={getattr(CONFIG, name)}"
    for name in tunable()
    if hasattr(CONFIG, name) and getattr(CONFIG, name) != getattr(ServerConfig(), name)
]
FRAME_LIMITS = frames.Limits(
    CONFIG.max_chunk, CONFIG.max_upload_body, CONFIG.max_ids_per_request, CONFIG.max_request_decoded
)

HOME_NS = 1  # the admin user's home namespace (checked by the fixture)
SHARED_NS = 3  # bob's namespace "shared", where admin is a read-only member
# Bounded per operation and for the stateful run, so the module stays under a
# minute on 2 cores.
MAX_EXAMPLES = 60
STATEFUL_SCENARIOS = 40
STATEFUL_STEPS = 8
SLACK = 10.0  # seconds an answer may take beyond its wait (a loaded machine)

# Chunks the home namespace holds (the seed commits them): zstd-dict frames name them.
SEED_CHUNKS = [b"# Notes\n", b"- milk\n- eggs\n", b"line of text\n" * 50, b"\x00\x01binary"]
HELD = {chunk_id(c): c for c in SEED_CHUNKS}

WHO = ["rw"] * 8 + ["ro", "metrics", "stranger", "revoked", "garbage", "none"]
UPLOAD = "/v1/ns/{ns}/chunks"
COMMIT = "/v1/ns/{ns}/commit"


@schemathesis.serializer(MEDIA_TYPE)
def _frames_serializer(ctx: Any, value: Any) -> bytes:
    if isinstance(value, frames.Body):
        return value.data
    if isinstance(value, bytes):
        return value
    return json.dumps(value, default=str).encode()


schema = schemathesis.openapi.from_dict(openapi_schema(CONFIG))


@schema.hook
def before_generate_body(ctx: Any, strategy: st.SearchStrategy[Any]) -> Any:
    """The upload body is binary frames: draw them with their grammar (and one
    defect or none), not as arbitrary strings. Half the commit bodies come from
    a small world of real paths, chunks and JIDs (``commits``), so the commit
    rules are reached, not just the schema's."""
    if ctx.operation is not None and ctx.operation.path == UPLOAD:
        return frames.bodies(HELD, FRAME_LIMITS)
    if ctx.operation is not None and ctx.operation.path == COMMIT:
        return st.one_of(strategy, commits.commits(HELD, CONFIG.max_batch_paths))
    return strategy


# -- what the run saw (printed at the end, asserted for the stateful run) ----------

SEEN: collections.Counter[tuple[str, str, int]] = collections.Counter()


def _record(case: schemathesis.Case, status: int) -> None:
    meta = case.meta
    how = f"{meta.phase.name.value}/{meta.generation.mode.value}" if meta else "?"
    SEEN[(case.operation.label, how, status)] += 1


# -- the server, its tokens and its data --------------------------------------------


@dataclasses.dataclass
class World:
    srv: ServerProc
    tokens: dict[str, str | None]


def _post(srv: ServerProc, token: str, path: str, body: Any, ctype: str = "") -> Any:
    headers = {"Authorization": f"Bearer {token}"}
    if ctype:
        headers["Content-Type"] = ctype
        got = requests.post(srv.url + path, data=body, headers=headers, timeout=10)
    else:
        got = requests.post(srv.url + path, json=body, headers=headers, timeout=10)
    assert got.status_code == 200, got.text
    return got.json()


def _seed(srv: ServerProc, token: str, ns: int) -> None:
    """Files (a text file edited since, a moved one, an empty one), folders, a
    symlink and deletions, and more entries than one list page holds."""
    raw = encode_frames([Frame(chunk_id(c), Codec.RAW, None, c) for c in SEED_CHUNKS])
    _post(srv, token, f"/v1/ns/{ns}/chunks", raw, MEDIA_TYPE)
    c = [chunk_id(x) for x in SEED_CHUNKS]

    def file(path: str, ids: list[bytes], base: int = 0) -> dict[str, Any]:
        size = sum(len(HELD[i]) for i in ids)
        return {"path": path, "kind": "file", "size": size, "content": {"ids": pack_ids(ids)},
                "base_jid": base, "mtime_ns": 1_700_000_000_000_000_000}  # fmt: skip

    def commit(ops: list[dict[str, Any]]) -> list[int]:
        got = _post(srv, token, f"/v1/ns/{ns}/commit", {"ops": ops})
        assert all(r["status"] == "ok" for r in got["results"]), got
        return [r["jid"] for r in got["results"]]

    j = commit([
        {"path": "docs", "kind": "directory"},
        file("docs/a.txt", [c[0], c[1]]),
        file("b.md", [c[2]]),
        {"path": "link", "kind": "symlink", "target": "docs/a.txt"},
        file("empty", []),
        file("tool", [c[3]]) | {"exec": True},
    ])  # fmt: skip
    a, b, link = j[1], j[2], j[3]
    commit([
        file("docs/a.txt", [c[0], c[2], c[1]], base=a),
        {"path": "c.md", "kind": "file", "size": len(SEED_CHUNKS[2]), "move_from": "b.md",
         "move_base": b},
        {"path": "link", "kind": "tombstone", "base_jid": link},
    ])  # fmt: skip
    commit([{"path": "many", "kind": "directory"}])
    commit([file(f"many/n{i}.txt", [c[i % 2]]) for i in range(CONFIG.max_batch_paths)])
    commit([file(f"many/m{i}.txt", [c[i % 3]]) for i in range(CONFIG.max_batch_paths)])


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    srv = ServerProc(tmp_path_factory.mktemp("hostile") / "server", extra=LIMIT_ARGS).start()
    try:
        admin(srv, "user", "add", "bob")
        admin(srv, "namespace", "create", "shared", "--owner", "bob")
        admin(srv, "namespace", "share", "shared", "admin", "--read-only")
        assert ns_id(srv, "admin") == HOME_NS and ns_id(srv, "shared") == SHARED_NS

        def token(user: str, device: str, *flags: str) -> str:
            return admin(srv, "token", "create", user, "--device", device, *flags).splitlines()[-1]

        tokens: dict[str, str | None] = {
            "rw": srv.token,
            "ro": token("admin", "reader", "--read-only"),
            "metrics": token("admin", "scraper", "--metrics"),
            "stranger": token("bob", "phone"),
            "revoked": token("admin", "lost"),
            "garbage": "lst_" + "A" * 32,
            "none": None,
        }
        admin(srv, "token", "revoke", "admin", "--device", "lost")
        _seed(srv, srv.token, HOME_NS)
        _post(srv, str(tokens["stranger"]), f"/v1/ns/{SHARED_NS}/commit",
              {"ops": [{"path": "from-bob", "kind": "directory"}]})  # fmt: skip
        yield World(srv, tokens)
    finally:
        srv.stop()
        if SEEN:
            print("\nschemathesis answers (operation, phase/mode, status): count")
            for (label, how, status), n in sorted(SEEN.items()):
                print(f"  {label} {how} {status}: {n}")


def test_served_schema_is_the_one_tested(world: World) -> None:
    got = requests.get(world.srv.url + "/v1/openapi.json", timeout=10)
    assert got.status_code == 200
    assert got.json() == openapi_schema(CONFIG)
    # And it states this server's limits, not the defaults.
    params = {p["name"]: p["schema"] for p in got.json()["paths"]["/v1/ns/{ns}/list"]["get"]
              ["parameters"]}  # fmt: skip
    assert params["wait"]["maximum"] == 1
    assert params["limit"]["maximum"] == CONFIG.max_list_page


# -- checks beyond schemathesis's ------------------------------------------------------


def _wait_of(case: schemathesis.Case) -> float:
    try:
        return float(int(str((case.query or {}).get("wait", 0))))
    except ValueError:
        return 0.0


@schemathesis.check
def answers_in_time(ctx: Any, response: Any, case: schemathesis.Case) -> bool | None:
    """Long polls stay bounded: an answer comes within its ``wait`` plus SLACK."""
    elapsed = response.elapsed
    limit = min(max(_wait_of(case), 0.0), CONFIG.max_wait_seconds) + SLACK
    assert elapsed <= limit, f"answered after {elapsed:.1f} s (wait {_wait_of(case)})"
    return None


CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
    # Sent again without the token, an operation that needs one answers 401.
    ignored_auth,
    # Another method on a documented path answers 405 with an Allow header.
    unsupported_method,
    missing_required_header,
    answers_in_time,
]


def _upload_answer(case: schemathesis.Case, response: Any) -> None:
    """With a read-write token on its own namespace, each kind of body gets the
    answer its defect calls for."""
    body = case.body
    if not isinstance(body, frames.Body) or body.defect is frames.Defect.RANDOM:
        return
    code = response.json()["error"]["code"] if response.status_code != 200 else ""
    allowed = frames.EXPECTED[body.defect]
    assert (response.status_code, code) in allowed, (
        f"{body!r}: got {response.status_code} {code}, expected one of {sorted(allowed)}"
    )


def _roll(case: schemathesis.Case) -> int:
    """A number drawn from the case itself, so a replayed case is sent the same way."""
    data = repr((case.path_parameters, case.query, case.headers, case.body)).encode()
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest())


def _aim_ns(case: schemathesis.Case, roll: int) -> None:
    """Most cases with a well-formed ``ns`` go to a namespace the admin can see
    (its home, or one it may only read), so they get past the 404 and reach
    the handler; the rest keep the generated one."""
    params = case.path_parameters or {}
    ns = params.get("ns")
    # (The coverage phase spells path parameters as strings.)
    if isinstance(ns, str) and ns.isascii() and ns.isdigit():
        ns = int(ns)
    if isinstance(ns, int) and not isinstance(ns, bool) and 0 <= ns <= 2**62:
        case.path_parameters = {
            **params,
            "ns": [HOME_NS, HOME_NS, HOME_NS, SHARED_NS, ns][roll % 5],
        }


def _aim_version(case: schemathesis.Case, roll: int) -> None:
    """Most cases carrying a generated ``Linesync-Protocol`` header send the
    version both sides speak instead, so they reach the handler; one in four
    keeps the generated one (mostly refused: 426 or 400, as documented)."""
    sent = case.headers or {}
    name = next((k for k in sent if k.lower() == version.HEADER.lower()), None)
    if name is not None and (roll // 35) % 4:
        case.headers = {**sent, name: version.format_versions(version.CLIENT_SPEAKS)}


def _aim(case: schemathesis.Case) -> str:
    """Aim a case (``_aim_ns``, ``_aim_version``) and choose whose token it is
    sent with. (Not with ``schema.given``: that turns off the coverage phase,
    the one that tries each bound and one past it.)"""
    roll = _roll(case)
    _aim_ns(case, roll)
    _aim_version(case, roll)
    return WHO[(roll // 5) % len(WHO)]


@schema.parametrize()
@settings(
    max_examples=MAX_EXAMPLES,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
def test_api(case: schemathesis.Case, world: World) -> None:
    who = _aim(case)
    token = world.tokens[who]
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    if who == "none":
        # No token at all: whatever a generated Authorization header held is dropped too.
        generated = case.headers or {}
        case.headers = {k: v for k, v in generated.items() if k.lower() != "authorization"}
    response = case.call(base_url=world.srv.url, headers=headers, timeout=30)
    _record(case, response.status_code)
    case.validate_response(response, checks=CHECKS, headers=headers)
    sent = response.request.headers
    if (
        case.operation.path == UPLOAD
        and sent.get("Authorization") == f"Bearer {world.tokens['rw']}"
        and sent.get("Content-Type") == MEDIA_TYPE
        and (case.path_parameters or {}).get("ns") == HOME_NS
        and version.server_verdict(sent.get(version.HEADER)) is None
    ):
        _upload_answer(case, response)


# -- stateful: sequences along the document's links -------------------------------------


def test_stateful(world: World) -> None:
    links: collections.Counter[tuple[str, int]] = collections.Counter()
    steps = 0
    headers = {"Authorization": f"Bearer {world.tokens['rw']}"}

    class Workflow(schema.as_state_machine()):  # type: ignore[misc]
        def get_call_kwargs(self, case: schemathesis.Case) -> dict[str, Any]:
            return {"base_url": world.srv.url, "headers": headers, "timeout": 30}

        def step(self, input: Any) -> Any:
            if input.transition is None:  # a scenario's first call: its ns is drawn
                _aim_ns(input.case, _roll(input.case))
            _aim_version(input.case, _roll(input.case))
            nonlocal steps
            steps += 1
            output = super().step(input)
            if input.transition is not None and input.is_applied:
                links[(input.transition.id, output.response.status_code)] += 1
            return output

        def validate_response(
            self, response: Any, case: schemathesis.Case, additional_checks: Any = None, **kw: Any
        ) -> None:
            _record(case, response.status_code)
            case.validate_response(response, checks=CHECKS, headers=headers)

    started = time.monotonic()
    Workflow.run(
        settings=settings(
            max_examples=STATEFUL_SCENARIOS,
            stateful_step_count=STATEFUL_STEPS,
            deadline=None,
            derandomize=True,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
    )
    elapsed = time.monotonic() - started
    print(f"\nstateful: {steps} steps, {sum(links.values())} along links, in {elapsed:.1f} s")
    for (name, status), n in sorted(links.items()):
        print(f"  {name} {status}: {n}")
    # The links are followed and lead somewhere: several of them to a 200.
    assert len({name for name, status in links if status == 200}) >= 5, links
