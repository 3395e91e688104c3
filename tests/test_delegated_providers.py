"""The providers join by themselves: with `join_method` in the provider configuration, real `tofu` and the real
Pulumi engine apply and plan clean as a CI job would, with the job's ID token (from a local issuer shaped like
GitHub's runner endpoint) and no identity file, no stored secret, nothing written to disk."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pulumi
import pulumi_machineid as machineid
import pytest

from machineid.model import codec
from machineid.model.resources import ProvisionToken, Role
from machineid.pulumi.engine import Engine
from machineid.terraform.runner import Workspace
from tests.conftest import ServerProc
from tests.oidc_issuer import Issuer

pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")


@pytest.fixture(scope="module")
def issuer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Issuer]:
    iss = Issuer(tmp_path_factory.mktemp("issuer"))
    iss.request_claims = Issuer.github_claims(repository="acme/infra")
    yield iss
    iss.close()


@pytest.fixture(scope="module")
def deployer(issuer: Issuer, server: ServerProc) -> ServerProc:
    """A bot for apply jobs: it may write roles (editor); the github token admits acme/infra on main."""
    server.ctl("bots", "add", "ci-deployer", "--roles=editor")
    with server.admin() as admin:
        admin.upsert(codec.decode_and_validate(ProvisionToken, {
            "metadata": {"name": "gh-deployer"},
            "spec": {"join_method": "github", "bot_name": "ci-deployer", "github": {
                "issuer": issuer.url, "ca_bundle": issuer.ca_pem,
                "allow": [{"repository": "acme/infra", "ref": "refs/heads/main"}]}}}))
    return server


def pin(server: ServerProc) -> str:
    return str(json.loads((server.data_dir / "server.json").read_text())["ca_pin"])


def github_env(issuer: Issuer, tmp_path: Path) -> dict[str, str]:
    bundle = tmp_path / "runner-ca.pem"
    bundle.write_text(issuer.ca_pem)
    return {"ACTIONS_ID_TOKEN_REQUEST_URL": issuer.request_url, "ACTIONS_ID_TOKEN_REQUEST_TOKEN":
            issuer.request_bearer, "SSL_CERT_FILE": str(bundle)}


def no_secret_in(text: str) -> None:
    assert "PRIVATE KEY" not in text and "eyJ" not in text  # no key, no ID token (a JWT)


def test_tofu_applies_and_plans_clean_as_the_ci_bot(deployer: ServerProc, issuer: Issuer, tools_bin: Path,
                                                     tmp_path: Path) -> None:
    ws = Workspace.create(tools_bin / "tofu", tmp_path / "tf", tmp_path / "home", github_env(issuer, tmp_path))
    ws.write(f'''
terraform {{
  required_providers {{
    machineid = {{ source = "machineid/machineid" }}
  }}
}}
provider "machineid" {{
  address     = "{deployer.address}"
  ca_pin      = "{pin(deployer)}"
  join_method = "github"
  join_token  = "gh-deployer"
}}
resource "machineid_role" "ci" {{
  name = "made-by-ci"
  allow {{
    logins = ["deploy"]
  }}
}}
''')
    ws.init()
    ws.apply()
    assert ws.plan().returncode == 0  # the plan's own join, with a fresh ID token: no changes
    with deployer.admin() as admin:
        assert admin.get_as(Role, "made-by-ci").spec.allow.logins == ["deploy"]
        created = [e for e in admin.audit_events() if e.action == "role.create" and e.target == "role/made-by-ci"]
        assert created and created[-1].actor == "bot:ci-deployer"
    no_secret_in((ws.directory / "terraform.tfstate").read_text())
    assert not list(ws.directory.rglob("*identity*"))

    issuer.request_claims = Issuer.github_claims(repository="acme/infra", ref="refs/heads/feature")
    try:
        refused = ws.run("plan", "-no-color", check=False)
    finally:
        issuer.request_claims = Issuer.github_claims(repository="acme/infra")
    assert refused.returncode == 1
    said = " ".join((refused.stdout + refused.stderr).split())  # the CLI wraps long messages
    assert "Permission denied by the machineid cluster" in said and "provider bug" not in said
    assert "github join (join_token 'gh-deployer') was refused" in said
    assert "on refs/heads/feature matches no allow rule" in said
    ws.destroy()


def test_pulumi_up_and_a_clean_preview_as_the_ci_bot(deployer: ServerProc, issuer: Issuer, tools_bin: Path,
                                                      tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in github_env(issuer, tmp_path).items():
        monkeypatch.setenv(key, value)  # the engine starts the provider with this process's environment
    monkeypatch.delenv("MACHINEID_IDENTITY", raising=False)
    engine = Engine(tools_bin, tmp_path / "pulumi-home", {"MACHINEID_AUTH_SERVER": deployer.address})

    def program() -> None:
        role = machineid.Role("ci", name="made-by-pulumi-ci", allow=machineid.RoleConditionsArgs(logins=["deploy"]))
        pulumi.export("role", role.name)

    work = tmp_path / "work"
    work.mkdir()
    stack = engine.inline_stack("ci-join", "ci", program, work, {
        "machineid:caPin": pin(deployer), "machineid:joinMethod": "github", "machineid:joinToken": "gh-deployer"})
    up = stack.up(color="never")
    assert up.outputs["role"].value == "made-by-pulumi-ci"
    assert stack.preview(color="never").change_summary.get("same") == 2  # the stack and the role
    with deployer.admin() as admin:
        assert admin.get_as(Role, "made-by-pulumi-ci").spec.allow.logins == ["deploy"]
    no_secret_in(json.dumps(stack.export_stack().deployment))
    stack.destroy(color="never")
