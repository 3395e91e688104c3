"""Writing an identity to a destination directory, in the files OpenSSH and TLS clients use directly.

Every file is written atomically (temp file + rename), so a reader (ssh, a CI job) never sees half a file, and
the private keys are 0600. `sshcacerts` and `known_hosts` hold the SSH host CA as `@cert-authority` lines.
Files: key, key.pub, key-cert.pub and sshcert (the same SSH certificate; OpenSSH looks
for key-cert.pub beside the key), tlscert, tlscacerts, sshcacerts, identity, known_hosts, ssh_config.
`insecurities` says why a directory is not safe to write them to (the agent asks before it contacts the cluster).
"""

from __future__ import annotations

import os
import pwd
import re
import stat
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


def _user_name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def _user(uid: int) -> str:
    return f"{_user_name(uid)} (uid {uid})"


def insecurities(dest: Path) -> list[str]:
    """Why a destination is not safe to write certificates to, each with its fix; empty when it is.

    Whoever can replace the directory, or a directory above it, can swap in certificates of their own or point a
    symlink at a place of their choosing, and read the private key written there. So: no symlink anywhere on the
    path; nothing on the path writable by other users (a parent with the sticky bit, like /tmp, is fine: others
    cannot rename what they do not own in it); the directory owned by the agent's user or root. Only what exists
    is checked (the agent creates the rest, as its own user).
    """
    path = dest.absolute()
    euid = os.geteuid()
    out: list[str] = []
    for i in range(len(path.parts)):
        current = Path(*path.parts[: i + 1])
        last = i == len(path.parts) - 1
        try:
            st = os.lstat(current)
        except OSError:
            break  # missing (created later) or unreadable (the agent's usability check reports it)
        if stat.S_ISLNK(st.st_mode):
            out.append(f"{current} is a symlink (to {os.readlink(current)}): whoever can change it decides where the "
                       f"certificates go; use the real path, {os.path.realpath(dest)}")
            break  # what lies past it is somewhere else
        if not stat.S_ISDIR(st.st_mode):
            break  # not a directory: the usability check reports it
        if last and st.st_mode & stat.S_IWOTH:
            out.append(f"{current} is writable by every user (mode {stat.S_IMODE(st.st_mode):o}): any of them can "
                       f"replace the certificates; chmod o-w {current}")
        elif not last and st.st_mode & stat.S_IWOTH and not st.st_mode & stat.S_ISVTX:
            out.append(f"{current}, above the destination, is writable by every user without the sticky bit "
                       f"(mode {stat.S_IMODE(st.st_mode):o}): any of them can put a directory of their own in its "
                       f"place; chmod o-w {current} (or chmod +t {current})")
        if last and st.st_uid not in (euid, 0):
            out.append(f"{current} is owned by {_user(st.st_uid)}, not by the agent's user {_user(euid)} or root: "
                       f"its owner can replace the certificates; chown {_user_name(euid)} {current}")
    return out
