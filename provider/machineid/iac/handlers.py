"""One handler per resource: how each kind is created, read, updated, deleted and imported, and its own rules.

The generic check/diff/plan logic lives in core.py; a handler holds only what differs between kinds (IDs,
server-chosen names, token expiry, bot onboarding and rendering, import rules)."""

from __future__ import annotations

import contextlib
import dataclasses
import time
from typing import TYPE_CHECKING, Any

from machineid.iac import functions, settings
from machineid.iac.resource import BOT, PROVISION_TOKEN, ROLE, Decoded, ResourceDef, decode_inputs, encode_inputs
from machineid.iac.resource import time_text as _time
from machineid.iac.unknown import UNKNOWN, contains_unknown
from machineid.model import codec
from machineid.model import validators as v
from machineid.model.errors import (
    AlreadyExistsError,
    FieldViolation,
    MachineIDError,
    NotFoundError,
    PermissionDeniedError,
    PreconditionError,
    ValidationError,
)
from machineid.model.resources import Bot, ProvisionToken, ProvisionTokenSpec, User, name_is_secret, token_id

if TYPE_CHECKING:
    from machineid.iac.core import Core, DiffResult


@dataclasses.dataclass
class State:
    """What a resource is after a call: its ID, every property the call knows (inputs and outputs), and the
    inputs as the cluster has them (None where the adapter keeps the program's)."""

    id: str
    outputs: dict[str, Any]
    inputs: dict[str, Any] | None = None


class Handler:
    rdef: ResourceDef
    # Whether replacements() can force a replacement when no input changed (a token's expiry).
    forces_replacements = False
    # Whether a plan may leave the name unknown until the object exists: a bot naming this role in the same program
    # then skips the existence check at preview instead of failing on a role the apply is about to create. (An
    # adapter whose plan must keep a configured value, like Terraform's, does not.)
    name_unknown_until_created = False
    # Secret properties that are plain where the join method's token name is public (iam, bound_keypair: the proof
    # is an AWS identity or a key pair, not the name). An adapter that marks secrets per value leaves their secret
    # flag out of its schema and asks plain_secrets().
    plain_when_name_public: frozenset[str] = frozenset()

    def decode(self, inputs: dict[str, Any]) -> Decoded:
        return decode_inputs(self.rdef, inputs)

    def plain_secrets(self, values: dict[str, Any]) -> frozenset[str]:
        """Secret properties that these values (inputs or outputs) make plain, so a program declaring an iam or
        bound_keypair join keeps no secret in its state. A join method not known yet keeps them secret."""
        if name_is_secret(values.get("join_method")):
            return frozenset()
        return self.plain_when_name_public

    def secrets_known(self, values: dict[str, Any]) -> bool:
        """Whether these values decide plain_secrets() (the join method is known)."""
        return not contains_unknown(values.get("join_method"))

    def plain_inputs(self, core: Core, inputs: dict[str, Any]) -> frozenset[str]:
        """Secret inputs that the cluster says are plain (asked when inputs are checked, not on every call)."""
        return frozenset()

    def server_chosen_name(self, inputs: dict[str, Any]) -> bool:
        """Whether the cluster picks the name when the program leaves it out (otherwise it is required)."""
        return False

    def resource_id(self, obj: Any) -> str:
        return str(obj.metadata.name)

    def name_of(self, id: str, outputs: dict[str, Any]) -> str:
        return id

    def check_references(self, core: Core, decoded: Decoded, unknown: set[str]) -> list[FieldViolation]:
        return []

    def replacements(self, core: Core, old_outputs: dict[str, Any], olds: dict[str, Any]) -> list[str]:
        """Properties that force a replacement for reasons other than a changed input (an expired token)."""
        return []

    def replace_warnings(self, core: Core, old_outputs: dict[str, Any], olds: dict[str, Any],
                         news: dict[str, Any], diff: DiffResult) -> list[FieldViolation]:
        """What the plan of a replacement should warn about (nothing is refused)."""
        return []

    def replaces_on_any_change(self, old_outputs: dict[str, Any]) -> bool:
        """Whether any change to this object's inputs must replace it."""
        return False

    def state(self, core: Core, obj: Any, extra: Any, old_outputs: dict[str, Any]) -> State:
        inputs = encode_inputs(self.rdef, obj, extra)
        return State(self.resource_id(obj), dict(inputs), inputs)

    def create(self, core: Core, decoded: Decoded) -> State:
        try:
            created = core.client().upsert(decoded.obj, create_only=True)
        except AlreadyExistsError:
            raise AlreadyExistsError(self.exists_message(core, decoded.obj.metadata.name)) from None
        return self.state(core, created, decoded.extra, {})

    def exists_message(self, core: Core, name: str) -> str:
        return (f'{self.rdef.kind} "{name}" already exists on the cluster; adopt it with '
                f"{core.import_hint(self.rdef, name)} or choose another name")

    def read(self, core: Core, id: str, old_outputs: dict[str, Any], old_inputs: dict[str, Any] | None,
             importing: bool) -> State:
        obj = core.client().get(self.rdef.kind, self.name_of(id, old_outputs))
        return self.state(core, obj, old_extra(self.rdef, old_inputs or old_outputs), old_outputs)

    def update(self, core: Core, decoded: Decoded, old_outputs: dict[str, Any], olds: dict[str, Any],
               news: dict[str, Any]) -> State:
        return self.state(core, core.client().upsert(decoded.obj), decoded.extra, old_outputs)

    def plan_update(self, core: Core, old_outputs: dict[str, Any], olds: dict[str, Any],
                    news: dict[str, Any]) -> dict[str, Any]:
        """The outputs an update will have, as far as they are known before it runs."""
        return {**old_outputs, **news}

    def delete(self, core: Core, id: str, outputs: dict[str, Any]) -> None:
        with contextlib.suppress(NotFoundError):  # already gone: the goal of a delete
            core.client().delete(self.rdef.kind, self.name_of(id, outputs))


