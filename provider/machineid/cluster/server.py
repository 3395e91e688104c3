"""Running the cluster: storage, CAs, the SNI router on the public port in front of the internal gRPC listeners
(cluster/endpoints.py: in this process with one worker, in worker processes with several, cluster/workers.py), the
admin identity file, the janitor, metrics, and a clean shutdown.

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
import secrets
import shutil
import socket
import tempfile
import threading
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from machineid import __version__
from machineid.api import certs
from machineid.api.client import split_address
from machineid.api.identity import Identity, write_private
from machineid.cluster import iam, instances, x509_issuance
from machineid.cluster.endpoints import THREADS, Endpoints, Limits, TLSPair
from machineid.cluster.janitor import DEFAULT_AUDIT_RETENTION, Janitor
from machineid.cluster.router import JOIN_BURST, JOIN_RATE, MAX_PER_SOURCE, SNIRouter
from machineid.cluster.sealing import KeySource
from machineid.cluster.service import ADMIN_USER, Caller, Cluster
from machineid.cluster.store.base import Backend
from machineid.cluster.store.sqlite import SQLiteBackend
from machineid.cluster.worker import WorkerSpec
from machineid.cluster.workers import Workers, socket_paths
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

    from prometheus_client import CollectorRegistry
    from prometheus_client.registry import Collector

    from machineid.cluster.metrics import CallMetrics, ClusterMetrics

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
    # Processes serving calls (each with `threads` threads); with more than one, the router in this process spreads
    # connections over them (cluster/workers.py).
    workers: int = 1
    threads: int = THREADS
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
    # How worker processes log (as this process does).
    log_level: str = "info"
    log_format: str = "json"


MAX_DEFAULT_WORKERS = 16


def default_workers() -> int:
    """The cores this process may run on (its CPU affinity, which a container or taskset narrows), up to
    MAX_DEFAULT_WORKERS: each worker holds a store connection (PostgreSQL allows 100 by default), and past that many
    the store's write lock, not the cores, is the limit. --workers sets more."""
    return max(1, min(MAX_DEFAULT_WORKERS, len(os.sched_getaffinity(0))))


