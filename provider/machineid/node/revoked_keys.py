"""sshd's RevokedKeys on the node (Layout.revoked_keys): the cluster's OpenSSH key revocation list, written whole
and atomically (root-owned, 0644) when the cluster sends a new version. sshd reads the file at every login, so a
new list applies at once, without a reload.

The version the node holds is the one in the list's own header (OpenSSH PROTOCOL.krl: magic, format version, then
the list's version), so the file itself says what the node enforces: an empty file (what `node setup` writes) or
one that is not a KRL is version 0, and the next sync fetches the list."""

from __future__ import annotations

import os
import struct
import tempfile

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
    path = layout.written(layout.revoked_keys)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.fchmod(fd, 0o644)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
