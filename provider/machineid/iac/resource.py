"""A resource as providers see it: a flat view of a model kind.

Chosen metadata fields (name, description, labels, ...), the spec's fields, provider-only inputs and computed
outputs, all dataclasses declared with attr(), so every adapter's schema, validation and conversion comes from
one declaration. Names are the model's (snake_case); violation paths are tuples starting at the property.
"""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from machineid.iac import settings
from machineid.model import codec
from machineid.model.errors import FieldViolation, Path, ValidationError
from machineid.model.fields import FieldSpec
from machineid.model.resources import Bot, Lock, Metadata, Node, ProvisionToken, Role


@dataclass(frozen=True)
class Prop:
    name: str  # the property's (snake_case) name
    section: str  # "metadata", "spec", "extra" or "output"
    field: str  # model field name
    tp: Any
    spec: FieldSpec
    default: Any

    @property
    def is_input(self) -> bool:
        return self.section != "output"


def field_default(f: dataclasses.Field[Any]) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return None


@dataclass(frozen=True)
class ResourceDef:
    name: str  # snake_case: role, provision_token, bot
    type_name: str  # CamelCase: Role, ProvisionToken, Bot
    model: type
    metadata_fields: tuple[str, ...]
    description: str
    extra: type | None = None
    outputs: type | None = None
    # Inputs whose value the cluster picks when unset (not the model default): never drift when left out.
    server_defaults: tuple[str, ...] = ()
    # Properties that are secrets for some values only, though the model field is not secret: a token's name, where
    # its join method names it by its secret (model.SECRET_NAME_JOIN_METHODS); the handler's plain_secrets() says
    # which values make them plain. Pulumi marks secrets per value; Terraform marks sensitivity per attribute, so it
    # serves each as two attributes: NAME (plain) and secret_NAME (sensitive), the value in the one its values call
    # for.
    secret_by_value: tuple[str, ...] = ()
    # What the resource's ID is (the handler's resource_id), when it is not simply the object's name.
    id_description: str = ""
    # What an import names the object by, when it is not simply its name.
    import_description: str = ""

    @property
    def kind(self) -> str:
        return str(self.model.kind)  # type: ignore[attr-defined]

    @property
    def id_doc(self) -> str:
        return self.id_description or f"The {self.kind}'s name."

    @property
    def import_doc(self) -> str:
        return self.import_description or f"the {self.kind}'s name"

    def props(self) -> tuple[Prop, ...]:
        return _props(self)

    def inputs(self) -> dict[str, Prop]:
        return _inputs(self)

    def input_values(self, values: dict[str, Any]) -> dict[str, Any]:
        """The inputs among a state's values (a state that kept no separate inputs)."""
        props = _inputs(self)
        return {k: val for k, val in values.items() if k in props}


@functools.cache
def _props(rdef: ResourceDef) -> tuple[Prop, ...]:
    """Derived once per resource: every request asks for them."""
    out: list[Prop] = []
    sections: list[tuple[str, type | None]] = [("metadata", Metadata), ("spec", spec_type(rdef.model)),
                                               ("extra", rdef.extra), ("output", rdef.outputs)]
    for section, cls in sections:
        if cls is None:
            continue
        for f, tp, spec in codec.model_fields(cls):
            if section == "metadata" and f.name not in rdef.metadata_fields:
                continue
            assert spec is not None, f"{cls.__name__}.{f.name} needs attr()"
            if f.name in rdef.secret_by_value:
                spec = dataclasses.replace(spec, secret=True)
            out.append(Prop(f.name, section, f.name, tp, spec, field_default(f)))
    return tuple(out)


@functools.cache
def _inputs(rdef: ResourceDef) -> dict[str, Prop]:
    return {p.name: p for p in _props(rdef) if p.is_input}


@functools.cache
def secret_props(rdef: ResourceDef) -> frozenset[str]:
    return frozenset(p.name for p in _props(rdef) if p.spec.secret)


def spec_type(model: type) -> type:
    spec: type = codec.type_hints(model)["spec"]
    return spec


