"""PostgreSQL backend: when one machine is not enough, several cluster servers share one database.

Same contract as the SQLite backend (tests/test_store.py runs both). Conditional writes lock the row
(`SELECT ... FOR UPDATE`) inside the transaction, so two servers never silently overwrite each other; the CAs live
in the database too, so every server signs with the same keys.

Transactions are serialised across every server and worker process sharing the database, as SQLite's `BEGIN
IMMEDIATE` serialises them across processes: each takes a transaction-scoped advisory lock first. The cluster's
transactions read, decide and write (a renewal reads the generation, compares it with the certificate's and bumps
it); under PostgreSQL's default READ COMMITTED, two of them at once both read the old generation and both renewed
(a copied certificate went unnoticed). They are short, so one at a time costs little.
"""

from __future__ import annotations

import builtins
import json
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from machineid.cluster.store.base import ALL_EVENTS, AuditFilter, AuditRecord, Item, NestedTransactions
from machineid.cluster.store.sqlite import _show
from machineid.model.errors import AlreadyExistsError, NotFoundError, PreconditionError, TransportError

_SCHEMA = """
CREATE TABLE IF NOT EXISTS items (
  kind TEXT NOT NULL,
  name TEXT NOT NULL,
  value JSONB NOT NULL,
  revision TEXT NOT NULL,
  created TIMESTAMPTZ NOT NULL,
  updated TIMESTAMPTZ NOT NULL,
  PRIMARY KEY (kind, name)
);
CREATE TABLE IF NOT EXISTS audit (
  id BIGSERIAL PRIMARY KEY,
  time TIMESTAMPTZ NOT NULL,
  actor TEXT NOT NULL,
  action TEXT NOT NULL,
  target TEXT NOT NULL,
  outcome TEXT NOT NULL,
  details JSONB NOT NULL
);
CREATE INDEX IF NOT EXISTS audit_time ON audit (time);
CREATE INDEX IF NOT EXISTS items_bot ON items (kind, (value->'spec'->>'bot_name'));
"""
_COLUMNS = "kind, name, value, revision, created, updated"
_SCHEMA_LOCK = 4242  # advisory lock keys: creating the schema; every transaction (see the module docstring)
_WRITERS = 4243


def _item(row: tuple[Any, ...]) -> Item:
    kind, name, value, revision, created, updated = row
    return Item(kind, name, value, revision, created, updated)