LOCK_FILE = "server.lock"
STOP_GRACE = 5.0  # seconds calls in flight get to finish at shutdown


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
        self._ca_key = ca_key
        self._stopped = threading.Event()
        self._endpoints: Endpoints | None = None  # with one worker, in this process
        self._workers: Workers | None = None  # with more
        self._call_metrics: CallMetrics | None = None
        self._registry: CollectorRegistry | None = None
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

    def _tls(self, hosts: list[str]) -> TLSPair:
        """One server key and certificate, for the mutual-TLS listener and the join listener (of every worker)."""
        a = self.cluster.authority
        key = certs.new_key()
        leaf = x509_issuance.issue_server_cert(a.tls_key, a.tls_cert, key, hosts)
        chain = (certs.cert_pem(leaf) + a.tls_ca_pem).encode()  # the CA follows so first contact can pin it
        return TLSPair(certs.private_key_pem(key).encode(), chain, a.tls_ca_pem.encode())

    def start(self) -> str:
        host, port = split_address(self.config.listen)
        hosts = ["localhost", "127.0.0.1", "::1", socket.gethostname(), host]
        if self.config.metrics_listen:
            split_address(self.config.metrics_listen)  # a bad address fails before anything listens
        raise_descriptor_limit()
        limits = Limits(self.config.join_rate_per_source, max(JOIN_BURST, self.config.join_rate_per_source))
        tls = self._tls(hosts)
        peer_tag = f"machineid-{secrets.token_hex(6)}-"
        # The internal listeners are Unix sockets in a private directory: only the router (and this user) reach
        # them, and a Unix socket costs less per connection than a loopback TCP one.
        base = tempfile.gettempdir()
        # A Unix socket path must fit in 108 bytes: a long TMPDIR falls back to /tmp.
        socket_dir = Path(tempfile.mkdtemp(prefix="machineid-", dir=base if len(base) <= 64 else "/tmp"))
        self._socket_dir = socket_dir
        try:
            mtls_paths, join_paths = self._start_workers(socket_dir, tls, limits, peer_tag)
            try:
                router = SNIRouter(host, port, {certs.SERVER_NAME: mtls_paths, certs.JOIN_SERVER_NAME: join_paths},
                                   default=join_paths,  # binds the public port
                                   max_per_source=self.config.max_connections_per_source,
                                   anonymous=tuple(join_paths), anonymous_rate=limits.rate,
                                   anonymous_burst=limits.burst, peer_tag=peer_tag)
            except OSError as e:
                raise PreconditionError(f"--listen {self.config.listen}: cannot listen there ({e.strerror}); stop "
                                        "what uses that port, or pick another with --listen HOST:PORT (port 0 "
                                        "picks a free one)") from None
        except BaseException:
            self._stop_serving(0)
            shutil.rmtree(socket_dir, ignore_errors=True)
            raise
        router.start()
        self._router = router
        bound = router.address[1]
        self.address = f"[{host}]:{bound}" if ":" in host else f"{host}:{bound}"
        self.write_admin_identity()
        if self.config.metrics_listen:
            self._serve_metrics(self._exposed_metrics())
        self._announce()
        threading.Thread(target=self._refresh_admin, name="admin-identity", daemon=True).start()
        self.janitor.start()
        log.info("cluster %s listening on %s with %d worker(s) (CA pin %s)", self.cluster.cluster_name, self.address,
                 self.config.workers, self.cluster.authority.pin)
        return self.address

    def _announce(self) -> None:
        """server.json: where this server listens (and its worker processes), for `ctl --data-dir` and tests. Written
        whole to a new file and renamed over the old, so a reader never sees half of it."""
        path = self.data_dir / SERVER_JSON
        tmp = path.with_name(f".{SERVER_JSON}.{os.getpid()}")
        tmp.write_text(json.dumps({
            "address": self.address, "cluster_name": self.cluster.cluster_name, "pid": os.getpid(),
            "version": __version__, "ca_pin": self.cluster.authority.pin, "socket_dir": str(self._socket_dir),
            "workers": self.config.workers, "worker_pids": self._workers.pids if self._workers else [],
            **({"metrics_address": self.metrics_address} if self.metrics_address else {}),
        }, indent=2) + "\n")
        tmp.replace(path)

    def _start_workers(self, socket_dir: Path, tls: TLSPair, limits: Limits,
                       peer_tag: str) -> tuple[list[str], list[str]]:
        """The gRPC servers: in this process with one worker, else in worker processes. Their socket paths."""
        if self.config.workers == 1:
            if self.config.metrics_listen:
                from prometheus_client import CollectorRegistry

                from machineid.cluster.metrics import CallMetrics

                self._registry = CollectorRegistry()
                self._call_metrics = CallMetrics(self._registry)
                self._call_metrics.time_store(self.backend)
                self._call_metrics.audit_backlog.set_function(self.cluster.objects.pending_denials)
            endpoints = Endpoints(self.cluster, tls, limits, peer_tag, self._call_metrics,
                                  threads=self.config.threads)
            mtls_path, join_path = socket_paths(socket_dir, 0)
            endpoints.start(mtls_path, join_path)
            self._endpoints = endpoints
            return [mtls_path], [join_path]
        metrics_dir = socket_dir / "metrics" if self.config.metrics_listen else None
        if metrics_dir is not None:
            metrics_dir.mkdir(mode=0o700)
        mtls_path, join_path = socket_paths(socket_dir, 0)
        stamp = socket_dir / "locks.stamp"  # each worker maps it (the first one makes it)
        spec = WorkerSpec(
            index=0, workers=self.config.workers, data_dir=str(self.data_dir), storage=self.config.storage,
            cluster_name=self.cluster.cluster_name, ca_key=self._ca_key.text(create=False)[0],
            iam_sts_endpoints=list(self.config.iam_sts_endpoints), key_pem=tls.key_pem.decode(),
            chain_pem=tls.chain_pem.decode(), client_ca_pem=tls.client_ca_pem.decode(), rate=limits.rate,
            burst=limits.burst, peer_tag=peer_tag, mtls_path=mtls_path, join_path=join_path, stamp_path=str(stamp),
            buckets_path=str(socket_dir / "calls.buckets"), buckets_key=secrets.token_hex(32),
            metrics=metrics_dir is not None, grace=STOP_GRACE, log_level=self.config.log_level,
            log_format=self.config.log_format)
        workers = Workers(spec, self.config.workers, metrics_dir, on_replaced=self._announce)
        workers.start()
        self._workers = workers
        return workers.mtls_paths, workers.join_paths

    def _exposed_metrics(self) -> ClusterMetrics:
        from machineid.cluster.metrics import ClusterMetrics

        if self._workers is not None:
            from prometheus_client.multiprocess import MultiProcessCollector

            assert self._socket_dir is not None
            calls: Collector = MultiProcessCollector(None, str(self._socket_dir / "metrics"))  # type: ignore[no-untyped-call]
        else:
            assert self._registry is not None
            calls = self._registry

        def refusals() -> dict[str, int]:
            router = self._router
            return dict(router.refused) if router else {}

        return ClusterMetrics(self.cluster, calls, refusals, self.cluster.clock)

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

    def _stop_serving(self, grace: float) -> None:
        if self._endpoints is not None:
            self._endpoints.stop(grace)
        if self._workers is not None:
            self._workers.stop(grace)

    def stop(self, grace: float = STOP_GRACE) -> None:
        if self._stopped.is_set():
            return
        self._stopped.set()
        log.info("shutting down")
        if self._workers is not None:
            self._workers.closing()
        self.janitor.stop()
        # gRPC first: it refuses new calls and lets calls in flight finish (their bytes go through the router).
        self._stop_serving(grace)
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
