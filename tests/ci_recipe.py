"""What the CI recipe tests need around the recipe itself (examples/ci): the jobs of its GitHub Actions workflow and
GitLab CI file run as the runners run them (the steps' own commands, the files' own variables and permissions, the
ID token the runner hands out), fake pull-request APIs for the review comment, the bootstrap file applied against
a local issuer, and a PostgreSQL database for the state.

What a runner does that is not the recipe's (checking out, setting up tofu and Python, installing machineid from
the organisation's index) is not run: those steps are checked for what they must say instead (the wrapper off, a
pinned version from the organisation's index), and the job runs with this checkout's machineid and the tools built
for the tests.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import threading
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import psycopg
import yaml

from machineid.cluster.process import MACHINEID
from tests.conftest import ServerProc
from tests.oidc_issuer import Issuer

ROOT = Path(__file__).resolve().parent.parent
CI = ROOT / "examples" / "ci"
MARKER = "<!-- machineid-review -->"
PINNED_INSTALL = 'pip install --index-url "$PIP_INDEX_URL" "machineid==$MACHINEID_VERSION"'


# ---------------------------------------------------------------- the cluster, the repository, the state


def ca_pin(server: ServerProc) -> str:
    return str(json.loads((server.data_dir / "server.json").read_text())["ca_pin"])


def bootstrap(server: ServerProc, issuer: Issuer) -> str:
    """examples/ci/bootstrap.yaml as an admin applies it, its tokens pointed at the local issuer (instead of GitHub's
    and GitLab's); what `create -f` printed."""
    docs = list(yaml.safe_load_all((CI / "bootstrap.yaml").read_text()))
    for doc in docs:
        for method in ("github", "gitlab"):
            if method in doc.get("spec", {}):
                doc["spec"][method].update(issuer=issuer.url, ca_bundle=issuer.ca_pem)
    return server.ctl("create", "-f", "-", input=yaml.safe_dump_all(docs)).stdout


def new_database(postgres: str) -> str:
    """A fresh database on the test PostgreSQL, as a connection string tofu's pg backend and Pulumi take."""
    name = "ci" + uuid.uuid4().hex[:12]
    with psycopg.connect(postgres, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    return f"{postgres.rsplit('/', 1)[0]}/{name}?sslmode=disable"


def tofu_state(database: str) -> str:
    """What OpenTofu's pg backend stored, read back from PostgreSQL."""
    with psycopg.connect(database) as conn:
        rows = conn.execute("SELECT data FROM terraform_remote_state.states").fetchall()
    assert rows, "no state in the database"
    return "\n".join(str(r[0]) for r in rows)


def checkout(tmp: Path) -> Path:
    """A repository laid out as the recipe expects: examples/ci/ (the script, policy) and infra/."""
    repo = tmp / "repo"
    shutil.copytree(CI, repo / "examples" / "ci")
    shutil.copytree(CI / "infra", repo / "infra")
    return repo


def no_secret_in(text: str, what: str) -> None:
    """No private key and no ID token (a JWT: its header starts eyJ)."""
    assert "PRIVATE KEY" not in text, f"a private key in {what}"
    assert not re.search(r"eyJ[A-Za-z0-9_-]{10,}\.", text), f"an ID token in {what}"


def denied_joins(server: ServerProc, token: str) -> list[dict[str, Any]]:
    records = json.loads(server.ctl("audit", "--action", "bot.join", "--format", "json").stdout)
    return [r for r in records if r["target"] == f"token/{token}" and r["outcome"] == "denied"]


def runner_base_env(tools_bin: Path, home: Path, issuer: Issuer, bundle_dir: Path) -> dict[str, str]:
    """What every job's shell starts with: the tools on PATH, a home of its own, the runner's trust store (which
    trusts the local issuer, as a real runner trusts GitHub's), and TF_CLI_CONFIG_FILE naming a file that does not
    exist (a stray setting the script must cope with: tofu would print a warning into `show -json`)."""
    bundle = bundle_dir / "runner-ca.pem"
    bundle.write_text(issuer.ca_pem)
    return {"PATH": f"{tools_bin}:{Path(MACHINEID).parent}:/usr/bin:/bin", "HOME": str(home),
            "SSL_CERT_FILE": str(bundle), "TF_CLI_CONFIG_FILE": str(home / "missing.tfrc"), "LANG": "C.UTF-8"}


# ---------------------------------------------------------------- a job's run


@dataclass
class Step:
    name: str
    code: int
    output: str
    counts: bool = True  # False: its failure does not fail the job (GitLab's after_script)


@dataclass
class JobRun:
    ran: bool = True  # False: the job's condition (if:, rules:) kept it from running
    steps: list[Step] = field(default_factory=list)

    @property
    def code(self) -> int:
        """The first failing step's exit code (what fails the job), else 0."""
        return next((s.code for s in self.steps if s.code != 0 and s.counts), 0)

    @property
    def output(self) -> str:
        return "\n".join(s.output for s in self.steps)

    def step(self, name: str) -> Step:
        return next(s for s in self.steps if s.name == name)


def _shell(script: str, cwd: Path, env: dict[str, str]) -> tuple[int, str]:
    proc = subprocess.run(["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", script], cwd=cwd, env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=600)
    return proc.returncode, proc.stdout


def _condition(expr: str, values: dict[str, str]) -> bool:
    """The comparisons the recipe's conditions use: `A == B` terms joined by && and ||, each side a name looked up
    in values or a quoted string."""
    def side(text: str) -> str:
        text = text.strip()
        if text[:1] in "'\"":
            return text[1:-1]
        assert text in values, f"the test does not know {text!r} (in {expr!r})"
        return values[text]

    def term(text: str) -> bool:
        left, right = text.split("==")
        return side(left) == side(right)

    return any(all(term(t) for t in alt.split("&&")) for alt in expr.split("||"))


# ---------------------------------------------------------------- GitHub Actions


class GitHubActions:
    """Runs a job of identity-review.yml as a GitHub-hosted runner does: the workflow's and job's env (with
    `${{ vars.* }}`, `${{ secrets.* }}` and `${{ github.token }}` filled in), the runner's variables, the OIDC
    token endpoint only for a job with `id-token: write` (the local issuer's, minting the claims of this run),
    and each `run:` step in bash -eo pipefail, later steps only while all succeed unless their `if:` says
    otherwise."""

    def __init__(self, repo: Path, base_env: dict[str, str], issuer: Issuer, variables: dict[str, str],
                 secrets: dict[str, str], api: FakeGitHub) -> None:
        self.repo, self.base_env, self.issuer, self.api = repo, base_env, issuer, api
        self.variables, self.secrets = variables, secrets
        self.workflow = yaml.safe_load((repo / "examples" / "ci" / "identity-review.yml").read_text())

    def expand(self, value: object) -> str:
        def one(m: re.Match[str]) -> str:
            expr = m.group(1).strip()
            if expr.startswith("vars."):
                return self.variables[expr[5:]]
            if expr.startswith("secrets."):
                return self.secrets[expr[8:]]
            assert expr == "github.token", f"the test does not know ${{{{ {expr} }}}}"
            return self.api.token
        return re.sub(r"\$\{\{(.*?)\}\}", one, str(value))

    def run(self, job: str, event: str, ref: str, repository: str = "acme/infra", pr: int = 0,
            ignore_if: bool = False, env: dict[str, str] | None = None) -> JobRun:
        """ignore_if: run the job even where its `if:` says not to, as a workflow edited on a branch would."""
        spec = self.workflow["jobs"][job]
        context = {"github.event_name": event, "github.ref": ref}
        if not ignore_if and "if" in spec and not _condition(spec["if"], context):
            return JobRun(ran=False)
        event_file = self.repo.parent / "event.json"
        event_file.write_text(json.dumps({"pull_request": {"number": pr}} if pr else {}))
        full = {**self.base_env, "CI": "true", "GITHUB_ACTIONS": "true", "GITHUB_REPOSITORY": repository,
                "GITHUB_EVENT_NAME": event, "GITHUB_REF": ref, "GITHUB_API_URL": self.api.url,
                "GITHUB_EVENT_PATH": str(event_file), "GITHUB_WORKSPACE": str(self.repo),
                "RUNNER_TEMP": str(self.repo.parent)}
        full.update({k: self.expand(v) for k, v in {**self.workflow.get("env", {}), **spec.get("env", {})}.items()})
        if spec.get("permissions", {}).get("id-token") == "write":
            self.issuer.request_claims = Issuer.github_claims(repository=repository, ref=ref,
                                                              workflow=self.workflow["name"], event_name=event)
            full.update(ACTIONS_ID_TOKEN_REQUEST_URL=self.issuer.request_url,
                        ACTIONS_ID_TOKEN_REQUEST_TOKEN=self.issuer.request_bearer)
        full.update(env or {})
        out = JobRun()
        for step in spec["steps"]:
            if "uses" in step:
                if step["uses"].startswith("opentofu/setup-opentofu"):
                    assert step["with"]["tofu_wrapper"] is False, "the setup action's wrapper corrupts show -json"
                continue
            if step["run"].startswith("pip install"):
                assert step["run"] == PINNED_INSTALL, step["run"]
                continue
            condition = str(step.get("if", ""))
            if out.code != 0 and condition not in ("${{ !cancelled() }}", "${{ always() }}", "always()"):
                continue
            step_env = {**full, **{k: self.expand(v) for k, v in step.get("env", {}).items()}}
            code, output = _shell(step["run"], self.repo, step_env)
            out.steps.append(Step(step.get("name", step["run"]), code, output))
        return out


class _FakeAPI:
    """A pull-request API on loopback: comments (notes) by id, answered as JSON, in pages of per_page."""

    def __init__(self) -> None:
        self.token = "ghs_" + uuid.uuid4().hex  # the job's API token (checked, never printed)
        self.comments: dict[int, dict[str, Any]] = {}
        self.calls: list[str] = []  # "METHOD path"
        api = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _answer(self, method: str) -> None:
                parts = urlsplit(self.path)
                api.calls.append(f"{method} {parts.path}")
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length)) if length else None
                code, doc = api.handle(method, parts.path, parse_qs(parts.query), dict(self.headers), body)
                data = json.dumps(doc).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                self._answer("GET")

            def do_POST(self) -> None:
                self._answer("POST")

            def do_PATCH(self) -> None:
                self._answer("PATCH")

            def do_PUT(self) -> None:
                self._answer("PUT")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def add(self, doc: dict[str, Any]) -> int:
        cid = 1000 + len(self.comments)
        self.comments[cid] = {"id": cid, **doc}
        return cid

    def page(self, query: dict[str, list[str]]) -> list[dict[str, Any]]:
        size, number = int(query.get("per_page", ["30"])[0]), int(query.get("page", ["1"])[0])
        return list(self.comments.values())[(number - 1) * size:number * size]

    def handle(self, method: str, path: str, query: dict[str, list[str]], headers: dict[str, str],
               body: Any) -> tuple[int, Any]:
        raise NotImplementedError


