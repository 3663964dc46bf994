"""Never final for a transient cause (issue 13), the re-enqueuer and its invariant, Retry-After
(issue 17), against the in-process sandbox with a real SQLite ledger.

Celery runs here as ``Task.apply`` (the worker's tracer in-process: autoretry, ``retry``,
``on_failure`` and ``after_return`` all run; countdowns are not waited for), and Beat is the test
calling ``run_requeue`` at the simulated minute it would.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import fakeredis
import pytest
from freezegun import freeze_time
from sqlalchemy import update

from clients.errors import RateLimited, TransientError
from clients.spectrum import infolink_schema as il
from mappers.timecard import entry_marker
from tasks._celery import apply_reliability, retry_countdown
from tasks._pipeline import Outcome, Run, run_record
from tasks.customer import sync_customer
from tasks.invoice import sweep_pending_invoices, sync_invoice
from tasks.job import sync_job
from tasks.requeue import invariant_breaches, invariant_tolerance_s, run_requeue, task_for
from tasks.site import sync_site
from tasks.state import State
from worker.celery_app import app
from worker.context import set_process_context
from worker.ledger import WAITING, RecordKey, Status, sync_record
from worker.pacing import AccountPause
from worker.settings import ReliabilitySettings

Queue = list[tuple[str, tuple[Any, ...]]]


@pytest.fixture
def worker(ctx: Any) -> Iterator[Any]:
    """This process acts as the worker: tasks find ``ctx`` through ``get_context()``."""
    before = ReliabilitySettings(max_retries=int(app.tasks["sync.customer"].max_retries or 0))
    apply_reliability(ctx.settings.reliability)
    set_process_context(ctx)
    yield ctx
    set_process_context(None)
    apply_reliability(before)


def drain(queue: Queue, *, limit: int = 500) -> int:
    """Run every queued message (and what they queue) as a worker would; returns how many."""
    n = 0
    while queue:
        name, args = queue.pop(0)
        app.tasks[name].apply(args=args)
        n += 1
        assert n < limit, f"queue does not drain: {queue[:5]}"
    return n


def key(record_type: str, source_id: object) -> RecordKey:
    return RecordKey("main", record_type, str(source_id))


def boom(message: str = "Spectrum: Error executing Web Service", **kw: Any) -> Any:
    def body(run: Run[State]) -> Outcome:
        raise TransientError(message, **kw)

    return body


def waiting_rows(ctx: Any) -> list[Any]:
    return ctx.ledger.list_records(statuses=WAITING, limit=100_000)


def comments_on(st_state: Any, entity_type: int, entity_id: int) -> list[str]:
    return [
        c["content"]
        for c in st_state.all("comment")
        if c.get("entityType") == entity_type and c.get("entityId") == entity_id
    ]


def pick_job(st_state: Any) -> dict[str, Any]:
    for job in st_state.all("job"):
        loc = st_state.get("location", job["location"]["id"])
        if (
            job["type"] in ("inspection", "repair", "service_call")
            and job["status"] != "canceled"
            and job["serviceLine"] == "SP"
            and loc["address"]["state"] == "NC"
        ):
            return dict(job)
    raise AssertionError("no seeded job the demo config maps")


# --- delays and the retry_later state ----------------------------------------------------------
def test_retry_later_delays_grow_and_are_capped(settings: Any) -> None:
    rel = settings.reliability.model_copy(update={"retry_later_delays_s": [300, 900, 3600, 21_600]})
    assert [rel.retry_later_delay_s(n) for n in range(7)] == [
        300,
        900,
        3600,
        21_600,
        21_600,
        21_600,
        21_600,
    ]
    defaults = type(settings.reliability)()
    assert defaults.retry_later_delays_s[0] == 300 and max(defaults.retry_later_delays_s) == 21_600
    assert defaults.retry_later_period_s == 72 * 3600


def test_retry_later_transient_error_leaves_a_pending_row_due_after_the_retry(ctx: Any) -> None:
    k = key("customer", 901)
    before = datetime.now(UTC)
    with pytest.raises(TransientError):
        run_record(ctx, k, boom(retry_after=120.0), state=State)
    rec = ctx.ledger.get(k)
    grace = ctx.settings.reliability.pending_due_after_s
    assert rec.status is Status.PENDING and rec.error_kind == "transient"
    assert rec.retry_since is not None and rec.retry_since >= before - timedelta(seconds=1)
    # due once Celery's retry (countdown >= the Retry-After) should have run
    assert rec.next_attempt_at >= before + timedelta(seconds=grace + 120)
    assert invariant_breaches(ctx) == []


def test_retry_later_rounds_through_celery_then_fail_through_the_invoice_failure_path(
    worker: Any, world: Any, st_state: Any, spectrum_app: Any, enqueued: Queue
) -> None:
    """Celery's retries running out make the invoice ``retry_later`` (nobody told, ServiceTrade
    untouched); once the period is over, the next transient failure fails it the way any invoice
    failure does: ServiceTrade ``failed`` + a comment, one alert."""
    ctx = worker
    inv_id = world.landmarks["invoice_nc"]
    assert sync_job(ctx, world.landmarks["invoice_nc_job"], "main").ok  # prerequisites in place
    st_state.update("invoice", inv_id, {"status": "pending_accounting"})
    spectrum_app.state.injector.set_outage(True)
    k = key("invoice", inv_id)

    app.tasks["sync.invoice"].apply(args=(inv_id, "main"))
    rec = ctx.ledger.get(k)
    assert rec.status is Status.RETRY_LATER and rec.retry_rounds == 1
    assert rec.attempts == ctx.settings.reliability.max_retries + 1
    assert st_state.get("invoice", inv_id)["status"] == "pending_accounting"
    assert comments_on(st_state, 6, inv_id) == [] and ctx.ledger.alerts(k) == []

    # a second round (the re-enqueuer at the due time) -> still waiting, next delay
    with freeze_time(rec.next_attempt_at + timedelta(seconds=1), tick=True):
        run_requeue(ctx)
        assert ("sync.invoice", (inv_id, "main")) in enqueued
        drain(enqueued)
        again = ctx.ledger.get(k)
    assert again.status is Status.RETRY_LATER and again.retry_rounds == 2
    second_wait = (again.next_attempt_at - again.updated_at).total_seconds()
    assert abs(second_wait - ctx.settings.reliability.retry_later_delay_s(1)) < 5

    # the period is over: the next run gives up through the invoice's own failure path
    period = ctx.settings.reliability.retry_later_period_s
    with freeze_time(again.retry_since + timedelta(seconds=period + 1), tick=True):
        run_requeue(ctx)
        drain(enqueued)
        final = ctx.ledger.get(k)
        assert final.status is Status.FAILED and final.error_kind == "retries_exhausted"
        assert "72 h" in final.last_error
        assert st_state.get("invoice", inv_id)["status"] == "failed"
        [comment] = comments_on(st_state, 6, inv_id)
        assert "transient" in comment
        assert [a["kind"] for a in ctx.ledger.alerts(k)] == ["retries_exhausted"]
        # a final row is not re-enqueued and breaks nothing
        enqueued.clear()
        run_requeue(ctx, now=datetime.now(UTC) + timedelta(days=1))
        assert ("sync.invoice", (inv_id, "main")) not in enqueued


def test_retry_later_final_failure_of_a_job_comments_on_the_job(
    worker: Any, st_state: Any, spectrum_app: Any, enqueued: Queue
) -> None:
    ctx = worker
    job = pick_job(st_state)
    assert sync_site(ctx, job["location"]["id"], "main").ok  # its customer and site in place
    spectrum_app.state.injector.set_outage(True)
    app.tasks["sync.job"].apply(args=(job["id"], "main"))
    rec = ctx.ledger.get(key("job", job["id"]))
    assert rec.status is Status.RETRY_LATER
    assert comments_on(st_state, 3, job["id"]) == []
    period = ctx.settings.reliability.retry_later_period_s
    with freeze_time(rec.retry_since + timedelta(seconds=period + 1), tick=True):
        app.tasks["sync.job"].apply(args=(job["id"], "main"))
    rec = ctx.ledger.get(key("job", job["id"]))
    assert rec.status is Status.FAILED and rec.error_kind == "retries_exhausted"
    assert len(comments_on(st_state, 3, job["id"])) == 1


def test_retry_later_final_failure_whose_telling_fails_is_told_on_the_next_try(
    worker: Any, world: Any, st_state: Any, spectrum_app: Any, st_app: Any
) -> None:
    """ServiceTrade down while the invoice is failed for good: back to pending with the streak
    kept, so the next try tells it (one comment, one alert) instead of starting 72 h again."""
    ctx = worker
    inv_id = world.landmarks["invoice_nc"]
    assert sync_job(ctx, world.landmarks["invoice_nc_job"], "main").ok
    st_state.update("invoice", inv_id, {"status": "pending_accounting"})
    k = key("invoice", inv_id)
    spectrum_app.state.injector.set_outage(True)
    app.tasks["sync.invoice"].apply(args=(inv_id, "main"))
    since = ctx.ledger.get(k).retry_since
    period = ctx.settings.reliability.retry_later_period_s
    with freeze_time(since + timedelta(seconds=period + 1), tick=True):
        st_app.state.injector.script("comment", ["error"] * 3)
        with pytest.raises(TransientError):
            sync_invoice(ctx, inv_id, "main")
        rec = ctx.ledger.get(k)
        assert rec.status is Status.PENDING and rec.retry_since == since
        app.tasks["sync.invoice"].apply(args=(inv_id, "main"))
        rec = ctx.ledger.get(k)
    assert rec.status is Status.FAILED and rec.error_kind == "retries_exhausted"
    assert len(comments_on(st_state, 6, inv_id)) == 1
    assert len(ctx.ledger.alerts(k)) == 1


def test_retry_later_ledger_or_broker_hiccup_is_a_transient_cause(
    worker: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A broker that does not answer while a body publishes, or a ledger that does not answer the
    claim: retried like any transient error, never failed as an internal error."""
    import kombu.exceptions
    import sqlalchemy.exc

    ctx = worker
    k = key("customer", 931)

    def publish_fails(run: Run[State]) -> Outcome:
        raise kombu.exceptions.OperationalError("Error 111 connecting to redis")

    with pytest.raises(TransientError, match="the broker did not answer"):
        run_record(ctx, k, publish_fails, state=State)
    rec = ctx.ledger.get(k)
    assert rec.status is Status.PENDING and rec.error_kind == "transient"
    assert rec.next_attempt_at is not None

    def claim_fails(*args: Any, **kwargs: Any) -> Any:
        raise sqlalchemy.exc.OperationalError("UPDATE sync_record", {}, Exception("locked"))

    monkeypatch.setattr(ctx.ledger, "claim", claim_fails)
    retried: list[BaseException | None] = []
    from celery.app.task import Task

    original = Task.retry

    def spy(self: Any, *args: Any, **kw: Any) -> Any:
        retried.append(kw.get("exc"))
        return original(self, *args, **kw)

    monkeypatch.setattr(Task, "retry", spy)
    result = app.tasks["sync.customer"].apply(args=(932, "main"))
    assert isinstance(result.result, TransientError), result.traceback
    assert "the ledger did not answer" in str(result.result)
    assert len(retried) == ctx.settings.reliability.max_retries + 1


