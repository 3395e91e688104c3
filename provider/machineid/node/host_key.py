"""The node's SSH host key and certificate: the key is made once (Ed25519, root-only) and kept, so the node's
identity to bots never changes; the certificate is renewed at a third of its lifetime left, or when the names the
cluster certifies differ from those in it, or when it is not for this key."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from machineid.api import certs
from machineid.api.identity import write_private
from machineid.node.layout import Layout

RENEW_AT_LEFT = 1 / 3  # renew when this share of the lifetime is left


def ensure(layout: Layout) -> str:
    """The host key's public line; the key is generated the first time (0600) with its .pub beside it (0644)."""
    path = layout.written(layout.host_key)
    try:
        key = serialization.load_ssh_private_key(path.read_bytes(), password=None)
    except FileNotFoundError:
        key = ed25519.Ed25519PrivateKey.generate()
        pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
                                serialization.NoEncryption()).decode()
        write_private(path, pem, 0o600)
    except (ValueError, OSError) as e:
        raise ValueError(f"the host key {path} cannot be read ({e}); move it away to have a new one made") from None
    if not isinstance(key, ed25519.Ed25519PrivateKey):
        raise ValueError(f"the host key {path} is not an Ed25519 key; move it away to have a new one made")
    line = certs.ssh_public_key_line(key.public_key())
    pub = path.with_name(path.name + ".pub")
    if not pub.exists() or pub.read_text().strip() != line:
        write_private(pub, line + "\n", 0o644)
    return line


@dataclass(frozen=True)
class HostCert:
    text: str
    key_line: str  # the certified key, as an OpenSSH public line
    principals: list[str]
    valid_after: datetime
    valid_before: datetime

    def due(self, now: datetime) -> bool:
        life = self.valid_before - self.valid_after
        return self.valid_before - now <= life * RENEW_AT_LEFT


def current(layout: Layout) -> HostCert | None:
    """The host certificate on disk, or None when there is none (or it cannot be read: then a new one is due)."""
    path = layout.written(layout.host_cert)
    try:
        text = path.read_text().strip()
        cert = serialization.load_ssh_public_identity(text.encode())
    except (OSError, ValueError):
        return None
    if not isinstance(cert, serialization.SSHCertificate):
        return None
    key = cert.public_key()
    if not isinstance(key, ed25519.Ed25519PublicKey):
        return None
    return HostCert(text, certs.ssh_public_key_line(key), [p.decode() for p in cert.valid_principals],
                    datetime.fromtimestamp(cert.valid_after, UTC), datetime.fromtimestamp(cert.valid_before, UTC))


def wanted(cert: HostCert | None, key_line: str, principals: list[str] | None, now: datetime) -> bool:
    """Whether to ask for a new certificate: none, another key's, a third of its life left, or other names than
    the cluster certifies now (`principals`, from the last answer; None before the first)."""
    if cert is None or cert.key_line != key_line or cert.due(now):
        return True
    return principals is not None and cert.principals != principals


def write(layout: Layout, text: str) -> bool:
    """Write the certificate (0644, atomically); whether it changed (sshd is reloaded only then)."""
    path: Path = layout.written(layout.host_cert)
    text = text.strip() + "\n"
    try:
        if path.read_text() == text:
            return False
    except OSError:
        pass
    write_private(path, text, 0o644)
    return True
