"""The Terraform/OpenTofu plugin transport (machineid.terraform.plugin) as the CLIs meet it: a real plugin process
started with the environment go-plugin's client sets, its handshake line, mutual TLS (with the P-521 client
certificates the CLIs make), version negotiation, and its lifecycle (Shutdown, signals, a parent that dies).

No Terraform here: the clients are grpcio and the stdlib ssl module. The plugin registers a tiny tfplugin servicer
whose StopProvider/Stop answers name the protocol version, so a test can see which servicer was registered."""

from __future__ import annotations

import base64
import os
import select
import signal
import socket
import ssl
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from grpc_health.v1 import health_pb2, health_pb2_grpc

from machineid.terraform.plugin import MAGIC_COOKIE_KEY, MAGIC_COOKIE_VALUE, localhost_certificate, negotiate_version
from machineid.terraform.proto import (
    grpc_controller_pb2,
    grpc_controller_pb2_grpc,
    tfplugin5_pb2,
    tfplugin5_pb2_grpc,
    tfplugin6_pb2,
    tfplugin6_pb2_grpc,
)

pytestmark = pytest.mark.timeout(30)

# The plugin under test: serve() with a servicer per version whose stop RPC answers "stopped vN".
# With PRINT_IN_RPC set, that RPC also prints the variable's value, as a stray print in provider code would.
PLUGIN = """
import os, sys
from machineid.terraform.plugin import serve
from machineid.terraform.proto import tfplugin5_pb2, tfplugin5_pb2_grpc, tfplugin6_pb2, tfplugin6_pb2_grpc

class V6(tfplugin6_pb2_grpc.ProviderServicer):
    def StopProvider(self, request, context):
        if os.environ.get("PRINT_IN_RPC"):
            print(os.environ["PRINT_IN_RPC"], flush=True)
        return tfplugin6_pb2.StopProvider.Response(Error="stopped v6")

class V5(tfplugin5_pb2_grpc.ProviderServicer):
    def Stop(self, request, context):
        return tfplugin5_pb2.Stop.Response(Error="stopped v5")

def register(server, version):
    if version == 6:
        tfplugin6_pb2_grpc.add_ProviderServicer_to_server(V6(), server)
    else:
        tfplugin5_pb2_grpc.add_ProviderServicer_to_server(V5(), server)

sys.exit(serve(register, versions=tuple(int(v) for v in sys.argv[1].split(","))))
"""


@dataclass
class Identity:
    """A certificate and its key, both PEM."""

    cert: bytes
    key: bytes


def self_signed(curve: str = "P-256") -> Identity:
    """A client identity shaped like go-plugin's (mtls.go); the CLIs make P-521 ones."""
    _, cert, key = localhost_certificate(curve, organization="HashiCorp")
    return Identity(cert, key)


@pytest.fixture(scope="module")
def p256() -> Identity:
    return self_signed("P-256")


@pytest.fixture(scope="module")
def p521() -> Identity:
    """What the CLIs actually send (go-plugin mtls.go: P-521, SHA-512)."""
    return self_signed("P-521")


