"""The README's "OpenSSH nodes" section, followed literally: its command lines, run as written (only the node's
address is this test's free port, and MACHINEID_NODE_ROOT points at a root the test owns instead of /), on a real
sshd that includes the drop-in as a distribution's does and is running before `node setup` reloads it, the helper
run as nobody. Then bots log in, or are refused by the node itself: a role whose node_labels match gets in; a
role for other labels, and one whose deny selector matches, do not."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from machineid.cluster.process import MACHINEID
from tests import nodes
from tests.conftest import ServerProc, run_cli
from tests.test_agent_ssh import ensure_login

ROOT = Path(__file__).resolve().parent.parent
README_ADDR = "10.0.0.5:22"
pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="node setup writes root-owned files (needs root)")


def node_section_lines() -> list[str]:
    """The command lines of the README's node section, in order."""
    text = (ROOT / "README.md").read_text()
    section = text[text.index("### OpenSSH nodes"):]
    section = section[:section.index("\n### ", 1)]
    lines = []
    for block in re.findall(r"```sh\n(.*?)```", section, flags=re.S):
        for line in block.replace("\\\n", " ").splitlines():
            command = line.split("  #")[0].strip()
            if command and not command.startswith("#"):
                lines.append(command)
    return lines


@pytest.fixture()
def work(tmp_path: Path) -> Iterator[tuple[ServerProc, Path, Path]]:
    """A cluster in ./cluster (as the README writes it) and a node root with a running sshd."""
    srv = ServerProc(tmp_path / "cluster")
    srv.start()
    with nodes.node_root() as root:
        yield srv, tmp_path, root
    srv.stop()


def ssh_to(dest: Path, login: str, host: str, port: int) -> subprocess.CompletedProcess[str]:
    """ssh with the bot's ssh_config, pointed at the node whether or not the bot's ssh_config lists it (the node
    must refuse on its own)."""
    return subprocess.run(["ssh", "-F", str(dest / "ssh_config"), "-o", "BatchMode=yes", "-o", "ConnectTimeout=10",
                           "-o", "HostName=127.0.0.1", "-p", str(port), "-o", f"HostKeyAlias={host}",
                           f"{login}@{host}", "id -un"], capture_output=True, text=True, timeout=30)


def test_the_readme_node_section_as_written(work: tuple[ServerProc, Path, Path]) -> None:
    srv, cwd, root = work
    lines = node_section_lines()
    assert [ln.split()[:3] for ln in lines] == [["machineid", "ctl", "--data-dir"]] + [["machineid", "node",
                                                                                         "setup"]] * 2
    port, sshd = nodes.start_distro_sshd(root)  # its own host key, and an Include of the drop-in directory
    try:
        env = {"PATH": "/usr/bin:/bin", "HOME": str(cwd), "MACHINEID_NODE_ROOT": str(root)}
        outputs = []
        for line in lines:
            argv = shlex.split(line.replace(README_ADDR, f"127.0.0.1:{port}"))
            proc = subprocess.run([MACHINEID, *argv[1:]], cwd=cwd, env=env, capture_output=True, text=True,
                                  timeout=120)
            assert proc.returncode == 0, (line, proc.stdout, proc.stderr)
            outputs.append(proc.stdout)
        registered, dry, applied = outputs
        assert lines[2] in registered  # what `nodes add` prints is the README's command
        assert "--dry-run: nothing written" in dry
        assert f"reloaded sshd (SIGHUP to pid {sshd.pid})" in applied
        assert "the helper, run as nobody: node state" in applied
        deadline = time.monotonic() + 10
        while "Received SIGHUP" not in nodes.sshd_log(root) and time.monotonic() < deadline:
            time.sleep(0.1)
        nodes.wait_for_port(port, sshd, root)

        login = ensure_login()
        roles = {"web": f"allow: {{logins: [{login}], node_labels: {{env: prod}}}}",
                 "staging": f"allow: {{logins: [{login}], node_labels: {{env: staging}}}}",
                 "no-prod": f"allow: {{logins: [{login}], node_labels: {{'*': '*'}}}}\n  deny: "
                            "{node_labels: {env: prod}}"}
        pin = json.loads((srv.data_dir / "server.json").read_text())["ca_pin"]
        host = f"web1.{srv.cluster_name}"
        results = {}
        for role, spec in roles.items():
            srv.ctl("create", "-f", "-", input=f"kind: role\nmetadata: {{name: {role}}}\nspec:\n  {spec}\n")
            token = json.loads(srv.ctl("bots", "add", f"bot-{role}", f"--roles={role}",
                                       "--format=json").stdout)["token"]
            dest = cwd / f"dest-{role}"
            run_cli("bot", "start", "--data-dir", str(cwd / f"data-{role}"), "--destination-dir", str(dest),
                    "--token", token, "--join-method", "token", "--ca-pin", pin, "--auth-server", srv.address,
                    "--oneshot")
            results[role] = ssh_to(dest, login, host, port)
        assert results["web"].returncode == 0 and results["web"].stdout.strip() == login, results["web"].stderr
        for role in ("staging", "no-prod"):
            assert results[role].returncode == 255 and "Permission denied" in results[role].stderr, role
        log = nodes.sshd_log(root)
        assert log.count("no role of the certificate allows it on a node labelled env=prod") == 2
        assert "Certificate does not contain an authorized principal" in log
    finally:
        sshd.terminate()
        sshd.wait(10)