def old_extra(rdef: ResourceDef, values: dict[str, Any]) -> Any:
    """Provider-only inputs live only in the state: take them from there (or the defaults, on import)."""
    if rdef.extra is None:
        return None
    names = {f.name for f in dataclasses.fields(rdef.extra)}
    data = {k: val for k, val in values.items() if k in names and val is not None}
    try:
        return codec.decode(rdef.extra, data)
    except ValidationError:
        return rdef.extra()


class RoleHandler(Handler):
    rdef = ROLE
    name_unknown_until_created = True

    def replace_warnings(self, core: Core, old_outputs: dict[str, Any], olds: dict[str, Any],
                         news: dict[str, Any], diff: DiffResult) -> list[FieldViolation]:
        """A renamed role is a new role: where the tool deletes the old one first, a bot that still holds it (and
        moves to the new one only after it exists) makes that delete wait and fail."""
        if not core.hints.create_first or diff.delete_before_replace:
            return []
        return [FieldViolation(("name",), f'renaming role "{olds.get("name")}" replaces it. Unless this resource '
                               "creates its replacement first, the old role is deleted first, which the cluster "
                               "refuses while a bot or user still holds it (the delete waits, then fails). If "
                               f"anything holds it, {core.hints.create_first}")]

    def delete(self, core: Core, id: str, outputs: dict[str, Any]) -> None:
        """A role still held by a user or bot is refused. Without a reference in the configuration, `destroy`
        deletes the role and its bots at the same time: a holder this process is deleting too is waited for (as
        long as `core.in_use_wait`). Any other holder is not going away, so the refusal stands after a short grace
        (`core.holder_grace`: the CLIs start parallel deletes together, not at the same instant)."""
        name = self.name_of(id, outputs)
        started, pause = time.monotonic(), 0.2
        while True:
            try:
                return super().delete(core, id, outputs)
            except PreconditionError as e:
                refusal = e
            going = self._holders_going(core, name)
            wait = core.in_use_wait if going else core.holder_grace
            if time.monotonic() - started + pause > wait:
                if core.hints.create_first:
                    raise PreconditionError(f"{refusal}. If this delete is part of a replacement (a renamed role), "
                                            f"{core.hints.create_first}") from None
                raise refusal
            if core.stopping.wait(pause):
                raise PreconditionError(f'stopped while waiting for role "{name}" to be let go by its holders; it '
                                        "was not deleted") from None
            pause = min(pause * 2, 2.0)

    @staticmethod
    def _holders_going(core: Core, role: str) -> bool:
        """Whether a holder of the role is being deleted by this process (or was: the next try then succeeds). The
        holders are read again; an identity that may not list users waits for any bot or user this process
        deletes."""
        try:
            holders = {("bot", u.spec.bot_name) if u.spec.bot_name else ("user", u.metadata.name)
                       for u in core.client().list("user") if isinstance(u, User) and role in u.spec.roles}
        except PermissionDeniedError:
            holders = {d for d in core.deletes if d[0] in ("bot", "user")}
        return not holders or bool(holders & core.deletes)


