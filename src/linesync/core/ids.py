"""Chunk ids: BLAKE3-256 of the chunk bytes, and the packed form of id lists.

A chunk id is 32 raw bytes. On the wire a single id is 64 lowercase hex
characters; a list of ids is "packed": the raw ids concatenated and encoded as
unpadded base64url (43 characters per id instead of 64).
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Iterable, Sequence

import blake3

ID_SIZE = 32

ChunkId = bytes


def chunk_id(data: bytes | memoryview) -> ChunkId:
    """The id of a chunk: the BLAKE3-256 digest of its bytes."""
    return blake3.blake3(data).digest()


def file_hash(pieces: Iterable[bytes | memoryview]) -> bytes:
    """BLAKE3-256 of the bytes of a whole file given in pieces (the client's
    proof that a file read again holds the bytes it read before)."""
    h = blake3.blake3()
    for piece in pieces:
        h.update(piece)
    return h.digest()


def to_hex(cid: ChunkId) -> str:
    return cid.hex()


def from_hex(text: str) -> ChunkId:
    """Parse a 64-character lowercase hex id; ValueError on anything else."""
    if len(text) != 2 * ID_SIZE:
        raise ValueError("chunk id must be 64 hex characters")
    try:
        raw = bytes.fromhex(text)
    except ValueError as exc:
        raise ValueError("chunk id must be hex") from exc
    if raw.hex() != text:
        raise ValueError("chunk id must be lowercase hex")
    return raw


_B64URL = re.compile(r"[A-Za-z0-9_-]*")


def b64encode(data: bytes) -> str:
    """Unpadded base64url, the encoding of every binary value in JSON bodies."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64decode(text: str) -> bytes:
    """Strict inverse of :func:`b64encode`; ValueError on anything else."""
    if not _B64URL.fullmatch(text) or len(text) % 4 == 1:
        raise ValueError("not unpadded base64url")
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError) as exc:
        raise ValueError("not unpadded base64url") from exc
    if b64encode(raw) != text:  # unused low bits set: one value, one spelling
        raise ValueError("not canonical base64url")
    return raw


def pack_ids(ids: Iterable[ChunkId]) -> str:
    """Encode ids as unpadded base64url of their concatenation."""
    return b64encode(b"".join(ids))


def split_ids(raw: bytes) -> list[ChunkId]:
    if len(raw) % ID_SIZE:
        raise ValueError("packed id list length is not a multiple of 32 bytes")
    return [raw[i : i + ID_SIZE] for i in range(0, len(raw), ID_SIZE)]


def unpack_ids(text: str) -> list[ChunkId]:
    """Decode a packed id list; ValueError on malformed input."""
    try:
        raw = b64decode(text)
    except ValueError as exc:
        raise ValueError("packed id list is not base64url") from exc
    return split_ids(raw)


def join_ids(ids: Sequence[ChunkId]) -> bytes:
    return b"".join(ids)