class FakeGitHub(_FakeAPI):
    """GitHub's issue comments of acme/infra's pull requests; the job's comments are github-actions[bot]'s."""

    def handle(self, method: str, path: str, query: dict[str, list[str]], headers: dict[str, str],
               body: Any) -> tuple[int, Any]:
        if headers.get("Authorization") != f"Bearer {self.token}":
            return 401, {"message": "Bad credentials"}
        if m := re.fullmatch(r"/repos/acme/infra/issues/(\d+)/comments", path):
            if method == "GET":
                return 200, self.page(query)
            cid = self.add({"body": body["body"], "user": {"login": "github-actions[bot]"}, "pr": int(m[1])})
            return 201, self.comments[cid]
        if (m := re.fullmatch(r"/repos/acme/infra/issues/comments/(\d+)", path)) and method == "PATCH":
            self.comments[int(m[1])]["body"] = body["body"]
            return 200, self.comments[int(m[1])]
        return 404, {"message": "Not Found"}


class FakeGitLab(_FakeAPI):
    """GitLab's notes of project 42's merge requests; the project access token's user is project_42_bot."""

    def handle(self, method: str, path: str, query: dict[str, list[str]], headers: dict[str, str],
               body: Any) -> tuple[int, Any]:
        if headers.get("Private-Token") != self.token:
            return 401, {"message": "401 Unauthorized"}
        if path == "/api/v4/user":
            return 200, {"username": "project_42_bot"}
        if m := re.fullmatch(r"/api/v4/projects/42/merge_requests/(\d+)/notes", path):
            if method == "GET":
                return 200, self.page(query)
            cid = self.add({"body": body["body"], "author": {"username": "project_42_bot"}, "mr": int(m[1])})
            return 201, self.comments[cid]
        if (m := re.fullmatch(r"/api/v4/projects/42/merge_requests/\d+/notes/(\d+)", path)) and method == "PUT":
            self.comments[int(m[1])]["body"] = body["body"]
            return 200, self.comments[int(m[1])]
        return 404, {"message": "404 Not found"}


