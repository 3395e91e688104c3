"""The Pulumi provider with the real engine (built by scripts/install-tools), a real cluster and the generated SDK.

Python programs run as Automation API inline programs (the examples' own files, or small programs here that use
the SDK the way a user would); YAML programs run with the plain `pulumi` CLI.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pulumi
import pulumi_machineid as machineid
import pytest
from pulumi import automation as auto

from machineid import __version__
from machineid.api.client import Client
from machineid.model import codec, errors
from machineid.model.resources import Node
from machineid.pulumi.engine import Engine, outputs_plain
from tests.conftest import ServerProc, run_cli
from tests.test_agent_ssh import ensure_login, ssh, start_sshd
from tests.test_cluster_api import join

ROOT = Path(__file__).resolve().parent.parent
# The Automation API leaves its inline program's event loop unclosed when the engine stops it after a failed
# preview (a Pulumi SDK matter, not ours); that must not turn expected failures into test errors.
pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")


@pytest.fixture()
def engine(tools_bin: Path, server: ServerProc, tmp_path: Path) -> Engine:
    return Engine(tools_bin, tmp_path / "pulumi-home", {
        "MACHINEID_AUTH_SERVER": server.address,
        "MACHINEID_IDENTITY": str(server.admin_identity_path),
    })


@pytest.fixture()
def admin(server: ServerProc) -> Iterator[Client]:
    with server.admin() as client:
        yield client


class Program:
    """A small program whose declarations a test changes between runs, like a user editing their code."""

    def __init__(self, engine: Engine, tmp: Path, name: str, build: Callable[[dict[str, Any]], None],
                 **params: Any) -> None:
        self.params = dict(params)
        work = tmp / name
        work.mkdir(exist_ok=True)
        self.stack = engine.inline_stack(name, "test", lambda: build(self.params), work)

    def up(self, **kw: Any) -> auto.UpResult:
        return self.stack.up(color="never", **kw)

    def preview(self, **kw: Any) -> auto.PreviewResult:
        return self.stack.preview(color="never", diff=True, **kw)

    def preview_fails(self, **kw: Any) -> str:
        with pytest.raises(auto.errors.CommandError) as exc:
            self.stack.preview(color="never", diff=True, **kw)
        return str(exc.value)

    def destroy(self) -> None:
        self.stack.destroy(color="never")


def refresh_preview(engine: Engine, program: Program) -> subprocess.CompletedProcess[str]:
    """`pulumi refresh --preview-only --expect-no-changes` (the Automation API adds --yes, which the CLI refuses)."""
    work = Path(program.stack.workspace.work_dir)
    return engine.cli("refresh", "--preview-only", "--expect-no-changes", "--diff", "--color", "never",
                      "--stack", "test", cwd=work, check=False)


def stack_export(engine: Engine, program: Program) -> str:
    return engine.cli("stack", "export", "--stack", "test", cwd=Path(program.stack.workspace.work_dir)).stdout


# ---------------------------------------------------------------- the quickstart example


def test_quickstart_example(engine: Engine, admin: Client, server: ServerProc, tmp_path: Path) -> None:
    st = engine.python_stack(ROOT / "examples" / "quickstart", "qs", {"destinationDir": str(tmp_path / "dest"),
                                                                      "dataDir": str(tmp_path / "data")})
    up = st.up(color="never")
    out = outputs_plain(up.outputs)
    assert up.summary.resource_changes == {"create": 3}
    assert out["botName"] == "robot" and out["joinMethod"] == "token"
    assert out["caPin"] == admin.ping().ca_pins[0]
    assert len(out["token"]) == 32
    assert f"token: {out['token']}" in out["agentConfig"] and f"auth_server: {server.address}" in out["agentConfig"]
    assert out["startCommand"].endswith("bot start --config /etc/machineid/bot-robot.yaml")
    assert "ExecStart=" + out["startCommand"] in out["systemdUnit"]
    # on the cluster, as `machineid ctl` sees it
    assert "robot" in server.ctl("bots", "ls").stdout
    role = admin.get_role("ci-deploy")
    assert role.spec.options.max_session_ttl == "8h"
    assert admin.get_user("bot-robot").spec.roles == ["bot-robot", "ci-deploy"]
    # secrets stay secret in the state and the outputs
    assert up.outputs["token"].secret and up.outputs["agentConfig"].secret
    exported = engine.cli("stack", "export", "--stack", "qs", cwd=Path(st.workspace.work_dir)).stdout
    assert out["token"] not in exported
    # nothing to do on a second look
    preview = st.preview(color="never", expect_no_changes=True)
    assert preview.change_summary == {"same": 3}
    st.destroy(color="never")
    for kind, name in (("role", "ci-deploy"), ("bot", "robot"), ("user", "bot-robot"), ("role", "bot-robot")):
        with pytest.raises(errors.NotFoundError):
            admin.get(kind, name)
    assert not [t for t in admin.list("token") if t.spec.bot_name == "robot"]  # type: ignore[union-attr]


def test_keypair_example(engine: Engine, admin: Client, server: ServerProc, tmp_path: Path) -> None:
    """examples/keypair: the stack holds no secret at all, the agent joins with the machine's key pair from the
    rendered config and ssh works, a re-run previews clean, and rotateAfter and recoveryLimit update the token in
    place."""
    from machineid.pulumi.values import SECRET_SIG

    data, dest = tmp_path / "data", tmp_path / "dest"
    login = ensure_login()
    node = start_sshd(server, "kpnode")
    public = run_cli("bot", "keypair", "create", "--data-dir", str(data)).stdout.strip()
    st = engine.python_stack(ROOT / "examples" / "keypair", "kp", {"publicKey": public, "destinationDir": str(dest),
                                                                   "dataDir": str(data), "login": login})
    try:
        up = st.up(color="never")
        assert up.summary.resource_changes == {"create": 4}  # with the stack
        out = outputs_plain(up.outputs)
        assert out["joinMethod"] == "bound_keypair" and not [k for k, o in up.outputs.items() if o.secret]
        exported = engine.cli("stack", "export", "--stack", "kp", cwd=Path(st.workspace.work_dir)).stdout
        assert SECRET_SIG not in exported and "ciphertext" not in exported
        assert "keypair-robot-key" in exported and public.split()[1] in exported
        config_file = tmp_path / "bot.yaml"
        config_file.write_text(str(out["agentConfig"]))
        joined = run_cli("bot", "start", "--config", str(config_file), "--oneshot", "--log-format", "text")
        assert "joined: bot keypair-robot generation 1" in joined.stderr, joined.stderr
        assert (dest / "identity").exists() and (dest / "key-cert.pub").exists()
        logged_in = ssh(dest, login, f"kpnode.{server.cluster_name}")
        assert logged_in.returncode == 0 and logged_in.stdout.strip() == login, logged_in.stderr
        assert admin.get_token("keypair-robot-key").status.bound_public_key == " ".join(public.split()[:2])
        preview = st.preview(color="never", expect_no_changes=True)
        assert preview.change_summary == {"same": 4}
        st.set_config("recoveryLimit", auto.ConfigValue("3"))
        st.set_config("rotateAfter", auto.ConfigValue("2031-01-01T00:00:00Z"))
        preview = st.preview(color="never", diff=True)
        assert preview.change_summary == {"update": 1, "same": 3}, preview.stdout
        assert "replace" not in preview.stdout
        st.up(color="never")
        token = admin.get_token("keypair-robot-key")
        assert token.spec.bound_keypair.recovery.limit == 3 and token.status.bound_public_key  # binding kept
        assert st.preview(color="never", expect_no_changes=True).change_summary == {"same": 4}
    finally:
        st.destroy(color="never")
        node.stop()
        server.ctl("nodes", "rm", "kpnode", check=False)
    with pytest.raises(errors.NotFoundError):
        admin.get_bot("keypair-robot")


def test_quickstart_yaml_example(engine: Engine, admin: Client, tmp_path: Path) -> None:
    project = tmp_path / "quickstart-yaml"
    shutil.copytree(ROOT / "examples" / "quickstart-yaml", project)
    engine.yaml_stack(project, "yamltest")
    try:
        up = engine.cli("up", "--yes", "--stack", "yamltest", "--color", "never", cwd=project)
        assert "3 created" in up.stdout or "+ 3 created" in up.stdout, up.stdout
        assert admin.get_role("ci-deploy").spec.allow.logins == ["{{internal.logins}}"]
        assert admin.get_bot("robot").spec.traits == {"logins": ["root"]}
        preview = engine.cli("preview", "--expect-no-changes", "--stack", "yamltest", "--color", "never", cwd=project,
                             check=False)
        assert preview.returncode == 0, preview.stdout + preview.stderr
        outputs = json.loads(engine.cli("stack", "output", "--json", "--stack", "yamltest", cwd=project).stdout)
        assert outputs["token"] == "[secret]" and outputs["botName"] == "robot"
    finally:
        engine.cli("destroy", "--yes", "--stack", "yamltest", cwd=project, check=False)
        engine.cli("stack", "rm", "--yes", "--force", "yamltest", cwd=project, check=False)
    with pytest.raises(errors.NotFoundError):
        admin.get_bot("robot")


# ---------------------------------------------------------------- diffs: update, replace, defaults


def _role_program(p: dict[str, Any]) -> None:
    options = machineid.RoleOptionsArgs(max_session_ttl=p["ttl"]) if p.get("ttl") else None
    role = machineid.Role("web", name=p.get("name", "e2e-web"),
                          allow=machineid.RoleConditionsArgs(logins=p["logins"], node_labels={"env": ["prod"]}),
                          options=options)
    pulumi.export("name", role.name)


def test_role_update_replace_and_default(engine: Engine, admin: Client, tmp_path: Path) -> None:
    prog = Program(engine, tmp_path, "roles", _role_program, logins=["ubuntu"], ttl="8h")
    prog.up()
    assert prog.preview(expect_no_changes=True).change_summary == {"same": 2}
    # changing the logins is an in-place update of exactly that field
    prog.params["logins"] = ["ubuntu", "deploy"]
    preview = prog.preview()
    assert preview.change_summary.get("update") == 1 and "replace" not in preview.change_summary
    assert "~ allow: {" in preview.stdout and "~ logins:" in preview.stdout and "+ [1]: \"deploy\"" in preview.stdout
    assert "nodeLabels" not in preview.stdout.split("~ allow: {")[1]
    prog.up()
    assert admin.get_role("e2e-web").spec.allow.logins == ["ubuntu", "deploy"]
    # removing an optional field is a diff back to the model's default
    prog.params["ttl"] = None
    preview = prog.preview()
    assert preview.change_summary.get("update") == 1
    assert re.search(r'maxSessionTtl\s*: "8h" => "30h"', preview.stdout), preview.stdout
    prog.up()
    assert admin.get_role("e2e-web").spec.options.max_session_ttl == "30h"
    # the name cannot change in place: a replacement
    prog.params["name"] = "e2e-web2"
    preview = prog.preview()
    assert preview.change_summary.get("replace") == 1, preview.stdout
    prog.up()
    with pytest.raises(errors.NotFoundError):
        admin.get_role("e2e-web")
    assert admin.get_role("e2e-web2")
    prog.destroy()
    with pytest.raises(errors.NotFoundError):
        admin.get_role("e2e-web2")


def _minimal_program(p: dict[str, Any]) -> None:
    role = machineid.Role("minimal-role")
    bot = machineid.Bot("minimal-bot", roles=[role.name])
    token = machineid.ProvisionToken("minimal-token", bot_name=bot.name, ttl=p.get("ttl", "1h"))
    pulumi.export("token", token.name)


def test_required_fields_only_preview_clean(engine: Engine, admin: Client, tmp_path: Path) -> None:
    prog = Program(engine, tmp_path, "minimal", _minimal_program)
    # a fresh preview: the bot's role comes from a role not created yet (an unknown value during preview)
    assert prog.preview().change_summary == {"create": 4}
    prog.up()
    assert prog.preview(expect_no_changes=True).change_summary == {"same": 4}
    assert refresh_preview(engine, prog).returncode == 0
    assert prog.preview(refresh=True, expect_no_changes=True).change_summary == {"same": 4}
    prog.destroy()
    assert not any(r.metadata.name == "minimal-role" for r in admin.list("role"))


def test_expired_token_plans_a_replacement(engine: Engine, admin: Client, tmp_path: Path) -> None:
    """The provider compares a token's expiry with its own clock: the checkpoint's expiry is moved into the past
    instead of waiting for it (a preview reads the checkpoint as it is)."""
    prog = Program(engine, tmp_path, "expiring", _minimal_program, ttl="30m")
    first = outputs_plain(prog.up().outputs)["token"]
    exported = prog.stack.export_stack()
    [token] = [r for r in exported.deployment["resources"] if r["type"] == "machineid:index:ProvisionToken"]
    token["outputs"]["tokenExpires"] = "2001-01-01T00:00:00Z"
    prog.stack.import_stack(exported)
    preview = prog.preview()
    assert preview.change_summary.get("replace") == 1, preview.stdout
    second = outputs_plain(prog.up().outputs)["token"]
    assert second != first
    assert admin.get_token(second).metadata.expires is not None
    with pytest.raises(errors.NotFoundError):
        admin.get_token(first)
    prog.destroy()


# ---------------------------------------------------------------- drift, refresh and import


def _bot_program(p: dict[str, Any]) -> None:
    role = machineid.Role("drift-role", name="drift-role",
                          allow=machineid.RoleConditionsArgs(logins=["{{internal.logins}}"],
                                                             node_labels={"*": ["*"]}))
    bot = machineid.Bot("drift-bot", name="drift-bot", roles=[role.name, *p.get("extra_roles", [])],
                        traits={"logins": p.get("logins", ["ci"])}, token_rotation=p.get("rotation", 0))
    pulumi.export("token", bot.token)


def test_drift_is_detected_and_repaired(engine: Engine, admin: Client, server: ServerProc, tmp_path: Path) -> None:
    prog = Program(engine, tmp_path, "drift", _bot_program)
    prog.up()
    # out of band: an admin adds a login to the role with machineid ctl
    doc = server.ctl("get", "role/drift-role").stdout.replace("- '{{internal.logins}}'",
                                                               "- '{{internal.logins}}'\n    - intruder")
    server.ctl("create", "-f", "-", input=doc)
    refresh = refresh_preview(engine, prog)
    assert refresh.returncode != 0 and "intruder" in refresh.stdout and "logins" in refresh.stdout
    assert "intruder" in prog.preview_fails(refresh=True, expect_no_changes=True)
    prog.up(refresh=True)
    assert admin.get_role("drift-role").spec.allow.logins == ["{{internal.logins}}"]
    assert refresh_preview(engine, prog).returncode == 0
    # out of band: the bot's traits change, then the bot is removed
    bot = admin.get_bot("drift-bot")
    bot.spec.traits = {"logins": ["root"]}
    admin.update_bot(bot)
    refresh = refresh_preview(engine, prog)
    assert refresh.returncode != 0 and "traits" in refresh.stdout and "root" in refresh.stdout
    admin.delete("bot", "drift-bot")
    refresh = refresh_preview(engine, prog)
    assert refresh.returncode != 0 and "drift-bot" in refresh.stdout and "delete" in refresh.stdout
    assert prog.preview_fails(refresh=True, expect_no_changes=True)
    prog.up(refresh=True)
    assert admin.get_bot("drift-bot").spec.traits == {"logins": ["ci"]}
    prog.destroy()


def test_bot_roles_traits_update_in_place_and_token_rotation(engine: Engine, admin: Client, tmp_path: Path) -> None:
    prog = Program(engine, tmp_path, "inplace", _bot_program)
    token1 = outputs_plain(prog.up().outputs)["token"]
    prog.params.update(extra_roles=["auditor"], logins=["ci", "deploy"])
    preview = prog.preview()
    assert preview.change_summary.get("update") == 1 and "replace" not in preview.change_summary, preview.stdout
    up = prog.up()
    assert outputs_plain(up.outputs)["token"] == token1  # roles and traits change without a new token
    bot = admin.get_bot("drift-bot")
    assert bot.spec.roles == ["drift-role", "auditor"] and bot.spec.traits == {"logins": ["ci", "deploy"]}
    assert admin.get_user("bot-drift-bot").spec.roles == ["bot-drift-bot", "drift-role", "auditor"]
    # re-onboarding from code: a new join token without deleting the bot
    prog.params["rotation"] = 1
    token2 = outputs_plain(prog.up().outputs)["token"]
    assert token2 != token1 and admin.get_token(token2).spec.bot_name == "drift-bot"
    assert admin.get_bot("drift-bot").metadata.created == bot.metadata.created
    prog.destroy()


def _imported_program(p: dict[str, Any]) -> None:
    opts = pulumi.ResourceOptions(import_="adopted-py") if p.get("adopt") else None
    machineid.Role("adopted", name="adopted-py", description="made by hand",
                   allow=machineid.RoleConditionsArgs(logins=["ops"]), opts=opts)


ADOPTED_YAML = """name: adopt-yaml
runtime: yaml
resources:
  adopted:
    type: machineid:Role
    properties:
      name: adopted
      description: made by hand
      allow:
        logins: [ops]
