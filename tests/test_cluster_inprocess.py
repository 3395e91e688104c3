"""The cluster's rules in-process with a fake clock: joins, renewals, locks and expiry, without sleeps."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from machineid.api import certs
from machineid.api.iam import SignedRequest
from machineid.cluster.service import Cluster, Page
from machineid.model import codec, errors
from machineid.model.resources import Node, ProvisionToken, Role, User
from tests.inprocess import Clock, add_bot, admin, caller_of, key_pem, new_cluster

UNLOCK = "an administrator can unlock it with `machineid ctl bots unlock robot`"


@pytest.fixture()
def clock() -> Clock:
    return Clock()


@pytest.fixture()
def c(tmp_path: Path, clock: Clock) -> Iterator[Cluster]:
    yield new_cluster(tmp_path, clock)


def test_a_join_token_expires_on_the_clusters_clock(c: Cluster, clock: Clock) -> None:
    add_bot(c, "robot")
    token = c.upsert(admin(c), codec.decode(ProvisionToken, {
        "metadata": {"expires": "2030-01-01T00:10:00Z"}, "spec": {"bot_name": "robot"}}))
    clock.now += timedelta(minutes=11)
    with pytest.raises(errors.PermissionDeniedError, match="join token expired at 2030-01-01T00:10:00Z"):
        c.register_using_token(token.metadata.name, key_pem(), None)
    clock.now -= timedelta(minutes=2)
    assert c.register_using_token(token.metadata.name, key_pem(), None)[0] == "robot"


def test_certificates_last_the_granted_ttl_from_now(c: Cluster, clock: Clock) -> None:
    _, out = c.register_using_token(add_bot(c, "robot"), key_pem(), timedelta(minutes=20))
    assert out.expires == clock.now + timedelta(minutes=20)
    clock.now += timedelta(minutes=10)
    renewed = c.renew(caller_of(c, out), key_pem(), timedelta(hours=48))
    assert renewed.expires == clock.now + timedelta(hours=24)  # a renewable identity is capped at 24h
    assert renewed.generation == 2


def test_an_expired_user_gets_no_certificates_and_none_outlive_the_user_or_a_role(c: Cluster, clock: Clock) -> None:
    """An SSH certificate signed for an expired user would log in on nodes until it expires itself."""
    c.upsert(admin(c), codec.decode(Role, {"metadata": {"name": "brief", "expires": "2030-01-01T00:40:00Z"},
                                                "spec": {"allow": {"logins": ["ops"]}}}))
    c.upsert(admin(c), codec.decode(User, {"metadata": {"name": "temp", "expires": "2030-01-01T00:30:00Z"},
                                                "spec": {"roles": ["access"]}}))
    out = c.sign_user(admin(c), "temp", key_pem(), timedelta(hours=8))
    assert out.expires == clock.now + timedelta(minutes=30)  # not 8h: the user ends at 00:30
    c.upsert(admin(c), codec.decode(User, {"metadata": {"name": "ops", "expires": "2031-01-01T00:00:00Z"},
                                                "spec": {"roles": ["access", "brief"]}}))
    assert c.sign_user(admin(c), "ops", key_pem(), timedelta(hours=8)).expires == clock.now + timedelta(minutes=40)
    clock.now += timedelta(minutes=31)
    with pytest.raises(errors.PreconditionError, match='user "temp" expired at 2030-01-01T00:30:00Z'):
        c.sign_user(admin(c), "temp", key_pem(), None)
    denied = [e for e in c.audit_events(admin(c)) if e.action == "cert.issue" and e.outcome == "denied"]
    assert denied and denied[-1].target == "user/temp"


def test_a_copy_renewing_after_the_original_locks_the_bot_and_every_path_says_how_to_unlock(c: Cluster) -> None:
    _, first = c.register_using_token(add_bot(c, "robot"), key_pem(), None)
    c.renew(caller_of(c, first), key_pem(), None)  # the original renews: generation 2
    with pytest.raises(errors.PermissionDeniedError, match="now locked: generation mismatch"):
        c.renew(caller_of(c, first), key_pem(), None)  # the copy, still at generation 1
    events = [e for e in c.backend.audit_events(0, 1000) if e.action == "bot.lock"]
    assert len(events) == 1 and events[0].target == "bot/robot"
    with pytest.raises(errors.PermissionDeniedError, match=UNLOCK):
        caller_of(c, first)
    # a new token for the locked bot does not get it back either
    t = c.upsert(admin(c), codec.decode(ProvisionToken, {"spec": {"bot_name": "robot"}}))
    with pytest.raises(errors.PermissionDeniedError, match=UNLOCK):
        c.register_using_token(t.metadata.name, key_pem(), None)
    c.unlock_bot(admin(c), "robot")
    _, again = c.register_using_token(t.metadata.name, key_pem(), None)
    assert again.generation == 1


def test_a_lost_renewal_answer_is_issued_again_for_the_same_key_only(c: Cluster) -> None:
    _, first = c.register_using_token(add_bot(c, "robot"), key_pem(), None)
    new_key = key_pem()
    lost = c.renew(caller_of(c, first), new_key, None)
    retried = c.renew(caller_of(c, first), new_key, None)  # the agent never saw `lost`
    assert lost.generation == retried.generation == 2
    with pytest.raises(errors.PermissionDeniedError, match="now locked"):
        c.renew(caller_of(c, first), key_pem(), None)  # the same old certificate with another key: a copy


def test_an_iam_challenge_expires_after_five_minutes(c: Cluster, clock: Clock) -> None:
    challenge = c.create_iam_challenge()
    clock.now += timedelta(minutes=6)
    request = SignedRequest(method="POST", url="https://sts.amazonaws.com/", headers={}, body=b"")
    with pytest.raises(errors.PermissionDeniedError, match="challenge expired"):
        c.register_using_iam("no-such-token", challenge, request, key_pem(), None)
    clock.now -= timedelta(minutes=2)  # within its five minutes it gets as far as the token
    with pytest.raises(errors.PermissionDeniedError, match="no iam token has that name"):
        c.register_using_iam("no-such-token", challenge, request, key_pem(), None)


def test_free_form_values_are_bounded_naming_the_field(c: Cluster) -> None:
    """Descriptions, labels, traits and lists are capped, so no object (or page of a list) grows without limit."""
    cases = [
        ({"metadata": {"name": "big", "description": "d" * 5000}}, "metadata.description", "5000 characters"),
        ({"metadata": {"name": "big", "labels": {f"k{i}": "v" for i in range(300)}}}, "metadata.labels",
         "300 entries"),
        ({"metadata": {"name": "big", "labels": {"team": "v" * 5000}}}, "metadata.labels.team", "5000 characters"),
        ({"metadata": {"name": "big"}, "spec": {"allow": {"logins": [f"u{i}" for i in range(300)]}}},
         "spec.allow.logins", "300 entries"),
    ]
    for data, field, reason in cases:
        with pytest.raises(errors.ValidationError) as err:
            c.upsert(admin(c), codec.decode(Role, data))
        assert any(errors.render_path(v.path) == field and reason in v.reason for v in err.value.violations), (
            field, err.value)
        with pytest.raises(errors.NotFoundError):
            c.get(admin(c), Role, "big")


def _names(items: list[Any]) -> list[str]:
    return [x.metadata.name for x in items]


def test_lists_come_in_pages_in_name_order(c: Cluster) -> None:
    for i in range(23):
        c.upsert(admin(c), codec.decode(Role, {"metadata": {"name": f"page-{i:02d}",
                                                                 "labels": {"team": "a" if i % 2 else "b"}}}))
    everything = _names(c.list_page(admin(c), Role, Page())[0])
    seen, token, pages = [], "", 0
    while True:
        items, token = c.list_page(admin(c), Role, Page(size=10, token=token))
        assert len(items) <= 10
        seen += _names(items)
        pages += 1
        if not token:
            break
    assert seen == everything == sorted(everything) and pages == 3
    team_a = _names(c.list_page(admin(c), Role, Page(labels={"team": "a"}))[0])
    assert team_a == [f"page-{i:02d}" for i in range(23) if i % 2]
    for bad, field in ((Page(size=5000), "page_size"), (Page(size=-1), "page_size"),
                       (Page(token="x\nProxyCommand"), "page_token")):
        with pytest.raises(errors.ValidationError) as err:
            c.list_page(admin(c), Role, bad)
        assert errors.render_path(err.value.violations[0].path) == field


def test_a_node_listing_shows_only_reachable_unexpired_nodes_and_stays_bounded(c: Cluster, clock: Clock) -> None:
    for i in range(60):
        labels = {"env": "prod" if i == 45 else "dev"}
        c.upsert(admin(c), codec.decode(Node, {"metadata": {"name": f"n{i:02d}", "labels": labels},
                                                    "spec": {"addr": f"10.0.0.{i}:22"}}))
    c.upsert(admin(c), codec.decode(Node, {"metadata": {"name": "n99", "labels": {"env": "prod"},
                                                             "expires": "2030-01-01T01:00:00Z"},
                                                "spec": {"addr": "10.0.1.1:22"}}))
    c.upsert(admin(c), codec.decode(Role, {"metadata": {"name": "prod-only"}, "spec": {"allow": {
        "logins": ["ops"], "node_labels": {"env": ["prod"]},
        "rules": [{"resources": ["node"], "verbs": ["list", "read"]}]}}}))
    c.upsert(admin(c), codec.decode(User, {"metadata": {"name": "pat"}, "spec": {"roles": ["prod-only"]}}))
    pat = c.caller_from_cert(certs.CertIdentity(user="pat", roles=["prod-only"], cluster="test.example"))
    assert _names(c.list_page(pat, Node, Page())[0]) == ["n45", "n99"]
    clock.now += timedelta(hours=2)  # n99 expired: no longer listed (nor found)
    first, token = c.list_page(pat, Node, Page(size=2))
    assert first == [] and token  # 20 scanned per call at most: the page ends early, with a way on
    found: list[str] = []
    while token:
        items, token = c.list_page(pat, Node, Page(size=2, token=token))
        found += _names(items)
    assert found == ["n45"]
    with pytest.raises(errors.NotFoundError):
        c.get(pat, Node, "n99")


def test_label_values_and_host_principals_are_checked_naming_the_field(c: Cluster) -> None:
    for labels, field in (({"env": "prod\nProxyCommand x"}, "metadata.labels.env"),
                          ({"env": "a\x00b"}, "metadata.labels.env"), ({"bad key": "x"}, "metadata.labels.bad key")):
        with pytest.raises(errors.ValidationError) as err:
            c.upsert(admin(c), codec.decode(Node, {"metadata": {"name": "n", "labels": labels},
                                                        "spec": {"addr": "10.0.0.1:22"}}))
        assert [errors.render_path(v.path) for v in err.value.violations] == [field]
    with pytest.raises(errors.ValidationError,
                       match=r"spec.allow.node_labels.env\[0\]: .* label values may not contain control"):
        c.upsert(admin(c), codec.decode(Role, {"metadata": {"name": "r"},
                                                    "spec": {"allow": {"node_labels": {"env": ["a\nb"]}}}}))
    host_key = certs.ssh_public_key_line(certs.new_key().public_key())
    with pytest.raises(errors.ValidationError, match=r"principals: has 100000 entries; a certificate carries at most"):
        c.sign_host(admin(c), host_key, [f"h{i}" for i in range(100_000)], None)
    with pytest.raises(errors.ValidationError) as err:
        c.sign_host(admin(c), host_key, ["web1", "web1\nevil", "-oProxyCommand"], None)
    assert [errors.render_path(v.path) for v in err.value.violations] == ["principals[1]", "principals[2]"]


def test_the_last_user_who_can_write_users_cannot_be_deleted_or_demoted(c: Cluster) -> None:
    """The admin could delete user admin and was locked out until a restart."""
    with pytest.raises(errors.PreconditionError, match='user "admin" is the last user who can write users'):
        c.delete(admin(c), User, "admin")
    with pytest.raises(errors.PreconditionError, match="this change to it would leave nobody"):
        c.upsert(admin(c), codec.decode(User, {"metadata": {"name": "admin"}, "spec": {"roles": ["access"]}}))
    c.upsert(admin(c), codec.decode(User, {"metadata": {"name": "alice"}, "spec": {"roles": ["editor"]}}))
    c.delete(admin(c), User, "admin")  # alice can still administer
    alice = c.caller_from_cert(certs.CertIdentity(user="alice", roles=["editor"], cluster="test.example"))
    c.upsert(alice, codec.decode(User, {"metadata": {"name": "bob"}, "spec": {"roles": ["auditor"]}}))
