"""`pulumi preview --json` read into the core's Plan for `machineid review`.

Each step's inputs are the program's (camelCase, the unknown sentinel where a value is known only at apply, and
"[secret]" where the preview hides a secret; both are the core's UNKNOWN here). A bot's roles that are another
resource's unknown name (a role created in the same program) come from the step's property dependencies
(iac.plan.resolve_names)."""

from __future__ import annotations

from typing import Any

from machineid.iac.plan import Change, Plan, decode_planned
from machineid.iac.unknown import UNKNOWN
from machineid.model.errors import ValidationError
from machineid.pulumi import resources
from machineid.pulumi.values import UNKNOWN_STR

# A step's op -> the change it makes; None: another step of the same resource carries it.
_ACTIONS: dict[str, str | None] = {
    "same": "same", "create": "create", "update": "update", "delete": "delete", "replace": "replace",
    "create-replacement": "replace", "import-replacement": "replace", "delete-replaced": None, "read": "same",
    "read-replacement": "same", "refresh": "same", "import": "same", "diff": "same", "discard": None,
    "discard-replaced": None, "remove-pending-replace": None}
HIDDEN = "[secret]"  # how the preview shows a secret value


def recognises(data: Any) -> bool:
    """A preview: a list of steps, each with its op and URN (an empty program still has its stack's step)."""
    return (isinstance(data, dict) and "format_version" not in data and isinstance(data.get("steps"), list)
            and all(isinstance(s, dict) and isinstance(s.get("op"), str) and isinstance(s.get("urn"), str)
                    for s in data["steps"]))


def read(data: dict[str, Any]) -> Plan:
    errors = [d for d in data.get("diagnostics") or [] if isinstance(d, dict) and d.get("severity") == "error"]
    if errors:
        raise ValidationError(f"plan: the preview failed ({str(errors[0].get('message', '')).strip()}); fix it "
                              "and preview again")
    steps = [s for s in data["steps"] if _state(s).get("type") in resources.RESOURCES]
    addresses = {s["urn"]: _address(s["urn"]) for s in steps}
    changes: list[Change] = []
    for s in steps:
        action = _ACTIONS.get(s["op"], "")
        if action is None:
            continue
        address = addresses[s["urn"]]
        if not action:
            raise ValidationError(f"plan: {address}: unknown step op {s['op']!r}; expected {', '.join(_ACTIONS)}")
        r = resources.RESOURCES[_state(s)["type"]]
        before, _, _ = decode_planned(r.rdef, _inputs(r, s.get("oldState")), address)
        after, values, unknown = decode_planned(r.rdef, _inputs(r, s.get("newState")), address)
        deps = (s.get("newState") or {}).get("propertyDependencies") or {}
        sources = {}
        for prop, urns in deps.items():
            name = next(iter(resources.snake_props(r, {prop: None})[0]), None)
            found = [addresses.get(u) for u in urns] if isinstance(urns, list) else []
            if name and found and all(found):
                sources[name] = [a for a in found if a]
        changes.append(Change(r.rdef, address, action, before, after if action != "delete" else None, unknown,
                              values, sources))
    return Plan("pulumi", changes)


def _state(step: dict[str, Any]) -> dict[str, Any]:
    state = step.get("newState") or step.get("oldState")
    return state if isinstance(state, dict) else {}


def _address(urn: str) -> str:
    """The URN's type::name (machineid:index:Role::deployer)."""
    return "::".join(urn.split("::")[-2:]) if "::" in urn else urn


def _inputs(r: resources.PulumiResource, state: Any) -> dict[str, Any] | None:
    if not isinstance(state, dict) or not isinstance(state.get("inputs"), dict):
        return None
    snake, _ = resources.snake_props(r, _marked(state["inputs"]))
    return snake


def _marked(value: Any) -> Any:
    """The sentinel and a hidden secret as UNKNOWN: neither is known from the preview."""
    if value in (UNKNOWN_STR, HIDDEN):
        return UNKNOWN
    if isinstance(value, dict):
        return {k: _marked(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_marked(v) for v in value]
    return value
