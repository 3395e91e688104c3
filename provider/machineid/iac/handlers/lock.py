"""Locks: the generic create, read, update, delete and import; the cluster enforces them (cluster/locks.py)."""

from __future__ import annotations

from machineid.iac.handlers.base import Handler
from machineid.iac.resource import LOCK


class LockHandler(Handler):
    rdef = LOCK
