"""Joins: a bot or a node proves itself with a single-use token or a signed AWS request and gets its first
certificates (holders.py: what differs between the two).

Callers are anonymous, so every refusal is audited and a token of the `token` method (a secret) is only ever
named by its hash prefix."""

from __future__ import annotations

import dataclasses
import uuid
from datetime import datetime, timedelta
from typing import Any

from machineid.api.iam import SignedRequest
from machineid.cluster import holders, iam, instances
from machineid.cluster.caller import ANONYMOUS, Caller, token_ref
from machineid.cluster.challenges import Challenges
from machineid.cluster.holders import Holder
from machineid.cluster.issuance import IssuedCerts, Issuer, public_key
from machineid.cluster.objects import Objects
from machineid.model import codec
from machineid.model.errors import (
    FieldViolation,
    MachineIDError,
    NotFoundError,
    PermissionDeniedError,
    ValidationError,
)
from machineid.model.grants import MAX_RENEWABLE_TTL
from machineid.model.resources import MAX_SPENT_TOKENS, ProvisionToken, token_id


class Joins:
    def __init__(self, objects: Objects, issuer: Issuer, verifier: iam.Verifier, challenges: Challenges) -> None:
        self.objects = objects
        self.issuer = issuer
        self.iam = verifier
        self.challenges = challenges

    def _check_unexpired(self, token: ProvisionToken, what: str) -> None:
        if self.objects.expired(token):
            assert token.metadata.expires is not None
            raise PermissionDeniedError(f"the {what} expired at {codec.format_time(token.metadata.expires)}; "
                                        "create a new one")

    def _audit_issued(self, holder: Holder, ident: Any, out: IssuedCerts, **details: Any) -> None:
        target = f"user/{ident.user}" if holder.kind == "bot" else holder.target
        self.objects.audit(Caller(user=ident.user, ident=ident), "cert.issue", target, **details,
                           expires=codec.format_time(out.expires), principals=out.principals)

    def audit_joined(self, holder: Holder, ref: str, **details: Any) -> None:
        """A join's record: bot.join or node.join, naming the bot or node it joined."""
        self.objects.audit(ANONYMOUS, f"{holder.kind}.join", ref, **{holder.kind: holder.name}, **details)

    def audit_refused(self, ref: str, token_name: str, method: str, err: MachineIDError) -> None:
        """A refused join, as node.join when the token named is a Node token (otherwise bot.join: a refusal must
        not tell an anonymous caller what a name it guessed is)."""
        try:
            node = "Node" in self.objects.get(ProvisionToken, token_name).spec.roles if token_name else False
        except MachineIDError:
            node = False
        self.objects.audit_denied("node.join" if node else "bot.join", ref, method=method, error=str(err))

    @staticmethod
    def start_instance(holder: Holder, now: datetime, join_token: str, *, spent: bool = False) -> None:
        """A join that succeeds starts a new renewable identity at generation 1 (any earlier one is superseded);
        a single-use token it spent is remembered so that it is never created again."""
        st = holder.status
        st.generation = 1
        st.instance_id = uuid.uuid4().hex
        st.last_join = now
        st.join_token = join_token
        if spent:
            st.spent_tokens = [*st.spent_tokens, join_token][-MAX_SPENT_TOKENS:]

    # ------------------------------------------------------------------ the token method
    def register_using_token(self, token_name: str, public_key_pem: str,
                             ttl: timedelta | None) -> tuple[str, IssuedCerts]:
        """Joins the token's bot or node; returns its name and the certificates (a node's name them, node_name)."""
        ref = f"token/{token_ref(token_name)}"
        try:
            return self._register_using_token(token_name, public_key_pem, ttl, ref)
        except MachineIDError as e:
            self.audit_refused(ref, token_name, "token", e)
            raise

    def _register_using_token(self, token_name: str, public_key_pem: str, ttl: timedelta | None,
                              ref: str) -> tuple[str, IssuedCerts]:
        if not token_name:
            raise ValidationError([FieldViolation(("token",), "is required; pass the token from "
                                                  "`machineid ctl bots add`")])
        key = public_key(public_key_pem)  # before anything is consumed
        objects = self.objects
        with objects.backend.transaction():
            try:
                token = objects.get(ProvisionToken, token_name)
            except NotFoundError:
                raise PermissionDeniedError("the join token is not valid: it does not exist or was already used "
                                            "(tokens of the token method join once); create a new one with "
                                            "`machineid ctl tokens add --type=bot --bot-name=NAME` (or --type=node "
                                            "--node-name=NAME)") from None
            if token.spec.join_method != "token":
                raise PermissionDeniedError(f"token uses join method {token.spec.join_method}, not token")
            self._check_unexpired(token, "join token")
            holder = holders.of_token(objects, token)
            objects.backend.delete("token", token_name)  # single use
            rejoin = holder.status.generation > 0
            self.start_instance(holder, objects.clock(), token_id(token_name, "token"), spent=True)
            holder.save(objects)
            if holder.kind == "bot":
                instances.joined(objects, holder.name, "token", token_id(token_name, "token"),
                                 instance_id=holder.status.instance_id)
            ident, traits = holder.identity(self.issuer, renewable=True)
        # Signing happens after the commit, outside the store's lock, so joins from many machines overlap.
        out = holder.issue(self.issuer, key, ident, traits, self.issuer.grant(ident, ttl, MAX_RENEWABLE_TTL))
        self.audit_joined(holder, ref, method="token", generation=1, instance_id=holder.status.instance_id,
                          rejoin=rejoin)
        self._audit_issued(holder, ident, out, generation=1)
        return holder.name, out

    # ------------------------------------------------------------------ the IAM method
    def create_challenge(self, purpose: str = "") -> str:
        """Writes nothing (see challenges.py): an anonymous caller cannot fill a table or a cap with these."""
        return self.challenges.issue(purpose)

    def register_using_iam(self, token_name: str, challenge: str, request: SignedRequest, public_key_pem: str,
                           ttl: timedelta | None) -> tuple[str, IssuedCerts]:
        # The name is a secret unless it really is an iam token's: look before naming it anywhere.
        try:
            token: ProvisionToken | None = self.objects.get(ProvisionToken, token_name)
        except NotFoundError:
            token = None
        known_iam = token is not None and token.spec.join_method == "iam"
        ref = f"token/{token_ref(token_name, 'iam' if known_iam else 'token')}"
        try:
            return self._register_using_iam(token, challenge, request, public_key_pem, ttl, ref)
        except MachineIDError as e:
            self.audit_refused(ref, token_name if known_iam else "", "iam", e)
            raise

    def _register_using_iam(self, token: ProvisionToken | None, challenge: str, request: SignedRequest,
                            public_key_pem: str, ttl: timedelta | None, ref: str) -> tuple[str, IssuedCerts]:
        public_key(public_key_pem)
        challenge_expires = self.challenges.expires(challenge)
        self.challenges.check_unspent(challenge)
        if token is None:
            raise PermissionDeniedError("no iam token has that name")
        if token.spec.join_method != "iam":
            raise PermissionDeniedError("that token is not an iam token")
        self._check_unexpired(token, "IAM token")
        self.iam.check_request(request, challenge)
        who = self.iam.call_sts(request)
        if not any(iam.matches(rule, who) for rule in token.spec.allow):
            raise PermissionDeniedError(f"AWS identity {who.arn} (account {who.account}) matches no allow rule of "
                                        f'token "{token.metadata.name}"')
        objects = self.objects
        with objects.backend.transaction():
            self.challenges.spend(challenge, challenge_expires)  # only a join that proved who it is writes a row
            holder = holders.of_token(objects, token)
            if isinstance(holder, holders.NodeHolder):
                # A node keeps a renewable identity (it renews and syncs through it); an IAM join starts a new one,
                # as any join does, superseding the last.
                rejoin = holder.status.generation > 0
                self.start_instance(holder, objects.clock(), token.metadata.name)
                holder.save(objects)
                ident, traits = holder.identity(self.issuer, renewable=True)
                out = holder.issue(self.issuer, public_key(public_key_pem), ident, traits,
                                   self.issuer.grant(ident, ttl, MAX_RENEWABLE_TTL))
                details: dict[str, Any] = {"generation": 1, "instance_id": holder.status.instance_id,
                                           "rejoin": rejoin}
            else:
                holder.status.last_join = objects.clock()
                holder.status.join_token = token.metadata.name
                holder.save(objects)
                ident, traits = holder.identity(self.issuer, renewable=False)
                # An instance of its own (a machine joins at every cycle): a lock can stop this one alone.
                ident = dataclasses.replace(ident, instance_id=instances.joined(
                    objects, holder.name, "iam", token.metadata.name, renewable=False,
                    attributes={"aws_account": who.account, "aws_arn": who.arn}))
                out = self.issuer.issue(public_key_pem, ident, traits, ttl, MAX_RENEWABLE_TTL)
                details = {}
        self.audit_joined(holder, ref, method="iam", aws_account=who.account, aws_arn=who.arn, **details)
        self._audit_issued(holder, ident, out, renewable=ident.renewable)
        return holder.name, out