# ---------------------------------------------------------------- GitLab CI


class GitLabCI:
    """Runs a job of .gitlab-ci.yml as a GitLab runner does: `extends`, the file's and job's variables (the
    deployment's own values, such as the cluster's address, set as project variables override them), the job's
    `rules:`, an ID token per `id_tokens:` entry with its `aud` (variables expanded) minted by the local issuer
    for this pipeline's claims, `script:` in one shell stopping at the first failure, then `after_script:` in
    another whatever happened (its exit code does not count)."""

    def __init__(self, repo: Path, base_env: dict[str, str], issuer: Issuer, project_variables: dict[str, str],
                 api: FakeGitLab) -> None:
        self.repo, self.base_env, self.issuer, self.api = repo, base_env, issuer, api
        self.project_variables = project_variables
        self.file = yaml.safe_load((repo / "examples" / "ci" / ".gitlab-ci.yml").read_text())

    def job(self, name: str) -> dict[str, Any]:
        spec = dict(self.file[name])
        if "extends" in spec:
            base = dict(self.file[spec.pop("extends")])
            spec = {**base, **spec, "variables": {**base.get("variables", {}), **spec.get("variables", {})}}
        return spec

    def run(self, job: str, source: str, ref: str, project: str = "acme/infra", mr: int = 0,
            ignore_rules: bool = False, ref_protected: bool = True, variables: dict[str, str] | None = None
            ) -> JobRun:
        """ignore_rules: run the job even where its rules say not to, as a file edited on a branch would;
        variables: project variables of this run (over the usual ones)."""
        spec = self.job(job)
        variables = {**{k: str(v) for k, v in self.file.get("variables", {}).items()},
                     **{k: str(v) for k, v in spec.get("variables", {}).items()}, **self.project_variables,
                     **(variables or {})}
        predefined = {"CI": "true", "GITLAB_CI": "true", "CI_PIPELINE_SOURCE": source, "CI_COMMIT_REF_NAME": ref,
                      "CI_DEFAULT_BRANCH": "main", "CI_PROJECT_PATH": project, "CI_PROJECT_ID": "42",
                      "CI_API_V4_URL": self.api.url + "/api/v4", "CI_PROJECT_DIR": str(self.repo)}
        if mr:
            predefined["CI_MERGE_REQUEST_IID"] = str(mr)
        else:
            predefined["CI_COMMIT_BRANCH"] = ref
        context = {f"${k}": v for k, v in {**variables, **predefined}.items()}
        context.update({f"${k}": "" for k in ("CI_COMMIT_BRANCH", "CI_MERGE_REQUEST_IID") if f"${k}" not in context})
        if not ignore_rules and not any(_condition(rule["if"], context) for rule in spec.get("rules", [])):
            return JobRun(ran=False)
        full = {**self.base_env, **variables, **predefined}
        for name, token_spec in spec.get("id_tokens", {}).items():
            audience = re.sub(r"\$(\w+)", lambda m: full.get(m[1], ""), str(token_spec["aud"]))
            full[name] = self.issuer.mint(Issuer.gitlab_claims(
                project_path=project, ref=ref, pipeline_source=source, ref_protected=str(ref_protected).lower()),
                audience)
        for line in spec.get("before_script", []):  # the installs: checked, not run (see the module's doc)
            assert line == PINNED_INSTALL or "opentofu" in line, line
        out = JobRun()
        code, output = _shell("\n".join(spec["script"]), self.repo, full)
        out.steps.append(Step("script", code, output))
        if spec.get("after_script"):
            code, output = _shell("\n".join(spec["after_script"]), self.repo, full)
            out.steps.append(Step("after_script", code, output, counts=False))
        return out
