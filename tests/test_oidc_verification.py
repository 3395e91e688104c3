"""How the cluster checks a delegated join's ID token (issue 18 §1; the matrix of delegated-joins.md §1.4-1.5): the
issuer, audience and times; the algorithms and keys (no `none`, no HMAC keyed with a public key, a kid that the
issuer publishes); and the cache of issuers' keys (an unknown kid refetches at most once a minute, rotation, an
issuer outage, redirects, discovery naming another issuer). Every refusal is a clear message and an audit record.
Real local issuer, in-process cluster, clocks moved by the test."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path

import jwt
import pytest
from jwt.algorithms import RSAAlgorithm

from machineid.cluster.oidc.keysets import FRESH, REFETCH_PAUSE, STALE
from machineid.cluster.service import Cluster
from tests.delegated import join, mint, put_token, refused, ticking, trusting
from tests.inprocess import CLUSTER, Clock, add_bot, new_cluster
from tests.oidc_issuer import Issuer

CLAIMS = Issuer.github_claims()


@pytest.fixture()
def issuer(tmp_path: Path) -> Iterator[Issuer]:
    iss = Issuer(tmp_path / "issuer")
    yield iss
    iss.close()


@pytest.fixture()
def clock() -> Clock:
    return Clock()


@pytest.fixture()
def c(tmp_path: Path, clock: Clock, issuer: Issuer) -> Cluster:
    """A cluster with a github token "github" for acme/app that fetches the local issuer's keys."""
    cluster = new_cluster(tmp_path, clock)
    add_bot(cluster, "ci")
    put_token(cluster, "github", trusting(issuer, {"repository": "acme/app"}))
    return cluster


def no_requests(issuer: Issuer) -> bool:
    return sum(issuer.requests.values()) == 0


# ---------------------------------------------------------------- issuer, audience, times


def test_a_token_of_another_issuer_is_refused_even_signed_with_a_key_the_cluster_trusts(
        c: Cluster, clock: Clock, issuer: Issuer) -> None:
    refused(c, "github", mint(issuer, clock, CLAIMS, issuer="https://token.actions.githubusercontent.com"),
            f"the ID token was not issued by {issuer.url}")


def test_a_token_for_another_audience_is_refused(c: Cluster, clock: Clock, issuer: Issuer) -> None:
    refused(c, "github", mint(issuer, clock, CLAIMS, audience="other.example"),
            "the ID token is not for this cluster: its audience \\(aud\\) must be 'test.example'")
    assert join(c, "github", mint(issuer, clock, CLAIMS, audience=CLUSTER))[0] == "ci"


@pytest.mark.parametrize(("expired_for", "admitted"), [(5, True), (11, False), (3600, False)])
def test_expiry_is_checked_on_the_clusters_clock_with_ten_seconds_of_leeway(
        c: Cluster, clock: Clock, issuer: Issuer, expired_for: int, admitted: bool) -> None:
    id_token = mint(issuer, clock, CLAIMS, iat=clock.now.timestamp() - 300 - expired_for, lifetime=300)
    if admitted:
        assert join(c, "github", id_token)[0] == "ci"
    else:
        refused(c, "github", id_token, "the ID token expired; ask the platform for a fresh one")


@pytest.mark.parametrize(("claims", "admitted"), [
    ({"nbf": 5}, True), ({"nbf": 60}, False), ({"iat": 60, "nbf": 0, "exp": 360}, False)],
    ids=["nbf-within-leeway", "nbf-in-the-future", "iat-in-the-future"])
def test_a_token_not_valid_yet_is_refused(c: Cluster, clock: Clock, issuer: Issuer, claims: dict[str, int],
                                          admitted: bool) -> None:
    now = int(clock.now.timestamp())
    times = {k: now + v for k, v in claims.items()}
    id_token = mint(issuer, clock, {**CLAIMS, **times})
    if admitted:
        assert join(c, "github", id_token)[0] == "ci"
    else:
        refused(c, "github", id_token, "the ID token is not valid yet \\(nbf or iat in the future: check the clocks\\)")


def test_a_token_living_longer_than_the_cap_is_refused(c: Cluster, clock: Clock, issuer: Issuer) -> None:
    """GitHub's tokens live 5 minutes: the default cap is 15 (exp - iat), settable per token."""
    refused(c, "github", mint(issuer, clock, CLAIMS, lifetime=16 * 60),
            r"the ID token lives 960 s \(iat 2030-01-01T00:00:00Z to exp 2030-01-01T00:16:00Z\), longer than the "
            r"token allows \(900 s\)")
    assert join(c, "github", mint(issuer, clock, CLAIMS, lifetime=15 * 60))[0] == "ci"
    put_token(c, "github", trusting(issuer, {"repository": "acme/app"}, max_lifetime="5m"), name="gh-short")
    refused(c, "gh-short", mint(issuer, clock, CLAIMS, lifetime=6 * 60), r"longer than the token allows \(300 s\)")


