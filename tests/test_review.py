"""`machineid review`: the access impact of a real plan (OpenTofu's `show -json` and Pulumi's `preview --json`)
against a real cluster, as a pull-request comment, and a team's policy failing the check."""

from __future__ import annotations

import json
import os
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml

from machineid.pulumi.engine import Engine
from machineid.terraform.runner import Workspace
from tests.conftest import ServerProc, run_cli

ROOT = Path(__file__).resolve().parent.parent
HEADER = 'terraform {\n  required_providers {\n    machineid = { source = "machineid/machineid" }\n  }\n}\n'


@pytest.fixture(scope="module")
def nodes(server: ServerProc, tmp_path_factory: pytest.TempPathFactory) -> None:
    keys = tmp_path_factory.mktemp("hostkeys")
    server.ctl("nodes", "add", "web1", "--addr", "10.0.0.1:22", "--labels", "env=prod", "--out", str(keys / "w"))
    server.ctl("nodes", "add", "dev1", "--addr", "10.0.0.2:22", "--labels", "env=dev", "--out", str(keys / "d"))


def review(server: ServerProc, plan: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return run_cli("review", str(plan), "--data-dir", str(server.data_dir), *args, check=False)


def tf_config(logins: str) -> str:
    return HEADER + f"""
resource "machineid_role" "deployer" {{
  name = "deployer"
  allow {{
    logins      = {logins}
    node_labels = {{ env = ["prod"] }}
  }}
}}
resource "machineid_bot" "ci" {{
  name   = "ci"
  roles  = [machineid_role.deployer.name, "access"]
  traits = {{ logins = ["deploy"] }}
}}
resource "machineid_provision_token" "aws" {{
  name        = "ci-aws"
  bot_name    = machineid_bot.ci.name
  join_method = "iam"
  allow {{
    aws_account = "123456789012"
  }}
}}
"""


POLICY = "deny_logins: [root]\ndeny_wildcard_node_labels: true\nmax_token_ttl: 720h\n"
STRICT = POLICY + 'deny_recovery_modes: [insecure]\ndeny_api: ["*:*"]\n'


def tofu_workspace(server: ServerProc, tools_bin: Path, tmp_path: Path) -> Workspace:
    home = tmp_path / "home"
    run_cli("terraform", "install", "--plugins-dir", str(home / ".terraform.d" / "plugins"))
    return Workspace.create(tools_bin / "tofu", tmp_path / "work", home,
                            {"MACHINEID_AUTH_SERVER": server.address,
                             "MACHINEID_IDENTITY": str(server.admin_identity_path)})


def tofu_plan(ws: Workspace, out: Path) -> Path:
    ws.run("plan", "-out=plan.bin", "-no-color")
    out.write_text(ws.run("show", "-json", "plan.bin").stdout)
    return out


def violations(proc: subprocess.CompletedProcess[str]) -> set[tuple[str, str, str]]:
    return {(v["rule"], v["resource"], v["attribute"]) for v in json.loads(proc.stdout)["violations"]}


def soon() -> str:
    return (datetime.now(UTC) + timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%SZ")


def test_a_tofu_plan_is_reviewed_per_bot_and_checked_against_the_policy(
        server: ServerProc, nodes: None, tools_bin: Path, tmp_path: Path) -> None:
    home = tmp_path / "home"
    run_cli("terraform", "install", "--plugins-dir", str(home / ".terraform.d" / "plugins"))
    ws = Workspace.create(tools_bin / "tofu", tmp_path / "work", home,
                          {"MACHINEID_AUTH_SERVER": server.address,
                           "MACHINEID_IDENTITY": str(server.admin_identity_path)})
    ws.write(tf_config('["root", "{{internal.logins}}"]'))
    ws.init()
    ws.run("plan", "-out=plan.bin", "-no-color")
    plan = tmp_path / "plan.json"
    plan.write_text(ws.run("show", "-json", "plan.bin").stdout)

    comment = review(server, plan)
    assert comment.returncode == 0, comment.stderr
    text = comment.stdout
    assert "### bot `ci` (created)" in text
    assert "`root@web1`" in text and "`deploy@web1`" in text and "`deploy@dev1`" in text  # access: every node
    assert "`root@dev1`" not in text  # deployer selects env=prod only
    assert "join methods**: `iam`" in text and "node:list" in text

    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY)
    checked = review(server, plan, "--policy", str(policy), "--format", "json")
    assert checked.returncode == 8, checked.stderr
    found = {(v["rule"], v["resource"], v["attribute"]) for v in json.loads(checked.stdout)["violations"]}
    assert ("deny_logins", "machineid_role.deployer", "allow.logins[0]") in found
    assert ("deny_wildcard_node_labels", "role/access (on the cluster)", "allow.node_labels.*") in found
    assert ("max_token_ttl", "machineid_provision_token.aws", "expires") in found  # an iam token never expires

    ws.apply()
    ws.write(tf_config('["{{internal.logins}}"]'))  # the change under review: root goes
    ws.run("plan", "-out=plan2.bin", "-no-color")
    plan.write_text(ws.run("show", "-json", "plan2.bin").stdout)
    diff = json.loads(review(server, plan, "--format", "json").stdout)
    assert [(b["name"], b["status"]) for b in diff["bots"]] == [("ci", "changed")]
    assert diff["bots"][0]["lost"] == {"logins_on_nodes": ["root@web1"], "any_node_logins": ["root"]}
    assert diff["bots"][0]["gained"] == {}
    ws.destroy()


def test_a_pulumi_preview_resolves_roles_created_in_the_same_plan(
        server: ServerProc, nodes: None, tools_bin: Path, tmp_path: Path) -> None:
    engine = Engine(tools_bin, tmp_path / "pulumi-home", {"MACHINEID_AUTH_SERVER": server.address,
                                                          "MACHINEID_IDENTITY": str(server.admin_identity_path)})
    project = tmp_path / "prog"
    project.mkdir()
    (project / "Pulumi.yaml").write_text("""name: reviewed
runtime: yaml
resources:
  deployer:
    type: machineid:Role
    properties:
      name: pl-deployer
      allow:
        logins: ["root"]
        nodeLabels:
          env: ["prod"]
  ci:
    type: machineid:Bot
    properties:
      name: pl-ci
      roles: ["${deployer.name}"]
""")
    engine.yaml_stack(project, "dev")
    preview = engine.cli("preview", "--json", cwd=project)
    plan = tmp_path / "preview.json"
    plan.write_text(preview.stdout)
    out = json.loads(review(server, plan, "--format", "json").stdout)
    assert out["tool"] == "pulumi"
    (bot,) = out["bots"]
    assert bot["name"] == "pl-ci" and bot["status"] == "created"
    assert bot["gained"]["logins_on_nodes"] == ["root@web1"]  # the role's unknown name came from the plan


def test_the_ci_example_policy_is_valid_and_strict(server: ServerProc, tmp_path: Path) -> None:
    from machineid.review import policy

    example = policy.load(str(ROOT / "examples" / "ci" / "identity-policy.yaml"))
    assert example.deny_logins == ["root"] and "token:create" in example.deny_api
    for ci_file in ("identity-review.yml", ".gitlab-ci.yml"):  # both call the script tests/test_ci_example.py runs
        text = (ROOT / "examples" / "ci" / ci_file).read_text()
        assert "identity-check.sh review infra examples/ci/identity-policy.yaml" in text, ci_file
        assert "identity-check.sh drift infra" in text, ci_file
        yaml.safe_load(text)


def test_bad_plans_and_policies_say_what_is_wrong(server: ServerProc, tmp_path: Path) -> None:
    plan = tmp_path / "plan.json"
    plan.write_text("{\"steps\": []}")
    policy = tmp_path / "policy.yaml"
    policy.write_text("deny_login: [root]\ndeny_api: [tokencreate]\n")
    bad = review(server, plan, "--policy", str(policy))
    assert bad.returncode == 3 and "deny_login" in bad.stderr and "deny_api[0]" in bad.stderr
    (tmp_path / "junk.json").write_text("[1, 2]")
    junk = review(server, tmp_path / "junk.json")
    assert junk.returncode == 3 and "pulumi preview --json" in junk.stderr
    empty = review(server, plan)
    assert empty.returncode == 0 and "No access change" in empty.stdout
    assert os.path.exists(plan)


def test_recovery_mode_rules_apply_to_bound_keypair_tokens_only() -> None:
    """Every token carries the model's default recovery block: an iam or single-use token has no recovery, so
    `deny_recovery_modes: [standard]` must not flag it."""
    from datetime import UTC, datetime

    from machineid.iac.resource import PROVISION_TOKEN
    from machineid.model import codec
    from machineid.model.resources import ProvisionToken
    from machineid.review import impact, plan, policy

    def change(name: str, **spec: object) -> plan.Change:
        token = codec.decode(ProvisionToken, {"metadata": {"name": name, "expires": "2099-01-01T00:00:00Z"},
                                              "spec": {"bot_name": "b", **spec}})
        return plan.Change(PROVISION_TOKEN, f"machineid_provision_token.{name}", "create", after=token)

    rules = codec.decode_and_validate(policy.Policy, {"deny_recovery_modes": ["standard"]})
    checker = policy.Checker(rules, impact.World(), datetime.now(UTC))
    checker.token(change("iam-token", join_method="iam", allow=[{"aws_account": "123456789012"}]))
    checker.token(change("n" * 32))
    assert checker.out == []
    checker.token(change("key-token", join_method="bound_keypair",
                         bound_keypair={"onboarding": {"registration_secret": "s" * 32}}))
    assert [(v.rule, v.attribute) for v in checker.out] == [("deny_recovery_modes", "bound_keypair.recovery.mode")]


ORDINARY_TF = HEADER + """
variable "team" {
  default = "ops"
}
resource "terraform_data" "later" {
  input = "deploy"
}
resource "terraform_data" "when" {
  input = "2030-01-01T00:00:00Z"
}
resource "machineid_role" "web" {
  name = "${var.team}-${terraform_data.later.id}"
  allow {
    logins      = ["app", terraform_data.later.output]
    node_labels = { env = ["prod", terraform_data.later.output] }
  }
}
resource "machineid_bot" "ci" {
  name  = "b-ci"
  roles = [machineid_role.web.name]
}
resource "machineid_provision_token" "single" {
  bot_name = machineid_bot.ci.name
}
resource "machineid_provision_token" "kp" {
  name        = "b-kp"
  bot_name    = machineid_bot.ci.name
  join_method = "bound_keypair"
  expires     = "SOON"
  bound_keypair {
    onboarding {
      registration_secret = "a-registration-secret-of-32-characters"
    }
    rotate_after = terraform_data.when.output
  }
}
"""


def test_ordinary_tofu_plans_are_reviewed_with_what_is_known_only_at_apply(
        server: ServerProc, nodes: None, tools_bin: Path, tmp_path: Path) -> None:
    """A single-use token with no name, values known only at apply inside blocks (a login, a node_labels value, a
    token's rotate_after) and a role whose name is computed: reviewed, not refused. The bot's access through the
    computed role is what is known now, with the rest named; the policy fails what it cannot see, and only that."""
    ws = tofu_workspace(server, tools_bin, tmp_path)
    ws.write(ORDINARY_TF.replace("SOON", soon()))
    ws.init()
    plan = tofu_plan(ws, tmp_path / "plan.json")

    comment = review(server, plan)
    assert comment.returncode == 0, comment.stderr
    text = comment.stdout
    assert "### bot `b-ci` (created)" in text and "`app@web1`" in text and "join methods**: `bound_keypair`, `token`" \
        in text
    assert ("known only at apply: `machineid_role.web name`, `machineid_role.web allow.logins[1]`, "
            "`machineid_role.web allow.node_labels.env[1]`") in text
    unknown = {u["resource"]: u["properties"] for u in json.loads(review(server, plan, "--format", "json").stdout)[
        "unknown"]}
    assert unknown == {"machineid_role.web": ["name", "allow.logins[1]", "allow.node_labels.env[1]"],
                       "machineid_provision_token.kp": ["bound_keypair.rotate_after"]}

    policy = tmp_path / "policy.yaml"
    policy.write_text(STRICT)
    checked = review(server, plan, "--policy", str(policy), "--format", "json")
    assert checked.returncode == 8, checked.stderr
    assert violations(checked) == {("deny_logins", "machineid_role.web", "allow.logins[1]"),
                                   ("deny_wildcard_node_labels", "machineid_role.web", "allow.node_labels.env[1]")}


def test_ordinary_pulumi_previews_are_reviewed_with_what_is_known_only_at_apply(
        server: ServerProc, nodes: None, tools_bin: Path, tmp_path: Path) -> None:
    """The same in a Pulumi program: a token with no name, values known only at apply (another resource's
    outputs) inside a role, a computed role name a bot holds, and a bound_keypair block the preview hides as a
    secret (its recovery mode cannot be checked, so deny_recovery_modes fails)."""
    engine = Engine(tools_bin, tmp_path / "pulumi-home", {"MACHINEID_AUTH_SERVER": server.address,
                                                          "MACHINEID_IDENTITY": str(server.admin_identity_path)})
    project = tmp_path / "prog"
    project.mkdir()
    (project / "Pulumi.yaml").write_text(f"""name: ordinary
runtime: yaml
resources:
  helper:
    type: machineid:Bot
    properties:
      name: pb-helper
      roles: [access]
  web:
    type: machineid:Role
    properties:
      name: ${{helper.roleName}}-web
      allow:
        logins: ["app", "${{helper.roleName}}"]
        nodeLabels:
          env: ["prod", "${{helper.roleName}}"]
  ci:
    type: machineid:Bot
    properties:
      name: pb-ci
      roles: ["${{web.name}}"]
  single:
    type: machineid:ProvisionToken
    properties:
      botName: pb-ci
  kp:
    type: machineid:ProvisionToken
    properties:
      name: pb-kp
      botName: pb-ci
      joinMethod: bound_keypair
      expires: "{soon()}"
      boundKeypair:
        onboarding:
          registrationSecret: a-registration-secret-of-32-characters
""")
    engine.yaml_stack(project, "dev")
    plan = tmp_path / "preview.json"
    plan.write_text(engine.cli("preview", "--json", cwd=project).stdout)

    out = review(server, plan, "--format", "json")
    assert out.returncode == 0, out.stderr
    bots = {b["name"]: b for b in json.loads(out.stdout)["bots"]}
    ci = bots["pb-ci"]
    assert ci["status"] == "created" and ci["gained"]["logins_on_nodes"] == ["app@web1"]
    assert ci["gained"]["join_methods"] == ["bound_keypair", "token"]
    web = "machineid:index:Role::web"
    assert ci["after"]["pending"] == [f"{web} name", f"{web} allow.logins[1]", f"{web} allow.node_labels.env[1]"]

    policy = tmp_path / "policy.yaml"
    policy.write_text(STRICT)
    checked = review(server, plan, "--policy", str(policy), "--format", "json")
    assert checked.returncode == 8, checked.stderr
    assert violations(checked) == {
        ("deny_logins", web, "allow.logins[1]"), ("deny_wildcard_node_labels", web, "allow.node_labels.env[1]"),
        ("deny_recovery_modes", "machineid:index:ProvisionToken::kp", "bound_keypair"),
        ("deny_wildcard_node_labels", "role/access (on the cluster)", "allow.node_labels.*")}  # pb-helper's role


OWN_ROLE_TF = HEADER + """
import {
  to = machineid_role.own
  id = "bot-o-ops"
}
resource "machineid_role" "own" {
  name = "bot-o-ops"
  allow {
    logins      = ["root"]
    node_labels = { "*" = ["*"] }
    rules {
      resources = ["*"]
      verbs     = ["*"]
    }
  }
}
resource "machineid_role" "glob" {
  name = "o-glob"
  allow {
    logins      = ["{{internal.logins}}"]
    node_labels = { env = ["?*"], team = ["*"] }
  }
}
resource "machineid_bot" "ci" {
  name   = "o-ci"
  roles  = [machineid_role.glob.name]
  traits = { logins = LOGINS }
}
"""


def test_the_bots_own_role_and_glob_selectors_fail_the_policy_and_a_state_is_no_plan(
        server: ServerProc, nodes: None, tools_bin: Path, tmp_path: Path) -> None:
    """An import block brings bot-o-ops (the bot's own role) into the configuration and gives it root, every node
    and *:*; a role selects every node with '?*'. Then the state (`tofu show -json` without a plan) is refused,
    a plan with nothing to do changes nothing, and an unchanged role of the configuration is named by its
    address."""
    server.ctl("create", "-f", "-", input="kind: role\nmetadata:\n  name: o-viewer\nspec:\n  allow:\n"
                                          "    rules: [{resources: [node], verbs: [list]}]\n")
    server.ctl("create", "-f", "-", input="kind: bot\nmetadata:\n  name: o-ops\nspec:\n  roles: [o-viewer]\n")
    ws = tofu_workspace(server, tools_bin, tmp_path)
    ws.write(OWN_ROLE_TF.replace("LOGINS", '["deploy"]'))
    ws.init()
    plan = tofu_plan(ws, tmp_path / "plan.json")
    policy = tmp_path / "policy.yaml"
    policy.write_text(STRICT)

    checked = review(server, plan, "--policy", str(policy), "--format", "json")
    assert checked.returncode == 8, checked.stderr
    impacts = {b["name"]: b for b in json.loads(checked.stdout)["bots"]}
    assert impacts["o-ops"]["status"] == "changed" and impacts["o-ops"]["gained"]["any_node_logins"] == ["root"]
    assert violations(checked) == {
        ("deny_logins", "machineid_role.own", "allow.logins[0]"),
        ("deny_wildcard_node_labels", "machineid_role.own", "allow.node_labels.*"),
        ("deny_api", "machineid_role.own", "allow.rules[0]"),
        ("deny_wildcard_node_labels", "machineid_role.glob", "allow.node_labels.env"),
        ("deny_wildcard_node_labels", "machineid_role.glob", "allow.node_labels.team")}

    ws.apply()
    state = tmp_path / "state.json"
    state.write_text(ws.run("show", "-json").stdout)
    refused = review(server, state, "--policy", str(policy))
    assert refused.returncode == 3 and "state" in refused.stderr and "tofu show -json plan.bin" in refused.stderr
    assert refused.stdout == ""

    same = review(server, tofu_plan(ws, tmp_path / "same.json"), "--policy", str(policy))
    assert same.returncode == 0 and "No access change" in same.stdout, same.stdout + same.stderr

    ws.write(OWN_ROLE_TF.replace("LOGINS", '["deploy", "ops"]'))
    traits = review(server, tofu_plan(ws, tmp_path / "traits.json"), "--policy", str(policy))
    assert traits.returncode == 8
    assert "`deny_wildcard_node_labels`: `machineid_role.glob` `allow.node_labels.env`" in traits.stdout
    assert "on the cluster" not in traits.stdout  # the role is in the plan (unchanged): named by its address


GITHUB_TF = HEADER + """
resource "machineid_bot" "deployer" {
  name  = "gh-deployer"
  roles = ["access"]
}
resource "machineid_provision_token" "gh" {
  name        = "gh-deploy"
  bot_name    = machineid_bot.deployer.name
  join_method = "github"
  expires     = "SOON"
  github {
    allow {
      repository = "acme/app"
      ref        = "refs/heads/main"
    }
    allow {
      repository = "*"
    }
  }
}
"""
DELEGATED_POLICY = ("deny_wildcard_join_rules: true\nrequire_ref_or_environment: true\n"
                    "allowed_issuers: [https://token.actions.githubusercontent.com]\n")


def test_a_tofu_plan_creating_a_github_token_says_who_may_join_and_fails_a_wildcard_repository(
        server: ServerProc, tools_bin: Path, tmp_path: Path) -> None:
    """Issue 18 §3: a real plan creating a github token: each allow rule in plain words under the bot it joins,
    and `repository: "*"` refused by the policy, pointing at the attribute."""
    ws = tofu_workspace(server, tools_bin, tmp_path)
    ws.write(GITHUB_TF.replace("SOON", soon()))
    ws.init()
    plan = tofu_plan(ws, tmp_path / "plan.json")

    comment = review(server, plan)
    assert comment.returncode == 0, comment.stderr
    assert "### bot `gh-deployer` (created)" in comment.stdout
    assert ("  - any workflow of `acme/app` on `refs/heads/main` may join as bot `gh-deployer` (github token "
            "`gh-deploy`)") in comment.stdout
    assert ("  - any workflow of any repository (`*`) on any ref may join as bot `gh-deployer` (github token "
            "`gh-deploy`)") in comment.stdout

    policy = tmp_path / "policy.yaml"
    policy.write_text(DELEGATED_POLICY)
    checked = review(server, plan, "--policy", str(policy), "--format", "json")
    assert checked.returncode == 8, checked.stderr
    assert violations(checked) == {
        ("deny_wildcard_join_rules", "machineid_provision_token.gh", "github.allow[1].repository"),
        ("require_ref_or_environment", "machineid_provision_token.gh", "github.allow[1]")}
    out = json.loads(checked.stdout)
    assert [t["resource"] for t in out["tokens"]] == ["machineid_provision_token.gh"]
    assert out["bots"][0]["gained"]["joiners"] == out["bots"][0]["after"]["joiners"]


def test_a_review_by_an_identity_that_cannot_see_every_node_says_so(server: ServerProc, tmp_path: Path) -> None:
    """Nodes are listed by the caller's node_labels: a reviewer without a role selecting every node saw part of the
    fleet and reported "matches no registered node yet" without a word."""
    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps({"format_version": "1.2", "planned_values": {"root_module": {}},
                                "resource_changes": []}))
    assert "identity may reach" not in review(server, plan).stdout  # admin: editor and access (every node)
    server.ctl("users", "add", "narrow-reviewer", "--roles=auditor")
    ident = tmp_path / "narrow.identity"
    server.ctl("auth", "sign", "--user", "narrow-reviewer", "--out", str(ident))
    narrow = run_cli("review", str(plan), "--auth-server", server.address, "--identity", str(ident), "--format",
                     "json", env={"MACHINEID_DATA_DIR": ""}, check=False)
    assert narrow.returncode == 0, narrow.stderr
    tokens, nodes = json.loads(narrow.stdout)["notes"]
    assert "The nodes reviewed are those this identity may reach" in nodes and "{'*': ['*']}" in nodes
    assert "may not list join tokens" in tokens  # an auditor reads no token (their names may be secrets)


