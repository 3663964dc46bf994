"""One shared ServiceTrade pause per account, in Redis: a 429 slows every worker, not one task.

ServiceTrade's rate limit is per account. When one call is answered 429 with ``Retry-After``,
every worker process should hold its ServiceTrade calls until then, instead of each task finding
the limit on its own and retrying. The pause is one Redis key under the deployment's key prefix
(``<prefix>stsync:servicetrade-pause``) holding the epoch second until which calls wait; a later
429 can only extend it (one atomic script), and it expires by itself.

Before every ServiceTrade exchange a worker asks ``wait()``: nothing to wait -> go; a short
remaining pause (at most ``max_inline_wait_s``) -> sleep it; a longer one -> ``RateLimited`` with
``retry_after`` = the remaining pause, so the task is retried after it (countdown =
max(backoff, Retry-After), tasks/_celery.py) and the worker is free meanwhile. Redis trouble
never blocks a call: the pause is an optimisation, the 429 itself is still classified and retried.

A process trusts Redis's "no pause" for ``recheck_s`` (0.25 s) before asking again, so a task's
two ServiceTrade calls (the invoice read, the ``processed`` write) and the next task's cost one
Redis round trip, not three (P2). The price: another process's 429 reaches this one up to 0.25 s
late, and the few calls sent meanwhile meet the 429 themselves (and extend the pause). A
process's own 429 and any pause it has read hold at once.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import redis

from clients.errors import RateLimited

log = logging.getLogger("stsync.pacing")

#: a 429 without a usable Retry-After pauses the account this long
DEFAULT_PAUSE_S = 1.0
#: how long a process trusts Redis's "no pause" before asking again (see the module docstring)
RECHECK_S = 0.25

_EXTEND = """
local current = tonumber(redis.call('GET', KEYS[1]) or '0')
local until_ = tonumber(ARGV[1])
if until_ > current then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
return 0
"""


def pause_key(prefix: str) -> str:
    return f"{prefix}stsync:servicetrade-pause"


class AccountPause:
    """The shared pause of one ServiceTrade account (see the module docstring)."""

    def __init__(
        self,
        client: redis.Redis,
        key: str,
        *,
        max_inline_wait_s: float = 10.0,
        recheck_s: float = RECHECK_S,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._redis = client
        self.key = key
        self.max_inline_wait_s = max_inline_wait_s
        self.recheck_s = recheck_s
        self._clock = clock
        self._sleep = sleep
        self._extend = client.register_script(_EXTEND)
        #: [from, until) on this process's clock in which Redis's last "no pause" is trusted
        self._clear: tuple[float, float] | None = None

    def pause(self, seconds: float | None) -> None:
        """Every worker holds ServiceTrade calls for ``seconds`` from now (a 429 was answered)."""
        wait = seconds if seconds is not None and seconds > 0 else DEFAULT_PAUSE_S
        until = self._clock() + wait
        self._clear = None  # this process's own 429 holds its next call at once
        try:
            if self._extend(keys=[self.key], args=[f"{until:.3f}", int(wait * 1000) + 1000]):
                log.warning(
                    "ServiceTrade asked to slow down: every worker pauses %.1f s",
                    wait,
                    extra={"outcome": "rate_limited", "retry_after": wait},
                )
        except redis.RedisError as exc:
            log.warning("could not share the ServiceTrade pause: %s", type(exc).__name__)

    def remaining(self) -> float:
        """Seconds left of the account's pause (0 when none or when Redis cannot tell); a "no
        pause" read from Redis is trusted for ``recheck_s``."""
        now = self._clock()
        if self._clear is not None and self._clear[0] <= now < self._clear[1]:
            return 0.0
        try:
            value = self._redis.get(self.key)
        except redis.RedisError:
            return 0.0
        try:
            left = max(0.0, float(value) - now) if value is not None else 0.0
        except (TypeError, ValueError):
            left = 0.0
        self._clear = (now, now + self.recheck_s) if left <= 0 else None
        return left

    def wait(self) -> None:
        """Hold this call while the account is paused (see the module docstring)."""
        left = self.remaining()
        if left <= 0:
            return
        if left > self.max_inline_wait_s:
            raise RateLimited(
                f"ServiceTrade asked this account to slow down; {left:.0f} s of the pause left",
                retry_after=left,
            )
        self._sleep(left)
