"""`machineid review` of node changes, without a cluster or a tool: a node the plan creates, relabels or deletes is
an access change (which bots become able or unable to log in to it, as which logins, because of which roles'
node_labels; deny wins), in both tools' plan formats, and the policy rule nodes_reachable_only_by fails a plan that
makes a node with guarded labels reachable by a bot it does not list. tests/test_review.py runs the tools."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from machineid.model import codec
from machineid.model.errors import ValidationError
from machineid.model.resources import Bot, Node, Role
from machineid.review import plan as plans
from machineid.review import policy, report
from machineid.review.impact import World, impact
from machineid.review.nodes import node_impacts
from tests.test_review_rules import found, rc, tf_plan

NOW = datetime.now(UTC)
ONLY_DEPLOYER = {"nodes_reachable_only_by": [{"labels": {"env": "prod"}, "bots": ["deployer"]}]}


def role(name: str, allow: dict[str, Any], deny: dict[str, Any] | None = None) -> Role:
    return codec.decode_and_validate(Role, {"metadata": {"name": name}, "spec": {"allow": allow,
                                                                                  "deny": deny or {}}})


def bot(name: str, roles: list[str]) -> Bot:
    return codec.decode_and_validate(Bot, {"metadata": {"name": name}, "spec": {"roles": roles}})


def node(name: str, **labels: str) -> Node:
    return codec.decode_and_validate(Node, {"metadata": {"name": name, "labels": labels},
                                            "spec": {"addr": "10.0.0.5:22"}})


def fleet(*nodes: Node) -> World:
    """web (deploy on env=prod), dev-only (ci on env=dev), everywhere (ops on every node) and no-prod (deny
    env=prod), held by: deployer and backup (web), ci (dev-only), intern (web, no-prod), auditor (everywhere,
    no-prod)."""
    roles = [role("web", {"logins": ["deploy"], "node_labels": {"env": ["prod"]}}),
             role("dev-only", {"logins": ["ci"], "node_labels": {"env": ["dev"]}}),
             role("everywhere", {"logins": ["ops"], "node_labels": {"*": ["*"]}}),
             role("no-prod", {}, {"node_labels": {"env": ["prod"]}})]
    bots = [bot("deployer", ["web"]), bot("backup", ["web"]), bot("ci", ["dev-only"]),
            bot("intern", ["web", "no-prod"]), bot("auditor", ["everywhere", "no-prod"])]
    return World(roles={r.metadata.name: r for r in roles}, bots={b.metadata.name: b for b in bots},
                 nodes={n.metadata.name: n for n in nodes})


def node_after(name: str, labels: dict[str, str] | None) -> dict[str, Any]:
    """A machineid_node's planned value as tofu prints it (labels None: known only at apply)."""
    return {"name": name, "addr": "10.0.0.5:22", "labels": labels, "description": "", "hostnames": [],
            "host_cert_ttl": "24h", "revocation_max_age": "1h", "join_method": "token", "token_name": "",
            "token_ttl": "1h", "token_rotation": 0, "install_command": "", "package_index": "", "run_as": "nobody",
            "agent_path": "/usr/local/bin/machineid", "id": name}


def pulumi_step(op: str, name: str, new: dict[str, str] | None, old: dict[str, str] | None) -> dict[str, Any]:
    def state(labels: dict[str, str] | None) -> dict[str, Any] | None:
        if labels is None:
            return None
        return {"type": "machineid:index:Node", "urn": f"urn:pulumi:dev::p::machineid:index:Node::{name}",
                "inputs": {"name": name, "addr": "10.0.0.5:22", "labels": labels, "joinMethod": "token"}}

    return {"op": op, "urn": f"urn:pulumi:dev::p::machineid:index:Node::{name}", "newState": state(new),
            "oldState": state(old)}


