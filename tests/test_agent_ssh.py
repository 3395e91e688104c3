"""The guide end to end: a real cluster, a real OpenSSH sshd set up by `machineid node setup` with the host key and
certificate from `ctl nodes add` (the principals helper run as nobody), the agent joining with token and pin, and
plain `ssh -F DIR/ssh_config`."""

from __future__ import annotations

import json
import re
import shutil
import signal
import stat
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from machineid.agent.destination import FILES
from machineid.api import certs
from machineid.api.client import Client, identity_from_certs
from machineid.api.identity import Identity
from machineid.model import errors
from machineid.quickstart import demo_login, run_sshd_node
from tests import nodes
from tests.conftest import MACHINEID, ServerProc, run_cli

SSHD = shutil.which("sshd") or "/usr/sbin/sshd"
pytestmark = pytest.mark.skipif(not (Path(SSHD).exists() and shutil.which("ssh")),
                                reason="OpenSSH is not installed (scripts/install-system-deps installs it)")
E2E_USER = "mid-e2e"


def ensure_login() -> str:
    return demo_login(E2E_USER)


@dataclass
class Node:
    name: str
    port: int
    proc: subprocess.Popen[bytes]
    root: Path  # the node's root (tests.nodes), removed by stop()

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=10)
        shutil.rmtree(self.root, ignore_errors=True)

    @property
    def log(self) -> str:
        return nodes.sshd_log(self.root)


def start_sshd(server: ServerProc, name: str = "node1", labels: str = "env=test") -> Node:
    """A node registered with `ctl nodes add` and set up with the `node setup` command it prints, under its own
    root, running sshd on a free loopback port."""
    root = nodes.new_root()
    try:
        proc, port = run_sshd_node(server.data_dir, root, name, labels)
    except BaseException:
        shutil.rmtree(root, ignore_errors=True)
        raise
    return Node(name, port, proc, root)


def ssh(dest: Path, login: str, host: str, command: str = "id -un") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["ssh", "-F", str(dest / "ssh_config"), "-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes",
         "-o", "ConnectTimeout=10", f"{login}@{host}", command],
        capture_output=True, text=True, timeout=30,
    )


@dataclass
class Env:
    server: ServerProc
    node: Node
    login: str
    tmp: Path

    @property
    def cluster(self) -> str:
        return self.server.cluster_name

    @property
    def pin(self) -> str:
        return str(json.loads((self.server.data_dir / "server.json").read_text())["ca_pin"])

    def new_bot(self, name: str) -> str:
        out = self.server.ctl("bots", "add", name, "--roles=e2e", f"--logins={self.login}", "--format=json").stdout
        return str(json.loads(out)["token"])

    def agent_args(self, token: str, data: Path, dest: Path, *extra: str, pin: str = "") -> list[str]:
        return ["bot", "start", "--data-dir", str(data), "--destination-dir", str(dest), "--token", token,
                "--join-method", "token", "--ca-pin", pin or self.pin, "--auth-server", self.server.address,
                "--log-format", "text", *extra]


def _role_yaml(login: str) -> str:
    return """kind: role
version: v5
metadata:
  name: e2e
spec:
  allow:
    logins: ["{{internal.logins}}"]
    node_labels:
      env: test
  deny:
    logins: [root]
"""


@pytest.fixture()
def env(fresh_server: ServerProc, tmp_path: Path) -> Iterator[Env]:
    login = ensure_login()
    fresh_server.ctl("create", "-f", "-", input=_role_yaml(login))
    node = start_sshd(fresh_server)
    yield Env(fresh_server, node, login, tmp_path)
    node.stop()


