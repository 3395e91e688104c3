"""The provider's launcher and its fork server, with real processes: a launch is served by a child of a warm
fork server that takes the launcher's streams, environment and working directory; the child ends with the
launcher; anything unusual falls back to serving in the launcher itself."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import msgpack
import pytest

from machineid.launch import launcher
from machineid.terraform import install
from machineid.terraform.proto import grpc_controller_pb2, grpc_controller_pb2_grpc, tfplugin6_pb2, tfplugin6_pb2_grpc
from tests.test_terraform_plugin import (
    Identity,
    Plugin,
    plugin_env,
    read_line,
    self_signed,
    wait_exited,
    wait_gone,
)

LAUNCH = "import sys; from machineid.launch.launcher import main; sys.exit(main())"


@pytest.fixture()
def client() -> Identity:
    return self_signed("P-256")


@pytest.fixture()
def runtime_dir(tmp_path: Path) -> Iterator[Path]:
    """A private XDG_RUNTIME_DIR: this test's own fork server, stopped at the end."""
    d = tmp_path / "run"
    d.mkdir(mode=0o700)
    yield d
    for pid_file in d.glob("machineid-tf-*/*.pid"):
        with suppress(OSError, ValueError):
            os.kill(int(pid_file.read_text()), signal.SIGTERM)


@contextmanager
def launched(client: Identity, cwd: Path, **env: str) -> Iterator[Plugin]:
    stderr = cwd / f"launcher-{time.monotonic_ns()}.log"
    with stderr.open("wb") as err:
        proc = subprocess.Popen([sys.executable, "-c", LAUNCH], cwd=cwd, stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=err,
                                env=plugin_env(PLUGIN_CLIENT_CERT=client.cert.decode(), **env))
    try:
        assert proc.stdout is not None
        line = read_line(proc.stdout, time.monotonic() + 20)
        assert line, f"no handshake; stderr:\n{stderr.read_text()}"
        yield Plugin(proc, line.decode().rstrip("\n").split("|"), stderr)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(5)
        if proc.stdout is not None:
            proc.stdout.close()


def configure(plugin: Plugin, client: Identity, config: dict[str, object]) -> list[str]:
    stub = tfplugin6_pb2_grpc.ProviderStub(plugin.channel(client))
    full = {"address": None, "identity_file": None, "identity": None, "ca_pin": None, **config}
    resp = stub.ConfigureProvider(tfplugin6_pb2.ConfigureProvider.Request(
        config=tfplugin6_pb2.DynamicValue(msgpack=msgpack.packb(full))), timeout=10)
    return [d.detail for d in resp.diagnostics]


def test_a_launch_is_served_by_the_fork_server_with_the_launchers_env_and_cwd(
        tmp_path: Path, runtime_dir: Path, client: Identity) -> None:
    work = tmp_path / "work"
    work.mkdir()
    (work / "here.identity").write_text("not an identity")
    env = {"XDG_RUNTIME_DIR": str(runtime_dir), "MACHINEID_AUTH_SERVER": "127.0.0.1:1"}
    with launched(client, work, **env) as first:
        # the address came from the launcher's environment, the relative path resolved in its directory
        details = configure(first, client, {"identity_file": "here.identity"})
        assert not any("is not set" in d or "does not exist" in d for d in details), details
        assert configure(first, client, {"identity_file": "missing.identity"}) == [
            "identity_file: missing.identity does not exist; point it at an identity file from `machineid ctl "
            "auth sign`"]
        sockets = list(runtime_dir.glob("machineid-tf-*/*.sock"))
        assert len(sockets) == 1 and sockets[0].stat().st_mode & 0o777 == 0o600
        assert (runtime_dir / f"machineid-tf-{os.getuid()}").stat().st_mode & 0o777 == 0o700
        grpc_controller_pb2_grpc.GRPCControllerStub(first.channel(client)).Shutdown(grpc_controller_pb2.Empty(),
                                                                                    timeout=5)
        assert first.proc.wait(5) == 0
    with launched(client, work, **{**env, "MACHINEID_AUTH_SERVER": ""}) as second:
        assert any("address: is not set" in d for d in configure(second, client, {"identity_file": "x"}))
    assert len(list(runtime_dir.glob("machineid-tf-*/*.sock"))) == 1  # the same fork server served both


def test_the_child_ends_with_its_launcher(tmp_path: Path, runtime_dir: Path, client: Identity) -> None:
    with launched(client, tmp_path, XDG_RUNTIME_DIR=str(runtime_dir)) as plugin:
        socket_dir = os.path.dirname(plugin.socket)
        plugin.proc.send_signal(signal.SIGKILL)  # as go-plugin does to a plugin that does not exit in time
        plugin.proc.wait(5)
        assert wait_gone(socket_dir, 5), "the child kept serving after its launcher died"


