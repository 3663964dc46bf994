"""Approved ServiceTrade timecards -> Spectrum payroll pre-time (F7); the weekly catch-up (F8).

Two kinds of ledger rows:

- ``timecard`` (source id = the timecard id): the card's claim, so one worker at a time works on a
  card, and its summary (employee, entries posted). A card is always re-examined when it arrives
  again (webhook, sweep, catch-up, replay): that is how a re-approved card gets its new entries.
- ``timecard_entry`` (source id ``"<timecard>:<entry>"``): the unit posted **exactly once**. A card
  that arrives again posts only the entries the ledger does not hold as done.

``PreTimeCard`` has no unique key, so a blind retry after an ambiguous outcome could pay an hour
twice. Each row carries the entry's marker in ``Message`` (``mappers.timecard.entry_marker``); the
moment before the write is saved (``sent_at``), and any later attempt first looks for the marker in
Info-Link's pre-time rows: found -> adopted; not found -> posted; Info-Link unreachable -> the entry
becomes ``unknown`` (never retried automatically; listed for a person). A posted entry whose mapped
request changes later (an edit after posting) is reported as drift, never re-posted.

No Spectrum employee for the technician stops that card (prerequisite failure with an alert); the
other cards are unaffected. A labor entry whose job is not yet in Spectrum syncs the job first.

Heal on change (F21, ``tasks/heal.py``): the card and each entry store the fingerprint of the
configuration sections their attempt used; when the configuration changes (an ``employee_map``
entry added, a pay type mapped, the processing window opened) the re-enqueuer queues each failed
or skipped card once (``tasks/requeue.py``). The card's re-run retries its failed and skipped
entries; an unchanged reason raises no second alert.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from clients.errors import (
    AmbiguousWriteError,
    PermanentError,
    PrerequisiteMissing,
    RecordSkipped,
    SyncError,
    TransientError,
)
from clients.servicetrade.models import ClockEntry, GenericEntry, LaborEntry, Timecard
from clients.spectrum.models import SpectrumRequest
from mappers.rules import route_mismatch
from mappers.timecard import (
    APPROVED,
    catch_up_window,
    employee_code,
    entry_marker,
    entry_source_id,
    timecard_entry_to_pretime,
)
from mappers.timecard import RECORD_TYPE as _ENTRY_RECORD_TYPE
from tasks import heal, registry
from tasks._celery import sync_task
from tasks._pipeline import Outcome, Run, record_alert, run_record
from tasks.job import spectrum_jobs_of, sync_job
from tasks.route import job_route_facts
from tasks.state import Result, TimecardEntryState, TimecardState
from worker.celery_app import Queue, app
from worker.context import SyncContext, get_context
from worker.ledger import TERMINAL, Record, RecordKey, Status
from worker.settings import ConnectionSettings

log = logging.getLogger("stsync.timecard")

RECORD_TYPE = registry.TIMECARD.name
ENTRY_RECORD_TYPE = _ENTRY_RECORD_TYPE  # "timecard_entry"
TASK_NAME = registry.TIMECARD.task
CATCH_UP_TASK_NAME = "schedule.timecard_catch_up"

#: Entry states the catch-up and the sweep treat as settled (nothing to post). ``failed`` is not:
#: a failure may have been fixed since, and a failed entry never reached Spectrum.
SETTLED = frozenset({Status.DONE, Status.SKIPPED, Status.UNKNOWN})

Entry = LaborEntry | ClockEntry | GenericEntry


def _now() -> float:
    """Unix time; a seam so tests can move the clock for one module only."""
    return time.time()


# --- what happened to a card's entries ------------------------------------------------------------
@dataclass
class Tally:
    """Entry outcomes of one pass over a card (source ids)."""

    posted: list[str] = field(default_factory=list)
    adopted: list[str] = field(default_factory=list)
    already: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    unknown: list[str] = field(default_factory=list)
    retrying: list[str] = field(default_factory=list)
    drift: list[str] = field(default_factory=list)

    def add(self, source_id: str, outcome: Outcome) -> None:
        bucket = {
            Result.SYNCED: self.posted,
            Result.ADOPTED: self.adopted,
            Result.UNCHANGED: self.already,
            Result.SKIPPED: self.skipped,
            Result.UNKNOWN: self.unknown,
        }.get(outcome.result, self.failed)
        bucket.append(source_id)

    def counts(self) -> dict[str, int]:
        return {k: len(v) for k, v in asdict(self).items() if v}


# --- jobs of labor and clock entries --------------------------------------------------------------
@dataclass(frozen=True)
class JobFacts:
    """What an entry on a ServiceTrade job needs from it: Spectrum job(s), work state, office."""

    plan: dict[str, str]  # cost center -> Spectrum job number
    state: str | None
    office_id: int | None
    #: the job is not sent to Spectrum: its time goes to the overhead job
    overhead: bool = False


class _Jobs:
    """Per-card cache of job facts (a card usually repeats the same job)."""

    def __init__(self, ctx: SyncContext, conn: ConnectionSettings) -> None:
        self.ctx, self.conn = ctx, conn
        self._facts: dict[int, JobFacts] = {}

    def facts(self, job_id: int, *, sync_missing: bool = True) -> JobFacts:
        cached = self._facts.get(job_id)
        if cached is not None and (cached.plan or not sync_missing):
            return cached
        plan = spectrum_jobs_of(self.ctx, job_id, self.conn.name)
        overhead = False
        if not plan and sync_missing:
            routed_elsewhere(self.ctx, self.conn, job_id)
            outcome = sync_job(self.ctx, job_id, self.conn.name)
            plan = spectrum_jobs_of(self.ctx, job_id, self.conn.name)
            if not plan and outcome.result == "skipped":
                plan, overhead = unsynced_job_plan(self.conn, job_id, outcome.message), True
            if not plan:
                raise PrerequisiteMissing(
                    f"ServiceTrade job {job_id} is not in Spectrum, so its time has no job to "
                    f"go to: {outcome.message or outcome.result}",
                    field="Job_Number",
                    value=job_id,
                )
        if cached is not None:
            facts = JobFacts(plan, cached.state, cached.office_id, overhead)
        else:
            # facts of other records: the read cache may serve them (one read per job a run)
            job = self.ctx.st.get_job(job_id, cached=True)
            state: str | None = None
            if job.location is not None:
                location = self.ctx.st.get_location(job.location.id, cached=True)
                state = location.address.state if location.address else None
            office = job.assigned_office.id if job.assigned_office else None
            facts = JobFacts(plan, state, office, overhead)
        self._facts[job_id] = facts
        return facts

    def number_for(self, facts: JobFacts, service_line: str | None) -> str | None:
        """The Spectrum job an entry goes to: the one of its service line's cost center on a
        multi-cost-center job, else the job's first (usually only) Spectrum job."""
        if not facts.plan:
            return None
        ccs = self.conn.rules.cost_centers
        cc = ccs.by_service_line.get(service_line or "", ccs.default)
        return facts.plan.get(cc) or next(iter(facts.plan.values()))


