"""A node that comes up only from what the provider renders: the `setup_script` output of a Node (the same steps as
its cloud-init user data) is run as written on a node with its own, already running sshd, and then that sshd, with
the principals helper run as nobody, lets in the bots whose roles match the node's labels and refuses the others.
A label change made through the provider reaches the node's enforcement after one sync of the node agent (what the
unit the script enabled runs), without touching sshd_config.

Run on this machine, the script's absolute paths (/etc/machineid, /etc/systemd/system) are moved under the test's
node root (MACHINEID_NODE_ROOT does the same for `machineid node setup`), `systemctl` is a stand-in that records
what it was asked, and the install step is the program's own `install_command` (machineid is already installed
here); nothing else in the script is changed."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from machineid.cluster.process import MACHINEID
from machineid.iac.core import Core
from machineid.iac.resource import NODE
from machineid.node.layout import Layout
from tests import nodes
from tests.conftest import ServerProc
from tests.test_agent_ssh import ensure_login
from tests.test_iac_core import HINTS
from tests.test_readme_node import ssh_to

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="node setup writes root-owned files (needs root)")


@pytest.fixture()
def cluster(tmp_path: Path) -> Iterator[ServerProc]:
    srv = ServerProc(tmp_path / "cluster")
    srv.start()
    yield srv
    srv.stop()


def provider(srv: ServerProc) -> Core:
    core = Core(HINTS)
    core.configure({"address": srv.address, "identity_file": str(srv.admin_identity_path)})
    return core


def node_inputs(core: Core, port: int, labels: dict[str, str]) -> dict[str, object]:
    checked = core.check(NODE, {"name": "web1", "addr": f"127.0.0.1:{port}", "labels": labels,
                                "install_command": "true", "agent_path": MACHINEID, "run_as": "nobody"})
    assert not checked.violations, checked.violations
    return checked.inputs


def on_this_machine(script: str, root: Path) -> str:
    """The rendered script with its absolute node paths under the test's node root."""
    for path in ("/etc/machineid", "/etc/systemd/system"):
        assert path in script, path
        script = script.replace(path, str(root) + path)
    return script


def test_a_node_set_up_by_the_rendered_script_enforces_its_labels(cluster: ServerProc, tmp_path: Path) -> None:
    core = provider(cluster)
    login = ensure_login()
    with nodes.node_root() as root:
        port, sshd = nodes.start_distro_sshd(root)
        try:
            state = core.create(NODE, node_inputs(core, port, {"env": "prod"}))
            script = state.outputs["setup_script"]
            token = state.outputs["token"]
            shims = tmp_path / "shims"
            shims.mkdir()
            (shims / "systemctl").write_text(f"#!/bin/sh\necho \"$@\" >> {shlex.quote(str(tmp_path))}/systemctl\n")
            (shims / "systemctl").chmod(0o755)
            env = {"PATH": f"{shims}:/usr/bin:/bin", "HOME": str(tmp_path), "MACHINEID_NODE_ROOT": str(root)}
            proc = subprocess.run(["sh", "-s"], input=on_this_machine(script, root), env=env, capture_output=True,
                                  text=True, timeout=180)
            assert proc.returncode == 0, (proc.stdout, proc.stderr)
            assert token not in proc.stdout + proc.stderr
            layout = Layout(root)
            token_file = layout.etc / "join-token"
            assert token_file.read_text().strip() == token and token_file.stat().st_mode & 0o777 == 0o600
            assert (tmp_path / "systemctl").read_text().splitlines() == ["daemon-reload",
                                                                         "enable --now machineid-node.service"]
            unit = layout.systemd_unit.read_text()
            exec_start = shlex.split(next(ln for ln in unit.splitlines() if ln.startswith("ExecStart="))[10:])
            assert exec_start == [MACHINEID, "node", "start"]
            # the node joined during setup: it holds a host certificate and the cluster shows it
            assert layout.host_cert.exists()
            listed = json.loads(cluster.ctl("nodes", "ls", "--format", "json").stdout)
            web1 = next(n for n in (listed if isinstance(listed, list) else listed["items"])
                        if n["metadata"]["name"] == "web1")
            assert web1["status"]["last_heartbeat"], web1

            pin = json.loads((cluster.data_dir / "server.json").read_text())["ca_pin"]
            dests = {}
            for role, labels in {"web": "env: prod", "staging": "env: staging"}.items():
                cluster.ctl("create", "-f", "-", input=f"kind: role\nmetadata: {{name: {role}}}\nspec:\n  allow: "
                            f"{{logins: [{login}], node_labels: {{{labels}}}}}\n")
                bot_token = json.loads(cluster.ctl("bots", "add", f"bot-{role}", f"--roles={role}",
                                                   "--format=json").stdout)["token"]
                dests[role] = tmp_path / f"dest-{role}"
                subprocess.run([MACHINEID, "bot", "start", "--data-dir", str(tmp_path / f"data-{role}"),
                                "--destination-dir", str(dests[role]), "--token", bot_token, "--join-method", "token",
                                "--ca-pin", pin, "--auth-server", cluster.address, "--oneshot"], check=True,
                               capture_output=True, timeout=60)
            host = f"web1.{cluster.cluster_name}"

            def who_gets_in() -> dict[str, bool]:
                out = {}
                for role, dest in dests.items():
                    res = ssh_to(dest, login, host, port)
                    assert res.returncode in (0, 255), res.stderr
                    out[role] = res.returncode == 0 and res.stdout.strip() == login
                return out

            # the host certificate the node got at setup is what the bots' known_hosts trust
            assert who_gets_in() == {"web": True, "staging": False}, nodes.sshd_log(root)
            assert "no role of the certificate allows it on a node labelled env=prod" in nodes.sshd_log(root)

            # a label change in code, then one sync of the node agent (what the enabled unit runs)
            inputs = node_inputs(core, port, {"env": "staging"})
            planned = core.diff(NODE, state.outputs, state.inputs, inputs)
            assert planned.changed
            core.update(NODE, state.id, state.outputs, state.inputs, inputs)
            before = sshd.pid, Layout(root).sshd_dropin.read_text()
            sync = subprocess.run([*exec_start, "--oneshot"], env=env, capture_output=True, text=True, timeout=60)
            assert sync.returncode == 0, sync.stderr
            assert who_gets_in() == {"web": False, "staging": True}, nodes.sshd_log(root)
            assert (sshd.pid, Layout(root).sshd_dropin.read_text()) == before  # sshd_config untouched
        finally:
            sshd.terminate()
            sshd.wait(10)
            core.close()
