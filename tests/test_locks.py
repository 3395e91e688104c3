"""Locks (issue 20 §5): a lock on a bot, one bot instance, a join token, a user or a node stops every authenticated
call, renewal and join of what it targets, at once and until it is removed or expires; nothing else is touched."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from machineid.cluster.kinds import Page
from machineid.cluster.service import Cluster
from machineid.model import codec
from machineid.model.errors import PermissionDeniedError, PreconditionError, ValidationError
from machineid.model.resources import Bot, Lock, ProvisionToken, Role, User, token_id
from tests.inprocess import Clock, add_bot, admin, caller_of, key_pem, new_cluster


@pytest.fixture()
def clock() -> Clock:
    return Clock()


@pytest.fixture()
def c(tmp_path: Path, clock: Clock) -> Cluster:
    return new_cluster(tmp_path, clock)


def lock(c: Cluster, name: str, message: str = "", ttl: timedelta | None = None, **target: str) -> Lock:
    body: dict[str, Any] = {"metadata": {"name": name}, "spec": {"target": target, "message": message}}
    if ttl is not None:
        body["metadata"]["expires"] = codec.format_time(c.clock() + ttl)
    return c.upsert(admin(c), codec.decode(Lock, body))


def joined(c: Cluster, bot: str) -> Any:
    token = add_bot(c, bot)
    _, issued = c.register_using_token(token, key_pem(), None)
    return issued


def works(c: Cluster, issued: Any) -> bool:
    try:
        caller_of(c, issued)
        return True
    except PermissionDeniedError:
        return False


def test_a_bot_lock_stops_its_calls_and_renewals_at_once_and_lifting_it_needs_no_new_join(c: Cluster) -> None:
    issued, other = joined(c, "deployer"), joined(c, "backup")
    lock(c, "incident-42", "key found in a public log", bot="deployer")
    with pytest.raises(PermissionDeniedError) as refused:
        caller_of(c, issued)
    assert 'bot "deployer" is locked by lock "incident-42": key found in a public log' in str(refused.value)
    assert works(c, other)  # only what the lock targets
    c.delete(admin(c), Lock, "incident-42")
    caller = caller_of(c, issued)
    assert c.renew(caller, key_pem(), None).generation == 2  # the same identity renews on: no new token needed


def test_a_lock_on_one_instance_leaves_the_bots_next_join_alone(c: Cluster) -> None:
    first = joined(c, "deployer")
    instance = c.get(admin(c), Bot, "deployer").status.instance_id
    lock(c, "one-instance", bot_instance=instance)
    assert not works(c, first)
    token = c.upsert(admin(c), codec.decode(ProvisionToken, {"metadata": {}, "spec": {
        "roles": ["Bot"], "bot_name": "deployer", "join_method": "token"}})).metadata.name
    _, second = c.register_using_token(token, key_pem(), None)
    assert works(c, second) and not works(c, first)


def test_a_token_lock_refuses_joins_and_stops_what_joined_with_it(c: Cluster) -> None:
    token = add_bot(c, "deployer")
    # a single-use token's name is its secret: a lock names it by its ID
    with pytest.raises(ValidationError) as bad:
        lock(c, "by-secret", token=token)
    assert bad.value.violations[0].path == ("spec", "target", "token")
    assert token_id(token, "token") in str(bad.value) and token not in str(bad.value)
    lock(c, "spent", token=token_id(token, "token"))
    with pytest.raises(PermissionDeniedError, match='token "token-[0-9a-f]+" is locked by lock "spent"'):
        c.register_using_token(token, key_pem(), None)
    c.delete(admin(c), Lock, "spent")
    _, issued = c.register_using_token(token, key_pem(), None)
    assert works(c, issued)
    lock(c, "spent-again", token=token_id(token, "token"))
    assert not works(c, issued)  # it joined with the locked token


def test_a_user_lock_stops_certificates_and_signing(c: Cluster) -> None:
    c.upsert(admin(c), codec.decode(User, {"metadata": {"name": "alice"}, "spec": {"roles": ["access"]}}))
    issued = c.sign_user(admin(c), "alice", key_pem(), None)
    assert works(c, issued)
    lock(c, "alice-away", user="alice")
    assert not works(c, issued)
    bot = joined(c, "deployer")
    lock(c, "bot-user", user="bot-deployer")  # a bot's user: the bot's certificates
    assert not works(c, bot)


def test_a_lock_ends_at_its_expiry_without_a_write(c: Cluster, clock: Clock) -> None:
    issued = joined(c, "deployer")
    lock(c, "for-an-hour", ttl=timedelta(hours=1), bot="deployer")
    assert not works(c, issued)
    clock.now += timedelta(hours=1, seconds=1)
    assert works(c, issued)


def test_a_lock_names_exactly_one_target_and_never_its_writer(c: Cluster) -> None:
    for target in ({}, {"bot": "a", "user": "b"}):
        with pytest.raises(ValidationError) as bad:
            lock(c, "bad", **target)
        assert bad.value.violations[0].path == ("spec", "target"), bad.value
    with pytest.raises(ValidationError, match="bot_instance"):
        lock(c, "bad", bot_instance="not-an-id")
    with pytest.raises(PreconditionError, match="lock out the caller itself"):
        lock(c, "self", user="admin")
    assert c.list_page(admin(c), Lock, Page())[0] == []


def test_writing_locks_is_a_rule_like_any_kind(c: Cluster) -> None:
    c.upsert(admin(c), codec.decode(Role, {"metadata": {"name": "viewer"}, "spec": {"allow": {"rules": [
        {"resources": ["lock"], "verbs": ["list", "read"]}]}}}))
    c.upsert(admin(c), codec.decode(User, {"metadata": {"name": "bob"}, "spec": {"roles": ["viewer"]}}))
    bob = caller_of(c, c.sign_user(admin(c), "bob", key_pem(), None))
    with pytest.raises(PermissionDeniedError):
        c.upsert(bob, codec.decode(Lock, {"metadata": {"name": "x"}, "spec": {"target": {"bot": "y"}}}))
    lock(c, "seen", bot="y")
    assert [lk.metadata.name for lk in c.list_page(bob, Lock, Page())[0]] == ["seen"]