def routed_elsewhere(ctx: SyncContext, conn: ConnectionSettings, job_id: int) -> None:
    """Under routing (F24), time on a job that another connection's route takes is skipped here
    (``RecordSkipped``): the job must not be created in this Spectrum company too."""
    if conn.route is None:
        return
    mismatch = route_mismatch(conn.route, job_route_facts(ctx, ctx.st.get_job(job_id)))
    if mismatch is not None:
        raise RecordSkipped(
            f"routing: ServiceTrade job {job_id} is not for connection {conn.name} (its route's "
            f"{mismatch}); its time goes with the job",
            field="route",
            value=conn.name,
        )


def unsynced_job_plan(conn: ConnectionSettings, job_id: int, why: str) -> dict[str, str]:
    """Where labor on a job that stsync does not send to Spectrum goes (``unsynced_job_labor``).

    ``"overhead"``: the overhead job; ``"skip"``: the entry is skipped (``RecordSkipped``); unset:
    the entry fails (``PrerequisiteMissing``) with a message naming the key to set.
    """
    tr = conn.rules.timecards
    if tr.unsynced_job_labor == "overhead":
        return {tr.overhead_cost_center: tr.overhead_job}
    if tr.unsynced_job_labor == "skip":
        raise RecordSkipped(
            f"ServiceTrade job {job_id} is not sent to Spectrum ({why}); its time is left out "
            'of payroll (timecards.unsynced_job_labor = "skip")',
            field="Job_Number",
            value=job_id,
        )
    raise PrerequisiteMissing(
        f"ServiceTrade job {job_id} is not sent to Spectrum ({why}), so its time has no job to "
        f'go to. Set [connections.{conn.name}.timecards] unsynced_job_labor = "skip" (leave '
        'such time out of payroll) or "overhead" (with overhead_job, overhead_phase, '
        "overhead_cost_center: post it to an overhead job), then replay the timecard "
        f"(stsync retry timecard <id>) or let the weekly catch-up take it",
        field="Job_Number",
        value=job_id,
    )


