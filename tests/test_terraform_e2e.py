"""The Terraform/OpenTofu provider with the real CLIs (OpenTofu 1.12.6 and Terraform 1.0.3, built or unpacked by
scripts/install-tools) against a real cluster: every test runs on both CLIs, the provider installed the way users
install it (`machineid terraform install`, then a plain `init`)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from machineid.api.client import Client
from machineid.model import errors
from machineid.model.resources import Role
from machineid.terraform.runner import Workspace
from tests.conftest import ServerProc, run_cli
from tests.test_cluster_api import join

ROOT = Path(__file__).resolve().parent.parent
CLIS = ("tofu", "terraform")
HEADER = """
terraform {
  required_providers {
    machineid = { source = "machineid/machineid" }
  }
}
"""


@pytest.fixture(scope="module")
def tf_bin() -> Path:
    proc = subprocess.run([str(ROOT / "scripts" / "install-tools")], capture_output=True, text=True, timeout=3000,
                          env={**os.environ, "MACHINEID_TOOLS": "terraform"})
    assert proc.returncode == 0, proc.stderr
    return Path(proc.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def tf_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    home = tmp_path_factory.mktemp("home")
    run_cli("terraform", "install", "--plugins-dir", str(home / ".terraform.d" / "plugins"))
    return home


@pytest.fixture()
def admin(server: ServerProc) -> Iterator[Client]:
    with server.admin() as client:
        yield client


@pytest.fixture(params=CLIS)
def ws(request: pytest.FixtureRequest, tf_bin: Path, tf_home: Path, server: ServerProc, tmp_path: Path) -> Workspace:
    env = {"MACHINEID_AUTH_SERVER": server.address, "MACHINEID_IDENTITY": str(server.admin_identity_path)}
    return Workspace.create(tf_bin / request.param, tmp_path / "work", tf_home, env)


def uniq(ws: Workspace, base: str) -> str:
    """Names unique per CLI and test: the module's cluster is shared."""
    return f"{base}-{ws.name}-{int(time.monotonic_ns() % 10**9)}"


def gone(client: Client, kind: str, name: str) -> bool:
    try:
        client.get(kind, name)
    except errors.NotFoundError:
        return True
    return False


def config(role: str, bot: str, *, logins: str = '["ubuntu"]', extra_role: str = "", extra_bot: str = "",
           token: bool = True) -> str:
    token_block = """
resource "machineid_provision_token" "t" {
  bot_name = machineid_bot.robot.name
}
""" if token else ""
    return HEADER + f"""
resource "machineid_role" "web" {{
  name = "{role}"
  allow {{
    logins      = {logins}
    node_labels = {{ env = ["prod"] }}
  }}
  {extra_role}
}}

resource "machineid_bot" "robot" {{
  name  = "{bot}"
  roles = [machineid_role.web.name]
  {extra_bot}
}}
{token_block}
output "start_command" {{ value = machineid_bot.robot.start_command }}
output "systemd_unit" {{ value = machineid_bot.robot.systemd_unit }}
"""


def test_apply_plans_clean_and_destroy_leaves_nothing(ws: Workspace, admin: Client) -> None:
    role, bot = uniq(ws, "web"), uniq(ws, "robot")
    ws.write(config(role, bot))
    init = ws.init()
    assert (ws.directory / ".terraform.lock.hcl").is_file(), init.stdout
    ws.apply()
    assert admin.get_role(role).spec.allow.logins == ["ubuntu"]
    created = admin.get_bot(bot)
    assert created.spec.roles == [role]
    tokens = [t for t in admin.list("token") if t.spec.bot_name == bot]  # type: ignore[union-attr]
    assert len(tokens) == 2  # the bot's own and the ProvisionToken
    out = ws.outputs()
    assert out["start_command"] == f"/usr/local/bin/machineid bot start --config /etc/machineid/bot-{bot}.yaml"
    assert "ExecStart=" in str(out["systemd_unit"])
    # ctl sees them too
    assert role in run_cli("ctl", "--auth-server", admin.address, "--identity", str(Path(ws.env["MACHINEID_IDENTITY"])),
                           "get", "roles", "--format", "text").stdout
    plan = ws.plan()
    assert plan.returncode == 0, plan.stdout + plan.stderr
    ws.destroy()
    assert gone(admin, "role", role) and gone(admin, "bot", bot)
    assert not [t for t in admin.list("token") if t.spec.bot_name == bot]  # type: ignore[union-attr]


def test_out_of_band_changes_show_and_apply_puts_them_back(ws: Workspace, admin: Client) -> None:
    role, bot = uniq(ws, "web"), uniq(ws, "robot")
    ws.write(config(role, bot, extra_bot='traits = { logins = ["deploy"] }', token=False))
    ws.init()
    ws.apply()
    assert ws.plan().returncode == 0
    # someone edits the role's logins and the bot's traits with the CLI
    r = admin.get_role(role)
    r.spec.allow.logins = ["root"]
    admin.upsert(r)
    b = admin.get_bot(bot)
    b.spec.traits = {"logins": ["root"]}
    b.spec.roles = [role, "access"]
    admin.update_bot(b)
    plan = ws.plan()
    assert plan.returncode == 2, plan.stdout + plan.stderr
    assert '"root"' in plan.stdout and '"access"' in plan.stdout and "update in-place" in plan.stdout
    assert "must be replaced" not in plan.stdout
    refresh = ws.run("plan", "-refresh-only", "-no-color")
    for attribute in ("logins", "traits", "roles"):
        assert attribute in refresh.stdout, refresh.stdout
    ws.apply()
    assert admin.get_role(role).spec.allow.logins == ["ubuntu"]
    assert admin.get_bot(bot).spec.traits == {"logins": ["deploy"]}
    assert admin.get_bot(bot).spec.roles == [role]
    assert ws.plan().returncode == 0
    # the bot is removed outside: refresh-only shows it gone, and the plan creates it again
    admin.delete("bot", bot)
    refresh = ws.run("plan", "-refresh-only", "-no-color")
    assert "machineid_bot.robot" in refresh.stdout and "has been deleted" in refresh.stdout, refresh.stdout
    plan = ws.plan()
    assert plan.returncode == 2 and "will be created" in plan.stdout, plan.stdout
    ws.apply()
    assert admin.get_bot(bot).spec.roles == [role]
    ws.destroy()