def plugin_env(**extra: str) -> dict[str, str]:
    """The environment go-plugin's client gives a plugin (client.go Start), on top of ours without stray settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PLUGIN_", "TF_"))}
    env.update({MAGIC_COOKIE_KEY: MAGIC_COOKIE_VALUE, "PLUGIN_MIN_PORT": "10000", "PLUGIN_MAX_PORT": "25000",
                "PLUGIN_PROTOCOL_VERSIONS": "5,6"})
    env.update(extra)
    return {k: v for k, v in env.items() if v}


def read_line(stream: IO[bytes], deadline: float) -> bytes | None:
    """One line from a pipe (b"" at EOF), or None when nothing came before the deadline."""
    ready, _, _ = select.select([stream], [], [], max(0.0, deadline - time.monotonic()))
    return stream.readline() if ready else None


@dataclass
class Plugin:
    proc: subprocess.Popen[bytes]
    fields: list[str]
    stderr: Path

    @property
    def version(self) -> int:
        return int(self.fields[1])

    @property
    def socket(self) -> str:
        return self.fields[3]

    @property
    def server_cert(self) -> x509.Certificate:
        b64 = self.fields[5]
        return x509.load_der_x509_certificate(base64.b64decode(b64 + "=" * (-len(b64) % 4), validate=True))

    def channel(self, client: Identity | None) -> grpc.Channel:
        if client is None:
            return grpc.insecure_channel(f"unix:{self.socket}")
        creds = grpc.ssl_channel_credentials(
            root_certificates=self.server_cert.public_bytes(serialization.Encoding.PEM),
            private_key=client.key, certificate_chain=client.cert)
        # The name the CLI checks the server certificate for (go-plugin client.go: ServerName "localhost").
        return grpc.secure_channel(f"unix:{self.socket}", creds, options=[("grpc.ssl_target_name_override",
                                                                            "localhost")])

    def log(self) -> str:
        return self.stderr.read_text(errors="replace")


@contextmanager
def started(tmp_path: Path, versions: str = "6,5", **env: str) -> Iterator[Plugin]:
    """A plugin process that has printed its handshake line; killed at the end if still running."""
    stderr = tmp_path / f"plugin-{time.monotonic_ns()}.log"
    with stderr.open("wb") as err:
        proc = subprocess.Popen([sys.executable, "-c", PLUGIN, versions], stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=err, env=plugin_env(**env))
    try:
        assert proc.stdout is not None
        line = read_line(proc.stdout, time.monotonic() + 8)
        assert line and line.endswith(b"\n"), f"no handshake line (got {line!r}); stderr:\n{stderr.read_text()}"
        yield Plugin(proc, line.decode().rstrip("\n").split("|"), stderr)
    finally:
        if proc.poll() is None:
            proc.terminate()  # SIGTERM, so that it removes its socket directory; SIGKILL only if that fails
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
        proc.wait(5)
        if proc.stdout is not None:
            proc.stdout.close()


def health(channel: grpc.Channel) -> int:
    stub = health_pb2_grpc.HealthStub(channel)
    return stub.Check(health_pb2.HealthCheckRequest(service="plugin"), timeout=5).status  # type: ignore[no-any-return]


def shutdown_and_wait(plugin: Plugin, channel: grpc.Channel) -> float:
    """Call GRPCController/Shutdown as the CLI does at the end; seconds until the process exited."""
    start = time.monotonic()
    grpc_controller_pb2_grpc.GRPCControllerStub(channel).Shutdown(grpc_controller_pb2.Empty(), timeout=5)
    plugin.proc.wait(5)
    return time.monotonic() - start


def wait_exited(pid: int, seconds: float) -> bool:
    """Whether the (not our child) process ended: gone, or a zombie its new parent has not reaped."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (FileNotFoundError, ProcessLookupError):
            return True
        if state in ("Z", "X"):
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)


