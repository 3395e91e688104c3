"""`ctl lock` / `ctl unlock` against a running cluster, as an operator uses them during an incident: the bot's agent
is refused at its next renewal with the lock's message, and works again once the lock is lifted (no new token)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import ServerProc, bot_start, run_cli

# The cluster tests run against a server with one worker process and with two.
pytestmark = pytest.mark.workers(1, 2)


def agent(srv: ServerProc, tmp_path: Path, token: str) -> list[str]:
    return [*bot_start(srv, tmp_path / "data", tmp_path / "dest", token), "--oneshot"]


def test_lock_and_unlock_a_bot_from_the_cli(fresh_server: ServerProc, tmp_path: Path) -> None:
    srv = fresh_server
    srv.ctl("create", "-f", "-", input="kind: role\nmetadata: {name: r}\nspec: {allow: {logins: [x]}}\n")
    token = json.loads(srv.ctl("bots", "add", "deployer", "--roles=r", "--format=json").stdout)["token"]
    run_cli(*agent(srv, tmp_path, token))

    made = json.loads(srv.ctl("lock", "--bot", "deployer", "--message", "key in a CI log", "--ttl", "2h",
                              "--format", "json").stdout)
    assert made["action"] == "created" and made["target"] == {"bot": "deployer"} and made["expires"]
    listed = srv.ctl("get", "locks", "--format", "text").stdout
    assert made["name"] in listed and "bot=deployer" in listed and "key in a CI log" in listed

    refused = run_cli(*agent(srv, tmp_path, token), check=False)
    assert refused.returncode == 1, refused.stderr
    assert f'bot "deployer" is locked by lock "{made["name"]}": key in a CI log' in refused.stderr

    bad = srv.ctl("lock", "--bot", "a", "--user", "b", check=False)
    assert bad.returncode == 3 and "spec.target" in bad.stderr and "exactly one" in bad.stderr
    unknown = srv.ctl("unlock", "--bot", "nobody", check=False)
    assert unknown.returncode != 0 and "no lock on bot=nobody" in unknown.stderr

    gone = json.loads(srv.ctl("unlock", "--bot", "deployer", "--format", "json").stdout)
    assert gone == {"kind": "lock", "names": [made["name"]], "action": "deleted"}
    run_cli(*agent(srv, tmp_path, token))  # renews with the identity it holds: no new token needed
    audit = srv.ctl("audit", "--format", "jsonl").stdout
    assert "lock.create" in audit and "lock.delete" in audit
