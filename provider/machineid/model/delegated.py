"""Delegated joins: a bot proves itself with an ID token (a signed JWT) its platform hands it, no secret of ours.

`github` (GitHub Actions), `gitlab` (GitLab CI), `kubernetes` (projected service-account tokens) and `oidc` (any
OpenID Connect issuer). Each token of these methods has a block named after it with its allow rules (any one rule
admits the joiner; within a rule every field set must match) and its issuer settings. Verification is the same for
all: cluster/oidc/. The rules' claims are those the platforms document; see each field.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, fields
from typing import Any
from urllib.parse import urlsplit

from machineid.model import validators as v
from machineid.model.errors import FieldViolation
from machineid.model.fields import attr

DELEGATED_METHODS = ("github", "gitlab", "kubernetes", "oidc")
GITHUB_ISSUER = "https://token.actions.githubusercontent.com"
GITLAB_ISSUER = "https://gitlab.com"
MAX_KUBERNETES_LIFETIME_SECONDS = 30 * 60
# How a delegated ID token may be presented again within its lifetime (see each method's `reuse`).
REUSE = ("none", "same_address", "lifetime")
MAX_DOCUMENT = 64 * 1024  # a pasted key set or CA bundle

# The rule fields matched as globs (model/globs.py); the others compare exactly.
GITHUB_GLOBS = ("sub", "repository", "repository_owner", "workflow", "environment", "actor", "ref")
GITLAB_GLOBS = ("project_path", "namespace_path", "ref", "sub")
_GLOB = " ('*' and '?' globs; empty means any)"
_EXACT = " (exact; empty means any)"


def _https_url(value: Any) -> str | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        parts = urlsplit(value)
    except ValueError:
        parts = None
    if parts is None or parts.scheme != "https" or not parts.hostname or parts.query or parts.fragment or \
            parts.username or re.search(r"[\s\x00-\x1f]", value):
        return (f'"{v.shown(value)}" is not an https:// URL without query or fragment (the issuer, as its tokens '
                "name it)")
    return None


HTTPS_URL = v.Validator("an https:// URL", _https_url)


def _jwks(value: Any) -> str | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        doc = json.loads(value)
    except ValueError as e:
        return f"is not JSON ({e}); paste the issuer's key set, {{\"keys\": [...]}}"
    keys = doc.get("keys") if isinstance(doc, dict) else None
    if not isinstance(keys, list) or not keys:
        return 'is not a key set: it needs a "keys" list with at least one key'
    for i, key in enumerate(keys):
        if not isinstance(key, dict) or not key.get("kty") or not key.get("kid"):
            return f"key [{i}] needs kty and kid (tokens are matched to keys by kid)"
        if any(k in key for k in ("d", "p", "q", "dp", "dq", "qi", "k")):
            return f"key [{i}] holds private or symmetric key material: paste the public key set only"
    return None


JWKS = v.Validator('a JSON Web Key Set with public keys only ({"keys": [...]}, each with kid)', _jwks)


def _ca_bundle(value: Any) -> str | None:
    if not isinstance(value, str) or not value:
        return None
    from cryptography import x509

    try:
        certs = x509.load_pem_x509_certificates(value.encode())
    except ValueError as e:
        return f"is not PEM certificates ({e})"
    return None if certs else "holds no certificate"


CA_BUNDLE = v.Validator("PEM CA certificates", _ca_bundle)

_SERVICE_ACCOUNT = v.regex(
    r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?:[a-z0-9]([-.a-z0-9]{0,251}[a-z0-9])?",
    "a service account as namespace:name",
    'write a service account as namespace:name, e.g. "ci:deployer"',
)
_CLAIM_PATH = v.regex(
    r"[A-Za-z0-9_$-][A-Za-z0-9_$:/-]{0,127}(\.[A-Za-z0-9_$-][A-Za-z0-9_$:/-]{0,127}){0,7}",
    "a claim name, or a dotted path into nested claims (namespace.path)",
    'name a claim, or a path into nested ones with dots, e.g. "repository_owner" or "kubernetes.io.namespace"',
)


def named(rule: Any) -> list[str]:
    """The fields of a rule that are set (what it restricts)."""
    return [f.name for f in fields(rule) if getattr(rule, f.name) not in ("", None, [])]


@dataclass
class GitHubRule:
    sub: str = attr(default="", doc="The token's subject, e.g. repo:acme/app:ref:refs/heads/main" + _GLOB)
    repository: str = attr(default="", doc="owner/name of the repository the workflow runs in" + _GLOB)
    repository_owner: str = attr(default="", doc="The organisation or user that owns the repository" + _GLOB)
    workflow: str = attr(default="", doc="The workflow's name" + _GLOB)
    environment: str = attr(default="", doc="The deployment environment of the job" + _GLOB)
    actor: str = attr(default="", doc="The user who triggered the run" + _GLOB)
    ref: str = attr(default="", doc="The git ref, e.g. refs/heads/main or refs/tags/v*" + _GLOB)
    ref_type: str = attr(default="", doc="branch or tag" + _EXACT, validators=[v.one_of("", "branch", "tag")])

    def check(self) -> Iterator[FieldViolation]:
        if not (self.repository or self.repository_owner or self.sub):
            yield FieldViolation((), "name repository, repository_owner or sub: a rule without them admits any "
                                     "repository on GitHub")


@dataclass
class GitLabRule:
    project_path: str = attr(default="", doc="group/project of the pipeline" + _GLOB)
    namespace_path: str = attr(default="", doc="The group or user namespace of the project" + _GLOB)
    ref: str = attr(default="", doc="The branch or tag name" + _GLOB)
    sub: str = attr(default="", doc="The token's subject, e.g. project_path:acme/app:ref_type:branch:ref:main" + _GLOB)
    pipeline_source: str = attr(default="", doc="What started the pipeline: push, schedule, merge_request_event, ..."
                                                + _EXACT)
    environment: str = attr(default="", doc="The job's environment" + _EXACT)
    ref_type: str = attr(default="", doc="branch or tag" + _EXACT, validators=[v.one_of("", "branch", "tag")])
    ref_protected: str = attr(default="", doc='"true" or "false": whether the ref is protected' + _EXACT,
                              validators=[v.one_of("", "true", "false")])
    environment_protected: str = attr(default="", doc='"true" or "false": whether the environment is protected'
                                                      + _EXACT, validators=[v.one_of("", "true", "false")])
    deployment_tier: str = attr(default="", doc="production, staging, testing, development or other" + _EXACT)

    def check(self) -> Iterator[FieldViolation]:
        if not (self.project_path or self.namespace_path or self.sub):
            yield FieldViolation((), "name project_path, namespace_path or sub: a rule without them admits any "
                                     "project on the instance")


@dataclass
class KubernetesRule:
    service_account: str = attr(default="", required=True, doc="The pod's service account, as namespace:name.",
                                validators=[_SERVICE_ACCOUNT])


@dataclass
class ClaimCondition:
    """One claim's test: exactly one of equals, matches and any_of."""

    claim: str = attr(default="", required=True, doc="The claim, or a dotted path into nested claims.",
                      validators=[_CLAIM_PATH])
    equals: str = attr(default="", doc="The claim must be exactly this.")
    matches: str = attr(default="", doc="The claim must match this glob ('*' and '?').")
    any_of: list[str] = attr(default_factory=list, doc="The claim must be one of these.")

    def check(self) -> Iterator[FieldViolation]:
        if len(named(self)) != 2:  # claim, and one test
            yield FieldViolation((), "set exactly one of equals, matches and any_of")


