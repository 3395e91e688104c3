"""Roles: a renamed role warns where the tool deletes first, and a delete waits only for holders going away."""

from __future__ import annotations

import time
from typing import Any

from machineid.iac.context import Context
from machineid.iac.handlers.base import Handler
from machineid.iac.resource import ROLE
from machineid.model.errors import FieldViolation, PermissionDeniedError, PreconditionError
from machineid.model.resources import User


class RoleHandler(Handler):
    rdef = ROLE
    name_unknown_until_created = True

    def replace_warnings(self, ctx: Context, old_outputs: dict[str, Any], olds: dict[str, Any],
                         news: dict[str, Any], delete_first: bool) -> list[FieldViolation]:
        """A renamed role is a new role: where the tool deletes the old one first, a bot that still holds it (and
        moves to the new one only after it exists) makes that delete wait and fail."""
        if not ctx.hints.create_first or delete_first:
            return []
        return [FieldViolation(("name",), f'renaming role "{olds.get("name")}" replaces it. Unless this resource '
                               "creates its replacement first, the old role is deleted first, which the cluster "
                               "refuses while a bot or user still holds it (the delete waits, then fails). If "
                               f"anything holds it, {ctx.hints.create_first}")]

    def delete(self, ctx: Context, id: str, outputs: dict[str, Any]) -> None:
        """A role still held by a user or bot is refused. Without a reference in the configuration, `destroy`
        deletes the role and its bots at the same time: a holder this process is deleting too is waited for (as
        long as `in_use_wait`). Any other holder is not going away, so the refusal stands after a short grace
        (`holder_grace`: the CLIs start parallel deletes together, not at the same instant)."""
        name = self.name_of(id, outputs)
        started, pause = time.monotonic(), 0.2
        while True:
            try:
                return super().delete(ctx, id, outputs)
            except PreconditionError as e:
                refusal = e
            going = self._holders_going(ctx, name)
            wait = ctx.in_use_wait if going else ctx.holder_grace
            if time.monotonic() - started + pause > wait:
                if ctx.hints.create_first:
                    raise PreconditionError(f"{refusal}. If this delete is part of a replacement (a renamed role), "
                                            f"{ctx.hints.create_first}") from None
                raise refusal
            if ctx.stopping.wait(pause):
                raise PreconditionError(f'stopped while waiting for role "{name}" to be let go by its holders; it '
                                        "was not deleted") from None
            pause = min(pause * 2, 2.0)

    @staticmethod
    def _holders_going(ctx: Context, role: str) -> bool:
        """Whether a holder of the role is being deleted by this process (or was: the next try then succeeds). The
        holders are read again; an identity that may not list users waits for any bot or user this process
        deletes."""
        try:
            holders = {("bot", u.spec.bot_name) if u.spec.bot_name else ("user", u.metadata.name)
                       for u in ctx.client().list("user") if isinstance(u, User) and role in u.spec.roles}
        except PermissionDeniedError:
            holders = {d for d in ctx.deletes if d[0] in ("bot", "user")}
        return not holders or bool(holders & ctx.deletes)
