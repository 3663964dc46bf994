"""The per-process sync context: settings, ledger and clients, built after fork, closed at exit.

Tasks get it with ``get_context()``; tests build their own ``SyncContext`` around in-process
sandbox transports. Every external call the clients make is written to the ledger's audit table
for the record being synced (``current_record``), so ``stsync history`` can show it (F19).

**Configuration reload** (F21): a worker process watches the file it read its settings from. At
the start of a task, at most every ``reliability.config_reload_every_s`` seconds, it compares the
file's size and modification time, then its content digest. A changed, valid file rebuilds this
process's context (the old one is closed once the new one is in place; each prefork child does
this for itself, after fork). A changed file that does not load keeps the settings in use: one
clear error in the log naming the file and the field, and one alert per bad version. Settings
read by Celery itself when the worker starts (broker, queues, concurrency, time limits) still
need a restart.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

import httpx
import redis
from celery.signals import task_prerun, worker_process_init, worker_process_shutdown

from clients.errors import ConfigError, RateLimited
from clients.http import CallRecord
from clients.servicetrade.client import ServiceTradeClient
from clients.spectrum.client import SpectrumClient
from clients.spectrum.infolink import InfoLinkReader
from clients.spectrum.models import ARInvoiceRequest, SpectrumRequest
from clients.spectrum.rest_invoice import ARInvoiceResult
from clients.spectrum.soap import PutResult
from worker.broker import resolve_broker_url
from worker.ledger import Ledger, RecordKey
from worker.pacing import AccountPause, pause_key
from worker.readcache import ReadCache, redis_read_cache
from worker.settings import ConnectionSettings, Settings, get_settings, load_settings
from worker.throttle import WriteSlots
from worker.writers import ServiceTradeWriter, SpectrumWriter

log = logging.getLogger("stsync.context")

#: the record a sync is working on, for audit rows written by client hooks
current_record: ContextVar[RecordKey | None] = ContextVar("current_record", default=None)

Enqueue = Callable[[str, tuple[Any, ...]], None]


@dataclass
class SyncContext:
    """Everything a ``sync_*`` function needs; no globals."""

    settings: Settings
    ledger: Ledger
    st: ServiceTradeClient
    spectrum: dict[str, SpectrumClient]
    infolink: dict[str, InfoLinkReader]
    #: enqueue a task by name with positional args (Celery in production, a list in tests)
    enqueue: Enqueue
    #: where writes go instead of the clients (``worker.writers``; the preview records them)
    spectrum_writers: dict[str, SpectrumWriter] | None = None
    st_writer: ServiceTradeWriter | None = None
    _cache: dict[str, tuple[float, Any]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def connection(self, name: str | None = None) -> ConnectionSettings:
        return self.settings.connection(name)

    def spectrum_for(self, name: str) -> SpectrumClient:
        return self.spectrum[self.settings.connection(name).name]

    def spectrum_writes(self, name: str) -> SpectrumWriter:
        """Where the sync's Spectrum writes for connection ``name`` go (the client, normally)."""
        writers: Mapping[str, SpectrumWriter] = self.spectrum_writers or self.spectrum
        return writers[self.settings.connection(name).name]

    @property
    def st_writes(self) -> ServiceTradeWriter:
        """Where the sync's ServiceTrade writes go (the client, normally)."""
        return self.st_writer or self.st

    def infolink_for(self, name: str) -> InfoLinkReader:
        return self.infolink[self.settings.connection(name).name]

    def cached(self, key: str, ttl_s: float, load: Callable[[], Any]) -> Any:
        """A per-process cache with expiry (reference data such as template phases)."""
        now = time.monotonic()
        with self._lock:
            hit = self._cache.get(key)
            if hit and hit[0] > now:
                return hit[1]
        value = load()
        with self._lock:
            self._cache[key] = (now + ttl_s, value)
        return value

    def close(self) -> None:
        self.st.close()
        for c in self.spectrum.values():
            c.close()
        for r in self.infolink.values():
            r.close()
        self.ledger.dispose()


