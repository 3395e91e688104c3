"""The review as a pull-request comment (Markdown) or JSON: per bot, only what changes, then the policy's verdict."""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import Any

from machineid.iac.plan import Plan
from machineid.review.impact import Access, BotImpact
from machineid.review.policy import Violation

_LABELS = {"logins_on_nodes": "logins on nodes", "any_node_logins": "logins in its certificates",
           "api": "API access", "join_methods": "join methods"}


def as_json(plan: Plan, impacts: list[BotImpact], violations: list[Violation] | None) -> str:
    return json.dumps({
        "tool": plan.tool,
        "bots": [{"name": i.name, "status": i.status, "gained": i.gained(), "lost": i.lost(),
                  "before": asdict(i.before) if i.before else None, "after": asdict(i.after) if i.after else None}
                 for i in impacts],
        "unknown": [{"resource": c.address, "properties": c.unknown_text()} for c in plan.changes if c.unknown],
        "violations": [asdict(x) for x in violations] if violations is not None else None,
    }, indent=2)


def _items(values: list[str], limit: int = 12) -> str:
    shown = ", ".join(f"`{x}`" for x in values[:limit])
    return shown + (f" and {len(values) - limit} more" if len(values) > limit else "")


def _section(title: str, diff: dict[str, Any], sign: str) -> list[str]:
    return [f"- **{sign} {title} {_LABELS[k]}**: {_items(vals)}" for k, vals in diff.items()]


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


def as_markdown(plan: Plan, impacts: list[BotImpact], violations: list[Violation] | None) -> str:
    lines = ["## machineid access review", ""]
    if not impacts:
        lines.append(f"No access change: no bot can do more or less ({len(plan.changes)} machineid resources in "
                     f"the {plan.tool} plan).")
    else:
        lines.append(f"{len(impacts)} bot{'s' if len(impacts) != 1 else ''} change{'s' if len(impacts) == 1 else ''}"
                     f" access ({plan.tool} plan).")
    for imp in impacts:
        lines += ["", f"### bot `{imp.name}` ({imp.status})"]
        lines += _section("gains", imp.gained(), "+")
        lines += _section("loses", imp.lost(), "-")
        lines += _settings(imp.before, imp.after)
        if imp.after is not None and not imp.after.logins and imp.after.any_node_logins:
            lines.append("- its logins match no registered node yet")
    if violations is not None:
        lines += ["", "### policy"]
        if not violations:
            lines.append("✅ no rule is violated")
        for x in violations:
            lines.append(f"- ❌ `{x.rule}`: `{x.resource}` `{x.attribute}`: {x.message}")
    return "\n".join(lines) + "\n"