@dataclass
class ClaimRule:
    conditions: list[ClaimCondition] = attr(default_factory=list, required=True,
                                            doc="Every condition must hold for the rule to admit the joiner.")


def _issuer_doc(default: str) -> str:
    return ("The issuer, exactly as its tokens' iss claim names it; the cluster fetches its keys from "
            f"ISSUER/.well-known/openid-configuration over HTTPS (default {default})." if default else
            "The issuer, exactly as its tokens' iss claim names it; the cluster fetches its keys from "
            "ISSUER/.well-known/openid-configuration over HTTPS.")


_AUDIENCE_DOC = "The audience the tokens must carry (aud); empty means the cluster's name."
_JWKS_DOC = ("The issuer's public keys, pasted (a JSON Web Key Set): the cluster then verifies tokens with these and "
             "makes no network call, for issuers it cannot reach.")
_CA_DOC = "PEM CA certificates the issuer's HTTPS certificate is checked against, instead of the system's."


@dataclass
class GitHubJoin:
    allow: list[GitHubRule] = attr(default_factory=list, doc="Workflows allowed to join; any one rule admits.")
    issuer: str = attr(default=GITHUB_ISSUER, doc=_issuer_doc(GITHUB_ISSUER) + " Set it for GitHub Enterprise "
                       "Server (https://HOST/_services/token).", validators=[HTTPS_URL])
    audience: str = attr(default="", doc=_AUDIENCE_DOC + " The agent asks GitHub for a token with this audience.")
    static_jwks: str = attr(default="", doc=_JWKS_DOC, max_length=MAX_DOCUMENT, validators=[JWKS])
    ca_bundle: str = attr(default="", doc=_CA_DOC, max_length=MAX_DOCUMENT, validators=[CA_BUNDLE])
    max_lifetime: str = attr(default="15m", doc="Tokens that live longer than this (exp - iat) are refused; "
                             "GitHub's live 5 minutes.", validators=[v.duration(min_seconds=60, max_seconds=86400)])


