"""The cluster's rules in-process with a fake clock: joins, renewals, locks and expiry, without sleeps."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from machineid.api.iam import SignedRequest
from machineid.cluster.service import Cluster
from machineid.model import codec, errors
from machineid.model.resources import ProvisionToken
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
    token = c.upsert_token(admin(c), codec.decode(ProvisionToken, {
        "metadata": {"expires": "2030-01-01T00:10:00Z"}, "spec": {"bot_name": "robot"}}))
    clock.now += timedelta(minutes=11)
    with pytest.raises(errors.PermissionDeniedError, match="join token expired at 2030-01-01T00:10:00Z"):
        c.register_using_token(token.metadata.name, key_pem(), None)
    clock.now -= timedelta(minutes=2)
    assert c.register_using_token(token.metadata.name, key_pem(), None)[0] == "robot"


def test_certificates_last_the_granted_ttl_from_now(c: Cluster, clock: Clock) -> None:
    _, out = c.register_using_token(add_bot(c, "robot"), key_pem(), timedelta(minutes=20))
    assert out["expires"] == clock.now + timedelta(minutes=20)
    clock.now += timedelta(minutes=10)
    renewed = c.renew(caller_of(c, out), key_pem(), timedelta(hours=48))
    assert renewed["expires"] == clock.now + timedelta(hours=24)  # a renewable identity is capped at 24h
    assert renewed["generation"] == 2


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
    t = c.upsert_token(admin(c), codec.decode(ProvisionToken, {"spec": {"bot_name": "robot"}}))
    with pytest.raises(errors.PermissionDeniedError, match=UNLOCK):
        c.register_using_token(t.metadata.name, key_pem(), None)
    c.unlock_bot(admin(c), "robot")
    _, again = c.register_using_token(t.metadata.name, key_pem(), None)
    assert again["generation"] == 1


def test_a_lost_renewal_answer_is_issued_again_for_the_same_key_only(c: Cluster) -> None:
    _, first = c.register_using_token(add_bot(c, "robot"), key_pem(), None)
    new_key = key_pem()
    lost = c.renew(caller_of(c, first), new_key, None)
    retried = c.renew(caller_of(c, first), new_key, None)  # the agent never saw `lost`
    assert lost["generation"] == retried["generation"] == 2
    with pytest.raises(errors.PermissionDeniedError, match="now locked"):
        c.renew(caller_of(c, first), key_pem(), None)  # the same old certificate with another key: a copy


def test_an_iam_challenge_expires_after_five_minutes(c: Cluster, clock: Clock) -> None:
    challenge = c.create_iam_challenge()
    clock.now += timedelta(minutes=6)
    request = SignedRequest(method="POST", url="https://sts.amazonaws.com/", headers={}, body=b"")
    with pytest.raises(errors.PermissionDeniedError, match="challenge expired"):
        c.register_using_iam("no-such-token", challenge, request, key_pem(), None)
    with pytest.raises(errors.PermissionDeniedError, match="already used"):  # consumed even so
        c.register_using_iam("no-such-token", challenge, request, key_pem(), None)
