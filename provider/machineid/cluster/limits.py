"""Rate limits per client address: the router's on new connections, the join servicer's on anonymous calls (one
connection can carry any number of calls, so limiting connections alone bounds nothing)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

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


class CallLimits:
    """RateLimits shared by the threads serving calls."""

    def __init__(self, rate: float, burst: float, on_refused: Callable[[], None] | None = None) -> None:
        self._limits = RateLimits(rate, burst)
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
