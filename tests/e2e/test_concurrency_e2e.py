"""Two worker processes sync the same record at the same time, on SQLite and PostgreSQL ledgers.

One creates; the other finds the claim held (retries later and no-ops) — Spectrum gets one record.
"""

from __future__ import annotations

import httpx
import pytest

from clients.spectrum import infolink_schema as t
from tests.e2e.conftest import Stack, wait_for


@pytest.mark.e2e
def test_two_workers_one_record_one_spectrum_customer(stack_pg: Stack) -> None:
    stack = stack_pg
    inj = stack.sandbox.spectrum_injector
    inj.configure(inj.config.model_copy(update={"latency_ms": 600}))  # make the attempts overlap
    stack.start_worker(concurrency=1, name="a")
    stack.start_worker(concurrency=1, name="b")
    company = stack.sandbox.st_state.create(
        "company", {"name": "Race Condition Roasters", "isCustomer": True}
    )
    for msg in ("race-1", "race-2"):  # two different deliveries: both get enqueued
        body = {
            "messageId": msg,
            "data": [{"action": "updated", "entity": {"type": "company", "id": company["id"]}}],
        }
        assert httpx.post(stack.ingest_url, json=body, timeout=10).status_code == 202
    rec = stack.wait_status("customer", company["id"], timeout=90)
    rows = [
        r
        for r in stack.sandbox.spectrum_db.rows(t.customers.name)
        if r["Name"] == "Race Condition Roasters"
    ]
    assert len(rows) == 1 and rows[0]["Customer_Code"] == rec.spectrum_key
    assert inj.calls["AddCustomer"] == 1
    # both deliveries were handled: the second found the record synced (a recorded no-op)
    # or was busy and retried into a no-op
    wait_for(
        lambda: "noop" in [h.service for h in stack.ledger.history(rec.key)],
        60,
        what="the second delivery's no-op",
    )
    services = [h.service for h in stack.ledger.history(rec.key)]
    assert services.count("AddCustomer") == 1
