"""Delegated joins: a bot presents an ID token its platform issued (GitHub Actions, GitLab CI, a Kubernetes pod,
any OpenID Connect issuer), and the token's block says which issuer, audience and claims may join.

Beyond checking the token (cluster/oidc/verify.py) and its rules, each ID token is accepted once: its jti (or a
hash of what its signature covers when the issuer sets none) is recorded, in the store every server shares, until
it can no longer verify (exp plus the clock leeway), so a token copied out of a CI log cannot be replayed within
its lifetime. Exceptions, by the token's `reuse`: GitLab
hands a job one ID token for all its joins, so by default a gitlab token may join again from the address that first
used it; Kubernetes projected tokens are reused by the kubelet on its own schedule, so there pod binding and the 30
minute cap are the defence; an oidc token may opt out for issuers that hand out long-lived tokens.

Identities are not renewable: the agent joins again at each renewal. What the token proved (repository, ref,
workflow, run; project, pipeline; service account, pod) goes into the audit record and the bot's last join.
"""

from __future__ import annotations

import dataclasses
import hashlib
from datetime import UTC, datetime, timedelta
from typing import Any

from machineid.cluster import holders, instances
from machineid.cluster.caller import ANONYMOUS, token_ref
from machineid.cluster.issuance import IssuedCerts, public_key
from machineid.cluster.joins import Joins
from machineid.cluster.objects import check_name
from machineid.cluster.oidc.keysets import KeySets, Source
from machineid.cluster.oidc.rules import RULES
from machineid.cluster.oidc.verify import LEEWAY, Expected, verify
from machineid.model import codec
from machineid.model import validators as v
from machineid.model.delegated import DELEGATED_METHODS, MAX_KUBERNETES_LIFETIME_SECONDS
from machineid.model.errors import (
    AlreadyExistsError,
    MachineIDError,
    NotFoundError,
    PermissionDeniedError,
)
from machineid.model.grants import MAX_RENEWABLE_TTL
from machineid.model.resources import ProvisionToken

SPENT_KIND = "spent_id_token"  # internal: ID tokens that joined, until they expire


def spent_key(id_token: str, claims: dict[str, Any]) -> str:
    """What identifies a verified ID token: its issuer and jti, or else what its signature covers (header and
    payload). Not the whole string: the signature's encoding can vary (base64 padding, unused bits; ECDSA's s or
    n - s) with the token still verifying, and each variant would pass for a new token."""
    jti = claims.get("jti")
    if isinstance(jti, str) and jti:
        return hashlib.sha256(f"{claims.get('iss', '')}\0{jti}".encode()).hexdigest()
    return hashlib.sha256(id_token.rsplit(".", 1)[0].encode()).hexdigest()


def _reuse(token: ProvisionToken) -> str:
    method = token.spec.join_method
    if method == "github":
        return "none"  # GitHub hands out a fresh token per request
    if method == "kubernetes":
        return "lifetime"  # the kubelet reuses it; pod binding and the 30 minute cap are the defence
    return str(getattr(token.spec, method).reuse)


class DelegatedJoins:
    def __init__(self, joins: Joins, keysets: KeySets, cluster_name: str) -> None:
        self.joins = joins
        self.objects = joins.objects
        self.issuer = joins.issuer
        self.keysets = keysets
        self.cluster_name = cluster_name

    def join(self, token_name: str, id_token: str, public_key_pem: str, ttl: timedelta | None,
             source: str) -> tuple[str, IssuedCerts]:
        check_name(token_name)
        try:
            token: ProvisionToken | None = self.objects.get(ProvisionToken, token_name)
        except NotFoundError:
            token = None
        # The name may be a single-use token's secret sent here by mistake: named in clear only if it is delegated.
        method = token.spec.join_method if token is not None and token.spec.join_method in DELEGATED_METHODS else ""
        ref = f"token/{token_ref(token_name, method or 'token')}"
        try:
            return self._join(token if method else None, id_token, public_key_pem, ttl, source, ref)
        except MachineIDError as e:
            self.objects.audit_denied("bot.join", ref, method=method or "oidc", error=str(e))
            raise

    def _join(self, token: ProvisionToken | None, id_token: str, public_key_pem: str, ttl: timedelta | None,
              source: str, ref: str) -> tuple[str, IssuedCerts]:
        public_key(public_key_pem)
        if token is None:
            raise PermissionDeniedError("no github, gitlab, kubernetes or oidc token has that name")
        method = token.spec.join_method
        self.joins._check_unexpired(token, f"{method} token")
        if "Bot" not in token.spec.roles or not token.spec.bot_name:
            raise PermissionDeniedError("the join token is not a bot token")
        block: Any = getattr(token.spec, method)
        now = self.objects.clock()
        lifetime = timedelta(seconds=MAX_KUBERNETES_LIFETIME_SECONDS) if method == "kubernetes" else \
            v.parse_duration(block.max_lifetime)
        expected = Expected(Source(block.issuer, block.ca_bundle, block.static_jwks),
                            block.audience or self.cluster_name, lifetime, now)
        claims = verify(id_token, expected, self.keysets)
        admitted = RULES[method](block, claims, token.metadata.name)
        reuse = _reuse(token)
        spent = spent_key(id_token, claims)
        if reuse != "lifetime":
            self._check_unspent(spent, reuse, source)
        objects = self.objects
        with objects.backend.transaction():
            if reuse != "lifetime":
                # Kept as long as the token could still verify: past exp by the clock leeway.
                self._spend(spent, reuse, source,
                            datetime.fromtimestamp(float(claims["exp"]) + LEEWAY, UTC) + timedelta(seconds=1))
            holder = holders.bot(objects, token.spec.bot_name)
            holder.check_unlocked()
            holders.check_locks(objects, holder, token)
            holder.status.last_join = now
            holder.status.join_token = token.metadata.name
            holder.status.join_attributes = admitted.attributes
            holder.save(objects)
            ident, traits = holder.identity(self.issuer, renewable=False)
            # An instance of its own (a CI job joins every run): a lock can stop this one alone.
            ident = dataclasses.replace(ident, instance_id=instances.joined(
                objects, holder.name, method, token.metadata.name, renewable=False,
                attributes=admitted.attributes))
        out = self.issuer.issue(public_key_pem, ident, traits, ttl, MAX_RENEWABLE_TTL)
        objects.audit(ANONYMOUS, "bot.join", ref, bot=holder.name, method=method, rule=admitted.rule,
                      claims=admitted.attributes, reuse=reuse)
        self.joins._audit_issued(holder, ident, out, renewable=False)
        return holder.name, out

    def _check_unspent(self, key: str, reuse: str, source: str) -> None:
        """A read before anything costly: a replay is refused early (the transaction decides races)."""
        try:
            item = self.objects.backend.get(SPENT_KIND, key)
        except NotFoundError:
            return
        _refuse_reuse(item.value, reuse, source)

    def _spend(self, key: str, reuse: str, source: str, expires: datetime) -> None:
        try:
            self.objects.backend.create(SPENT_KIND, key, {"expires": codec.format_time(expires), "address": source})
        except AlreadyExistsError:
            _refuse_reuse(self.objects.backend.get(SPENT_KIND, key).value, reuse, source)


def _refuse_reuse(record: dict[str, Any], reuse: str, source: str) -> None:
    if reuse == "same_address" and record.get("address") == source:
        return
    if reuse == "same_address":
        raise PermissionDeniedError("this ID token already joined from another address; it may join again only "
                                    "from the address that first used it (a copy is refused)")
    raise PermissionDeniedError("this ID token was already used to join; each joins once (ask the platform for a "
                                "fresh one)")
