"""Each delegated method's allow rules against a verified token's claims, and the claims worth recording.

Any one rule admits the joiner; within a rule every field that is set must match (empty means any). Glob fields
know '*' (any run of characters, '/' included) and '?' (one character), everything else literal; exact fields
compare strings. A refusal names what the token claimed (repository, ref, workflow: not secrets), so whoever reads
it knows which rule to fix.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Any

from machineid.model import delegated as d
from machineid.model.errors import PermissionDeniedError
from machineid.model.globs import glob_match

MAX_ATTRIBUTES = 32
MAX_VALUE = 256

# What the join's audit record and the bot's last join keep of each platform's claims: who, what, which run.
GITHUB_RECORDED = ("sub", "repository", "repository_owner", "workflow", "environment", "actor", "ref", "ref_type",
                   "event_name", "sha", "run_id", "run_attempt", "job_workflow_ref", "runner_environment")
GITLAB_RECORDED = ("sub", "project_path", "namespace_path", "ref", "ref_type", "ref_protected", "pipeline_source",
                   "pipeline_id", "job_id", "environment", "environment_protected", "deployment_tier", "user_login")

# Glob fields match with model/globs.py, which the review also judges these rules with.


_ABSENT = object()


def _walk(value: Any, steps: list[str]) -> Any:
    """The value at these path steps; a key may itself hold dots ("kubernetes.io"), so the longest key that
    matches is tried first, then shorter ones."""
    if not steps:
        return value
    if not isinstance(value, dict):
        return _ABSENT
    for n in range(len(steps), 0, -1):
        key = ".".join(steps[:n])
        if key in value:
            found = _walk(value[key], steps[n:])
            if found is not _ABSENT:
                return found
    return _ABSENT


def claim(claims: dict[str, Any], path: str) -> str | None:
    """A claim as a string, by name or dotted path into nested claims (whose names may hold dots themselves, as
    Kubernetes' "kubernetes.io" does); None when absent or not a scalar."""
    value = _walk(claims, path.split("."))
    if isinstance(value, bool):
        return "true" if value else "false"
    if (isinstance(value, int) and abs(value) <= 2**53) or isinstance(value, str):
        return str(value)
    return None


def _rule_matches(rule: Any, claims: dict[str, Any], globs: tuple[str, ...]) -> bool:
    for f in fields(rule):
        want = getattr(rule, f.name)
        if not want:
            continue
        got = claim(claims, f.name)
        if got is None or not (glob_match(want, got) if f.name in globs else want == got):
            return False
    return True


def _recorded(claims: dict[str, Any], names: tuple[str, ...] | list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for name in names:
        value = claim(claims, name)
        if value is not None and len(out) < MAX_ATTRIBUTES:
            out[name] = value[:MAX_VALUE]
    return out


@dataclass(frozen=True)
class Admitted:
    rule: int  # the index of the allow rule that admitted the joiner
    attributes: dict[str, str]  # what the token proved, for the audit record and the bot's last join


def github(block: d.GitHubJoin, claims: dict[str, Any], token: str) -> Admitted:
    for i, rule in enumerate(block.allow):
        if _rule_matches(rule, claims, d.GITHUB_GLOBS):
            return Admitted(i, _recorded(claims, GITHUB_RECORDED))
    who = _recorded(claims, ("repository", "ref", "workflow", "environment"))
    raise PermissionDeniedError(f"GitHub workflow {who.get('workflow', '?')!r} of {who.get('repository', '?')} on "
                                f"{who.get('ref', '?')}" + (f" (environment {who['environment']})"
                                                            if who.get("environment") else "")
                                + f' matches no allow rule of token "{token}"')


def gitlab(block: d.GitLabJoin, claims: dict[str, Any], token: str) -> Admitted:
    for i, rule in enumerate(block.allow):
        if _rule_matches(rule, claims, d.GITLAB_GLOBS):
            return Admitted(i, _recorded(claims, GITLAB_RECORDED))
    who = _recorded(claims, ("project_path", "ref", "pipeline_source", "environment"))
    raise PermissionDeniedError(f"GitLab pipeline of {who.get('project_path', '?')} on {who.get('ref', '?')} "
                                f"({who.get('pipeline_source', '?')})" + (f" (environment {who['environment']})"
                                                                          if who.get("environment") else "")
                                + f' matches no allow rule of token "{token}"')


def kubernetes(block: d.KubernetesJoin, claims: dict[str, Any], token: str) -> Admitted:
    """A projected token bound to a pod: a legacy service-account token (no pod, no expiry) is refused."""
    namespace = claim(claims, "kubernetes.io.namespace")
    account = claim(claims, "kubernetes.io.serviceaccount.name")
    pod = claim(claims, "kubernetes.io.pod.name")
    if not namespace or not account:
        raise PermissionDeniedError("the ID token is not a Kubernetes service-account token (no kubernetes.io "
                                    "namespace and service account)")
    if claims.get("sub") != f"system:serviceaccount:{namespace}:{account}":
        raise PermissionDeniedError("the ID token's subject does not name its service account")
    if not pod:
        raise PermissionDeniedError("the service-account token is not bound to a pod: project one into the pod "
                                    "(a serviceAccountToken volume) instead of a long-lived secret token")
    service_account = f"{namespace}:{account}"
    for i, rule in enumerate(block.allow):
        if rule.service_account == service_account:
            return Admitted(i, {"sub": str(claims["sub"])[:MAX_VALUE], "namespace": namespace,
                                "service_account": service_account[:MAX_VALUE], "pod": pod[:MAX_VALUE]})
    raise PermissionDeniedError(f"service account {service_account} (pod {pod}) matches no allow rule of token "
                                f'"{token}"')


def oidc(block: d.OIDCJoin, claims: dict[str, Any], token: str) -> Admitted:
    named = [c.claim for rule in block.allow for c in rule.conditions]
    for i, rule in enumerate(block.allow):
        if all(_condition(c, claims) for c in rule.conditions):
            return Admitted(i, _recorded(claims, list(dict.fromkeys(["iss", "sub", *named]))))
    raise PermissionDeniedError(f"the ID token (subject {str(claims.get('sub', '?'))[:MAX_VALUE]!r}) matches no "
                                f'allow rule of token "{token}"')


def _condition(c: d.ClaimCondition, claims: dict[str, Any]) -> bool:
    got = claim(claims, c.claim)
    if got is None:
        return False
    if c.equals:
        return got == c.equals
    if c.matches:
        return glob_match(c.matches, got)
    return got in c.any_of


RULES: dict[str, Callable[[Any, dict[str, Any], str], Admitted]] = {
    "github": github, "gitlab": gitlab, "kubernetes": kubernetes, "oidc": oidc}
