"""Secretless CI through the real CLI and a real server: `ctl`, `review` and `bot start --oneshot` join with the
platform's ID token (from a local issuer shaped like GitHub's and GitLab's), keep the identity in memory (the
agent in its data dir), and the ID token never reaches the server's log."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from machineid.api.identity import Identity
from machineid.model import codec
from machineid.model.resources import ProvisionToken
from tests.conftest import ServerProc, run_cli
from tests.oidc_issuer import Issuer


@pytest.fixture(scope="module")
def issuer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Issuer]:
    iss = Issuer(tmp_path_factory.mktemp("issuer"))
    iss.request_claims = Issuer.github_claims()
    yield iss
    iss.close()


@pytest.fixture(scope="module")
def cluster(issuer: Issuer, server: ServerProc) -> ServerProc:
    server.ctl("bots", "add", "ci-reader", "--roles=auditor")
    with server.admin() as admin:
        for name, method, block in (
                ("gh-ci", "github", {"allow": [{"repository": "acme/app", "ref": "refs/heads/main"}]}),
                ("gl-ci", "gitlab", {"allow": [{"project_path": "acme/app", "ref_protected": "true"}]}),
                ("oidc-ci", "oidc", {"audience": "ci.test.example", "allow": [{"conditions": [
                    {"claim": "repository", "equals": "acme/app"}]}]})):
            block.update(issuer=issuer.url, ca_bundle=issuer.ca_pem)
            admin.upsert(codec.decode_and_validate(ProvisionToken, {
                "metadata": {"name": name}, "spec": {"join_method": method, "bot_name": "ci-reader", method: block}}))
    return server


def pin(server: ServerProc) -> str:
    return str(json.loads((server.data_dir / "server.json").read_text())["ca_pin"])


def env_for(issuer: Issuer, tmp_path: Path, **extra: str) -> dict[str, str]:
    bundle = tmp_path / "ca.pem"
    bundle.write_text(issuer.ca_pem)  # what the runner's token endpoint is checked against, as a CA bundle would be
    return {"ACTIONS_ID_TOKEN_REQUEST_URL": issuer.request_url, "ACTIONS_ID_TOKEN_REQUEST_TOKEN":
            issuer.request_bearer, "SSL_CERT_FILE": str(bundle), "MACHINEID_IDENTITY": "", **extra}


def ctl(server: ServerProc, method: str, token: str, env: dict[str, str], *extra: str,
        check: bool = True) -> tuple[int, str, str]:
    proc = run_cli("ctl", "get", "roles", "--format", "json", "--auth-server", server.address, "--join-method",
                   method, "--join-token", token, "--ca-pin", pin(server), *extra, env=env, check=check)
    return proc.returncode, proc.stdout, proc.stderr


def test_github_jobs_use_ctl_and_the_agent_with_no_secret(cluster: ServerProc, issuer: Issuer,
                                                          tmp_path: Path) -> None:
    env = env_for(issuer, tmp_path)
    for _ in range(2):  # every run asks the runner for a fresh ID token: no replay
        code, out, _ = ctl(cluster, "github", "gh-ci", env)
        assert code == 0 and any(r["metadata"]["name"] == "auditor" for r in json.loads(out))
    data, dest = tmp_path / "data", tmp_path / "dest"
    run_cli("bot", "start", "--oneshot", "--join-method", "github", "--token", "gh-ci", "--data-dir", str(data),
            "--destination-dir", str(dest), "--ca-pin", pin(cluster), "--auth-server", cluster.address, env=env)
    ident = Identity.load(dest / "identity")
    assert ident.info.user == "bot-ci-reader" and not ident.info.renewable
    bot = json.loads(cluster.ctl("get", "bot/ci-reader", "--format", "json").stdout)
    assert bot["status"]["join_attributes"]["repository"] == "acme/app"
    assert bot["status"]["join_attributes"]["workflow"] == "deploy"
    assert "eyJ" not in cluster.log_text()  # no ID token (a JWT) in the server's log

    issuer.request_claims = Issuer.github_claims(repository="evil/fork")
    try:
        code, _, err = ctl(cluster, "github", "gh-ci", env, check=False)
    finally:
        issuer.request_claims = Issuer.github_claims()
    assert code == 5 and "of evil/fork on refs/heads/main matches no allow rule" in err
    denied = json.loads(cluster.ctl("audit", "--action", "bot.join", "--format", "json").stdout)[-1]
    assert denied["outcome"] == "denied" and "evil/fork" in denied["details"]["error"]


def test_a_gitlab_job_joins_again_from_its_address_and_an_oidc_token_joins_once(cluster: ServerProc,
                                                                               issuer: Issuer,
                                                                               tmp_path: Path) -> None:
    gitlab_token = issuer.mint(Issuer.gitlab_claims(), "test.example")
    env = env_for(issuer, tmp_path, MACHINEID_ID_TOKEN=gitlab_token)
    for _ in range(2):  # one ID token per job, several tool runs: the same address may join again
        assert ctl(cluster, "gitlab", "gl-ci", env)[0] == 0
    token_file = tmp_path / "id-token"
    token_file.write_text(issuer.mint(Issuer.github_claims(), "ci.test.example"))
    assert ctl(cluster, "oidc", "oidc-ci", env, "--id-token-file", str(token_file))[0] == 0
    code, _, err = ctl(cluster, "oidc", "oidc-ci", env, "--id-token-file", str(token_file), check=False)
    assert code == 5 and "this ID token was already used to join" in err
    code, _, err = ctl(cluster, "oidc", "oidc-ci", env, "--id-token-file", str(tmp_path / "missing"), check=False)
    assert code == 3 and "cannot read the ID token" in err
