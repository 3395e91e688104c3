"""Fixtures that run the real thing: a `machineid server start` process on a random loopback port, the
`machineid` CLI as a subprocess, and API clients over the wire."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from machineid.cluster.process import MACHINEID, ServerProcess


def run_cli(*args: str, input: str | None = None, env: dict[str, str] | None = None,
            check: bool = True) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, **(env or {})}
    proc = subprocess.run([MACHINEID, *args], capture_output=True, text=True, input=input, env=full_env,
                          timeout=60)
    if check and proc.returncode != 0:
        raise AssertionError(f"machineid {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


def bot_start(srv: ServerProcess, data: Path, dest: Path, token: str) -> list[str]:
    """`machineid bot start` arguments (after the program name) for a token-joined agent of this cluster."""
    pin = json.loads((srv.data_dir / "server.json").read_text())["ca_pin"]
    return ["bot", "start", "--data-dir", str(data), "--destination-dir", str(dest), "--token", token,
            "--join-method", "token", "--ca-pin", pin, "--auth-server", srv.address]


class ServerProc(ServerProcess):
    """A cluster for a test: failures are assertions, with the server's log. Its worker processes: one, or what the
    module's `workers` marker gives (each test then runs with each count, see server_workers)."""

    failure = AssertionError
    default_workers = 1

    def __init__(self, data_dir: Path, cluster_name: str = "test.example", extra_args: tuple[str, ...] = (),
                 workers: int | None = None) -> None:
        super().__init__(data_dir, cluster_name, extra_args, workers=workers or ServerProc.default_workers)

    def ctl(self, *args: str, input: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
        return run_cli("ctl", "--data-dir", str(self.data_dir), *args, input=input, check=check)


@pytest.fixture(scope="module")
def tools_bin() -> Path:
    """The Pulumi engine, its YAML host, OpenTofu and the SDK generator (built once by scripts/install-tools)."""
    root = Path(__file__).resolve().parent.parent
    proc = subprocess.run([str(root / "scripts" / "install-tools")], capture_output=True, text=True, timeout=3000)
    assert proc.returncode == 0, proc.stderr
    return Path(proc.stdout.strip().splitlines()[-1])


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "workers(*counts): run the module's tests against servers with each number "
                                       "of worker processes (--workers)")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    marker = metafunc.definition.get_closest_marker("workers")
    if marker is not None:
        metafunc.parametrize("server_workers", marker.args, indirect=True, scope="module",
                             ids=[f"workers{n}" for n in marker.args])


@pytest.fixture(scope="module", autouse=True)
def server_workers(request: pytest.FixtureRequest) -> Iterator[int]:
    """How many worker processes the module's servers run (ServerProc's default while its tests run). A module-scoped
    fixture that starts a server takes it as an argument, so that each count gets a server of its own."""
    count = int(getattr(request, "param", 1))
    ServerProc.default_workers = count
    yield count
    ServerProc.default_workers = 1


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, server_workers: int) -> Iterator[ServerProc]:
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
def postgres() -> Iterator[str]:
    """A real PostgreSQL on a loopback port, run as the postgres user (it refuses to run as root). Its directory is
    its own, not under pytest's base temp: another pytest session starting meanwhile prunes old base temps, and
    took a running PostgreSQL's data dir with it."""
    import shutil
    import socket
    import tempfile

    base = Path(tempfile.mkdtemp(prefix="machineid-pg-"))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    as_postgres = os.geteuid() == 0
    if as_postgres:
        subprocess.run(["chown", "-R", "postgres", str(base)], check=True)
        os.chmod(base, 0o755)

    def run(*cmd: str) -> None:
        full = [*cmd]
        if as_postgres:
            full = ["su", "postgres", "-s", "/bin/sh", "-c", " ".join(f"'{c}'" for c in cmd)]
        subprocess.run(full, check=True, capture_output=True, timeout=120)

    run(_pg_bin("initdb"), "-D", str(base / "data"), "-A", "trust", "-U", "pg")
    run(_pg_bin("pg_ctl"), "-D", str(base / "data"), "-o", f"-p {port} -k {base} -c listen_addresses=127.0.0.1",
        "-l", str(base / "log"), "-w", "start")
    try:
        yield f"postgresql://pg@127.0.0.1:{port}/postgres"
    finally:
        run(_pg_bin("pg_ctl"), "-D", str(base / "data"), "-m", "immediate", "stop")
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture()
def pg_database(postgres: str) -> str:
    """A fresh database on the shared server, per test."""
    import uuid

    import psycopg

    name = "t" + uuid.uuid4().hex[:12]
    with psycopg.connect(postgres, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    return postgres.rsplit("/", 1)[0] + "/" + name


@pytest.fixture(autouse=True)
def _machineid_environment() -> Iterator[None]:
    """Each test starts from the environment the run started with: the Pulumi driver sets MACHINEID_* variables
    for its inline programs, which would otherwise point later tests' CLIs at a server that has stopped."""
    saved = {k: v for k, v in os.environ.items() if k.startswith("MACHINEID_")}
    yield
    for key in [k for k in os.environ if k.startswith("MACHINEID_")]:
        if key not in saved:
            del os.environ[key]
    os.environ.update(saved)
