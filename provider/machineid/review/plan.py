"""The plan under review, from either tool's JSON: `tofu show -json PLANFILE` (or terraform's), read by
terraform/plan_json.py, and `pulumi preview --json`, read by pulumi/preview_json.py. Anything else is refused
(exit 3): a state, a stack export or any other JSON would otherwise read as a plan that changes nothing."""

from __future__ import annotations

import json
from typing import Any

from machineid.iac.plan import Change, Plan, resolve_names
from machineid.model.errors import ValidationError
from machineid.pulumi import preview_json
from machineid.terraform import plan_json

__all__ = ["Change", "Plan", "load"]

_EXPECTED = ("pass `tofu plan -out=plan.bin && tofu show -json plan.bin` (or terraform's) or `pulumi preview "
             "--json` output")


def load(text: str) -> Plan:
    try:
        data = json.loads(text)
    except ValueError as e:
        raise ValidationError(f"plan: not JSON ({e}); {_EXPECTED}") from None
    if plan_json.recognises(data):
        plan = plan_json.read(data)
    elif preview_json.recognises(data):
        plan = preview_json.read(data)
    else:
        raise ValidationError(f"plan: {_what(data)}, not a plan; {_EXPECTED}")
    resolve_names(plan.changes)
    return plan


def _what(data: Any) -> str:
    """What the JSON looks like, for the error."""
    if isinstance(data, dict) and "format_version" in data and "planned_values" not in data:
        return "a Terraform/OpenTofu state (`show -json` without a plan file: format_version with no planned_values)"
    if isinstance(data, dict) and "deployment" in data:
        return "a Pulumi stack export (deployment)"
    if isinstance(data, dict):
        keys = ", ".join(sorted(str(k) for k in data)[:6]) or "no keys"
        return f"a JSON object ({keys}) that is neither (resource_changes, planned_values) nor (steps)"
    return f"a JSON {type(data).__name__}"
