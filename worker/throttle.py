"""At most ``max_in_flight`` Spectrum writes per connection at once, across every worker process.

Spectrum answers "Error executing Web Service" under sustained concurrent load (reference §1), so
writes to one connection are capped by a counting semaphore in Redis (the broker's Redis, under the
deployment's key prefix). It follows the fair-semaphore pattern: holders are ordered by a counter,
not by clocks, and a holder that dies is released when its lease (above the task time limit) ends.
A worker that cannot get a slot within ``wait_s`` raises ``TransientError`` and Celery retries
later, so a slot is never waited for inside a busy loop without bound.
"""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import redis

from clients.errors import TransientError


class WriteSlots:
    """A Redis counting semaphore named ``name`` with ``limit`` slots."""

    def __init__(
        self,
        client: redis.Redis,
        name: str,
        limit: int,
        *,
        lease_s: float = 330.0,
        wait_s: float = 30.0,
        poll_s: float = 0.05,
    ) -> None:
        self.client = client
        self.limit = limit
        self.lease_s = lease_s
        self.wait_s = wait_s
        self.poll_s = poll_s
        self._holders = f"{name}:holders"  # token -> acquisition time (for leases)
        self._order = f"{name}:order"  # token -> counter (for fairness)
        self._counter = f"{name}:counter"

    def _try(self, token: str) -> bool:
        now = time.time()
        pipe = self.client.pipeline(transaction=True)
        pipe.zremrangebyscore(self._holders, "-inf", now - self.lease_s)
        pipe.zinterstore(self._order, {self._order: 1, self._holders: 0})
        pipe.incr(self._counter)
        _, _, counter = pipe.execute()
        pipe = self.client.pipeline(transaction=True)
        pipe.zadd(self._holders, {token: now})
        pipe.zadd(self._order, {token: counter})
        pipe.zrank(self._order, token)
        rank = pipe.execute()[-1]
        if rank is not None and rank < self.limit:
            return True
        self._release(token)
        return False

    def _release(self, token: str) -> None:
        pipe = self.client.pipeline(transaction=True)
        pipe.zrem(self._holders, token)
        pipe.zrem(self._order, token)
        pipe.execute()

    def in_use(self) -> int:
        """Slots held now (expired leases excluded)."""
        return int(self.client.zcount(self._holders, time.time() - self.lease_s, "+inf"))

    @contextmanager
    def slot(self) -> Iterator[None]:
        """Hold one slot for the duration of the block."""
        token = uuid.uuid4().hex
        deadline = time.monotonic() + self.wait_s
        try:
            while not self._try(token):
                if time.monotonic() >= deadline:
                    raise TransientError(
                        f"Spectrum write slots busy ({self.limit} in flight for this "
                        "connection); retrying later",
                        retry_after=5.0,
                    )
                time.sleep(self.poll_s)
        except redis.RedisError as exc:
            raise TransientError(f"cannot reach Redis for Spectrum write slots: {exc}") from exc
        try:
            yield
        finally:
            with contextlib.suppress(redis.RedisError):  # else the lease frees it
                self._release(token)
