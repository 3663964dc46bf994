"""The steps every record sync shares: claim, start cap, recovery points, create-or-adopt, outcome.

A ``sync_<record>`` function hands its record-specific body to ``run_record``. The body works on
a ``Run[S]`` (the claimed ledger row plus its typed recovery state ``S``, a ``tasks.state.State``
model saved at each recovery point) and returns an ``Outcome``. ``run_record`` turns what the
body raises into ledger states:

- ``RecordSkipped``       -> ``skipped`` with the reason
- ``PrerequisiteMissing`` -> ``failed`` (kind ``prerequisite``) + an alert for a person
- ``AuthorizationError``  -> ``pending`` (kind ``paused``): the connection pauses, one alert an
                             hour, and resumes with the next success (``tasks/_connection.py``)
- ``PermanentError``      -> ``failed`` with the reason (+ the body's ``on_permanent`` hook; an
                             ``InfoLinkSchemaError`` also alerts the connection once)
- ``TransientError``      -> ``pending`` with the reason and a due time, re-raised so Celery retries
                             with backoff; when Celery's retries run out the task's ``on_failure``
                             makes it ``retry_later`` (tasks/_celery.py) and the Beat re-enqueuer
                             (tasks/requeue.py) tries again with growing delays. Once
                             ``reliability.retry_later_period_s`` has passed since the first
                             transient failure of the streak, the next transient failure is final:
                             ``failed`` (kind ``retries_exhausted``), one alert, and the body's
                             ``on_permanent`` hook (the record type's own failure path)
- Celery's ``SoftTimeLimitExceeded`` -> the same, raised as ``TransientError`` (steps resume)
- the ledger or the broker not answering (``worker.infra``) -> the same
- anything else           -> ``failed`` (kind ``internal``), re-raised so it is visible

Concurrency: only the claim holder writes. A record held by a live worker raises ``RecordBusy``
(transient: retried later). A holder that died is detected (lease expired, or same host and the
process is gone) and counted; after ``reliability.start_cap`` such crashes the record is failed
instead of looping (redeliveries do not count toward Celery's ``max_retries``).
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Generic, TypeVar

from celery.exceptions import SoftTimeLimitExceeded

from clients.errors import (
    AlreadyExists,
    AuthorizationError,
    InfoLinkSchemaError,
    PermanentError,
    PrerequisiteMissing,
    RecordBusy,
    RecordSkipped,
    TransientError,
)
from clients.spectrum.models import SpectrumRequest
from tasks import _connection, heal
from tasks.state import CustomerState, Result, State
from worker.context import SyncContext, working_on
from worker.infra import INFRASTRUCTURE_ERRORS, describe
from worker.ledger import PREREQUISITE, TERMINAL, Record, RecordKey, Status

log = logging.getLogger("stsync.sync")


class RetryPeriodOver(PermanentError):
    """A record failed on transient causes for longer than ``reliability.retry_later_period_s``:
    it fails for good, through its record type's own failure path."""


S = TypeVar("S", bound=State)
M = TypeVar("M", bound=CustomerState)


@dataclass(frozen=True)
class Outcome:
    """What a sync did (``Result``), with the Spectrum key and a message for people."""

    result: Result
    key: RecordKey
    spectrum_key: str | None = None
    message: str = ""

    @property
    def ok(self) -> bool:
        return self.result.ok


@dataclass
class Run(Generic[S]):
    """One claimed attempt at a record, with its typed recovery state."""

    ctx: SyncContext
    key: RecordKey
    record: Record
    state: S
    recovered: bool = False
    #: the row as the claim found it, before this attempt took it
    previous: Record | None = None

    @property
    def connection(self) -> str:
        return self.key.connection

    def save(self, *, step: str | None = None, spectrum_key: str | None = None) -> None:
        """A recovery point: persist progress before the next external write."""
        self.record = self.ctx.ledger.update_progress(
            self.key, step=step, spectrum_key=spectrum_key, state=self.state.dump()
        )

    def done(
        self,
        result: Result,
        spectrum_key: str | None,
        *,
        digest: str | None = None,
        message: str = "",
    ) -> Outcome:
        self.record = self.ctx.ledger.mark_done(
            self.key, spectrum_key=spectrum_key, payload_digest=digest, state=self.state.dump()
        )
        return Outcome(result, self.key, spectrum_key, message)

    def mark(self, status: Status, *, error_kind: str | None, reason: str | None) -> None:
        """Record ``status`` with the reason and the state as it is now."""
        self.ctx.ledger.mark(
            self.key, status, error_kind=error_kind, reason=reason, state=self.state.dump()
        )

    def step_done(self, step: str) -> bool:
        return step in self.state.steps

    def finish_step(self, step: str) -> None:
        self.pass_step(step)
        self.save(step=step)

    def pass_step(self, step: str) -> None:
        """``step`` is passed, saved with the row's next write: for a step whose very next
        ledger write ends the sync (``done``), which saves the state anyway."""
        if step not in self.state.steps:
            self.state.steps = [*self.state.steps, step]


