"""A team's rules for identity changes, kept in its repository as YAML and checked against a plan:

    deny_logins: [root]                # no bot may log in as these
    deny_wildcard_node_labels: true    # no role a bot holds may select nodes with a wildcard ('*', '?*', ...)
    max_token_ttl: 720h                # join tokens expire within this (an iam token must set expires; bound_keypair
                                       # and delegated tokens need not: each of their joins is proven afresh)
    deny_recovery_modes: [insecure]    # bound_keypair recovery modes not allowed
    deny_api: ["*:*", "token:create"]  # resource:verb no bot may be allowed
    deny_wildcard_join_rules: true     # github/gitlab/oidc join rules name one owner, group or subject
    require_ref_or_environment: true   # github/gitlab/oidc join rules restrict the ref or the environment
    allowed_issuers: [https://token.actions.githubusercontent.com]  # the only issuers delegated tokens trust
    allow_static_jwks: false           # with allowed_issuers: may tokens trust keys pasted in static_jwks
    nodes_reachable_only_by:           # nodes with these labels (globs, as in node_labels) may be reached only by
      - labels: {env: prod}            # these bots: a plan that makes another bot able to log in to one fails
        bots: [deployer, backup]

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
from machineid.model.delegated import DELEGATED_METHODS, HTTPS_URL
from machineid.model.errors import FieldViolation, Path, ValidationError, render_path
from machineid.model.fields import attr
from machineid.model.grants import rule_match
from machineid.model.node_access import labels_match, wildcard_keys
from machineid.model.resources import DEFAULT_TOKEN_TTL, Bot, Role
from machineid.review import delegated
from machineid.review.impact import BotImpact, World, held_roles
from machineid.review.nodes import node_accesses

PROVEN_EACH_JOIN = ("bound_keypair", *DELEGATED_METHODS)  # tokens that are no standing credential


def _api_pair(val: Any) -> str | None:
    if isinstance(val, str) and (val.count(":") != 1 or not all(val.split(":"))):
        return f'"{v.shown(val)}" is not resource:verb (for example token:create, or *:*)'
    return None


@dataclass
class NodeReachRule:
    """Nodes whose labels match, and the only bots that may log in to them."""

    labels: dict[str, str] = attr(
        default_factory=dict, required=True, doc="The nodes the rule is about: every one of these labels must "
        "match (the value a glob, as in a role's node_labels: prod, web-*).",
        validators=[v.each_key(v.LABEL_NAME), v.each_value(v.LABEL_VALUE)])
    bots: list[str] = attr(default_factory=list, doc="The only bots that may log in to them (empty: none).",
                           validators=[v.each(v.RESOURCE_NAME)])

    def selects(self, labels: dict[str, str]) -> bool:
        """Whether a node with these labels is one of the rule's (matched as the node matches node_labels)."""
        return labels_match({k: [val] for k, val in self.labels.items()}, labels)


