"""The resource model: every stored kind, declared once.

Field names are the YAML and wire names (snake_case, Teleport's); the Pulumi schema camelCases them. Cross-field
rules live in each spec's `check`, so the cluster, the provider and the Terraform shim apply the same ones.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import ClassVar

from machineid.model import delegated, kinds
from machineid.model import validators as v
from machineid.model.errors import FieldViolation
from machineid.model.fields import attr

# Resource kinds and verbs that role rules speak of.
RULE_RESOURCES = kinds.RULE_RESOURCES
RULE_VERBS = ("list", "read", "create", "update", "delete")
SYSTEM_ROLES = ("Bot", "Node")
# Join methods a node may use: a node has no CI platform to vouch for it.
NODE_JOIN_METHODS = ("token", "iam", "bound_keypair")
DEFAULT_HOST_CERT_TTL = "24h"
MAX_HOST_CERT_TTL_SECONDS = 30 * 86400
DEFAULT_REVOCATION_MAX_AGE = "1h"
# A host certificate holds at most v.MAX_HOST_PRINCIPALS principals; three are the node's own (NAME, NAME.CLUSTER and
# addr's host).
MAX_NODE_HOSTNAMES = v.MAX_HOST_PRINCIPALS - 3
JOIN_METHODS = ("token", "iam", "bound_keypair", *delegated.DELEGATED_METHODS)
# Join methods whose token's name is the secret that joins (a single-use token): only these names are hidden (in
# IDs, audit records, plans and state display); every other method's name is public, its proof lies elsewhere.
SECRET_NAME_JOIN_METHODS = frozenset({"token"})
_PUBLIC_NAME_JOIN_METHODS = frozenset(JOIN_METHODS) - SECRET_NAME_JOIN_METHODS
RECOVERY_MODES = ("standard", "relaxed", "insecure")
DEFAULT_MAX_SESSION_TTL = "30h"
DEFAULT_TOKEN_TTL = "1h"
MAX_SPENT_TOKENS = 16  # how many spent single-use tokens a bot remembers
_HOST = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9.-]{0,252})|\[[0-9A-Fa-f:.]{2,45}\]")


@dataclass
class Metadata:
    name: str = attr(
        default="",
        required=True,
        replace_on_change=True,
        doc="Unique name of the object within its kind.",
        validators=[v.RESOURCE_NAME],
    )
    description: str = attr(default="", doc="Free-form description.")
    labels: dict[str, str] = attr(default_factory=dict, doc="Labels (key -> value).",
                                  validators=[v.each_key(v.LABEL_NAME), v.each_value(v.LABEL_VALUE)])
    expires: datetime | None = attr(default=None, doc="When the object stops being valid; unset means never.")
    revision: str = attr(default="", computed=True, doc="Opaque version, new on every write.")
    created: datetime | None = attr(default=None, computed=True, doc="When the object was created.")
    updated: datetime | None = attr(default=None, computed=True, doc="When the object was last written.")


@dataclass
class Rule:
    resources: list[str] = attr(
        default_factory=list,
        required=True,
        doc="Resource kinds the rule covers, or '*'.",
        validators=[v.subset_of((*RULE_RESOURCES, "*"))],
    )
    verbs: list[str] = attr(
        default_factory=list,
        required=True,
        doc="Verbs on them, or '*'.",
        validators=[v.subset_of((*RULE_VERBS, "*"))],
    )


@dataclass
class RoleConditions:
    logins: list[str] = attr(
        default_factory=list,
        doc="OS logins; {{internal.logins}} expands from the user's or bot's `logins` trait.",
        validators=[v.each(v.LOGIN)],
    )
    node_labels: dict[str, list[str]] = attr(
        default_factory=dict,
        doc="Nodes, by label: key -> values; '*': ['*'] means all nodes. Under allow, the nodes the logins reach; "
            "under deny, the nodes where they are refused.",
        validators=[v.each_key(v.LABEL_KEY), v.each_value(v.LABEL_VALUE)],
    )
    rules: list[Rule] = attr(default_factory=list, doc="API access: resources and verbs.")


@dataclass
class RoleOptions:
    max_session_ttl: str = attr(
        default=DEFAULT_MAX_SESSION_TTL,
        doc="Longest certificate lifetime this role grants; with several roles the shortest wins.",
        validators=[v.duration(min_seconds=60)],
    )


@dataclass
class RoleSpec:
    allow: RoleConditions = attr(default_factory=RoleConditions, doc="What the role allows.")
    deny: RoleConditions = attr(default_factory=RoleConditions, doc="What the role denies; deny wins over allow.")
    options: RoleOptions = attr(default_factory=RoleOptions, doc="Role options.")

    def check(self) -> Iterator[FieldViolation]:
        return iter(())


@dataclass
class TokenRule:
    aws_account: str = attr(
        default="", required=True, doc="AWS account ID allowed to join.", validators=[v.AWS_ACCOUNT]
    )
    aws_arn: str = attr(
        default="",
        doc="Caller ARN allowed to join ('*' and '?' globs); empty allows any ARN in the account.",
        validators=[v.AWS_ARN_GLOB],
    )


@dataclass
class BoundKeypairOnboarding:
    """How the bot's first key is bound: preregistered, or registered once with a secret."""

    initial_public_key: str = attr(
        default="",
        replace_on_change=True,
        doc="The bot's public key in OpenSSH format (Ed25519 or ECDSA P-256), as `machineid bot keypair create` "
            "prints it: the bot joins by signing with the matching private key. Not a secret.",
        validators=[v.SSH_PUBLIC_KEY],
    )
    registration_secret: str = attr(
        default="",
        secret=True,
        replace_on_change=True,
        doc="Instead of initial_public_key: a one-time secret (at least 32 characters) with which the bot registers "
            "a key it generated; spent by that join. The cluster keeps only its hash (sha256:HEX, which may also be "
            "given here instead of the secret).",
        validators=[v.REGISTRATION_SECRET],
    )
    must_register_before: datetime | None = attr(
        default=None, doc="With registration_secret: the secret is refused after this time."
    )


