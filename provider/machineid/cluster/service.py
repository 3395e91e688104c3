"""The cluster's logic, free of gRPC, behind one facade the servicers call.

Order on every write (Teleport's): validate the input (the model's rules, so a client and the server never
disagree), then authorize, then write in one transaction, then audit. Secrets (join tokens) never reach the audit
log or the logs: tokens of the `token` join method are referred to by a hash prefix. Each job lives in its own
module: access (who may do what), objects (typed storage and audit), kinds and bots (per-kind rules), issuance
(certificates), joins and renewal.
"""

from __future__ import annotations

import contextlib
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from machineid.api import certs
from machineid.api.iam import SignedRequest
from machineid.cluster import iam, instances
from machineid.cluster.access import Access, default_roles
from machineid.cluster.authority import Authority
from machineid.cluster.bots import Bots
from machineid.cluster.caller import ANONYMOUS, Caller, token_ref
from machineid.cluster.challenges import Challenges, derive_key
from machineid.cluster.delegated_joins import DelegatedJoins
from machineid.cluster.issuance import IssuedCerts, Issuer, public_key
from machineid.cluster.joins import Joins
from machineid.cluster.keypairs import KeypairJoin, KeypairJoined, KeypairJoins
from machineid.cluster.kinds import Kinds, Page
from machineid.cluster.node_sync import NodeSync, SyncAnswer, SyncRequest
from machineid.cluster.objects import Objects, R, check_name
from machineid.cluster.oidc.keysets import KeySets
from machineid.cluster.renewal import Renewals
from machineid.cluster.sealing import KeySource
from machineid.cluster.store.base import ALL_EVENTS, AuditFilter, Backend
from machineid.model import kinds
from machineid.model import validators as v
from machineid.model.errors import (
    FieldViolation,
    MachineIDError,
    NotFoundError,
    PermissionDeniedError,
    ValidationError,
)
from machineid.model.instances import BotInstance, Heartbeat
from machineid.model.resources import Bot, Metadata, Node, ProvisionToken, User, UserSpec
from machineid.model.validators import shown

ADMIN_USER = "admin"
_ACTION = re.compile(r"[a-z][a-z_]{0,31}(\.[a-z][a-z_]{0,31})?")


@dataclass(frozen=True)
class CycleRequest:
    """An agent cycle (Cluster.agent_cycle): the renewal's key and lifetime, the output certificates' (no
    output_public_key: none), and whether to list the nodes (at most node_page_size, 0 for the default)."""

    public_key: str
    ttl: timedelta | None = None
    output_public_key: str = ""
    output_ttl: timedelta | None = None
    list_nodes: bool = False
    node_page_size: int = 0
    heartbeat: Heartbeat | None = None  # recorded on the bot's instance


@dataclass
class CycleAnswer:
    certs: IssuedCerts
    output: IssuedCerts | None = None
    nodes: list[Node] = field(default_factory=list)
    next_page_token: str = ""
    nodes_error: str = ""  # the listing failed: the renewal and the output certificates stand

__all__ = ["ADMIN_USER", "ANONYMOUS", "Caller", "Cluster", "Page", "token_ref"]


