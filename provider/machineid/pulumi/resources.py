"""The Pulumi resources, derived from the resource model.

A Pulumi resource is a flat view of a model kind: chosen metadata fields (name, description, labels, ...), the
spec's fields, provider-only inputs (how to onboard and render a bot) and computed outputs. All are dataclasses
declared with attr(), so the schema, validation and conversion come from one declaration.
"""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from machineid.agent.config import DEFAULT_CERT_TTL, DEFAULT_RENEWAL_INTERVAL
from machineid.model import codec
from machineid.model import validators as v
from machineid.model.errors import FieldViolation, ValidationError
from machineid.model.fields import FieldSpec, attr
from machineid.model.resources import Bot, Metadata, ProvisionToken, Role

PACKAGE = "machineid"


@dataclass
class BotOnboarding:
    """Provider-only inputs of a Bot: its join token and how its agent is rendered."""

    token_ttl: str = attr(default="1h", doc="Lifetime of the bot's join token (the token is single use).",
                          validators=[v.duration(min_seconds=60)])
    token_name: str = attr(default="",
                           doc="Join with this existing token (for example an iam ProvisionToken) instead of a "
                               "new single-use one.")
    token_rotation: int = attr(default=0, doc="Change this number to issue a new join token (re-onboard the bot "
                                              "without deleting it).")
    destination_dir: str = attr(default="/opt/machine-id", doc="Where the agent writes the certificates.")
    data_dir: str = attr(default="", doc="Where the agent keeps its renewable identity. Default: "
                                         "/var/lib/machineid/bot-NAME.")
    config_path: str = attr(default="", doc="Where the rendered agent config is installed. Default: "
                                            "/etc/machineid/bot-NAME.yaml.")
    certificate_ttl: str = attr(default=DEFAULT_CERT_TTL, doc="Lifetime of the certificates the agent requests.",
                                validators=[v.duration(min_seconds=60)])
    renewal_interval: str = attr(default=DEFAULT_RENEWAL_INTERVAL, doc="How often the agent renews.",
                                 validators=[v.duration(min_seconds=1)])
    agent_path: str = attr(default="/usr/local/bin/machineid", doc="Path of the machineid executable on the "
                                                                   "machine (for the systemd unit).")


@dataclass
class BotOutputs:
    user_name: str = attr(default="", computed=True, doc="The bot's user, bot-NAME.")
    role_name: str = attr(default="", computed=True, doc="The bot's own role, bot-NAME.")
    token: str = attr(default="", computed=True, secret=True, doc="The join token (secret for the token method).")
    join_method: str = attr(default="", computed=True, doc="Join method of the token: token or iam.")
    token_expires: str = attr(default="", computed=True, doc="When the join token expires (RFC 3339).")
    ca_pins: list[str] = attr(default_factory=list, computed=True, doc="CA pins of the cluster.")
    auth_server: str = attr(default="", computed=True, doc="Address the agent joins.")
    agent_config: str = attr(default="", computed=True, secret=True,
                             doc="The YAML that `machineid bot start --config` reads (holds the token).")
    start_command: str = attr(default="", computed=True, doc="The command that starts the agent.")
    systemd_unit: str = attr(default="", computed=True, doc="A systemd unit that runs the agent.")


@dataclass
class TokenOptions:
    """Provider-only inputs of a ProvisionToken."""

    ttl: str = attr(default="1h", doc="Lifetime from creation when `expires` is not set. A token whose expiry has "
                                      "passed is replaced with a fresh one at the next `pulumi up`.",
                    validators=[v.duration(min_seconds=1)])


@dataclass
class TokenOutputs:
    token_expires: str = attr(default="", computed=True, doc="When the token expires (RFC 3339).")


@dataclass(frozen=True)
class Prop:
    name: str  # Pulumi (camelCase) name
    section: str  # "metadata", "spec", "extra" or "output"
    field: str  # model field name
    tp: Any
    spec: FieldSpec
    default: Any

    @property
    def is_input(self) -> bool:
        return self.section != "output"


def camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(p[:1].upper() + p[1:] for p in rest)


def field_default(f: dataclasses.Field[Any]) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return None


@dataclass(frozen=True)
class ResourceDef:
    type_name: str
    model: type
    metadata_fields: tuple[str, ...]
    description: str
    extra: type | None = None
    outputs: type | None = None
    # Inputs whose value the cluster picks when unset (not the model default): never drift when left out.
    server_defaults: tuple[str, ...] = ()
    # Inputs that are secret for this resource though the model field is not (a token's name is its secret).
    secret_props: tuple[str, ...] = ()

    @property
    def token(self) -> str:
        return f"{PACKAGE}:index:{self.type_name}"

    @property
    def kind(self) -> str:
        return str(self.model.kind)  # type: ignore[attr-defined]

    def props(self) -> list[Prop]:
        return list(_props(self))

    def _build_props(self) -> tuple[Prop, ...]:
        out: list[Prop] = []
        sections: list[tuple[str, type | None]] = [("metadata", Metadata), ("spec", _spec_type(self.model)),
                                                   ("extra", self.extra), ("output", self.outputs)]
        for section, cls in sections:
            if cls is None:
                continue
            for f, tp, spec in codec.model_fields(cls):
                if section == "metadata" and f.name not in self.metadata_fields:
                    continue
                assert spec is not None, f"{cls.__name__}.{f.name} needs attr()"
                if camel(f.name) in self.secret_props:
                    spec = dataclasses.replace(spec, secret=True)
                out.append(Prop(camel(f.name), section, f.name, tp, spec, field_default(f)))
        return tuple(out)

    def prop(self, name: str) -> Prop:
        for p in self.props():
            if p.name == name:
                return p
        raise KeyError(name)


