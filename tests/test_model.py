"""The resource model: decoding, defaults, and the errors a user sees for bad input."""

from __future__ import annotations

from datetime import timedelta

import pytest

from machineid.model import codec
from machineid.model.errors import ValidationError
from machineid.model.resources import Bot, Node, ProvisionToken, Role
from machineid.model.validators import format_duration, parse_duration


def messages(cls: type, data: dict) -> list[str]:
    try:
        codec.validate(codec.decode(cls, data))
    except ValidationError as e:
        return [str(v) for v in e.violations]
    return []


def test_guide_iam_token_decodes_with_defaults() -> None:
    token = codec.decode(ProvisionToken, {
        "metadata": {"name": "iam-token", "expires": "3000-01-01T00:00:00Z"},
        "spec": {"roles": ["Bot"], "join_method": "iam", "bot_name": "robot",
                 "allow": [{"aws_account": "111111111111",  # quoted, as the guide writes it
                            "aws_arn": "arn:aws:sts::111111111111:assumed-role/teleport-bot-role/i-*"}]},
    })
    codec.validate(token)
    assert token.spec.allow[0].aws_account == "111111111111"
    # unquoted, YAML reads a number (and 012345678901 would lose its zero): refused with the fix, never guessed
    with pytest.raises(ValidationError, match=r"spec\.allow\[0\]\.aws_account: must be a string.*quote it"):
        codec.decode(ProvisionToken, {"metadata": {"name": "t"}, "spec": {"allow": [{"aws_account": 111111111111}]}})
    assert token.metadata.expires is not None and token.metadata.expires.year == 3000


def test_role_defaults_fill_in_and_round_trip() -> None:
    role = codec.decode(Role, {"metadata": {"name": "ci"}, "spec": {"allow": {"logins": ["ubuntu"]}}})
    assert role.spec.options.max_session_ttl == "30h"
    assert codec.decode(Role, codec.encode(role)) == role


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({"metadata": {"name": "x"}, "spec": {"alow": {}}}, 'spec.alow: unknown field; did you mean "allow"?'),
        ({"metadata": {"name": "x"}, "spec": {"allow": {"logins": "root"}}}, "spec.allow.logins: must be a list"),
        ({"metadata": {"name": "x"}, "spec": {"allow": {"logins": ["Root User"]}}},
         'spec.allow.logins[0]: "Root User" is not valid'),  # the item's index is in the path, not the text
        ({"metadata": {"name": "x"}, "spec": {"options": {"max_session_ttl": "-5m"}}},
         "spec.options.max_session_ttl: \"-5m\" is too short"),
        ({"metadata": {"name": "x"}, "spec": {"options": {"max_session_ttl": "banana"}}},
         'spec.options.max_session_ttl: "banana" is not a duration'),
        ({"metadata": {}, "spec": {}}, "metadata.name: is required"),
        ({"metadata": {"name": "bad name!"}}, "metadata.name:"),
        ({"metadata": {"name": "x"}, "spec": {"allow": {"rules": [{"resources": ["rols"], "verbs": ["read"]}]}}},
         'spec.allow.rules[0].resources: "rols" is not allowed'),
    ],
)
def test_role_errors_name_the_field(data: dict, expected: str) -> None:
    assert any(m.startswith(expected) for m in messages(Role, data)), messages(Role, data)


