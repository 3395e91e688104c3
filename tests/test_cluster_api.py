"""The cluster API over the wire: a real server process, real TLS, every RPC and every error status."""

from __future__ import annotations

import hashlib
import json
import threading
import time
from datetime import UTC, datetime, timedelta

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from grpc_health.v1 import health_pb2, health_pb2_grpc

from machineid.api import certs
from machineid.api.client import Client, JoinClient, check_pin, fetch_cluster_cas, identity_from_certs
from machineid.api.identity import Identity
from machineid.api.v1 import cluster_pb2 as pb
from machineid.api.v1 import cluster_pb2_grpc as rpc
from machineid.model import errors
from machineid.model.resources import (
    Bot,
    BotSpec,
    Metadata,
    Node,
    NodeSpec,
    ProvisionToken,
    ProvisionTokenSpec,
    Role,
    RoleConditions,
    RoleSpec,
    Rule,
    TokenRule,
    User,
    UserSpec,
)
from tests.conftest import ServerProc

# The cluster tests run against a server with one worker process and with two.
pytestmark = pytest.mark.workers(1, 2)


def independent_pin(pem: str) -> str:
    cert = x509.load_pem_x509_certificate(pem.encode())
    der = cert.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return "sha256:" + hashlib.sha256(der).hexdigest()


def new_key() -> tuple[ec.EllipticCurvePrivateKey, str]:
    key = ec.generate_private_key(ec.SECP256R1())
    return key, certs.public_key_pem(key.public_key())


def make_role(name: str, logins: list[str], **kw: object) -> Role:
    return Role(metadata=Metadata(name=name), spec=RoleSpec(allow=RoleConditions(logins=logins, **kw)))  # type: ignore[arg-type]


def join(server: ServerProc, token: str, ttl: timedelta | None = None) -> Identity:
    key, pub = new_key()
    cas = fetch_cluster_cas(server.address)
    with JoinClient(server.address, cas) as jc:
        reply = jc.register_using_token(token, pub, ttl)
    return identity_from_certs(certs.private_key_pem(key), reply.certs)


def renew(server: ServerProc, ident: Identity, ttl: timedelta | None = None) -> Identity:
    key, pub = new_key()
    with Client(server.address, ident) as c:
        reply = c.renew(pub, ttl)
    return identity_from_certs(certs.private_key_pem(key), reply)


def new_bot(admin: Client, name: str, roles: list[str], logins: list[str] | None = None) -> str:
    bot = Bot(metadata=Metadata(name=name), spec=BotSpec(roles=roles, traits={"logins": logins or []}))
    return admin.create_bot(bot).token


# ---------------------------------------------------------------- discovery and CA pin


def test_ping_and_ca_pin_computed_independently(server: ServerProc) -> None:
    with server.admin() as admin:
        ping = admin.ping()
        tls_cas = admin.export_cas("tls")
    assert ping.cluster_name == "test.example"
    assert ping.server_version
    assert tls_cas[0].pin == ping.ca_pins[0] == independent_pin(tls_cas[0].public_data)
    assert json.loads((server.data_dir / "server.json").read_text())["ca_pin"] == ping.ca_pins[0]


def test_first_contact_checks_the_pin(server: ServerProc) -> None:
    cas = fetch_cluster_cas(server.address)
    with server.admin() as admin:
        pin = admin.ping().ca_pins[0]
    assert independent_pin(check_pin(cas, pin)) == pin
    with pytest.raises(errors.PermissionDeniedError, match="does not match the pin"):
        check_pin(cas, "sha256:" + "1" * 64)


def test_health_service_reports_serving(server: ServerProc) -> None:
    with server.admin() as admin:
        stub = health_pb2_grpc.HealthStub(admin.channel)
        resp = stub.Check(health_pb2.HealthCheckRequest(service="machineid.v1.ClusterService"), timeout=10)
    assert resp.status == health_pb2.HealthCheckResponse.SERVING


def test_admin_identity_file_is_private(server: ServerProc) -> None:
    assert server.admin_identity_path.stat().st_mode & 0o777 == 0o600
    assert (server.data_dir / "cluster.db").stat().st_mode & 0o777 == 0o600


# ---------------------------------------------------------------- resources


