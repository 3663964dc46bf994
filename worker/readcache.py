"""A short per-process cache of ServiceTrade facts (jobs, locations, users), webhooks invalidate.

An approved invoice needs its job, the job's location and the salesperson; a timecard entry needs
its job and the job's location. Reading them again for every record costs ServiceTrade calls that
dominate once ServiceTrade answers in tens of milliseconds, so a worker process keeps what it read
for ``servicetrade.read_cache_ttl_s`` seconds (0 turns the cache off).

Correctness comes first: an edited record must never be synced from a stale entry. When a webhook
about a record arrives, the ingest writes a fresh random *stamp* for it in Redis (``fresh_stamps``,
``mark_changed``) in the same round trip as, and before, any task it enqueues. Every entry remembers
the stamp that was current *before* its record was read; a hit is served only when that stamp is
still the current one (one Redis ``MGET`` per lookup, far cheaper than an HTTP read), so an entry
read before an edit is never used after the edit's webhook reached the ingest. Stamps are unique
(never a counter that could come back to an old value) and outlive the entries (their expiry is the
cache TTL plus a margin), so an expired stamp reads as "absent", which never equals a stamp an entry
holds.

Only *facts of other records* are served from the cache (``cached=True`` reads in the client):
a record's own sync always reads it fresh, and that fresh read refreshes the entry. A webhook
that ServiceTrade never delivered cannot invalidate anything, so the TTL bounds how long such an
edit can go unseen by the *other* records that read it (users' ``updated`` webhooks are
subscribed too: a fixed salesperson or technician wakes what failed on it, tasks/heal.py). When
Redis cannot be read the lookup is a miss and nothing is stored.
"""

from __future__ import annotations

import json
import logging
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Protocol, TypeVar

import redis

log = logging.getLogger("stsync.readcache")

T = TypeVar("T")

#: ServiceTrade resources whose reads are cached (webhook ``entity.type`` names)
CACHED_RESOURCES = frozenset({"job", "location", "user"})
STAMP_PREFIX = "stsync:readcache:stamp:"
#: values shared between worker processes: ``{"s": stamp, "t": read at, "d": value}``
VALUE_PREFIX = "stsync:readcache:value:"
#: stamps outlive the entries they guard by at least this long
STAMP_MARGIN_S = 60
DEFAULT_MAX_ENTRIES = 20_000


class Stamps(Protocol):
    """Where the current stamps of records live, and the values shared between processes
    (Redis in production)."""

    def current(self, keys: Sequence[str]) -> list[str | None]: ...

    def lookup(self, key: str) -> tuple[str | None, str | None]:
        """(current stamp, shared entry as JSON or None) in one round trip."""
        ...

    def lookup_many(self, keys: Sequence[str]) -> list[tuple[str | None, str | None]]:
        """``lookup`` of every key, all in one round trip."""
        ...

    def share(self, key: str, entry: str, ttl_s: float) -> None: ...


def stamp_key(prefix: str, resource: str, entity_id: int | str) -> str:
    return f"{prefix}{STAMP_PREFIX}{resource}:{entity_id}"


def stamp_ttl_s(cache_ttl_s: float) -> int:
    return int(cache_ttl_s) + STAMP_MARGIN_S


def fresh_stamps(prefix: str, changed: Iterable[tuple[str, int | str]]) -> list[tuple[str, str]]:
    """(stamp key, fresh stamp) of each changed (resource, id) whose reads are cached: what the
    ingest writes (expiring after ``stamp_ttl_s``) before it enqueues the delivery's tasks."""
    return [
        (stamp_key(prefix, resource, entity_id), secrets.token_hex(8))
        for resource, entity_id in changed
        if resource in CACHED_RESOURCES
    ]


def mark_changed(
    pipe: Any, prefix: str, changed: Iterable[tuple[str, int | str]], cache_ttl_s: float
) -> int:
    """Queue a fresh stamp for each changed (resource, id) on ``pipe`` (a Redis pipeline);
    returns how many. Called by the ingest before it enqueues the delivery's tasks."""
    ttl = stamp_ttl_s(cache_ttl_s)
    stamps = fresh_stamps(prefix, changed)
    for key, stamp in stamps:
        pipe.set(key, stamp, ex=ttl)
    return len(stamps)


