"""Text tables for `machineid ctl` (the layout of `tctl get roles --format=text`)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from machineid.model import codec, keys, node_state
from machineid.model.resources import Bot, Lock, Node, ProvisionToken, Role, User


def render(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max([len(h), *(len(r[i]) for r in rows)]) for i, h in enumerate(headers)]
    lines = [" ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip(),
             " ".join("-" * w for w in widths)]
    lines += [" ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    return "\n".join(lines) + "\n"


def labels_text(selector: dict[str, list[str]]) -> str:
    if selector.get("*") == ["*"]:
        return "<all nodes>"
    return ",".join(f"{k}={v}" for k, v in sorted(selector.items()))


def _role_row(r: Role) -> list[str]:
    rules = ",".join(f"{res}:{','.join(rule.verbs)}" for rule in r.spec.allow.rules for res in rule.resources)
    return [r.metadata.name, ",".join(r.spec.allow.logins), labels_text(r.spec.allow.node_labels), rules]


def _time(value: Any) -> str:
    return codec.format_time(value) if value else "never"


def _bot_tokens(name: str, tokens: Sequence[ProvisionToken] | None) -> tuple[str, str]:
    """A bot's join methods and bound_keypair recoveries, from its tokens ("?" when the caller cannot list tokens,
    "-" for none: a single-use token is gone once used)."""
    if tokens is None:
        return "?", "?"
    mine = [t for t in tokens if t.spec.bot_name == name]
    methods = ",".join(sorted({t.spec.join_method for t in mine})) or "-"
    keypair = [t for t in mine if t.spec.join_method == "bound_keypair"]
    recoveries = ",".join(f"{t.status.recovery_count}/{t.spec.bound_keypair.recovery.limit}"
                          if t.spec.bound_keypair.recovery.mode == "standard" else
                          f"{t.status.recovery_count} ({t.spec.bound_keypair.recovery.mode})" for t in keypair)
    return methods, recoveries or "-"


def _bound_key(t: ProvisionToken) -> str:
    if t.spec.join_method != "bound_keypair":
        return ""
    if not t.status.bound_public_key:
        return "(not yet joined)"
    return keys.fingerprint(t.status.bound_public_key)


def _roles(objs: Sequence[Any], tokens: Sequence[ProvisionToken] | None) -> str:
    return render(["Role", "Allowed to login as", "Node Labels", "Access to resources"],
                  [_role_row(r) for r in objs if isinstance(r, Role)])


def _bots(objs: Sequence[Any], tokens: Sequence[ProvisionToken] | None) -> str:
    return render(["Bot", "User", "Roles", "Logins", "Join Method", "Recoveries", "Generation", "Locked"], [
        [b.metadata.name, b.status.user_name, ",".join(b.spec.roles), ",".join(b.spec.traits.get("logins", [])),
         *_bot_tokens(b.metadata.name, tokens), str(b.status.generation),
         "yes: " + b.status.lock_reason if b.status.locked else "no"]
        for b in objs if isinstance(b, Bot)])


def _tokens(objs: Sequence[Any], tokens: Sequence[ProvisionToken] | None) -> str:
    return render(["Token", "Type", "Join Method", "Bot", "Expires", "Bound Key", "Recoveries", "Last Rotated"], [
        [t.metadata.name, ",".join(t.spec.roles), t.spec.join_method, t.spec.bot_name, _time(t.metadata.expires),
         _bound_key(t), str(t.status.recovery_count) if t.spec.join_method == "bound_keypair" else "",
         _time(t.status.last_rotated_at) if t.spec.join_method == "bound_keypair" else ""]
        for t in objs if isinstance(t, ProvisionToken)])


def _users(objs: Sequence[Any], tokens: Sequence[ProvisionToken] | None) -> str:
    return render(["User", "Roles", "Logins", "Bot"], [
        [u.metadata.name, ",".join(u.spec.roles), ",".join(u.spec.traits.get("logins", [])), u.spec.bot_name]
        for u in objs if isinstance(u, User)])


def _nodes(objs: Sequence[Any], tokens: Sequence[ProvisionToken] | None) -> str:
    """With each node's state (online, stale after three missed heartbeats, never joined, locked), when its host
    certificate expires and when it last reported in: what an operator looks for when a node stops accepting
    logins."""
    now = datetime.now(UTC)
    return render(["Node Name", "Address", "Labels", "State", "Host Cert Expires", "Last Heartbeat"], [
        [n.metadata.name, n.spec.addr, ",".join(f"{k}={v}" for k, v in sorted(n.metadata.labels.items())),
         node_state.state(n, now), codec.format_time(n.status.host_cert_expires) if n.status.host_cert_expires
         else "-", _time(n.status.last_heartbeat)]
        for n in objs if isinstance(n, Node)])


def lock_target(lock: Lock) -> str:
    """bot=deployer, bot_instance=..., token=..., user=..., node=... (the one field set)."""
    t = lock.spec.target
    return next((f"{name}={val}" for name, val in (("bot", t.bot), ("bot_instance", t.bot_instance),
                                                   ("token", t.token), ("user", t.user), ("node", t.node)) if val),
                "-")


def _locks(objs: Sequence[Any], tokens: Sequence[ProvisionToken] | None) -> str:
    return render(["Lock", "Target", "Message", "Expires"], [
        [lk.metadata.name, lock_target(lk), lk.spec.message, _time(lk.metadata.expires)]
        for lk in objs if isinstance(lk, Lock)])


# One text table per kind of the registry (model/kinds.py); tests/test_kinds.py checks none is missing.
TABLES: dict[str, Callable[[Sequence[Any], Sequence[ProvisionToken] | None], str]] = {
    "role": _roles, "bot": _bots, "token": _tokens, "user": _users, "node": _nodes, "lock": _locks}


def table(kind: str, objs: Sequence[Any], tokens: Sequence[ProvisionToken] | None = None) -> str:
    return TABLES[kind](objs, tokens)
