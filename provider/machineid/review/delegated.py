"""Delegated join tokens (github, gitlab, kubernetes, oidc) as a reviewer reads them: who each allow rule admits,
in plain words, and what it pins down (the owner of the repository or project, the subject, the ref or
environment), judged by what its globs match (model/globs.py), as the cluster matches them (cluster/oidc/rules.py).

Values known only at apply are part of the picture: a rule field the plan does not show reads "known only at
apply" in the words, and the policy (review/policy.py) fails what it cannot see. Within a rule every field that is
set must match, so a value known later can only narrow a rule: what the known fields pin stays pinned."""

from __future__ import annotations

import json
from dataclasses import dataclass, field, fields
from typing import Any

from machineid.model import delegated as d
from machineid.model.errors import Path
from machineid.model.globs import fixed_segment, matches_every_value
from machineid.model.resources import ProvisionToken

LATER = "known only at apply"
# Where the owner sits in each platform's claims: (claim, the literal text before it in that claim).
_OWNER = {"github": (("repository_owner", ""), ("repository", ""), ("sub", "repo:")),
          "gitlab": (("namespace_path", ""), ("project_path", ""), ("sub", "project_path:"))}
_REF_CLAIMS = ("ref", "environment")
_PROTECTED = ("ref_protected", "environment_protected")
_SUB_REF = (":ref:", ":environment:")  # GitHub's and GitLab's subjects end with the ref or the environment
_DEFAULT_ISSUER = {"github": d.GITHUB_ISSUER, "gitlab": d.GITLAB_ISSUER}


@dataclass(frozen=True)
class Test:
    """One claim test of a rule: a glob, an exact value, or one of several values (None: known only at apply)."""

    claim: str
    kind: str  # glob, exact, any_of
    values: tuple[str, ...] | None
    path: Path  # where the configuration sets it


@dataclass
class Rule:
    """One allow rule as the plan shows it: its tests, and where it is (its index in the configuration)."""

    path: Path  # (method, "allow", i)
    tests: list[Test]
    fields: dict[str, str | None] = field(default_factory=dict)  # github, gitlab, kubernetes: field -> value
    # The rule's values known only at apply: (the claim they test, or None when that is unknown too; the path).
    hidden: list[tuple[str | None, Path]] = field(default_factory=list)

    @property
    def later(self) -> bool:
        """A condition, or the claim one tests, is known only at apply."""
        return any(c is None for c, _ in self.hidden)

    def restricts(self, claims: tuple[str, ...]) -> bool:
        return any(t.claim in claims and _restricts(t) for t in self.tests)

    def where(self, claims: tuple[str, ...]) -> Path:
        """Where to point at for these claims: the first test of one, else the rule."""
        return next((t.path for t in self.tests if t.claim in claims), self.path)

    def unknown(self, claims: tuple[str, ...]) -> list[Path]:
        """The paths of the values known only at apply that may test these claims."""
        return [p for c, p in self.hidden if c is None or c in claims]


def _restricts(t: Test) -> bool:
    """The test leaves out some value: an exact value, a list of them, or a glob that does not match everything."""
    if t.values is None or not t.values:
        return False
    return t.kind != "glob" or not matches_every_value(t.values[0])


@dataclass
class Token:
    """A delegated token's block as the plan shows it."""

    method: str
    block: Any
    rules: list[Rule]
    hidden: list[Path]  # the block, its allow list, or whole rules, known only at apply
    unknown: set[str]  # block fields (issuer, audience, static_jwks, type, ...) known only at apply

    @property
    def later(self) -> bool:
        return bool(self.hidden)

    def value(self, name: str) -> str | None:
        return None if name in self.unknown else str(getattr(self.block, name, "") or "")


def read(token: ProvisionToken, unknown: list[Path]) -> Token | None:
    """The token's delegated block with the plan's unknown paths placed on its rules; None for other methods."""
    method = token.spec.join_method
    if method not in d.DELEGATED_METHODS:
        return None
    block = getattr(token.spec, method)
    mine = [u[1:] for u in unknown if u[:1] == (method,)]
    rule_paths = [u[1:] for u in mine if len(u) >= 2 and u[0] == "allow"]
    hidden = [(method, *u) for u in mine if u in ((), ("allow",))]
    hidden += [(method, "allow", *u) for u in rule_paths if len(u) == 1]
    rules = []
    for i, rule in zip(_positions(len(block.allow), rule_paths), block.allow, strict=True):
        inside = [u[1:] for u in rule_paths if u[0] == i]
        rules.append(_rule(method, (method, "allow", i), rule, inside))
    return Token(method, block, rules, hidden, {str(u[0]) for u in mine if len(u) == 1})