@dataclass
class Policy:
    deny_logins: list[str] = attr(default_factory=list, doc="Logins no bot may have (on any node).")
    deny_wildcard_node_labels: bool = attr(default=False, doc="No role a bot holds may select nodes with a wildcard: "
                                                              "values that match every value ('*', '?*', '**').")
    max_token_ttl: str = attr(default="", doc="Join tokens must expire within this duration (e.g. 720h); iam tokens "
                              "must set expires, bound_keypair and delegated tokens (github, gitlab, kubernetes, "
                              "oidc) may go without, as each of their joins is proven afresh.",
                              validators=[v.duration(min_seconds=1)])
    deny_recovery_modes: list[str] = attr(default_factory=list,
                                          doc="bound_keypair recovery modes not allowed (standard, relaxed, "
                                              "insecure).")
    deny_api: list[str] = attr(default_factory=list, doc="resource:verb pairs no bot may be allowed.")
    deny_wildcard_join_rules: bool = attr(
        default=False, doc="No delegated join rule may admit jobs of any owner. A github rule must name one "
        "repository owner (repository_owner, or the owner in repository or in a sub starting repo:OWNER/), a gitlab "
        "rule one top-level group (namespace_path, or the group in project_path or in a sub starting "
        "project_path:GROUP/), written out: a '*' or '?' in it admits owners anyone can create. An oidc rule must "
        "test sub with equals, any_of, or a glob that does not match every value. (kubernetes rules name a service "
        "account exactly.)")
    require_ref_or_environment: bool = attr(
        default=False, doc="Every github, gitlab and oidc join rule must restrict the ref or the environment: ref "
        "or environment (a glob that does not match every value), gitlab's ref_protected or environment_protected "
        '"true", a sub ending in :ref:VALUE or :environment:VALUE, or an oidc condition on the claim ref or '
        "environment.")
    allowed_issuers: list[str] = attr(
        default_factory=list, doc="The only issuers delegated tokens may trust, exactly as the token names them "
        "(e.g. https://token.actions.githubusercontent.com); empty: any. A token that verifies with keys pasted in "
        "static_jwks violates it too (the pasted keys, not the issuer, decide who can sign), unless "
        "allow_static_jwks is set.", validators=[v.each(HTTPS_URL)])
    allow_static_jwks: bool = attr(
        default=False, doc="With allowed_issuers: delegated tokens may verify with keys pasted in static_jwks "
        "(air-gapped clusters, Kubernetes' static_jwks); the reviewer checks that they are the issuer's keys.")
    nodes_reachable_only_by: list[NodeReachRule] = attr(
        default_factory=list, doc="Per rule, nodes with these labels may be reached only by these bots: a plan that "
        "makes another bot able to log in to such a node (a node created or relabelled to match, or a bot given a "
        "role whose node_labels reach it) fails. Node labels known only at apply fail it too.")

    def check(self) -> list[FieldViolation]:
        out = [FieldViolation(("deny_api", i), reason) for i, pair in enumerate(self.deny_api)
               if (reason := _api_pair(pair))]
        if self.allow_static_jwks and not self.allowed_issuers:
            out.append(FieldViolation(("allow_static_jwks",), "applies with allowed_issuers only (without it any "
                                                              "issuer and any pasted keys pass); set "
                                                              "allowed_issuers, or remove it"))
        return out


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
            self.unseen_at(rule, kind, name, path, what)

    def unseen_at(self, rule: str, kind: str, name: str, path: Path, what: str) -> None:
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
            elif method not in PROVEN_EACH_JOIN:
                self.add("max_token_ttl", "token", key, "expires",
                         f"the {method} token never expires; set expires within {p.max_token_ttl}")
            # bound_keypair and delegated tokens may go without expires: each join is proven afresh (by the bound
            # key, by a short-lived ID token), so the token is no standing credential.
        if method == "bound_keypair" and not method_unseen:  # every token has the block; only bound_keypair uses it
            self.unseen("deny_recovery_modes", "token", key, ("bound_keypair", "recovery", "mode"), "the token")
            mode = token.spec.bound_keypair.recovery.mode
            if mode in p.deny_recovery_modes and not change.unknown_at(("bound_keypair", "recovery", "mode")):
                self.add("deny_recovery_modes", "token", key, "bound_keypair.recovery.mode",
                         f"recovery mode {mode} is not allowed")
        self.join_rules(change)

    def join_rules(self, change: Change) -> None:
        """The delegated rules on a github, gitlab, kubernetes or oidc token: a rule, or a value one judges, that
        the plan does not show violates them; what the known values of a rule pin stays pinned (a value known
        later can only narrow it)."""
        p, key = self.policy, change.key
        for rule in _DELEGATED_RULES:
            self.unseen(rule, "token", key, ("join_method",), "the token")
        tok = delegated.read(change.after, change.unknown)
        if tok is None or change.unknown_at(("join_method",)):
            return
        m = tok.method
        for rule in ("deny_wildcard_join_rules", "require_ref_or_environment"):
            for path in tok.hidden if getattr(p, rule) else ():
                self.unseen_at(rule, "token", key, path, f"the rules of the {m} token")
        for r in tok.rules:
            if p.deny_wildcard_join_rules and not delegated.pins_owner(m, r):
                self.pinned("deny_wildcard_join_rules", key, r, delegated.owner_claims(m), _NO_OWNER[m])
            if p.require_ref_or_environment and not delegated.pins_ref(m, r):
                self.pinned("require_ref_or_environment", key, r, delegated.REF_CLAIMS,
                            "restricts neither the ref nor the environment: any branch (a pull request's "
                            f"included, where the platform hands it a token) may join; {_SET_REF[m]}")
        if p.allowed_issuers:
            self.issuer(tok, key)

    def pinned(self, rule: str, key: str, r: delegated.Rule, claims: tuple[str, ...], message: str) -> None:
        """A join rule the known values do not pin: a violation, or, when values known only at apply might pin
        it, a violation for each of those."""
        later = r.unknown(claims)
        for path in later:
            self.unseen_at(rule, "token", key, path, f"the join rule {render_path(r.path)}")
        if not later:
            self.add(rule, "token", key, render_path(r.where(claims)), f"the join rule {message}")

    def issuer(self, tok: delegated.Token, key: str) -> None:
        p, m = self.policy, tok.method
        issuer, keys = tok.value("issuer"), tok.value("static_jwks")
        if issuer is None:
            self.unseen_at("allowed_issuers", "token", key, (m, "issuer"), "the token's issuer")
        elif issuer and issuer not in p.allowed_issuers:
            self.add("allowed_issuers", "token", key, f"{m}.issuer",
                     f"issuer {issuer} is not one of allowed_issuers ({', '.join(p.allowed_issuers)})")
        if p.allow_static_jwks:
            return
        if keys is None:
            self.unseen_at("allowed_issuers", "token", key, (m, "static_jwks"), "where the token's keys come from")
        elif keys:
            self.add("allowed_issuers", "token", key, f"{m}.static_jwks",
                     "the token verifies with the keys pasted here, not the issuer's published ones: whoever holds "
                     "their private keys can sign tokens" + (f" for {issuer}" if issuer else "") + "; remove "
                     "static_jwks, or set allow_static_jwks after checking they are the issuer's keys")


