"""The provider's logic on plain values (no gRPC): check, diff, create, read, update, delete, invoke.

Rules that make `pulumi preview --expect-no-changes` trustworthy (where Teleport's Terraform provider is not):
- Check normalizes every input to its full canonical form with the model's defaults, so a server default never
  looks like a change, and removing a field from the program is a diff back to the default.
- Diff compares inputs only, field by field (nested paths, so a role's logins change shows as `allow.logins`);
  a field the cluster cannot change in place replaces the resource.
- Read returns the cluster's state as inputs, so refresh sees out-of-band changes; an object that is gone reads
  as gone; a join token whose expiry has passed plans a replacement instead of failing.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TypeVar

from machineid.model import codec
from machineid.model import validators as v
from machineid.model.errors import (
    AlreadyExistsError,
    NotFoundError,
    PermissionDeniedError,
    ValidationError,
)
from machineid.model.resources import Bot, ProvisionToken, ProvisionTokenSpec
from machineid.pulumi.config import ProviderConfig
from machineid.pulumi.resources import (
    BOT,
    PROVISION_TOKEN,
    RESOURCES,
    ROLE,
    BotOnboarding,
    ResourceDef,
    TokenOptions,
    camel,
    camel_fields,
    decode_inputs,
    encode_inputs,
    time_text,
    to_camel,
    to_snake,
)
from machineid.pulumi.values import UNKNOWN, contains_unknown

if TYPE_CHECKING:
    from machineid.api.client import Client

Log = Callable[[str, str, str], None]  # (severity, message, urn)
E = TypeVar("E", BotOnboarding, TokenOptions)

# PropertyDiff kinds (pulumirpc.PropertyDiff.Kind)
ADD, ADD_REPLACE, DELETE, DELETE_REPLACE, UPDATE, UPDATE_REPLACE = range(6)


@dataclass
class CheckResult:
    inputs: dict[str, Any]
    failures: list[tuple[str, str]] = field(default_factory=list)


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


_GENERATED = "generated-by-the-cluster"


def decode(rdef: ResourceDef, inputs: dict[str, Any]) -> Any:
    """decode_inputs, except that a token-method token may leave its (secret) name to the cluster."""
    if rdef is PROVISION_TOKEN and not inputs.get("name") and inputs.get("joinMethod", "token") == "token":
        decoded = decode_inputs(rdef, {**inputs, "name": _GENERATED})
        decoded.obj.metadata.name = ""
        return decoded
    return decode_inputs(rdef, inputs)


def token_id(name: str, join_method: str) -> str:
    """A token-method token's name is its secret: its resource ID is a hash, never the name."""
    if join_method == "iam":
        return name
    return "token-" + hashlib.sha256(name.encode()).hexdigest()[:24]


def _secret_inputs(rdef: ResourceDef) -> set[str]:
    return {p.name for p in rdef.props() if p.spec.secret}


