"""Terraform schemas, derived from the core's resource definitions (the same declarations as the Pulumi schema).

Nested objects are blocks (SINGLE for an object, LIST for a list of objects), not protocol 6's nested attributes:
Terraform 1.0.x crashes on a null nested attribute, and blocks work on every CLI and on protocol 5. Every optional
attribute is optional+computed: the plan fills the model's default, so a server default never shows as a diff
and removing an attribute plans a change back to its default. A block whose attributes have defaults that are not
empty (a role's options: max_session_ttl 30h) is a GROUP block, which Terraform never makes null: left out (or
removed), it plans those defaults (`"8h" -> "30h"`), where a SINGLE block could only plan `null`."""

from __future__ import annotations

import dataclasses
import functools
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from machineid.iac import functions
from machineid.iac.config import ProviderConfig
from machineid.iac.resource import BOT, RESOURCES, ROLE, ResourceDef, field_default
from machineid.model import codec
from machineid.model.fields import FieldSpec
from machineid.model.resources import JOIN_METHODS, SECRET_NAME_JOIN_METHODS, name_is_secret

PREFIX = "machineid_"
# Each resource's state version, bumped when its state layout changes (UpgradeResourceState carries older states
# forward with the provider's UPGRADERS). History:
#   provision_token 1: `used` (a single-use token its bot joined with stays in state instead of being re-created).
#   provision_token 2: `secret_name` holds a token-method token's name; `name` (no longer sensitive) the others'.
SCHEMA_VERSIONS: dict[str, int] = {"provision_token": 2}
SECRET_PREFIX = "secret_"  # a property secret for some values only is served as NAME and secret_NAME


def secret_twin(name: str) -> str:
    """The sensitive attribute that holds a property's value where that value is a secret."""
    return SECRET_PREFIX + name


@dataclass(frozen=True)
class Attribute:
    name: str
    tp: Any  # the model's Python type
    description: str
    required: bool = False
    optional: bool = False
    computed: bool = False
    sensitive: bool = False
    forces_replacement: bool = False
    default: Any = None
    rules: tuple[str, ...] = ()  # what the model's validators accept, for the docs

    @property
    def cty(self) -> Any:
        return cty_type(self.tp)


@dataclass(frozen=True)
class NestedBlock:
    name: str
    # "single" (null when left out), "group" (never null: left out, it holds its defaults) or "list"
    nesting: str
    block: Block
    tp: Any  # the dataclass of one block
    description: str
    forces_replacement: bool = False

    @property
    def is_object(self) -> bool:
        """One block (single or group), not a list of them."""
        return self.nesting != "list"


@dataclass(frozen=True)
class Block:
    attributes: tuple[Attribute, ...]
    blocks: tuple[NestedBlock, ...] = ()
    description: str = ""

    def attribute(self, name: str) -> Attribute | None:
        return next((a for a in self.attributes if a.name == name), None)

    def nested(self, name: str) -> NestedBlock | None:
        return next((b for b in self.blocks if b.name == name), None)


@dataclass(frozen=True)
class Schema:
    type_name: str  # machineid_role
    block: Block
    version: int = 0


_SCALARS = {str: "string", int: "number", bool: "bool", datetime: "string"}


def cty_type(tp: Any) -> Any:
    """The cty type (as its JSON form) of a model type."""
    sh = codec.shape(tp)
    if sh.kind == "object":
        return ["object", {f.name: cty_type(ftp) for f, ftp, _ in codec.model_fields(sh.tp)}]
    if sh.kind == "list":
        return ["list", cty_type(sh.item)]
    if sh.kind == "dict":
        return ["map", cty_type(sh.item)]
    return _SCALARS[sh.tp]


def cty_json(tp: Any) -> bytes:
    return json.dumps(cty_type(tp), separators=(",", ":")).encode()


def _doc(spec: FieldSpec, default: Any) -> str:
    doc = spec.doc
    if default not in (None, "", [], {}, 0, False) and not dataclasses.is_dataclass(default):
        doc += f" Default: `{json.dumps(codec.encode(default))}`."
    return doc


