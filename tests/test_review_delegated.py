"""`machineid review` on delegated join tokens (issue 18 §3): who may join as which bot in plain words, a change of
a token's rules as gained and lost joiners, and the policy's rules for them (wildcard owners, no ref restriction,
issuers outside an allow-list), with values known only at apply failing closed. Plan JSON in the shape
`tofu show -json` prints (tests/test_review.py runs the real tool)."""

from __future__ import annotations

import itertools
import json
import random
from typing import Any

import pytest

from machineid.model import codec
from machineid.model.errors import ValidationError
from machineid.model.globs import fixed_segment, glob_match, matches_every_value
from machineid.model.resources import ProvisionToken
from machineid.review import plan as plans
from machineid.review import policy, report
from machineid.review.impact import World, written_tokens
from tests.test_review_rules import NOW, bot, found, rc, review, tf_plan

GITHUB = "https://token.actions.githubusercontent.com"
OWNERS = {"deny_wildcard_join_rules": True}
REFS = {"require_ref_or_environment": True}
ISSUERS = {"allowed_issuers": [GITHUB]}
JWKS = json.dumps({"keys": [{"kty": "EC", "kid": "k8s-1", "crv": "P-256", "x": "x", "y": "y"}]})


def token_after(method: str, block: dict[str, Any] | None, name: str = "t-join", bot_name: str = "deployer",
                **extra: Any) -> dict[str, Any]:
    """A machineid_provision_token's planned value as tofu prints it (the other methods' blocks null)."""
    out: dict[str, Any] = {"allow": [], "bot_name": bot_name, "bound_keypair": None, "description": "",
                           "join_method": method, "labels": {}, "name": name, "roles": ["Bot"], "ttl": "1h",
                           "github": None, "gitlab": None, "kubernetes": None, "oidc": None, **extra}
    if block is not None:
        out[method] = block
    return out


def token_plan(method: str, block: dict[str, Any], *, unknown: dict[str, Any] | None = None,
               before: dict[str, Any] | None = None, **extra: Any) -> str:
    after = token_after(method, block, **extra)
    return tf_plan(rc("machineid_provision_token.t", ["update" if before else "create"], after, before=before,
                      unknown=unknown))


def cluster(*tokens: dict[str, Any]) -> World:
    world = World(bots={"deployer": bot("deployer", ["r"])})
    for t in tokens:
        token = codec.decode_and_validate(ProvisionToken, {"metadata": {"name": t["name"]}, "spec": {
            k: v for k, v in t.items() if k not in ("name", "description", "labels", "ttl") and v is not None}})
        world.tokens[token.metadata.name] = token
    return world


def joiners(text: str, before: World | None = None) -> list[str]:
    impacts, _, _ = review(text, before or cluster(), {})
    (imp,) = impacts
    assert imp.after is not None
    return imp.after.joiners


def violated(text: str, rules: dict[str, Any], before: World | None = None) -> set[tuple[str, str, str]]:
    _, violations, _ = review(text, before or cluster(), rules)
    return found(violations)


# ---------------------------------------------------------------- the glob, judged by what it matches


@pytest.mark.parametrize(("pattern", "every"), [
    ("*", True), ("**", True), ("?*", True), ("*?", True), ("*?*", True),
    ("", False), ("?", False), ("??*", False), ("*/*", False), ("a*", False), ("*a*", False), ("[!a]*", False)])
def test_a_glob_matches_every_value_only_when_it_does(pattern: str, every: bool) -> None:
    assert matches_every_value(pattern) is every


def test_the_every_value_judgement_agrees_with_the_matcher() -> None:
    """Random globs over the rules' alphabet: judged to match every value exactly when the cluster's matcher takes
    every non-empty value tried (short strings of the characters involved, '/' and ':' included)."""
    rnd = random.Random(18)
    values = ["".join(t) for n in range(1, 5) for t in itertools.product("a/:x", repeat=n)]
    for _ in range(2000):
        pattern = "".join(rnd.choice("a*?/") for _ in range(rnd.randint(1, 4)))
        assert matches_every_value(pattern) is all(glob_match(pattern, v) for v in values), pattern