def test_default_roles(server: ServerProc) -> None:
    with server.admin() as admin:
        roles = {r.metadata.name: r for r in admin.list("role")}
    assert {"access", "editor", "auditor"} <= roles.keys()
    assert roles["access"].spec.allow.logins == ["{{internal.logins}}"]  # type: ignore[union-attr]
    assert roles["access"].spec.allow.node_labels == {"*": ["*"]}  # type: ignore[union-attr]


def test_role_crud_and_revisions(server: ServerProc) -> None:
    with server.admin() as admin:
        created = admin.upsert(make_role("crud", ["ubuntu"]), create_only=True)
        assert created.metadata.revision and created.metadata.created
        got = admin.get_role("crud")
        assert got == created
        got.spec.allow.logins = ["ubuntu", "deploy"]
        updated = admin.upsert(got)
        assert updated.metadata.revision != created.metadata.revision
        assert updated.metadata.created == created.metadata.created
        # a write with the old revision is refused: nobody silently overwrites
        stale = admin.get_role("crud")
        stale.metadata.revision = created.metadata.revision
        with pytest.raises(errors.PreconditionError, match="stale"):
            admin.upsert(stale)
        with pytest.raises(errors.AlreadyExistsError):
            admin.upsert(make_role("crud", ["x"]), create_only=True)
        with pytest.raises(errors.PreconditionError):
            admin.delete("role", "crud", revision=created.metadata.revision)
        admin.delete("role", "crud")
        with pytest.raises(errors.NotFoundError):
            admin.get_role("crud")
        with pytest.raises(errors.NotFoundError):
            admin.delete("role", "crud")


def test_invalid_argument_names_the_field_and_writes_nothing(server: ServerProc) -> None:
    bad = make_role("bad-role", ["Not A Login"])
    bad.spec.options.max_session_ttl = "-1h"
    with server.admin() as admin:
        with pytest.raises(errors.ValidationError) as exc:
            admin.upsert(bad)
        paths = {str(v).split(":")[0] for v in exc.value.violations}
        assert paths == {"spec.allow.logins[0]", "spec.options.max_session_ttl"}  # the item, in the path
        with pytest.raises(errors.NotFoundError):
            admin.get_role("bad-role")
        with pytest.raises(errors.ValidationError, match=r'spec.roles\[0\]: role "nope" does not exist'):
            admin.create_bot(Bot(metadata=Metadata(name="ghost"), spec=BotSpec(roles=["nope"])))
        with pytest.raises(errors.NotFoundError):
            admin.get_bot("ghost")
        with pytest.raises(errors.NotFoundError):
            admin.get_user("bot-ghost")


def test_raw_grpc_status_codes(server: ServerProc) -> None:
    """The statuses themselves, as any gRPC client sees them."""
    ident = Identity.load(server.admin_identity_path)
    creds = grpc.ssl_channel_credentials("".join(ident.tls_ca_certs).encode(), ident.key_pem.encode(),
                                         ident.tls_cert.encode())
    opts = [("grpc.ssl_target_name_override", certs.SERVER_NAME)]
    with grpc.secure_channel(server.address, creds, opts) as ch:
        stub = rpc.ClusterServiceStub(ch)
        with pytest.raises(grpc.RpcError) as e1:
            stub.GetRole(pb.GetRequest(name="does-not-exist"), timeout=10)
        assert e1.value.code() == grpc.StatusCode.NOT_FOUND
        with pytest.raises(grpc.RpcError) as e2:
            stub.UpsertRole(pb.UpsertRoleRequest(role={"metadata": {"name": ""}}), timeout=10)
        assert e2.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "metadata.name: is required" in e2.value.details()
        with pytest.raises(grpc.RpcError) as e3:
            stub.UpsertRole(pb.UpsertRoleRequest(role={"metadata": {"name": "access"}}, create_only=True),
                            timeout=10)
        assert e3.value.code() == grpc.StatusCode.ALREADY_EXISTS
    # no client certificate: the admin API is not served at all there
    anon = grpc.ssl_channel_credentials("".join(ident.tls_ca_certs).encode())
    with grpc.secure_channel(server.address, anon, [("grpc.ssl_target_name_override",
                                                     certs.JOIN_SERVER_NAME)]) as ch:
        with pytest.raises(grpc.RpcError) as e4:
            rpc.ClusterServiceStub(ch).ListRoles(pb.ListRequest(), timeout=10)
        assert e4.value.code() == grpc.StatusCode.UNIMPLEMENTED
        assert rpc.JoinServiceStub(ch).Ping(pb.PingRequest(), timeout=10).cluster_name == "test.example"


