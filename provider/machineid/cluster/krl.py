"""OpenSSH key revocation lists (KRL, OpenSSH's PROTOCOL.krl): what nodes give sshd as `RevokedKeys`, so that a
certificate stops logging in when the cluster revokes it, not when it expires.

Only the certificate section is written: revoked serial numbers and key IDs, both scoped to one CA key. The list is
unsigned (sshd does not check KRL signatures); it reaches the node over the node's authenticated connection and is
written root-owned."""

from __future__ import annotations

import base64
import struct
from collections.abc import Iterable

MAGIC = b"SSHKRL\n\x00"
FORMAT_VERSION = 1
SECTION_CERTIFICATES = 1
CERT_SERIAL_LIST = 0x20
CERT_KEY_ID = 0x23
MAX_SERIAL = 2**64 - 1


def _string(data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + data


def ca_blob(public_line: str) -> bytes:
    """The key blob of an OpenSSH public key line ("ssh-ed25519 AAAA... comment"), as KRLs name a CA."""
    parts = public_line.split()
    if len(parts) < 2:
        raise ValueError("not an OpenSSH public key line")
    return base64.b64decode(parts[1], validate=True)


def encode(ca_public_line: str, serials: Iterable[int] = (), key_ids: Iterable[str] = (), *, version: int,
           generated: int, comment: str = "") -> bytes:
    """A KRL revoking, among the certificates `ca_public_line` signed, those with these serials or key IDs.

    Serial 0 cannot be revoked by serial (OpenSSH refuses it in a list) and is skipped; duplicates are dropped and
    both lists sorted, so the same revocations always give the same bytes for a version."""
    header = MAGIC + struct.pack(">IQQQ", FORMAT_VERSION, version, generated, 0) + _string(b"") + \
        _string(comment.encode())
    numbers = sorted({s for s in serials if 0 < s <= MAX_SERIAL})
    ids = sorted({k for k in key_ids if k})
    if not numbers and not ids:
        return header
    body = _string(ca_blob(ca_public_line)) + _string(b"")
    if numbers:
        body += bytes([CERT_SERIAL_LIST]) + _string(b"".join(struct.pack(">Q", s) for s in numbers))
    if ids:
        body += bytes([CERT_KEY_ID]) + _string(b"".join(_string(k.encode()) for k in ids))
    return header + bytes([SECTION_CERTIFICATES]) + _string(body)
