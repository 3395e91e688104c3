"""Who can do what, before and after a plan: the cluster's objects as they are, the plan's changes applied on top,
and for every bot the access its roles give (by model/grants.py, as the cluster will issue it)."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from machineid.iac.plan import Change, Plan
from machineid.model import grants
from machineid.model import validators as v
from machineid.model.errors import Path, render_path
from machineid.model.resources import Bot, Lock, Node, ProvisionToken, Role, bot_role_name
from machineid.review import delegated


@dataclass
class World:
    """Objects by name (by plan address while a planned name is known only at apply)."""

    roles: dict[str, Role] = field(default_factory=dict)
    bots: dict[str, Bot] = field(default_factory=dict)
    tokens: dict[str, ProvisionToken] = field(default_factory=dict)
    nodes: dict[str, Node] = field(default_factory=dict)
    locks: dict[str, Lock] = field(default_factory=dict)
    planned: dict[tuple[str, str], Change] = field(default_factory=dict)  # (kind, name) -> the plan's change

    def table(self, kind: str) -> dict[str, Any]:
        tables: dict[str, dict[str, Any]] = {"role": self.roles, "bot": self.bots, "token": self.tokens,
                                             "node": self.nodes, "lock": self.locks}
        return tables[kind]

    def apply(self, plan: Plan) -> World:
        after = copy.deepcopy(self)
        for ch in plan.changes:
            table = after.table(ch.rdef.kind)
            if ch.before is not None and ch.action in ("delete", "replace"):
                table.pop(ch.before.metadata.name, None)
            if ch.after is None:
                continue
            if ch.action in ("create", "update", "replace") or ch.key not in table:
                table[ch.key] = ch.after
            after.planned[(ch.rdef.kind, ch.key)] = ch  # an unchanged object managed by the plan is named by it
        return after

    def where(self, kind: str, name: str) -> str:
        """How a report names an object: its plan address when the plan manages it, else the cluster object."""
        ch = self.planned.get((kind, name))
        if ch is not None:
            return ch.address
        return f"{kind}/{name} (on the cluster)" if name in self.table(kind) else f"{kind}/{name} (not written yet)"

    def unknown(self, kind: str, name: str, prefix: Path = ()) -> list[Path]:
        """The object's input paths known only at apply (at, under or above prefix)."""
        ch = self.planned.get((kind, name))
        return ch.unknown_at(prefix) if ch is not None else []


def held_roles(world: World, bot: Bot, now: datetime) -> tuple[dict[str, Role], list[str]]:
    """The roles a bot's certificates carry, by their key in the world: its own role bot-NAME (as the cluster
    creates it, until written) and its roles; expired ones grant nothing. And the names that exist nowhere."""
    own = bot_role_name(bot.metadata.name)
    roles: dict[str, Role] = {}
    missing: list[str] = []
    for n in [own, *bot.spec.roles]:
        role = world.roles.get(n) or (grants.bot_role(bot.metadata.name) if n == own else None)
        if role is None:
            missing.append(n)
        elif role.metadata.expires is None or role.metadata.expires > now:
            roles[n] = role
    return roles, missing


@dataclass
class Access:
    """What one bot can do; every field comparable, so a change is a set difference."""

    logins: dict[str, list[str]]  # node name -> logins on it
    any_node_logins: list[str]  # logins its certificates carry (for nodes not registered yet)
    api: list[str]  # resource:verb
    ttl_cap: str
    join_methods: list[str]
    joiners: list[str]  # who may join as it through a delegated token, in plain words (review/delegated.py)
    missing_roles: list[str]
    pending: list[str] = field(default_factory=list)  # what it depends on that is known only at apply


