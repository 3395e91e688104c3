"""The README's first command (the main job) on this machine: cluster, `pulumi up` of examples/quickstart, the
agent started from the rendered `agentConfig`, a local sshd, and a command over `ssh -F`."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
from pathlib import Path

import pytest

from machineid.node.layout import Layout
from machineid.quickstart import node_root_for

ROOT = Path(__file__).resolve().parent.parent


def _stop(pid_file: Path) -> None:
    if pid_file.exists():
        with contextlib.suppress(OSError, ValueError):
            os.kill(int(pid_file.read_text()), signal.SIGTERM)


def _stop_node(base: Path) -> None:
    """The node's sshd, and its root (outside the quickstart dir when root: /var/lib/machineid-quickstart/...)."""
    root = node_root_for(base)
    _stop(Layout(root).at("run/sshd.pid"))
    shutil.rmtree(root, ignore_errors=True)


@pytest.mark.timeout(1800)
def test_quickstart_runs_the_whole_guide(tmp_path: Path) -> None:
    env = {**os.environ, "MACHINEID_QUICKSTART_DIR": str(tmp_path / "qs"), "MACHINEID_QUICKSTART_LISTEN": "127.0.0.1:0"}
    try:
        first = subprocess.run([str(ROOT / "scripts" / "quickstart")], env=env, capture_output=True, text=True,
                               timeout=1700)
        assert first.returncode == 0, first.stdout[-4000:] + first.stderr[-4000:]
        assert "+ 3 created" in first.stdout
        assert "hello from" in first.stdout
        # the node was set up by `machineid node setup`, and enforces node_labels (as root) or says it does not
        assert ("the principals helper (run as nobody) enforces the roles' node_labels" in first.stdout
                if os.geteuid() == 0 else "node-side enforcement needs root" in first.stdout)
        config = tmp_path / "qs" / "bot.yaml"
        assert config.stat().st_mode & 0o777 == 0o600
        assert "join_method: token" in config.read_text()
        # a second run reuses the cluster and re-onboards the bot with a rotated token
        second = subprocess.run([str(ROOT / "scripts" / "quickstart")], env=env, capture_output=True, text=True,
                                timeout=600)
        assert second.returncode == 0, second.stdout[-4000:] + second.stderr[-4000:]
        assert "reusing the cluster" in second.stdout and "tokenRotation]" in second.stdout
        assert "1 updated" in second.stdout
        assert "hello from" in second.stdout
    finally:
        _stop(tmp_path / "qs" / "server.pid")
        _stop_node((tmp_path / "qs").resolve())


@pytest.mark.timeout(1200)
def test_quickstart_terraform_runs_the_whole_guide_with_opentofu(tmp_path: Path) -> None:
    env = {**os.environ, "MACHINEID_QUICKSTART_DIR": str(tmp_path / "qs"), "MACHINEID_QUICKSTART_LISTEN": "127.0.0.1:0"}
    try:
        first = subprocess.run([str(ROOT / "scripts" / "quickstart"), "--terraform"], env=env, capture_output=True,
                               text=True, timeout=1100)
        assert first.returncode == 0, first.stdout[-4000:] + first.stderr[-4000:]
        assert "Resources: 2 added" in first.stdout and "hello from" in first.stdout
        assert not (tmp_path / "qs" / "pulumi").exists()
        assert (tmp_path / "qs" / "terraform" / ".terraform.lock.hcl").is_file()
        assert (tmp_path / "qs" / "bot.yaml").stat().st_mode & 0o777 == 0o600
        second = subprocess.run([str(ROOT / "scripts" / "quickstart"), "--terraform"], env=env, capture_output=True,
                                text=True, timeout=600)
        assert second.returncode == 0, second.stdout[-4000:] + second.stderr[-4000:]
        assert "reusing the cluster" in second.stdout and "Resources: 0 added, 1 changed" in second.stdout
        assert "hello from" in second.stdout
    finally:
        _stop(tmp_path / "qs" / "server.pid")
        _stop_node((tmp_path / "qs").resolve())