def test_import_adopts_objects_made_with_the_cli(ws: Workspace, admin: Client, server: ServerProc) -> None:
    role, bot = uniq(ws, "ops"), uniq(ws, "cibot")
    admin.upsert(_role(role))
    server.ctl("bots", "add", bot, f"--roles={role}")
    ws.write(HEADER + f"""
resource "machineid_role" "ops" {{
  name        = "{role}"
  description = "made by hand"
  allow {{
    logins = ["ops"]
  }}
}}

resource "machineid_bot" "ci" {{
  name  = "{bot}"
  roles = [machineid_role.ops.name]
}}
""")
    ws.init()
    ws.run("import", "-no-color", "machineid_role.ops", role)
    ws.run("import", "-no-color", "machineid_bot.ci", bot)
    plan = ws.plan()
    assert plan.returncode == 0, plan.stdout + plan.stderr
    ws.destroy()
    assert gone(admin, "role", role) and gone(admin, "bot", bot)


def _role(name: str, logins: list[str] | None = None) -> Role:
    from machineid.model import codec

    return codec.decode(Role, {"metadata": {"name": name, "description": "made by hand"},
                               "spec": {"allow": {"logins": logins or ["ops"]}}})


@pytest.mark.parametrize("ws", ["tofu"], indirect=True)
def test_import_blocks_generate_a_configuration_that_plans_clean(ws: Workspace, admin: Client,
                                                                 server: ServerProc) -> None:
    """OpenTofu only: `import` blocks and -generate-config-out came with Terraform 1.5, after the 1.0.3 we test
    (which imports with `terraform import`, tested above on both CLIs)."""
    role, bot = uniq(ws, "gen"), uniq(ws, "genbot")
    admin.upsert(_role(role, ["ops", "deploy"]))
    server.ctl("bots", "add", bot, f"--roles={role}")
    token = admin.upsert(_iam_token(uniq(ws, "iam"), bot))
    ws.write(HEADER + f"""
import {{
  to = machineid_role.r
  id = "{role}"
}}
import {{
  to = machineid_bot.b
  id = "{bot}"
}}
import {{
  to = machineid_provision_token.t
  id = "{token.metadata.name}"
}}
""")
    ws.init()
    gen = ws.run("plan", "-no-color", "-generate-config-out=generated.tf", check=False)
    assert (ws.directory / "generated.tf").is_file(), gen.stdout + gen.stderr
    text = (ws.directory / "generated.tf").read_text()
    assert f'name = "{role}"' in text.replace("  ", " ") or role in text
    # an iam token's name is no secret: written out, not `null # sensitive`
    assert re.search(rf'\n\s*name\s*=\s*"{token.metadata.name}"', text), text
    plan = ws.run("plan", "-no-color")
    assert "3 to import, 0 to add, 0 to change, 0 to destroy" in plan.stdout, plan.stdout + text
    ws.apply()
    assert ws.plan().returncode == 0
    ws.destroy()


def _token(name: str, bot: str, **spec: object) -> object:
    """A token made with the API, as an admin would: single-use unless spec says otherwise."""
    from machineid.model import codec
    from machineid.model.resources import ProvisionToken

    return codec.decode(ProvisionToken, {"metadata": {"name": name, "expires": "2099-01-01T00:00:00Z"},
                                         "spec": {"bot_name": bot, **spec}})


def _iam_token(name: str, bot: str) -> object:
    return _token(name, bot, join_method="iam", allow=[
        {"aws_account": "123456789012", "aws_arn": "arn:aws:sts::123456789012:assumed-role/ci/*"}])


def test_changed_name_forces_replacement(ws: Workspace, admin: Client) -> None:
    role, bot = uniq(ws, "web"), uniq(ws, "robot")
    ws.write(config(role, bot, token=False))
    ws.init()
    ws.apply()
    ws.write(config(role, bot + "-2", token=False))
    plan = ws.plan()
    assert plan.returncode == 2 and "# forces replacement" in plan.stdout, plan.stdout
    ws.apply()
    assert gone(admin, "bot", bot) and admin.get_bot(bot + "-2").spec.roles == [role]
    ws.destroy()


def test_removing_an_optional_attribute_plans_the_default(ws: Workspace, admin: Client) -> None:
    role, bot = uniq(ws, "web"), uniq(ws, "robot")
    ws.write(config(role, bot, token=False, extra_role='description = "web servers"\n  options {\n'
                                                      '    max_session_ttl = "2h"\n  }'))
    ws.init()
    ws.apply()
    assert admin.get_role(role).spec.options.max_session_ttl == "2h"
    assert ws.plan().returncode == 0
    ws.write(config(role, bot, token=False))
    plan = ws.plan()
    assert plan.returncode == 2, plan.stdout
    assert '"web servers"' in plan.stdout, plan.stdout
    # the default the cluster will hold, not null
    assert re.search(r'max_session_ttl\s+= "2h" -> "30h"', plan.stdout), plan.stdout
    ws.apply()
    got = admin.get_role(role)
    assert got.metadata.description == "" and got.spec.options.max_session_ttl == "30h"
    assert ws.plan().returncode == 0
    ws.destroy()


def test_bot_roles_update_in_place_and_its_token_rotates(ws: Workspace, admin: Client) -> None:
    role, bot = uniq(ws, "web"), uniq(ws, "robot")
    ws.write(config(role, bot, token=False) + 'output "token" {\n  value = machineid_bot.robot.token\n'
                                              "  sensitive = true\n}\n")
    ws.init()
    ws.apply()
    first = str(ws.outputs()["token"])
    admin.upsert(_role(role + "-extra"))
    ws.write(config(role, bot, token=False, extra_bot="token_rotation = 1").replace(
        "roles = [machineid_role.web.name]", f'roles = [machineid_role.web.name, "{role}-extra"]')
        + 'output "token" {\n  value = machineid_bot.robot.token\n  sensitive = true\n}\n')
    plan = ws.plan()
    assert plan.returncode == 2 and "update in-place" in plan.stdout and "forces replacement" not in plan.stdout
    assert first not in plan.stdout
    ws.apply()
    second = str(ws.outputs()["token"])
    assert second and second != first
    assert admin.get_bot(bot).spec.roles == [role, role + "-extra"]
    assert admin.get_token(second).spec.bot_name == bot
    assert ws.plan().returncode == 0
    ws.destroy()
    admin.delete("role", role + "-extra")