def access_of(world: World, bot: Bot, now: datetime, key: str) -> Access:
    held, missing = held_roles(world, bot, now)
    roles = list(held.values())
    traits = bot.spec.traits
    node_access = grants.node_access(roles, traits)
    per_node = {}
    for node in world.nodes.values():
        got = node_access.logins_on(node.metadata.labels)
        if got:
            per_node[node.metadata.name] = sorted(got)
    name = bot.metadata.name
    tokens = {k: t for k, t in world.tokens.items() if name and t.spec.bot_name == name}
    methods = sorted({t.spec.join_method for t in tokens.values()})
    cap = grants.ttl_cap(roles, grants.MAX_RENEWABLE_TTL)
    pending = [(world.where("bot", key), u) for u in world.unknown("bot", key, ("roles",))
               + world.unknown("bot", key, ("traits",))]
    pending += [(world.where("role", rkey), u) for rkey in held for u in world.unknown("role", rkey)]
    joiners: list[str] = []
    for tkey, token in tokens.items():
        pending += [(world.where("token", tkey), u) for u in world.unknown("token", tkey, ("join_method",))]
        if token.metadata.expires is not None and token.metadata.expires <= now:
            continue  # admits no one
        found = delegated.read(token, world.unknown("token", tkey))
        if found is not None:
            joiners += delegated.words(found, name, token.metadata.name or world.where("token", tkey))
            pending += [(world.where("token", tkey), u) for u in world.unknown("token", tkey, (found.method,))]
    return Access(logins=per_node, any_node_logins=sorted(grants.logins(roles, traits)), api=grants.api_rules(roles),
                  ttl_cap=v.format_duration(cap) if cap else "", join_methods=methods, joiners=sorted(joiners),
                  missing_roles=missing, pending=[f"{where} {render_path(u)}" for where, u in pending])


@dataclass
class BotImpact:
    name: str
    status: str  # created, deleted, changed
    before: Access | None
    after: Access | None

    def gained(self) -> dict[str, Any]:
        return _difference(self.after, self.before)

    def lost(self) -> dict[str, Any]:
        return _difference(self.before, self.after)


def _difference(a: Access | None, b: Access | None) -> dict[str, Any]:
    if a is None:
        return {}
    out: dict[str, Any] = {}
    pairs = {(lg, node) for node, lgs in a.logins.items() for lg in lgs}
    if b is not None:
        pairs -= {(lg, node) for node, lgs in b.logins.items() for lg in lgs}
    if pairs:
        out["logins_on_nodes"] = [f"{lg}@{node}" for lg, node in sorted(pairs, key=lambda p: (p[0], p[1]))]
    for attr in ("any_node_logins", "api", "join_methods", "joiners"):
        extra = [x for x in getattr(a, attr) if b is None or x not in getattr(b, attr)]
        if extra:
            out[attr] = extra
    return out


def impact(before: World, after: World, now: datetime) -> list[BotImpact]:
    """Every bot whose access the plan changes (also through a role or token it did not declare, its own role
    bot-NAME included), or may change through a value known only at apply."""
    out: list[BotImpact] = []
    for name in sorted(set(before.bots) | set(after.bots)):
        old = access_of(before, before.bots[name], now, name) if name in before.bots else None
        new = access_of(after, after.bots[name], now, name) if name in after.bots else None
        if old == new:
            continue
        status = "created" if old is None else "deleted" if new is None else "changed"
        out.append(BotImpact(name, status, old, new))
    return out


@dataclass
class TokenJoiners:
    """Who may join through a delegated token the plan writes, whether or not that changes its bot's access."""

    resource: str  # the token's plan address
    bot: str
    method: str
    joiners: list[str]


def _token_joiners(ch: Change, now: datetime) -> TokenJoiners | None:
    token: ProvisionToken = ch.after
    found = delegated.read(token, ch.unknown)
    if found is None:
        return None
    expired = token.metadata.expires is not None and token.metadata.expires <= now
    bot = token.spec.bot_name
    return TokenJoiners(ch.address, bot, found.method,
                        [] if expired else delegated.words(found, bot, token.metadata.name or ch.address))


# The kinds whose objects say who may join as a bot.
_JOINERS = {"token": _token_joiners}


def written_tokens(plan: Plan, now: datetime) -> list[TokenJoiners]:
    """The delegated tokens the plan creates or changes, with who may join through them."""
    out: list[TokenJoiners] = []
    for ch in plan.changes:
        describe = _JOINERS.get(ch.rdef.kind)
        if describe is None or ch.after is None or ch.action not in ("create", "update", "replace"):
            continue
        found = describe(ch, now)
        if found is not None:
            out.append(found)
    return out


def sees_every_node(roles: list[Role]) -> bool:
    """Whether a caller with these roles is shown every node: the cluster lists only the nodes a caller's roles
    reach, so a review by any other identity sees part of the fleet."""
    everything = any(r.spec.allow.node_labels.get("*") == ["*"] for r in roles)
    return everything and not any(r.spec.deny.node_labels for r in roles)
