"""examples/ci with a Pulumi project (examples/ci/pulumi): the recipe's script, as the GitHub jobs call it, runs
the real Pulumi engine, whose provider joins with the runner's OIDC token (a local issuer shaped like GitHub's) as
the writer to apply and as the reader to review and check drift, with the stack's state in PostgreSQL (Pulumi's
postgres:// backend). No key and no ID token in the state or the output."""

from __future__ import annotations

import base64
import gzip
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest

from machineid.cluster.process import MACHINEID
from machineid.model.resources import Role
from machineid.pulumi.engine import Engine
from tests.ci_recipe import CI, bootstrap, ca_pin, denied_joins, new_database, no_secret_in
from tests.conftest import ServerProc
from tests.oidc_issuer import Issuer

# A single-use token without a name (the provider generates it, the secret): review must read it (issue 18).
NAMELESS_TOKEN = """  onboard:
    type: machineid:ProvisionToken
    properties:
      botName: ${deploy.name}
      ttl: 30m
"""


@dataclass
class Project:
    server: ServerProc
    issuer: Issuer
    repo: Path
    env: dict[str, str]
    database: str
    outputs: list[str]

    def check(self, what: str, token: str, *args: str) -> subprocess.CompletedProcess[str]:
        """identity-check.sh as a GitHub job of acme/infra's main branch runs it, joining with `token`."""
        proc = subprocess.run([str(self.repo / "examples" / "ci" / "identity-check.sh"), what, "pulumi", *args],
                              cwd=self.repo, env={**self.env, "MACHINEID_JOIN_TOKEN": token}, capture_output=True,
                              text=True, timeout=600)
        self.outputs.append(proc.stdout + proc.stderr)
        return proc


@pytest.fixture(scope="module")
def project(server: ServerProc, tools_bin: Path, postgres: str,
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[Project]:
    tmp = tmp_path_factory.mktemp("pulumi")
    issuer = Issuer(tmp / "issuer")
    issuer.request_claims = Issuer.github_claims(repository="acme/infra", workflow="identity")
    bootstrap(server, issuer)
    server.ctl("nodes", "add", "pl-web", "--addr", "10.9.0.4:22", "--labels", "env=prod", "--out", str(tmp / "hk"))
    repo = tmp / "repo"
    shutil.copytree(CI, repo / "examples" / "ci")
    shutil.copytree(CI / "pulumi", repo / "pulumi")
    database = new_database(postgres)
    engine = Engine(tools_bin, tmp / "pulumi-home", {"PULUMI_BACKEND_URL": database.replace("postgresql://",
                                                                                             "postgres://")})
    engine.yaml_stack(repo / "pulumi", "prod")  # once, by whoever sets the project up
    bundle = tmp / "runner-ca.pem"
    bundle.write_text(issuer.ca_pem)
    env = {k: v for k, v in engine.environ().items() if not k.startswith(("MACHINEID_", "TF_"))}
    env.update({"PATH": f"{tools_bin}:{Path(MACHINEID).parent}:/usr/bin:/bin",
                "PULUMI_STACK": "prod", "MACHINEID_AUTH_SERVER": server.address, "MACHINEID_CA_PIN": ca_pin(server),
                "MACHINEID_JOIN_METHOD": "github", "ACTIONS_ID_TOKEN_REQUEST_URL": issuer.request_url,
                "ACTIONS_ID_TOKEN_REQUEST_TOKEN": issuer.request_bearer, "SSL_CERT_FILE": str(bundle)})
    yield Project(server, issuer, repo, env, database, [])
    issuer.close()


def test_a_pulumi_project_is_applied_reviewed_and_checked_for_drift(project: Project) -> None:
    program = project.repo / "pulumi" / "Pulumi.yaml"
    code = program.read_text()
    applied = project.check("apply", "ci-writer-github")
    assert applied.returncode == 0 and "identity-check: applied" in applied.stdout, applied.stdout + applied.stderr
    with project.server.admin() as admin:
        assert admin.get_as(Role, "ci-deployer").spec.allow.logins == ["{{internal.logins}}"]
        created = [e for e in admin.audit_events() if e.action == "role.create" and e.target == "role/ci-deployer"]
        assert created[-1].actor == "bot:ci-writer"

    clean = project.check("drift", "ci-reader-github")
    assert clean.returncode == 0 and "no drift" in clean.stdout, clean.stdout + clean.stderr
    project.server.ctl("create", "--force", "-f", "-", input="kind: role\nmetadata:\n  name: ci-deployer\nspec:\n"
                                                             "  allow:\n    logins: [root]\n")
    drifted = project.check("drift", "ci-reader-github")
    assert drifted.returncode == 2 and "Role::deployer" in drifted.stdout, drifted.stdout + drifted.stderr
    assert project.check("apply", "ci-writer-github").returncode == 0  # back to the code

    program.write_text(code + NAMELESS_TOKEN)
    onboard = project.check("review", "ci-reader-github", "examples/ci/identity-policy.yaml")
    assert onboard.returncode == 0, onboard.stdout + onboard.stderr
    assert "**+ gains join methods**: `token`" in onboard.stdout
    program.write_text(code.replace('logins: ["{{internal.logins}}"]', 'logins: ["root", "{{internal.logins}}"]'))
    rooted = project.check("review", "ci-reader-github", "examples/ci/identity-policy.yaml")
    assert rooted.returncode == 8, rooted.stdout + rooted.stderr
    assert "❌ `deny_logins`" in rooted.stdout and "`root@pl-web`" in rooted.stdout
    assert (project.repo / "review.md").read_text().startswith("<!-- machineid-review -->\n")
    program.write_text(code)
    noop = project.check("review", "ci-reader-github", "examples/ci/identity-policy.yaml")
    assert noop.returncode == 0 and "No access change" in noop.stdout, noop.stdout + noop.stderr

    project.issuer.request_claims = Issuer.github_claims(repository="acme/infra", workflow="identity",
                                                         ref="refs/heads/feature")
    try:
        branch = project.check("apply", "ci-writer-github")
    finally:
        project.issuer.request_claims = Issuer.github_claims(repository="acme/infra", workflow="identity")
    said = " ".join((branch.stdout + branch.stderr).split())
    assert branch.returncode == 1 and "on refs/heads/feature matches no allow rule" in said, said
    assert "refs/heads/feature" in denied_joins(project.server, "ci-writer-github")[-1]["details"]["error"]


def test_nothing_secret_in_the_pulumi_state_or_the_output(project: Project) -> None:
    """After the runs above: the stack's state they left, and everything they printed."""
    with psycopg.connect(project.database.split("?")[0]) as conn:  # Pulumi's postgres backend: blobs by key
        rows = conn.execute("SELECT key, data FROM pulumi_state").fetchall()
    blobs = {key: base64.b64decode(data["data"]) for key, data in rows}
    state = "\n".join((gzip.decompress(b) if b[:2] == b"\x1f\x8b" else b).decode() for b in blobs.values())
    assert '"ci-deploy-github"' in state, list(blobs)  # the stack's state, read back
    no_secret_in(state, "the Pulumi state in PostgreSQL")
    for output in project.outputs:
        no_secret_in(output, "the script's output")
    no_secret_in(project.server.log_text(), "the cluster's log")
