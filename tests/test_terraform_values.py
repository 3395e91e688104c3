"""The Terraform adapter's value logic in-process (no CLI): cty msgpack with unknowns, attribute paths from the
schema, plans that keep configured values verbatim and absent blocks absent, and state upgrades."""

from __future__ import annotations

import dataclasses
import json

import msgpack
import pytest

from machineid.iac.unknown import UNKNOWN
from machineid.terraform import provider as tfprovider
from machineid.terraform import values
from machineid.terraform.diagnostics import steps_for
from machineid.terraform.provider import TerraformProvider
from machineid.terraform.schema import RESOURCE_SCHEMAS

ROLE = RESOURCE_SCHEMAS["machineid_role"][1].block
TOKEN = RESOURCE_SCHEMAS["machineid_provision_token"][1].block
BOT = RESOURCE_SCHEMAS["machineid_bot"][1].block


def test_unknowns_plain_and_refined_decode_and_encode_as_ext_0() -> None:
    refined = msgpack.ExtType(12, msgpack.packb({1: False, 2: "child-"}))
    raw = msgpack.packb({"a": msgpack.ExtType(0, b"\x00"), "b": refined, "c": [1, "x", None]})
    assert values.decode(raw) == {"a": UNKNOWN, "b": UNKNOWN, "c": [1, "x", None]}
    assert values.encode({"a": UNKNOWN}) == msgpack.packb({"a": msgpack.ExtType(0, b"\x00")})
    assert values.decode(b"", b'{"a": 1}') == {"a": 1}


def test_outgoing_objects_carry_every_attribute_and_block() -> None:
    full = values.complete(ROLE, {"name": "web"})
    assert set(full) == {"id", "name", "description", "labels", "allow", "deny", "options"}
    assert full["allow"] is None and full["description"] is None
    token = values.complete(TOKEN, {"allow": [{"aws_account": "1"}]})
    assert token["allow"] == [{"aws_account": "1", "aws_arn": None}]


def test_attribute_paths_follow_the_schema() -> None:
    assert steps_for(TOKEN, ("allow", 0, "aws_arn")) == (("attribute", "allow"), ("index", 0),
                                                          ("attribute", "aws_arn"))
    assert steps_for(ROLE, ("allow", "logins", 2)) == (("attribute", "allow"), ("attribute", "logins"),
                                                        ("index", 2))
    assert steps_for(ROLE, ("allow", "node_labels", "env", 0)) == (
        ("attribute", "allow"), ("attribute", "node_labels"), ("key", "env"), ("index", 0))
    assert steps_for(BOT, ("traits", "logins", 0)) == (("attribute", "traits"), ("key", "logins"), ("index", 0))
    # a path the schema does not know points at the nearest attribute that exists, or at the resource
    assert steps_for(BOT, ("bogus", 3)) == ()
    assert steps_for(TOKEN, ("metadata", "name")) == ()
    assert steps_for(ROLE, ("allow", "bogus", 1)) == (("attribute", "allow"),)


def test_plans_keep_configured_values_and_leave_absent_blocks_out() -> None:
    config = values.complete(ROLE, {"name": "web", "allow": {"logins": ["a"]}})
    normalized = {"name": "web", "description": "", "labels": {}, "allow": {"logins": ["a"], "node_labels": {},
                                                                             "rules": []},
                  "deny": {"logins": [], "node_labels": {}, "rules": []}, "options": {"max_session_ttl": "30h"}}
    planned = values.planned(ROLE, config, normalized)
    assert planned["deny"] is None  # not in the configuration: not planned
    assert planned["options"] == {"max_session_ttl": "30h"}  # a group block: its defaults
    assert planned["allow"] == {"logins": ["a"], "node_labels": {}, "rules": []}
    assert planned["description"] == "" and planned["labels"] == {}
    # the cluster's defaults in an absent single block stay absent; a real difference shows
    stated = values.stated(ROLE, {**normalized, "id": "web"}, planned)
    assert stated["options"] == {"max_session_ttl": "30h"} and stated["deny"] is None
    drifted = values.stated(ROLE, {**normalized, "id": "web", "options": {"max_session_ttl": "2h"},
                                   "deny": {"logins": ["root"], "node_labels": {}, "rules": []}}, planned)
    assert drifted["options"] == {"max_session_ttl": "2h"} and drifted["deny"]["logins"] == ["root"]