def test_oneshot_join_and_ssh(env: Env) -> None:
    token = env.new_bot("robot")
    data, dest = env.tmp / "bot-data", env.tmp / "machine-id"
    run_cli(*env.agent_args(token, data, dest, "--oneshot"))
    # exactly the guide's files (plus key-cert.pub and identity), with private keys 0600
    assert sorted(p.name for p in dest.iterdir()) == sorted(FILES)
    for name in FILES:
        mode = stat.S_IMODE((dest / name).stat().st_mode)
        assert mode == (0o600 if name in ("key", "identity") else 0o644), (name, oct(mode))
    assert stat.S_IMODE(data.stat().st_mode) == 0o700
    assert stat.S_IMODE((data / "identity").stat().st_mode) == 0o600
    known = (dest / "known_hosts").read_text()
    assert known.startswith(f"@cert-authority *.{env.cluster},{env.cluster} ssh-ed25519 ") and "type=host" in known
    config = (dest / "ssh_config").read_text()
    assert f"Host node1.{env.cluster}" in config and f"Port {env.node.port}" in config
    # plain ssh with the written config runs a command as the allowed login
    result = ssh(dest, env.login, f"node1.{env.cluster}")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == env.login
    # a login the role does not allow is refused
    refused = ssh(dest, "root", f"node1.{env.cluster}")
    assert refused.returncode == 255 and "Permission denied" in refused.stderr
    # the identity file works with the admin CLI's --identity (bots may list the nodes their roles allow)
    listed = run_cli("ctl", "--auth-server", env.server.address, "--identity", str(dest / "identity"), "nodes", "ls")
    assert "node1" in listed.stdout and f"127.0.0.1:{env.node.port}" in listed.stdout
    # The destination holds no renewable identity: whoever reads it can use the certificates until they expire,
    # but cannot renew them into the bot (fork it), nor mint more; the renewable one stays in the data dir.
    out, kept = Identity.load(dest / "identity"), Identity.load(data / "identity")
    assert not out.info.renewable and kept.info.renewable and out.key_pem != kept.key_pem
    key = certs.new_key()
    with Client(env.server.address, out) as stolen:
        with pytest.raises(errors.PermissionDeniedError, match="not renewable"):
            stolen.renew(certs.public_key_pem(key.public_key()))
        with pytest.raises(errors.PermissionDeniedError, match="renewable identity"):
            stolen.issue_output_certs(certs.public_key_pem(key.public_key()))


def test_token_from_file_and_config_file(env: Env) -> None:
    token = env.new_bot("filebot")
    token_file = env.tmp / "token"
    token_file.write_text(token + "\n")
    config = env.tmp / "bot.yaml"
    config.write_text(f"""version: v1
auth_server: {env.server.address}
onboarding:
  join_method: token
  token: {token_file}
  ca_pins: [{env.pin}]
storage:
  directory: {env.tmp / 'cfg-data'}
destinations:
  - directory: {env.tmp / 'cfg-dest'}
certificate_ttl: 30m
renewal_interval: 10m
""")
    proc = run_cli("bot", "start", "--config", str(config), "--oneshot", "--log-format", "text")
    assert token not in proc.stderr + proc.stdout  # the secret never reaches the logs
    assert ssh(env.tmp / "cfg-dest", env.login, f"node1.{env.cluster}").stdout.strip() == env.login


def test_wrong_pin_sends_no_token_and_used_token_is_refused(env: Env) -> None:
    token = env.new_bot("pinned")
    bad = run_cli(*env.agent_args(token, env.tmp / "d1", env.tmp / "o1", "--oneshot", pin="sha256:" + "0" * 64),
                  check=False)
    assert bad.returncode != 0
    assert "does not match the pin" in bad.stderr
    assert not (env.tmp / "o1").exists()
    # the token was not sent: it still joins with the right pin ...
    run_cli(*env.agent_args(token, env.tmp / "d2", env.tmp / "o2", "--oneshot"))
    # ... once
    again = run_cli(*env.agent_args(token, env.tmp / "d3", env.tmp / "o3", "--oneshot"), check=False)
    assert again.returncode != 0 and "already used" in again.stderr
    events = json.loads(env.server.ctl("audit", "--format=json").stdout)
    joins = [e for e in events if e["action"] == "bot.join"]
    assert [e["outcome"] for e in joins] == ["ok", "denied"]