Body = Callable[[Run[S]], Outcome]
OnPermanent = Callable[[Run[S], PermanentError], None]


def problem_key(text: str) -> str:
    """A short stable digest of a problem, so one alert/comment is sent per distinct problem."""
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def record_alert(ctx: SyncContext, key: RecordKey, kind: str, message: str) -> bool:
    """Store an alert for a person (the alerts task mails unsent ones); True when new."""
    new = ctx.ledger.record_alert(key, kind=kind, problem_key=problem_key(message), message=message)
    if new:
        log.warning(
            "alert recorded", extra={"record": str(key), "alert_kind": kind, "outcome": "alert"}
        )
    return new


def run_record(
    ctx: SyncContext,
    key: RecordKey,
    body: Body[S],
    *,
    state: type[S],
    reclaim_done: bool = False,
    on_permanent: OnPermanent[S] | None = None,
    reclaim: Callable[[Record], bool] | None = None,
) -> Outcome:
    """Claim ``key``, run ``body`` on its recovery state (read as ``state``), record the outcome.
    See the module docstring.

    ``reclaim`` decides, for a terminal row, whether it is run again (heal on change,
    ``tasks/heal.py``); ``reclaim_done=True`` always runs it again (replay).
    """
    rel = ctx.settings.reliability
    started = time.monotonic()
    if not reclaim_done and reclaim is not None:
        before = ctx.ledger.get(key)
        reclaim_done = before is not None and before.status in TERMINAL and reclaim(before)
    claim = ctx.ledger.claim(key, lease_s=rel.lease_s, reclaim_done=reclaim_done)
    rec = claim.record
    if not claim.held:
        if rec.status is Status.IN_FLIGHT:
            wait = 5.0
            if rec.lease_until is not None:
                # a live holder usually finishes in seconds (two tasks of one chain racing on a
                # shared customer or site): look again soon rather than when its lease would
                # end (up to lease_s, 330 s) now that the retry countdown honours retry_after
                lease_left = (rec.lease_until - datetime.now(UTC)).total_seconds()
                wait = max(1.0, min(lease_left, BUSY_RECHECK_S))
            raise RecordBusy(f"{key} is being synced by {rec.lease_owner}", retry_after=wait)
        result = {Status.DONE: Result.UNCHANGED, Status.SKIPPED: Result.SKIPPED}.get(
            rec.status, Result.FAILED
        )
        ctx.ledger.audit(
            system="stsync",
            service="noop",
            outcome="noop",
            key=key,
            detail=f"already {rec.status.value}; nothing sent",
        )
        return Outcome(result, key, rec.spectrum_key, rec.last_error or "")
    if rec.crashes >= rel.start_cap:
        reason = (
            f"{key}: the sync started {rec.attempts} times and its worker died each time "
            f"({rec.crashes} crashes); stopped so it cannot loop. Check the worker logs, fix, "
            "then `stsync retry`"
        )
        ctx.ledger.mark(key, Status.FAILED, error_kind="poison", reason=reason, state=rec.state)
        record_alert(ctx, key, "poison", reason)
        return Outcome(Result.FAILED, key, rec.spectrum_key, reason)

    run = Run(
        ctx, key, rec, state.load(rec.state), recovered=claim.recovered, previous=claim.previous
    )
    if claim.recovered:
        run.state.recovered += 1
    with working_on(key):
        try:
            outcome = body(run)
        except RecordSkipped as exc:
            run.mark(Status.SKIPPED, error_kind="skipped", reason=str(exc))
            outcome = Outcome(Result.SKIPPED, key, rec.spectrum_key, str(exc))
        except PrerequisiteMissing as exc:
            run.state.waits_on = heal.waits_on(exc)
            run.mark(Status.FAILED, error_kind=PREREQUISITE, reason=str(exc))
            record_alert(ctx, key, "prerequisite", str(exc))
            if on_permanent:
                _notify(ctx, run, on_permanent, exc)
            outcome = Outcome(Result.FAILED, key, rec.spectrum_key, str(exc))
        except AuthorizationError as exc:  # the connection's problem: pause it (tasks/_connection)
            reason = _connection.credentials_refused(ctx, key, exc, run.mark)
            outcome = Outcome(Result.PAUSED, key, rec.spectrum_key, reason)
        except PermanentError as exc:
            run.mark(Status.FAILED, error_kind=type(exc).__name__, reason=str(exc))
            if isinstance(exc, InfoLinkSchemaError):
                _connection.schema_problem(ctx, key, exc)
            if on_permanent:
                _notify(ctx, run, on_permanent, exc)
            outcome = Outcome(Result.FAILED, key, rec.spectrum_key, str(exc))
        except TransientError as exc:
            if _retry_period_over(ctx, rec):
                outcome = _give_up(ctx, run, exc, on_permanent)
            else:
                _wait_for_retry(ctx, run, str(exc), exc.retry_after)
                _log(key, "retry", started, rec.attempts, str(exc))
                raise
        except SoftTimeLimitExceeded as exc:
            # out of time (a slow Spectrum, a wait for a write slot): every step is resumable,
            # so this is a retry like any transient error, not a broken record
            reason = (
                f"{key}: stopped by the task's soft time limit "
                f"({rel.task_soft_time_limit_s}s); will retry"
            )
            if _retry_period_over(ctx, rec):
                outcome = _give_up(ctx, run, TransientError(reason), on_permanent)
            else:
                _wait_for_retry(ctx, run, reason, None)
                _log(key, "retry", started, rec.attempts, reason)
                raise TransientError(reason) from exc
        except INFRASTRUCTURE_ERRORS as exc:
            # the ledger or the broker hiccupped: a transient cause like any other
            reason = f"{key}: {describe(exc)}; will retry"
            # the ledger may be away: a restart takes seconds, so keep trying to release the
            # claim for a while; a claim left in_flight under this live process answers every
            # retry "busy" until its lease ends (seen in the soak's PostgreSQL crash: the
            # retries ran out first). After that the lease runs out and the row is taken over.
            _release_when_back(
                lambda: _wait_for_retry(ctx, run, reason, None),
                deadline=time.monotonic()
                + min(LEDGER_RELEASE_WAIT_S, rel.task_soft_time_limit_s / 4),
            )
            _log(key, "retry", started, rec.attempts, reason)
            raise TransientError(reason) from exc
        except Exception as exc:
            run.mark(
                Status.FAILED,
                error_kind="internal",
                reason=f"internal error: {type(exc).__name__}: {exc}",
            )
            _log(key, "internal_error", started, rec.attempts, repr(exc))
            raise
    _log(key, outcome.result, started, rec.attempts, outcome.message)
    if outcome.ok:
        _connection.resume_if_paused(ctx, key.connection)
    return outcome


