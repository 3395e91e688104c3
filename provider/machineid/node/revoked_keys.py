"""sshd's RevokedKeys on the node (Layout.revoked_keys): the cluster's OpenSSH key revocation list, written whole
and atomically (root-owned, 0644) when the cluster sends a new version. sshd reads the file at every login, so a
new list applies at once, without a reload.

The version the node holds is the one in the list's own header (OpenSSH PROTOCOL.krl: magic, format version, then
the list's version), so the file itself says what the node enforces: an empty file (what `node setup` writes) or
one that is not a KRL is version 0, and the next sync fetches the list."""

from __future__ import annotations

import os
import struct

from machineid.node import files
from machineid.node.layout import Layout

MAGIC = b"SSHKRL\n\x00"


def held_version(layout: Layout) -> int:
    try:
        with open(layout.written(layout.revoked_keys), "rb") as f:
            head = f.read(len(MAGIC) + 12)
    except OSError:
        return 0
    if len(head) < len(MAGIC) + 12 or not head.startswith(MAGIC):
        return 0
    _format, version = struct.unpack(">IQ", head[len(MAGIC):])
    return int(version)


def write(layout: Layout, data: bytes) -> None:
    """Atomically (temp file, fsync, rename): sshd never reads half a list. Raises OSError (nothing replaced)."""
    if not data.startswith(MAGIC):
        raise ValueError("the cluster sent a revocation list that is not an OpenSSH KRL")
    # Root-owned when the agent runs as root (as a node's does), as sshd wants its files.
    files.write_atomic(layout.written(layout.revoked_keys), data, 0o644, owner_root=os.geteuid() == 0)