def children(pid: int) -> set[int]:
    """The processes whose parent is this one (zombies included)."""
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with suppress(OSError, IndexError, ValueError):
                if int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                    found.add(int(entry.name))
    return found


def test_the_installed_launcher_and_its_child_exit_when_the_cli_dies(
        tmp_path: Path, runtime_dir: Path, client: Identity) -> None:
    """A CLI that crashes sends the plugin nothing (no Shutdown, no signal): the launcher it started, as `machineid
    terraform install` lays it out, and the fork server's child serving it must still go, or they would serve on
    and keep the CLI's output pipe open."""
    exe = install.install(tmp_path / "plugins").paths[0]
    cli = "import subprocess, sys; p = subprocess.Popen([sys.argv[1]]); print(p.pid, flush=True); sys.stdin.read()"
    proc = subprocess.Popen([sys.executable, "-c", cli, str(exe)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL,
                            env=plugin_env(PLUGIN_CLIENT_CERT=client.cert.decode(), XDG_RUNTIME_DIR=str(runtime_dir)))
    assert proc.stdout is not None and proc.stdin is not None
    served: set[int] = set()
    try:
        deadline = time.monotonic() + 20
        lines = [read_line(proc.stdout, deadline) or b"", read_line(proc.stdout, deadline) or b""]
        launcher_pid = int(next(line for line in lines if line.strip().isdigit()))
        served.add(launcher_pid)
        handshake = next(line for line in lines if b"|" in line).decode().split("|")
        socket_dir = os.path.dirname(handshake[3])
        assert children(proc.pid) == {launcher_pid}
        (pid_file,) = runtime_dir.glob("machineid-tf-*/*.pid")
        served |= children(int(pid_file.read_text()))
        assert len(served) == 2, served  # the launcher, and the fork server's child that wrote the handshake
        proc.kill()  # the CLI crashes
        proc.wait(5)
        assert wait_exited(launcher_pid, 5.0), "the launcher outlived the CLI"
        assert all(wait_exited(pid, 5.0) for pid in served), "the fork server's child outlived the CLI"
        assert wait_gone(socket_dir, 3.0)
        assert read_line(proc.stdout, time.monotonic() + 3) == b""  # nothing holds the CLI's pipe open
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
        for pid in served:
            if not wait_exited(pid, 0):
                os.kill(pid, signal.SIGKILL)  # the test failed: leave no orphan behind
        proc.stdin.close()
        proc.stdout.close()


def test_sigint_to_the_launcher_is_ignored(tmp_path: Path, runtime_dir: Path, client: Identity) -> None:
    with launched(client, tmp_path, XDG_RUNTIME_DIR=str(runtime_dir)) as plugin:
        plugin.proc.send_signal(signal.SIGINT)
        time.sleep(0.3)
        assert plugin.proc.poll() is None
        assert configure(plugin, client, {"address": "127.0.0.1:1", "identity_file": "nope"})


@pytest.mark.parametrize("case", ["disabled", "unsafe_dir"])
def test_without_a_usable_fork_server_it_serves_in_process(tmp_path: Path, client: Identity, case: str) -> None:
    run = tmp_path / "run"
    run.mkdir()
    env = {"XDG_RUNTIME_DIR": str(run)}
    if case == "disabled":
        env[launcher.ENABLE] = "0"
    else:
        unsafe = run / f"machineid-tf-{os.getuid()}"
        unsafe.mkdir()
        unsafe.chmod(0o777)  # a directory others could have planted sockets in: never trusted
    with launched(client, tmp_path, **env) as plugin:
        assert any("does not exist" in d for d in configure(plugin, client, {"address": "127.0.0.1:1",
                                                                                 "identity_file": "nope"}))
        assert not list(run.glob("machineid-tf-*/*.sock"))


def test_an_edited_installation_gets_its_own_fork_server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pkg = tmp_path / "machineid"
    (pkg / "terraform").mkdir(parents=True)
    module = pkg / "terraform" / "provider.py"
    module.write_text("x = 1\n")
    monkeypatch.setattr(launcher, "_package_dir", lambda: str(pkg))
    before = launcher.install_key()
    assert launcher.install_key() == before
    module.write_text("x = 22\n")
    assert launcher.install_key() != before


def test_help_and_version_are_answered_without_a_fork_server(tmp_path: Path) -> None:
    out = subprocess.run([sys.executable, "-c", LAUNCH, "--version"], capture_output=True, text=True, timeout=30,
                         env={**os.environ, "XDG_RUNTIME_DIR": str(tmp_path)})
    assert out.returncode == 0 and out.stdout.startswith("terraform-provider-machineid ")
    assert not list(tmp_path.glob("machineid-tf-*"))

