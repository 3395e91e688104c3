"""Who may do what: callers from certificates, role rules, node labels, and the built-in roles.

A refusal is decided before anything is looked up, so it says nothing about what exists; missing and expired
roles grant nothing."""

from __future__ import annotations

from collections.abc import Iterable

from machineid.api import certs
from machineid.cluster import node_status
from machineid.cluster.caller import Caller
from machineid.cluster.objects import Objects
from machineid.model import codec
from machineid.model.errors import (
    FieldViolation,
    NotFoundError,
    PermissionDeniedError,
    UnauthenticatedError,
    ValidationError,
)
from machineid.model.grants import rule_match
from machineid.model.node_access import labels_match
from machineid.model.resources import (
    Bot,
    BotStatus,
    Metadata,
    Node,
    NodeStatus,
    Role,
    RoleConditions,
    RoleSpec,
    Rule,
    User,
)


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
             RoleConditions(rules=[Rule(resources=["role", "bot", "user", "node", "lock", "bot_instance",
                                                   "cert_authority", "event"],
                                        verbs=["list", "read"])])),
    ]


def check_unlocked(kind: str, name: str, status: BotStatus | NodeStatus) -> None:
    """A locked bot or node (two holders of its identity or key pair were seen) gets nothing until unlocked."""
    if status.locked:
        raise PermissionDeniedError(
            f'{kind} "{name}" is locked ({status.lock_reason}); an administrator can unlock it with '
            f"`machineid ctl {kind}s unlock {name}`")


def stale_identity(kind: str, name: str, status: BotStatus | NodeStatus) -> str:
    """Why a renewable identity of a bot or node no longer counts. An unlock resets its instance to none and leaves
    its last join recorded; one deleted and created again has neither; otherwise a newer join took over."""
    if not status.instance_id and status.last_join is not None:
        return (f'{kind} "{name}" was unlocked by an administrator, so this identity is no longer valid; join again '
                f"with a new token (`machineid ctl tokens add --type={kind} --{kind}-name={name}`)")
    return (f"this identity was superseded by a newer join of the {kind} (or the {kind} was re-created); it is no "
            "longer valid")


class Access:
    def __init__(self, objects: Objects) -> None:
        self.objects = objects

    def caller_from_cert(self, ident: certs.CertIdentity) -> Caller:
        """Checks that the certificate's user still exists and has not expired (a deleted bot's certificates, or an
        expired user's, stop working)."""
        if ident.node_name:
            return self._node_caller(ident)
        self.objects.locks.check(user=ident.user, bot=ident.bot_name,
                                 bot_instance=ident.instance_id if ident.bot_name else "")
        try:
            user = self.objects.get_shared(User, ident.user)
        except NotFoundError:
            raise UnauthenticatedError(f'user "{ident.user}" of this certificate no longer exists') from None
        if user.metadata.expires is not None and self.objects.expired(user):
            raise UnauthenticatedError(f'user "{ident.user}" expired at {codec.format_time(user.metadata.expires)}'
                                       "; an administrator can extend its metadata.expires")
        if user.spec.bot_name:
            try:
                bot = self.objects.get_shared(Bot, user.spec.bot_name)
            except NotFoundError:
                raise UnauthenticatedError(f'bot "{user.spec.bot_name}" no longer exists') from None
            check_unlocked("bot", bot.metadata.name, bot.status)
            if ident.renewable and ident.instance_id != bot.status.instance_id:
                raise PermissionDeniedError(stale_identity("bot", bot.metadata.name, bot.status))
            if ident.instance_id == bot.status.instance_id:
                # The join token that started this instance (a lock on a token stops what joined with it).
                self.objects.locks.check(token=bot.status.join_token)
        # Roles come from the certificate but never exceed what the user holds now: a re-created bot's old
        # certificates (or a user's, after a role was taken away) do not bring old roles back.
        roles = [r for r in ident.roles if r in user.spec.roles]
        return Caller(user=ident.user, roles=roles, ident=ident)

    def _node_caller(self, ident: certs.CertIdentity) -> Caller:
        """A node's identity: its node must still be registered, unlocked, and this its current instance (a
        deleted or re-joined node's old identity stops working). It holds no roles, whatever the certificate says:
        role rules allow it nothing, and only the node RPCs (which ask for a node identity) serve it."""
        name = ident.node_name
        self.objects.locks.check(node=name)
        try:
            node = self.objects.get_shared(Node, name)
        except NotFoundError:
            node = None
        if node is None or not ident.renewable or ident.user != certs.node_user(name):
            raise UnauthenticatedError(f'node "{name}" of this certificate is no longer registered')
        if self.objects.expired(node):
            assert node.metadata.expires is not None
            raise UnauthenticatedError(f'node "{name}" expired at {codec.format_time(node.metadata.expires)}; an '
                                       "administrator can extend its metadata.expires")
        status = node_status.get(self.objects, name)
        check_unlocked("node", name, status)
        self.objects.locks.check(token=status.join_token)
        if ident.instance_id != status.instance_id:
            raise PermissionDeniedError(stale_identity("node", name, status))
        return Caller(user=ident.user, roles=[], ident=ident)

    def roles(self, names: Iterable[str]) -> list[Role]:
        """The roles that grant something now: missing and expired ones grant nothing."""
        roles = []
        for name in names:
            try:
                role = self.objects.get_shared(Role, name)
            except NotFoundError:
                continue
            if not self.objects.expired(role):
                roles.append(role)
        return roles

    def allowed(self, caller: Caller, resource: str, verb: str) -> bool:
        return not caller.anonymous and self.roles_allow(caller.roles, resource, verb)

    def roles_allow(self, names: Iterable[str], resource: str, verb: str) -> bool:
        roles = self.roles(names)
        return not any(rule_match(r.spec.deny.rules, resource, verb) for r in roles) and any(
            rule_match(r.spec.allow.rules, resource, verb) for r in roles)

    def check(self, caller: Caller, resource: str, verb: str) -> None:
        if caller.anonymous:
            raise UnauthenticatedError("this call needs a client certificate issued by the cluster; pass an "
                                       "identity file with --identity (or MACHINEID_IDENTITY)")
        if not self.allowed(caller, resource, verb):
            self.objects.audit(caller, "access.denied", resource, "denied", verb=verb)
            raise PermissionDeniedError(
                f'{caller.actor} may not {verb} {resource} (roles: {", ".join(caller.roles) or "none"}); '
                f"a role with a rule for resource {resource} and verb {verb} is needed"
            )

    def authorize_write(self, caller: Caller, kind: str) -> None:
        """A write is a create or an update, which only the stored object tells apart: a caller allowed neither is
        refused before that lookup, so a refusal says nothing about what exists."""
        if not self.allowed(caller, kind, "create") and not self.allowed(caller, kind, "update"):
            self.check(caller, kind, "create")

    @staticmethod
    def node_allowed(roles: list[Role], node: Node) -> bool:
        """Whether these roles (the caller's, looked up once for a whole list) reach the node."""
        labels = node.metadata.labels
        if any(labels_match(r.spec.deny.node_labels, labels) for r in roles):
            return False
        return any(labels_match(r.spec.allow.node_labels, labels) for r in roles)

    def check_roles_exist(self, names: list[str], path: tuple[str | int, ...]) -> None:
        problems = [FieldViolation((*path, i), f'role "{n}" does not exist; create it first or remove it')
                    for i, n in enumerate(names) if not self.objects.exists("role", n)]
        if problems:
            raise ValidationError(problems)