def test_times_keep_the_configured_spelling() -> None:
    state = values.stated(TOKEN, {"expires": "2030-01-01T00:00:00Z"}, {"expires": "2030-01-01T01:00:00+01:00"})
    assert state["expires"] == "2030-01-01T01:00:00+01:00"
    moved = values.stated(TOKEN, {"expires": "2031-01-01T00:00:00Z"}, {"expires": "2030-01-01T01:00:00+01:00"})
    assert moved["expires"] == "2031-01-01T00:00:00Z"


def test_state_upgrade_reshapes_runs_upgraders_in_order_and_refuses_newer(monkeypatch: pytest.MonkeyPatch) -> None:
    p = TerraformProvider()
    old = json.dumps({"id": "web", "name": "web", "retired": 1}).encode()
    state, diags = p.upgrade("machineid_role", 0, old)
    assert not diags and state["name"] == "web" and "retired" not in state and state["labels"] is None
    rdef, schema = RESOURCE_SCHEMAS["machineid_role"]
    monkeypatch.setitem(RESOURCE_SCHEMAS, "machineid_role", (rdef, dataclasses.replace(schema, version=2)))
    monkeypatch.setitem(tfprovider.UPGRADERS, ("machineid_role", 0), lambda s: {**s, "description": "v1"})
    monkeypatch.setitem(tfprovider.UPGRADERS, ("machineid_role", 1),
                        lambda s: {**s, "description": s["description"] + "+v2"})
    state, diags = p.upgrade("machineid_role", 0, old)
    assert state["description"] == "v1+v2"
    state, diags = p.upgrade("machineid_role", 3, old)
    assert state is None and "newer machineid provider" in diags[0].summary


def test_a_token_state_from_version_0_upgrades_to_the_schema_the_provider_serves() -> None:
    """The token's schema is at version 2: a version-0 state gets `used` (false, version 1), and a token-method
    token's name moves to the sensitive `secret_name` (version 2)."""
    p = TerraformProvider()
    assert RESOURCE_SCHEMAS["machineid_provision_token"][1].version == 2
    v0 = {"id": "token-abc", "name": "s" * 32, "bot_name": "b", "join_method": "token",
          "token_expires": "2030-01-01T00:00:00Z"}
    state, diags = p.upgrade("machineid_provision_token", 0, json.dumps(v0).encode())
    assert not diags and state["used"] is False and state["bot_name"] == "b"
    assert state["name"] is None and state["secret_name"] == "s" * 32
    state, diags = p.upgrade("machineid_provision_token", 2, json.dumps(v0).encode())
    assert not diags and state["used"] is None and state["name"] == "s" * 32  # at version 2: no upgrader runs
    state, diags = p.upgrade("machineid_provision_token", 3, json.dumps(v0).encode())
    assert state is None and "knows up to 2" in diags[0].detail


@pytest.mark.parametrize(("method", "where"), [("token", "secret_name"), ("iam", "name"),
                                               ("bound_keypair", "name")])
def test_a_version_1_token_state_keeps_its_name_where_the_join_method_calls_for(method: str, where: str) -> None:
    v1 = {"id": "x", "name": "n" * 32, "bot_name": "b", "join_method": method, "used": False}
    state, diags = TerraformProvider().upgrade("machineid_provision_token", 1, json.dumps(v1).encode())
    other = {"name", "secret_name"} - {where}
    assert not diags and state[where] == "n" * 32 and state[other.pop()] is None


def test_only_a_token_method_name_is_sensitive() -> None:
    """Terraform marks sensitivity per attribute: the public names (iam, bound_keypair) are `name`, which plans and
    -generate-config-out show; a token-method token's name, its secret, is the sensitive `secret_name`."""
    name, hidden = TOKEN.attribute("name"), TOKEN.attribute("secret_name")
    assert name is not None and hidden is not None
    assert not name.sensitive and hidden.sensitive
    assert name.optional and name.computed and hidden.optional and hidden.computed
    assert "secret_name" in name.description and "iam, bound_keypair" in name.description


def _token_config(**given: object) -> dict[str, object]:
    return values.complete(TOKEN, {"bot_name": "robot", **given})  # type: ignore[no-any-return]


