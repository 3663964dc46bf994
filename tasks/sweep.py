"""The missed-change sweep (F15): a polling backstop for webhooks ServiceTrade dropped.

ServiceTrade gives up on a webhook delivery after 3 tries, and a broker restart can lose queued
tasks. Every ``schedules.sweep_every_s`` Beat runs this sweep. For each connection that syncs
automatically, it asks ServiceTrade for the companies, locations, jobs and invoices updated since
the resource's high-water mark (minus ``schedules.sweep_overlap_s``) and for the timecards approved
since then, and queues the same tasks a webhook would for every record the ledger has not seen in
that version:

- no ledger row at all;
- a row last touched by stsync before ServiceTrade's ``updated`` time of the record;
- a ``pending`` row nobody has touched for longer than a retry can wait (its task was lost);
- for timecards: any entry without a ledger row.

Failed records are not queued again on their own: a person was told, and a replay is theirs to
start (a later edit in ServiceTrade does queue them, as a webhook would). A record that failed on
a ServiceTrade user (a salesperson or technician without a Spectrum code) is woken when that
user's ``updated`` is newer than the failure: the sweep reads each such user (tasks/heal.py).
``retry_later`` rows (retries ran out on a transient cause) are left to the re-enqueuer's back-off
(tasks/requeue.py) unless ServiceTrade changed them. Duplicates are harmless: every task is
idempotent. The high-water marks live in the ledger's ``watermark`` table, one per
connection and resource; a resource whose listing failed keeps its mark, so the next run covers it.
Last, ledger rows stranded ``pending`` or ``in_flight`` (lease long expired) are queued again.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from clients.errors import SyncError
from clients.servicetrade import assumptions as st_assumptions
from mappers.timecard import entry_source_id, sweep_window
from tasks import heal, registry
from tasks import timecard as timecard_task
from tasks.registry import ENTITY_TASKS
from worker.celery_app import Queue, app
from worker.context import SyncContext, get_context
from worker.ledger import Record, Status

log = logging.getLogger("stsync.sweep")

SWEEP_TASK_NAME = "schedule.sweep"
#: resources listed by ``updatedAfter`` (their webhook entity type has the same name)
UPDATED_RESOURCES = ("company", "location", "job", "invoice")
#: extra list parameters: ``GET /job`` lists only ``scheduled`` jobs unless told otherwise (§5.3);
#: only customer companies become AR customers (F1), so the account's own vendor company is not
#: listed (``GET /location`` already defaults to customer locations, §5.2)
LIST_PARAMS: dict[str, dict[str, Any]] = {"job": {"status": "all"}, "company": {"isCustomer": True}}
TIMECARDS = "timecard"
#: the users failed records wait on (F21): read one by one, not listed
WAITED_USERS = "user"


def watermark_name(resource: str) -> str:
    return f"sweep:{resource}"


@dataclass
class SweepSummary:
    """One connection's sweep: per resource, the window, records listed and tasks queued."""

    connection: str
    windows: dict[str, list[int]] = field(default_factory=dict)
    listed: dict[str, int] = field(default_factory=dict)
    enqueued: dict[str, int] = field(default_factory=dict)
    stranded: int = 0
    errors: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def total_enqueued(self) -> int:
        return sum(self.enqueued.values()) + self.stranded


def run_sweep(
    ctx: SyncContext, *, now: int | None = None, connections: Iterable[str] | None = None
) -> list[SweepSummary]:
    """Sweep every auto-sync connection (or the given ones); see the module docstring."""
    at = int(time.time()) if now is None else now
    names = list(connections) if connections is not None else (ctx.settings.auto_sync_connections())
    out = []
    for name in names:
        summary = sweep_connection(ctx, ctx.connection(name).name, at)
        ctx.ledger.audit(
            system="stsync",
            service="sweep",
            outcome="partial" if summary.errors else "ok",
            detail=json.dumps(summary.as_dict()),
        )
        log.info(
            "missed-change sweep: %s queued %d",
            name,
            summary.total_enqueued,
            extra={"connection": name, "outcome": "sweep", "enqueued": summary.total_enqueued},
        )
        out.append(summary)
    return out


