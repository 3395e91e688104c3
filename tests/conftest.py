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


# ---------------------------------------------------------------- a throwaway PostgreSQL server


def _pg_bin(name: str) -> str:
    import glob
    import shutil

    found = shutil.which(name) or next(iter(sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))), None)
    if not found:
        raise AssertionError(f"{name} not found: scripts/install-system-deps installs PostgreSQL")
    return found


@pytest.fixture(scope="session")
def postgres(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real PostgreSQL on a loopback port, run as the postgres user (it refuses to run as root)."""
    import socket

    base = tmp_path_factory.mktemp("pg")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    as_postgres = os.geteuid() == 0
    if as_postgres:
        subprocess.run(["chown", "-R", "postgres", str(base)], check=True)
        os.chmod(base, 0o755)
        for parent in base.parents:  # the postgres user must reach the directory
            if str(parent).startswith("/tmp/pytest"):
                os.chmod(parent, os.stat(parent).st_mode | 0o055)

    def run(*cmd: str) -> None:
        full = [*cmd]
        if as_postgres:
            full = ["su", "postgres", "-s", "/bin/sh", "-c", " ".join(f"'{c}'" for c in cmd)]
        subprocess.run(full, check=True, capture_output=True, timeout=120)

    run(_pg_bin("initdb"), "-D", str(base / "data"), "-A", "trust", "-U", "pg")
    run(_pg_bin("pg_ctl"), "-D", str(base / "data"), "-o", f"-p {port} -k {base} -c listen_addresses=127.0.0.1",
        "-l", str(base / "log"), "-w", "start")
    yield f"postgresql://pg@127.0.0.1:{port}/postgres"
    run(_pg_bin("pg_ctl"), "-D", str(base / "data"), "-m", "immediate", "stop")


@pytest.fixture()
def pg_database(postgres: str) -> str:
    """A fresh database on the shared server, per test."""
    import uuid

    import psycopg

    name = "t" + uuid.uuid4().hex[:12]
    with psycopg.connect(postgres, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    return postgres.rsplit("/", 1)[0] + "/" + name
