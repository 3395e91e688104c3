"""The node agent end to end: a real cluster, `machineid node start` on a node root sshd accepts, a real sshd using
the host certificate the agent keeps, and a bot logging in with plain `ssh -F ssh_config` that trusts that
certificate through its known_hosts. The node joins with a node token, renews its host certificate (sshd reloaded,
an open session survives), heartbeats, picks up label changes at its next sync, and keeps its last state while the
cluster is out of reach."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from machineid.api.client import Client
from machineid.api.identity import Identity
from machineid.model import errors
from machineid.model.resources import Metadata, Node, NodeSpec
from machineid.node import host_key
from machineid.node.agent import NodeAgent
from machineid.node.config import load as load_config
from machineid.node.layout import Layout
from machineid.quickstart import free_port
from tests.conftest import ServerProc, run_cli
from tests.node_env import node_root, start_sshd, wait_for, write_config
from tests.test_agent_ssh import SSHD, ensure_login, ssh

pytestmark = pytest.mark.skipif(not (Path(SSHD).exists() and os.geteuid() == 0),
                                reason="needs OpenSSH and root (node roots and sshd are root's)")
ROLE = """kind: role
version: v5
metadata:
  name: node-e2e
spec:
  allow:
    logins: ["{{internal.logins}}"]
    node_labels:
      env: test
