"""A team's rules for identity changes, kept in its repository as YAML and checked against a plan:

    deny_logins: [root]                # no bot may log in as these
    deny_wildcard_node_labels: true    # no role a bot holds may select nodes with a wildcard ('*', '?*', ...)
    max_token_ttl: 720h                # join tokens expire within this (an iam token must set expires)
    deny_recovery_modes: [insecure]    # bound_keypair recovery modes not allowed
    deny_api: ["*:*", "token:create"]  # resource:verb no bot may be allowed

Declared with the model's field metadata, so a mistyped rule is a field-named error, never silently ignored.
Each violation names the rule, the resource (its plan address, or the cluster object) and the attribute. Every
role a bot holds is checked, its own role bot-NAME included; a value a rule judges that the plan does not show
(known only at apply, or a secret the preview hides) violates the rule: what cannot be seen is not passed."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import yaml

from machineid.iac.plan import Change, Plan
from machineid.model import codec
from machineid.model import validators as v
from machineid.model.errors import FieldViolation, Path, ValidationError, render_path
from machineid.model.fields import attr
from machineid.model.grants import rule_match
from machineid.model.node_access import wildcard_keys
from machineid.model.resources import DEFAULT_TOKEN_TTL, Bot, Role
from machineid.review.impact import BotImpact, World, held_roles


def _api_pair(val: Any) -> str | None:
    if isinstance(val, str) and (val.count(":") != 1 or not all(val.split(":"))):
        return f'"{v.shown(val)}" is not resource:verb (for example token:create, or *:*)'
    return None


@dataclass
class Policy:
    deny_logins: list[str] = attr(default_factory=list, doc="Logins no bot may have (on any node).")
    deny_wildcard_node_labels: bool = attr(default=False, doc="No role a bot holds may select nodes with a wildcard: "
                                                              "values that match every value ('*', '?*', '**').")
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

    def add(self, rule: str, kind: str, name: str, attribute: str, message: str) -> None:
        found = Violation(rule, self.after.where(kind, name), attribute, message)
        if found not in self.out:
            self.out.append(found)

    def unseen(self, rule: str, kind: str, name: str, at: Path, what: str) -> None:
        """A value the rule judges that the plan does not show violates it: what cannot be seen is not passed."""
        if not getattr(self.policy, rule):
            return
        for path in self.after.unknown(kind, name, at):
            self.add(rule, kind, name, render_path(path),
                     f"not in the plan (known only at apply, or a secret the preview hides), so {rule} cannot "
                     f"check {what}; use a value known when planning")

    def bot(self, key: str, bot: Bot) -> None:
        name = bot.metadata.name or key
        roles, _ = held_roles(self.after, bot, self.now)
        for rule in ("deny_logins", "deny_wildcard_node_labels", "deny_api"):
            self.unseen(rule, "bot", key, ("roles",), f'the roles of bot "{name}"')
        if any(lg.startswith("{{") for r in roles.values() for lg in r.spec.allow.logins):
            self.unseen("deny_logins", "bot", key, ("traits",), f'the logins of bot "{name}"')
        for rname, role in roles.items():
            self.role(rname, role, bot, key)
            what = f'role {rname} (held by bot "{name}")'
            self.unseen("deny_logins", "role", rname, ("allow", "logins"), what)
            self.unseen("deny_wildcard_node_labels", "role", rname, ("allow", "node_labels"), what)
            self.unseen("deny_api", "role", rname, ("allow", "rules"), what)

    def role(self, rname: str, role: Role, bot: Bot, key: str) -> None:
        p, name = self.policy, bot.metadata.name or key
        for i, login in enumerate(role.spec.allow.logins):
            if login in p.deny_logins:
                self.add("deny_logins", "role", rname, f"allow.logins[{i}]",
                         f'bot "{name}" may log in as {login} through role {rname}')
            elif login.startswith("{{"):
                trait = login.strip("{} ").split(".")[-1]
                for j, val in enumerate(bot.spec.traits.get(trait, [])):
                    if val in p.deny_logins:
                        self.add("deny_logins", "bot", key, f"traits.{trait}[{j}]",
                                 f'bot "{name}" may log in as {val} (its {trait} trait, through role {rname})')
        if p.deny_wildcard_node_labels:
            for key in wildcard_keys(role.spec.allow.node_labels):
                self.add("deny_wildcard_node_labels", "role", rname, f"allow.node_labels.{key}",
                         f'role {rname} (held by bot "{name}") selects nodes with a wildcard: '
                         f'{key}: {role.spec.allow.node_labels[key]} matches every value')
        for i, rule in enumerate(role.spec.allow.rules):
            for pair in p.deny_api:
                res, verb = pair.split(":")
                if rule_match([rule], res, verb) and not rule_match(role.spec.deny.rules, res, verb):
                    self.add("deny_api", "role", rname, f"allow.rules[{i}]",
                             f'bot "{name}" may {verb} {res} through role {rname}')

    def token(self, change: Change) -> None:
        token = change.after
        p, key = self.policy, change.key
        method_unseen = bool(change.unknown_at(("join_method",)))
        method = token.spec.join_method
        self.unseen("max_token_ttl", "token", key, ("join_method",), "the token")
        self.unseen("deny_recovery_modes", "token", key, ("join_method",), "the token")
        if p.max_token_ttl and not method_unseen:
            limit = v.parse_duration(p.max_token_ttl)
            if change.unknown_at(("expires",)):
                self.unseen("max_token_ttl", "token", key, ("expires",), "the token")
            elif token.metadata.expires is not None:
                if token.metadata.expires - self.now > limit:
                    self.add("max_token_ttl", "token", key, "expires",
                             f"the token expires at {codec.format_time(token.metadata.expires)}, beyond "
                             f"{p.max_token_ttl} from now")
            elif method == "token":  # the provider sets expires from ttl at apply
                self.unseen("max_token_ttl", "token", key, ("ttl",), "the token")
                ttl_text = str(change.values.get("ttl") or DEFAULT_TOKEN_TTL)
                if not change.unknown_at(("ttl",)) and v.parse_duration(ttl_text) > limit:
                    self.add("max_token_ttl", "token", key, "ttl",
                             f"the token lives {ttl_text}, more than {p.max_token_ttl}")
            else:
                self.add("max_token_ttl", "token", key, "expires",
                         f"the {method} token never expires; set expires within {p.max_token_ttl}")
        if method == "bound_keypair" and not method_unseen:  # every token has the block; only bound_keypair uses it
            self.unseen("deny_recovery_modes", "token", key, ("bound_keypair", "recovery", "mode"), "the token")
            mode = token.spec.bound_keypair.recovery.mode
            if mode in p.deny_recovery_modes and not change.unknown_at(("bound_keypair", "recovery", "mode")):
                self.add("deny_recovery_modes", "token", key, "bound_keypair.recovery.mode",
                         f"recovery mode {mode} is not allowed")


# The checks a change of a kind gets itself (a bot's are by its access, below).
_CHANGE_CHECKS = {"token": Checker.token}


def check(policy: Policy, plan: Plan, after: World, impacts: list[BotImpact], now: datetime) -> list[Violation]:
    """The rules, on what the plan creates or changes: bots whose access changes, bots it writes and bots holding
    a role it writes (a wildcard that matches no node yet changes no access today), with every role they hold;
    and the tokens it writes."""
    c = Checker(policy, after, now)
    written = [ch for ch in plan.changes if ch.after is not None and ch.action in ("create", "update", "replace")]
    touched = {(ch.rdef.kind, ch.key) for ch in written}
    changed = {imp.name for imp in impacts if imp.after is not None}
    for key, bot in after.bots.items():
        roles, _ = held_roles(after, bot, now)
        if key in changed or ("bot", key) in touched or any(("role", r) in touched for r in roles):
            c.bot(key, bot)
    for ch in written:
        run = _CHANGE_CHECKS.get(ch.rdef.kind)
        if run is not None:
            run(c, ch)
    return c.out
