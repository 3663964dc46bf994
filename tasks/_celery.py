"""The Celery task shape shared by every sync task (thin; policy in the decorator)."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from typing import Any, TypeVar

from celery import Task

from clients.errors import TransientError
from worker.celery_app import Queue, app
from worker.context import get_context
from worker.ledger import RecordKey, Status
from worker.settings import CONFIG_ENV, ReliabilitySettings

log = logging.getLogger("stsync.tasks")

F = TypeVar("F", bound=Callable[..., Any])


def _configured_reliability() -> ReliabilitySettings:
    # A worker started with a config file gets its retry policy at import (task decoration);
    # other processes (tests, CLI) call apply_reliability() after loading settings.
    if os.environ.get(CONFIG_ENV):
        from worker.settings import get_settings

        return get_settings().reliability
    return ReliabilitySettings()


_DEFAULTS = _configured_reliability()


class RecordFailed(Exception):
    """A record's sync ended ``failed`` (the ledger already says so, with the reason).

    Raised by the thin task *after* the outcome is recorded, so that Celery (and Flower) count the
    task as failed with the reason as its error text. Never retried: it is not a TransientError,
    and the task lists it in ``throws`` (logged as an expected failure, without a traceback).
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)


#: the outcome a sync function returns for a record that needs a person
FAILED_RESULT = "failed"


class SyncTask(Task):  # type: ignore[type-arg]
    """Base of sync tasks: a ``failed`` outcome fails the task with the record's reason; records
    "gave up" in the ledger when Celery's retries run out."""

    record_type: str = ""
    #: every ledger type this task may leave pending (a send is a work order or a JC job)
    record_types: tuple[str, ...] = ()

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        result = super().__call__(*args, **kwargs)
        if result == FAILED_RESULT and self.record_type and args:
            raise RecordFailed(self.failure_reason(args))
        return result

    def failure_reason(self, args: tuple[Any, ...]) -> str:
        """``<record>: <reason>`` from the ledger row the sync just marked failed."""
        ctx = get_context()
        connection = ctx.connection(args[1] if len(args) > 1 else None).name
        for record_type in self.record_types or (self.record_type,):
            key = RecordKey(connection, record_type, str(args[0]))
            rec = ctx.ledger.get(key)
            if rec is not None and rec.status is Status.FAILED:
                return f"{key}: {rec.last_error or rec.error_kind or 'failed'}"
        return f"{connection}/{self.record_type}/{args[0]}: failed (see `stsync history`)"

    def on_failure(
        self, exc: BaseException, task_id: str, args: Any, kwargs: Any, einfo: Any
    ) -> None:
        if not isinstance(exc, TransientError) or not self.record_type or not args:
            return
        from tasks._pipeline import record_alert

        ctx = get_context()
        source_id = str(args[0])
        connection = ctx.connection(args[1] if len(args) > 1 else None).name
        reason = f"gave up after {self.max_retries} retries: {exc}"
        for record_type in self.record_types or (self.record_type,):
            key = RecordKey(connection, record_type, source_id)
            rec = ctx.ledger.get(key)
            if rec is not None and rec.status in (Status.PENDING, Status.IN_FLIGHT):
                ctx.ledger.mark(
                    key, Status.FAILED, error_kind="retries_exhausted", reason=reason,
                    state=rec.state,
                )
                record_alert(ctx, key, "retries_exhausted", f"{key}: {reason}")


def sync_task(
    name: str, record_type: str, *, queue: Queue = Queue.SYNC, also: tuple[str, ...] = ()
) -> Callable[[F], F]:
    """Decorator for a thin sync task: late ack, autoretry on TransientError, jittered backoff."""

    def wrap(fn: F) -> F:
        return app.task(  # type: ignore[return-value]
            name=name,
            base=SyncTask,
            bind=False,
            queue=queue.value,
            acks_late=True,
            reject_on_worker_lost=True,
            autoretry_for=(TransientError,),
            retry_backoff=_DEFAULTS.retry_backoff_s,
            retry_backoff_max=_DEFAULTS.retry_backoff_max_s,
            retry_jitter=True,
            max_retries=_DEFAULTS.max_retries,
            # the outcome ("synced", ...) is kept briefly in the result backend (result_expires)
            # so `.delay(...).get()` and Flower show it; a failed record raises RecordFailed
            ignore_result=False,
            throws=(RecordFailed,),
            record_type=record_type,
            record_types=(record_type, *also),
        )(fn)

    return wrap


def apply_reliability(settings: ReliabilitySettings) -> None:
    """Copy the configured retry policy onto every registered sync task."""
    app.loader.import_default_modules()  # register every task (Celery imports the `tasks` package)
    for task in app.tasks.values():
        if isinstance(task, SyncTask):
            # autoretry reads these attributes when a retry happens
            task.retry_backoff = settings.retry_backoff_s  # type: ignore[attr-defined]
            task.retry_backoff_max = settings.retry_backoff_max_s  # type: ignore[attr-defined]
            task.max_retries = settings.max_retries