NODE_TF = HEADER + """
resource "machineid_role" "web" {
  name = "rv-web"
  allow {
    logins      = ["deploy"]
    node_labels = { env = ["rv-prod"] }
  }
}
resource "machineid_bot" "deployer" {
  name  = "rv-deployer"
  roles = [machineid_role.web.name]
}
resource "machineid_bot" "backup" {
  name  = "rv-backup"
  roles = [machineid_role.web.name]
}
resource "machineid_node" "web" {
  name            = "rv-web-1"
  addr            = "10.0.0.7:22"
  labels          = { env = "ENV" }
  install_command = ":"
}
"""


def test_node_changes_in_real_plans_are_access_changes_and_the_policy_guards_them(
        server: ServerProc, tools_bin: Path, tmp_path: Path) -> None:
    """A node relabelled in a tofu plan and a node created in a Pulumi preview: which bots become able to log in to
    it, as which login and through which role; nodes_reachable_only_by fails the plan (exit 8)."""
    ws = tofu_workspace(server, tools_bin, tmp_path)
    ws.write(NODE_TF.replace("ENV", "rv-dev"))
    ws.init()
    ws.apply()
    ws.write(NODE_TF.replace("ENV", "rv-prod"))
    plan = tofu_plan(ws, tmp_path / "plan.json")
    policy = tmp_path / "policy.yaml"
    policy.write_text("nodes_reachable_only_by:\n  - labels: {env: rv-prod}\n    bots: [rv-deployer]\n")
    comment = review(server, plan, "--policy", str(policy))
    assert comment.returncode == 8, comment.stdout + comment.stderr
    assert ("node `rv-web-1` becomes reachable by bots `rv-backup`, `rv-deployer` as `deploy` because its labels "
            "now match role `rv-web`") in comment.stdout, comment.stdout
    checked = review(server, plan, "--policy", str(policy), "--format", "json")
    assert violations(checked) == {("nodes_reachable_only_by", "machineid_node.web", "labels")}
    messages = [v["message"] for v in json.loads(checked.stdout)["violations"]]
    assert any('bot "rv-backup" as deploy' in m for m in messages) and not any("rv-deployer" in m.split(";")[0]
                                                                               for m in messages), messages

    engine = Engine(tools_bin, tmp_path / "pulumi-home", {"MACHINEID_AUTH_SERVER": server.address,
                                                          "MACHINEID_IDENTITY": str(server.admin_identity_path)})
    project = tmp_path / "prog"
    project.mkdir()
    (project / "Pulumi.yaml").write_text("""name: nodes-reviewed
runtime: yaml
resources:
  web:
    type: machineid:Node
    properties:
      name: rv-web-2
      addr: 10.0.0.8:22
      labels:
        env: rv-prod
      installCommand: ":"
""")
    engine.yaml_stack(project, "dev")
    preview = tmp_path / "preview.json"
    preview.write_text(engine.cli("preview", "--json", cwd=project).stdout)
    out = json.loads(review(server, preview, "--format", "json").stdout)
    [node] = out["nodes"]
    assert (node["name"], node["status"], node["resource"]) == ("rv-web-2", "created", "machineid:index:Node::web")
    assert {"bots": ["rv-backup", "rv-deployer"], "logins": ["deploy"],
            "because": "its labels match role `rv-web`"} in node["gained"]
    ws.destroy()
