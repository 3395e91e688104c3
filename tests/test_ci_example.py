"""examples/ci as a team runs it: the one script both CI files call, against a real cluster with real OpenTofu:
the review of a pull request (two bots gaining root fails the policy, a no-op says so) and the nightly drift check
(clean after apply, exit 2 after an out-of-band change)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from machineid.cluster.process import MACHINEID
from tests.conftest import ServerProc, run_cli

ROOT = Path(__file__).resolve().parent.parent
CI = ROOT / "examples" / "ci"


def test_the_ci_recipe_reviews_pull_requests_and_catches_drift(server: ServerProc, tools_bin: Path,
                                                               tmp_path: Path) -> None:
    server.ctl("nodes", "add", "ci-web", "--addr", "10.9.0.1:22", "--labels", "env=prod",
               "--out", str(tmp_path / "hostkey"))
    home = tmp_path / "home"
    run_cli("terraform", "install", "--plugins-dir", str(home / ".terraform.d" / "plugins"))
    infra = tmp_path / "infra"
    shutil.copytree(CI / "infra", infra)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TF_", "MACHINEID_"))}
    env.update({"HOME": str(home), "PATH": f"{tools_bin}:{Path(MACHINEID).parent}:/usr/bin:/bin",
                "MACHINEID_AUTH_SERVER": server.address, "MACHINEID_IDENTITY": str(server.admin_identity_path),
                "TF_IN_AUTOMATION": "1", "CHECKPOINT_DISABLE": "1"})

    def check(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(CI / "identity-check.sh"), *args], cwd=tmp_path, env=env, capture_output=True,
                              text=True, timeout=600)

    def tofu(*args: str) -> None:
        subprocess.run([str(tools_bin / "tofu"), *args], cwd=infra, env=env, check=True, capture_output=True,
                       timeout=600)

    policy = str(CI / "identity-policy.yaml")
    first = check("review", "infra", policy)
    assert first.returncode == 0, first.stdout + first.stderr
    review = (tmp_path / "review.md").read_text()
    assert "### bot `ci-deploy` (created)" in review and "`deploy@ci-web`" in review
    assert "### bot `ci-release` (created)" in review and "✅ no rule is violated" in review

    tofu("apply", "-auto-approve", "-input=false", "-no-color")
    clean = check("drift", "infra")
    assert clean.returncode == 0 and "no drift" in clean.stdout, clean.stdout + clean.stderr
    server.ctl("create", "--force", "-f", "-", input="kind: role\nmetadata:\n  name: ci-deployer\nspec:\n  allow:\n"
                                                     "    logins: [root]\n    node_labels: {env: [prod]}\n")
    drifted = check("drift", "infra")
    assert drifted.returncode == 2 and "machineid_role.deployer" in drifted.stdout, drifted.stdout + drifted.stderr
    tofu("apply", "-auto-approve", "-input=false", "-no-color")  # back to the code

    main = infra / "main.tf"
    main.write_text(main.read_text().replace('default = ["{{internal.logins}}"]',
                                             'default = ["root", "{{internal.logins}}"]'))
    rooted = check("review", "infra", policy)
    assert rooted.returncode == 8, rooted.stdout + rooted.stderr
    review = (tmp_path / "review.md").read_text()
    for bot in ("ci-deploy", "ci-release"):
        section = review.split(f"### bot `{bot}` (changed)")[1].split("###")[0]
        gains = next(line for line in section.splitlines() if "gains logins on nodes" in line)
        assert "`root@ci-web`" in gains, review  # (other tests' nodes may be listed too)
    assert "`deny_logins`: `machineid_role.deployer` `allow.logins[0]`" in review

    main.write_text(main.read_text().replace('default = ["root", "{{internal.logins}}"]',
                                             'default = ["{{internal.logins}}"]'))
    noop = check("review", "infra", policy)
    assert noop.returncode == 0 and "No access change" in (tmp_path / "review.md").read_text()
    tofu("destroy", "-auto-approve", "-input=false", "-no-color")


PULUMI_PROGRAM = """name: ci-infra
runtime: yaml
resources:
  deployer:
    type: machineid:Role
    properties:
      name: pci-deployer
      allow:
        logins: {logins}
        nodeLabels:
          env: ["prod"]
  deploy:
    type: machineid:Bot
    properties:
      name: pci-deploy
      roles: ["${{deployer.name}}"]
      traits:
        logins: ["deploy"]
  release:
    type: machineid:Bot
    properties:
      name: pci-release
      roles: ["${{deployer.name}}"]
      traits:
        logins: ["release"]
"""


def test_the_ci_recipe_with_a_pulumi_project(server: ServerProc, tools_bin: Path, tmp_path: Path) -> None:
    from machineid.pulumi.engine import Engine

    server.ctl("nodes", "add", "pci-web", "--addr", "10.9.0.2:22", "--labels", "env=prod",
               "--out", str(tmp_path / "hostkey"), "--force")
    engine = Engine(tools_bin, tmp_path / "pulumi-home", {"MACHINEID_AUTH_SERVER": server.address,
                                                          "MACHINEID_IDENTITY": str(server.admin_identity_path)})
    infra = tmp_path / "infra"
    infra.mkdir()
    program = infra / "Pulumi.yaml"
    program.write_text(PULUMI_PROGRAM.format(logins='["{{internal.logins}}"]'))
    engine.yaml_stack(infra, "prod")
    engine.cli("up", "--yes", cwd=infra)
    env = {**engine.environ(), "PATH": f"{tools_bin}:{Path(MACHINEID).parent}:/usr/bin:/bin",
           "PULUMI_STACK": "prod"}

    def check(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(CI / "identity-check.sh"), *args], cwd=tmp_path, env=env, capture_output=True,
                              text=True, timeout=600)

    clean = check("drift", "infra")
    assert clean.returncode == 0 and "no drift" in clean.stdout, clean.stdout + clean.stderr
    server.ctl("create", "--force", "-f", "-", input="kind: role\nmetadata:\n  name: pci-deployer\nspec:\n  allow:\n"
                                                     "    logins: [root]\n    node_labels: {env: [prod]}\n")
    drifted = check("drift", "infra")
    assert drifted.returncode == 2 and "Role::deployer" in drifted.stdout, drifted.stdout + drifted.stderr
    engine.cli("up", "--yes", "--refresh", cwd=infra)  # back to the code

    program.write_text(PULUMI_PROGRAM.format(logins='["root", "{{internal.logins}}"]'))
    rooted = check("review", "infra", str(CI / "identity-policy.yaml"))
    assert rooted.returncode == 8, rooted.stdout + rooted.stderr
    review = (tmp_path / "review.md").read_text()
    for bot in ("pci-deploy", "pci-release"):
        section = review.split(f"### bot `{bot}` (changed)")[1].split("###")[0]
        gains = next(line for line in section.splitlines() if "gains logins on nodes" in line)
        assert "`root@pci-web`" in gains, review  # (other tests' nodes may be listed too)
    program.write_text(PULUMI_PROGRAM.format(logins='["{{internal.logins}}"]'))
    noop = check("review", "infra", str(CI / "identity-policy.yaml"))
    assert noop.returncode == 0 and "No access change" in (tmp_path / "review.md").read_text(), noop.stdout
    engine.cli("destroy", "--yes", cwd=infra)
