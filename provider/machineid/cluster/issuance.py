"""Certificates: what a set of roles grants (logins, node access, TTL caps) signed into SSH and TLS certificates,
for bots, users and hosts, and the CAs' public halves."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from machineid.api import certs
from machineid.cluster import revocations
from machineid.cluster.access import Access
from machineid.cluster.authority import Authority, new_serial
from machineid.cluster.caller import Caller
from machineid.cluster.objects import Objects
from machineid.model import codec, grants
from machineid.model import validators as v
from machineid.model.errors import FieldViolation, PermissionDeniedError, PreconditionError, ValidationError
from machineid.model.grants import MAX_RENEWABLE_TTL
from machineid.model.node_access import EXTENSION
from machineid.model.resources import Bot, NodeStatus, Role, User, bot_user_name
from machineid.node.layout import PRINCIPAL_PREFIX

DEFAULT_CERT_TTL = timedelta(hours=1)
DEFAULT_HOST_CERT_TTL = timedelta(days=365)
MAX_HOST_CERT_TTL = timedelta(days=3650)


def public_key(text: str, fix: str = "send a PEM SubjectPublicKeyInfo") -> certs.PublicKey:
    """The request's public key, parsed strictly; checked before anything is consumed or written."""
    try:
        return certs.load_public_key(text)
    except ValueError as e:
        raise ValidationError([FieldViolation(("public_key",), f"{e}; {fix}")]) from None


def ttl_for(roles: list[Role], requested: timedelta | None, cap: timedelta | None) -> timedelta:
    ttl = requested or DEFAULT_CERT_TTL
    if ttl <= timedelta(0):
        raise ValidationError([FieldViolation(("ttl",), "must be positive, e.g. 1h")])
    limit = grants.ttl_cap(roles, cap)
    return min(ttl, limit) if limit else ttl


def principals_for(roles: list[Role], traits: dict[str, list[str]]) -> list[str]:
    """`machineid:LOGIN` for each login the roles allow: only a node's principals helper, which checks the roles'
    node_labels, maps it to the login, so a node that merely trusts the user CA (TrustedUserCAKeys without the
    helper) accepts none of these certificates instead of every login they name. An OpenSSH certificate without
    principals is valid for every login: never issue one (the placeholder is no account's name, with or without
    the helper)."""
    return [PRINCIPAL_PREFIX + login for login in grants.logins(roles, traits)] or \
        [f"-machineid-no-login-{uuid.uuid4()}"]


@dataclass(frozen=True)
class IssuedCerts:
    """What a join, a renewal or a signing hands out: SSH and TLS certificates for one key, and the CAs to trust."""

    ssh_cert: str
    tls_cert: str
    tls_ca_certs: list[str]
    ssh_host_ca_keys: list[str]
    ssh_user_ca_keys: list[str]
    expires: datetime
    renewable: bool
    generation: int
    principals: list[str]  # as the SSH certificate carries them: machineid:LOGIN (or the no-login placeholder)
    node_name: str = ""  # a node's identity (a join with a Node token): TLS only, no ssh_cert


@dataclass(frozen=True)
class Grant:
    roles: list[Role]
    not_after: datetime


