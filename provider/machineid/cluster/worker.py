"""One worker process of `machineid server start --workers N` (started by cluster/workers.py, never by hand): the
cluster's gRPC servers on this worker's own Unix sockets, over the shared store.

It reads its WorkerSpec as one JSON line on stdin (the sealing key and the server's TLS key come this way, not
through a file or the environment), answers "ready" on stdout once it listens, and stops on SIGTERM, or when its
stdin reaches EOF: the server that started it is gone, and a worker must not outlive it. SIGINT is the server's
to handle (Ctrl-C reaches the whole process group).
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

log = logging.getLogger("machineid.cluster.worker")
HOUSEKEEPING_SECONDS = 1.0


@dataclass(frozen=True)
class WorkerSpec:
    index: int
    workers: int
    data_dir: str
    storage: str
    cluster_name: str
    ca_key: str = field(repr=False)  # the sealing key (base64)
    iam_sts_endpoints: list[str]
    key_pem: str = field(repr=False)
    chain_pem: str
    client_ca_pem: str
    rate: float
    burst: float
    peer_tag: str
    mtls_path: str
    join_path: str
    stamp_path: str
    buckets_path: str  # the anonymous call limits' buckets, shared by the workers (limits.SharedRateLimits)
    buckets_key: str = field(repr=False)  # their hash key (hex)
    metrics: bool
    grace: float
    log_level: str
    log_format: str

    def dumps(self) -> str:
        return json.dumps(asdict(self)) + "\n"

    @classmethod
    def loads(cls, line: str) -> WorkerSpec:
        return cls(**json.loads(line))


def main() -> int:
    spec = WorkerSpec.loads(sys.stdin.readline())
    from machineid.cli import logs

    logs.setup(spec.log_level, spec.log_format)
    stop = Stop()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    # Ctrl-C in a terminal reaches the whole process group: the server handles it, and stops its workers itself.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    threading.Thread(target=_until_eof, args=(stop,), name="parent-watch", daemon=True).start()
    try:
        serve(spec, stop)
    except Exception as e:  # the server reports the exit; the reason goes to the log it shares
        log.error("worker %d could not start: %s", spec.index, e)
        return 1
    return 0


class Stop:
    """A flag a signal handler may set: a plain attribute, not a threading.Event, whose lock the interrupted main
    thread may be holding in wait()."""

    def __init__(self) -> None:
        self.requested = False

    def set(self) -> None:
        self.requested = True

    def wait(self, seconds: float) -> bool:
        """Sleeps up to `seconds` (in short steps, to answer a stop promptly); True once a stop was requested."""
        end = time.monotonic() + seconds
        while not self.requested and (left := end - time.monotonic()) > 0:
            time.sleep(min(0.1, left))
        return self.requested


def _until_eof(stop: Stop) -> None:
    while sys.stdin.readline():
        pass
    stop.set()


def serve(spec: WorkerSpec, stop: Stop) -> None:
    from machineid.cluster import iam
    from machineid.cluster.endpoints import Endpoints, Limits, TLSPair
    from machineid.cluster.objects import DENIALS_PER_WINDOW
    from machineid.cluster.sealing import KeySource
    from machineid.cluster.server import open_backend
    from machineid.cluster.service import Cluster
    from machineid.cluster.stamp import ChangeStamp

    data_dir = Path(spec.data_dir)
    backend = open_backend(spec.storage, data_dir)
    cluster = Cluster(backend, spec.cluster_name, KeySource(file=data_dir / "ca.key", environ=spec.ca_key),
                      iam_verifier=iam.Verifier(spec.iam_sts_endpoints))
    cluster.objects.locks.stamp = ChangeStamp(Path(spec.stamp_path))
    # The server's bound on audit records written for anonymous callers holds for all its workers together.
    cluster.objects.denials_per_window = max(1, DENIALS_PER_WINDOW // spec.workers)
    metrics = None
    if spec.metrics:  # PROMETHEUS_MULTIPROC_DIR is set: the values go to files the server sums
        from machineid.cluster.metrics import CallMetrics

        metrics = CallMetrics(None)
        metrics.time_store(backend)
    endpoints = Endpoints(cluster, TLSPair(spec.key_pem.encode(), spec.chain_pem.encode(),
                                           spec.client_ca_pem.encode()),
                          Limits(spec.rate, spec.burst, spec.buckets_path, bytes.fromhex(spec.buckets_key)),
                          spec.peer_tag, metrics)
    for path in (spec.mtls_path, spec.join_path):  # a predecessor's, when this worker replaces one that died
        Path(path).unlink(missing_ok=True)
    endpoints.start(spec.mtls_path, spec.join_path)
    print("ready", flush=True)
    # Nothing more goes to stdout: the server reads no further, and a full pipe would block whoever wrote to it.
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.close(devnull)
    log.info("worker %d (pid %d) serving", spec.index, os.getpid())
    while not stop.wait(HOUSEKEEPING_SECONDS):
        try:
            cluster.objects.flush_denials()  # the server's janitor does this for its own process only
            if metrics is not None:
                metrics.audit_backlog.set(cluster.objects.pending_denials())
        except Exception:
            log.exception("worker %d: housekeeping failed", spec.index)
    endpoints.stop(spec.grace)
    backend.close()


if __name__ == "__main__":
    sys.exit(main())
