"""At most ``max_in_flight`` Spectrum writes per connection at once, across every worker process.

Spectrum answers "Error executing Web Service" under sustained concurrent load (reference §1), so
writes to one connection are capped by a counting semaphore in Redis (the broker's Redis, under the
deployment's key prefix). Expiring stale leases, counting and taking a slot is one atomic
script, and a holder that dies is released when its lease (above the task time limit) ends.
A holder's token starts with ``host:pid``, so a slot held by a process that died on this host
(SIGKILL, OOM) is freed at once instead of blocking writes until its lease ends. A worker that
cannot get a slot within ``wait_s`` raises ``TransientError`` and Celery retries later, so a slot
is never waited for inside a busy loop without bound.
"""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import redis

from clients.errors import TransientError
from worker.ledger import holder_is_dead, worker_identity

_ACQUIRE = """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', tonumber(ARGV[2]) - tonumber(ARGV[3]))
if redis.call('ZCARD', KEYS[1]) < tonumber(ARGV[4]) then
  redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
  return 1
end
return 0
"""


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
        # expire stale leases, count and add in one step: no two workers can both take the last slot
        self._acquire = client.register_script(_ACQUIRE)

    def _free_dead_holders(self) -> bool:
        """Release the slots of holders that died on this host; True when there were any."""
        freed = False
        for raw in self.client.zrange(self._holders, 0, -1):
            token = raw.decode() if isinstance(raw, bytes) else str(raw)
            owner = token.rsplit(":", 1)[0]
            if holder_is_dead(owner):
                self._release(token)
                freed = True
        return freed

    def _take(self, token: str) -> bool:
        got = self._acquire(
            keys=[self._holders], args=[token, time.time(), self.lease_s, self.limit]
        )
        return bool(got)

    def _try(self, token: str) -> bool:
        # dead holders are looked for only when every slot is taken, the one case where they
        # block anybody: one Redis round trip per write instead of two (P2)
        if self._take(token):
            return True
        return self._free_dead_holders() and self._take(token)

    def _release(self, token: str) -> None:
        self.client.zrem(self._holders, token)

    def in_use(self) -> int:
        """Slots held now (expired leases excluded)."""
        return int(self.client.zcount(self._holders, time.time() - self.lease_s, "+inf"))

    @contextmanager
    def slot(self) -> Iterator[None]:
        """Hold one slot for the duration of the block."""
        token = f"{worker_identity()}:{uuid.uuid4().hex}"
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