def _positions(known: int, paths: list[Path]) -> list[int]:
    """The configuration's index of each item the plan shows: items known only at apply are left out of the
    decoded list (their paths are (i,)), so the ones after them moved up."""
    gone = {u[0] for u in paths if len(u) == 1 and isinstance(u[0], int)}
    out: list[int] = []
    i = 0
    while len(out) < known:
        if i not in gone:
            out.append(i)
        i += 1
    return out


def _rule(method: str, path: Path, rule: Any, unknown: list[Path]) -> Rule:
    if method == "oidc":
        return _claim_rule(path, rule, unknown)
    later = {str(u[0]) for u in unknown if u}
    globs = d.GITHUB_GLOBS if method == "github" else d.GITLAB_GLOBS if method == "gitlab" else ()
    values: dict[str, str | None] = {}
    for f in fields(rule):
        val = None if f.name in later else str(getattr(rule, f.name) or "")
        if val != "":
            values[f.name] = val
    tests = [Test(name, "glob" if name in globs else "exact", None if val is None else (val,), (*path, name))
             for name, val in values.items()]
    return Rule(path, tests, values, [(name, (*path, name)) for name, val in values.items() if val is None])


def _claim_rule(path: Path, rule: d.ClaimRule, unknown: list[Path]) -> Rule:
    """An oidc rule: a condition whose claim is known only at apply narrows the rule, but names nothing to judge."""
    where = (*path, "conditions")
    if ("conditions",) in unknown:
        return Rule(path, [], hidden=[(None, where)])
    cond_paths = [u[1:] for u in unknown if len(u) >= 2 and u[0] == "conditions"]
    tests: list[Test] = []
    hidden: list[tuple[str | None, Path]] = [(None, (*where, u[0])) for u in cond_paths if len(u) == 1]
    for j, c in zip(_positions(len(rule.conditions), cond_paths), rule.conditions, strict=True):
        later = [u[1:] for u in cond_paths if u[0] == j and len(u) > 1]
        if any(u[0] == "claim" for u in later):
            hidden.append((None, (*where, j, "claim")))
            continue
        hidden += [(c.claim, (*where, j, *u)) for u in later]
        kind, values = ("exact", (c.equals,)) if c.equals else ("glob", (c.matches,)) if c.matches else \
            ("any_of", tuple(c.any_of))
        tests.append(Test(c.claim, kind, None if later else values, (*where, j)))
    return Rule(path, tests, hidden=hidden)


# ---------------------------------------------------------------- what a rule pins down


def pins_owner(method: str, rule: Rule) -> bool:
    """github: one repository owner; gitlab: one top-level group (by a field that names it, or the start of the
    subject); oidc: the subject (a test on sub that leaves some subject out); kubernetes: a service account
    (always exact)."""
    if method == "kubernetes":
        return True
    if method == "oidc":
        return rule.restricts(("sub",))
    for t in rule.tests:
        for claim, before in _OWNER[method]:
            if t.claim == claim and t.values and all(v.startswith(before) and fixed_segment(v[len(before):])
                                                     for v in t.values):
                return True
    return False


def owner_claims(method: str) -> tuple[str, ...]:
    """The claims that may pin the owner (oidc: the subject)."""
    return ("sub",) if method == "oidc" else tuple(c for c, _ in _OWNER.get(method, ()))


def pins_ref(method: str, rule: Rule) -> bool:
    """The rule restricts the ref or the environment: a ref or environment test that leaves some out, a protected
    ref or environment (GitLab's ref_protected/environment_protected "true"), or a subject that ends with a ref or
    environment (":ref:..."/":environment:..." with a value that is not everything)."""
    if method == "kubernetes":
        return True
    if rule.restricts(_REF_CLAIMS):
        return True
    for t in rule.tests:
        if t.claim in _PROTECTED and t.values and set(t.values) == {"true"}:
            return True
        if t.claim == "sub" and t.values and all(_sub_pins_ref(v) for v in t.values):
            return True
    return False


REF_CLAIMS = (*_REF_CLAIMS, *_PROTECTED, "sub")  # the claims that may restrict the ref or the environment


def _sub_pins_ref(pattern: str) -> bool:
    for marker in _SUB_REF:
        _, found, rest = pattern.partition(marker)
        if found and rest and not matches_every_value(rest):
            return True
    return False


# ---------------------------------------------------------------- plain words


def _q(value: str | None) -> str:
    if value is None:
        return f"({LATER})"
    return f"`` {value} ``" if "`" in value else f"`{value}`"


def _any(value: str | None, noun: str) -> str:
    """A glob field's value; one that matches everything says so."""
    return f"any {noun} ({_q(value)})" if value is not None and matches_every_value(value) else _q(value)


def words(tok: Token, bot: str, name: str) -> list[str]:
    """One sentence per allow rule: who may join as the bot, through which token and on what terms."""
    terms = _terms(tok, name)
    out = [f"{_WHO[tok.method](tok, r)} may join as bot {_q(bot)} ({terms})" for r in tok.rules]
    if tok.later:
        out.append(f"jobs allowed by rules {LATER} may join as bot {_q(bot)} ({terms})")
    return out