@pytest.mark.parametrize("missing", ["exp", "iat", "aud", "iss"])
def test_a_token_without_a_required_claim_is_refused(c: Cluster, clock: Clock, issuer: Issuer,
                                                     missing: str) -> None:
    now = clock.now.timestamp()
    body = {"iss": issuer.url, "aud": CLUSTER, "iat": int(now), "exp": int(now) + 300, "jti": "j1", **CLAIMS}
    del body[missing]
    id_token = jwt.encode(body, issuer.keys["rsa-1"], algorithm="RS256", headers={"kid": "rsa-1"})
    refused(c, "github", id_token, f"the ID token has no {missing} claim")


# ---------------------------------------------------------------- algorithms, kids, signatures


def test_a_token_naming_no_key_is_refused_before_any_network_call(c: Cluster, clock: Clock, issuer: Issuer) -> None:
    refused(c, "github", mint(issuer, clock, CLAIMS, kid=None),
            "the ID token names no key \\(kid\\): it cannot be matched to the issuer's keys")
    assert no_requests(issuer)


def test_a_kid_is_quoted_bounded_and_on_one_line(c: Cluster, clock: Clock, issuer: Issuer) -> None:
    """The kid is read before the signature is checked: an anonymous caller chooses it, and must not be able to
    write kilobytes or extra lines into refusals and the audit log."""
    kid = "made-up\nkid" + "x" * 4000
    message = refused(c, "github", mint(issuer, clock, CLAIMS, kid="rsa-1", headers={"kid": kid}),
                      "the ID token is signed with key \"made-up\\\\nkidxxx")
    assert len(message) < 400 and "\n" not in message, message


def test_an_unsigned_token_is_refused(c: Cluster, clock: Clock, issuer: Issuer) -> None:
    id_token = issuer.forge({"alg": "none", "kid": "rsa-1", "typ": "JWT"}, CLAIMS, CLUSTER,
                            iat=clock.now.timestamp())
    refused(c, "github", id_token, "the ID token's algorithm 'none' is not allowed; use one of RS256")
    assert no_requests(issuer)


@pytest.mark.parametrize("secret", ["pem", "jwk"])
def test_hmac_keyed_with_the_issuers_public_key_is_refused(c: Cluster, clock: Clock, issuer: Issuer,
                                                           secret: str) -> None:
    """Algorithm confusion: whoever has the public key (everyone) could sign HS256 tokens a naive verifier takes."""
    key = issuer.public_pem() if secret == "pem" else RSAAlgorithm.to_jwk(issuer.keys["rsa-1"].public_key()).encode()
    id_token = issuer.forge({"alg": "HS256", "kid": "rsa-1", "typ": "JWT"}, CLAIMS, CLUSTER,
                            iat=clock.now.timestamp(), hmac_key=key)
    refused(c, "github", id_token, "the ID token's algorithm 'HS256' is not allowed")
    assert no_requests(issuer)


def test_a_token_signed_with_a_key_the_issuer_does_not_publish_is_refused(c: Cluster, clock: Clock,
                                                                          issuer: Issuer) -> None:
    issuer.add_key("rogue", publish=False)
    refused(c, "github", mint(issuer, clock, CLAIMS, kid="rogue", headers={"kid": "rsa-1"}),
            "the ID token's signature does not verify with the issuer's key \"rsa-1\"")
    refused(c, "github", mint(issuer, clock, CLAIMS, kid="rogue"),
            f"signed with key \"rogue\", which issuer {issuer.url} does not publish")


def test_a_tampered_token_is_refused(c: Cluster, clock: Clock, issuer: Issuer) -> None:
    header, payload, signature = mint(issuer, clock, Issuer.github_claims(repository="acme/other")).split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["repository"] = "acme/app"
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).decode().rstrip("=")
    refused(c, "github", f"{header}.{forged}.{signature}", "signature does not verify")


def test_the_key_must_suit_the_algorithm(c: Cluster, clock: Clock, issuer: Issuer) -> None:
    refused(c, "github", mint(issuer, clock, CLAIMS, kid="rsa-1", headers={"kid": "ec-1"}),
            "key \"ec-1\" of the issuer is not a key for RS256")
    assert join(c, "github", mint(issuer, clock, CLAIMS, kid="ec-1"))[0] == "ci"  # ES256 with the EC key


@pytest.mark.parametrize(("id_token", "message"), [
    ("", "no ID token was presented"), ("not-a-jwt", "the ID token is not a JWT"),
    ("x" * 20000, "the ID token is longer than 16384 characters")])
def test_what_is_not_a_token_is_refused(c: Cluster, id_token: str, message: str) -> None:
    refused(c, "github", id_token, message)


# ---------------------------------------------------------------- the issuers' keys, cached


