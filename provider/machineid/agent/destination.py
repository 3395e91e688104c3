"""Writing an identity to a destination directory, in the files OpenSSH and TLS clients use directly.

Every file is written atomically (temp file + rename), so a reader (ssh, a CI job) never sees half a file, and
the private keys are 0600. `sshcacerts` and `known_hosts` hold the SSH host CA as `@cert-authority` lines.
Files: key, key.pub, key-cert.pub and sshcert (the same SSH certificate; OpenSSH looks
for key-cert.pub beside the key), tlscert, tlscacerts, sshcacerts, identity, known_hosts, ssh_config.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization

from machineid.api import certs
from machineid.api.identity import Identity, write_private
from machineid.model.validators import DNS_NAME, SAFE_PATH

FILES = ("key", "key.pub", "key-cert.pub", "sshcert", "tlscert", "tlscacerts", "sshcacerts", "identity",
         "known_hosts", "ssh_config")


@dataclass
class NodeEntry:
    name: str
    host: str
    port: int


def _quote(path: Path) -> str:
    return f'"{path}"'


_SAFE = re.compile(r"[A-Za-z0-9._:\[\]-]+")


def ssh_config(dest: Path, cluster: str, nodes: list[NodeEntry]) -> str:
    lines = [f"# Written by machineid for cluster {cluster}; rewritten at every renewal.", ""]
    for node in nodes:
        if not (_SAFE.fullmatch(node.name) and _SAFE.fullmatch(node.host) and _SAFE.fullmatch(cluster)):
            continue  # never let a stored value write its own ssh_config directives
        lines += [
            f"Host {node.name}.{cluster}",
            f"    HostName {node.host}",
            f"    Port {node.port}",
            f"    HostKeyAlias {node.name}.{cluster}",
            "",
        ]
    lines += [
        f"Host *.{cluster} {cluster}",
        f"    UserKnownHostsFile {_quote(dest / 'known_hosts')}",
        f"    IdentityFile {_quote(dest / 'key')}",
        f"    CertificateFile {_quote(dest / 'key-cert.pub')}",
        "    IdentitiesOnly yes",
        "    StrictHostKeyChecking yes",
        "    GlobalKnownHostsFile /dev/null",
        "",
    ]
    return "\n".join(lines)


def write(dest: Path, ident: Identity, nodes: list[NodeEntry]) -> None:
    info = ident.info
    cluster = info.cluster
    # The cluster's name and the destination's path are written into ssh_config and known_hosts: a newline or a
    # quote there would let whoever chose them add directives (a ProxyCommand runs a program).
    bad = DNS_NAME.check(cluster)
    if bad:
        raise ValueError(f"the cluster's name is not usable in ssh_config: {bad}")
    bad = SAFE_PATH.check(str(dest))
    if bad:
        raise ValueError(f"destination directory: {bad}")
    dest.mkdir(parents=True, exist_ok=True)
    key = certs.load_private_key(ident.key_pem)
    # "EC PRIVATE KEY" (traditional) is what both OpenSSH and OpenSSL-based TLS clients read.
    key_text = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                                 serialization.NoEncryption()).decode()
    pub_line = certs.ssh_public_key_line(key.public_key(), info.user) + "\n"
    host_cas = "".join(f"@cert-authority *.{cluster},{cluster} {k.strip()} type=host\n"
                       for k in ident.ssh_host_ca_keys)
    files = {
        "key": (key_text, 0o600),
        "key.pub": (pub_line, 0o644),
        "key-cert.pub": (ident.ssh_cert.strip() + "\n", 0o644),
        "sshcert": (ident.ssh_cert.strip() + "\n", 0o644),
        "tlscert": (ident.tls_cert, 0o644),
        "tlscacerts": ("".join(ident.tls_ca_certs), 0o644),
        "sshcacerts": (host_cas, 0o644),
        "identity": (ident.dumps(), 0o600),
        "known_hosts": (host_cas, 0o644),
        "ssh_config": (ssh_config(dest, cluster, nodes), 0o644),
    }
    # Certificates before the key would pair a new certificate with the old key; write the key first.
    for name in FILES:
        text, mode = files[name]
        write_private(dest / name, text, mode)
