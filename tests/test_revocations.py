"""What the cluster revokes and how the list reaches nodes, in process with a clock the test moves, checked with
OpenSSH's own KRL parser (`ssh-keygen -Q`, what sshd's RevokedKeys uses) against the certificates the cluster
issued: a locked bot, an unlocked bot's old certificates (not its new ones), deleted bots and users (not a user
created again under the name), an expired user, a role edit that takes node access away; the list is encoded once
per version and sent only to a node holding another version."""

from __future__ import annotations

import subprocess
from datetime import timedelta
from pathlib import Path

import pytest

from machineid.cluster import revocations
from machineid.cluster.issuance import IssuedCerts
from machineid.cluster.janitor import Janitor
from machineid.cluster.node_sync import SyncAnswer, SyncRequest
from machineid.cluster.service import Cluster
from machineid.model import codec, errors
from machineid.model.resources import Bot, Lock, ProvisionToken, Role, User
from tests.inprocess import Clock, add_bot, admin, caller_of, key_pem, new_cluster
from tests.test_node_rules import add_node, node_token

ROLE = {"metadata": {"name": "web"}, "spec": {"allow": {"logins": ["deploy"], "node_labels": {"env": "prod"}}}}


@pytest.fixture()
def clock() -> Clock:
    return Clock()


@pytest.fixture()
def c(tmp_path: Path, clock: Clock) -> Cluster:
    cluster = new_cluster(tmp_path, clock)
    cluster.upsert(admin(cluster), codec.decode(Role, ROLE))
    add_node(cluster, "web1", labels={"env": "prod"})
    return cluster


class Node:
    """A node's view: it syncs with the version it holds and keeps the list it was sent."""

    def __init__(self, c: Cluster, tmp: Path) -> None:
        self.c = c
        _, self.ident = c.register_using_token(node_token(c), key_pem(), None)
        self.version = 0
        self.file = tmp / "revoked_keys"
        self.file.write_bytes(b"")

    def sync(self) -> SyncAnswer:
        answer = self.c.sync_node(caller_of(self.c, self.ident),
                                  SyncRequest(version="1", revocations_version=self.version))
        if answer.revoked_keys:
            self.file.write_bytes(answer.revoked_keys)
        self.version = answer.revocations_version
        return answer

    def revoked(self, issued: IssuedCerts) -> bool:
        cert = self.file.with_name(f"cert-{abs(hash(issued.ssh_cert))}.pub")
        cert.write_text(issued.ssh_cert + "\n")
        out = subprocess.run(["ssh-keygen", "-Q", "-f", str(self.file), str(cert)], capture_output=True, text=True)
        assert out.returncode in (0, 1), out.stderr
        return out.returncode == 1


@pytest.fixture()
def node(c: Cluster, tmp_path: Path) -> Node:
    return Node(c, tmp_path)


def bot_token(c: Cluster, name: str) -> str:
    return c.upsert(admin(c), codec.decode(ProvisionToken, {"spec": {"bot_name": name}})).metadata.name


def test_a_locked_bot_is_revoked_at_the_next_sync_and_its_new_certificates_work_after_the_unlock(
        c: Cluster, node: Node) -> None:
    node.sync()
    _, first = c.register_using_token(add_bot(c, "robot", ["web"]), key_pem(), None)
    renewed = c.renew(caller_of(c, first), key_pem(), None)
    before = node.version
    assert node.sync().revoked_keys == b""  # nothing changed: nothing sent
    assert not node.revoked(first) and not node.revoked(renewed)
    with pytest.raises(errors.PermissionDeniedError, match="now locked"):
        c.renew(caller_of(c, first), key_pem(), None)  # a copy renewing locks the bot
    answer = node.sync()
    assert answer.revocations_version > before and answer.revoked_keys
    assert node.revoked(first) and node.revoked(renewed)  # every certificate it holds
    c.unlock_bot(admin(c), "robot")
    _, again = c.register_using_token(bot_token(c, "robot"), key_pem(), None)
    node.sync()
    assert not node.revoked(again)  # the same key id, joined again after the unlock
    assert node.revoked(first) and node.revoked(renewed)  # what it held before stays revoked, by serial