_DELEGATED_RULES = ("deny_wildcard_join_rules", "require_ref_or_environment", "allowed_issuers")
_SET_REF = {"github": "set ref or environment", "gitlab": 'set ref, environment, or ref_protected: "true"',
            "oidc": "add a condition on the claim ref or environment", "kubernetes": ""}
_NO_OWNER = {
    "github": "names no repository owner (repository_owner, or OWNER/ in repository or in sub repo:OWNER/, written "
              "without '*' or '?'): workflows of repositories anyone can create may join",
    "gitlab": "names no top-level group (namespace_path, or GROUP/ in project_path or in sub project_path:GROUP/, "
              "written without '*' or '?'): pipelines of projects anyone can create may join",
    "oidc": "does not restrict the subject (a condition on sub with equals, any_of, or a glob that does not match "
            "every value): every subject of the issuer may join",
}


def _reach_unknowns(world: World, bot: Bot, key: str, now: datetime) -> list[tuple[str, str, str, Path]]:
    """The values known only at apply that decide where the bot can log in: its roles and traits, and the logins
    and node selectors of the roles it holds."""
    out = [("its roles" if p[0] == "roles" else "its traits", "bot", key, p)
           for p in world.unknown("bot", key, ("roles",)) + world.unknown("bot", key, ("traits",))]
    held, _ = held_roles(world, bot, now)
    for rkey in held:
        out += [(f"role {rkey}", "role", rkey, p) for p in world.unknown("role", rkey, ("allow",))
                + world.unknown("role", rkey, ("deny",))]
    return out


def _rule_nodes(rule: NodeReachRule, world: World | None) -> dict[str, dict[str, str]]:
    return {name: node.metadata.labels for name, node in (world.nodes if world else {}).items()
            if rule.selects(node.metadata.labels)}


def check_node_reach(c: Checker, before: World | None) -> None:
    """nodes_reachable_only_by: every (node, bot) the plan makes newly true (the bot can log in to the node, and the
    node is one of the rule's) for a bot the rule does not list. A pair that was already true is not the plan's
    doing. Labels of a planned node, or the roles and traits of a bot, that are known only at apply fail it: what
    cannot be seen is not passed."""
    after, now = c.after, c.now
    if not c.policy.nodes_reachable_only_by:
        return
    access_after = node_accesses(after, now)
    access_before = node_accesses(before, now) if before is not None else {}
    for i, rule in enumerate(c.policy.nodes_reachable_only_by):
        what = f"nodes_reachable_only_by[{i}] ({', '.join(f'{k}={val}' for k, val in rule.labels.items())})"
        for key in after.nodes:
            for path in after.unknown("node", key, ("labels",)):
                c.unseen_at("nodes_reachable_only_by", "node", key, path, f"whether node {key} is one of {what}")
        old = _rule_nodes(rule, before)
        nodes = _rule_nodes(rule, after)
        for bkey, bot in after.bots.items():
            name = bot.metadata.name or bkey
            if name in rule.bots:
                continue
            if nodes:
                for where, kind, key, path in _reach_unknowns(after, bot, bkey, now):
                    c.unseen_at("nodes_reachable_only_by", kind, key, path,
                                f'whether bot "{name}" ({where}) can log in to the nodes of {what}')
            for node, labels in nodes.items():
                logins = access_after[bkey].logins_on(labels)
                if not logins:
                    continue
                if node in old and bkey in access_before and access_before[bkey].logins_on(old[node]):
                    continue  # it could log in to this node of the rule before: not the plan's doing
                listed = ", ".join(rule.bots) or "no bot"
                c.add("nodes_reachable_only_by", "node", node, "labels",
                      f'node {node} becomes reachable by bot "{name}" as {", ".join(logins)}; {what} allows only '
                      f"{listed}")


# The checks a change of a kind gets itself (a bot's are by its access, below).
_CHANGE_CHECKS = {"token": Checker.token}


def check(policy: Policy, plan: Plan, after: World, impacts: list[BotImpact], now: datetime,
          before: World | None = None) -> list[Violation]:
    """The rules, on what the plan creates or changes: bots whose access changes, bots it writes and bots holding
    a role it writes (a wildcard that matches no node yet changes no access today), with every role they hold;
    the tokens it writes; and who can reach the nodes a rule guards (without `before`, every pair counts as new)."""
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
    check_node_reach(c, before)
    return c.out
