"""bound_keypair joins, in process with a clock the test moves: the signature, the join state (a stale one locks the
bot), recovery counting per mode, rotation, the one-time registration secret, and lost answers."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from machineid.cluster.keypairs import KeypairJoin, KeypairJoined
from machineid.cluster.service import Cluster
from machineid.model import codec, keys
from machineid.model.errors import PermissionDeniedError, ValidationError
from machineid.model.resources import Bot, ProvisionToken
from tests.inprocess import Clock, add_bot, admin, caller_of, key_pem, new_cluster

SECRET = "s3cret-registration-value-0123456789"


def token_doc(bound_keypair: dict[str, Any], name: str = "robot-key") -> dict[str, Any]:
    return {"metadata": {"name": name},
            "spec": {"join_method": "bound_keypair", "bot_name": "robot", "bound_keypair": bound_keypair}}


class Agent:
    """What the agent sends, without the agent: a key pair and the join state it holds."""

    def __init__(self, c: Cluster, key: keys.PrivateKey | None, token: str = "robot-key") -> None:
        self.c, self.key, self.token, self.state = c, key, token, ""

    def join(self, *, new_key: keys.PrivateKey | None = None, secret: str = "", certify: str = "",
             keep_answer: bool = True) -> KeypairJoined:
        challenge, _ = self.c.create_bound_keypair_challenge(self.token)
        pem = certify or key_pem()
        msg = keys.join_message(self.token, challenge, pem)
        req = KeypairJoin(token=self.token, challenge=challenge, public_key=pem, join_state=self.state,
                          signature=keys.sign(self.key, msg) if self.key and not secret else b"",
                          registration_secret=secret)
        if new_key is not None:
            req.new_public_key = keys.public_line(new_key.public_key())
            req.new_key_signature = keys.sign(new_key, msg)
        out = self.c.register_using_bound_keypair(req)
        if keep_answer:
            self.state = out.join_state
            if new_key is not None:
                self.key = new_key
        return out


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def cluster(tmp_path: Path, clock: Clock) -> Cluster:
    c = new_cluster(tmp_path, clock)
    add_bot(c, "robot")
    return c


def bind(c: Cluster, recovery: dict[str, Any] | None = None, **extra: Any) -> keys.PrivateKey:
    key = keys.new_private_key()
    bk = {"onboarding": {"initial_public_key": keys.public_line(key.public_key(), "robot@host")}, **extra}
    if recovery:
        bk["recovery"] = recovery
    c.upsert(admin(c), codec.decode_and_validate(ProvisionToken, token_doc(bk)))
    return key


def token(c: Cluster) -> ProvisionToken:
    return c.get(admin(c), ProvisionToken, "robot-key")


def bot(c: Cluster) -> Bot:
    return c.get(admin(c), Bot, "robot")


def events(c: Cluster, action: str) -> list[Any]:
    return [e for e in c.audit_events(admin(c)) if e.action == action]


def test_signed_join_issues_a_renewable_identity_and_the_token_stays(cluster: Cluster) -> None:
    agent = Agent(cluster, bind(cluster))
    out = agent.join()
    assert out.bot_name == "robot" and out.certs.renewable and out.certs.generation == 1
    renewed = cluster.renew(caller_of(cluster, out.certs), key_pem(), None)
    assert renewed.generation == 2
    st = token(cluster).status
    assert st.bound_public_key == keys.normalized(keys.public_line(agent.key.public_key()))  # type: ignore[union-attr]
    assert st.join_sequence == 1 and st.recovery_count == 0
    agent.join()  # reusable: a restart joins again with the same key
    assert token(cluster).status.join_sequence == 2
    joined = events(cluster, "bot.join")[-1]
    assert joined.target == "token/robot-key" and joined.outcome == "ok"
    assert joined.details["method"] == "bound_keypair"


def test_another_key_or_a_used_challenge_is_refused_and_audited(cluster: Cluster) -> None:
    bind(cluster)
    with pytest.raises(PermissionDeniedError, match="does not match the token's initial_public_key"):
        Agent(cluster, keys.new_private_key()).join()
    denied = events(cluster, "bot.join")[-1]
    assert denied.outcome == "denied" and denied.target == "token/robot-key"
    assert token(cluster).status.bound_public_key == ""
    assert not cluster.backend.count("spent_challenge")  # a join that proved nothing wrote nothing


def test_a_challenge_joins_once(cluster: Cluster) -> None:
    """The answer of a join replayed (the same challenge, signature and key to certify) is refused."""
    key = bind(cluster)
    challenge, _ = cluster.create_bound_keypair_challenge("robot-key")
    pem = key_pem()
    req = KeypairJoin(token="robot-key", challenge=challenge, public_key=pem,
                      signature=keys.sign(key, keys.join_message("robot-key", challenge, pem)))
    first = cluster.register_using_bound_keypair(req)
    req.join_state = first.join_state
    with pytest.raises(PermissionDeniedError, match="challenge was already used"):
        cluster.register_using_bound_keypair(req)


def test_challenges_are_checked_without_a_lookup_and_expire(cluster: Cluster, clock: Clock) -> None:
    key = bind(cluster)
    agent = Agent(cluster, key)
    challenge, _ = cluster.create_bound_keypair_challenge("robot-key")
    pem = key_pem()

    def join_with(text: str) -> KeypairJoined:
        return cluster.register_using_bound_keypair(KeypairJoin(
            token="robot-key", challenge=text, public_key=pem, join_state=agent.state,
            signature=keys.sign(key, keys.join_message("robot-key", text, pem))))

    forged = challenge[:-4] + ("AAAA" if not challenge.endswith("AAAA") else "BBBB")
    for bad in (forged, "x" * 5000, "", "not base64 at all!"):
        with pytest.raises(PermissionDeniedError, match="not one this cluster issued"):
            join_with(bad)
    clock.now += timedelta(minutes=5, seconds=1)
    with pytest.raises(PermissionDeniedError, match="challenge expired"):
        join_with(challenge)


def test_a_challenge_serves_only_its_token(cluster: Cluster) -> None:
    key = bind(cluster)
    challenge = cluster.create_iam_challenge()
    pem = key_pem()
    sig = keys.sign(key, keys.join_message("robot-key", challenge, pem))
    with pytest.raises(PermissionDeniedError, match="made for another join"):
        cluster.register_using_bound_keypair(KeypairJoin("robot-key", challenge, pem, signature=sig))


def test_a_stale_join_state_is_refused_and_locks_the_bot(cluster: Cluster) -> None:
    original = Agent(cluster, bind(cluster))
    original.join()
    copy = Agent(cluster, original.key)
    copy.state = original.state  # the key pair and its state copied off the machine
    original.join()
    with pytest.raises(PermissionDeniedError, match="now locked: stale join state"):
        copy.join()
    assert bot(cluster).status.locked
    lock = events(cluster, "bot.lock")[-1]
    assert lock.target == "bot/robot" and lock.details["presented"] == 1 and lock.details["expected"] == 2
    with pytest.raises(PermissionDeniedError, match='bot "robot" is locked'):
        original.join()  # both stop working


def test_a_missing_join_state_is_refused_without_locking(cluster: Cluster) -> None:
    agent = Agent(cluster, bind(cluster))
    agent.join()
    agent.state = ""
    with pytest.raises(PermissionDeniedError, match="join state is missing"):
        agent.join()
    agent.state = "v1.forged.state"
    with pytest.raises(PermissionDeniedError, match="not one this cluster issued"):
        agent.join()
    assert not bot(cluster).status.locked


def expire(clock: Clock) -> None:
    clock.now += timedelta(hours=25)  # renewable certificates live at most 24h


def test_standard_recovery_counts_against_the_limit(cluster: Cluster, clock: Clock) -> None:
    agent = Agent(cluster, bind(cluster))
    agent.join()  # the first join is no recovery
    agent.join()  # nor a join while the certificates are valid
    expire(clock)
    agent.join()
    assert token(cluster).status.recovery_count == 1
    agent.join()
    expire(clock)
    with pytest.raises(PermissionDeniedError, match=r"recovery limit reached.*recovery.limit 1"):
        agent.join()
    # Raising the limit is an in-place edit; the status (and the binding) stays.
    t = token(cluster)
    t.spec.bound_keypair.recovery.limit = 2
    cluster.upsert(admin(cluster), t)
    agent.join()
    st = token(cluster).status
    assert st.recovery_count == 2 and st.bound_public_key


def test_renewing_keeps_a_join_from_being_a_recovery(cluster: Cluster, clock: Clock) -> None:
    agent = Agent(cluster, bind(cluster, recovery={"limit": 0}))
    out = agent.join()
    clock.now += timedelta(hours=20)
    cluster.renew(caller_of(cluster, out.certs), key_pem(), timedelta(hours=10))
    clock.now += timedelta(hours=5)  # past the join's certificate, within the renewed one
    agent.join()
    expire(clock)
    with pytest.raises(PermissionDeniedError, match="recovery limit reached"):
        agent.join()


def test_relaxed_does_not_count_and_insecure_skips_the_join_state(cluster: Cluster, clock: Clock) -> None:
    agent = Agent(cluster, bind(cluster, recovery={"mode": "relaxed", "limit": 0}))
    agent.join()
    for _ in range(2):
        expire(clock)
        agent.join()
    assert token(cluster).status.recovery_count == 0
    t = token(cluster)
    t.spec.bound_keypair.recovery.mode = "insecure"
    cluster.upsert(admin(cluster), t)
    copy = Agent(cluster, agent.key)
    copy.state = agent.state
    agent.join()
    copy.join()  # stale, but insecure does not look
    expire(clock)
    Agent(cluster, agent.key).join()  # nor at a missing one
    assert not bot(cluster).status.locked


def test_rotation_binds_the_new_key(cluster: Cluster, clock: Clock) -> None:
    agent = Agent(cluster, bind(cluster, rotate_after=codec.format_time(clock.now + timedelta(hours=1))))
    assert cluster.create_bound_keypair_challenge("robot-key")[1] is False
    agent.join()
    clock.now += timedelta(hours=2)
    assert cluster.create_bound_keypair_challenge("robot-key")[1] is True
    old = agent.key
    new = keys.new_private_key()
    agent.join(new_key=new)
    st = token(cluster).status
    assert st.bound_public_key == keys.public_line(new.public_key()) and st.last_rotated_at == clock.now
    assert cluster.create_bound_keypair_challenge("robot-key")[1] is False  # honoured
    agent.join()
    joined = [e for e in events(cluster, "bot.join") if e.outcome == "ok"]
    assert [e.details["rotated"] for e in joined] == [False, True, False]
    with pytest.raises(PermissionDeniedError, match="does not match the token's bound key"):
        Agent(cluster, keys.new_private_key()).join()  # a key never bound: refused, nothing more
    assert not bot(cluster).status.locked
    with pytest.raises(PermissionDeniedError, match="now locked: a join was signed with key .* which the token was "
                                                    "bound to before"):
        Agent(cluster, old).join()  # only a copy still holds the key the token moved away from
    assert bot(cluster).status.locked


def test_a_copy_cannot_rotate_in_a_key_of_its_own(cluster: Cluster) -> None:
    """Whoever copied the key pair and its join state joins with a new key when no rotation is due: the key is
    not bound, so the copy's join makes the real agent's state stale and its next join locks the bot (before, the
    copy's key was bound and the real agent was refused with no lock)."""
    original = Agent(cluster, bind(cluster))
    original.join()
    bound = token(cluster).status.bound_public_key
    copy = Agent(cluster, original.key)
    copy.state = original.state
    out = copy.join(new_key=keys.new_private_key(), keep_answer=False)
    assert out.bound_public_key == bound and token(cluster).status.bound_public_key == bound
    assert events(cluster, "bot.join")[-1].details["rotation_ignored"] is True
    with pytest.raises(PermissionDeniedError, match="now locked: stale join state"):
        original.join()
    assert bot(cluster).status.locked


def test_a_copy_that_rotates_first_locks_the_bot_at_the_next_join_of_the_other(cluster: Cluster,
                                                                                clock: Clock) -> None:
    """A rotation due is won by whichever holder joins first; the other signs with a key the token moved away
    from, which locks the bot whatever join state it presents."""
    original = Agent(cluster, bind(cluster, rotate_after=codec.format_time(clock.now + timedelta(hours=1))))
    original.join()
    copy = Agent(cluster, original.key)
    copy.state = original.state
    clock.now += timedelta(hours=2)
    copy.join(new_key=keys.new_private_key())
    with pytest.raises(PermissionDeniedError, match="now locked: a join was signed with key"):
        original.join()
    lock = events(cluster, "bot.lock")[-1]
    assert lock.target == "bot/robot" and lock.details["key"].startswith("SHA256:")


def test_a_rotation_whose_answer_was_lost_is_retried(cluster: Cluster, clock: Clock) -> None:
    agent = Agent(cluster, bind(cluster, rotate_after=codec.format_time(clock.now)))
    agent.join()
    new, certify = keys.new_private_key(), key_pem()
    agent.join(new_key=new, certify=certify, keep_answer=False)  # committed, but the agent never heard
    out = agent.join(new_key=new, certify=certify)  # signed by the old key, old state, same keys: the same join
    assert out.bound_public_key == keys.public_line(new.public_key())
    assert token(cluster).status.join_sequence == 2
    assert events(cluster, "bot.join")[-1].details["retry"] is True
    agent.join()  # with the new key and the new state
    assert not bot(cluster).status.locked


def test_a_lost_answer_retried_with_another_key_to_certify_is_a_copy(cluster: Cluster) -> None:
    agent = Agent(cluster, bind(cluster))
    agent.join()
    agent.join(keep_answer=False)
    with pytest.raises(PermissionDeniedError, match="stale join state"):
        agent.join()


def registration_token(c: Cluster, **onboarding: Any) -> None:
    doc = token_doc({"onboarding": {"registration_secret": SECRET, **onboarding}})
    c.upsert(admin(c), codec.decode_and_validate(ProvisionToken, doc))


def test_the_registration_secret_binds_a_new_key_once(cluster: Cluster) -> None:
    registration_token(cluster)
    stored = token(cluster).spec.bound_keypair.onboarding.registration_secret
    assert stored.startswith("sha256:") and SECRET not in json.dumps(codec.encode(token(cluster)))
    with pytest.raises(PermissionDeniedError, match="not the token's"):
        Agent(cluster, None).join(new_key=keys.new_private_key(), secret="x" * 40)
    agent = Agent(cluster, None)
    key = keys.new_private_key()
    out = agent.join(new_key=key, secret=SECRET)
    assert out.bound_public_key == keys.public_line(key.public_key())
    with pytest.raises(PermissionDeniedError, match="registration secret was already used"):
        Agent(cluster, None).join(new_key=keys.new_private_key(), secret=SECRET)
    agent.join()  # from now on by signature
    assert not any(SECRET in json.dumps(codec.encode(e.details)) for e in cluster.audit_events(admin(cluster)))
    # Writing the token back as read (its hash) keeps the binding and the hash.
    t = token(cluster)
    cluster.upsert(admin(cluster), t)
    assert token(cluster).spec.bound_keypair.onboarding.registration_secret == stored
    assert token(cluster).status.bound_public_key == out.bound_public_key


def test_must_register_before(cluster: Cluster, clock: Clock) -> None:
    registration_token(cluster, must_register_before=codec.format_time(clock.now + timedelta(minutes=5)))
    clock.now += timedelta(minutes=6)
    with pytest.raises(PermissionDeniedError, match="could be used until"):
        Agent(cluster, None).join(new_key=keys.new_private_key(), secret=SECRET)


def test_status_is_the_clusters(cluster: Cluster) -> None:
    agent = Agent(cluster, bind(cluster))
    agent.join()
    t = token(cluster)
    t.status.recovery_count, t.status.bound_public_key, t.status.join_sequence = 99, "", 0
    cluster.upsert(admin(cluster), t)
    st = token(cluster).status
    assert st.recovery_count == 0 and st.bound_public_key and st.join_sequence == 1


@pytest.mark.parametrize(("bound_keypair", "path", "reason"), [
    ({}, "spec.bound_keypair.onboarding", "exactly one of initial_public_key"),
    ({"onboarding": {"initial_public_key": "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQ"}},
     "spec.bound_keypair.onboarding.initial_public_key", "Ed25519 or ECDSA P-256"),
    ({"onboarding": {"initial_public_key": "ssh-ed25519 not-base64!"}},
     "spec.bound_keypair.onboarding.initial_public_key", "does not decode"),
    ({"onboarding": {"registration_secret": "short-secret"}},
     "spec.bound_keypair.onboarding.registration_secret", "too short"),
    ({"onboarding": {"registration_secret": SECRET}, "recovery": {"mode": "lenient"}},
     "spec.bound_keypair.recovery.mode", "one of"),
    ({"onboarding": {"registration_secret": SECRET}, "recovery": {"limit": -1}},
     "spec.bound_keypair.recovery.limit", "too small"),
])
def test_validation_names_the_field(bound_keypair: dict[str, Any], path: str, reason: str) -> None:
    with pytest.raises(ValidationError) as err:
        codec.decode_and_validate(ProvisionToken, token_doc(bound_keypair))
    assert any(str(v).startswith(f"{path}: ") and reason in v.reason for v in err.value.violations), err.value
    assert "short-secret" not in str(err.value)


def test_a_pem_key_is_not_an_openssh_key() -> None:
    pem = key_pem()
    with pytest.raises(ValidationError, match="initial_public_key"):
        codec.decode_and_validate(ProvisionToken, token_doc({"onboarding": {"initial_public_key": pem}}))


def test_the_block_belongs_to_bound_keypair_tokens() -> None:
    doc = {"metadata": {"name": "a" * 32}, "spec": {"bot_name": "robot", "bound_keypair": {"recovery": {"limit": 3}}}}
    with pytest.raises(ValidationError, match=r"spec.bound_keypair: applies to join_method bound_keypair only"):
        codec.decode_and_validate(ProvisionToken, doc)


def test_a_token_created_again_is_a_new_onboarding(cluster: Cluster, clock: Clock) -> None:
    """Replacing the token (a new initial_public_key from code) starts over: the old join state is ignored, not
    taken for a copy."""
    agent = Agent(cluster, bind(cluster))
    agent.join()
    agent.join()
    cluster.delete(admin(cluster), ProvisionToken, "robot-key")
    clock.now += timedelta(seconds=1)
    agent.key = bind(cluster)
    agent.join()
    st = token(cluster).status
    assert st.join_sequence == 1 and st.recovery_count == 0 and not bot(cluster).status.locked


def test_a_bound_keypair_token_needs_a_name_and_does_not_expire(cluster: Cluster) -> None:
    doc = token_doc({"onboarding": {"registration_secret": SECRET}})
    doc["metadata"]["name"] = ""
    with pytest.raises(ValidationError, match="metadata.name: is required for a bound_keypair token"):
        cluster.upsert(admin(cluster), codec.decode(ProvisionToken, doc))
    bind(cluster)
    assert token(cluster).metadata.expires is None  # reusable: no default lifetime
