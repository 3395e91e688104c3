"""The server's Prometheus metrics (`--metrics-listen`): what an operator of a fleet alerts on.

Calls are measured by one gRPC interceptor (every RPC's latency and status code; joins by method and renewals by
result are derived from the same call), so no handler carries metrics code. What is state rather than events (the
CA's expiry, live instances) is read when Prometheus scrapes, and the one that costs a scan (live instances) is
cached. Each server has its own registry: several servers in one process (the tests) do not share counters.

With several worker processes (`--workers`), each counts its own calls (CallMetrics) into prometheus_client's
multiprocess files in the server's private directory, and the front process, which serves the scrape, adds them
up (MultiProcessCollector) with what it knows itself: the router's refusals and the store's state.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TypeVar

import grpc
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from machineid.cluster.records import LastRenewal
from machineid.cluster.service import Cluster
from machineid.model import codec

# The join RPCs and the join method each one serves (the delegated methods share one RPC).
JOIN_RPCS = {"RegisterUsingToken": "token", "RegisterUsingIAM": "iam", "RegisterUsingBoundKeypair": "bound_keypair",
             "RegisterUsingOIDC": "delegated"}
RENEWAL_RPCS = frozenset({"RenewCerts", "AgentCycle"})  # a bot agent renews with either
# The store operations timed (what every call does against SQLite or PostgreSQL).
STORE_OPERATIONS = ("get", "list", "list_page", "list_by_bot", "create", "update", "delete", "audit", "count")
LATENCY_BUCKETS = (.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1.0, 2.5, 5.0, 10.0)
STORE_BUCKETS = (.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, 1.0)
LIVE_CACHE_SECONDS = 30.0
REFUSALS = "machineid_limit_refusals"
REFUSALS_HELP = "Connections and calls refused by the server's limits since it started, by limit"

T = TypeVar("T")
if TYPE_CHECKING:  # generic only in the stubs
    Handler = grpc.RpcMethodHandler[Any, Any]
    _InterceptorBase = grpc.ServerInterceptor[Any, Any]
else:
    _InterceptorBase = grpc.ServerInterceptor


def split_method(full: str) -> tuple[str, str]:
    """"/machineid.v1.JoinService/RegisterUsingToken" -> ("machineid.v1.JoinService", "RegisterUsingToken")."""
    _, service, method = [*full.split("/"), "", ""][:3]
    return service, method


class CallMetrics:
    """What a process serving calls counts. `registry` None: into the multiprocess files (a worker process, started
    with PROMETHEUS_MULTIPROC_DIR set), summed by the front's MultiProcessCollector."""

    def __init__(self, registry: CollectorRegistry | None) -> None:
        self.rpc_latency = Histogram("machineid_rpc_duration_seconds", "gRPC calls served, by service, method and "
                                     "status code", ["service", "method", "code"], buckets=LATENCY_BUCKETS,
                                     registry=registry)
        self.joins = Counter("machineid_joins", "Joins by join method and result (ok or the gRPC status code)",
                             ["method", "result"], registry=registry)
        self.renewals = Counter("machineid_renewals", "Renewals of bot identities by result (ok or the gRPC status "
                                "code)", ["result"], registry=registry)
        self.store_latency = Histogram("machineid_store_operation_duration_seconds", "Store (SQLite or PostgreSQL) "
                                       "operations, by operation", ["operation"], buckets=STORE_BUCKETS,
                                       registry=registry)
        # Merged with the router's refusals into one family (see _Merged).
        self.refusals = Counter(REFUSALS, REFUSALS_HELP, ["limit"], registry=registry)
        self.audit_backlog = Gauge("machineid_audit_backlog", "Refused anonymous calls counted but not yet written "
                                   "to the audit log (written as one summary record per action when the window "
                                   "ends)", registry=registry, multiprocess_mode="livesum")

    def count_anonymous_refusal(self) -> None:
        self.refusals.labels("anonymous_calls").inc()

    # ---------------------------------------------------------------- calls
    def interceptor(self) -> grpc.ServerInterceptor[Any, Any]:
        return _Interceptor(self)

    def observe_call(self, full_method: str, code: grpc.StatusCode, seconds: float) -> None:
        service, method = split_method(full_method)
        name = code.name
        self.rpc_latency.labels(service, method, name).observe(seconds)
        result = "ok" if code == grpc.StatusCode.OK else name.lower()
        if method in JOIN_RPCS:
            self.joins.labels(JOIN_RPCS[method], result).inc()
        elif method in RENEWAL_RPCS:
            self.renewals.labels(result).inc()

    # ---------------------------------------------------------------- the store
    def time_store(self, backend: Any) -> None:
        """Wraps the backend's operations in place with a timer (the backend classes stay free of metrics)."""
        for op in STORE_OPERATIONS:
            fn = getattr(backend, op, None)
            if callable(fn):
                setattr(backend, op, self._timed(op, fn))

    def _timed(self, op: str, fn: Callable[..., T]) -> Callable[..., T]:
        observe = self.store_latency.labels(op).observe

        def timed(*args: Any, **kwargs: Any) -> T:
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                observe(time.perf_counter() - start)

        return timed