class RedisStamps:
    """Stamps in the broker's Redis, under the deployment's key prefix."""

    def __init__(self, client: redis.Redis, prefix: str = "") -> None:
        self.client = client
        self.prefix = prefix

    def current(self, keys: Sequence[str]) -> list[str | None]:
        values = self.client.mget([f"{self.prefix}{STAMP_PREFIX}{k}" for k in keys])
        return [v.decode() if isinstance(v, bytes) else v for v in values]

    def lookup(self, key: str) -> tuple[str | None, str | None]:
        stamp, entry = self.client.mget(
            [f"{self.prefix}{STAMP_PREFIX}{key}", f"{self.prefix}{VALUE_PREFIX}{key}"]
        )
        return (
            stamp.decode() if isinstance(stamp, bytes) else stamp,
            entry.decode() if isinstance(entry, bytes) else entry,
        )

    def lookup_many(self, keys: Sequence[str]) -> list[tuple[str | None, str | None]]:
        names: list[str] = []
        for key in keys:
            names += [f"{self.prefix}{STAMP_PREFIX}{key}", f"{self.prefix}{VALUE_PREFIX}{key}"]
        values = [v.decode() if isinstance(v, bytes) else v for v in self.client.mget(names)]
        return list(zip(values[0::2], values[1::2], strict=True))

    def share(self, key: str, entry: str, ttl_s: float) -> None:
        self.client.set(f"{self.prefix}{VALUE_PREFIX}{key}", entry, ex=max(1, int(ttl_s)))


class LocalStamps:
    """Stamps in this process (tests and in-process tools that have no Redis)."""

    def __init__(self) -> None:
        self._stamps: dict[str, str] = {}

        self._shared: dict[str, str] = {}

    def current(self, keys: Sequence[str]) -> list[str | None]:
        return [self._stamps.get(k) for k in keys]

    def lookup(self, key: str) -> tuple[str | None, str | None]:
        return self._stamps.get(key), self._shared.get(key)

    def lookup_many(self, keys: Sequence[str]) -> list[tuple[str | None, str | None]]:
        return [self.lookup(k) for k in keys]

    def share(self, key: str, entry: str, ttl_s: float) -> None:
        self._shared[key] = entry

    def changed(self, resource: str, entity_id: int | str) -> None:
        self._stamps[f"{resource}:{entity_id}"] = secrets.token_hex(8)


