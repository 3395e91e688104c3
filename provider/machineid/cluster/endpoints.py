"""The cluster's two gRPC servers on their internal Unix sockets: what the server runs in its own process with one
worker, and what each worker process runs with several (cluster/workers.py). The router in front of them owns the
public port (cluster/router.py).

Two servers, each with its own threads: the join listener (no client certificate) serves only Ping, the joins and
health; the admin API is not even reachable there, so an anonymous caller cannot make it parse anything, and a
flood of anonymous calls (refused past JOIN_MAX_RPCS) cannot take the threads that renewals and admin calls need.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent import futures
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from machineid.api.v1 import cluster_pb2_grpc as rpc
from machineid.cluster.grpc_api import ClusterServicer, JoinServicer, NodeServicer
from machineid.cluster.limits import CallLimits, Limiter, RateLimits, SharedRateLimits
from machineid.cluster.service import Cluster

if TYPE_CHECKING:
    from machineid.cluster.metrics import CallMetrics

THREADS = 16
JOIN_THREADS = 8
JOIN_MAX_RPCS = 64  # anonymous calls in progress or queued at once; more are refused (RESOURCE_EXHAUSTED)
_GRPC_OPTIONS = [
    ("grpc.max_concurrent_streams", 32),  # per connection: one client cannot pipeline the server's threads away
    ("grpc.max_connection_idle_ms", 5 * 60 * 1000),
    ("grpc.max_receive_message_length", 4 << 20),
]


@dataclass(frozen=True)
class TLSPair:
    """The server's key and certificate chain (PEM), and the CA that client certificates must chain to."""

    key_pem: bytes = field(repr=False)
    chain_pem: bytes
    client_ca_pem: bytes

    def credentials(self, mtls: bool) -> grpc.ServerCredentials:
        return grpc.ssl_server_credentials([(self.key_pem, self.chain_pem)], root_certificates=self.client_ca_pem,
                                           require_client_auth=mtls)


@dataclass(frozen=True)
class Limits:
    """Anonymous calls per client address: `rate` a second, `burst` at once, for the whole server. With several
    worker processes, `shared` names the file of buckets they share (SharedRateLimits), with its hash key."""

    rate: float
    burst: float
    shared: str = ""
    key: bytes = field(default=b"", repr=False)

    def limiter(self) -> Limiter:
        if self.shared:
            return SharedRateLimits(Path(self.shared), self.rate, self.burst, self.key)
        return RateLimits(self.rate, self.burst)


class Endpoints:
    def __init__(self, cluster: Cluster, tls: TLSPair, limits: Limits, peer_tag: str,
                 metrics: CallMetrics | None = None, threads: int = THREADS) -> None:
        """Anonymous calls are limited per address on both listeners together (the mutual-TLS one serves them too),
        and across worker processes when `limits` is shared."""
        on_refused: Callable[[], None] | None = metrics.count_anonymous_refusal if metrics else None
        interceptors: list[Any] = [metrics.interceptor()] if metrics else []
        self.health = health.HealthServicer()
        self.grpc = grpc.server(futures.ThreadPoolExecutor(max_workers=threads, thread_name_prefix="rpc"),
                                options=_GRPC_OPTIONS, interceptors=interceptors)
        self.join_grpc = grpc.server(futures.ThreadPoolExecutor(max_workers=JOIN_THREADS, thread_name_prefix="join"),
                                     options=_GRPC_OPTIONS, maximum_concurrent_rpcs=JOIN_MAX_RPCS,
                                     interceptors=interceptors)
        join_servicer = JoinServicer(cluster, CallLimits(limits.limiter(), on_refused), peer_tag)
        rpc.add_JoinServiceServicer_to_server(join_servicer, self.grpc)
        rpc.add_ClusterServiceServicer_to_server(ClusterServicer(cluster), self.grpc)
        rpc.add_NodeServiceServicer_to_server(NodeServicer(cluster, peer_tag), self.grpc)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.grpc)
        rpc.add_JoinServiceServicer_to_server(join_servicer, self.join_grpc)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.join_grpc)
        self.tls = tls

    def start(self, mtls_path: str, join_path: str) -> None:
        """Listens on the two Unix sockets and reports SERVING."""
        try:
            self.grpc.add_secure_port(f"unix:{mtls_path}", self.tls.credentials(True))
            self.join_grpc.add_secure_port(f"unix:{join_path}", self.tls.credentials(False))
            self.grpc.start()
            self.join_grpc.start()
        except BaseException:
            self.stop(0)
            raise
        for service in ("", "machineid.v1.ClusterService", "machineid.v1.JoinService"):
            self.health.set(service, health_pb2.HealthCheckResponse.SERVING)

    def stop(self, grace: float) -> None:
        """Refuses new calls and lets those in flight finish within `grace` seconds."""
        for srv in (self.grpc, self.join_grpc):
            srv.stop(grace).wait()
