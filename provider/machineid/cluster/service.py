"""The cluster's logic, free of gRPC: validation, authorization, storage, certificate issuance and audit.

Order on every write (Teleport's): validate the input (the model's rules, so a client and the server never
disagree), then authorize, then write in one transaction, then audit. Secrets (join tokens) never reach the audit
log or the logs: tokens of the `token` join method are referred to by a hash prefix.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import logging
import re
import secrets
import threading
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from machineid.api import certs
from machineid.api.iam import SignedRequest
from machineid.cluster import iam
from machineid.cluster.authority import Authority
from machineid.cluster.store.base import Backend, Item
from machineid.model import codec
from machineid.model import validators as v
from machineid.model.errors import (
    AlreadyExistsError,
    FieldViolation,
    MachineIDError,
    NotFoundError,
    PermissionDeniedError,
    PreconditionError,
    UnauthenticatedError,
    ValidationError,
)
from machineid.model.node_access import EXTENSION, Grant, NodeAccess, labels_match
from machineid.model.resources import (
    DEFAULT_TOKEN_TTL,
    Bot,
    BotStatus,
    Metadata,
    Node,
    ProvisionToken,
    ProvisionTokenSpec,
    Resource,
    Role,
    RoleConditions,
    RoleSpec,
    Rule,
    User,
    UserSpec,
    bot_role_name,
    bot_user_name,
)

log = logging.getLogger("machineid.cluster")
R = TypeVar("R", Role, ProvisionToken, Bot, User, Node)

DEFAULT_CERT_TTL = timedelta(hours=1)
MAX_RENEWABLE_TTL = timedelta(hours=24)
DEFAULT_HOST_CERT_TTL = timedelta(days=365)
MAX_HOST_CERT_TTL = timedelta(days=3650)
ADMIN_USER = "admin"
BOT_LABEL = "machineid/bot"
IAM_CHALLENGE_KIND = "iam_challenge"
IAM_CHALLENGE_TTL = timedelta(minutes=5)
MAX_OUTSTANDING_CHALLENGES = 50_000
RENEWAL_KIND = "bot_last_renewal"  # internal: the last renewal of each bot, so a lost answer can be retried
_TEMPLATE = re.compile(r"\{\{\s*(internal|external)\.([A-Za-z0-9_]+)\s*\}\}")


@dataclass
class Caller:
    """Who is calling, from the verified client certificate; anonymous for ping and join."""

    user: str = ""
    roles: list[str] = field(default_factory=list)
    ident: certs.CertIdentity | None = None

    @property
    def anonymous(self) -> bool:
        return self.ident is None

    @property
    def actor(self) -> str:
        if self.ident is None:
            return "anonymous"
        return f"bot:{self.ident.bot_name}" if self.ident.bot_name else self.user


ANONYMOUS = Caller()


def token_ref(token: ProvisionToken | str, join_method: str = "token") -> str:
    """How audit records and logs name a token: secret names only by a hash prefix."""
    if isinstance(token, ProvisionToken):
        name, join_method = token.metadata.name, token.spec.join_method
    else:
        name = token
    if join_method == "iam":
        return name
    return "sha256:" + hashlib.sha256(name.encode()).hexdigest()[:12]


def default_roles() -> list[Role]:
    def role(name: str, desc: str, allow: RoleConditions) -> Role:
        return Role(metadata=Metadata(name=name, description=desc), spec=RoleSpec(allow=allow))

    return [
        role("access", "Log in to every node as the logins of the user's or bot's `logins` trait.",
             RoleConditions(logins=["{{internal.logins}}"], node_labels={"*": ["*"]},
                            rules=[Rule(resources=["node"], verbs=["list", "read"]),
                                   Rule(resources=["event"], verbs=["list", "read"])])),
        role("editor", "Edit every resource of the cluster.",
             RoleConditions(rules=[Rule(resources=["*"], verbs=["*"])])),
        role("auditor", "Read-only access to the cluster's resources and audit log (not to join tokens).",
             RoleConditions(rules=[Rule(resources=["role", "bot", "user", "node", "cert_authority", "event"],
                                        verbs=["list", "read"])])),
    ]


def _rule_match(rules: list[Rule], resource: str, verb: str) -> bool:
    return any((resource in r.resources or "*" in r.resources) and (verb in r.verbs or "*" in r.verbs)
               for r in rules)


def expand_logins(logins: Iterable[str], traits: dict[str, list[str]]) -> list[str]:
    out: list[str] = []
    for login in logins:
        m = _TEMPLATE.fullmatch(login.strip())
        values = traits.get(m.group(2), []) if m else [login]
        for val in values:
            if val and val not in out and v.LOGIN.check(val) is None:
                out.append(val)
    return out


class Cluster:
    def __init__(self, backend: Backend, cluster_name: str, *, clock: Callable[[], datetime] | None = None,
                 iam_verifier: iam.Verifier | None = None) -> None:
        self.backend = backend
        self._serial = threading.Lock() if getattr(backend, "local", False) else None
        self.iam = iam_verifier or iam.Verifier()
        self._decoded: dict[tuple[str, str], tuple[str, Any]] = {}
        self._challenges_issued = 0
        self.cluster_name = cluster_name
        self.clock = clock or (lambda: datetime.now(UTC))
        self.authority = Authority.load_or_create(backend, cluster_name)
        self._bootstrap()

    def serial(self) -> contextlib.AbstractContextManager[object]:
        """Held by request handlers that only compute and use a local backend (see Backend.local); never around
        a call that waits on the network (the STS call of an IAM join)."""
        return self._serial if self._serial is not None else contextlib.nullcontext()

    # ------------------------------------------------------------------ storage helpers
    def _bootstrap(self) -> None:
        with self.backend.transaction():
            for role in default_roles():
                if not self._exists("role", role.metadata.name):
                    self._store_create(role)
            if not self._exists("user", ADMIN_USER):
                self._store_create(User(metadata=Metadata(name=ADMIN_USER, description="Local administrator."),
                                        spec=UserSpec(roles=["editor", "access"])))

    def _exists(self, kind: str, name: str) -> bool:
        try:
            self.backend.get(kind, name)
            return True
        except NotFoundError:
            return False

    @staticmethod
    def _value(obj: Resource) -> dict[str, Any]:
        data: dict[str, Any] = codec.encode(obj)
        for key in ("revision", "created", "updated"):
            data["metadata"].pop(key, None)
        return data

    @staticmethod
    def _load(cls: type[R], item: Item) -> R:
        obj = codec.decode(cls, item.value)
        obj.metadata.revision = item.revision
        obj.metadata.created = item.created
        obj.metadata.updated = item.updated
        return obj

    def _get(self, cls: type[R], name: str) -> R:
        return self._load(cls, self.backend.get(cls.kind, name))

    def _get_shared(self, cls: type[R], name: str) -> R:
        """Like _get, but decoded once per revision and shared: callers must not modify the result.

        Decoding, not the SQLite read, is what costs on the hot paths (authorization, issuance)."""
        item = self.backend.get(cls.kind, name)
        key = (cls.kind, name)
        cached = self._decoded.get(key)
        if cached is not None and cached[0] == item.revision:
            return cached[1]
        obj = self._load(cls, item)
        self._decoded[key] = (item.revision, obj)
        return obj

    def _list(self, cls: type[R]) -> list[R]:
        return [self._load(cls, item) for item in self.backend.list(cls.kind)]

    def _store_create(self, obj: R) -> R:
        item = self.backend.create(obj.kind, obj.metadata.name, self._value(obj))
        return self._load(type(obj), item)

    def _store_update(self, obj: R, expected_revision: str = "") -> R:
        item = self.backend.update(obj.kind, obj.metadata.name, self._value(obj), expected_revision)
        return self._load(type(obj), item)

    def audit(self, caller: Caller, action: str, target: str, outcome: str = "ok", **details: Any) -> None:
        self.backend.audit(caller.actor, action, target, outcome, details)
        log.info("audit %s %s %s %s", caller.actor, action, target, outcome)

    # ------------------------------------------------------------------ authentication and authorization
    def _expired(self, obj: Resource) -> bool:
        return obj.metadata.expires is not None and obj.metadata.expires <= self.clock()

    def caller_from_cert(self, ident: certs.CertIdentity) -> Caller:
        """Checks that the certificate's user still exists and has not expired (a deleted bot's certificates, or an
        expired user's, stop working)."""
        try:
            user = self._get_shared(User, ident.user)
        except NotFoundError:
            raise UnauthenticatedError(f'user "{ident.user}" of this certificate no longer exists') from None
        if user.metadata.expires is not None and self._expired(user):
            raise UnauthenticatedError(f'user "{ident.user}" expired at {codec.format_time(user.metadata.expires)}'
                                       "; an administrator can extend its metadata.expires")
        if user.spec.bot_name:
            try:
                bot = self._get_shared(Bot, user.spec.bot_name)
            except NotFoundError:
                raise UnauthenticatedError(f'bot "{user.spec.bot_name}" no longer exists') from None
            if bot.status.locked:
                raise PermissionDeniedError(
                    f'bot "{bot.metadata.name}" is locked ({bot.status.lock_reason}); an administrator can run '
                    f"`machineid ctl bots unlock {bot.metadata.name}`"
                )
            if ident.renewable and ident.instance_id != bot.status.instance_id:
                raise PermissionDeniedError("this identity was superseded by a newer join of the bot (or the bot was "
                                            "re-created); it is no longer valid")
        # Roles come from the certificate but never exceed what the user holds now: a re-created bot's old
        # certificates (or a user's, after a role was taken away) do not bring old roles back.
        roles = [r for r in ident.roles if r in user.spec.roles]
        return Caller(user=ident.user, roles=roles, ident=ident)

    def _roles(self, names: Iterable[str]) -> list[Role]:
        """The roles that grant something now: missing and expired ones grant nothing."""
        roles = []
        for name in names:
            try:
                role = self._get_shared(Role, name)
            except NotFoundError:
                continue
            if not self._expired(role):
                roles.append(role)
        return roles

    def _allowed(self, caller: Caller, resource: str, verb: str) -> bool:
        if caller.anonymous:
            return False
        roles = self._roles(caller.roles)
        return not any(_rule_match(r.spec.deny.rules, resource, verb) for r in roles) and any(
            _rule_match(r.spec.allow.rules, resource, verb) for r in roles)

    def _authorize_write(self, caller: Caller, kind: str) -> None:
        """A write is a create or an update, which only the stored object tells apart: a caller allowed neither is
        refused before that lookup, so a refusal says nothing about what exists."""
        if not self._allowed(caller, kind, "create") and not self._allowed(caller, kind, "update"):
            self.check_access(caller, kind, "create")

    def check_access(self, caller: Caller, resource: str, verb: str) -> None:
        if caller.anonymous:
            raise UnauthenticatedError("this call needs a client certificate issued by the cluster; pass an "
                                       "identity file with --identity (or MACHINEID_IDENTITY)")
        roles = self._roles(caller.roles)
        if any(_rule_match(r.spec.deny.rules, resource, verb) for r in roles) or not any(
            _rule_match(r.spec.allow.rules, resource, verb) for r in roles
        ):
            self.audit(caller, "access.denied", resource, "denied", verb=verb)
            raise PermissionDeniedError(
                f'{caller.actor} may not {verb} {resource} (roles: {", ".join(caller.roles) or "none"}); '
                f"a role with a rule for resource {resource} and verb {verb} is needed"
            )

    def _check_roles_exist(self, names: list[str], path: tuple[str | int, ...]) -> None:
        problems = [FieldViolation((*path, i), f'role "{n}" does not exist; create it first or remove it')
                    for i, n in enumerate(names) if not self._exists("role", n)]
        if problems:
            raise ValidationError(problems)

    # ------------------------------------------------------------------ generic writes
    def _upsert(self, caller: Caller, obj: R, create_only: bool, prepare: Callable[[R], None] | None = None) -> R:
        codec.validate(obj)
        kind, name, revision = obj.kind, obj.metadata.name, obj.metadata.revision
        # Authorize before anything is looked up, and outside the transaction so that a denial's audit record is
        # not rolled back with it.
        self._authorize_write(caller, kind)
        if prepare:
            prepare(obj)
        self.check_access(caller, kind, "update" if self._exists(kind, name) else "create")
        with self.backend.transaction():
            exists = self._exists(kind, name)
            verb = "update" if exists else "create"
            self.check_access(caller, kind, verb)
            if exists and create_only:
                raise AlreadyExistsError(f"{self._target(obj)} already exists; update it instead (or `create --force`)")
            if revision and not exists:
                raise NotFoundError(f"{self._target(obj)} no longer exists (it was deleted); drop metadata.revision to "
                                    "create it again")
            if exists:
                current = self.backend.get(kind, name)
                obj.metadata.created = current.created
                result = self._store_update(obj, revision)
            else:
                result = self._store_create(obj)
        self.audit(caller, f"{kind}.{verb}", self._target(result), revision=result.metadata.revision)
        return result

    @staticmethod
    def _target(obj: Resource) -> str:
        if isinstance(obj, ProvisionToken):
            return f"token/{token_ref(obj)}"
        return f"{obj.kind}/{obj.metadata.name}"

    @staticmethod
    def _check_name(name: str) -> None:
        """Names in requests are bounded and well-formed before anything is looked up or echoed."""
        reason = v.RESOURCE_NAME.check(name)
        if reason:
            raise ValidationError([FieldViolation(("name",), reason)])

    def _read(self, caller: Caller, cls: type[R], name: str) -> R:
        self.check_access(caller, cls.kind, "read")
        self._check_name(name)
        return self._get(cls, name)

    def _read_all(self, caller: Caller, cls: type[R]) -> list[R]:
        self.check_access(caller, cls.kind, "list")
        return self._list(cls)

    def _delete(self, caller: Caller, kind: str, name: str, revision: str, target: str = "") -> None:
        self.check_access(caller, kind, "delete")
        self._check_name(name)
        self.backend.delete(kind, name, revision)
        self.audit(caller, f"{kind}.delete", target or f"{kind}/{name}")

    # ------------------------------------------------------------------ roles
    def upsert_role(self, caller: Caller, role: Role, create_only: bool = False) -> Role:
        return self._upsert(caller, role, create_only)

    def get_role(self, caller: Caller, name: str) -> Role:
        return self._read(caller, Role, name)

    def list_roles(self, caller: Caller) -> list[Role]:
        return self._read_all(caller, Role)

    def delete_role(self, caller: Caller, name: str, revision: str = "") -> None:
        self.check_access(caller, "role", "delete")
        self._check_name(name)
        with self.backend.transaction():
            self.backend.get("role", name)
            users = [u.metadata.name for u in self._list(User) if name in u.spec.roles]
            if users:
                raise PreconditionError(f'role "{name}" is used by {", ".join(users)}; remove it from them first')
            self._delete(caller, "role", name, revision)

    # ------------------------------------------------------------------ tokens
    def _prepare_token(self, token: ProvisionToken) -> None:
        if not token.metadata.name:
            if token.spec.join_method != "token":
                raise ValidationError([FieldViolation(("metadata", "name"), "is required for an iam token")])
            token.metadata.name = secrets.token_hex(16)
        if token.spec.join_method == "token" and token.metadata.expires is None:
            token.metadata.expires = self.clock() + v.parse_duration(DEFAULT_TOKEN_TTL)
        if token.metadata.expires is not None and token.metadata.expires <= self.clock():
            when = codec.format_time(token.metadata.expires)
            raise ValidationError([FieldViolation(("metadata", "expires"), f"{when} is in the past; set a future "
                                                  "time or leave it out (1h)")])


    def upsert_token(self, caller: Caller, token: ProvisionToken, create_only: bool = False) -> ProvisionToken:
        if not token.metadata.name and token.spec.join_method == "token":
            token.metadata.name = secrets.token_hex(16)
        return self._upsert(caller, token, create_only, self._prepare_token)

    def get_token(self, caller: Caller, name: str) -> ProvisionToken:
        return self._read(caller, ProvisionToken, name)

    def list_tokens(self, caller: Caller) -> list[ProvisionToken]:
        return self._read_all(caller, ProvisionToken)

    def delete_token(self, caller: Caller, name: str, revision: str = "") -> None:
        self.check_access(caller, "token", "delete")
        self._check_name(name)
        token = self._get(ProvisionToken, name)
        self._delete(caller, "token", name, revision, f"token/{token_ref(token)}")

    # ------------------------------------------------------------------ users
    def _prepare_user(self, user: User) -> None:
        self._check_roles_exist(user.spec.roles, ("spec", "roles"))

    def upsert_user(self, caller: Caller, user: User, create_only: bool = False) -> User:
        self._authorize_write(caller, "user")  # before any lookup: who may not write users learns nothing
        if self._exists("user", user.metadata.name) and self._get(User, user.metadata.name).spec.bot_name:
            raise PreconditionError(f'user "{user.metadata.name}" belongs to a bot; update the bot instead')
        user.spec.bot_name = ""
        return self._upsert(caller, user, create_only, self._prepare_user)

    def get_user(self, caller: Caller, name: str) -> User:
        return self._read(caller, User, name)

    def list_users(self, caller: Caller) -> list[User]:
        return self._read_all(caller, User)

    def delete_user(self, caller: Caller, name: str, revision: str = "") -> None:
        self.check_access(caller, "user", "delete")
        self._check_name(name)
        user = self._get(User, name)
        if user.spec.bot_name:
            raise PreconditionError(f'user "{name}" belongs to bot "{user.spec.bot_name}"; remove the bot instead')
        self._delete(caller, "user", name, revision)

    # ------------------------------------------------------------------ nodes
    def upsert_node(self, caller: Caller, node: Node, create_only: bool = False) -> Node:
        return self._upsert(caller, node, create_only)

    def get_node(self, caller: Caller, name: str) -> Node:
        node = self._read(caller, Node, name)
        if not self._node_allowed(caller, node):
            raise NotFoundError(f'node "{name}" not found')  # do not leak nodes the caller cannot reach
        return node

    def list_nodes(self, caller: Caller) -> list[Node]:
        return [n for n in self._read_all(caller, Node) if self._node_allowed(caller, n)]

    def _node_allowed(self, caller: Caller, node: Node) -> bool:
        roles = self._roles(caller.roles)
        labels = node.metadata.labels
        if any(labels_match(r.spec.deny.node_labels, labels) for r in roles):
            return False
        return any(labels_match(r.spec.allow.node_labels, labels) for r in roles)

    def delete_node(self, caller: Caller, name: str, revision: str = "") -> None:
        self._delete(caller, "node", name, revision)

    # ------------------------------------------------------------------ bots
    def _bot_role(self, name: str) -> Role:
        return Role(
            metadata=Metadata(name=bot_role_name(name), description=f"Role of bot {name}; managed by the bot.",
                              labels={BOT_LABEL: name}),
            spec=RoleSpec(allow=RoleConditions(rules=[
                Rule(resources=["cert_authority"], verbs=["read"]),
                Rule(resources=["node"], verbs=["list", "read"]),
            ])),
        )

    def _bot_user(self, bot: Bot) -> User:
        return User(
            metadata=Metadata(name=bot_user_name(bot.metadata.name), labels={BOT_LABEL: bot.metadata.name},
                              description=f"User of bot {bot.metadata.name}; managed by the bot."),
            spec=UserSpec(roles=[bot_role_name(bot.metadata.name), *bot.spec.roles], traits=bot.spec.traits,
                          bot_name=bot.metadata.name),
        )

    def create_bot(self, caller: Caller, bot: Bot, token_name: str = "",
                   token_ttl: timedelta | None = None) -> tuple[Bot, ProvisionToken]:
        bot.status = BotStatus()
        codec.validate(bot)
        if token_ttl is not None and token_ttl <= timedelta(0):
            raise ValidationError([FieldViolation(("token_ttl",), "must be positive, e.g. 1h")])
        name = bot.metadata.name
        self.check_access(caller, "bot", "create")  # before the role lookups: no existence oracle
        self._check_roles_exist(bot.spec.roles, ("spec", "roles"))
        with self.backend.transaction():
            if self._exists("bot", name):
                raise AlreadyExistsError(f'bot "{name}" already exists')
            for kind, obj_name in (("user", bot_user_name(name)), ("role", bot_role_name(name))):
                if self._exists(kind, obj_name):
                    raise AlreadyExistsError(f'{kind} "{obj_name}" already exists; a bot named "{name}" needs it')
            self._store_create(self._bot_role(name))
            self._store_create(self._bot_user(bot))
            bot.status = BotStatus(user_name=bot_user_name(name), role_name=bot_role_name(name))
            created = self._store_create(bot)
            # Tokens made for this name before the bot existed would join it: only the one the creator names is
            # adopted (the guide's IAM flow: the token first, then `bots add --token`); the rest are purged.
            planted = [t for t in self._list(ProvisionToken)
                       if t.spec.bot_name == name and t.metadata.name != token_name]
            for t in planted:
                self.backend.delete("token", t.metadata.name)
            if token_name:
                try:
                    token = self._get(ProvisionToken, token_name)
                except NotFoundError:
                    raise ValidationError([FieldViolation(("token_name",), "no token has that name; create it first "
                                                          "or leave it out for a new one")]
                                          ) from None
                if token.spec.bot_name != name:
                    raise ValidationError([FieldViolation(("token_name",), f'token is for bot "{token.spec.bot_name}"'
                                                          f', not "{name}"')])
            else:
                token = self._new_bot_token(name, token_ttl)
        self.audit(caller, "bot.create", f"bot/{name}", roles=bot.spec.roles, token=token_ref(token),
                   purged_tokens=[token_ref(t) for t in planted])
        return created, token

    def _new_bot_token(self, bot_name: str, ttl: timedelta | None) -> ProvisionToken:
        token = ProvisionToken(
            metadata=Metadata(name=secrets.token_hex(16),
                              expires=self.clock() + (ttl or v.parse_duration(DEFAULT_TOKEN_TTL))),
            spec=ProvisionTokenSpec(roles=["Bot"], join_method="token", bot_name=bot_name),
        )
        return self._store_create(token)

    def get_bot(self, caller: Caller, name: str) -> Bot:
        return self._read(caller, Bot, name)

    def list_bots(self, caller: Caller) -> list[Bot]:
        return self._read_all(caller, Bot)

    def update_bot(self, caller: Caller, bot: Bot) -> Bot:
        codec.validate(bot)
        name = bot.metadata.name
        self.check_access(caller, "bot", "update")  # before the role lookups: no existence oracle
        self._check_roles_exist(bot.spec.roles, ("spec", "roles"))
        with self.backend.transaction():
            current = self._get(Bot, name)
            updated = replace(current, spec=bot.spec,
                              metadata=replace(current.metadata, description=bot.metadata.description,
                                               labels=bot.metadata.labels))
            result = self._store_update(updated, bot.metadata.revision)
            user = self._get(User, bot_user_name(name))
            user.spec = self._bot_user(result).spec
            self._store_update(user)
        self.audit(caller, "bot.update", f"bot/{name}", roles=bot.spec.roles)
        return result

    def delete_bot(self, caller: Caller, name: str, revision: str = "") -> None:
        self.check_access(caller, "bot", "delete")
        self._check_name(name)
        with self.backend.transaction():
            self.backend.delete("bot", name, revision)
            for kind, obj_name in (("user", bot_user_name(name)), ("role", bot_role_name(name)), (RENEWAL_KIND, name)):
                with contextlib.suppress(NotFoundError):
                    self.backend.delete(kind, obj_name)
            for token in self._list(ProvisionToken):
                if token.spec.bot_name == name:
                    self.backend.delete("token", token.metadata.name)
        self.audit(caller, "bot.delete", f"bot/{name}")

    def unlock_bot(self, caller: Caller, name: str) -> Bot:
        self.check_access(caller, "bot", "update")
        self._check_name(name)
        with self.backend.transaction():
            bot = self._get(Bot, name)
            if not bot.status.locked:
                raise PreconditionError(f'bot "{name}" is not locked; nothing to unlock')
            bot.status.locked = False
            bot.status.lock_reason = ""
            # A lock means two holders of the identity; neither may simply renew on: every existing renewable
            # identity of the bot is superseded, and the bot joins again with a new token.
            bot.status.instance_id = ""
            bot.status.generation = 0
            result = self._store_update(bot)
            with contextlib.suppress(NotFoundError):
                self.backend.delete(RENEWAL_KIND, name)
        self.audit(caller, "bot.unlock", f"bot/{name}")
        return result

    # ------------------------------------------------------------------ certificates
    def _ttl(self, roles: list[Role], requested: timedelta | None, cap: timedelta | None) -> timedelta:
        ttl = requested or DEFAULT_CERT_TTL
        if ttl <= timedelta(0):
            raise ValidationError([FieldViolation(("ttl",), "must be positive, e.g. 1h")])
        limits = [v.parse_duration(r.spec.options.max_session_ttl) for r in roles]
        if cap:
            limits.append(cap)
        return min([ttl, *limits])

    def _principals(self, roles: list[Role], traits: dict[str, list[str]]) -> list[str]:
        allowed = expand_logins((lg for r in roles for lg in r.spec.allow.logins), traits)
        denied = set(expand_logins((lg for r in roles for lg in r.spec.deny.logins), traits))
        principals = [p for p in allowed if p not in denied]
        # An OpenSSH certificate without principals is valid for every login: never issue one.
        return principals or [f"-machineid-no-login-{uuid.uuid4()}"]

    @staticmethod
    def _node_access(roles: list[Role], traits: dict[str, list[str]]) -> NodeAccess:
        """What the certificate may do on which node, per role (a login of one role does not extend to the nodes of
        another), for the nodes to enforce (machineid node principals)."""
        denied = set(expand_logins((lg for r in roles for lg in r.spec.deny.logins), traits))
        grants = []
        for r in roles:
            logins = tuple(lg for lg in expand_logins(r.spec.allow.logins, traits) if lg not in denied)
            if logins and r.spec.allow.node_labels:
                grants.append(Grant(logins, dict(r.spec.allow.node_labels)))
        return NodeAccess(grants, [dict(r.spec.deny.node_labels) for r in roles if r.spec.deny.node_labels])

    @staticmethod
    def _check_public_key(public_key_pem: str) -> None:
        try:
            certs.load_public_key(public_key_pem)
        except ValueError as e:
            raise ValidationError([FieldViolation(("public_key",), f"{e}; send a PEM SubjectPublicKeyInfo")]) from None

    def issue(self, public_key_pem: str, ident: certs.CertIdentity, traits: dict[str, list[str]],
              requested: timedelta | None, cap: timedelta | None) -> dict[str, Any]:
        try:
            public_key = certs.load_public_key(public_key_pem)
        except ValueError as e:
            raise ValidationError([FieldViolation(("public_key",), f"{e}; send a PEM SubjectPublicKeyInfo")]) from None
        roles = self._roles(ident.roles)
        ttl = self._ttl(roles, requested, cap)
        start = self.clock() - timedelta(minutes=1)
        not_after = self.clock() + ttl
        principals = self._principals(roles, traits)
        access = self._node_access(roles, traits).encode()
        ssh_cert = self.authority.sign_ssh_user(public_key, ident.user, principals, start, not_after,
                                                {EXTENSION: access})
        tls_cert = self.authority.sign_tls_client(public_key, ident, not_after)
        return {
            "ssh_cert": ssh_cert,
            "tls_cert": tls_cert,
            "tls_ca_certs": [self.authority.tls_ca_pem],
            "ssh_host_ca_keys": [self.authority.host_ca_line],
            "ssh_user_ca_keys": [self.authority.user_ca_line],
            "expires": not_after,
            "renewable": ident.renewable,
            "generation": ident.generation,
            "principals": principals,
        }

    def _bot_identity(self, bot: Bot, renewable: bool) -> tuple[certs.CertIdentity, dict[str, list[str]]]:
        user = self._get_shared(User, bot_user_name(bot.metadata.name))
        ident = certs.CertIdentity(
            user=user.metadata.name, roles=list(user.spec.roles), traits=user.spec.traits,
            cluster=self.cluster_name, bot_name=bot.metadata.name, renewable=renewable,
            generation=bot.status.generation, instance_id=bot.status.instance_id,
        )
        return ident, user.spec.traits

    def register_using_token(self, token_name: str, public_key_pem: str,
                             ttl: timedelta | None) -> tuple[str, dict[str, Any]]:
        ref = f"token/{token_ref(token_name)}"
        try:
            return self._register_using_token(token_name, public_key_pem, ttl, ref)
        except MachineIDError as e:
            self.audit(ANONYMOUS, "bot.join", ref, "denied", method="token", error=str(e))
            raise

    def _register_using_token(self, token_name: str, public_key_pem: str, ttl: timedelta | None,
                              ref: str) -> tuple[str, dict[str, Any]]:
        if not token_name:
            raise ValidationError([FieldViolation(("token",), "is required; pass the token from "
                                                  "`machineid ctl bots add`")])
        self._check_public_key(public_key_pem)  # before anything is consumed
        with self.backend.transaction():
            try:
                token = self._get(ProvisionToken, token_name)
            except NotFoundError:
                raise PermissionDeniedError("the join token is not valid: it does not exist or was already used "
                                            "(tokens of the token method join once); create a new one with "
                                            "`machineid ctl tokens add --type=bot --bot-name=NAME`") from None
            if token.spec.join_method != "token":
                raise PermissionDeniedError(f"token uses join method {token.spec.join_method}, not token")
            if token.metadata.expires and token.metadata.expires <= self.clock():
                raise PermissionDeniedError(f"the join token expired at {codec.format_time(token.metadata.expires)}"
                                            "; create a new one")
            if "Bot" not in token.spec.roles or not token.spec.bot_name:
                raise PermissionDeniedError("the join token is not a bot token")
            try:
                bot = self._get(Bot, token.spec.bot_name)
            except NotFoundError:
                raise PermissionDeniedError(f'bot "{token.spec.bot_name}" of this token does not exist') from None
            if bot.status.locked:
                raise PermissionDeniedError(f'bot "{bot.metadata.name}" is locked ({bot.status.lock_reason}); '
                                            f"unlock it with `machineid ctl bots unlock {bot.metadata.name}`")
            self.backend.delete("token", token_name)  # single use
            rejoin = bot.status.generation > 0
            bot.status.generation = 1
            bot.status.instance_id = uuid.uuid4().hex
            bot.status.last_join = self.clock()
            bot = self._store_update(bot)
            ident, traits = self._bot_identity(bot, renewable=True)
        # Signing happens after the commit, outside the store's lock, so joins from many machines overlap.
        certs_out = self.issue(public_key_pem, ident, traits, ttl, MAX_RENEWABLE_TTL)
        self.audit(ANONYMOUS, "bot.join", ref, bot=bot.metadata.name, method="token", generation=1,
                   instance_id=bot.status.instance_id, rejoin=rejoin)
        self.audit(Caller(user=ident.user, ident=ident), "cert.issue", f"user/{ident.user}",
                   generation=1, expires=codec.format_time(certs_out["expires"]),
                   principals=certs_out["principals"])
        return bot.metadata.name, certs_out

    # ------------------------------------------------------------------ IAM joins
    def create_iam_challenge(self) -> str:
        self._challenges_issued += 1
        if self._challenges_issued % 256 == 1:
            self._prune_challenges()
        challenge = base64.b64encode(secrets.token_bytes(32)).decode()
        key = hashlib.sha256(challenge.encode()).hexdigest()
        self.backend.create(IAM_CHALLENGE_KIND, key, {"expires": codec.format_time(self.clock() + IAM_CHALLENGE_TTL)})
        return challenge

    def register_using_iam(self, token_name: str, challenge: str, request: SignedRequest, public_key_pem: str,
                           ttl: timedelta | None) -> tuple[str, dict[str, Any]]:
        # The name is a secret unless it really is an iam token's: look before naming it anywhere.
        try:
            token: ProvisionToken | None = self._get(ProvisionToken, token_name)
        except NotFoundError:
            token = None
        known_iam = token is not None and token.spec.join_method == "iam"
        ref = f"token/{token_ref(token_name, 'iam' if known_iam else 'token')}"
        try:
            return self._register_using_iam(token, challenge, request, public_key_pem, ttl, ref)
        except MachineIDError as e:
            self.audit(ANONYMOUS, "bot.join", ref, "denied", method="iam", error=str(e))
            raise

    def _prune_challenges(self) -> None:
        """Unused challenges expire; drop them, and refuse new ones while an abnormal number is outstanding."""
        now = self.clock()
        items = self.backend.list(IAM_CHALLENGE_KIND)
        for item in items:
            if codec.parse_time(item.value["expires"]) <= now:
                with contextlib.suppress(NotFoundError):
                    self.backend.delete(IAM_CHALLENGE_KIND, item.name)
        if len(items) > MAX_OUTSTANDING_CHALLENGES and len(self.backend.list(IAM_CHALLENGE_KIND)) > \
                MAX_OUTSTANDING_CHALLENGES:
            raise PreconditionError("too many IAM challenges are outstanding; try again in a few minutes")

    def _consume_challenge(self, challenge: str) -> None:
        key = hashlib.sha256(challenge.encode()).hexdigest()
        with self.backend.transaction():
            try:
                item = self.backend.get(IAM_CHALLENGE_KIND, key)
            except NotFoundError:
                raise PermissionDeniedError("the challenge is unknown or was already used; ask for a new one "
                                            "(a signed request joins once)") from None
            self.backend.delete(IAM_CHALLENGE_KIND, key)
        if codec.parse_time(item.value["expires"]) <= self.clock():
            raise PermissionDeniedError("the challenge expired; ask for a new one")

    def _register_using_iam(self, token: ProvisionToken | None, challenge: str, request: SignedRequest,
                            public_key_pem: str, ttl: timedelta | None, ref: str) -> tuple[str, dict[str, Any]]:
        self._check_public_key(public_key_pem)
        self._consume_challenge(challenge)
        if token is None:
            raise PermissionDeniedError("no iam token has that name")
        if token.spec.join_method != "iam":
            raise PermissionDeniedError("that token is not an iam token")
        if token.metadata.expires and token.metadata.expires <= self.clock():
            raise PermissionDeniedError(f"the IAM token expired at {codec.format_time(token.metadata.expires)}")
        self.iam.check_request(request, challenge)
        who = self.iam.call_sts(request)
        if not any(iam.matches(rule, who) for rule in token.spec.allow):
            raise PermissionDeniedError(f"AWS identity {who.arn} (account {who.account}) matches no allow rule of "
                                        f'token "{token.metadata.name}"')
        with self.backend.transaction():
            try:
                bot = self._get(Bot, token.spec.bot_name)
            except NotFoundError:
                raise PermissionDeniedError(f'bot "{token.spec.bot_name}" of this token does not exist') from None
            if bot.status.locked:
                raise PermissionDeniedError(f'bot "{bot.metadata.name}" is locked ({bot.status.lock_reason})')
            bot.status.last_join = self.clock()
            bot = self._store_update(bot)
            ident, traits = self._bot_identity(bot, renewable=False)
            out = self.issue(public_key_pem, ident, traits, ttl, MAX_RENEWABLE_TTL)
        self.audit(ANONYMOUS, "bot.join", ref, bot=bot.metadata.name, method="iam", aws_account=who.account,
                   aws_arn=who.arn)
        self.audit(Caller(user=ident.user, ident=ident), "cert.issue", f"user/{ident.user}", renewable=False,
                   expires=codec.format_time(out["expires"]), principals=out["principals"])
        return bot.metadata.name, out

    def _last_renewal(self, bot_name: str) -> dict[str, Any]:
        try:
            return self.backend.get(RENEWAL_KIND, bot_name).value
        except NotFoundError:
            return {}

    def renew(self, caller: Caller, public_key_pem: str, ttl: timedelta | None) -> dict[str, Any]:
        self._check_public_key(public_key_pem)
        ident = caller.ident
        if ident is None:
            raise UnauthenticatedError("renewal needs the current certificate (mutual TLS)")
        if not ident.renewable or not ident.bot_name:
            self.audit(caller, "cert.renew", f"user/{caller.user}", "denied", error="not renewable")
            raise PermissionDeniedError("this certificate is not renewable; join again to get a new one")
        locked_reason = ""
        superseded = False
        # Check and bump in one transaction: two holders of the same generation cannot both pass; the second
        # one locks the bot, as a copied certificate must.
        key_fp = hashlib.sha256(public_key_pem.strip().encode()).hexdigest()
        retry = False
        with self.backend.transaction():
            bot = self._get(Bot, ident.bot_name)
            last = self._last_renewal(ident.bot_name)
            if ident.instance_id != bot.status.instance_id:
                superseded = True
            elif (ident.generation == bot.status.generation - 1 and last.get("generation") == bot.status.generation
                  and last.get("key") == key_fp and last.get("instance") == bot.status.instance_id):
                # The same renewal again (its answer was lost): the same new key, so issue that generation again
                # instead of taking the agent for a copy. A thief replaying it gets a certificate for a key it lacks.
                retry = True
                new_ident, traits = self._bot_identity(bot, renewable=True)
            elif ident.generation != bot.status.generation:
                locked_reason = (f"generation mismatch: certificate presented generation {ident.generation}, "
                                 f"the cluster expected {bot.status.generation}")
                bot.status.locked = True
                bot.status.lock_reason = locked_reason
                self._store_update(bot)
            else:
                bot.status.generation += 1
                bot = self._store_update(bot)
                record = {"generation": bot.status.generation, "key": key_fp, "instance": bot.status.instance_id}
                try:
                    self.backend.update(RENEWAL_KIND, ident.bot_name, record)
                except NotFoundError:
                    self.backend.create(RENEWAL_KIND, ident.bot_name, record)
                new_ident, traits = self._bot_identity(bot, renewable=True)
        if superseded:
            self.audit(caller, "cert.renew", f"bot/{ident.bot_name}", "denied", error="superseded by a new join")
            raise PermissionDeniedError("this identity was superseded by a newer join of the bot; it cannot renew")
        if locked_reason:
            self.audit(caller, "bot.lock", f"bot/{ident.bot_name}", "denied", presented=ident.generation,
                       expected=bot.status.generation)
            raise PermissionDeniedError(f'bot "{ident.bot_name}" is now locked: {locked_reason}. A copied '
                                        f"certificate was renewed; unlock with `machineid ctl bots unlock "
                                        f"{ident.bot_name}` and join again")
        out = self.issue(public_key_pem, new_ident, traits, ttl, MAX_RENEWABLE_TTL)
        self.audit(caller, "cert.renew", f"bot/{ident.bot_name}", generation=bot.status.generation,
                   expires=codec.format_time(out["expires"]), retry=retry)
        return out

    def issue_output_certs(self, caller: Caller, public_key_pem: str, ttl: timedelta | None) -> dict[str, Any]:
        """Non-renewable certificates of a bot for its destinations. Only the current generation of its renewable
        identity may ask (caller_from_cert has checked the instance): an output certificate cannot, and neither can
        an older, copied generation."""
        self._check_public_key(public_key_pem)
        ident = caller.ident
        if ident is None or not ident.renewable or not ident.bot_name:
            raise PermissionDeniedError("only a bot's renewable identity may issue its output certificates")
        bot = self._get(Bot, ident.bot_name)
        if ident.generation != bot.status.generation:
            self.audit(caller, "cert.issue_output", f"bot/{ident.bot_name}", "denied", presented=ident.generation,
                       expected=bot.status.generation)
            raise PermissionDeniedError("this identity is not the bot's current generation; renew first")
        out_ident, traits = self._bot_identity(bot, renewable=False)
        out_ident = replace(out_ident, generation=0)
        out = self.issue(public_key_pem, out_ident, traits, ttl, MAX_RENEWABLE_TTL)
        self.audit(caller, "cert.issue_output", f"bot/{ident.bot_name}", expires=codec.format_time(out["expires"]))
        return out

    def sign_user(self, caller: Caller, user_name: str, public_key_pem: str, ttl: timedelta | None) -> dict[str, Any]:
        self.check_access(caller, "user_cert", "create")
        user = self._get(User, user_name)
        if user.spec.bot_name:
            raise PreconditionError(f'user "{user_name}" belongs to a bot; bots get certificates by joining')
        ident = certs.CertIdentity(user=user_name, roles=list(user.spec.roles), traits=user.spec.traits,
                                   cluster=self.cluster_name)
        out = self.issue(public_key_pem, ident, user.spec.traits, ttl, None)
        self.audit(caller, "cert.issue", f"user/{user_name}", expires=codec.format_time(out["expires"]))
        return out

    def sign_host(self, caller: Caller, public_key: str, principals: list[str], ttl: timedelta | None) -> str:
        self.check_access(caller, "host_cert", "create")
        if not principals:
            raise ValidationError([FieldViolation(("principals",), "name at least one host name")])
        try:
            key = certs.load_public_key(public_key)
        except ValueError as e:
            raise ValidationError([FieldViolation(("public_key",), f"{e}; send the host's OpenSSH public key")]
                                  ) from None
        if ttl is not None and not timedelta(0) < ttl <= MAX_HOST_CERT_TTL:
            raise ValidationError([FieldViolation(("ttl",), "must be positive and at most 10 years")])
        start = self.clock() - timedelta(minutes=1)
        cert = self.authority.sign_ssh_host(key, principals[0], principals, start,
                                            self.clock() + (ttl or DEFAULT_HOST_CERT_TTL))
        self.audit(caller, "cert.issue_host", f"host/{principals[0]}", principals=principals)
        return cert

    def export_cas(self, caller: Caller, ca_type: str = "") -> list[dict[str, str]]:
        self.check_access(caller, "cert_authority", "read")
        if ca_type not in ("", "user", "host", "tls"):
            raise ValidationError([FieldViolation(("type",), f'"{ca_type}" is not a CA type; use user, host or tls')])
        a = self.authority
        cas = [
            {"type": "user", "cluster_name": self.cluster_name, "public_data": a.user_ca_line, "pin": ""},
            {"type": "host", "cluster_name": self.cluster_name, "public_data": a.host_ca_line, "pin": ""},
            {"type": "tls", "cluster_name": self.cluster_name, "public_data": a.tls_ca_pem, "pin": a.pin},
        ]
        return [c for c in cas if not ca_type or c["type"] == ca_type]

    def audit_events(self, caller: Caller, after_id: int = 0, limit: int = 1000) -> list[Any]:
        self.check_access(caller, "event", "list")
        return self.backend.audit_events(after_id, max(1, min(limit or 1000, 10000)))
