"""examples/ci on GitHub Actions, as a team runs it: the workflow's own jobs (tests/ci_recipe.py runs their steps
as a runner does) join a real cluster with the runner's OIDC token (a local issuer shaped like GitHub's) as the
bots bootstrap.yaml declares, plan and apply with real OpenTofu keeping the state in a real PostgreSQL (the pg
backend), review pull requests into one comment, and catch drift. Jobs of another repository, on another ref, or
with an ID token that expired, is for another audience, was used before or was signed by a key the issuer does
not publish are refused, say why, and are audited. No key and no ID token in the state, the logs or the files."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from machineid.model.resources import ProvisionToken, Role
from tests.ci_recipe import (
    CI,
    MARKER,
    FakeGitHub,
    GitHubActions,
    JobRun,
    bootstrap,
    ca_pin,
    checkout,
    denied_joins,
    new_database,
    no_secret_in,
    runner_base_env,
    tofu_state,
)
from tests.conftest import ServerProc
from tests.oidc_issuer import Issuer

ROOT_LOGIN = ('default = ["{{internal.logins}}"]', 'default = ["root", "{{internal.logins}}"]')
# A single-use token for a bot, its name (the secret) left for the provider to generate: review used to stop at
# "name: is required" on it (issue 18).
NAMELESS_TOKEN = """
resource "machineid_provision_token" "onboard" {
  bot_name = machineid_bot.deploy.name
  ttl      = "30m"
}
"""


@dataclass
class Recipe:
    server: ServerProc
    issuer: Issuer
    actions: GitHubActions
    api: FakeGitHub
    repo: Path
    home: Path
    database: str
    outputs: list[str]  # every job's output, checked for secrets at the end

    def run(self, job: str, event: str, ref: str, **kw: Any) -> JobRun:
        out = self.actions.run(job, event, ref, **kw)
        self.outputs.append(out.output)
        return out

    def our_comments(self) -> list[dict[str, Any]]:
        return [c for c in self.api.comments.values() if c["user"]["login"] == "github-actions[bot]"]


@pytest.fixture(scope="module")
def recipe(server: ServerProc, tools_bin: Path, postgres: str,
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[Recipe]:
    tmp = tmp_path_factory.mktemp("github")
    issuer = Issuer(tmp / "issuer")
    bootstrap(server, issuer)
    server.ctl("nodes", "add", "ci-web", "--addr", "10.9.0.1:22", "--labels", "env=prod", "--out", str(tmp / "hk"))
    repo, home, database, api = checkout(tmp), tmp / "home", new_database(postgres), FakeGitHub()
    actions = GitHubActions(repo, runner_base_env(tools_bin, home, issuer, tmp), issuer,
                            variables={"MACHINEID_AUTH_SERVER": server.address, "MACHINEID_CA_PIN": ca_pin(server),
                                       "PIP_INDEX_URL": "https://pypi.internal.example.com/simple"},
                            secrets={"INFRA_STATE_PG": database}, api=api)
    yield Recipe(server, issuer, actions, api, repo, home, database, [])
    api.close()
    issuer.close()


def test_the_workflow_joins_with_the_runners_token_and_installs_a_pinned_machineid() -> None:
    workflow = yaml.safe_load((CI / "identity-review.yml").read_text())
    tokens = {d["metadata"]["name"]: d["spec"] for d in yaml.safe_load_all((CI / "bootstrap.yaml").read_text())
              if d["kind"] == "token"}
    text = (CI / "identity-review.yml").read_text()
    assert "MACHINEID_IDENTITY" not in text and "pip install machineid" not in text
    assert [line.split("secrets.")[1] for line in text.splitlines() if "secrets." in line] == ["INFRA_STATE_PG }}"]
    assert workflow["env"]["MACHINEID_JOIN_METHOD"] == "github"
    for name, job in workflow["jobs"].items():
        assert job["permissions"]["id-token"] == "write", name
        assert tokens[job["env"]["MACHINEID_JOIN_TOKEN"]]["join_method"] == "github", name
        assert any(f"identity-check.sh {name}" in step.get("run", "") for step in job["steps"]), name
    writer = tokens[workflow["jobs"]["apply"]["env"]["MACHINEID_JOIN_TOKEN"]]
    assert writer["bot_name"] == "ci-writer" and [r["ref"] for r in writer["github"]["allow"]] == ["refs/heads/main"]


def test_pull_requests_are_reviewed_main_is_applied_and_drift_is_caught(recipe: Recipe) -> None:
    main = recipe.repo / "infra" / "main.tf"
    code = main.read_text()
    quoted = recipe.api.add({"body": f"{MARKER}\nquoting the bot", "user": {"login": "mallory"}})

    first = recipe.run("review", "pull_request", "refs/pull/7/merge", pr=7)
    assert first.code == 0, first.output
    assert "identity-check: TF_CLI_CONFIG_FILE names" in first.output  # the stray setting, coped with
    assert "### bot `ci-deploy` (created)" in first.output and "`deploy@ci-web`" in first.output
    assert ("workflow `deploy` of `acme/app` on `refs/heads/main` may join as bot `ci-deploy` (github token "
            "`ci-deploy-github`)") in first.output
    assert "✅ no rule is violated" in first.output
    (comment,) = recipe.our_comments()
    assert comment["body"].startswith(MARKER) and "### bot `ci-release` (created)" in comment["body"]
    assert recipe.api.comments[quoted]["body"] == f"{MARKER}\nquoting the bot"  # someone else's: left alone
    with recipe.server.admin() as admin:  # a review writes nothing
        assert "ci-deployer" not in {r.metadata.name for r in admin.list_as(Role)}

    assert not recipe.run("apply", "pull_request", "refs/pull/7/merge").ran
    applied = recipe.run("apply", "push", "refs/heads/main")
    assert applied.code == 0 and "identity-check: applied" in applied.output, applied.output
    with recipe.server.admin() as admin:
        assert admin.get_as(Role, "ci-deployer").spec.allow.logins == ["{{internal.logins}}"]
        assert admin.get_as(ProvisionToken, "ci-deploy-github").spec.github.allow[0].repository == "acme/app"
        created = [e for e in admin.audit_events() if e.action == "role.create" and e.target == "role/ci-deployer"]
        assert created[-1].actor == "bot:ci-writer"
    reader = recipe.server.ctl("get", "bot/ci-reader", "--format", "json").stdout
    assert '"workflow": "identity"' in reader and '"repository": "acme/infra"' in reader  # what the last join proved

    clean = recipe.run("drift", "schedule", "refs/heads/main")
    assert clean.code == 0 and "no drift" in clean.output, clean.output
    recipe.server.ctl("create", "--force", "-f", "-", input="kind: role\nmetadata:\n  name: ci-deployer\nspec:\n"
                                                            "  allow:\n    logins: [root]\n")
    drifted = recipe.run("drift", "schedule", "refs/heads/main")
    assert drifted.code == 2 and "machineid_role.deployer" in drifted.output, drifted.output
    as_reader = recipe.run("apply", "push", "refs/heads/main", env={"MACHINEID_JOIN_TOKEN": "ci-reader-github"})
    assert as_reader.code == 1 and "Permission denied" in as_reader.output, as_reader.output  # read only
    assert recipe.run("apply", "push", "refs/heads/main").code == 0  # back to the code
    assert recipe.run("drift", "schedule", "refs/heads/main").code == 0

    main.write_text(code + NAMELESS_TOKEN)
    onboard = recipe.run("review", "pull_request", "refs/pull/7/merge", pr=7)
    assert onboard.code == 0 and "**+ gains join methods**: `token`" in onboard.output, onboard.output
    main.write_text(code.replace(*ROOT_LOGIN))
    rooted = recipe.run("review", "pull_request", "refs/pull/7/merge", pr=7)
    assert rooted.code == 8, rooted.output
    assert "❌ `deny_logins`: `machineid_role.deployer` `allow.logins[0]`" in rooted.output
    assert rooted.step("comment").code == 0  # the comment says so, then the job fails
    (comment,) = recipe.our_comments()  # the same comment, edited on each push
    assert "❌ `deny_logins`" in comment["body"] and "`root@ci-web`" in comment["body"]
    assert sum(call.startswith("POST") for call in recipe.api.calls) == 1
    assert sum(call.startswith("PATCH") for call in recipe.api.calls) == 2

    recipe.actions.variables["MACHINEID_CA_PIN"] = "sha256:" + "0" * 64  # a review that cannot run says so
    try:
        broken = recipe.run("review", "pull_request", "refs/pull/7/merge", pr=7)
    finally:
        recipe.actions.variables["MACHINEID_CA_PIN"] = ca_pin(recipe.server)
    assert broken.code == 1 and "does not match" in broken.output, broken.output
    (comment,) = recipe.our_comments()
    assert "⚠️ The review could not run (tofu plan failed)" in comment["body"] and "❌" not in comment["body"]
    main.write_text(code)


def test_jobs_the_tokens_do_not_admit_are_refused_said_and_audited(recipe: Recipe, tmp_path: Path) -> None:
    issuer, server = recipe.issuer, recipe.server

    def refused(run: JobRun, token: str, reason: str) -> None:
        said = " ".join(run.output.split())  # tofu wraps long messages
        assert run.code == 1 and f"github join (join_token '{token}') was refused" in said, run.output
        assert reason in said, run.output
        assert reason in " ".join(denied_joins(server, token)[-1]["details"]["error"].split())

    fork = recipe.run("drift", "schedule", "refs/heads/main", repository="evil/infra")
    refused(fork, "ci-reader-github", "workflow 'identity' of evil/infra on refs/heads/main matches no allow rule")

    assert not recipe.run("apply", "push", "refs/heads/feature").ran  # the workflow applies from main only ...
    branch = recipe.run("apply", "push", "refs/heads/feature", ignore_if=True)  # ... and so does the cluster
    refused(branch, "ci-writer-github", "of acme/infra on refs/heads/feature matches no allow rule of token "
                                        '"ci-writer-github"')

    claims = Issuer.github_claims(repository="acme/infra", workflow="identity", event_name="schedule")
    issuer.add_key("rogue", publish=False)
    cases = {
        "expired": (issuer.mint(claims, "test.example", iat=time.time() - 900), "the ID token expired"),
        "audience": (issuer.mint(claims, "sts.amazonaws.com"), "its audience (aud) must be 'test.example'"),
        "unknown key": (issuer.mint(claims, "test.example", kid="rogue"),
                        f'signed with key "rogue", which issuer {issuer.url} does not publish'),
    }
    for case, (id_token, reason) in cases.items():
        file = tmp_path / case.replace(" ", "-")
        file.write_text(id_token)
        run = recipe.run("drift", "schedule", "refs/heads/main", env={"MACHINEID_ID_TOKEN_FILE": str(file)})
        refused(run, "ci-reader-github", reason)

    copied = tmp_path / "copied-from-a-log"
    copied.write_text(issuer.mint(claims, "test.example"))
    first = recipe.run("drift", "schedule", "refs/heads/main", env={"MACHINEID_ID_TOKEN_FILE": str(copied)})
    assert first.code in (0, 2) and "refused" not in first.output, first.output  # joined (drift or not)
    again = recipe.run("drift", "schedule", "refs/heads/main", env={"MACHINEID_ID_TOKEN_FILE": str(copied)})
    refused(again, "ci-reader-github", "this ID token was already used to join")


def test_nothing_secret_in_the_state_the_logs_or_the_files(recipe: Recipe) -> None:
    """After the jobs above: the state they left, and everything they printed and wrote."""
    state = tofu_state(recipe.database)
    assert '"ci-deploy-github"' in state and "machineid_bot" in state  # the recipe's state, read back
    no_secret_in(state, "the state in PostgreSQL")
    for output in recipe.outputs:
        no_secret_in(output, "a job's output")
        assert recipe.api.token not in output
    no_secret_in(recipe.server.log_text(), "the cluster's log")
    for root in (recipe.repo, recipe.home):
        for path in root.rglob("*"):
            if path.is_file() and path.stat().st_size < 1 << 20:
                no_secret_in(path.read_text(errors="replace"), str(path))
