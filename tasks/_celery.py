"""The Celery task shape shared by every sync task (thin; policy in the decorator)."""

from __future__ import annotations

import functools
import logging
import os
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from celery import Task, states

from clients.errors import TransientError
from worker.celery_app import Queue, app
from worker.context import get_context
from worker.infra import INFRASTRUCTURE_ERRORS, describe
from worker.ledger import Record, RecordKey, Status, holder_is_dead
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


#: when each running task started (task id -> UTC time), for the inbox hand-off in after_return
_started: dict[str, datetime] = {}
_started_lock = threading.Lock()


def _waiting_for_us(rec: Record | None) -> bool:
    """A row this task left waiting (pending) or abandoned (in flight, holder gone/expired)."""
    if rec is None:
        return False
    if rec.status is Status.PENDING:
        return True
    if rec.status is Status.IN_FLIGHT:
        expired = rec.lease_until is None or rec.lease_until <= datetime.now(UTC)
        return expired or holder_is_dead(rec.lease_owner)
    return False


class SyncTask(Task):  # type: ignore[type-arg]
    """Base of sync tasks: a ``failed`` outcome fails the task with the record's reason (not
    retried), Retry-After honoured, "retry later" when Celery's retries run out, and the webhook
    inbox entry released once the task has run (docs/reliability.md)."""

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

    def retry(
        self,
        args: tuple[Any, ...] | None = None,
        kwargs: dict[str, Any] | None = None,
        exc: Exception | None = None,
        throw: bool = True,
        eta: datetime | None = None,
        countdown: float | None = None,
        max_retries: int | None = None,
        **options: Any,
    ) -> Any:
        """Celery's retry, waiting at least what the server asked: countdown = max(backoff,
        Retry-After) (autoretry computes only the backoff)."""
        return super().retry(
            args,
            kwargs,
            exc,
            throw,
            eta,
            retry_countdown(countdown, exc) if eta is None else countdown,
            max_retries,
            **options,
        )

    def before_start(self, task_id: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        with _started_lock:
            _started[task_id] = datetime.now(UTC)

    def after_return(
        self,
        status: str,
        retval: Any,
        task_id: str,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        einfo: Any,
    ) -> None:
        """The task ran to an end (not a retry): its webhook inbox entry is settled; what is
        left to do is on the ledger row (pending/retry_later with a due time)."""
        with _started_lock:
            started = _started.pop(task_id, None)
        if status == states.RETRY or started is None or not self.record_type or not args:
            return
        try:
            ctx = get_context()
            connection = ctx.connection(args[1] if len(args) > 1 else None).name
            ctx.ledger.inbox_done(connection, self.name, str(args[0]), received_before=started)
        except Exception:  # noqa: BLE001 - the entry is only re-run later: harmless
            log.exception("could not release the inbox entry", extra={"task": self.name})

    def on_failure(
        self, exc: BaseException, task_id: str, args: Any, kwargs: Any, einfo: Any
    ) -> None:
        if not isinstance(exc, TransientError) or not self.record_type or not args:
            return
        retry_later(self, exc, args)


class WatchTask(SyncTask):
    """A watched entity's task (``tasks.registry.WATCHED``): it keeps no ledger row, so its
    webhook inbox entry is its only durable wake-up. Released when the task succeeded; when it
    failed (Celery's retries ran out on a transient cause, or a bug) the entry stays and the
    re-enqueuer sends it again once it is due (tasks/requeue.py). Nothing is marked
    ``retry_later``: there is no row to mark."""

    def after_return(
        self,
        status: str,
        retval: Any,
        task_id: str,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        einfo: Any,
    ) -> None:
        if status != states.SUCCESS:
            with _started_lock:
                _started.pop(task_id, None)
            return
        super().after_return(status, retval, task_id, args, kwargs, einfo)

    def on_failure(
        self, exc: BaseException, task_id: str, args: Any, kwargs: Any, einfo: Any
    ) -> None:
        return


def retry_countdown(countdown: float | None, exc: BaseException | None) -> float | None:
    """max(backoff countdown, the error's Retry-After)."""
    wait = getattr(exc, "retry_after", None) if isinstance(exc, TransientError) else None
    if wait is None:
        return countdown
    return max(float(countdown or 0.0), float(wait))


def retry_later(task: SyncTask, exc: TransientError, args: Any) -> None:
    """Celery's retries ran out on a transient cause: the record is not failed, it waits
    ``retry_later`` for the re-enqueuer (growing delays); see tasks/requeue.py.

    A row the task never reached (the error came before the claim, e.g. reading the record
    from ServiceTrade) is created so the wait is durable. Once the retry_later period is over
    and the body still could not run, the row is failed here (ledger and alert only: the
    record's own failure path needs its body, which never ran).
    """
    from tasks._pipeline import record_alert

    ctx = get_context()
    rel = ctx.settings.reliability
    source_id = str(args[0])
    connection = ctx.connection(args[1] if len(args) > 1 else None).name
    now = datetime.now(UTC)
    for record_type in task.record_types or (task.record_type,):
        key = RecordKey(connection, record_type, source_id)
        rec = ctx.ledger.get(key)
        if rec is None and record_type == task.record_type:
            rec = ctx.ledger.ensure(key)
        if rec is None or not _waiting_for_us(rec):
            continue
        since = rec.retry_since or now
        if now - since >= timedelta(seconds=rel.retry_later_period_s):
            reason = (
                f"{key}: still failing on a transient cause after "
                f"{rel.retry_later_period_s / 3600:g} h of retries: {exc}"
            )
            ctx.ledger.mark(
                key, Status.FAILED, error_kind="retries_exhausted", reason=reason, state=rec.state
            )
            record_alert(ctx, key, "retries_exhausted", reason)
            continue
        delay = rel.retry_later_delay_s(rec.retry_rounds)
        ctx.ledger.mark_retry_later(
            key,
            next_attempt_at=now + timedelta(seconds=delay),
            reason=f"retries ran out ({task.max_retries}); next try in {delay} s: {exc}",
        )
        log.warning(
            "%s: retry later in %d s",
            key,
            delay,
            extra={"record": str(key), "outcome": "retry_later", "detail": str(exc)[:300]},
        )


def sync_task(
    name: str,
    record_type: str,
    *,
    queue: Queue = Queue.SYNC,
    also: tuple[str, ...] = (),
    base: type[SyncTask] = SyncTask,
) -> Callable[[F], F]:
    """Decorator for a thin sync task: late ack, autoretry on TransientError, jittered backoff."""

    def wrap(fn: F) -> F:
        @functools.wraps(fn)
        def run(*args: Any, **kwargs: Any) -> Any:
            try:
                return fn(*args, **kwargs)
            except INFRASTRUCTURE_ERRORS as exc:
                # e.g. the claim itself could not reach the ledger: retried like any transient
                raise TransientError(f"{name}{args}: {describe(exc)}") from exc

        return app.task(  # type: ignore[return-value]
            name=name,
            base=base,
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
        )(run)

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
