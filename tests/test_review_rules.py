"""`machineid review`'s rules without a cluster or a tool: plan JSON in the shapes `tofu show -json PLANFILE` and
`pulumi preview --json` print (copied from real runs; tests/test_review.py runs the tools themselves), the world
the cluster would hold, and the policy's verdict."""

from __future__ import annotations

import fnmatch
import itertools
import json
import random
from datetime import UTC, datetime
from typing import Any

import pytest

from machineid.model import codec
from machineid.model.errors import ValidationError
from machineid.model.node_access import labels_match, matches_every_value, wildcard_keys
from machineid.model.resources import Bot, Role
from machineid.review import plan as plans
from machineid.review import policy, report
from machineid.review.impact import World, impact

NOW = datetime.now(UTC)
STRICT = {"deny_logins": ["root"], "deny_wildcard_node_labels": True, "deny_api": ["*:*"], "max_token_ttl": "720h",
          "deny_recovery_modes": ["insecure"]}


def role(name: str, **allow: Any) -> Role:
    return codec.decode_and_validate(Role, {"metadata": {"name": name}, "spec": {"allow": allow}})


def bot(name: str, roles: list[str]) -> Bot:
    return codec.decode_and_validate(Bot, {"metadata": {"name": name}, "spec": {"roles": roles}})


def role_after(name: str | None, logins: list[Any], node_labels: dict[str, list[Any]] | None = None,
               rules: list[dict[str, list[str]]] | None = None) -> dict[str, Any]:
    """A machineid_role's planned value as tofu prints it (blocks the configuration leaves out are null)."""
    return {"allow": {"logins": logins, "node_labels": node_labels or {}, "rules": rules or []}, "deny": None,
            "description": "", "id": name, "labels": {}, "name": name, "options": None}


def rc(address: str, actions: list[str], after: dict[str, Any] | None, *, before: dict[str, Any] | None = None,
       unknown: dict[str, Any] | None = None) -> dict[str, Any]:
    rtype, name = address.split(".")
    return {"address": address, "mode": "managed", "type": rtype, "name": name,
            "provider_name": "registry.opentofu.org/machineid/machineid",
            "change": {"actions": actions, "before": before, "after": after, "after_unknown": unknown or {}}}


def tf_plan(*changes: dict[str, Any], expressions: dict[str, dict[str, Any]] | None = None) -> str:
    exprs = expressions or {}
    resources = [{"address": c["address"], "mode": "managed", "type": c["type"], "name": c["name"],
                  "provider_config_key": "machineid", "expressions": exprs.get(c["address"], {}),
                  "schema_version": 0} for c in changes]
    return json.dumps({"format_version": "1.2", "terraform_version": "1.12.6", "planned_values": {"root_module": {}},
                       "resource_changes": list(changes), "configuration": {"root_module": {"resources": resources}},
                       "timestamp": "2026-12-06T16:53:00Z", "errored": False})


def review(text: str, before: World, rules: dict[str, Any] | None = None) -> tuple[list[Any], list[Any], str]:
    plan = plans.load(text)
    after = before.apply(plan)
    impacts = impact(before, after, NOW)
    violations = policy.check(codec.decode_and_validate(policy.Policy, rules or STRICT), plan, after, impacts, NOW)
    return impacts, violations, report.as_markdown(plan, impacts, violations)


def found(violations: list[Any]) -> set[tuple[str, str, str]]:
    return {(v.rule, v.resource, v.attribute) for v in violations}


# ---------------------------------------------------------------- A3(b) wildcards, judged by what they match


@pytest.mark.parametrize(("values", "every"), [
    (["*"], True), (["?*"], True), (["**"], True), (["*?"], True), (["*?*"], True), (["?", "??*"], True),
    (["a*", "[!a]*"], True), (["[a-m]*", "[!a-m]*"], True),
    (["prod"], False), (["a*"], False), (["?"], False), (["??*"], False), (["[a-m]*", "[n-z]*"], False),
    (["*x*"], False), (["[!]*"], False), ([], False)])
def test_value_globs_are_wildcards_when_they_match_every_value(values: list[str], every: bool) -> None:
    assert matches_every_value(values) is every
    assert (wildcard_keys({"env": values}) == ["env"]) is every


def test_the_key_wildcard_is_the_matchers_own() -> None:
    """labels_match takes the key '*' only with the value '*' itself: '*': ['?*'] selects no node at all."""
    assert wildcard_keys({"*": ["*"]}) == ["*"]
    assert wildcard_keys({"*": ["?*"]}) == []
    assert not labels_match({"*": ["?*"]}, {"env": "prod"})