"""


def _ctl_role(server: ServerProc, name: str) -> None:
    server.ctl("create", "-f", "-", input=f"kind: role\nversion: v5\nmetadata:\n  name: {name}\n  description: made "
               "by hand\nspec:\n  allow:\n    logins: [ops]\n")


def test_pulumi_import_adopts_a_role(engine: Engine, admin: Client, server: ServerProc, tmp_path: Path) -> None:
    """`pulumi import` (the CLI, on a YAML project: the Python language host cannot be built here)."""
    _ctl_role(server, "adopted")
    project = tmp_path / "adopt-yaml"
    project.mkdir()
    (project / "Pulumi.yaml").write_text(ADOPTED_YAML)
    engine.yaml_stack(project, "test")
    imported = engine.cli("import", "machineid:index:Role", "adopted", "adopted", "--yes", "--generate-code=false",
                          "--protect=false",
                          "--stack", "test", "--color", "never", cwd=project)
    assert "1 imported" in imported.stdout, imported.stdout
    preview = engine.cli("preview", "--expect-no-changes", "--stack", "test", "--color", "never", cwd=project,
                         check=False)
    assert preview.returncode == 0, preview.stdout + preview.stderr
    engine.cli("destroy", "--yes", "--stack", "test", cwd=project)
    with pytest.raises(errors.NotFoundError):
        admin.get_role("adopted")


def test_import_option_adopts_a_role(engine: Engine, admin: Client, server: ServerProc, tmp_path: Path) -> None:
    """The same from Python code, with the `import_` resource option."""
    _ctl_role(server, "adopted-py")
    prog = Program(engine, tmp_path, "adopt", _imported_program, adopt=True)
    up = prog.up()
    assert up.summary.resource_changes == {"import": 1, "create": 1}  # the role, and the stack itself
    prog.params["adopt"] = False
    assert prog.preview(expect_no_changes=True).change_summary == {"same": 2}
    prog.destroy()
    with pytest.raises(errors.NotFoundError):
        admin.get_role("adopted-py")


# ---------------------------------------------------------------- bad input fails at preview, writes nothing


def _bad_program(p: dict[str, Any]) -> None:
    if p["case"] == "role":
        machineid.Bot("bad-bot", name="bad-bot", roles=["no-such-role"])
    elif p["case"] == "arn":
        machineid.ProvisionToken("bad-token", name="bad-iam", join_method="iam", bot_name="x",
                                 allow=[machineid.TokenRuleArgs(aws_account="111111111111", aws_arn="arn:nope")])
    elif p["case"] == "ttl":
        machineid.Bot("bad-ttl", name="bad-ttl", roles=["access"], token_ttl="-5m")


@pytest.mark.parametrize(("case", "expected"), [
    ("role", ("property roles[0]", 'role "no-such-role" does not exist on the cluster')),
    ("arn", ("property allow[0].awsArn", "write an ARN like")),
    ("ttl", ("property tokenTtl", "is too short")),
])
def test_bad_input_fails_at_preview(engine: Engine, admin: Client, tmp_path: Path, case: str,
                                    expected: tuple[str, str]) -> None:
    prog = Program(engine, tmp_path, f"bad-{case}", _bad_program, case=case)
    message = prog.preview_fails()
    assert all(x in message for x in expected), message
    with pytest.raises(auto.errors.CommandError):
        prog.up()
    names = {b.metadata.name for b in admin.list("bot")} | {t.metadata.name for t in admin.list("token")}
    assert not names & {"bad-bot", "bad-iam", "bad-ttl"}


def test_missing_provider_address_fails_at_preview(tools_bin: Path, tmp_path: Path) -> None:
    engine = Engine(tools_bin, tmp_path / "home", {"MACHINEID_AUTH_SERVER": "", "MACHINEID_IDENTITY": ""})
    prog = Program(engine, tmp_path, "noconfig", _role_program, logins=["x"])
    message = prog.preview_fails()
    assert "address" in message and "machineid:address" in message and "MACHINEID_AUTH_SERVER" in message



# One resource a program: the engine stops at the first resource that fails its check.
BAD_VALUES = {
    "ttl": ("type: machineid:Role\nproperties:\n  options:\n    maxSessionTtl: 5 parsecs\n",
            'property options.maxSessionTtl: "5 parsecs" is not a duration; write it like "1h"'),
    "login": ("type: machineid:Role\nproperties:\n  allow:\n    logins: [ubuntu, \"Bad Login!\"]\n",
              'property allow.logins[1]: "Bad Login!" is not valid: a login is a POSIX user name'),
    "account": ("type: machineid:ProvisionToken\nproperties:\n  joinMethod: iam\n  botName: robot\n  allow:\n"
                "    - awsAccount: \"12345\"\n",
                'property allow[0].awsAccount: "12345" is not valid: an AWS account ID is exactly 12 digits'),
    "secret": ("type: machineid:ProvisionToken\nproperties:\n  botName: robot\n  name:\n"
               "    fn::secret: short-secret-token-name\n",
               "property name value [secret]: a token-method token's name is its secret"),
}


def test_bad_values_are_shown_with_their_property_path(engine: Engine, tmp_path: Path) -> None:
    """The engine printed `value {<nil>}` for a failure below the top level, and a secret top-level value in
    clear; the messages name the path and the value the program gave, and keep a secret one hidden."""
    for case, (resource, expected) in BAD_VALUES.items():
        project = tmp_path / case
        project.mkdir()
        body = "".join(f"    {line}\n" for line in resource.splitlines())
        (project / "Pulumi.yaml").write_text(f"name: bad-{case}\nruntime: yaml\nresources:\n  thing:\n{body}")
        engine.yaml_stack(project, "test")
        for command in [("preview",), ("up", "--yes")] if case == "ttl" else [("preview",)]:
            proc = engine.cli(*command, "--stack", "test", "--color", "never", cwd=project, check=False)
            output = proc.stdout + proc.stderr
            assert proc.returncode != 0, output
            assert "{<nil>}" not in output and "short-secret-token-name" not in output, output
            assert f"resource 'thing' has a problem: {expected}" in output, output


# ---------------------------------------------------------------- `machineid pulumi install`


INSTALLED_YAML = """name: installed
runtime: yaml
resources:
  role:
    type: machineid:Role
    properties:
      name: installed-role
      allow:
        logins: [ops]
