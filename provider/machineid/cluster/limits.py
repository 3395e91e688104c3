"""Rate limits per client address: the router's on new connections, the join servicer's on anonymous calls (one
connection can carry any number of calls, so limiting connections alone bounds nothing)."""

from __future__ import annotations

import fcntl
import hashlib
import mmap
import os
import struct
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from machineid.model.errors import RateLimitedError


class RateLimits:
    """A token bucket per address: `rate` per second, up to `burst` at once. Full buckets are forgotten, so the
    table holds only addresses that are busy right now."""

    def __init__(self, rate: float, burst: float) -> None:
        self.rate, self.burst = rate, burst
        self._buckets: dict[str, tuple[float, float]] = {}  # address -> (tokens, when)
        self._pruned = 0.0

    def allow(self, source: str, now: float) -> bool:
        if len(self._buckets) > 10_000 and now - self._pruned >= 1.0:  # at most once a second: not per connection
            self._forget_full(now)
            self._pruned = now
        tokens, when = self._buckets.get(source, (self.burst, now))
        tokens = min(self.burst, tokens + (now - when) * self.rate)
        if tokens < 1.0:
            self._buckets[source] = (tokens, now)
            return False
        self._buckets[source] = (tokens - 1.0, now)
        return True

    def _forget_full(self, now: float) -> None:
        for source, (tokens, when) in list(self._buckets.items()):
            if tokens + (now - when) * self.rate >= self.burst:
                del self._buckets[source]


class SharedRateLimits:
    """RateLimits that the worker processes of one server share (`server start --workers`): the buckets live in a
    file each maps, so an address's anonymous calls are limited once for the server, whichever workers serve them.

    A fixed table of SLOTS buckets, each found by a keyed hash of the address (the key is the server's secret, so
    nobody can pick addresses that share a slot) and tagged with it; an address finding its slot taken starts a
    full bucket there, as RateLimits forgets full buckets. An flock makes each update whole across processes (the
    monotonic clock is the system's, the same in every process)."""

    SLOTS = 16384
    _SLOT = struct.Struct("16sdd")  # the address's tag, tokens, when

    def __init__(self, path: Path, rate: float, burst: float, key: bytes) -> None:
        self.rate, self.burst = rate, burst
        self._key = key
        self._fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        size = self.SLOTS * self._SLOT.size
        if os.fstat(self._fd).st_size < size:
            os.ftruncate(self._fd, size)
        self._map = mmap.mmap(self._fd, size)
        self._lock = threading.Lock()

    def allow(self, source: str, now: float) -> bool:
        tag = hashlib.blake2b(source.encode(), key=self._key, digest_size=16).digest()
        offset = int.from_bytes(tag[:8], "big") % self.SLOTS * self._SLOT.size
        with self._lock:
            fcntl.flock(self._fd, fcntl.LOCK_EX)
            try:
                held, tokens, when = self._SLOT.unpack_from(self._map, offset)
                if held != tag:
                    tokens, when = self.burst, now
                tokens = min(self.burst, tokens + max(0.0, now - when) * self.rate)
                allowed = tokens >= 1.0
                self._SLOT.pack_into(self._map, offset, tag, tokens - 1.0 if allowed else tokens, now)
            finally:
                fcntl.flock(self._fd, fcntl.LOCK_UN)
        return allowed


class Limiter(Protocol):
    rate: float

    def allow(self, source: str, now: float) -> bool: ...


class CallLimits:
    """A limiter (RateLimits, or SharedRateLimits across worker processes) shared by the threads serving calls."""

    def __init__(self, limits: Limiter, on_refused: Callable[[], None] | None = None) -> None:
        self._limits = limits
        self._lock = threading.Lock()
        self._on_refused = on_refused  # counts refusals (the server's metrics)

    def check(self, source: str, what: str) -> None:
        with self._lock:
            allowed = self._limits.allow(source, time.monotonic())
        if not allowed:
            if self._on_refused is not None:
                self._on_refused()
            raise RateLimitedError(f"too many {what} from this address (more than {self._limits.rate:g} a second); "
                                   "retry in a few seconds")
