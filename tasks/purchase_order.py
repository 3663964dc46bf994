"""Spectrum purchase-order lines -> ServiceTrade job items (F9), polled by Celery Beat.

Each poll reads, per connection, the Info-Link PO lines whose header or line changed since the
stored high-water mark (minus ``purchase_orders.overlap_s``), page by page, and gives every line
one ledger row ``(connection, "po_line", "<PO>:<line>")``:

- The PO's Spectrum job number is matched to a ServiceTrade job: first through the ledger (jobs
  stsync created: record type ``job``, ``spectrum_key`` = job number), else through ServiceTrade
  job ``externalIds`` (jobs mapped by hand or by an earlier integration, and the further job
  numbers of multi-cost-center jobs). Unmatched lines are recorded ``skipped`` with the reason and
  a snapshot of the line, and re-checked on every later poll: once the job syncs, they attach.
- A matched line becomes one job item (created once; a ghost write is adopted by its
  ``source.value``). A changed line updates only the changed fields of its job item. A closed or
  cancelled line follows ``purchase_orders.closed_lines``.
- Whether anything must be written is decided from a digest of the planned item, so a poll that
  sees nothing new writes nothing and claims nothing.

The high-water mark is Info-Link's own ``Date_Modified`` clock (no skew with ours) and advances
only when a poll finished every line; a poll that stops on a transient error is retried by Celery
and re-reads the same window (lines already done are skipped by their digest).
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import Any

from clients.errors import MappingError, NotFound, PermanentError, RecordBusy, RecordSkipped
from clients.servicetrade.models import JobItem
from clients.spectrum.po_models import PoLine
from mappers.purchase_order import (
    SOURCE_TYPE,
    ClosedLineAction,
    closed_line_action,
    index_lib_items,
    job_item_digest,
    job_item_update,
    po_line_key,
    po_line_record,
    po_line_source_ref,
    po_line_to_job_item,
    to_wire,
    zeroed,
)
from tasks import registry
from tasks._celery import sync_task
from tasks._pipeline import Outcome, Run, record_alert, run_record
from tasks.state import PoLineState, Result
from worker.celery_app import Queue
from worker.context import SyncContext, get_context
from worker.ledger import Record, RecordKey, Status
from worker.settings import ConnectionSettings

log = logging.getLogger("stsync.purchase_order")

RECORD_TYPE = registry.PO_LINE.name
#: the Beat entry's task (``beat_schedule.PO_POLL_TASK``)
TASK_NAME = "schedule.po_poll"
#: one line, re-run from its ledger snapshot (replay)
LINE_TASK_NAME = registry.PO_LINE.task
#: ledger watermark name: the newest Info-Link ``Date_Modified`` a finished poll has seen
WATERMARK = "po_lines"
#: the ledger record type of jobs stsync created (tasks.job.RECORD_TYPE)
JOB_RECORD_TYPE = "job"
#: how long ServiceTrade lib items are reused between polls of one process
LIB_ITEMS_TTL_S = 300.0
#: how often the externalIds job index asks ServiceTrade for changed jobs, and when it is rebuilt
JOB_INDEX_REFRESH_S = 60.0
JOB_INDEX_REBUILD_S = 86_400.0
#: re-read this much of ServiceTrade's job history on each incremental index refresh
JOB_INDEX_OVERLAP_S = 300


@dataclass
class PoPollSummary:
    """What one poll did, per outcome (the CLI prints it; the task logs it)."""

    connection: str
    lines_read: int = 0
    rechecked: int = 0
    created: int = 0
    updated: int = 0
    removed: int = 0
    unchanged: int = 0
    waiting_for_job: int = 0
    skipped: int = 0
    failed: int = 0
    busy: int = 0
    #: lines deleted in Spectrum, handled per ``closed_lines``
    gone: int = 0
    changed_since: str | None = None
    high_water: str | None = None
    watermark_advanced: bool = False

    def count(self, label: str) -> None:
        attr = {
            "synced": "created",
            "adopted": "created",
            "updated": "updated",
            "removed": "removed",
            "unchanged": "unchanged",
            "waiting": "waiting_for_job",
            "skipped": "skipped",
            "failed": "failed",
            "busy": "busy",
        }.get(label, "failed")
        setattr(self, attr, getattr(self, attr) + 1)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def describe(self) -> str:
        return (
            f"{self.connection}: {self.lines_read} changed line(s) read, {self.rechecked} "
            f"re-checked; {self.created} created, {self.updated} updated, {self.removed} removed, "
            f"{self.unchanged} unchanged, {self.waiting_for_job} waiting for their job, "
            f"{self.skipped} skipped, {self.failed} failed, {self.busy} busy, "
            f"{self.gone} gone from Spectrum"
        )


# --- matching the PO's job ------------------------------------------------------------------------
class _ExternalJobIndex:
    """Spectrum job number -> ServiceTrade job id, from ServiceTrade job ``externalIds``.

    Built on first need by listing ServiceTrade jobs, then refreshed incrementally with
    ``updatedAfter`` (ServiceTrade's own ``updated`` clock), so a poll costs one small request.
    The value may list several numbers (``"T1-1,T1-2"``: multi-cost-center jobs).
    """

    def __init__(self, system: str) -> None:
        self.system = system
        self.by_number: dict[str, int] = {}
        self.cursor: int | None = None
        self.refreshed = float("-inf")
        self.lock = threading.Lock()

    def lookup(self, ctx: SyncContext, number: str) -> int | None:
        with self.lock:
            if time.monotonic() - self.refreshed > JOB_INDEX_REFRESH_S:
                self._refresh(ctx)
            return self.by_number.get(number)

    def _refresh(self, ctx: SyncContext) -> None:
        after = None if self.cursor is None else self.cursor - JOB_INDEX_OVERLAP_S
        for job in ctx.st.iter_jobs(updated_after=after):
            for value in job.external_ids.get(self.system, "").split(","):
                if value.strip():
                    self.by_number[value.strip().upper()] = job.id
            if job.updated is not None and (self.cursor is None or job.updated > self.cursor):
                self.cursor = job.updated
        self.refreshed = time.monotonic()


@dataclass
class _Poll:
    """Per-poll caches: resolved job numbers and the lib-item index."""

    ctx: SyncContext
    conn: ConnectionSettings
    jobs: dict[str, int | None] = field(default_factory=dict)
    _lib: tuple[dict[str, int], frozenset[str]] | None = None

    def lib_items(self) -> tuple[dict[str, int], frozenset[str]]:
        if self._lib is None:
            self._lib = self.ctx.cached(
                "po:libitem-index",
                LIB_ITEMS_TTL_S,
                lambda: index_lib_items(self.ctx.st.list_libitems()),
            )
        return self._lib

    def job_for(self, job_number: str | None) -> int | None:
        number = (job_number or "").strip().upper()
        if not number:
            return None
        if number not in self.jobs:
            self.jobs[number] = self._resolve(number)
        return self.jobs[number]

    def _resolve(self, number: str) -> int | None:
        rec = self.ctx.ledger.find_by_spectrum_key(self.conn.name, JOB_RECORD_TYPE, number)
        if rec is not None and rec.status is Status.DONE and rec.key.source_id.isdigit():
            return int(rec.key.source_id)
        index: _ExternalJobIndex = self.ctx.cached(
            f"po:job-index:{self.conn.name}",
            JOB_INDEX_REBUILD_S,
            lambda: _ExternalJobIndex(self.conn.external_id_key),
        )
        return index.lookup(self.ctx, number)


# --- one line -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Plan:
    """What the line should look like in ServiceTrade, decided before any claim."""

    job_id: int | None
    action: ClosedLineAction
    target: dict[str, Any] | None
    error: MappingError | None
    digest: str


def _line_snapshot(line: PoLine) -> dict[str, Any]:
    return line.model_dump(mode="json")


def _is_cancelled(line: PoLine) -> bool:
    return "X" in ((line.line_status or "").strip().upper(), (line.po_status or "").strip().upper())


def _plan(poll: _Poll, line: PoLine, job_id: int | None) -> _Plan:
    action = closed_line_action(line, poll.conn.rules.purchase_orders)
    if job_id is None:
        digest = job_item_digest({"waiting": line.job_number or "", "line": _line_snapshot(line)})
        return _Plan(None, action, None, None, digest)
    by_code, ambiguous = poll.lib_items()
    try:
        desired = po_line_to_job_item(
            line,
            st_job_id=job_id,
            lib_items_by_code=by_code,
            rules=poll.conn.rules.purchase_orders,
            tz=poll.ctx.settings.timezone,
            ambiguous_codes=ambiguous,
        )
    except MappingError as exc:
        digest = job_item_digest({"error": str(exc), "line": _line_snapshot(line)})
        return _Plan(job_id, action, None, exc, digest)
    target = zeroed(desired) if action == "zero" else desired
    # the status is part of the plan: opening/closing a line must reach the body
    status = "closed" if action != "sync" else "open"
    digest = job_item_digest({"action": action, "status": status, "item": target})
    return _Plan(job_id, action, target, None, digest)


def _settled(rec: Record | None, plan: _Plan) -> bool:
    """True when the ledger already holds the outcome of exactly this plan: nothing to do."""
    if rec is None:
        return False
    if rec.status is Status.UNKNOWN:
        return True  # a person must look first
    terminal = rec.status in (Status.DONE, Status.FAILED, Status.SKIPPED)
    return terminal and PoLineState.load(rec.state).plan_digest == plan.digest


def _process(poll: _Poll, line: PoLine, rec: Record | None, *, force: bool = False) -> str:
    """Bring one line's job item in line with Spectrum; returns the outcome label."""
    ctx, conn = poll.ctx, poll.conn
    key = RecordKey(conn.name, RECORD_TYPE, po_line_key(line))
    job_id = poll.job_for(line.job_number)
    held = PoLineState.load(rec.state) if rec is not None else None
    if job_id is None and held is not None and held.item_id:
        # the item is already on a job: keep it there until the new job number resolves
        job_id = held.job_id
    plan = _plan(poll, line, job_id)
    if not force and _settled(rec, plan):
        return "waiting" if plan.job_id is None else "unchanged"

    def body(run: Run[PoLineState]) -> Outcome:
        return _sync_line(poll, run, line, plan)

    def alert(run: Run[PoLineState], exc: PermanentError) -> None:
        record_alert(ctx, run.key, "po_line", str(exc))

    try:
        outcome = run_record(
            ctx, key, body, state=PoLineState, reclaim_done=True, on_permanent=alert
        )
    except RecordBusy:
        return "busy"
    if outcome.result is Result.SKIPPED and plan.job_id is None:
        return "waiting"
    return outcome.result


def _sync_line(poll: _Poll, run: Run[PoLineState], line: PoLine, plan: _Plan) -> Outcome:
    ctx = poll.ctx
    record = po_line_record(line)
    state = run.state
    state.line = _line_snapshot(line)
    state.plan_digest = plan.digest
    state.waiting_for_job = None
    if plan.job_id is None:
        state.waiting_for_job = (line.job_number or "").strip()
        raise RecordSkipped(
            f"{record}: Spectrum job {(line.job_number or '').strip()!r} is not matched to a "
            "ServiceTrade job (stsync has not synced it, and no ServiceTrade job carries it in "
            f"externalIds '{poll.conn.external_id_key}'); re-checked on every poll"
        )
    if plan.error is not None:
        raise plan.error
    assert plan.target is not None
    ref = po_line_source_ref(line)
    item_id = state.item_id
    item_job = state.job_id

    sent_to = state.create_sent_to
    if item_id is None and sent_to is not None:
        # an earlier attempt sent the create and lost the answer: adopt what ServiceTrade has
        found = _find_item(ctx, sent_to, ref)
        if found is not None:
            item_id, item_job = found.id, sent_to
            state.item_id, state.job_id, state.adopted = item_id, item_job, True
        state.create_sent_to = None
        run.save()

    if item_id is not None and item_job != plan.job_id:
        # the PO now belongs to another job: the item moves with it (ServiceTrade has no move)
        _delete_item(ctx, item_id)
        item_id = None
        state.item_id, state.job_id, state.moved_from = None, None, item_job
        run.save(step="moved")

    if item_id is None:
        # a line closed before it ever reached ServiceTrade: under "leave" a closed (received)
        # line is still a real cost on the job and is created; a cancelled one never is
        if plan.action in ("zero", "remove") or (plan.action == "leave" and _is_cancelled(line)):
            raise RecordSkipped(
                f"{record}: the line is {_status_word(line)}; closed_lines = "
                f"{plan.action!r}: no job item"
            )
        if state.deleted_in_servicetrade:
            return run.done(
                Result.UNCHANGED,
                None,
                digest=plan.digest,
                message="its job item was deleted in ServiceTrade; not re-created",
            )
        state.create_sent_to = plan.job_id
        run.save(step="create")
        item = ctx.st_writes.create_job_item(to_wire(plan.target))
        state.item_id, state.job_id, state.removed = item.id, plan.job_id, False
        state.create_sent_to = None
        how = Result.ADOPTED if state.adopted else Result.SYNCED
        return run.done(how, str(item.id), digest=plan.digest)

    if plan.action == "remove":
        _delete_item(ctx, item_id)
        state.item_id, state.job_id, state.removed = None, None, True
        return run.done(Result.REMOVED, None, digest=plan.digest)
    if plan.action == "leave":
        return run.done(
            Result.UNCHANGED,
            str(item_id),
            digest=plan.digest,
            message=f"line {_status_word(line)}; closed_lines = 'leave'",
        )
    existing = _get_item(ctx, plan.job_id, item_id)
    if existing is None:
        # a person deleted it in ServiceTrade: respect that rather than re-creating it each poll
        state.item_id, state.deleted_in_servicetrade = None, True
        return run.done(
            Result.UNCHANGED,
            None,
            digest=plan.digest,
            message="its job item was deleted in ServiceTrade; not re-created",
        )
    changes = job_item_update(existing, plan.target)
    if not changes:
        return run.done(Result.UNCHANGED, str(item_id), digest=plan.digest)
    ctx.st_writes.update_job_item(item_id, to_wire(changes))
    state.last_update = sorted(changes)
    return run.done(Result.UPDATED, str(item_id), digest=plan.digest)


def _status_word(line: PoLine) -> str:
    return "cancelled" if _is_cancelled(line) else "closed"


def _find_item(ctx: SyncContext, job_id: int, ref: str) -> JobItem | None:
    for item in ctx.st.list_job_items(job_id):
        if (
            item.source is not None
            and item.source.type == SOURCE_TYPE
            and (item.source.value == ref)
        ):
            return item
    return None


def _get_item(ctx: SyncContext, job_id: int, item_id: int) -> JobItem | None:
    for item in ctx.st.list_job_items(job_id):
        if item.id == item_id:
            return item
    return None


def _delete_item(ctx: SyncContext, item_id: int) -> None:
    with contextlib.suppress(NotFound):  # already gone: the goal is reached
        ctx.st_writes.delete_job_item(item_id)


# --- the poll -------------------------------------------------------------------------------------
def _parse_mark(value: str | None) -> datetime | None:
    if not value:
        return None
    return datetime.fromisoformat(value)


def _waiting_records(ctx: SyncContext, connection: str) -> list[Record]:
    """Lines to look at again without a Spectrum change: waiting for their job, or reopened."""
    recs = ctx.ledger.list_records(
        statuses=(Status.SKIPPED, Status.PENDING),
        connection=connection,
        record_type=RECORD_TYPE,
        limit=1_000_000,
    )
    out = []
    for r in recs:
        state = PoLineState.load(r.state)
        if state.line is not None and (
            r.status is Status.PENDING or state.waiting_for_job is not None
        ):
            out.append(r)
    return out


def _gone_from_spectrum(
    ctx: SyncContext, connection: str, keys: set[tuple[str, str]]
) -> list[Record]:
    """Lines stsync put on a job that Spectrum no longer has (a deleted line or PO)."""
    recs = ctx.ledger.list_records(
        statuses=(Status.DONE,),
        connection=connection,
        record_type=RECORD_TYPE,
        limit=1_000_000,
    )
    out = []
    for rec in recs:
        po, _, line = rec.key.source_id.partition(":")
        snapshot = PoLineState.load(rec.state).line or {}
        handled = str(snapshot.get("line_status") or "").strip().upper() == "X"
        if snapshot and (po, line) not in keys and not handled:
            out.append(rec)
    return out


def _as_cancelled(rec: Record) -> PoLine:
    """A deleted line is handled as a cancelled one (``closed_lines``: leave, zero or remove)."""
    line = PoLine.model_validate(PoLineState.load(rec.state).line)
    return line.model_copy(update={"line_status": "X"})


def run_po_poll(
    ctx: SyncContext, connection: str | None = None, progress: Callable[[int], None] | None = None
) -> PoPollSummary:
    """One PO poll of ``connection``: changed lines since the high-water mark, then re-checks.

    Idempotent: running it twice writes nothing the second time. ``progress(n)`` is called with
    the number of lines handled after each page and after the re-checks (CLI progress bar).
    Transient errors propagate (the caller retries); the high-water mark then stays put.
    """
    conn = ctx.connection(connection)
    rules = conn.rules.purchase_orders
    reader = ctx.infolink_for(conn.name)
    poll = _Poll(ctx, conn)
    summary = PoPollSummary(conn.name)
    mark = _parse_mark(ctx.ledger.get_watermark(conn.name, WATERMARK))
    since = mark - timedelta(seconds=rules.overlap_s) if mark is not None else None
    summary.changed_since = since.isoformat() if since else None
    newest = mark
    seen: set[str] = set()
    for page in reader.iter_po_lines(since, rules.page_size):
        existing = ctx.ledger.get_many(conn.name, RECORD_TYPE, [po_line_key(ln) for ln in page])
        for line in page:
            source_id = po_line_key(line)
            seen.add(source_id)
            summary.count(_process(poll, line, existing.get(source_id)))
            summary.lines_read += 1
            if line.modified_at is not None and (newest is None or line.modified_at > newest):
                newest = line.modified_at
        if progress:
            progress(len(page))
    rechecks = [r for r in _waiting_records(ctx, conn.name) if r.key.source_id not in seen]
    for rec in rechecks:
        summary.count(_process(poll, PoLine.model_validate(PoLineState.load(rec.state).line), rec))
        summary.rechecked += 1
    if progress and rechecks:
        progress(len(rechecks))
    for rec in _gone_from_spectrum(ctx, conn.name, reader.po_line_keys()):
        summary.count(_process(poll, _as_cancelled(rec), rec))
        summary.gone += 1
    # a line another worker holds may still fail: read this window again next time
    if newest is not None and summary.busy == 0:
        ctx.ledger.set_watermark(conn.name, WATERMARK, newest.isoformat())
        summary.watermark_advanced = newest != mark
    summary.high_water = newest.isoformat() if newest else None
    log.info(
        "PO poll %s",
        summary.describe(),
        extra={"connection": conn.name, "outcome": "po_poll", **_counts(summary)},
    )
    return summary


def _counts(summary: PoPollSummary) -> dict[str, int]:
    return {k: v for k, v in summary.as_dict().items() if isinstance(v, int) and k != "connection"}


def sync_po_line(ctx: SyncContext, line_key: str, connection: str | None = None) -> str:
    """Re-run one PO line from its ledger snapshot (replay after a fix); returns the outcome."""
    conn = ctx.connection(connection)
    rec = ctx.ledger.get(RecordKey(conn.name, RECORD_TYPE, line_key))
    line = PoLineState.load(rec.state).line if rec is not None else None
    if line is None:
        raise PermanentError(
            f"{conn.name}/{RECORD_TYPE}/{line_key}: no snapshot of this PO line in the ledger; "
            "it is read by the next PO poll"
        )
    return _process(_Poll(ctx, conn), PoLine.model_validate(line), rec, force=True)


def lines_waiting_for(ctx: SyncContext, connection: str) -> list[Record]:
    """PO lines recorded as waiting for their ServiceTrade job (for the CLI and tests)."""
    return [r for r in _waiting_records(ctx, connection) if r.status is Status.SKIPPED]


# --- Celery ---------------------------------------------------------------------------------------
@sync_task(TASK_NAME, "", queue=Queue.SCHEDULE)
def poll_purchase_orders(connection: str | None = None) -> dict[str, Any]:
    """Poll Spectrum Info-Link for changed PO lines and sync them to ServiceTrade job items.

    Idempotent (ledger row per PO line, digest of the planned item): a redelivered or overlapping
    poll writes nothing twice. Retries on TransientError (Info-Link or ServiceTrade unreachable)
    with jittered backoff; the high-water mark advances only when a poll finishes.
    """
    return run_po_poll(get_context(), connection).as_dict()


@sync_task(LINE_TASK_NAME, RECORD_TYPE)
def push_po_line_to_servicetrade(line_key: str, connection: str | None = None) -> str:
    """Re-sync one PO line (``"<PO>:<line>"``) from its ledger snapshot. Idempotent; retries on
    TransientError."""
    return sync_po_line(get_context(), line_key, connection)
