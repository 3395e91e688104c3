"""Locks in a plan as access changes: which bot, instance, token's joiners, user or node a lock the plan writes
stops (or a lock it removes lets go again), with its message and end, in the reviewer's words."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from machineid.iac.plan import Change, Plan
from machineid.model import codec
from machineid.model.resources import Lock
from machineid.review.impact import World


@dataclass
class LockImpact:
    name: str
    resource: str
    status: str  # "created", "changed", "deleted"
    sentence: str
    bots: list[str] = field(default_factory=list)  # the bots it stops (or lets go)


@dataclass
class _Stops:
    target: str  # what the lock names, in words: "bot `deployer`"
    effect: str  # what that means while it is in force
    bots: list[str]


def _stops(world: World, lock: Lock) -> _Stops:
    """What the lock stops, said plainly, and the bots concerned."""
    t = lock.spec.target
    if t.bot:
        return _Stops(f"bot `{t.bot}`", "every identity it holds is refused (calls, renewals, joins) and its SSH "
                      "certificates are revoked on nodes", [t.bot])
    if t.bot_instance:
        bots = sorted(b.metadata.name for b in world.bots.values() if b.status.instance_id == t.bot_instance)
        whose = f"of bot `{bots[0]}`" if bots else "(no bot holds it now)"
        return _Stops(f"instance `{t.bot_instance}` {whose}", "that machine's identity is refused and its SSH "
                      "certificates revoked; the bot's next join is not affected", bots)
    if t.token:
        bots = sorted(b.metadata.name for b in world.bots.values() if b.status.join_token == t.token)
        joined = f"; bots that joined with it: {', '.join(f'`{b}`' for b in bots)}" if bots else ""
        return _Stops(f"join token `{t.token}`", f"joins with it are refused{joined}", bots)
    if t.user:
        bots = [b.metadata.name for b in world.bots.values() if f"bot-{b.metadata.name}" == t.user]
        return _Stops(f"user `{t.user}`", "its certificates are refused and revoked on nodes", bots)
    return _Stops(f"node `{t.node}`", "its joins and syncs are refused; once its revocation_max_age passes it "
                  "refuses every certificate login", [])


def _ends(lock: Lock, now: datetime) -> str:
    if lock.metadata.expires is None:
        return "until the lock is removed"
    if lock.metadata.expires <= now:
        return f"expired at {codec.format_time(lock.metadata.expires)}: in force no more"
    return f"until {codec.format_time(lock.metadata.expires)}"


def _impact(ch: Change, before: World, after: World, now: datetime) -> LockImpact | None:
    old, new = ch.before, ch.after
    if ch.action == "delete" or new is None:
        if not isinstance(old, Lock):
            return None
        lifted = _stops(before, old)
        return LockImpact(old.metadata.name, ch.address, "deleted", f"lifts the lock on {lifted.target}: it may "
                          "authenticate again, with no new join", lifted.bots)
    if not isinstance(new, Lock):
        return None
    stops = _stops(after, new)
    why = f" — “{new.spec.message}”" if new.spec.message else ""
    status = "created" if old is None or ch.action in ("create", "replace") else "changed"
    return LockImpact(new.metadata.name, ch.address, status,
                      f"locks {stops.target}: {stops.effect} ({_ends(new, now)}){why}", stops.bots)


# The kinds whose changes are locks: reported by what they stop.
_LOCKING = frozenset({"lock"})


def lock_impacts(plan: Plan, before: World, after: World, now: datetime) -> list[LockImpact]:
    out = []
    for ch in plan.changes:
        if ch.rdef.kind in _LOCKING and ch.action != "same":
            imp = _impact(ch, before, after, now)
            if imp is not None:
                out.append(imp)
    return out


def as_dict(imp: LockImpact) -> dict[str, Any]:
    return vars(imp).copy()


def markdown(impacts: list[LockImpact]) -> list[str]:
    lines: list[str] = []
    for imp in impacts:
        lines += ["", f"### lock `{imp.name}` ({imp.status})", f"- **{'+' if imp.status != 'deleted' else '-'}** "
                  f"{imp.sentence}"]
    return lines
