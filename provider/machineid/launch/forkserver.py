"""The per-user fork server behind launcher.py: a process with both providers' modules imported and no threads,
which forks one child per launch.

The child gets the launcher's standard streams (passed over the Unix socket), arguments, environment and working
directory, then serves as the plugin process would (the go-plugin server for OpenTofu and Terraform, the resource
provider for the Pulumi engine), except that it watches the launcher's connection instead of its parent (the
launcher is the CLI's child, not the fork server). It sends its exit status
back and exits. The fork server accepts only its own user (SO_PEERCRED), lives in a 0700 directory, and exits
after IDLE seconds without a launch; a child outlives it if need be.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import socket
import struct
import sys
import time

from machineid.launch import launcher

IDLE = 120.0  # seconds without a launch before the fork server exits
_MAX_REQUEST = 1 << 20


def _warm() -> None:
    """Everything a launch needs, imported before any fork (and no thread started: forking a threaded process
    is unsafe, and gRPC's core starts its threads only when a server is created, in the child)."""
    import cryptography.x509  # noqa: F401
    import grpc  # noqa: F401

    from machineid.api import client  # noqa: F401
    from machineid.pulumi import server as pulumi_server
    from machineid.terraform import plugin, servicer  # noqa: F401
    from machineid.terraform.proto import tfplugin5_pb2_grpc, tfplugin6_pb2_grpc  # noqa: F401

    pulumi_server.warm()


def _recv_request(conn: socket.socket) -> tuple[dict[str, object], list[int]]:
    conn.settimeout(5)
    msg, fds, _, _ = socket.recv_fds(conn, _MAX_REQUEST + 4, 3)
    if len(msg) < 4:
        raise ValueError("short request")
    size = int.from_bytes(msg[:4], "big")
    body = msg[4:]
    while len(body) < size:
        chunk = conn.recv(size - len(body))
        if not chunk:
            raise ValueError("truncated request")
        body += chunk
    if size > _MAX_REQUEST or len(fds) != 3:
        raise ValueError("bad request")
    program, argv, env, cwd = launcher.decode_request(body)
    if program not in launcher.PROGRAMS:
        raise ValueError("bad request")
    return {"program": program, "argv": argv, "env": env, "cwd": cwd}, fds


def _child(conn: socket.socket, request: dict[str, object], fds: list[int]) -> int:
    for target, fd in enumerate(fds):
        os.dup2(fd, target)
        os.close(fd)
    env = request.get("env")
    cwd = request.get("cwd")
    if isinstance(env, dict):
        os.environ.clear()
        os.environ.update({str(k): str(v) for k, v in env.items()})
    if isinstance(cwd, str):
        os.chdir(cwd)
    signal.signal(signal.SIGINT, signal.SIG_IGN)

    def alive() -> bool:
        readable, _, _ = select.select([conn], [], [], 0)
        if not readable:
            return True
        try:
            return conn.recv(1, socket.MSG_PEEK) != b""
        except OSError:
            return False

    if request["program"] == "pulumi":
        from machineid.pulumi import server as pulumi_server

        argv = request.get("argv")
        code = pulumi_server.main(list(argv) if isinstance(argv, list) else [], alive=alive)
    else:
        from machineid.terraform import server

        code = server.run(alive=alive)
    with contextlib.suppress(OSError):
        conn.send(bytes([code & 0xFF]))
    return code


def _peer_is_us(conn: socket.socket) -> bool:
    creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    _pid, uid, _gid = struct.unpack("3i", creds)
    return uid == os.getuid()


def _listen(path: str) -> socket.socket | None:
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        listener.bind(path)
    except OSError:
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.connect(path)
            return None  # another fork server for this installation is up: it serves
        except OSError:
            with contextlib.suppress(OSError):
                os.unlink(path)  # a dead one's socket
            listener.bind(path)
        finally:
            probe.close()
    os.chmod(path, 0o600)
    listener.listen(64)
    return listener


def main(path: str) -> int:
    _warm()
    listener = _listen(path)
    if listener is None:
        return 0
    pid_file = path.removesuffix(".sock") + ".pid"
    with open(pid_file, "w") as f:
        f.write(f"{os.getpid()}\n")
    signal.signal(signal.SIGTERM, lambda _sig, _frame: sys.exit(0))  # the finally below still cleans up
    last = time.monotonic()
    try:
        while time.monotonic() - last < IDLE:
            with contextlib.suppress(ChildProcessError):
                while os.waitpid(-1, os.WNOHANG)[0]:
                    pass
            readable, _, _ = select.select([listener], [], [], 1.0)
            if not readable:
                continue
            conn, _ = listener.accept()
            last = time.monotonic()
            try:
                if not _peer_is_us(conn):
                    conn.close()
                    continue
                request, fds = _recv_request(conn)
            except (OSError, ValueError):
                conn.close()
                continue
            conn.settimeout(None)
            pid = os.fork()
            if pid == 0:
                code = 1
                try:
                    listener.close()
                    code = _child(conn, request, fds)
                finally:
                    with contextlib.suppress(Exception):
                        sys.stdout.flush()
                        sys.stderr.flush()
                    os._exit(code)
            for fd in fds:
                os.close(fd)
            conn.close()
    finally:
        with contextlib.suppress(OSError):
            if os.stat(path).st_ino == os.fstat(listener.fileno()).st_ino:
                os.unlink(path)
                os.unlink(pid_file)
        listener.close()
    return 0