def test_concurrent_conflicting_updates_exactly_one_wins(server: ServerProc) -> None:
    with server.admin() as admin:
        base = admin.upsert(make_role("race", ["a"]))
    results: list[str] = []
    barrier = threading.Barrier(2)

    def writer(login: str) -> None:
        role = make_role("race", [login])
        role.metadata.revision = base.metadata.revision
        with server.admin() as c:
            barrier.wait()
            try:
                c.upsert(role)
                results.append("ok")
            except errors.PreconditionError:
                results.append("conflict")

    threads = [threading.Thread(target=writer, args=(x,)) for x in ("b", "c")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == ["conflict", "ok"]


def test_tokens(server: ServerProc) -> None:
    with server.admin() as admin:
        tok = admin.upsert(ProvisionToken(spec=ProvisionTokenSpec(bot_name="somebot")), create_only=True)
        assert len(tok.metadata.name) == 32 and int(tok.metadata.name, 16) >= 0
        assert tok.metadata.expires is not None
        left = tok.metadata.expires - datetime.now(UTC)
        assert timedelta(minutes=55) < left <= timedelta(hours=1)  # default TTL 1h
        iam = ProvisionToken(metadata=Metadata(name="iam-token", expires=datetime(3000, 1, 1, tzinfo=UTC)),
                             spec=ProvisionTokenSpec(join_method="iam", bot_name="robot", allow=[TokenRule(
                                 aws_account="111111111111",
                                 aws_arn="arn:aws:sts::111111111111:assumed-role/teleport-bot-role/i-*")]))
        admin.upsert(iam, create_only=True)
        names = {t.metadata.name for t in admin.list("token")}
        assert {tok.metadata.name, "iam-token"} <= names
        assert admin.get_token("iam-token").spec.allow[0].aws_account == "111111111111"
        past = ProvisionToken(metadata=Metadata(name="old-" + "0" * 32, expires=datetime(2000, 1, 1, tzinfo=UTC)),
                              spec=ProvisionTokenSpec(bot_name="x"))
        with pytest.raises(errors.ValidationError, match="metadata.expires: .* is in the past"):
            admin.upsert(past)
        admin.delete("token", tok.metadata.name)
        admin.delete("token", "iam-token")
        assert not {tok.metadata.name, "iam-token"} & {t.metadata.name for t in admin.list("token")}


def test_bot_lifecycle(server: ServerProc) -> None:
    with server.admin() as admin:
        out = admin.create_bot(Bot(metadata=Metadata(name="life"), spec=BotSpec(roles=["access"])))
        assert out.join_method == "token" and len(out.token) == 32
        assert out.ca_pins == [admin.ping().ca_pins[0]]
        assert out.bot.status.user_name == "bot-life" and out.bot.status.generation == 0
        user = admin.get_user("bot-life")
        assert user.spec.roles == ["bot-life", "access"] and user.spec.bot_name == "life"
        assert admin.get_role("bot-life").spec.allow.rules
        with pytest.raises(errors.AlreadyExistsError):
            admin.create_bot(Bot(metadata=Metadata(name="life"), spec=BotSpec(roles=["access"])))
        bot = admin.get_bot("life")
        bot.spec.roles = ["access", "auditor"]
        bot.spec.traits = {"logins": ["deploy"]}
        updated = admin.update_bot(bot)
        assert updated.spec.roles == ["access", "auditor"]
        assert admin.get_user("bot-life").spec.traits == {"logins": ["deploy"]}
        with pytest.raises(errors.PreconditionError):
            admin.update_bot(bot)  # bot still carries the old revision
        with pytest.raises(errors.PreconditionError, match="belongs to bot"):
            admin.delete("user", "bot-life")
        assert "life" in {b.metadata.name for b in admin.list("bot")}
        admin.delete("bot", "life")
        for kind, name in (("bot", "life"), ("user", "bot-life"), ("role", "bot-life")):
            with pytest.raises(errors.NotFoundError):
                admin.get(kind, name)
        assert out.token not in {t.metadata.name for t in admin.list("token")}


def test_users_nodes_and_node_filtering(server: ServerProc) -> None:
    with server.admin() as admin:
        admin.upsert(make_role("web-only", ["www"], node_labels={"group": ["web"]},
                               rules=[Rule(resources=["node"], verbs=["list", "read"])]))
        admin.upsert(User(metadata=Metadata(name="webber"), spec=UserSpec(roles=["web-only"])), create_only=True)
        admin.upsert(Node(metadata=Metadata(name="web1", labels={"group": "web"}), spec=NodeSpec(addr="10.0.0.1:22")))
        admin.upsert(Node(metadata=Metadata(name="db1", labels={"group": "db"}), spec=NodeSpec(addr="10.0.0.2:22")))
        assert {"web1", "db1"} <= {n.metadata.name for n in admin.list("node")}
        with pytest.raises(errors.ValidationError, match="spec.addr"):
            admin.upsert(Node(metadata=Metadata(name="bad"), spec=NodeSpec(addr="nohost")))
        key, pub = new_key()
        reply = admin.sign_user("webber", pub)
    webber = identity_from_certs(certs.private_key_pem(key), reply)
    with Client(server.address, webber) as c:
        assert {n.metadata.name for n in c.list("node")} == {"web1"}
        with pytest.raises(errors.NotFoundError):
            c.get_node("db1")
        with pytest.raises(errors.PermissionDeniedError, match="may not list role"):
            c.list("role")
    with server.admin() as admin:
        admin.delete("user", "webber")
        admin.delete("node", "web1")
        admin.delete("node", "db1")
    # the deleted user's certificate stops working
    with Client(server.address, webber) as c, pytest.raises(errors.UnauthenticatedError, match="no longer exists"):
        c.list("node")


def test_role_in_use_cannot_be_deleted(server: ServerProc) -> None:
    with server.admin() as admin, pytest.raises(errors.PreconditionError, match="is used by admin"):
        admin.delete("role", "editor")


# ---------------------------------------------------------------- authorization


def test_auditor_reads_but_cannot_write(server: ServerProc) -> None:
    with server.admin() as admin:
        admin.upsert(User(metadata=Metadata(name="aud"), spec=UserSpec(roles=["auditor"])))
        key, pub = new_key()
        ident = identity_from_certs(certs.private_key_pem(key), admin.sign_user("aud", pub))
    with Client(server.address, ident) as c:
        assert c.list("role")
        with pytest.raises(errors.PermissionDeniedError, match="may not create role"):
            c.upsert(make_role("sneaky", ["root"]))
        with pytest.raises(errors.PermissionDeniedError, match="may not list token"):
            c.list("token")
        with pytest.raises(errors.PermissionDeniedError):
            c.sign_user("admin", new_key()[1])
    with server.admin() as admin:
        events = admin.audit_events()
        with pytest.raises(errors.NotFoundError):
            admin.get_role("sneaky")
    denied = [e for e in events if e.outcome == "denied" and e.actor == "aud"]
    assert {e.target for e in denied} >= {"role", "token"}


# ---------------------------------------------------------------- joining, issuance and renewal


def test_join_once_and_certificates(server: ServerProc) -> None:
    with server.admin() as admin:
        token = new_bot(admin, "issuer", ["access"], logins=["root", "deploy"])
        user_ca = admin.export_cas("user")[0].public_data
        tls_ca = admin.export_cas("tls")[0].public_data
    ident = join(server, token)
    # X.509: verifies against the exported CA, carries the bot's roles, 1h by default
    cert = ident.cert
    cert.verify_directly_issued_by(x509.load_pem_x509_certificate(tls_ca.encode()))
    info = ident.info
    assert info.user == "bot-issuer" and info.roles == ["bot-issuer", "access"]
    assert info.renewable and info.generation == 1
    life = cert.not_valid_after_utc - datetime.now(UTC)
    assert timedelta(minutes=58) < life <= timedelta(hours=1)
    # SSH: signed by the user CA, principals = machineid:LOGIN for each login the roles allow (only the node's
    # principals helper maps them to the login: a node that merely trusts the CA accepts none)
    ssh = serialization.load_ssh_public_identity(ident.ssh_cert.encode())
    assert isinstance(ssh, serialization.SSHCertificate)
    ssh.verify_cert_signature()
    ca_key = serialization.load_ssh_public_key(user_ca.encode())
    assert ssh.signature_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH) == \
        ca_key.public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    assert ssh.valid_principals == [b"machineid:root", b"machineid:deploy"]
    assert ssh.type == serialization.SSHCertificateType.USER
    assert 58 * 60 < ssh.valid_before - time.time() <= 3600
    # the token joins once
    with pytest.raises(errors.PermissionDeniedError, match="already used"):
        join(server, token)


