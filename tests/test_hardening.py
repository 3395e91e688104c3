"""Security guarantees where access happens: the admin API is not served to anonymous callers, refusals come
before lookups (no existence oracles), tokens only for bots that exist, expired users and roles grant nothing,
and requested names are bounded and stay out of the server's log."""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import grpc
import pytest

from machineid.api import certs
from machineid.api.client import Client, JoinClient
from machineid.api.identity import Identity
from machineid.api.v1 import cluster_pb2 as pb
from machineid.api.v1 import cluster_pb2_grpc as rpc
from machineid.cluster.service import Cluster, Page
from machineid.model import codec, errors
from machineid.model.resources import Bot, ProvisionToken, Role, User
from tests.conftest import ServerProc, run_cli
from tests.inprocess import Clock, new_cluster
from tests.inprocess import admin as admin_of

# The cluster tests run against a server with one worker process and with two.
pytestmark = pytest.mark.workers(1, 2)


@pytest.fixture()
def admin(server: ServerProc) -> Iterator[Client]:
    with server.admin() as client:
        yield client


def user_client(server: ServerProc, tmp_path: Path, name: str, roles: str) -> Client:
    server.ctl("users", "add", name, f"--roles={roles}")
    out = tmp_path / f"{name}.identity"
    server.ctl("auth", "sign", "--user", name, "--out", str(out))
    return Client(server.address, Identity.load(out))


def test_the_admin_api_is_not_served_on_the_join_listener(server: ServerProc, admin: Client) -> None:
    with JoinClient(server.address, list(admin.ping().tls_ca_certs)) as anonymous:
        assert anonymous.ping().cluster_name  # joins and ping: yes
        with pytest.raises(grpc.RpcError) as err:
            rpc.ClusterServiceStub(anonymous.channel).ListRoles(pb.ListRequest(), timeout=10)
    assert err.value.code() == grpc.StatusCode.UNIMPLEMENTED


def test_a_caller_without_the_right_learns_nothing_about_what_exists(server: ServerProc, admin: Client,
                                                                    tmp_path: Path) -> None:
    server.ctl("bots", "add", "oracle-bot", "--roles=access")
    reader = user_client(server, tmp_path, "oracle-reader", "auditor")  # may read, may not write users or bots
    with reader:
        for name in ("admin", "no-such-user", "bot-oracle-bot"):
            with pytest.raises(errors.PermissionDeniedError):
                reader.delete("user", name)
            with pytest.raises(errors.PermissionDeniedError):
                reader.upsert(codec.decode(User, {"metadata": {"name": name}, "spec": {"roles": ["access"]}}))
        for roles in (["access"], ["no-such-role"]):
            with pytest.raises(errors.PermissionDeniedError):
                reader.create_bot(codec.decode(Bot, {"metadata": {"name": "oracle-2"}, "spec": {"roles": roles}}))
            with pytest.raises(errors.PermissionDeniedError):
                reader.update_bot(codec.decode(Bot, {"metadata": {"name": "oracle-bot"}, "spec": {"roles": roles}}))


def test_a_token_planted_for_a_future_bot_never_joins_it(server: ServerProc, admin: Client) -> None:
    """token:create must not be a way to become a bot created later: tokens made for a bot name before the bot are
    purged when it is created, unless the creator adopts one by name (the guide's IAM flow)."""
    planted = admin.upsert(codec.decode(ProvisionToken, {"metadata": {"name": "planted-for-a-future-bot-0123456789"},
                                                         "spec": {"bot_name": "future-bot"}}))
    adopted = admin.upsert(codec.decode(ProvisionToken, {
        "metadata": {"name": "future-bot-iam", "expires": "2099-01-01T00:00:00Z"},
        "spec": {"join_method": "iam", "bot_name": "future-bot", "allow": [{"aws_account": "123456789012"}]}}))
    server.ctl("bots", "add", "future-bot", "--roles=access", f"--token={adopted.metadata.name}")
    names = [t.metadata.name for t in admin.list("token") if t.spec.bot_name == "future-bot"]  # type: ignore[union-attr]
    assert planted.metadata.name not in names and adopted.metadata.name in names
    server.ctl("bots", "rm", "future-bot")
    assert not [t for t in admin.list("token") if t.spec.bot_name == "future-bot"]  # type: ignore[union-attr]


