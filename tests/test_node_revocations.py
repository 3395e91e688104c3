"""Revocations reach the node at once, end to end: a node set up with `machineid node setup` (join mode: the node
agent's first sync before sshd's reload, the principals helper run as nobody, RevokedKeys in the drop-in) on a real
sshd, bots and users logging in with plain ssh. A locked bot, an expired or deleted user, and a role edited away
from the node are refused by sshd after one `node start --oneshot` (no reload: sshd reads RevokedKeys at each
login); an unlocked bot that joined again gets back in. The agent never advances refreshed_at without the list."""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from machineid.api import certs
from machineid.api.client import Client
from machineid.api.identity import Identity
from machineid.model import errors
from machineid.model.resources import Metadata, Node, NodeSpec, Role, User
from machineid.node.agent import NodeAgent
from machineid.node.config import load as load_config
from machineid.node.layout import Layout
from tests import nodes
from tests.conftest import ServerProc, run_cli
from tests.test_agent_ssh import ensure_login

pytestmark = pytest.mark.skipif(not (Path(nodes.SSHD).exists() and os.geteuid() == 0),
                                reason="needs OpenSSH and root (node roots and sshd are root's)")


@dataclass
class Env:
    srv: ServerProc
    root: Path
    tmp: Path
    port: int
    login: str
    sshd: subprocess.Popen[bytes]

    @property
    def layout(self) -> Layout:
        return Layout(self.root)

    @property
    def pin(self) -> str:
        return str(json.loads((self.srv.data_dir / "server.json").read_text())["ca_pin"])

    @property
    def host(self) -> str:
        return f"web1.{self.srv.cluster_name}"

    def sync(self) -> str:
        return run_cli("node", "start", "--root", str(self.root), "--oneshot", "--log-format", "text").stderr

    def bot(self, name: str, data: str = "", token: str = "") -> Path:
        if not token:
            token = json.loads(self.srv.ctl("bots", "add", name, "--roles=web", "--format=json").stdout)["token"]
        dest = self.tmp / f"{name}-dest"
        run_cli("bot", "start", "--data-dir", str(self.tmp / (data or f"{name}-data")), "--destination-dir",
                str(dest), "--token", token, "--join-method", "token", "--ca-pin", self.pin, "--auth-server",
                self.srv.address, "--oneshot")
        return dest

    def ssh_bot(self, dest: Path) -> subprocess.CompletedProcess[str]:
        return self._ssh(["-F", str(dest / "ssh_config"), "-o", f"HostKeyAlias={self.host}"], self.host)

    def ssh_user(self, key: Path) -> subprocess.CompletedProcess[str]:
        return self._ssh(["-i", str(key), "-o", f"CertificateFile={key}-cert.pub", "-o", "IdentitiesOnly=yes",
                          "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null"], "127.0.0.1")

    def _ssh(self, opts: list[str], host: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["ssh", *opts, "-o", "BatchMode=yes", "-o", "ConnectTimeout=10", "-o",
                               "HostName=127.0.0.1", "-p", str(self.port), f"{self.login}@{host}", "id -un"],
                              capture_output=True, text=True, timeout=30)

    def user_cert(self, name: str) -> Path:
        key = certs.new_key()
        path = self.tmp / f"{name}-{time.monotonic_ns()}"
        path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
                                           serialization.NoEncryption()))
        path.chmod(0o600)
        with self.srv.admin() as admin:
            out = admin.sign_user(name, certs.public_key_pem(key.public_key()), timedelta(hours=1))
        Path(f"{path}-cert.pub").write_text(out.ssh_cert + "\n")
        return path

    def refused(self, result: subprocess.CompletedProcess[str]) -> bool:
        return result.returncode == 255 and "Permission denied" in result.stderr

    def ok(self, result: subprocess.CompletedProcess[str]) -> bool:
        return result.returncode == 0 and result.stdout.strip() == self.login


@pytest.fixture()
def env(fresh_server: ServerProc, tmp_path: Path) -> Iterator[Env]:
    login = ensure_login()
    fresh_server.ctl("create", "-f", "-", input=f"kind: role\nmetadata: {{name: web}}\nspec:\n  allow: {{logins: "
                                                f"[{login}], node_labels: {{env: prod}}}}\n")
    with nodes.node_root() as root:
        port, sshd = nodes.start_distro_sshd(root)
        try:
            with fresh_server.admin() as admin:
                admin.upsert(Node(metadata=Metadata(name="web1", labels={"env": "prod"}),
                                  spec=NodeSpec(addr=f"127.0.0.1:{port}")))
            token = json.loads(fresh_server.ctl("tokens", "add", "--type=node", "--node-name=web1",
                                                "--format=json").stdout)["token"]
            token_file = tmp_path / "node-token"
            token_file.write_text(token + "\n")
            e = Env(fresh_server, root, tmp_path, port, login, sshd)
            setup = run_cli("node", "setup", "--root", str(root), "--auth-server", fresh_server.address, "--ca-pin",
                            e.pin, "--name", "web1", "--token", str(token_file), "--join", check=False)
            assert setup.returncode == 0, setup.stdout + setup.stderr
            deadline = time.monotonic() + 10
            while "Received SIGHUP" not in nodes.sshd_log(root) and time.monotonic() < deadline:
                time.sleep(0.1)
            nodes.wait_for_port(port, sshd, root)
            yield e
        finally:
            sshd.terminate()
            sshd.wait(10)


