"""Who can do what, before and after a plan: the cluster's objects as they are, the plan's changes applied on top,
and for every bot the access its roles give (by model/grants.py, as the cluster will issue it)."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from machineid.model import grants
from machineid.model import validators as v
from machineid.model.resources import Bot, Node, ProvisionToken, Role, bot_role_name
from machineid.review.plan import Plan


@dataclass
class World:
    roles: dict[str, Role] = field(default_factory=dict)
    bots: dict[str, Bot] = field(default_factory=dict)
    tokens: dict[str, ProvisionToken] = field(default_factory=dict)
    nodes: list[Node] = field(default_factory=list)
    where: dict[tuple[str, str], str] = field(default_factory=dict)  # (kind, name) -> plan address, when planned

    def apply(self, plan: Plan) -> World:
        after = copy.deepcopy(self)
        for ch in plan.changes:
            kind = ch.rdef.kind
            tables: dict[str, dict[str, Any]] = {"role": after.roles, "bot": after.bots, "token": after.tokens}
            table = tables[kind]
            if ch.before is not None and ch.action in ("delete", "replace"):
                table.pop(ch.before.metadata.name, None)
            if ch.after is not None and ch.action in ("create", "update", "replace"):
                table[ch.after.metadata.name or ch.address] = ch.after
                after.where[(kind, ch.after.metadata.name)] = ch.address
            elif ch.after is not None and ch.action == "same" and ch.after.metadata.name not in table:
                table[ch.after.metadata.name] = ch.after
        return after


@dataclass
class Access:
    """What one bot can do; every field comparable, so a change is a set difference."""

    logins: dict[str, list[str]]  # node name -> logins on it
    any_node_logins: list[str]  # logins its certificates carry (for nodes not registered yet)
    api: list[str]  # resource:verb
    ttl_cap: str
    join_methods: list[str]
    missing_roles: list[str]


def access_of(world: World, bot: Bot, now: datetime) -> Access:
    names = [bot_role_name(bot.metadata.name), *bot.spec.roles]
    roles: list[Role] = []
    missing: list[str] = []
    for n in names:
        role = world.roles.get(n) or (grants.bot_role(bot.metadata.name) if n == bot_role_name(bot.metadata.name)
                                      else None)
        if role is None:
            missing.append(n)
        elif role.metadata.expires is None or role.metadata.expires > now:
            roles.append(role)
    traits = bot.spec.traits
    node_access = grants.node_access(roles, traits)
    per_node = {}
    for node in world.nodes:
        got = node_access.logins_on(node.metadata.labels)
        if got:
            per_node[node.metadata.name] = sorted(got)
    methods = sorted({t.spec.join_method for t in world.tokens.values() if t.spec.bot_name == bot.metadata.name})
    cap = grants.ttl_cap(roles, grants.MAX_RENEWABLE_TTL)
    return Access(logins=per_node, any_node_logins=sorted(grants.logins(roles, traits)), api=grants.api_rules(roles),
                  ttl_cap=v.format_duration(cap) if cap else "", join_methods=methods, missing_roles=missing)


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
    for attr in ("any_node_logins", "api", "join_methods"):
        extra = [x for x in getattr(a, attr) if b is None or x not in getattr(b, attr)]
        if extra:
            out[attr] = extra
    return out


def impact(before: World, after: World, now: datetime) -> list[BotImpact]:
    """Every bot whose access the plan changes (also through a role or token it did not declare)."""
    out: list[BotImpact] = []
    for name in sorted(set(before.bots) | set(after.bots)):
        old = access_of(before, before.bots[name], now) if name in before.bots else None
        new = access_of(after, after.bots[name], now) if name in after.bots else None
        if old == new:
            continue
        status = "created" if old is None else "deleted" if new is None else "changed"
        out.append(BotImpact(name, status, old, new))
    return out
