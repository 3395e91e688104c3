"""The provider's decisions on plain values, in-process: what Check, Diff and the schema make of inputs that the
engine sends during previews (unknowns, defaults, removed fields, secrets)."""

from __future__ import annotations

import json

from machineid.pulumi import schema
from machineid.pulumi.provider import UPDATE, UPDATE_REPLACE, Provider
from machineid.pulumi.resources import BOT, PROVISION_TOKEN, ROLE
from machineid.pulumi.values import UNKNOWN, decode, encode, secret


def test_check_fills_defaults_and_leaves_empty_fields_out() -> None:
    result = Provider().check(ROLE.token, "web", {"allow": {"logins": ["ubuntu"]}})
    assert not result.failures
    assert result.inputs == {"name": "web", "allow": {"logins": ["ubuntu"]}, "options": {"maxSessionTtl": "30h"}}


def test_check_skips_unknown_values_and_keeps_them() -> None:
    result = Provider().check(BOT.token, "robot", {"roles": [UNKNOWN]})
    assert not result.failures
    assert result.inputs["roles"] == [UNKNOWN] and result.inputs["tokenTtl"] == "1h"


def test_check_names_every_bad_field() -> None:
    result = Provider().check(PROVISION_TOKEN.token, "t", {
        "joinMethod": "iam", "botName": "r", "allow": [{"awsAccount": "12", "awsArn": "nope"}], "bogus": 1})
    props = sorted(p for p, _ in result.failures)
    assert props == ["allow[0].awsAccount", "allow[0].awsArn", "bogus"]


def test_check_messages_name_the_path_and_the_value() -> None:
    """The engine shows a message as it is: each names where the problem is and what the program gave there."""
    role = [m for _, m in Provider().check(ROLE.token, "web", {
        "allow": {"logins": ["ubuntu", "Bad!"], "nodeLabels": {"env": [7]}}, "bogus": {"x": 1}}).failures]
    assert any(m.startswith('property allow.logins[1]: "Bad!" is not valid: a login is') for m in role), role
    assert "property allow.nodeLabels.env[0] value 7: must be a string, got the number 7; quote it" in "\n".join(role)
    assert any(m.startswith('property bogus value {"x": 1}: unknown property; known: allow, deny') for m in role)
    token = dict(Provider().check(PROVISION_TOKEN.token, "t", {"name": "short-secret"}).failures)
    assert token["name"].startswith("property name value [secret]: a token-method token's name is its secret")
    assert token["botName"].startswith("property botName: must be set")
    assert "short-secret" not in "".join(token.values())
    # a reason that quotes the value it checked does not show a secret one either
    bot = dict(Provider().check(BOT.token, "robot", {"roles": ["r"], "tokenTtl": "5 parsecs"}, {"tokenTtl"}).failures)
    assert bot["tokenTtl"].startswith("property tokenTtl value [secret]: [secret] is not a duration; write it like")
    assert "parsecs" not in bot["tokenTtl"]


def test_diff_names_nested_fields_and_replacements() -> None:
    p = Provider()
    old = p.check(ROLE.token, "web", {"allow": {"logins": ["a"]}}).inputs
    new = p.check(ROLE.token, "web", {"allow": {"logins": ["a", "b"]}}).inputs
    diff = p.diff(ROLE.token, old, old, new)
    assert diff.diffs == {"allow.logins": UPDATE} and not diff.replaces
    renamed = dict(new, name="web2")
    diff = p.diff(ROLE.token, old, old, renamed)
    assert diff.diffs["name"] == UPDATE_REPLACE and diff.replaces == ["name"] and not diff.delete_before_replace
    assert p.diff(ROLE.token, old, old, old).diffs == {}


def test_removed_options_diff_to_the_default_the_cluster_will_hold() -> None:
    p = Provider()
    old = p.check(ROLE.token, "web", {"options": {"maxSessionTtl": "8h"}}).inputs
    removed = p.check(ROLE.token, "web", {}).inputs
    assert removed["options"] == {"maxSessionTtl": "30h"}
    assert p.diff(ROLE.token, old, old, removed).diffs == {"options.maxSessionTtl": UPDATE}
    held = p.check(ROLE.token, "web", {"options": {"maxSessionTtl": "30h"}}).inputs
    assert p.diff(ROLE.token, held, held, removed).diffs == {}


def test_diff_of_unknown_is_a_change_and_missing_equals_empty() -> None:
    p = Provider()
    old = p.check(BOT.token, "robot", {"roles": ["access"]}).inputs
    assert "roles" in p.diff(BOT.token, old, old, dict(old, roles=UNKNOWN)).diffs
    # the state leaves empty fields out: an explicit empty value is the same thing
    assert p.diff(BOT.token, old, old, dict(old, traits={})).diffs == {}


def test_token_with_server_chosen_name_and_expiry_never_drifts() -> None:
    p = Provider()
    news = p.check(PROVISION_TOKEN.token, "t", {"botName": "robot"}).inputs
    assert "name" not in news and "expires" not in news
    olds = dict(news, name="0123456789abcdef0123456789abcdef", expires="2999-01-01T00:00:00Z")
    assert p.diff(PROVISION_TOKEN.token, dict(olds, tokenExpires="2999-01-01T00:00:00Z"), olds, news).diffs == {}
    expired = dict(olds, tokenExpires="2000-01-01T00:00:00Z")
    diff = p.diff(PROVISION_TOKEN.token, expired, olds, news)
    assert "expires" in diff.replaces and diff.delete_before_replace


