"""Nodes join, renew and sync, in process with a clock the test moves: a node token joins its node once, the node's
identity may call only the node RPCs, its sync answers with its labels and a host certificate for its names and
records its heartbeat (without a new revision), renewals follow the generation counter (a copy locks the node), and
a node's state reads online, stale or never joined."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from machineid.api import certs
from machineid.cluster.issuance import IssuedCerts
from machineid.cluster.keypairs import KeypairJoin, KeypairJoined
from machineid.cluster.node_sync import SyncAnswer, SyncRequest
from machineid.cluster.service import Cluster, Page
from machineid.cluster.store.base import ALL_EVENTS, AuditFilter
from machineid.model import codec, errors, keys, node_state
from machineid.model.resources import Bot, Node, NodeStatus, ProvisionToken, Role
from tests.inprocess import CLUSTER, Clock, add_bot, admin, caller_of, key_pem, new_cluster

MINUTE = timedelta(minutes=1)


@pytest.fixture()
def clock() -> Clock:
    return Clock()


@pytest.fixture()
def c(tmp_path: Path, clock: Clock) -> Cluster:
    cluster = new_cluster(tmp_path, clock)
    add_node(cluster, "web1", labels={"env": "prod"}, hostnames=["web1.internal", "10.1.2.3"])
    return cluster


def add_node(c: Cluster, name: str, labels: dict[str, str] | None = None, **spec: object) -> Node:
    return c.upsert(admin(c), codec.decode(Node, {"metadata": {"name": name, "labels": labels or {}},
                                                  "spec": {"addr": "10.0.0.5:22", **spec}}))


def node_token(c: Cluster, node: str = "web1", **spec: object) -> str:
    token = c.upsert(admin(c), codec.decode(ProvisionToken, {
        "spec": {"roles": ["Node"], "node_name": node, "join_method": "token", **spec}}))
    return token.metadata.name


def host_key() -> tuple[ed25519.Ed25519PrivateKey, str]:
    key = ed25519.Ed25519PrivateKey.generate()
    return key, certs.ssh_public_key_line(key.public_key())


def sync(c: Cluster, issued: IssuedCerts, host_public_key: str = "", interval: timedelta = MINUTE,
         applied: str = "", version: str = "1.2.3", peer: str = "192.0.2.7") -> SyncAnswer:
    return c.sync_node(caller_of(c, issued), SyncRequest(version=version, heartbeat_interval=interval,
                                                          host_public_key=host_public_key, applied_revision=applied,
                                                          peer=peer))


def status(c: Cluster, name: str = "web1") -> NodeStatus:
    node = c.get(admin(c), Node, name)
    return node.status


def test_a_node_token_joins_its_node_once_with_a_node_identity(c: Cluster, clock: Clock) -> None:
    token = node_token(c)
    name, out = c.register_using_token(token, key_pem(), None)
    assert (name, out.node_name) == ("web1", "web1")
    assert out.ssh_cert == "" and out.renewable and out.generation == 1  # TLS only: no user certificate
    ident = caller_of(c, out).ident
    assert ident is not None and ident.node_name == "web1" and ident.roles == [] and ident.user == "node:web1"
    st = status(c)
    assert st.generation == 1 and st.instance_id and st.last_join == clock.now
    assert st.join_token.startswith("token-") and st.spent_tokens == [st.join_token] and token not in st.join_token
    with pytest.raises(errors.PermissionDeniedError, match="already used"):
        c.register_using_token(token, key_pem(), None)
    with pytest.raises(errors.PreconditionError, match='already used by node "web1"'):
        c.upsert(admin(c), codec.decode(ProvisionToken, {"metadata": {"name": token}, "spec": {
            "roles": ["Node"], "node_name": "web1"}}))
    events = [(e.action, e.target, e.outcome) for e in c.backend.audit_events(0, 100, _all())]
    assert ("node.join", f"token/{st.join_token}", "ok") in events and ("cert.issue", "node/web1", "ok") in events
    assert not any(token in json.dumps(e.details) for e in c.backend.audit_events(0, 100, _all()))


def test_a_node_token_for_an_unregistered_node_joins_nothing(c: Cluster) -> None:
    token = node_token(c, "nowhere")
    with pytest.raises(errors.PermissionDeniedError, match='node "nowhere" of this token is not registered'):
        c.register_using_token(token, key_pem(), None)
    refused = [e for e in c.backend.audit_events(0, 100, _all()) if e.action == "node.join"]
    assert refused and refused[-1].outcome == "denied"


def test_a_node_identity_may_call_only_the_node_rpcs_and_a_bot_none_of_them(c: Cluster) -> None:
    _, out = c.register_using_token(node_token(c), key_pem(), None)
    node = caller_of(c, out)
    for call in (lambda: c.get(node, Role, "access"), lambda: c.list_page(node, Bot, Page()),
                 lambda: c.list_page(node, ProvisionToken, Page()), lambda: c.list_page(node, Node, Page()),
                 lambda: c.get(node, Node, "web1"), lambda: c.export_cas(node),
                 lambda: c.sign_host(node, host_key()[1], ["web1"], None),
                 lambda: c.upsert(node, codec.decode(Node, {"metadata": {"name": "web1", "labels": {"env": "x"}},
                                                            "spec": {"addr": "10.0.0.5:22"}}))):
        with pytest.raises(errors.PermissionDeniedError, match="node:web1 may not"):
            call()
    with pytest.raises(errors.PermissionDeniedError, match="renewable identity"):
        c.issue_output_certs(node, key_pem(), None)
    _, bot_out = c.register_using_token(add_bot(c, "robot"), key_pem(), None)
    for who in (caller_of(c, bot_out), admin(c)):
        with pytest.raises(errors.PermissionDeniedError, match="may not sync as a node"):
            c.sync_node(who, SyncRequest(version="1"))
    assert status(c).last_heartbeat is None  # nothing of theirs reached the node's status


def test_a_sync_records_the_heartbeat_and_signs_a_host_certificate_for_the_nodes_names(c: Cluster,
                                                                                      clock: Clock) -> None:
    _, out = c.register_using_token(node_token(c), key_pem(), None)
    before = c.get(admin(c), Node, "web1").metadata.revision
    key, line = host_key()
    answer = sync(c, out, line, applied="")
    assert answer.labels == {"env": "prod"} and answer.revision == before
    principals = ["web1", f"web1.{CLUSTER}", "10.0.0.5", "web1.internal", "10.1.2.3"]
    assert answer.host_cert_principals == principals
    cert = serialization.load_ssh_public_identity(answer.host_cert.encode())
    assert isinstance(cert, serialization.SSHCertificate) and cert.type == serialization.SSHCertificateType.HOST
    assert [p.decode() for p in cert.valid_principals] == principals
    assert cert.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw) == \
        key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    host_ca = serialization.load_ssh_public_key(c.export_cas(admin(c), "host")[0]["public_data"].encode())
    cert.verify_cert_signature()
    assert cert.signature_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH) == \
        host_ca.public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    assert cert.valid_before == int((clock.now + timedelta(hours=24)).timestamp())  # spec.host_cert_ttl default
    assert answer.ssh_user_ca_keys == [c.export_cas(admin(c), "user")[0]["public_data"]]
    assert answer.revocation_max_age == timedelta(hours=1)
    st = status(c)
    assert (st.last_heartbeat, st.heartbeat_interval, st.version, st.reported_addr) == \
        (clock.now, "1m", "1.2.3", "192.0.2.7")
    assert st.host_cert_expires == clock.now + timedelta(hours=24)
    # A heartbeat is no change to the node: its revision stays what the code declared (a revision that moved on
    # every heartbeat could never be the one a node reports as applied, nor the one a provider's update carries).
    clock.now += MINUTE
    plain = sync(c, out, applied=before)
    assert plain.host_cert == "" and plain.host_cert_expires is None
    node = c.get(admin(c), Node, "web1")
    assert node.metadata.revision == before and node.status.applied_revision == before
    assert node.status.last_heartbeat == clock.now and node.status.host_cert_expires == st.host_cert_expires
    issued = [e for e in c.backend.audit_events(0, 100, _all()) if e.action == "cert.issue_host"]
    assert len(issued) == 1 and issued[0].target == "host/web1" and issued[0].details["node"] == "web1"


def test_a_label_change_reaches_the_next_sync_and_a_rewrite_keeps_the_status(c: Cluster) -> None:
    _, out = c.register_using_token(node_token(c), key_pem(), None)
    sync(c, out)
    node = c.get(admin(c), Node, "web1")
    node.metadata.labels = {"env": "staging", "team": "web"}
    node.status = NodeStatus()  # what a writer sends as status is not taken
    written = c.upsert(admin(c), node)
    assert written.status.generation == 1 and written.status.last_heartbeat is not None
    answer = sync(c, out)
    assert answer.labels == {"env": "staging", "team": "web"}
    assert answer.revision == written.metadata.revision


def test_renewals_count_generations_and_a_copy_locks_the_node_until_unlocked(c: Cluster) -> None:
    _, first = c.register_using_token(node_token(c), key_pem(), None)
    second = c.renew(caller_of(c, first), key_pem(), timedelta(hours=8))
    assert second.node_name == "web1" and second.generation == 2 and second.ssh_cert == ""
    assert status(c).generation == 2
    with pytest.raises(errors.PermissionDeniedError, match="not the node's current generation"):
        sync(c, first)  # an older generation (a copy) gets nothing, and does not lock by syncing
    with pytest.raises(errors.PermissionDeniedError, match='node "web1" is now locked: generation mismatch'):
        c.renew(caller_of(c, first), key_pem(), None)
    st = status(c)
    assert st.locked and "presented generation 1" in st.lock_reason
    assert node_state.state(c.get(admin(c), Node, "web1"), datetime.now(UTC)) == node_state.LOCKED
    with pytest.raises(errors.PermissionDeniedError, match="machineid ctl nodes unlock web1"):
        caller_of(c, second)  # the current identity is locked out too
    token = node_token(c)
    with pytest.raises(errors.PermissionDeniedError, match="locked"):
        c.register_using_token(token, key_pem(), None)
    c.unlock_node(admin(c), "web1")
    with pytest.raises(errors.PermissionDeniedError, match='node "web1" was unlocked by an administrator'):
        caller_of(c, second)
    _, fresh = c.register_using_token(token, key_pem(), None)
    assert fresh.generation == 1 and c.renew(caller_of(c, fresh), key_pem(), None).generation == 2
    with pytest.raises(errors.PreconditionError, match="not locked"):
        c.unlock_node(admin(c), "web1")
    actions = [e.action for e in c.backend.audit_events(0, 200, _all())]
    assert "node.lock" in actions and "node.unlock" in actions
    by_node = c.audit_events(admin(c), where=AuditFilter(actor="node:web1"))
    assert {(e.action, e.target, e.outcome) for e in by_node} == {
        ("cert.issue", "node/web1", "ok"), ("cert.renew", "node/web1", "ok"),
        ("access.denied", "node/web1", "denied"), ("node.lock", "node/web1", "denied")}


def test_a_deleted_node_s_identity_stops_working_even_if_the_node_comes_back(c: Cluster) -> None:
    _, out = c.register_using_token(node_token(c), key_pem(), None)
    c.delete(admin(c), Node, "web1")
    with pytest.raises(errors.UnauthenticatedError, match="no longer registered"):
        caller_of(c, out)
    add_node(c, "web1")
    with pytest.raises(errors.PermissionDeniedError, match="superseded"):
        caller_of(c, out)
    assert status(c).generation == 0 and status(c).last_join is None


def test_a_deleted_node_s_unused_tokens_go_with_it(c: Cluster) -> None:
    """A token made for a node and never used must not join a node registered later under the name."""
    unused = node_token(c)
    other = node_token(c, "web2") if add_node(c, "web2") else ""
    c.delete(admin(c), Node, "web1")
    add_node(c, "web1")
    with pytest.raises(errors.PermissionDeniedError, match="not valid"):
        c.register_using_token(unused, key_pem(), None)
    _, joined = c.register_using_token(other, key_pem(), None)  # another node's token stays
    assert joined.node_name == "web2"


def test_sync_inputs_are_bounded(c: Cluster) -> None:
    _, out = c.register_using_token(node_token(c), key_pem(), None)
    cases = [({"version": "v" * 65}, "version"), ({"version": "1.0\nx"}, "version"),
             ({"interval": timedelta(0)}, "heartbeat_interval"),
             ({"interval": timedelta(days=2)}, "heartbeat_interval"),
             ({"host_public_key": "ssh-ed25519 " + "A" * 2000}, "host_public_key"),
             ({"host_public_key": "not a key"}, "host_public_key"), ({"applied": "r" * 65}, "applied_revision")]
    for kwargs, field in cases:
        with pytest.raises(errors.ValidationError, match=field):
            sync(c, out, **kwargs)  # type: ignore[arg-type]
    assert status(c).last_heartbeat is None


def test_a_bound_keypair_node_joins_renewably_and_a_copied_key_pair_locks_it(c: Cluster) -> None:
    bound = keys.new_private_key()
    c.upsert(admin(c), codec.decode(ProvisionToken, {"metadata": {"name": "web1-key"}, "spec": {
        "roles": ["Node"], "node_name": "web1", "join_method": "bound_keypair",
        "bound_keypair": {"onboarding": {"initial_public_key": keys.public_line(bound.public_key())}}}}))

    def join(state: str) -> KeypairJoined:
        challenge, _ = c.create_bound_keypair_challenge("web1-key")
        pem = key_pem()
        return c.register_using_bound_keypair(KeypairJoin(
            "web1-key", challenge, pem, join_state=state,
            signature=keys.sign(bound, keys.join_message("web1-key", challenge, pem))))

    first = join("")
    assert first.node_name == "web1" and first.bot_name == "" and first.certs.renewable
    second = join(first.join_state)
    ident = caller_of(c, second.certs).ident
    assert ident is not None and status(c).instance_id == ident.instance_id
    with pytest.raises(errors.PermissionDeniedError, match='node "web1" is now locked: stale join state'):
        join(first.join_state)
    assert status(c).locked


def test_a_node_is_online_until_it_misses_three_heartbeats() -> None:
    now = datetime(2030, 1, 1, tzinfo=UTC)
    node = Node()
    assert node_state.state(node, now) == node_state.NEVER_JOINED
    node.status.last_join = now
    assert node_state.state(node, now) == node_state.STALE  # joined, never reported in
    node.status.last_heartbeat, node.status.heartbeat_interval = now, "1m"
    assert node_state.state(node, now + 3 * MINUTE) == node_state.ONLINE
    assert node_state.state(node, now + 3 * MINUTE + timedelta(seconds=1)) == node_state.STALE
    node.status.locked = True
    assert node_state.state(node, now) == node_state.LOCKED


def test_a_node_cannot_carry_more_hostnames_than_a_certificate_holds(c: Cluster) -> None:
    with pytest.raises(errors.ValidationError, match="spec.hostnames: has 254 entries; at most 253"):
        add_node(c, "big", hostnames=[f"h{i}.example" for i in range(254)])


def _all() -> AuditFilter:
    return ALL_EVENTS
