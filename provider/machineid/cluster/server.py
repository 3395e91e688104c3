"""Running the cluster: storage, CAs, the two internal gRPC listeners behind the SNI router, the admin identity
file, the health service, and a clean shutdown.

Files in the data dir: `cluster.db` (SQLite, 0600), `admin.identity` (0600, renewed while the server runs) and
`server.json` (the address it listens on, so `machineid ctl --data-dir` and tests find it, even with port 0).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import re
import resource
import shutil
import socket
import tempfile
import threading
from concurrent import futures
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from machineid import __version__
from machineid.api import certs
from machineid.api.client import split_address
from machineid.api.identity import Identity, write_private
from machineid.api.v1 import cluster_pb2_grpc as rpc
from machineid.cluster import iam, instances, x509_issuance
from machineid.cluster.grpc_api import ClusterServicer, JoinServicer, NodeServicer
from machineid.cluster.janitor import DEFAULT_AUDIT_RETENTION, Janitor
from machineid.cluster.limits import CallLimits
from machineid.cluster.router import JOIN_BURST, JOIN_RATE, MAX_PER_SOURCE, SNIRouter
from machineid.cluster.sealing import KeySource
from machineid.cluster.service import ADMIN_USER, Caller, Cluster
from machineid.cluster.store.base import Backend
from machineid.cluster.store.sqlite import SQLiteBackend
from machineid.model import validators as v
from machineid.model.errors import (
    AlreadyExistsError,
    FieldViolation,
    NotFoundError,
    PreconditionError,
    ValidationError,
)

if TYPE_CHECKING:
    from wsgiref.simple_server import WSGIServer

    from machineid.cluster.metrics import ClusterMetrics

log = logging.getLogger("machineid.cluster.server")
ADMIN_IDENTITY = "admin.identity"
SERVER_JSON = "server.json"
CONFIG_KIND = "cluster_config"
ADMIN_TTL = timedelta(hours=30)
ADMIN_REFRESH = timedelta(hours=6)


def open_backend(storage: str, data_dir: Path) -> Backend:
    if not storage or storage == "sqlite":
        return SQLiteBackend(data_dir / "cluster.db")
    if storage.startswith(("postgresql://", "postgres://")):
        from machineid.cluster.store.postgres import PostgresBackend

        return PostgresBackend(storage)
    raise ValidationError(f'--storage: "{storage}" is not a storage; use sqlite (the default) or a '
                          "postgresql://USER@HOST:PORT/DB URL")


def default_cluster_name() -> str:
    host = socket.gethostname().split(".")[0].lower()
    return re.sub(r"[^a-z0-9-]", "-", host).strip("-") or "machineid"


@dataclass
class ServerConfig:
    data_dir: Path
    listen: str = "127.0.0.1:3025"
    cluster_name: str = ""
    workers: int = 16
    # STS endpoints (URLs) accepted for IAM joins besides AWS's own, e.g. a local STS in tests.
    iam_sts_endpoints: tuple[str, ...] = ()
    # Where the cluster's state lives: empty for SQLite in the data dir, or a postgresql:// URL (shared by servers).
    storage: str = ""
    # How long audit records are kept (None: forever); expired tokens and challenges go at every sweep.
    audit_retention: timedelta | None = DEFAULT_AUDIT_RETENTION
    # Connections open at once from one client address (the router closes more as they arrive).
    max_connections_per_source: int = MAX_PER_SOURCE
    # New anonymous connections (joins, ping) per second from one client address, and as many anonymous calls.
    join_rate_per_source: float = JOIN_RATE
    # The key that seals the CA keys in the backend (sealing.py): a file (default DATA_DIR/ca.key), or a command
    # that prints it; MACHINEID_CA_KEY in the environment comes before the file.
    ca_key_file: Path | None = None
    ca_key_command: str = ""
    # HOST:PORT for Prometheus metrics over plain HTTP (empty: none). They name no secret, but keep the port
    # private: loopback, or a network only the monitoring system reaches.
    metrics_listen: str = ""
    # How long bot instance records are kept after they were last seen.
    instance_retention: timedelta = instances.DEFAULT_RETENTION


LOCK_FILE = "server.lock"
JOIN_WORKERS = 8
JOIN_MAX_RPCS = 64  # anonymous calls in progress or queued at once; more are refused (RESOURCE_EXHAUSTED)
_GRPC_OPTIONS = [
    ("grpc.max_concurrent_streams", 32),  # per connection: one client cannot pipeline the server's threads away
    ("grpc.max_connection_idle_ms", 5 * 60 * 1000),
    ("grpc.max_receive_message_length", 4 << 20),
]


def raise_descriptor_limit() -> None:
    """Every connection costs three descriptors; the usual soft limit of 1024 caps a server at about 300 at once.
    Raise it to the hard limit (the router derives its connection cap from the result)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY:
        hard = 1 << 20
    if soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        except (ValueError, OSError) as e:
            log.warning("could not raise the descriptor limit from %d to %d: %s", soft, hard, e)


