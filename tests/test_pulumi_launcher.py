"""The Pulumi plugin as the engine starts it: the installed executable is a launcher (run with -S, standard library
only) that has a warm fork server serve the engine, so a launch costs tens of milliseconds instead of a provider's
imports; the served child ends with its launcher; with the fork server off, the launcher serves in-process."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import suppress
from pathlib import Path

import grpc
import pytest
from google.protobuf import empty_pb2
from pulumi.runtime.proto import provider_pb2_grpc

from machineid import __version__
from machineid.launch import launcher
from machineid.pulumi import install


@pytest.fixture()
def plugin(tmp_path: Path) -> Iterator[tuple[Path, dict[str, str]]]:
    run = tmp_path / "run"
    run.mkdir(mode=0o700)
    env = {**os.environ, "XDG_RUNTIME_DIR": str(run)}
    exe = install.install(tmp_path / "home").executable
    assert exe.read_text().splitlines()[0].endswith(" -S")  # no site processing on each launch
    yield exe, env
    for pid_file in run.glob("machineid-tf-*/*.pid"):
        with suppress(OSError, ValueError):
            os.kill(int(pid_file.read_text()), signal.SIGTERM)


def start(exe: Path, env: dict[str, str]) -> tuple[subprocess.Popen[bytes], int]:
    proc = subprocess.Popen([str(exe), "127.0.0.1:1"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line.strip().isdigit(), (line, proc.stderr.read() if proc.stderr else b"")
    return proc, int(line)


def stop(proc: subprocess.Popen[bytes], kill: bool = False) -> None:
    proc.kill() if kill else proc.terminate()
    proc.communicate(timeout=10)  # waits, and closes its pipes


def version(port: int) -> str:
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        return str(provider_pb2_grpc.ResourceProviderStub(channel).GetPluginInfo(empty_pb2.Empty(), timeout=10)
                   .version)


def closed(port: int, within: float) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) != 0:
                return True
        time.sleep(0.1)
    return False


def test_a_launch_is_served_by_the_fork_server_and_ends_with_its_launcher(plugin: tuple[Path, dict[str, str]]
                                                                          ) -> None:
    exe, env = plugin
    first, port = start(exe, env)  # starts the fork server
    try:
        assert version(port) == __version__
    finally:
        stop(first, kill=True)
    assert closed(port, 5)  # the child noticed its launcher went
    times = []
    for _ in range(3):
        t = time.perf_counter()
        proc, port = start(exe, env)
        times.append(time.perf_counter() - t)
        try:
            assert version(port) == __version__
            children = Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()
            assert not children  # served by a child of the fork server, not of the launcher
        finally:
            stop(proc)
        assert closed(port, 5)
    sock = next((Path(env["XDG_RUNTIME_DIR"])).glob("machineid-tf-*/*.sock"))
    assert sock.name == f"{launcher.install_key()}.sock"


def test_with_the_fork_server_off_the_launcher_serves_in_process(plugin: tuple[Path, dict[str, str]]) -> None:
    exe, env = plugin
    proc, port = start(exe, {**env, launcher.ENABLE: "0"})
    try:
        assert version(port) == __version__
    finally:
        stop(proc)
    usage = subprocess.run([str(exe), "--help"], capture_output=True, text=True, env=env, timeout=30)
    assert usage.returncode == 0 and "machineid pulumi install" in usage.stdout


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL])
def test_an_ended_launch_lets_go_of_the_engines_pipes_at_once(plugin: tuple[Path, dict[str, str]],
                                                              sig: signal.Signals) -> None:
    """The engine ends a plugin with SIGINT (then, 5 s later, SIGKILL) and waits for EOF on the pipes it gave it:
    the launcher ignored SIGINT, which cost every Pulumi command 5 s."""
    exe, env = plugin
    stop(start(exe, env)[0], kill=True)  # the fork server is up
    proc, port = start(exe, env)
    assert version(port) == __version__
    proc.send_signal(sig)
    t = time.perf_counter()
    assert proc.stderr is not None and proc.stdout is not None
    proc.stderr.read()  # EOF once nothing holds the pipe any more
    proc.stdout.read()
    waited = time.perf_counter() - t
    proc.wait(5)
    proc.stdout.close()
    proc.stderr.close()
    assert waited < 1.0, f"the pipes stayed open {waited:.2f}s after the launcher was killed"
