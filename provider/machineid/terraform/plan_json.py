"""A saved plan as `tofu show -json PLANFILE` (or terraform's) prints it, read into the core's Plan for
`machineid review`.

Unknown values are where `after_unknown` marks them. A server default the configuration leaves out (a token's
generated name) is the cluster's to choose, not unknown. A bot's roles that are another resource's unknown name
(a role created in the same plan) come from the configuration's references (iac.plan.resolve_names)."""

from __future__ import annotations

import re
from typing import Any

from machineid.iac.plan import Change, Plan, decode_planned
from machineid.iac.unknown import UNKNOWN
from machineid.model.errors import ValidationError
from machineid.terraform.schema import RESOURCE_SCHEMAS

_ACTIONS = {"create": "create", "update": "update", "delete": "delete", "no-op": "same", "read": "same",
            "forget": "same"}
# References whose values are known when planning: they never make a value unknown.
_KNOWN_AT_PLAN = ("var.", "count.", "each.", "path.", "terraform.")
_INSTANCE_KEYS = re.compile(r'\[(?:"(?:[^"\\]|\\.)*"|\d+)\]')


def recognises(data: Any) -> bool:
    """A saved plan: format_version with planned_values (every plan has them, one without changes too). A state
    (`show -json` without a plan file) has values instead."""
    return (isinstance(data, dict) and isinstance(data.get("format_version"), str)
            and isinstance(data.get("planned_values"), dict))


def read(data: dict[str, Any]) -> Plan:
    if data.get("errored") is True:
        raise ValidationError("plan: the plan failed (errored: true); fix what `tofu plan` reported and plan again")
    if data.get("complete") is False:
        raise ValidationError("plan: the plan is incomplete (complete: false: some changes are deferred to a later "
                              "plan), so it cannot be reviewed whole; apply in steps and review each plan")
    raw = [rc for rc in data.get("resource_changes") or [] if isinstance(rc, dict)
           and rc.get("type") in RESOURCE_SCHEMAS and rc.get("mode") == "managed"]
    addresses = [str(rc.get("address")) for rc in raw]
    expressions = _configuration(data)
    return Plan("terraform", [_change(rc, expressions, addresses) for rc in raw])


def _action(actions: Any) -> str:
    acts = actions if isinstance(actions, list) and actions else ["no-op"]
    if set(acts) == {"create", "delete"}:
        return "replace"
    found = _ACTIONS.get(str(acts[0]))
    if found is None:
        raise ValidationError(f"plan: unknown action {acts!r}; expected {', '.join(_ACTIONS)}")
    return found


def _change(rc: dict[str, Any], expressions: dict[str, dict[str, Any]], addresses: list[str]) -> Change:
    rdef = RESOURCE_SCHEMAS[rc["type"]][0]
    address = str(rc["address"])
    change = rc.get("change") or {}
    action = _action(change.get("actions"))
    configured = expressions.get(_config_address(rc))
    after = _with_unknowns(change.get("after"), change.get("after_unknown"))
    if isinstance(after, dict):
        for name in rdef.server_defaults:  # left out of the configuration: the cluster picks it
            if after.get(name) is UNKNOWN and configured is not None and name not in configured:
                after[name] = None
    before_obj, _, _ = decode_planned(rdef, change.get("before"), address)
    after_obj, values, unknown = decode_planned(rdef, after if isinstance(after, dict) else None, address)
    prefix = f"{rc['module_address']}." if rc.get("module_address") else ""
    sources = {}
    for prop, expr in (configured or {}).items():
        refs = expr.get("references") if isinstance(expr, dict) else None
        found = _sources(refs, prefix, addresses) if isinstance(refs, list) else None
        if found:
            sources[prop] = found
    return Change(rdef, address, action, before_obj, after_obj if action != "delete" else None, unknown, values,
                  sources)


def _with_unknowns(value: Any, marks: Any) -> Any:
    """after with UNKNOWN where after_unknown says true (unknown values are null or absent in after)."""
    if marks is True:
        return UNKNOWN
    if isinstance(value, dict):
        m = marks if isinstance(marks, dict) else {}
        out = {k: _with_unknowns(v, m.get(k)) for k, v in value.items()}
        out.update({k: UNKNOWN for k, mark in m.items() if mark is True and k not in value})
        return out
    if isinstance(value, list):
        ms = marks if isinstance(marks, list) else []
        return [_with_unknowns(v, ms[i] if i < len(ms) else None) for i, v in enumerate(value)]
    return value


def _configuration(data: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Resource address in the configuration (modules without instance keys) -> its attributes' expressions."""
    out: dict[str, dict[str, Any]] = {}

    def walk(module: Any, prefix: str) -> None:
        if not isinstance(module, dict):
            return
        for res in module.get("resources") or []:
            if isinstance(res, dict) and res.get("mode", "managed") == "managed":
                out[prefix + str(res.get("address"))] = dict(res.get("expressions") or {})
        for name, call in (module.get("module_calls") or {}).items():
            if isinstance(call, dict):
                walk(call.get("module"), f"{prefix}module.{name}.")

    walk((data.get("configuration") or {}).get("root_module"), "")
    return out


def _config_address(rc: dict[str, Any]) -> str:
    module = _INSTANCE_KEYS.sub("", str(rc.get("module_address") or ""))
    return f"{module + '.' if module else ''}{rc.get('type')}.{rc.get('name')}"


def _sources(refs: list[Any], prefix: str, addresses: list[str]) -> list[str] | None:
    """The plan's machineid resources the references name (an instance, all of a resource's instances, or their
    name or id; Terraform lists each traversal with its shorter forms, the longest counts); None when a reference
    names anything else (a local, a data source, another provider's resource): the value may come from there."""
    if not all(isinstance(r, str) for r in refs):
        return None
    out: list[str] = []
    for ref in refs:
        if ref.startswith(_KNOWN_AT_PLAN) or any(r.startswith((ref + "[", ref + ".")) for r in refs):
            continue  # known when planning, or the reference continues (machineid_role.r[1] of machineid_role.r)
        full = prefix + ref
        hits = [a for a in addresses if full in _forms(a)]
        if not hits:
            return None
        out += [a for a in hits if a not in out]
    return out


def _forms(address: str) -> set[str]:
    base = re.sub(r"\[[^\[\]]*\]$", "", address)
    return {f"{a}{attr}" for a in (address, base) for attr in ("", ".name", ".id")}