class Provider:
    def __init__(self, log: Log | None = None) -> None:
        self.log: Log = log or (lambda severity, message, urn: None)
        self.config = ProviderConfig.from_inputs({})
        self._client: Client | None = None
        self.clock: Callable[[], datetime] = lambda: datetime.now(UTC)

    # ---------------------------------------------------------------- configuration
    def check_config(self, news: dict[str, Any]) -> CheckResult:
        if any(contains_unknown(x) for x in news.values()):
            return CheckResult(news)
        cfg = ProviderConfig.from_inputs(news)
        return CheckResult(news, [(str(p.path[0]), p.reason) for p in cfg.problems()])

    def configure(self, values: dict[str, Any]) -> None:
        self.config = ProviderConfig.from_inputs(values)
        if self._client is not None:
            self._client.close()
            self._client = None

    def client(self) -> Client:
        if self._client is None:
            try:
                self._client = self.config.client()
            except ValidationError as e:
                raise ValidationError(f"the machineid provider is not configured: {e}") from None
        return self._client

    # ---------------------------------------------------------------- check
    def check(self, token: str, urn_name: str, news: dict[str, Any]) -> CheckResult:
        rdef = RESOURCES[token]
        news = {k: val for k, val in news.items() if not k.startswith("__")}
        unknown = {k for k, val in news.items() if contains_unknown(val)}
        known = {k: val for k, val in news.items() if k not in unknown}
        if "name" not in news and self._name_defaults_to_urn(rdef, known):
            known["name"] = urn_name
        # Values unknown during a preview stand in as placeholders, so the rest is still checked and completed.
        props = {p.name: p for p in rdef.props()}
        stand_ins = {k: _placeholder(props[k].tp) for k in unknown if k in props}
        try:
            decoded = decode(rdef, {**known, **stand_ins})
        except ValidationError as e:
            failures = [(str(x.path[0]) if x.path else "", x.reason) for x in e.violations
                        if not any(str(x.path[0]).startswith(u) for u in unknown)]
            if failures:
                return CheckResult(news, failures)
            return CheckResult(news)
        inputs = encode_inputs(rdef, decoded.obj, decoded.extra)
        for name in rdef.server_defaults:
            if name not in news and name in inputs and not (name == "name" and self._name_defaults_to_urn(rdef,
                                                                                                        known)):
                del inputs[name]
        inputs.update({k: news[k] for k in unknown})
        failures = self._check_references(rdef, decoded.obj, decoded.extra, unknown)
        return CheckResult(inputs, failures)

    @staticmethod
    def _name_defaults_to_urn(rdef: ResourceDef, inputs: dict[str, Any]) -> bool:
        if rdef is PROVISION_TOKEN:
            return inputs.get("joinMethod") == "iam"
        return True

    def _check_references(self, rdef: ResourceDef, obj: Any, extra: Any, unknown: set[str]) -> list[tuple[str, str]]:
        """Names of other cluster objects must exist (unless they come from resources not created yet)."""
        if rdef is not BOT or "roles" in unknown:
            return []
        try:
            client = self.client()
        except ValidationError:
            return []  # reported by CheckConfig
        failures = []
        for i, role in enumerate(obj.spec.roles):
            try:
                client.get_role(role)
            except NotFoundError:
                failures.append((f"roles[{i}]", f'role "{role}" does not exist on the cluster; create it (a '
                                 "machineid.Role, referenced by its `name` output so the provider knows it comes "
                                 "first) or fix the name"))
            except PermissionDeniedError:
                break
        # tokenName is not checked here: a single-use token is gone once its bot joined, and that is no error.
        return failures

    # ---------------------------------------------------------------- diff
    def diff(self, token: str, old_outputs: dict[str, Any], old_inputs: dict[str, Any] | None,
             news: dict[str, Any]) -> DiffResult:
        rdef = RESOURCES[token]
        input_props = {p.name: p for p in rdef.props() if p.is_input}
        olds = old_inputs if old_inputs else {k: val for k, val in old_outputs.items() if k in input_props}
        result = DiffResult()
        if olds == news and rdef is not PROVISION_TOKEN:
            return result  # the common case in a preview with no changes
        for name, p in input_props.items():
            old, new = olds.get(name), news.get(name)
            if name in rdef.server_defaults and new is None:
                continue  # left to the cluster: whatever it picked is what the program asked for
            paths = _changed_paths(name, p.tp, old, new)
            for path in paths:
                if old is None:
                    kind = ADD_REPLACE if p.spec.replace_on_change else ADD
                elif new is None:
                    kind = DELETE_REPLACE if p.spec.replace_on_change else DELETE
                else:
                    kind = UPDATE_REPLACE if p.spec.replace_on_change else UPDATE
                result.diffs[path] = kind
                if p.spec.replace_on_change and name not in result.replaces:
                    result.replaces.append(name)
        if rdef is PROVISION_TOKEN:
            expires = old_outputs.get("tokenExpires") or olds.get("expires")
            if expires and isinstance(expires, str) and codec.parse_time(expires) <= self.clock():
                result.diffs["expires"] = UPDATE_REPLACE
                if "expires" not in result.replaces:
                    result.replaces.append("expires")
        if result.replaces:
            same_name = news.get("name") in (None, olds.get("name")) or news.get("name") is UNKNOWN
            result.delete_before_replace = bool(same_name)
        return result

    # ---------------------------------------------------------------- create
    def create(self, token: str, urn: str, inputs: dict[str, Any], preview: bool) -> State:
        rdef = RESOURCES[token]
        if preview:
            outputs = dict(inputs)
            for p in rdef.props():
                if p.section == "output":
                    outputs[p.name] = UNKNOWN
            if rdef is ROLE or (rdef is PROVISION_TOKEN and "name" not in inputs):
                # Unknown until it exists: a bot naming this role in the same program then skips the existence
                # check at preview instead of failing on a role that `up` is about to create.
                outputs["name"] = UNKNOWN
            return State("", outputs)
        decoded = decode(rdef, inputs)
        client = self.client()
        try:
            if rdef is BOT:
                return self._create_bot(client, decoded.obj, decoded.extra)
            if rdef is PROVISION_TOKEN and decoded.obj.metadata.expires is None:
                decoded.obj.metadata.expires = self.clock() + v.parse_duration(decoded.extra.ttl)
            created = client.upsert(decoded.obj, create_only=True)
        except AlreadyExistsError:
            if rdef is PROVISION_TOKEN:
                raise AlreadyExistsError("a token with this name already exists on the cluster; choose another name "
                                         "or leave the name out") from None
            name = decoded.obj.metadata.name
            raise AlreadyExistsError(f'{rdef.kind} "{name}" already exists on the cluster; adopt it with `pulumi '
                                     f"import {rdef.token} <resource name> {name}` or choose another name") from None
        return self._state(rdef, created, decoded.extra, {})

    def _state(self, rdef: ResourceDef, obj: Any, extra: Any, old_outputs: dict[str, Any]) -> State:
        inputs = encode_inputs(rdef, obj, extra)
        outputs = dict(inputs)
        if rdef is PROVISION_TOKEN:
            outputs["tokenExpires"] = time_text(obj.metadata.expires)
            return State(token_id(obj.metadata.name, obj.spec.join_method), outputs, inputs)
        return State(obj.metadata.name, outputs, inputs)

    def _create_bot(self, client: Client, bot: Bot, extra: BotOnboarding) -> State:
        ttl = v.parse_duration(extra.token_ttl)
        created = client.create_bot(bot, token_name=extra.token_name, token_ttl=ttl)
        outputs = {"token": created.token, "joinMethod": created.join_method,
                   "tokenExpires": time_text(created.token_expires), "caPins": created.ca_pins}
        return self._bot_state(created.bot, extra, outputs)

    def _bot_state(self, bot: Bot, extra: BotOnboarding, token_outputs: dict[str, Any]) -> State:
        inputs = encode_inputs(BOT, bot, extra)
        outputs = dict(inputs)
        outputs.update(token_outputs)
        outputs["userName"] = bot.status.user_name
        outputs["roleName"] = bot.status.role_name
        outputs["authServer"] = self.config.address
        pins = list(outputs.get("caPins") or [])
        from machineid.pulumi import functions  # the agent's config model: loaded when a bot is rendered

        rendered = functions.render(functions.RenderArgs(
            bot_name=bot.metadata.name, token=str(outputs.get("token", "")),
            join_method=str(outputs.get("joinMethod") or "token"), destination_dir=extra.destination_dir,
            data_dir=extra.data_dir, config_path=extra.config_path, auth_server=self.config.address,
            ca_pins=pins, certificate_ttl=extra.certificate_ttl, renewal_interval=extra.renewal_interval,
            agent_path=extra.agent_path))
        outputs.update(to_camel(functions.Rendered, codec.encode(rendered)))
        return State(bot.metadata.name, outputs, inputs)

    # ---------------------------------------------------------------- read
    def read(self, token: str, id: str, old_outputs: dict[str, Any], old_inputs: dict[str, Any] | None) -> State:
        rdef = RESOURCES[token]
        client = self.client()
        importing = not old_outputs and not old_inputs
        try:
            if rdef is ROLE:
                state = self._state(rdef, client.get_role(id), None, old_outputs)
            elif rdef is PROVISION_TOKEN:
                name = str(old_outputs.get("name") or (old_inputs or {}).get("name") or id)
                if name.startswith("token-") and importing:
                    raise ValidationError("import a token-method ProvisionToken by the token itself, not by its "
                                          "hashed ID")
                options = self._old_extra(TokenOptions, old_inputs or old_outputs)
                state = self._state(rdef, client.get_token(name), options, old_outputs)
            else:
                bot = client.get_bot(id)
                extra = self._old_extra(BotOnboarding, old_inputs or old_outputs)
                keep: dict[str, Any] = {k: old_outputs[k] for k in ("token", "joinMethod", "tokenExpires", "caPins")
                        if k in old_outputs}
                if "caPins" not in keep:
                    keep["caPins"] = list(client.ping().ca_pins)
                state = self._bot_state(bot, extra, keep)
        except NotFoundError:
            return State("", {}, None)
        # Inputs the cluster chose (a generated token name, a default expiry) stay out unless the program set them.
        assert state.inputs is not None
        for name in rdef.server_defaults:
            if name in state.inputs and not importing and name not in (old_inputs or {}):
                del state.inputs[name]
        if rdef is PROVISION_TOKEN and importing and state.inputs.get("joinMethod") == "token":
            state.inputs.pop("expires", None)
        return state

    @staticmethod
    def _old_extra(cls: type[E], values: dict[str, Any]) -> E:
        """Provider-only inputs live only in the state: take them from there (or the defaults, on import)."""
        data = {k: val for k, val in values.items() if k in {camel(f.name) for f in dataclasses.fields(cls)}}
        try:
            return codec.decode(cls, to_snake(cls, data))
        except ValidationError:
            return cls()

    # ---------------------------------------------------------------- update
    def update(self, token: str, id: str, old_outputs: dict[str, Any], old_inputs: dict[str, Any] | None,
               news: dict[str, Any], preview: bool) -> State:
        rdef = RESOURCES[token]
        if preview:
            outputs = {**old_outputs, **news}
            if rdef is BOT:
                olds = old_inputs or old_outputs
                if olds.get("tokenRotation") != news.get("tokenRotation"):
                    outputs.update({"token": UNKNOWN, "tokenExpires": UNKNOWN})
                outputs["agentConfig"] = UNKNOWN
                outputs["systemdUnit"] = UNKNOWN
                outputs["startCommand"] = UNKNOWN
            return State(id, outputs)
        decoded = decode(rdef, news)
        client = self.client()
        if rdef is BOT:
            return self._update_bot(client, decoded.obj, decoded.extra, old_outputs, old_inputs or old_outputs)
        if rdef is PROVISION_TOKEN and "name" not in news:
            decoded.obj.metadata.name = str(old_outputs.get("name", ""))
        if rdef is PROVISION_TOKEN and "expires" not in news:
            expires = old_outputs.get("tokenExpires")
            decoded.obj.metadata.expires = codec.parse_time(expires) if expires else None
        updated = client.upsert(decoded.obj)
        return self._state(rdef, updated, decoded.extra, old_outputs)

    def _update_bot(self, client: Client, bot: Bot, extra: BotOnboarding, old_outputs: dict[str, Any],
                    olds: dict[str, Any]) -> State:
        current = client.get_bot(bot.metadata.name)
        bot.status = current.status
        if (bot.spec, bot.metadata.description, bot.metadata.labels) != (
                current.spec, current.metadata.description, current.metadata.labels):
            current = client.update_bot(bot)
        keep: dict[str, Any] = {k: old_outputs[k] for k in ("token", "joinMethod", "tokenExpires", "caPins")
                                if k in old_outputs}
        if extra.token_name and olds.get("tokenName", "") != extra.token_name:
            named = client.get_token(extra.token_name)
            keep.update({"token": named.metadata.name, "joinMethod": named.spec.join_method,
                         "tokenExpires": time_text(named.metadata.expires)})
        elif olds.get("tokenRotation", 0) != extra.token_rotation:
            ttl = v.parse_duration(extra.token_ttl)
            token = client.upsert(ProvisionToken(
                metadata=dataclasses.replace(current.metadata, name="", expires=self.clock() + ttl, revision="",
                                             description=f"join token of bot {bot.metadata.name}", labels={}),
                spec=ProvisionTokenSpec(bot_name=bot.metadata.name)), create_only=True)
            assert isinstance(token, ProvisionToken)
            keep.update({"token": token.metadata.name, "joinMethod": "token",
                         "tokenExpires": time_text(token.metadata.expires)})
            self.log("info", f"issued a new join token for bot {bot.metadata.name} (rotation "
                             f"{extra.token_rotation})", "")
        if "caPins" not in keep:
            keep["caPins"] = list(client.ping().ca_pins)
        return self._bot_state(current, extra, keep)

    # ---------------------------------------------------------------- delete
    def delete(self, token: str, id: str, outputs: dict[str, Any]) -> None:
        rdef = RESOURCES[token]
        name = str(outputs.get("name") or id) if rdef is PROVISION_TOKEN else id
        with contextlib.suppress(NotFoundError):  # already gone: the goal of a delete
            self.client().delete(rdef.kind, name)

    # ---------------------------------------------------------------- invoke
    def invoke(self, token: str, args: dict[str, Any]) -> tuple[dict[str, Any], list[tuple[str, str]]]:
        from machineid.pulumi import functions

        fn = functions.FUNCTIONS.get(token)
        if fn is None:
            raise ValidationError(f"unknown function {token}")
        try:
            decoded: Any = codec.decode_and_validate(fn.inputs, to_snake(fn.inputs, args))
        except ValidationError as e:
            return {}, [(".".join(camel(str(s)) for s in x.path), x.reason) for x in e.violations]
        if token.endswith(":getClusterInfo"):
            ping = self.client().ping()
            info = functions.ClusterInfo(cluster_name=ping.cluster_name, version=ping.server_version,
                                         ca_pins=list(ping.ca_pins), address=self.config.address)
            return to_camel(functions.ClusterInfo, codec.encode(info)), []
        assert isinstance(decoded, functions.RenderArgs)
        if not decoded.auth_server:
            decoded.auth_server = self.config.address
        if not decoded.ca_pins:
            decoded.ca_pins = list(self.client().ping().ca_pins)
        return to_camel(functions.Rendered, codec.encode(functions.render(decoded))), []