def test_requested_ttl_is_capped(server: ServerProc) -> None:
    with server.admin() as admin:
        admin.upsert(Role(metadata=Metadata(name="short"), spec=RoleSpec(allow=RoleConditions(logins=["x"]))))
        role = admin.get_role("short")
        role.spec.options.max_session_ttl = "2h"
        admin.upsert(role)
        token = new_bot(admin, "capped", ["short"])
        long_token = new_bot(admin, "capped24", ["access"])
    life = join(server, token, ttl=timedelta(hours=100)).expires - datetime.now(UTC)
    assert timedelta(hours=1, minutes=58) < life <= timedelta(hours=2)
    life = join(server, long_token, ttl=timedelta(hours=100)).expires - datetime.now(UTC)
    assert timedelta(hours=23, minutes=58) < life <= timedelta(hours=24)  # renewable identities: 24h at most


def test_no_logins_never_means_any_login(server: ServerProc) -> None:
    with server.admin() as admin:
        token = new_bot(admin, "nologin", ["access"])  # access expands {{internal.logins}}: no trait, no login
    ssh = serialization.load_ssh_public_identity(join(server, token).ssh_cert.encode())
    assert isinstance(ssh, serialization.SSHCertificate)
    assert len(ssh.valid_principals) == 1 and ssh.valid_principals[0].startswith(b"-machineid-no-login-")