@dataclass
class BoundKeypairRecovery:
    """Joins after the bot's certificates expired."""

    mode: str = attr(
        default=RECOVERY_MODES[0],
        doc="standard: joining again after the bot's certificates expired (a recovery) counts against limit; "
            "relaxed: recoveries are not counted; insecure: not counted and the join state is not checked either "
            "(a copied key pair goes unnoticed).",
        validators=[v.one_of(*RECOVERY_MODES)],
    )
    limit: int = attr(default=1, doc="How many recoveries standard mode allows.", validators=[v.at_least(0)])


@dataclass
class BoundKeypair:
    """A bound_keypair token's settings (Teleport's spec.bound_keypair)."""

    onboarding: BoundKeypairOnboarding = attr(
        default_factory=BoundKeypairOnboarding, doc="How the first key is bound: exactly one of initial_public_key "
                                                    "and registration_secret."
    )
    recovery: BoundKeypairRecovery = attr(default_factory=BoundKeypairRecovery, doc="Joins after expiry.")
    rotate_after: datetime | None = attr(
        default=None, doc="Once this time has passed, the bot's next join generates and binds a new key pair."
    )


@dataclass
class ProvisionTokenSpec:
    roles: list[str] = attr(
        default_factory=lambda: ["Bot"],
        replace_on_change=True,
        doc="System role the token grants: Bot (joins the bot bot_name) or Node (joins the node node_name).",
        validators=[v.non_empty(), v.subset_of(SYSTEM_ROLES)],
    )
    join_method: str = attr(
        default="token",
        replace_on_change=True,
        doc="token: the name is a single-use secret; iam: the joiner proves its AWS identity; bound_keypair: the "
            "joiner signs a challenge with its bound private key; github, gitlab, kubernetes, oidc: the joiner "
            "presents an ID token its platform issued, checked against the block of the same name (all but token "
            "are reusable, and their names are not secret).",
        validators=[v.one_of(*JOIN_METHODS)],
    )
    bot_name: str = attr(
        default="",
        replace_on_change=True,
        doc="The bot this token joins.",
        validators=[v.RESOURCE_NAME],
    )
    node_name: str = attr(
        default="",
        replace_on_change=True,
        doc="The node this token joins (role Node).",
        validators=[v.RESOURCE_NAME],
    )
    allow: list[TokenRule] = attr(default_factory=list, doc="For iam: the AWS identities allowed to join.")
    bound_keypair: BoundKeypair = attr(
        default_factory=BoundKeypair, doc="For bound_keypair: the bot's key, recovery and rotation settings."
    )
    github: delegated.GitHubJoin = attr(default_factory=delegated.GitHubJoin,
                                        doc="For github: the GitHub Actions workflows allowed to join.")
    gitlab: delegated.GitLabJoin = attr(default_factory=delegated.GitLabJoin,
                                        doc="For gitlab: the GitLab CI pipelines allowed to join.")
    kubernetes: delegated.KubernetesJoin = attr(default_factory=delegated.KubernetesJoin,
                                                doc="For kubernetes: the service accounts allowed to join.")
    oidc: delegated.OIDCJoin = attr(default_factory=delegated.OIDCJoin,
                                    doc="For oidc: the issuer, audience and claim rules of any OpenID Connect "
                                        "issuer.")

    def check(self) -> Iterator[FieldViolation]:
        yield from delegated.check(self.join_method, self.github, self.gitlab, self.kubernetes, self.oidc)
        if len(self.roles) > 1:
            yield FieldViolation(("roles",), "a token joins either a bot or a node: give one role, Bot or Node")
        if "Bot" in self.roles and not self.bot_name:
            yield FieldViolation(("bot_name",), "must be set for a token with role Bot; name the bot it joins")
        if "Node" in self.roles:
            if not self.node_name:
                yield FieldViolation(("node_name",), "must be set for a token with role Node; name the node it joins")
            if self.bot_name:
                yield FieldViolation(("bot_name",), "applies to role Bot only; a Node token names node_name")
            if self.join_method not in NODE_JOIN_METHODS:
                yield FieldViolation(("join_method",), f'"{self.join_method}" cannot join a node; use one of '
                                     + ", ".join(NODE_JOIN_METHODS))
        elif self.node_name:
            yield FieldViolation(("node_name",), "applies to role Node only; remove it or give the token role Node")
        if self.join_method == "iam" and not self.allow:
            yield FieldViolation(("allow",), "an iam token needs at least one allow rule (aws_account, aws_arn)")
        if self.join_method != "iam" and self.allow:
            yield FieldViolation(("allow",), "allow rules apply to join_method iam only; remove them")
        if self.join_method != "bound_keypair":
            if self.bound_keypair != BoundKeypair():
                yield FieldViolation(("bound_keypair",), "applies to join_method bound_keypair only; remove it")
            return
        onboarding = self.bound_keypair.onboarding
        if bool(onboarding.initial_public_key) == bool(onboarding.registration_secret):
            yield FieldViolation(("bound_keypair", "onboarding"), "set exactly one of initial_public_key (the key "
                                 "`machineid bot keypair create` printed) and registration_secret")
        if onboarding.must_register_before is not None and not onboarding.registration_secret:
            yield FieldViolation(("bound_keypair", "onboarding", "must_register_before"), "applies to "
                                 "registration_secret only; remove it")


