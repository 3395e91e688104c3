"""What a join token joins and a renewable identity speaks for: a bot or a node.

Both keep the same join state (generation, instance, last join, spent single-use tokens, lock), so joins, renewals
and locks are written once for both (joins.py, keypairs.py, renewal.py) and follow the same rules: a single-use
token joins once, a copied key pair or an older generation renewing locks the holder. This module is where they
differ: where that state is kept (a bot's in the bot object; a node's in its status record, see node_status.py),
which identity and certificates they get (a bot: its roles' SSH and TLS certificates; a node: a TLS identity that
may call only the node RPCs), and how messages and the audit log name them.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import ClassVar

from machineid.api import certs
from machineid.cluster import node_status, records, revocations
from machineid.cluster.access import check_unlocked
from machineid.cluster.issuance import Grant, IssuedCerts, Issuer
from machineid.cluster.objects import Objects
from machineid.cluster.records import LastRenewal
from machineid.model.errors import NotFoundError, PermissionDeniedError
from machineid.model.resources import Bot, BotStatus, NodeStatus, ProvisionToken, bot_user_name, token_id


class Holder(ABC):
    kind: ClassVar[str]
    name: str

    @property
    @abstractmethod
    def status(self) -> BotStatus | NodeStatus: ...

    @property
    def target(self) -> str:
        return f"{self.kind}/{self.name}"

    @abstractmethod
    def save(self, objects: Objects) -> None:
        """Store the changed join state (inside the caller's transaction)."""

    @abstractmethod
    def identity(self, issuer: Issuer, renewable: bool) -> tuple[certs.CertIdentity, dict[str, list[str]]]: ...

    @abstractmethod
    def issue(self, issuer: Issuer, key: certs.PublicKey, ident: certs.CertIdentity, traits: dict[str, list[str]],
              grant: Grant) -> IssuedCerts: ...

    @abstractmethod
    def last_renewal_record(self) -> type[LastRenewal]: ...

    def last_renewal(self, objects: Objects) -> LastRenewal | None:
        return records.get(objects, self.last_renewal_record(), self.name)

    def put_last_renewal(self, objects: Objects, last: LastRenewal) -> None:
        records.put(objects, self.name, self.last_renewal_record()(**vars(last)))

    def lock(self, reason: str) -> None:
        self.status.locked = True
        self.status.lock_reason = reason

    def check_unlocked(self) -> None:
        check_unlocked(self.kind, self.name, self.status)


class BotHolder(Holder):
    kind = "bot"

    def __init__(self, bot: Bot) -> None:
        self.bot = bot
        self.name = bot.metadata.name

    @property
    def status(self) -> BotStatus:
        return self.bot.status

    def save(self, objects: Objects) -> None:
        self.bot = objects.update(self.bot)
        if self.bot.status.locked:  # every SSH certificate the bot holds stops at the nodes' next sync
            revocations.locked(objects, bot_user_name(self.name), f"bot locked: {self.bot.status.lock_reason}")

    def identity(self, issuer: Issuer, renewable: bool) -> tuple[certs.CertIdentity, dict[str, list[str]]]:
        return issuer.bot_identity(self.bot, renewable)

    def issue(self, issuer: Issuer, key: certs.PublicKey, ident: certs.CertIdentity, traits: dict[str, list[str]],
              grant: Grant) -> IssuedCerts:
        return issuer.issue_granted(key, ident, traits, grant)

    def last_renewal_record(self) -> type[LastRenewal]:
        return LastRenewal


class NodeHolder(Holder):
    kind = "node"

    def __init__(self, name: str, status: NodeStatus) -> None:
        self.name = name
        self._status = status

    @property
    def status(self) -> NodeStatus:
        return self._status

    def save(self, objects: Objects) -> None:
        node_status.put(objects, self.name, self._status)

    def identity(self, issuer: Issuer, renewable: bool) -> tuple[certs.CertIdentity, dict[str, list[str]]]:
        return issuer.node_identity(self.name, self._status), {}

    def issue(self, issuer: Issuer, key: certs.PublicKey, ident: certs.CertIdentity, traits: dict[str, list[str]],
              grant: Grant) -> IssuedCerts:
        return issuer.issue_node_granted(key, ident, grant)

    def last_renewal_record(self) -> type[LastRenewal]:
        return node_status.NodeLastRenewal


def of_token(objects: Objects, token: ProvisionToken) -> Holder:
    """The bot or node a join token joins, refused when it does not exist or is locked."""
    if "Node" in token.spec.roles:
        holder: Holder = node(objects, token.spec.node_name)
    elif "Bot" in token.spec.roles and token.spec.bot_name:
        holder = bot(objects, token.spec.bot_name)
    else:
        raise PermissionDeniedError("the join token joins neither a bot nor a node")
    holder.check_unlocked()
    check_locks(objects, holder, token)
    return holder


def check_locks(objects: Objects, holder: Holder, token: ProvisionToken) -> None:
    """A join is refused while a lock is in force on its token, its bot (or the bot's user) or its node."""
    bot_name = holder.name if holder.kind == "bot" else ""
    objects.locks.check(token=token_id(token.metadata.name, token.spec.join_method), bot=bot_name,
                        user=bot_user_name(bot_name) if bot_name else "",
                        node=holder.name if holder.kind == "node" else "")


def bot(objects: Objects, name: str) -> BotHolder:
    try:
        return BotHolder(objects.get(Bot, name))
    except NotFoundError:
        raise PermissionDeniedError(f'bot "{name}" of this token does not exist') from None


def node(objects: Objects, name: str) -> NodeHolder:
    if not objects.exists("node", name):
        raise PermissionDeniedError(f'node "{name}" of this token is not registered; register it first '
                                    f"(`machineid ctl nodes add {name} --addr HOST:PORT`, or a Node resource)")
    return NodeHolder(name, node_status.get(objects, name))


def of_identity(objects: Objects, ident: certs.CertIdentity) -> Holder | None:
    """The holder of a renewable identity (looked up without a lock check: a renewal decides what a lock means),
    or None for an identity that speaks for neither."""
    if ident.node_name:
        if not objects.exists("node", ident.node_name):
            return None
        return NodeHolder(ident.node_name, node_status.get(objects, ident.node_name))
    if ident.bot_name:
        return BotHolder(objects.get(Bot, ident.bot_name))
    return None
