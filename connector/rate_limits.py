"""Per-minute request limits: counted in Redis, or in this process when Redis cannot count.

Redis gives one count shared by every web process: a fixed one-minute window per key
(``INCR`` then ``EXPIRE``, the counter pattern of https://redis.io/docs/latest/commands/incr/).
When Redis is unreachable the limit must not switch off, since an open public endpoint is
exactly what an outage would hand an attacker, so each process then counts with token buckets
of its own (:class:`LocalBuckets`): as many tokens as the per-minute limit, refilled evenly over
the minute. Those are per process: with several web processes an outage allows each its own
limit, a bound rather than the exact figure.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable

from redis import Redis
from redis.exceptions import RedisError

logger = logging.getLogger(__name__)

MAX_LOCAL_KEYS = 10_000
"""Buckets one limit keeps in memory (a few hundred bytes each, so a few MB at most). Beyond
it the least recently used bucket is dropped; its key starts again with a full bucket, which
lets through no more than one new key would."""


class LocalBuckets:
    """Token buckets per key, in this process, bounded to ``max_keys`` keys. Thread-safe."""

    def __init__(
        self,
        per_minute: int,
        *,
        max_keys: int = MAX_LOCAL_KEYS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.capacity = float(per_minute)
        self.refill_per_second = per_minute / 60.0
        self.max_keys = max_keys
        self._clock = clock
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()
        self._lock = threading.Lock()

    def take(self, key: str) -> bool:
        """Spend one token of ``key``'s bucket; False when it is empty (over the limit)."""
        now = self._clock()
        with self._lock:
            tokens, then = self._buckets.pop(key, (self.capacity, now))
            tokens = min(self.capacity, tokens + (now - then) * self.refill_per_second)
            allowed = tokens >= 1.0
            self._buckets[key] = (tokens - 1.0 if allowed else tokens, now)
            while len(self._buckets) > self.max_keys:
                self._buckets.popitem(last=False)
        return allowed

    def __len__(self) -> int:
        return len(self._buckets)


class MinuteLimit:
    """At most ``per_minute`` requests per key and minute, named ``name`` in Redis keys."""

    def __init__(self, name: str, per_minute: int, *, max_local_keys: int = MAX_LOCAL_KEYS):
        self.name = name
        self.per_minute = per_minute
        self.local = LocalBuckets(per_minute, max_keys=max_local_keys)

    def exceeded(self, redis: Callable[[], Redis], key: str) -> bool:
        """Count one request for ``key``; True when it is over the limit.

        ``redis`` is called for the client, so a Redis that cannot even be configured (no
        ``REDIS_URL``) is an outage like any other and the local buckets count.
        """
        window = f"{self.name}:{key}:{int(time.time() // 60)}"
        try:
            pipe = redis().pipeline()
            pipe.incr(window)
            pipe.expire(window, 120)
            count, _ = pipe.execute()
        except RedisError:
            logger.warning("rate-limit.local limit=%s reason=redis-unavailable", self.name)
            return not self.local.take(key)
        return int(count) > self.per_minute
