"""Bot instances (issue 20 §4), as an operator of a fleet sees them: each agent's join is an instance with what it
proved; each renewal updates it with the agent's heartbeat (version, host, OS, uptime, one-shot, destinations);
`ctl bots instances ls` filters by bot, version, last seen and health, `show` gives one in full; a lock on one
instance stops that machine alone; records outlive the agent for the retention, then the janitor drops them."""

from __future__ import annotations

import json
import platform
import socket
from datetime import timedelta
from pathlib import Path

import pytest

from machineid import __version__
from machineid.cluster import instances
from machineid.cluster.janitor import Janitor
from machineid.cluster.kinds import Page
from machineid.cluster.service import Cluster
from machineid.model import codec
from machineid.model.errors import PermissionDeniedError, ValidationError
from machineid.model.instances import DestinationHealth, Heartbeat, version_older
from machineid.model.resources import Role, User
from tests.conftest import ServerProc, bot_start, run_cli
from tests.inprocess import Clock, add_bot, admin, caller_of, key_pem, new_cluster

# The cluster tests run against a server with one worker process and with two.
pytestmark = pytest.mark.workers(1, 2)


def agent(srv: ServerProc, tmp_path: Path, token: str, data: str = "data") -> list[str]:
    return [*bot_start(srv, tmp_path / data, tmp_path / f"dest-{data}", token), "--oneshot"]


def test_agents_show_up_with_their_heartbeat_and_filters_find_them(fresh_server: ServerProc, tmp_path: Path) -> None:
    srv = fresh_server
    srv.ctl("create", "-f", "-", input="kind: role\nmetadata: {name: r}\nspec: {allow: {logins: [x]}}\n")
    token = json.loads(srv.ctl("bots", "add", "deployer", "--roles=r", "--format=json").stdout)["token"]
    other = json.loads(srv.ctl("bots", "add", "backup", "--roles=r", "--format=json").stdout)["token"]
    run_cli(*agent(srv, tmp_path, token))   # joins: an instance
    run_cli(*agent(srv, tmp_path, token))   # renews: the heartbeat lands on it
    run_cli(*agent(srv, tmp_path, other, "other"))  # joins only: no heartbeat yet

    listed = json.loads(srv.ctl("bots", "instances", "ls", "--format", "json").stdout)
    by_bot = {i["bot_name"]: i for i in listed}
    assert set(by_bot) == {"deployer", "backup"}
    mine = by_bot["deployer"]
    assert mine["join_method"] == "token" and mine["join_token"].startswith("token-") and token not in json.dumps(
        listed)
    assert mine["generation"] == 2 and mine["current"] and mine["renewable"]
    hb = mine["heartbeat"]
    assert (hb["version"], hb["hostname"], hb["os"], hb["architecture"], hb["one_shot"]) == (
        __version__, socket.gethostname(), platform.system().lower(), platform.machine(), True)
    assert hb["destinations"] == [{"path": str(tmp_path / "dest-data"), "healthy": True, "error": ""}]
    assert by_bot["backup"]["last_heartbeat"] is None

    only = json.loads(srv.ctl("bots", "instances", "ls", "--bot", "backup", "--format", "json").stdout)
    assert [i["bot_name"] for i in only] == ["backup"]
    older = json.loads(srv.ctl("bots", "instances", "ls", "--version-older-than", "99.0", "--format",
                               "json").stdout)
    assert {i["bot_name"] for i in older} == {"deployer", "backup"}  # backup never reported a version
    assert json.loads(srv.ctl("bots", "instances", "ls", "--version-older-than", __version__, "--bot", "deployer",
                              "--format", "json").stdout) == []
    assert json.loads(srv.ctl("bots", "instances", "ls", "--not-seen-since", "1h", "--format", "json").stdout) == []
    text = srv.ctl("bots", "instances", "ls").stdout
    assert "deployer" in text and mine["instance_id"] in text and socket.gethostname() in text
    shown = srv.ctl("bots", "instances", "show", mine["instance_id"]).stdout
    assert f"instance_id: {mine['instance_id']}" in shown and "uptime_seconds" in shown

    # a lock on this one instance: that machine is refused; the bot's other machines would go on
    srv.ctl("lock", "--bot-instance", mine["instance_id"], "--message", "host compromised")
    refused = run_cli(*agent(srv, tmp_path, token), check=False)
    assert refused.returncode == 1 and "host compromised" in refused.stderr


@pytest.fixture()
def c(tmp_path: Path) -> Cluster:
    return new_cluster(tmp_path, Clock())


def test_a_non_renewable_join_is_an_instance_of_its_own_that_a_lock_stops_alone(c: Cluster) -> None:
    """Machines that join every cycle (iam and the delegated methods) each get an instance their certificate
    carries; here the in-process IAM path is not set up, so the record API is exercised directly."""
    add_bot(c, "ci")
    first = instances.joined(c.objects, "ci", "github", "gh-token", renewable=False,
                             attributes={"repository": "acme/app"})
    second = instances.joined(c.objects, "ci", "github", "gh-token", renewable=False)
    assert first != second
    found, _ = c.list_bot_instances(admin(c), "ci", Page())
    assert {i.instance_id for i in found} >= {first, second}
    assert c.get_bot_instance(admin(c), first).join_attributes == {"repository": "acme/app"}


def test_heartbeats_are_bounded_and_records_go_after_the_retention(c: Cluster) -> None:
    token = add_bot(c, "deployer")
    _, issued = c.register_using_token(token, key_pem(), None)
    beat = Heartbeat(version="0.1.0", destinations=[DestinationHealth(path=f"/d{i}", healthy=True)
                                                   for i in range(40)])
    c.renew(caller_of(c, issued), key_pem(), None, beat)
    [inst] = c.list_bot_instances(admin(c), "deployer", Page())[0]
    assert len(inst.heartbeat.destinations) == 16 and inst.generation == 2
    with pytest.raises(ValidationError) as too_long:
        codec.validate(Heartbeat(hostname="h" * 1000))
    assert too_long.value.violations[0].path == ("hostname",)
    clock = c.clock
    assert isinstance(clock, Clock)
    clock.now += timedelta(days=8)
    swept = Janitor(c.objects).sweep()
    assert swept.instances == 1 and c.list_bot_instances(admin(c), "deployer", Page())[0] == []


def test_reading_instances_is_a_rule(c: Cluster) -> None:
    c.upsert(admin(c), codec.decode(Role, {"metadata": {"name": "nothing"}, "spec": {}}))
    c.upsert(admin(c), codec.decode(User, {"metadata": {"name": "bob"}, "spec": {"roles": ["nothing"]}}))
    bob = caller_of(c, c.sign_user(admin(c), "bob", key_pem(), None))
    with pytest.raises(PermissionDeniedError):
        c.list_bot_instances(bob, "", Page())
    c.upsert(admin(c), codec.decode(User, {"metadata": {"name": "eve"}, "spec": {"roles": ["auditor"]}}))
    eve = caller_of(c, c.sign_user(admin(c), "eve", key_pem(), None))
    assert c.list_bot_instances(eve, "", Page()) == ([], "")


def test_versions_compare_as_numbers() -> None:
    assert version_older("0.9.0", "0.10.0") and not version_older("0.10.0", "0.9.0")
    assert version_older("", "0.1.0") and not version_older("0.1.0", "0.1.0")