def revoked_in_log(env: Env) -> int:
    return nodes.sshd_log(env.root).count("revoked by file")


def test_a_locked_bot_is_refused_after_one_sync_and_gets_back_in_after_unlock_and_join(env: Env) -> None:
    assert env.layout.revoked_keys.read_bytes().startswith(b"SSHKRL\n\x00")  # setup's sync wrote the list
    dest = env.bot("robot")
    assert env.ok(first := env.ssh_bot(dest)), first.stderr
    # a copy of the bot's identity renews after the agent did: the cluster locks the bot
    stale = Identity.load(env.tmp / "robot-data" / "identity")
    with Client(env.srv.address, stale) as c:
        c.renew(certs.public_key_pem(certs.new_key().public_key()))
        with pytest.raises(errors.PermissionDeniedError, match="now locked"):
            c.renew(certs.public_key_pem(certs.new_key().public_key()))
    assert env.ok(env.ssh_bot(dest))  # the node has not heard of it yet
    sighups = nodes.sshd_log(env.root).count("Received SIGHUP")
    env.sync()  # one heartbeat
    refused = env.ssh_bot(dest)
    assert env.refused(refused), refused.stderr
    assert revoked_in_log(env) == 1
    assert nodes.sshd_log(env.root).count("Received SIGHUP") == sighups  # no reload: sshd reads it per login
    # unlocked, the bot joins again with a new token (the same key id): it logs in; its old certificate does not
    old_cert = (dest / "key-cert.pub").read_text()
    env.srv.ctl("bots", "unlock", "robot")
    token = json.loads(env.srv.ctl("tokens", "add", "--type=bot", "--bot-name=robot", "--format=json").stdout)["token"]
    env.bot("robot", data="robot-data-2", token=token)
    env.sync()
    assert env.ok(again := env.ssh_bot(dest)), again.stderr
    (dest / "key-cert.pub").write_text(old_cert)
    assert env.refused(env.ssh_bot(dest))


def test_an_expired_or_deleted_user_is_refused_after_one_sync(env: Env) -> None:
    with env.srv.admin() as admin:
        for name in ("alice", "bob"):
            admin.upsert(User(metadata=Metadata(name=name, expires=datetime.now(UTC) + timedelta(days=1)),
                              spec=_user_spec()))
    alice, bob = env.user_cert("alice"), env.user_cert("bob")
    assert env.ok(a := env.ssh_user(alice)), a.stderr
    assert env.ok(env.ssh_user(bob))
    with env.srv.admin() as admin:
        user = admin.get_as(User, "alice")
        user.metadata.expires = datetime.now(UTC) - timedelta(seconds=1)  # expired now, before its certificate
        admin.upsert(user)
        admin.delete("user", "bob")
    assert env.ok(env.ssh_user(alice))  # not yet synced
    env.sync()
    assert env.refused(env.ssh_user(alice)) and env.refused(env.ssh_user(bob))
    assert revoked_in_log(env) == 2


def test_a_role_edited_away_from_the_node_refuses_the_certificates_issued_before(env: Env) -> None:
    dest = env.bot("robot")
    assert env.ok(first := env.ssh_bot(dest)), first.stderr
    with env.srv.admin() as admin:
        role = admin.get_as(Role, "web")
        role.spec.allow.node_labels = {"env": ["staging"]}
        admin.upsert(role)
    assert env.ok(env.ssh_bot(dest))  # the certificate still says env=prod: only the list stops it
    env.sync()
    assert env.refused(env.ssh_bot(dest)) and revoked_in_log(env) == 1


def test_the_node_never_claims_freshness_without_the_list(env: Env) -> None:
    state = json.loads(env.layout.state.read_text())
    with env.srv.admin() as admin:
        admin.upsert(User(metadata=Metadata(name="carol"), spec=_user_spec()))
        admin.delete("user", "carol")  # a new version of the list (nothing was issued to carol, all the same)
        admin.upsert(User(metadata=Metadata(name="dave", expires=datetime.now(UTC) - timedelta(seconds=1)),
                          spec=_user_spec()))
    held = env.layout.revoked_keys.read_bytes()
    # the list cannot be written (its path is taken by a directory): the sync fails and nothing claims freshness
    env.layout.revoked_keys.unlink()
    env.layout.revoked_keys.mkdir()
    agent = NodeAgent(env.layout, load_config(env.layout.config),
                      clock=lambda: datetime.now(UTC) + timedelta(seconds=5))
    try:
        with pytest.raises(OSError):
            agent.sync_once(reload=False)
        assert json.loads(env.layout.state.read_text())["refreshed_at"] == state["refreshed_at"]
        env.layout.revoked_keys.rmdir()
        env.layout.revoked_keys.write_bytes(held)
        result = agent.sync_once(reload=False)
    finally:
        agent.unlock()
    assert result.revocations_written and env.layout.revoked_keys.read_bytes() != held
    assert json.loads(env.layout.state.read_text())["refreshed_at"] > state["refreshed_at"]
    assert oct(env.layout.revoked_keys.stat().st_mode & 0o777) == "0o644" and env.layout.revoked_keys.stat().st_uid == 0


def _user_spec() -> object:
    from machineid.model.resources import UserSpec

    return UserSpec(roles=["web"], traits={})