def _lock_data_dir(data_dir: Path) -> int:
    """One server per data dir: a second would overwrite server.json and admin.identity and, on exit, delete the
    first's server.json. The lock is held for the process's life (the kernel drops it when the process dies)."""
    fd = os.open(data_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        running = ""
        with contextlib.suppress(OSError, ValueError, KeyError):
            info = json.loads((data_dir / SERVER_JSON).read_text())
            running = f" (pid {int(info['pid'])}, {info['address']})"
        raise PreconditionError(f"another server is running on {data_dir}{running}; stop it first, or give this one "
                                "its own --data-dir (several servers share a cluster through --storage "
                                "postgresql://...)") from None
    return fd


def _clean_up_after_a_dead_server(data_dir: Path) -> None:
    """Holding the lock, a server.json left behind is a predecessor's that died without cleaning up (SIGKILL, a
    crash): remove it, and the private socket directory it names."""
    stale = data_dir / SERVER_JSON
    with contextlib.suppress(OSError, ValueError):
        info = json.loads(stale.read_text())
        sockets = Path(str(info.get("socket_dir", "")))
        # Only a directory this code makes: machineid-* directly in a temp dir, owned by us.
        if sockets.name.startswith("machineid-") and sockets.is_dir() and sockets.stat().st_uid == os.getuid():
            shutil.rmtree(sockets, ignore_errors=True)
            log.info("removed the socket directory %s of a server that did not stop cleanly", sockets)
    stale.unlink(missing_ok=True)


class Server:
    def __init__(self, config: ServerConfig) -> None:
        self.config = config
        self.data_dir = config.data_dir
        self.data_dir.mkdir(parents=True, exist_ok=True)
        os.chmod(self.data_dir, 0o700)
        self._lock_fd = _lock_data_dir(self.data_dir)
        _clean_up_after_a_dead_server(self.data_dir)
        self.backend = open_backend(config.storage, self.data_dir)
        ca_key = KeySource.for_data_dir(self.data_dir, config.ca_key_file, config.ca_key_command)
        self.cluster = Cluster(self.backend, self._cluster_name(config.cluster_name), ca_key,
                               iam_verifier=iam.Verifier(list(config.iam_sts_endpoints)))
        self.janitor = Janitor(self.cluster.objects, config.audit_retention,
                               instance_retention=config.instance_retention)
        self._stopped = threading.Event()
        self._grpc: grpc.Server | None = None
        self._join_grpc: grpc.Server | None = None
        self._router: SNIRouter | None = None
        self._socket_dir: Path | None = None
        self._metrics_http: WSGIServer | None = None
        self.address = ""
        self.metrics_address = ""

    def _cluster_name(self, wanted: str) -> str:
        bad = v.DNS_NAME.check(wanted) if wanted else None
        if bad:
            # It ends up in every bot's ssh_config and known_hosts: a newline there would add directives.
            raise ValidationError([FieldViolation(("cluster_name",), f"--cluster-name {bad}")])
        try:
            stored = str(self.backend.get(CONFIG_KIND, "cluster").value["name"])
        except NotFoundError:
            name = wanted or default_cluster_name()
            try:
                self.backend.create(CONFIG_KIND, "cluster", {"name": name})
            except AlreadyExistsError:  # another server sharing the backend was first
                return self._cluster_name(wanted)
            return name
        if wanted and wanted != stored:
            raise PreconditionError(f'this data dir belongs to cluster "{stored}"; drop --cluster-name or pass '
                                    f'--cluster-name {stored} (a cluster cannot be renamed)')
        return stored

    def _server_credentials(self, hosts: list[str]) -> tuple[grpc.ServerCredentials, grpc.ServerCredentials]:
        """One server key and certificate, for the mutual-TLS listener and the join listener."""
        a = self.cluster.authority
        key = certs.new_key()
        leaf = x509_issuance.issue_server_cert(a.tls_key, a.tls_cert, key, hosts)
        chain = (certs.cert_pem(leaf) + a.tls_ca_pem).encode()  # the CA follows so first contact can pin it
        pair = [(certs.private_key_pem(key).encode(), chain)]

        def credentials(mtls: bool) -> grpc.ServerCredentials:
            return grpc.ssl_server_credentials(pair, root_certificates=a.tls_ca_pem.encode(), require_client_auth=mtls)

        return credentials(True), credentials(False)

    def start(self) -> str:
        host, port = split_address(self.config.listen)
        hosts = ["localhost", "127.0.0.1", "::1", socket.gethostname(), host]
        raise_descriptor_limit()
        # Two servers, each with its own threads: the join listener (no client certificate) serves only Ping, the
        # joins and health; the admin API is not even reachable there, so an anonymous caller cannot make it parse
        # anything, and a flood of anonymous calls (refused past JOIN_MAX_RPCS) cannot take the threads that
        # renewals and admin calls need.
        burst = max(JOIN_BURST, self.config.join_rate_per_source)
        call_limits = CallLimits(self.config.join_rate_per_source, burst)
        metrics = self._metrics(call_limits)
        interceptors = [metrics.interceptor()] if metrics else []
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=self.config.workers, thread_name_prefix="rpc"),
                             options=_GRPC_OPTIONS, interceptors=interceptors)
        join_server = grpc.server(futures.ThreadPoolExecutor(max_workers=JOIN_WORKERS, thread_name_prefix="join"),
                                  options=_GRPC_OPTIONS, maximum_concurrent_rpcs=JOIN_MAX_RPCS,
                                  interceptors=interceptors)
        health_servicer = health.HealthServicer()
        # Which client address each internal connection serves (filled by the router), so that anonymous calls
        # are limited per address, not only new connections.
        peers: dict[str, str] = {}
        join_servicer = JoinServicer(self.cluster, call_limits, peers)
        rpc.add_JoinServiceServicer_to_server(join_servicer, server)
        rpc.add_ClusterServiceServicer_to_server(ClusterServicer(self.cluster), server)
        rpc.add_NodeServiceServicer_to_server(NodeServicer(self.cluster, peers), server)
        health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
        rpc.add_JoinServiceServicer_to_server(join_servicer, join_server)
        health_pb2_grpc.add_HealthServicer_to_server(health_servicer, join_server)
        mtls_creds, join_creds = self._server_credentials(hosts)
        # The internal listeners are Unix sockets in a private directory: only the router (and this user) reach
        # them, and a Unix socket costs less per connection than a loopback TCP one.
        base = tempfile.gettempdir()
        # A Unix socket path must fit in 108 bytes: a long TMPDIR falls back to /tmp.
        socket_dir = Path(tempfile.mkdtemp(prefix="machineid-", dir=base if len(base) <= 64 else "/tmp"))
        mtls_path, join_path = str(socket_dir / "mtls.sock"), str(socket_dir / "join.sock")
        try:
            server.add_secure_port(f"unix:{mtls_path}", mtls_creds)
            join_server.add_secure_port(f"unix:{join_path}", join_creds)
            server.start()
            join_server.start()
            try:
                router = SNIRouter(host, port, {certs.SERVER_NAME: mtls_path, certs.JOIN_SERVER_NAME: join_path},
                                   default=join_path,  # binds the public port
                                   max_per_source=self.config.max_connections_per_source,
                                   anonymous=(join_path,), anonymous_rate=self.config.join_rate_per_source,
                                   anonymous_burst=burst, peers=peers)
            except OSError as e:
                raise PreconditionError(f"--listen {self.config.listen}: cannot listen there ({e.strerror}); stop "
                                        "what uses that port, or pick another with --listen HOST:PORT (port 0 "
                                        "picks a free one)") from None
        except BaseException:
            server.stop(0)
            join_server.stop(0)
            shutil.rmtree(socket_dir, ignore_errors=True)
            raise
        self._grpc, self._join_grpc, self._socket_dir = server, join_server, socket_dir
        router.start()
        self._router = router
        bound = router.address[1]
        self.address = f"[{host}]:{bound}" if ":" in host else f"{host}:{bound}"
        self.write_admin_identity()
        if metrics is not None:
            self._serve_metrics(metrics)
        for service in ("", "machineid.v1.ClusterService", "machineid.v1.JoinService"):
            health_servicer.set(service, health_pb2.HealthCheckResponse.SERVING)
        (self.data_dir / SERVER_JSON).write_text(json.dumps({
            "address": self.address, "cluster_name": self.cluster.cluster_name, "pid": os.getpid(),
            "version": __version__, "ca_pin": self.cluster.authority.pin, "socket_dir": str(socket_dir),
            **({"metrics_address": self.metrics_address} if self.metrics_address else {}),
        }, indent=2) + "\n")
        threading.Thread(target=self._refresh_admin, name="admin-identity", daemon=True).start()
        self.janitor.start()
        log.info("cluster %s listening on %s (CA pin %s)", self.cluster.cluster_name, self.address,
                 self.cluster.authority.pin)
        return self.address

    def _metrics(self, call_limits: CallLimits) -> ClusterMetrics | None:
        if not self.config.metrics_listen:
            return None
        from machineid.cluster.metrics import ClusterMetrics

        split_address(self.config.metrics_listen)  # a bad address fails before anything listens

        def refusals() -> dict[str, int]:
            router = self._router
            return {**(dict(router.refused) if router else {}), "anonymous_calls": call_limits.refused}

        metrics = ClusterMetrics(self.cluster, refusals, self.cluster.clock)
        metrics.time_store(self.backend)
        return metrics

    def _serve_metrics(self, metrics: ClusterMetrics) -> None:
        from prometheus_client import start_http_server

        host, port = split_address(self.config.metrics_listen)
        try:
            httpd, _ = start_http_server(port, host, registry=metrics.registry)
        except OSError as e:
            self.stop(0)
            raise PreconditionError(f"--metrics-listen {self.config.metrics_listen}: cannot listen there "
                                    f"({e.strerror}); pick another HOST:PORT") from None
        self._metrics_http = httpd
        bound = httpd.server_address[1]
        self.metrics_address = f"[{host}]:{bound}" if ":" in host else f"{host}:{bound}"
        log.info("metrics on http://%s/metrics", self.metrics_address)

    def write_admin_identity(self) -> None:
        key = certs.new_key()
        admin = Caller(user=ADMIN_USER, roles=["editor"],
                       ident=certs.CertIdentity(user=ADMIN_USER, roles=["editor"], cluster=self.cluster.cluster_name))
        out = self.cluster.sign_user(admin, ADMIN_USER, certs.public_key_pem(key.public_key()), ADMIN_TTL)
        ident = Identity(key_pem=certs.private_key_pem(key), tls_cert=out.tls_cert, tls_ca_certs=out.tls_ca_certs,
                         ssh_cert=out.ssh_cert, ssh_host_ca_keys=out.ssh_host_ca_keys)
        write_private(self.data_dir / ADMIN_IDENTITY, ident.dumps())

    def _refresh_admin(self) -> None:
        while not self._stopped.wait(ADMIN_REFRESH.total_seconds()):
            try:
                self.write_admin_identity()
            except Exception:
                log.exception("could not renew the admin identity")

    def wait(self) -> None:
        self._stopped.wait()

    def stop(self, grace: float = 5.0) -> None:
        if self._stopped.is_set():
            return
        self._stopped.set()
        log.info("shutting down")
        self.janitor.stop()
        # gRPC first: it refuses new calls and lets calls in flight finish (their bytes go through the router).
        for srv in (self._grpc, self._join_grpc):
            if srv is not None:
                srv.stop(grace).wait()
        if self._router is not None:
            self._router.stop()
        if self._metrics_http is not None:
            self._metrics_http.shutdown()
            self._metrics_http.server_close()
        if self._socket_dir is not None:
            shutil.rmtree(self._socket_dir, ignore_errors=True)
        (self.data_dir / SERVER_JSON).unlink(missing_ok=True)
        self.backend.close()
        log.info("stopped")
