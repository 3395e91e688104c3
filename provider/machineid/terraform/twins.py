"""Properties that are secrets for some values only (a token's name: only a token-method token's name is its
secret), as Terraform serves them.

Pulumi marks secrets per value; Terraform marks sensitivity per attribute in the schema. So each such property is
two attributes (schema.py): NAME, plain, which plans and `-generate-config-out` show, and secret_NAME, sensitive,
and the value lives in the one its values call for (the core's handler says which: plain_secrets). The rest of the
adapter speaks the core's names: `to_core` merges the two on the way in, `to_terraform` splits them on the way out.
"""

from __future__ import annotations

from typing import Any

from machineid.iac.handlers import HANDLERS, Handler
from machineid.iac.resource import ResourceDef
from machineid.iac.unknown import UNKNOWN
from machineid.model.errors import FieldViolation
from machineid.model.resources import SECRET_NAME_JOIN_METHODS
from machineid.terraform.schema import secret_twin


def _handler(rdef: ResourceDef) -> Handler:
    return HANDLERS[rdef.name]


def to_core(rdef: ResourceDef, values: dict[str, Any]) -> dict[str, Any]:
    """Terraform values (a configuration or a state) under the core's property names."""
    if not rdef.secret_by_value:
        return values
    out = dict(values)
    for name in rdef.secret_by_value:
        hidden = out.pop(secret_twin(name), None)
        if out.get(name) is None and hidden is not None:
            out[name] = hidden
    return out


def to_terraform(rdef: ResourceDef, values: dict[str, Any], config: dict[str, Any] | None = None) -> dict[str, Any]:
    """The core's values under Terraform's attribute names. Before the values decide (a join method known only at
    apply), each of the two is what the configuration sets, else unknown."""
    if not rdef.secret_by_value:
        return values
    out = dict(values)
    h = _handler(rdef)
    known = h.secrets_known(values)
    plain = h.plain_secrets(values) if known else frozenset()
    for name in rdef.secret_by_value:
        value = out.get(name)
        twin = secret_twin(name)
        if not known:
            given = config or {}
            out[name] = given[name] if given.get(name) is not None else UNKNOWN
            out[twin] = given[twin] if given.get(twin) is not None else UNKNOWN
        elif name in plain:
            out[twin] = None
        else:
            out[name], out[twin] = None, value
    return out


def attribute(rdef: ResourceDef, values: dict[str, Any], name: str) -> str:
    """The attribute that holds a property for these (core) values."""
    if name in rdef.secret_by_value and not _plain(rdef, values, name):
        return secret_twin(name)
    return name


def _plain(rdef: ResourceDef, values: dict[str, Any], name: str) -> bool:
    h = _handler(rdef)
    return not h.secrets_known(values) or name in h.plain_secrets(values)


def misplaced(rdef: ResourceDef, config: dict[str, Any]) -> list[FieldViolation]:
    """A value configured in the attribute its values do not call for: a secret name in the plain attribute would
    show in every plan, so it is refused (and a public one in the sensitive attribute, which would hide it)."""
    h = _handler(rdef)
    values = to_core(rdef, config)
    if not rdef.secret_by_value or not h.secrets_known(values):
        return []
    plain = h.plain_secrets(values)
    methods = ", ".join(sorted(SECRET_NAME_JOIN_METHODS))
    out = []
    for name in rdef.secret_by_value:
        twin = secret_twin(name)
        if name in plain and config.get(twin) is not None:
            out.append(FieldViolation((twin,), f"holds {name} only where it is a secret (join_method {methods}); "
                                      f"here it is not: set `{name}` instead"))
        elif name not in plain and config.get(name) is not None:
            generated = ", or leave both out to have one generated" if name in rdef.server_defaults else ""
            out.append(FieldViolation((name,), f"is a secret for join_method {methods} (it is what joins), and "
                                      f"`{name}` would show it in plans: set `{twin}` instead, which is "
                                      f"sensitive{generated}"))
    return out


def violations(rdef: ResourceDef, values: dict[str, Any], found: list[FieldViolation]) -> list[FieldViolation]:
    """Violations pointing at the attribute that holds their property for these (core) values."""
    if not rdef.secret_by_value:
        return found
    out = []
    for v in found:
        if v.path and isinstance(v.path[0], str) and v.path[0] in rdef.secret_by_value:
            v = FieldViolation((attribute(rdef, values, v.path[0]), *v.path[1:]), v.reason)
        out.append(v)
    return out
