"""Bots: created with their join token, rendered agent outputs planned ahead, and a token rotated or named."""

from __future__ import annotations

import dataclasses
from typing import Any

from machineid.iac import functions, settings
from machineid.iac.context import Context
from machineid.iac.handlers.base import Handler, State, old_extra
from machineid.iac.resource import BOT, Decoded, encode_inputs
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
    ValidationError,
)
from machineid.model.resources import Bot, ProvisionToken, ProvisionTokenSpec, name_is_secret


class BotHandler(Handler):
    rdef = BOT
    # Its token is then an iam or bound_keypair token's name: that name, and the rendered config that holds it.
    plain_when_name_public = frozenset({"token", "token_name", "agent_config"})

    def plain_inputs(self, ctx: Context, inputs: dict[str, Any]) -> frozenset[str]:
        """token_name is secret (it may name a single-use token, whose name is the secret) unless it names a token
        whose name is public, which the cluster says (looked up only then; unknown or unreadable stays secret)."""
        name = inputs.get("token_name")
        if not isinstance(name, str) or not name:
            return frozenset()
        try:
            found = ctx.client().get_token(name)
        except MachineIDError:
            return frozenset()
        return frozenset() if name_is_secret(found.spec.join_method) else frozenset({"token_name"})

    def check_references(self, ctx: Context, decoded: Decoded, unknown: set[str]) -> list[FieldViolation]:
        """The roles must exist (unless they come from resources not created yet)."""
        if "roles" in unknown:
            return []
        try:
            client = ctx.client()
        except ValidationError:
            return []  # reported by the provider configuration's own check
        failures = []
        for i, role in enumerate(decoded.obj.spec.roles):
            if ("role", role) in ctx.planned_creates:
                continue  # planned for creation earlier in this run
            try:
                client.get_role(role)
            except NotFoundError:
                failures.append(FieldViolation(("roles", i), f'role "{role}" does not exist on the cluster; create '
                                               f"it ({ctx.hints.role_reference}, so the provider knows it comes "
                                               "first) or fix the name"))
            except PermissionDeniedError:
                break
        # token_name is not checked here: a single-use token is gone once its bot joined, and that is no error.
        return failures

    def create(self, ctx: Context, decoded: Decoded) -> State:
        bot, extra = decoded.obj, decoded.extra
        try:
            created = ctx.client().create_bot(bot, token_name=extra.token_name,
                                               token_ttl=v.parse_duration(extra.token_ttl))
        except AlreadyExistsError:
            raise AlreadyExistsError(self.exists_message(ctx, bot.metadata.name)) from None
        token = {"token": created.token, "join_method": created.join_method,
                 "token_expires": _time(created.token_expires), "ca_pins": list(created.ca_pins)}
        return self.bot_state(ctx, created.bot, extra, token)

    def bot_state(self, ctx: Context, bot: Bot, extra: settings.BotOnboarding, token: dict[str, Any]) -> State:
        inputs = encode_inputs(self.rdef, bot, extra)
        outputs = {**inputs, **token, "user_name": bot.status.user_name, "role_name": bot.status.role_name,
                   "auth_server": ctx.address}
        outputs.update(self.rendered(ctx, bot.metadata.name, extra, outputs))
        return State(bot.metadata.name, outputs, inputs)

    @staticmethod
    def rendered(ctx: Context, name: str, extra: settings.BotOnboarding, outputs: dict[str, Any]) -> dict[str, Any]:
        rendered = functions.render(functions.RenderArgs(
            bot_name=name, token=str(outputs.get("token") or ""),
            join_method=str(outputs.get("join_method") or "token"), destination_dir=extra.destination_dir,
            data_dir=extra.data_dir, config_path=extra.config_path, auth_server=ctx.address,
            ca_pins=list(outputs.get("ca_pins") or []), certificate_ttl=extra.certificate_ttl,
            renewal_interval=extra.renewal_interval, agent_path=extra.agent_path))
        out: dict[str, Any] = codec.encode(rendered)
        return out

    def read(self, ctx: Context, id: str, old_outputs: dict[str, Any], old_inputs: dict[str, Any] | None,
             importing: bool) -> State:
        client = ctx.client()
        bot = client.get_bot(id)
        keep = _kept_token(old_outputs)
        if not keep.get("ca_pins"):
            keep["ca_pins"] = list(client.ping().ca_pins)
        return self.bot_state(ctx, bot, old_extra(self.rdef, old_inputs or old_outputs), keep)

    def update(self, ctx: Context, decoded: Decoded, old_outputs: dict[str, Any], olds: dict[str, Any],
               news: dict[str, Any]) -> State:
        bot, extra = decoded.obj, decoded.extra
        client = ctx.client()
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
                metadata=dataclasses.replace(current.metadata, name="", expires=ctx.clock() + ttl, revision="",
                                             description=f"join token of bot {bot.metadata.name}", labels={}),
                spec=ProvisionTokenSpec(bot_name=bot.metadata.name)), create_only=True)
            assert isinstance(token, ProvisionToken)
            keep.update({"token": token.metadata.name, "join_method": "token",
                         "token_expires": _time(token.metadata.expires)})
            ctx.log("info", f"issued a new join token for bot {bot.metadata.name} (rotation "
                             f"{extra.token_rotation})")
        if not keep.get("ca_pins"):
            keep["ca_pins"] = list(client.ping().ca_pins)
        return self.bot_state(ctx, current, extra, keep)

    def token_changes(self, olds: dict[str, Any], news: dict[str, Any]) -> bool:
        if news.get("token_name") and (olds.get("token_name") or "") != news.get("token_name"):
            return True
        return (olds.get("token_rotation") or 0) != (news.get("token_rotation") or 0)

    def plan_update(self, ctx: Context, old_outputs: dict[str, Any], olds: dict[str, Any],
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
        rendered = self.rendered(ctx, str(news.get("name") or old_outputs.get("name")), extra, outputs)
        for key, value in rendered.items():
            if outputs.get(key) is not UNKNOWN:
                outputs[key] = value
        outputs["auth_server"] = ctx.address
        return outputs


def _kept_token(old_outputs: dict[str, Any]) -> dict[str, Any]:
    """The token outputs from the state: a single-use token cannot be read back from the cluster."""
    return {k: old_outputs[k] for k in settings.TOKEN_OUTPUTS if old_outputs.get(k) is not None}