def _placeholder(tp: Any) -> Any:
    """A valid value of the type, standing in for one not known yet (it never reaches the cluster)."""
    sh = codec.shape(tp)
    if sh.kind == "str":
        return "unknown"
    if sh.kind == "list":
        return ["unknown"] if sh.item is str else []
    return _empty(tp)


_EMPTY_BY_KIND: dict[str, Any] = {"str": "", "int": 0, "bool": False}


def _empty(tp: Any) -> Any:
    kind = codec.shape(tp).kind
    if kind == "list":
        return []
    if kind in ("dict", "object"):
        return {}
    return _EMPTY_BY_KIND.get(kind)


def _changed_paths(prefix: str, tp: Any, old: Any, new: Any) -> list[str]:
    """Paths that differ; objects of model types recurse, so the diff names the exact nested field. A missing
    value and the empty value of its type are the same (the state leaves empty fields out)."""
    if new is UNKNOWN:
        return [prefix]
    old = _empty(tp) if old is None else old
    new = _empty(tp) if new is None else new
    sh = codec.shape(tp)
    if sh.kind == "object" and isinstance(old, dict) and isinstance(new, dict):
        out: list[str] = []
        for _, key, ftp in camel_fields(sh.tp):
            out += _changed_paths(f"{prefix}.{key}", ftp, old.get(key), new.get(key))
        return out
    if contains_unknown(new):
        return [prefix]
    return [] if old == new else [prefix]