@pytest.mark.parametrize(("pattern", "segment"), [
    ("acme/app", "acme"), ("acme/*", "acme"), ("acme", "acme"), ("acme/*/x", "acme"),
    ("*", None), ("*/*", None), ("*/app", None), ("acme*/app", None), ("ac?e/app", None), ("/app", None),
    ("", None)])
def test_the_first_segment_is_fixed_only_without_a_wildcard_before_it(pattern: str, segment: str | None) -> None:
    assert fixed_segment(pattern) == segment
    if segment is not None:  # every value it matches starts with that segment
        assert not glob_match(pattern, "evil/" + pattern.partition("/")[2])


# ---------------------------------------------------------------- plain words


def test_each_github_rule_says_who_may_join_as_which_bot() -> None:
    text = token_plan("github", {"issuer": GITHUB, "allow": [
        {"repository": "acme/app", "ref": "refs/heads/main"},
        {"repository_owner": "acme", "environment": "prod", "workflow": "deploy", "actor": "alice"},
        {"sub": "repo:acme/app:ref:refs/tags/v*"}]}, name="gh")
    assert joiners(text) == [
        "any workflow of `acme/app` on `refs/heads/main` may join as bot `deployer` (github token `gh`)",
        "any workflow with subject `repo:acme/app:ref:refs/tags/v*` may join as bot `deployer` (github token `gh`)",
        "workflow `deploy` of any repository of `acme` in environment `prod` run by `alice` may join as bot "
        "`deployer` (github token `gh`)"]


def test_gitlab_kubernetes_and_oidc_rules_in_plain_words() -> None:
    gitlab = token_plan("gitlab", {"issuer": "https://gitlab.example", "allow": [
        {"namespace_path": "acme", "ref_protected": "true", "pipeline_source": "push"},
        {"project_path": "acme/app", "environment": "production", "environment_protected": "true"}]}, name="gl")
    assert joiners(gitlab) == [
        "pipelines of `acme/app` in environment `production` (protected environments) may join as bot "
        "`deployer` (gitlab token `gl`; issuer `https://gitlab.example`)",
        "pipelines of any project in `acme` on any ref (protected refs) started by `push` may join as bot "
        "`deployer` (gitlab token `gl`; issuer `https://gitlab.example`)"]
    kube = token_plan("kubernetes", {"type": "static_jwks", "static_jwks": JWKS,
                                     "allow": [{"service_account": "ci:deployer"}]}, name="k8s")
    assert joiners(kube) == [
        "pods of service account `ci:deployer` in the Kubernetes cluster whose keys the token holds may join as "
        "bot `deployer` (kubernetes token `k8s`; verified with keys pasted in the token (key `k8s-1`))"]
    oidc = token_plan("oidc", {"issuer": "https://idp.example", "audience": "machineid", "reuse": "lifetime",
                               "allow": [{"conditions": [{"claim": "sub", "equals": "svc-1"},
                                                         {"claim": "groups", "any_of": ["ops", "ci"]},
                                                         {"claim": "email", "matches": "*@acme.com"}]}]},
                      name="idp")
    assert joiners(oidc) == [
        "tokens of issuer `https://idp.example` for audience `machineid` with `sub` = `svc-1` and `groups` one of "
        "`ops`, `ci` and `email` matching `*@acme.com` may join as bot `deployer` (oidc token `idp`; an ID token "
        "may join any number of times until it expires)"]