def test_requested_names_are_bounded_and_not_logged(server: ServerProc, admin: Client) -> None:
    before = server.log_path.stat().st_size
    secret = "f00dfeedbeefcafe0123456789abcdef"  # a token typed where a role name belongs
    failed = server.ctl("rm", f"role/{secret}", check=False)
    assert failed.returncode != 0
    huge = "r" * 3_900_000
    for _ in range(3):
        with pytest.raises(errors.ValidationError) as err:
            admin.get_role(huge)
        assert len(str(err.value)) < 1000 and "characters" in str(err.value)
    log = server.log_path.read_text()[before:]
    assert secret not in log
    assert server.log_path.stat().st_size - before < 20_000


# ---------------------------------------------------------------- in-process, with a clock the test controls


@pytest.fixture()
def cluster(tmp_path: Path) -> tuple[Cluster, Clock]:
    clock = Clock()
    return new_cluster(tmp_path, clock), clock


def test_an_expired_user_gets_no_access_and_no_certificates(cluster: tuple[Cluster, Clock]) -> None:
    c, clock = cluster
    admin = admin_of(c)
    c.upsert(admin, codec.decode(User, {"metadata": {"name": "temp", "expires": "2030-01-01T01:00:00Z"},
                                             "spec": {"roles": ["editor"]}}))
    ident = certs.CertIdentity(user="temp", roles=["editor"], cluster="test.example")
    c.list_page(c.caller_from_cert(ident), Role, Page())  # before its expiry: works
    clock.now += timedelta(hours=2)
    with pytest.raises(errors.UnauthenticatedError, match="expired"):
        c.caller_from_cert(ident)


def test_an_expired_role_grants_nothing(cluster: tuple[Cluster, Clock]) -> None:
    c, clock = cluster
    admin = admin_of(c)
    c.upsert(admin, codec.decode(Role, {
        "metadata": {"name": "contractor", "expires": "2030-01-01T01:00:00Z"},
        "spec": {"allow": {"logins": ["ops"], "rules": [{"resources": ["role"], "verbs": ["list"]}]}}}))
    c.upsert(admin, codec.decode(User, {"metadata": {"name": "carol"}, "spec": {"roles": ["contractor"]}}))
    carol = c.caller_from_cert(certs.CertIdentity(user="carol", roles=["contractor"], cluster="test.example"))
    c.list_page(carol, Role, Page())
    clock.now += timedelta(hours=2)
    with pytest.raises(errors.PermissionDeniedError):
        c.list_page(carol, Role, Page())
    key = certs.public_key_pem(certs.new_key().public_key())
    out = c.sign_user(admin, "carol", key, None)
    assert out.principals[0].startswith("-machineid-no-login-")  # neither ops nor machineid:ops


# ---------------------------------------------------------------- injection through operator-supplied strings


def test_numbers_are_not_taken_for_names(server: ServerProc, tmp_path: Path) -> None:
    doc = tmp_path / "octal.yaml"
    doc.write_text("kind: role\nversion: v5\nmetadata:\n  name: 0755\nspec: {}\n")
    failed = server.ctl("create", "-f", str(doc), check=False)
    assert failed.returncode != 0 and "metadata.name: must be a string" in failed.stderr and "quote" in failed.stderr
    listed = server.ctl("get", "roles", "--format", "json").stdout
    assert '"493"' not in listed and '"0755"' not in listed
    with pytest.raises(errors.ValidationError, match=r"allow\.0\.aws_account|aws_account"):
        codec.decode_and_validate(ProvisionToken, {"metadata": {"name": "t"}, "spec": {
            "join_method": "iam", "bot_name": "b", "allow": [{"aws_account": 12345678901}]}})


