"""The machineid changes in a plan, from either tool's JSON: `tofu show -json PLANFILE` (or terraform's) and
`pulumi preview --json`. Each change becomes model objects before and after, decoded by the same code the
providers use, so a plan is read exactly as the provider will apply it.

A value not known until apply is left out; a bot's role that is another resource's unknown name (a role created
in the same plan) is resolved from the plan itself: Terraform's configuration references, Pulumi's property
dependencies."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from machineid.iac.resource import BOT, PROVISION_TOKEN, ROLE, ResourceDef, decode_inputs
from machineid.model.errors import ValidationError
from machineid.pulumi import resources as pulumi_resources
from machineid.pulumi.values import UNKNOWN_STR as PULUMI_UNKNOWN

_TF_TYPES = {"machineid_role": ROLE, "machineid_bot": BOT, "machineid_provision_token": PROVISION_TOKEN}
_PULUMI_TYPES = {r.token: r for r in pulumi_resources.RESOURCES.values()}
_ACTIONS = {"create": "create", "update": "update", "delete": "delete", "no-op": "same", "read": "same",
            "same": "same", "replace": "replace", "create-replacement": "replace", "delete-replaced": "skip",
            "discard": "skip", "import": "same", "refresh": "same"}


@dataclass
class Change:
    rdef: ResourceDef
    address: str  # how the plan names it: machineid_role.r, or Pulumi's Role::deployer
    action: str  # create, update, replace, delete, same
    before: Any = None  # model object (Role, Bot, ProvisionToken)
    after: Any = None
    unknown: list[str] = field(default_factory=list)  # properties known only at apply
    values: dict[str, Any] = field(default_factory=dict)  # the planned inputs (provider-only ones too: a ttl)


@dataclass
class Plan:
    tool: str
    changes: list[Change]


def load(text: str) -> Plan:
    try:
        data = json.loads(text)
    except ValueError as e:
        raise ValidationError(f"plan: not JSON ({e}); pass `tofu show -json PLANFILE` or `pulumi preview --json` "
                              "output") from None
    if isinstance(data, dict) and ("resource_changes" in data or "format_version" in data):
        return Plan("terraform", terraform_changes(data))
    if isinstance(data, dict) and "steps" in data:
        return Plan("pulumi", pulumi_changes(data))
    raise ValidationError("plan: neither `tofu show -json PLANFILE` (resource_changes) nor `pulumi preview --json` "
                          "(steps) output")


def _decode(rdef: ResourceDef, values: dict[str, Any] | None, address: str) -> Any:
    if values is None:
        return None
    inputs = {k: values.get(k) for k in rdef.inputs()}
    try:
        return decode_inputs(rdef, inputs).obj
    except ValidationError as e:
        raise ValidationError(f"plan: {address}: {e}") from None


# ---------------------------------------------------------------- Terraform / OpenTofu


def _tf_values(values: Any, unknown: Any) -> tuple[dict[str, Any] | None, list[str]]:
    """A planned value in the core's form (a single nested block as an object, null as unset), and the names of
    the attributes not known yet."""
    if not isinstance(values, dict):
        return None, []
    marks = unknown if isinstance(unknown, dict) else {}
    out: dict[str, Any] = {}
    pending: list[str] = []
    for key, val in values.items():
        if marks.get(key) is True:
            pending.append(key)
            continue
        out[key] = val
    for key, mark in marks.items():
        if mark is True and key not in values:
            pending.append(key)
    return out, pending


def _tf_expressions(data: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """address -> attribute -> its expression in the configuration (root module)."""
    return {res["address"]: dict(res.get("expressions") or {})
            for res in data.get("configuration", {}).get("root_module", {}).get("resources", [])}


def _references(expressions: dict[str, Any]) -> dict[str, list[str]]:
    return {k: list(e["references"]) for k, e in expressions.items() if isinstance(e, dict) and e.get("references")}


def terraform_changes(data: dict[str, Any]) -> list[Change]:
    changes: list[Change] = []
    planned_names: dict[str, str] = {}
    raw = [rc for rc in data.get("resource_changes", []) if rc.get("type") in _TF_TYPES and rc.get("mode") != "data"]
    for rc in raw:
        after = (rc.get("change") or {}).get("after")
        if isinstance(after, dict) and isinstance(after.get("name"), str):
            planned_names[rc["address"]] = after["name"]
    expressions = _tf_expressions(data)
    for rc in raw:
        rdef, change = _TF_TYPES[rc["type"]], rc.get("change") or {}
        actions = change.get("actions") or ["no-op"]
        action = "replace" if set(actions) == {"create", "delete"} else _ACTIONS.get(actions[0], "same")
        after, unknown = _tf_values(change.get("after"), change.get("after_unknown"))
        configured = expressions.get(rc["address"])
        if configured is not None:  # what the cluster chooses when the configuration leaves it out stays unset
            unknown = [u for u in unknown if u in configured or u not in rdef.server_defaults]
        if after is not None and "roles" in unknown and rdef is BOT:
            resolved = _resolve_tf_roles(change, _references(configured or {}), planned_names)
            if resolved is not None:
                after["roles"] = resolved
                unknown.remove("roles")
        changes.append(Change(rdef, rc["address"], action, _decode(rdef, change.get("before"), rc["address"]),
                              _decode(rdef, after, rc["address"]) if action != "delete" else None, unknown,
                              after or {}))
    return changes


def _resolve_tf_roles(change: dict[str, Any], refs: dict[str, list[str]],
                      planned: dict[str, str]) -> list[str] | None:
    names = [planned[r] for r in refs.get("roles", []) if r in planned]
    known = [x for x in (change.get("after") or {}).get("roles") or [] if isinstance(x, str)]
    return list(dict.fromkeys([*known, *names])) if names else None


# ---------------------------------------------------------------- Pulumi


def _pulumi_values(r: pulumi_resources.PulumiResource, state: Any) -> tuple[dict[str, Any] | None, list[str]]:
    if not isinstance(state, dict) or not isinstance(state.get("inputs"), dict):
        return None, []
    inputs = state["inputs"]
    unknown = [k for k, val in inputs.items() if _has_unknown(val)]
    snake, _ = pulumi_resources.snake_props(r, {k: val for k, val in inputs.items() if k not in unknown})
    pending, _ = pulumi_resources.snake_props(r, dict.fromkeys(unknown))
    return snake, list(pending)


def _has_unknown(value: Any) -> bool:
    if value == PULUMI_UNKNOWN:
        return True
    if isinstance(value, list):
        return any(_has_unknown(x) for x in value)
    if isinstance(value, dict):
        return any(_has_unknown(x) for x in value.values())
    return False


def pulumi_changes(data: dict[str, Any]) -> list[Change]:
    steps = [s for s in data.get("steps", []) if isinstance(s, dict)]
    names: dict[str, str] = {}
    for s in steps:
        new = s.get("newState") or {}
        name = (new.get("inputs") or {}).get("name")
        if new.get("type") == "machineid:index:Role" and isinstance(name, str) and name != PULUMI_UNKNOWN:
            names[s.get("urn", "")] = name
    changes: list[Change] = []
    for s in steps:
        state = s.get("newState") or s.get("oldState") or {}
        r = _PULUMI_TYPES.get(state.get("type", ""))
        action = _ACTIONS.get(s.get("op", ""), "same")
        if r is None or action == "skip":
            continue
        urn = s.get("urn", "")
        address = "::".join(urn.split("::")[-2:]) if "::" in urn else urn
        before, _ = _pulumi_values(r, s.get("oldState"))
        after, unknown = _pulumi_values(r, s.get("newState"))
        if after is not None and r.rdef is BOT and "roles" in unknown:
            given = (s.get("newState") or {}).get("inputs", {}).get("roles") or []
            deps = [names[u] for u in (s.get("newState") or {}).get("propertyDependencies", {}).get("roles", [])
                    if u in names]
            resolved = [x for x in given if isinstance(x, str) and x != PULUMI_UNKNOWN] + deps
            if len(resolved) >= len(given):
                after["roles"] = list(dict.fromkeys(resolved))
                unknown.remove("roles")
        changes.append(Change(r.rdef, address, action, _decode(r.rdef, before, address),
                              _decode(r.rdef, after, address) if action != "delete" else None, unknown,
                              after or {}))
    return changes
