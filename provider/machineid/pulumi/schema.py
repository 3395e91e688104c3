"""schema.json, derived from the resource definitions (never written by hand)."""

from __future__ import annotations

import dataclasses
import json
from datetime import datetime
from typing import Any, get_args, get_origin

from machineid import __version__
from machineid.iac.config import ProviderConfig
from machineid.iac.handlers import HANDLERS
from machineid.iac.resource import Prop, field_default
from machineid.model import codec
from machineid.model.fields import FieldSpec
from machineid.model.resources import JOIN_METHODS, name_is_secret
from machineid.pulumi.provider import FUNCTIONS
from machineid.pulumi.resources import PACKAGE, RESOURCES, PulumiResource, camel

_SCALARS = {str: "string", int: "integer", bool: "boolean", datetime: "string", float: "number"}


class _Builder:
    def __init__(self) -> None:
        self.types: dict[str, Any] = {}

    def type_spec(self, tp: Any) -> dict[str, Any]:
        _, tp = codec.unwrap_optional(tp)
        if tp in _SCALARS:
            return {"type": _SCALARS[tp]}
        origin = get_origin(tp)
        if origin is list:
            return {"type": "array", "items": self.type_spec(get_args(tp)[0])}
        if origin is dict:
            return {"type": "object", "additionalProperties": self.type_spec(get_args(tp)[1])}
        if dataclasses.is_dataclass(tp):
            token = f"{PACKAGE}:index:{getattr(tp, '__name__', '')}"
            if token not in self.types:
                self.types[token] = {}  # reserve (recursive types)
                props = {}
                for f, ftp, spec in codec.model_fields(tp):  # type: ignore[arg-type]
                    assert spec is not None
                    props[camel(f.name)] = self.prop_spec(ftp, spec, field_default(f), nested=True)
                self.types[token] = {
                    "type": "object",
                    "description": str(tp.__doc__ or getattr(tp, "__name__", "")).strip().splitlines()[0],
                    "properties": props,
                }
            return {"$ref": f"#/types/{token}"}
        raise TypeError(f"no schema type for {tp!r}")

    def prop_spec(self, tp: Any, spec: FieldSpec, default: Any, *, nested: bool = False,
                  is_input: bool = True) -> dict[str, Any]:
        out = self.type_spec(tp)
        doc = spec.doc
        if default not in (None, "", [], {}, 0, False) and not dataclasses.is_dataclass(default):
            doc += f" Default: `{json.dumps(codec.encode(default))}`."
        out["description"] = doc
        if spec.secret:
            out["secret"] = True
        if spec.replace_on_change and is_input and not nested:
            out["replaceOnChanges"] = True
        return out


def _schema_spec(p: Prop, dynamic: frozenset[str]) -> FieldSpec:
    """The field as the schema declares it: a secret the provider marks per value (the handler's
    plain_when_name_public) is not declared secret, or the SDKs would wrap it on the program's side whatever the
    join method; the provider marks it secret in every answer unless the values make it plain, and its description
    says so."""
    if p.spec.secret and p.name in {camel(n) for n in dynamic}:
        public = ", ".join(m for m in JOIN_METHODS if not name_is_secret(m))
        return dataclasses.replace(p.spec, secret=False, doc=p.spec.doc + " A Pulumi secret (the provider marks it), "
                                   f"except for a join method whose token name is public ({public}).")
    return p.spec


def _resource_spec(b: _Builder, r: PulumiResource) -> dict[str, Any]:
    description, props = r.description, list(r.props())
    dynamic = HANDLERS[r.rdef.name].plain_when_name_public
    inputs = {p.name: b.prop_spec(p.tp, _schema_spec(p, dynamic), p.default, is_input=True)
              for p in props if p.is_input}
    outputs = {p.name: b.prop_spec(p.tp, _schema_spec(p, dynamic), p.default, is_input=False) for p in props}
    required_outputs = sorted(p.name for p in props if codec.unwrap_optional(p.tp)[0] is False)
    return {
        "description": description,
        "properties": outputs,
        "required": required_outputs,
        "inputProperties": inputs,
        "requiredInputs": sorted(p.name for p in props if p.is_input and p.spec.required and p.name != "name"),
    }


def build() -> dict[str, Any]:
    b = _Builder()
    resources = {token: _resource_spec(b, r) for token, r in RESOURCES.items()}
    config_vars = {}
    for f, tp, spec in codec.model_fields(ProviderConfig):
        assert spec is not None
        prop = b.prop_spec(tp, spec, None)
        env = ProviderConfig.ENV.get(f.name)
        if env:
            prop["defaultInfo"] = {"environment": [env]}
        config_vars[camel(f.name)] = prop
    fns = {}
    for token, fn in FUNCTIONS.items():
        fns[token] = {
            "description": fn.description,
            "inputs": {"type": "object", "properties": {
                camel(f.name): b.prop_spec(tp, s, field_default(f))  # type: ignore[arg-type]
                for f, tp, s in codec.model_fields(fn.inputs)},
                "required": sorted(camel(f.name) for f, _, s in codec.model_fields(fn.inputs) if s and s.required)},
            "outputs": {"type": "object", "properties": {
                camel(f.name): b.prop_spec(tp, s, field_default(f), is_input=False)  # type: ignore[arg-type]
                for f, tp, s in codec.model_fields(fn.outputs)},
                "required": sorted(camel(f.name) for f, _, _ in codec.model_fields(fn.outputs))},
        }
    return {
        "name": PACKAGE,
        "displayName": "machineid",
        "version": __version__,
        "description": "Machine identity as code: roles, join tokens and bots of a machineid cluster, and the "
                       "rendered configuration of the bot agent.",
        "keywords": ["pulumi", "machineid", "machine-identity", "ssh", "certificates", "category/utility"],
        "license": "Apache-2.0",
        "homepage": "https://github.com/machineid/machineid",
        "repository": "https://github.com/machineid/machineid",
        "publisher": "machineid",
        "config": {"variables": config_vars},
        "provider": {
            "description": "The machineid provider: talks to a machineid cluster with an identity file.",
            "inputProperties": config_vars,
            "properties": {k: v for k, v in config_vars.items() if not v.get("secret")},
        },
        "types": dict(sorted(b.types.items())),
        "resources": resources,
        "functions": fns,
        "language": {
            "python": {"packageName": "pulumi_machineid", "requires": {"pulumi": ">=3.0.0,<4.0.0"},
                       "pyproject": {"enabled": True}, "respectSchemaVersion": True},
            "nodejs": {"packageName": "@machineid/pulumi", "dependencies": {"@pulumi/pulumi": "^3.0.0"},
                       "respectSchemaVersion": True},
            "go": {"importBasePath": "github.com/machineid/machineid/sdk/go/machineid",
                   "generateResourceContainerTypes": True, "respectSchemaVersion": True},
        },
    }


def dumps() -> str:
    return json.dumps(build(), indent=2, sort_keys=False) + "\n"