# --- the invariant: nothing waiting without something queued or scheduled ---------------------
def _due_message(ctx: Any, enqueued: Queue, k: RecordKey) -> tuple[str, tuple[Any, ...]]:
    """Run the re-enqueuer just after the row's due time; returns what it queued for the row."""
    rec = ctx.ledger.get(k)
    assert rec.next_attempt_at is not None or rec.status is Status.IN_FLIGHT, rec
    due = rec.next_attempt_at or rec.lease_until
    assert [b for b in invariant_breaches(ctx, now=due) if b.name == str(k)] == []
    enqueued.clear()
    run_requeue(ctx, now=due + timedelta(seconds=1))
    message = task_for(rec)
    assert message is not None and message in enqueued, (message, enqueued)
    # queued once: moved a grace ahead, so the next run does not send it again at once
    enqueued.clear()
    run_requeue(ctx, now=due + timedelta(seconds=2))
    assert message not in enqueued
    return message


def test_retry_later_invariant_every_path_leaves_a_due_row_the_requeuer_sends(
    worker: Any, enqueued: Queue
) -> None:
    ctx = worker
    # 1. a transient error (Celery will retry; the row is due after that retry)
    k1 = key("customer", 911)
    with pytest.raises(TransientError):
        run_record(ctx, k1, boom(), state=State)
    assert _due_message(ctx, enqueued, k1) == ("sync.customer", (911, "main"))

    # 2. Celery's retries ran out -> retry_later with its delay
    k2 = key("site", 912)
    with pytest.raises(TransientError):
        run_record(ctx, k2, boom(), state=State)
    app.tasks["sync.site"].on_failure(TransientError("503"), "t2", (912, "main"), {}, None)  # type: ignore[arg-type]
    assert ctx.ledger.get(k2).status is Status.RETRY_LATER
    assert _due_message(ctx, enqueued, k2) == ("sync.site", (912, "main"))

    # 3. the worker was killed mid-task: in flight, lease runs out
    k3 = key("job", 913)
    ctx.ledger.claim(k3, lease_s=5)
    assert _due_message(ctx, enqueued, k3) == ("sync.job", (913, "main"))

    # 4. Redis flushed: the webhook's wake-up is gone, its inbox row is not
    ctx.ledger.inbox_put([("main", "sync.invoice", "914")], due_after_s=60)
    enqueued.clear()
    run_requeue(ctx, now=datetime.now(UTC) + timedelta(seconds=30))
    assert enqueued == []
    run_requeue(ctx, now=datetime.now(UTC) + timedelta(seconds=61))
    assert enqueued == [("sync.invoice", (914, "main"))]

    # 5. `stsync retry` reopens a failed row (its message may be lost too)
    k5 = key("timecard_entry", "915:3")
    ctx.ledger.ensure(k5)
    ctx.ledger.mark(k5, Status.FAILED, error_kind="x", reason="fixed by a person")
    assert ctx.ledger.get(k5).next_attempt_at is None
    ctx.ledger.reopen(k5)
    assert _due_message(ctx, enqueued, k5) == ("sync.timecard", (915, "main"))

    # 6. retries ran out before the body ever ran (the record could not even be read): the row
    #    is created so the wait is durable
    k6 = key("invoice", 916)
    app.tasks["sync.invoice"].on_failure(TransientError("ST 503"), "t6", (916, "main"), {}, None)  # type: ignore[arg-type]
    assert ctx.ledger.get(k6).status is Status.RETRY_LATER
    assert _due_message(ctx, enqueued, k6) == ("sync.invoice", (916, "main"))