_GENERATED = "generated-by-the-cluster-when-created"  # a stand-in as long as a real one


def _registration_secret(values: dict[str, Any] | None) -> str:
    bound = (values or {}).get("bound_keypair") or {}
    return str((bound.get("onboarding") or {}).get("registration_secret") or "")


def _keep_registration_secret(st: State, given: str) -> None:
    """The cluster keeps (and answers with) only the registration secret's hash: where it is the hash of what the
    program gave, the program's value stands, so the plan shows no change."""
    for values in (st.outputs, st.inputs):
        onboarding = ((values or {}).get("bound_keypair") or {}).get("onboarding") or {}
        stored = onboarding.get("registration_secret")
        if given and stored and stored != given and stored == v.secret_hash(given):
            onboarding["registration_secret"] = given


class TokenHandler(Handler):
    rdef = PROVISION_TOKEN
    forces_replacements = True
    plain_when_name_public = frozenset({"name"})  # only a token-method token's name is its secret

    def decode(self, inputs: dict[str, Any]) -> Decoded:
        """A token-method token may leave its (secret) name to the cluster."""
        if self.server_chosen_name(inputs) and not inputs.get("name"):
            decoded = decode_inputs(self.rdef, {**inputs, "name": _GENERATED})
            decoded.obj.metadata.name = ""
            return decoded
        return decode_inputs(self.rdef, inputs)

    def server_chosen_name(self, inputs: dict[str, Any]) -> bool:
        return (inputs.get("join_method") or "token") == "token"

    def resource_id(self, obj: Any) -> str:
        return token_id(obj.metadata.name, obj.spec.join_method)

    def name_of(self, id: str, outputs: dict[str, Any]) -> str:
        return str(outputs.get("name") or id)

    def exists_message(self, core: Core, name: str) -> str:
        return "a token with this name already exists on the cluster; choose another name or leave the name out"

    def replacements(self, core: Core, old_outputs: dict[str, Any], olds: dict[str, Any]) -> list[str]:
        if old_outputs.get("used"):
            return []  # its job is done: no fresh token unless the program changes it
        expires = old_outputs.get("token_expires") or olds.get("expires")
        if expires and isinstance(expires, str) and codec.parse_time(expires) <= core.clock():
            return ["expires"]
        return []

    def replaces_on_any_change(self, old_outputs: dict[str, Any]) -> bool:
        """A used single-use token is gone from the cluster: updating it would bring back a spent secret."""
        return bool(old_outputs.get("used"))

    def replace_warnings(self, core: Core, old_outputs: dict[str, Any], olds: dict[str, Any],
                         news: dict[str, Any], diff: DiffResult) -> list[FieldViolation]:
        """A used token replaced under the name it had would be the spent secret again: the cluster refuses that
        create. Said at plan time as a warning, since an error here would also block `destroy`."""
        name = news.get("name")
        if old_outputs.get("used") and isinstance(name, str) and name and name == old_outputs.get("name"):
            return [FieldViolation(("name",), "this token was used by its bot's join, and the cluster does not "
                                   "create a used single-use token again, so applying this will fail: remove "
                                   "`name` so that the cluster picks a new one, or set a new name")]
        return []

    def state(self, core: Core, obj: Any, extra: Any, old_outputs: dict[str, Any]) -> State:
        st = super().state(core, obj, extra, old_outputs)
        st.outputs["token_expires"] = _time(obj.metadata.expires)
        st.outputs.update(codec.encode(obj.status))
        st.outputs["used"] = False
        return st

    def create(self, core: Core, decoded: Decoded) -> State:
        if decoded.obj.metadata.expires is None and decoded.obj.spec.join_method != "bound_keypair":
            decoded.obj.metadata.expires = core.clock() + v.parse_duration(decoded.extra.ttl)
        st = super().create(core, decoded)
        _keep_registration_secret(st, decoded.obj.spec.bound_keypair.onboarding.registration_secret)
        return st

    def read(self, core: Core, id: str, old_outputs: dict[str, Any], old_inputs: dict[str, Any] | None,
             importing: bool) -> State:
        name = str(old_outputs.get("name") or (old_inputs or {}).get("name") or id)
        if name.startswith("token-") and importing:
            raise ValidationError("import a token-method token by the token itself, not by its hashed ID")
        try:
            token = core.client().get_token(name)
        except NotFoundError:
            if importing or not self._used(core, id, old_outputs):
                raise
            inputs = dict(old_inputs or self.rdef.input_values(old_outputs))
            return State(id, {**old_outputs, "used": True}, inputs)
        st = self.state(core, token, old_extra(self.rdef, old_inputs or old_outputs), old_outputs)
        _keep_registration_secret(st, _registration_secret(old_inputs or old_outputs))
        if importing and st.inputs is not None and st.inputs.get("join_method") == "token":
            st.inputs["expires"] = None  # a single-use token's expiry is the cluster's choice
        return st

    @staticmethod
    def _used(core: Core, id: str, old_outputs: dict[str, Any]) -> bool:
        """Whether a single-use token that is gone was spent by its bot's join (rather than deleted): the bot
        still exists and lists it among the tokens it spent, or the state already says so. A bot that is gone
        takes its tokens with it."""
        if (old_outputs.get("join_method") or "token") != "token" or not old_outputs.get("bot_name"):
            return False
        try:
            bot = core.client().get_bot(str(old_outputs["bot_name"]))  # NotFoundError: gone with its bot
        except PermissionDeniedError:
            return False  # an identity that may not read bots: the token reads as gone, as before
        return bool(old_outputs.get("used")) or id in bot.status.spent_tokens

    def update(self, core: Core, decoded: Decoded, old_outputs: dict[str, Any], olds: dict[str, Any],
               news: dict[str, Any]) -> State:
        if news.get("name") is None:
            decoded.obj.metadata.name = str(old_outputs.get("name", ""))
        if news.get("expires") is None:
            expires = old_outputs.get("token_expires")
            decoded.obj.metadata.expires = codec.parse_time(expires) if expires else None
        st = super().update(core, decoded, old_outputs, olds, news)
        _keep_registration_secret(st, decoded.obj.spec.bound_keypair.onboarding.registration_secret)
        return st

    def plan_update(self, core: Core, old_outputs: dict[str, Any], olds: dict[str, Any],
                    news: dict[str, Any]) -> dict[str, Any]:
        outputs = super().plan_update(core, old_outputs, olds, news)
        if news.get("join_method") == "bound_keypair":
            outputs.update({k: UNKNOWN for k in settings.TOKEN_STATUS_OUTPUTS})
        expires = news.get("expires")
        if expires is UNKNOWN:
            outputs["token_expires"] = UNKNOWN
        elif expires:
            outputs["token_expires"] = _time(codec.parse_time(expires))
        return outputs