class Cluster:
    def __init__(self, backend: Backend, cluster_name: str, ca_key: KeySource, *,
                 clock: Callable[[], datetime] | None = None, iam_verifier: iam.Verifier | None = None) -> None:
        self.backend = backend
        self.cluster_name = cluster_name
        self.clock = clock or (lambda: datetime.now(UTC))
        self._serial = threading.Lock() if getattr(backend, "local", False) else None
        self.objects = Objects(backend, lambda: self.clock())
        self.access = Access(self.objects)
        self.kinds = Kinds(self.objects, self.access)
        self.bots = Bots(self.objects, self.access)
        self.authority = Authority.load_or_create(backend, cluster_name, ca_key)
        self.issuer = Issuer(self.objects, self.access, self.authority, cluster_name)
        self.challenges = Challenges(self.objects, derive_key(self.authority.tls_key))
        self.joins = Joins(self.objects, self.issuer, iam_verifier or iam.Verifier(), self.challenges)
        self.keypairs = KeypairJoins(self.joins)
        self.delegated = DelegatedJoins(self.joins, KeySets(), cluster_name)
        self.renewals = Renewals(self.objects, self.issuer)
        self.node_sync = NodeSync(self.objects, self.issuer, cluster_name)
        # Each kind's own rules where it has them (kind name -> the call); the generic one otherwise.
        self._upserts: dict[str, Callable[..., Any]] = {"token": self.kinds.upsert_token,
                                                         "user": self.kinds.upsert_user,
                                                         "node": self.kinds.upsert_node,
                                                         "lock": self.kinds.upsert_lock}
        self._gets: dict[str, Callable[..., Any]] = {
            "node": lambda caller, cls, name: self.kinds.get_node(caller, name)}
        self._lists: dict[str, Callable[..., Any]] = {
            "node": lambda caller, cls, page: self.kinds.list_nodes(caller, page)}
        self._deletes: dict[str, Callable[[Caller, str, str], None]] = {
            "role": self.kinds.delete_role, "token": self.kinds.delete_token, "user": self.kinds.delete_user,
            "bot": self.bots.delete, "node": self.kinds.delete_node, "lock": self.kinds.delete_lock}
        self._bootstrap()

    def serial(self) -> contextlib.AbstractContextManager[object]:
        """Held by request handlers that only compute and use a local backend (see Backend.local); never around
        a call that waits on the network (the STS call of an IAM join)."""
        return self._serial if self._serial is not None else contextlib.nullcontext()

    def _bootstrap(self) -> None:
        with self.backend.transaction():
            for role in default_roles():
                if not self.objects.exists("role", role.metadata.name):
                    self.objects.create(role)
            if not self.objects.exists("user", ADMIN_USER):
                self.objects.create(User(metadata=Metadata(name=ADMIN_USER, description="Local administrator."),
                                         spec=UserSpec(roles=["editor", "access"])))

    # ------------------------------------------------------------------ access
    def caller_from_cert(self, ident: certs.CertIdentity) -> Caller:
        return self.access.caller_from_cert(ident)

    def check_access(self, caller: Caller, resource: str, verb: str) -> None:
        self.access.check(caller, resource, verb)

    # ------------------------------------------------------------------ every kind
    def upsert(self, caller: Caller, obj: R, create_only: bool = False) -> R:
        """Create or update any kind the generic Upsert RPC writes (a bot is created and updated with its user
        and role: create_bot, update_bot)."""
        if not kinds.BY_NAME[obj.kind].generic_upsert:
            raise ValidationError(f"a {obj.kind} is not written this way; use its own create and update calls")
        write = self._upserts.get(obj.kind, self.kinds.upsert)
        result: R = write(caller, obj, create_only)
        return result

    def get(self, caller: Caller, cls: type[R], name: str) -> R:
        read = self._gets.get(cls.kind, self.kinds.read)
        result: R = read(caller, cls, name)
        return result

    def list_page(self, caller: Caller, cls: type[R], page: Page) -> tuple[list[R], str]:
        """One page (see Page). The servicer calls this without the serial lock: it is held only while reading,
        not while the page is converted for the wire."""
        with self.serial():
            listing = self._lists.get(cls.kind, self.kinds.list_page)
            result: tuple[list[R], str] = listing(caller, cls, page)
            return result

    def delete(self, caller: Caller, cls: type[R], name: str, revision: str = "") -> None:
        remove = self._deletes.get(cls.kind)
        if remove is not None:
            remove(caller, name, revision)
        else:
            self.kinds.delete(caller, cls.kind, name, revision)

    # ------------------------------------------------------------------ bots
    def create_bot(self, caller: Caller, bot: Bot, token_name: str = "",
                   token_ttl: timedelta | None = None) -> tuple[Bot, ProvisionToken]:
        return self.bots.create(caller, bot, token_name, token_ttl)

    def update_bot(self, caller: Caller, bot: Bot) -> Bot:
        return self.bots.update(caller, bot)

    def unlock_bot(self, caller: Caller, name: str) -> Bot:
        return self.bots.unlock(caller, name)

    # ------------------------------------------------------------------ nodes
    def unlock_node(self, caller: Caller, name: str) -> Node:
        return self.kinds.unlock_node(caller, name)

    def sync_node(self, caller: Caller, request: SyncRequest) -> SyncAnswer:
        """A node's heartbeat and refresh (node_sync.py); only a node's own identity may."""
        return self.node_sync.sync(caller, request)

    # ------------------------------------------------------------------ joins, renewals, certificates
    def register_using_token(self, token_name: str, public_key_pem: str,
                             ttl: timedelta | None) -> tuple[str, IssuedCerts]:
        return self.joins.register_using_token(token_name, public_key_pem, ttl)

    def create_iam_challenge(self) -> str:
        return self.joins.create_challenge()

    def register_using_iam(self, token_name: str, challenge: str, request: SignedRequest, public_key_pem: str,
                           ttl: timedelta | None) -> tuple[str, IssuedCerts]:
        return self.joins.register_using_iam(token_name, challenge, request, public_key_pem, ttl)

    def register_using_oidc(self, token_name: str, id_token: str, public_key_pem: str, ttl: timedelta | None,
                            source: str = "") -> tuple[str, IssuedCerts]:
        """A delegated join (github, gitlab, kubernetes, oidc); `source` is the client's address."""
        return self.delegated.join(token_name, id_token, public_key_pem, ttl, source)

    def create_bound_keypair_challenge(self, token_name: str) -> tuple[str, bool]:
        return self.keypairs.create_challenge(token_name)

    def register_using_bound_keypair(self, request: KeypairJoin) -> KeypairJoined:
        return self.keypairs.join(request)

    def renew(self, caller: Caller, public_key_pem: str, ttl: timedelta | None,
              heartbeat: Heartbeat | None = None) -> IssuedCerts:
        return self.renewals.renew(caller, public_key_pem, ttl, heartbeat)

    # ------------------------------------------------------------------ bot instances
    def list_bot_instances(self, caller: Caller, bot_name: str, page: Page) -> tuple[list[BotInstance], str]:
        """One bot's instances (all of them: a bot has few), or a page of every bot's."""
        self.access.check(caller, "bot_instance", "list")
        size = page.checked_size()
        if bot_name:
            check_name(bot_name)
            try:
                current = self.objects.get(Bot, bot_name).status.instance_id
            except NotFoundError:
                current = ""
            return instances.of_bot(self.objects, bot_name, current), ""
        found, after = instances.page(self.objects, page.token, size)
        currents: dict[str, str] = {}
        for inst in found:
            if inst.bot_name not in currents:
                try:
                    currents[inst.bot_name] = self.objects.get_shared(Bot, inst.bot_name).status.instance_id
                except NotFoundError:
                    currents[inst.bot_name] = ""
            inst.current = inst.instance_id == currents[inst.bot_name] and bool(inst.instance_id)
        return found, after

    def get_bot_instance(self, caller: Caller, instance_id: str) -> BotInstance:
        self.access.check(caller, "bot_instance", "read")
        bad = v.INSTANCE_ID.check(instance_id)
        if bad:
            raise ValidationError([FieldViolation(("instance_id",), bad)])
        inst = instances.get(self.objects, instance_id)
        if inst is None:
            raise NotFoundError(f'no bot instance "{instance_id}" (records are kept a retention after they were last '
                                "seen)")
        try:
            inst.current = self.objects.get_shared(Bot, inst.bot_name).status.instance_id == instance_id
        except NotFoundError:
            inst.current = False
        return inst

    def issue_output_certs(self, caller: Caller, public_key_pem: str, ttl: timedelta | None) -> IssuedCerts:
        return self.issuer.output_certs(caller, public_key_pem, ttl)

    def agent_cycle(self, caller: Caller, request: CycleRequest) -> CycleAnswer:
        """A bot agent's cycle in one call: the renewal, then the output certificates and the first page of nodes,
        both as the identity the renewal issued (a copied certificate is caught by the renewal's generation check,
        and nothing else in the call is authorised by the certificate it superseded). Everything the request can
        get wrong is checked before the renewal; a failed node listing after it is reported in the answer (the
        renewal has happened: its certificates must reach the agent)."""
        ident = caller.ident
        if ident is None or not ident.renewable or not ident.bot_name:
            raise PermissionDeniedError("only a bot's renewable identity runs an agent cycle (a node renews with "
                                        "RenewCerts)")
        if request.output_public_key:
            public_key(request.output_public_key, "send a PEM SubjectPublicKeyInfo as output_public_key")
        page = Page(size=request.node_page_size)
        try:
            page.checked_size()
        except ValidationError as e:
            raise ValidationError([FieldViolation(("node_page_size",), v.reason) for v in e.violations]) from None
        renewed, new_ident = self.renewals.renew_identity(caller, request.public_key, request.ttl,
                                                          request.heartbeat)
        output = None
        if request.output_public_key:
            output = self.issuer.renewed_output_certs(caller, new_ident, request.output_public_key,
                                                      request.output_ttl)
        answer = CycleAnswer(renewed, output)
        if request.list_nodes:
            try:
                answer.nodes, answer.next_page_token = self.kinds.list_nodes(self.caller_from_cert(new_ident), page)
            except MachineIDError as e:
                answer.nodes_error = str(e)
        return answer

    def sign_user(self, caller: Caller, user_name: str, public_key_pem: str, ttl: timedelta | None) -> IssuedCerts:
        return self.issuer.sign_user(caller, user_name, public_key_pem, ttl)

    def sign_host(self, caller: Caller, public_key: str, principals: list[str], ttl: timedelta | None) -> str:
        return self.issuer.sign_host(caller, public_key, principals, ttl)

    def export_cas(self, caller: Caller, ca_type: str = "") -> list[dict[str, str]]:
        return self.issuer.export_cas(caller, ca_type)

    def audit_events(self, caller: Caller, after_id: int = 0, limit: int = 1000,
                     where: AuditFilter = ALL_EVENTS) -> list[Any]:
        self.access.check(caller, "event", "list")
        problems = []
        if where.action and not _ACTION.fullmatch(where.action):
            problems.append(FieldViolation(("action",), f'"{shown(where.action)}" is not an action; write one like '
                                           "bot.join, or a family like bot"))
        actor = where.actor.partition(":")[2] if where.actor.startswith(("bot:", "node:")) else where.actor
        if where.actor and v.RESOURCE_NAME.check(actor):
            problems.append(FieldViolation(("actor",), "is not a user, bot or node name (node:NAME for a node)"))
        if problems:
            raise ValidationError(problems)
        with self.serial():
            return self.backend.audit_events(after_id, max(1, min(limit or 1000, 10000)), where)
