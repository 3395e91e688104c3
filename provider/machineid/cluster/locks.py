"""Locks in force, checked on every authenticated call, renewal and join (Teleport's locks).

Every call checks them, so they are read from the store at most once per REFRESH_SECONDS per process and kept as an
index by target: a lock written through this server applies to the next call (in every worker process of it: the
writer bumps their shared ChangeStamp); one written through another server sharing the store (PostgreSQL) within
REFRESH_SECONDS. Expired locks are skipped at the check (the clock decides),
so a lock's expiry needs no write. The number of locks is bounded at write (MAX_LOCKS), so the index stays small.
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from collections.abc import Callable
from datetime import datetime

from machineid.cluster.stamp import ChangeStamp
from machineid.model import codec
from machineid.model.errors import PermissionDeniedError
from machineid.model.resources import Lock

REFRESH_SECONDS = 1.0
MAX_LOCKS = 10_000
TARGETS = ("bot", "bot_instance", "token", "user", "node")


def target_of(lock: Lock) -> tuple[str, str]:
    t = lock.spec.target
    for name in TARGETS:
        value = getattr(t, name)
        if value:
            return name, value
    return "", ""


class Locks:
    def __init__(self, load: Callable[[], list[Lock]], clock: Callable[[], datetime]) -> None:
        self._load = load
        self._clock = clock
        self._lock = threading.Lock()
        self._index: dict[tuple[str, str], list[Lock]] = {}
        self._loaded = float("-inf")
        self.stamp: ChangeStamp | None = None  # shared with the server's other worker processes
        self._seen = b""

    def invalidate(self) -> None:
        """After a lock is written or deleted here: the next check reads them again, in every worker."""
        with self._lock:
            self._loaded = float("-inf")
            if self.stamp is not None:
                self.stamp.bump()

    def _current(self) -> dict[tuple[str, str], list[Lock]]:
        with self._lock:
            now = time.monotonic()
            seen = self.stamp.read() if self.stamp is not None else b""
            if now - self._loaded >= REFRESH_SECONDS or seen != self._seen:
                index: dict[tuple[str, str], list[Lock]] = defaultdict(list)
                for lock in self._load():  # read after the stamp: a lock written meanwhile bumps it again
                    index[target_of(lock)].append(lock)
                self._index, self._loaded, self._seen = dict(index), now, seen
            return self._index

    def in_force(self, **targets: str) -> Lock | None:
        """The first unexpired lock on any of the targets given (bot=, bot_instance=, token=, user=, node=)."""
        index = self._current()
        if not index:
            return None
        now = self._clock()
        for name, value in targets.items():
            if not value:
                continue
            for lock in index.get((name, value), ()):
                if lock.metadata.expires is None or lock.metadata.expires > now:
                    return lock
        return None

    def check(self, **targets: str) -> None:
        """Refuses (PERMISSION_DENIED) when a lock is in force on any of the targets, naming the lock, its
        message and how it ends."""
        lock = self.in_force(**targets)
        if lock is None:
            return
        kind, value = target_of(lock)
        until = (f"until {codec.format_time(lock.metadata.expires)}" if lock.metadata.expires
                 else "until an administrator removes it")
        why = f": {lock.spec.message}" if lock.spec.message else ""
        raise PermissionDeniedError(f'{kind} "{value}" is locked by lock "{lock.metadata.name}"{why} ({until}: '
                                    f"`machineid ctl unlock {lock.metadata.name}`)")