def test_an_unknown_kid_refetches_the_key_set_at_most_once_a_minute(c: Cluster, clock: Clock,
                                                                    issuer: Issuer) -> None:
    ticks = ticking(c)
    join(c, "github", mint(issuer, clock, CLAIMS))
    assert issuer.requests["/jwks"] == 1
    issuer.add_key("unpublished-1", publish=False)
    issuer.add_key("unpublished-2", publish=False)
    ticks.now += REFETCH_PAUSE + 1
    refused(c, "github", mint(issuer, clock, CLAIMS, kid="unpublished-1"), "does not publish")
    assert issuer.requests["/jwks"] == 2  # refetched once, in case the issuer has rotated
    ticks.now += 10
    refused(c, "github", mint(issuer, clock, CLAIMS, kid="unpublished-2"), "does not publish")
    refused(c, "github", mint(issuer, clock, CLAIMS, kid="unpublished-1"), "does not publish")
    assert issuer.requests["/jwks"] == 2  # a flood of made-up kids does not make the cluster hammer the issuer
    assert join(c, "github", mint(issuer, clock, CLAIMS))[0] == "ci"  # the known key still verifies
    assert issuer.requests["/jwks"] == 2


def test_a_new_key_is_fetched_and_a_retired_one_stops_verifying(c: Cluster, clock: Clock, issuer: Issuer) -> None:
    ticks = ticking(c)
    join(c, "github", mint(issuer, clock, CLAIMS))
    issuer.add_key("rsa-2")  # the issuer rotates: publishes a new key and signs with it
    ticks.now += REFETCH_PAUSE + 1
    assert join(c, "github", mint(issuer, clock, CLAIMS, kid="rsa-2"))[0] == "ci"
    assert issuer.requests["/jwks"] == 2
    assert join(c, "github", mint(issuer, clock, CLAIMS))[0] == "ci"  # the old key is still published
    issuer.published.discard("rsa-1")
    ticks.now += FRESH  # the cached set is refreshed: rsa-1 is gone from it
    refused(c, "github", mint(issuer, clock, CLAIMS), "signed with key \"rsa-1\", which issuer .* does not publish")
    assert join(c, "github", mint(issuer, clock, CLAIMS, kid="rsa-2"))[0] == "ci"


def test_an_issuer_outage_does_not_stop_joins_while_its_keys_are_cached(c: Cluster, clock: Clock,
                                                                         issuer: Issuer) -> None:
    ticks = ticking(c)
    join(c, "github", mint(issuer, clock, CLAIMS))
    issuer.down = True
    ticks.now += FRESH + 1  # the keys are due for a refresh, which fails: the cached ones still verify
    assert join(c, "github", mint(issuer, clock, CLAIMS))[0] == "ci"
    attempts = issuer.requests["/.well-known/openid-configuration"]
    assert attempts == 2
    ticks.now += 30  # and the cluster does not ask the failing issuer again at every join
    assert join(c, "github", mint(issuer, clock, CLAIMS))[0] == "ci"
    assert issuer.requests["/.well-known/openid-configuration"] == attempts
    ticks.now += REFETCH_PAUSE
    assert join(c, "github", mint(issuer, clock, CLAIMS))[0] == "ci"
    assert issuer.requests["/.well-known/openid-configuration"] == attempts + 1
    ticks.now = 1000.0 + STALE  # past the stale limit a key the issuer may have removed no longer verifies
    refused(c, "github", mint(issuer, clock, CLAIMS),
            f"cannot get the keys of issuer {issuer.url}: .*/.well-known/openid-configuration answered HTTP 503")
    issuer.down = False
    ticks.now += REFETCH_PAUSE
    assert join(c, "github", mint(issuer, clock, CLAIMS))[0] == "ci"  # back up: fetched again


def test_a_redirect_of_the_key_set_is_refused(c: Cluster, clock: Clock, issuer: Issuer) -> None:
    issuer.redirect_jwks = "https://127.0.0.1:9/elsewhere"
    refused(c, "github", mint(issuer, clock, CLAIMS),
            f"cannot get the keys of issuer {issuer.url}: {issuer.url}/jwks answered with a redirect \\(HTTP 302\\)")


@pytest.mark.parametrize(("discovery", "message"), [
    ({"issuer": "https://token.actions.githubusercontent.com"},
     "names issuer 'https://token.actions.githubusercontent.com', not 'https://127.0.0.1"),
    ({"jwks_uri": "http://127.0.0.1:9/jwks"}, "names no https:// jwks_uri"),
], ids=["another-issuer", "http-jwks-uri"])
def test_a_discovery_document_must_name_the_issuer_and_an_https_key_set(c: Cluster, clock: Clock, issuer: Issuer,
                                                                        discovery: dict[str, str],
                                                                        message: str) -> None:
    issuer.discovery = discovery
    refused(c, "github", mint(issuer, clock, CLAIMS), f"cannot get the keys of issuer {issuer.url}: .*{message}")
    assert issuer.requests["/jwks"] == 0
