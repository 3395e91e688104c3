"""Typed objects over a storage Backend: load and write model objects, a per-revision decode cache for the hot
paths, bounded names, and the audit trail every write ends with."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any, TypeVar

from machineid.cluster.caller import Caller
from machineid.cluster.store.base import Backend, Item
from machineid.model import codec
from machineid.model import validators as v
from machineid.model.errors import FieldViolation, NotFoundError, ValidationError
from machineid.model.resources import Bot, Node, ProvisionToken, Resource, Role, User

log = logging.getLogger("machineid.cluster")
R = TypeVar("R", Role, ProvisionToken, Bot, User, Node)


def check_name(name: str) -> None:
    """Names in requests are bounded and well-formed before anything is looked up or echoed."""
    reason = v.RESOURCE_NAME.check(name)
    if reason:
        raise ValidationError([FieldViolation(("name",), reason)])


class Objects:
    def __init__(self, backend: Backend, clock: Callable[[], datetime]) -> None:
        self.backend = backend
        self.clock = clock
        self._decoded: dict[tuple[str, str], tuple[str, Any]] = {}

    def exists(self, kind: str, name: str) -> bool:
        try:
            self.backend.get(kind, name)
            return True
        except NotFoundError:
            return False

    def expired(self, obj: Resource) -> bool:
        return obj.metadata.expires is not None and obj.metadata.expires <= self.clock()

    @staticmethod
    def value(obj: Resource) -> dict[str, Any]:
        data: dict[str, Any] = codec.encode(obj)
        for key in ("revision", "created", "updated"):
            data["metadata"].pop(key, None)
        return data

    @staticmethod
    def load(cls: type[R], item: Item) -> R:
        obj = codec.decode(cls, item.value)
        obj.metadata.revision = item.revision
        obj.metadata.created = item.created
        obj.metadata.updated = item.updated
        return obj

    def get(self, cls: type[R], name: str) -> R:
        return self.load(cls, self.backend.get(cls.kind, name))

    def get_shared(self, cls: type[R], name: str) -> R:
        """Like get, but decoded once per revision and shared: callers must not modify the result.

        Decoding, not the SQLite read, is what costs on the hot paths (authorization, issuance)."""
        item = self.backend.get(cls.kind, name)
        key = (cls.kind, name)
        cached = self._decoded.get(key)
        if cached is not None and cached[0] == item.revision:
            result: R = cached[1]
            return result
        obj = self.load(cls, item)
        self._decoded[key] = (item.revision, obj)
        return obj

    def list(self, cls: type[R]) -> list[R]:
        return [self.load(cls, item) for item in self.backend.list(cls.kind)]

    def create(self, obj: R) -> R:
        item = self.backend.create(obj.kind, obj.metadata.name, self.value(obj))
        return self.load(type(obj), item)

    def update(self, obj: R, expected_revision: str = "") -> R:
        item = self.backend.update(obj.kind, obj.metadata.name, self.value(obj), expected_revision)
        return self.load(type(obj), item)

    def audit(self, caller: Caller, action: str, target: str, outcome: str = "ok", **details: Any) -> None:
        self.backend.audit(caller.actor, action, target, outcome, details)
        log.info("audit %s %s %s %s", caller.actor, action, target, outcome)
