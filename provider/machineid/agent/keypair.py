"""The agent's side of bound_keypair joins: its key pair and join state in the data dir, and one join.

Everything lives in one file, DATA_DIR/bound_keypair.json (0600), written atomically, so the bound key, a key
being registered or rotated in, and the latest join state always change together: a crash or a lost answer never
leaves a key the cluster does not expect next to a join state it does. A new key stays `pending` until the
cluster's answer confirms it (a retry sends the same one); the key it replaces is kept under `previous`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

from machineid.agent import storage
from machineid.api import certs
from machineid.api.client import JoinClient
from machineid.api.identity import write_private
from machineid.api.v1 import cluster_pb2 as pb
from machineid.model import keys
from machineid.model.errors import AlreadyExistsError, MachineIDError, NotFoundError, ValidationError

KEYPAIR_FILE = "bound_keypair.json"
JOIN_KEY_FILE = "join.key"  # the key to certify of a join in flight, kept until it succeeds (a retry reuses it)
KEEP_PREVIOUS = 2


@dataclass
class KeypairState:
    key: str = ""  # OpenSSH private key: the bound key
    pending: str = ""  # a key being registered or rotated in, until the cluster confirms it
    previous: list[str] = field(default_factory=list)  # the keys it replaced, newest first
    join_state: str = ""  # the cluster's latest join-state document

    @classmethod
    def load(cls, directory: Path) -> KeypairState | None:
        path = directory / KEYPAIR_FILE
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            return None
        except NotADirectoryError as e:
            raise storage.unusable(directory, e) from None
        except (OSError, ValueError) as e:
            raise MachineIDError(f"cannot read {path}: {e}") from None
        return cls(key=data.get("key", ""), pending=data.get("pending", ""), previous=list(data.get("previous", [])),
                   join_state=data.get("join_state", ""))

    def save(self, directory: Path) -> None:
        storage.ensure_private_dir(directory)
        data = {"version": 1, "key": self.key, "pending": self.pending, "previous": self.previous,
                "join_state": self.join_state}
        write_private(directory / KEYPAIR_FILE, json.dumps(data, indent=2) + "\n")

    def public_line(self, comment: str = "") -> str:
        return keys.public_line(keys.load_private(self.key).public_key(), comment)


def create(directory: Path, force: bool = False, comment: str = "") -> str:
    """A new bound key in the data dir; returns its public key line, to paste into the token."""
    existing = KeypairState.load(directory)
    if existing is not None and existing.key and not force:
        raise AlreadyExistsError(f"{directory / KEYPAIR_FILE} already holds a key ({existing.public_line()}); "
                                 f"`machineid bot keypair show --data-dir {directory}` prints it again, --force "
                                 "replaces it (the token must then be given the new public key)")
    state = KeypairState(key=keys.private_pem(keys.new_private_key()))
    state.save(directory)
    return state.public_line(comment)


def show(directory: Path, comment: str = "") -> str:
    """The public line of the key the agent joins with now, again: `create` printed it once, and the token's
    initial_public_key (or, after a rotation, its status.bound_public_key) holds it."""
    state = KeypairState.load(directory)
    if state is None or not state.key:
        raise NotFoundError(f"no key pair in {directory / KEYPAIR_FILE}: create it with `machineid bot keypair create "
                            f"--data-dir {directory}`")
    return state.public_line(comment)


def _join_key(directory: Path) -> certs.PrivateKey:
    path = directory / JOIN_KEY_FILE
    try:
        return certs.load_private_key(path.read_text())
    except (OSError, ValueError):
        key = certs.new_key()
        write_private(path, certs.private_key_pem(key))
        return key


def join(client: JoinClient, directory: Path, token: str, registration_secret: str,
         ttl: timedelta) -> tuple[certs.PrivateKey, pb.BoundKeypairJoinResponse]:
    """One join: sign the cluster's challenge with the bound key (or register a new key with the secret, or rotate
    in a new key when the cluster asks); on success store the new join state and promote the new key."""
    state = KeypairState.load(directory) or KeypairState()
    registering = bool(registration_secret) and not state.join_state
    if not state.key and not registering:
        raise ValidationError(f"no key pair in {directory / KEYPAIR_FILE}: create it with `machineid bot keypair "
                              f"create --data-dir {directory}` and put the public key it prints in the token's "
                              "initial_public_key, or pass --registration-secret for a token that has one")
    answer = client.create_bound_keypair_challenge(token)
    if not state.pending and ((registering and not state.key) or answer.rotate):
        state.pending = keys.private_pem(keys.new_private_key())
        state.save(directory)  # before it is sent: a retry sends the same one
    certify = _join_key(directory)
    certify_pem = certs.public_key_pem(certify.public_key())
    msg = keys.join_message(token, answer.challenge, certify_pem)
    req = pb.BoundKeypairJoinRequest(token=token, challenge=answer.challenge, public_key=certify_pem,
                                     join_state=state.join_state)
    req.ttl.FromTimedelta(ttl)
    new = keys.load_private(state.pending) if state.pending else None
    if registering:
        new = new or keys.load_private(state.key)
        req.registration_secret = registration_secret
    else:
        req.signature = keys.sign(keys.load_private(state.key), msg)
    if new is not None:
        req.new_public_key = keys.public_line(new.public_key())
        req.new_key_signature = keys.sign(new, msg)
    reply = client.register_using_bound_keypair(req)
    if state.pending:
        pending_line = keys.normalized(keys.public_line(keys.load_private(state.pending).public_key()))
        if keys.normalized(reply.bound_public_key) == pending_line:
            if state.key:
                state.previous = [state.key, *state.previous][:KEEP_PREVIOUS]
            state.key = state.pending
        # Otherwise the cluster kept the bound key (it binds a new one only when rotate_after asks): drop this one.
        state.pending = ""
    state.join_state = reply.join_state
    state.save(directory)
    (directory / JOIN_KEY_FILE).unlink(missing_ok=True)
    return certify, reply