@dataclass
class BotSpec:
    roles: list[str] = attr(
        default_factory=list,
        required=True,
        doc="Roles the bot's certificates carry.",
        validators=[v.each(v.RESOURCE_NAME)],
    )
    traits: dict[str, list[str]] = attr(
        default_factory=dict,
        doc="Traits for role templates, e.g. logins: [root] fills {{internal.logins}}.",
    )

    def check(self) -> Iterator[FieldViolation]:
        return iter(())


@dataclass
class BotStatus:
    user_name: str = attr(default="", computed=True, doc="The bot's user, bot-NAME.")
    role_name: str = attr(default="", computed=True, doc="The bot's own role, bot-NAME.")
    generation: int = attr(default=0, computed=True, doc="Generation of the renewable identity; 0 before joining.")
    instance_id: str = attr(default="", computed=True, doc="The join that started the current identity.")
    locked: bool = attr(default=False, computed=True, doc="Locked after a generation mismatch; unlock to reuse.")
    lock_reason: str = attr(default="", computed=True, doc="Why the bot is locked.")
    last_join: datetime | None = attr(default=None, computed=True, doc="Time of the last join.")
    join_token: str = attr(default="", computed=True,
                           doc="The token of the last join: its name (iam, bound_keypair), or for a single-use "
                               "token, whose name is its secret, token- and a hash of it.")
    join_attributes: dict[str, str] = attr(default_factory=dict, computed=True,
                                           doc="What the last delegated join (github, gitlab, kubernetes, oidc) "
                                               "proved: the verified claims that name the joiner (repository, ref, "
                                               "workflow, run; project, pipeline; service account, pod).")
    spent_tokens: list[str] = attr(default_factory=list, computed=True,
                                   doc=f"The single-use tokens its joins spent, by that ID, the latest "
                                       f"{MAX_SPENT_TOKENS} (oldest first): the cluster does not create them again.")


