"""Typed objects over a storage Backend: load and write model objects, a per-revision decode cache for the hot
paths, bounded names, and the audit trail every write ends with."""

from __future__ import annotations

import builtins
import json
import logging
import threading
from collections import Counter
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any, TypeVar

from machineid.cluster.caller import ANONYMOUS, Caller
from machineid.cluster.locks import Locks
from machineid.cluster.store.base import Backend, Item
from machineid.model import codec
from machineid.model import validators as v
from machineid.model.errors import FieldViolation, NotFoundError, ValidationError
from machineid.model.resources import Bot, Lock, Node, ProvisionToken, Resource, Role, User

log = logging.getLogger("machineid.cluster")
R = TypeVar("R", Role, ProvisionToken, Bot, User, Node, Lock)
# Refusals of anonymous callers audited one by one per window; the rest are counted into one record per action.
DENIALS_PER_WINDOW = 100
DENIAL_WINDOW = timedelta(minutes=1)
# The encoded size of one stored object, whatever its fields: every field is bounded (codec), but 256 labels of
# 4096 characters are a megabyte, and a few of those made every list of their kind fail (a gRPC answer is at most
# 4 MiB). A page of a list also ends early by size (Kinds.list_page): one object always fits in a page.
MAX_OBJECT_BYTES = 128 * 1024


def encoded_size(value: dict[str, Any]) -> int:
    """The size of a stored value as JSON: close to its size on the wire, and cheap to work out."""
    return len(json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode())


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
        self._denials_lock = threading.Lock()
        self._window_end: datetime | None = None
        self._denials_written = 0
        # This process's share of DENIALS_PER_WINDOW (a server's worker processes split it: the bound is the server's).
        self.denials_per_window = DENIALS_PER_WINDOW
        self._suppressed: Counter[str] = Counter()
        # The locks in force, checked by every authenticated call, renewal and join (cached: see locks.py).
        self.locks = Locks(lambda: self.list(Lock), lambda: self.clock())

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
        """What is stored: the object without its store-kept metadata, refused (naming it) when too large."""
        data: dict[str, Any] = codec.encode(obj)
        for key in ("revision", "created", "updated"):
            data["metadata"].pop(key, None)
        size = encoded_size(data)
        if size > MAX_OBJECT_BYTES:
            raise ValidationError([FieldViolation((), f"the {obj.kind} is {size} bytes encoded; at most "
                                                      f"{MAX_OBJECT_BYTES} are stored per object: shorten its "
                                                      "descriptions, labels or lists (or split it)")])
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

    def of_bot(self, cls: type[R], bot_name: str) -> builtins.list[R]:
        return [self.load(cls, item) for item in self.backend.list_by_bot(cls.kind, bot_name)]

    def create(self, obj: R) -> R:
        item = self.backend.create(obj.kind, obj.metadata.name, self.value(obj))
        return self.load(type(obj), item)

    def update(self, obj: R, expected_revision: str = "") -> R:
        item = self.backend.update(obj.kind, obj.metadata.name, self.value(obj), expected_revision)
        return self.load(type(obj), item)

    def audit(self, caller: Caller, action: str, target: str, outcome: str = "ok", **details: Any) -> None:
        self.backend.audit(caller.actor, action, target, outcome, details)
        log.info("audit %s %s %s %s", caller.actor, action, target, outcome)

    def audit_denied(self, action: str, target: str, **details: Any) -> None:
        """A refusal of an anonymous caller (a failed join). Unauthenticated callers must not be able to grow the
        audit log at will: past DENIALS_PER_WINDOW in a window, refusals are only counted, and each action's
        count is written as one record (target "*", details.suppressed) when the window ends."""
        now = self.clock()
        with self._denials_lock:
            if self._window_end is None or now >= self._window_end:
                summary = self._take_suppressed()
                self._window_end, self._denials_written = now + DENIAL_WINDOW, 0
            else:
                summary = {}
            write = self._denials_written < self.denials_per_window
            if write:
                self._denials_written += 1
            else:
                self._suppressed[action] += 1
        self._write_suppressed(summary)
        if write:
            self.audit(ANONYMOUS, action, target, "denied", **details)

    def pending_denials(self) -> int:
        """Refusals counted in this window but not yet written (the audit backlog)."""
        with self._denials_lock:
            return sum(self._suppressed.values())

    def flush_denials(self) -> None:
        """Writes the counts of a window that ended with no refusal after it."""
        with self._denials_lock:
            if self._window_end is None or self.clock() < self._window_end:
                return
            summary, self._window_end = self._take_suppressed(), None
        self._write_suppressed(summary)

    def _take_suppressed(self) -> dict[str, int]:
        summary, self._suppressed = dict(self._suppressed), Counter()
        return summary

    def _write_suppressed(self, summary: dict[str, int]) -> None:
        for action, count in summary.items():
            self.audit(ANONYMOUS, action, "*", "denied", suppressed=count,
                       window_seconds=int(DENIAL_WINDOW.total_seconds()))
