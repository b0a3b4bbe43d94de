"""A Redis cache that degrades instead of failing: while Redis is unreachable, reads are misses and writes
are dropped, so a page that caches is slower but still answers (the cache is an optimisation, never the
source of truth). The settings pick it for every process whenever ``CACHE_URL`` is ``redis://``.

A circuit breaker keeps an outage cheap: after a connection error the cache stays open (every call a miss,
without touching the network) for ``CACHE_BREAKER_S`` seconds, then one call tries Redis again. Without it
every request would wait for a connect timeout per cache call. Each error and each skipped call is counted
(``shop_cache_degraded_total{op, outcome}``) and an outage is logged once when it opens and once when Redis
answers again, not per call.

Throttles read and write their buckets through this cache: with Redis up they count as before; with it down
their reads are misses, so requests are let through (the shop keeps selling) until Redis returns.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from django.core.cache.backends.base import DEFAULT_TIMEOUT
from django.core.cache.backends.redis import RedisCache
from prometheus_client import Counter

log = logging.getLogger(__name__)

CACHE_DEGRADED = Counter(
    "shop_cache_degraded",
    "Cache calls answered without Redis, by operation and outcome (error: it failed; skipped: breaker open).",
    ["op", "outcome"],
)


@dataclass
class Breaker:
    """The circuit breaker of one Redis location, shared by every thread of the process."""

    open_s: float
    open_until: float = 0.0
    errors: int = 0
    skipped: int = 0
    outages: int = 0
    last_error: str = ""
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def allows(self) -> bool:
        return time.monotonic() >= self.open_until

    def failed(self, exc: BaseException, location: str) -> None:
        with self.lock:
            self.errors += 1
            self.last_error = f"{type(exc).__name__}: {exc}"[:200]
            was_closed = self.open_until == 0.0
            self.open_until = time.monotonic() + self.open_s
            if was_closed:
                self.outages += 1
        if was_closed:
            log.warning(
                "cache at %s unreachable (%s): serving without it, retrying every %.1f s",
                location,
                self.last_error,
                self.open_s,
            )

    def succeeded(self, location: str) -> None:
        if self.open_until == 0.0:
            return
        with self.lock:
            reopened, self.open_until = self.open_until != 0.0, 0.0
        if reopened:
            log.warning("cache at %s answers again", location)


_breakers: dict[str, Breaker] = {}
_breakers_lock = threading.Lock()


def breaker_for(location: str, open_s: float) -> Breaker:
    with _breakers_lock:
        breaker = _breakers.get(location)
        if breaker is None:
            breaker = _breakers[location] = Breaker(open_s=open_s)
        return breaker


def cache_breakers() -> dict[str, Breaker]:
    """Every Redis location's breaker in this process (for probes and tests)."""
    return dict(_breakers)


def cache_breakers_reset() -> None:
    """Forget every breaker (tests: a cache built afterwards starts closed, whatever an earlier outage left)."""
    with _breakers_lock:
        _breakers.clear()


class _Miss(Exception):
    pass


class DegradingRedisCache(RedisCache):
    """Django's ``RedisCache`` whose connection errors are misses (reads) or dropped writes.

    OPTIONS beyond redis-py's own: ``BREAKER_S`` (seconds the breaker stays open, default 2). Give redis-py
    short ``socket_connect_timeout`` / ``socket_timeout`` so the first failing call is quick too.
    """

    def __init__(self, server, params):
        params = dict(params)
        options = dict(params.get("OPTIONS") or {})
        open_s = float(options.pop("BREAKER_S", 2.0))
        params["OPTIONS"] = options
        super().__init__(server, params)
        import redis

        self._outage_errors = (redis.ConnectionError, redis.TimeoutError, OSError)
        self._location = ",".join(self._servers)
        self.breaker = breaker_for(self._location, open_s)

    def _guard(self, op: str, call, *args, **kwargs) -> Any:
        if not self.breaker.allows():
            self.breaker.skipped += 1
            CACHE_DEGRADED.labels(op=op, outcome="skipped").inc()
            raise _Miss
        try:
            result = call(*args, **kwargs)
        except self._outage_errors as exc:
            self.breaker.failed(exc, self._location)
            CACHE_DEGRADED.labels(op=op, outcome="error").inc()
            raise _Miss from exc
        self.breaker.succeeded(self._location)
        return result

    # reads: a miss
    def get(self, key, default=None, version=None):
        try:
            return self._guard("get", super().get, key, default, version)
        except _Miss:
            return default

    def get_many(self, keys, version=None):
        try:
            return self._guard("get_many", super().get_many, keys, version)
        except _Miss:
            return {}

    def has_key(self, key, version=None):
        try:
            return self._guard("has_key", super().has_key, key, version)
        except _Miss:
            return False

    def incr(self, key, delta=1, version=None):
        try:
            return self._guard("incr", super().incr, key, delta, version)
        except _Miss:
            raise ValueError(f"Key '{key}' not found (cache unavailable)") from None

    # writes: dropped (and said so where the API has a way to say it)
    def add(self, key, value, timeout=DEFAULT_TIMEOUT, version=None):
        try:
            return self._guard("add", super().add, key, value, timeout, version)
        except _Miss:
            return False

    def set(self, key, value, timeout=DEFAULT_TIMEOUT, version=None):
        try:
            self._guard("set", super().set, key, value, timeout, version)
        except _Miss:
            return None

    def set_many(self, data, timeout=DEFAULT_TIMEOUT, version=None):
        try:
            return self._guard("set_many", super().set_many, data, timeout, version)
        except _Miss:
            return list(data)  # the keys that were not stored

    def touch(self, key, timeout=DEFAULT_TIMEOUT, version=None):
        try:
            return self._guard("touch", super().touch, key, timeout, version)
        except _Miss:
            return False

    def delete(self, key, version=None):
        try:
            return self._guard("delete", super().delete, key, version)
        except _Miss:
            return False

    def delete_many(self, keys, version=None):
        try:
            self._guard("delete_many", super().delete_many, keys, version)
        except _Miss:
            return None

    def clear(self):
        try:
            return self._guard("clear", super().clear)
        except _Miss:
            return False
