"""Node roots for tests: `machineid node setup` writes everything under a root that sshd accepts (a root-owned 0755
directory chain, not under /tmp, which anyone may write), so tests never touch this machine's /etc/ssh. Each root
is removed afterwards; the sshd a test starts there runs on a free loopback port with a main sshd_config that
includes the drop-in, as a distribution's does."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from machineid.node.layout import Layout
from machineid.quickstart import free_port

TEST_ROOTS = Path("/var/lib/machineid-tests")
SSHD = shutil.which("sshd") or "/usr/sbin/sshd"


def new_root() -> Path:
    """A fresh node root: /var/lib/machineid-tests/<random> as root (0755 all the way up), else a temp dir."""
    if os.geteuid() != 0:
        return Path(tempfile.mkdtemp(prefix="machineid-node-"))
    TEST_ROOTS.mkdir(mode=0o755, exist_ok=True)
    os.chmod(TEST_ROOTS, 0o755)
    root = Path(tempfile.mkdtemp(dir=TEST_ROOTS))
    os.chmod(root, 0o755)
    return root


@contextmanager
def node_root() -> Iterator[Path]:
    root = new_root()
    try:
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


def write_main_config(root: Path, port: int, *extra: str) -> Path:
    """A distribution's sshd_config for the node, on a loopback port, including the drop-in directory."""
    layout = Layout(root)
    layout.sshd_config.parent.mkdir(parents=True, exist_ok=True)
    layout.at("run").mkdir(exist_ok=True)
    layout.sshd_config.write_text("\n".join([
        f"Include {layout.sshd_dropin_dir}/*.conf", f"Port {port}", "ListenAddress 127.0.0.1",
        "AuthorizedKeysFile none", "PasswordAuthentication no", "KbdInteractiveAuthentication no", "UsePAM no",
        f"PidFile {layout.at('run/sshd.pid')}", "LogLevel VERBOSE", *extra, ""]))
    return layout.sshd_config


def start_sshd(root: Path, port: int) -> subprocess.Popen[bytes]:
    """sshd on the node root's main config, logging to ROOT/sshd.log; returns once it accepts connections."""

    Path("/run/sshd").mkdir(parents=True, exist_ok=True)
    log = open(root / "sshd.log", "ab")  # noqa: SIM115 - sshd keeps writing to it
    proc = subprocess.Popen([SSHD, "-f", str(Layout(root).sshd_config), "-D", "-e"], stdout=log,
                            stderr=subprocess.STDOUT)
    log.close()
    wait_for_port(port, proc, root)
    return proc


def start_distro_sshd(root: Path) -> tuple[int, subprocess.Popen[bytes]]:
    """A node as a distribution ships it, already running: its own host key and a main sshd_config that includes
    the drop-in directory, on a free loopback port. Returns the port and the sshd."""
    port = free_port()
    distro_key = Layout(root).at("etc/ssh/ssh_host_ed25519_key")
    write_main_config(root, port, f"HostKey {distro_key}")
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(distro_key)], check=True)
    return port, start_sshd(root, port)


def wait_for_port(port: int, proc: subprocess.Popen[bytes], root: Path, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise AssertionError(f"sshd did not start:\n{(root / 'sshd.log').read_text()}")


def sshd_log(root: Path) -> str:
    return (root / "sshd.log").read_text(errors="replace")


__all__ = ["free_port", "new_root", "node_root", "sshd_log", "start_distro_sshd", "start_sshd", "write_main_config"]