@dataclass
class ProvisionTokenStatus:
    """Set by the cluster at bound_keypair joins; never an input."""

    bound_public_key: str = attr(default="", computed=True,
                                 doc="bound_keypair: the public key the bot joins with now (OpenSSH format).")
    recovery_count: int = attr(default=0, computed=True, doc="bound_keypair: recoveries counted so far.")
    last_rotated_at: datetime | None = attr(default=None, computed=True,
                                            doc="bound_keypair: when the bot last bound a new key.")
    join_sequence: int = attr(default=0, computed=True,
                              doc="bound_keypair: sequence number of the latest join state; the next join must "
                                  "present it.")


@dataclass
class UserSpec:
    roles: list[str] = attr(
        default_factory=list, required=True, doc="Roles of the user.", validators=[v.each(v.RESOURCE_NAME)]
    )
    traits: dict[str, list[str]] = attr(default_factory=dict, doc="Traits for role templates (logins, ...).")
    bot_name: str = attr(default="", computed=True, doc="Set for the user that backs a bot.")

    def check(self) -> Iterator[FieldViolation]:
        return iter(())


@dataclass
class NodeSpec:
    addr: str = attr(default="", required=True, doc="host:port of the node's sshd.")
    hostnames: list[str] = attr(
        default_factory=list,
        doc="More names and addresses the node's host certificate carries, besides NAME, NAME.CLUSTER and addr's "
            "host.",
        validators=[v.each(v.HOST_PRINCIPAL)],
    )
    host_cert_ttl: str = attr(
        default=DEFAULT_HOST_CERT_TTL,
        doc="Lifetime of the host certificates the node gets at join and renewal (it renews at a third left).",
        validators=[v.duration(min_seconds=300, max_seconds=MAX_HOST_CERT_TTL_SECONDS)],
    )
    revocation_max_age: str = attr(
        default=DEFAULT_REVOCATION_MAX_AGE,
        doc="How long the node trusts its last revocation list and labels when it cannot refresh them from the "
            "cluster; past that it refuses every certificate login (fail closed). 0s: never refuse (best effort).",
        validators=[v.duration(min_seconds=0, max_seconds=7 * 86400)],
    )

    def check(self) -> Iterator[FieldViolation]:
        if len(self.hostnames) > MAX_NODE_HOSTNAMES:
            # NAME, NAME.CLUSTER and addr's host join them in the host certificate, which holds at most
            # MAX_HOST_PRINCIPALS: a longer list would leave the node without a certificate at its next renewal.
            yield FieldViolation(("hostnames",), f"has {len(self.hostnames)} entries; at most {MAX_NODE_HOSTNAMES} "
                                 "fit in a host certificate beside the node's own names")
        host, _, port = self.addr.rpartition(":")
        # The host ends up in the bots' ssh_config: only a DNS name or an IP literal, nothing ssh could parse as
        # another directive.
        if self.addr and (not host or not port.isdigit() or not 0 < int(port) < 65536
                          or not _HOST.fullmatch(host)):
            yield FieldViolation(("addr",), f"{self.addr!r} is not host:port (a DNS name or IP address, and a port); "
                                 "write it like 10.0.0.5:22 or [fd00::5]:22")