def reviewed(text: str, before: World, rules: dict[str, Any] | None = None,
             ) -> tuple[list[str], list[policy.Violation], str, dict[str, Any]]:
    plan = plans.load(text)
    after = before.apply(plan)
    impacts = impact(before, after, NOW)
    nodes = node_impacts(plan, before, after, NOW)
    violations = policy.check(codec.decode_and_validate(policy.Policy, rules or {}), plan, after, impacts, NOW,
                              before)
    sentences = [f"{sign} {text}" for n in nodes for sign, text in n.sentences()]
    data = json.loads(report.as_json(plan, impacts, violations, (), (), nodes))
    return sentences, violations, report.as_markdown(plan, impacts, violations, (), (), nodes), data


def test_a_relabelled_node_says_who_gains_and_loses_it_and_why() -> None:
    before = fleet(node("web-1", env="dev"))
    text = tf_plan(rc("machineid_node.web", ["update"], node_after("web-1", {"env": "prod"}),
                      before=node_after("web-1", {"env": "dev"})))
    sentences, violations, markdown, data = reviewed(text, before)
    assert sentences == [
        "+ node `web-1` becomes reachable by bots `backup`, `deployer` as `deploy` because its labels now match "
        "role `web`",
        "- node `web-1` is no longer reachable by bot `auditor` as `ops` because its labels now match the deny of "
        "role `no-prod` (deny wins)",
        "- node `web-1` is no longer reachable by bot `ci` as `ci` because its labels no longer match role "
        "`dev-only`"]
    # intern holds web too, but its no-prod deny matches: it gains nothing
    assert not [s for s in sentences if "intern" in s] and violations == []
    assert "### node `web-1` (changed: labels `env=dev` → `env=prod`)" in markdown
    assert f"- **+** {sentences[0][2:]}" in markdown
    [entry] = data["nodes"]
    assert entry["resource"] == "machineid_node.web" and entry["labels_after"] == {"env": "prod"}
    assert entry["gained"] == [{"bots": ["backup", "deployer"], "logins": ["deploy"],
                                "because": "its labels now match role `web`"}]
    # the bots' own sections say it too
    assert {b["name"]: b["gained"].get("logins_on_nodes") for b in data["bots"]}["deployer"] == ["deploy@web-1"]


def test_pulumi_node_create_and_delete_are_access_changes() -> None:
    before = fleet(node("old-1", env="dev"))
    text = json.dumps({"steps": [pulumi_step("create", "web-2", {"env": "prod"}, None),
                                 pulumi_step("delete", "old-1", None, {"env": "dev"})]})
    sentences, _, markdown, _ = reviewed(text, before)
    assert sentences == [
        "+ node `web-2` becomes reachable by bots `backup`, `deployer` as `deploy` because its labels match role "
        "`web`",
        "- node `old-1` is no longer reachable by bot `auditor` as `ops` because the node is deleted",
        "- node `old-1` is no longer reachable by bot `ci` as `ci` because the node is deleted"]
    assert "### node `web-2` (created, labels `env=prod`)" in markdown and "### node `old-1` (deleted)" in markdown


def test_a_node_no_bot_reaches_says_so_and_is_no_access_change() -> None:
    text = tf_plan(rc("machineid_node.lab", ["create"], node_after("lab-1", {"env": "lab"})))
    sentences, _, markdown, _ = reviewed(text, fleet())
    assert [s for s in sentences if "intern" not in s] == [
        "+ node `lab-1` becomes reachable by bot `auditor` as `ops` because its labels match role `everywhere`"]
    text = tf_plan(rc("machineid_node.lab", ["create"], node_after("lab-1", {"env": "prod"})))
    sentences, _, markdown, _ = reviewed(text, World(roles={}, bots={}))
    assert sentences == [] and "No access change" in markdown
    assert "- no bot becomes able or unable to log in to it" in markdown


def test_nodes_reachable_only_by_fails_a_node_relabelled_into_it() -> None:
    before = fleet(node("web-1", env="dev"))
    text = tf_plan(rc("machineid_node.web", ["update"], node_after("web-1", {"env": "prod"}),
                      before=node_after("web-1", {"env": "dev"})))
    _, violations, markdown, _ = reviewed(text, before, ONLY_DEPLOYER)
    assert found(violations) == {("nodes_reachable_only_by", "machineid_node.web", "labels")}
    [v] = violations
    assert 'bot "backup" as deploy' in v.message and "allows only deployer" in v.message
    assert "❌ `nodes_reachable_only_by`" in markdown
    # the bots it lists may reach them
    _, violations, _, _ = reviewed(text, before, {"nodes_reachable_only_by": [
        {"labels": {"env": "prod"}, "bots": ["deployer", "backup"]}]})
    assert violations == []


