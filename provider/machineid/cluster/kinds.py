"""Roles, tokens, users and nodes: the generic validated, authorized, audited write and read, and each kind's
own rules (a role in use stays, a token's secret name and expiry, a bot's user is the bot's)."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass, field

from machineid.cluster import node_status, records, revocations
from machineid.cluster.access import Access
from machineid.cluster.caller import Caller, target
from machineid.cluster.locks import MAX_LOCKS
from machineid.cluster.objects import Objects, R, check_name, encoded_size
from machineid.cluster.records import LastKeypairJoin
from machineid.cluster.store.base import Item
from machineid.model import codec
from machineid.model import validators as v
from machineid.model.errors import (
    AlreadyExistsError,
    FieldViolation,
    NotFoundError,
    PreconditionError,
    ValidationError,
)
from machineid.model.resources import (
    DEFAULT_TOKEN_TTL,
    Bot,
    Lock,
    Node,
    ProvisionToken,
    Resource,
    Role,
    User,
    name_is_secret,
    token_id,
)

DEFAULT_PAGE_SIZE = 500
MAX_PAGE_SIZE = 1000
MAX_LABEL_FILTERS = 32
# A page ends early once it holds this much (encoded), well under gRPC's 4 MiB per answer; objects are at most
# MAX_OBJECT_BYTES, so a page always holds at least one.
PAGE_BYTES = 2 * 1024 * 1024


@dataclass
class Page:
    """Which page of a list a caller asks for: lists are read a page at a time, so one call's work (and answer)
    stays bounded however many objects there are."""

    size: int = 0
    token: str = ""  # where the previous page ended: the last name it held
    labels: dict[str, str] = field(default_factory=dict)

    def checked_size(self) -> int:
        if not 0 <= self.size <= MAX_PAGE_SIZE:
            raise ValidationError([FieldViolation(("page_size",), f"must be between 1 and {MAX_PAGE_SIZE} (or 0 "
                                                  f"for {DEFAULT_PAGE_SIZE})")])
        if self.token and v.RESOURCE_NAME.check(self.token):
            raise ValidationError([FieldViolation(("page_token",), "is not a token this server gave out; pass the "
                                                  "previous page's next_page_token, or nothing for the first page")])
        if len(self.labels) > MAX_LABEL_FILTERS:
            raise ValidationError([FieldViolation(("labels",), f"at most {MAX_LABEL_FILTERS} labels to filter by")])
        return self.size or DEFAULT_PAGE_SIZE

    def matches(self, obj: Resource) -> bool:
        labels = obj.metadata.labels
        return all(labels.get(k) == val for k, val in self.labels.items())


class Kinds:
    def __init__(self, objects: Objects, access: Access) -> None:
        self.objects = objects
        self.access = access

    # ------------------------------------------------------------------ generic
    def upsert(self, caller: Caller, obj: R, create_only: bool, prepare: Callable[[R], None] | None = None) -> R:
        codec.validate(obj)
        kind, name, revision = obj.kind, obj.metadata.name, obj.metadata.revision
        # Authorize before anything is looked up, and outside the transaction so that a denial's audit record is
        # not rolled back with it.
        self.access.authorize_write(caller, kind)
        if prepare:
            prepare(obj)
        objects = self.objects
        self.access.check(caller, kind, "update" if objects.exists(kind, name) else "create")
        with objects.backend.transaction():
            try:
                current: Item | None = objects.backend.get(kind, name)
            except NotFoundError:
                current = None
            exists = current is not None
            verb = "update" if exists else "create"
            self.access.check(caller, kind, verb)
            if exists and create_only:
                raise AlreadyExistsError(f"{target(obj)} already exists; update it instead (or `create --force`)")
            if revision and not exists:
                raise NotFoundError(f"{target(obj)} no longer exists (it was deleted); drop metadata.revision to "
                                    "create it again")
            if isinstance(obj, ProvisionToken | Node):
                # Status is the cluster's: what the writer sent is replaced by what is stored, in this transaction
                # (a join or heartbeat that commits meanwhile must not be undone).
                obj.status = objects.load(type(obj), current).status if current else type(obj.status)()
            if isinstance(obj, ProvisionToken) and not exists:
                self._refuse_spent(obj)
            if current is not None:
                stored = objects.load(type(obj), current)
                if (not revision or revision == current.revision) and objects.value(obj) == objects.value(stored):
                    return stored  # identical content: no new revision, nothing to audit
                obj.metadata.created = current.created
                result = objects.update(obj, revision)
            else:
                result = objects.create(obj)
            self._revoke_for(result)
        objects.audit(caller, f"{kind}.{verb}", target(result), revision=result.metadata.revision)
        return result

    def _revoke_for(self, written: Resource) -> None:
        """What a write revokes (revocations.py), in its transaction: a user's expiry and the certificates its
        roles no longer grant; a role's holders' certificates it no longer grants."""
        if isinstance(written, User):
            revocations.user_written(self.objects, written, self.access.roles)
        elif isinstance(written, Role):
            revocations.role_changed(self.objects, written.metadata.name, self.access.roles)
        elif isinstance(written, Lock):
            revocations.lock_written(self.objects, written)

    def read(self, caller: Caller, cls: type[R], name: str) -> R:
        self.access.check(caller, cls.kind, "read")
        check_name(name)
        return self.objects.get(cls, name)

    def list_page(self, caller: Caller, cls: type[R], page: Page,
                  keep: Callable[[R], bool] | None = None) -> tuple[list[R], str]:
        """One page of the objects the caller may list (and `keep` keeps), and where the next page starts."""
        self.access.check(caller, cls.kind, "list")
        size = page.checked_size()
        out: list[R] = []
        after, budget = page.token, 10 * size  # a filtered list may end a page early, never scan without end
        room = PAGE_BYTES  # and a page of large objects ends early too: an answer must fit in a gRPC message
        while len(out) < size:
            items = self.objects.backend.list_page(cls.kind, after, size)
            for item in items:
                obj = self.objects.load(cls, item)
                if page.matches(obj) and (keep is None or keep(obj)):
                    out.append(obj)
                    room -= encoded_size(item.value)
                    if len(out) == size or room <= 0:
                        return out, obj.metadata.name
            if len(items) < size:
                return out, ""
            after = items[-1].name
            budget -= len(items)
            if budget <= 0:
                return out, after
        return out, ""

    def delete(self, caller: Caller, kind: str, name: str, revision: str, what: str = "") -> None:
        self.access.check(caller, kind, "delete")
        check_name(name)
        self.objects.backend.delete(kind, name, revision)
        self.objects.audit(caller, f"{kind}.delete", what or f"{kind}/{name}")

    # ------------------------------------------------------------------ roles
    def delete_role(self, caller: Caller, name: str, revision: str = "") -> None:
        self.access.check(caller, "role", "delete")
        check_name(name)
        with self.objects.backend.transaction():
            self.objects.backend.get("role", name)
            users = [u.metadata.name for u in self.objects.list(User) if name in u.spec.roles]
            if users:
                raise PreconditionError(f'role "{name}" is used by {", ".join(users)}; remove it from them first')
            self.delete(caller, "role", name, revision)

    # ------------------------------------------------------------------ tokens
    def _prepare_token(self, token: ProvisionToken) -> None:
        now = self.objects.clock()
        onboarding = token.spec.bound_keypair.onboarding
        if onboarding.registration_secret and not v.is_secret_hash(onboarding.registration_secret):
            onboarding.registration_secret = v.secret_hash(onboarding.registration_secret)  # never stored in clear

        if token.spec.join_method == "token" and token.metadata.expires is None:
            token.metadata.expires = now + v.parse_duration(DEFAULT_TOKEN_TTL)
        if token.metadata.expires is not None and token.metadata.expires <= now:
            when = codec.format_time(token.metadata.expires)
            raise ValidationError([FieldViolation(("metadata", "expires"), f"{when} is in the past; set a future "
                                                  "time or leave it out (1h)")])

    def _refuse_spent(self, token: ProvisionToken) -> None:
        """A single-use token its bot or node has joined with (the cluster deleted it then) is not created again:
        whoever saw the spent secret could join with it."""
        if token.spec.join_method != "token":
            return
        if token.spec.node_name:
            kind, name = "node", token.spec.node_name
            spent = node_status.get(self.objects, name).spent_tokens
        elif token.spec.bot_name:
            kind, name = "bot", token.spec.bot_name
            try:
                spent = self.objects.get(Bot, name).status.spent_tokens
            except NotFoundError:
                return
        else:
            return
        if token_id(token.metadata.name, "token") in spent:
            raise PreconditionError(f'this token was already used by {kind} "{name}" to join, and a used single-use '
                                    "token is not created again: choose another name, or leave the name out so "
                                    "that the cluster picks one")

    def upsert_token(self, caller: Caller, token: ProvisionToken, create_only: bool = False) -> ProvisionToken:
        if not token.metadata.name:
            if token.spec.join_method != "token":
                article = "an" if token.spec.join_method == "iam" else "a"
                raise ValidationError([FieldViolation(("metadata", "name"), f"is required for {article} "
                                                      f"{token.spec.join_method} token")])
            token.metadata.name = secrets.token_hex(16)  # the secret: chosen by the cluster
        return self.upsert(caller, token, create_only, self._prepare_token)

    def delete_token(self, caller: Caller, name: str, revision: str = "") -> None:
        self.access.check(caller, "token", "delete")
        check_name(name)
        token = self.objects.get(ProvisionToken, name)
        self.delete(caller, "token", name, revision, target(token))
        records.delete(self.objects, LastKeypairJoin, name)  # a bound_keypair token's last join goes with it

    # ------------------------------------------------------------------ users
    def upsert_user(self, caller: Caller, user: User, create_only: bool = False) -> User:
        self.access.authorize_write(caller, "user")  # before any lookup: who may not write users learns nothing
        name = user.metadata.name
        if self.objects.exists("user", name):
            current = self.objects.get(User, name)
            if current.spec.bot_name:
                raise PreconditionError(f'user "{name}" belongs to a bot; update the bot instead')
            self._keep_an_administrator(current, user)
        user.spec.bot_name = ""
        return self.upsert(caller, user, create_only,
                           lambda u: self.access.check_roles_exist(u.spec.roles, ("spec", "roles")))

    # ------------------------------------------------------------------ locks
    def upsert_lock(self, caller: Caller, lock: Lock, create_only: bool = False) -> Lock:
        self.access.authorize_write(caller, "lock")  # before any lookup
        codec.validate(lock)
        t = lock.spec.target
        own_bot = caller.ident.bot_name if caller.ident is not None else ""
        if (t.user and t.user == caller.user) or (t.bot and t.bot == own_bot):
            raise PreconditionError("this lock would lock out the caller itself; lock it from another identity")
        if t.token and self.objects.exists("token", t.token):
            token = self.objects.get(ProvisionToken, t.token)
            if name_is_secret(token.spec.join_method):
                # The name is the join secret: a lock is readable by whoever may list locks.
                raise ValidationError([FieldViolation(("spec", "target", "token"), "is a single-use token's "
                                                      "secret; lock it by its ID "
                                                      f"{token_id(t.token, token.spec.join_method)} instead")])
        if not self.objects.exists("lock", lock.metadata.name) and \
                self.objects.backend.count("lock") >= MAX_LOCKS:
            raise PreconditionError(f"the cluster holds {MAX_LOCKS} locks, the most it keeps; remove expired or "
                                    "unneeded ones first (`machineid ctl get locks`)")
        try:
            return self.upsert(caller, lock, create_only)
        finally:
            self.objects.locks.invalidate()

    def delete_lock(self, caller: Caller, name: str, revision: str = "") -> None:
        self.access.check(caller, "lock", "delete")
        check_name(name)
        try:
            with self.objects.backend.transaction():
                self.delete(caller, "lock", name, revision)
                revocations.lock_removed(self.objects, name)
        finally:
            self.objects.locks.invalidate()

    def delete_user(self, caller: Caller, name: str, revision: str = "") -> None:
        self.access.check(caller, "user", "delete")
        check_name(name)
        with self.objects.backend.transaction():
            user = self.objects.get(User, name)
            if user.spec.bot_name:
                raise PreconditionError(f'user "{name}" belongs to bot "{user.spec.bot_name}"; remove the bot '
                                        "instead")
            self._keep_an_administrator(user, None)
            self.delete(caller, "user", name, revision)
            revocations.gone(self.objects, name)

    def _administers(self, user: User) -> bool:
        """Whether the user (no bot's) may write users now: with that, whatever else is missing can be given."""
        if user.spec.bot_name or self.objects.expired(user):
            return False
        return any(self.access.roles_allow(user.spec.roles, "user", verb) for verb in ("create", "update"))

    def _keep_an_administrator(self, current: User, replacement: User | None) -> None:
        """Refuses a write that leaves no user able to write users: the cluster could not be administered (the
        admin identity of the server's data dir included) until a restart re-created user admin."""
        if not self._administers(current) or (replacement is not None and self._administers(replacement)):
            return
        after = ""
        while page := self.objects.backend.list_page("user", after, DEFAULT_PAGE_SIZE):
            for item in page:
                if item.name != current.metadata.name and self._administers(self.objects.load(User, item)):
                    return
            after = page[-1].name
        what = "deleting" if replacement is None else "this change to"
        raise PreconditionError(f'user "{current.metadata.name}" is the last user who can write users: {what} it '
                                "would leave nobody able to administer the cluster. Give another user a role that "
                                "may write users (such as editor) first")

    # ------------------------------------------------------------------ nodes
    def get_node(self, caller: Caller, name: str) -> Node:
        node = self.read(caller, Node, name)
        if self.objects.expired(node) or not self.access.node_allowed(self.access.roles(caller.roles), node):
            raise NotFoundError(f'node "{name}" not found')  # do not leak nodes the caller cannot reach
        return node_status.with_status(self.objects, node)

    def list_nodes(self, caller: Caller, page: Page) -> tuple[list[Node], str]:
        """Only the nodes the caller's roles reach, and none that expired; each with its status."""
        roles = self.access.roles(caller.roles)
        nodes, next_token = self.list_page(caller, Node, page,
                                           lambda n: not self.objects.expired(n) and self.access.node_allowed(roles, n))
        return [node_status.with_status(self.objects, n) for n in nodes], next_token

    def upsert_node(self, caller: Caller, node: Node, create_only: bool = False) -> Node:
        """The generic write (the status stays the cluster's, in its own record), answered with the status."""
        return node_status.with_status(self.objects, self.upsert(caller, node, create_only))

    def delete_node(self, caller: Caller, name: str, revision: str = "") -> None:
        """The node goes with its status and its join tokens (as a bot's do): its identity stops working, a token
        made for it cannot join a node registered later under the name, and that node starts over (joins
        again)."""
        self.access.check(caller, "node", "delete")
        check_name(name)
        backend = self.objects.backend
        with backend.transaction():
            backend.delete("node", name, revision)
            node_status.delete(self.objects, name)
            after = ""
            while page := backend.list_page("token", after, 1000):
                for item in page:
                    if (item.value.get("spec") or {}).get("node_name") == name:
                        backend.delete("token", item.name)
                        records.delete(self.objects, LastKeypairJoin, item.name)
                after = page[-1].name
        self.objects.audit(caller, "node.delete", f"node/{name}")


    def unlock_node(self, caller: Caller, name: str) -> Node:
        """As for a bot: a lock means two holders of the node's identity or key pair, and neither may simply renew
        on. Every renewable identity of the node is superseded; it joins again (a new single-use token, or its iam
        or bound_keypair token)."""
        self.access.check(caller, "node", "update")
        check_name(name)
        objects = self.objects
        with objects.backend.transaction():
            node = objects.get(Node, name)
            status = node_status.get(objects, name)
            if not status.locked:
                raise PreconditionError(f'node "{name}" is not locked; nothing to unlock')
            status.locked = False
            status.lock_reason = ""
            status.instance_id = ""
            status.generation = 0
            node_status.put(objects, name, status)
            records.delete(objects, node_status.NodeLastRenewal, name)
        objects.audit(caller, "node.unlock", f"node/{name}")
        node.status = status
        return node
