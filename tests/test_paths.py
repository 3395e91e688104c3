"""Structured paths end to end: validators name the item inside a value, violations cross the wire as lists of
steps (an older server's text still reads), and Terraform diagnostics point at attributes that exist."""

from __future__ import annotations

import json
from typing import Any

import grpc
import pytest

from machineid.api import status
from machineid.iac.resource import PROVISION_TOKEN, prop_path
from machineid.model import codec
from machineid.model import validators as v
from machineid.model.errors import FieldViolation, ValidationError
from machineid.model.resources import Role
from machineid.terraform import twins
from machineid.terraform.diagnostics import steps_for
from machineid.terraform.provider import TerraformProvider
from machineid.terraform.schema import RESOURCE_SCHEMAS
from machineid.terraform.values import complete
from tests.conftest import ServerProc

TOKEN = RESOURCE_SCHEMAS["machineid_provision_token"][1].block


def test_validators_of_items_and_keys_say_where_not_in_the_text() -> None:
    logins = v.each(v.LOGIN)
    found = logins.find(["ubuntu", "Bad!"])
    assert found is not None and found[0] == (1,) and found[1].startswith('"Bad!" is not valid')
    assert logins.check(["ubuntu", "Bad!"]) == found[1]  # the reason alone, no "item [1]:"
    assert v.each(v.each(v.LOGIN)).find([["a"], ["b", "Bad!"]]) == ((1, 1), found[1])
    assert v.each_key(v.LABEL_KEY).find({"env": [], "a b": []}) == (("a b",), v.each_key(v.LABEL_KEY).check(
        {"a b": []}))
    assert v.LOGIN.find("Bad!") == ((), v.LOGIN.check("Bad!"))
    with pytest.raises(ValidationError) as e:
        codec.decode_and_validate(Role, {"metadata": {"name": "r"}, "spec": {"allow": {"logins": ["ok", "Bad!"]}}})
    [violation] = e.value.violations
    assert violation.path == ("spec", "allow", "logins", 1) and "item" not in violation.reason


class _Refused(grpc.RpcError):
    """What grpcio raises for an INVALID_ARGUMENT answer with these trailers."""

    def __init__(self, payload: Any) -> None:
        self.payload = payload

    def code(self) -> grpc.StatusCode:
        return grpc.StatusCode.INVALID_ARGUMENT

    def details(self) -> str:
        return "refused"

    def trailing_metadata(self) -> Any:
        return ((status.VIOLATIONS_KEY, json.dumps(self.payload)),)


def test_an_older_servers_text_paths_still_read_as_steps() -> None:
    err = status.from_rpc_error(_Refused([{"path": "spec.allow.logins[0]", "reason": "bad"},
                                          {"path": "", "reason": "whole"}]))
    assert isinstance(err, ValidationError)
    assert [x.path for x in err.violations] == [("spec", "allow", "logins", 0), ()]
    steps = status.from_rpc_error(_Refused([{"steps": ["spec", "node_labels", "a.b[0]", 2],
                                             "path": "spec.node_labels.a.b[0][2]", "reason": "bad"}]))
    assert isinstance(steps, ValidationError) and steps.violations[0].path == ("spec", "node_labels", "a.b[0]", 2)


def test_older_clients_still_find_the_rendered_path() -> None:
    """An older client reads `path` as text: the server sends it beside the steps."""
    sent: list[Any] = []

    class Context:
        def set_trailing_metadata(self, metadata: Any) -> None:
            sent.extend(metadata)

        def abort(self, code: grpc.StatusCode, details: str) -> None:
            raise RuntimeError(details)

    with pytest.raises(RuntimeError):
        status.abort(Context(), ValidationError([FieldViolation(("spec", "allow", "logins", 1), "bad")]))  # type: ignore[arg-type]
    [(key, value)] = sent
    assert key == status.VIOLATIONS_KEY
    assert json.loads(value) == [{"steps": ["spec", "allow", "logins", 1], "path": "spec.allow.logins[1]",
                                  "reason": "bad"}]


def test_violations_cross_the_wire_as_steps(server: ServerProc) -> None:
    """A map key with dots and brackets survives: the path is steps, not text parsed back."""
    role = codec.decode(Role, {"metadata": {"name": "paths-role"},
                               "spec": {"allow": {"logins": ["ok", "Bad!"], "node_labels": {"a.b[0] c": ["x"]}}}})
    with server.admin() as admin, pytest.raises(ValidationError) as e:
        admin.upsert(role)
    assert sorted(x.path for x in e.value.violations) == [("spec", "allow", "logins", 1),
                                                          ("spec", "allow", "node_labels", "a.b[0] c")]


def test_a_cluster_refusal_points_at_the_attribute_that_holds_the_property(server: ServerProc) -> None:
    """The cluster refuses an expiry in the past (metadata.expires): the diagnostic points at `expires`."""
    p = TerraformProvider(client_factory=lambda cfg: server.admin())
    p.configure({"address": server.address, "identity_file": str(server.admin_identity_path)})
    config = complete(TOKEN, {"name": "paths-iam", "join_method": "iam", "bot_name": "robot",
                              "expires": "2001-01-01T00:00:00Z", "allow": [{"aws_account": "123456789012"}]})
    planned, _, diags = p.plan("machineid_provision_token", None, config, config)
    assert not diags
    state, diags = p.apply("machineid_provision_token", None, planned, config)
    [d] = diags
    assert state is None  # nothing was created
    assert d.steps == (("attribute", "expires"),) and "in the past" in d.detail


@pytest.mark.parametrize(("method", "attribute"), [("token", "secret_name"), ("iam", "name")])
def test_a_refused_token_name_points_at_name_or_secret_name(method: str, attribute: str) -> None:
    refused = [FieldViolation(prop_path(("metadata", "name")), "is refused")]
    [moved] = twins.violations(PROVISION_TOKEN, {"join_method": method}, refused)
    assert steps_for(TOKEN, moved.path) == (("attribute", attribute),)
