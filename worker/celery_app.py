"""The Celery application: reliability settings, queues, Beat schedule, log redaction.

Settings follow shared/reference/celery-reliability.md §7: JSON only, late acks with requeue on a
lost worker (the sync tasks are idempotent), prefetch 1, explicit time limits, a Redis visibility
timeout above the longest time limit plus the longest retry countdown, kombu's unacked-restore
sweep, cancelling late-ack tasks on connection loss. Redeliveries do not count toward Celery's
``max_retries``: the ledger's start cap (``reliability.start_cap``) stops a poison record.

Runtime layer: this module imports nothing above it. The broker URL comes from ``worker.broker``;
the per-process clients are opened and closed by ``worker.context`` on Celery's process signals;
the task modules are named by string (``TASK_PACKAGES``) and imported by Celery at worker start.
"""

from __future__ import annotations

import os
from enum import StrEnum
from functools import cached_property
from typing import Any

from celery import Celery, states
from celery.backends.redis import RedisBackend
from celery.exceptions import BackendStoreError
from celery.signals import after_setup_logger, after_setup_task_logger
from kombu.utils.encoding import bytes_to_str

from clients.errors import ConfigError
from worker.broker import resolve_broker_url
from worker.settings import CONFIG_ENV, Settings, get_settings

__all__ = ["TASK_PACKAGES", "Queue", "app", "celery_config", "configure", "resolve_broker_url"]


class Queue(StrEnum):
    """Every queue stsync uses, named in one place."""

    SYNC = "stsync.sync"  # one record's sync (ServiceTrade -> Spectrum, PO lines back)
    SCHEDULE = "stsync.schedule"  # sweeps, catch-up, PO polls, alert digests


#: the package whose import registers every task (``tasks/__init__.py`` imports its modules); a
#: string, so this runtime module never imports the layer above it
TASK_PACKAGES = ["tasks"]


#: how long a sync task's outcome stays in the result backend (Redis): long enough for
#: ``push_invoice_to_spectrum.delay(1036, "main").get(timeout=30)`` and Flower, short enough that
#: results never pile up (the ledger is the record of what happened)
RESULT_EXPIRES_S = 3600


#: store a task's result unless a SUCCESS is stored already, and publish it: Celery's
#: ``_store_result`` does the same in two round trips (a GET, then SETEX + PUBLISH), not atomically
_STORE_UNLESS_SUCCEEDED = """
local current = redis.call('GET', KEYS[1])
if current then
  local ok, meta = pcall(cjson.decode, current)
  if ok and type(meta) == 'table' and meta['status'] == 'SUCCESS' then
    return 0
  end
end
if tonumber(ARGV[2]) > 0 then
  redis.call('SETEX', KEYS[1], ARGV[2], ARGV[1])
else
  redis.call('SET', KEYS[1], ARGV[1])
end
redis.call('PUBLISH', KEYS[1], ARGV[1])
return 1
"""


class ResultsOnDemand(RedisBackend):
    """Celery's Redis result backend, minus one subscription per published task and one round
    trip per stored result.

    Celery's Redis backend subscribes every producer to each task's result channel when it
    publishes (``on_task_call``), so an ingest or a sweep that never reads a result would hold a
    subscription per task. Here only ``AsyncResult.get()`` subscribes, and it reads the stored
    result first (``on_wait_for_pending``), so a result stored before the call is not missed.

    Storing a result keeps Celery's rule (a stored SUCCESS is never overwritten: a redelivered
    duplicate cannot replace it) in one script instead of a read and then a write (P2: every
    task stores its outcome). Results are JSON here (``result_serializer``), which the script
    decodes to read the stored status.
    """

    def on_task_call(self, producer: Any, task_id: str) -> None:
        return None

    def _store_result(
        self,
        task_id: str,
        result: Any,
        state: str,
        traceback: str | None = None,
        request: Any = None,
        **kwargs: Any,
    ) -> Any:
        meta = self._get_result_meta(  # type: ignore[attr-defined]
            result=result, state=state, traceback=traceback, request=request
        )
        meta["task_id"] = bytes_to_str(task_id)
        value = self.encode(meta)
        if isinstance(value, str) and len(value) > self._MAX_STR_VALUE_SIZE:
            raise BackendStoreError(
                "value too large for Redis backend", state=state, task_id=task_id
            )
        # both set from seconds by Celery (``prepare_expires(..., type=int)``); 0/None: no expiry
        expires = getattr(self, "failure_expires" if state == states.FAILURE else "expires", None)
        self.ensure(self._store_unless_succeeded, (self.get_key_for_task(task_id), value, expires))
        return result

    @cached_property
    def _store_script(self) -> Any:
        return self.client.register_script(_STORE_UNLESS_SUCCEEDED)

    def _store_unless_succeeded(self, key: bytes, value: Any, expires: int | None) -> None:
        self._store_script(keys=[key], args=[value, int(expires or 0)])


def result_backend_url(broker_url: str) -> str | None:
    """The result backend for a broker URL: the same Redis (None for a unix socket broker)."""
    if broker_url.startswith(("redis://", "rediss://")):
        return f"{__name__}:ResultsOnDemand+{broker_url}"
    return None