def _overhead(request: SpectrumRequest, conn: ConnectionSettings) -> SpectrumRequest:
    """The entry's request with the overhead phase and cost center (when configured)."""
    tr = conn.rules.timecards
    values = dict(request.values)
    if tr.overhead_phase:
        values["Phase_Code"] = tr.overhead_phase
    if tr.overhead_cost_center:
        values["Cost_Center"] = tr.overhead_cost_center
    return SpectrumRequest(service=request.service, values=values)


def map_entry(
    ctx: SyncContext,
    conn: ConnectionSettings,
    tc: Timecard,
    entry: Entry,
    employee: str,
    jobs: _Jobs,
    *,
    sync_missing_jobs: bool = True,
) -> SpectrumRequest:
    """The PreTimeCard request of one entry (job facts resolved, the job synced if needed)."""
    job_number = state = None
    office: int | None = None
    job_ref = None if isinstance(entry, GenericEntry) else entry.job
    if (
        job_ref is None
        and conn.route is not None
        and (conn.name != ctx.settings.default_connection)
    ):
        raise RecordSkipped(
            f"routing: time without a job goes to the default connection "
            f"{ctx.settings.default_connection}, not {conn.name}",
            field="route",
            value=conn.name,
        )
    if job_ref is not None:
        facts = jobs.facts(job_ref.id, sync_missing=sync_missing_jobs)
        abbr = None
        if isinstance(entry, LaborEntry) and entry.service_line:
            abbr = entry.service_line.abbr
        job_number, state, office = jobs.number_for(facts, abbr), facts.state, facts.office_id
        overhead = facts.overhead
    else:
        overhead = False
    request = timecard_entry_to_pretime(
        tc,
        entry,
        employee_code=employee,
        job_number=job_number,
        job_state=state,
        office_id=office,
        rules=conn.rules,
        tz=ctx.settings.timezone,
    )
    return _overhead(request, conn) if overhead else request


# --- one card -------------------------------------------------------------------------------------
def sync_timecard(
    ctx: SyncContext,
    timecard_id: int,
    connection: str | None = None,
    *,
    recheck_unknown: bool = False,
) -> Outcome:
    """Post the approved card's entries that Spectrum does not have yet. Idempotent per entry.

    ``recheck_unknown`` (a person's decision, never automatic) looks again for the markers of
    entries left ``unknown`` and adopts or posts them.
    """
    return sync_timecard_tally(ctx, timecard_id, connection, recheck_unknown=recheck_unknown)[0]


def sync_timecard_tally(
    ctx: SyncContext,
    timecard_id: int,
    connection: str | None = None,
    *,
    recheck_unknown: bool = False,
    timecard: Timecard | None = None,
) -> tuple[Outcome, Tally]:
    """``sync_timecard`` plus what happened to each entry (the catch-up counts these).

    ``timecard``: the card as the caller has just listed it (the catch-up's page), else it is
    read here."""
    conn = ctx.connection(connection)
    key = RecordKey(conn.name, RECORD_TYPE, str(timecard_id))
    tally = Tally()

    def body(run: Run[TimecardState]) -> Outcome:
        tc = timecard if timecard is not None else ctx.st.get_timecard(timecard_id)
        heal.stamp(run.state, tc, conn, RECORD_TYPE)
        return _sync_card(ctx, conn, run, tc, tally, recheck_unknown=recheck_unknown)

    # always re-examined (reclaim): a re-approved card may carry entries not yet posted
    return run_record(ctx, key, body, state=TimecardState, reclaim_done=True), tally


