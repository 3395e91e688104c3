"""The node's sshd as `node setup` sees it: the drop-in it writes, whether the main sshd_config includes it, what
sshd makes of the result (`sshd -t`, `sshd -T`), and the reload.

sshd takes the first value it reads for most keywords, and a HostKey anywhere replaces its default host keys; so
the drop-in keeps the distribution's default keys when nothing else names one (people's known_hosts keep working),
and `sshd -T` is asked which values sshd really uses, rather than trusting that the drop-in wins.
"""

from __future__ import annotations

import fnmatch
import glob
import logging
import os
import re
import shutil
import signal
import subprocess
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from machineid.node.layout import Layout

log = logging.getLogger("machineid.node")

DEFAULT_HOST_KEYS = ("ssh_host_ecdsa_key", "ssh_host_ed25519_key", "ssh_host_rsa_key")
HEADER = "# Written by `machineid node setup`: run it again rather than editing this file.\n"


def sshd_binary() -> str:
    return shutil.which("sshd") or "/usr/sbin/sshd"


def dropin_lines(layout: Layout, run_as: str, default_host_keys: list[Path]) -> list[str]:
    """What sshd needs to trust the cluster and enforce node labels (never `StrictModes no`)."""
    return [
        *(f"HostKey {k}" for k in default_host_keys),  # first: plain ssh-ed25519 clients keep seeing the same key
        f"HostKey {layout.host_key}",
        f"HostCertificate {layout.host_cert}",
        f"TrustedUserCAKeys {layout.user_ca}",
        f"RevokedKeys {layout.revoked_keys}",
        f"AuthorizedPrincipalsCommand {layout.principals_helper} %u %t %k",
        f"AuthorizedPrincipalsCommandUser {run_as}",
    ]


@dataclass(frozen=True)
class Directive:
    keyword: str  # lower case
    args: list[str]
    in_match: bool


def directives(text: str) -> list[Directive]:
    out = []
    in_match = False
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, *rest = re.split(r"\s*=\s*|\s+", line, maxsplit=1)
        key = key.lower()
        if key == "match":
            in_match = True
        out.append(Directive(key, rest[0].split() if rest else [], in_match))
    return out


def _include_pattern(pattern: str, layout: Layout) -> str:
    # sshd reads a relative Include under its own directory (/etc/ssh, here under the node's root)
    return pattern if pattern.startswith("/") else str(layout.at("etc/ssh") / pattern)


def _matches(path: Path, pattern: str) -> bool:
    """glob(3) as sshd uses it for Include: per path component, `*` never crossing `/`."""
    parts, pats = PurePosixPath(path).parts, PurePosixPath(pattern).parts
    return len(parts) == len(pats) and all(fnmatch.fnmatchcase(a, b) for a, b in zip(parts, pats, strict=True))


def includes_dropin(main_config: str, layout: Layout) -> bool:
    """Whether sshd reads the drop-in for every connection: an Include outside any Match block that names it."""
    return any(d.keyword == "include" and not d.in_match and
               any(_matches(layout.sshd_dropin, _include_pattern(a, layout)) for a in d.args)
               for d in directives(main_config))


def names_a_host_key(main_config: str, layout: Layout) -> bool:
    """Whether the main config, or a file it includes other than the drop-in, names a HostKey (then sshd's default
    keys are not loaded anyway, and the drop-in adds to what is named)."""
    texts = [main_config]
    for d in directives(main_config):
        if d.keyword == "include":
            for pattern in d.args:
                for name in sorted(glob.glob(_include_pattern(pattern, layout))):
                    if Path(name) != layout.sshd_dropin and os.path.isfile(name):
                        texts.append(Path(name).read_text(errors="replace"))
    return any(d.keyword == "hostkey" for text in texts for d in directives(text))


def default_host_keys(main_config: str, layout: Layout) -> list[Path]:
    if names_a_host_key(main_config, layout):
        return []
    return [p for p in (layout.at("etc/ssh") / name for name in DEFAULT_HOST_KEYS) if p.is_file()]


def check_config(config: Path) -> str:
    """`sshd -t`: empty when sshd accepts the configuration, otherwise what it says."""
    proc = subprocess.run([sshd_binary(), "-t", "-f", str(config)], capture_output=True, text=True, timeout=60)
    return "" if proc.returncode == 0 else (proc.stderr + proc.stdout).strip() or f"exit {proc.returncode}"


def effective(config: Path) -> dict[str, list[str]]:
    """`sshd -T`: every setting sshd uses, keyword (lower case) -> values, as sshd resolved them."""
    proc = subprocess.run([sshd_binary(), "-T", "-f", str(config)], capture_output=True, text=True, timeout=60)
    out: dict[str, list[str]] = {}
    for line in proc.stdout.splitlines():
        key, _, value = line.partition(" ")
        out.setdefault(key, []).append(value)
    return out


def overridden(config: Path, lines: list[str]) -> list[str]:
    """The drop-in's settings that sshd takes from elsewhere (an earlier line wins), as `sshd -T` shows them."""
    got = effective(config)
    wrong = []
    for line in lines:
        key, _, value = line.partition(" ")
        values = got.get(key.lower(), [])
        multi = key in ("HostKey", "HostCertificate")
        if (value not in values) if multi else (values != [value]):
            wrong.append(f"{key}: sshd uses {' '.join(values) or 'nothing'} instead of {value}")
    return wrong


def reload(pid_file: Path) -> str:
    """SIGHUP to the sshd named in pid_file (sshd re-executes itself with the new settings; open sessions stay).
    Returns what happened, for the operator."""
    try:
        pid = int(pid_file.read_text().split()[0])
        if pid <= 1:
            raise ValueError(f"pid {pid}")
        comm = Path(f"/proc/{pid}/comm").read_text().strip()
    except (OSError, ValueError, IndexError):
        return f"sshd is not running (no live pid in {pid_file}): start it and it uses these settings"
    if not comm.startswith("sshd"):
        return f"{pid_file} names pid {pid}, which is {comm}, not sshd: not signalled; reload sshd yourself"
    os.kill(pid, signal.SIGHUP)
    return f"reloaded sshd (SIGHUP to pid {pid})"


def reload_for_new_certificate(pid_file: str) -> bool:
    """The node agent's reload after its host certificate changed: never an error (the new certificate is in place
    for sshd's next start), a warning when nothing was signalled."""
    if not pid_file:
        log.warning("the host certificate changed and sshd_pid_file is empty: sshd goes on presenting the old one "
                    "until it is reloaded (systemctl reload ssh)")
        return False
    message = reload(Path(pid_file))
    signalled = message.startswith("reloaded")
    (log.info if signalled else log.warning)("host certificate renewed: %s", message)
    return signalled