@kinds.declare(kinds.ROLE)
@dataclass
class Role:
    kind: ClassVar[str]
    metadata: Metadata = field(default_factory=Metadata)
    spec: RoleSpec = field(default_factory=RoleSpec)


MIN_SECRET_TOKEN_LENGTH = 32  # the generated ones: 32 hex digits, 128 bits


@kinds.declare(kinds.TOKEN)
@dataclass
class ProvisionToken:
    kind: ClassVar[str]
    metadata: Metadata = field(default_factory=Metadata)
    spec: ProvisionTokenSpec = field(default_factory=ProvisionTokenSpec)
    status: ProvisionTokenStatus = field(default_factory=ProvisionTokenStatus)

    def check(self) -> Iterator[FieldViolation]:
        name = self.metadata.name
        if self.spec.join_method in SECRET_NAME_JOIN_METHODS and name and len(name) < MIN_SECRET_TOKEN_LENGTH:
            # The name of a token-method token is the secret that joins the bot: a short one can be guessed.
            yield FieldViolation(("metadata", "name"), f"a token-method token's name is its secret: use at least "
                                 f"{MIN_SECRET_TOKEN_LENGTH} characters (128 bits), or leave it out to have one "
                                 "generated")


@kinds.declare(kinds.BOT)
@dataclass
class Bot:
    kind: ClassVar[str]
    metadata: Metadata = field(default_factory=Metadata)
    spec: BotSpec = field(default_factory=BotSpec)
    status: BotStatus = field(default_factory=BotStatus)


@kinds.declare(kinds.USER)
@dataclass
class User:
    kind: ClassVar[str]
    metadata: Metadata = field(default_factory=Metadata)
    spec: UserSpec = field(default_factory=UserSpec)


@dataclass
class NodeStatus:
    """Set by the cluster from the node's joins and heartbeats; never an input."""

    generation: int = attr(default=0, computed=True, doc="Generation of the node's renewable identity; 0 before "
                                                          "joining.")
    instance_id: str = attr(default="", computed=True, doc="The join that started the current identity.")
    last_join: datetime | None = attr(default=None, computed=True, doc="Time of the last join.")
    join_token: str = attr(default="", computed=True,
                           doc="The token of the last join: its name (iam, bound_keypair), or for a single-use "
                               "token, token- and a hash of it.")
    spent_tokens: list[str] = attr(default_factory=list, computed=True,
                                   doc="The single-use tokens its joins spent, by that ID (the latest "
                                       f"{MAX_SPENT_TOKENS}).")
    host_cert_expires: datetime | None = attr(default=None, computed=True,
                                              doc="When the node's current host certificate expires.")
    last_heartbeat: datetime | None = attr(default=None, computed=True, doc="When the node last reported in.")
    heartbeat_interval: str = attr(default="", computed=True,
                                   doc="How often the node said it reports; it is stale after three missed ones.")
    version: str = attr(default="", computed=True, doc="The machineid version the node runs.")
    reported_addr: str = attr(default="", computed=True, doc="The address the node's last heartbeat came from.")
    applied_revision: str = attr(default="", computed=True,
                                 doc="The node object's revision whose labels the node enforces now.")
    revocations_version: int = attr(default=0, computed=True,
                                    doc="Version of the revocation list the node last fetched.")
    locked: bool = attr(default=False, computed=True,
                        doc="Locked after a copied identity or key pair was used (a generation mismatch, a stale "
                            "join state); unlock with `machineid ctl nodes unlock NAME`, then join again.")
    lock_reason: str = attr(default="", computed=True, doc="Why the node is locked.")