def test_expired_token_plans_a_replacement(ws: Workspace, admin: Client) -> None:
    """The provider compares a token's expiry with its own clock: the state's expiry is moved into the past (instead
    of waiting for it) and the plan reads that state as it is (-refresh=false, or the cluster's would stand)."""
    role, bot = uniq(ws, "web"), uniq(ws, "robot")
    ws.write(config(role, bot, token=False) + """
resource "machineid_provision_token" "t" {
  bot_name = machineid_bot.robot.name
  ttl      = "30m"
}
""")
    ws.init()
    ws.apply()
    first = _token_id(ws)
    assert ws.plan().returncode == 0
    state_path = ws.directory / "terraform.tfstate"
    state = json.loads(state_path.read_text())
    token = next(r for r in state["resources"] if r["type"] == "machineid_provision_token")["instances"][0]
    token["attributes"]["token_expires"] = "2001-01-01T00:00:00Z"
    state["serial"] += 1
    state_path.write_text(json.dumps(state))
    plan = ws.plan("-refresh=false")
    assert plan.returncode == 2 and "must be replaced" in plan.stdout, plan.stdout + plan.stderr
    ws.apply("-refresh=false")
    second = _token_id(ws)
    assert second.startswith("token-") and second != first and gone(admin, "token", str(token["attributes"][
        "secret_name"]))
    assert ws.plan().returncode == 0
    ws.destroy()


def _token_id(ws: Workspace) -> str:
    state = json.loads((ws.directory / "terraform.tfstate").read_text())
    token = next(r for r in state["resources"] if r["type"] == "machineid_provision_token")
    return str(token["instances"][0]["attributes"]["id"])


