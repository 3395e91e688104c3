"""`machineid review` of locks: a lock the plan writes is an access change said plainly (what it stops: a bot, one
instance of a bot, the bots that joined with a token, a user or a node; its message and end), and a lock the plan
removes says who may authenticate again; in both tools' plan formats, as Markdown and JSON."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from machineid.model import codec
from machineid.model.resources import Bot
from machineid.review import plan as plans
from machineid.review import report
from machineid.review.impact import World, impact
from machineid.review.locks import lock_impacts
from machineid.review.nodes import node_impacts
from tests.test_review_rules import rc, tf_plan

NOW = datetime.now(UTC)
INSTANCE = "0123456789abcdef0123456789abcdef"


def world() -> World:
    deployer = codec.decode(Bot, {"metadata": {"name": "deployer"}, "spec": {"roles": ["access"]},
                                  "status": {"instance_id": INSTANCE, "join_token": "deploy-gh"}})
    backup = codec.decode(Bot, {"metadata": {"name": "backup"}, "spec": {"roles": ["access"]},
                                "status": {"join_token": "deploy-gh"}})
    return World(bots={"deployer": deployer, "backup": backup})


def lock_value(name: str, message: str = "", expires: str | None = None, **target: str) -> dict[str, Any]:
    full = {k: target.get(k, "") for k in ("bot", "bot_instance", "token", "user", "node")}
    return {"name": name, "description": "", "expires": expires, "message": message, "target": full, "id": name}


def reviewed(text: str, before: World) -> tuple[str, dict[str, Any]]:
    plan = plans.load(text)
    after = before.apply(plan)
    impacts, nodes, locks = impact(before, after, NOW), node_impacts(plan, before, after, NOW), \
        lock_impacts(plan, before, after, NOW)
    return (report.as_markdown(plan, impacts, None, (), (), nodes, locks),
            json.loads(report.as_json(plan, impacts, None, (), (), nodes, locks)))


def test_locks_the_plan_writes_say_what_they_stop() -> None:
    text = tf_plan(
        rc("machineid_lock.bot", ["create"], lock_value("incident", "key leaked", "2030-01-01T00:00:00Z",
                                                         bot="deployer")),
        rc("machineid_lock.machine", ["create"], lock_value("host-7", bot_instance=INSTANCE)),
        rc("machineid_lock.token", ["create"], lock_value("gh", token="deploy-gh")),
        rc("machineid_lock.node", ["create"], lock_value("web-1", node="web-1")))
    markdown, data = reviewed(text, world())
    assert "4 locks written or removed (terraform plan)." in markdown
    assert "No access change" not in markdown
    assert ("### lock `incident` (created)\n- **+** locks bot `deployer`: every identity it holds is refused (calls, "
            "renewals, joins) and its SSH certificates are revoked on nodes (until 2030-01-01T00:00:00Z) — "
            "“key leaked”") in markdown
    assert f"locks instance `{INSTANCE}` of bot `deployer`: that machine's identity is refused" in markdown
    assert "locks join token `deploy-gh`: joins with it are refused; bots that joined with it: `backup`, " \
           "`deployer`" in markdown
    assert "locks node `web-1`: its joins and syncs are refused" in markdown
    assert {x["name"]: x["bots"] for x in data["locks"]} == {
        "incident": ["deployer"], "host-7": ["deployer"], "gh": ["backup", "deployer"], "web-1": []}


def test_a_lock_the_plan_removes_lets_its_target_back_in() -> None:
    before = world()
    text = tf_plan(rc("machineid_lock.bot", ["delete"], None, before=lock_value("incident", bot="deployer")))
    markdown, data = reviewed(text, before)
    assert "- **-** lifts the lock on bot `deployer`: it may authenticate again, with no new join" in markdown
    assert data["locks"][0]["status"] == "deleted"


def test_a_pulumi_lock_is_reviewed_the_same() -> None:
    step = {"op": "create", "urn": "urn:pulumi:dev::p::machineid:index:Lock::incident",
            "newState": {"type": "machineid:index:Lock", "urn": "urn:pulumi:dev::p::machineid:index:Lock::incident",
                         "inputs": {"name": "incident", "message": "key leaked", "target": {"bot": "deployer"}}},
            "oldState": None}
    markdown, data = reviewed(json.dumps({"steps": [step], "changeSummary": {"create": 1}}), world())
    assert "locks bot `deployer`" in markdown and "until the lock is removed" in markdown
    assert data["locks"][0]["resource"] == "machineid:index:Lock::incident"