def test_a_change_of_a_tokens_rules_is_gained_and_lost_joiners_and_the_rest_still_join() -> None:
    """The plan widens a github token on the cluster from main to any ref: the bot loses one joiner and gains
    another; its kubernetes token still admits its pods, and says so."""
    old = token_after("github", {"issuer": GITHUB, "allow": [{"repository": "acme/app", "ref": "refs/heads/main"}]},
                      name="gh")
    kube = token_after("kubernetes", {"type": "static_jwks", "static_jwks": JWKS,
                                      "allow": [{"service_account": "ci:deployer"}]}, name="k8s")
    new = token_after("github", {"issuer": GITHUB, "allow": [{"repository": "acme/app"}]}, name="gh")
    text = tf_plan(rc("machineid_provision_token.t", ["update"], new, before=old))
    impacts, _, markdown = review(text, cluster(old, kube), {})
    (imp,) = impacts
    assert imp.status == "changed"
    assert imp.gained() == {"joiners": [
        "any workflow of `acme/app` on any ref may join as bot `deployer` (github token `gh`)"]}
    assert imp.lost() == {"joiners": [
        "any workflow of `acme/app` on `refs/heads/main` may join as bot `deployer` (github token `gh`)"]}
    assert ("- **+ gains joiners (who may join as it)**:\n"
            "  - any workflow of `acme/app` on any ref may join as bot `deployer` (github token `gh`)\n"
            "- **- loses joiners (who may join as it)**:\n"
            "  - any workflow of `acme/app` on `refs/heads/main` may join") in markdown
    assert "- may still join as it:\n  - pods of service account `ci:deployer`" in markdown


def test_a_written_token_that_changes_no_access_is_still_described() -> None:
    """A delegated token the plan changes without changing who may join (its description) is listed, so the
    reviewer still reads who may join through it; a token-method token never is (its name is its secret)."""
    old = token_after("github", {"issuer": GITHUB, "allow": [{"repository": "acme/app", "ref": "refs/heads/main"}]},
                      name="gh")
    secret = {"bot_name": "deployer", "join_method": "token", "name": "s" * 32, "roles": ["Bot"], "ttl": "1h"}
    text = tf_plan(rc("machineid_provision_token.t", ["update"], {**old, "description": "now described"},
                      before=old), rc("machineid_provision_token.s", ["create"], secret))
    plan = plans.load(text)
    before = cluster(old)
    impacts, _, _ = review(text, before, {})
    assert impacts[0].gained() == {"join_methods": ["token"]}  # the single-use token; the github one is the same
    tokens = written_tokens(plan, NOW)
    markdown = report.as_markdown(plan, impacts, None, tokens)
    assert "### delegated join tokens" not in markdown  # the bot changes: its joiners are under it
    quiet = report.as_markdown(plan, [], None, tokens)
    assert ("### delegated join tokens (no change to who may join)\n- `machineid_provision_token.t` (github, bot "
            "`deployer`)\n  - any workflow of `acme/app` on `refs/heads/main` may join as bot `deployer`") in quiet
    data = json.loads(report.as_json(plan, impacts, None, tokens))
    assert [t["resource"] for t in data["tokens"]] == ["machineid_provision_token.t"]
    assert "s" * 32 not in json.dumps(data) and "s" * 32 not in markdown


def test_an_expired_token_admits_no_one() -> None:
    text = token_plan("github", {"issuer": GITHUB, "allow": [{"repository": "acme/app"}]},
                      expires="2020-01-01T00:00:00Z")
    assert joiners(text) == []


# ---------------------------------------------------------------- deny_wildcard_join_rules


@pytest.mark.parametrize(("method", "rule", "attribute"), [
    ("github", {"repository": "*"}, "repository"),
    ("github", {"repository": "*/*"}, "repository"),
    ("github", {"repository": "?*"}, "repository"),
    ("github", {"repository": "*/app"}, "repository"),  # names no owner: anyone can create an app repository
    ("github", {"repository": "acme*/app"}, "repository"),  # acme-evil is anyone's to create
    ("github", {"repository_owner": "**", "ref": "refs/heads/main"}, "repository_owner"),
    ("github", {"sub": "repo:*"}, "sub"),
    ("github", {"sub": "*:acme/app:*"}, "sub"),
    ("gitlab", {"project_path": "*"}, "project_path"),
    ("gitlab", {"namespace_path": "?*", "project_path": "*/app"}, "project_path"),
    ("gitlab", {"sub": "project_path:*"}, "sub"),
    ("oidc", {"conditions": [{"claim": "sub", "matches": "*"}]}, "conditions[0]"),
    ("oidc", {"conditions": [{"claim": "sub", "matches": "?*"}]}, "conditions[0]"),
    ("oidc", {"conditions": [{"claim": "email", "equals": "ci@acme.com"}]}, ""),  # no test of the subject
])
def test_rules_that_admit_any_owner_or_subject_are_refused(method: str, rule: dict[str, Any],
                                                            attribute: str) -> None:
    block: dict[str, Any] = {"allow": [rule]}
    if method == "oidc":
        block |= {"issuer": "https://idp.example", "audience": "machineid"}
    text = token_plan(method, block)
    path = f"{method}.allow[0]" + (f".{attribute}" if attribute else "")
    assert violated(text, OWNERS) == {("deny_wildcard_join_rules", "machineid_provision_token.t", path)}


