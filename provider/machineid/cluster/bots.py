"""Bots: a bot is a user and a role of its own plus its join tokens, created, changed and deleted together."""

from __future__ import annotations

import contextlib
import secrets
from dataclasses import replace
from datetime import timedelta

from machineid.cluster import records, revocations
from machineid.cluster.access import Access
from machineid.cluster.caller import Caller, token_ref
from machineid.cluster.objects import Objects, check_name
from machineid.cluster.records import LastKeypairJoin, LastRenewal
from machineid.model import codec
from machineid.model import validators as v
from machineid.model.errors import (
    AlreadyExistsError,
    FieldViolation,
    NotFoundError,
    PreconditionError,
    ValidationError,
)
from machineid.model.grants import BOT_LABEL, bot_role
from machineid.model.resources import (
    DEFAULT_TOKEN_TTL,
    Bot,
    BotStatus,
    Metadata,
    ProvisionToken,
    ProvisionTokenSpec,
    User,
    UserSpec,
    bot_role_name,
    bot_user_name,
)


def bot_user(bot: Bot) -> User:
    return User(
        metadata=Metadata(name=bot_user_name(bot.metadata.name), labels={BOT_LABEL: bot.metadata.name},
                          description=f"User of bot {bot.metadata.name}; managed by the bot."),
        spec=UserSpec(roles=[bot_role_name(bot.metadata.name), *bot.spec.roles], traits=bot.spec.traits,
                      bot_name=bot.metadata.name),
    )


class Bots:
    def __init__(self, objects: Objects, access: Access) -> None:
        self.objects = objects
        self.access = access

    def create(self, caller: Caller, bot: Bot, token_name: str = "",
               token_ttl: timedelta | None = None) -> tuple[Bot, ProvisionToken]:
        bot.status = BotStatus()
        codec.validate(bot)
        if token_ttl is not None and token_ttl <= timedelta(0):
            raise ValidationError([FieldViolation(("token_ttl",), "must be positive, e.g. 1h")])
        name = bot.metadata.name
        self.access.check(caller, "bot", "create")  # before the role lookups: no existence oracle
        self.access.check_roles_exist(bot.spec.roles, ("spec", "roles"))
        objects = self.objects
        with objects.backend.transaction():
            if objects.exists("bot", name):
                raise AlreadyExistsError(f'bot "{name}" already exists')
            for kind, obj_name in (("user", bot_user_name(name)), ("role", bot_role_name(name))):
                if objects.exists(kind, obj_name):
                    raise AlreadyExistsError(f'{kind} "{obj_name}" already exists; a bot named "{name}" needs it')
            objects.create(bot_role(name))
            objects.create(bot_user(bot))
            bot.status = BotStatus(user_name=bot_user_name(name), role_name=bot_role_name(name))
            created = objects.create(bot)
            # Tokens made for this name before the bot existed would join it: only the one the creator names is
            # adopted (the guide's IAM flow: the token first, then `bots add --token`); the rest are purged.
            planted = [t for t in objects.of_bot(ProvisionToken, name) if t.metadata.name != token_name]
            for t in planted:
                objects.backend.delete("token", t.metadata.name)
            token = self._adopt_token(name, token_name) if token_name else self._new_token(name, token_ttl)
        objects.audit(caller, "bot.create", f"bot/{name}", roles=bot.spec.roles, token=token_ref(token),
                      purged_tokens=[token_ref(t) for t in planted])
        return created, token

    def _adopt_token(self, bot_name: str, token_name: str) -> ProvisionToken:
        try:
            token = self.objects.get(ProvisionToken, token_name)
        except NotFoundError:
            raise ValidationError([FieldViolation(("token_name",), "no token has that name; create it first "
                                                  "or leave it out for a new one")]) from None
        if token.spec.bot_name != bot_name:
            raise ValidationError([FieldViolation(("token_name",), f'token is for bot "{token.spec.bot_name}"'
                                                  f', not "{bot_name}"')])
        return token

    def _new_token(self, bot_name: str, ttl: timedelta | None) -> ProvisionToken:
        token = ProvisionToken(
            metadata=Metadata(name=secrets.token_hex(16),
                              expires=self.objects.clock() + (ttl or v.parse_duration(DEFAULT_TOKEN_TTL))),
            spec=ProvisionTokenSpec(roles=["Bot"], join_method="token", bot_name=bot_name),
        )
        return self.objects.create(token)

    def update(self, caller: Caller, bot: Bot) -> Bot:
        codec.validate(bot)
        name = bot.metadata.name
        self.access.check(caller, "bot", "update")  # before the role lookups: no existence oracle
        self.access.check_roles_exist(bot.spec.roles, ("spec", "roles"))
        objects = self.objects
        with objects.backend.transaction():
            current = objects.get(Bot, name)
            updated = replace(current, spec=bot.spec,
                              metadata=replace(current.metadata, description=bot.metadata.description,
                                               labels=bot.metadata.labels))
            revision = bot.metadata.revision
            if revision in ("", current.metadata.revision) and objects.value(updated) == objects.value(current):
                return current  # identical content: no new revision, nothing to audit
            result = objects.update(updated, revision)
            user = objects.get(User, bot_user_name(name))
            user.spec = bot_user(result).spec
            revocations.user_written(objects, objects.update(user), self.access.roles)
        objects.audit(caller, "bot.update", f"bot/{name}", roles=bot.spec.roles)
        return result

    def delete(self, caller: Caller, name: str, revision: str = "") -> None:
        self.access.check(caller, "bot", "delete")
        check_name(name)
        backend = self.objects.backend
        with backend.transaction():
            backend.delete("bot", name, revision)
            for kind, obj_name in (("user", bot_user_name(name)), ("role", bot_role_name(name))):
                with contextlib.suppress(NotFoundError):
                    backend.delete(kind, obj_name)
            records.delete(self.objects, LastRenewal, name)
            revocations.gone(self.objects, bot_user_name(name))
            for item in backend.list_by_bot("token", name):
                backend.delete("token", item.name)
                records.delete(self.objects, LastKeypairJoin, item.name)
        self.objects.audit(caller, "bot.delete", f"bot/{name}")

    def unlock(self, caller: Caller, name: str) -> Bot:
        self.access.check(caller, "bot", "update")
        check_name(name)
        with self.objects.backend.transaction():
            bot = self.objects.get(Bot, name)
            if not bot.status.locked:
                raise PreconditionError(f'bot "{name}" is not locked; nothing to unlock')
            bot.status.locked = False
            bot.status.lock_reason = ""
            # A lock means two holders of the identity; neither may simply renew on: every existing renewable
            # identity of the bot is superseded, and the bot joins again with a new token.
            bot.status.instance_id = ""
            bot.status.generation = 0
            result = self.objects.update(bot)
            records.delete(self.objects, LastRenewal, name)
            revocations.unlocked(self.objects, bot_user_name(name))
        self.objects.audit(caller, "bot.unlock", f"bot/{name}")
        return result