def test_the_wildcard_judgement_agrees_with_the_matcher() -> None:
    """Random globs: whenever a set is judged to match every value, the matcher takes every value tried; whenever
    it is not, a value it leaves out exists among short strings of the characters involved."""
    rnd = random.Random(17)
    values = ["".join(t) for n in range(1, 5) for t in itertools.product("ab-!]x", repeat=n)]
    for _ in range(1500):
        globs = ["".join(rnd.choice("ab*?[]!-") for _ in range(rnd.randint(1, 5))) for _ in range(rnd.randint(1, 2))]
        every = all(any(labels_match({"env": [g]}, {"env": val}) for g in globs) for val in values)
        judged = matches_every_value(globs)
        assert not judged or every, globs
        if every:
            assert judged or all(any(fnmatch.fnmatchcase(val, g) for g in globs) for val in values), globs


def test_glob_selectors_violate_deny_wildcard_node_labels() -> None:
    before = World(roles={"glob": role("glob", logins=["app"], node_labels={"env": ["?*"], "team": ["**"],
                                                                             "tier": ["web"]})})
    text = tf_plan(rc("machineid_bot.ci", ["create"], {"name": "ci", "roles": ["glob"], "traits": {}}))
    _, violations, _ = review(text, before)
    assert found(violations) == {
        ("deny_wildcard_node_labels", "role/glob (on the cluster)", "allow.node_labels.env"),
        ("deny_wildcard_node_labels", "role/glob (on the cluster)", "allow.node_labels.team")}


# ---------------------------------------------------------------- A3(a) the bot's own role


def test_the_bots_own_role_is_checked_by_every_rule() -> None:
    """An import block brings bot-ops into the configuration as a machineid_role, and the plan gives it root, every
    node and *:*: bot ops gains that access, and every rule says so."""
    before = World(roles={"viewer": role("viewer", rules=[{"resources": ["node"], "verbs": ["list"]}])},
                   bots={"ops": bot("ops", ["viewer"])})
    own = role_after("bot-ops", ["root"], {"*": ["*"]}, [{"resources": ["*"], "verbs": ["*"]}])
    text = tf_plan(rc("machineid_role.own", ["update"], own, before=role_after("bot-ops", [])))
    impacts, violations, _ = review(text, before)
    assert [(i.name, i.status) for i in impacts] == [("ops", "changed")]
    assert impacts[0].gained()["any_node_logins"] == ["root"] and "*:*" in impacts[0].gained()["api"]
    assert found(violations) == {("deny_logins", "machineid_role.own", "allow.logins[0]"),
                                 ("deny_wildcard_node_labels", "machineid_role.own", "allow.node_labels.*"),
                                 ("deny_api", "machineid_role.own", "allow.rules[0]")}


def test_the_bots_own_role_on_the_cluster_is_checked_when_its_access_changes() -> None:
    before = World(roles={"bot-ops": role("bot-ops", logins=["root"]), "viewer": role("viewer")},
                   bots={"ops": bot("ops", ["viewer"])})
    text = tf_plan(rc("machineid_role.viewer", ["update"], role_after("viewer", ["app"]),
                      before=role_after("viewer", [])))
    _, violations, _ = review(text, before, {"deny_logins": ["root"]})
    assert found(violations) == {("deny_logins", "role/bot-ops (on the cluster)", "allow.logins[0]")}


def test_a_role_the_plan_writes_is_checked_even_when_no_node_shows_the_difference_yet() -> None:
    """env: ['*'] with no env node registered yet changes no bot's access today; it is still the plan's wildcard."""
    before = World(roles={"web": role("web", logins=["app"], node_labels={"env": ["prod"]})},
                   bots={"ci": bot("ci", ["web"])})
    text = tf_plan(rc("machineid_role.web", ["update"], role_after("web", ["app"], {"env": ["*"]}),
                      before=role_after("web", ["app"], {"env": ["prod"]})))
    impacts, violations, _ = review(text, before)
    assert impacts == []
    assert found(violations) == {("deny_wildcard_node_labels", "machineid_role.web", "allow.node_labels.env")}


# ---------------------------------------------------------------- A3(c) fail closed on what is not a plan