def sweep_connection(ctx: SyncContext, connection: str, now: int) -> SweepSummary:
    summary = SweepSummary(connection)
    for resource in (*UPDATED_RESOURCES, TIMECARDS):
        try:
            _sweep_resource(ctx, connection, resource, now, summary)
        except SyncError as exc:
            # this resource keeps its mark: the next sweep covers the same window again
            summary.errors.append(f"{resource}: {exc}"[:500])
            log.warning(
                "sweep of %s failed: %s",
                resource,
                exc,
                extra={"connection": connection, "outcome": "sweep_error"},
            )
    try:
        summary.enqueued[WAITED_USERS] = _sweep_waited_users(ctx, connection, summary)
    except SyncError as exc:
        summary.errors.append(f"{WAITED_USERS}: {exc}"[:500])
        log.warning(
            "sweep of waited-on users failed: %s",
            exc,
            extra={"connection": connection, "outcome": "sweep_error"},
        )
    summary.stranded = _requeue_stranded(ctx, connection)
    return summary


def _sweep_waited_users(ctx: SyncContext, connection: str, summary: SweepSummary) -> int:
    """The users failed records wait on (``tasks/heal.py``), read one by one (few: one per
    salesperson or technician a person must fix): a user whose ``updated`` is newer than the
    latest such failure and than the last time the sweep queued it is queued as its webhook
    would be. Users cannot be listed by ``updatedAfter`` cheaply for this, and need not be."""
    waited = heal.waited_users(ctx, connection)
    summary.listed[WAITED_USERS] = len(waited)
    queued = 0
    for user_id, failed_at in sorted(waited.items()):
        updated = ctx.st.get_user(user_id).updated
        mark = f"{watermark_name(WAITED_USERS)}:{user_id}"
        seen = _int(ctx.ledger.get_watermark(connection, mark))
        if updated is None or datetime.fromtimestamp(updated, UTC) <= failed_at:
            continue
        if seen is not None and updated <= seen:
            continue
        ctx.enqueue(registry.USER.task, (user_id, connection))
        ctx.ledger.set_watermark(connection, mark, str(updated))
        queued += 1
    return queued


def _stale_span(ctx: SyncContext) -> timedelta:
    """A pending row untouched this long is not waiting for a Celery retry any more (the longest
    retry countdown plus the longest run)."""
    rel = ctx.settings.reliability
    return timedelta(seconds=rel.retry_backoff_max_s + rel.task_time_limit_s)


def _stale_before(ctx: SyncContext) -> datetime:
    return datetime.now(UTC) - _stale_span(ctx)


def unseen(rec: Record | None, st_updated: int | None, stale_before: datetime) -> bool:
    """Whether the ledger has not seen this version of a ServiceTrade record.

    Compared with the ledger row's last change: stsync's own write-back (an external id, an
    invoice status) updates the record in ServiceTrade just before the row is marked done, so it
    does not count as a change stsync missed.
    """
    if rec is None:
        return True
    if st_updated is not None and rec.updated_at < datetime.fromtimestamp(st_updated, UTC):
        return True
    return rec.status is Status.PENDING and rec.updated_at < stale_before


def _window(ctx: SyncContext, connection: str, resource: str, now: int) -> tuple[int, int]:
    schedules = ctx.settings.schedules
    mark = ctx.ledger.get_watermark(connection, watermark_name(resource))
    return sweep_window(
        int(mark) if mark and mark.lstrip("-").isdigit() else None,
        now,
        schedules.sweep_overlap_s,
        # a first sweep looks back one interval, as if the previous sweep had just run: it must
        # not import the whole account on the day stsync is installed
        first_lookback_s=schedules.sweep_every_s + schedules.sweep_overlap_s,
    )


def _int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.isdigit():
        return int(value)
    return None