@kinds.declare(kinds.NODE)
@dataclass
class Node:
    kind: ClassVar[str]
    metadata: Metadata = field(default_factory=Metadata)
    spec: NodeSpec = field(default_factory=NodeSpec)
    status: NodeStatus = field(default_factory=NodeStatus)


MAX_LOCK_MESSAGE = 1024


@dataclass
class LockTarget:
    """Exactly one of these: what the lock stops."""

    bot: str = attr(default="", doc="A bot: every identity it holds (renewals, calls, joins), whatever instance.",
                    validators=[v.RESOURCE_NAME])
    bot_instance: str = attr(default="", doc="One instance of a bot: the identity started by one join (the bot's "
                             "status.instance_id, `ctl bots ls`); the bot's other instances go on.",
                             validators=[v.INSTANCE_ID])
    token: str = attr(default="", doc="A join token: joins with it are refused, and identities that joined with it "
                      "stop working. Its name (iam, bound_keypair, delegated methods), or for a single-use token "
                      "its ID token-... (as bots' status.join_token shows it; its name is its secret).",
                      validators=[v.RESOURCE_NAME])
    user: str = attr(default="", doc="A user (or a bot's user, bot-NAME): its certificates stop working.",
                     validators=[v.RESOURCE_NAME])
    node: str = attr(default="", doc="A node: its joins, renewals and heartbeats are refused.",
                     validators=[v.RESOURCE_NAME])

    def check(self) -> Iterator[FieldViolation]:
        set_fields = [f.name for f in dataclasses.fields(self) if getattr(self, f.name)]
        if len(set_fields) != 1:
            named = ", ".join(set_fields) if set_fields else "none"
            yield FieldViolation((), "set exactly one of bot, bot_instance, token, user, node (" + named + " set)")


@dataclass
class LockSpec:
    target: LockTarget = attr(default_factory=LockTarget, required=True, replace_on_change=True,
                              doc="What the lock stops (exactly one field).")
    message: str = attr(default="", doc="Why: shown to whoever the lock refuses, and in the audit log.")

    def check(self) -> Iterator[FieldViolation]:
        if len(self.message) > MAX_LOCK_MESSAGE:
            yield FieldViolation(("message",), f"is {len(self.message)} characters; at most {MAX_LOCK_MESSAGE}")


@kinds.declare(kinds.LOCK)
@dataclass
class Lock:
    """Teleport's lock: in force from its creation until metadata.expires (unset: until deleted)."""

    kind: ClassVar[str]
    metadata: Metadata = field(default_factory=Metadata)
    spec: LockSpec = field(default_factory=LockSpec)


Resource = Role | ProvisionToken | Bot | User | Node | Lock

KINDS: dict[str, type[Resource]] = kinds.classes()
# Names accepted on the command line (`get roles`, `rm bot/robot`).
KIND_ALIASES = kinds.ALIASES


def bot_user_name(bot: str) -> str:
    return f"bot-{bot}"


def bot_role_name(bot: str) -> str:
    return f"bot-{bot}"


def name_is_secret(join_method: object) -> bool:
    """Whether a token of this join method is named by its secret. Fails closed: a method that is not a known
    public one (unset, misspelt, not known yet) counts as secret."""
    return join_method not in _PUBLIC_NAME_JOIN_METHODS


def token_id(name: str, join_method: str) -> str:
    """How a token is named where its name would be its secret (single-use tokens): a hash, never the name."""
    if not name_is_secret(join_method):
        return name
    return "token-" + hashlib.sha256(name.encode()).hexdigest()[:24]