class Issuer:
    def __init__(self, objects: Objects, access: Access, authority: Authority, cluster_name: str) -> None:
        self.objects = objects
        self.access = access
        self.authority = authority
        self.cluster_name = cluster_name

    def grant(self, ident: certs.CertIdentity, requested: timedelta | None, cap: timedelta | None,
              holder_expires: datetime | None = None) -> Grant:
        """The roles behind an identity and when its certificates issued now expire (looked up once, where a
        renewal records that expiry before it signs). No certificate outlives its holder (`holder_expires`, a
        user's metadata.expires) or a role it carries: what expires stops granting, and a certificate signed
        before would otherwise keep logging in on nodes."""
        roles = self.access.roles(ident.roles)
        not_after = self.objects.clock() + ttl_for(roles, requested, cap)
        ends = [e for e in (holder_expires, *(r.metadata.expires for r in roles)) if e is not None]
        return Grant(roles, min([not_after, *ends]))

    def issue(self, public_key_pem: str, ident: certs.CertIdentity, traits: dict[str, list[str]],
              requested: timedelta | None, cap: timedelta | None, holder_expires: datetime | None = None
              ) -> IssuedCerts:
        key = public_key(public_key_pem)  # before the roles are looked up
        return self.issue_granted(key, ident, traits, self.grant(ident, requested, cap, holder_expires))

    def issue_granted(self, key: certs.PublicKey, ident: certs.CertIdentity, traits: dict[str, list[str]],
                      grant: Grant) -> IssuedCerts:
        roles, not_after = grant.roles, grant.not_after
        start = self.objects.clock() - timedelta(minutes=1)
        principals = principals_for(roles, traits)
        access = grants.node_access(roles, traits).encode()
        a = self.authority
        serial = new_serial()
        # Remembered before it is handed out: a revocation by serial (an unlock, a deletion, a role edit) reaches
        # every SSH certificate the cluster gave out.
        revocations.record_issued(self.objects, ident.user, serial, not_after,
                                  revocations.grants_digest(roles, traits))
        return IssuedCerts(
            ssh_cert=a.sign_ssh_user(key, ident.user, principals, start, not_after, {EXTENSION: access}, serial),
            tls_cert=a.sign_tls_client(key, ident, not_after),
            tls_ca_certs=[a.tls_ca_pem],
            ssh_host_ca_keys=[a.host_ca_line],
            ssh_user_ca_keys=[a.user_ca_line],
            expires=not_after,
            renewable=ident.renewable,
            generation=ident.generation,
            principals=principals,
        )

    def bot_identity(self, bot: Bot, renewable: bool) -> tuple[certs.CertIdentity, dict[str, list[str]]]:
        user = self.objects.get_shared(User, bot_user_name(bot.metadata.name))
        ident = certs.CertIdentity(
            user=user.metadata.name, roles=list(user.spec.roles), traits=user.spec.traits,
            cluster=self.cluster_name, bot_name=bot.metadata.name, renewable=renewable,
            generation=bot.status.generation, instance_id=bot.status.instance_id,
        )
        return ident, user.spec.traits

    def node_identity(self, node_name: str, status: NodeStatus) -> certs.CertIdentity:
        """A node's renewable identity: no roles (role rules allow it nothing); the node RPCs know it by
        node_name."""
        return certs.CertIdentity(user=certs.node_user(node_name), roles=[], cluster=self.cluster_name,
                                  renewable=True, generation=status.generation, instance_id=status.instance_id,
                                  node_name=node_name)

    def issue_node_granted(self, key: certs.PublicKey, ident: certs.CertIdentity, grant: Grant) -> IssuedCerts:
        """A node's identity is a TLS client certificate only: an SSH user certificate would log in nowhere, and
        its host certificate comes from its sync, for its host key."""
        a = self.authority
        return IssuedCerts(ssh_cert="", tls_cert=a.sign_tls_client(key, ident, grant.not_after),
                           tls_ca_certs=[a.tls_ca_pem], ssh_host_ca_keys=[a.host_ca_line],
                           ssh_user_ca_keys=[a.user_ca_line], expires=grant.not_after, renewable=True,
                           generation=ident.generation, principals=[], node_name=ident.node_name)

    def host_cert(self, key: certs.PublicKey, principals: list[str], ttl: timedelta) -> tuple[str, datetime]:
        """An OpenSSH host certificate for these principals (checked by the caller), valid from a minute ago (clock
        skew) for ttl; and when it expires."""
        now = self.objects.clock()
        not_after = now + ttl
        return self.authority.sign_ssh_host(key, principals[0], principals, now - timedelta(minutes=1),
                                            not_after), not_after

    def output_certs(self, caller: Caller, public_key_pem: str, ttl: timedelta | None) -> IssuedCerts:
        """Non-renewable certificates of a bot for its destinations. Only the current generation of its renewable
        identity may ask (caller_from_cert has checked the instance): an output certificate cannot, and neither can
        an older, copied generation."""
        public_key(public_key_pem)
        ident = caller.ident
        if ident is None or not ident.renewable or not ident.bot_name:
            raise PermissionDeniedError("only a bot's renewable identity may issue its output certificates")
        return self._output_certs(caller, ident, public_key_pem, ttl)

    def renewed_output_certs(self, caller: Caller, renewed: certs.CertIdentity, public_key_pem: str,
                             ttl: timedelta | None) -> IssuedCerts:
        """output_certs in an agent cycle: authorised by the renewal that just succeeded in the same call (renewed
        is the identity it issued), not by the certificate that renewal superseded. A renewal of the same bot that
        got in between (a copy) still makes this refuse."""
        public_key(public_key_pem)
        return self._output_certs(caller, renewed, public_key_pem, ttl)

    def _output_certs(self, caller: Caller, ident: certs.CertIdentity, public_key_pem: str,
                      ttl: timedelta | None) -> IssuedCerts:
        bot = self.objects.get(Bot, ident.bot_name)
        if ident.generation != bot.status.generation:
            self.objects.audit(caller, "cert.issue_output", f"bot/{ident.bot_name}", "denied",
                               presented=ident.generation, expected=bot.status.generation)
            raise PermissionDeniedError("this identity is not the bot's current generation; renew first")
        out_ident, traits = self.bot_identity(bot, renewable=False)
        out = self.issue(public_key_pem, replace(out_ident, generation=0), traits, ttl, MAX_RENEWABLE_TTL)
        self.objects.audit(caller, "cert.issue_output", f"bot/{bot.metadata.name}",
                           expires=codec.format_time(out.expires))
        return out

    def sign_user(self, caller: Caller, user_name: str, public_key_pem: str, ttl: timedelta | None) -> IssuedCerts:
        self.access.check(caller, "user_cert", "create")
        user = self.objects.get(User, user_name)
        if user.spec.bot_name:
            raise PreconditionError(f'user "{user_name}" belongs to a bot; bots get certificates by joining')
        if self.objects.expired(user):
            assert user.metadata.expires is not None
            self.objects.audit(caller, "cert.issue", f"user/{user_name}", "denied", error="user expired")
            raise PreconditionError(f'user "{user_name}" expired at {codec.format_time(user.metadata.expires)}: no '
                                    "certificates are issued for it; extend its metadata.expires first")
        ident = certs.CertIdentity(user=user_name, roles=list(user.spec.roles), traits=user.spec.traits,
                                   cluster=self.cluster_name)
        out = self.issue(public_key_pem, ident, user.spec.traits, ttl, None, user.metadata.expires)
        self.objects.audit(caller, "cert.issue", f"user/{user_name}", expires=codec.format_time(out.expires))
        return out

    def sign_host(self, caller: Caller, public_key_text: str, principals: list[str], ttl: timedelta | None) -> str:
        self.access.check(caller, "host_cert", "create")
        if not principals:
            raise ValidationError([FieldViolation(("principals",), "name at least one host name")])
        if len(principals) > v.MAX_HOST_PRINCIPALS:
            raise ValidationError([FieldViolation(("principals",), f"has {len(principals)} entries; a certificate "
                                                                   f"carries at most {v.MAX_HOST_PRINCIPALS}")])
        bad = [FieldViolation(("principals", i), reason) for i, p in enumerate(principals)
               if (reason := v.HOST_PRINCIPAL.check(p))]
        if bad:
            raise ValidationError(bad[:10])
        key = public_key(public_key_text, "send the host's OpenSSH public key")
        if ttl is not None and not timedelta(0) < ttl <= MAX_HOST_CERT_TTL:
            raise ValidationError([FieldViolation(("ttl",), "must be positive and at most 10 years")])
        now = self.objects.clock()
        cert = self.authority.sign_ssh_host(key, principals[0], principals, now - timedelta(minutes=1),
                                            now + (ttl or DEFAULT_HOST_CERT_TTL))
        self.objects.audit(caller, "cert.issue_host", f"host/{principals[0]}", principals=principals)
        return cert

    def export_cas(self, caller: Caller, ca_type: str = "") -> list[dict[str, str]]:
        self.access.check(caller, "cert_authority", "read")
        if ca_type not in ("", "user", "host", "tls"):
            raise ValidationError([FieldViolation(("type",), f'"{ca_type}" is not a CA type; use user, host or tls')])
        a, name = self.authority, self.cluster_name
        cas = [
            {"type": "user", "cluster_name": name, "public_data": a.user_ca_line, "pin": ""},
            {"type": "host", "cluster_name": name, "public_data": a.host_ca_line, "pin": ""},
            {"type": "tls", "cluster_name": name, "public_data": a.tls_ca_pem, "pin": a.pin},
        ]
        return [c for c in cas if not ca_type or c["type"] == ca_type]