class PostgresBackend(NestedTransactions):
    """One connection, serialised by a lock, like the SQLite backend: the cluster's writes are small."""

    local = False

    def __init__(self, dsn: str) -> None:
        try:
            self._conn = psycopg.connect(dsn, autocommit=True)
        except psycopg.OperationalError as e:
            raise TransportError(f"cannot connect to PostgreSQL: {e}".strip()) from None
        with self._conn.transaction():
            self._conn.execute("SELECT pg_advisory_xact_lock(%s)", (_SCHEMA_LOCK,))  # servers starting at once
            self._conn.execute(_SCHEMA)
        self._lock = threading.RLock()
        self._depth = 0

    @contextmanager
    def _outermost(self) -> Iterator[None]:
        with self._conn.transaction():
            self._conn.execute("SELECT pg_advisory_xact_lock(%s)", (_WRITERS,))
            yield

    def _one(self, kind: str, name: str, lock: bool = False) -> Item:
        sql = f"SELECT {_COLUMNS} FROM items WHERE kind=%s AND name=%s" + (" FOR UPDATE" if lock else "")
        row = self._conn.execute(sql, (kind, name)).fetchone()
        if row is None:
            raise NotFoundError(f"{_show(kind, name)} not found")
        return _item(row)

    def get(self, kind: str, name: str) -> Item:
        with self._lock:
            return self._one(kind, name)

    def list(self, kind: str) -> builtins.list[Item]:
        with self._lock:
            rows = self._conn.execute(f"SELECT {_COLUMNS} FROM items WHERE kind=%s ORDER BY name", (kind,)).fetchall()
        return [_item(r) for r in rows]

    def list_page(self, kind: str, after: str, limit: int) -> builtins.list[Item]:
        with self._lock:
            rows = self._conn.execute(f"SELECT {_COLUMNS} FROM items WHERE kind=%s AND name>%s ORDER BY name "
                                      "LIMIT %s", (kind, after, limit)).fetchall()
        return [_item(r) for r in rows]

    def list_by_bot(self, kind: str, bot_name: str) -> builtins.list[Item]:
        with self._lock:
            rows = self._conn.execute(f"SELECT {_COLUMNS} FROM items WHERE kind=%s AND value->'spec'->>'bot_name'=%s "
                                      "ORDER BY name", (kind, bot_name)).fetchall()
        return [_item(r) for r in rows]

    def create(self, kind: str, name: str, value: dict[str, Any]) -> Item:
        now, rev = datetime.now(UTC), uuid.uuid4().hex
        with self.transaction():
            row = self._conn.execute(
                "INSERT INTO items (kind, name, value, revision, created, updated) VALUES (%s,%s,%s,%s,%s,%s) "
                "ON CONFLICT DO NOTHING RETURNING revision",
                (kind, name, Jsonb(value), rev, now, now),
            ).fetchone()
            if row is None:
                raise AlreadyExistsError(f"{_show(kind, name)} already exists")
        return Item(kind, name, value, rev, now, now)

    def update(self, kind: str, name: str, value: dict[str, Any], expected_revision: str = "") -> Item:
        now, rev = datetime.now(UTC), uuid.uuid4().hex
        with self.transaction():
            current = self._one(kind, name, lock=True)
            if expected_revision and current.revision != expected_revision:
                raise PreconditionError(
                    f"{_show(kind, name)} was changed by someone else (revision {expected_revision} is stale, "
                    f"current is {current.revision}); read it again and reapply your change"
                )
            self._conn.execute("UPDATE items SET value=%s, revision=%s, updated=%s WHERE kind=%s AND name=%s",
                               (Jsonb(value), rev, now, kind, name))
        return Item(kind, name, value, rev, current.created, now)

    def delete(self, kind: str, name: str, expected_revision: str = "") -> None:
        with self.transaction():
            current = self._one(kind, name, lock=True)
            if expected_revision and current.revision != expected_revision:
                raise PreconditionError(f"{_show(kind, name)} was changed by someone else (revision "
                                        f"{expected_revision} is stale); read it again before deleting")
            self._conn.execute("DELETE FROM items WHERE kind=%s AND name=%s", (kind, name))

    def audit(self, actor: str, action: str, target: str, outcome: str, details: dict[str, Any]) -> None:
        with self.transaction():
            self._conn.execute(
                "INSERT INTO audit (time, actor, action, target, outcome, details) VALUES (%s,%s,%s,%s,%s,%s)",
                (datetime.now(UTC), actor, action, target, outcome, Jsonb(details)),
            )

    def audit_events(self, after_id: int = 0, limit: int = 1000,
                     where: AuditFilter = ALL_EVENTS) -> builtins.list[AuditRecord]:
        cond, params = where.where("%s")
        with self._lock:
            rows = self._conn.execute(
                f"SELECT id, time, actor, action, target, outcome, details FROM audit WHERE id > %s AND {cond} "
                "ORDER BY id LIMIT %s", (after_id, *params, limit)).fetchall()
        return [AuditRecord(r[0], r[1], r[2], r[3], r[4], r[5], r[6] if isinstance(r[6], dict) else json.loads(r[6]))
                for r in rows]

    def prune_audit(self, before: datetime, limit: int) -> int:
        with self.transaction():
            cur = self._conn.execute("DELETE FROM audit WHERE id IN (SELECT id FROM audit WHERE time < %s ORDER BY "
                                     "time LIMIT %s)", (before, limit))
        return cur.rowcount

    def count(self, kind: str) -> int:
        with self._lock:
            row = self._conn.execute("SELECT COUNT(*) FROM items WHERE kind=%s", (kind,)).fetchone()
        return int(row[0]) if row else 0

    def close(self) -> None:
        with self._lock:
            self._conn.close()
