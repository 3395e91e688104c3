"""`machineid review`: the access impact of a real plan (OpenTofu's `show -json` and Pulumi's `preview --json`)
against a real cluster, as a pull-request comment, and a team's policy failing the check."""

from __future__ import annotations

import json
import os
import subprocess
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