"""


def test_pulumi_install_puts_the_plugin_in_the_plugin_cache(tools_bin: Path, server: ServerProc,
                                                            tmp_path: Path) -> None:
    """Installed with the documented command, the plugin is one `pulumi plugin ls` lists, and the engine runs it
    from the cache: the venv's bin directory is not on PATH, and there is no `from $PATH` warning."""
    home = tmp_path / "pulumi-home"
    path = os.pathsep.join([str(tools_bin), "/usr/local/bin", "/usr/bin", "/bin"])
    assert shutil.which("pulumi-resource-machineid", path=path) is None
    installed = run_cli("pulumi", "install", "--pulumi-home", str(home), env={"PATH": path})
    assert installed.stdout.startswith(f"installed the Pulumi resource plugin machineid {__version__}\n")
    assert f"PULUMI_HOME={home} pulumi plugin ls" in installed.stdout and "PATH" not in installed.stdout
    again = run_cli("pulumi", "install", "--pulumi-home", str(home), env={"PATH": path})
    assert again.stdout.startswith("already installed: the Pulumi resource plugin machineid")

    env = {k: v for k, v in os.environ.items() if not k.startswith(("PULUMI_", "MACHINEID_"))}
    env.update(PATH=path, PULUMI_HOME=str(home), PULUMI_BACKEND_URL=f"file://{home / 'state'}",
               PULUMI_CONFIG_PASSPHRASE="test-only", PULUMI_SKIP_UPDATE_CHECK="true",
               PULUMI_DIY_BACKEND_NO_LEGACY_WARNING="true", MACHINEID_AUTH_SERVER=server.address,
               MACHINEID_IDENTITY=str(server.admin_identity_path))
    (home / "state").mkdir()
    project = tmp_path / "installed"
    project.mkdir()
    (project / "Pulumi.yaml").write_text(INSTALLED_YAML)

    def pulumi(*args: str) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run([str(tools_bin / "pulumi"), *args, "--non-interactive"], cwd=project, env=env,
                              capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        return proc

    listed = pulumi("plugin", "ls").stdout.splitlines()
    assert any(line.split()[:3] == ["machineid", "resource", __version__] for line in listed), listed
    pulumi("stack", "init", "test", "--secrets-provider", "passphrase")
    preview = pulumi("preview", "--stack", "test", "--color", "never")
    output = preview.stdout + preview.stderr
    assert "machineid:index:Role" in output and "+ 2 to create" in output, output
    assert "from $PATH" not in output, output


# ---------------------------------------------------------------- renamed roles and spent tokens


def _rename_program(p: dict[str, Any]) -> None:
    role = machineid.Role("held", name=p["role"], allow=machineid.RoleConditionsArgs(logins=["ci"]))
    machineid.Bot("holder", name="rename-bot", roles=[role.name])


def test_renaming_a_role_its_bot_holds_moves_the_bot(engine: Engine, admin: Client, tmp_path: Path) -> None:
    """Pulumi creates a renamed role's replacement first: the bot moves to it, then the old role goes."""
    prog = Program(engine, tmp_path, "rename", _rename_program, role="rename-a")
    prog.up()
    prog.params["role"] = "rename-b"
    preview = prog.preview()
    assert preview.change_summary.get("replace") == 1 and preview.change_summary.get("update") == 1, preview.stdout
    prog.up()
    assert admin.get_bot("rename-bot").spec.roles == ["rename-b"]
    with pytest.raises(errors.NotFoundError):
        admin.get_role("rename-a")
    assert prog.preview(expect_no_changes=True).change_summary == {"same": 3}
    prog.destroy()


def _spent_program(p: dict[str, Any]) -> None:
    role = machineid.Role("spent-role", name="spent-role")
    bot = machineid.Bot("spent-bot", name="spent-bot", roles=[role.name])
    token = machineid.ProvisionToken("spent-token", bot_name=bot.name, ttl=p.get("ttl", "1h"))
    pulumi.export("token", token.name)
    pulumi.export("used", token.used)


def test_a_token_its_bot_joined_with_stays_used_and_a_change_replaces_it(engine: Engine, admin: Client,
                                                                         server: ServerProc, tmp_path: Path) -> None:
    """The cluster deletes a single-use token at its bot's join: a refresh keeps it (used), not a new token."""
    prog = Program(engine, tmp_path, "spent", _spent_program)
    first = outputs_plain(prog.up().outputs)["token"]
    join(server, first)
    up = prog.up(refresh=True)
    assert outputs_plain(up.outputs)["used"] is True and outputs_plain(up.outputs)["token"] == first
    assert "create" not in (up.summary.resource_changes or {}), up.summary.resource_changes
    assert prog.preview(expect_no_changes=True).change_summary == {"same": 4}
    prog.params["ttl"] = "2h"  # changed later: a fresh token replaces the spent one
    assert prog.preview().change_summary.get("replace") == 1
    second = outputs_plain(prog.up().outputs)["token"]
    assert second != first and admin.get_token(second).spec.bot_name == "spent-bot"
    prog.destroy()


# ---------------------------------------------------------------- nodes


def _node_program(p: dict[str, Any]) -> None:
    machineid.Role("node-web", name="e2e-node-web",
                   allow=machineid.RoleConditionsArgs(logins=["deploy"], node_labels={"env": ["prod"]}))
    node = machineid.Node("web", name="e2e-web-1", addr="10.0.0.5:22", labels={"env": "prod"},
                          package_index="https://pypi.example.com/simple", token_rotation=p.get("rotation", 0),
                          run_as=p.get("run_as", "nobody"))
    pulumi.export("userData", node.user_data)
    pulumi.export("token", node.token)
    if p.get("adopt") is not None:
        opts = pulumi.ResourceOptions(import_="e2e-adopted") if p["adopt"] else None
        machineid.Node("adopted", name="e2e-adopted", addr="10.0.0.6:22", labels={"env": "dev"}, opts=opts)


def test_a_node_renders_its_setup_as_a_secret_drifts_and_imports(engine: Engine, admin: Client,
                                                                 tmp_path: Path) -> None:
    """The Node resource with the real engine: its cloud-init user data (holding the node's single-use token) is a
    secret in the outputs, the state and the diffs; a second preview is clean; a label changed on the cluster is
    drift; a node made by hand is adopted with `import_`."""
    import shlex

    import yaml

    prog = Program(engine, tmp_path, "nodes", _node_program)
    up = prog.up()
    assert up.outputs["userData"].secret and up.outputs["token"].secret
    out = outputs_plain(up.outputs)
    token = out["token"]
    assert admin.get_token(token).spec.node_name == "e2e-web-1"
    data = yaml.safe_load(out["userData"])
    setup = shlex.split(next(c for c in data["runcmd"] if " node setup " in c))
    assert setup[setup.index("--name") + 1] == "e2e-web-1" and "--join" in setup
    assert token not in stack_export(engine, prog)  # encrypted in the state
    assert prog.preview(expect_no_changes=True).change_summary == {"same": 3}
    # out of band: an admin relabels the node
    node = admin.get_node("e2e-web-1")
    node.metadata.labels = {"env": "dev"}
    admin.upsert(node)
    refresh = refresh_preview(engine, prog)
    assert refresh.returncode != 0 and "labels" in refresh.stdout and "dev" in refresh.stdout, refresh.stdout
    prog.up(refresh=True)
    assert admin.get_node("e2e-web-1").metadata.labels == {"env": "prod"}
    assert refresh_preview(engine, prog).returncode == 0
    # a setting of the rendering: an update in place, the new user data shown only as a secret
    prog.params["run_as"] = "sshd-helper"
    preview = prog.preview()
    assert preview.change_summary.get("update") == 1 and token not in preview.stdout, preview.stdout
    up = prog.up(diff=True)
    assert re.search(r"userData\s*: \[secret\]", up.stdout) and token not in up.stdout, up.stdout
    assert "--run-as sshd-helper" in outputs_plain(up.outputs)["userData"]
    # a new token: the diff shows neither token, and the old one is gone from the cluster
    prog.params["rotation"] = 1
    preview = prog.preview()
    assert preview.change_summary.get("update") == 1 and token not in preview.stdout, preview.stdout
    second = outputs_plain(prog.up().outputs)["token"]
    assert second != token and second not in stack_export(engine, prog)
    with pytest.raises(errors.NotFoundError):
        admin.get_token(token)
    # a node registered by hand, adopted
    admin.upsert(codec.decode(Node, {"metadata": {"name": "e2e-adopted", "labels": {"env": "dev"}},
                                     "spec": {"addr": "10.0.0.6:22"}}))
    prog.params["adopt"] = True
    assert prog.up().summary.resource_changes == {"import": 1, "same": 3}
    prog.params["adopt"] = False
    assert prog.preview(expect_no_changes=True).change_summary == {"same": 4}
    prog.destroy()
    for name in ("e2e-web-1", "e2e-adopted"):
        with pytest.raises(errors.NotFoundError):
            admin.get_node(name)
    with pytest.raises(errors.NotFoundError):
        admin.get_token(second)


def _lock_program(p: dict[str, Any]) -> None:
    if p.get("locked"):
        machineid.Lock("incident", name="e2e-incident", message=p.get("message", "key leaked"),
                       target=machineid.LockTargetArgs(bot="e2e-locked-bot"))


def test_a_lock_declared_in_code_stops_the_bot_and_removing_it_lifts_it(engine: Engine, admin: Client,
                                                                       server: ServerProc, tmp_path: Path) -> None:
    """Lock with the real engine: `up` locks the bot at once (its identity is refused with the lock's message),
    the next preview is clean, a message changed on the cluster is drift, and removing the lock from the program
    restores the bot's identity without a new join."""
    from machineid.model.resources import Bot, Lock

    token = admin.create_bot(codec.decode(Bot, {"metadata": {"name": "e2e-locked-bot"},
                                                "spec": {"roles": ["access"]}})).token
    bot = Client(server.address, join(server, token))
    bot.list("node")
    prog = Program(engine, tmp_path, "locks", _lock_program, locked=True)
    prog.up()
    with pytest.raises(errors.PermissionDeniedError, match='locked by lock "e2e-incident": key leaked'):
        bot.list("node")
    assert prog.preview(expect_no_changes=True).change_summary == {"same": 2}
    found = admin.get_as(Lock, "e2e-incident")
    found.spec.message = "edited by hand"
    admin.upsert(found)
    refresh = refresh_preview(engine, prog)
    assert refresh.returncode != 0 and "edited by hand" in refresh.stdout, refresh.stdout
    prog.up(refresh=True)
    assert admin.get_as(Lock, "e2e-incident").spec.message == "key leaked"
    prog.params["locked"] = False
    prog.up()
    with pytest.raises(errors.NotFoundError):
        admin.get_as(Lock, "e2e-incident")
    bot.list("node")  # the same identity works again (a lock is checked at every call, at most a second old)
    bot.close()
    prog.destroy()


def test_get_bot_instances_lists_agents_with_their_heartbeat(engine: Engine, admin: Client, server: ServerProc,
                                                             tmp_path: Path) -> None:
    """getBotInstances through the real engine: an agent's version and host as it reported them."""
    from machineid.api import certs
    from machineid.model.instances import Heartbeat
    from machineid.model.resources import Bot

    token = admin.create_bot(codec.decode(Bot, {"metadata": {"name": "e2e-fleet-bot"},
                                                "spec": {"roles": ["access"]}})).token
    key = certs.new_key()
    with Client(server.address, join(server, token)) as bot:
        bot.renew(certs.public_key_pem(key.public_key()), None, Heartbeat(version=__version__, hostname="web-9"))

    def program(p: dict[str, Any]) -> None:
        found = machineid.get_bot_instances(bot_name="e2e-fleet-bot")
        pulumi.export("hosts", [i.hostname for i in found.instances])
        pulumi.export("old", len(machineid.get_bot_instances(bot_name="e2e-fleet-bot",
                                                             version_older_than=__version__).instances))

    up = Program(engine, tmp_path, "fleet", program).up()
    assert outputs_plain(up.outputs) == {"hosts": ["web-9"], "old": 0}
