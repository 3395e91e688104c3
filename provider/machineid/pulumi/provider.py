"""The Pulumi adapter over the provider core, on plain values (no gRPC): camelCase names, URN names, the
state's compact form, PropertyDiff kinds and Check failures as Pulumi property paths.

What the provider decides (checks, diffs, CRUD, import, token expiry, bot rendering) is machineid.iac's."""

from __future__ import annotations

import json
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from machineid.iac import functions
from machineid.iac.config import ProviderConfig
from machineid.iac.core import Core, Hints
from machineid.iac.core import State as CoreState
from machineid.iac.unknown import UNKNOWN
from machineid.model import codec
from machineid.model.errors import FieldViolation, Path, ValidationError
from machineid.model.validators import shown
from machineid.pulumi.resources import (
    RESOURCES,
    PulumiResource,
    camel,
    camel_props,
    render_path,
    snake_props,
    to_camel,
    to_snake,
    token_of,
)

if TYPE_CHECKING:
    from machineid.api.client import Client

Log = Callable[[str, str, str], None]  # (severity, message, urn)

# PropertyDiff kinds (pulumirpc.PropertyDiff.Kind)
ADD, ADD_REPLACE, DELETE, DELETE_REPLACE, UPDATE, UPDATE_REPLACE = range(6)
_KINDS = {("add", False): ADD, ("add", True): ADD_REPLACE, ("delete", False): DELETE,
          ("delete", True): DELETE_REPLACE, ("update", False): UPDATE, ("update", True): UPDATE_REPLACE}

HINTS = Hints(
    how_to_set={"address": "run `pulumi config set machineid:address HOST:PORT`",
                "identity_file": "run `pulumi config set machineid:identityFile PATH`",
                "identity": "machineid:identity as a secret",
                "join_method": "`pulumi config set machineid:joinMethod github` (or gitlab, kubernetes, oidc, iam)",
                "join_token": "run `pulumi config set machineid:joinToken NAME`",
                "ca_pin": "run `pulumi config set machineid:caPin sha256:...`"},
    role_reference="a machineid.Role, referenced by its `name` output",
    import_command=lambda rdef, name: f"`pulumi import machineid:index:{rdef.type_name} <resource name> {name}`",
)
FUNCTIONS = {token_of(fn.name): fn for fn in functions.FUNCTIONS}


@dataclass
class CheckResult:
    inputs: dict[str, Any]
    failures: list[tuple[str, str]] = field(default_factory=list)  # (property path, whole message)


@dataclass
class DiffResult:
    diffs: dict[str, int] = field(default_factory=dict)  # property path -> kind
    replaces: list[str] = field(default_factory=list)
    delete_before_replace: bool = False

    @property
    def changed(self) -> bool:
        return bool(self.diffs)


@dataclass
class State:
    id: str
    outputs: dict[str, Any]
    inputs: dict[str, Any] | None = None


_ABSENT = object()


def _value_at(values: dict[str, Any], path: Path) -> Any:
    """The user's value at a core path, looked up in Pulumi's camelCase properties; _ABSENT when it is not set.

    A path through a scalar (a number where a list belongs) stops at that scalar: it is what the user wrote."""
    value: Any = values
    for step in path:
        if isinstance(step, int) and isinstance(value, list):
            if not 0 <= step < len(value):
                return _ABSENT
            value = value[step]
        elif isinstance(step, str) and isinstance(value, dict):
            key = camel(step) if camel(step) in value else step
            if key not in value:
                return _ABSENT
            value = value[key]
        else:
            break
    return value


def _rendered(value: Any) -> str:
    if value is UNKNOWN:
        return "(unknown until the update)"
    if isinstance(value, str):
        return f'"{shown(value)}"'
    return shown(json.dumps(value, sort_keys=True, default=lambda v: "(unknown until the update)"))


def failure(path: Path, reason: str, values: dict[str, Any], secret: Collection[str] = ()) -> tuple[str, str]:
    """(Pulumi property path, message naming the path and the value the user gave) for one violation.

    The engine prints a failure's own property as `value {<nil>}` unless it is a top-level key, and a top-level
    value Go-formatted (a secret one in clear), so the provider sends the property in the message instead. Values
    of secret properties are not shown."""
    where = render_path(path)
    value = _value_at(values, path)
    if value is _ABSENT or value is None:
        return where, f"property {where}: {reason}"  # nothing to show: the reason says it is missing
    if path and camel(str(path[0])) in secret:
        if isinstance(value, str) and value:
            reason = reason.replace(f'"{shown(value)}"', "[secret]")  # a reason that quotes what it checked
        return where, f"property {where} value [secret]: {reason}"
    if isinstance(value, str) and f'"{shown(value)}"' in reason:
        return where, f"property {where}: {reason}"  # the reason already quotes it
    return where, f"property {where} value {_rendered(value)}: {reason}"


def _failures(violations: list[FieldViolation], values: dict[str, Any],
              secret: Collection[str] = ()) -> list[tuple[str, str]]:
    return [failure(x.path, x.reason, values, secret) for x in violations]


def config_values(values: dict[str, Any]) -> dict[str, Any]:
    """Provider config as the engine sends it (camelCase keys, or machineid:config:key) -> the core's fields."""
    out = {}
    for name in ProviderConfig.fields():
        key = camel(name)
        raw = values.get(key, values.get(f"machineid:config:{key}"))
        if raw is not None:
            out[name] = raw
    return out