def _is_block(tp: Any) -> str | None:
    sh = codec.shape(tp)
    if sh.kind == "object":
        return "group" if _has_defaults(sh.tp) else "single"
    if sh.kind == "list" and dataclasses.is_dataclass(sh.item):
        return "list"
    return None


_EMPTY: tuple[Any, ...] = (None, "", [], {}, 0, False)


def _has_defaults(cls: type) -> bool:
    """Whether one of a block's own attributes has a default that is not empty."""
    return any(not _is_block(ftp) and field_default(f) not in _EMPTY for f, ftp, _ in codec.model_fields(cls))


def _input(name: str, tp: Any, spec: FieldSpec, default: Any, server_default: bool = False,
           ) -> Attribute | NestedBlock:
    nesting = _is_block(tp)
    if nesting:
        cls = codec.shape(tp).item if nesting == "list" else codec.shape(tp).tp
        # The field says what this use of the type is (a role's allow or deny): the block's description.
        block = dataclasses.replace(_object_block(cls), description=spec.doc)
        return NestedBlock(name, nesting, block, cls, spec.doc, spec.replace_on_change)
    required = spec.required and not server_default
    return Attribute(name, tp, _doc(spec, default), required=required, optional=not required,
                     computed=not required, sensitive=spec.secret, forces_replacement=spec.replace_on_change,
                     default=default, rules=tuple(v.description for v in spec.validators))


@functools.cache
def _object_block(cls: type) -> Block:
    attrs: list[Attribute] = []
    blocks: list[NestedBlock] = []
    for f, ftp, spec in codec.model_fields(cls):
        assert spec is not None
        item = _input(f.name, ftp, spec, field_default(f))
        (blocks if isinstance(item, NestedBlock) else attrs).append(item)  # type: ignore[arg-type]
    return Block(tuple(attrs), tuple(blocks))


def _id(rdef: ResourceDef) -> Attribute:
    return Attribute("id", str, rdef.id_doc, computed=True)


@functools.cache
def read_only_block(tp: Any) -> Block | None:
    """The fields of an object-typed read-only attribute (a looked-up role's allow), for the docs; None for a
    type that is not an object or a list of objects."""
    sh = codec.shape(tp)
    cls: Any = sh.tp if sh.kind == "object" else sh.item if sh.kind == "list" else None
    if not (isinstance(cls, type) and dataclasses.is_dataclass(cls)):
        return None
    return Block(tuple(Attribute(f.name, ftp, spec.doc if spec else "", computed=True)
                       for f, ftp, spec in codec.model_fields(cls)))


def _public_name_methods() -> str:
    return ", ".join(m for m in JOIN_METHODS if not name_is_secret(m))


def _secret_methods() -> str:
    return ", ".join(sorted(SECRET_NAME_JOIN_METHODS))


def _twins(a: Attribute) -> tuple[Attribute, Attribute]:
    """A property secret for some values only: Terraform marks sensitivity per attribute, so the value lives in a
    plain attribute where it is public and in a sensitive one where it is a secret (shown in no plan)."""
    plain = dataclasses.replace(a, sensitive=False, required=False, optional=True, computed=True, description=(
        f"{a.description} Set for join methods whose token name is public ({_public_name_methods()}); for "
        f"join_method {_secret_methods()} the name is the secret that joins: it is the sensitive "
        f"`{secret_twin(a.name)}`, and this is null."))
    hidden = dataclasses.replace(a, name=secret_twin(a.name), sensitive=True, required=False, optional=True,
                                 computed=True, description=(
        f"`{a.name}` where it is a secret (join_method {_secret_methods()}): sensitive, so no plan or output shows "
        "it; generated when left out. Null for the other join methods, whose name is `name`."))
    return plain, hidden