def wait_gone(path: str, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while os.path.exists(path):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


# ---- without a CLI ----

@pytest.mark.parametrize("cookie", [None, "wrong"])
def test_run_by_hand_it_says_what_it_is_and_exits_1(cookie: str | None) -> None:
    env = plugin_env(**{MAGIC_COOKIE_KEY: cookie or ""})
    proc = subprocess.run([sys.executable, "-c", PLUGIN, "6,5"], env=env, capture_output=True, timeout=20)
    assert proc.returncode == 1
    assert proc.stdout == b""
    err = proc.stderr.decode()
    assert "This binary is a plugin for Terraform/OpenTofu" in err
    assert "tofu or terraform" in err and "machineid terraform install" in err


# ---- version negotiation ----

@pytest.mark.parametrize(("offered", "served", "expected"), [
    ("5,6", (6, 5), 6), ("6,5", (6, 5), 6), ("5", (6, 5), 5), ("6", (5,), None), ("4,3", (6, 5), None),
    (" 6 , x,5", (5,), 5), (None, (6, 5), 6), ("", (5,), 5),
])
def test_negotiate_version_picks_the_highest_common(offered: str | None, served: tuple[int, ...],
                                                    expected: int | None) -> None:
    assert negotiate_version(offered, served) == expected


@pytest.mark.parametrize(("offered", "served", "expected"), [("5,6", "6,5", 6), ("6,5", "5", 5), ("5", "6,5", 5)])
def test_the_negotiated_version_is_in_the_handshake_and_its_servicer_is_registered(
        tmp_path: Path, offered: str, served: str, expected: int) -> None:
    with started(tmp_path, served, PLUGIN_PROTOCOL_VERSIONS=offered) as plugin:
        assert plugin.version == expected
        with plugin.channel(None) as channel:
            v6 = tfplugin6_pb2_grpc.ProviderStub(channel)
            v5 = tfplugin5_pb2_grpc.ProviderStub(channel)
            if expected == 6:
                assert v6.StopProvider(tfplugin6_pb2.StopProvider.Request(), timeout=5).Error == "stopped v6"
                with pytest.raises(grpc.RpcError) as e:
                    v5.Stop(tfplugin5_pb2.Stop.Request(), timeout=5)
            else:
                assert v5.Stop(tfplugin5_pb2.Stop.Request(), timeout=5).Error == "stopped v5"
                with pytest.raises(grpc.RpcError) as e:
                    v6.StopProvider(tfplugin6_pb2.StopProvider.Request(), timeout=5)
            assert e.value.code() == grpc.StatusCode.UNIMPLEMENTED
            shutdown_and_wait(plugin, channel)


@pytest.mark.parametrize(("offered", "served"), [("6", "5"), ("4,3", "6,5")])
def test_no_common_version_is_a_clear_error(offered: str, served: str) -> None:
    proc = subprocess.run([sys.executable, "-c", PLUGIN, served], env=plugin_env(PLUGIN_PROTOCOL_VERSIONS=offered),
                          capture_output=True, timeout=20)
    assert proc.returncode == 1
    assert proc.stdout == b""
    err = proc.stderr.decode()
    assert f"versions {offered}" in err and "newer OpenTofu or Terraform" in err


@pytest.mark.parametrize(("env", "message"), [
    ({"PLUGIN_CLIENT_CERT": "not a certificate"}, "PLUGIN_CLIENT_CERT is not a usable PEM certificate"),
    ({"PLUGIN_UNIX_SOCKET_DIR": "/nonexistent/sockets"}, "cannot create the plugin's socket directory in /nonexistent"),
])
def test_unusable_settings_from_the_cli_are_a_clear_error(env: dict[str, str], message: str) -> None:
    proc = subprocess.run([sys.executable, "-c", PLUGIN, "6,5"], env=plugin_env(**env), capture_output=True,
                          timeout=20)
    assert proc.returncode == 1
    assert proc.stdout == b""
    assert message in proc.stderr.decode()
    assert "Traceback" not in proc.stderr.decode()


# ---- handshake and mutual TLS ----

def test_nothing_but_the_handshake_reaches_the_clis_stdout(tmp_path: Path) -> None:
    """The CLI reads the plugin's stdout as the protocol: a print in provider code after the handshake goes to
    stderr (the CLI's log), and stdout carries the handshake line and then nothing until EOF."""
    with started(tmp_path, PRINT_IN_RPC="LEAK printed during an RPC") as plugin:
        with plugin.channel(None) as channel:
            assert tfplugin6_pb2_grpc.ProviderStub(channel).StopProvider(
                tfplugin6_pb2.StopProvider.Request(), timeout=5).Error == "stopped v6"
            shutdown_and_wait(plugin, channel)
        assert plugin.proc.returncode == 0, plugin.log()
        assert plugin.proc.stdout is not None
        assert plugin.proc.stdout.read() == b""  # EOF right after the handshake line
        assert "LEAK printed during an RPC\n" in plugin.log()


def test_handshake_line_and_server_certificate(tmp_path: Path, p256: Identity) -> None:
    with started(tmp_path, PLUGIN_CLIENT_CERT=p256.cert.decode()) as plugin:
        core, version, network, address, protocol, cert = plugin.fields
        assert (core, version, network, protocol) == ("1", "6", "unix", "grpc")
        assert stat.S_ISSOCK(os.stat(address).st_mode)
        # go-plugin reads the field with base64.RawStdEncoding: unpadded standard alphabet, and only if > 50 chars.
        assert len(cert) > 50 and "=" not in cert and "-" not in cert and "_" not in cert
        server = plugin.server_cert
        assert server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(
            x509.DNSName) == ["localhost"]
        assert server.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
        assert server.not_valid_before_utc <= datetime.now(UTC) < server.not_valid_after_utc
        server.verify_directly_issued_by(server)  # self-signed: the CLI pins exactly this certificate


def test_the_right_client_certificate_gets_health_and_shutdown_ends_the_process(
        tmp_path: Path, p256: Identity) -> None:
    with started(tmp_path, PLUGIN_CLIENT_CERT=p256.cert.decode()) as plugin:
        with plugin.channel(p256) as channel:
            assert health(channel) == health_pb2.HealthCheckResponse.SERVING
            assert tfplugin6_pb2_grpc.ProviderStub(channel).StopProvider(
                tfplugin6_pb2.StopProvider.Request(), timeout=5).Error == "stopped v6"
            elapsed = shutdown_and_wait(plugin, channel)
        assert plugin.proc.returncode == 0, plugin.log()
        assert elapsed < 2.0, f"took {elapsed:.2f} s: the CLI kills a plugin 2 s after Shutdown"
        assert not os.path.exists(os.path.dirname(plugin.socket))


def test_a_client_with_another_certificate_or_none_is_refused(tmp_path: Path, p256: Identity) -> None:
    stranger = self_signed("P-256")
    with started(tmp_path, PLUGIN_CLIENT_CERT=p256.cert.decode()) as plugin:
        with plugin.channel(stranger) as channel, pytest.raises(grpc.RpcError) as e:
            health(channel)
        assert e.value.code() == grpc.StatusCode.UNAVAILABLE
        # A server-authenticated client without a certificate of its own gets nowhere either.
        creds = grpc.ssl_channel_credentials(
            root_certificates=plugin.server_cert.public_bytes(serialization.Encoding.PEM))
        with grpc.secure_channel(f"unix:{plugin.socket}", creds,
                                 options=[("grpc.ssl_target_name_override", "localhost")]) as channel, \
                pytest.raises(grpc.RpcError) as e:
            health(channel)
        assert e.value.code() == grpc.StatusCode.UNAVAILABLE
        # Plaintext gRPC straight at the TLS socket is not let through.
        with plugin.channel(None) as channel, pytest.raises(grpc.RpcError):
            health(channel)
        assert plugin.proc.poll() is None
        with plugin.channel(p256) as channel:
            assert health(channel) == health_pb2.HealthCheckResponse.SERVING


def http2_over_tls(plugin: Plugin, client: Identity, tmp_path: Path) -> bytes:
    """Connect with the stdlib (OpenSSL can sign with P-521, unlike grpcio), send the HTTP/2 preface and an empty
    SETTINGS frame, and return the first 9 bytes that come back (a frame header), or what came before EOF."""
    cert_file, key_file = tmp_path / "client.crt", tmp_path / "client.key"
    cert_file.write_bytes(client.cert)
    key_file.write_bytes(client.key)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(cadata=plugin.server_cert.public_bytes(serialization.Encoding.PEM).decode())
    ctx.load_cert_chain(cert_file, key_file)
    ctx.set_alpn_protocols(["h2"])
    raw = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    raw.settimeout(5)
    raw.connect(plugin.socket)
    with ctx.wrap_socket(raw, server_hostname="localhost") as tls:
        assert tls.selected_alpn_protocol() == "h2"
        tls.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + bytes([0, 0, 0, 4, 0, 0, 0, 0, 0]))
        got = b""
        while len(got) < 9:
            chunk = tls.recv(9 - len(got))
            if not chunk:
                break
            got += chunk
        return got


