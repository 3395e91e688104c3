"""Helpers for the delegated-join tests: tokens of each method pointing at the local issuer (tests/oidc_issuer.py),
ID tokens minted on the in-process cluster's clock, joins, and refusals checked in the audit log as well."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from machineid.cluster.issuance import IssuedCerts
from machineid.cluster.oidc.keysets import KeySets
from machineid.cluster.service import Cluster
from machineid.cluster.store.base import AuditRecord
from machineid.model import codec, errors
from machineid.model.resources import ProvisionToken
from tests.inprocess import CLUSTER, Clock, admin, key_pem
from tests.oidc_issuer import Issuer

ADDRESS = "192.0.2.10"  # where the joiner calls from (the server passes the client's address)


def put_token(c: Cluster, method: str, block: dict[str, Any], name: str = "", bot: str = "ci") -> str:
    """A token of a delegated method for `bot`, named after the method unless `name` says otherwise."""
    name = name or method
    c.upsert(admin(c), codec.decode(ProvisionToken, {"metadata": {"name": name}, "spec": {
        "join_method": method, "bot_name": bot, method: block}}))
    return name


def trusting(issuer: Issuer, *allow: dict[str, Any], **settings: Any) -> dict[str, Any]:
    """A method's block that fetches the local issuer's keys (its URL and its CA) and has these allow rules."""
    return {"issuer": issuer.url, "ca_bundle": issuer.ca_pem, "allow": list(allow), **settings}


def mint(by: Issuer, clock: Clock, claims: dict[str, Any], audience: str = CLUSTER, **kw: Any) -> str:
    """An ID token issued now on the cluster's clock (which checks exp, iat and nbf against it)."""
    return by.mint(claims, audience, iat=kw.pop("iat", clock.now.timestamp()), **kw)


def join(c: Cluster, token: str, id_token: str, source: str = ADDRESS) -> tuple[str, IssuedCerts]:
    return c.register_using_oidc(token, id_token, key_pem(), None, source)


def joins(c: Cluster) -> list[AuditRecord]:
    return [e for e in c.audit_events(admin(c)) if e.action == "bot.join"]


def refused(c: Cluster, token: str, id_token: str, match: str, source: str = ADDRESS) -> str:
    """The join is refused with a message matching `match`, and the refusal is in the audit log with the same
    message (never the ID token). Returns the message."""
    before = len(joins(c))
    with pytest.raises(errors.PermissionDeniedError, match=match) as e:
        join(c, token, id_token, source)
    after = joins(c)
    assert len(after) == before + 1, "a refused join writes one audit record"
    record = after[-1]
    assert record.outcome == "denied" and record.target == f"token/{token}", record
    assert re.search(match, record.details["error"]), record.details
    for part in (id_token, *id_token.split(".")[1:]):  # neither the token nor its payload or signature
        assert len(part) < 8 or part not in json.dumps(record.details), record.details
    return str(e.value)


class Ticks:
    """A monotonic clock for the cluster's key cache, moved by the test (seconds)."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def ticking(c: Cluster) -> Ticks:
    """Gives the cluster a fresh key cache on a clock the test moves."""
    ticks = Ticks()
    c.delegated.keysets = KeySets(clock=ticks)
    return ticks
