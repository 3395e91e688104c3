"""Delegated joins in-process (issue 18 §1): a GitHub workflow, a GitLab pipeline, a Kubernetes pod or any OpenID
Connect client joins with the ID token its platform issued, checked against the allow rules of its token's block.
Each ID token joins once; what it proved is on the bot and in the audit log. The tokens come from a real local
issuer (HTTPS on loopback with its own CA: tests/oidc_issuer.py)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from jwt.algorithms import RSAAlgorithm

from machineid.cluster.delegated_joins import SPENT_KIND
from machineid.cluster.janitor import Janitor
from machineid.cluster.service import Cluster
from machineid.model import codec, errors
from machineid.model.resources import Bot, ProvisionToken
from tests.delegated import ADDRESS, join, joins, mint, put_token, refused, trusting
from tests.inprocess import Clock, add_bot, admin, caller_of, key_pem, new_cluster
from tests.oidc_issuer import Issuer

OTHER_ADDRESS = "198.51.100.7"


@pytest.fixture()
def issuer(tmp_path: Path) -> Iterator[Issuer]:
    iss = Issuer(tmp_path / "issuer")
    yield iss
    iss.close()


@pytest.fixture()
def clock() -> Clock:
    return Clock()


@pytest.fixture()
def c(tmp_path: Path, clock: Clock) -> Cluster:
    cluster = new_cluster(tmp_path, clock)
    add_bot(cluster, "ci")
    return cluster


def github(**kw: Any) -> dict[str, Any]:
    return Issuer.github_claims(**kw)


def gitlab(**kw: Any) -> dict[str, Any]:
    return Issuer.gitlab_claims(**kw)


# ---------------------------------------------------------------- github


def test_a_github_workflow_joins_without_renewal_and_its_claims_are_on_record(c: Cluster, clock: Clock,
                                                                               issuer: Issuer) -> None:
    put_token(c, "github", trusting(issuer, {"repository": "acme/app"}))
    id_token = mint(issuer, clock, github(run_id="4242", environment="production"))
    bot, out = join(c, "github", id_token)
    assert bot == "ci" and not out.renewable and out.expires > clock.now
    with pytest.raises(errors.PermissionDeniedError, match="not renewable; join again"):
        c.renew(caller_of(c, out), key_pem(), None)

    proved = {"repository": "acme/app", "repository_owner": "acme", "ref": "refs/heads/main", "ref_type": "branch",
              "workflow": "deploy", "environment": "production", "run_id": "4242", "actor": "octocat",
              "event_name": "push", "sub": "repo:acme/app:environment:production"}
    status = c.get(admin(c), Bot, "ci").status
    assert proved.items() <= status.join_attributes.items()
    assert status.join_token == "github" and status.last_join == clock.now
    record = joins(c)[-1]
    assert record.outcome == "ok" and record.target == "token/github"
    assert record.details["bot"] == "ci" and record.details["method"] == "github" and record.details["rule"] == 0
    assert record.details["claims"] == status.join_attributes
    assert id_token not in json.dumps(record.details)


@pytest.mark.parametrize(("rule", "claims"), [
    ({"repository": "acme/*"}, github()),
    ({"repository_owner": "acme", "workflow": "deploy"}, github(ref="refs/heads/anything")),
    ({"sub": "repo:acme/app:ref:refs/heads/*"}, github(ref="refs/heads/feature/x")),
    ({"repository": "acme/app", "ref": "refs/tags/v*", "ref_type": "tag"}, github(ref="refs/tags/v1.4.0")),
    ({"repository": "acme/app", "environment": "prod*"}, github(environment="production")),
    ({"repository": "acme/ap?", "actor": "octo*"}, github()),
    ({"repository": "acme/app"}, github(workflow="nightly", actor="someone", ref="refs/heads/dev")),  # empty: any
], ids=["repository-glob", "owner", "sub-glob", "tag-ref", "environment-glob", "one-char-glob", "empty-means-any"])
def test_github_rules_admit_what_they_match(c: Cluster, clock: Clock, issuer: Issuer, rule: dict[str, str],
                                            claims: dict[str, Any]) -> None:
    put_token(c, "github", trusting(issuer, rule))
    assert join(c, "github", mint(issuer, clock, claims))[0] == "ci"


@pytest.mark.parametrize(("rule", "claims", "message"), [
    ({"repository": "acme/app"}, github(repository="acme/other"),
     "GitHub workflow 'deploy' of acme/other on refs/heads/main matches no allow rule of token \"github\""),
    ({"repository": "acme/app", "ref": "refs/heads/main"}, github(ref="refs/heads/feature"),
     "of acme/app on refs/heads/feature matches no allow rule"),
    ({"repository": "acme/app", "ref": "refs/tags/v*"}, github(ref="refs/heads/v1"),
     "of acme/app on refs/heads/v1 matches no allow rule"),
    ({"repository": "acme/app", "ref_type": "tag"}, github(ref="refs/heads/main"),
     "of acme/app on refs/heads/main matches no allow rule"),
    ({"repository": "acme/app", "environment": "prod"}, github(),
     "of acme/app on refs/heads/main matches no allow rule"),
    ({"repository": "acme/app", "environment": "prod"}, github(environment="staging"),
     r"\(environment staging\) matches no allow rule"),
    ({"repository_owner": "acme"}, github(repository="acme-evil/app"), "of acme-evil/app on"),
    ({"repository": "acme/app", "workflow": "deploy"}, github(workflow="deploy-evil"),
     "GitHub workflow 'deploy-evil' of acme/app"),
], ids=["other-repository", "other-ref", "branch-not-tag-glob", "ref-type-exact", "environment-required",
        "other-environment", "owner-is-not-a-prefix", "workflow-is-not-a-prefix"])
def test_github_rules_refuse_what_they_do_not_match_naming_what_the_token_claimed(
        c: Cluster, clock: Clock, issuer: Issuer, rule: dict[str, str], claims: dict[str, Any], message: str) -> None:
    put_token(c, "github", trusting(issuer, rule))
    refused(c, "github", mint(issuer, clock, claims), message)
    assert c.get(admin(c), Bot, "ci").status.join_attributes == {}


def test_any_one_github_rule_admits_and_the_record_says_which(c: Cluster, clock: Clock, issuer: Issuer) -> None:
    put_token(c, "github", trusting(issuer, {"repository": "acme/infra"}, {"repository": "acme/app",
                                                                            "ref": "refs/heads/main"}))
    join(c, "github", mint(issuer, clock, github()))
    assert joins(c)[-1].details["rule"] == 1


def test_github_tokens_are_for_the_cluster_name_unless_the_token_sets_an_audience(c: Cluster, clock: Clock,
                                                                                  issuer: Issuer) -> None:
    put_token(c, "github", trusting(issuer, {"repository": "acme/app"}))
    refused(c, "github", mint(issuer, clock, github(), audience="https://github.com/acme"),
            "not for this cluster: its audience \\(aud\\) must be 'test.example'")
    assert join(c, "github", mint(issuer, clock, github()))[0] == "ci"
    put_token(c, "github", trusting(issuer, {"repository": "acme/app"}, audience="machineid-ci"), name="gh-aud")
    refused(c, "gh-aud", mint(issuer, clock, github()), "its audience \\(aud\\) must be 'machineid-ci'")
    assert join(c, "gh-aud", mint(issuer, clock, github(), audience="machineid-ci"))[0] == "ci"


def test_a_github_token_with_static_jwks_joins_without_a_network_call(c: Cluster, clock: Clock,
                                                                      issuer: Issuer) -> None:
    """A GitHub Enterprise Server the cluster cannot reach: its keys are pasted into the token."""
    put_token(c, "github", {"issuer": issuer.url, "static_jwks": json.dumps(issuer.jwks({"rsa-1"})),
                            "allow": [{"repository": "acme/app"}]})
    assert join(c, "github", mint(issuer, clock, github()))[0] == "ci"
    refused(c, "github", mint(issuer, clock, github(), kid="ec-1"),
            "signed with key \"ec-1\", which the token's static_jwks does not hold")
    assert sum(issuer.requests.values()) == 0


# ---------------------------------------------------------------- gitlab


@pytest.mark.parametrize(("rule", "claims"), [
    ({"project_path": "acme/*"}, gitlab()),
    ({"namespace_path": "acme", "ref": "release-*"}, gitlab(ref="release-1.2")),
    ({"project_path": "acme/app", "pipeline_source": "push", "ref_protected": "true"}, gitlab()),
    ({"project_path": "acme/app", "environment": "production", "environment_protected": "true",
      "deployment_tier": "production"}, gitlab(environment="production")),
    ({"sub": "project_path:acme/app:ref_type:branch:ref:*"}, gitlab(ref="dev")),
    ({"project_path": "acme/app", "ref_type": "branch"}, gitlab(pipeline_source="schedule")),
], ids=["project-glob", "namespace-and-ref-glob", "source-and-protected", "environment", "sub-glob", "ref-type"])
def test_gitlab_rules_admit_what_they_match(c: Cluster, clock: Clock, issuer: Issuer, rule: dict[str, str],
                                            claims: dict[str, Any]) -> None:
    put_token(c, "gitlab", trusting(issuer, rule))
    assert join(c, "gitlab", mint(issuer, clock, claims))[0] == "ci"
    assert c.get(admin(c), Bot, "ci").status.join_attributes["project_path"] == claims["project_path"]


@pytest.mark.parametrize(("rule", "claims", "message"), [
    ({"project_path": "acme/app"}, gitlab(project_path="acme/other"),
     r"GitLab pipeline of acme/other on main \(push\) matches no allow rule of token \"gitlab\""),
    ({"project_path": "acme/app", "pipeline_source": "push"}, gitlab(pipeline_source="merge_request_event"),
     r"of acme/app on main \(merge_request_event\) matches no allow rule"),
    ({"project_path": "acme/app", "ref_protected": "true"}, gitlab(ref_protected="false"), "matches no allow rule"),
    ({"project_path": "acme/app", "ref": "main"}, gitlab(ref="main-evil"), "of acme/app on main-evil"),
    ({"project_path": "acme/app", "environment": "prod"}, gitlab(environment="production"),
     r"\(environment production\) matches no allow rule"),  # environment is exact, not a glob
    ({"namespace_path": "acme"}, gitlab(project_path="acme-evil/app"), "of acme-evil/app on main"),
], ids=["other-project", "other-source", "unprotected-ref", "other-ref", "environment-exact", "other-namespace"])
def test_gitlab_rules_refuse_what_they_do_not_match(c: Cluster, clock: Clock, issuer: Issuer, rule: dict[str, str],
                                                    claims: dict[str, Any], message: str) -> None:
    put_token(c, "gitlab", trusting(issuer, rule))
    refused(c, "gitlab", mint(issuer, clock, claims), message)


def test_a_gitlab_id_token_joins_again_only_from_the_address_that_first_used_it(c: Cluster, clock: Clock,
                                                                                issuer: Issuer) -> None:
    """GitLab hands a job one ID token for all the tools it runs: those may join again, a copy elsewhere not."""
    put_token(c, "gitlab", trusting(issuer, {"project_path": "acme/app"}))
    id_token = mint(issuer, clock, gitlab())
    join(c, "gitlab", id_token)
    clock.now += timedelta(minutes=1)
    join(c, "gitlab", id_token)
    assert joins(c)[-1].details["reuse"] == "same_address"
    refused(c, "gitlab", id_token, "already joined from another address; it may join again only from the address "
                                   "that first used it", source=OTHER_ADDRESS)


def test_a_gitlab_id_token_with_reuse_none_joins_once(c: Cluster, clock: Clock, issuer: Issuer) -> None:
    put_token(c, "gitlab", trusting(issuer, {"project_path": "acme/app"}, reuse="none"))
    id_token = mint(issuer, clock, gitlab())
    join(c, "gitlab", id_token)
    refused(c, "gitlab", id_token, "already used to join; each joins once")


# ---------------------------------------------------------------- kubernetes


def k8s_static(issuer: Issuer, *accounts: str) -> dict[str, Any]:
    return {"type": "static_jwks", "static_jwks": json.dumps(issuer.jwks()),
            "allow": [{"service_account": a} for a in accounts]}


def test_a_pod_joins_with_the_pasted_keys_and_the_cluster_calls_no_one(c: Cluster, clock: Clock,
                                                                       issuer: Issuer) -> None:
    put_token(c, "kubernetes", k8s_static(issuer, "ci:deployer"))
    id_token = mint(issuer, clock, Issuer.kubernetes_claims(), lifetime=600, jti=None)
    assert join(c, "kubernetes", id_token)[0] == "ci"
    assert c.get(admin(c), Bot, "ci").status.join_attributes == {
        "sub": "system:serviceaccount:ci:deployer", "namespace": "ci", "service_account": "ci:deployer",
        "pod": "runner-0"}
    # The kubelet hands the pod the same token until it rotates it: pod binding and the 30 minute cap defend it.
    join(c, "kubernetes", id_token)
    assert joins(c)[-1].details["reuse"] == "lifetime"
    assert sum(issuer.requests.values()) == 0, issuer.requests


def test_kubernetes_refuses_unbound_long_lived_or_other_service_account_tokens(c: Cluster, clock: Clock,
                                                                               issuer: Issuer) -> None:
    put_token(c, "kubernetes", k8s_static(issuer, "ci:deployer"))
    refused(c, "kubernetes", mint(issuer, clock, Issuer.kubernetes_claims(pod=None)),
            "not bound to a pod: project one into the pod")
    refused(c, "kubernetes", mint(issuer, clock, Issuer.kubernetes_claims(), lifetime=31 * 60),
            r"lives 1860 s .* longer than the token allows \(1800 s\)")
    assert join(c, "kubernetes", mint(issuer, clock, Issuer.kubernetes_claims(), lifetime=30 * 60))[0] == "ci"
    refused(c, "kubernetes", mint(issuer, clock, Issuer.kubernetes_claims(account="admin")),
            "service account ci:admin \\(pod runner-0\\) matches no allow rule of token \"kubernetes\"")
    forged_sub = {**Issuer.kubernetes_claims(), "sub": "system:serviceaccount:kube-system:admin"}
    refused(c, "kubernetes", mint(issuer, clock, forged_sub), "subject does not name its service account")
    refused(c, "kubernetes", mint(issuer, clock, {"sub": "someone"}), "not a Kubernetes service-account token")


def test_kubernetes_oidc_mode_fetches_the_clusters_keys_from_its_issuer(c: Cluster, clock: Clock,
                                                                        issuer: Issuer) -> None:
    put_token(c, "kubernetes", trusting(issuer, {"service_account": "ci:deployer"}, type="oidc"))
    assert join(c, "kubernetes", mint(issuer, clock, Issuer.kubernetes_claims()))[0] == "ci"
    assert issuer.requests["/jwks"] == 1


# ---------------------------------------------------------------- oidc


OIDC_CLAIMS: dict[str, Any] = {"sub": "job:77", "project": "acme/app", "env": "staging",
                               "org": {"team": {"name": "platform"}}, "kubernetes.io": {"namespace": "ci"}}
CONDITIONS: list[dict[str, Any]] = [
    {"claim": "org.team.name", "equals": "platform"}, {"claim": "project", "matches": "acme/*"},
    {"claim": "env", "any_of": ["production", "staging"]},
    {"claim": "kubernetes.io.namespace", "equals": "ci"}]  # "kubernetes.io" is one claim


def oidc_block(issuer: Issuer, *rules: list[dict[str, Any]], **settings: Any) -> dict[str, Any]:
    return trusting(issuer, *[{"conditions": r} for r in rules], audience="machineid:ci", **settings)


def test_oidc_conditions_hold_on_nested_claim_paths(c: Cluster, clock: Clock, issuer: Issuer) -> None:
    put_token(c, "oidc", oidc_block(issuer, CONDITIONS))
    assert join(c, "oidc", mint(issuer, clock, OIDC_CLAIMS, audience="machineid:ci"))[0] == "ci"
    assert c.get(admin(c), Bot, "ci").status.join_attributes == {
        "iss": issuer.url, "sub": "job:77", "org.team.name": "platform", "project": "acme/app", "env": "staging",
        "kubernetes.io.namespace": "ci"}


@pytest.mark.parametrize("claims", [
    {**OIDC_CLAIMS, "org": {"team": {"name": "platform-evil"}}},
    {**OIDC_CLAIMS, "project": "other/app"},
    {**OIDC_CLAIMS, "env": "dev"},
    {**OIDC_CLAIMS, "org": {"team": "platform"}},
    {**OIDC_CLAIMS, "org": {"team": {"name": ["platform"]}}},
    {k: v for k, v in OIDC_CLAIMS.items() if k != "env"},
    {**OIDC_CLAIMS, "kubernetes.io": {"namespace": "default"}},
], ids=["equals", "matches", "any-of", "path-missing", "not-a-scalar", "claim-missing", "dotted-claim-name"])
def test_every_oidc_condition_must_hold(c: Cluster, clock: Clock, issuer: Issuer, claims: dict[str, Any]) -> None:
    put_token(c, "oidc", oidc_block(issuer, CONDITIONS))
    refused(c, "oidc", mint(issuer, clock, claims, audience="machineid:ci"),
            "the ID token \\(subject 'job:77'\\) matches no allow rule of token \"oidc\"")


def test_any_one_oidc_rule_admits(c: Cluster, clock: Clock, issuer: Issuer) -> None:
    put_token(c, "oidc", oidc_block(issuer, [{"claim": "sub", "equals": "job:1"}],
                                    [{"claim": "sub", "matches": "job:*"}]))
    join(c, "oidc", mint(issuer, clock, OIDC_CLAIMS, audience="machineid:ci"))
    assert joins(c)[-1].details["rule"] == 1


def test_oidc_tokens_must_carry_the_configured_audience(c: Cluster, clock: Clock, issuer: Issuer) -> None:
    put_token(c, "oidc", oidc_block(issuer, CONDITIONS))
    refused(c, "oidc", mint(issuer, clock, OIDC_CLAIMS), "its audience \\(aud\\) must be 'machineid:ci'")


@pytest.mark.parametrize(("reuse", "again", "elsewhere"), [
    ("none", False, False), ("same_address", True, False), ("lifetime", True, True)])
def test_oidc_reuse_says_whether_an_id_token_joins_again(c: Cluster, clock: Clock, issuer: Issuer, reuse: str,
                                                         again: bool, elsewhere: bool) -> None:
    put_token(c, "oidc", oidc_block(issuer, CONDITIONS, reuse=reuse))
    id_token = mint(issuer, clock, OIDC_CLAIMS, audience="machineid:ci")
    join(c, "oidc", id_token)
    for source, allowed in ((ADDRESS, again), (OTHER_ADDRESS, elsewhere)):
        if allowed:
            assert join(c, "oidc", id_token, source)[0] == "ci"
        else:
            refused(c, "oidc", id_token, "already (used to join|joined from another address)", source)


def test_an_oidc_issuers_certificate_is_checked_against_the_tokens_ca_bundle_only(c: Cluster, clock: Clock,
                                                                                  issuer: Issuer) -> None:
    """Without the bundle the system's CAs apply, and they do not know the local issuer's CA."""
    block = oidc_block(issuer, CONDITIONS)
    del block["ca_bundle"]
    put_token(c, "oidc", block)
    refused(c, "oidc", mint(issuer, clock, OIDC_CLAIMS, audience="machineid:ci"),
            f"cannot get the keys of issuer {issuer.url}: cannot fetch .*certificate verify failed")
    put_token(c, "oidc", oidc_block(issuer, CONDITIONS), name="oidc-with-ca")
    assert join(c, "oidc-with-ca", mint(issuer, clock, OIDC_CLAIMS, audience="machineid:ci"))[0] == "ci"


# ---------------------------------------------------------------- each ID token joins once


def test_the_same_github_id_token_joins_once(c: Cluster, clock: Clock, issuer: Issuer) -> None:
    put_token(c, "github", trusting(issuer, {"repository": "acme/app"}))
    id_token = mint(issuer, clock, github())
    join(c, "github", id_token)
    refused(c, "github", id_token, "already used to join; each joins once \\(ask the platform for a fresh one\\)")
    assert join(c, "github", mint(issuer, clock, github()))[0] == "ci"  # a fresh one does


def test_an_id_token_without_jti_is_remembered_by_what_its_signature_covers(c: Cluster, clock: Clock,
                                                                             issuer: Issuer) -> None:
    """Re-encoding the signature (base64 padding) gives another string for the same signed token: still a replay."""
    put_token(c, "github", trusting(issuer, {"repository": "acme/app"}))
    id_token = mint(issuer, clock, github(), jti=None)
    join(c, "github", id_token)
    refused(c, "github", id_token, "already used to join")
    refused(c, "github", id_token + "==", "already used to join")


def test_the_same_jti_from_another_issuer_is_another_token(c: Cluster, clock: Clock, issuer: Issuer,
                                                           tmp_path: Path) -> None:
    other = Issuer(tmp_path / "other")
    try:
        put_token(c, "github", trusting(issuer, {"repository": "acme/app"}))
        put_token(c, "oidc", trusting(other, {"conditions": [{"claim": "sub", "equals": "job:77"}]},
                                      audience="machineid:ci"))
        join(c, "github", mint(issuer, clock, github(), jti="run-1"))
        assert join(c, "oidc", mint(other, clock, {"sub": "job:77"}, audience="machineid:ci", jti="run-1"))[0] == "ci"
    finally:
        other.close()


def test_two_joins_racing_with_one_id_token_exactly_one_wins(c: Cluster, clock: Clock, issuer: Issuer,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """The racers all pass the early check (nothing is spent yet) before any records the token: the write decides."""
    put_token(c, "github", trusting(issuer, {"repository": "acme/app"}))
    join(c, "github", mint(issuer, clock, github()))  # keys fetched: the racers contend only for the token
    id_token = mint(issuer, clock, github())
    racers = 6
    checked = threading.Barrier(racers, timeout=30)
    early_check = c.delegated._check_unspent

    def check_then_wait_for_the_others(*args: Any) -> None:
        early_check(*args)
        checked.wait()

    monkeypatch.setattr(c.delegated, "_check_unspent", check_then_wait_for_the_others)
    results: list[str] = []

    def race() -> None:
        try:
            results.append(join(c, "github", id_token)[0])
        except errors.PermissionDeniedError as e:
            results.append(str(e))

    threads = [threading.Thread(target=race) for _ in range(racers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert sorted(results) == ["ci"] + ["this ID token was already used to join; each joins once (ask the platform "
                                        "for a fresh one)"] * (racers - 1)
    assert len([e for e in joins(c) if e.outcome == "ok"]) == 2  # the warm-up and the winner


def test_a_spent_id_token_is_remembered_for_as_long_as_it_could_verify(c: Cluster, clock: Clock,
                                                                       issuer: Issuer) -> None:
    """The cluster accepts a token up to 10 s past its exp (clock leeway): the janitor must not forget it sooner."""
    put_token(c, "github", trusting(issuer, {"repository": "acme/app"}))
    id_token = mint(issuer, clock, github(), lifetime=300)
    join(c, "github", id_token)
    janitor = Janitor(c.objects, audit_retention=None)
    clock.now += timedelta(seconds=305)  # past exp, within the leeway
    janitor.sweep()
    refused(c, "github", id_token, "already used to join")
    clock.now += timedelta(seconds=10)  # past exp + leeway: the token is dead, its record can go
    janitor.sweep()
    assert c.backend.list(SPENT_KIND) == []
    refused(c, "github", id_token, "the ID token expired")


# ---------------------------------------------------------------- the model's rules


def _spec(method: str, block: dict[str, Any], **more: Any) -> dict[str, Any]:
    return {"join_method": method, "bot_name": "ci", method: block, **more}


def _private_jwks() -> str:
    from cryptography.hazmat.primitives.asymmetric import rsa

    jwk = json.loads(RSAAlgorithm.to_jwk(rsa.generate_private_key(public_exponent=65537, key_size=2048)))
    return json.dumps({"keys": [{**jwk, "kid": "k1"}]})


GH = {"issuer": "https://ghes.example/_services/token"}


@pytest.mark.parametrize(("spec", "message"), [
    (_spec("github", {"allow": [{"workflow": "deploy", "ref": "refs/heads/main"}]}),
     r"spec.github.allow\[0\]: name repository, repository_owner or sub: a rule without them admits any repository"),
    (_spec("gitlab", {"allow": [{"ref": "main"}]}),
     r"spec.gitlab.allow\[0\]: name project_path, namespace_path or sub: a rule without them admits any project"),
    (_spec("github", {"allow": [{"repository": "acme/app"}]}, gitlab={"allow": [{"project_path": "acme/app"}]}),
     "spec.gitlab: applies to join_method gitlab only; remove it"),
    ({"join_method": "token", "bot_name": "ci", "github": {"allow": [{"repository": "acme/app"}]}},
     "spec.github: applies to join_method github only; remove it"),
    (_spec("github", {"allow": []}), "spec.github.allow: needs at least one rule"),
    (_spec("github", {**GH, "static_jwks": "PRIVATE", "allow": [{"repository": "acme/app"}]}),
     r"spec.github.static_jwks: key \[0\] holds private or symmetric key material: paste the public key set only"),
    (_spec("oidc", {"issuer": "https://idp.example", "audience": "a", "allow": [{"conditions": [
        {"claim": "sub", "equals": "x"}]}], "static_jwks": json.dumps({"keys": [{"kty": "oct", "kid": "h",
                                                                                 "k": "c2VjcmV0"}]})}),
     r"spec.oidc.static_jwks: key \[0\] holds private or symmetric key material"),
    (_spec("oidc", {"issuer": "http://idp.example", "audience": "a", "allow": [{"conditions": [
        {"claim": "sub", "equals": "x"}]}]}), 'spec.oidc.issuer: "http://idp.example" is not an https:// URL'),
    (_spec("gitlab", {"issuer": "http://gitlab.example", "allow": [{"project_path": "acme/app"}]}),
     'spec.gitlab.issuer: "http://gitlab.example" is not an https:// URL'),
    (_spec("oidc", {"allow": [{"conditions": [{"claim": "sub", "equals": "x"}]}]}),
     "spec.oidc.issuer: is required: .*spec.oidc.audience: is required"),
    (_spec("oidc", {"issuer": "https://idp.example", "audience": "a", "allow": [{"conditions": [
        {"claim": "sub", "equals": "x", "matches": "y*"}]}]}),
     r"spec.oidc.allow\[0\].conditions\[0\]: set exactly one of equals, matches and any_of"),
    (_spec("kubernetes", {"allow": [{"service_account": "ci:deployer"}]}),
     "spec.kubernetes.static_jwks: type static_jwks needs the Kubernetes cluster's service-account key set"),
    (_spec("kubernetes", {"type": "oidc", "allow": [{"service_account": "deployer"}]}),
     r"spec.kubernetes.allow\[0\].service_account: .*namespace:name"),
    (_spec("gitlab", {"allow": [{"project_path": "acme/app", "ref_protected": "yes"}]}),
     r"spec.gitlab.allow\[0\].ref_protected"),
], ids=["github-rule-names-nothing", "gitlab-rule-names-nothing", "block-of-another-method", "block-on-a-token",
        "no-rules", "private-jwk", "symmetric-jwk", "http-oidc-issuer", "http-gitlab-issuer", "oidc-needs-issuer",
        "condition-with-two-tests", "kubernetes-needs-keys", "service-account-form", "ref-protected-values"])
def test_the_model_refuses_delegated_tokens_that_would_admit_too_much_or_cannot_work(
        c: Cluster, spec: dict[str, Any], message: str) -> None:
    if spec.get("github", {}).get("static_jwks") == "PRIVATE":
        spec = {**spec, "github": {**spec["github"], "static_jwks": _private_jwks()}}
    with pytest.raises(errors.ValidationError, match=message):
        c.upsert(admin(c), codec.decode(ProvisionToken, {"metadata": {"name": "t"}, "spec": spec}))
    with pytest.raises(errors.NotFoundError):
        c.get(admin(c), ProvisionToken, "t")


def test_a_name_that_is_no_delegated_token_joins_nothing_and_is_not_written_down(c: Cluster, clock: Clock,
                                                                                  issuer: Issuer) -> None:
    """The name sent may be a single-use token's secret sent here by mistake: refused without naming it."""
    put_token(c, "github", trusting(issuer, {"repository": "acme/app"}))
    for name in ("nope", add_bot(c, "other")):
        with pytest.raises(errors.PermissionDeniedError, match="no github, gitlab, kubernetes or oidc token has "
                                                                "that name"):
            join(c, name, mint(issuer, clock, github()))
        record = joins(c)[-1]
        assert record.outcome == "denied" and name not in json.dumps([record.target, record.details])