@pytest.mark.parametrize(("text", "said"), [
    ('{"format_version": "1.0", "terraform_version": "1.12.6", "values": {"root_module": {}}}', "state"),
    ('{"format_version": "1.0"}', "state"),  # `tofu show -json` with an empty state
    ('{"version": 3, "deployment": {"resources": []}}', "stack export"),
    ('{"resources": []}', "neither"),
    ('{"steps": [{"op": "create"}]}', "neither"),
    ("[1, 2]", "JSON list"),
    ("{", "not JSON"),
])
def test_what_is_not_a_plan_is_refused(text: str, said: str) -> None:
    with pytest.raises(ValidationError) as e:
        plans.load(text)
    assert said in str(e.value) and "tofu show -json plan.bin" in str(e.value) and "pulumi preview" in str(e.value)


def test_a_failed_or_partial_plan_is_refused() -> None:
    errored = json.loads(tf_plan())
    errored["errored"] = True
    with pytest.raises(ValidationError, match="the plan failed"):
        plans.load(json.dumps(errored))
    deferred = json.loads(tf_plan())
    deferred["complete"] = False
    with pytest.raises(ValidationError, match="incomplete"):
        plans.load(json.dumps(deferred))
    failed = {"steps": [{"op": "create", "urn": "urn:pulumi:dev::p::pulumi:pulumi:Stack::p-dev"}],
              "diagnostics": [{"message": "error: property roles value []: is required\n", "severity": "error"}],
              "changeSummary": {"create": 1}}
    with pytest.raises(ValidationError, match="the preview failed"):
        plans.load(json.dumps(failed))


def test_empty_plans_of_both_tools_are_plans() -> None:
    """What the tools print for a configuration or program with nothing to do (no resource_changes at all)."""
    tofu_empty = {"format_version": "1.2", "terraform_version": "1.12.6", "planned_values": {"root_module": {}},
                  "configuration": {"root_module": {}}, "timestamp": "2026-12-06T16:53:00Z", "errored": False}
    pulumi_empty = {"steps": [{"op": "same", "urn": "urn:pulumi:dev::p::pulumi:pulumi:Stack::p-dev"}],
                    "duration": 1, "changeSummary": {"same": 1}}
    assert plans.load(json.dumps(tofu_empty)).changes == []
    assert plans.load(json.dumps(pulumi_empty)).changes == []


# ---------------------------------------------------------------- B: values known only at apply


def test_a_single_use_token_without_a_name_is_reviewed() -> None:
    single = {"allow": [], "bot_name": "ci", "bound_keypair": None, "description": "", "join_method": "token",
              "labels": {}, "roles": ["Bot"], "ttl": "1h"}
    text = tf_plan(rc("machineid_provision_token.ci", ["create"], single,
                      unknown={"name": True, "expires": True, "id": True, "used": True}),
                   expressions={"machineid_provision_token.ci": {"bot_name": {"constant_value": "ci"}}})
    (change,) = plans.load(text).changes
    assert change.key == "machineid_provision_token.ci" and change.unknown == []  # the cluster names it
    _, violations, _ = review(text, World(bots={"ci": bot("ci", ["r"])}))
    assert violations == []


def test_roles_that_come_from_anything_but_a_planned_role_stay_unknown_and_fail_the_rules() -> None:
    """roles = [terraform_data.x.output]: any role at all at apply, so every role rule is violated; a roles list
    with more unknown items than planned roles it references is not taken for their names either."""
    before = World(roles={"viewer": role("viewer")})
    text = tf_plan(rc("machineid_bot.ci", ["create"], {"name": "ci", "roles": [None, "viewer"], "traits": {}},
                      unknown={"roles": [True, False]}),
                   expressions={"machineid_bot.ci": {"roles": {"references": ["terraform_data.x.output",
                                                                               "terraform_data.x"]}}})
    impacts, violations, markdown = review(text, before)
    assert found(violations) == {(rule, "machineid_bot.ci", "roles[0]")
                                 for rule in ("deny_logins", "deny_wildcard_node_labels", "deny_api")}
    assert impacts[0].after is not None and impacts[0].after.pending == ["machineid_bot.ci roles[0]"]
    assert "known only at apply: `machineid_bot.ci roles[0]`" in markdown

    two = tf_plan(rc("machineid_role.r", ["create"], role_after(None, ["app"]), unknown={"name": True}),
                  rc("machineid_bot.ci", ["create"], {"name": "ci", "roles": [None, None], "traits": {}},
                     unknown={"roles": [True, True]}),
                  expressions={"machineid_role.r": {"name": {"references": ["var.x"]}},
                               "machineid_bot.ci": {"roles": {"references": ["machineid_role.r.name",
                                                                             "machineid_role.r"]}}})
    (_, ci) = plans.load(two).changes
    assert ci.unknown == [("roles", 0), ("roles", 1)] and ci.after.spec.roles == []