def _who(tc: Timecard) -> str:
    return (
        f"{tc.user.name!r} (ServiceTrade user {tc.user.id})"
        if tc.user.name
        else (f"ServiceTrade user {tc.user.id}")
    )


def _sync_card(
    ctx: SyncContext,
    conn: ConnectionSettings,
    run: Run[TimecardState],
    tc: Timecard,
    tally: Tally,
    *,
    recheck_unknown: bool,
) -> Outcome:
    posted_before = list(run.state.posted)
    if tc.status != APPROVED:
        if posted_before:
            _drift(
                ctx,
                run.key,
                f"timecard {tc.id} was approved and posted to Spectrum "
                f"(entries {', '.join(posted_before)}) but is now {tc.status!r}; the pre-time "
                "rows stay in Spectrum: remove them in Approve Pre-Time Import if the time "
                "is void",
            )
        raise RecordSkipped(
            f"timecard {tc.id} is {tc.status!r}; only approved time goes to payroll",
            field="status",
            value=tc.status,
        )
    employee = employee_code(tc, external_id_key=conn.external_id_key, rules=conn.rules.timecards)
    if ctx.infolink_for(conn.name).find_employee(employee) is None:
        raise PrerequisiteMissing(
            f"timecard {tc.id}: employee {employee!r} of technician {_who(tc)} is not in "
            "Spectrum (PR employee master): add the employee in Spectrum or correct the "
            f"technician's externalIds[{conn.external_id_key!r}] / timecards.employee_map, then "
            "replay the timecard",
            field="Employee_Code",
            value=employee,
            # the office fixes the technician (user externalIds) once the employee exists: that
            # user's `updated` webhook wakes this card (tasks/heal.py)
            waits_on=f"user:{tc.user.id}",
        )
    run.state.employee = employee

    ids = [entry_source_id(tc.id, e.id) for e in tc.entries]
    known = ctx.ledger.get_many(conn.name, ENTRY_RECORD_TYPE, ids)
    jobs = _Jobs(ctx, conn)
    retry_reasons: list[str] = []
    for entry, sid in zip(tc.entries, ids, strict=True):
        rec = known.get(sid)
        if rec is not None and rec.status is Status.DONE:
            tally.already.append(sid)
            _check_drift(ctx, conn, run.key, tc, entry, employee, jobs, rec, tally)
            continue
        if rec is not None and rec.status is Status.UNKNOWN and not recheck_unknown:
            tally.unknown.append(sid)
            continue
        try:
            outcome = _sync_entry(
                ctx,
                conn,
                tc,
                entry,
                employee,
                jobs,
                reclaim=rec is not None and rec.status in TERMINAL,
            )
        except TransientError as exc:
            # the entry is left pending by the pipeline; the others still get their turn
            tally.retrying.append(sid)
            retry_reasons.append(f"{sid}: {exc}")
            continue
        tally.add(sid, outcome)

    posted = sorted(
        {*posted_before, *tally.posted, *tally.adopted, *tally.already}, key=_entry_order
    )
    gone = [sid for sid in posted if sid not in ids]
    for sid in gone:
        _drift(
            ctx,
            RecordKey(conn.name, ENTRY_RECORD_TYPE, sid),
            f"timecard entry {sid} was posted to Spectrum (Message {_marker(sid)!r}) but is "
            "no longer on the approved timecard; check the pre-time row in Spectrum",
        )
        tally.drift.append(sid)
    run.state.posted = posted
    run.state.entries = ids
    run.state.last = tally.counts()
    if retry_reasons:
        run.save()
        n = len(retry_reasons)
        raise TransientError(
            f"timecard {tc.id}: {n} entr{'y' if n == 1 else 'ies'} will be retried: "
            f"{'; '.join(retry_reasons)}"[:1500]
        )
    summary = _summary(tally)
    if tally.failed or tally.unknown:
        reason = (
            f"timecard {tc.id}: {summary}. Failed: {', '.join(tally.failed) or '-'}; unknown: "
            f"{', '.join(tally.unknown) or '-'} (see each timecard_entry record; after fixing, "
            "replay this timecard)"
        )
        run.mark(Status.FAILED, error_kind="entries", reason=reason)
        return Outcome(Result.FAILED, run.key, None, reason)
    result = Result.SYNCED if tally.posted or tally.adopted else Result.UNCHANGED
    return run.done(result, employee, message=summary)


