"""The Node resource in the provider core, against a cluster in this process (tests/inprocess_client.py): its
join token, the rendered setup (cloud-init user data and a shell script, read as cloud-init and sh will read
them), drift, import, token rotation and delete; and how both adapters declare its secrets. The setup's commands
(`machineid node setup`, `node start`) are other parts' to run: here their command lines are checked."""

from __future__ import annotations

import shlex
import subprocess
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from machineid import __version__
from machineid.cluster import node_status
from machineid.iac.core import Core, State
from machineid.iac.resource import NODE, PROVISION_TOKEN
from machineid.iac.unknown import UNKNOWN
from machineid.model import codec
from machineid.model.errors import NotFoundError, PermissionDeniedError, ValidationError
from machineid.model.resources import Node, ProvisionToken, token_id
from tests.inprocess import Clock, new_cluster
from tests.inprocess import admin as admin_caller
from tests.inprocess_client import InProcessClient
from tests.test_iac_core import core_for

INDEX = "https://pypi.example.com/simple"
TOKEN_FILE = "/etc/machineid/join-token"


@pytest.fixture()
def clock() -> Clock:
    return Clock()


@pytest.fixture()
def client(tmp_path: Path, clock: Clock) -> InProcessClient:
    cluster = new_cluster(tmp_path, clock)
    return InProcessClient(cluster, admin_caller(cluster))


@pytest.fixture()
def core(client: InProcessClient, clock: Clock) -> Iterator[Core]:
    c = core_for(client, clock)
    yield c
    c.close()


def checked(core: Core, **given: Any) -> dict[str, Any]:
    values = {"name": "web-1", "addr": "10.0.0.5:22", "labels": {"env": "prod"}, "package_index": INDEX, **given}
    result = core.check(NODE, values)
    assert not result.violations, result.violations
    return result.inputs


def cloud_config(text: str) -> dict[str, Any]:
    assert text.startswith("#cloud-config\n"), text  # cloud-init reads the file as cloud-config only with this line
    data: dict[str, Any] = yaml.safe_load(text)
    return data


def setup_line(commands: list[str]) -> list[str]:
    """The `machineid node setup` command among the setup's shell commands, as sh splits it."""
    [line] = [c for c in commands if " node setup " in c]
    return shlex.split(line)


def script_commands(script: str) -> list[str]:
    """The script's command lines outside its here-documents."""
    out, end = [], ""
    for line in script.splitlines():
        if end:
            end = "" if line == end else end
            continue
        if "<<'" in line:
            end = line.split("<<'")[1].rstrip("'")
        if line and not line.startswith("#"):
            out.append(line)
    return out


def heredoc(script: str, end: str) -> str:
    return script.split(f"<<'{end}'\n")[1].split(f"\n{end}\n")[0]


# ---------------------------------------------------------------- the rendered setup


def test_user_data_installs_joins_with_the_token_file_and_starts_the_agent(core: Core, client: InProcessClient) -> None:
    st = core.create(NODE, checked(core, run_as="sshprincipals"))
    token = st.outputs["token"]
    pin = client.ping().ca_pins[0]
    data = cloud_config(st.outputs["user_data"])
    files = {f["path"]: f for f in data["write_files"]}
    assert files[TOKEN_FILE]["content"].strip() == token and files[TOKEN_FILE]["permissions"] == "0600"
    unit = files["/etc/systemd/system/machineid-node.service"]["content"]
    assert "ExecStart=/usr/local/bin/machineid node start\n" in unit and "WantedBy=multi-user.target" in unit
    run = data["runcmd"]
    assert run[0] == "set -e"  # a failed install stops the setup
    install = run[1]
    assert f"--index-url {INDEX} machineid=={__version__}" in install and "/usr/local/bin/machineid" in install
    assert setup_line(run) == [
        "/usr/local/bin/machineid", "node", "setup", "--auth-server", client.address, "--ca-pin", pin,
        "--name", "web-1", "--join-method", "token", "--token", TOKEN_FILE, "--run-as", "sshprincipals", "--join"]
    assert run.index(install) < run.index(next(c for c in run if " node setup " in c)) \
        < run.index("systemctl enable --now machineid-node.service")
    # the token is in the root-only file, never on a command line (other users can read the process table)
    assert not [c for c in run if token in c]


