"""End to end on the real Redis with real Celery workers: durable acknowledgement and Retry-After
(issue 17). Beat's re-enqueuer is run by the test at the time Beat would run it."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import redis

from mappers.timecard import entry_marker
from tasks.requeue import run_requeue
from tests.e2e.conftest import REDIS_URL, Stack, _make_stack, wait_for
from tests.e2e.test_customer_site_e2e import new_company, post_delivery, spectrum_customers
from worker.context import build_context
from worker.ledger import Status


def test_durable_ack_redis_flushed_after_the_answer_records_still_land(stack: Stack) -> None:
    """Deliveries answered 202, then Redis loses everything (a restart without persistence) before
    any worker took them, and the missed-change sweep never runs: the ledger's inbox rows bring
    every record in, each once."""
    companies = [new_company(stack, f"Durable Ack {n} LLC") for n in range(3)]
    for n, company in enumerate(companies):
        body = {
            "messageId": f"durable-{n}",
            "data": [{"action": "created", "entity": {"type": "company", "id": company["id"]}}],
        }
        assert post_delivery(stack, body) == 202
    stored = {e.source_id for e in stack.ledger.inbox_entries()}
    assert stored == {str(c["id"]) for c in companies}
    redis.Redis.from_url(REDIS_URL).flushdb()

    stack.start_worker()
    ctx = build_context(stack.settings, ledger=stack.ledger)  # enqueues through Celery
    try:
        # nothing is in Redis any more; Beat's re-enqueuer finds the entries once they are due
        grace = stack.settings.reliability.pending_due_after_s
        early = run_requeue(ctx, now=datetime.now(UTC) + timedelta(seconds=grace / 2))
        assert early.inbox_due == 0
        due = run_requeue(ctx, now=datetime.now(UTC) + timedelta(seconds=grace + 1))
        assert due.inbox_due == 3 and due.sent == 3
        for company in companies:
            stack.wait_status("customer", company["id"])
    finally:
        ctx.st.close()
    for company in companies:
        assert len(spectrum_customers(stack, company["name"])) == 1
    wait_for(lambda: stack.ledger.inbox_entries() == [], 20, what="inbox emptied by the tasks")
    assert stack.ledger.audit_count(service="sweep") == 0  # the sweep played no part


def test_retry_after_countdown_spectrum_503_delays_the_task_retry(stack: Stack) -> None:
    """Spectrum refuses a write with a server fault carrying ``Retry-After: 4``; the settings'
    backoff is 1-2 s, so the retry goes out no sooner than 4 s later, and lands once."""
    injector = stack.sandbox.spectrum_injector
    injector.configure(injector.config.model_copy(update={"error_retry_after_s": 4}))
    injector.script("AddCustomer", ["error"])
    stack.start_worker()
    company = new_company(stack, "Retry After Diner")
    assert (
        post_delivery(
            stack,
            {
                "messageId": "ra-1",
                "data": [{"action": "created", "entity": {"type": "company", "id": company["id"]}}],
            },
        )
        == 202
    )
    rec = stack.wait_status("customer", company["id"], timeout=90)
    calls = injector.requests("AddCustomer")
    assert [c.outcome for c in calls] == ["error", "ok"]
    assert calls[1].at - calls[0].at >= 3.9, [c.as_dict() for c in calls]
    assert rec.attempts == 2
    assert len(spectrum_customers(stack, "Retry After Diner")) == 1


#: appended to the fast settings' ``[reliability]`` table: retry_later rounds after 2, 4, 8 s (the
#: production 5 min, 15 min, 1 h ... scaled down), a retry period far above the outage, a pending
#: grace of 5 s, Beat's re-enqueuer every second (the test runs it)
SHORT_RECOVERY = (
    "retry_later_delays_s = [2, 4, 8]\nretry_later_period_s = 600\npending_grace_s = 5\n"
    "requeue_every_s = 1\n"
)


@pytest.fixture
def short_stack(tmp_path: Path) -> Iterator[Stack]:
    # the fast settings end with their [reliability] table: these keys extend it
    yield from _make_stack(
        tmp_path,
        f"sqlite:///{tmp_path / 'ledger.sqlite'}",
        config_edit=lambda text: text + SHORT_RECOVERY,
    )


def test_retry_later_spectrum_outage_real_workers_everything_lands_once(
    short_stack: Stack,
) -> None:
    """Spectrum down (every call "Error executing Web Service") for 40 s while an approved invoice,
    a job and an approved timecard arrive by webhook: several times the Celery retry budget of these
    settings (6 retries at 1-2 s), as a 30-minute outage is several times production's 4-8 minutes.
    Real workers; the test plays Beat's re-enqueuer every second. Everything lands after Spectrum
    returns, nobody is told, nothing is written twice."""
    stack = short_stack
    st = stack.sandbox.st_state
    injector = stack.sandbox.spectrum_injector
    assert stack.sandbox.world is not None
    inv_id = int(stack.sandbox.world.landmarks["invoice_nc"])
    st.update("invoice", inv_id, {"status": "pending_accounting"})
    job = next(
        j
        for j in st.all("job")
        if j["type"] in ("inspection", "repair", "service_call")
        and j["status"] != "canceled"
        and j["serviceLine"] == "SP"
        and st.get("location", j["location"]["id"])["address"]["state"] == "NC"
    )
    card = next(
        c
        for c in st.all("timecard")
        if c["user"].get("externalIds", {}).get("spectrum") and c["entries"]
    )
    st.update("timecard", card["id"], {"status": "approved"})

    injector.set_outage(True)
    stack.start_worker(concurrency=2)
    body = {
        "messageId": "outage-1",
        "data": [
            {"action": "updated", "entity": {"type": "invoice", "id": inv_id}},
            {"action": "created", "entity": {"type": "job", "id": job["id"]}},
            {"action": "updated", "entity": {"type": "timecard", "id": card["id"]}},
        ],
    }
    assert post_delivery(stack, body) == 202
    ctx = build_context(stack.settings, ledger=stack.ledger)
    seen: set[str] = set()
    keys = {("invoice", str(inv_id)), ("job", str(job["id"])), ("timecard", str(card["id"]))}

    def beat_until(deadline: float, done: Callable[[], bool]) -> None:
        while time.monotonic() < deadline and not done():
            run_requeue(ctx)
            for r in stack.ledger.list_records(statuses=(Status.RETRY_LATER,)):
                seen.add(r.key.record_type)
            assert not stack.ledger.list_records(statuses=(Status.FAILED, Status.UNKNOWN))
            time.sleep(1.0)

    try:
        outage_ends = time.monotonic() + 40
        beat_until(outage_ends, lambda: False)
        # Celery's budget ran out during the outage (the invoice and the timecard may still be
        # waiting behind their job: a busy prerequisite retries after its lease, Retry-After)
        assert seen, "no record ever reached retry_later: the outage did not outlast the budget"
        injector.set_outage(False)

        def landed() -> bool:
            recs = [stack.record(t, i) for t, i in keys]
            return all(r is not None and r.status is Status.DONE for r in recs)

        beat_until(time.monotonic() + 120, landed)
        assert landed(), [stack.record(t, i) for t, i in keys]
    finally:
        ctx.st.close()
    assert stack.ledger.list_records(statuses=(Status.FAILED, Status.UNKNOWN)) == []
    assert stack.ledger.alerts() == []
    assert st.get("invoice", inv_id)["status"] == "processed"
    assert not [c for c in st.all("comment") if c.get("entityId") in (inv_id, job["id"])]
    number = stack.record("invoice", inv_id).spectrum_key
    assert (
        len(stack.sandbox.spectrum_db.rows("CR_INVOICE_HEADER_MC", Invoice_Or_Transaction=number))
        == 1
    )
    job_number = stack.record("job", job["id"]).spectrum_key
    assert len(stack.sandbox.spectrum_db.rows("JC_JOB_MASTER_MC", Job_Number=job_number)) == 1
    marks = [str(r["Message"]).strip() for r in stack.sandbox.spectrum_db.rows("PR_PRE_TIME_MC")]
    for entry in card["entries"]:
        assert marks.count(entry_marker(card["id"], entry["id"])) == 1