class BotHandler(Handler):
    rdef = BOT
    # Its token is then an iam or bound_keypair token's name: that name, and the rendered config that holds it.
    plain_when_name_public = frozenset({"token", "token_name", "agent_config"})

    def plain_inputs(self, core: Core, inputs: dict[str, Any]) -> frozenset[str]:
        """token_name is secret (it may name a single-use token, whose name is the secret) unless it names a token
        whose name is public, which the cluster says (looked up only then; unknown or unreadable stays secret)."""
        name = inputs.get("token_name")
        if not isinstance(name, str) or not name:
            return frozenset()
        try:
            found = core.client().get_token(name)
        except MachineIDError:
            return frozenset()
        return frozenset() if name_is_secret(found.spec.join_method) else frozenset({"token_name"})

    def check_references(self, core: Core, decoded: Decoded, unknown: set[str]) -> list[FieldViolation]:
        """The roles must exist (unless they come from resources not created yet)."""
        if "roles" in unknown:
            return []
        try:
            client = core.client()
        except ValidationError:
            return []  # reported by the provider configuration's own check
        failures = []
        for i, role in enumerate(decoded.obj.spec.roles):
            if ("role", role) in core.planned_creates:
                continue  # planned for creation earlier in this run
            try:
                client.get_role(role)
            except NotFoundError:
                failures.append(FieldViolation(("roles", i), f'role "{role}" does not exist on the cluster; create '
                                               f"it ({core.role_reference_hint}, so the provider knows it comes "
                                               "first) or fix the name"))
            except PermissionDeniedError:
                break
        # token_name is not checked here: a single-use token is gone once its bot joined, and that is no error.
        return failures

    def create(self, core: Core, decoded: Decoded) -> State:
        bot, extra = decoded.obj, decoded.extra
        try:
            created = core.client().create_bot(bot, token_name=extra.token_name,
                                               token_ttl=v.parse_duration(extra.token_ttl))
        except AlreadyExistsError:
            raise AlreadyExistsError(self.exists_message(core, bot.metadata.name)) from None
        token = {"token": created.token, "join_method": created.join_method,
                 "token_expires": _time(created.token_expires), "ca_pins": list(created.ca_pins)}
        return self.bot_state(core, created.bot, extra, token)

    def bot_state(self, core: Core, bot: Bot, extra: settings.BotOnboarding, token: dict[str, Any]) -> State:
        inputs = encode_inputs(self.rdef, bot, extra)
        outputs = {**inputs, **token, "user_name": bot.status.user_name, "role_name": bot.status.role_name,
                   "auth_server": core.config.address}
        outputs.update(self.rendered(core, bot.metadata.name, extra, outputs))
        return State(bot.metadata.name, outputs, inputs)

    @staticmethod
    def rendered(core: Core, name: str, extra: settings.BotOnboarding, outputs: dict[str, Any]) -> dict[str, Any]:
        rendered = functions.render(functions.RenderArgs(
            bot_name=name, token=str(outputs.get("token") or ""),
            join_method=str(outputs.get("join_method") or "token"), destination_dir=extra.destination_dir,
            data_dir=extra.data_dir, config_path=extra.config_path, auth_server=core.config.address,
            ca_pins=list(outputs.get("ca_pins") or []), certificate_ttl=extra.certificate_ttl,
            renewal_interval=extra.renewal_interval, agent_path=extra.agent_path))
        out: dict[str, Any] = codec.encode(rendered)
        return out

    def read(self, core: Core, id: str, old_outputs: dict[str, Any], old_inputs: dict[str, Any] | None,
             importing: bool) -> State:
        client = core.client()
        bot = client.get_bot(id)
        keep = _kept_token(old_outputs)
        if not keep.get("ca_pins"):
            keep["ca_pins"] = list(client.ping().ca_pins)
        return self.bot_state(core, bot, old_extra(self.rdef, old_inputs or old_outputs), keep)

    def update(self, core: Core, decoded: Decoded, old_outputs: dict[str, Any], olds: dict[str, Any],
               news: dict[str, Any]) -> State:
        bot, extra = decoded.obj, decoded.extra
        client = core.client()
        current = client.get_bot(bot.metadata.name)
        bot.status = current.status
        if (bot.spec, bot.metadata.description, bot.metadata.labels) != (
                current.spec, current.metadata.description, current.metadata.labels):
            current = client.update_bot(bot)
        keep = _kept_token(old_outputs)
        if extra.token_name and (olds.get("token_name") or "") != extra.token_name:
            named = client.get_token(extra.token_name)
            keep.update({"token": named.metadata.name, "join_method": named.spec.join_method,
                         "token_expires": _time(named.metadata.expires)})
        elif (olds.get("token_rotation") or 0) != extra.token_rotation:
            ttl = v.parse_duration(extra.token_ttl)
            token = client.upsert(ProvisionToken(
                metadata=dataclasses.replace(current.metadata, name="", expires=core.clock() + ttl, revision="",
                                             description=f"join token of bot {bot.metadata.name}", labels={}),
                spec=ProvisionTokenSpec(bot_name=bot.metadata.name)), create_only=True)
            assert isinstance(token, ProvisionToken)
            keep.update({"token": token.metadata.name, "join_method": "token",
                         "token_expires": _time(token.metadata.expires)})
            core.log("info", f"issued a new join token for bot {bot.metadata.name} (rotation "
                             f"{extra.token_rotation})")
        if not keep.get("ca_pins"):
            keep["ca_pins"] = list(client.ping().ca_pins)
        return self.bot_state(core, current, extra, keep)

    def token_changes(self, olds: dict[str, Any], news: dict[str, Any]) -> bool:
        if news.get("token_name") and (olds.get("token_name") or "") != news.get("token_name"):
            return True
        return (olds.get("token_rotation") or 0) != (news.get("token_rotation") or 0)

    def plan_update(self, core: Core, old_outputs: dict[str, Any], olds: dict[str, Any],
                    news: dict[str, Any]) -> dict[str, Any]:
        """Rendered outputs are pure functions of inputs and the token: known unless the token changes."""
        outputs = {**old_outputs, **news}
        token_known = not self.token_changes(olds, news) and bool(old_outputs.get("ca_pins"))
        if not token_known:
            # The new token's outputs (the CA pins only when the state has none) and the config that holds it.
            changing = [k for k in settings.TOKEN_OUTPUTS if k != "ca_pins" or not old_outputs.get("ca_pins")]
            outputs.update({k: UNKNOWN for k in (*changing, "agent_config")})
        extra_names = [p.name for p in self.rdef.props() if p.section == "extra"]
        if any(contains_unknown(news.get(k)) for k in ("name", *extra_names)):
            outputs.update({k: UNKNOWN for k in settings.RENDERED_OUTPUTS})
            return outputs
        extra = old_extra(self.rdef, news)
        rendered = self.rendered(core, str(news.get("name") or old_outputs.get("name")), extra, outputs)
        for key, value in rendered.items():
            if outputs.get(key) is not UNKNOWN:
                outputs[key] = value
        outputs["auth_server"] = core.config.address
        return outputs


def _kept_token(old_outputs: dict[str, Any]) -> dict[str, Any]:
    """The token outputs from the state: a single-use token cannot be read back from the cluster."""
    return {k: old_outputs[k] for k in settings.TOKEN_OUTPUTS if old_outputs.get(k) is not None}


HANDLERS: dict[str, Handler] = {h.rdef.name: h for h in (RoleHandler(), TokenHandler(), BotHandler())}