def test_p521_client_certificates_like_the_clis_make_are_accepted(tmp_path: Path, p521: Identity) -> None:
    with started(tmp_path, PLUGIN_CLIENT_CERT=p521.cert.decode()) as plugin:
        frame = http2_over_tls(plugin, p521, tmp_path)
        assert len(frame) == 9 and frame[3] == 0x04, f"expected gRPC's SETTINGS frame, got {frame!r}"


def test_p521_client_with_another_certificate_is_refused(tmp_path: Path, p521: Identity) -> None:
    stranger = self_signed("P-521")
    with started(tmp_path, PLUGIN_CLIENT_CERT=p521.cert.decode()) as plugin:
        # TLS 1.3: the client may finish its side of the handshake before the server refuses its certificate; the
        # refusal then arrives as an alert (SSLError) or a closed connection, never as an HTTP/2 frame.
        try:
            frame = http2_over_tls(plugin, stranger, tmp_path)
        except (ssl.SSLError, ConnectionError):
            frame = b""
        assert frame == b""
        assert plugin.proc.poll() is None


def test_without_tls_the_cert_field_is_empty_and_grpc_is_plaintext(tmp_path: Path) -> None:
    with started(tmp_path) as plugin:  # TF_DISABLE_PLUGIN_TLS: the CLI sets no PLUGIN_CLIENT_CERT
        assert plugin.fields[5] == ""
        with plugin.channel(None) as channel:
            assert health(channel) == health_pb2.HealthCheckResponse.SERVING
            assert shutdown_and_wait(plugin, channel) < 2.0
        assert plugin.proc.returncode == 0


