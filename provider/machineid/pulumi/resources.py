"""The Pulumi names of the core's resources: tokens (machineid:index:Role) and camelCase properties.

Everything else about a resource (fields, rules, CRUD) is in machineid.iac; this module only translates names and
the state's compact form both ways."""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass
from typing import Any

from machineid.iac import resource as iac
from machineid.iac.handlers import HANDLERS
from machineid.iac.resource import Prop
from machineid.model import codec
from machineid.model.errors import Path

PACKAGE = "machineid"
EMPTY: tuple[Any, ...] = (None, "", [], {}, 0, False)


def camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(p[:1].upper() + p[1:] for p in rest)


def token_of(name: str) -> str:
    """A snake_case function or type name as a Pulumi token."""
    return f"{PACKAGE}:index:{camel(name)}"


@dataclass(frozen=True)
class PulumiResource:
    rdef: iac.ResourceDef

    @property
    def token(self) -> str:
        return f"{PACKAGE}:index:{self.rdef.type_name}"

    @property
    def description(self) -> str:
        return self.rdef.description

    def props(self) -> tuple[Prop, ...]:
        """The core's properties under their Pulumi names."""
        return _camel_props(self.rdef)

    def secret_props(self) -> frozenset[str]:
        return frozenset(camel(n) for n in iac.secret_props(self.rdef))

    def secret_props_in(self, values: dict[str, Any]) -> frozenset[str]:
        """Properties whose value holds a nested secret (a token's onboarding.registrationSecret). Secrets are
        marked per top-level property here, so the whole property is then a secret; without one (a bound_keypair
        token with an initial public key) it stays plain."""
        return frozenset(p.name for p in self.props() if _holds_secret(p.tp, values.get(p.name)))

    def plain_props_in(self, values: dict[str, Any]) -> frozenset[str]:
        """Secret properties that these values make plain (the core's handler decides: an iam or bound_keypair
        join)."""
        return frozenset(camel(n) for n in HANDLERS[self.rdef.name].plain_secrets(snake_props(self, values)[0]))


@functools.cache
def _camel_props(rdef: iac.ResourceDef) -> tuple[Prop, ...]:
    return tuple(dataclasses.replace(p, name=camel(p.name)) for p in rdef.props())


@functools.cache
def _snake_props(rdef: iac.ResourceDef) -> dict[str, Prop]:
    return {camel(p.name): p for p in rdef.props()}


ROLE = PulumiResource(iac.ROLE)
PROVISION_TOKEN = PulumiResource(iac.PROVISION_TOKEN)
BOT = PulumiResource(iac.BOT)
# Every resource of the core, under its token: a new kind needs nothing here.
RESOURCES = {r.token: r for r in (PulumiResource(rdef) for rdef in iac.RESOURCES)}


# ---------------------------------------------------------------- value conversion


def _holds_secret(tp: Any, value: Any) -> bool:
    sh = codec.shape(tp)
    if sh.kind != "object" or not isinstance(value, dict):
        return False
    for f, ftp, spec in codec.model_fields(sh.tp):
        inner = value.get(camel(f.name))
        if spec is not None and spec.secret and inner not in (None, ""):
            return True
        if _holds_secret(ftp, inner):
            return True
    return False


@functools.cache
def camel_fields(cls: Any) -> tuple[tuple[str, str, Any], ...]:
    """(snake name, camel name, type) of a model class's fields, worked out once."""
    return tuple((f.name, camel(f.name), ftp) for f, ftp, _ in codec.model_fields(cls))


@functools.cache
def _snake_fields(cls: Any) -> dict[str, tuple[str, Any]]:
    return {cam: (name, ftp) for name, cam, ftp in camel_fields(cls)}


def to_camel(tp: Any, value: Any, *, compact: bool = False) -> Any:
    """Model plain data (snake_case keys) -> Pulumi plain data (camelCase keys; map keys kept).

    compact leaves out object fields with empty values (the zero value of their type), which is what the state
    stores: every input's meaning is unchanged (the core reads a missing field as empty) and the checkpoint the
    engine rewrites after every step stays small. Entries of user maps (labels, traits) are data and always kept."""
    if value is None:
        return None
    sh = codec.shape(tp)
    if sh.kind == "object" and isinstance(value, dict):
        out = {}
        for name, cam, ftp in camel_fields(sh.tp):
            if name in value:
                converted = to_camel(ftp, value[name], compact=compact)
                if compact and converted in EMPTY:
                    continue
                out[cam] = converted
        return out
    if sh.kind == "list" and isinstance(value, list):
        return [to_camel(sh.item, x) for x in value]
    if sh.kind == "dict" and isinstance(value, dict):
        return {k: to_camel(sh.item, x) for k, x in value.items()}
    return value


def to_snake(tp: Any, value: Any) -> Any:
    """Pulumi plain data -> model plain data; unknown camelCase keys are kept (as they are) for the decoder to name."""
    sh = codec.shape(tp)
    if sh.kind == "object" and isinstance(value, dict):
        names = _snake_fields(sh.tp)
        out = {}
        for k, x in value.items():
            if k in names:
                name, ftp = names[k]
                out[name] = to_snake(ftp, x)
            else:
                out[k] = x
        return out
    if sh.kind == "list" and isinstance(value, list):
        return [to_snake(sh.item, x) for x in value]
    if sh.kind == "dict" and isinstance(value, dict):
        return {k: to_snake(sh.item, x) for k, x in value.items()}
    return value


def snake_props(r: PulumiResource, values: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """Pulumi properties -> the core's (snake) ones, and the names that are no property of the resource."""
    props = _snake_props(r.rdef)
    out: dict[str, Any] = {}
    unknown: list[str] = []
    for key, value in values.items():
        p = props.get(key)
        if p is None:
            if not key.startswith("__"):
                unknown.append(key)
            continue
        out[p.name] = to_snake(p.tp, value)
    return out, unknown


def camel_props(r: PulumiResource, values: dict[str, Any]) -> dict[str, Any]:
    """The core's properties -> Pulumi's: inputs in the state's compact form (empty ones left out, the name kept),
    outputs as they are."""
    out: dict[str, Any] = {}
    for p in r.rdef.props():
        if p.name not in values:
            continue
        value = values[p.name]
        if not p.is_input:
            if value is not None:
                out[camel(p.name)] = to_camel(p.tp, value)
            continue
        converted = to_camel(p.tp, value, compact=True)
        if converted not in EMPTY or (p.name == "name" and value is not None):
            out[camel(p.name)] = converted
    return out


def render_path(path: Path) -> str:
    """A core property path (allow, 0, aws_account) as Pulumi's property path (allow[0].awsAccount)."""
    out = ""
    for step in path:
        if isinstance(step, int):
            out += f"[{step}]"
        else:
            out += ("." if out else "") + camel(step)
    return out
