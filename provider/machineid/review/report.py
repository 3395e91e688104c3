"""The review as a pull-request comment (Markdown) or JSON: per bot, only what changes (who may join as it
included, in plain words); per lock the plan writes or removes, what it stops; per node the plan writes, which bots
become able or unable to log in to it and why; the delegated tokens the plan writes, then the policy's verdict."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

from machineid.iac.plan import Plan
from machineid.review import locks as lock_report
from machineid.review import nodes as node_report
from machineid.review.impact import Access, BotImpact, TokenJoiners
from machineid.review.locks import LockImpact
from machineid.review.nodes import NodeImpact
from machineid.review.policy import Violation

_LABELS = {"logins_on_nodes": "logins on nodes", "any_node_logins": "logins in its certificates",
           "api": "API access", "join_methods": "join methods", "joiners": "joiners (who may join as it)"}
_SENTENCES = ("joiners",)  # listed one per line, as written (they quote their own values)


def as_json(plan: Plan, impacts: list[BotImpact], violations: list[Violation] | None,
            tokens: Sequence[TokenJoiners] = (), notes: Sequence[str] = (), nodes: Sequence[NodeImpact] = (),
            locks: Sequence[LockImpact] = ()) -> str:
    return json.dumps({
        "tool": plan.tool,
        "notes": list(notes),
        "bots": [{"name": i.name, "status": i.status, "gained": i.gained(), "lost": i.lost(),
                  "before": asdict(i.before) if i.before else None, "after": asdict(i.after) if i.after else None}
                 for i in impacts],
        "nodes": [node_report.as_dict(n) for n in nodes],
        "locks": [lock_report.as_dict(x) for x in locks],
        "unknown": [{"resource": c.address, "properties": c.unknown_text()} for c in plan.changes if c.unknown],
        "tokens": [asdict(t) for t in tokens],
        "violations": [asdict(x) for x in violations] if violations is not None else None,
    }, indent=2)


def _items(values: list[str], limit: int = 12) -> str:
    shown = ", ".join(f"`{x}`" for x in values[:limit])
    return shown + (f" and {len(values) - limit} more" if len(values) > limit else "")


def _section(title: str, diff: dict[str, Any], sign: str) -> list[str]:
    out: list[str] = []
    for k, vals in diff.items():
        if k in _SENTENCES:
            out += [f"- **{sign} {title} {_LABELS[k]}**:", *(f"  - {x}" for x in vals)]
        else:
            out.append(f"- **{sign} {title} {_LABELS[k]}**: {_items(vals)}")
    return out


def _still(before: Access | None, after: Access | None) -> list[str]:
    same = [x for x in after.joiners if x in before.joiners] if before and after else []
    return ["- may still join as it:", *(f"  - {x}" for x in same)] if same else []


def _settings(before: Access | None, after: Access | None) -> list[str]:
    out = []
    old_cap, new_cap = (before.ttl_cap if before else ""), (after.ttl_cap if after else "")
    if before and after and old_cap != new_cap:
        out.append(f"- certificate lifetime cap: {old_cap or 'none'} → **{new_cap or 'none'}**")
    if after and after.missing_roles:
        out.append(f"- ⚠ roles that do not exist (they grant nothing): {_items(after.missing_roles)}")
    if after and after.pending:
        out.append(f"- ⚠ its access also depends on values known only at apply: {_items(after.pending)}")
    return out


def _tokens(impacts: list[BotImpact], tokens: Sequence[TokenJoiners]) -> list[str]:
    """The delegated tokens the plan writes whose bot's access does not change (the others are under the bot)."""
    changed = {i.name for i in impacts}
    quiet = [t for t in tokens if t.bot not in changed]
    if not quiet:
        return []
    lines = ["", "### delegated join tokens (no change to who may join)"]
    for t in quiet:
        lines.append(f"- `{t.resource}` ({t.method}, bot `{t.bot}`)" + ("" if t.joiners else
                                                                          ": expired, admits no one"))
        lines += [f"  - {x}" for x in t.joiners]
    return lines


def as_markdown(plan: Plan, impacts: list[BotImpact], violations: list[Violation] | None,
                tokens: Sequence[TokenJoiners] = (), notes: Sequence[str] = (),
                nodes: Sequence[NodeImpact] = (), locks: Sequence[LockImpact] = ()) -> str:
    lines = ["## machineid access review", "", *(f"> ⚠ {n}\n" for n in notes)]
    if locks:
        lines.append(f"{len(locks)} lock{'s' if len(locks) != 1 else ''} written or removed ({plan.tool} plan).")
    if not impacts and not any(n.gained or n.lost or n.pending for n in nodes):
        if not locks:
            lines.append(f"No access change: no bot can do more or less ({len(plan.changes)} machineid resources in "
                         f"the {plan.tool} plan).")
    else:
        lines.append(f"{len(impacts)} bot{'s' if len(impacts) != 1 else ''} change{'s' if len(impacts) == 1 else ''}"
                     f" access ({plan.tool} plan).")
    for imp in impacts:
        lines += ["", f"### bot `{imp.name}` ({imp.status})"]
        lines += _section("gains", imp.gained(), "+")
        lines += _section("loses", imp.lost(), "-")
        lines += _still(imp.before, imp.after)
        lines += _settings(imp.before, imp.after)
        if imp.after is not None and not imp.after.logins and imp.after.any_node_logins:
            lines.append("- its logins match no registered node yet")
    lines += lock_report.markdown(list(locks))
    lines += node_report.markdown(list(nodes))
    lines += _tokens(impacts, tokens)
    if violations is not None:
        lines += ["", "### policy"]
        if not violations:
            lines.append("✅ no rule is violated")
        for x in violations:
            lines.append(f"- ❌ `{x.rule}`: `{x.resource}` `{x.attribute}`: {x.message}")
    return "\n".join(lines) + "\n"
