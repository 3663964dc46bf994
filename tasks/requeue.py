"""The re-enqueuer: the durable ledger drives recovery; Redis only carries wake-ups (issues 13, 17).

Invariant: **no ledger row is waiting (``pending`` or ``retry_later``) with nothing queued or
scheduled for it.** Every waiting row carries a due time (``next_attempt_at``), every webhook
wake-up an inbox entry with one (``inbox.due_at``), and every ``reliability.requeue_every_s``
Beat runs ``run_requeue``: it queues the task of every row and entry whose due time has passed
(and of every in-flight row whose lease ran out), then moves their due time one pending grace
(``reliability.pending_due_after_s``) ahead, so a lost message is re-sent again later and a
message still waiting in Redis is not re-sent every minute. Duplicates are harmless: the ledger
claim dedupes and every sync is idempotent.

Where the due times come from:

- ``Ledger.ensure`` (a new row) and ``Ledger.mark(PENDING)`` (a transient error waiting for
  Celery's retry, ``stsync retry``): now + the pending grace (+ the server's Retry-After);
- ``retry_later`` (Celery's retries ran out on a transient cause, ``tasks/_celery.py``): now + the
  round's delay from ``reliability.retry_later_delays_s`` (5 min, 15 min, 1 h, 3 h, 6 h ...);
- the inbox (ingest, before it answers 2xx): received + the pending grace.

Configuration fixes (F21, ``tasks/heal.py``): a failed or skipped customer, site, job, invoice,
timecard or timecard entry stores the fingerprint of the configuration sections its attempt used
(``heal.CONFIG_SECTIONS``). When a worker runs with another configuration (a map entry added, a
code range moved, a processing window opened), ``requeue_config_changed`` queues each such row
once (a timecard entry: its card); its sync looks at it again under the new configuration and
what waited on it follows. Only the sections of the row's own type count: a new
``timecards.employee_map`` entry queues no invoice.
A watermark per connection and record type keeps the fingerprint last scanned for (and when), so
the rows are read once per configuration change, not every minute; for a grace period after it
(``config_grace_s``) the rows still stamped with the old configuration are queued at every run: a
worker process that had not reloaded its file yet (worker/context.py: it looks at most every
``config_reload_every_s``) may have taken one and found nothing to do under the old one.

``invariant_breaches`` (``stsync status``) lists rows that break the invariant: waiting without a
due time, or overdue by more than the re-enqueue interval plus the visibility timeout (the
re-enqueuer is not running).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from tasks import invoice as invoice_task
from tasks import purchase_order as po_task
from tasks.heal import CONFIG_SECTIONS, config_changed, config_fingerprint
from tasks.registry import replay_for
from worker.celery_app import Queue, app
from worker.context import SyncContext, get_context
from worker.ledger import Breach, Record, Status

log = logging.getLogger("stsync.requeue")

REQUEUE_TASK_NAME = "schedule.requeue"
PENDING_INVOICES_TASK_NAME = "schedule.pending_invoices"

Message = tuple[str, tuple[Any, ...]]


def task_for(rec: Record) -> Message | None:
    """The task (name, args) that settles this ledger row, or None when no task can.

    As ``stsync retry`` replays it (``tasks.registry``), except a PO line without its snapshot
    on the row: only the PO poll of its connection can read it again."""
    rtype, sid, conn = rec.key.record_type, rec.key.source_id, rec.key.connection
    if rtype == po_task.RECORD_TYPE and "line" not in rec.state:
        return po_task.TASK_NAME, (conn,)
    return replay_for(rtype, sid, conn)


@dataclass
class RequeueSummary:
    """One re-enqueuer run: rows and inbox entries found due, messages sent."""

    records_due: int = 0
    inbox_due: int = 0
    sent: int = 0
    by_status: dict[str, int] = field(default_factory=dict)
    unroutable: list[str] = field(default_factory=list)
    #: failed/skipped rows queued because the configuration they failed under changed
    config_changed: int = 0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def run_requeue(ctx: SyncContext, *, now: datetime | None = None) -> RequeueSummary:
    """Queue every due waiting row and inbox entry once; see the module docstring."""
    at = now or datetime.now(UTC)
    rel = ctx.settings.reliability
    until = at + timedelta(seconds=rel.pending_due_after_s)
    configured = set(ctx.settings.connections)
    summary = RequeueSummary()
    sent: set[Message] = set()

    def send(message: Message) -> None:
        if message not in sent:
            sent.add(message)
            ctx.enqueue(*message)

    rows = ctx.ledger.due_records(at, limit=rel.requeue_batch)
    routed: list[Record] = []
    for rec in rows:
        message = task_for(rec) if rec.key.connection in configured else None
        if message is None:
            # left due: `stsync status` shows it as a breach for a person
            summary.unroutable.append(str(rec.key))
            continue
        send(message)
        routed.append(rec)
        summary.by_status[rec.status.value] = summary.by_status.get(rec.status.value, 0) + 1
    ctx.ledger.defer(routed, until)
    summary.records_due = len(rows)

    entries = ctx.ledger.inbox_due(at, limit=rel.requeue_batch)
    for entry in entries:
        if entry.connection in configured:
            head = entry.source_id
            send((entry.task, (int(head) if head.isdigit() else head, entry.connection)))
    ctx.ledger.inbox_defer(entries, until)
    summary.inbox_due = len(entries)
    summary.config_changed = requeue_config_changed(ctx, send, now=at)
    summary.sent = len(sent)
    if summary.sent or summary.unroutable:
        log.warning(
            "re-enqueued %d message(s) for %d due row(s) and %d inbox entr(ies)",
            summary.sent,
            summary.records_due,
            summary.inbox_due,
            extra={"outcome": "requeue", **summary.by_status},
        )
    return summary


def config_grace_s(ctx: SyncContext) -> float:
    """How long after a configuration change a worker process may still run a task on the
    configuration before it: it looks at its file at most every ``config_reload_every_s``
    (worker/context.py), and a task started just before runs up to its time limit."""
    rel = ctx.settings.reliability
    return float(rel.config_reload_every_s + rel.task_time_limit_s + rel.requeue_every_s)


def requeue_config_changed(
    ctx: SyncContext, send: Callable[[Message], None], *, now: datetime | None = None
) -> int:
    """Queue, once per configuration change, every failed or skipped record (customer, site, job,
    invoice, timecard, timecard entry) whose attempt used other configuration sections of its
    type than this worker's (see the module docstring). Returns how many messages it queued.

    For a grace period after the change (``config_grace_s``) the rows still stamped with another
    configuration are queued at every run: a worker process that had not reloaded its file yet
    may have taken one and found nothing new (a no-op under the old configuration). Once the
    grace is over every task starts on the new file, and the rows are not read again."""
    at = now or datetime.now(UTC)
    grace = timedelta(seconds=config_grace_s(ctx))
    queued: set[Message] = set()
    for name, conn in ctx.settings.connections.items():
        for record_type in CONFIG_SECTIONS:
            current = config_fingerprint(conn, record_type)
            mark = f"heal-config:{record_type}"
            seen, _, stamp = (ctx.ledger.get_watermark(name, mark) or "").partition("@")
            if seen == current:
                seen_at = _parse_time(stamp)
                if seen_at is None or at - seen_at > grace:
                    continue
            rows = ctx.ledger.list_records(
                statuses=(Status.FAILED, Status.SKIPPED),
                connection=name,
                record_type=record_type,
                limit=1_000_000,
            )
            for rec in rows:
                message = task_for(rec) if config_changed(rec, conn) else None
                if message is not None:
                    # a card's failed entries and the card itself: one message
                    send(message)
                    queued.add(message)
            if seen != current:
                ctx.ledger.set_watermark(name, mark, f"{current}@{at.isoformat()}")
    if queued:
        log.warning(
            "configuration changed: %d failed or skipped record(s) queued to be looked at again",
            len(queued),
            extra={"outcome": "requeue"},
        )
    return len(queued)


def _parse_time(text: str) -> datetime | None:
    try:
        return datetime.fromisoformat(text) if text else None
    except ValueError:
        return None


def invariant_tolerance_s(ctx: SyncContext) -> float:
    """How late a due row may be before it breaks the invariant: the re-enqueue interval plus
    the visibility timeout (a message taken by a worker that died comes back after it)."""
    rel = ctx.settings.reliability
    return float(rel.requeue_every_s + rel.visibility_timeout_s)


def invariant_breaches(ctx: SyncContext, *, now: datetime | None = None) -> list[Breach]:
    """Rows with nothing queued or scheduled for them (``stsync status``)."""
    return ctx.ledger.invariant_breaches(
        now or datetime.now(UTC), tolerance_s=invariant_tolerance_s(ctx)
    )


def pending_invoice_backstop(ctx: SyncContext) -> dict[str, int]:
    """``sweep_pending_invoices`` for every auto-sync connection (Beat, with the sweep)."""
    return {
        name: invoice_task.sweep_pending_invoices(ctx, name)
        for name in ctx.settings.auto_sync_connections()
    }


@app.task(name=REQUEUE_TASK_NAME, queue=Queue.SCHEDULE.value, acks_late=True, ignore_result=True)
def requeue_due() -> dict[str, Any]:
    """Beat: queue every waiting ledger row and webhook inbox entry whose due time has passed.
    Idempotent (it only queues idempotent tasks)."""
    return run_requeue(get_context()).as_dict()


@app.task(
    name=PENDING_INVOICES_TASK_NAME, queue=Queue.SCHEDULE.value, acks_late=True, ignore_result=True
)
def pending_invoices() -> dict[str, int]:
    """Beat: queue every ``pending_accounting`` invoice not already waiting on its own schedule."""
    return pending_invoice_backstop(get_context())
