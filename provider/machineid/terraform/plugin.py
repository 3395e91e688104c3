"""The go-plugin server side of a Terraform/OpenTofu provider process: handshake, transport and lifecycle.

The CLI runs the provider binary several times per command, reads one handshake line from its stdout and then speaks
gRPC (tfplugin6, or tfplugin5 for older CLIs) to it over a Unix socket, with mutual TLS by default ("AutoMTLS", see
hashicorp/go-plugin server.go, client.go and mtls.go). This module is only that part: what the RPCs mean belongs to
the `register` function passed to serve().

TLS is terminated here with the stdlib `ssl` module and not by grpcio: the CLI's client certificate has a P-521 key,
grpcio's BoringSSL does not offer ecdsa_secp521r1_sha512 in its certificate request (grpc/grpc#41089), so the client
sends no certificate and every connection fails. OpenSSL accepts it, so one event-loop thread terminates TLS on the
advertised socket and splices the plaintext to grpcio on a second socket in the same private directory.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime
import os
import shutil
import signal
import socket
import ssl
import sys
import tempfile
import threading
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import grpc

MAGIC_COOKIE_KEY = "TF_PLUGIN_MAGIC_COOKIE"
MAGIC_COOKIE_VALUE = "d602bf8f470bc67ca7faa0386276bbdd4330efaf76d1a219cb4d6991ca9872b2"
CORE_PROTOCOL_VERSION = 1  # go-plugin's own handshake version, the first field of the line
NOT_A_COMMAND = (
    "This binary is a plugin for Terraform/OpenTofu (the machineid provider), not a command to run directly.\n"
    "Run it through tofu or terraform: see `machineid terraform install`.\n"
)

_WORKERS = 16  # the CLI runs up to 10 resource operations in parallel by default (-parallelism)
_MAX_MESSAGE = 256 << 20  # schemas and states can be large; go-plugin's client allows up to 2 GiB
_GRACE = 0.5  # seconds in-flight RPCs get at shutdown: the CLI kills the process 2 s after Shutdown
_DRAIN = 0.5  # seconds the TLS splices get to pass on gRPC's last bytes after it stopped
_PARENT_POLL = 0.5  # seconds between checks that the CLI is still alive
_HANDSHAKE_TIMEOUT = 10.0
_CHUNK = 65536
_CERT_LIFETIME = datetime.timedelta(hours=24)


def negotiate_version(offered: str | None, served: Iterable[int]) -> int | None:
    """The highest protocol version both sides speak, from PLUGIN_PROTOCOL_VERSIONS ("5,6" or "6,5": the CLIs build
    it from a Go map, so the order means nothing). None when nothing is common. Without the variable (nothing sent
    it, e.g. a manual run) our highest, like go-plugin: the client then checks the handshake."""
    ours = set(served)
    if not ours:
        raise ValueError("serve at least one protocol version")
    if not offered:
        return max(ours)
    theirs: set[int] = set()
    for part in offered.split(","):
        with contextlib.suppress(ValueError):
            theirs.add(int(part.strip()))
    common = ours & theirs
    return max(common) if common else None


def serve(register: Callable[[grpc.Server, int], None], *, versions: tuple[int, ...] = (6, 5),
          stop: threading.Event | None = None, alive: Callable[[], bool] | None = None) -> int:
    """Serve one provider process for the CLI that started it, until it calls Shutdown, sends SIGTERM, exits, or
    `stop` is set. `register(server, version)` adds the tfplugin servicer for the negotiated version. Returns the
    exit status: 1 when this process was not started by a CLI, no protocol version is common or the CLI's settings
    are unusable, else 0.

    The calling thread waits for the end and polls os.getppid() meanwhile (no extra watcher thread): a CLI that
    crashed leaves the plugin an orphan, which would otherwise hold the CLI's output pipe open (seen with
    Terraform 1.0). `alive` replaces that check for a process the CLI did not start itself (the fork server's
    children: their launcher is the CLI's child). Meant to be a process's main function: it redirects fd 1 to fd 2
    after the handshake."""
    if os.environ.get(MAGIC_COOKIE_KEY) != MAGIC_COOKIE_VALUE:
        sys.stderr.write(NOT_A_COMMAND)
        return 1
    offered = os.environ.get("PLUGIN_PROTOCOL_VERSIONS")
    version = negotiate_version(offered, versions)
    if version is None:
        ours = ", ".join(str(v) for v in sorted(versions, reverse=True))
        _say(f"the CLI speaks plugin protocol versions {offered}, this provider speaks {ours}: "
             "use a newer OpenTofu or Terraform (protocol 6 came with Terraform 1.0)")
        return 1
    parent = os.getppid()
    if alive is None:
        def alive() -> bool:
            return os.getppid() == parent
    stop = stop if stop is not None else threading.Event()
    base = os.environ.get("PLUGIN_UNIX_SOCKET_DIR") or None
    try:
        # mkdtemp makes the directory 0700: only our user can reach the sockets, whatever the umask.
        workdir = tempfile.mkdtemp(prefix="tfplugin-", dir=base)
    except OSError as e:
        _say(f"cannot create the plugin's socket directory in {base or tempfile.gettempdir()}: {e}")
        return 1
    restore = _handle_signals(stop)
    try:
        return _serve(register, version, stop, alive, workdir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
        restore()


def _serve(register: Callable[[grpc.Server, int], None], version: int, stop: threading.Event,
           alive: Callable[[], bool], workdir: str) -> int:
    # Imported here, not at the top: the CLI starts the plugin 3-4 times per command, and a process that only
    # prints the "not a command" message should not pay for them.
    from concurrent import futures

    import grpc

    path = os.path.join(workdir, "plugin.sock")
    client_pem = os.environ.get("PLUGIN_CLIENT_CERT", "")
    ctx: ssl.SSLContext | None = None
    cert_field = ""  # TF_DISABLE_PLUGIN_TLS: the CLI sends no certificate and expects none back
    if client_pem:
        try:
            der, ctx = _tls_context(client_pem, workdir)
        except (ValueError, ssl.SSLError) as e:
            _say(f"PLUGIN_CLIENT_CERT is not a usable PEM certificate: {e}")
            return 1
        cert_field = base64.b64encode(der).decode("ascii").rstrip("=")  # go-plugin decodes RawStdEncoding

    executor = futures.ThreadPoolExecutor(max_workers=_WORKERS, thread_name_prefix="tfplugin")
    server = grpc.server(executor, options=[("grpc.max_receive_message_length", _MAX_MESSAGE),
                                            ("grpc.max_send_message_length", _MAX_MESSAGE)])
    register(server, version)
    _add_health(server)
    _add_controller(server, stop)
    front: _TLSFront | None = None
    if ctx is None:
        server.add_insecure_port(f"unix:{path}")
    else:
        inner = os.path.join(workdir, "grpc.sock")
        server.add_insecure_port(f"unix:{inner}")
        front = _TLSFront(ctx, path, inner)
    try:
        server.start()
        if front is not None:
            front.start()
        sys.stdout.write(f"{CORE_PROTOCOL_VERSION}|{version}|unix|{path}|grpc|{cert_field}\n")
        sys.stdout.flush()
        os.dup2(2, 1)  # from now on stdout is the CLI's log, never its protocol: a stray print must not break it
        while not stop.wait(_PARENT_POLL):
            if not alive():
                _say("the CLI that started this plugin has exited; stopping")
                break
    finally:
        server.stop(_GRACE).wait()
        if front is not None:
            front.close()
        executor.shutdown(wait=False)
    return 0


def _say(message: str) -> None:
    with contextlib.suppress(OSError):  # a CLI that crashed closed the pipe; the message only goes to its log
        sys.stderr.write(f"machineid provider: {message}\n")
        sys.stderr.flush()


def _handle_signals(stop: threading.Event) -> Callable[[], None]:
    """Ignore SIGINT and stop on SIGTERM; returns a function that puts the old handlers back.

    Ctrl-C reaches the whole process group, and the CLI answers it with StopProvider and later Shutdown: a plugin
    killed by SIGINT never answers Shutdown and the CLI hangs (go-plugin servers ignore it too, server.go)."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None  # signal handlers can only be set from the main thread (embedded use, tests)
    old_int = signal.signal(signal.SIGINT, signal.SIG_IGN)
    old_term = signal.signal(signal.SIGTERM, lambda _sig, _frame: stop.set())

    def restore() -> None:
        if old_int is not None:
            signal.signal(signal.SIGINT, old_int)
        if old_term is not None:
            signal.signal(signal.SIGTERM, old_term)

    return restore


# grpc.health.v1.HealthCheckResponse{status: SERVING}: field 1, varint 1. Answered for every service name asked.
_SERVING = b"\x08\x01"


def _add_health(server: grpc.Server) -> None:
    """The standard health service, answering SERVING (go-plugin's guide asks plugins to register it for the
    service "plugin"). Served on raw bytes: the grpc_health package costs every launch about 25 ms to import."""
    import grpc

    check = grpc.unary_unary_rpc_method_handler(lambda request, context: _SERVING,
                                                request_deserializer=None, response_serializer=None)
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("grpc.health.v1.Health",
                                                                          {"Check": check}),))