def _entry_order(sid: str) -> tuple[int, int]:
    card, _, entry = sid.partition(":")
    return (int(card), int(entry)) if card.isdigit() and entry.isdigit() else (0, 0)


def _marker(sid: str) -> str:
    card, entry = _entry_order(sid)
    return entry_marker(card, entry) if card and entry else ""


def _summary(tally: Tally) -> str:
    return ", ".join(f"{n} {k}" for k, n in tally.counts().items()) or "no entries"


def _drift(ctx: SyncContext, key: RecordKey, message: str) -> None:
    record_alert(ctx, key, "drift", message)
    ctx.ledger.audit(system="stsync", service="drift", outcome="drift", key=key, detail=message)


def _check_drift(
    ctx: SyncContext,
    conn: ConnectionSettings,
    card_key: RecordKey,
    tc: Timecard,
    entry: Entry,
    employee: str,
    jobs: _Jobs,
    rec: Record,
    tally: Tally,
) -> None:
    """A posted entry whose request would now differ was edited after posting: tell a person."""
    try:
        request = map_entry(ctx, conn, tc, entry, employee, jobs, sync_missing_jobs=False)
    except SyncError:
        return  # cannot map it now (a rule changed, the job went away): nothing to compare
    if rec.payload_digest and request.digest() != rec.payload_digest:
        hours = request.values.get("Hours_Employee", "?")
        _drift(
            ctx,
            rec.key,
            f"timecard entry {rec.key.source_id} changed after it was posted to Spectrum "
            f"(Message {request.values['Message']!r}; now {hours} h, pay type "
            f"{request.values['Pay_Type']}, job {request.values.get('Job_Number', '-')}); "
            "stsync does not post it again: correct the pre-time row in Spectrum "
            f"[digest {request.digest()[:12]}]",
        )
        tally.drift.append(rec.key.source_id)


# --- one entry ------------------------------------------------------------------------------------
def _sync_entry(
    ctx: SyncContext,
    conn: ConnectionSettings,
    tc: Timecard,
    entry: Entry,
    employee: str,
    jobs: _Jobs,
    *,
    reclaim: bool,
) -> Outcome:
    key = RecordKey(conn.name, ENTRY_RECORD_TYPE, entry_source_id(tc.id, entry.id))

    def body(run: Run[TimecardEntryState]) -> Outcome:
        return _post_entry(ctx, conn, run, tc, entry, employee, jobs)

    return run_record(ctx, key, body, state=TimecardEntryState, reclaim_done=reclaim)


def _post_entry(
    ctx: SyncContext,
    conn: ConnectionSettings,
    run: Run[TimecardEntryState],
    tc: Timecard,
    entry: Entry,
    employee: str,
    jobs: _Jobs,
) -> Outcome:
    record = f"timecard {tc.id} entry {entry.id}"
    heal.stamp(run.state, entry, conn, ENTRY_RECORD_TYPE)
    request = map_entry(ctx, conn, tc, entry, employee, jobs)
    digest = request.digest()
    marker = request.values["Message"]
    if run.state.posted:
        # posted by an attempt that died before marking the row done
        return run.done(Result.UNCHANGED, marker, digest=run.state.digest or digest)
    sent_at = run.state.sent_at
    if sent_at is not None:
        found = _look_for_marker(ctx, conn, run, record, marker, sent_at)
        if found is not None:
            return found
    run.state.sent_at = _now()
    run.state.digest = digest
    run.save(step="sending")  # the recovery point: from here on, a retry looks for the marker
    try:
        ctx.spectrum_writes(conn.name).put(request)
    except AmbiguousWriteError:
        raise  # may have landed: the retry looks for the marker before sending again
    except PermanentError:
        # Spectrum refused it: nothing landed, so the next attempt need not look first
        run.state.sent_at = None
        raise
    run.state.posted = True
    return run.done(Result.SYNCED, marker, digest=digest)