def test_the_setup_script_is_the_same_setup_in_sh(core: Core, client: InProcessClient) -> None:
    st = core.create(NODE, checked(core))
    script, token = st.outputs["setup_script"], st.outputs["token"]
    assert script.startswith("#!/bin/sh\n")
    assert subprocess.run(["sh", "-n"], input=script, text=True, capture_output=True).returncode == 0
    assert heredoc(script, "MACHINEID_JOIN_TOKEN") == token
    data = cloud_config(st.outputs["user_data"])
    unit = next(f["content"] for f in data["write_files"] if f["path"].endswith(".service"))
    assert heredoc(script, "MACHINEID_UNIT") + "\n" == unit
    commands = script_commands(script)
    assert commands[0] == "set -e" and "install -d -m 0755 /etc/machineid" in commands
    assert "(umask 077 && cat > /etc/machineid/join-token) <<'MACHINEID_JOIN_TOKEN'" in commands
    assert [c for c in commands if c in data["runcmd"]] == data["runcmd"]  # the same commands, in the same order
    assert setup_line(commands) == setup_line(data["runcmd"])
    assert not [c for c in commands if token in c]


def test_an_iam_node_names_its_token_and_holds_no_token_file(core: Core, client: InProcessClient) -> None:
    client.upsert(codec.decode(ProvisionToken, {"metadata": {"name": "web-iam"}, "spec": {
        "roles": ["Node"], "node_name": "web-1", "join_method": "iam",
        "allow": [{"aws_account": "123456789012"}]}}))
    st = core.create(NODE, checked(core, join_method="iam", token_name="web-iam", install_command=":"))
    assert st.outputs["token"] == "web-iam"
    assert not [t for t in client.list("token") if t.metadata.name != "web-iam"]  # none was created
    data = cloud_config(st.outputs["user_data"])
    assert [f["path"] for f in data["write_files"]] == ["/etc/systemd/system/machineid-node.service"]
    assert data["runcmd"][1] == ":"  # the image has machineid: the given install command, as given
    argv = setup_line(data["runcmd"])
    assert argv[argv.index("--join-method") + 1] == "iam" and argv[argv.index("--token") + 1] == "web-iam"
    assert "MACHINEID_JOIN_TOKEN" not in st.outputs["setup_script"]


def test_without_a_package_index_the_setup_uses_the_nodes_pip_index_or_stops() -> None:
    """Never the public index by default: the name machineid there is not this project's."""
    from machineid.iac import node_setup

    install = node_setup.commands(node_setup.NodeSetupArgs(name="n", auth_server="a:1", token="t"))[0]
    assert "--index-url" not in install and "pip config get global.index-url" in install and "exit 1" in install
    assert subprocess.run(["sh", "-n", "-c", install], capture_output=True).returncode == 0


@pytest.mark.parametrize(("given", "path", "reason"), [
    ({"token_name": "some-token"}, ("token_name",), "applies to join_method iam or bound_keypair"),
    ({"join_method": "bound_keypair"}, ("token_name",), "is required for join_method bound_keypair"),
    ({"join_method": "github", "token_name": "x"}, ("join_method",), "one of"),
    ({"package_index": "http://pypi.example.com/simple"}, ("package_index",), "https://"),
    ({"package_index": "https://user:pw@pypi.example.com/simple"}, ("package_index",), "without credentials"),
    ({"run_as": "{{internal.logins}}"}, ("run_as",), "POSIX user name"),
    ({"agent_path": "bin/machineid"}, ("agent_path",), "absolute path"),
])
def test_bad_node_settings_are_refused_naming_the_property(core: Core, given: dict[str, Any], path: tuple[str, ...],
                                                          reason: str) -> None:
    result = core.check(NODE, {"name": "web-1", "addr": "10.0.0.5:22", **given})
    assert [(v.path, reason in v.reason) for v in result.violations] == [(path, True)], result.violations