def test_the_client_follows_every_page_of_a_list(server: ServerProc) -> None:
    with server.admin() as admin:
        for i in range(7):
            admin.upsert(Role(metadata=Metadata(name=f"paged-{i}", labels={"batch": "paged"})))
        paged = admin.list("role", labels={"batch": "paged"}, page_size=2)
        assert [r.metadata.name for r in paged] == [f"paged-{i}" for i in range(7)]
        assert len(admin.list("role", page_size=3)) == len(admin.list("role")) >= 10


def test_bad_join_input(server: ServerProc) -> None:
    with server.admin() as admin:
        token = new_bot(admin, "badkey", ["access"])
    cas = fetch_cluster_cas(server.address)
    with JoinClient(server.address, cas) as jc:
        with pytest.raises(errors.ValidationError, match="public_key"):
            jc.register_using_token(token, "not a key")
        with pytest.raises(errors.ValidationError, match="token: is required"):
            jc.register_using_token("", new_key()[1])


def test_renewal_generations_and_lock(server: ServerProc) -> None:
    with server.admin() as admin:
        token = new_bot(admin, "renewer", ["access"], logins=["root"])
    first = join(server, token)
    second = renew(server, first)
    assert second.info.generation == 2 and second.info.renewable
    third = renew(server, second)
    assert third.info.generation == 3
    with server.admin() as admin:
        assert admin.get_bot("renewer").status.generation == 3
    # without a certificate: refused
    cas = fetch_cluster_cas(server.address)
    with JoinClient(server.address, cas) as jc:
        stub = rpc.ClusterServiceStub(jc.channel)
        with pytest.raises(grpc.RpcError) as exc:
            stub.RenewCerts(pb.RenewRequest(public_key=new_key()[1]), timeout=10)
        assert exc.value.code() == grpc.StatusCode.UNIMPLEMENTED  # renewals are served only with a certificate
    # replaying an older generation (a copied certificate) locks the bot
    with pytest.raises(errors.PermissionDeniedError, match="generation mismatch"):
        renew(server, first)
    with server.admin() as admin:
        bot = admin.get_bot("renewer")
        assert bot.status.locked and "presented generation 1" in bot.status.lock_reason
        events = [e for e in admin.audit_events() if e.action == "bot.lock" and e.target == "bot/renewer"]
        assert events and json.loads(events[-1].details) == {"expected": 3, "presented": 1}
    # even the current identity is locked out now
    with pytest.raises(errors.PermissionDeniedError, match="locked"):
        renew(server, third)
    # the admin unlocks; a new token re-onboards the bot without deleting it
    with server.admin() as admin:
        admin.unlock_bot("renewer")
    # after the unlock the newest generation (the agent's, or a copier's) does not simply renew on: a new join is
    # needed, so whoever copied the certificate cannot keep the bot; the agent is told so (not "superseded")
    with pytest.raises(errors.PermissionDeniedError) as unlocked:
        renew(server, third)
    assert 'bot "renewer" was unlocked by an administrator' in str(unlocked.value)
    assert "join again with a new token" in str(unlocked.value) and "superseded" not in str(unlocked.value)
    with server.admin() as admin:
        tok = admin.upsert(ProvisionToken(spec=ProvisionTokenSpec(bot_name="renewer")), create_only=True)
    fresh = join(server, tok.metadata.name)
    assert fresh.info.generation == 1
    assert renew(server, fresh).info.generation == 2
    # the identity from before the re-join is superseded, not a reason to lock
    with pytest.raises(errors.PermissionDeniedError, match="superseded"):
        renew(server, third)
    with server.admin() as admin:
        assert not admin.get_bot("renewer").status.locked