def test_bad_flags_name_the_flag(env: Env) -> None:
    proc = run_cli("bot", "start", "--data-dir", str(env.tmp / "x"), "--destination-dir", str(env.tmp / "y"),
                   "--auth-server", env.server.address, "--token", "abc", "--oneshot", check=False)
    assert proc.returncode == 3  # invalid input
    assert "onboarding.ca_pins: is required" in proc.stderr and "--ca-pin" in proc.stderr
    proc = run_cli(*env.agent_args("abc", env.tmp / "x", env.tmp / "y", "--oneshot", "--certificate-ttl", "soon"),
                   check=False)
    assert proc.returncode == 3 and "certificate_ttl" in proc.stderr and "--certificate-ttl" in proc.stderr


def _wait_for(predicate: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def _written(log_path: Path) -> int:
    """The newest generation whose certificates the agent has written to its destination (it logs that last)."""
    found = re.findall(r"(?:joined|renewed): bot \S+ generation (\d+),", log_path.read_text())
    return int(found[-1]) if found else 0


def test_renewal_loop_replay_lock_and_cluster_restart(env: Env) -> None:
    token = env.new_bot("looper")
    data, dest = env.tmp / "loop-data", env.tmp / "loop-dest"
    log_path = env.tmp / "agent.log"
    with open(log_path, "w") as log:
        agent = subprocess.Popen([MACHINEID, *env.agent_args(token, data, dest, "--renewal-interval", "2s",
                                                              "--certificate-ttl", "1m")],
                                 stdout=log, stderr=subprocess.STDOUT)
    try:
        _wait_for(lambda: _written(log_path) >= 1, 30, "the first join")
        first = Identity.load(data / "identity")  # a copy of the first renewable identity
        for target in (2, 3):  # two renewals, ssh works after each
            _wait_for(lambda t=target: _written(log_path) >= t, 30,  # type: ignore[misc]
                      f"renewal to generation {target}")
            result = ssh(dest, env.login, f"node1.{env.cluster}")
            assert result.returncode == 0 and result.stdout.strip() == env.login, result.stderr
        text = log_path.read_text()
        assert "renewed: bot looper generation 2" in text and "next renewal at" in text
        assert token not in text

        # the cluster goes away in the middle of the loop, and comes back on the same address
        port = int(env.server.address.rsplit(":", 1)[1])
        assert env.server.stop() == 0
        _wait_for(lambda: "cannot reach the cluster" in log_path.read_text(), 30, "the agent to notice")
        before = _written(log_path)
        assert ssh(dest, env.login, f"node1.{env.cluster}").returncode == 0  # last good certificates stay
        env.server.start(listen=f"127.0.0.1:{port}")
        _wait_for(lambda: _written(log_path) > before, 60, "a renewal after the restart")
        assert ssh(dest, env.login, f"node1.{env.cluster}").returncode == 0
    finally:
        agent.send_signal(signal.SIGTERM)
        code = agent.wait(timeout=30)
    assert code == 0, log_path.read_text()
    assert "stopped" in log_path.read_text()

    # replaying the first renewable certificate after renewals is refused and locks the bot
    key = certs.new_key()
    with Client(env.server.address, first) as c, pytest.raises(errors.PermissionDeniedError, match="locked"):
        identity_from_certs(certs.private_key_pem(key), c.renew(certs.public_key_pem(key.public_key())))
    bots = env.server.ctl("bots", "ls").stdout
    assert "looper" in bots and "yes: generation mismatch" in bots


def ssh_to(dest: Path, login: str, node: Node, cluster: str) -> subprocess.CompletedProcess[str]:
    """ssh to a node whether or not the bot's ssh_config lists it (the node must refuse on its own)."""
    host = f"{node.name}.{cluster}"
    return subprocess.run(
        ["ssh", "-F", str(dest / "ssh_config"), "-o", "BatchMode=yes", "-o", "ConnectTimeout=10",
         "-o", "HostName=127.0.0.1", "-p", str(node.port), "-o", f"HostKeyAlias={host}", f"{login}@{host}", "id -un"],
        capture_output=True, text=True, timeout=30)


def test_nodes_enforce_node_labels_themselves(env: Env) -> None:
    """A certificate valid for the login is refused by a node its roles' node_labels do not reach, and deny wins,
    at the node (sshd with the principals helper `node setup` installed, run as nobody), not only in what the
    cluster lists."""
    prod = start_sshd(env.server, "prod1", "env=prod")
    db = start_sshd(env.server, "db1", "env=test,tier=db")
    try:
        env.server.ctl("create", "-f", "-", input=f"""kind: role
version: v5
metadata:
  name: wide
spec:
  allow:
    logins: [{env.login}]
    node_labels:
      '*': '*'
  deny:
    node_labels:
      tier: db
""")
        token = env.new_bot("labelled")  # role e2e: env=test only
        dest = env.tmp / "labelled"
        run_cli(*env.agent_args(token, env.tmp / "labelled-data", dest, "--oneshot"))
        assert ssh(dest, env.login, f"node1.{env.cluster}").returncode == 0
        refused = ssh_to(dest, env.login, prod, env.cluster)
        assert refused.returncode == 255 and "Permission denied" in refused.stderr
        assert "prod1" not in (dest / "ssh_config").read_text()
        # all nodes allowed, tier=db denied: deny wins, at the node
        out = env.server.ctl("bots", "add", "wide-bot", "--roles=wide", "--format=json").stdout
        wide = env.tmp / "wide"
        run_cli(*env.agent_args(json.loads(out)["token"], env.tmp / "wide-data", wide, "--oneshot"))
        assert ssh_to(wide, env.login, prod, env.cluster).returncode == 0
        denied = ssh_to(wide, env.login, db, env.cluster)
        assert denied.returncode == 255 and "Permission denied" in denied.stderr
        assert "Certificate does not contain an authorized principal" in db.log
        assert "no role of the certificate allows it on a node labelled env=test,tier=db" in db.log  # the helper
    finally:
        for n in (prod, db):
            n.stop()


def test_the_token_is_never_spent_on_a_run_that_cannot_succeed(env: Env) -> None:
    token = env.new_bot("careful")
    blocker = env.tmp / "a-file"
    blocker.write_text("not a directory")
    data, dest = env.tmp / "careful-data", env.tmp / "careful-dest"
    # an unusable destination: refused before anything is sent
    bad = run_cli(*env.agent_args(token, data, blocker / "dest", "--oneshot"), check=False)
    assert bad.returncode == 3 and "destination (--destination-dir)" in bad.stderr and "still valid" in bad.stderr
    assert f"{blocker} is a file, not a directory" in bad.stderr
    # a mistyped token file: an error, never sent as if it were the token
    typo = run_cli(*env.agent_args("./tokne.txt", data, dest, "--oneshot"), check=False)
    assert typo.returncode == 3 and "cannot read the token file ./tokne.txt" in typo.stderr
    assert "join refused" not in typo.stderr  # the cluster refused nothing: it was not asked
    # the token still joins
    run_cli(*env.agent_args(token, data, dest, "--oneshot"))
    # and later runs renew from the data dir, without a token
    again = run_cli("bot", "start", "--data-dir", str(data), "--destination-dir", str(dest), "--ca-pin", env.pin,
                    "--auth-server", env.server.address, "--oneshot", "--log-format", "text")
    assert "renewed: bot careful generation 2" in again.stderr + again.stdout
    none = run_cli("bot", "start", "--data-dir", str(env.tmp / "empty"), "--destination-dir", str(dest),
                   "--ca-pin", env.pin, "--auth-server", env.server.address, "--oneshot", check=False)
    assert none.returncode == 3 and "no join token: pass --token" in none.stderr