def test_a_named_token_must_be_a_node_token_of_this_node(core: Core, client: InProcessClient) -> None:
    client.upsert(codec.decode(ProvisionToken, {"metadata": {"name": "other-node"}, "spec": {
        "roles": ["Node"], "node_name": "web-2", "join_method": "iam", "allow": [{"aws_account": "123456789012"}]}}))
    for name, said in (("missing", 'token "missing" does not exist'), ("other-node", "joins node web-2, not node "
                                                                                    "web-1")):
        result = core.check(NODE, {"name": "web-1", "addr": "10.0.0.5:22", "join_method": "iam", "token_name": name})
        assert [v.path for v in result.violations] == [("token_name",)] and said in result.violations[0].reason


# ---------------------------------------------------------------- lifecycle


def test_create_makes_a_single_use_node_token_and_delete_takes_it_away(core: Core, client: InProcessClient,
                                                                       clock: Clock) -> None:
    st = core.create(NODE, checked(core, token_ttl="2h"))
    token = client.get_token(st.outputs["token"])
    assert token.spec.roles == ["Node"] and token.spec.node_name == "web-1" and token.spec.join_method == "token"
    assert token.metadata.expires == clock.now + timedelta(hours=2)
    node = client.get_node("web-1")
    assert node.metadata.labels == {"env": "prod"} and node.spec.addr == "10.0.0.5:22"
    assert st.outputs["generation"] == 0 and st.outputs["last_heartbeat"] is None  # the cluster's status
    core.delete(NODE, st.id, st.outputs)
    for kind, name in (("node", "web-1"), ("token", token.metadata.name)):
        with pytest.raises(NotFoundError):
            client.get(kind, name)


def test_a_node_name_taken_on_the_cluster_says_how_to_import(core: Core, client: InProcessClient) -> None:
    client.upsert(Node(metadata=codec.decode(Node, {"metadata": {"name": "web-1"}}).metadata,
                       spec=codec.decode(Node, {"spec": {"addr": "10.0.0.9:22"}}).spec))
    with pytest.raises(Exception, match="already exists on the cluster; adopt it with import node web-1"):
        core.create(NODE, checked(core))
    assert not client.list("token")  # no token for a node that was not created


def test_a_failed_token_leaves_no_half_made_node(core: Core, client: InProcessClient) -> None:
    """A named token that went away between plan and apply: the node is not left behind for the next apply."""
    inputs = core.check(NODE, {"name": "web-1", "addr": "10.0.0.5:22", "join_method": "iam",
                               "token_name": "gone-meanwhile"}, references=False).inputs
    with pytest.raises(NotFoundError):
        core.create(NODE, inputs)
    with pytest.raises(NotFoundError):
        client.get_node("web-1")


def test_drift_in_labels_shows_and_an_update_plans_what_it_returns(core: Core, client: InProcessClient) -> None:
    inputs = checked(core)
    st = core.create(NODE, inputs)
    read = core.read(NODE, st.id, st.outputs, st.inputs)
    assert read is not None and not core.diff(NODE, read.outputs, read.inputs, inputs).changed
    node = client.get_node("web-1")
    node.metadata.labels = {"env": "prod", "team": "intruder"}
    client.upsert(node)  # out of band, as `machineid ctl` would
    drifted = core.read(NODE, st.id, read.outputs, read.inputs)
    assert drifted is not None and drifted.inputs is not None
    assert drifted.inputs["labels"] == {"env": "prod", "team": "intruder"}
    diff = core.diff(NODE, drifted.outputs, drifted.inputs, inputs)
    assert list(diff.changes) == [("labels",)] and not diff.replaces
    planned = core.plan(NODE, inputs, State(st.id, drifted.outputs, drifted.inputs))
    assert planned.outputs["last_heartbeat"] is UNKNOWN  # the cluster's: a heartbeat may land before the apply
    updated = core.update(NODE, st.id, drifted.outputs, drifted.inputs, inputs)
    assert client.get_node("web-1").metadata.labels == {"env": "prod"}
    for key in ("token", "token_expires", "user_data", "setup_script", "ca_pins", "auth_server"):
        assert planned.outputs[key] == updated.outputs[key], key  # known in the plan, and what the apply returns
    # a rendering setting changes the setup in place, known in the plan
    again = checked(core, run_as="sshd-helper")
    planned = core.plan(NODE, again, State(st.id, updated.outputs, updated.inputs))
    assert "--run-as sshd-helper" in planned.outputs["setup_script"]
    assert planned.outputs["setup_script"] == core.update(NODE, st.id, updated.outputs, updated.inputs,
                                                          again).outputs["setup_script"]


