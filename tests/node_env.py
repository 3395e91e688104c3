"""A node for tests: a root-owned directory chain sshd accepts (not under /tmp, which others may write), the node
agent's config in it, and a real sshd on a loopback port that uses the files the agent keeps (host key and
certificate, user CA). The machine's own /etc/ssh is never touched.

The test sshd maps a login to the certificate principals with an AuthorizedPrincipalsFile holding both the plain
login and `machineid:LOGIN` (the principal format issue 19 moves to), so these tests do not depend on the principals
helper, which is tested on its own."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from machineid.node import config as node_config
from machineid.node.layout import PRINCIPAL_PREFIX, Layout
from machineid.quickstart import free_port

SSHD = shutil.which("sshd") or "/usr/sbin/sshd"
TEST_ROOTS = Path("/var/lib/machineid-tests")


@contextmanager
def node_root() -> Iterator[Path]:
    """A fresh root-owned 0755 directory under /var/lib (every directory up to / root-owned and not writable by
    others, as sshd wants), removed afterwards."""
    TEST_ROOTS.mkdir(mode=0o755, exist_ok=True)
    root = Path(tempfile.mkdtemp(prefix="node-", dir=TEST_ROOTS))
    os.chmod(root, 0o755)
    try:
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


def write_config(layout: Layout, *, name: str, address: str, pin: str, join_method: str = "token", token: str = "",
                 pid_file: str = "", heartbeat_interval: str = "60s", registration_secret: str = "") -> None:
    """What `node setup` writes: the config (0600) and, for the token method, the token in a root-only file."""
    if join_method == "token" and token and "/" not in token:
        token_file = layout.etc / "join-token"
        token_file.parent.mkdir(parents=True, exist_ok=True)
        token_file.write_text(token + "\n")
        os.chmod(token_file, 0o600)
        token = str(token_file)
    cfg = node_config.NodeConfig(name=name, auth_server=address, ca_pins=[pin], join_method=join_method,
                                 token=token, heartbeat_interval=heartbeat_interval, sshd_pid_file=pid_file,
                                 registration_secret=registration_secret)
    layout.config.parent.mkdir(parents=True, exist_ok=True)
    layout.config.write_text(node_config.render(cfg))
    os.chmod(layout.config, 0o600)


@dataclass
class Sshd:
    proc: subprocess.Popen[bytes]
    port: int
    pid_file: Path
    log: Path

    def log_text(self) -> str:
        return self.log.read_text()

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def start_sshd(layout: Layout, login: str, port: int | None = None) -> Sshd:
    """sshd with the agent's host key and certificate and the user CA, on a loopback port."""
    port = port or free_port()
    principals = layout.at("etc/ssh/principals")
    principals.mkdir(parents=True, exist_ok=True)
    (principals / login).write_text(f"{login}\n{PRINCIPAL_PREFIX}{login}\n")
    run = layout.at("run")
    run.mkdir(parents=True, exist_ok=True)
    pid_file, log = run / "sshd.pid", run / "sshd.log"
    config = layout.sshd_config
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text("\n".join([
        f"Port {port}", "ListenAddress 127.0.0.1", f"HostKey {layout.host_key}",
        f"HostCertificate {layout.host_cert}", f"TrustedUserCAKeys {layout.user_ca}",
        f"AuthorizedPrincipalsFile {principals}/%u", "AuthorizedKeysFile none", "PasswordAuthentication no",
        "KbdInteractiveAuthentication no", "UsePAM no", f"PidFile {pid_file}", "LogLevel VERBOSE", "",
    ]))
    Path("/run/sshd").mkdir(parents=True, exist_ok=True)  # privilege separation directory
    with open(log, "ab") as out:
        proc = subprocess.Popen([SSHD, "-f", str(config), "-D", "-e"], stdout=out, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and proc.poll() is None:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0 and pid_file.exists():
                return Sshd(proc, port, pid_file, log)
        time.sleep(0.05)
    raise AssertionError(f"sshd did not start:\n{log.read_text()}")


def wait_for(predicate: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")
