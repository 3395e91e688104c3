"""What the CLIs execute: a launcher that costs a bare interpreter start, not a provider's imports.

OpenTofu and Terraform start a provider 3-4 times per command. A Python provider that imports grpc, cryptography
and its own modules on every start pays about 0.3 s each time (a Go provider 0.03 s). So the launcher, which
imports only the standard library modules below, asks a per-user fork server (forkserver.py) that has everything
imported already to fork a child for it; the child takes over the launcher's standard streams, environment and
working directory and serves the CLI exactly as the plugin would in-process. The launcher stays until the child
ends, returns its exit status, and is what the CLI watches and kills.

Anything unusual (no fork server can be started, the socket directory is not ours, MACHINEID_TF_FORKSERVER=0)
falls back to serving in this process: slower, never different.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import time

ENABLE = "MACHINEID_TF_FORKSERVER"
_COOKIE = ("TF_PLUGIN_MAGIC_COOKIE", "d602bf8f470bc67ca7faa0386276bbdd4330efaf76d1a219cb4d6991ca9872b2")
_START_WAIT = 10.0  # seconds to wait for a fork server that this launcher started to listen
_POLL = 0.5


def _package_dir() -> str:
    return os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def install_key() -> str:
    """Which installation a fork server serves: this interpreter, this package and its files' versions, so an
    upgraded or edited provider never talks to a fork server with the old code loaded."""
    pkg = _package_dir()
    stamp = []
    for sub in ("terraform", "iac", "model", "api", "agent"):
        d = os.path.join(pkg, sub)
        try:  # noqa: SIM105  (contextlib is one more import on every launch)
            stamp += [f"{e.name}:{e.stat().st_mtime_ns}:{e.stat().st_size}" for e in os.scandir(d)
                      if e.name.endswith(".py")]
        except OSError:
            pass
    raw = "|".join([sys.executable, pkg, *sorted(stamp)])
    return hashlib.sha256(raw.encode()).hexdigest()[:20]


def socket_dir() -> str:
    base = os.environ.get("XDG_RUNTIME_DIR") or os.environ.get("TMPDIR") or "/tmp"
    return os.path.join(base, f"machineid-tf-{os.getuid()}")


def private_dir(path: str) -> bool:
    """Create the directory 0700, or accept an existing one only if it is ours and private (a directory another
    user made in /tmp could hold their socket, which would then see our environment)."""
    try:
        os.mkdir(path, 0o700)
    except FileExistsError:
        pass
    except OSError:
        return False
    try:
        st = os.lstat(path)
    except OSError:
        return False
    import stat

    return stat.S_ISDIR(st.st_mode) and st.st_uid == os.getuid() and st.st_mode & 0o077 == 0


def socket_path() -> str:
    return os.path.join(socket_dir(), f"{install_key()}.sock")


def _connect(path: str) -> socket.socket | None:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.connect(path)
        return s
    except OSError:
        s.close()
        return None


def _start_forkserver(path: str) -> socket.socket | None:
    log = os.path.join(os.path.dirname(path), "forkserver.log")
    with open(os.devnull, "rb") as devnull, open(log, "ab") as out:
        os.chmod(log, 0o600)
        subprocess.Popen([sys.executable, "-c", "import sys; from machineid.terraform.forkserver import main; "
                          "sys.exit(main(sys.argv[1]))", path], stdin=devnull, stdout=out, stderr=out,
                         start_new_session=True, close_fds=True, cwd="/")
    deadline = time.monotonic() + _START_WAIT
    while time.monotonic() < deadline:
        conn = _connect(path)
        if conn is not None:
            return conn
        time.sleep(0.02)
    return None


def forkserver_connection() -> socket.socket | None:
    if os.environ.get(ENABLE, "1") == "0" or not hasattr(socket, "send_fds") or not private_dir(socket_dir()):
        return None
    path = socket_path()
    return _connect(path) or _start_forkserver(path)


def _serve_here() -> int:
    from machineid.terraform.server import main

    return main()


def main() -> int:
    if os.environ.get(_COOKIE[0]) != _COOKIE[1] or sys.argv[1:]:
        return _serve_here()  # --help, --version, or not started by a CLI: the plugin's own answers
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # as the plugin: Ctrl-C is the CLI's to handle
    conn = forkserver_connection()
    if conn is None:
        return _serve_here()
    parent = os.getppid()
    request = json.dumps({"env": dict(os.environ), "cwd": os.getcwd()}).encode()
    try:
        socket.send_fds(conn, [len(request).to_bytes(4, "big") + request], [0, 1, 2])
    except OSError:
        conn.close()
        return _serve_here()
    conn.settimeout(_POLL)
    while True:
        try:
            status = conn.recv(1)
        except TimeoutError:
            if os.getppid() != parent:
                return 1  # the CLI is gone: closing the connection ends the child too
            continue
        except OSError:
            return 1
        return status[0] if status else 1


if __name__ == "__main__":
    sys.exit(main())