def _terms(tok: Token, name: str) -> str:
    out = [f"{tok.method} token {_q(name)}"]
    iss = tok.value("issuer")
    if tok.method in _DEFAULT_ISSUER and iss != _DEFAULT_ISSUER[tok.method]:
        out.append(f"issuer {_q(iss)}")
    keys = tok.value("static_jwks")
    if keys is None or keys:
        out.append(f"verified with keys pasted in the token ({_kids(keys)})" +
                   ("" if tok.method == "kubernetes" else ", not the issuer's published ones"))
    reuse = tok.value("reuse") if tok.method == "oidc" else ""
    if reuse is None:
        out.append(f"reuse {LATER}")
    elif reuse == "lifetime":
        out.append("an ID token may join any number of times until it expires")
    return "; ".join(out)


def _kids(jwks: str | None) -> str:
    if jwks is None:
        return LATER
    try:
        kids = [str(k["kid"]) for k in json.loads(jwks)["keys"]]
    except (ValueError, KeyError, TypeError):
        return "a key set"
    return ("key " if len(kids) == 1 else "keys ") + ", ".join(_q(k) for k in kids)


def _github(tok: Token, r: Rule) -> str:
    f = r.fields
    out = f"workflow {_q(f['workflow'])}" if "workflow" in f else "any workflow"
    if "repository" in f:
        out += f" of {_any(f['repository'], 'repository')}" + (
            f" (owner {_any(f['repository_owner'], 'owner')})" if "repository_owner" in f else "")
    elif "repository_owner" in f:
        out += f" of any repository of {_any(f['repository_owner'], 'owner')}"
    out += _ref(f)
    if "environment" in f:
        out += f" in environment {_q(f['environment'])}"
    if "actor" in f:
        out += f" run by {_q(f['actor'])}"
    return out + (f" with subject {_q(f['sub'])}" if "sub" in f else "")


def _ref(f: dict[str, str | None]) -> str:
    """The ref part; "on any ref" unless the subject or an environment may say more."""
    if "ref" in f:
        return f" on {_any(f['ref'], 'ref')}" + (f" ({_q(f['ref_type'])})" if "ref_type" in f else "")
    if "ref_type" in f:
        return f" on any ref of type {_q(f['ref_type'])}"
    return "" if "sub" in f or "environment" in f else " on any ref"


def _protection(f: dict[str, str | None], name: str, what: str) -> str:
    if name not in f:
        return ""
    if f[name] is None:
        return f" ({what} protection {LATER})"
    return f" (protected {what}s)" if f[name] == "true" else f" (unprotected {what}s)"


def _gitlab(tok: Token, r: Rule) -> str:
    f = r.fields
    out = "pipelines"
    if "project_path" in f:
        out += f" of {_any(f['project_path'], 'project')}" + (
            f" (namespace {_any(f['namespace_path'], 'namespace')})" if "namespace_path" in f else "")
    elif "namespace_path" in f:
        out += f" of any project in {_any(f['namespace_path'], 'namespace')}"
    out += _ref(f) + _protection(f, "ref_protected", "ref")
    if "pipeline_source" in f:
        out += f" started by {_q(f['pipeline_source'])}"
    if "environment" in f:
        out += f" in environment {_q(f['environment'])}"
    out += _protection(f, "environment_protected", "environment")
    if "deployment_tier" in f:
        out += f" of deployment tier {_q(f['deployment_tier'])}"
    return out + (f" with subject {_q(f['sub'])}" if "sub" in f else "")


def _kubernetes(tok: Token, r: Rule) -> str:
    where = (f"the Kubernetes cluster of issuer {_q(tok.value('issuer'))}" if tok.value("type") == "oidc" else
             "the Kubernetes cluster whose keys the token holds" if tok.value("type") == "static_jwks" else
             f"a Kubernetes cluster (type {LATER})")
    return f"pods of service account {_q(r.fields.get('service_account'))} in {where}"


def _oidc(tok: Token, r: Rule) -> str:
    out = f"tokens of issuer {_q(tok.value('issuer'))} for audience {_q(tok.value('audience'))}"
    tests = [f"{_q(t.claim)} {_OP[t.kind]} {', '.join(_q(v) for v in t.values)}" if t.values is not None else
             f"{_q(t.claim)} tested against a value {LATER}" for t in r.tests]
    if r.later:
        tests.append(f"conditions {LATER}")
    return out + (" with " + " and ".join(tests) if tests else " with any claims")


_OP = {"exact": "=", "glob": "matching", "any_of": "one of"}
_WHO = {"github": _github, "gitlab": _gitlab, "kubernetes": _kubernetes, "oidc": _oidc}