def test_secret_wire_values_round_trip() -> None:
    struct = encode({"token": "s3cret", "name": "robot"}, {"token"})
    plain, secrets = decode(struct)
    assert plain == {"token": "s3cret", "name": "robot"} and secrets == {"token"}
    assert json.loads(json.dumps(secret("x")))["value"] == "x"


def test_schema_marks_secrets_and_replacements() -> None:
    spec = schema.build()
    bot = spec["resources"]["machineid:index:Bot"]
    # Secret unless the bot joins with a bound keypair: the provider marks them per value, the schema (and so the
    # SDKs, which would wrap them whatever the method) does not.
    assert not bot["properties"]["token"].get("secret") and "secret" in bot["properties"]["agentConfig"]["description"]
    assert {"token", "agentConfig", "tokenName"} <= BOT.secret_props()
    assert bot["inputProperties"]["name"]["replaceOnChanges"] and "token" not in bot["inputProperties"]
    token = spec["resources"]["machineid:index:ProvisionToken"]
    assert "name" in PROVISION_TOKEN.secret_props() and token["inputProperties"]["joinMethod"]["replaceOnChanges"]
    nested = spec["types"]["machineid:index:BoundKeypairOnboarding"]["properties"]
    assert nested["registrationSecret"]["secret"] and nested["initialPublicKey"].get("secret") is None
    assert spec["config"]["variables"]["address"]["defaultInfo"] == {"environment": ["MACHINEID_AUTH_SERVER"]}
    assert spec["config"]["variables"]["identity"]["secret"]


def test_bound_keypair_token_is_plain_unless_it_holds_a_registration_secret() -> None:
    """A bound_keypair token with an initial public key holds no secret, so the state holds none; a registration
    secret makes its property a secret (Pulumi secrets are marked per top-level property here)."""
    from machineid.pulumi.servicer import Servicer

    key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIDt3yY5rT2nn5bKJ0k2h8kQq9hTn8nUo9qGkS3v0wN1a ci@host"
    checked = Provider().check(PROVISION_TOKEN.token, "ci-key", {
        "joinMethod": "bound_keypair", "botName": "ci", "boundKeypair": {"onboarding": {"initialPublicKey": key}}})
    assert not checked.failures, checked.failures
    assert checked.inputs["boundKeypair"]["recovery"] == {"mode": "standard", "limit": 1}
    servicer = Servicer.__new__(Servicer)
    assert servicer._secrets(PROVISION_TOKEN.token, checked.inputs) == frozenset()
    with_secret = Provider().check(PROVISION_TOKEN.token, "ci-reg", {
        "joinMethod": "bound_keypair", "botName": "ci",
        "boundKeypair": {"onboarding": {"registrationSecret": "0123456789abcdef0123456789abcdef"}}})
    assert servicer._secrets(PROVISION_TOKEN.token, with_secret.inputs) == {"boundKeypair"}
    token_method = Provider().check(PROVISION_TOKEN.token, "t", {"botName": "ci"}).inputs
    assert servicer._secrets(PROVISION_TOKEN.token, token_method) == {"name"}
    old = checked.inputs
    new = Provider().check(PROVISION_TOKEN.token, "ci-key", {
        "joinMethod": "bound_keypair", "botName": "ci",
        "boundKeypair": {"onboarding": {"initialPublicKey": key}, "recovery": {"limit": 3},
                         "rotateAfter": "2031-01-01T00:00:00Z"}}).inputs
    diff = Provider().diff(PROVISION_TOKEN.token, old, old, new)
    assert diff.diffs == {"boundKeypair.recovery.limit": UPDATE, "boundKeypair.rotateAfter": UPDATE}
    assert not diff.replaces


def test_a_bot_joining_with_a_bound_keypair_token_holds_no_secret() -> None:
    from machineid.pulumi.servicer import Servicer

    servicer = Servicer.__new__(Servicer)
    keypair_bot = {"name": "ci", "tokenName": "ci-key", "token": "ci-key", "joinMethod": "bound_keypair",
                   "agentConfig": "onboarding: ..."}
    assert servicer._secrets(BOT.token, keypair_bot, {"tokenName"}) == frozenset()
    assert servicer._secrets(BOT.token, dict(keypair_bot, joinMethod="token")) >= {"token", "agentConfig"}


def test_an_iam_token_name_is_no_pulumi_secret_and_a_token_method_name_is() -> None:
    """Only a token-method token's name is its secret; an iam token's name shows in previews and the state."""
    from machineid.pulumi.servicer import Servicer

    servicer = Servicer.__new__(Servicer)
    iam = Provider().check(PROVISION_TOKEN.token, "ci-iam", {
        "joinMethod": "iam", "botName": "ci", "allow": [{"awsAccount": "123456789012"}]})
    assert not iam.failures, iam.failures
    assert servicer._secrets(PROVISION_TOKEN.token, iam.inputs) == frozenset()
    single = Provider().check(PROVISION_TOKEN.token, "t", {"botName": "ci", "name": "s" * 32}).inputs
    assert servicer._secrets(PROVISION_TOKEN.token, single) == {"name"}
    iam_bot = {"name": "ci", "tokenName": "ci-iam", "token": "ci-iam", "joinMethod": "iam", "agentConfig": "..."}
    assert servicer._secrets(BOT.token, iam_bot) == frozenset()
    description = schema.build()["resources"]["machineid:index:Bot"]["properties"]["token"]["description"]
    assert "public (iam, bound_keypair, github, gitlab, kubernetes, oidc)" in description

