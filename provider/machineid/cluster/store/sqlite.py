"""SQLite backend: one file in the data dir, WAL mode, one connection per process serialised by a lock.

A single writer connection is what SQLite does best; the cluster's writes are tiny, so the lock is not the
bottleneck (the gRPC stack and signing are, see benchmarks/README.md). Conditional writes compare the revision
inside the same transaction, so two writers never silently overwrite each other.

The worker processes of one server (cluster/workers.py) each have a connection: every write transaction is
`BEGIN IMMEDIATE` (it takes the database's write lock first, so what it reads stays true until it commits), and
before that the writer takes an exclusive flock on `cluster.db.writer`. SQLite's own wait for a busy database
sleeps (1, 2, 5, 10 ms... under contention, about as long as a renewal's whole transaction); a flock waiter wakes
when the holder lets go. Readers take no file lock (WAL: they see the last commit); in a process, calls take turns
on the connection's lock, as before. A writer that stops while holding the flock (SIGSTOP) holds the others' writes
until it goes on, as it would hold SQLite's own write lock.
"""

from __future__ import annotations

import builtins
import fcntl
import hashlib
import json
import os
import sqlite3
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from machineid.cluster.store.base import ALL_EVENTS, AuditFilter, AuditRecord, Item, NestedTransactions
from machineid.model.errors import AlreadyExistsError, NotFoundError, PreconditionError

_SCHEMA = """
CREATE TABLE IF NOT EXISTS items (
  kind TEXT NOT NULL,
  name TEXT NOT NULL,
  value TEXT NOT NULL,
  revision TEXT NOT NULL,
  created TEXT NOT NULL,
  updated TEXT NOT NULL,
  PRIMARY KEY (kind, name)
);
CREATE TABLE IF NOT EXISTS audit (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  time TEXT NOT NULL,
  actor TEXT NOT NULL,
  action TEXT NOT NULL,
  target TEXT NOT NULL,
  outcome TEXT NOT NULL,
  details TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS audit_time ON audit (time);
CREATE INDEX IF NOT EXISTS items_bot ON items (kind, json_extract(value, '$.spec.bot_name'));
"""


def _show(kind: str, name: str) -> str:
    """How messages name an object: a join token's name may be its secret, so only a hash prefix of it."""
    if kind == "token":
        return "token sha256:" + hashlib.sha256(name.encode()).hexdigest()[:12]
    return f'{kind} "{name}"'


def _now() -> str:
    return datetime.now(UTC).isoformat()


def _item(row: tuple[Any, ...]) -> Item:
    kind, name, value, revision, created, updated = row
    return Item(kind, name, json.loads(value), revision, datetime.fromisoformat(created),
                datetime.fromisoformat(updated))


