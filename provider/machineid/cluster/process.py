"""Running `machineid server start` as a child process and waiting until it listens: the main job, the tests and
the benchmarks all start clusters this way (the server announces its address in DATA_DIR/server.json)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

from machineid.api.client import Client
from machineid.api.identity import Identity

MACHINEID = str(Path(sys.executable).parent / "machineid")


def wait_for_address(data_dir: Path, proc: subprocess.Popen[bytes], log_path: Path, timeout: float = 30,
                     failure: type[Exception] = RuntimeError) -> str:
    """The address from DATA_DIR/server.json once this server wrote it (a file left by an earlier one does not
    count); `failure` (with the log) if it died."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            info = json.loads((data_dir / "server.json").read_text())
            if info["pid"] == proc.pid:
                return str(info["address"])
        except (OSError, ValueError, KeyError):
            pass
        if proc.poll() is not None:
            raise failure(f"server exited early:\n{log_path.read_text()}")
        time.sleep(0.05)
    raise failure(f"server did not start:\n{log_path.read_text()}")


@dataclass
class ServerProcess:
    data_dir: Path
    cluster_name: str = "machineid.local"
    extra_args: tuple[str, ...] = ()
    log_path: Path = field(default_factory=Path)
    proc: subprocess.Popen[bytes] | None = None
    address: str = ""
    workers: int | None = None  # --workers (None: the server's default, the number of cores)
    # What a failed start raises (tests want an AssertionError carrying the server's log).
    failure: ClassVar[type[Exception]] = RuntimeError

    def __post_init__(self) -> None:
        if self.log_path == Path():
            self.log_path = self.data_dir.parent / f"{self.data_dir.name}.log"

    def start(self, listen: str = "127.0.0.1:0", *, detach: bool = False) -> str:
        """Start and wait until it listens; `detach` keeps it running after this process exits."""
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:  # the child keeps its own descriptor
            self.proc = subprocess.Popen(
                [MACHINEID, "server", "start", "--data-dir", str(self.data_dir), "--listen", listen,
                 "--cluster-name", self.cluster_name,
                 *(["--workers", str(self.workers)] if self.workers else []), *self.extra_args],
                stdout=log, stderr=subprocess.STDOUT, start_new_session=detach,
            )
        self.address = wait_for_address(self.data_dir, self.proc, self.log_path, failure=self.failure)
        return self.address

    def stop(self, timeout: float = 30) -> int:
        """SIGTERM, then the exit code (0 for a clean shutdown); killed if it does not stop in time."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait()
        self.proc = None
        return code

    @property
    def admin_identity_path(self) -> Path:
        return self.data_dir / "admin.identity"

    def admin(self) -> Client:
        return Client(self.address, Identity.load(self.admin_identity_path))

    def log_text(self) -> str:
        return self.log_path.read_text()