#: the longest a task waits before looking again at a record another live worker holds
BUSY_RECHECK_S = 10.0

#: how long a sync whose ledger went away keeps trying to release its claim
LEDGER_RELEASE_WAIT_S = 15.0


def _release_when_back(release: Callable[[], None], *, deadline: float) -> bool:
    """Run ``release`` as soon as the ledger answers again (True), or give up at ``deadline``
    (False: the claim then ends with its lease, as a crashed holder's)."""
    while True:
        try:
            release()
            return True
        except INFRASTRUCTURE_ERRORS:
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.5)


def _wait_for_retry(
    ctx: SyncContext,
    run: Run[S],
    reason: str,
    retry_after: float | None,
    *,
    since: datetime | None = None,
) -> None:
    """Back to ``pending`` for Celery's retry, due (for the re-enqueuer) once that retry should
    have run: the pending grace, plus a server's ``Retry-After`` when it asked for longer."""
    due = datetime.now(UTC) + timedelta(
        seconds=ctx.settings.reliability.pending_due_after_s + (retry_after or 0.0)
    )
    ctx.ledger.mark(
        run.key,
        Status.PENDING,
        error_kind="transient",
        reason=reason,
        state=run.state.dump(),
        next_attempt_at=due,
        transient=True,
        retry_since=since,
    )


def _retry_period_over(ctx: SyncContext, rec: Record) -> bool:
    """Has this record been failing on transient causes for the whole retry_later period?"""
    if rec.retry_since is None:
        return False
    period = timedelta(seconds=ctx.settings.reliability.retry_later_period_s)
    return datetime.now(UTC) - rec.retry_since >= period