def test_status_reports_rows_that_break_the_invariant(worker: Any) -> None:
    ctx = worker
    k = key("customer", 921)
    ctx.ledger.ensure(k)
    assert invariant_breaches(ctx) == []
    # the re-enqueuer has not run for longer than its interval + the visibility timeout
    late = ctx.ledger.get(k).next_attempt_at + timedelta(seconds=invariant_tolerance_s(ctx) + 1)
    [breach] = invariant_breaches(ctx, now=late)
    assert breach.name == str(k) and "overdue" in breach.problem
    # a waiting row without a due time (written by something that bypassed the ledger API)
    with ctx.ledger.tx() as conn:
        conn.execute(update(sync_record).values(next_attempt_at=None))
    [breach] = invariant_breaches(ctx)
    assert "no due time" in breach.problem
    ctx.ledger.inbox_put([("main", "sync.job", "922")], due_after_s=1)
    assert [b.what for b in invariant_breaches(ctx, now=late)] == ["record", "inbox"]


def test_task_run_releases_its_inbox_entry_but_not_a_newer_one(
    worker: Any, enqueued: Queue, st_state: Any
) -> None:
    ctx = worker
    company = next(c for c in st_state.all("company") if c.get("isCustomer"))
    ctx.ledger.inbox_put([("main", "sync.customer", str(company["id"]))], due_after_s=60)
    app.tasks["sync.customer"].apply(args=(company["id"], "main"))
    assert ctx.ledger.inbox_entries() == []
    # a wake-up received after a run started survives that run
    with freeze_time(datetime.now(UTC) + timedelta(seconds=5), tick=True):
        ctx.ledger.inbox_put([("main", "sync.customer", str(company["id"]))], due_after_s=60)
    from tasks._celery import SyncTask

    task = app.tasks["sync.customer"]
    assert isinstance(task, SyncTask)
    task.before_start("tid-x", (company["id"], "main"), {})
    task.after_return("SUCCESS", None, "tid-x", (company["id"], "main"), {}, None)
    assert len(ctx.ledger.inbox_entries()) == 1


