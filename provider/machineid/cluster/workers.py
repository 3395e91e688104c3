"""The worker processes of `machineid server start --workers N`: started, watched, replaced when one dies, and
stopped with the server.

Each worker (cluster/worker.py) serves the cluster's gRPC API on its own pair of Unix sockets; the router in the
server's process owns the public port and spreads connections over them (cluster/router.py), so per-address
limits and connection caps stay in one place. Workers share the store (SQLite in WAL mode, each write an
immediate transaction; or PostgreSQL), which serialises what must be: renewals' generation counters, spent
challenges, conditional writes. What a process keeps for itself is either re-read from the store (revocation
lists, by version), shared through memory (a ChangeStamp for locks, SharedRateLimits for anonymous calls per
address), split (the audit bound for anonymous callers) or done by the server's process alone (the
janitor, the admin identity, metrics served).
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from machineid.cluster.worker import WorkerSpec
from machineid.model.errors import PreconditionError

log = logging.getLogger("machineid.cluster.workers")
READY_TIMEOUT = 60.0
RESTART_PAUSE = 1.0  # seconds before replacing a worker that died (one that dies at once must not spin)


def socket_paths(socket_dir: Path, index: int) -> tuple[str, str]:
    return str(socket_dir / f"w{index}-mtls.sock"), str(socket_dir / f"w{index}-join.sock")


class Workers:
    def __init__(self, spec: WorkerSpec, count: int, metrics_dir: Path | None = None,
                 on_replaced: Callable[[], None] | None = None) -> None:
        """metrics_dir: prometheus_client's multiprocess directory, when the server serves metrics; on_replaced:
        called after a worker that died was replaced (the server announces the new pids)."""
        self.spec = spec
        self.on_replaced = on_replaced
        self.count = count
        self.metrics_dir = metrics_dir
        self.env = dict(os.environ)
        self.env.pop("PROMETHEUS_MULTIPROC_DIR", None)
        if metrics_dir is not None:
            self.env["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_dir)
        self._procs: list[subprocess.Popen[bytes] | None] = [None] * count
        self._stopping = threading.Event()
        self._watch: threading.Thread | None = None
        self.restarts = 0

    def spec_for(self, index: int) -> WorkerSpec:
        mtls, join = socket_paths(Path(self.spec.mtls_path).parent, index)
        return replace(self.spec, index=index, mtls_path=mtls, join_path=join)

    @property
    def mtls_paths(self) -> list[str]:
        return [self.spec_for(i).mtls_path for i in range(self.count)]

    @property
    def join_paths(self) -> list[str]:
        return [self.spec_for(i).join_path for i in range(self.count)]

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self._procs if p is not None]

    def start(self) -> None:
        """All workers, each listening, or PreconditionError (the others stopped)."""
        try:
            for i in range(self.count):
                self._procs[i] = self._spawn(i)
            for i in range(self.count):
                self._wait_ready(i)
        except BaseException:
            self.stop(0)
            raise
        self._watch = threading.Thread(target=self._watch_loop, name="workers", daemon=True)
        self._watch.start()

    def _spawn(self, index: int) -> subprocess.Popen[bytes]:
        # -P: not the current directory first on sys.path, where anyone who may write there could plant a module
        # that runs with the sealing key (the `machineid` script never had it there either).
        proc = subprocess.Popen([sys.executable, "-P", "-m", "machineid.cluster.worker"], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, env=self.env, close_fds=True,
                                cwd=Path(self.spec.mtls_path).parent)
        assert proc.stdin is not None
        proc.stdin.write(self.spec_for(index).dumps().encode())
        proc.stdin.flush()  # kept open: the worker stops when it closes (this process died)
        return proc

    def _wait_ready(self, index: int) -> None:
        proc = self._procs[index]
        assert proc is not None and proc.stdout is not None
        ready, _, _ = select.select([proc.stdout], [], [], READY_TIMEOUT)
        line = proc.stdout.readline() if ready else b""
        if line.strip() != b"ready":
            proc.kill()
            code = proc.wait()
            raise PreconditionError(f"worker {index} did not start (exit code {code}); its reason is in the log "
                                    "above")

    def _watch_loop(self) -> None:
        while not self._stopping.wait(0.5):
            for i, proc in enumerate(self._procs):
                if proc is None or proc.poll() is None or self._stopping.is_set():
                    continue
                log.error("worker %d (pid %d) exited with code %s; starting another", i, proc.pid, proc.returncode)
                self._close_pipes(proc)
                if self.metrics_dir is not None:  # its gauges no longer count; its counters do
                    from prometheus_client import multiprocess

                    multiprocess.mark_process_dead(proc.pid, str(self.metrics_dir))  # type: ignore[no-untyped-call]
                if self._stopping.wait(RESTART_PAUSE):
                    return
                try:
                    self._procs[i] = self._spawn(i)
                    self._wait_ready(i)
                    self.restarts += 1
                    if self.on_replaced is not None:
                        self.on_replaced()
                except Exception as e:  # tried again at the next turn
                    log.error("could not replace worker %d: %s", i, e)

    @staticmethod
    def _close_pipes(proc: subprocess.Popen[bytes]) -> None:
        for pipe in (proc.stdin, proc.stdout):
            if pipe is not None:
                with contextlib.suppress(OSError):
                    pipe.close()

    def closing(self) -> None:
        """The server is stopping: a worker that exits from now on (a signal to the whole process group, as a
        service manager sends) is not replaced."""
        self._stopping.set()

    def stop(self, grace: float) -> None:
        """SIGTERM: each refuses new calls and finishes those in flight within `grace`; killed if it takes longer."""
        self._stopping.set()
        if self._watch is not None and self._watch is not threading.current_thread():
            self._watch.join(READY_TIMEOUT + 5)
        procs = [p for p in self._procs if p is not None]
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + grace + 10
        for proc in procs:
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.warning("worker pid %d did not stop in time; killing it", proc.pid)
                proc.kill()
                proc.wait()
            self._close_pipes(proc)