@pytest.mark.parametrize(("method", "rule"), [
    ("github", {"repository": "acme/app"}),
    ("github", {"repository": "acme/*"}),
    ("github", {"repository_owner": "acme"}),
    ("github", {"repository": "*", "repository_owner": "acme"}),  # the owner pins it
    ("github", {"sub": "repo:acme/*"}),
    ("gitlab", {"namespace_path": "acme"}),
    ("gitlab", {"project_path": "acme/*/app"}),
    ("gitlab", {"sub": "project_path:acme/app:*"}),
    ("oidc", {"conditions": [{"claim": "sub", "equals": "svc-1"}]}),
    ("oidc", {"conditions": [{"claim": "sub", "any_of": ["a", "b"]}]}),
    ("oidc", {"conditions": [{"claim": "sub", "matches": "user-*"}]}),
    ("kubernetes", {"service_account": "ci:deployer"}),
])
def test_rules_that_name_an_owner_or_subject_pass(method: str, rule: dict[str, Any]) -> None:
    block: dict[str, Any] = {"allow": [rule]}
    if method == "oidc":
        block |= {"issuer": "https://idp.example", "audience": "machineid"}
    if method == "kubernetes":
        block |= {"type": "static_jwks", "static_jwks": JWKS}
    assert violated(token_plan(method, block), OWNERS) == set()


# ---------------------------------------------------------------- require_ref_or_environment


@pytest.mark.parametrize(("method", "rule", "ok"), [
    ("github", {"repository": "acme/app", "ref": "refs/heads/main"}, True),
    ("github", {"repository": "acme/app", "ref": "refs/heads/*"}, True),
    ("github", {"repository": "acme/app", "environment": "prod"}, True),
    ("github", {"sub": "repo:acme/app:ref:refs/heads/main"}, True),
    ("github", {"sub": "repo:acme/app:environment:prod"}, True),
    ("github", {"repository": "acme/app"}, False),
    ("github", {"repository": "acme/app", "ref": "*"}, False),
    ("github", {"repository": "acme/app", "ref": "?*", "ref_type": "branch"}, False),
    ("github", {"sub": "repo:acme/app:*"}, False),
    ("github", {"sub": "repo:acme/app:pull_request"}, False),
    ("github", {"sub": "repo:acme/app:ref:*"}, False),
    ("gitlab", {"project_path": "acme/app", "ref": "main"}, True),
    ("gitlab", {"project_path": "acme/app", "ref_protected": "true"}, True),
    ("gitlab", {"project_path": "acme/app", "environment": "production"}, True),
    ("gitlab", {"project_path": "acme/app", "ref_protected": "false"}, False),
    ("gitlab", {"project_path": "acme/app", "pipeline_source": "push"}, False),
    ("oidc", {"conditions": [{"claim": "sub", "equals": "x"}, {"claim": "ref", "equals": "refs/heads/main"}]}, True),
    ("oidc", {"conditions": [{"claim": "sub", "equals": "x"}, {"claim": "ref", "matches": "*"}]}, False),
    ("kubernetes", {"service_account": "ci:deployer"}, True),
])
def test_rules_without_a_ref_or_environment_restriction_are_refused(method: str, rule: dict[str, Any],
                                                                     ok: bool) -> None:
    block: dict[str, Any] = {"allow": [rule]}
    if method == "oidc":
        block |= {"issuer": "https://idp.example", "audience": "machineid"}
    if method == "kubernetes":
        block |= {"type": "static_jwks", "static_jwks": JWKS}
    got = violated(token_plan(method, block), REFS)
    assert got == set() if ok else {r for r, _, _ in got} == {"require_ref_or_environment"}
    if not ok:
        (violation,) = review(token_plan(method, block), cluster(), REFS)[1]
        assert violation.attribute.startswith(f"{method}.allow[0]")
        assert "restricts neither the ref nor the environment" in violation.message