def test_the_list_is_encoded_once_per_version_and_sent_only_when_the_node_holds_another(c: Cluster,
                                                                                      node: Node) -> None:
    revs = c.node_sync.revocations
    first = node.sync()
    assert first.revoked_keys.startswith(b"SSHKRL\n\x00") and first.revocations_version > 0
    encodes = revs.encodes
    for _ in range(3):
        assert node.sync().revoked_keys == b""
    assert revs.encodes == encodes  # nothing changed: not worked out again
    # another node (or a restarted one) with no list gets the same bytes, still without encoding again
    other = c.sync_node(caller_of(c, node.ident), SyncRequest(version="1"))
    assert other.revoked_keys == first.revoked_keys and revs.encodes == encodes
    c.register_using_token(add_bot(c, "robot", ["web"]), key_pem(), None)  # an issuance revokes nothing
    assert node.sync().revoked_keys == b"" and revs.encodes == encodes
    c.upsert(admin(c), codec.decode(User, {"metadata": {"name": "alice"}, "spec": {"roles": ["web"]}}))
    assert node.sync().revoked_keys == b""  # a user without expiry revokes nothing
    _, held = c.register_using_token(add_bot(c, "copied", ["web"]), key_pem(), None)
    c.renew(caller_of(c, held), key_pem(), None)
    with pytest.raises(errors.PermissionDeniedError, match="now locked"):
        c.renew(caller_of(c, held), key_pem(), None)
    before = node.version
    assert node.sync().revoked_keys and node.version > before and revs.encodes == encodes + 1
    assert node.sync().revoked_keys == b"" and revs.encodes == encodes + 1


def test_a_deleted_user_or_bot_is_revoked_and_the_name_can_be_used_again(c: Cluster, node: Node) -> None:
    c.upsert(admin(c), codec.decode(User, {"metadata": {"name": "alice"}, "spec": {"roles": ["web"]}}))
    old = c.sign_user(admin(c), "alice", key_pem(), None)
    _, bot_cert = c.register_using_token(add_bot(c, "robot", ["web"]), key_pem(), None)
    node.sync()
    assert not node.revoked(old) and not node.revoked(bot_cert)
    c.delete(admin(c), User, "alice")
    c.delete(admin(c), Bot, "robot")
    node.sync()
    assert node.revoked(old) and node.revoked(bot_cert)
    c.upsert(admin(c), codec.decode(User, {"metadata": {"name": "alice"}, "spec": {"roles": ["web"]}}))
    new = c.sign_user(admin(c), "alice", key_pem(), None)
    _, new_bot = c.register_using_token(add_bot(c, "robot", ["web"]), key_pem(), None)
    node.sync()
    assert not node.revoked(new) and not node.revoked(new_bot) and node.revoked(old)


def test_a_user_whose_expiry_passes_is_revoked_without_any_write(c: Cluster, node: Node, clock: Clock) -> None:
    c.upsert(admin(c), codec.decode(User, {"metadata": {"name": "temp", "expires": "2030-01-01T08:00:00Z"},
                                           "spec": {"roles": ["web"]}}))
    cert = c.sign_user(admin(c), "temp", key_pem(), timedelta(hours=4))
    node.sync()
    assert not node.revoked(cert)
    # the expiry moves earlier than the certificate's end: it must stop then, not at 04:00
    c.upsert(admin(c), codec.decode(User, {"metadata": {"name": "temp", "expires": "2030-01-01T01:00:00Z"},
                                           "spec": {"roles": ["web"]}}))
    node.sync()
    assert not node.revoked(cert)  # not yet expired
    held = node.version
    clock.now += timedelta(hours=1, minutes=1)
    answer = node.sync()  # nothing was written since: the version moves on by time alone
    assert answer.revocations_version != held and node.revoked(cert)
    encodes = c.node_sync.revocations.encodes
    assert node.sync().revoked_keys == b"" and c.node_sync.revocations.encodes == encodes


