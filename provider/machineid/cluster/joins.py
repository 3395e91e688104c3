"""Joins: a bot proves itself with a single-use token or a signed AWS request and gets its first certificates.

Callers are anonymous, so every refusal is audited and a token of the `token` method (a secret) is only ever
named by its hash prefix."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

from machineid.api.iam import SignedRequest
from machineid.cluster import iam
from machineid.cluster.access import check_unlocked
from machineid.cluster.caller import ANONYMOUS, Caller, token_ref
from machineid.cluster.challenges import Challenges
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
from machineid.model.resources import MAX_SPENT_TOKENS, Bot, ProvisionToken, token_id


class Joins:
    def __init__(self, objects: Objects, issuer: Issuer, verifier: iam.Verifier, challenges: Challenges) -> None:
        self.objects = objects
        self.issuer = issuer
        self.iam = verifier
        self.challenges = challenges

    def _bot_of(self, token: ProvisionToken) -> Bot:
        try:
            bot = self.objects.get(Bot, token.spec.bot_name)
        except NotFoundError:
            raise PermissionDeniedError(f'bot "{token.spec.bot_name}" of this token does not exist') from None
        check_unlocked(bot)
        return bot

    def _check_unexpired(self, token: ProvisionToken, what: str) -> None:
        if self.objects.expired(token):
            assert token.metadata.expires is not None
            raise PermissionDeniedError(f"the {what} expired at {codec.format_time(token.metadata.expires)}; "
                                        "create a new one")

    def _audit_issued(self, ident: Any, out: IssuedCerts, **details: Any) -> None:
        self.objects.audit(Caller(user=ident.user, ident=ident), "cert.issue", f"user/{ident.user}", **details,
                           expires=codec.format_time(out.expires), principals=out.principals)

    # ------------------------------------------------------------------ the token method
    def register_using_token(self, token_name: str, public_key_pem: str,
                             ttl: timedelta | None) -> tuple[str, IssuedCerts]:
        ref = f"token/{token_ref(token_name)}"
        try:
            return self._register_using_token(token_name, public_key_pem, ttl, ref)
        except MachineIDError as e:
            self.objects.audit_denied("bot.join", ref, method="token", error=str(e))
            raise

    def _register_using_token(self, token_name: str, public_key_pem: str, ttl: timedelta | None,
                              ref: str) -> tuple[str, IssuedCerts]:
        if not token_name:
            raise ValidationError([FieldViolation(("token",), "is required; pass the token from "
                                                  "`machineid ctl bots add`")])
        public_key(public_key_pem)  # before anything is consumed
        objects = self.objects
        with objects.backend.transaction():
            try:
                token = objects.get(ProvisionToken, token_name)
            except NotFoundError:
                raise PermissionDeniedError("the join token is not valid: it does not exist or was already used "
                                            "(tokens of the token method join once); create a new one with "
                                            "`machineid ctl tokens add --type=bot --bot-name=NAME`") from None
            if token.spec.join_method != "token":
                raise PermissionDeniedError(f"token uses join method {token.spec.join_method}, not token")
            self._check_unexpired(token, "join token")
            if "Bot" not in token.spec.roles or not token.spec.bot_name:
                raise PermissionDeniedError("the join token is not a bot token")
            bot = self._bot_of(token)
            objects.backend.delete("token", token_name)  # single use
            rejoin = bot.status.generation > 0
            bot.status.generation = 1
            bot.status.instance_id = uuid.uuid4().hex
            bot.status.last_join = objects.clock()
            bot.status.join_token = token_id(token_name, "token")
            bot.status.spent_tokens = [*bot.status.spent_tokens, bot.status.join_token][-MAX_SPENT_TOKENS:]
            bot = objects.update(bot)
            ident, traits = self.issuer.bot_identity(bot, renewable=True)
        # Signing happens after the commit, outside the store's lock, so joins from many machines overlap.
        out = self.issuer.issue(public_key_pem, ident, traits, ttl, MAX_RENEWABLE_TTL)
        objects.audit(ANONYMOUS, "bot.join", ref, bot=bot.metadata.name, method="token", generation=1,
                      instance_id=bot.status.instance_id, rejoin=rejoin)
        self._audit_issued(ident, out, generation=1)
        return bot.metadata.name, out

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
            self.objects.audit_denied("bot.join", ref, method="iam", error=str(e))
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
            bot = self._bot_of(token)
            bot.status.last_join = objects.clock()
            bot.status.join_token = token.metadata.name
            bot = objects.update(bot)
            ident, traits = self.issuer.bot_identity(bot, renewable=False)
            out = self.issuer.issue(public_key_pem, ident, traits, ttl, MAX_RENEWABLE_TTL)
        objects.audit(ANONYMOUS, "bot.join", ref, bot=bot.metadata.name, method="iam", aws_account=who.account,
                      aws_arn=who.arn)
        self._audit_issued(ident, out, renewable=False)
        return bot.metadata.name, out