def celery_config(settings: Settings, broker_url: str) -> dict[str, Any]:
    """Celery settings for this deployment."""
    rel = settings.reliability
    transport: dict[str, Any] = {}
    results: dict[str, Any] = {}
    if broker_url.startswith(("redis://", "rediss://", "unix://")):
        transport = {
            "visibility_timeout": rel.visibility_timeout_s,
            "unacked_restore_interval": rel.unacked_restore_interval_s,
            "unacked_restore_throttle": 1,
            "socket_connect_timeout": 5,
            "socket_keepalive": True,
            "health_check_interval": 25,
            "retry_on_timeout": True,
        }
        if settings.redis_key_prefix:
            transport["global_keyprefix"] = settings.redis_key_prefix
            results["global_keyprefix"] = settings.redis_key_prefix
    else:
        raise ConfigError(
            f"BROKER_URL {broker_url.split('://')[0]}:// is not supported: stsync runs on Redis "
            "(redis://, rediss://, unix://); the SQL and filesystem transports strand messages",
            field="BROKER_URL",
        )
    return {
        "broker_url": broker_url,
        "broker_transport_options": transport,
        "visibility_timeout": rel.visibility_timeout_s,
        "broker_connection_retry_on_startup": True,
        "broker_connection_max_retries": None,
        "task_serializer": "json",
        "result_serializer": "json",
        "accept_content": ["json"],
        # results only for tasks that opt in (the sync tasks: their outcome, or RecordFailed
        # with the reason), on the broker's Redis, expiring after RESULT_EXPIRES_S
        "task_ignore_result": True,
        "result_backend": result_backend_url(broker_url),
        "result_backend_transport_options": results,
        "result_expires": RESULT_EXPIRES_S,
        "result_backend_always_retry": True,
        "result_backend_max_retries": 10,
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "task_acks_on_failure_or_timeout": True,
        "worker_prefetch_multiplier": 1,
        "worker_concurrency": rel.worker_concurrency,
        "worker_max_tasks_per_child": 500,
        "task_time_limit": rel.task_time_limit_s,
        "task_soft_time_limit": rel.task_soft_time_limit_s,
        "worker_cancel_long_running_tasks_on_connection_loss": True,
        "worker_soft_shutdown_timeout": 30,
        "task_default_queue": Queue.SYNC.value,
        "task_queues_names": [q.value for q in Queue],
        "worker_send_task_events": True,
        "task_send_sent_event": True,
        "timezone": settings.timezone,
        "enable_utc": True,
        "worker_hijack_root_logger": False,
    }


app = Celery("stsync", include=TASK_PACKAGES)


def _drop_connection_pools() -> None:
    """Forget pooled broker connections so a re-configured broker URL or key prefix applies
    (a process that configures twice: tests, the demo)."""
    from kombu import pools

    # kombu keeps its pools process-wide, keyed by the connection's URL and options: closing only
    # the app's pool leaves a closed pool behind for the next configure with the same broker
    pools.reset()
    setattr(app, "_pool", None)  # noqa: B010 - private attribute, untyped in the stubs
    amqp = app.__dict__.get("amqp")
    if amqp is not None:
        amqp._producer_pool = None


def _drop_result_backend() -> None:
    """Forget the result backend Celery built for the previous configuration: Celery caches it on
    first use, so without this a re-configured URL or key prefix would not apply to results."""
    setattr(app, "_backend_cache", None)  # noqa: B010 - private attribute, untyped in the stubs
    local = getattr(app, "_local", None)
    if local is not None and hasattr(local, "backend"):
        del local.backend


def configure(settings: Settings, *, start_broker: bool = False) -> Celery:
    """Configure the app for ``settings`` (broker resolved now) and return it."""
    broker_url = resolve_broker_url(settings, start=start_broker)
    conf = celery_config(settings, broker_url)
    conf.pop("task_queues_names")
    _drop_connection_pools()
    app.conf.update(conf)
    _drop_result_backend()
    from kombu import Queue as KQueue

    app.conf.task_queues = [KQueue(q.value, routing_key=q.value) for q in Queue]
    try:
        import beat_schedule

        app.conf.beat_schedule = beat_schedule.build_schedule(settings)
    except ImportError:  # pragma: no cover - the module ships with the package
        pass
    return app


# A process started with a config file (celery worker -A worker.celery_app, beat, flower) is
# configured at import; tests and the CLI call configure() explicitly.
if os.environ.get(CONFIG_ENV) and os.environ.get("STSYNC_AUTOCONFIGURE", "1") == "1":
    configure(get_settings())


@after_setup_logger.connect
@after_setup_task_logger.connect
def _redacting_logs(**kwargs: Any) -> None:
    """A worker or Beat started by Celery (``celery -A worker.celery_app``) logs JSON lines with
    secrets redacted, like ``stsync worker`` (Celery sets its handlers up after our import)."""
    from worker.logs import celery_logging_hook

    celery_logging_hook(**kwargs)
