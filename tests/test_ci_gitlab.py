"""examples/ci on GitLab CI, as a team runs it: the file's own jobs (tests/ci_recipe.py runs their scripts as a
runner does) join a real cluster with the ID token their id_tokens entry defines (minted GitLab-shaped by a local
issuer, aud the cluster's name), plan and apply with real OpenTofu keeping the state in a real PostgreSQL, review
merge requests into one note, and catch drift. One ID token serves every tool run of a job (GitLab hands a job
one); a pipeline of another project, of a merge request trying to apply, or with a token for another audience is
refused, said and audited. No key and no ID token in the state or the logs."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from machineid.model.resources import Role
from tests.ci_recipe import (
    CI,
    MARKER,
    FakeGitLab,
    GitLabCI,
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


@dataclass
class Recipe:
    server: ServerProc
    ci: GitLabCI
    api: FakeGitLab
    repo: Path
    database: str
    outputs: list[str]

    def run(self, job: str, source: str, ref: str, **kw: Any) -> JobRun:
        out = self.ci.run(job, source, ref, **kw)
        self.outputs.append(out.output)
        return out


@pytest.fixture(scope="module")
def recipe(server: ServerProc, tools_bin: Path, postgres: str,
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[Recipe]:
    tmp = tmp_path_factory.mktemp("gitlab")
    issuer = Issuer(tmp / "issuer")
    bootstrap(server, issuer)
    server.ctl("nodes", "add", "gl-web", "--addr", "10.9.0.3:22", "--labels", "env=prod", "--out", str(tmp / "hk"))
    repo, database, api = checkout(tmp), new_database(postgres), FakeGitLab()
    project_variables = {"MACHINEID_AUTH_SERVER": server.address, "MACHINEID_CA_PIN": ca_pin(server),
                         "MACHINEID_CLUSTER_NAME": "test.example", "PG_CONN_STR": database,
                         "GITLAB_REVIEW_TOKEN": api.token}
    ci = GitLabCI(repo, runner_base_env(tools_bin, tmp / "home", issuer, tmp), issuer, project_variables, api)
    yield Recipe(server, ci, api, repo, database, [])
    api.close()
    issuer.close()


def test_the_gitlab_jobs_join_with_their_id_token_and_install_a_pinned_machineid() -> None:
    text = (CI / ".gitlab-ci.yml").read_text()
    assert "MACHINEID_IDENTITY" not in text and "pip install machineid" not in text
    ci = yaml.safe_load(text)
    tokens = {d["metadata"]["name"]: d["spec"] for d in yaml.safe_load_all((CI / "bootstrap.yaml").read_text())
              if d["kind"] == "token"}
    assert ci["variables"]["MACHINEID_JOIN_METHOD"] == "gitlab"
    for name in ("identity-review", "identity-drift", "identity-apply"):
        job = {**ci[ci[name]["extends"]], **ci[name]}
        assert job["id_tokens"] == {"MACHINEID_ID_TOKEN": {"aud": "$MACHINEID_CLUSTER_NAME"}}, name
        assert tokens[job["variables"]["MACHINEID_JOIN_TOKEN"]]["join_method"] == "gitlab", name
    writer = tokens[ci["identity-apply"]["variables"]["MACHINEID_JOIN_TOKEN"]]["gitlab"]["allow"]
    assert writer == [{"project_path": "acme/infra", "ref": "main", "ref_type": "branch", "ref_protected": "true",
                       "pipeline_source": "push"}]


def test_merge_requests_are_reviewed_main_is_applied_and_drift_is_caught(recipe: Recipe) -> None:
    main = recipe.repo / "infra" / "main.tf"
    code = main.read_text()
    assert not recipe.run("identity-review", "push", "main").ran
    review = recipe.run("identity-review", "merge_request_event", "feature", mr=3, ref_protected=False)
    assert review.code == 0, review.output
    assert "### bot `ci-deploy` (created)" in review.output and "`deploy@gl-web`" in review.output
    (note,) = recipe.api.comments.values()
    assert note["body"].startswith(MARKER) and "✅ no rule is violated" in note["body"]

    applied = recipe.run("identity-apply", "push", "main")  # plan and apply: two joins with the job's one token
    assert applied.code == 0 and "identity-check: applied" in applied.output, applied.output
    with recipe.server.admin() as admin:
        assert admin.get_as(Role, "ci-deployer").spec.allow.node_labels == {"env": ["prod"]}
        created = [e for e in admin.audit_events() if e.action == "role.create" and e.target == "role/ci-deployer"]
        assert created[-1].actor == "bot:ci-writer"
    writer = recipe.server.ctl("get", "bot/ci-writer", "--format", "json").stdout
    assert '"project_path": "acme/infra"' in writer and '"pipeline_source": "push"' in writer

    assert not recipe.run("identity-drift", "push", "main").ran
    clean = recipe.run("identity-drift", "schedule", "main")
    assert clean.code == 0 and "no drift" in clean.output, clean.output
    recipe.server.ctl("create", "--force", "-f", "-", input="kind: role\nmetadata:\n  name: ci-deployer\nspec:\n"
                                                            "  allow:\n    logins: [root]\n")
    drifted = recipe.run("identity-drift", "schedule", "main")
    assert drifted.code == 2 and "machineid_role.deployer" in drifted.output, drifted.output
    assert recipe.run("identity-apply", "push", "main").code == 0  # back to the code

    main.write_text(code.replace('default = ["{{internal.logins}}"]', 'default = ["root"]'))
    rooted = recipe.run("identity-review", "merge_request_event", "feature", mr=3, ref_protected=False)
    main.write_text(code)
    assert rooted.code == 8, rooted.output
    (note,) = recipe.api.comments.values()  # the same note, edited
    assert "❌ `deny_logins`" in note["body"] and "`root@gl-web`" in note["body"]
    assert [c.split()[0] for c in recipe.api.calls if not c.startswith("GET")] == ["POST", "PUT"]


def test_pipelines_the_tokens_do_not_admit_are_refused_said_and_audited(recipe: Recipe) -> None:
    def refused(run: JobRun, token: str, reason: str) -> None:
        said = " ".join(run.output.split())
        assert run.code == 1 and f"gitlab join (join_token '{token}') was refused" in said, run.output
        assert reason in said, run.output
        assert reason in " ".join(denied_joins(recipe.server, token)[-1]["details"]["error"].split())

    other = recipe.run("identity-drift", "schedule", "main", project="evil/infra")
    refused(other, "ci-reader-gitlab", 'GitLab pipeline of evil/infra on main (schedule) matches no allow rule')
    assert not recipe.run("identity-apply", "merge_request_event", "feature", mr=4).ran
    edited = recipe.run("identity-apply", "merge_request_event", "feature", mr=4, ref_protected=False,
                        ignore_rules=True)  # a merge request whose .gitlab-ci.yml runs apply: the cluster says no
    refused(edited, "ci-writer-gitlab", 'GitLab pipeline of acme/infra on feature (merge_request_event) matches no '
                                        'allow rule of token "ci-writer-gitlab"')
    vault = recipe.run("identity-drift", "schedule", "main", variables={"MACHINEID_CLUSTER_NAME": "vault.example"})
    refused(vault, "ci-reader-gitlab", "its audience (aud) must be 'test.example'")


def test_nothing_secret_in_the_state_or_the_logs(recipe: Recipe) -> None:
    """After the jobs above: the state they left, and everything they printed."""
    state = tofu_state(recipe.database)
    assert '"ci-release-github"' in state
    no_secret_in(state, "the state in PostgreSQL")
    for output in recipe.outputs:
        no_secret_in(output, "a job's output")
        assert recipe.api.token not in output
    no_secret_in(recipe.server.log_text(), "the cluster's log")