class SQLiteBackend(NestedTransactions):
    local = True

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fresh = not self.path.exists()
        self._conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        if fresh:
            os.chmod(self.path, 0o600)  # it holds the CA keys and join tokens
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=NORMAL")
        self._conn.execute("PRAGMA busy_timeout=10000")
        self._conn.executescript(_SCHEMA)
        self._lock = threading.RLock()
        self._depth = 0
        self._writer = os.open(self.path.with_name(self.path.name + ".writer"),
                               os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)

    @contextmanager
    def _outermost(self) -> Iterator[None]:
        fcntl.flock(self._writer, fcntl.LOCK_EX)  # waits without holding the GIL
        try:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            else:
                self._conn.execute("COMMIT")
        finally:
            fcntl.flock(self._writer, fcntl.LOCK_UN)

    def get(self, kind: str, name: str) -> Item:
        with self._lock:
            row = self._conn.execute(
                "SELECT kind, name, value, revision, created, updated FROM items WHERE kind=? AND name=?",
                (kind, name),
            ).fetchone()
        if row is None:
            raise NotFoundError(f"{_show(kind, name)} not found")
        return _item(row)

    def list(self, kind: str) -> list[Item]:
        with self._lock:
            rows = self._conn.execute(
                "SELECT kind, name, value, revision, created, updated FROM items WHERE kind=? ORDER BY name",
                (kind,),
            ).fetchall()
        return [_item(r) for r in rows]

    def list_page(self, kind: str, after: str, limit: int) -> builtins.list[Item]:
        with self._lock:
            rows = self._conn.execute(
                "SELECT kind, name, value, revision, created, updated FROM items WHERE kind=? AND name>? "
                "ORDER BY name LIMIT ?", (kind, after, limit),
            ).fetchall()
        return [_item(r) for r in rows]

    def list_by_bot(self, kind: str, bot_name: str) -> builtins.list[Item]:
        with self._lock:
            rows = self._conn.execute(
                "SELECT kind, name, value, revision, created, updated FROM items WHERE kind=? AND "
                "json_extract(value, '$.spec.bot_name')=? ORDER BY name", (kind, bot_name),
            ).fetchall()
        return [_item(r) for r in rows]

    def create(self, kind: str, name: str, value: dict[str, Any]) -> Item:
        now, rev = _now(), uuid.uuid4().hex
        with self.transaction():
            try:
                self._conn.execute(
                    "INSERT INTO items (kind, name, value, revision, created, updated) VALUES (?,?,?,?,?,?)",
                    (kind, name, json.dumps(value, sort_keys=True), rev, now, now),
                )
            except sqlite3.IntegrityError:
                raise AlreadyExistsError(f"{_show(kind, name)} already exists") from None
        return Item(kind, name, value, rev, datetime.fromisoformat(now), datetime.fromisoformat(now))

    def update(self, kind: str, name: str, value: dict[str, Any], expected_revision: str = "") -> Item:
        now, rev = _now(), uuid.uuid4().hex
        with self.transaction():
            current = self.get(kind, name)
            if expected_revision and current.revision != expected_revision:
                raise PreconditionError(
                    f"{_show(kind, name)} was changed by someone else (revision {expected_revision} is stale, "
                    f"current is {current.revision}); read it again and reapply your change"
                )
            self._conn.execute(
                "UPDATE items SET value=?, revision=?, updated=? WHERE kind=? AND name=?",
                (json.dumps(value, sort_keys=True), rev, now, kind, name),
            )
        return Item(kind, name, value, rev, current.created, datetime.fromisoformat(now))

    def delete(self, kind: str, name: str, expected_revision: str = "") -> None:
        with self.transaction():
            current = self.get(kind, name)
            if expected_revision and current.revision != expected_revision:
                raise PreconditionError(
                    f"{_show(kind, name)} was changed by someone else (revision {expected_revision} is stale); "
                    "read it again before deleting"
                )
            self._conn.execute("DELETE FROM items WHERE kind=? AND name=?", (kind, name))

    def audit(self, actor: str, action: str, target: str, outcome: str, details: dict[str, Any]) -> None:
        with self.transaction():
            self._conn.execute(
                "INSERT INTO audit (time, actor, action, target, outcome, details) VALUES (?,?,?,?,?,?)",
                (_now(), actor, action, target, outcome, json.dumps(details, sort_keys=True)),
            )

    def audit_events(self, after_id: int = 0, limit: int = 1000,
                     where: AuditFilter = ALL_EVENTS) -> builtins.list[AuditRecord]:
        cond, params = where.where("?")
        params = [p.astimezone(UTC).isoformat() if isinstance(p, datetime) else p for p in params]
        with self._lock:
            rows = self._conn.execute(
                f"SELECT id, time, actor, action, target, outcome, details FROM audit WHERE id > ? AND {cond} "
                "ORDER BY id LIMIT ?", (after_id, *params, limit),
            ).fetchall()
        return [AuditRecord(r[0], datetime.fromisoformat(r[1]), r[2], r[3], r[4], r[5], json.loads(r[6]))
                for r in rows]

    def prune_audit(self, before: datetime, limit: int) -> int:
        with self.transaction():
            cur = self._conn.execute("DELETE FROM audit WHERE id IN (SELECT id FROM audit WHERE time < ? ORDER BY "
                                     "time LIMIT ?)", (before.astimezone(UTC).isoformat(), limit))
        return cur.rowcount

    def count(self, kind: str) -> int:
        with self._lock:
            row = self._conn.execute("SELECT COUNT(*) FROM items WHERE kind=?", (kind,)).fetchone()
        return int(row[0])

    def close(self) -> None:
        with self._lock:
            self._conn.close()
            if self._writer >= 0:
                os.close(self._writer)
                self._writer = -1