def test_nodes_reachable_only_by_judges_what_the_plan_changes_only() -> None:
    """backup already reaches prod node web-1: a plan that leaves that alone (and relabels another node out of the
    rule) passes; a role change that gives ci a prod login fails, naming the node."""
    before = fleet(node("web-1", env="prod"), node("dev-1", env="dev"))
    text = tf_plan(rc("machineid_node.dev", ["update"], node_after("dev-1", {"env": "test"}),
                      before=node_after("dev-1", {"env": "dev"})))
    assert reviewed(text, before, ONLY_DEPLOYER)[1] == []
    grown = {"allow": {"logins": ["ci"], "node_labels": {"env": ["dev", "prod"]}, "rules": []}, "deny": None,
             "description": "", "id": "dev-only", "labels": {}, "name": "dev-only", "options": None}
    text = tf_plan(rc("machineid_role.dev", ["update"], grown, before={**grown, "allow": {
        "logins": ["ci"], "node_labels": {"env": ["dev"]}, "rules": []}}))
    _, violations, _, _ = reviewed(text, before, ONLY_DEPLOYER)
    assert found(violations) == {("nodes_reachable_only_by", "node/web-1 (on the cluster)", "labels")}
    assert 'bot "ci" as ci' in violations[0].message


def test_labels_known_only_at_apply_are_shown_as_such_and_fail_the_rule() -> None:
    text = tf_plan(rc("machineid_node.web", ["create"], node_after("web-9", None), unknown={"labels": True}))
    sentences, violations, markdown, _ = reviewed(text, fleet(), ONLY_DEPLOYER)
    assert sentences == []  # not worked out from half the labels
    assert "its labels are known only at apply" in markdown and "`machineid_node.web labels`" in markdown
    assert found(violations) == {("nodes_reachable_only_by", "machineid_node.web", "labels")}


@pytest.mark.parametrize(("rules", "said"), [
    ({"nodes_reachable_only_by": [{"bots": ["x"]}]}, "nodes_reachable_only_by[0].labels: is required"),
    ({"nodes_reachable_only_by": [{"labels": {"env": "prod"}, "bot": ["x"]}]}, "bot"),
    ({"nodes_reachable_only_by": [{"labels": {"e v": "prod"}}]}, "label keys use"),
])
def test_a_mistyped_node_rule_is_a_field_named_error(rules: dict[str, Any], said: str) -> None:
    with pytest.raises(ValidationError, match=said.replace("[", r"\[").replace("]", r"\]")):
        codec.decode_and_validate(policy.Policy, rules)


def test_the_review_decides_as_the_certificate_extension_does_on_the_node() -> None:
    """What the review says a bot gains on a node is what the node-access extension of that bot's certificate
    grants there (encoded by the cluster, decoded as on the node)."""
    from machineid.model import grants
    from machineid.model.node_access import NodeAccess
    from machineid.review.impact import held_roles

    before = fleet(node("web-1", env="dev"))
    text = tf_plan(rc("machineid_node.web", ["update"], node_after("web-1", {"env": "prod"}),
                      before=node_after("web-1", {"env": "dev"})))
    plan = plans.load(text)
    after = before.apply(plan)
    [imp] = node_impacts(plan, before, after, NOW)
    said = {(b, lg) for r in imp.gained for b in r.bots for lg in r.logins}
    on_node = set()
    for key, b in after.bots.items():
        held, _ = held_roles(after, b, NOW)
        extension = grants.node_access(list(held.values()), b.spec.traits).encode()
        on_node |= {(key, lg) for lg in NodeAccess.decode(extension).logins_on({"env": "prod"})}
    assert said == on_node == {("deployer", "deploy"), ("backup", "deploy")}  # none of them could on env=dev