def test_user_identities_are_not_renewable(server: ServerProc) -> None:
    ident = Identity.load(server.admin_identity_path)
    with pytest.raises(errors.PermissionDeniedError, match="not renewable"):
        renew(server, ident)


def test_host_certificates(server: ServerProc) -> None:
    host_key = ec.generate_private_key(ec.SECP256R1())
    line = certs.ssh_public_key_line(host_key.public_key())
    with server.admin() as admin:
        cert_line = admin.sign_host(line, ["node1", "node1.test.example", "127.0.0.1"])
        host_ca = admin.export_cas("host")[0].public_data
        with pytest.raises(errors.ValidationError, match="principals"):
            admin.sign_host(line, [])
    cert = serialization.load_ssh_public_identity(cert_line.encode())
    assert isinstance(cert, serialization.SSHCertificate)
    assert cert.type == serialization.SSHCertificateType.HOST
    assert cert.valid_principals == [b"node1", b"node1.test.example", b"127.0.0.1"]
    cert.verify_cert_signature()
    assert cert.signature_key().public_bytes(serialization.Encoding.OpenSSH,
                                             serialization.PublicFormat.OpenSSH).decode() == host_ca


def test_audit_records_changes_and_joins_without_secrets(server: ServerProc) -> None:
    with server.admin() as admin:
        token = new_bot(admin, "audited", ["access"])
    join(server, token)
    with server.admin() as admin:
        events = admin.audit_events()
    actions = {(e.actor, e.action) for e in events}
    assert ("admin", "bot.create") in actions
    assert ("anonymous", "bot.join") in actions
    assert ("bot:audited", "cert.issue") in actions
    dump = json.dumps([[e.actor, e.action, e.target, e.details] for e in events])
    assert token not in dump
    assert token not in server.log_text()


# ---------------------------------------------------------------- persistence and lifecycle


def test_state_survives_a_restart(fresh_server: ServerProc) -> None:
    with fresh_server.admin() as admin:
        admin.upsert(make_role("keeper", ["ops"]))
        token = new_bot(admin, "stayer", ["keeper"], logins=["ops"])
        pin = admin.ping().ca_pins[0]
        user_ca = admin.export_cas("user")[0].public_data
    ident = join(fresh_server, token)
    assert fresh_server.stop() == 0
    assert not (fresh_server.data_dir / "server.json").exists()
    fresh_server.start()
    with fresh_server.admin() as admin:
        assert admin.get_role("keeper").spec.allow.logins == ["ops"]
        assert admin.get_bot("stayer").status.generation == 1
        assert admin.ping().ca_pins[0] == pin  # the CAs persist
        assert admin.export_cas("user")[0].public_data == user_ca
    assert renew(fresh_server, ident).info.generation == 2  # the old identity still renews


def test_cluster_name_cannot_change(fresh_server: ServerProc) -> None:
    assert fresh_server.stop() == 0
    fresh_server.cluster_name = "other"
    with pytest.raises(AssertionError, match="belongs to cluster"):
        fresh_server.start()


