"""Join tokens: a name the cluster may choose (and which may be the secret), expiry that forces a replacement, a
single-use token spent by its bot's join, and a registration secret the cluster keeps only as a hash."""

from __future__ import annotations

from typing import Any

from machineid.iac import settings
from machineid.iac.context import Context
from machineid.iac.handlers.base import Handler, State, old_extra
from machineid.iac.resource import PROVISION_TOKEN, Decoded, decode_inputs
from machineid.iac.resource import time_text as _time
from machineid.iac.unknown import UNKNOWN
from machineid.model import codec
from machineid.model import validators as v
from machineid.model.errors import FieldViolation, NotFoundError, PermissionDeniedError, ValidationError
from machineid.model.resources import SECRET_NAME_JOIN_METHODS, token_id

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
        return (inputs.get("join_method") or "token") in SECRET_NAME_JOIN_METHODS

    def resource_id(self, obj: Any) -> str:
        return token_id(obj.metadata.name, obj.spec.join_method)

    def name_of(self, id: str, outputs: dict[str, Any]) -> str:
        return str(outputs.get("name") or id)

    def exists_message(self, ctx: Context, name: str) -> str:
        return "a token with this name already exists on the cluster; choose another name or leave the name out"

    def replacements(self, ctx: Context, old_outputs: dict[str, Any], olds: dict[str, Any]) -> list[str]:
        if old_outputs.get("used"):
            return []  # its job is done: no fresh token unless the program changes it
        expires = old_outputs.get("token_expires") or olds.get("expires")
        if expires and isinstance(expires, str) and codec.parse_time(expires) <= ctx.clock():
            return ["expires"]
        return []

    def replaces_on_any_change(self, old_outputs: dict[str, Any]) -> bool:
        """A used single-use token is gone from the cluster: updating it would bring back a spent secret."""
        return bool(old_outputs.get("used"))

    def replace_warnings(self, ctx: Context, old_outputs: dict[str, Any], olds: dict[str, Any],
                         news: dict[str, Any], delete_first: bool) -> list[FieldViolation]:
        """A used token replaced under the name it had would be the spent secret again: the cluster refuses that
        create. Said at plan time as a warning, since an error here would also block `destroy`."""
        name = news.get("name")
        if old_outputs.get("used") and isinstance(name, str) and name and name == old_outputs.get("name"):
            return [FieldViolation(("name",), "this token was used by its bot's join, and the cluster does not "
                                   "create a used single-use token again, so applying this will fail: remove "
                                   "`name` so that the cluster picks a new one, or set a new name")]
        return []

    def state(self, ctx: Context, obj: Any, extra: Any, old_outputs: dict[str, Any]) -> State:
        st = super().state(ctx, obj, extra, old_outputs)
        st.outputs["token_expires"] = _time(obj.metadata.expires)
        st.outputs.update(codec.encode(obj.status))
        st.outputs["used"] = False
        return st

    def create(self, ctx: Context, decoded: Decoded) -> State:
        if decoded.obj.metadata.expires is None and decoded.obj.spec.join_method != "bound_keypair":
            decoded.obj.metadata.expires = ctx.clock() + v.parse_duration(decoded.extra.ttl)
        st = super().create(ctx, decoded)
        _keep_registration_secret(st, decoded.obj.spec.bound_keypair.onboarding.registration_secret)
        return st

    def read(self, ctx: Context, id: str, old_outputs: dict[str, Any], old_inputs: dict[str, Any] | None,
             importing: bool) -> State:
        name = str(old_outputs.get("name") or (old_inputs or {}).get("name") or id)
        if name.startswith("token-") and importing:
            raise ValidationError("import a token-method token by the token itself, not by its hashed ID")
        try:
            token = ctx.client().get_token(name)
        except NotFoundError:
            if importing or not self._used(ctx, id, old_outputs):
                raise
            inputs = dict(old_inputs or self.rdef.input_values(old_outputs))
            return State(id, {**old_outputs, "used": True}, inputs)
        st = self.state(ctx, token, old_extra(self.rdef, old_inputs or old_outputs), old_outputs)
        _keep_registration_secret(st, _registration_secret(old_inputs or old_outputs))
        if importing and st.inputs is not None and st.inputs.get("join_method") == "token":
            st.inputs["expires"] = None  # a single-use token's expiry is the cluster's choice
        return st

    @staticmethod
    def _used(ctx: Context, id: str, old_outputs: dict[str, Any]) -> bool:
        """Whether a single-use token that is gone was spent by its bot's join (rather than deleted): the bot
        still exists and lists it among the tokens it spent, or the state already says so. A bot that is gone
        takes its tokens with it."""
        if (old_outputs.get("join_method") or "token") != "token" or not old_outputs.get("bot_name"):
            return False
        try:
            bot = ctx.client().get_bot(str(old_outputs["bot_name"]))  # NotFoundError: gone with its bot
        except PermissionDeniedError:
            return False  # an identity that may not read bots: the token reads as gone, as before
        return bool(old_outputs.get("used")) or id in bot.status.spent_tokens

    def update(self, ctx: Context, decoded: Decoded, old_outputs: dict[str, Any], olds: dict[str, Any],
               news: dict[str, Any]) -> State:
        if news.get("name") is None:
            decoded.obj.metadata.name = str(old_outputs.get("name", ""))
        if news.get("expires") is None:
            expires = old_outputs.get("token_expires")
            decoded.obj.metadata.expires = codec.parse_time(expires) if expires else None
        st = super().update(ctx, decoded, old_outputs, olds, news)
        _keep_registration_secret(st, decoded.obj.spec.bound_keypair.onboarding.registration_secret)
        return st

    def plan_update(self, ctx: Context, old_outputs: dict[str, Any], olds: dict[str, Any],
                    news: dict[str, Any]) -> dict[str, Any]:
        outputs = super().plan_update(ctx, old_outputs, olds, news)
        if news.get("join_method") == "bound_keypair":
            outputs.update({k: UNKNOWN for k in settings.TOKEN_STATUS_OUTPUTS})
        expires = news.get("expires")
        if expires is UNKNOWN:
            outputs["token_expires"] = UNKNOWN
        elif expires:
            outputs["token_expires"] = _time(codec.parse_time(expires))
        return outputs