def _sweep_resource(
    ctx: SyncContext, connection: str, resource: str, now: int, summary: SweepSummary
) -> None:
    start, end = _window(ctx, connection, resource, now)
    summary.windows[resource] = [start, end]
    if resource == TIMECARDS:
        listed, queued = _sweep_timecards(ctx, connection, start, end)
    else:
        listed, queued = _sweep_updated(ctx, connection, resource, start)
    summary.listed[resource] = listed
    summary.enqueued[resource] = queued
    ctx.ledger.set_watermark(connection, watermark_name(resource), str(end))


def _sweep_updated(ctx: SyncContext, connection: str, resource: str, start: int) -> tuple[int, int]:
    task, record_type = ENTITY_TASKS[resource]
    stale = _stale_before(ctx)
    params = {"updatedAfter": start, **LIST_PARAMS.get(resource, {})}
    listed = queued = 0
    for page in ctx.st.iter_pages(resource, st_assumptions.PLURAL_KEYS[resource], params):
        items = [(i, _int(raw.get("updated"))) for raw in page if (i := _int(raw.get("id")))]
        known = ctx.ledger.get_many(connection, record_type, [str(i) for i, _ in items])
        listed += len(items)
        for st_id, updated in items:
            if unseen(known.get(str(st_id)), updated, stale):
                ctx.enqueue(task, (st_id, connection))
                queued += 1
    return listed, queued


def _sweep_timecards(ctx: SyncContext, connection: str, start: int, end: int) -> tuple[int, int]:
    stale = _stale_before(ctx)
    listed = queued = 0
    for page in ctx.st.iter_timecard_pages(start, end):
        entries = {tc.id: [entry_source_id(tc.id, e.id) for e in tc.entries] for tc in page}
        known_entries = ctx.ledger.get_many(
            connection,
            timecard_task.ENTRY_RECORD_TYPE,
            [sid for ids in entries.values() for sid in ids],
        )
        known_cards = ctx.ledger.get_many(
            connection, timecard_task.RECORD_TYPE, [str(tc.id) for tc in page]
        )
        listed += len(page)
        for tc in page:
            missing = [sid for sid in entries[tc.id] if unseen(known_entries.get(sid), None, stale)]
            if missing or unseen(known_cards.get(str(tc.id)), tc.updated, stale):
                ctx.enqueue(timecard_task.TASK_NAME, (tc.id, connection))
                queued += 1
    return listed, queued


def _requeue_stranded(ctx: SyncContext, connection: str) -> int:
    """Queue again the rows whose task was lost: ``pending`` long untouched, or ``in_flight``
    with a lease long expired (the claim takes such a lease over and counts the crash)."""
    by_type = {record_type: task for task, record_type in ENTITY_TASKS.values()}
    by_type[timecard_task.ENTRY_RECORD_TYPE] = timecard_task.TASK_NAME
    stale = _stale_before(ctx)
    rows = [
        r
        for r in ctx.ledger.list_records(statuses=(Status.PENDING,), connection=connection)
        if r.updated_at < stale
    ]
    rows += [
        r for r in ctx.ledger.stuck(older_than=_stale_span(ctx)) if r.key.connection == connection
    ]
    sent: set[tuple[str, int]] = set()
    for rec in rows:
        task = by_type.get(rec.key.record_type)
        # entries replay through their card; other composite ids belong to their own tasks
        head = rec.key.source_id.split(":", 1)[0]
        if (
            task is None
            or not head.isdigit()
            or (":" in rec.key.source_id and rec.key.record_type != timecard_task.ENTRY_RECORD_TYPE)
        ):
            continue
        if (task, int(head)) in sent:
            continue
        sent.add((task, int(head)))
        ctx.enqueue(task, (int(head), connection))
    if sent:
        log.warning(
            "sweep re-queued %d stranded record(s)",
            len(sent),
            extra={"connection": connection, "outcome": "stranded"},
        )
    return len(sent)


@app.task(name=SWEEP_TASK_NAME, queue=Queue.SCHEDULE.value, acks_late=True, ignore_result=True)
def missed_change_sweep() -> list[dict[str, Any]]:
    """Beat: queue syncs for ServiceTrade changes whose webhooks were lost. Idempotent (it only
    queues idempotent tasks; a repeated sweep queues duplicates that change nothing)."""
    return [s.as_dict() for s in run_sweep(get_context())]