# ---- the socket directory and lifecycle ----

def test_socket_directory_is_private_inside_plugin_unix_socket_dir_and_removed(tmp_path: Path, p256: Identity) -> None:
    base = tmp_path / "sockets"
    base.mkdir()
    with started(tmp_path, PLUGIN_CLIENT_CERT=p256.cert.decode(), PLUGIN_UNIX_SOCKET_DIR=str(base)) as plugin:
        workdir = Path(plugin.socket).parent
        assert workdir.parent == base
        assert stat.S_IMODE(workdir.stat().st_mode) == 0o700
        assert not list(workdir.glob("*.key")), "the server key must not stay on disk"
        with plugin.channel(p256) as channel:
            shutdown_and_wait(plugin, channel)
        assert not workdir.exists()
        assert list(base.iterdir()) == []


def test_sigint_is_ignored_and_sigterm_stops(tmp_path: Path, p256: Identity) -> None:
    with started(tmp_path, PLUGIN_CLIENT_CERT=p256.cert.decode()) as plugin:
        plugin.proc.send_signal(signal.SIGINT)  # Ctrl-C reaches the whole process group; the CLI handles it
        time.sleep(0.5)
        assert plugin.proc.poll() is None, plugin.log()
        with plugin.channel(p256) as channel:
            assert health(channel) == health_pb2.HealthCheckResponse.SERVING
        start = time.monotonic()
        plugin.proc.send_signal(signal.SIGTERM)
        assert plugin.proc.wait(5) == 0, plugin.log()
        assert time.monotonic() - start < 2.0
        assert "Traceback" not in plugin.log()
        assert not os.path.exists(os.path.dirname(plugin.socket))


def test_the_plugin_exits_when_the_cli_dies(tmp_path: Path) -> None:
    """A crashed CLI must not leave the plugin behind holding the CLI's output pipe open."""
    launcher = ("import subprocess, sys; p = subprocess.Popen([sys.executable, '-c', sys.argv[1], '6,5']); "
                "print(p.pid, flush=True); sys.stdin.read()")
    proc = subprocess.Popen([sys.executable, "-c", launcher, PLUGIN], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, env=plugin_env())
    assert proc.stdout is not None and proc.stdin is not None
    pid = None
    try:
        deadline = time.monotonic() + 8
        lines = [read_line(proc.stdout, deadline) or b"", read_line(proc.stdout, deadline) or b""]
        pid = int(next(line for line in lines if line.strip().isdigit()))
        handshake = next(line for line in lines if b"|" in line).decode().split("|")
        workdir = os.path.dirname(handshake[3])
        assert os.path.isdir(workdir)
        proc.kill()  # the CLI crashes
        proc.wait(5)
        assert wait_gone(workdir, 3.0), "the orphaned plugin kept running"
        # Its end of the pipe is closed too: reading reaches EOF instead of blocking.
        assert read_line(proc.stdout, time.monotonic() + 3) == b""
        assert wait_exited(pid, 3.0)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
        if pid is not None and not wait_exited(pid, 0):
            os.kill(pid, signal.SIGKILL)  # the test failed: leave no orphan behind
        proc.stdin.close()
        proc.stdout.close()
