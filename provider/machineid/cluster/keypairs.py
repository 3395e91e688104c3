"""Bound keypair joins (Teleport's RFD 0205): the bot (or node) proves a private key the token is bound to by
signing a fresh, single-use challenge, so no secret travels or sits on disk besides that key.

Every join returns a join-state document the cluster signed (with its X.509 CA key) carrying a sequence number;
the next join must present the latest one. A key pair copied off a machine carries a document that goes stale as
soon as either holder joins, and whichever joins with the stale one locks the bot. A join while the bot holds no
valid renewable certificate (it was offline longer than their lifetime) is a recovery: `standard` mode counts them
against recovery.limit, `relaxed` does not, and `insecure` checks no join state either. When rotate_after has
passed, the challenge answer asks the agent to bind a new key, which it proves along with the old one.

A join whose answer was lost (committed here, never received) is recognised when retried: the same key to certify,
signed by the key that signed it, presenting the document it presented. Callers are anonymous, so refusals are
audited (audit_denied); the registration secret is compared by hash and never logged or echoed.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from dataclasses import dataclass
from datetime import datetime, timedelta

from machineid.cluster import holders, instances, records
from machineid.cluster.caller import ANONYMOUS, token_ref
from machineid.cluster.holders import Holder
from machineid.cluster.issuance import IssuedCerts, public_key
from machineid.cluster.joins import Joins
from machineid.cluster.objects import check_name
from machineid.cluster.records import LastKeypairJoin, LastRenewal
from machineid.model import codec, keys
from machineid.model import validators as v
from machineid.model.errors import (
    FieldViolation,
    MachineIDError,
    NotFoundError,
    PermissionDeniedError,
    ValidationError,
)
from machineid.model.grants import MAX_RENEWABLE_TTL
from machineid.model.resources import ProvisionToken

STATE_PREFIX = "v1."
MAX_STATE = 4096
MAX_PREVIOUS_KEYS = 8  # keys a token was bound to before, remembered so that a join signed by one locks the bot


@dataclass
class KeypairJoin:
    token: str
    challenge: str
    public_key: str  # to certify, PEM
    ttl: timedelta | None = None
    signature: bytes = b""
    join_state: str = ""
    new_public_key: str = ""
    new_key_signature: bytes = b""
    registration_secret: str = ""


@dataclass
class KeypairJoined:
    bot_name: str  # the bot joined, or "" for a node
    certs: IssuedCerts
    join_state: str
    bound_public_key: str
    node_name: str = ""  # the node joined (a Node token)


@dataclass(frozen=True)
class Lock:
    """Why a join locks the bot instead of joining: two machines hold its key pair."""

    reason: str
    presented: int  # the join state's sequence the join presented
    expected: int  # the token's
    key: str = ""  # the fingerprint of the key it signed with, when that key was bound before


@dataclass
class Outcome:
    """What a join that proved its key did (or, with `lock`, why it locks the bot)."""

    signer: str = ""  # the key that signed it
    new_key: str = ""  # the key it bound (registration or rotation)
    retry: bool = False  # the last join again, its answer lost
    registered: bool = False
    rotated: bool = False
    rotation_ignored: bool = False  # it sent a new key when no rotation was due
    recovery: bool = False
    previous: list[str] | None = None  # the keys bound before, when this join moved the token to a new one
    lock: Lock | None = None


def rotation_due(token: ProvisionToken, now: datetime) -> bool:
    """rotate_after has passed and no rotation has honoured it yet."""
    after = token.spec.bound_keypair.rotate_after
    last = token.status.last_rotated_at
    return after is not None and after <= now and (last is None or last < after)


def _purpose(token_name: str) -> str:
    # The name could be a token-method token's secret sent here by mistake: challenges keep only a hash of it.
    return "bound_keypair:" + hashlib.sha256(token_name.encode()).hexdigest()[:32]


class KeypairJoins:
    def __init__(self, joins: Joins) -> None:
        self.joins = joins
        self.objects = joins.objects
        self.issuer = joins.issuer

    # ------------------------------------------------------------------ challenges
    def create_challenge(self, token_name: str) -> tuple[str, bool]:
        """A challenge for this token, and whether its agent should rotate. The same answer for a name that is
        no bound_keypair token (no existence oracle for secret token names)."""
        check_name(token_name)
        rotate = False
        try:
            token = self.objects.get(ProvisionToken, token_name)
            rotate = token.spec.join_method == "bound_keypair" and rotation_due(token, self.objects.clock())
        except NotFoundError:
            pass
        return self.joins.create_challenge(_purpose(token_name)), rotate

    # ------------------------------------------------------------------ join-state documents
    def _state(self, token: ProvisionToken, seq: int) -> str:
        payload = json.dumps({"token": token.metadata.name, "created": _created(token), "seq": seq},
                             sort_keys=True, separators=(",", ":")).encode()
        sig = self.issuer.authority.sign_document(payload)
        return STATE_PREFIX + _b64(payload) + "." + _b64(sig)

    def _presented_seq(self, text: str, token: ProvisionToken) -> int:
        """The sequence number of the presented document: 0 when there is none, or it belongs to an earlier token
        of the same name (deleted and created again: a new onboarding)."""
        if not text:
            return 0
        try:
            if len(text) > MAX_STATE or not text.startswith(STATE_PREFIX):
                raise ValueError
            body, sig = text[len(STATE_PREFIX):].split(".")
            payload = _unb64(body)
            if not self.issuer.authority.verify_document(payload, _unb64(sig)):
                raise ValueError
            doc = json.loads(payload)
            seq = int(doc["seq"])
        except (ValueError, KeyError, TypeError):
            raise PermissionDeniedError("the join state is not one this cluster issued; present the join_state "
                                        "file the agent keeps in its data dir") from None
        if doc.get("token") != token.metadata.name:
            raise PermissionDeniedError("the join state belongs to another token")
        return seq if doc.get("created") == _created(token) else 0

    # ------------------------------------------------------------------ the join
    def join(self, req: KeypairJoin) -> KeypairJoined:
        check_name(req.token)
        # Name the token in the audit log only if it really is a bound_keypair token (otherwise it may be a secret).
        try:
            known = self.objects.get(ProvisionToken, req.token).spec.join_method == "bound_keypair"
        except NotFoundError:
            known = False
        ref = f"token/{token_ref(req.token, 'bound_keypair' if known else 'token')}"
        try:
            return self._join(req, ref)
        except MachineIDError as e:
            self.joins.audit_refused(ref, req.token if known else "", "bound_keypair", e)
            raise

    def _join(self, req: KeypairJoin, ref: str) -> KeypairJoined:
        key = public_key(req.public_key)  # before anything is consumed
        if req.new_public_key:
            try:
                keys.parse_ssh_public_key(req.new_public_key)
            except ValueError as e:
                raise ValidationError([FieldViolation(("new_public_key",), str(e))]) from None
        challenges = self.joins.challenges
        challenge_expires = challenges.expires(req.challenge, _purpose(req.token))
        challenges.check_unspent(req.challenge)
        objects, joins = self.objects, self.joins
        msg = keys.join_message(req.token, req.challenge, req.public_key)
        now = objects.clock()
        with objects.backend.transaction():
            try:
                token = objects.get(ProvisionToken, req.token)
            except NotFoundError:
                raise PermissionDeniedError("no bound_keypair token has that name") from None
            if token.spec.join_method != "bound_keypair":
                raise PermissionDeniedError("that token is not a bound_keypair token")
            joins._check_unexpired(token, "bound_keypair token")
            holder = holders.of_token(objects, token)
            presented = self._presented_seq(req.join_state, token)
            last = self._last_join(token)
            if last is not None and self._is_retry(req, token, holder, last, presented, msg):
                done = Outcome(signer=last.signer, new_key=last.new_key, retry=True)
            else:
                done = self._apply(req, token, holder, presented, msg, now, last.previous if last else [])
            # The join has proved the key (or the secret): from here on it may write, and spends its challenge.
            challenges.spend(req.challenge, challenge_expires)
            rejoin = holder.status.generation > 0
            if done.lock is not None:
                holder.lock(done.lock.reason)
                holder.save(objects)
            else:
                if not done.retry:
                    token.status.join_sequence += 1
                    token = objects.update(token)
                    joins.start_instance(holder, now, token.metadata.name)
                    holder.save(objects)
                    if holder.kind == "bot":
                        instances.joined(objects, holder.name, "bound_keypair", token.metadata.name,
                                         instance_id=holder.status.instance_id)
                ident, traits = holder.identity(self.issuer, renewable=True)
                grant = self.issuer.grant(ident, req.ttl, MAX_RENEWABLE_TTL)
                holder.put_last_renewal(objects, LastRenewal(1, "", holder.status.instance_id, grant.not_after))
                previous = done.previous if done.previous is not None else (last.previous if last else [])
                records.put(objects, token.metadata.name, LastKeypairJoin(
                    created=_created(token), seq=token.status.join_sequence, certify=keys.pem_digest(req.public_key),
                    instance=holder.status.instance_id, signer=done.signer, new_key=done.new_key, previous=previous))
        name, kind = holder.name, holder.kind
        if done.lock is not None:
            lock = done.lock
            objects.audit(ANONYMOUS, f"{kind}.lock", holder.target, "denied", token=token.metadata.name,
                          presented=lock.presented, expected=lock.expected, **({"key": lock.key} if lock.key else {}))
            raise PermissionDeniedError(f'{kind} "{name}" is now locked: {lock.reason}. Two machines hold its key '
                                        f"pair; unlock with `machineid ctl {kind}s unlock {name}` once the copy is "
                                        "gone (and consider rotating the key: rotate_after)")
        out = holder.issue(self.issuer, key, ident, traits, grant)
        st = token.status
        joins.audit_joined(holder, ref, method="bound_keypair", generation=1,
                           instance_id=holder.status.instance_id, rejoin=rejoin or done.retry, retry=done.retry,
                           recovery=done.recovery, recovery_count=st.recovery_count, registered=done.registered,
                           rotated=done.rotated, rotation_ignored=done.rotation_ignored,
                           join_sequence=st.join_sequence, key=keys.fingerprint(st.bound_public_key))
        joins._audit_issued(holder, ident, out, generation=1)
        state = self._state(token, st.join_sequence)
        if kind == "node":
            return KeypairJoined("", out, state, st.bound_public_key, node_name=name)
        return KeypairJoined(name, out, state, st.bound_public_key)

    def _apply(self, req: KeypairJoin, token: ProvisionToken, holder: Holder, presented: int, msg: bytes,
               now: datetime, previous: list[str]) -> Outcome:
        """The checks and changes of a join that is not a retry (in the caller's transaction): what happened, or
        a Lock for a stale join state or a join signed by a key bound before (`previous`: the keys this token was
        bound to, newest first)."""
        bk, st = token.spec.bound_keypair, token.status
        done = Outcome()
        first = st.join_sequence == 0
        if not st.bound_public_key:
            onboarding = bk.onboarding
            if onboarding.initial_public_key:
                if not keys.verify(onboarding.initial_public_key, req.signature, msg):
                    raise PermissionDeniedError(
                        f"the signature does not match the token's initial_public_key "
                        f"({keys.fingerprint(onboarding.initial_public_key)}); sign with the key `machineid bot "
                        "keypair create` made for it")
                st.bound_public_key = keys.normalized(onboarding.initial_public_key)
            else:
                before = onboarding.must_register_before
                if before is not None and now >= before:
                    raise PermissionDeniedError(f"the registration secret could be used until "
                                                f"{codec.format_time(before)}; set a new one on the token")
                if not req.registration_secret:
                    raise PermissionDeniedError("this token registers a new key with its registration secret: pass "
                                                "--registration-secret")
                if not hmac.compare_digest(v.secret_hash(req.registration_secret), onboarding.registration_secret):
                    raise PermissionDeniedError("the registration secret is not the token's")
                if not req.new_public_key or not keys.verify(req.new_public_key, req.new_key_signature, msg):
                    raise PermissionDeniedError("registering needs the new public key and its signature")
                st.bound_public_key = keys.normalized(req.new_public_key)
                done.registered, done.new_key = True, st.bound_public_key
            done.signer = st.bound_public_key
        else:
            if not req.signature and req.registration_secret:
                raise PermissionDeniedError(f"the registration secret was already used: the token is bound to key "
                                            f"{keys.fingerprint(st.bound_public_key)}; join with that key")
            if not keys.verify(st.bound_public_key, req.signature, msg):
                old = next((k for k in previous if keys.verify(k, req.signature, msg)), "")
                if old:
                    # Only a copy holds a key the token moved away from: whoever rotated it in was the other copy
                    # (or this is the copy). Either way two machines hold the bot's key pair.
                    done.lock = Lock(f"a join was signed with key {keys.fingerprint(old)}, which the token was bound "
                                     f"to before it moved to {keys.fingerprint(st.bound_public_key)} (the key pair "
                                     "was used from two places)", presented, st.join_sequence, keys.fingerprint(old))
                    return done
                raise PermissionDeniedError(f"the signature does not match the token's bound key "
                                            f"{keys.fingerprint(st.bound_public_key)}")
            done.signer = st.bound_public_key
            if bk.recovery.mode != "insecure":
                if presented < st.join_sequence:
                    if presented == 0:
                        raise PermissionDeniedError("the join state is missing: joins after the first present the "
                                                    "join_state file the agent keeps in its data dir")
                    done.lock = Lock(f"stale join state: presented sequence {presented}, the cluster's is "
                                     f"{st.join_sequence} (the key pair was used from two places)", presented,
                                     st.join_sequence)
                    return done
                if presented > st.join_sequence:
                    raise PermissionDeniedError("the join state is newer than the cluster's (was the cluster "
                                                "restored from a backup?); onboard it again with a new token")
        if not first and self._recovering(holder, now):
            done.recovery = True
            if bk.recovery.mode == "standard":
                if st.recovery_count >= bk.recovery.limit:
                    raise PermissionDeniedError(
                        f"recovery limit reached: the {holder.kind} joined again after its certificates expired "
                        f"{st.recovery_count} times (recovery.limit {bk.recovery.limit}); raise "
                        f'recovery.limit on token "{token.metadata.name}" to let it join')
                st.recovery_count += 1
        if req.new_public_key and not done.registered:
            if not rotation_due(token, now):
                # A new key is bound only when the token asks for one: otherwise whoever copied the key pair and
                # its join state could bind a key of its own and shut the real agent out without a lock. The join
                # goes on with the bound key; the answer names it, so the agent keeps the key it has.
                done.rotation_ignored = True
                return done
            if not keys.verify(req.new_public_key, req.new_key_signature, msg):
                raise PermissionDeniedError("the new key's signature does not verify; sign the challenge with it too")
            new = keys.normalized(req.new_public_key)
            if new != st.bound_public_key:
                done.previous = [st.bound_public_key, *[k for k in previous if k != new]][:MAX_PREVIOUS_KEYS]
                st.bound_public_key = new
                st.last_rotated_at = now
                done.rotated, done.new_key = True, new
        return done

    def _recovering(self, holder: Holder, now: datetime) -> bool:
        """No valid renewable certificate: the last one issued to the current instance has expired."""
        last = holder.last_renewal(self.objects)
        return not (last is not None and last.instance == holder.status.instance_id and last.expires is not None
                    and last.expires > now)

    def _last_join(self, token: ProvisionToken) -> LastKeypairJoin | None:
        """The token's last join, unless it was made for an earlier token of the same name."""
        last = records.get(self.objects, LastKeypairJoin, token.metadata.name)
        return last if last is not None and last.created == _created(token) else None

    @staticmethod
    def _is_retry(req: KeypairJoin, token: ProvisionToken, holder: Holder, last: LastKeypairJoin, presented: int,
                  msg: bytes) -> bool:
        """The last join again, its answer lost: same key to certify, signed by the key that signed it, presenting
        the document that join presented, and the identity it issued unused (never renewed). A copy replaying it
        gets certificates for a key it does not hold."""
        st = token.status
        if last.seq != st.join_sequence or last.certify != keys.pem_digest(req.public_key):
            return False
        if holder.status.instance_id != last.instance or holder.status.generation != 1:
            return False
        if token.spec.bound_keypair.recovery.mode != "insecure" and presented != st.join_sequence - 1:
            return False
        if not keys.verify(last.signer, req.signature or req.new_key_signature, msg):
            return False
        if last.new_key:
            try:
                return keys.normalized(req.new_public_key) == last.new_key
            except ValueError:
                return False
        return True


def _created(token: ProvisionToken) -> str:
    return codec.format_time(token.metadata.created) if token.metadata.created else ""


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
