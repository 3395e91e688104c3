"""The identity file: one private key and everything issued for it, in one text file.

Layout (Teleport's identity file): the PEM private key, the OpenSSH certificate line, the X.509 client
certificate, the X.509 CA certificates, then `@cert-authority` lines for the SSH host CA. `machineid ctl
--identity FILE` and the agent's destination both use it; it is written 0600.
"""

from __future__ import annotations

import os
import re
import tempfile
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from cryptography import x509

from machineid.api import certs

_KEY = re.compile(r"-----BEGIN (?:EC |)PRIVATE KEY-----.+?-----END (?:EC |)PRIVATE KEY-----", re.S)


@dataclass
class Identity:
    key_pem: str
    tls_cert: str
    tls_ca_certs: list[str]
    ssh_cert: str = ""
    ssh_host_ca_keys: list[str] = field(default_factory=list)

    @property
    def cert(self) -> x509.Certificate:
        return x509.load_pem_x509_certificate(self.tls_cert.encode())

    @property
    def info(self) -> certs.CertIdentity:
        return certs.CertIdentity.from_cert(self.cert)

    @property
    def expires(self) -> datetime:
        return self.cert.not_valid_after_utc

    def dumps(self) -> str:
        info = self.info
        parts = [f"# machineid identity for {info.user} of cluster {info.cluster}\n", self.key_pem.strip() + "\n"]
        if self.ssh_cert:
            parts.append(self.ssh_cert.strip() + "\n")
        parts.append(self.tls_cert.strip() + "\n")
        parts.extend(c.strip() + "\n" for c in self.tls_ca_certs)
        for key in self.ssh_host_ca_keys:
            parts.append(f"@cert-authority *.{info.cluster},{info.cluster} {key.strip()} type=host\n")
        return "".join(parts)

    @classmethod
    def loads(cls, text: str, source: str = "identity") -> Identity:
        key = _KEY.search(text)
        pems = certs.split_pem_certs(text)
        if not key or not pems:
            raise ValueError(f"{source}: not a machineid identity file (needs a private key and a certificate)")
        ssh_cert = next((ln for ln in text.splitlines() if "-cert-v01@openssh.com " in ln
                         and not ln.startswith("@")), "")
        host_cas = [" ".join(ln.split()[2:4]) for ln in text.splitlines() if ln.startswith("@cert-authority ")]
        return cls(key_pem=key.group(0) + "\n", tls_cert=pems[0], tls_ca_certs=pems[1:], ssh_cert=ssh_cert,
                   ssh_host_ca_keys=host_cas)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Identity:
        try:
            text = Path(path).read_text()
        except OSError as e:
            raise ValueError(f"cannot read identity file {path}: {e.strerror}") from e
        return cls.loads(text, str(path))

    def save(self, path: str | os.PathLike[str]) -> None:
        write_private(Path(path), self.dumps())


def write_private(path: Path, text: str, mode: int = 0o600) -> None:
    """Atomically (temp file + rename) write text readable only by the owner, so no reader sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
