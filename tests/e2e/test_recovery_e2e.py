"""End to end on the real Redis with real Celery workers: durable acknowledgement and Retry-After
(issue 17). Beat's re-enqueuer is run by the test at the time Beat would run it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import redis

from tasks.requeue import run_requeue
from tests.e2e.conftest import REDIS_URL, Stack, wait_for
from tests.e2e.test_customer_site_e2e import new_company, post_delivery, spectrum_customers
from worker.context import build_context


def test_durable_ack_redis_flushed_after_the_answer_records_still_land(stack: Stack) -> None:
    """Deliveries answered 202, then Redis loses everything (a restart without persistence) before
    any worker took them, and the missed-change sweep never runs: the ledger's inbox rows bring
    every record in, each once."""
    companies = [new_company(stack, f"Durable Ack {n} LLC") for n in range(3)]
    for n, company in enumerate(companies):
        body = {"messageId": f"durable-{n}", "data": [
            {"action": "created", "entity": {"type": "company", "id": company["id"]}}]}
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
    assert post_delivery(stack, {"messageId": "ra-1", "data": [
        {"action": "created", "entity": {"type": "company", "id": company["id"]}}]}) == 202
    rec = stack.wait_status("customer", company["id"], timeout=90)
    calls = injector.requests("AddCustomer")
    assert [c.outcome for c in calls] == ["error", "ok"]
    assert calls[1].at - calls[0].at >= 3.9, [c.as_dict() for c in calls]
    assert rec.attempts == 2
    assert len(spectrum_customers(stack, "Retry After Diner")) == 1