@functools.cache
def resource_schema(rdef: ResourceDef) -> Schema:
    attrs: list[Attribute] = [_id(rdef)]
    blocks: list[NestedBlock] = []
    for p in rdef.props():
        if p.is_input:
            item = _input(p.name, p.tp, p.spec, p.default, p.name in rdef.server_defaults)
            if isinstance(item, Attribute) and p.name in rdef.secret_by_value:
                attrs.extend(_twins(item))
                continue
            (blocks if isinstance(item, NestedBlock) else attrs).append(item)  # type: ignore[arg-type]
        else:
            attrs.append(Attribute(p.name, p.tp, p.spec.doc, computed=True, sensitive=p.spec.secret))
    return Schema(PREFIX + rdef.name, Block(tuple(attrs), tuple(blocks), rdef.description),
                  SCHEMA_VERSIONS.get(rdef.name, 0))


RESOURCE_SCHEMAS: dict[str, tuple[ResourceDef, Schema]] = {
    PREFIX + r.name: (r, resource_schema(r)) for r in RESOURCES}


@functools.cache
def provider_schema() -> Schema:
    attrs = []
    for f, tp, spec in codec.model_fields(ProviderConfig):
        assert spec is not None
        env = ProviderConfig.ENV.get(f.name)
        doc = spec.doc + (f" Default: the environment variable `{env}`." if env else "")
        attrs.append(Attribute(f.name, tp, doc, optional=True, sensitive=spec.secret))
    return Schema("machineid", Block(tuple(attrs), (), "The machineid provider: talks to a machineid cluster "
                                                         "with an identity file, or joins for each run with what "
                                                         "the CI gives the job (join_method): no stored secret."))


# ---------------------------------------------------------------- data sources


@dataclass(frozen=True)
class DataSource:
    type_name: str
    description: str
    schema: Schema
    rdef: ResourceDef | None = None  # a lookup of this resource kind, or None for the cluster itself
    fn: functions.FunctionDef | None = None  # or a function's result (its inputs optional, its outputs computed)


def _computed(name: str, tp: Any, spec: FieldSpec) -> Attribute:
    return Attribute(name, tp, spec.doc, computed=True, sensitive=spec.secret)


@functools.cache
def _lookup(rdef: ResourceDef, outputs: tuple[str, ...], description: str) -> DataSource:
    attrs = [_id(rdef)]
    for p in rdef.props():
        if p.name == "name":
            attrs.append(Attribute("name", str, "The name to look up.", required=True))
        elif p.section in ("metadata", "spec") or p.name in outputs:
            attrs.append(_computed(p.name, p.tp, p.spec))
    name = PREFIX + rdef.name
    return DataSource(name, description, Schema(name, Block(tuple(attrs), (), description)), rdef)


@functools.cache
def data_sources() -> dict[str, DataSource]:
    info = functions.GET_CLUSTER_INFO
    cluster_attrs = [Attribute("id", str, "The cluster's name.", computed=True)]
    cluster_attrs += [_computed(f.name, tp, spec) for f, tp, spec in codec.model_fields(info.outputs)
                      if spec is not None]
    cluster = DataSource(PREFIX + "cluster", info.description,
                         Schema(PREFIX + "cluster", Block(tuple(cluster_attrs), (), info.description)))
    role = _lookup(ROLE, (), "Look up an existing role by name (for example one created with `machineid ctl`).")
    bot = _lookup(BOT, ("user_name", "role_name"), "Look up an existing bot by name: its roles, traits and the "
                                                   "user and role that back it.")
    return {d.type_name: d for d in (cluster, role, bot, _function(functions.GET_BOT_INSTANCES, "bot_instances"))}


def _function(fn: functions.FunctionDef, name: str) -> DataSource:
    attrs = [Attribute("id", str, "What was asked (the filters), as one string.", computed=True)]
    for f, tp, spec in codec.model_fields(fn.inputs):
        assert spec is not None
        attrs.append(Attribute(f.name, tp, spec.doc, optional=True))
    attrs += [_computed(f.name, tp, spec) for f, tp, spec in codec.model_fields(fn.outputs) if spec is not None]
    type_name = PREFIX + name
    return DataSource(type_name, fn.description, Schema(type_name, Block(tuple(attrs), (), fn.description)), fn=fn)
