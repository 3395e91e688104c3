"""One handler per resource: how each kind is created, read, updated, deleted and imported, and its own rules
(base.py: what every kind does unless it says otherwise)."""

from __future__ import annotations

from machineid.iac.handlers.base import Handler, State, old_extra
from machineid.iac.handlers.bot import BotHandler
from machineid.iac.handlers.lock import LockHandler
from machineid.iac.handlers.node import NodeHandler
from machineid.iac.handlers.role import RoleHandler
from machineid.iac.handlers.token import TokenHandler

__all__ = ["HANDLERS", "BotHandler", "Handler", "LockHandler", "NodeHandler", "RoleHandler", "State", "TokenHandler",
           "old_extra"]

HANDLERS: dict[str, Handler] = {h.rdef.name: h for h in (RoleHandler(), TokenHandler(), BotHandler(),
                                                         NodeHandler(), LockHandler())}
