"""A node the plan creates, changes or deletes, as an access change: which bots become able (or unable) to log in
to it, as which logins, and why (its labels now match, or no longer match, which roles' node_labels; a deny that
matches wins).

Who may log in is decided by model/grants.py and model/node_access.py, as the cluster issues certificates and the
node's principals helper grants logins: the review and the node decide alike. The reasons are worked out per role
with the same matcher (labels_match)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from machineid.iac.plan import Change, Plan
from machineid.model import grants
from machineid.model.errors import render_path
from machineid.model.node_access import NodeAccess, labels_match
from machineid.model.resources import Bot, Role
from machineid.review.impact import World, held_roles

Labels = dict[str, str]


def node_access(world: World, bot: Bot, now: datetime) -> NodeAccess:
    """What the bot's certificates carry about nodes (grants.node_access, as the cluster issues them)."""
    held, _ = held_roles(world, bot, now)
    return grants.node_access(list(held.values()), bot.spec.traits)


def node_accesses(world: World, now: datetime) -> dict[str, NodeAccess]:
    """Every bot's, by its key in the world: worked out once for a check over many nodes."""
    return {key: node_access(world, bot, now) for key, bot in world.bots.items()}


def _granting(world: World, bot: Bot, login: str, labels: Labels | None, now: datetime) -> list[str]:
    """The roles the bot holds whose allow gives this login on nodes with these labels."""
    if labels is None:
        return []
    held, _ = held_roles(world, bot, now)
    denied = set(grants.expand_logins((lg for r in held.values() for lg in r.spec.deny.logins), bot.spec.traits))
    return [name for name, r in held.items() if login not in denied
            and login in grants.expand_logins(r.spec.allow.logins, bot.spec.traits)
            and labels_match(r.spec.allow.node_labels, labels)]


def _denying(world: World, bot: Bot, labels: Labels | None, now: datetime) -> list[str]:
    if labels is None:
        return []
    held, _ = held_roles(world, bot, now)
    return [name for name, r in held.items() if r.spec.deny.node_labels and labels_match(r.spec.deny.node_labels,
                                                                                           labels)]


def _roles(names: Iterable[str]) -> str:
    names = list(names)
    return ("roles " if len(names) > 1 else "role ") + ", ".join(f"`{n}`" for n in names)


def _matched(roles: dict[str, Role], names: list[str], labels: Labels | None) -> list[str]:
    return [n for n in names if labels is not None and n in roles and labels_match(roles[n].spec.allow.node_labels,
                                                                                  labels)]


@dataclass
class Reach:
    """Bots that become able (or unable) to log in to the node as these logins, for one reason."""

    bots: list[str]
    logins: list[str]
    because: str


@dataclass
class NodeImpact:
    name: str
    resource: str  # the plan address of the change
    status: str  # created, changed, deleted
    labels_before: Labels | None
    labels_after: Labels | None
    gained: list[Reach] = field(default_factory=list)
    lost: list[Reach] = field(default_factory=list)
    pending: list[str] = field(default_factory=list)  # what it depends on that is known only at apply

    def sentences(self) -> list[tuple[str, str]]:
        """("+" or "-", the change in words), e.g. node `web-1` becomes reachable by bots `deployer`, `backup` as
        `deploy` because its labels now match role `web`."""
        out = []
        for sign, verb, items in (("+", "becomes reachable", self.gained), ("-", "is no longer reachable",
                                                                            self.lost)):
            for r in items:
                bots = ("bots " if len(r.bots) > 1 else "bot ") + ", ".join(f"`{b}`" for b in r.bots)
                logins = ", ".join(f"`{lg}`" for lg in r.logins)
                out.append((sign, f"node `{self.name}` {verb} by {bots} as {logins} because {r.because}"))
        return out


def _labels_text(labels: Labels | None) -> str:
    if labels is None:
        return "-"
    return ", ".join(f"{k}={v}" for k, v in sorted(labels.items())) or "none"


def _gain_reason(before: World, after: World, key: str, login: str, lb: Labels | None, la: Labels,
                 now: datetime) -> str:
    bot = after.bots[key]
    granting = _granting(after, bot, login, la, now)
    if lb is None:
        return f"its labels match {_roles(granting)}"
    old_roles, _ = held_roles(before, before.bots[key], now) if key in before.bots else ({}, [])
    newly = [n for n in granting if n not in _matched(old_roles, [n], lb)]
    if newly:
        return f"its labels now match {_roles(newly)}"
    old_bot = before.bots.get(key)
    lifted = _denying(before, old_bot, lb, now) if old_bot is not None else []
    if lifted and not _denying(after, bot, la, now):
        return f"its labels no longer match the deny of {_roles(lifted)}"
    return f"{_roles(granting)} now grant{'s' if len(granting) == 1 else ''} it"


def _loss_reason(before: World, after: World, key: str, login: str, lb: Labels, la: Labels | None,
                 now: datetime) -> str:
    if la is None:
        return "the node is deleted"
    bot = after.bots.get(key)
    if bot is None:
        return "the bot is deleted"
    denying = _denying(after, bot, la, now)
    if denying:
        return f"its labels now match the deny of {_roles(denying)} (deny wins)"
    granted = _granting(before, before.bots[key], login, lb, now)
    roles, _ = held_roles(after, bot, now)
    unmatched = [n for n in granted if n in roles and not _matched(roles, [n], la)]
    if unmatched:
        return f"its labels no longer match {_roles(unmatched)}"
    return f"{_roles(granted)} no longer grant{'s' if len(granted) == 1 else ''} it"