def test_a_cluster_name_cannot_carry_ssh_config_directives(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    srv = ServerProc(tmp_path / "data", cluster_name="evil.example\n  ProxyCommand sh -c 'touch /tmp/pwned'")
    with pytest.raises(AssertionError, match="cluster_name"):
        srv.start()
    from machineid.agent import destination

    # what a rogue or misconfigured cluster could put in the certificate it issues
    evil = certs.CertIdentity(user="bot-x", roles=[], cluster="a.example\nHost *\n  ProxyCommand id")
    monkeypatch.setattr(Identity, "info", property(lambda self: evil))
    with pytest.raises(ValueError, match="not usable in ssh_config"):
        destination.write(tmp_path / "dest", Identity("", "", []), [])
    assert not (tmp_path / "dest").exists()


def test_rendered_paths_cannot_inject_into_the_unit_or_ssh_config() -> None:
    from machineid.iac.core import Core
    from machineid.iac.resource import BOT
    from machineid.terraform.provider import HINTS

    core = Core(HINTS)
    for field, value in (("destination_dir", "/opt/x\nExecStartPre=/bin/sh -c id"), ("data_dir", 'relative"'),
                         ("config_path", "/etc/%h.yaml"), ("agent_path", "/usr/bin/$EVIL")):
        result = core.check(BOT, {"name": "b", "roles": ["access"], field: value}, references=False)
        assert [v.path for v in result.violations] == [(field,)], (field, result.violations)
        assert "\n" not in str(result.violations[0])


# ---------------------------------------------------------------- one server per data dir, and cleanup after a crash


def test_a_second_server_on_the_same_data_dir_is_refused(tmp_path: Path) -> None:
    import json
    import subprocess

    from machineid.cluster.process import MACHINEID

    first = ServerProc(tmp_path / "data")
    first.start()
    try:
        before = (tmp_path / "data" / "server.json").read_text()
        second = subprocess.run([MACHINEID, "server", "start", "--data-dir", str(tmp_path / "data"), "--listen",
                                 "127.0.0.1:0", "--log-format", "text"], capture_output=True, text=True, timeout=60)
        assert second.returncode != 0
        assert "another server is running" in second.stderr and str(first.proc.pid) in second.stderr  # type: ignore
        assert (tmp_path / "data" / "server.json").read_text() == before
        assert json.loads(before)["pid"] == first.proc.pid  # type: ignore[union-attr]
        first.ctl("get", "roles")
    finally:
        assert first.stop() == 0


def test_a_killed_servers_leftovers_are_cleaned_up_by_the_next(tmp_path: Path) -> None:
    import json
    import signal

    srv = ServerProc(tmp_path / "data")
    srv.start()
    assert srv.proc is not None
    stale = json.loads((tmp_path / "data" / "server.json").read_text())
    sockets = Path(stale["socket_dir"])
    assert sockets.is_dir()
    srv.proc.send_signal(signal.SIGKILL)
    srv.proc.wait(10)
    assert sockets.is_dir() and (tmp_path / "data" / "server.json").exists()  # what SIGKILL leaves
    again = ServerProc(tmp_path / "data")
    again.start()
    try:
        assert not sockets.exists()
        assert json.loads((tmp_path / "data" / "server.json").read_text())["pid"] == again.proc.pid  # type: ignore
    finally:
        assert again.stop() == 0


def test_nodes_add_prints_the_node_setup_command_that_enforces_labels(server: ServerProc, tmp_path: Path) -> None:
    """`nodes add` printed sshd_config lines pointing sshd at the machineid inside a virtualenv, which sshd cannot
    run as nobody (every login refused); it prints the `node setup` command that installs the helper instead."""
    out = server.ctl("nodes", "add", "web7", "--addr", "10.0.0.7:22", "--labels", "env=prod,tier=web",
                     "--out", str(tmp_path / "web7_key")).stdout
    prefix = tmp_path / "web7_key"
    assert (f"machineid node setup --name web7 --labels env=prod,tier=web --host-key {prefix} "
            f"--user-ca {prefix}-user_ca.pub") in out
    assert "AuthorizedPrincipalsCommand" not in out and "node principals" not in out
    user_ca = server.ctl("auth", "export", "--type=user").stdout
    assert Path(f"{prefix}-user_ca.pub").read_text() == user_ca
    # run on the node itself, it names what `node setup` would refuse there, with the fix
    shared = tmp_path / "shared"
    shared.mkdir(mode=0o777)
    os.chmod(shared, 0o1777)
    local = run_cli("ctl", "--data-dir", str(server.data_dir), "nodes", "add", "web9", "--addr", "10.0.0.9:22",
                    "--out", str(tmp_path / "web9_key"), env={"MACHINEID_NODE_ROOT": str(shared / "node")}).stdout
    assert "If this machine is the node, fix this first (sshd would refuse the helper):" in local
    assert f"{shared}: writable by others (mode 1777; sshd refuses everything under it)" in local
    assert "fix: choose a --root" in local
    bad = server.ctl("nodes", "add", "web8", "--addr", "10.0.0.8:22", "--labels", "env=prod %h",
                     "--out", str(tmp_path / "web8_key"), check=False)
    assert bad.returncode != 0 and "--labels" in bad.stderr


def test_public_keys_are_parsed_strictly() -> None:
    from cryptography.hazmat.primitives.asymmetric import ec

    pem = certs.public_key_pem(certs.new_key().public_key())
    certs.load_public_key(pem)
    for bad in (pem + "trailing data", pem + pem, "junk\n" + pem):
        with pytest.raises(ValueError):
            certs.load_public_key(bad)
    p384 = certs.public_key_pem(ec.generate_private_key(ec.SECP384R1()).public_key())
    with pytest.raises(ValueError, match="P-256"):
        certs.load_public_key(p384)
    line = certs.ssh_public_key_line(certs.new_key().public_key(), "comment")
    certs.load_public_key(line)
    with pytest.raises(ValueError):
        certs.load_public_key(line + "\nssh-ed25519 AAAA")


# ---------------------------------------------------------------- the CLI checks before it writes (issue 13)


def test_ctl_checks_outputs_and_names_before_registering_anything(server: ServerProc, tmp_path: Path,
                                                                  admin: Client) -> None:
    out_dir = tmp_path / "outdir"
    out_dir.mkdir()
    bad = server.ctl("nodes", "add", "n-out", "--addr", "10.0.0.9:22", "--out", f"{out_dir}/", check=False)
    assert bad.returncode != 0 and "--out" in bad.stderr and "is a directory" in bad.stderr
    with pytest.raises(errors.NotFoundError):
        admin.get("node", "n-out")  # nothing was registered
    bad = server.ctl("auth", "sign", "--user", "admin", "--out", str(out_dir), check=False)
    assert bad.returncode != 0 and "is a directory" in bad.stderr
    server.ctl("nodes", "add", "n-dup", "--addr", "10.0.0.10:22", "--labels", "env=prod",
               "--out", str(tmp_path / "dup_key"))
    again = server.ctl("nodes", "add", "n-dup", "--addr", "10.0.0.11:22", "--out", str(tmp_path / "dup2_key"),
                       check=False)
    assert again.returncode != 0 and "already registered" in again.stderr and "--force" in again.stderr
    assert admin.get("node", "n-dup").metadata.labels == {"env": "prod"}  # not silently overwritten
    server.ctl("nodes", "add", "n-dup", "--addr", "10.0.0.11:22", "--out", str(tmp_path / "dup3_key"), "--force")
    assert admin.get("node", "n-dup").spec.addr == "10.0.0.11:22"  # type: ignore[union-attr]


def test_document_versions_and_logins_are_checked(server: ServerProc, tmp_path: Path) -> None:
    doc = tmp_path / "v9.yaml"
    doc.write_text("kind: role\nversion: v9\nmetadata:\n  name: v9-role\nspec: {}\n")
    bad = server.ctl("create", "-f", str(doc), check=False)
    assert bad.returncode != 0 and 'version: "v9" is not a version of kind role; use v5' in bad.stderr
    bad = server.ctl("users", "add", "loginy", "--roles=access", "--logins=ro ot", check=False)
    assert bad.returncode != 0 and "--logins" in bad.stderr


def test_the_pulumi_plugin_prints_help_instead_of_serving() -> None:
    import subprocess
    import sys

    exe = Path(sys.executable).parent / "pulumi-resource-machineid"
    out = subprocess.run([str(exe), "--help"], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0 and "machineid pulumi install" in out.stdout


def test_errors_say_what_is_wrong_and_the_way_out(server: ServerProc, fresh_server: ServerProc, tmp_path: Path) -> None:
    import signal

    from tests.conftest import run_cli

    ident = str(server.admin_identity_path)
    scheme = run_cli("ctl", "--auth-server", f"https://{server.address}", "--identity", ident, "get", "roles",
                     check=False)
    assert scheme.returncode != 0 and "has a scheme; drop it" in scheme.stderr
    other = run_cli("ctl", "--auth-server", fresh_server.address, "--identity", ident, "get", "roles", check=False)
    assert other.returncode != 0 and "not the one this identity belongs to" in other.stderr
    assert "CERTIFICATE_VERIFY_FAILED" not in other.stderr
    config = tmp_path / "bot.yaml"
    config.write_text("auth_server: 127.0.0.1:1\nrenewal_intervall: 5m\ncertificate_ttl: soon\n")
    bad = run_cli("bot", "start", "--config", str(config), check=False)
    assert bad.returncode != 0
    assert f"{config}: renewal_intervall: unknown field" in bad.stderr and "did you mean" in bad.stderr
    # a server that died leaves server.json: ctl says it is not running instead of failing to connect
    assert fresh_server.proc is not None
    fresh_server.proc.send_signal(signal.SIGKILL)
    fresh_server.proc.wait(10)
    fresh_server.proc = None
    stale = fresh_server.ctl("get", "roles", check=False)
    assert stale.returncode != 0 and "is not running; start it with" in stale.stderr


def test_ctl_status_says_who_and_where(server: ServerProc) -> None:
    import json

    out = json.loads(server.ctl("status", "--format", "json").stdout)
    assert out["cluster"] == "test.example" and out["user"] == "admin" and "editor" in out["roles"]
    assert out["ca_pins"][0].startswith("sha256:") and out["expires"].endswith("Z")
    assert "User:     admin" in server.ctl("whoami").stdout


def test_a_token_method_token_needs_a_name_that_cannot_be_guessed(admin: Client) -> None:
    short = codec.decode(ProvisionToken, {"metadata": {"name": "letmein"}, "spec": {"bot_name": "any"}})
    with pytest.raises(errors.ValidationError, match="metadata.name: a token-method token's name is its secret"):
        admin.upsert(short)


def test_one_address_cannot_hold_every_connection(tmp_path: Path) -> None:
    """Stalled connections from one address are capped (the oldest goes when another comes, and the descriptor
    limit is raised), so the server keeps serving others, renewals included."""
    srv = ServerProc(tmp_path / "capped", extra_args=("--max-connections-per-source", "3"))
    srv.start()
    try:
        assert srv.proc is not None
        limits = Path(f"/proc/{srv.proc.pid}/limits").read_text()
        soft, hard = next(line.split()[3:5] for line in limits.splitlines() if line.startswith("Max open files"))
        assert soft == hard
        host, port = srv.address.rsplit(":", 1)
        held = [socket.create_connection((host, int(port)), timeout=5) for _ in range(3)]
        try:
            time.sleep(1.5)  # stalling: no ClientHello a second after connecting
            held.append(socket.create_connection((host, int(port)), timeout=5))
            assert held[0].recv(10) == b""  # the fourth evicted the oldest: three at most are held
            assert srv.ctl("status").returncode == 0  # and others are served meanwhile
        finally:
            for s in held:
                s.close()
    finally:
        srv.stop()


def test_large_objects_are_refused_and_lists_of_large_ones_come_in_pages_that_fit(fresh_server: ServerProc) -> None:
    """Three nodes of the largest size each field allows made every ListNodes fail (an answer over gRPC's 4 MiB):
    an object's encoded size is bounded at write, and a page ends early by size."""
    from machineid.model.resources import Node

    def node(name: str, labels: int) -> Node:
        return codec.decode(Node, {"metadata": {"name": name, "labels": {f"k{i}": "v" * 4000 for i in range(labels)}},
                                   "spec": {"addr": "10.0.0.1:22"}})

    with fresh_server.admin() as admin:
        with pytest.raises(errors.ValidationError, match=r"the node is \d+ bytes encoded; at most 131072"):
            admin.upsert(node("huge", 256))  # every label within its own bounds, the whole a megabyte
        with pytest.raises(errors.NotFoundError):
            admin.get("node", "huge")
        for i in range(45):
            admin.upsert(node(f"big-{i:02d}", 25))  # about 100 KB each, 4.5 MB in all
        assert len(admin.list("node")) == 45
    listed = fresh_server.ctl("nodes", "ls", "--format", "json").stdout
    assert listed.count('"big-') == 45


def test_an_out_of_range_duration_is_a_field_error_not_an_internal_one(server: ServerProc, admin: Client) -> None:
    request = pb.CreateBotRequest(bot=pb.CreateBotRequest().bot, token_ttl={"seconds": 315_576_000_000})
    request.bot.metadata.name = "forever-bot"
    request.bot.spec.roles.append("access")
    with pytest.raises(grpc.RpcError) as err:
        rpc.ClusterServiceStub(admin.channel).CreateBot(request, timeout=10)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "token_ttl: is out of range; send a duration of at most 100 years" in (err.value.details() or "")


def test_stalled_connections_from_an_address_do_not_lock_out_its_admin_calls(tmp_path: Path) -> None:
    """One address that keeps its quota of stalled connections topped up made every admin call and renewal from
    that address fail."""
    srv = ServerProc(tmp_path / "data", extra_args=("--max-connections-per-source", "8"))
    srv.start()
    host, port = srv.address.rsplit(":", 1)
    stallers: list[socket.socket] = []
    try:
        for _ in range(3):  # topped up: the cap is full whenever the admin connects
            stallers += [socket.create_connection((host, int(port))) for _ in range(8)]
            with srv.admin() as admin:
                assert admin.ping().cluster_name == "test.example"
                assert [r.metadata.name for r in admin.list("role")]
            srv.ctl("bots", "add", f"busy-{len(stallers)}", "--roles=access")
    finally:
        for s in stallers:
            s.close()
        srv.stop()
