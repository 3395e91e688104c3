"""Fixtures that run the real thing: a `machineid server start` process on a random loopback port, the
`machineid` CLI as a subprocess, and API clients over the wire."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from machineid.api.client import Client
from machineid.api.identity import Identity

BIN = Path(sys.executable).parent
MACHINEID = str(BIN / "machineid")


def run_cli(*args: str, input: str | None = None, env: dict[str, str] | None = None,
            check: bool = True) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, **(env or {})}
    proc = subprocess.run([MACHINEID, *args], capture_output=True, text=True, input=input, env=full_env,
                          timeout=60)
    if check and proc.returncode != 0:
        raise AssertionError(f"machineid {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


@dataclass
class ServerProc:
    data_dir: Path
    cluster_name: str = "test.example"
    proc: subprocess.Popen[str] | None = None
    address: str = ""
    log_path: Path = field(default_factory=Path)
    extra_args: tuple[str, ...] = ()

    def start(self, listen: str = "127.0.0.1:0") -> None:
        self.log_path = self.data_dir.parent / f"{self.data_dir.name}.log"
        (self.data_dir / "server.json").unlink(missing_ok=True)
        with open(self.log_path, "a") as log:  # the child keeps its own descriptor
            self.proc = subprocess.Popen(
                [MACHINEID, "server", "start", "--data-dir", str(self.data_dir), "--listen", listen,
                 "--cluster-name", self.cluster_name, *self.extra_args],
                stdout=log, stderr=subprocess.STDOUT, text=True,
            )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            sj = self.data_dir / "server.json"
            if sj.exists():
                try:
                    self.address = json.loads(sj.read_text())["address"]
                    return
                except (ValueError, KeyError):
                    pass
            if self.proc.poll() is not None:
                raise AssertionError(f"server exited early:\n{self.log_path.read_text()}")
            time.sleep(0.05)
        raise AssertionError(f"server did not start:\n{self.log_path.read_text()}")

    def stop(self) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout=30)
        self.proc = None
        return code

    @property
    def admin_identity_path(self) -> Path:
        return self.data_dir / "admin.identity"

    def admin(self) -> Client:
        return Client(self.address, Identity.load(self.admin_identity_path))

    def ctl(self, *args: str, input: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
        return run_cli("ctl", "--data-dir", str(self.data_dir), *args, input=input, check=check)

    def log_text(self) -> str:
        return self.log_path.read_text()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProc]:
    srv = ServerProc(tmp_path_factory.mktemp("cluster") / "data")
    srv.start()
    yield srv
    if srv.proc is not None:
        assert srv.stop() == 0, srv.log_text()


@pytest.fixture()
def fresh_server(tmp_path: Path) -> Iterator[ServerProc]:
    srv = ServerProc(tmp_path / "data")
    srv.start()
    yield srv
    if srv.proc is not None:
        srv.stop()