class ReadCache:
    """Entries ``resource:id -> (expires_at, stamp, value)``; least recently used dropped first."""

    def __init__(
        self, ttl_s: float, stamps: Stamps, *, max_entries: int = DEFAULT_MAX_ENTRIES
    ) -> None:
        self.ttl_s = ttl_s
        self.stamps = stamps
        self.max_entries = max_entries
        self._entries: OrderedDict[str, tuple[float, str | None, Any]] = OrderedDict()
        self._lock = threading.Lock()
        #: look-ups ``prefetched`` by this thread, each used by one ``get`` inside the block
        self._prefetched = threading.local()
        self.hits = 0
        self.shared_hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._entries)

    @contextmanager
    def prefetched(self, keys: Iterable[tuple[str, int]]) -> Iterator[None]:
        """Look up the stamps and shared entries of ``keys`` (resource, id) in ONE round trip;
        the first ``get`` of each of them inside the block uses that look-up instead of its own.

        Safe as the single look-ups are: the stamp is still read before the record would be
        loaded, and a hit is checked against it exactly as ``get`` does; only the instant of the
        check moves earlier within the block, as it would if the facts were read in another
        order. What the block did not use is forgotten when it ends (never served later)."""
        if self.ttl_s <= 0:
            yield
            return
        wanted = list(dict.fromkeys(f"{resource}:{int(eid)}" for resource, eid in keys))
        memo: dict[str, tuple[bool, str | None, str | None]] | None = getattr(
            self._prefetched, "memo", None
        )
        if memo is None:
            memo = self._prefetched.memo = {}
        wanted = [k for k in wanted if k not in memo]
        if wanted:
            try:
                found = self.stamps.lookup_many(wanted)
            except redis.RedisError as exc:
                log.warning("read cache: stamps unreadable (%s); reading fresh", type(exc).__name__)
                found = None
            for i, key in enumerate(wanted):
                memo[key] = (False, None, None) if found is None else (True, *found[i])
        try:
            yield
        finally:
            for key in wanted:
                memo.pop(key, None)

    def _lookup(self, key: str) -> tuple[bool, str | None, str | None]:
        """(readable, current stamp, shared entry); unreadable means "do not trust or store"."""
        memo: dict[str, tuple[bool, str | None, str | None]] | None = getattr(
            self._prefetched, "memo", None
        )
        if memo:
            looked_up = memo.pop(key, None)
            if looked_up is not None:
                return looked_up
        try:
            stamp, shared = self.stamps.lookup(key)
        except redis.RedisError as exc:
            log.warning("read cache: stamps unreadable (%s); reading fresh", type(exc).__name__)
            return False, None, None
        return True, stamp, shared

    def get(self, resource: str, entity_id: int, load: Callable[[], T]) -> T:
        """The cached value when still valid (this process's, else one another worker process
        shared), else ``load()`` (remembered and shared)."""
        if self.ttl_s <= 0:
            return load()
        key = f"{resource}:{entity_id}"
        now = time.monotonic()
        with self._lock:
            entry = self._entries.get(key)
        readable, stamp, shared = self._lookup(key)
        if not readable:
            self.misses += 1
            return self._load(key, load, False, None)
        if entry is not None and entry[0] > now and entry[1] == stamp:
            with self._lock:
                self._entries.move_to_end(key)
                self.hits += 1
            value: T = entry[2]
            return value
        if shared is not None:
            try:
                doc = json.loads(shared)
                age = time.time() - float(doc["t"])
                valid = doc["s"] == (stamp or "") and 0 <= age < self.ttl_s
            except (ValueError, KeyError, TypeError):
                valid = False
            if valid:
                self.shared_hits += 1
                self._remember(key, stamp, doc["d"], self.ttl_s - age)
                shared_value: T = doc["d"]
                return shared_value
        self.misses += 1
        return self._load(key, load, True, stamp)

    def refresh(self, resource: str, entity_id: int, load: Callable[[], T]) -> T:
        """``load()`` now (a record's own fresh read) and remember the result."""
        if self.ttl_s <= 0:
            return load()
        key = f"{resource}:{entity_id}"
        readable, stamp, _shared = self._lookup(key)
        return self._load(key, load, readable, stamp)

    def _remember(self, key: str, stamp: str | None, value: Any, ttl_s: float) -> None:
        with self._lock:
            self._entries[key] = (time.monotonic() + ttl_s, stamp, value)
            self._entries.move_to_end(key)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)

    def _load(self, key: str, load: Callable[[], T], readable: bool, stamp: str | None) -> T:
        # the stamp was read before the record: an edit during the read makes it stale at once
        read_at = time.time()
        value = load()
        if not readable:
            with self._lock:
                self._entries.pop(key, None)
            return value
        self._remember(key, stamp, value, self.ttl_s)
        try:
            entry = json.dumps({"s": stamp or "", "t": read_at, "d": value})
            self.stamps.share(key, entry, self.ttl_s)
        except (TypeError, ValueError, redis.RedisError) as exc:
            log.debug("read cache: %s not shared (%s)", key, type(exc).__name__)
        return value

    def drop(self, resource: str, entity_id: int) -> None:
        with self._lock:
            self._entries.pop(f"{resource}:{entity_id}", None)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


def redis_read_cache(ttl_s: float, client: redis.Redis, prefix: str = "") -> ReadCache:
    return ReadCache(ttl_s, RedisStamps(client, prefix))