@dataclass
class GitLabJoin:
    allow: list[GitLabRule] = attr(default_factory=list, doc="Pipelines allowed to join; any one rule admits.")
    issuer: str = attr(default=GITLAB_ISSUER, doc=_issuer_doc(GITLAB_ISSUER) + " Set it for a self-managed "
                       "instance.", validators=[HTTPS_URL])
    audience: str = attr(default="", doc=_AUDIENCE_DOC + " The job's id_tokens entry must set the same aud.")
    static_jwks: str = attr(default="", doc=_JWKS_DOC, max_length=MAX_DOCUMENT, validators=[JWKS])
    ca_bundle: str = attr(default="", doc=_CA_DOC, max_length=MAX_DOCUMENT, validators=[CA_BUNDLE])
    max_lifetime: str = attr(default="2h", doc="Tokens that live longer than this (exp - iat) are refused; GitLab's "
                             "live as long as the job's timeout.",
                             validators=[v.duration(min_seconds=60, max_seconds=86400)])
    reuse: str = attr(default="same_address", doc="GitLab hands a job one ID token, and one job may join several "
                      "times (a tofu apply starts the provider more than once). same_address: the token may join "
                      "again, within its lifetime, only from the address that first used it (a copy replayed from "
                      "elsewhere is refused); none: it joins once.", validators=[v.one_of("none", "same_address")])


@dataclass
class KubernetesJoin:
    type: str = attr(default="static_jwks", doc="static_jwks: verify with the cluster's service-account keys pasted "
                     "in static_jwks (no network call: works air-gapped); oidc: fetch them from the Kubernetes "
                     "cluster's OIDC issuer (EKS, GKE, AKS).", validators=[v.one_of("static_jwks", "oidc")])
    allow: list[KubernetesRule] = attr(default_factory=list, doc="Service accounts allowed to join.")
    issuer: str = attr(default="", doc=_issuer_doc("") + " For type oidc.", validators=[HTTPS_URL])
    audience: str = attr(default="", doc=_AUDIENCE_DOC + " Project the token with this audience.")
    static_jwks: str = attr(default="", doc=_JWKS_DOC + " For type static_jwks (kubectl get --raw "
                            "/openid/v1/jwks).", max_length=MAX_DOCUMENT, validators=[JWKS])
    ca_bundle: str = attr(default="", doc=_CA_DOC, max_length=MAX_DOCUMENT, validators=[CA_BUNDLE])


@dataclass
class OIDCJoin:
    issuer: str = attr(default="", doc=_issuer_doc(""), validators=[HTTPS_URL])
    audience: str = attr(default="", doc="The audience the tokens must carry (aud), exactly: choose one for this "
                         "cluster (and token), never a value other relying parties accept.")
    allow: list[ClaimRule] = attr(default_factory=list, doc="Claim rules; any one rule admits the joiner.")
    static_jwks: str = attr(default="", doc=_JWKS_DOC, max_length=MAX_DOCUMENT, validators=[JWKS])
    ca_bundle: str = attr(default="", doc=_CA_DOC, max_length=MAX_DOCUMENT, validators=[CA_BUNDLE])
    max_lifetime: str = attr(default="1h", doc="Tokens that live longer than this (exp - iat) are refused.",
                             validators=[v.duration(min_seconds=60, max_seconds=86400)])
    reuse: str = attr(default="none", doc="none: each token joins once (its jti, or its hash, is remembered until "
                      "it expires); same_address: again only from the address that first used it; lifetime: any "
                      "number of times until it expires (for issuers that hand out one token for long).",
                      validators=[v.one_of(*REUSE)])


def check(join_method: str, github: GitHubJoin, gitlab: GitLabJoin, kubernetes: KubernetesJoin,
          oidc: OIDCJoin) -> Iterator[FieldViolation]:
    """The cross-field rules of a token's delegated blocks: the block of its method is set (with allow rules and
    what the method needs), and no other."""
    blocks: dict[str, Any] = {"github": github, "gitlab": gitlab, "kubernetes": kubernetes, "oidc": oidc}
    for name, block in blocks.items():
        if name != join_method and block != type(block)():
            yield FieldViolation((name,), f"applies to join_method {name} only; remove it")
    block = blocks.get(join_method)
    if block is None:
        return
    if not block.allow:
        yield FieldViolation((join_method, "allow"), "needs at least one rule: without one no job could join")
    if isinstance(block, KubernetesJoin):
        if block.type == "static_jwks" and not block.static_jwks:
            yield FieldViolation((join_method, "static_jwks"), "type static_jwks needs the Kubernetes cluster's "
                                 "service-account key set (kubectl get --raw /openid/v1/jwks)")
        if block.type == "oidc" and not block.issuer:
            yield FieldViolation((join_method, "issuer"), "type oidc needs the Kubernetes cluster's issuer URL")
    if isinstance(block, OIDCJoin):
        if not block.issuer:
            yield FieldViolation((join_method, "issuer"), "is required: the issuer, exactly as its tokens name it")
        if not block.audience:
            yield FieldViolation((join_method, "audience"), "is required: an audience chosen for this cluster")
