"""What a set of roles grants a user or bot: logins (trait templates expanded, denied ones removed), logins per
node (NodeAccess), API rules and the certificate TTL cap. Declared once: the cluster issues certificates by it
and `machineid review` reports the impact of a change by it, so the report says what the cluster will do."""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import timedelta

from machineid.model import validators as v
from machineid.model.node_access import Grant, NodeAccess
from machineid.model.resources import Metadata, Role, RoleConditions, RoleSpec, Rule, bot_role_name

BOT_LABEL = "machineid/bot"
MAX_RENEWABLE_TTL = timedelta(hours=24)  # a bot's certificates, whatever its roles allow
_TEMPLATE = re.compile(r"\{\{\s*(internal|external)\.([A-Za-z0-9_]+)\s*\}\}")


def expand_logins(logins: Iterable[str], traits: dict[str, list[str]]) -> list[str]:
    out: list[str] = []
    for login in logins:
        m = _TEMPLATE.fullmatch(login.strip())
        values = traits.get(m.group(2), []) if m else [login]
        for val in values:
            if val and val not in out and v.LOGIN.check(val) is None:
                out.append(val)
    return out


def rule_match(rules: list[Rule], resource: str, verb: str) -> bool:
    return any((resource in r.resources or "*" in r.resources) and (verb in r.verbs or "*" in r.verbs)
               for r in rules)


def logins(roles: list[Role], traits: dict[str, list[str]]) -> list[str]:
    """Every login the roles allow and none deny."""
    allowed = expand_logins((lg for r in roles for lg in r.spec.allow.logins), traits)
    denied = set(expand_logins((lg for r in roles for lg in r.spec.deny.logins), traits))
    return [p for p in allowed if p not in denied]


def node_access(roles: list[Role], traits: dict[str, list[str]]) -> NodeAccess:
    """What may be done on which node, per role (a login of one role does not extend to the nodes of another)."""
    denied = set(expand_logins((lg for r in roles for lg in r.spec.deny.logins), traits))
    grants = []
    for r in roles:
        allowed = tuple(lg for lg in expand_logins(r.spec.allow.logins, traits) if lg not in denied)
        if allowed and r.spec.allow.node_labels:
            grants.append(Grant(allowed, dict(r.spec.allow.node_labels)))
    return NodeAccess(grants, [dict(r.spec.deny.node_labels) for r in roles if r.spec.deny.node_labels])


def api_rules(roles: list[Role]) -> list[str]:
    """resource:verb pairs the roles allow (as written, '*' included), minus those a deny rule covers."""
    out: list[str] = []
    for r in roles:
        for rule in r.spec.allow.rules:
            for res in rule.resources:
                for verb in rule.verbs:
                    pair = f"{res}:{verb}"
                    if pair not in out and not any(rule_match(d.spec.deny.rules, res, verb) for d in roles):
                        out.append(pair)
    return sorted(out)


def ttl_cap(roles: list[Role], cap: timedelta | None = None) -> timedelta | None:
    limits = [v.parse_duration(r.spec.options.max_session_ttl) for r in roles]
    if cap:
        limits.append(cap)
    return min(limits) if limits else None


def bot_role(name: str) -> Role:
    """The role every bot holds besides its own: read the CAs, list and read nodes."""
    return Role(
        metadata=Metadata(name=bot_role_name(name), description=f"Role of bot {name}; managed by the bot.",
                          labels={BOT_LABEL: name}),
        spec=RoleSpec(allow=RoleConditions(rules=[
            Rule(resources=["cert_authority"], verbs=["read"]),
            Rule(resources=["node"], verbs=["list", "read"]),
        ])),
    )