def audit_hook(ledger: Ledger) -> Callable[[CallRecord], None]:
    """A client ``on_call`` hook that writes an audit row for the current record."""

    def hook(rec: CallRecord) -> None:
        ledger.audit(
            system=rec.system,
            service=rec.service,
            method=rec.method,
            outcome=rec.outcome,
            key=current_record.get(),
            request_digest=rec.request_digest,
            status_code=rec.status,
            duration_ms=rec.duration_ms,
            detail=rec.detail,
        )

    return hook


class ThrottledSpectrumClient(SpectrumClient):
    """A Spectrum client whose writes each hold a per-connection slot (``max_in_flight``)."""

    slots: WriteSlots | None = None

    def put(self, request: SpectrumRequest) -> PutResult:
        if self.slots is None:
            return super().put(request)
        with self.slots.slot():
            return super().put(request)

    def add_ar_invoices(self, invoices: Sequence[ARInvoiceRequest]) -> list[ARInvoiceResult]:
        if self.slots is None:
            return super().add_ar_invoices(invoices)
        with self.slots.slot():
            return super().add_ar_invoices(invoices)


class PacedServiceTradeClient(ServiceTradeClient):
    """A ServiceTrade client that consults the account's shared pause before every exchange and
    extends it when ServiceTrade answers 429 (worker/pacing.py)."""

    pause: AccountPause | None = None

    def _exchange(self, method: str, path: str, **kwargs: Any) -> Any:
        if self.pause is None:
            return super()._exchange(method, path, **kwargs)
        self.pause.wait()
        try:
            return super()._exchange(method, path, **kwargs)
        except RateLimited as exc:
            self.pause.pause(exc.retry_after)
            raise


def account_pause_for(settings: Settings, client: redis.Redis) -> AccountPause:
    """The ServiceTrade account's shared pause, on the broker's Redis under the prefix."""
    return AccountPause(client, pause_key(settings.redis_key_prefix))


def write_slots_for(settings: Settings, client: redis.Redis) -> dict[str, WriteSlots]:
    """One semaphore per connection, on the broker's Redis under the deployment's prefix."""
    lease = float(settings.reliability.task_time_limit_s + 30)
    return {
        name: WriteSlots(
            client,
            f"{settings.redis_key_prefix}stsync:spectrum-writes:{name}",
            conn.max_in_flight,
            lease_s=lease,
        )
        for name, conn in settings.connections.items()
    }


def process_read_cache(settings: Settings, client: redis.Redis) -> ReadCache:
    """The worker process's read cache, its stamps in the broker's Redis (worker/readcache.py)."""
    return redis_read_cache(
        settings.servicetrade.read_cache_ttl_s, client, settings.redis_key_prefix
    )


def attach_read_cache(ctx: SyncContext) -> bool:
    """Give an inline run (``stsync catch-up``) the workers' read cache when a broker is
    configured (its stamps live there); False, and every read fresh, when there is none."""
    from worker.celery_app import resolve_broker_url

    try:
        url = resolve_broker_url(ctx.settings)
    except ConfigError:
        return False
    client = redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=5)
    ctx.st.read_cache = process_read_cache(ctx.settings, client)
    return True