def _add_controller(server: grpc.Server, stop: threading.Event) -> None:
    """go-plugin's GRPCController: the CLI calls Shutdown once, when it is done with this process."""
    from machineid.terraform.proto import grpc_controller_pb2, grpc_controller_pb2_grpc

    class Controller(grpc_controller_pb2_grpc.GRPCControllerServicer):
        def Shutdown(self, request: Any, context: grpc.ServicerContext) -> Any:
            stop.set()  # serve() stops the server once this answer is out (within _GRACE)
            return grpc_controller_pb2.Empty()

    grpc_controller_pb2_grpc.add_GRPCControllerServicer_to_server(Controller(), server)


def localhost_certificate(curve: str = "P-256", organization: str = "machineid") -> tuple[bytes, bytes, bytes]:
    """A fresh self-signed certificate shaped like go-plugin's AutoMTLS ones: (DER, certificate PEM, key PEM).

    The CLI trusts exactly the certificate in the handshake and checks it for the name "localhost" (SAN; Go ignores
    the CN). The rest mirrors go-plugin's own template (mtls.go): CA, these key usages, both extended usages. The
    plugin uses P-256 rather than go-plugin's P-521: Go accepts either, and its keys are faster to make; the tests
    and the benchmark make the CLI's P-521 ones with the same function."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    big = curve == "P-521"
    key = ec.generate_private_key(ec.SECP521R1() if big else ec.SECP256R1())
    digest: hashes.SHA256 | hashes.SHA512 = hashes.SHA512() if big else hashes.SHA256()
    name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization),
                      x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(seconds=30))  # the CLI's clock is ours, but be lenient
        .not_valid_after(now + _CERT_LIFETIME)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=True,
                                     data_encipherment=False, key_agreement=True, key_cert_sign=True, crl_sign=False,
                                     encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
                       critical=False)
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .sign(key, digest)
    )
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    return cert.public_bytes(serialization.Encoding.DER), cert.public_bytes(serialization.Encoding.PEM), key_pem


def _tls_context(client_pem: str, workdir: str) -> tuple[bytes, ssl.SSLContext]:
    """The server side of go-plugin's AutoMTLS: our fresh certificate, and the CLI's certificate as the only trust
    anchor with a client certificate required (go-plugin: RequireAndVerifyClientCert, TLS 1.2 at least)."""
    der, cert_pem, key_pem = localhost_certificate()
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.load_verify_locations(cadata=client_pem)
    ctx.set_alpn_protocols(["h2"])  # gRPC-Go refuses a TLS server that does not negotiate h2
    # load_cert_chain reads only files: they live for a moment in the private directory.
    cert_file, key_file = os.path.join(workdir, "server.crt"), os.path.join(workdir, "server.key")
    try:
        for file, data in ((cert_file, cert_pem), (key_file, key_pem)):
            fd = os.open(file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(data)
        ctx.load_cert_chain(cert_file, key_file)
    finally:
        for file in (cert_file, key_file):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(file)
    return der, ctx


class _TLSFront:
    """Mutual TLS on the advertised socket, each connection spliced as plaintext to grpcio's socket.

    asyncio's TLS runs OpenSSL on memory buffers in one thread, so reading and writing one connection never race
    (blocking SSL sockets would need a reader and a writer thread on one SSL object). A client whose certificate
    does not verify fails the handshake and never reaches gRPC. The CLI opens one connection per process."""

    def __init__(self, ctx: ssl.SSLContext, path: str, upstream: str) -> None:
        self._upstream = upstream
        self._loop = asyncio.new_event_loop()
        self._stopping = asyncio.Event()
        self._conns: set[asyncio.Task[Any]] = set()
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            listener.bind(path)  # bound and listening before the handshake line: the CLI connects right after it
            listener.listen(16)
            self._server = self._loop.run_until_complete(asyncio.start_unix_server(
                self._splice, sock=listener, ssl=ctx, ssl_handshake_timeout=_HANDSHAKE_TIMEOUT))
        except BaseException:
            listener.close()
            self._loop.close()
            raise
        self._thread = threading.Thread(target=self._run, name="tfplugin-tls", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        """Stop accepting, give open splices _DRAIN seconds to pass on what gRPC sent last, then cut them."""
        if self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._stopping.set)
            self._thread.join(_DRAIN + 1.0)
        elif not self._loop.is_closed():
            self._server.close()
            self._loop.close()

    def _run(self) -> None:
        try:
            self._loop.run_until_complete(self._until_stopped())
        finally:
            self._loop.close()

    async def _until_stopped(self) -> None:
        async with self._server:
            await self._stopping.wait()
            self._server.close()
            if self._conns:
                _, pending = await asyncio.wait(self._conns, timeout=_DRAIN)
                for task in pending:
                    task.cancel()
                await asyncio.gather(*pending, return_exceptions=True)

    async def _splice(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._conns.add(task)
        try:
            try:
                up_reader, up_writer = await asyncio.open_unix_connection(self._upstream)
            except OSError as e:
                _say(f"cannot reach the gRPC listener: {e}")
                writer.close()
                return
            pumps = [asyncio.create_task(_pump(reader, up_writer)), asyncio.create_task(_pump(up_reader, writer))]
            try:
                # gRPC needs no half-close: when either side is done, the connection is.
                await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for pump in pumps:
                    pump.cancel()
                await asyncio.gather(*pumps, return_exceptions=True)
                up_writer.close()
                writer.close()
        except Exception as e:  # one connection must not take the loop down; asyncio would only log it later
            _say(f"TLS connection failed: {e!r}")
        finally:
            if task is not None:
                self._conns.discard(task)


async def _pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
    with contextlib.suppress(OSError):  # ssl.SSLError and ConnectionError included: the connection is over
        while data := await src.read(_CHUNK):
            dst.write(data)
            await dst.drain()
