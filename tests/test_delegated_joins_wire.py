"""A delegated join over the wire (issue 18 §1): the real server, a real JoinClient, the local HTTPS issuer. A
GitHub job's ID token joins once; a replay is refused with a clear message and an audit record; the ID token
appears nowhere the server writes (its log at debug level, its database)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from machineid.api import certs
from machineid.api.client import JoinClient, fetch_cluster_cas
from machineid.model import errors
from tests.conftest import ServerProc
from tests.oidc_issuer import Issuer


@pytest.fixture()
def issuer(tmp_path: Path) -> Iterator[Issuer]:
    iss = Issuer(tmp_path / "issuer")
    yield iss
    iss.close()


def test_a_github_job_joins_over_the_wire_once_and_its_id_token_is_written_nowhere(tmp_path: Path,
                                                                                   issuer: Issuer) -> None:
    srv = ServerProc(tmp_path / "data", extra_args=("--log-level", "debug"))
    srv.start()
    try:
        srv.ctl("bots", "add", "ci", "--roles=access")
        srv.ctl("create", "-f", "-", input=json.dumps({
            "kind": "token", "version": "v2", "metadata": {"name": "gh-ci"},
            "spec": {"roles": ["Bot"], "join_method": "github", "bot_name": "ci", "github": {
                "issuer": issuer.url, "ca_bundle": issuer.ca_pem,
                "allow": [{"repository": "acme/app", "ref": "refs/heads/main"}]}}}))
        id_token = issuer.mint(Issuer.github_claims(run_id="9001"), srv.cluster_name)
        with JoinClient(srv.address, fetch_cluster_cas(srv.address)) as jc:
            reply = jc.register_using_oidc("gh-ci", id_token, certs.public_key_pem(certs.new_key().public_key()))
            assert reply.bot_name == "ci" and reply.certs.tls_cert and not reply.certs.renewable
            with pytest.raises(errors.PermissionDeniedError, match="this ID token was already used to join; each "
                                                                   "joins once"):
                jc.register_using_oidc("gh-ci", id_token, certs.public_key_pem(certs.new_key().public_key()))
        with srv.admin() as admin:
            records = [e for e in admin.audit_events(action="bot.join") if e.target == "token/gh-ci"]
            bot = admin.get_bot("ci")
        assert [r.outcome for r in records] == ["ok", "denied"]
        assert json.loads(records[0].details)["claims"]["run_id"] == "9001"
        assert "already used to join" in json.loads(records[1].details)["error"]
        assert bot.status.join_attributes["repository"] == "acme/app"
    finally:
        assert srv.stop() == 0, srv.log_text()
    log = srv.log_text()
    assert "gh-ci" in log or "bot.join" in log, log  # the log does speak of the join...
    written = log.encode() + b"".join(p.read_bytes() for p in srv.data_dir.rglob("*") if p.is_file())
    _, payload, signature = id_token.split(".")
    for part in (id_token, payload, signature):  # ...but never holds the token, its claims' encoding or signature
        assert part.encode() not in written
