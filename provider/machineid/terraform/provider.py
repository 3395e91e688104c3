"""The Terraform adapter over the provider core, on plain values (no gRPC): plans, applies, reads, imports,
upgrades and data sources, with diagnostics that point at attributes.

How values map (schema.py): the core's property names are the attribute names, objects are blocks, and `id` is
the core's resource ID. Plans are built from the configuration and the core's completed inputs; a plan with no
change returns the prior state as it is, so `plan -detailed-exitcode` exits 0 right after an apply."""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from machineid.iac import functions
from machineid.iac.core import Core, Hints, State
from machineid.iac.resource import ResourceDef
from machineid.iac.unknown import UNKNOWN, contains_unknown
from machineid.model import codec
from machineid.model.errors import MachineIDError, NotFoundError, ValidationError
from machineid.terraform import twins, values
from machineid.terraform.diagnostics import Diagnostic, from_error, from_violations
from machineid.terraform.schema import (
    RESOURCE_SCHEMAS,
    Block,
    data_sources,
    provider_schema,
)

if TYPE_CHECKING:
    from machineid.api.client import Client
    from machineid.iac.config import ProviderConfig

log = logging.getLogger("machineid.terraform")

HINTS = Hints(
    how_to_set={"address": 'set `address` in the `provider "machineid"` block',
                "identity_file": 'set `identity_file` in the `provider "machineid"` block',
                "identity": "`identity` (sensitive) in that block",
                "join_method": "`join_method = \"github\"` (or gitlab, kubernetes, oidc, iam) in that block",
                "join_token": 'set `join_token` in the `provider "machineid"` block',
                "ca_pin": 'set `ca_pin` in the `provider "machineid"` block'},
    role_reference="a machineid_role resource, referenced as machineid_role.NAME.name",
    import_command=lambda rdef, name: (f'an import block (to = machineid_{rdef.name}.NAME, id = "{name}") or '
                                       f"`tofu import machineid_{rdef.name}.NAME {name}`"),
    create_first="add `lifecycle { create_before_destroy = true }` to this resource, so that the new one exists "
                 "and its holders move to it before the old one is deleted",
)

def _secrets_apart(rdef: ResourceDef) -> Callable[[dict[str, Any]], dict[str, Any]]:
    """A state from before the secret_NAME attributes: the value moves to the attribute its values call for."""
    return lambda state: twins.to_terraform(rdef, twins.to_core(rdef, state))


# Upgraders of a resource's state from one schema version to the next: (type name, from version) -> function.
UPGRADERS: dict[tuple[str, int], Callable[[dict[str, Any]], dict[str, Any]]] = {
    # Before `used`, a token in state was one the cluster still had (or one the next refresh drops).
    ("machineid_provision_token", 0): lambda state: {**state, "used": False},
    # Before `secret_name`, every token's name was in (sensitive) `name`.
    ("machineid_provision_token", 1): _secrets_apart(RESOURCE_SCHEMAS["machineid_provision_token"][0]),
}

Planned = tuple[Any, list[str], list[Diagnostic]]  # (planned state, attributes forcing replacement, diagnostics)


def _expand(block: Block, value: dict[str, Any]) -> dict[str, Any]:
    """A state value in the core's full form: an absent single block is that block's defaults, at every depth
    (a bound_keypair block without its recovery block)."""
    out = dict(value)
    for b in block.blocks:
        inner = out.get(b.name)
        if b.is_object:
            out[b.name] = codec.encode(b.tp()) if inner is None else _expand(b.block, inner) \
                if isinstance(inner, dict) else inner
        elif isinstance(inner, list):
            out[b.name] = [_expand(b.block, x) if isinstance(x, dict) else x for x in inner]
    return out