def test_a_role_edit_that_takes_node_access_away_revokes_the_certificates_issued_before(c: Cluster,
                                                                                       node: Node) -> None:
    c.upsert(admin(c), codec.decode(Role, {"metadata": {"name": "other"}, "spec": {"allow": {
        "logins": ["deploy"], "node_labels": {"env": "prod"}}}}))
    c.upsert(admin(c), codec.decode(User, {"metadata": {"name": "alice"}, "spec": {"roles": ["web"]}}))
    c.upsert(admin(c), codec.decode(User, {"metadata": {"name": "bob"}, "spec": {"roles": ["other"]}}))
    alice, bob = (c.sign_user(admin(c), u, key_pem(), None) for u in ("alice", "bob"))
    _, robot = c.register_using_token(add_bot(c, "robot", ["web"]), key_pem(), None)
    node.sync()
    role = c.get(admin(c), Role, "web")
    role.spec.allow.node_labels = {"env": ["staging"]}
    c.upsert(admin(c), role)
    node.sync()
    assert node.revoked(alice) and node.revoked(robot) and not node.revoked(bob)
    fresh = c.sign_user(admin(c), "alice", key_pem(), None)  # issued under the edited role
    node.sync()
    assert not node.revoked(fresh)
    # a bot's roles changed: its certificates issued before stop too
    _, robot2 = c.register_using_token(add_bot(c, "robot2", ["web", "other"]), key_pem(), None)
    node.sync()
    assert not node.revoked(robot2)
    bot = c.get(admin(c), Bot, "robot2")
    bot.spec.roles = ["web"]
    c.update_bot(admin(c), bot)
    node.sync()
    assert node.revoked(robot2)


def test_ended_revocations_and_issuance_records_are_pruned(c: Cluster, node: Node, clock: Clock) -> None:
    c.upsert(admin(c), codec.decode(User, {"metadata": {"name": "alice"}, "spec": {"roles": ["web"]}}))
    c.sign_user(admin(c), "alice", key_pem(), timedelta(hours=1))
    c.delete(admin(c), User, "alice")
    assert c.backend.count(revocations.ENTRY_KIND) == 1
    node.sync()
    clock.now += timedelta(hours=2)
    Janitor(c.objects).sweep()
    assert c.backend.count(revocations.ENTRY_KIND) == 0 and c.backend.count(revocations.ISSUED_KIND) == 0
    node.sync()
    assert node.version > 0


def lock(c: Cluster, name: str, expires_in: timedelta | None = None, **target: str) -> None:
    body: dict[str, object] = {"metadata": {"name": name}, "spec": {"target": target}}
    if expires_in is not None:
        body["metadata"] = {"name": name, "expires": codec.format_time(c.clock() + expires_in)}
    c.upsert(admin(c), codec.decode(Lock, body))


def test_locks_reach_the_node_at_the_next_sync_and_end_with_the_lock(c: Cluster, node: Node, clock: Clock) -> None:
    node.sync()
    _, robot = c.register_using_token(add_bot(c, "robot", ["web"]), key_pem(), None)
    _, other = c.register_using_token(add_bot(c, "other", ["web"]), key_pem(), None)
    lock(c, "robot-lock", bot="robot")
    node.sync()
    assert node.revoked(robot) and not node.revoked(other)
    c.delete(admin(c), Lock, "robot-lock")
    node.sync()
    assert not node.revoked(robot)  # a lock lifted: the bot logs in again, no new join needed

    # a lock with an expiry: revoked until then, without a write after it
    lock(c, "for-a-while", expires_in=timedelta(minutes=10), user="bot-other")
    node.sync()
    assert node.revoked(other)
    clock.now += timedelta(minutes=11)
    node.sync()
    assert not node.revoked(other)


def test_a_lock_on_an_instance_or_a_token_revokes_what_that_join_holds(c: Cluster, node: Node) -> None:
    node.sync()
    token = add_bot(c, "robot", ["web"])
    _, first = c.register_using_token(token, key_pem(), None)
    instance = c.get(admin(c), Bot, "robot").status.instance_id
    lock(c, "instance", bot_instance=instance)
    node.sync()
    assert node.revoked(first)
    _, second = c.register_using_token(bot_token(c, "robot"), key_pem(), None)  # a new instance
    node.sync()
    assert not node.revoked(second)
    lock(c, "token", token=c.get(admin(c), Bot, "robot").status.join_token)
    node.sync()
    assert node.revoked(second)