def _look_for_marker(
    ctx: SyncContext,
    conn: ConnectionSettings,
    run: Run[TimecardEntryState],
    record: str,
    marker: str,
    sent_at: float,
) -> Outcome | None:
    """After an attempt whose outcome is unknown: adopt the row if Spectrum has it.

    Returns None when it is safe to send (the marker is not there), an ``unknown`` outcome when
    Info-Link cannot be read. A check too soon after the send could miss a write that is still
    being applied, so it waits until the client's read timeout has passed since the send.
    """
    wait = sent_at + conn.timeout_s - _now()
    if wait > 0:
        raise TransientError(
            f"{record}: the last send is {conn.timeout_s - wait:.0f}s old; looking for marker "
            f"{marker!r} only once it could no longer land",
            retry_after=wait,
        )
    try:
        rows = ctx.infolink_for(conn.name).find_pre_time(marker)
    except (TransientError, PermanentError) as exc:
        reason = (
            f"{record}: sent to Spectrum at {datetime.fromtimestamp(sent_at, UTC):%Y-%m-%d %H:%M} "
            f"UTC without a clear answer, and Info-Link cannot be read to check ({exc}). Not "
            f"retried, to avoid paying the time twice: look in Spectrum's Approve Pre-Time "
            f"Import for Message {marker!r}; if it is missing, replay the timecard with "
            "recheck of unknown entries"
        )
        run.mark(Status.UNKNOWN, error_kind="ambiguous", reason=reason)
        record_alert(ctx, run.key, "unknown", reason)
        return Outcome(Result.UNKNOWN, run.key, None, reason)
    ctx.ledger.audit(
        system="stsync",
        service="find_pre_time",
        outcome="found" if rows else "absent",
        key=run.key,
        detail=f"Message {marker!r}: {len(rows)} row(s)",
    )
    if not rows:
        return None
    if len(rows) > 1:
        _drift(
            ctx,
            run.key,
            f"{record}: Spectrum holds {len(rows)} pre-time rows with Message "
            f"{marker!r} (the same time more than once); delete the extra rows in Spectrum",
        )
    run.state.posted = True
    return run.done(
        Result.ADOPTED,
        marker,
        digest=run.state.digest or "",
        message=f"found {marker!r} in Spectrum",
    )


# --- the weekly catch-up (F8) ---------------------------------------------------------------------
@dataclass
class CatchUpSummary:
    """What a catch-up run found and did (entries, unless named otherwise)."""

    connection: str
    since: str
    until: str
    cards: int = 0
    found: int = 0
    already_synced: int = 0
    posted: int = 0
    failed: int = 0
    retrying: int = 0
    #: cards queued for a worker (the scheduled run queues instead of posting itself)
    enqueued: int = 0
    pages: int = 0
    errors: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def line(self) -> str:
        return (
            f"{self.connection}: {self.cards} timecard(s), {self.found} entries found, "
            f"{self.already_synced} already synced, {self.posted} posted, {self.failed} "
            f"failed, {self.retrying} to retry, {self.enqueued} card(s) queued"
        )


Progress = Callable[[int, int], None]


def _unsettled(ids: Iterable[str], known: dict[str, Record]) -> list[str]:
    return [sid for sid in ids if (rec := known.get(sid)) is None or rec.status not in SETTLED]


