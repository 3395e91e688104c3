"""The resource kinds, declared once.

Everything that lists kinds derives from this table: the model's kind names and the rule resources roles speak
of, the names the CLI accepts (`get roles`, `rm bot/x`), the YAML document versions, the client's RPC names and
request fields, the cluster's generic servicer methods, and the tables of the CLI and the providers. A model class
joins its declaration with `@kinds.declare(kinds.ROLE)`.

Adding a kind: a KindDef here, its model class (declared with it), its messages and RPCs in proto/, and its rules
in the cluster (cluster/kinds.py).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

C = TypeVar("C", bound=type[Any])


@dataclass(frozen=True)
class KindDef:
    name: str  # the kind: stored, in YAML `kind`, in role rules, in audit records ("role.create")
    plural: str  # `ctl get roles`; the list field of its List answer
    doc_version: str  # the `version` its YAML documents carry (Teleport's, for the kinds Teleport has)
    message: str  # its protobuf message in proto/machineid/v1/types.proto
    rpc: str  # the stem of its RPCs: Upsert<rpc>, Get<rpc>, List<rpc>s, Delete<rpc>
    doc: str
    # Written by the generic Upsert RPC (a bot is created and updated by RPCs of its own, with its user and role).
    generic_upsert: bool = True

    @property
    def aliases(self) -> tuple[str, ...]:
        return (self.name, self.plural)


ROLE = KindDef("role", "roles", "v5", "Role", "Role", "What a user or bot may do: logins, nodes, API rules.")
TOKEN = KindDef("token", "tokens", "v2", "ProvisionToken", "Token", "A join token: how a bot proves itself.")
BOT = KindDef("bot", "bots", "v1", "Bot", "Bot", "A machine identity with roles.", generic_upsert=False)
USER = KindDef("user", "users", "v2", "User", "User", "A person (or a bot's user) with roles.")
NODE = KindDef("node", "nodes", "v2", "Node", "Node", "An SSH server bots and users log in to.")
LOCK = KindDef("lock", "locks", "v2", "Lock", "Lock", "Stops a bot, bot instance, join token, user or node from "
               "authenticating until it is removed or expires.")

REGISTRY: tuple[KindDef, ...] = (ROLE, TOKEN, BOT, USER, NODE, LOCK)
BY_NAME: dict[str, KindDef] = {k.name: k for k in REGISTRY}
ALIASES: dict[str, str] = {alias: k.name for k in REGISTRY for alias in k.aliases}
# What role rules speak of besides the kinds: certificates, the CAs and the audit log.
OTHER_RULE_RESOURCES = ("cert_authority", "user_cert", "host_cert", "event", "bot_instance")
RULE_RESOURCES: tuple[str, ...] = (*BY_NAME, *OTHER_RULE_RESOURCES)

_CLASSES: dict[str, type[Any]] = {}


def declare(kind: KindDef) -> Callable[[C], C]:
    """Class decorator: the model class of a kind (its `kind` class attribute is the kind's name)."""

    def attach(cls: C) -> C:
        if kind.name in _CLASSES:
            raise TypeError(f"kind {kind.name} is declared twice")
        cls.kind = kind.name
        _CLASSES[kind.name] = cls
        return cls

    return attach


def classes() -> dict[str, type[Any]]:
    """Kind name -> model class, in the registry's order (every kind must have declared its class)."""
    missing = [k.name for k in REGISTRY if k.name not in _CLASSES]
    if missing:
        raise TypeError(f"no model class declared for kind {', '.join(missing)}")
    return {k.name: _CLASSES[k.name] for k in REGISTRY}


def resolve(text: str) -> str | None:
    """The kind a name on the command line means (`roles`, `Role`), or None."""
    return ALIASES.get(text.lower())