def _give_up(
    ctx: SyncContext, run: Run[S], exc: TransientError, on_permanent: OnPermanent[S] | None
) -> Outcome:
    """The retry_later period is over: fail for good through the record's own failure path."""
    rec = run.record
    hours = ctx.settings.reliability.retry_later_period_s / 3600
    since = rec.retry_since.strftime("%Y-%m-%d %H:%M UTC") if rec.retry_since else "?"
    reason = (
        f"{run.key}: still failing on a transient cause after {hours:g} h of retries "
        f"(since {since}): {exc}. Check that ServiceTrade and Spectrum are reachable, then "
        "`stsync retry`"
    )
    run.mark(Status.FAILED, error_kind="retries_exhausted", reason=reason)
    # one alert per record and streak, whatever the last error said
    if ctx.ledger.record_alert(
        run.key,
        kind="retries_exhausted",
        problem_key=problem_key(f"{run.key}:retries_exhausted:{since}"),
        message=reason,
    ):
        log.warning(
            "alert recorded",
            extra={"record": str(run.key), "alert_kind": "retries_exhausted", "outcome": "alert"},
        )
    if on_permanent:
        _notify(ctx, run, on_permanent, RetryPeriodOver(reason))
    return Outcome(Result.FAILED, run.key, rec.spectrum_key, reason)


def _notify(ctx: SyncContext, run: Run[S], hook: OnPermanent[S], exc: PermanentError) -> None:
    """Tell people about a permanent failure (the body's ``on_permanent`` hook).

    The failure is already recorded. A notification that fails for good (e.g. the record was
    deleted) is logged and dropped: it must not turn a permanent failure into a retry loop. One
    that fails *transiently* (ServiceTrade briefly unavailable while commenting or setting the
    invoice status) must not be lost: the record goes back to ``pending`` and the error is
    re-raised, so the task's retry runs the body and this hook again (the hooks post each distinct
    comment once).
    """
    try:
        hook(run, exc)
    except TransientError as notify_exc:
        _wait_for_retry(
            ctx,
            run,
            f"{exc} (telling ServiceTrade failed, will retry: {notify_exc})",
            notify_exc.retry_after,
            # the streak goes on: a final failure whose telling failed is told on the next try
            since=run.record.retry_since,
        )
        raise
    except Exception:  # noqa: BLE001
        log.exception("failure notification failed", extra={"record": str(run.key)})


def _log(key: RecordKey, outcome: str, started: float, attempt: int, message: str) -> None:
    ok = outcome in ("synced", "adopted", "unchanged", "updated", "removed", "skipped", "retry")
    log.log(
        logging.INFO if ok else logging.WARNING,
        "%s %s",
        key,
        outcome,
        extra={
            "record_type": key.record_type,
            "record_id": key.source_id,
            "connection": key.connection,
            "attempt": attempt,
            "outcome": outcome,
            "duration_ms": round((time.monotonic() - started) * 1000, 1),
            "detail": message[:500],
        },
    )


# --- create-or-adopt -------------------------------------------------------------------------
Finder = Callable[[], dict[str, Any] | None]
Matcher = Callable[[dict[str, Any]], bool]


def create_or_adopt(
    run: Run[S],
    request: SpectrumRequest,
    *,
    find: Finder,
    matches: Matcher,
    what: str,
) -> str:
    """Send an add-only request once; adopt what Spectrum already has when it is ours.

    A sent marker (``state.mark_sent``) is saved *before* the write. When it is set on entry (an
    earlier attempt sent the request and then failed or crashed), Spectrum is asked first: a
    matching record is adopted instead of added again. "Already exists" on the add is resolved the
    same way. A record under our code that does not match is a collision, reported, never
    overwritten.
    Returns ``"created"`` or ``"adopted"``.
    """
    unique = str(request.values.get(_unique_column(request), ""))
    if run.state.was_sent(request.service, unique):
        existing = find()
        if existing is not None:
            if matches(existing):
                return "adopted"
            raise PermanentError(_collision(what, request), field=_unique_column(request))
    run.state.mark_sent(request.service, unique)
    run.save()
    try:
        run.ctx.spectrum_writes(run.connection).put(request)
    except AlreadyExists as exc:
        existing = find()
        if existing is not None and matches(existing):
            return "adopted"
        raise PermanentError(_collision(what, request), field=_unique_column(request)) from exc
    return "created"


def _unique_column(request: SpectrumRequest) -> str:
    from clients.spectrum.services import UNIQUE_KEYS

    return UNIQUE_KEYS.get(request.service, "")