def test_roles_of_a_module_instance_resolve_to_the_instance_referenced() -> None:
    """In module.a["x"], roles = [machineid_role.r[1].name] with r's names computed: the bot holds r[1] (not
    every instance of r), and the module's token without a name is the cluster's to name."""
    module = 'module.a["x"]'

    def instance(address: str, rtype: str, name: str, after: dict[str, Any], unknown: dict[str, Any],
                 index: int | None = None) -> dict[str, Any]:
        return {"address": f"{module}.{address}", "module_address": module, "mode": "managed", "type": rtype,
                "name": name, "index": index, "change": {"actions": ["create"], "before": None, "after": after,
                                                         "after_unknown": unknown}}

    changes = [instance(f"machineid_role.r[{i}]", "machineid_role", "r", role_after(None, [f"app{i}"]),
                        {"name": True, "id": True}, i) for i in (0, 1)]
    changes.append(instance("machineid_bot.c", "machineid_bot", "c", {"name": "x-c", "roles": [None], "traits": {}},
                            {"roles": [True]}))
    changes.append(instance("machineid_provision_token.t", "machineid_provision_token", "t",
                            {"bot_name": "x-c", "join_method": "token", "roles": ["Bot"], "ttl": "1h"},
                            {"name": True, "expires": True}))
    resources = [{"address": "machineid_role.r", "mode": "managed", "type": "machineid_role", "name": "r",
                  "expressions": {"name": {"references": ["var.n", "count.index", "terraform_data.id.id",
                                                         "terraform_data.id"]}}},
                 {"address": "machineid_bot.c", "mode": "managed", "type": "machineid_bot", "name": "c",
                  "expressions": {"roles": {"references": ["machineid_role.r[1].name", "machineid_role.r[1]",
                                                           "machineid_role.r"]}}},
                 {"address": "machineid_provision_token.t", "mode": "managed", "type": "machineid_provision_token",
                  "name": "t", "expressions": {"bot_name": {"references": ["machineid_bot.c.name"]}}}]
    text = json.dumps({"format_version": "1.2", "planned_values": {"root_module": {}}, "resource_changes": changes,
                       "configuration": {"root_module": {"module_calls": {"a": {"source": "./m", "module": {
                           "resources": resources}}}}}})
    impacts, _, _ = review(text, World())
    (ci,) = impacts
    assert ci.after is not None and ci.after.any_node_logins == ["app1"] and ci.after.join_methods == ["token"]
    assert ci.after.pending == [f"{module}.machineid_role.r[1] name"]
    token = plans.load(text).changes[-1]
    assert token.unknown == [] and token.key == f"{module}.machineid_provision_token.t"


def test_tokens_whose_expiry_or_mode_is_known_only_at_apply_fail_those_rules() -> None:
    iam = {"allow": [{"aws_account": "123456789012", "aws_arn": ""}], "bot_name": "ci", "bound_keypair": None,
           "description": "", "join_method": "iam", "labels": {}, "name": "ci-aws", "roles": ["Bot"], "ttl": None}
    text = tf_plan(rc("machineid_provision_token.aws", ["create"], iam, unknown={"expires": True}),
                   expressions={"machineid_provision_token.aws": {"expires": {"references": ["terraform_data.t"]}}})
    _, violations, _ = review(text, World())
    assert found(violations) == {("max_token_ttl", "machineid_provision_token.aws", "expires")}
    assert "known only at apply" in violations[0].message


# ---------------------------------------------------------------- issue 18 §3: less noise


def test_an_unchanged_role_of_the_plan_is_named_by_its_address_and_no_unknown_list_is_printed() -> None:
    wide = role_after("wide", ["{{internal.logins}}"], {"team": ["*"]})
    before = World(roles={"wide": role("wide", logins=["{{internal.logins}}"], node_labels={"team": ["*"]})},
                   bots={"ci": bot("ci", ["wide"])})
    ci_before = {"name": "ci", "roles": ["wide"], "traits": {}}
    text = tf_plan(rc("machineid_role.wide", ["no-op"], wide, before=wide),
                   rc("machineid_bot.ci", ["update"], {**ci_before, "traits": {"logins": ["deploy"]}},
                      before=ci_before, unknown={"token": True, "agent_config": True}))
    _, violations, markdown = review(text, before)
    assert found(violations) == {("deny_wildcard_node_labels", "machineid_role.wide", "allow.node_labels.team")}
    assert "on the cluster" not in markdown and "Known only at apply" not in markdown