"""


@dataclass
class Env:
    server: ServerProc
    root: Path
    tmp: Path
    login: str

    @property
    def layout(self) -> Layout:
        return Layout(root=self.root)

    @property
    def pin(self) -> str:
        return str(json.loads((self.server.data_dir / "server.json").read_text())["ca_pin"])

    @property
    def cluster(self) -> str:
        return self.server.cluster_name

    def register(self, name: str, port: int, labels: dict[str, str] | None = None, **spec: object) -> Node:
        with self.server.admin() as admin:
            node = admin.upsert(Node(metadata=Metadata(name=name, labels=labels or {"env": "test"}),
                                     spec=NodeSpec(addr=f"127.0.0.1:{port}", **spec)))  # type: ignore[arg-type]
        assert isinstance(node, Node)
        return node

    def node_token(self, name: str) -> str:
        out = self.server.ctl("tokens", "add", "--type=node", f"--node-name={name}", "--format=json").stdout
        return str(json.loads(out)["token"])

    def node_start(self, *extra: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return run_cli("node", "start", "--root", str(self.root), "--log-format", "text", *extra, check=check)

    def state(self) -> dict[str, object]:
        return dict(json.loads(self.layout.state.read_text()))

    def get_node(self, name: str) -> Node:
        with self.server.admin() as admin:
            return admin.get_node(name)

    def bot(self, name: str) -> Path:
        """A bot whose role reaches env=test nodes; returns its destination (ssh_config, known_hosts, key)."""
        token = json.loads(self.server.ctl("bots", "add", name, "--roles=node-e2e", f"--logins={self.login}",
                                           "--format=json").stdout)["token"]
        dest = self.tmp / f"{name}-dest"
        run_cli("bot", "start", "--data-dir", str(self.tmp / f"{name}-data"), "--destination-dir", str(dest),
                "--token", token, "--ca-pin", self.pin, "--auth-server", self.server.address, "--oneshot",
                "--log-format", "text")
        return dest


@pytest.fixture()
def env(fresh_server: ServerProc, tmp_path: Path) -> Iterator[Env]:
    fresh_server.ctl("create", "-f", "-", input=ROLE)
    with node_root() as root:
        yield Env(fresh_server, root, tmp_path, ensure_login())


def host_cert_seen(port: int) -> str:
    """The host certificate sshd presents now (ssh-keyscan -c), as `type base64`."""
    out = subprocess.run(["ssh-keyscan", "-c", "-t", "ed25519", "-p", str(port), "127.0.0.1"], capture_output=True,
                         text=True, timeout=30).stdout
    words = next(ln for ln in out.splitlines() if "-cert-v01@openssh.com" in ln).split()
    at = next(i for i, w in enumerate(words) if w.endswith("-cert-v01@openssh.com"))
    return " ".join(words[at:at + 2])


def test_a_node_joins_renews_its_host_certificate_and_keeps_serving_bots(env: Env) -> None:
    port = free_port()
    env.register("web1", port, host_cert_ttl="6m")
    env.register("elsewhere", free_port(), labels={"env": "other"})  # no role of the bot reaches it
    assert "never joined" in env.server.ctl("nodes", "ls").stdout
    layout = env.layout
    write_config(layout, name="web1", address=env.server.address, pin=env.pin, token=env.node_token("web1"),
                 pid_file=str(layout.at("run/sshd.pid")))
    proc = env.node_start("--oneshot")
    assert "joined as node web1" in proc.stderr and (layout.etc / "join-token").read_text().strip() \
        not in proc.stderr
    # What sshd and the helper read, with sshd's modes: private keys root-only, the rest readable.
    modes = {p: stat.S_IMODE(p.stat().st_mode) for p in (layout.data_dir, layout.data_dir / "identity",
                                                         layout.host_key, layout.host_cert, layout.user_ca,
                                                         layout.state)}
    assert list(modes.values()) == [0o700, 0o600, 0o600, 0o644, 0o644, 0o644], modes
    assert layout.host_key.read_text().startswith("-----BEGIN OPENSSH PRIVATE KEY-----")
    node = env.get_node("web1")
    state = env.state()
    assert state["labels"] == {"env": "test"} and state["node"] == "web1" and state["cluster"] == env.cluster
    assert state["revision"] == node.metadata.revision and state["max_age"] == 3600 and state["format"] == 1
    assert abs(int(state["refreshed_at"]) - time.time()) < 60  # type: ignore[call-overload]
    with env.server.admin() as admin:
        assert layout.user_ca.read_text().strip() == admin.export_cas("user")[0].public_data.strip()
    assert node.status.generation == 1 and node.status.host_cert_expires is not None
    listed = env.server.ctl("nodes", "ls").stdout
    web1 = next(ln for ln in listed.splitlines() if ln.startswith("web1 "))
    assert "online" in web1 and "never" not in web1
    sshd = start_sshd(layout, env.login, port)
    try:
        dest = env.bot("reader")
        config = (dest / "ssh_config").read_text()
        assert f"Host web1.{env.cluster}" in config and "elsewhere" not in config  # only the nodes its roles reach
        # The bot trusts the node's host certificate through known_hosts (@cert-authority, StrictHostKeyChecking)
        result = ssh(dest, env.login, f"web1.{env.cluster}")
        assert result.returncode == 0 and result.stdout.strip() == env.login, result.stderr
        first_cert = host_cert_seen(port)
        host_key_before = layout.host_key.read_bytes()
        assert first_cert == " ".join(layout.host_cert.read_text().split()[:2])
        session = _open_session(dest, env.login, f"web1.{env.cluster}")
        try:
            # 4.5 of the certificate's 6 minutes later (a third left), the agent renews it and reloads sshd.
            agent = NodeAgent(layout, load_config(layout.config),
                              clock=lambda: datetime.now(UTC) + timedelta(minutes=4, seconds=30))
            renewed = agent.sync_once()
            agent.unlock()
            assert renewed.host_cert_renewed and renewed.reloaded and not renewed.renewed_identity
            wait_for(lambda: "Received SIGHUP" in sshd.log_text(), 10, "sshd to reload")
            wait_for(lambda: _listening(port), 10, "sshd to listen again")
            assert sshd.proc.poll() is None  # reloaded, not restarted
            assert host_cert_seen(port) == " ".join(layout.host_cert.read_text().split()[:2]) != first_cert
            assert layout.host_key.read_bytes() == host_key_before  # the key is the node's for good
            # the session opened before the reload goes on; new logins verify the renewed certificate
            assert _talk(session, "still-here") == "got still-here"
            again = ssh(dest, env.login, f"web1.{env.cluster}")
            assert again.returncode == 0 and again.stdout.strip() == env.login, again.stderr
            # a sync that changes no certificate leaves sshd alone
            quiet = env.node_start("--oneshot")
            assert "reloaded sshd" not in quiet.stderr
            assert sshd.log_text().count("Received SIGHUP") == 1
        finally:
            for pipe in (session.stdin, session.stdout, session.stderr):
                pipe.close()  # type: ignore[union-attr]
            session.wait(timeout=10)
    finally:
        sshd.stop()
    with env.server.admin() as admin:
        events = [e for e in admin.audit_events() if e.action in ("node.join", "cert.issue_host")]
    assert [(e.action, e.outcome) for e in events] == [("node.join", "ok"), ("cert.issue_host", "ok"),
                                                       ("cert.issue_host", "ok")]


def _open_session(dest: Path, login: str, host: str) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        ["ssh", "-F", str(dest / "ssh_config"), "-o", "BatchMode=yes", "-o", "ConnectTimeout=10", f"{login}@{host}",
         "while read line; do echo got $line; done"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, bufsize=1)
    assert _talk(proc, "hello") == "got hello"
    return proc


def _talk(proc: subprocess.Popen[str], line: str) -> str:
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write(line + "\n")
    proc.stdin.flush()
    return proc.stdout.readline().strip()


def _listening(port: int) -> bool:
    import socket

    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def test_a_label_change_reaches_the_state_file_at_the_next_sync(env: Env) -> None:
    env.register("web2", free_port())
    write_config(env.layout, name="web2", address=env.server.address, pin=env.pin, token=env.node_token("web2"))
    env.node_start("--oneshot")
    first = env.state()
    with env.server.admin() as admin:
        node = admin.get_node("web2")
        node.metadata.labels = {"env": "test", "tier": "frontend"}
        node.spec.hostnames = ["web2.internal"]
        changed = admin.upsert(node)
    assert changed.metadata.revision != first["revision"]
    assert env.state() == first  # nothing reaches the node before it syncs
    env.node_start("--oneshot")
    state = env.state()
    assert state["labels"] == {"env": "test", "tier": "frontend"} and state["revision"] == changed.metadata.revision
    cert = host_key.current(env.layout)  # a new name is certified at the same sync, not when the old cert runs out
    assert cert is not None and cert.principals[-1] == "web2.internal"
    # the node reports what it applied at the sync after (the revision of its state file then)
    env.node_start("--oneshot")
    assert env.get_node("web2").status.applied_revision == changed.metadata.revision
    assert env.get_node("web2").metadata.revision == changed.metadata.revision  # heartbeats are no new revision


def test_nodes_ls_shows_state_expiry_and_last_heartbeat(env: Env) -> None:
    env.register("quiet", free_port())
    env.register("beating", free_port())
    write_config(env.layout, name="beating", address=env.server.address, pin=env.pin,
                 token=env.node_token("beating"))
    env.node_start("--oneshot", "--heartbeat-interval", "1s")
    rows = {n["metadata"]["name"]: n for n in json.loads(env.server.ctl("nodes", "ls", "--format", "json").stdout)}
    assert rows["quiet"]["status"]["state"] == "never joined" and rows["quiet"]["status"]["last_heartbeat"] is None
    beating = rows["beating"]["status"]
    assert beating["state"] == "online" and beating["heartbeat_interval"] == "1s" and beating["version"]
    assert beating["host_cert_expires"] and beating["last_heartbeat"] and beating["reported_addr"] == "127.0.0.1"
    text = env.server.ctl("nodes", "ls").stdout
    assert text.splitlines()[0].split() == ["Node", "Name", "Address", "Labels", "State", "Host", "Cert", "Expires",
                                            "Last", "Heartbeat"]
    assert beating["host_cert_expires"] in text and beating["last_heartbeat"] in text
    time.sleep(3.2)  # three missed heartbeats of 1s
    rows = {n["metadata"]["name"]: n for n in json.loads(env.server.ctl("nodes", "ls", "--format", "json").stdout)}
    assert rows["beating"]["status"]["state"] == "stale"
    assert "stale" in next(ln for ln in env.server.ctl("nodes", "ls").stdout.splitlines() if ln.startswith("beating"))


def test_the_agent_backs_off_while_the_cluster_is_unreachable_and_keeps_refreshed_at(env: Env) -> None:
    env.register("web3", free_port())
    write_config(env.layout, name="web3", address=env.server.address, pin=env.pin, token=env.node_token("web3"),
                 heartbeat_interval="1s")
    log = env.tmp / "agent.log"
    from machineid.cluster.process import MACHINEID

    with open(log, "w") as out:
        agent = subprocess.Popen([MACHINEID, "node", "start", "--root", str(env.root), "--log-format", "text"],
                                 stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: env.layout.state.exists(), 30, "the first sync")
        wait_for(lambda: int(env.state()["refreshed_at"]) < int(time.time()), 10, "a second to pass")  # type: ignore[call-overload]
        address = env.server.address
        env.server.stop()
        wait_for(lambda: "cannot reach the cluster" in log.read_text(), 20, "the agent to notice")
        stale = env.state()["refreshed_at"]
        time.sleep(2.5)
        assert env.state()["refreshed_at"] == stale  # nothing refreshed: the helper can tell how old it is
        assert agent.poll() is None and "retrying in" in log.read_text()
        env.server.start(listen=address)
        wait_for(lambda: env.state()["refreshed_at"] != stale, 30, "the agent to sync again")
    finally:
        agent.terminate()
        agent.wait(timeout=10)
    assert agent.returncode == 0, log.read_text()


def test_a_wrong_pin_sends_nothing_and_the_token_still_joins(env: Env) -> None:
    env.register("web4", free_port())
    token = env.node_token("web4")
    write_config(env.layout, name="web4", address=env.server.address, pin="sha256:" + "0" * 64, token=token)
    bad = env.node_start("--oneshot", check=False)
    assert bad.returncode != 0 and "does not match the pin" in bad.stderr
    assert not env.layout.state.exists() and not env.layout.host_cert.exists()
    assert not (env.layout.data_dir / "identity").exists()
    write_config(env.layout, name="web4", address=env.server.address, pin=env.pin, token=token)
    env.node_start("--oneshot")
    again = env.node_start("--oneshot")  # renews nothing, joins nothing: the stored identity syncs
    assert "joined" not in again.stderr and env.get_node("web4").status.generation == 1


def test_tokens_add_for_a_node_prints_node_setup_and_a_node_identity_reads_nothing(env: Env) -> None:
    env.register("web5", free_port())
    out = env.server.ctl("tokens", "add", "--type=node", "--node-name=web5").stdout
    assert "machineid node setup" in out and "--name=web5" in out and "--join-method=token" in out
    data = json.loads(env.server.ctl("tokens", "add", "--type=node", "--node-name=web5", "--format=json").stdout)
    assert data.keys() == {"node", "token", "join_method", "token_expires", "ca_pins", "auth_server"}
    none = env.server.ctl("tokens", "add", "--type=node", "--node-name=nowhere", check=False)
    assert none.returncode == 4 and "not found" in none.stderr
    write_config(env.layout, name="web5", address=env.server.address, pin=env.pin, token=data["token"])
    env.node_start("--oneshot")
    node_ident = Identity.load(env.layout.data_dir / "identity")
    assert node_ident.info.node_name == "web5" and node_ident.ssh_cert == ""
    with Client(env.server.address, node_ident) as node:
        for kind in ("role", "bot", "token", "user", "node"):
            with pytest.raises(errors.PermissionDeniedError, match="node:web5 may not list"):
                node.list(kind)
        with pytest.raises(errors.PermissionDeniedError, match="node:web5 may not read"):
            node.get_role("access")
        with pytest.raises(errors.PermissionDeniedError):
            node.export_cas()
    dest = env.bot("nosy")
    with Client(env.server.address, Identity.load(dest / "identity")) as bot, \
            pytest.raises(errors.PermissionDeniedError, match="may not sync as a node"):
        bot.sync_node("1.0", timedelta(minutes=1))
    assert env.get_node("web5").status.version != "1.0"