# ---------------------------------------------------------------- hardening (found in review)


def test_node_address_cannot_carry_ssh_directives(server: ServerProc) -> None:
    evil = "10.0.0.5\n    ProxyCommand sh -c 'id > /tmp/pwned'\nHost x:22"
    with server.admin() as admin:
        with pytest.raises(errors.ValidationError, match="spec.addr"):
            admin.upsert(Node(metadata=Metadata(name="evil"), spec=NodeSpec(addr=evil)))
        admin.upsert(Node(metadata=Metadata(name="v6"), spec=NodeSpec(addr="[fd00::5]:22")))
        admin.delete("node", "v6")


def test_recreated_bot_does_not_revive_old_certificates(server: ServerProc) -> None:
    with server.admin() as admin:
        token = new_bot(admin, "phoenix", ["editor"])
    old = join(server, token)
    with Client(server.address, old) as c:
        assert c.list("role")  # editor, for now
    with server.admin() as admin:
        admin.delete("bot", "phoenix")
        new_bot(admin, "phoenix", ["access"])
    with Client(server.address, old) as c, pytest.raises(errors.PermissionDeniedError, match="superseded"):
        c.list("token")


def race(address: str, ident: Identity) -> list[str]:
    """Two renewals with one identity, sent at the same moment on connections of their own: "renewed" or
    "refused" for each."""
    outcomes: list[str] = []
    barrier = threading.Barrier(2)

    def attempt() -> None:
        _key, pub = new_key()
        with Client(address, ident) as c:
            barrier.wait()
            try:
                c.renew(pub)
                outcomes.append("renewed")
            except errors.PermissionDeniedError:
                outcomes.append("refused")

    threads = [threading.Thread(target=attempt) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return outcomes


def test_concurrent_renewals_of_one_generation_lock_the_bot(server: ServerProc) -> None:
    with server.admin() as admin:
        token = new_bot(admin, "twins", ["access"])
    ident = join(server, token)
    outcomes = race(server.address, ident)
    assert sorted(outcomes) == ["refused", "renewed"]
    with server.admin() as admin:
        assert admin.get_bot("twins").status.locked  # the second holder of generation 1 was a copy


def test_out_of_range_durations_are_invalid_arguments(server: ServerProc) -> None:
    role = make_role("huge", ["x"])
    role.spec.options.max_session_ttl = "99999999999h"
    host_key = certs.ssh_public_key_line(ec.generate_private_key(ec.SECP256R1()).public_key())
    with server.admin() as admin:
        with pytest.raises(errors.ValidationError, match="max_session_ttl"):
            admin.upsert(role)
        with pytest.raises(errors.ValidationError, match="ttl"):
            admin.sign_host(host_key, ["h"], timedelta(days=365 * 200))


def test_token_names_stay_out_of_error_logs(server: ServerProc) -> None:
    secret = "0123456789abcdef0123456789abcdef"
    with server.admin() as admin, pytest.raises(errors.NotFoundError) as exc:
        admin.get_token(secret)
    assert secret not in str(exc.value)
    with JoinClient(server.address, fetch_cluster_cas(server.address)) as jc:
        challenge = jc.create_iam_challenge()
        with pytest.raises(errors.PermissionDeniedError):
            jc.register_using_iam(secret, challenge, "POST", "https://sts.amazonaws.com/", {}, b"", new_key()[1])
    with server.admin() as admin:
        dump = json.dumps([[e.target, e.details] for e in admin.audit_events()])
    assert secret not in dump and secret not in server.log_text()


def test_a_renewal_whose_answer_was_lost_can_be_retried(server: ServerProc) -> None:
    with server.admin() as admin:
        token = new_bot(admin, "retrier", ["access"])
    first = join(server, token)
    key, pub = new_key()
    with Client(server.address, first) as c:
        c.renew(pub)  # imagine the answer never arrived
        again = identity_from_certs(certs.private_key_pem(key), c.renew(pub))  # the same renewal, same key
    assert again.info.generation == 2
    assert renew(server, again).info.generation == 3
    with server.admin() as admin:
        assert not admin.get_bot("retrier").status.locked
    with Client(server.address, first) as c, pytest.raises(errors.PermissionDeniedError, match="locked"):
        c.renew(new_key()[1])  # the old certificate with another key: a copy