def run_catch_up(
    ctx: SyncContext,
    since: datetime,
    until: datetime,
    progress: Progress | None = None,
    *,
    connection: str | None = None,
    inline: bool = True,
) -> CatchUpSummary:
    """Re-read the timecards approved in [since, until] and sync every entry not yet settled.

    Page by page: ONE ledger query per page finds the entries already held (done, skipped or
    unknown); cards with nothing left are not touched. The rest are synced here (``inline``, the
    CLI) or queued as ``sync.timecard`` for the workers (the scheduled run, which must stay within
    a task's time limit). ``progress(cards_done, cards_found_so_far)`` after each card. The summary
    is logged and written to the audit table (service ``timecard_catch_up``).
    """
    if since.tzinfo is None or until.tzinfo is None:
        raise ValueError("run_catch_up needs aware datetimes")
    conn = ctx.connection(connection)
    summary = CatchUpSummary(conn.name, since.isoformat(), until.isoformat())
    after, before = int(since.timestamp()), int(until.timestamp())
    for page in ctx.st.iter_timecard_pages(after, before):
        summary.pages += 1
        ids = {tc.id: [entry_source_id(tc.id, e.id) for e in tc.entries] for tc in page}
        known = ctx.ledger.get_many(
            conn.name, ENTRY_RECORD_TYPE, [sid for group in ids.values() for sid in group]
        )
        total = summary.cards + len(page)
        for tc in page:
            summary.cards += 1
            summary.found += len(ids[tc.id])
            todo = _unsettled(ids[tc.id], known)
            summary.already_synced += len(ids[tc.id]) - len(todo)
            if todo:
                _catch_up_card(ctx, conn.name, tc, todo, summary, inline=inline)
            if progress is not None:
                progress(summary.cards, total)
    ctx.ledger.audit(
        system="stsync",
        service="timecard_catch_up",
        outcome="ok" if not (summary.failed or summary.errors) else "partial",
        detail=json.dumps(summary.as_dict(), default=str),
    )
    log.info(
        "timecard catch-up: %s",
        summary.line(),
        extra={
            "connection": conn.name,
            "outcome": "catch_up",
            **{k: v for k, v in summary.as_dict().items() if isinstance(v, int)},
        },
    )
    return summary


def _catch_up_card(
    ctx: SyncContext,
    connection: str,
    tc: Timecard,
    todo: list[str],
    summary: CatchUpSummary,
    *,
    inline: bool,
) -> None:
    timecard_id = tc.id
    if not inline:
        ctx.enqueue(TASK_NAME, (timecard_id, connection))
        summary.enqueued += 1
        return
    try:
        # the card as this page listed it: no second read of it
        outcome, tally = sync_timecard_tally(ctx, timecard_id, connection, timecard=tc)
    except TransientError as exc:
        summary.retrying += len(todo)
        summary.errors.append(f"timecard {timecard_id}: {exc}"[:500])
        return
    summary.posted += len(tally.posted) + len(tally.adopted)
    summary.retrying += len(tally.retrying)
    if outcome.result is Result.FAILED and not (tally.failed or tally.unknown):
        # the whole card stopped (no employee, not approved any more ...): its entries failed
        summary.failed += len(todo)
        summary.errors.append(f"timecard {timecard_id}: {outcome.message}"[:500])
    else:
        summary.failed += len(tally.failed) + len(tally.unknown)


# --- Celery tasks ---------------------------------------------------------------------------------
@sync_task(TASK_NAME, RECORD_TYPE)
def push_timecard_to_spectrum(timecard_id: int, connection: str | None = None) -> str:
    """Post one approved ServiceTrade timecard's entries to Spectrum payroll pre-time.

    Idempotent per entry (ledger + Message marker): a redelivered or re-approved card posts only
    what is missing. Retries on TransientError with jittered backoff; an entry whose write had an
    unknown outcome is checked by marker before any new send.
    """
    return sync_timecard(get_context(), timecard_id, connection).result


@app.task(
    name=CATCH_UP_TASK_NAME,
    queue=Queue.SCHEDULE.value,
    acks_late=True,
    ignore_result=True,
    autoretry_for=(TransientError,),
    retry_backoff=30,
    retry_backoff_max=900,
    retry_jitter=True,
    max_retries=8,
)
def timecard_catch_up(connection: str | None = None) -> dict[str, Any]:
    """Weekly catch-up (Beat): queue a sync of every approved timecard of the past week that
    still has entries to post. Idempotent: settled entries are skipped, queued cards are
    re-examined entry by entry. A run that ServiceTrade cuts short (TransientError) is retried
    with backoff for about an hour rather than waiting a week (each attempt recomputes the
    window, which still starts seven local days before the day it runs)."""
    ctx = get_context()
    since, until = catch_up_window(datetime.now(UTC), ctx.settings.timezone)
    return run_catch_up(ctx, since, until, connection=connection, inline=False).as_dict()