def test_every_problem_is_reported_at_once() -> None:
    msgs = messages(Role, {"metadata": {"name": 5.5}, "spec": {"alow": {}, "deny": {"logins": "x"}}})
    assert len(msgs) == 3


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ({"join_method": "iam", "bot_name": "robot"}, "spec.allow: an iam token needs at least one allow rule"),
        ({"join_method": "saml", "bot_name": "robot"}, 'spec.join_method: "saml" is not allowed'),
        ({"bot_name": ""}, "spec.bot_name: must be set"),
        ({"roles": ["Sentinel"], "bot_name": "r"}, 'spec.roles: "Sentinel" is not allowed'),
        ({"roles": ["Node"], "bot_name": "r", "node_name": "web1"}, "spec.bot_name: applies to role Bot only"),
        ({"roles": ["Node"]}, "spec.node_name: must be set for a token with role Node"),
        ({"roles": ["Bot", "Node"], "bot_name": "r", "node_name": "n"}, "spec.roles: a token joins either a bot"),
        ({"roles": ["Node"], "node_name": "n", "join_method": "github", "github": {"allow": [{"repository": "a/b"}]}},
         'spec.join_method: "github" cannot join a node'),
        ({"bot_name": "r", "node_name": "n"}, "spec.node_name: applies to role Node only"),
        ({"join_method": "iam", "bot_name": "r", "allow": [{"aws_account": "12", "aws_arn": "arn:aws:sts::1"}]},
         "spec.allow[0].aws_account"),
        ({"join_method": "iam", "bot_name": "r",
          "allow": [{"aws_account": "111111111111", "aws_arn": "not-an-arn"}]}, "spec.allow[0].aws_arn"),
        ({"bot_name": "r", "allow": [{"aws_account": "111111111111"}]}, "spec.allow: allow rules apply to"),
    ],
)
def test_token_errors(spec: dict, expected: str) -> None:
    msgs = messages(ProvisionToken, {"metadata": {"name": "t"}, "spec": spec})
    assert any(m.startswith(expected) for m in msgs), msgs


def test_a_node_token_decodes() -> None:
    token = codec.decode_and_validate(ProvisionToken, {"metadata": {"name": "n" * 32}, "spec": {
        "roles": ["Node"], "node_name": "web1", "join_method": "token"}})
    assert token.spec.node_name == "web1" and token.spec.bot_name == ""


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ({"addr": "10.0.0.5:22", "hostnames": ["web1.internal", "bad name"]}, "spec.hostnames[1]:"),
        ({"addr": "10.0.0.5:22", "host_cert_ttl": "1m"}, 'spec.host_cert_ttl: "1m" is too short'),
        ({"addr": "10.0.0.5:22", "host_cert_ttl": "8760h"}, 'spec.host_cert_ttl: "8760h" is too long'),
        ({"addr": "10.0.0.5:22", "revocation_max_age": "soon"}, "spec.revocation_max_age:"),
    ],
)
def test_node_errors_name_the_field(spec: dict, expected: str) -> None:
    msgs = messages(Node, {"metadata": {"name": "web1"}, "spec": spec})
    assert any(m.startswith(expected) for m in msgs), msgs


def test_a_node_gets_short_lived_host_certificates_and_fails_closed_by_default() -> None:
    node = codec.decode_and_validate(Node, {"metadata": {"name": "web1"}, "spec": {"addr": "10.0.0.5:22"}})
    assert node.spec.host_cert_ttl == "24h" and node.spec.revocation_max_age == "1h"
    assert codec.decode_and_validate(Node, {"metadata": {"name": "w"}, "spec": {
        "addr": "10.0.0.5:22", "revocation_max_age": "0s"}}).spec.revocation_max_age == "0s"


def test_bot_needs_roles() -> None:
    assert messages(Bot, {"metadata": {"name": "robot"}, "spec": {}}) == ["spec.roles: is required"]


def test_traits_accept_a_single_value() -> None:
    bot = codec.decode(Bot, {"metadata": {"name": "r"}, "spec": {"roles": ["access"], "traits": {"logins": "root"}}})
    assert bot.spec.traits == {"logins": ["root"]}


@pytest.mark.parametrize(("text", "seconds"), [("1h", 3600), ("1h30m", 5400), ("90s", 90), ("0", 0), ("-5m", -300),
                                               ("1.5h", 5400), ("250ms", 0.25)])
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == timedelta(seconds=seconds)


@pytest.mark.parametrize("text", ["", "h", "1x", "1h 30m", "5"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(ValueError, match="is not a duration"):
        parse_duration(text)


def test_format_duration() -> None:
    assert format_duration(timedelta(seconds=5400)) == "1h30m"
    assert format_duration(timedelta(hours=30)) == "30h"


def test_huge_duration_is_an_error_not_a_crash() -> None:
    with pytest.raises(ValueError, match="too long"):
        parse_duration("99999999999h")