# ---------------------------------------------------------------- allowed_issuers


def test_issuers_outside_the_allow_list_and_pasted_keys_are_refused() -> None:
    assert violated(token_plan("github", {"issuer": GITHUB, "allow": [{"repository": "acme/app"}]}), ISSUERS) == set()
    ghes = token_plan("github", {"issuer": "https://ghe.acme.com/_services/token",
                                 "allow": [{"repository": "acme/app"}]})
    _, violations, markdown = review(ghes, cluster(), ISSUERS)
    assert found(violations) == {("allowed_issuers", "machineid_provision_token.t", "github.issuer")}
    assert ("`allowed_issuers`: `machineid_provision_token.t` `github.issuer`: issuer "
            "https://ghe.acme.com/_services/token is not one of allowed_issuers") in markdown

    pasted = token_plan("github", {"issuer": GITHUB, "static_jwks": JWKS, "allow": [{"repository": "acme/app"}]})
    assert violated(pasted, ISSUERS) == {("allowed_issuers", "machineid_provision_token.t", "github.static_jwks")}
    assert violated(pasted, {**ISSUERS, "allow_static_jwks": True}) == set()
    kube = token_plan("kubernetes", {"type": "static_jwks", "static_jwks": JWKS,
                                     "allow": [{"service_account": "ci:deployer"}]})
    assert violated(kube, ISSUERS) == {("allowed_issuers", "machineid_provision_token.t", "kubernetes.static_jwks")}
    oidc = token_plan("oidc", {"issuer": "https://idp.example", "audience": "machineid",
                               "allow": [{"conditions": [{"claim": "sub", "equals": "x"}]}]})
    assert violated(oidc, ISSUERS) == {("allowed_issuers", "machineid_provision_token.t", "oidc.issuer")}


def test_a_policy_with_a_bad_issuer_or_rule_name_is_a_field_named_error() -> None:
    with pytest.raises(ValidationError, match=r"allowed_issuers.*\[0\].*is not an https:// URL"):
        codec.decode_and_validate(policy.Policy, {"allowed_issuers": ["http://token.actions.example"]})
    with pytest.raises(ValidationError, match="require_ref_or_environments"):
        codec.decode_and_validate(policy.Policy, {"require_ref_or_environments": True})
    with pytest.raises(ValidationError, match="allow_static_jwks: applies with allowed_issuers only"):
        codec.decode_and_validate(policy.Policy, {"allow_static_jwks": True})


# ---------------------------------------------------------------- values known only at apply


def test_values_known_only_at_apply_fail_the_rules_that_need_them_and_are_said() -> None:
    """repository from another resource's output: the words say so, and the owner rule cannot pass what it cannot
    see; with repository_owner known the rule is pinned whatever repository turns out to be."""
    hidden = token_plan("github", {"issuer": GITHUB, "allow": [{"repository": None, "ref": "refs/heads/main"}]},
                        unknown={"github": {"allow": [{"repository": True}]}})
    assert joiners(hidden) == ["any workflow of (known only at apply) on `refs/heads/main` may join as bot "
                               "`deployer` (github token `t-join`)"]
    impacts, violations, markdown = review(hidden, cluster(), {**OWNERS, **REFS})
    assert found(violations) == {("deny_wildcard_join_rules", "machineid_provision_token.t",
                                  "github.allow[0].repository")}
    assert "known only at apply" in violations[0].message
    assert impacts[0].after is not None
    assert impacts[0].after.pending == ["machineid_provision_token.t github.allow[0].repository"]
    assert "known only at apply: `machineid_provision_token.t github.allow[0].repository`" in markdown

    owned = token_plan("github", {"issuer": GITHUB, "allow": [{"repository": None, "repository_owner": "acme",
                                                                "ref": "refs/heads/main"}]},
                       unknown={"github": {"allow": [{"repository": True}]}})
    assert violated(owned, {**OWNERS, **REFS}) == set()


