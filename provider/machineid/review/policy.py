"""A team's rules for identity changes, kept in its repository as YAML and checked against a plan:

    deny_logins: [root]                # no bot may log in as these
    deny_wildcard_node_labels: true    # no role a bot holds may select nodes with '*'
    max_token_ttl: 720h                # join tokens expire within this (an iam token must set expires)
    deny_recovery_modes: [insecure]    # bound_keypair recovery modes not allowed
    deny_api: ["*:*", "token:create"]  # resource:verb no bot may be allowed

Declared with the model's field metadata, so a mistyped rule is a field-named error, never silently ignored.
Each violation names the rule, the resource (its plan address, or the cluster object) and the attribute."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import yaml

from machineid.model import codec
from machineid.model import validators as v
from machineid.model.errors import FieldViolation, ValidationError
from machineid.model.fields import attr
from machineid.model.grants import rule_match
from machineid.model.resources import DEFAULT_TOKEN_TTL, Bot, ProvisionToken, Role
from machineid.review.impact import BotImpact, World
from machineid.review.plan import Change, Plan


def _api_pair(val: Any) -> str | None:
    if isinstance(val, str) and (val.count(":") != 1 or not all(val.split(":"))):
        return f'"{v.shown(val)}" is not resource:verb (for example token:create, or *:*)'
    return None


@dataclass
class Policy:
    deny_logins: list[str] = attr(default_factory=list, doc="Logins no bot may have (on any node).")
    deny_wildcard_node_labels: bool = attr(default=False, doc="No role a bot holds may select nodes with '*'.")
    max_token_ttl: str = attr(default="", doc="Join tokens must expire within this duration (e.g. 720h).",
                              validators=[v.duration(min_seconds=1)])
    deny_recovery_modes: list[str] = attr(default_factory=list,
                                          doc="bound_keypair recovery modes not allowed (standard, relaxed, "
                                              "insecure).")
    deny_api: list[str] = attr(default_factory=list, doc="resource:verb pairs no bot may be allowed.")

    def check(self) -> list[FieldViolation]:
        return [FieldViolation(("deny_api", i), reason) for i, pair in enumerate(self.deny_api)
                if (reason := _api_pair(pair))]


def load(path: str) -> Policy:
    try:
        with open(path) as f:
            data = yaml.safe_load(f) or {}
    except OSError as e:
        raise ValidationError(f"--policy: cannot read {path}: {e.strerror}") from None
    except yaml.YAMLError as e:
        raise ValidationError(f"--policy: {path} is not valid YAML: {e}") from None
    try:
        return codec.decode_and_validate(Policy, data)
    except ValidationError as e:
        raise ValidationError([FieldViolation((), f"{path}: {x}") for x in e.violations]) from None


@dataclass
class Violation:
    rule: str
    resource: str
    attribute: str
    message: str


@dataclass
class Checker:
    policy: Policy
    after: World
    now: datetime
    out: list[Violation] = field(default_factory=list)

    def where(self, kind: str, name: str) -> str:
        return self.after.where.get((kind, name)) or f"{kind}/{name} (on the cluster)"

    def add(self, rule: str, kind: str, name: str, attribute: str, message: str) -> None:
        found = Violation(rule, self.where(kind, name), attribute, message)
        if found not in self.out:
            self.out.append(found)

    def roles_of(self, bot: Bot) -> list[Role]:
        return [r for n in bot.spec.roles if (r := self.after.roles.get(n)) is not None]

    def bot(self, bot: Bot) -> None:
        p, name = self.policy, bot.metadata.name
        for role in self.roles_of(bot):
            rname = role.metadata.name
            for i, login in enumerate(role.spec.allow.logins):
                if login in p.deny_logins:
                    self.add("deny_logins", "role", rname, f"allow.logins[{i}]",
                             f'bot "{name}" may log in as {login} through role {rname}')
                elif login.startswith("{{"):
                    trait = login.strip("{} ").split(".")[-1]
                    for j, val in enumerate(bot.spec.traits.get(trait, [])):
                        if val in p.deny_logins:
                            self.add("deny_logins", "bot", name, f"traits.{trait}[{j}]",
                                     f'bot "{name}" may log in as {val} (its {trait} trait, through role {rname})')
            if p.deny_wildcard_node_labels:
                for key, values in role.spec.allow.node_labels.items():
                    if key == "*" or "*" in values:
                        self.add("deny_wildcard_node_labels", "role", rname, f"allow.node_labels.{key}",
                                 f'role {rname} (held by bot "{name}") selects nodes with a wildcard')
            for i, rule in enumerate(role.spec.allow.rules):
                for pair in p.deny_api:
                    res, verb = pair.split(":")
                    if rule_match([rule], res, verb) and not rule_match(role.spec.deny.rules, res, verb):
                        self.add("deny_api", "role", rname, f"allow.rules[{i}]",
                                 f'bot "{name}" may {verb} {res} through role {rname}')

    def token(self, change: Change) -> None:
        token: ProvisionToken = change.after
        p, label = self.policy, token.metadata.name or change.address
        if p.max_token_ttl:
            limit = v.parse_duration(p.max_token_ttl)
            if token.metadata.expires is not None:
                if token.metadata.expires - self.now > limit:
                    self.add("max_token_ttl", "token", label, "expires",
                             f"the token expires at {codec.format_time(token.metadata.expires)}, beyond "
                             f"{p.max_token_ttl} from now")
            elif token.spec.join_method == "token":  # the provider sets expires from ttl at apply
                ttl_text = str(change.values.get("ttl") or DEFAULT_TOKEN_TTL)
                if v.parse_duration(ttl_text) > limit:
                    self.add("max_token_ttl", "token", label, "ttl",
                             f"the token lives {ttl_text}, more than {p.max_token_ttl}")
            elif "expires" not in change.unknown:
                self.add("max_token_ttl", "token", label, "expires",
                         f"the {token.spec.join_method} token never expires; set expires within {p.max_token_ttl}")
        mode = token.spec.bound_keypair.recovery.mode  # every token has the block; only bound_keypair uses it
        if token.spec.join_method == "bound_keypair" and mode in p.deny_recovery_modes:
            self.add("deny_recovery_modes", "token", label, "bound_keypair.recovery.mode",
                     f"recovery mode {mode} is not allowed")


def check(policy: Policy, plan: Plan, after: World, impacts: list[BotImpact], now: datetime) -> list[Violation]:
    """The rules, on what the plan creates or changes: bots whose access changes, and tokens it writes."""
    c = Checker(policy, after, now)
    for imp in impacts:
        if imp.after is not None:
            c.bot(after.bots[imp.name])
    for ch in plan.changes:
        if ch.rdef.kind == "token" and ch.after is not None and ch.action in ("create", "update", "replace"):
            c.token(ch)
    return c.out
