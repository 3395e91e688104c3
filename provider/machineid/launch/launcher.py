"""What the CLIs and the Pulumi engine execute: a launcher that costs a bare interpreter start, not a provider's
imports.

OpenTofu and Terraform start a provider 3-4 times per command, and the Pulumi engine starts its plugin once or more
per command. A Python provider that imports grpc, cryptography and its own modules on every start pays about 0.3 s
each time (a Go provider 0.03 s). So the launcher, which imports only the standard library modules below (no json,
no subprocess, no hashlib, and the C modules under signal and socket rather than those: each costs milliseconds on
every launch), asks a per-user fork server (forkserver.py)
that has everything imported already to fork a child for it; the child takes over the launcher's standard streams,
arguments, environment and working directory and serves the CLI or engine exactly as the plugin would in-process.
The launcher stays until the child ends, returns its exit status, and is what the CLI or engine watches and kills.

Anything unusual (no fork server can be started, the socket directory is not ours, MACHINEID_TF_FORKSERVER=0)
falls back to serving in this process: slower, never different.
"""

from __future__ import annotations

import _signal  # type: ignore[import-not-found]  # under signal and socket: those import enum (~8 ms)
import _socket
import os
import sys
import time
import zlib

ENABLE = "MACHINEID_TF_FORKSERVER"
PROGRAMS = ("terraform", "pulumi")
_COOKIE = ("TF_PLUGIN_MAGIC_COOKIE", "d602bf8f470bc67ca7faa0386276bbdd4330efaf76d1a219cb4d6991ca9872b2")
_START_WAIT = 10.0  # seconds to wait for a fork server that this launcher started to listen
_POLL = 0.5
# The package's subdirectories whose code a fork server has loaded: an edit to any makes a new fork server.
_LOADED = ("terraform", "pulumi", "launch", "iac", "model", "api", "agent")


def _package_dir() -> str:
    return os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def install_key() -> str:
    """Which installation a fork server serves: this interpreter, this package and its files' versions, so an
    upgraded or edited provider never talks to a fork server with the old code loaded."""
    pkg = _package_dir()
    stamp = []
    for sub in _LOADED:
        d = os.path.join(pkg, sub)
        try:  # noqa: SIM105  (contextlib is one more import on every launch)
            stamp += [f"{e.name}:{e.stat().st_mtime_ns}:{e.stat().st_size}" for e in os.scandir(d)
                      if e.name.endswith(".py")]
        except OSError:
            pass
    raw = "|".join([sys.executable, pkg, *sorted(stamp)]).encode()
    # Two checksums of 32 bits (zlib, already loaded by the interpreter): this picks a socket, it guards no secret.
    return f"{zlib.crc32(raw):08x}{zlib.adler32(raw):08x}"


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


def encode_request(program: str, argv: list[str], env: dict[str, str], cwd: str) -> bytes:
    """program, cwd, the argument count, the arguments, then KEY=VALUE: NUL-separated (none of them holds a NUL)."""
    fields = [program, cwd, str(len(argv)), *argv, *(f"{k}={v}" for k, v in env.items())]
    return "\0".join(fields).encode("utf-8", "surrogateescape")


def decode_request(body: bytes) -> tuple[str, list[str], dict[str, str], str]:
    fields = body.decode("utf-8", "surrogateescape").split("\0")
    program, cwd, count = fields[0], fields[1], int(fields[2])
    argv = fields[3:3 + count]
    env = dict(item.split("=", 1) for item in fields[3 + count:] if "=" in item)
    return program, argv, env, cwd


def _connect(path: str) -> _socket.socket | None:
    s = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    try:
        s.connect(path)
        return s
    except OSError:
        s.close()
        return None


def _send_fds(conn: _socket.socket, data: bytes, fds: list[int]) -> None:
    """socket.send_fds, without the socket module: the descriptors ride as SCM_RIGHTS ancillary data."""
    conn.sendmsg([data], [(_socket.SOL_SOCKET, _socket.SCM_RIGHTS, b"".join(fd.to_bytes(4, sys.byteorder)
                                                                             for fd in fds))])


def _start_forkserver(path: str) -> _socket.socket | None:
    import subprocess  # only when no fork server runs yet

    log = os.path.join(os.path.dirname(path), "forkserver.log")
    with open(os.devnull, "rb") as devnull, open(log, "ab") as out:
        os.chmod(log, 0o600)
        subprocess.Popen([sys.executable, "-c", "import sys; from machineid.launch.forkserver import main; "
                          "sys.exit(main(sys.argv[1]))", path], stdin=devnull, stdout=out, stderr=out,
                         start_new_session=True, close_fds=True, cwd="/")
    deadline = time.monotonic() + _START_WAIT
    while time.monotonic() < deadline:
        conn = _connect(path)
        if conn is not None:
            return conn
        time.sleep(0.02)
    return None


def forkserver_connection() -> _socket.socket | None:
    if os.environ.get(ENABLE, "1") == "0" or not hasattr(_socket, "SCM_RIGHTS") or not private_dir(socket_dir()):
        return None
    path = socket_path()
    return _connect(path) or _start_forkserver(path)


def _serve_here(program: str, argv: list[str]) -> int:
    if sys.flags.no_site:  # a launcher started with -S: the provider's dependencies are in site-packages
        import site

        site.main()
    if program == "pulumi":
        from machineid.pulumi.server import main as pulumi_main

        return pulumi_main(argv)
    from machineid.terraform.server import main as terraform_main

    return terraform_main()


def _by_a_cli(program: str, argv: list[str]) -> bool:
    """Started to serve (not run by hand for --help or --version)."""
    if program == "terraform":
        return os.environ.get(_COOKIE[0]) == _COOKIE[1] and not argv
    return bool(argv) and argv[0] not in ("-h", "--help", "help")


def main(program: str = "terraform", argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if program not in PROGRAMS or not _by_a_cli(program, argv):
        return _serve_here(program, argv)  # the plugin's own answers
    if program == "terraform":
        _signal.signal(_signal.SIGINT, _signal.SIG_IGN)  # as the plugin: Ctrl-C is the CLI's to handle
    else:
        # The Pulumi engine ends a plugin with SIGINT and waits up to 5 s before SIGKILL: go at once (the child
        # notices the closed connection and lets go of the engine's pipes).
        _signal.signal(_signal.SIGINT, lambda *_: os._exit(0))
    conn = forkserver_connection()
    if conn is None:
        return _serve_here(program, argv)
    parent = os.getppid()
    request = encode_request(program, argv, dict(os.environ), os.getcwd())
    try:
        _send_fds(conn, len(request).to_bytes(4, "big") + request, [0, 1, 2])
    except OSError:
        conn.close()
        return _serve_here(program, argv)
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