def test_whole_rules_issuers_and_join_methods_known_only_at_apply_fail_closed() -> None:
    dynamic = token_plan("github", {"issuer": GITHUB, "allow": None}, unknown={"github": {"allow": True}})
    assert violated(dynamic, {**OWNERS, **REFS}) == {
        ("deny_wildcard_join_rules", "machineid_provision_token.t", "github.allow"),
        ("require_ref_or_environment", "machineid_provision_token.t", "github.allow")}
    assert joiners(dynamic) == ["jobs allowed by rules known only at apply may join as bot `deployer` (github "
                                "token `t-join`)"]

    second = token_plan("github", {"issuer": GITHUB, "allow": [None, {"repository": "*"}]},
                        unknown={"github": {"allow": [True, {}]}})
    assert violated(second, OWNERS) == {  # the rule after the hidden one keeps its index
        ("deny_wildcard_join_rules", "machineid_provision_token.t", "github.allow[0]"),
        ("deny_wildcard_join_rules", "machineid_provision_token.t", "github.allow[1].repository")}

    issuer = token_plan("github", {"issuer": None, "allow": [{"repository": "acme/app"}]},
                        unknown={"github": {"issuer": True}})
    assert violated(issuer, ISSUERS) == {("allowed_issuers", "machineid_provision_token.t", "github.issuer")}
    assert "(github token `t-join`; issuer (known only at apply))" in joiners(issuer)[0]

    method = tf_plan(rc("machineid_provision_token.t", ["create"], {**token_after("token", None, name="n" * 32),
                                                                    "join_method": None},
                        unknown={"join_method": True}))
    assert violated(method, {**OWNERS, **REFS, **ISSUERS}) == {
        (rule, "machineid_provision_token.t", "join_method")
        for rule in ("deny_wildcard_join_rules", "require_ref_or_environment", "allowed_issuers")}


def test_an_oidc_condition_known_only_at_apply_fails_the_subject_rule() -> None:
    text = token_plan("oidc", {"issuer": "https://idp.example", "audience": "machineid",
                               "allow": [{"conditions": [{"claim": "sub", "equals": None}]}]},
                      unknown={"oidc": {"allow": [{"conditions": [{"equals": True}]}]}})
    assert violated(text, OWNERS) == {("deny_wildcard_join_rules", "machineid_provision_token.t",
                                       "oidc.allow[0].conditions[0].equals")}
    assert "`sub` tested against a value known only at apply" in joiners(text)[0]


def test_max_token_ttl_lets_tokens_proven_at_each_join_go_without_expires() -> None:
    """A github (or bound_keypair) token is no standing credential: each join is proven afresh, so it may go without
    expires; a token that sets one is still held to the limit, and an iam token must set one."""
    ttl = {"max_token_ttl": "720h"}
    assert violated(token_plan("github", {"issuer": GITHUB, "allow": [{"repository": "acme/app"}]}), ttl) == set()
    far = token_plan("github", {"issuer": GITHUB, "allow": [{"repository": "acme/app"}]},
                     expires="2099-01-01T00:00:00Z")
    assert violated(far, ttl) == {("max_token_ttl", "machineid_provision_token.t", "expires")}
    iam = tf_plan(rc("machineid_provision_token.t", ["create"], token_after(
        "iam", None, allow=[{"aws_account": "123456789012", "aws_arn": ""}])))
    assert violated(iam, ttl) == {("max_token_ttl", "machineid_provision_token.t", "expires")}
