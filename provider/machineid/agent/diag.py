"""The bot agent's diagnostics listener (`bot start --diag-listen HOST:PORT`), like tbot's: Prometheus metrics at
/metrics, liveness at /healthz and readiness at /readyz, for a supervisor or an orchestrator's probes.

Ready once every destination holds certificates from a cycle that succeeded and they have not expired. Unhealthy
when renewal keeps failing (FAILURES_UNHEALTHY cycles in a row could not reach the cluster) or the certificates
have expired: a restart or an operator is needed. Before its first cycle the agent is healthy and not ready.
The answers are JSON, naming the reason, and carry no secret (no token, key or certificate).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import choose_encoder

from machineid import __version__
from machineid.api.client import split_address
from machineid.api.identity import Identity
from machineid.model import codec
from machineid.model.errors import PreconditionError
from machineid.model.instances import DestinationHealth

FAILURES_UNHEALTHY = 3
CYCLE_BUCKETS = (.01, .025, .05, .1, .25, .5, 1.0, 2.5, 5.0, 10.0, 30.0)


class Diagnostics:
    """What the agent's loop reports after each cycle, and what the listener answers from."""

    def __init__(self, destinations: Sequence[Path], clock: Callable[[], datetime] = lambda: datetime.now(UTC)
                 ) -> None:
        self.destinations = [str(d) for d in destinations]
        self.clock = clock
        self._lock = threading.Lock()
        self.expires: datetime | None = None
        self.failures = 0
        self.last_error = ""
        self.registry = CollectorRegistry()
        self.cycles = Counter("machineid_agent_cycles", "Agent cycles (renew or join, then write the destinations) "
                              "by result: ok, unreachable (retried) or refused (the agent stops)", ["result"],
                              registry=self.registry)
        self.cycle_seconds = Histogram("machineid_agent_cycle_duration_seconds", "How long a cycle took",
                                       buckets=CYCLE_BUCKETS, registry=self.registry)
        self.expiry = Gauge("machineid_agent_certificate_expiry_timestamp_seconds", "When the certificates in the "
                            "destinations expire", registry=self.registry)
        self.last_success = Gauge("machineid_agent_last_success_timestamp_seconds", "When a cycle last succeeded",
                                  registry=self.registry)
        self.failing = Gauge("machineid_agent_consecutive_failures", "Cycles in a row that could not reach the "
                             "cluster", registry=self.registry)
        self.healthy_dest = Gauge("machineid_agent_destination_healthy", "1 when the destination holds unexpired "
                                  "certificates from the last successful cycle", ["destination"],
                                  registry=self.registry)
        info = Gauge("machineid_agent_info", "The agent's version", ["version"], registry=self.registry)
        info.labels(__version__).set(1)
        for d in self.destinations:
            self.healthy_dest.labels(d).set(0)

    # ---------------------------------------------------------------- reported by the loop
    def cycle_ok(self, identity: Identity, seconds: float, destinations: Sequence[DestinationHealth]) -> None:
        """destinations: how each fared in this cycle (the agent's own account, which its heartbeat reports)."""
        with self._lock:
            self.expires, self.failures, self.last_error = identity.expires, 0, ""
        self.cycles.labels("ok").inc()
        self.cycle_seconds.observe(seconds)
        self.expiry.set(identity.expires.timestamp())
        self.last_success.set(time.time())
        self.failing.set(0)
        for d in destinations:
            self.healthy_dest.labels(d.path).set(1 if d.healthy else 0)

    def cycle_failed(self, error: Exception, seconds: float, *, final: bool = False) -> None:
        with self._lock:
            self.failures += 1
            self.last_error = str(error)
            failures = self.failures
        self.cycles.labels("refused" if final else "unreachable").inc()
        self.cycle_seconds.observe(seconds)
        self.failing.set(failures)

    # ---------------------------------------------------------------- answered by the listener
    def _expired(self) -> bool:
        return self.expires is not None and self.expires <= self.clock()

    def health(self) -> tuple[bool, str]:
        with self._lock:
            if self._expired():
                assert self.expires is not None
                return False, f"the certificates expired at {codec.format_time(self.expires)}"
            if self.failures >= FAILURES_UNHEALTHY:
                return False, f"{self.failures} cycles in a row failed; the last: {self.last_error}"
            return True, "renewing" if self.expires else "starting"

    def readiness(self) -> tuple[bool, str]:
        with self._lock:
            if self.expires is None:
                return False, "no certificates written yet"
            if self._expired():
                return False, f"the certificates expired at {codec.format_time(self.expires)}"
            return True, f"certificates valid until {codec.format_time(self.expires)}"

    def metrics(self, accept: str) -> tuple[bytes, str]:
        """The exposition format the scraper asks for (Accept), as Prometheus' own server chooses it."""
        if self._expired():  # expired since the last cycle: no destination holds usable certificates
            for d in self.destinations:
                self.healthy_dest.labels(d).set(0)
        encode, content_type = choose_encoder(accept)
        return encode(self.registry), content_type


class _Handler(BaseHTTPRequestHandler):
    diag: Diagnostics

    def do_GET(self) -> None:  # the name http.server calls
        path = self.path.split("?", 1)[0]
        if path == "/metrics":
            body, content_type = self.diag.metrics(self.headers.get("Accept", ""))
            self._answer(200, content_type, body)
            return
        probe = {"/healthz": self.diag.health, "/readyz": self.diag.readiness}.get(path)
        if probe is None:
            self._answer(404, "application/json", b'{"error": "not found: /metrics, /healthz, /readyz"}\n')
            return
        ok, reason = probe()
        answer = json.dumps({"status": "ok" if ok else "unhealthy" if path == "/healthz" else "not ready",
                             "reason": reason}) + "\n"
        self._answer(200 if ok else 503, "application/json", answer.encode())

    def _answer(self, code: int, content_type: str, body: bytes) -> None:
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        """Probes every few seconds must not fill the agent's log."""


class DiagServer:
    """The listener, in a daemon thread; `address` is where it listens (port 0 picks one)."""

    def __init__(self, listen: str, diag: Diagnostics) -> None:
        host, port = split_address(listen)
        handler = type("Handler", (_Handler,), {"diag": diag})
        try:
            self.httpd = ThreadingHTTPServer((host, port), handler)
        except OSError as e:
            raise PreconditionError(f"--diag-listen {listen}: cannot listen there ({e.strerror}); pick another "
                                    "HOST:PORT") from None
        self.httpd.daemon_threads = True
        bound = self.httpd.server_address[1]
        self.address = f"[{host}]:{bound}" if ":" in host else f"{host}:{bound}"
        self._thread = threading.Thread(target=self.httpd.serve_forever, name="diag", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