class ClusterMetrics:
    """The registry the server exposes: the calls' metrics (`calls`: this process's CallMetrics registry, or the
    workers' through a MultiProcessCollector), the router's refusals (`refusals`) merged into theirs, and the
    store's state."""

    def __init__(self, cluster: Cluster, calls: Collector, refusals: Callable[[], Mapping[str, int]] | None = None,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.registry = CollectorRegistry()
        self.registry.register(_Merged(calls, refusals or dict))
        self.registry.register(_StateCollector(cluster, clock))


class _Merged(Collector):
    """The calls' metrics, with the refusals counted where calls are served added to the router's: one family."""

    def __init__(self, calls: Collector, refusals: Callable[[], Mapping[str, int]]) -> None:
        self.calls = calls
        self.refusals = refusals

    def collect(self) -> Iterator[Metric]:
        counts: dict[str, float] = dict(self.refusals())
        for family in self.calls.collect():
            if family.name != REFUSALS:
                yield family
                continue
            for sample in family.samples:
                if sample.name == REFUSALS + "_total":
                    limit = sample.labels["limit"]
                    counts[limit] = counts.get(limit, 0) + sample.value
        merged = CounterMetricFamily(REFUSALS, REFUSALS_HELP, labels=["limit"])
        for limit, count in sorted(counts.items()):
            merged.add_metric([limit], count)
        yield merged


class _Interceptor(_InterceptorBase):
    def __init__(self, metrics: CallMetrics) -> None:
        self.metrics = metrics

    def intercept_service(self, continuation: Callable[[grpc.HandlerCallDetails], Handler | None],
                          handler_call_details: grpc.HandlerCallDetails) -> Handler | None:
        handler = continuation(handler_call_details)
        if handler is None or handler.unary_unary is None:
            return handler  # every cluster RPC is unary; health's Watch stream is not measured
        behavior = handler.unary_unary
        full = handler_call_details.method
        observe = self.metrics.observe_call

        def measured(request: Any, context: grpc.ServicerContext) -> Any:
            start = time.perf_counter()
            try:
                answer = behavior(request, context)
            except BaseException:
                observe(full, _code(context) or grpc.StatusCode.UNKNOWN, time.perf_counter() - start)
                raise
            observe(full, _code(context) or grpc.StatusCode.OK, time.perf_counter() - start)
            return answer

        return grpc.unary_unary_rpc_method_handler(measured, request_deserializer=handler.request_deserializer,
                                                   response_serializer=handler.response_serializer)


def _code(context: grpc.ServicerContext) -> grpc.StatusCode | None:
    code = context.code()  # type: ignore[attr-defined]  # in grpcio since 1.38, not in the stubs
    return code if isinstance(code, grpc.StatusCode) else None


class _StateCollector(Collector):
    """Read at each scrape: the CA certificate's expiry and live instances."""

    def __init__(self, cluster: Cluster, clock: Callable[[], datetime]) -> None:
        self.cluster = cluster
        self.clock = clock
        self._live: tuple[float, int, int] | None = None  # (when, records, live)
        self._lock = threading.Lock()

    def collect(self) -> Iterator[Metric]:
        expiry = GaugeMetricFamily("machineid_ca_certificate_expiry_timestamp_seconds", "When the cluster's TLS CA "
                                   "certificate expires (the SSH CAs are keys, with no expiry)", labels=["ca"])
        expiry.add_metric(["tls"], self.cluster.authority.tls_cert.not_valid_after_utc.timestamp())
        yield expiry
        live = GaugeMetricFamily("machineid_live_instances", "Bots holding an unexpired renewable identity (their "
                                 "latest renewal's certificates), recounted when bots renew for the first time, else "
                                 f"every {LIVE_CACHE_SECONDS:g}s")
        live.add_metric([], self._live_instances())
        yield live

    def _live_instances(self) -> int:
        """A scan of the bots' last renewals, redone when their number changed or the cache is older than
        LIVE_CACHE_SECONDS (certificates expiring between is what the cache may miss)."""
        backend = self.cluster.objects.backend
        with self._lock:
            now, records = time.monotonic(), backend.count(LastRenewal.KIND)
            if self._live is None or self._live[1] != records or now - self._live[0] >= LIVE_CACHE_SECONDS:
                self._live = (now, records, _count_unexpired(backend.list(LastRenewal.KIND), self.clock()))
            return self._live[2]


def _count_unexpired(items: Iterable[Any], now: datetime) -> int:
    n = 0
    for item in items:
        expires = item.value.get("expires")
        if expires and codec.parse_time(expires) > now:
            n += 1
    return n