BAD = {
    "unknown_role": ('resource "machineid_bot" "b" {\n  name  = "b"\n  roles = ["no-such-role"]\n}\n',
                     ['role "no-such-role" does not exist on the cluster', "roles"]),
    "bad_arn": ('resource "machineid_provision_token" "t" {\n  name = "iam-x"\n  join_method = "iam"\n'
                '  bot_name = "b"\n  allow {\n    aws_account = "123456789012"\n    aws_arn = "nope"\n  }\n}\n',
                ['"nope" is not valid', "aws_arn"]),
    "negative_ttl": ('resource "machineid_provision_token" "t" {\n  bot_name = "b"\n  ttl = "-5m"\n}\n',
                     ['"-5m" is too short', "ttl"]),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_configuration_fails_at_plan_naming_the_attribute(ws: Workspace, admin: Client, case: str) -> None:
    body, wanted = BAD[case]
    before = {k: sorted(o.metadata.name for o in admin.list(k)) for k in ("role", "bot", "token")}
    ws.write(HEADER + body)
    ws.init()
    plan = ws.plan()
    assert plan.returncode == 1, plan.stdout
    for text in wanted:
        assert text in plan.stderr, plan.stderr
    assert re.search(r"on main\.tf line \d+", plan.stderr), plan.stderr
    after = {k: sorted(o.metadata.name for o in admin.list(k)) for k in ("role", "bot", "token")}
    assert after == before


def test_missing_address_fails_at_plan(ws: Workspace) -> None:
    ws.write(HEADER + 'resource "machineid_role" "r" {\n  name = "r"\n}\n')
    ws.init()
    plan = ws.run("plan", "-no-color", check=False, env={"MACHINEID_AUTH_SERVER": ""})
    assert plan.returncode == 1
    assert "address" in plan.stderr and "MACHINEID_AUTH_SERVER" in plan.stderr, plan.stderr


def test_no_token_in_plan_output_or_logs(ws: Workspace, admin: Client, tmp_path: Path) -> None:
    role, bot = uniq(ws, "web"), uniq(ws, "robot")
    ws.write(config(role, bot))
    ws.init()
    log = tmp_path / "tf.log"
    applied = ws.apply(env={"TF_LOG": "DEBUG", "TF_LOG_PATH": str(log)})
    tokens = [t.metadata.name for t in admin.list("token") if t.spec.bot_name == bot]  # type: ignore[union-attr]
    assert len(tokens) == 2
    ws.write(config(role, bot, extra_bot="token_rotation = 2"))
    plan = ws.run("plan", "-no-color", env={"TF_LOG": "DEBUG", "TF_LOG_PATH": str(log)})
    shown = applied.stdout + applied.stderr + plan.stdout + plan.stderr
    logs = log.read_text()
    for token in tokens:
        assert token not in shown
        assert token not in logs
    assert "(sensitive value)" in plan.stdout
    ws.destroy()


def test_data_sources_look_up_the_cluster_roles_and_bots(ws: Workspace, admin: Client, server: ServerProc) -> None:
    role, bot = uniq(ws, "looked"), uniq(ws, "lookbot")
    admin.upsert(_role(role, ["ops"]))
    server.ctl("bots", "add", bot, f"--roles={role}")
    ws.write(HEADER + f"""
data "machineid_cluster" "c" {{}}
data "machineid_role" "r" {{
  name = "{role}"
}}
data "machineid_bot" "b" {{
  name = "{bot}"
}}
output "pins" {{ value = data.machineid_cluster.c.ca_pins }}
output "name" {{ value = data.machineid_cluster.c.cluster_name }}
output "logins" {{ value = data.machineid_role.r.allow.logins }}
output "bot_roles" {{ value = data.machineid_bot.b.roles }}
output "bot_user" {{ value = data.machineid_bot.b.user_name }}
output "version" {{ value = data.machineid_cluster.c.version }}
""")
    ws.init()
    ws.apply()
    out = ws.outputs()
    assert out["pins"] == list(admin.ping().ca_pins)
    assert out["name"] == admin.ping().cluster_name
    assert out["logins"] == ["ops"] and out["bot_roles"] == [role] and out["bot_user"] == f"bot-{bot}"
    assert out["version"] == admin.ping().server_version and out["version"]
    ws.write(HEADER + 'data "machineid_role" "r" {\n  name = "nope-nope"\n}\n')
    plan = ws.plan()
    assert plan.returncode == 1 and 'no role named "nope-nope"' in plan.stderr, plan.stderr


def test_state_from_an_older_provider_upgrades(ws: Workspace, admin: Client) -> None:
    """States written by older builds: attributes added or retired within a schema version, and a token written
    at schema version 0 (before `used`, its name in `name`), which goes through its upgraders to version 2."""
    role, bot = uniq(ws, "web"), uniq(ws, "robot")
    ws.write(config(role, bot))
    ws.init()
    ws.apply()
    state_path = ws.directory / "terraform.tfstate"
    state = json.loads(state_path.read_text())
    secret = ""
    for res in state["resources"]:
        for inst in res["instances"]:
            attrs = inst["attributes"]
            attrs.pop("labels", None)  # an attribute an older build did not have
            attrs["retired_attribute"] = "x"  # and one it had that is gone now
            if res["type"] == "machineid_provision_token":
                assert inst["schema_version"] == 2
                inst["schema_version"] = 0  # before `used` and `secret_name`: the name was in (sensitive) `name`
                del attrs["used"]
                secret = attrs["name"] = attrs.pop("secret_name")
    state["serial"] += 1
    state_path.write_text(json.dumps(state))
    plan = ws.plan()
    assert plan.returncode == 0, plan.stdout + plan.stderr
    ws.apply()  # nothing to change; writes the upgraded state
    upgraded = json.loads(ws.run("show", "-json", "-no-color").stdout)
    resources = {r["type"]: r for r in upgraded["values"]["root_module"]["resources"]}
    role_values = resources["machineid_role"]["values"]
    assert role_values["labels"] == {} and "retired_attribute" not in role_values
    token = resources["machineid_provision_token"]
    assert token["values"]["used"] is False and token["schema_version"] == 2
    assert secret and token["values"]["secret_name"] == secret
    assert token["values"]["name"] is None
    ws.destroy()


def test_opentofu_state_encryption_keeps_tokens_out_of_the_state(tf_bin: Path, tf_home: Path, server: ServerProc,
                                                                admin: Client, tmp_path: Path) -> None:
    ws = Workspace.create(tf_bin / "tofu", tmp_path / "enc", tf_home, {
        "MACHINEID_AUTH_SERVER": server.address, "MACHINEID_IDENTITY": str(server.admin_identity_path)})
    role, bot = uniq(ws, "web"), uniq(ws, "robot")
    encryption = """
terraform {
  encryption {
    key_provider "pbkdf2" "k" {
      passphrase = "correct horse battery staple, long enough"
    }
    method "aes_gcm" "m" {
      keys = key_provider.pbkdf2.k
    }
    state {
      method = method.aes_gcm.m
    }
  }
}
"""
    ws.write(config(role, bot) + encryption)
    ws.init()
    ws.apply()
    tokens = [t.metadata.name for t in admin.list("token") if t.spec.bot_name == bot]  # type: ignore[union-attr]
    raw = (ws.directory / "terraform.tfstate").read_text()
    assert "encrypted_data" in raw
    for token in tokens:
        assert token not in raw
    assert ws.plan().returncode == 0
    ws.destroy()


def test_fresh_directory_init_and_apply_with_no_cli_config(tf_bin: Path, server: ServerProc, admin: Client,
                                                           tmp_path: Path) -> None:
    """A user's path: install, then init and apply in an empty directory (for each CLI, with a new HOME)."""
    for cli in CLIS:
        home = tmp_path / f"home-{cli}"
        run_cli("terraform", "install", env={"HOME": str(home)})
        work = tmp_path / f"fresh-{cli}"
        ws = Workspace(tf_bin / cli, work, home, {"MACHINEID_AUTH_SERVER": server.address,
                                                  "MACHINEID_IDENTITY": str(server.admin_identity_path)})
        work.mkdir()
        role = f"fresh-{cli}"
        ws.write(HEADER + f'resource "machineid_role" "r" {{\n  name = "{role}"\n}}\n')
        assert not (home / ".terraformrc").exists()
        init = ws.init()
        assert "machineid/machineid" in init.stdout
        lock = (work / ".terraform.lock.hcl").read_text()
        assert "machineid/machineid" in lock and "h1:" in lock
        ws.apply()
        assert admin.get_role(role).spec.options.max_session_ttl == "30h"
        assert ws.plan().returncode == 0
        ws.destroy()


def test_reference_docs_are_fresh() -> None:
    from machineid.terraform import docs

    pages = docs.render()
    on_disk = {str(p.relative_to(ROOT / "docs" / "terraform")): p.read_text()
               for p in (ROOT / "docs" / "terraform").rglob("*.md")}
    assert sorted(on_disk) == sorted(pages), "docs/terraform is stale: run scripts/gen"
    stale = [k for k, text in pages.items() if on_disk[k] != text]
    assert not stale, f"stale {stale}: run scripts/gen"
    for kind in ("resources/role.md", "resources/provision_token.md", "resources/bot.md", "data-sources/cluster.md",
                 "data-sources/role.md", "data-sources/bot.md", "index.md"):
        assert "## Schema" in pages[kind]
    assert "Sensitive" in pages["resources/provision_token.md"] and "## Import" in pages["resources/bot.md"]


def test_doc_examples_and_the_example_validate(ws: Workspace) -> None:
    """Every example in the docs, and examples/terraform, is valid against the provider's schema."""
    for path in sorted((ROOT / "examples" / "terraform" / "docs").glob("*.tf")):
        ws.write(path.read_text(), path.name)
    ws.init()
    ws.run("validate", "-no-color")
    example = Workspace.create(ws.cli, ws.directory.parent / "example", ws.home, ws.env)
    example.write((ROOT / "examples" / "terraform" / "main.tf").read_text())
    example.init()
    example.run("validate", "-no-color")


@pytest.mark.parametrize("ws", CLIS, indirect=True)
def test_the_terraform_example_applies_and_renders_a_config_the_agent_accepts(ws: Workspace, admin: Client,
                                                                             tmp_path: Path) -> None:
    from machineid.agent import config as agent_config

    text = (ROOT / "examples" / "terraform" / "main.tf").read_text()
    suffix = ws.name
    ws.write(text.replace('= "ci-deploy"', f'= "ci-deploy-{suffix}"').replace('= "robot"', f'= "robot-{suffix}"'))
    ws.init()
    ws.apply("-var", f"data_dir={tmp_path / 'data'}", "-var", f"destination_dir={tmp_path / 'dest'}")
    out = ws.outputs()
    cfg = agent_config.load(str(out["agent_config"]))
    assert cfg.onboarding.token and cfg.onboarding.ca_pins == [out["ca_pin"]]
    assert cfg.storage.directory == str(tmp_path / "data")
    assert out["bot_user"] == f"bot-robot-{suffix}"
    assert ws.plan("-var", f"data_dir={tmp_path / 'data'}", "-var",
                   f"destination_dir={tmp_path / 'dest'}").returncode == 0
    ws.destroy()


def test_provider_block_with_identity_content_and_ca_pin(ws: Workspace, server: ServerProc, admin: Client) -> None:
    pin = admin.ping().ca_pins[0]
    role = uniq(ws, "pinned")
    block = """
provider "machineid" {{
  address  = "{address}"
  identity = file("{identity}")
  ca_pin   = "{pin}"
}}
resource "machineid_role" "r" {{
  name = "{role}"
}}
"""
    no_env = {"MACHINEID_AUTH_SERVER": "", "MACHINEID_IDENTITY": ""}
    wrong = "sha256:" + "0" * 64
    ws.write(HEADER + block.format(address=server.address, identity=server.admin_identity_path, pin=wrong, role=role))
    ws.init()
    plan = ws.run("plan", "-no-color", check=False, env=no_env)
    assert plan.returncode == 1 and "ca_pin" in plan.stderr, plan.stderr
    assert gone(admin, "role", role)
    ws.write(HEADER + block.format(address=server.address, identity=server.admin_identity_path, pin=pin, role=role))
    ws.apply(env=no_env)
    assert admin.get_role(role).metadata.name == role
    ws.run("destroy", "-auto-approve", "-no-color", env=no_env)


def test_protocol_5_serves_the_same_provider(ws: Workspace, admin: Client) -> None:
    """Every call through the tfplugin5 servicer (the plugin told to serve only protocol 5)."""
    role, bot = uniq(ws, "web5"), uniq(ws, "robot5")
    ws.env["MACHINEID_TF_PROTOCOL"] = "5"
    ws.write(config(role, bot, token=False) + 'data "machineid_cluster" "c" {}\n')
    ws.init()
    applied = ws.apply(env={"TF_LOG": "DEBUG"})
    assert "using plugin: version=5" in applied.stderr and "using plugin: version=6" not in applied.stderr
    assert admin.get_bot(bot).spec.roles == [role]
    assert ws.plan().returncode == 0
    ws.write(config(role, bot, token=False, logins='["ubuntu", "deploy"]'))
    assert ws.plan().returncode == 2
    ws.apply()
    assert admin.get_role(role).spec.allow.logins == ["ubuntu", "deploy"]
    ws.destroy()
    assert gone(admin, "role", role) and gone(admin, "bot", bot)


def _keypair_config(bot: str, key: str, bound: str = "") -> str:
    return HEADER + f"""
resource "machineid_bot" "robot" {{
  name  = "{bot}"
  roles = ["access"]
}}

resource "machineid_provision_token" "key" {{
  name        = "{bot}-key"
  join_method = "bound_keypair"
  bot_name    = machineid_bot.robot.name
  bound_keypair {{
    onboarding {{
      initial_public_key = "{key}"
    }}
    {bound}
  }}
}}
"""


def test_bound_keypair_token_in_place_updates_and_status_outputs(ws: Workspace, admin: Client, server: ServerProc,
                                                                 tmp_path: Path) -> None:
    """The block is accepted, a join's status shows as outputs without a planned change, rotate_after and
    recovery.limit update in place, a new onboarding key replaces the token, and the state holds no secret."""
    bot = uniq(ws, "keybot")
    data = tmp_path / "agent"
    key = run_cli("bot", "keypair", "create", "--data-dir", str(data)).stdout.strip()
    ws.write(_keypair_config(bot, key))
    ws.init()
    ws.apply()
    assert ws.plan().returncode == 0
    state = json.loads((ws.directory / "terraform.tfstate").read_text())
    token = next(r for r in state["resources"] if r["type"] == "machineid_provision_token")["instances"][0]
    assert token["attributes"]["id"] == f"{bot}-key" and token["attributes"]["token_expires"] == ""
    assert not token["attributes"]["bound_keypair"]["onboarding"]["registration_secret"]
    pin = json.loads((server.data_dir / "server.json").read_text())["ca_pin"]
    run_cli("bot", "start", "--oneshot", "--join-method", "bound_keypair", "--token", f"{bot}-key", "--data-dir",
            str(data), "--destination-dir", str(tmp_path / "dest"), "--ca-pin", pin, "--auth-server", server.address)
    assert ws.plan().returncode == 0  # the join changed the status: computed attributes, never a planned change
    ws.apply("-refresh-only")
    state = json.loads((ws.directory / "terraform.tfstate").read_text())
    token = next(r for r in state["resources"] if r["type"] == "machineid_provision_token")["instances"][0]
    assert token["attributes"]["bound_public_key"] == " ".join(key.split()[:2])
    assert token["attributes"]["join_sequence"] == 1 and token["attributes"]["recovery_count"] == 0

    ws.write(_keypair_config(bot, key, 'rotate_after = "2001-01-01T00:00:00Z"\n    recovery {\n      limit = 3\n'
                                       "    }"))
    plan = ws.plan()
    assert plan.returncode == 2 and "updated in-place" in plan.stdout and "must be replaced" not in plan.stdout, \
        plan.stdout
    ws.apply()
    stored = admin.get_token(f"{bot}-key")
    assert stored.spec.bound_keypair.recovery.limit == 3 and stored.status.bound_public_key  # binding kept
    assert ws.plan().returncode == 0

    other = run_cli("bot", "keypair", "create", "--data-dir", str(tmp_path / "other")).stdout.strip()
    ws.write(_keypair_config(bot, other))
    plan = ws.plan()
    assert plan.returncode == 2 and "must be replaced" in plan.stdout, plan.stdout
    ws.destroy()


def test_renaming_a_role_its_bot_holds_replaces_it_and_moves_the_bot(ws: Workspace, admin: Client) -> None:
    """The bot names the new role (created only by the replacement): the plan must accept it, warn that deleting
    first would be refused while the bot holds the old role, and with create_before_destroy apply cleanly."""
    role, bot = uniq(ws, "old"), uniq(ws, "holder")
    ws.write(config(role, bot, token=False))
    ws.init()
    ws.apply()
    renamed = config(role + "-new", bot, token=False)
    ws.write(renamed)
    plan = ws.plan()
    assert plan.returncode == 2, plan.stdout + plan.stderr
    assert "forces replacement" in plan.stdout and "update in-place" in plan.stdout, plan.stdout
    shown = plan.stdout + plan.stderr
    assert f'renaming role "{role}"' in shown and "create_before_destroy" in shown, shown
    ws.write(config(role + "-new", bot, token=False, extra_role="lifecycle {\n    create_before_destroy = true\n  }"))
    ws.apply()
    assert admin.get_bot(bot).spec.roles == [role + "-new"] and gone(admin, "role", role)
    assert ws.plan().returncode == 0
    ws.destroy()


def test_a_token_its_bot_joined_with_stays_in_state_and_plans_clean(ws: Workspace, admin: Client,
                                                                    server: ServerProc) -> None:
    """The cluster deletes a single-use token when its bot joins: the next plan must not create a new one."""
    role, bot = uniq(ws, "web"), uniq(ws, "spender")
    ws.write(config(role, bot) + 'output "t" {\n  value = machineid_provision_token.t.secret_name\n'
                                 '  sensitive = true\n}\n')
    ws.init()
    ws.apply()
    join(server, str(ws.outputs()["t"]))
    plan = ws.plan()
    assert plan.returncode == 0, plan.stdout + plan.stderr
    ws.apply("-refresh-only")
    shown = json.loads(ws.run("show", "-json", "-no-color").stdout)
    token = next(r for r in shown["values"]["root_module"]["resources"] if r["type"] == "machineid_provision_token")
    assert token["values"]["used"] is True
    spent = _token_id(ws)
    # changed later: a fresh token replaces it (never the spent one updated back into existence)
    changed = config(role, bot).replace("bot_name = machineid_bot.robot.name",
                                        'bot_name = machineid_bot.robot.name\n  ttl = "2h"')
    ws.write(changed + 'output "t" {\n  value = machineid_provision_token.t.secret_name\n  sensitive = true\n}\n')
    plan = ws.plan()
    assert plan.returncode == 2 and "must be replaced" in plan.stdout, plan.stdout
    applied = ws.apply()
    assert "inconsistent" not in (applied.stdout + applied.stderr).lower()
    fresh = str(ws.outputs()["t"])
    assert _token_id(ws) != spent and admin.get_token(fresh).spec.bot_name == bot
    assert ws.plan().returncode == 0
    # a used token configured with its name cannot come back under that name: refused at plan, naming `name`
    named = "n" * 40
    admin.upsert(_token(named, bot, roles=["Bot"]))
    ws.write(changed + f'resource "machineid_provision_token" "named" {{\n  secret_name = "{named}"\n'
                       f'  bot_name = machineid_bot.robot.name\n}}\n')
    ws.run("import", "-no-color", "machineid_provision_token.named", named)
    join(server, named)
    ws.write(changed + f'resource "machineid_provision_token" "named" {{\n  secret_name = "{named}"\n'
                       f'  bot_name = machineid_bot.robot.name\n  ttl = "2h"\n}}\n')
    plan = ws.plan()
    shown = " ".join((plan.stdout + plan.stderr).split())  # the CLIs wrap diagnostics
    assert plan.returncode == 2 and "does not create a used single-use token again" in shown, shown
    assert shown.count(named) == 1  # only where the CLI quotes the configuration's own line
    applied = ws.apply(check=False)
    assert applied.returncode == 1 and "already used by bot" in applied.stderr, applied.stderr
    assert applied.stderr.count(named) <= 1 and gone(admin, "token", named)
    ws.destroy()
    assert gone(admin, "bot", bot)


def test_server_filled_values_apply_consistently_and_updates_plan_known_values(ws: Workspace, admin: Client) -> None:
    """Everything the cluster fills in (a token's name and expiry, partial blocks, defaults, a key pair token's
    recovery) applies without "inconsistent result", and an update plans its computed values as known."""
    role, bot = uniq(ws, "filled"), uniq(ws, "filledbot")
    key = run_cli("bot", "keypair", "create", "--data-dir", str(ws.directory / "agent")).stdout.strip()
    body = f"""
resource "machineid_role" "r" {{
  name = "{role}"
  allow {{
    node_labels = {{ env = ["prod"] }}
  }}
}}
resource "machineid_bot" "b" {{
  name  = "{bot}"
  roles = [machineid_role.r.name]
  DESCRIPTION
}}
resource "machineid_provision_token" "single" {{
  bot_name = machineid_bot.b.name
}}
resource "machineid_provision_token" "iam" {{
  name        = "{bot}-iam"
  join_method = "iam"
  bot_name    = machineid_bot.b.name
  allow {{
    aws_account = "123456789012"
  }}
  allow {{
    aws_account = "210987654321"
    aws_arn     = "arn:aws:sts::210987654321:assumed-role/ci/*"
  }}
}}
resource "machineid_provision_token" "key" {{
  name        = "{bot}-key"
  join_method = "bound_keypair"
  bot_name    = machineid_bot.b.name
  bound_keypair {{
    onboarding {{
      initial_public_key = "{key}"
    }}
    recovery {{
      mode = "relaxed"
    }}
  }}
}}
"""
    ws.write(HEADER + body.replace("DESCRIPTION", ""))
    ws.init()
    applied = ws.apply()
    assert "inconsistent" not in (applied.stdout + applied.stderr).lower()
    # only the single-use token's name is hidden (its secret): the iam and key pair tokens' names show
    assert re.search(rf'\+ name\s+= "{bot}-iam"', applied.stdout) and re.search(rf'\+ name\s+= "{bot}-key"',
                                                                                 applied.stdout), applied.stdout
    assert re.search(r"\+ secret_name\s+= \(sensitive value\)", applied.stdout), applied.stdout
    shown = json.loads(ws.run("show", "-json", "-no-color").stdout)
    tokens = {r["name"]: r for r in shown["values"]["root_module"]["resources"]
              if r["type"] == "machineid_provision_token"}
    assert tokens["iam"]["values"]["name"] == f"{bot}-iam" and tokens["iam"]["values"]["secret_name"] is None
    assert tokens["single"]["values"]["name"] is None and tokens["single"]["values"]["secret_name"]
    assert len(admin.get_token(f"{bot}-iam").spec.allow) == 2
    assert ws.plan().returncode == 0
    ws.write(HEADER + body.replace("DESCRIPTION", 'description = "now described"\n  traits = { env = ["ci"] }'))
    ws.run("plan", "-no-color", "-out=update.plan")
    planned = json.loads(ws.run("show", "-json", "-no-color", "update.plan").stdout)
    change = next(c for c in planned["resource_changes"] if c["type"] == "machineid_bot")
    assert change["change"]["actions"] == ["update"]
    unknown = change["change"]["after_unknown"]
    for name in ("id", "user_name", "role_name", "token", "token_expires", "start_command", "systemd_unit",
                 "agent_config"):
        assert not unknown.get(name), (name, unknown)
    applied = ws.run("apply", "-no-color", "update.plan")
    assert "inconsistent" not in (applied.stdout + applied.stderr).lower()
    assert admin.get_bot(bot).spec.traits == {"env": ["ci"]}
    assert ws.plan().returncode == 0
    ws.destroy()


def test_values_known_only_at_apply_inside_blocks_plan_consistently(tf_bin: Path, tf_home: Path, server: ServerProc,
                                                                     admin: Client, tmp_path: Path) -> None:
    """A role's logins and a bound_keypair token's rotate_after taken from another resource: the plan left the
    token's other blocks null while apply filled in their defaults ("Provider produced inconsistent final plan").
    OpenTofu only: terraform_data is newer than Terraform 1.0.3."""
    from machineid.model import keys

    env = {"MACHINEID_AUTH_SERVER": server.address, "MACHINEID_IDENTITY": str(server.admin_identity_path)}
    ws = Workspace.create(tf_bin / "tofu", tmp_path / "work", tf_home, env)
    bot = f"late-{int(time.monotonic_ns() % 10**9)}"
    server.ctl("bots", "add", bot, "--roles=access")
    public = keys.public_line(keys.new_private_key().public_key())
    ws.write(HEADER + f'''
resource "terraform_data" "later" {{
  input = {{ when = "2031-01-01T00:00:00Z", login = "deploy" }}
}}
resource "machineid_role" "late" {{
  name = "{bot}-role"
  allow {{
    logins = [terraform_data.later.output.login]
  }}
}}
resource "machineid_provision_token" "late" {{
  name        = "{bot}-key"
  join_method = "bound_keypair"
  bot_name    = "{bot}"
  bound_keypair {{
    onboarding {{
      initial_public_key = "{public}"
    }}
    rotate_after = terraform_data.later.output.when
  }}
}}
''')
    ws.init()
    ws.apply()
    token = admin.get_token(f"{bot}-key")
    assert token.spec.bound_keypair.rotate_after is not None and token.spec.bound_keypair.rotate_after.year == 2031
    assert admin.get_role(f"{bot}-role").spec.allow.logins == ["deploy"]
    assert ws.plan().returncode == 0
    ws.destroy()


STATE_ENCRYPTION = """
terraform {
  encryption {
    key_provider "pbkdf2" "k" {
      passphrase = "correct horse battery staple, long enough"
    }
    method "aes_gcm" "m" {
      keys = key_provider.pbkdf2.k
    }
    state {
      method = method.aes_gcm.m
    }
  }
}
"""


def node_config(node: str, *, adopted: str = "", run_as: str = "nobody") -> str:
    imported = f"""
resource "machineid_node" "adopted" {{
  name   = "{adopted}"
  addr   = "10.0.0.6:22"
  labels = {{ env = "dev" }}
}}
""" if adopted else ""
    return HEADER + STATE_ENCRYPTION + f"""
resource "machineid_node" "web" {{
  name          = "{node}"
  addr          = "10.0.0.5:22"
  labels        = {{ env = "prod" }}
  package_index = "https://pypi.example.com/simple"
  run_as        = "{run_as}"
}}
output "user_data" {{
  value     = machineid_node.web.user_data
  sensitive = true
}}
{imported}"""


@pytest.mark.parametrize("ws", ["tofu"], indirect=True)
def test_a_node_renders_its_setup_as_a_secret_drifts_and_imports(ws: Workspace, admin: Client,
                                                                 tmp_path: Path) -> None:
    """machineid_node with real OpenTofu: the user data holding the node's single-use token is in no plan, output,
    log or (encrypted) state in clear; the plan after apply is clean; a label changed on the cluster shows as
    drift; a node registered by hand is imported and plans clean."""
    import shlex

    import yaml

    from machineid.model import codec
    from machineid.model.resources import Node

    node, adopted = uniq(ws, "web"), uniq(ws, "adopted")
    ws.write(node_config(node))
    ws.init()
    log = tmp_path / "tf.log"
    traced = {"TF_LOG": "DEBUG", "TF_LOG_PATH": str(log)}
    applied = ws.apply(env=traced)
    [token] = [t.metadata.name for t in admin.list("token")
               if t.spec.node_name == node]  # type: ignore[union-attr]
    user_data = str(ws.outputs()["user_data"])
    setup = shlex.split(next(c for c in yaml.safe_load(user_data)["runcmd"] if " node setup " in c))
    assert setup[setup.index("--name") + 1] == node and token in user_data
    plan = ws.run("plan", "-detailed-exitcode", "-no-color", check=False, env=traced)
    assert plan.returncode == 0, plan.stdout + plan.stderr
    raw = (ws.directory / "terraform.tfstate").read_text()
    assert "encrypted_data" in raw
    for text in (applied.stdout + applied.stderr, plan.stdout + plan.stderr, log.read_text(), raw):
        assert token not in text
    # out of band: an admin relabels the node
    found = admin.get_node(node)
    found.metadata.labels = {"env": "dev"}
    admin.upsert(found)
    plan = ws.plan()
    assert plan.returncode == 2 and '"dev"' in plan.stdout and "update in-place" in plan.stdout, plan.stdout
    assert token not in plan.stdout and "forces replacement" not in plan.stdout
    ws.apply()
    assert admin.get_node(node).metadata.labels == {"env": "prod"} and ws.plan().returncode == 0
    # a setting of the rendering: the new user data is known in the plan, and shown as sensitive
    ws.write(node_config(node, run_as="sshd-helper"))
    plan = ws.plan()
    assert plan.returncode == 2 and "user_data" in plan.stdout and "(sensitive value)" in plan.stdout, plan.stdout
    assert token not in plan.stdout and "sshd-helper" in plan.stdout
    ws.apply()
    assert "--run-as sshd-helper" in str(ws.outputs()["user_data"])
    # a node registered by hand, imported
    admin.upsert(codec.decode(Node, {"metadata": {"name": adopted, "labels": {"env": "dev"}},
                                     "spec": {"addr": "10.0.0.6:22"}}))
    ws.write(node_config(node, adopted=adopted, run_as="sshd-helper"))
    ws.run("import", "-no-color", "machineid_node.adopted", adopted)
    plan = ws.plan()
    assert plan.returncode == 0, plan.stdout + plan.stderr
    ws.destroy()
    assert gone(admin, "node", node) and gone(admin, "node", adopted) and gone(admin, "token", token)


def lock_config(name: str, bot: str, message: str) -> str:
    return HEADER + f"""
resource "machineid_lock" "incident" {{
  name    = "{name}"
  message = "{message}"
  target {{
    bot = "{bot}"
  }}
}}
"""


def test_a_lock_stops_the_bot_drifts_imports_and_destroy_lifts_it(ws: Workspace, admin: Client,
                                                                   server: ServerProc) -> None:
    """machineid_lock with the real CLIs: apply locks the bot at once, the next plan is clean, a message edited by
    hand is drift, a lock made with `ctl lock` imports and plans clean, and destroy restores the bot's identity."""
    from machineid.model import codec
    from machineid.model.resources import Bot, Lock

    bot, name = uniq(ws, "locked"), uniq(ws, "incident")
    token = admin.create_bot(codec.decode(Bot, {"metadata": {"name": bot}, "spec": {"roles": ["access"]}})).token
    client = Client(server.address, join(server, token))
    client.list("node")
    ws.write(lock_config(name, bot, "key leaked"))
    ws.init()
    ws.apply()
    with pytest.raises(errors.PermissionDeniedError, match=f'locked by lock "{name}": key leaked'):
        client.list("node")
    assert ws.plan().returncode == 0
    found = admin.get_as(Lock, name)
    found.spec.message = "edited by hand"
    admin.upsert(found)
    plan = ws.plan()
    assert plan.returncode == 2 and "edited by hand" in plan.stdout and "update in-place" in plan.stdout, plan.stdout
    ws.apply()
    assert admin.get_as(Lock, name).spec.message == "key leaked"
    ws.destroy()
    client.list("node")  # lifted: the same identity works again
    # a lock made during an incident with the CLI, adopted into code
    run_cli("ctl", "--auth-server", admin.address, "--identity", ws.env["MACHINEID_IDENTITY"], "lock", "--bot", bot,
            "--name", name, "--message", "key leaked")
    ws.run("import", "-no-color", "machineid_lock.incident", name)
    assert ws.plan().returncode == 0
    ws.destroy()
    client.list("node")
    client.close()


def test_the_bot_instances_data_source_finds_agents_by_version_and_bot(ws: Workspace, admin: Client,
                                                                        server: ServerProc) -> None:
    """data "machineid_bot_instances" with the real CLIs: an agent that joined and renewed (with its heartbeat) is
    listed with its version and host; filters select it or not, as a CI job failing on old agents would use."""
    from machineid import __version__
    from machineid.api import certs
    from machineid.model.instances import Heartbeat

    bot = uniq(ws, "fleet")
    server.ctl("create", "-f", "-", "--force",
               input="kind: role\nmetadata: {name: fleet-r}\nspec: {allow: {logins: [x]}}\n")
    token = json.loads(server.ctl("bots", "add", bot, "--roles=fleet-r", "--format=json").stdout)["token"]
    key = certs.new_key()
    with Client(server.address, join(server, token)) as client:
        client.renew(certs.public_key_pem(key.public_key()), None, Heartbeat(version=__version__, hostname="web-7"))
    ws.write(HEADER + f"""
data "machineid_bot_instances" "mine" {{
  bot_name = "{bot}"
}}
data "machineid_bot_instances" "old" {{
  bot_name           = "{bot}"
  version_older_than = "{__version__}"
}}
output "hosts" {{ value = data.machineid_bot_instances.mine.instances[*].hostname }}
output "versions" {{ value = data.machineid_bot_instances.mine.instances[*].version }}
output "current" {{ value = data.machineid_bot_instances.mine.instances[*].current }}
output "old" {{ value = length(data.machineid_bot_instances.old.instances) }}
""")
    ws.init()
    ws.apply()
    out = ws.outputs()
    assert out["hosts"] == ["web-7"] and out["versions"] == [__version__] and out["current"] == [True]
    assert out["old"] == 0