def test_token_rotation_issues_a_new_token_and_deletes_the_unused_one(core: Core, client: InProcessClient) -> None:
    inputs = checked(core)
    st = core.create(NODE, inputs)
    first = st.outputs["token"]
    rotated = checked(core, token_rotation=1)
    diff = core.diff(NODE, st.outputs, st.inputs, rotated)
    assert list(diff.changes) == [("token_rotation",)] and not diff.replaces
    planned = core.plan(NODE, rotated, st)
    assert planned.outputs["token"] is UNKNOWN and planned.outputs["user_data"] is UNKNOWN
    updated = core.update(NODE, st.id, st.outputs, st.inputs, rotated)
    second = updated.outputs["token"]
    assert second != first and client.get_token(second).spec.node_name == "web-1"
    assert second in updated.outputs["user_data"] and first not in updated.outputs["user_data"]
    with pytest.raises(NotFoundError):
        client.get_token(first)  # an unused single-use token would otherwise stay a live secret
    # moving to a named token: the single-use one goes too
    client.upsert(codec.decode(ProvisionToken, {"metadata": {"name": "web-kp"}, "spec": {
        "roles": ["Node"], "node_name": "web-1", "join_method": "bound_keypair",
        "bound_keypair": {"onboarding": {"initial_public_key": _public_key()}}}}))
    named = checked(core, join_method="bound_keypair", token_name="web-kp", token_rotation=1)
    planned = core.plan(NODE, named, updated)
    assert planned.outputs["token"] == "web-kp" and planned.outputs["token_expires"] is UNKNOWN
    final = core.update(NODE, st.id, updated.outputs, updated.inputs, named)
    assert final.outputs["token"] == "web-kp" and final.outputs["token_expires"] == ""
    assert planned.outputs["user_data"] == final.outputs["user_data"]
    with pytest.raises(NotFoundError):
        client.get_token(second)


def _public_key() -> str:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519

    key = ed25519.Ed25519PrivateKey.generate().public_key()
    return key.public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH).decode()


def test_import_reads_the_node_and_its_one_named_token(core: Core, client: InProcessClient) -> None:
    client.upsert(codec.decode(Node, {"metadata": {"name": "web-1", "labels": {"env": "prod"}},
                                      "spec": {"addr": "10.0.0.5:22"}}))
    imported = core.read(NODE, "web-1", {}, None)
    assert imported is not None and imported.inputs is not None
    assert imported.inputs["labels"] == {"env": "prod"} and imported.inputs["join_method"] == "token"
    # its single-use token was never seen: the setup says so and stops, instead of failing at the join
    data = cloud_config(imported.outputs["user_data"])
    assert "no join token" in data["runcmd"][1] and "exit 1" in data["runcmd"][1]
    assert not core.diff(NODE, imported.outputs, imported.inputs,
                         core.check(NODE, {"name": "web-1", "addr": "10.0.0.5:22", "labels": {"env": "prod"}})
                         .inputs).changed
    client.upsert(codec.decode(ProvisionToken, {"metadata": {"name": "web-iam"}, "spec": {
        "roles": ["Node"], "node_name": "web-1", "join_method": "iam", "allow": [{"aws_account": "123456789012"}]}}))
    imported = core.read(NODE, "web-1", {}, None)
    assert imported is not None and imported.inputs is not None
    assert (imported.inputs["join_method"], imported.inputs["token_name"]) == ("iam", "web-iam")
    assert imported.outputs["token"] == "web-iam"


