"""The storage contract the cluster needs, and nothing more (Teleport's narrow Backend interfaces).

Objects are JSON documents keyed by (kind, name) with a revision that changes on every write; `update` and
`delete` can be conditional on it. `transaction()` makes several operations atomic. The audit log is append-only
except for retention: records older than the retention period are pruned, a batch at a time.
"""

from __future__ import annotations

import builtins
import threading
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol


@dataclass
class Item:
    kind: str
    name: str
    value: dict[str, Any]
    revision: str
    created: datetime
    updated: datetime


@dataclass
class AuditRecord:
    id: int
    time: datetime
    actor: str
    action: str
    target: str
    outcome: str
    details: dict[str, Any]


@dataclass(frozen=True)
class AuditFilter:
    """Which audit records to read: `action` is one action ("bot.join") or, without a dot, a family ("bot" is
    bot.*); `actor` matches a user, or a bot by its name ("bot:NAME")."""

    since: datetime | None = None
    action: str = ""
    actor: str = ""

    def where(self, mark: str) -> tuple[str, list[Any]]:
        """The SQL condition and its parameters, with the backend's placeholder `mark` (? or %s)."""
        clauses: list[str] = []
        params: list[Any] = []
        if self.since is not None:
            clauses.append(f"time >= {mark}")
            params.append(self.since)
        if self.action:
            clauses.append(f"action = {mark}" if "." in self.action else f"action LIKE {mark}")
            params.append(self.action if "." in self.action else self.action + ".%")
        if self.actor:
            clauses.append(f"actor IN ({mark}, {mark})")
            params += [self.actor, "bot:" + self.actor]
        return " AND ".join(clauses) or "TRUE", params


ALL_EVENTS = AuditFilter()


class Backend(Protocol):
    # True when every call is in-process and quick (SQLite). The server then runs requests one at a time: threads
    # taking turns on a lock cost less CPU than threads contending for the GIL at every SQLite call. False when
    # calls wait on the network (PostgreSQL), where other requests should run meanwhile.
    local: bool

    def get(self, kind: str, name: str) -> Item:
        """Raises NotFoundError."""

    def list(self, kind: str) -> list[Item]:
        """Sorted by name."""

    def list_page(self, kind: str, after: str, limit: int) -> builtins.list[Item]:
        """At most limit items named after `after`, sorted by name: one page of a list, read by index."""

    def list_by_bot(self, kind: str, bot_name: str) -> builtins.list[Item]:
        """The items whose spec.bot_name is bot_name (a bot's tokens), by an index: no scan of every token."""

    def create(self, kind: str, name: str, value: dict[str, Any]) -> Item:
        """Raises AlreadyExistsError."""

    def update(self, kind: str, name: str, value: dict[str, Any], expected_revision: str = "") -> Item:
        """Raises NotFoundError, or PreconditionError when expected_revision is set and stale."""

    def delete(self, kind: str, name: str, expected_revision: str = "") -> None:
        """Raises NotFoundError or PreconditionError."""

    def transaction(self) -> AbstractContextManager[None]:
        """Everything inside commits together or not at all; nests."""

    def audit(self, actor: str, action: str, target: str, outcome: str, details: dict[str, Any]) -> None: ...

    def audit_events(self, after_id: int = 0, limit: int = 1000,
                     where: AuditFilter = ALL_EVENTS) -> builtins.list[AuditRecord]: ...

    def prune_audit(self, before: datetime, limit: int) -> int:
        """Deletes at most limit of the oldest records written before `before`; returns how many."""

    def count(self, kind: str) -> int: ...

    def close(self) -> None: ...


class NestedTransactions:
    """One connection behind a lock, with nested transactions joining the outermost one.

    Subclasses set `_lock` (an RLock) and implement `_outermost()`, the database's own transaction."""

    _lock: threading.RLock
    _depth: int = 0

    def _outermost(self) -> AbstractContextManager[None]:
        raise NotImplementedError

    @contextmanager
    def transaction(self) -> Iterator[None]:
        with self._lock:
            if self._depth:
                self._depth += 1
                try:
                    yield
                finally:
                    self._depth -= 1
                return
            self._depth = 1
            try:
                with self._outermost():
                    yield
            finally:
                self._depth = 0