def _collision(what: str, request: SpectrumRequest) -> str:
    col = _unique_column(request)
    return (
        f"{what}: Spectrum already has {col} {request.values.get(col)!r} for a different record; "
        "stsync never overwrites it. Check the code range / prefix in the configuration"
    )


def same_text(a: object, b: object) -> bool:
    """Compare Spectrum text values the way Spectrum stores them (trimmed, case-insensitive)."""
    return str(a or "").strip().upper() == str(b or "").strip().upper()


# --- codes -----------------------------------------------------------------------------------
def allocate_code(
    run: Run[S],
    *,
    kind: str,
    start: int,
    end: int,
    render: Callable[[int], str],
    taken_in_spectrum: Callable[[str], bool],
    max_skips: int = 1000,
) -> str:
    """The record's code: the one stored on its ledger row, else the next free one from the range.

    The code is saved on the row *before* any remote write (it is the client token that makes a
    retry after a timeout find the same record). Codes Spectrum already uses for records stsync did
    not create are skipped, never reused.
    """
    if run.record.spectrum_key:
        return run.record.spectrum_key
    for _ in range(max_skips):
        code = render(run.ctx.ledger.next_code_value(run.connection, kind, start=start, end=end))
        if not taken_in_spectrum(code):
            run.save(spectrum_key=code)
            return code
        log.warning(
            "code already used in Spectrum; skipped", extra={"record": str(run.key), "code": code}
        )
    raise PermanentError(
        f"{run.key}: {max_skips} consecutive {kind} codes are already used in Spectrum; "
        "move the configured range",
        field=f"{kind}.codes",
    )


# --- create-once master records (customers, sites) -------------------------------------------
Build = Callable[[str], tuple[SpectrumRequest, list[str]]]


@dataclass(frozen=True)
class MasterRecord:
    """How one kind of create-once Spectrum master record is coded, found and matched."""

    kind: str  # ledger record type and code-counter kind ("customer", "site")
    st_entity: str  # ServiceTrade entity for the external-id write-back ("company", "location")
    start: int
    end: int
    render: Callable[[int], str]
    find: Callable[[str], dict[str, Any] | None]
    #: does Spectrum's row ``row`` stand for what ``request`` would create?
    matches: Callable[[dict[str, Any], SpectrumRequest], bool]


def create_master_record(
    run: Run[M],
    spec: MasterRecord,
    *,
    st_id: int,
    external_ids: dict[str, str],
    build: Build,
    what: str,
) -> Outcome:
    """Create a master record once: adopt a known mapping, else allocate a code, create-or-adopt,
    then write the code back to ServiceTrade. Each step is a recovery point."""
    conn = run.ctx.connection(run.connection)
    known = external_ids.get(conn.external_id_key)
    if known and not run.record.spectrum_key and spec.find(known):
        # mapped before (an earlier integration or by hand): adopt, send nothing
        run.state.how = "adopted"
        return run.done(Result.ADOPTED, known, message="existing externalIds mapping")
    code = allocate_code(
        run,
        kind=spec.kind,
        start=spec.start,
        end=spec.end,
        render=spec.render,
        taken_in_spectrum=lambda c: spec.find(c) is not None,
    )
    request, adjustments = build(code)
    if not run.step_done("spectrum"):
        how = create_or_adopt(
            run,
            request,
            find=lambda: spec.find(code),
            matches=lambda row: spec.matches(row, request),
            what=what,
        )
        run.state.how = how
        run.state.adjustments = adjustments
        run.finish_step("spectrum")
    if not run.step_done("writeback"):
        run.ctx.st_writes.set_external_id(spec.st_entity, st_id, conn.external_id_key, code)
        run.finish_step("writeback")
    result = Result.ADOPTED if run.state.how == "adopted" else Result.SYNCED
    return run.done(result, code, digest=request.digest())


def ensure_done(ctx: SyncContext, key: RecordKey, sync: Callable[[], Outcome], *, what: str) -> str:
    """The Spectrum key of a prerequisite, syncing it first when needed (chains)."""
    rec = ctx.ledger.get(key)
    if rec is not None and rec.status is Status.DONE and rec.spectrum_key:
        return rec.spectrum_key
    outcome = sync()
    if outcome.ok and outcome.spectrum_key:
        return outcome.spectrum_key
    raise PrerequisiteMissing(
        f"{what} is not in Spectrum: {outcome.message or outcome.result}",
        field=key.record_type,
        value=key.source_id,
    )