ROLE = ResourceDef(
    "role", "Role", Role, ("name", "description", "labels"),
    "A role: which logins and nodes it allows, and which API resources and verbs (Teleport's role v5 subset).",
)
PROVISION_TOKEN = ResourceDef(
    "provision_token", "ProvisionToken", ProvisionToken, ("name", "description", "labels", "expires"),
    "A join token. For the token method the name is the secret (generated when left out) and is used once; the "
    "name of an iam or bound_keypair token is not secret: an iam token joins any AWS identity its allow rules "
    "match until it expires, a bound_keypair token the bot holding its key pair.",
    extra=settings.TokenOptions, outputs=settings.TokenOutputs, server_defaults=("name", "expires"),
    secret_by_value=("name",),
    id_description="The token's name where it is public (iam, bound_keypair); for a token-method token, whose name "
                   "is its secret, token- and a hash of the name (as audit records and its bot's status name it).",
    import_description="the token itself for a `token`-method token (its name is the secret; the resource ID is a "
                       "hash of it), or the name of an `iam` or `bound_keypair` token",
)
BOT = ResourceDef(
    "bot", "Bot", Bot, ("name", "description", "labels"),
    "A bot: a machine identity with roles. Creating it creates user and role bot-NAME and a join token; its outputs "
    "include the rendered agent config, start command and systemd unit.",
    extra=settings.BotOnboarding, outputs=settings.BotOutputs,
)
NODE = ResourceDef(
    "node", "Node", Node, ("name", "description", "labels"),
    "An SSH server bots log in to, and its setup: the node's labels decide which roles' node_labels reach it (the "
    "node enforces them, refreshed from the cluster). For join_method token, creating it creates a single-use Node "
    "token; its outputs include cloud-init user data and a setup script that install machineid, run `machineid node "
    "setup --join` and start `machineid node start`, so a VM created with them comes up enforcing its labels.",
    extra=settings.NodeOnboarding, outputs=settings.NodeOutputs,
)
LOCK = ResourceDef(
    "lock", "Lock", Lock, ("name", "description", "expires"),
    "A lock: stops a bot, one bot instance, a join token, a user or a node from authenticating (calls, renewals, "
    "joins, node syncs) and revokes its SSH certificates on nodes, from its creation until it expires or is "
    "deleted (Teleport's lock). Deleting it restores access without a new join.",
)
RESOURCES: tuple[ResourceDef, ...] = (ROLE, PROVISION_TOKEN, BOT, NODE, LOCK)


# ---------------------------------------------------------------- value conversion


def prop_path(path: Path) -> Path:
    """A model violation path (metadata.name, spec.allow.logins[0]) as a property path (name, allow.logins[0])."""
    return path[1:] if len(path) >= 2 and path[0] in ("metadata", "spec") else path


@dataclass
class Decoded:
    obj: Any  # the model object (Role, ProvisionToken, Bot)
    extra: Any  # the provider-only inputs (BotOnboarding, TokenOptions) or None


def decode_inputs(rdef: ResourceDef, inputs: dict[str, Any], *, validate: bool = True) -> Decoded:
    """Inputs (property name -> plain value) -> model object and provider-only inputs; every problem at once.
    Without validate only the types are checked (a plan's values with the parts known only at apply left out)."""
    metadata: dict[str, Any] = {}
    spec: dict[str, Any] = {}
    extra: dict[str, Any] = {}
    problems: list[FieldViolation] = []
    by_name = rdef.inputs()
    for key, value in inputs.items():
        p = by_name.get(key)
        if p is None:
            problems.append(FieldViolation((key,), f"unknown property; known: {', '.join(sorted(by_name))}"))
            continue
        if value is None:
            continue  # unset: the model's default
        {"metadata": metadata, "spec": spec, "extra": extra}[p.section][p.field] = value
    obj: Any = None
    try:
        obj = codec.decode(rdef.model, {"metadata": metadata, "spec": spec}, validate=validate)
    except ValidationError as e:
        problems += [FieldViolation(prop_path(x.path), x.reason) for x in e.violations]
    ext: Any = None
    if rdef.extra is not None:
        try:
            ext = codec.decode(rdef.extra, extra, validate=validate)
        except ValidationError as e:
            problems += e.violations
    if problems:
        raise ValidationError(problems)
    return Decoded(obj, ext)


def encode_inputs(rdef: ResourceDef, obj: Any, extra: Any = None) -> dict[str, Any]:
    """Model object -> every input property's plain value, defaults included (so a change back to a default
    shows as one)."""
    out: dict[str, Any] = {}
    data = codec.encode(obj)
    ext = codec.encode(extra) if extra is not None else {}
    for p in rdef.props():
        if p.section == "metadata":
            out[p.name] = data["metadata"].get(p.field)
        elif p.section == "spec":
            out[p.name] = data["spec"].get(p.field)
        elif p.section == "extra":
            out[p.name] = ext.get(p.field, codec.encode(p.default))
    return out


def time_text(value: datetime | None) -> str:
    return codec.format_time(value) if value else ""
