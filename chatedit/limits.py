"""Rate limits for what a client may make the server do: a token bucket per key (a client's address,
a user name), kept in a bounded table so that many keys cost bounded memory."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


class RateLimit:
    """At most ``burst`` events at once and ``per_minute`` a minute on average, for each key.

    Each key has a bucket of ``burst`` tokens that refills at ``per_minute`` tokens a minute;
    ``allow`` spends one and says whether there was one to spend. At most ``max_keys`` buckets are
    kept: the fullest ones (those of keys quiet the longest) are forgotten first.
    """

    def __init__(self, per_minute: float, burst: int | None = None, max_keys: int = 10_000,
                 clock: Callable[[], float] = time.monotonic):
        if per_minute <= 0:
            raise ValueError(f"per_minute must be positive, got {per_minute}")
        self.rate = per_minute / 60  # tokens a second
        self.burst = float(burst if burst is not None else max(1, round(per_minute)))
        self.max_keys = max_keys
        self.clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}  # key → (tokens, when counted)
        self._lock = threading.Lock()

    def _tokens(self, key: str, now: float) -> float:
        tokens, then = self._buckets.get(key, (self.burst, now))
        return min(self.burst, tokens + (now - then) * self.rate)

    def allow(self, key: str) -> bool:
        """Spends one of ``key``'s tokens; False (and nothing spent) when it has none left."""
        with self._lock:
            now = self.clock()
            tokens = self._tokens(key, now)
            if tokens < 1:
                return False
            self._buckets[key] = (tokens - 1, now)
            if len(self._buckets) > self.max_keys:
                self._forget(now)
            return True

    def exhausted(self, key: str) -> bool:
        """Whether ``key`` has no token left (nothing spent)."""
        with self._lock:
            return self._tokens(key, self.clock()) < 1

    def _forget(self, now: float) -> None:
        """Drops the fullest half of the buckets: a full bucket is the same as none."""
        by_fullness = sorted(self._buckets, key=lambda k: self._tokens(k, now), reverse=True)
        for key in by_fullness[: len(by_fullness) // 2]:
            del self._buckets[key]


__all__ = ["RateLimit"]