def build_context(
    settings: Settings,
    *,
    enqueue: Enqueue | None = None,
    st_transport: httpx.BaseTransport | None = None,
    spectrum_transport: httpx.BaseTransport | None = None,
    retry_wait_s: float = 1.0,
    ledger: Ledger | None = None,
    write_slots: dict[str, WriteSlots] | None = None,
    read_cache: ReadCache | None = None,
    st_pause: AccountPause | None = None,
) -> SyncContext:
    """Build clients and the ledger from ``settings`` (transports injectable for tests).

    ``write_slots`` caps Spectrum writes per connection (``max_in_flight``); worker processes pass
    the Redis-backed ones, tests may pass none. ``read_cache`` serves job, location and user
    facts (worker/readcache.py); without one every read goes to ServiceTrade."""
    ledger = ledger or Ledger(settings.database_url)
    ledger.pending_grace_s = float(settings.reliability.pending_due_after_s)
    hook = audit_hook(ledger)
    st = PacedServiceTradeClient(
        **settings.servicetrade.client_options(),
        transport=st_transport,
        retry_wait_s=retry_wait_s,
        on_call=hook,
    )
    st.read_cache = read_cache
    st.pause = st_pause
    spectrum: dict[str, SpectrumClient] = {
        name: ThrottledSpectrumClient(
            conn.base_url,
            authorization_id=conn.authorization_id.get_secret_value(),
            company_code=conn.company_code,
            timeout_s=conn.timeout_s,
            connect_timeout_s=conn.connect_timeout_s,
            transport=spectrum_transport,
            retry_wait_s=retry_wait_s,
            on_call=hook,
        )
        for name, conn in settings.connections.items()
    }
    for name, client in spectrum.items():
        if isinstance(client, ThrottledSpectrumClient) and write_slots:
            client.slots = write_slots.get(name)
    infolink = {
        name: InfoLinkReader(conn.infolink_url, conn.company_code)
        for name, conn in settings.connections.items()
    }
    return SyncContext(
        settings=settings,
        ledger=ledger,
        st=st,
        spectrum=spectrum,
        infolink=infolink,
        enqueue=enqueue or celery_enqueue,
    )


def celery_enqueue(task_name: str, args: tuple[Any, ...]) -> None:
    """Send a task by name on its configured queue (ids only in args)."""
    # imported here, not at the top: importing the Celery app configures it from STSYNC_CONFIG,
    # which a process that only builds a context (preview, demo, bench) must not pay for
    from worker.celery_app import app

    app.send_task(task_name, args=args)


_process_context: SyncContext | None = None
_process_lock = threading.Lock()


def _process_context_for(settings: Settings) -> SyncContext:
    client = redis.Redis.from_url(
        resolve_broker_url(settings), socket_connect_timeout=5, socket_timeout=10
    )
    return build_context(
        settings,
        write_slots=write_slots_for(settings, client),
        read_cache=process_read_cache(settings, client),
        st_pause=account_pause_for(settings, client),
    )


def open_process_context() -> SyncContext:
    global _process_context, _watch
    with _process_lock:
        if _process_context is None:
            settings = get_settings()
            _process_context = _process_context_for(settings)
            _watch = ConfigWatch.of(settings)
        return _process_context


def close_process_context() -> None:
    global _process_context, _watch
    with _process_lock:
        if _process_context is not None:
            _process_context.close()
            _process_context = None
        _watch = None


# --- configuration reload --------------------------------------------------------------------
def _file_version(path: str) -> tuple[tuple[int, int], str] | None:
    """(size and mtime, content digest) of the configuration file; None when it cannot be read."""
    try:
        st = os.stat(path)
        with open(path, "rb") as fh:
            digest = hashlib.sha256(fh.read()).hexdigest()
    except OSError:
        return None
    return (st.st_size, st.st_mtime_ns), digest


@dataclass
class ConfigWatch:
    """The configuration file this process's context came from, and what was seen of it."""

    path: str
    every_s: float
    stat: tuple[int, int] | None
    digest: str | None
    next_check: float = 0.0
    #: digests of versions that did not load (alerted once each)
    refused: set[str] = field(default_factory=set)

    @classmethod
    def of(cls, settings: Settings) -> ConfigWatch | None:
        every = float(settings.reliability.config_reload_every_s)
        if not settings.config_path or every <= 0:
            return None
        seen = _file_version(settings.config_path)
        return cls(
            path=settings.config_path,
            every_s=every,
            stat=seen[0] if seen else None,
            digest=seen[1] if seen else None,
            next_check=time.monotonic() + every,
        )

    def changed(self, now: float) -> str | None:
        """The digest of a new version of the file worth loading, or None (cheap when unchanged:
        one ``stat`` at most every ``every_s``)."""
        if now < self.next_check:
            return None
        self.next_check = now + self.every_s
        seen = _file_version(self.path)
        if seen is None or seen[0] == self.stat:
            return None
        self.stat = seen[0]
        if seen[1] == self.digest or seen[1] in self.refused:
            return None
        return seen[1]


