"""The seed corpus of the fuzz targets, written by ``python -m tests.fuzz.seeds``.

Each seed is a small, well-formed (or pointedly malformed) input in the
target's format (see ``tests/fuzz/targets.py``), so the fuzzer starts from
every kind of frame, op and path rather than from nothing. Seeds are written
to ``tests/fuzz/corpus/TARGET/seed-NAME``; inputs a fuzzer found that once
crashed are kept beside them as ``regress-NAME`` and are never rewritten here.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import zstandard

from linesync.core.ids import b64encode, chunk_id, pack_ids
from linesync.protocol import codec, inline
from linesync.protocol.framing import END, MAGIC, Frame, encode_frame, encode_frames
from tests.fuzz import targets as T

CORPUS = Path(__file__).resolve().parent / "corpus"


def _frames() -> Iterator[tuple[str, bytes]]:
    text = b"".join(b"line %d of a note\n" % i for i in range(40))
    edited = text.replace(b"line 7 ", b"line SEVEN ")
    base_ids = (chunk_id(text),)
    kind, dict_payload = codec.encode(edited, text)
    assert kind is codec.Codec.ZSTD_DICT
    raw = Frame(chunk_id(b"hello"), codec.Codec.RAW, None, b"hello")
    packed = zstandard.ZstdCompressor().compress(text)
    zst = Frame(chunk_id(text), codec.Codec.ZSTD, None, packed)
    dct = Frame(chunk_id(edited), codec.Codec.ZSTD_DICT, base_ids, dict_payload)
    two = Frame(chunk_id(edited), codec.Codec.ZSTD_DICT, (bytes(32), bytes(range(32))), b"\0" * 9)
    bomb = zstandard.ZstdCompressor().compress(bytes(200_000))
    multi = packed + zstandard.ZstdCompressor(write_content_size=False).compress(b"more")
    empty = Frame(chunk_id(b""), codec.Codec.RAW, None, b"")
    yield "empty-stream", b"\x04\x00" + MAGIC + END
    yield "raw", b"\x04\x01" + encode_frames([raw])
    yield "zstd", b"\x05\x02" + encode_frames([zst])
    yield "zstd-dict", b"\x04\x03" + encode_frames([dct])
    yield "zstd-dict-two-bases", b"\x04\x04" + encode_frames([two])
    yield "mixed", b"\x05\x05" + encode_frames([raw, zst, dct, empty, raw])
    yield "bomb", b"\x04\x06" + encode_frames([Frame(bytes(32), codec.Codec.ZSTD, None, bomb)])
    yield "zstd-two-frames", b"\x04\x07" + encode_frames([zst._replace(payload=multi)])
    yield "zstd-corrupt", b"\x04\x08" + encode_frames([zst._replace(payload=packed[:-3])])
    yield "over-limit", b"\x02\x09" + encode_frames([zst])
    yield "truncated", b"\x04\x0a" + (MAGIC + encode_frame(raw))[:-2]
    yield "after-end", b"\x04\x0b" + encode_frames([raw]) + b"\x01"
    yield "bad-magic", b"\x04\x0c" + b"LSCF2\n" + END
    yield "bad-tag", b"\x04\x0d" + MAGIC + b"\x02" + END
    yield "bad-codec", b"\x04\x0e" + MAGIC + b"\x01" + bytes(32) + b"\x07" + bytes(4) + END
    yield "no-base", b"\x04\x0f" + MAGIC + b"\x01" + bytes(32) + b"\x02\x00" + bytes(4) + END
    yield "huge-length", b"\x05\x10" + MAGIC + b"\x01" + bytes(32) + b"\x00\xff\xff\xff\xff"


def _jid(path: str) -> int:
    row = T.VIEW.current(path)
    assert row is not None, path
    return row.jid


def _chunk(data: bytes, base: list[bytes] | None = None) -> dict[str, Any]:
    c = inline.encode(data, [chunk_id(b) for b in base or []], b"".join(base or []) or None)
    out: dict[str, Any] = {"data": c.data, "codec": c.codec}
    if c.base is not None:
        out["base"] = c.base
    return out


def _op(path: str, kind: str, **kw: Any) -> dict[str, Any]:
    return {"path": path, "kind": kind, **kw}


def _commits() -> Iterator[tuple[str, bytes]]:
    C, B = T.C, T.CHUNK_BYTES
    new = b"a new line\n" * 3
    edited = B[5].replace(b"chunk", b"CHUNK")

    def body(*ops: dict[str, Any], **extra: Any) -> bytes:
        return json.dumps({"ops": list(ops), **extra}).encode()

    def ids(*cs: bytes) -> dict[str, str]:
        return {"ids": pack_ids(list(cs))}

    top = _jid("top.txt")
    top_size = 2 * len(B[5]) + len(B[2])
    yield "new-file", body(_op("n.txt", "file", size=len(B[2] + B[3]), content=ids(C[2], C[3])))
    yield (
        "new-file-inline",
        body(
            _op("a/new.txt", "file", size=len(new), content=ids(chunk_id(new))),
            chunks=[_chunk(new)],
        ),
    )
    delta = {"base": top, "edits": [[2, 1, pack_ids([chunk_id(edited)])]]}
    yield (
        "edit-delta-inline",
        body(
            _op("top.txt", "file", base_jid=top, size=top_size + len(edited) - len(B[5]))
            | {"content": delta},
            chunks=[_chunk(edited, [B[5]]), {"data": b64encode(B[4]), "codec": "raw"}],
        ),
    )
    yield "touch", body(_op("top.txt", "file", base_jid=top, size=top_size, mtime_ns=5))
    yield (
        "mkdir-link-rm",
        body(
            _op("new", "directory"),
            _op("new/l", "symlink", target="../top.txt"),
            _op("empty", "tombstone", base_jid=_jid("empty")),
        ),
    )
    yield (
        "move-file",
        body(
            _op("Docs/x.txt", "file", move_from="a/x.txt", move_base=_jid("a/x.txt"))
            | {"size": len(B[2] + B[3])}
        ),
    )
    yield "move-folder", body(_op("Notes", "directory", move_from="Docs", move_base=_jid("Docs")))
    yield "move-deep-folder", body(_op("M", "directory", move_from="L", move_base=_jid("L")))
    yield "case-twin", body(_op("TOP.txt", "file", size=len(B[2]), content=ids(C[2])))
    yield "stale-base", body(_op("top.txt", "tombstone", base_jid=1))
    yield "missing-chunk", body(_op("m.bin", "file", size=3, content=ids(chunk_id(b"abc"))))
    yield "journal-since", body(_op("d2", "directory"), journal="0123456789abcdef", since="x")
    empty_base = _chunk(b"abc" * 30) | {"codec": "zstd-dict", "base": pack_ids([C[0]])}
    yield "inline-empty-base", body(chunks=[empty_base])
    unknown = {"data": "AAAA", "codec": "zstd-dict", "base": pack_ids([chunk_id(b"?")])}
    yield "inline-unknown-base", body(chunks=[unknown])
    yield "not-nfc", body(_op("e\u0301.txt", "directory"))


def _paths() -> Iterator[tuple[str, bytes]]:
    sep = "\x00\x00"
    yield "simple", b"a/b/c.md"
    yield "unicode", "émoji 🎉/Straße/ß.txt".encode()
    yield "nfd", "e\u0301t\u00e9.md".encode()
    yield "hangul-jamo", "\u1112\u1161\u11ab/\ud55c".encode("utf-8", "surrogatepass")
    yield "dots", b"a/../b/./c/..x"
    yield "absolute", b"/etc/passwd"
    yield "empty-segment", b"a//b/"
    yield "backslash", b"a\\b"
    yield "control", b"a\x00b\x7f\n"
    yield "bad-utf8", b"a/\xff\xfe/b"
    yield "long-segment", b"a" * 256
    yield "long-path", b"/".join([b"x" * 250] * 16) + b"/y"
    yield "marks", ("a" + "\u0301\u0316" * 20).encode()
    yield "turkish", "İi/ıI".encode()
    yield "pair", f"a/b/c{sep}a/b{sep}x/y".encode()
    yield "pair-unrelated", f"a/b{sep}ab{sep}c".encode()
    yield "pair-nfd", f"e\u0301/x{sep}\u00e9{sep}z".encode()
    deep = "p/" + "/".join(["p" * 250] * 16)
    yield "pair-long", f"{deep}{sep}p{sep}{'q' * 40}".encode()


SEEDS = {"frames": _frames, "commit": _commits, "paths": _paths}


def main() -> int:
    for target, make in SEEDS.items():
        folder = CORPUS / target
        folder.mkdir(parents=True, exist_ok=True)
        for old in folder.glob("seed-*"):
            old.unlink()
        for name, data in make():
            (folder / f"seed-{name}").write_bytes(data)
            T.TARGETS[target](data)  # every seed runs clean
    return 0


if __name__ == "__main__":
    sys.exit(main())