def test_a_node_gone_from_the_cluster_reads_as_gone(core: Core, client: InProcessClient) -> None:
    st = core.create(NODE, checked(core))
    client.delete("node", "web-1")
    assert core.read(NODE, st.id, st.outputs, st.inputs) is None


def test_the_join_status_comes_from_the_cluster(core: Core, client: InProcessClient) -> None:
    st = core.create(NODE, checked(core))
    node = client.get_node("web-1")
    node.status.spent_tokens = [token_id(st.outputs["token"], "token")]
    node_status.put(client.cluster.objects, "web-1", node.status)  # as a join records it (the cluster's own write)
    read = core.read(NODE, st.id, st.outputs, st.inputs)
    assert read is not None and read.outputs["spent_tokens"] == node.status.spent_tokens
    assert read.outputs["token"] == st.outputs["token"]  # kept: a single-use token is not read back


# ---------------------------------------------------------------- secrets, in both adapters' terms


def test_the_token_and_the_rendered_setup_are_secrets_in_both_adapters() -> None:
    from machineid.pulumi import schema
    from machineid.pulumi.resources import RESOURCES
    from machineid.terraform.schema import RESOURCE_SCHEMAS

    node = RESOURCES["machineid:index:Node"]
    assert {"userData", "setupScript"} <= node.secret_props()
    assert node.plain_props_in({"joinMethod": "token"}) == frozenset()
    assert node.plain_props_in({"joinMethod": "iam"}) == {"token"}  # an iam token's name is public
    props = schema.build()["resources"]["machineid:index:Node"]["properties"]
    assert props["userData"]["secret"] and props["setupScript"]["secret"]
    block = RESOURCE_SCHEMAS["machineid_node"][1].block
    sensitive = {a.name for a in block.attributes if a.sensitive}
    assert sensitive == {"token", "user_data", "setup_script"}
    assert PROVISION_TOKEN.kind == "token" and NODE.kind == "node"


def test_a_plan_decodes_a_node_change() -> None:
    from machineid.iac.plan import decode_planned

    obj, _, unknown = decode_planned(NODE, {"name": "web-1", "addr": "10.0.0.5:22", "labels": UNKNOWN,
                                            "package_index": INDEX}, "machineid_node.web")
    assert isinstance(obj, Node) and obj.spec.addr == "10.0.0.5:22" and unknown == [("labels",)]
    with pytest.raises(ValidationError, match="machineid_node.web"):
        decode_planned(NODE, {"name": "web-1", "addr": "nope"}, "machineid_node.web")


def test_a_token_the_cluster_will_not_delete_does_not_undo_a_rotation(client: InProcessClient, clock: Clock) -> None:
    """The new token exists already: the rotation stands, and the warning names neither token."""
    logged: list[tuple[str, str]] = []

    class NoTokenDeletes(InProcessClient):
        def delete(self, kind: str, name: str, revision: str = "") -> None:
            if kind == "token":
                raise PermissionDeniedError("may not delete token " + name)
            super().delete(kind, name, revision)

    refusing = NoTokenDeletes(client.cluster, client.caller)
    core = core_for(refusing, clock)  # type: ignore[arg-type]
    core.log = lambda severity, message: logged.append((severity, message))
    st = core.create(NODE, checked(core))
    updated = core.update(NODE, st.id, st.outputs, st.inputs, checked(core, token_rotation=1))
    assert updated.outputs["token"] != st.outputs["token"]
    [(_, message)] = [x for x in logged if x[0] == "warning"]
    assert "could not delete the previous single-use join token of node web-1" in message
    assert st.outputs["token"] not in message and updated.outputs["token"] not in message