@pytest.mark.parametrize(("given", "name", "hidden"), [
    ({"name": "ci-iam", "join_method": "iam", "allow": [{"aws_account": "123456789012"}]}, "ci-iam", None),
    ({"secret_name": "s" * 32}, None, "s" * 32),
    ({}, None, UNKNOWN),  # generated by the cluster
    ({"name": "ci-key", "join_method": UNKNOWN}, "ci-key", UNKNOWN),  # the method is known only at apply
])
def test_a_planned_token_name_is_in_the_attribute_its_join_method_calls_for(given: dict[str, object],
                                                                           name: object, hidden: object) -> None:
    config = _token_config(**given)
    planned, replace, diags = TerraformProvider().plan("machineid_provision_token", None, config, config)
    assert not diags and not replace
    assert planned["name"] == name
    assert planned["secret_name"] == hidden


@pytest.mark.parametrize(("given", "attribute", "says"), [
    ({"name": "s" * 32}, "name", "set `secret_name` instead"),
    ({"secret_name": "ci-iam", "join_method": "iam", "allow": [{"aws_account": "123456789012"}]}, "secret_name",
     "set `name` instead"),
])
def test_a_name_in_the_wrong_attribute_is_refused_naming_it(given: dict[str, object], attribute: str,
                                                            says: str) -> None:
    """A token-method name in `name` would show in every plan: refused at validation and at plan."""
    config = _token_config(**given)
    p = TerraformProvider()
    for diags in (p.validate_resource("machineid_provision_token", config),
                  p.plan("machineid_provision_token", None, config, config)[2]):
        [d] = diags
        assert d.steps == (("attribute", attribute),) and says in d.detail
        assert "s" * 32 not in d.detail


@pytest.mark.parametrize("version", [5, 6])
def test_stop_provider_tells_the_core_to_stop_waiting(version: int) -> None:
    from machineid.terraform import servicer
    from machineid.terraform.proto import tfplugin5_pb2, tfplugin6_pb2

    if version == 6:
        tf: servicer.Servicer = servicer.Servicer(tfplugin6_pb2)
        tf.StopProvider(tfplugin6_pb2.StopProvider.Request(), None)  # type: ignore[arg-type]
    else:
        tf = servicer.Servicer5(tfplugin5_pb2)
        tf.Stop(tfplugin5_pb2.Stop.Request(), None)  # type: ignore[arg-type]
    assert tf.provider.core.stopping.is_set()


def test_pulumi_cancel_tells_the_core_to_stop_waiting() -> None:
    from machineid.pulumi.servicer import Servicer as PulumiServicer

    pulumi = PulumiServicer()
    assert not pulumi.provider.core.stopping.is_set()
    pulumi.Cancel(None, None)  # type: ignore[arg-type]
    assert pulumi.provider.core.stopping.is_set()


def test_schema_versions_and_upgraders_name_real_resources() -> None:
    """A misspelt key would be ignored silently: the state would never be upgraded."""
    from machineid.iac.resource import RESOURCES
    from machineid.terraform.schema import SCHEMA_VERSIONS

    names = {r.name for r in RESOURCES}
    assert set(SCHEMA_VERSIONS) <= names
    for type_name, version in tfprovider.UPGRADERS:
        assert type_name in RESOURCE_SCHEMAS and version < RESOURCE_SCHEMAS[type_name][1].version


def _role_state(ttl: str) -> dict[str, object]:
    return values.complete(ROLE, {"id": "web", "name": "web", "description": "", "labels": {},
                                  "options": {"max_session_ttl": ttl}})  # type: ignore[no-any-return]


def test_options_left_out_plan_the_default_the_cluster_will_hold() -> None:
    """A removed `options` block plans the model's default ("8h" -> "30h"), not null, and no change where the
    cluster already holds it. Terraform sends a left-out group block as an object of nulls."""
    p = TerraformProvider()
    [options] = [b for b in ROLE.blocks if b.name == "options"]
    assert options.nesting == "group"  # Terraform never makes it null
    config = values.complete(ROLE, {"name": "web", "options": {"max_session_ttl": None}})
    planned, replace, diags = p.plan("machineid_role", _role_state("8h"), config, config)
    assert not diags and not replace and planned["options"] == {"max_session_ttl": "30h"}
    prior = _role_state("30h")
    assert p.plan("machineid_role", prior, config, config)[0] == prior  # nothing to change
    created, _, _ = p.plan("machineid_role", None, config, config)
    assert created["options"] == {"max_session_ttl": "30h"}
    # a bound_keypair token's recovery block is a group inside a single block
    [bound] = [b for b in TOKEN.blocks if b.name == "bound_keypair"]
    assert bound.nesting == "single" and [(b.name, b.nesting) for b in bound.block.blocks] == [
        ("onboarding", "single"), ("recovery", "group")]