def test_a_user_event_keeps_its_inbox_entry_until_its_task_ran_through(
    worker: Any, world: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``sync.user`` keeps no ledger row: when ServiceTrade stays down past Celery's retries, the
    webhook's inbox entry is its durable wake-up (nothing ``retry_later``, no stray row)."""
    ctx = worker
    inv_id = world.landmarks["invoice_salesperson_without_id"]
    user_id = world.landmarks["salesperson_without_spectrum_id"]
    assert sync_invoice(ctx, inv_id, "main").result == "failed"  # waits on the user
    ctx.ledger.inbox_put([("main", "sync.user", str(user_id))], due_after_s=60)

    def down(_id: int, **_kw: Any) -> Any:
        raise TransientError("ServiceTrade 503")

    monkeypatch.setattr(ctx.st, "get_user", down)
    assert app.tasks["sync.user"].apply(args=(user_id, "main")).failed()
    assert len(ctx.ledger.inbox_entries()) == 1
    assert ctx.ledger.get(key("user", user_id)) is None
    monkeypatch.undo()
    assert app.tasks["sync.user"].apply(args=(user_id, "main")).get() == "woke 0"
    assert ctx.ledger.inbox_entries() == []


# --- the pending-invoice backstop ---------------------------------------------------------------
def test_pending_invoice_backstop_respects_retry_later_and_queues_what_is_due(
    ctx: Any, world: Any, st_state: Any, enqueued: Queue
) -> None:
    inv_id = world.landmarks["invoice_nc"]
    st_state.update("invoice", inv_id, {"status": "pending_accounting"})
    k = key("invoice", inv_id)
    ctx.ledger.ensure(k)
    ctx.ledger.mark_retry_later(
        k, next_attempt_at=datetime.now(UTC) + timedelta(hours=1), reason="Spectrum down"
    )
    sweep_pending_invoices(ctx, "main")
    assert ("sync.invoice", (inv_id, "main")) not in enqueued
    with freeze_time(datetime.now(UTC) + timedelta(hours=1, seconds=5), tick=True):
        sweep_pending_invoices(ctx, "main")
    assert ("sync.invoice", (inv_id, "main")) in enqueued


# --- Retry-After --------------------------------------------------------------------------------
def test_retry_after_countdown_is_the_larger_of_backoff_and_retry_after() -> None:
    assert retry_countdown(4.0, TransientError("503", retry_after=30.0)) == 30.0
    assert retry_countdown(64.0, TransientError("503", retry_after=30.0)) == 64.0
    assert retry_countdown(4.0, TransientError("503")) == 4.0
    assert retry_countdown(None, RateLimited("429", retry_after=7)) == 7.0


def test_retry_after_countdown_reaches_celery_from_a_servicetrade_503(
    worker: Any, st_app: Any, st_state: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A ServiceTrade 503 with Retry-After: 45 -> the task's retry is scheduled >= 45 s later
    (autoretry alone would use the 1-2 s backoff of these settings)."""
    from celery.app.task import Task

    seen: list[float | None] = []
    original = Task.retry

    def spy(self: Any, *args: Any, **kwargs: Any) -> Any:
        seen.append(kwargs.get("countdown", args[5] if len(args) > 5 else None))
        return original(self, *args, **kwargs)

    monkeypatch.setattr(Task, "retry", spy)
    company = next(c for c in st_state.all("company") if c.get("isCustomer"))
    st_app.state.injector.configure(
        st_app.state.injector.config.model_copy(update={"error_retry_after_s": 45})
    )
    st_app.state.injector.script("company", ["error"] * 3)  # the client's 3 inline attempts
    result = app.tasks["sync.customer"].apply(args=(company["id"], "main"))
    assert result.successful(), result.traceback
    assert seen and seen[0] is not None and seen[0] >= 45
    assert worker.ledger.get(key("customer", company["id"])).status is Status.DONE


def test_retry_after_countdown_servicetrade_429_pauses_every_worker(
    ctx: Any, st_app: Any, st_state: Any
) -> None:
    """One 429 (Retry-After 30) seen by one worker: another worker's next ServiceTrade call does
    not go out; it is rescheduled for the rest of the pause. Short pauses are slept inline."""
    r = fakeredis.FakeRedis()
    clock = [1_000.0]
    slept: list[float] = []

    def pause() -> AccountPause:
        return AccountPause(
            r, "t:stsync:servicetrade-pause", clock=lambda: clock[0], sleep=slept.append
        )

    ctx.st.pause = pause()
    company = next(c for c in st_state.all("company") if c.get("isCustomer"))
    st_app.state.injector.configure(
        st_app.state.injector.config.model_copy(update={"retry_after_s": 30})
    )
    st_app.state.injector.script("company", ["rate_limit"])
    calls_before = st_app.state.injector.calls["company"]
    with pytest.raises(RateLimited) as first:
        ctx.st.get_company(company["id"])
    assert first.value.retry_after == 30
    assert st_app.state.injector.calls["company"] == calls_before + 1

    other = pause()  # a second worker process, same Redis
    assert other.remaining() == pytest.approx(30)
    with pytest.raises(RateLimited) as held:
        other.wait()
    assert held.value.retry_after == pytest.approx(30)
    # the first worker too: no ServiceTrade call while the account is paused
    with pytest.raises(RateLimited):
        ctx.st.get_company(company["id"])
    assert st_app.state.injector.calls["company"] == calls_before + 1
    clock[0] += 25  # 5 s left: slept, then the call goes out
    assert ctx.st.get_company(company["id"]).id == company["id"]
    assert slept == [pytest.approx(5)]
    clock[0] += 10
    assert other.remaining() == 0


def test_retry_after_countdown_spectrum_fault_carries_retry_after(
    ctx: Any, spectrum_app: Any, st_state: Any
) -> None:
    injector = spectrum_app.state.injector
    injector.configure(injector.config.model_copy(update={"error_retry_after_s": 90}))
    injector.script("AddCustomer", ["error"])
    company = next(c for c in st_state.all("company") if c.get("isCustomer"))
    with pytest.raises(TransientError) as exc:
        sync_customer(ctx, company["id"], "main")
    assert exc.value.retry_after == 90


# --- Spectrum down for 30 minutes with invoices, jobs and timecards in flight -------------------
def test_retry_later_spectrum_outage_of_30_minutes_everything_lands_once(
    worker: Any,
    world: Any,
    st_state: Any,
    spectrum_app: Any,
    spectrum_db: Any,
    enqueued: Queue,
) -> None:
    """Spectrum answers every call "Error executing Web Service" for 30 simulated minutes while
    an approved invoice, a job and an approved timecard are in flight. Celery's retries run out
    within seconds (these settings), every record waits ``retry_later``, the re-enqueuer (run
    each simulated minute, as Beat would) brings them back with growing delays, and after
    Spectrum returns everything lands: no person involved (no alert, no failure, no comment),
    nothing written twice."""
    ctx = worker
    # a short Celery budget (2 attempts, no waiting in-process): production's 4-8 minutes of
    # backoff are far shorter than a 30-minute outage too; what matters is that it runs out
    rel = ctx.settings.reliability.model_copy(update={"max_retries": 1})
    ctx.settings = ctx.settings.model_copy(update={"reliability": rel})
    apply_reliability(rel)
    injector = spectrum_app.state.injector
    inv_id = world.landmarks["invoice_nc"]
    st_state.update("invoice", inv_id, {"status": "pending_accounting"})
    job = pick_job(st_state)
    card = next(
        c
        for c in st_state.all("timecard")
        if c["user"].get("externalIds", {}).get("spectrum") and c["entries"]
    )
    start = datetime.now(UTC).replace(microsecond=0)
    injector.set_outage(True)
    with freeze_time(start, tick=True) as clock:
        for message in [
            ("sync.invoice", (inv_id, "main")),
            ("sync.job", (job["id"], "main")),
            ("sync.timecard", (card["id"], "main")),
        ]:
            enqueued.append(message)
        drain(enqueued)
        waiting = {r.key.record_type for r in waiting_rows(ctx)}
        assert {"invoice", "job", "timecard"} <= waiting, waiting
        assert not ctx.ledger.list_records(statuses=(Status.FAILED, Status.UNKNOWN))
        minutes = 0
        while True:
            clock.tick(timedelta(minutes=1))
            minutes += 1
            if minutes == 30:
                injector.set_outage(False)
            run_requeue(ctx)
            drain(enqueued)
            assert invariant_breaches(ctx) == []
            if minutes > 30 and not waiting_rows(ctx):
                break
            assert minutes < 8 * 60, [str(r.key) for r in waiting_rows(ctx)]
    assert minutes >= 30
    failed = ctx.ledger.list_records(statuses=(Status.FAILED, Status.UNKNOWN))
    assert failed == [], [(str(r.key), r.last_error) for r in failed]
    assert ctx.ledger.alerts() == []
    # everything landed
    assert ctx.ledger.get(key("invoice", inv_id)).status is Status.DONE
    assert st_state.get("invoice", inv_id)["status"] == "processed"
    assert comments_on(st_state, 6, inv_id) == []
    assert ctx.ledger.get(key("job", job["id"])).status is Status.DONE
    assert comments_on(st_state, 3, job["id"]) == []
    assert ctx.ledger.get(key("timecard", card["id"])).status is Status.DONE
    # nothing twice: one AR document, one Spectrum job, one pre-time row per entry
    number = ctx.ledger.get(key("invoice", inv_id)).spectrum_key
    [header] = spectrum_db.rows(il.ar_invoices.name, Invoice_Or_Transaction=number)
    assert Decimal(header["Invoice_Amount"]) > 0
    job_number = ctx.ledger.get(key("job", job["id"])).spectrum_key
    assert len(spectrum_db.rows("JC_JOB_MASTER_MC", Job_Number=job_number)) == 1
    marks = sorted(r["Message"].strip() for r in spectrum_db.rows("PR_PRE_TIME_MC"))
    mine = sorted(entry_marker(card["id"], e["id"]) for e in card["entries"])
    assert [m for m in marks if m in mine] == mine
    assert ctx.ledger.inbox_entries() == []
