"""The IAM verifier's pure parts: allow rules, endpoints, and reading STS's answer in both of its formats."""

from __future__ import annotations

import pytest

from machineid.cluster.iam import CallerIdentity, Verifier, matches, parse_caller_identity
from machineid.model.errors import PermissionDeniedError
from machineid.model.resources import TokenRule

GUIDE_RULE = TokenRule(aws_account="111111111111",
                       aws_arn="arn:aws:sts::111111111111:assumed-role/teleport-bot-role/i-*")


@pytest.mark.parametrize(("arn", "account", "ok"), [
    ("arn:aws:sts::111111111111:assumed-role/teleport-bot-role/i-0123456789abcdef0", "111111111111", True),
    ("arn:aws:sts::111111111111:assumed-role/teleport-bot-role/i-", "111111111111", True),
    ("arn:aws:sts::111111111111:assumed-role/other-role/i-0123", "111111111111", False),
    ("arn:aws:sts::222222222222:assumed-role/teleport-bot-role/i-0123", "222222222222", False),
    ("arn:aws:sts::111111111111:assumed-role/teleport-bot-role/session", "111111111111", False),
])
def test_guide_rule(arn: str, account: str, ok: bool) -> None:
    assert matches(GUIDE_RULE, CallerIdentity(account, arn, "AROA")) is ok


def test_question_mark_and_literal_brackets() -> None:
    rule = TokenRule(aws_account="111111111111", aws_arn="arn:aws:iam::111111111111:user/ci-?")
    assert matches(rule, CallerIdentity("111111111111", "arn:aws:iam::111111111111:user/ci-1", ""))
    assert not matches(rule, CallerIdentity("111111111111", "arn:aws:iam::111111111111:user/ci-12", ""))
    literal = TokenRule(aws_account="111111111111", aws_arn="arn:aws:iam::111111111111:user/[ab]")
    assert not matches(literal, CallerIdentity("111111111111", "arn:aws:iam::111111111111:user/a", ""))
    account_only = TokenRule(aws_account="111111111111")
    assert matches(account_only, CallerIdentity("111111111111", "arn:aws:iam::111111111111:user/anyone", ""))


@pytest.mark.parametrize(("url", "ok"), [
    ("https://sts.amazonaws.com/", True),
    ("https://sts.eu-west-1.amazonaws.com/", True),
    ("https://sts-fips.us-east-1.amazonaws.com/", True),
    ("http://sts.amazonaws.com/", False),
    ("https://sts.amazonaws.com:8443/", False),
    ("https://sts.amazonaws.com.evil.example/", False),
    ("https://evil.example/", False),
    ("http://127.0.0.1:4566/", False),
    ("http://127.0.0.1:5000/", True),
])
def test_endpoint_allow_list(url: str, ok: bool) -> None:
    assert Verifier(["http://127.0.0.1:5000"]).allowed_endpoint(url) is ok


def test_reads_json_and_xml_answers() -> None:
    json_body = (b'{"GetCallerIdentityResponse": {"GetCallerIdentityResult": {"Account": "111111111111", '
                 b'"Arn": "arn:aws:sts::111111111111:assumed-role/r/i-1", "UserId": "AROA:i-1"}}}')
    xml_body = (b'<GetCallerIdentityResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><GetCallerIdentityResult>'
                b"<Arn>arn:aws:iam::123456789012:user/ci</Arn><UserId>AIDA</UserId><Account>123456789012</Account>"
                b"</GetCallerIdentityResult></GetCallerIdentityResponse>")
    expected = CallerIdentity("111111111111", "arn:aws:sts::111111111111:assumed-role/r/i-1", "AROA:i-1")
    assert parse_caller_identity(json_body) == expected
    assert parse_caller_identity(xml_body).arn == "arn:aws:iam::123456789012:user/ci"
    with pytest.raises(PermissionDeniedError, match="could not read"):
        parse_caller_identity(b"<html>nope</html>")


@pytest.mark.parametrize("url", ["https://x@sts.amazonaws.com/", "https://sts.amazonaws.com:99999/",
                                 "https://sts.amazonaws.com:abc/", "https://[::1/", "https://sts.amazonaws.com/#f"])
def test_odd_urls_are_refused_not_crashes(url: str) -> None:
    assert Verifier().allowed_endpoint(url) is False