def _grouped(found: dict[str, dict[str, list[str]]]) -> list[Reach]:
    """reason -> bot -> logins, as one Reach per (reason, logins) with every bot that shares them."""
    groups: dict[tuple[str, tuple[str, ...]], list[str]] = {}
    for because, per_bot in found.items():
        for bot, logins in per_bot.items():
            groups.setdefault((because, tuple(sorted(logins))), []).append(bot)
    out = [Reach(sorted(bots), list(logins), because) for (because, logins), bots in groups.items()]
    return sorted(out, key=lambda r: (r.bots, r.because, r.logins))


def node_impact(before: World, after: World, name: str, resource: str, now: datetime,
                accesses: tuple[dict[str, NodeAccess], dict[str, NodeAccess]] | None = None) -> NodeImpact:
    """Who may log in to node `name` before and after the plan, per bot and login, with the reason of each
    difference. accesses: every bot's NodeAccess before and after (node_accesses), when already worked out."""
    old, new = before.nodes.get(name), after.nodes.get(name)
    lb = dict(old.metadata.labels) if old is not None else None
    la = dict(new.metadata.labels) if new is not None else None
    status = "created" if old is None else "deleted" if new is None else "changed"
    pending = [f"{resource} {render_path(u)}" for u in after.unknown("node", name, ("labels",))]
    if pending:  # a reach worked out from part of the labels would say more (or less) than the plan does
        return NodeImpact(name, resource, status, lb, la, pending=pending)
    old_access, new_access = accesses or (node_accesses(before, now), node_accesses(after, now))
    gained: dict[str, dict[str, list[str]]] = {}
    lost: dict[str, dict[str, list[str]]] = {}
    for key in sorted(set(before.bots) | set(after.bots)):
        was = old_access[key].logins_on(lb) if key in old_access and lb is not None else []
        now_ = new_access[key].logins_on(la) if key in new_access and la is not None else []
        for login in now_:
            if login not in was:
                assert la is not None
                why = _gain_reason(before, after, key, login, lb, la, now)
                gained.setdefault(why, {}).setdefault(key, []).append(login)
        for login in was:
            if login not in now_:
                assert lb is not None
                why = _loss_reason(before, after, key, login, lb, la, now)
                lost.setdefault(why, {}).setdefault(key, []).append(login)
    return NodeImpact(name, resource, status, lb, la, _grouped(gained), _grouped(lost))


def _names(ch: Change) -> list[str]:
    """The nodes a change is about: the one it deletes or renames, and the one it writes."""
    names = [ch.before.metadata.name] if ch.before is not None else []
    if ch.after is not None and ch.key not in names:
        names.append(ch.key)
    return names


# The kinds whose own changes change who may log in where (a node's labels): each change of one is reported as the
# reach of the objects it names (World.nodes).
_REACHED = frozenset({"node"})


def node_impacts(plan: Plan, before: World, after: World, now: datetime) -> list[NodeImpact]:
    """Every node the plan creates, changes or deletes, with who becomes able or unable to log in to it."""
    out: list[NodeImpact] = []
    seen: set[str] = set()
    accesses: tuple[dict[str, NodeAccess], dict[str, NodeAccess]] | None = None
    for ch in plan.changes:
        if ch.rdef.kind not in _REACHED or ch.action == "same":
            continue
        for name in _names(ch):
            if name not in seen:
                seen.add(name)
                accesses = accesses or (node_accesses(before, now), node_accesses(after, now))
                out.append(node_impact(before, after, name, ch.address, now, accesses))
    return out


def as_dict(imp: NodeImpact) -> dict[str, Any]:
    return {"name": imp.name, "resource": imp.resource, "status": imp.status, "labels_before": imp.labels_before,
            "labels_after": imp.labels_after, "gained": [vars(r) for r in imp.gained],
            "lost": [vars(r) for r in imp.lost], "pending": imp.pending,
            "sentences": [f"{sign} {text}" for sign, text in imp.sentences()]}


def markdown(impacts: list[NodeImpact]) -> list[str]:
    lines: list[str] = []
    for imp in impacts:
        title = f"### node `{imp.name}` ({imp.status}"
        if imp.status == "changed" and imp.labels_before != imp.labels_after:
            title += f": labels `{_labels_text(imp.labels_before)}` → `{_labels_text(imp.labels_after)}`"
        elif imp.status == "created":
            title += f", labels `{_labels_text(imp.labels_after)}`"
        lines += ["", title + ")"]
        lines += [f"- **{sign}** {text}" for sign, text in imp.sentences()]
        if imp.pending:
            lines.append("- ⚠ its labels are known only at apply, so who may reach it is not shown: "
                         + ", ".join(f"`{p}`" for p in imp.pending))
        elif not imp.gained and not imp.lost:
            lines.append("- no bot becomes able or unable to log in to it")
    return lines