@functools.cache
def _props(rdef: ResourceDef) -> tuple[Prop, ...]:
    """Derived once per resource: Check and Diff ask for them on every call."""
    return rdef._build_props()


def _spec_type(model: type) -> type:
    hints = codec.type_hints(model)
    spec: type = hints["spec"]
    return spec


ROLE = ResourceDef(
    "Role", Role, ("name", "description", "labels"),
    "A role: which logins and nodes it allows, and which API resources and verbs (Teleport's role v5 subset).",
)
PROVISION_TOKEN = ResourceDef(
    "ProvisionToken", ProvisionToken, ("name", "description", "labels", "expires"),
    "A join token. For the token method the name is the secret (generated when left out) and is used once; an iam "
    "token is not secret and joins any AWS identity its allow rules match until it expires.",
    extra=TokenOptions, outputs=TokenOutputs, server_defaults=("name", "expires"), secret_props=("name",),
)
BOT = ResourceDef(
    "Bot", Bot, ("name", "description", "labels"),
    "A bot: a machine identity with roles. Creating it creates user and role bot-NAME and a join token; its outputs "
    "include the rendered agent config, start command and systemd unit.",
    extra=BotOnboarding, outputs=BotOutputs, secret_props=("tokenName",),
)
RESOURCES = {r.token: r for r in (ROLE, PROVISION_TOKEN, BOT)}


# ---------------------------------------------------------------- value conversion


EMPTY: tuple[Any, ...] = (None, "", [], {}, 0, False)


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
    stores: every input's meaning is unchanged (Diff reads a missing field as empty) and the checkpoint the engine
    rewrites after every step stays small. Entries of user maps (labels, traits) are data and always kept."""
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
    """Pulumi plain data -> model plain data; unknown camelCase keys are kept (as snake) for the decoder to name."""
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


def prop_path(rdef: ResourceDef, path: tuple[str | int, ...]) -> str:
    """A model violation path (metadata.name, spec.allow.logins[0]) as the Pulumi property path."""
    rest = path[1:] if len(path) >= 2 and path[0] in ("metadata", "spec") else path
    out = ""
    for step in rest:
        if isinstance(step, int):
            out += f"[{step}]"
        else:
            out += ("." if out else "") + camel(step)
    return out


@dataclass
class Decoded:
    obj: Any  # the model object (Role, ProvisionToken, Bot)
    extra: Any  # BotOnboarding or None


def decode_inputs(rdef: ResourceDef, inputs: dict[str, Any]) -> Decoded:
    """Pulumi inputs -> model object (+ provider-only inputs); ValidationError paths are Pulumi paths."""
    metadata: dict[str, Any] = {}
    spec: dict[str, Any] = {}
    extra: dict[str, Any] = {}
    unknown_props: list[FieldViolation] = []
    by_name = {p.name: p for p in rdef.props() if p.is_input}
    for key, value in inputs.items():
        p = by_name.get(key)
        if p is None:
            if key.startswith("__"):
                continue
            unknown_props.append(FieldViolation((key,), f"unknown property; known: {', '.join(sorted(by_name))}"))
            continue
        target = {"metadata": metadata, "spec": spec, "extra": extra}[p.section]
        target[p.field] = to_snake(p.tp, value)
    problems = list(unknown_props)
    obj: Any = None
    try:
        obj = codec.decode_and_validate(rdef.model, {"metadata": metadata, "spec": spec})
    except ValidationError as e:
        problems += [FieldViolation((prop_path(rdef, x.path),), x.reason) for x in e.violations]
    ext: Any = None
    if rdef.extra is not None:
        try:
            ext = codec.decode_and_validate(rdef.extra, extra)
        except ValidationError as e:
            problems += [FieldViolation((prop_path(rdef, x.path),), x.reason) for x in e.violations]
    if problems:
        raise ValidationError(problems)
    return Decoded(obj, ext)


def encode_inputs(rdef: ResourceDef, obj: Any, extra: Any = None) -> dict[str, Any]:
    """Model object -> Pulumi inputs: every non-empty input, defaults included (so a diff back to a default
    shows the default), empty ones left out (see to_camel)."""
    out: dict[str, Any] = {}
    data = codec.encode(obj)
    ext = codec.encode(extra) if extra is not None else {}
    for p in rdef.props():
        if p.section == "metadata":
            value = data["metadata"].get(p.field)
        elif p.section == "spec":
            value = data["spec"].get(p.field)
        elif p.section == "extra":
            value = ext.get(p.field, codec.encode(p.default))
        else:
            continue
        converted = to_camel(p.tp, value, compact=True)
        if converted not in EMPTY or (p.name == "name" and value is not None):
            out[p.name] = converted
    return out


def time_text(value: datetime | None) -> str:
    return codec.format_time(value) if value else ""