def _split(block: Block, rdef: ResourceDef, state: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """A state as the core's (outputs, inputs): every property in full form, and the inputs among them."""
    old = {k: v for k, v in _expand(block, twins.to_core(rdef, state)).items() if k != "id"}
    return old, {k: old.get(k) for k in rdef.inputs()}


def _stated(block: Block, rdef: ResourceDef, st: State, ref: Any) -> Any:
    """The state Terraform keeps for a core state (ref: the plan, or the prior state; None on import)."""
    return values.complete(block, values.stated(block, twins.to_terraform(rdef, {"id": st.id, **st.outputs}), ref))


class TerraformProvider:
    def __init__(self, client_factory: Callable[[ProviderConfig], Client] | None = None) -> None:
        self.core = Core(HINTS, lambda severity, message: log.info("%s", message), client_factory)

    # ---------------------------------------------------------------- provider
    def validate_provider(self, config: dict[str, Any]) -> list[Diagnostic]:
        address = config.get("address")
        if isinstance(address, str) and address and (":" not in address or
                                                     not address.rsplit(":", 1)[1].isdigit()):
            return [Diagnostic("Invalid machineid provider configuration",
                               f'address: "{address}" is not host:port, e.g. 127.0.0.1:3025', (("attribute",
                                                                                                 "address"),))]
        return []

    def configure(self, config: dict[str, Any]) -> list[Diagnostic]:
        known = {k: v for k, v in config.items() if v is not None and not contains_unknown(v)}
        self.core.configure(known)
        if any(contains_unknown(v) for v in config.values()):
            return []  # known at apply; checked when the provider first talks to the cluster
        problems = self.core.check_config(known)
        if not problems:
            try:
                # Reads the identity and checks the CA pin (no network yet), or joins (join_method): a refusal
                # shows at the provider block.
                self.core.connect()
            except ValidationError as e:
                problems = e.violations
            except MachineIDError as e:
                return from_error(provider_schema().block, e, "configuring the machineid provider")
        return from_violations(provider_schema().block, problems, "Invalid machineid provider configuration")

    # ---------------------------------------------------------------- validation
    def validate_resource(self, type_name: str, config: dict[str, Any]) -> list[Diagnostic]:
        rdef, schema = RESOURCE_SCHEMAS[type_name]
        inputs = self._inputs(rdef, config)
        for name in rdef.server_defaults:
            if inputs.get(name) is None:
                # Not set here may still mean "as the state has it" (a generated configuration leaves a sensitive
                # name null): validation cannot see the state, the plan checks it.
                inputs[name] = UNKNOWN
        result = self.core.check(rdef, inputs, references=False)
        found = twins.misplaced(rdef, config) + twins.violations(rdef, inputs, result.violations)
        return from_violations(schema.block, found, "Invalid machineid configuration")

    def validate_data_source(self, type_name: str, config: dict[str, Any]) -> list[Diagnostic]:
        source = data_sources()[type_name]
        name = config.get("name")
        if source.rdef is not None and isinstance(name, str):
            from machineid.model import validators as v

            reason = v.RESOURCE_NAME.check(name)
            if reason:
                return [Diagnostic("Invalid machineid configuration", f"name: {reason}", (("attribute", "name"),))]
        return []

    @staticmethod
    def _inputs(rdef: ResourceDef, config: dict[str, Any]) -> dict[str, Any]:
        """The configuration as the core's inputs."""
        merged = twins.to_core(rdef, config)
        return {name: merged.get(name) for name in rdef.inputs()}

    # ---------------------------------------------------------------- state upgrade
    def upgrade(self, type_name: str, version: int, raw: bytes) -> tuple[Any, list[Diagnostic]]:
        """A state written by an older provider, in the current schema's shape: versioned upgraders first, then
        attributes this schema no longer has are dropped and new ones start null (refreshed by the next read)."""
        schema = RESOURCE_SCHEMAS[type_name][1]
        if version > schema.version:
            return None, [Diagnostic("State written by a newer machineid provider",
                                     f"{type_name} state has schema version {version}; this provider knows up to "
                                     f"{schema.version}: upgrade the provider")]
        state: dict[str, Any] = json.loads(raw) if raw else {}
        for v in range(version, schema.version):
            upgrader = UPGRADERS.get((type_name, v))
            if upgrader is not None:
                state = upgrader(state)
        return values.complete(schema.block, state), []

    # ---------------------------------------------------------------- read
    def read(self, type_name: str, state: dict[str, Any]) -> tuple[Any, list[Diagnostic]]:
        rdef, schema = RESOURCE_SCHEMAS[type_name]
        old, old_inputs = _split(schema.block, rdef, state)
        try:
            st = self.core.read(rdef, str(state.get("id") or ""), old, old_inputs)
        except MachineIDError as e:
            return state, from_error(schema.block, e, f"reading {type_name}")
        if st is None:
            return None, []
        return _stated(schema.block, rdef, st, state), []

    # ---------------------------------------------------------------- plan
    def plan(self, type_name: str, prior: Any, proposed: Any, config: Any) -> Planned:
        rdef, schema = RESOURCE_SCHEMAS[type_name]
        if proposed is None:
            return None, [], []  # destroy
        try:
            return self._plan(rdef, schema.block, prior, proposed, config)
        except MachineIDError as e:  # the cluster (or the provider's own join) refused: say so, as a diagnostic
            return proposed, [], from_error(schema.block, e, f"planning {type_name}")

    def _plan(self, rdef: ResourceDef, block: Block, prior: Any, proposed: Any, config: Any) -> Planned:
        misplaced = twins.misplaced(rdef, config)
        if misplaced:
            return proposed, [], from_violations(block, misplaced, "Invalid machineid configuration")
        given = twins.to_core(rdef, config)
        inputs = {name: given.get(name) for name in rdef.inputs()}
        if prior is not None:  # left to the cluster, which chose these: checked as the cluster has them
            inputs = self.core.keep_server_choices(rdef, inputs, twins.to_core(rdef, prior))
        check = self.core.check(rdef, inputs, references=True)
        if check.violations:
            return proposed, [], from_violations(block, twins.violations(rdef, inputs, check.violations),
                                                 "Invalid machineid configuration")
        # Inputs planned as configured (Terraform's rule: a configured value is planned verbatim), the rest by the
        # core's plan rules: outputs, the ID and what the cluster chooses for inputs left unset.
        base = values.planned(block, given, check.inputs)
        unset_defaults = [n for n in rdef.server_defaults if given.get(n) is None]
        # The values the cluster chose stood in for unset ones in the check; the core's plan and diff keep them.
        news = {k: val for k, val in check.inputs.items() if k not in unset_defaults}
        replace: list[str] = []
        warnings: list[Diagnostic] = []
        if prior is None:
            planned = self.core.plan(rdef, news)
        else:
            old, old_inputs = _split(block, rdef, prior)
            diff = self.core.diff(rdef, old, old_inputs, news)
            planned = self.core.plan(rdef, news, State(str(prior.get("id") or ""), old, old_inputs),
                                     replace=bool(diff.replaces), changed=diff.changed)
            replace = [twins.attribute(rdef, base, name) for name in diff.replaces]
            if "expires" in diff.replaces and "token_expires" in base:
                replace.append("token_expires")
            warnings = from_violations(block, twins.violations(rdef, base, diff.warnings), "Replacing this resource",
                                       warning=True)
        base["id"] = planned.id
        for name in (*(p.name for p in rdef.props() if not p.is_input), *unset_defaults):
            base[name] = planned.outputs.get(name)
        return values.complete(block, twins.to_terraform(rdef, base, config)), replace, warnings

    # ---------------------------------------------------------------- apply
    def apply(self, type_name: str, prior: Any, planned: Any, config: Any) -> tuple[Any, list[Diagnostic]]:
        rdef, schema = RESOURCE_SCHEMAS[type_name]
        block = schema.block
        try:
            if planned is None:
                old = {k: v for k, v in twins.to_core(rdef, prior).items() if k != "id"}
                self.core.delete(rdef, str(prior.get("id") or ""), old)
                return None, []
            inputs = self._inputs(rdef, config)
            news = self.core.check(rdef, inputs, references=False)
            if news.violations:
                return prior, from_violations(block, twins.violations(rdef, inputs, news.violations),
                                              "Invalid machineid configuration")
            if prior is None:
                st = self.core.create(rdef, news.inputs)
            else:
                old, old_inputs = _split(block, rdef, prior)
                st = self.core.update(rdef, str(prior.get("id") or ""), old, old_inputs, news.inputs)
        except MachineIDError as e:
            action = "deleting" if planned is None else "creating" if prior is None else "updating"
            if isinstance(e, ValidationError):  # a property the cluster refused: its attribute for these values
                e = ValidationError(twins.violations(rdef, twins.to_core(rdef, config or prior or {}), e.violations))
            return prior, from_error(block, e, f"{action} {type_name}")
        return _stated(block, rdef, st, planned), []

    # ---------------------------------------------------------------- import
    def import_(self, type_name: str, id: str) -> tuple[Any, list[Diagnostic]]:
        rdef, schema = RESOURCE_SCHEMAS[type_name]
        try:
            st = self.core.read(rdef, id, {}, None)
        except MachineIDError as e:
            return None, from_error(schema.block, e, f"importing {type_name}")
        if st is None:
            shown = f"(the {rdef.kind}, not shown)" if "name" in rdef.secret_by_value else id
            return None, [Diagnostic("Cannot import a missing object",
                                     f"no {rdef.kind} {shown} on the machineid cluster; check the ID")]
        return _stated(schema.block, rdef, st, None), []

    # ---------------------------------------------------------------- data sources
    def read_data_source(self, type_name: str, config: dict[str, Any]) -> tuple[Any, list[Diagnostic]]:
        source = data_sources()[type_name]
        block = source.schema.block
        try:
            if source.fn is functions.GET_BOT_INSTANCES:
                given = {k: val for k, val in config.items() if k in {f.name for f in dataclasses.fields(
                    functions.BotInstancesArgs)} and val is not None}
                args = codec.decode_and_validate(functions.BotInstancesArgs, given)
                found = codec.encode(self.core.bot_instances(args))
                asked = ",".join(f"{k}={val}" for k, val in sorted(given.items()) if val not in ("", False))
                return values.complete(block, {**given, **found, "id": asked or "all"}), []
            if source.rdef is None:
                info = codec.encode(self.core.cluster_info())
                return values.complete(block, {"id": info["cluster_name"], **info}), []
            name = str(config.get("name") or "")
            st = self.core.read(source.rdef, name, {}, None)
            if st is None:
                raise NotFoundError(f'no {source.rdef.kind} named "{name}" on the machineid cluster')
        except MachineIDError as e:
            return None, from_error(block, e, f"reading data source {type_name}")
        return values.complete(block, {**st.outputs, "id": st.id, "name": name}), []
