"""The agent's side of bound_keypair joins against an in-process cluster with a fake clock: what it keeps in the
data dir, and that a lost answer (the cluster committed, the agent never heard) is survived, for a rotation and for
a registration, instead of locking the bot."""

from __future__ import annotations

import json
import stat
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from machineid.agent import keypair
from machineid.api.v1 import cluster_pb2 as pb
from machineid.cluster.grpc_api import certs_pb
from machineid.cluster.keypairs import KeypairJoin
from machineid.cluster.service import Cluster
from machineid.model import codec, keys
from machineid.model.errors import AlreadyExistsError, TransportError, ValidationError
from machineid.model.resources import Bot, ProvisionToken
from tests.inprocess import Clock, add_bot, admin, new_cluster

SECRET = "0123456789abcdef0123456789abcdef"
TTL = timedelta(hours=1)


class InProcessJoinClient:
    """The JoinClient's two bound_keypair calls, straight into the cluster; `lose` drops the next answer after the
    cluster committed it, as a broken connection would."""

    def __init__(self, c: Cluster) -> None:
        self.c = c
        self.lose = False

    def create_bound_keypair_challenge(self, token: str) -> pb.BoundKeypairChallengeResponse:
        challenge, rotate = self.c.create_bound_keypair_challenge(token)
        return pb.BoundKeypairChallengeResponse(challenge=challenge, rotate=rotate)

    def register_using_bound_keypair(self, req: pb.BoundKeypairJoinRequest) -> pb.BoundKeypairJoinResponse:
        joined = self.c.register_using_bound_keypair(KeypairJoin(
            token=req.token, challenge=req.challenge, public_key=req.public_key, ttl=req.ttl.ToTimedelta(),
            signature=bytes(req.signature), join_state=req.join_state, new_public_key=req.new_public_key,
            new_key_signature=bytes(req.new_key_signature), registration_secret=req.registration_secret))
        if self.lose:
            self.lose = False
            raise TransportError("cannot reach the cluster: the connection broke")
        return pb.BoundKeypairJoinResponse(bot_name=joined.bot_name, certs=certs_pb(joined.certs),
                                           join_state=joined.join_state, bound_public_key=joined.bound_public_key)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def cluster(tmp_path: Path, clock: Clock) -> Cluster:
    c = new_cluster(tmp_path, clock)
    add_bot(c, "robot")
    return c


def put_token(c: Cluster, bound_keypair: dict[str, Any]) -> None:
    doc = {"metadata": {"name": "robot-key"},
           "spec": {"join_method": "bound_keypair", "bot_name": "robot", "bound_keypair": bound_keypair}}
    c.upsert(admin(c), codec.decode_and_validate(ProvisionToken, doc))


def stored(directory: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((directory / keypair.KEYPAIR_FILE).read_text())
    return data


def join(client: InProcessJoinClient, directory: Path, secret: str = "") -> str:
    _, reply = keypair.join(client, directory, "robot-key", secret, TTL)  # type: ignore[arg-type]
    return reply.bound_public_key


def test_create_keeps_the_key_private_and_refuses_to_overwrite(tmp_path: Path) -> None:
    data = tmp_path / "data"
    public = keypair.create(data, comment="robot@host")
    assert public.startswith("ssh-ed25519 ") and public.endswith(" robot@host")
    assert stat.S_IMODE((data / keypair.KEYPAIR_FILE).stat().st_mode) == 0o600
    assert stat.S_IMODE(data.stat().st_mode) == 0o700
    with pytest.raises(AlreadyExistsError, match="--force"):
        keypair.create(data)
    assert keypair.create(data, force=True) != public


def test_a_rotation_whose_answer_was_lost_completes_on_the_next_join(cluster: Cluster, clock: Clock,
                                                                    tmp_path: Path) -> None:
    data = tmp_path / "data"
    public = keypair.create(data)
    put_token(cluster, {"onboarding": {"initial_public_key": public},
                        "rotate_after": codec.format_time(clock.now + timedelta(hours=1))})
    client = InProcessJoinClient(cluster)
    assert join(client, data) == keys.normalized(public)
    clock.now += timedelta(hours=2)
    client.lose = True
    with pytest.raises(TransportError):
        join(client, data)
    kept = stored(data)
    assert kept["pending"] and kept["key"]  # the new key waits for its confirmation; the old one still signs
    new = join(client, data)
    assert new != keys.normalized(public)
    kept = stored(data)
    assert not kept["pending"] and len(kept["previous"]) == 1
    assert keys.public_line(keys.load_private(kept["key"]).public_key()) == new
    join(client, data)  # the new key and state from now on, no further rotation
    token = cluster.get(admin(cluster), ProvisionToken, "robot-key")
    assert token.status.bound_public_key == new and token.status.join_sequence == 3
    assert not cluster.get(admin(cluster), Bot, "robot").status.locked


def test_a_registration_whose_answer_was_lost_completes_on_the_next_join(cluster: Cluster, tmp_path: Path) -> None:
    data = tmp_path / "data"
    put_token(cluster, {"onboarding": {"registration_secret": SECRET}})
    client = InProcessJoinClient(cluster)
    with pytest.raises(ValidationError, match="no key pair"):
        join(client, data)
    client.lose = True
    with pytest.raises(TransportError):
        join(client, data, SECRET)
    bound = join(client, data, SECRET)  # the secret is spent, but this is the same registration again
    assert keys.public_line(keys.load_private(stored(data)["key"]).public_key()) == bound
    join(client, data, SECRET)  # the secret is no longer used: the key signs
    assert cluster.get(admin(cluster), ProvisionToken, "robot-key").status.join_sequence == 2


def test_a_key_the_cluster_did_not_bind_is_dropped_not_promoted(cluster: Cluster, clock: Clock,
                                                                 tmp_path: Path) -> None:
    """A rotation was due when the agent made its new key, but the token's rotate_after moved away before the join
    went through: the cluster keeps the bound key, and the agent keeps signing with it (promoting its new key would
    lock it out)."""
    data = tmp_path / "data"
    public = keypair.create(data)
    put_token(cluster, {"onboarding": {"initial_public_key": public},
                        "rotate_after": codec.format_time(clock.now + timedelta(hours=1))})
    client = InProcessJoinClient(cluster)
    join(client, data)
    clock.now += timedelta(hours=2)
    state = keypair.KeypairState.load(data)
    assert state is not None
    state.pending = keys.private_pem(keys.new_private_key())  # made for the rotation, not sent yet
    state.save(data)
    token = cluster.get(admin(cluster), ProvisionToken, "robot-key")
    token.spec.bound_keypair.rotate_after = clock.now + timedelta(days=30)
    cluster.upsert(admin(cluster), token)
    assert join(client, data) == keys.normalized(public)
    kept = stored(data)
    assert not kept["pending"] and keys.public_line(keys.load_private(kept["key"]).public_key()) == public
    join(client, data)
    assert not cluster.get(admin(cluster), Bot, "robot").status.locked
