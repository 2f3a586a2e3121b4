"""Content identifiers: parsing the CIDs the platform stores, and checking blocks against them.

Owns the multiformats arithmetic ``server/jobs/ipfs.py`` needs and nothing else:
CIDv0 (``Qm…``, base58btc) and CIDv1 in multibase base32 (``b…``); the sha2-256
check of a block against its CID; and the decoding of a dag-pb block of a
UnixFS file into its bytes and its children's CIDs. No network here.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterable
from dataclasses import dataclass

RAW_CODEC = 0x55
DAG_PB_CODEC = 0x70
SHA2_256 = 0x12
UNIXFS_RAW, UNIXFS_FILE = 0, 2  # the UnixFS node types that hold file bytes

_B58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
_B58_INDEX = {c: i for i, c in enumerate(_B58)}


@dataclass(frozen=True)
class Cid:
    text: str  # the CID alone, as the gateway is asked for it
    version: int
    codec: int
    hash_code: int
    digest: bytes

    @property
    def verifiable(self) -> bool:
        """A raw or dag-pb sha2-256 CID: its block's sha256 must be the digest (others are trusted)."""
        return self.codec in (RAW_CODEC, DAG_PB_CODEC) and self.hash_code == SHA2_256

    def as_v1(self) -> str:
        """The CIDv1 text (base32) of the same block: how a link to a child block is asked for."""
        data = b"\x01" + _uvarint(self.codec) + _uvarint(self.hash_code) + _uvarint(len(self.digest)) + self.digest
        return "b" + base64.b32encode(data).decode().lower().rstrip("=")


def _uvarint(value: int) -> bytes:
    out = bytearray()
    while True:
        out.append((value & 0x7F) | (0x80 if value > 0x7F else 0))
        value >>= 7
        if not value:
            return bytes(out)


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while pos < len(data) and shift < 63:
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7
    raise ValueError("bad varint")


def _b58decode(text: str) -> bytes:
    number = 0
    for char in text:
        number = number * 58 + _B58_INDEX[char]  # KeyError: not base58
    body = number.to_bytes((number.bit_length() + 7) // 8, "big") if number else b""
    return b"\0" * (len(text) - len(text.lstrip("1"))) + body


def _multihash(data: bytes, pos: int) -> tuple[int, bytes]:
    code, pos = _varint(data, pos)
    length, pos = _varint(data, pos)
    digest = data[pos:]
    if len(digest) != length or (code == SHA2_256 and length != 32):
        raise ValueError("bad multihash length")
    return code, digest


def parse_cid(value: str) -> Cid | None:
    """The CID in a record's field, or None when the field is not a CID."""
    text = value
    for prefix in ("ipfs://", "/ipfs/"):
        if text.startswith(prefix):
            text = text[len(prefix) :].rstrip("/")
            break
    if not text.isascii() or not text.isalnum() or len(text) > 200:
        return None
    try:
        if len(text) == 46 and text.startswith("Qm"):
            data = _b58decode(text)
            if data[:2] != b"\x12\x20":
                return None
            code, digest = _multihash(data, 0)
            return Cid(text, 0, DAG_PB_CODEC, code, digest)
        if text.startswith("b") and text == text.lower():
            body = text[1:].upper()
            data = base64.b32decode(body + "=" * (-len(body) % 8))
            version, pos = _varint(data, 0)
            if version != 1:
                return None
            codec, pos = _varint(data, pos)
            code, digest = _multihash(data, pos)
            return Cid(text, 1, codec, code, digest)
    except (ValueError, KeyError):  # binascii.Error is a ValueError
        return None
    return None


def verify(cid: Cid, block: bytes) -> bool:
    """True unless the CID says what its block hashes to and this block does not."""
    return not cid.verifiable or hashlib.sha256(block).digest() == cid.digest


def _fields(data: bytes) -> Iterable[tuple[int, int, int | bytes]]:
    """(field number, wire type, value) of each field of a protobuf message; ValueError when malformed."""
    pos = 0
    while pos < len(data):
        key, pos = _varint(data, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(data, pos)
            yield number, wire, value
        elif wire == 2:
            size, pos = _varint(data, pos)
            if pos + size > len(data):
                raise ValueError("truncated field")
            yield number, wire, data[pos : pos + size]
            pos += size
        elif wire in (1, 5):
            pos += 8 if wire == 1 else 4
        else:
            raise ValueError(f"wire type {wire}")


def child_cid(raw: bytes) -> Cid:
    """A link's CID, as dag-pb stores it (binary CIDv0: a bare multihash, or CIDv1)."""
    if raw[:2] == b"\x12\x20":
        code, digest = _multihash(raw, 0)
        return Cid("", 0, DAG_PB_CODEC, code, digest)
    version, pos = _varint(raw, 0)
    codec, pos = _varint(raw, pos)
    code, digest = _multihash(raw, pos)
    if version != 1:
        raise ValueError("CID version")
    return Cid("", 1, codec, code, digest)


def unixfs_file(block: bytes) -> tuple[bytes, list[Cid], int | None]:
    """A dag-pb block of a UnixFS file: (its own data, its children in order, the file size if given).

    ValueError when the block is malformed or not a file (a directory, a symlink...).
    """
    data: bytes | None = None
    links: list[Cid] = []
    for number, wire, value in _fields(block):
        if number == 1 and wire == 2:
            data = bytes(value)
        elif number == 2 and wire == 2:
            hashes = [v for n, w, v in _fields(value) if n == 1 and w == 2]
            if len(hashes) != 1:
                raise ValueError("a link without a hash")
            links.append(child_cid(hashes[0]))
    if data is None:
        raise ValueError("no UnixFS data")
    kind, content, size = None, b"", None
    for number, wire, value in _fields(data):
        if number == 1 and wire == 0:
            kind = value
        elif number == 2 and wire == 2:
            content = bytes(value)
        elif number == 3 and wire == 0:
            size = value
    if kind not in (UNIXFS_RAW, UNIXFS_FILE):
        raise ValueError(f"UnixFS type {kind} is not a file")
    return content, links, size