class Provider:
    def __init__(self, log: Log | None = None,
                 client_factory: Callable[[ProviderConfig], Client] | None = None) -> None:
        self.log: Log = log or (lambda severity, message, urn: None)
        self.core = Core(HINTS, lambda severity, message: self.log(severity, message, ""), client_factory)

    @property
    def config(self) -> ProviderConfig:
        return self.core.config

    def client(self) -> Client:
        return self.core.client()

    # ---------------------------------------------------------------- configuration
    def check_config(self, news: dict[str, Any], secret: Collection[str] = ()) -> CheckResult:
        return CheckResult(news, _failures(self.core.check_config(config_values(news)), news, secret))

    def configure(self, values: dict[str, Any]) -> None:
        self.core.configure(config_values(values))

    # ---------------------------------------------------------------- check
    def check(self, token: str, urn_name: str, news: dict[str, Any], secret: Collection[str] = ()) -> CheckResult:
        """secret: the properties the program marked secret (the schema's own secret ones are added here)."""
        r = RESOURCES[token]
        snake, unknown_keys = snake_props(r, news)
        handler = self.core.handler(r.rdef)
        if snake.get("name") is None and not handler.server_chosen_name(snake):
            snake["name"] = urn_name  # Pulumi's convention: the resource name is the default
        hidden = {*secret, *r.secret_props()}
        known = ", ".join(sorted(p.name for p in r.props() if p.is_input))
        failures = [failure((key,), f"unknown property; known: {known}", news, hidden) for key in unknown_keys]
        result = self.core.check(r.rdef, snake)
        if failures or result.violations:
            return CheckResult({k: v for k, v in news.items() if not k.startswith("__")},
                               failures + _failures(result.violations, news, hidden))
        return CheckResult(camel_props(r, result.inputs))

    def plain_in_check(self, token: str, news: dict[str, Any]) -> frozenset[str]:
        """Secret inputs the cluster says are plain (a bot's tokenName naming an iam or bound_keypair token)."""
        r = RESOURCES[token]
        return frozenset(camel(n) for n in self.core.plain_inputs(r.rdef, snake_props(r, news)[0]))

    # ---------------------------------------------------------------- diff
    def unchanged_is_no_change(self, token: str) -> bool:
        """Whether inputs equal to the old ones always mean no change (no handler rule replaces on its own: a
        token's expiry does)."""
        return not self.core.handler(RESOURCES[token].rdef).forces_replacements

    def diff(self, token: str, old_outputs: dict[str, Any], old_inputs: dict[str, Any] | None,
             news: dict[str, Any]) -> DiffResult:
        r = RESOURCES[token]
        if old_inputs and old_inputs == news and self.unchanged_is_no_change(token):
            return DiffResult()  # the common case in a preview with no changes
        result = self.core.diff(r.rdef, snake_props(r, old_outputs)[0],
                                snake_props(r, old_inputs)[0] if old_inputs else None, snake_props(r, news)[0])
        for warning in result.warnings:
            self.core.log("warning", str(warning))
        return DiffResult({".".join(camel(str(s)) for s in path): _KINDS[(c.kind, c.replace)]
                           for path, c in result.changes.items()},
                          [camel(n) for n in result.replaces], result.delete_before_replace)

    # ---------------------------------------------------------------- create
    def create(self, token: str, urn: str, inputs: dict[str, Any], preview: bool) -> State:
        r = RESOURCES[token]
        snake = snake_props(r, inputs)[0]
        if preview:
            outputs = self.core.plan(r.rdef, snake).outputs
            if self.core.handler(r.rdef).name_unknown_until_created:
                outputs["name"] = UNKNOWN
            return State("", camel_props(r, outputs))
        return self._state(r, self.core.create(r.rdef, snake))

    @staticmethod
    def _state(r: PulumiResource, state: Any) -> State:
        inputs = camel_props(r, state.inputs) if state.inputs is not None else None
        return State(state.id, camel_props(r, state.outputs), inputs)

    # ---------------------------------------------------------------- read
    def read(self, token: str, id: str, old_outputs: dict[str, Any], old_inputs: dict[str, Any] | None) -> State:
        r = RESOURCES[token]
        state = self.core.read(r.rdef, id, snake_props(r, old_outputs)[0],
                               snake_props(r, old_inputs)[0] if old_inputs else None)
        if state is None:
            return State("", {}, None)
        return self._state(r, state)

    # ---------------------------------------------------------------- update
    def update(self, token: str, id: str, old_outputs: dict[str, Any], old_inputs: dict[str, Any] | None,
               news: dict[str, Any], preview: bool) -> State:
        r = RESOURCES[token]
        olds = snake_props(r, old_outputs)[0]
        old_in = snake_props(r, old_inputs)[0] if old_inputs else None
        snake = snake_props(r, news)[0]
        if preview:  # the engine asks for an update only where the diff found a change that replaces nothing
            planned = self.core.plan(r.rdef, snake, CoreState(id, olds, old_in))
            return State(id, camel_props(r, planned.outputs))
        return self._state(r, self.core.update(r.rdef, id, olds, old_in, snake))

    # ---------------------------------------------------------------- delete
    def delete(self, token: str, id: str, outputs: dict[str, Any]) -> None:
        r = RESOURCES[token]
        self.core.delete(r.rdef, id, snake_props(r, outputs)[0])

    # ---------------------------------------------------------------- invoke
    def invoke(self, token: str, args: dict[str, Any]) -> tuple[dict[str, Any], list[tuple[str, str]]]:
        fn = FUNCTIONS.get(token)
        if fn is None:
            raise ValidationError(f"unknown function {token}")
        try:
            decoded: Any = codec.decode_and_validate(fn.inputs, to_snake(fn.inputs, args))
        except ValidationError as e:
            return {}, _failures(e.violations, args)
        if fn is functions.GET_CLUSTER_INFO:
            result: Any = self.core.cluster_info()
        elif fn is functions.GET_BOT_INSTANCES:
            result = self.core.bot_instances(decoded)
        else:
            result = self.core.render(decoded)
        return to_camel(fn.outputs, codec.encode(result)), []