_watch: ConfigWatch | None = None


def reload_if_changed(now: float | None = None) -> bool:
    """Rebuild this process's context when its configuration file changed and loads; see the
    module docstring. True when it was rebuilt. Called at the start of every task."""
    global _process_context, _watch
    with _process_lock:
        watch, old = _watch, _process_context
        if watch is None or old is None:
            return False
        digest = watch.changed(time.monotonic() if now is None else now)
        if digest is None:
            return False
        try:
            settings = load_settings(watch.path)
        except ConfigError as exc:
            watch.refused.add(digest)
            _refuse(old, watch.path, digest, exc)
            return False
        fresh = _process_context_for(settings)
        follow = ConfigWatch.of(settings)  # None: the new file turned the reload off
        if follow is not None:
            follow.digest, follow.stat, follow.refused = digest, watch.stat, watch.refused
        _process_context, _watch = fresh, follow
    get_settings.cache_clear()  # readers of get_settings() see the same file
    try:
        old.close()
    except Exception:  # noqa: BLE001 - the old clients are dropped anyway
        log.exception("closing the context of the previous configuration failed")
    log.warning(
        "configuration file %s changed: reloaded (version %s)",
        watch.path,
        digest[:12],
        extra={"outcome": "config_reload", "detail": watch.path},
    )
    return True


def _refuse(ctx: SyncContext, path: str, digest: str, exc: ConfigError) -> None:
    """One clear error and one alert per bad version; the settings in use are kept."""
    message = (
        f"configuration file {path} changed but does not load, so the workers keep the "
        f"settings they had: {exc}" + (f" (field {exc.field})" if exc.field else "")
    )
    log.error(message, extra={"outcome": "config_refused", "detail": str(exc)[:500]})
    try:
        from worker.pause import alert_key

        ctx.ledger.record_alert(
            alert_key(ctx.settings.default_connection, "configuration"),
            kind="configuration",
            problem_key=f"config:{digest[:24]}",
            message=message,
        )
    except Exception:  # noqa: BLE001 - the log line above already says it
        log.exception("could not record the configuration alert")


@task_prerun.connect
def _reload_before_task(**_: Any) -> None:
    """Each task starts on the current configuration (a cheap clock check most of the time)."""
    try:
        reload_if_changed()
    except Exception:  # noqa: BLE001 - a reload problem must not stop the task
        log.exception("configuration reload failed; the settings in use are kept")


@worker_process_init.connect
def _open_clients(**_: Any) -> None:
    """Each pool process builds its own clients after fork (never shared across processes).

    Connected here rather than in ``worker.celery_app`` so the app never imports this module (the
    two used to import each other); the worker imports it through the task modules before forking.
    """
    open_process_context()


@worker_process_shutdown.connect
def _close_clients(**_: Any) -> None:
    close_process_context()


def get_context() -> SyncContext:
    """This process's context (built on first use)."""
    return _process_context or open_process_context()


def set_process_context(ctx: SyncContext | None) -> None:
    """Install a context for this process (tests, the inline CLI runner)."""
    global _process_context
    with _process_lock:
        _process_context = ctx


@contextmanager
def working_on(key: RecordKey) -> Iterator[None]:
    token = current_record.set(key)
    try:
        yield
    finally:
        current_record.reset(token)
