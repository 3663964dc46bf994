"""End to end with a real Celery worker on the real Redis: webhook -> customer and site (F1, F2, F12, F13)."""

from __future__ import annotations

from typing import Any

import httpx
import psutil

from clients.spectrum import infolink_schema as t
from tests.e2e.conftest import Stack, wait_for


def new_company(stack: Stack, name: str = "Harbor Grill LLC") -> dict[str, Any]:
    return stack.sandbox.st_state.create(
        "company",
        {
            "name": name,
            "isCustomer": True,
            "status": "active",
            "address": {
                "street": "9 Dock St",
                "city": "Wilmington",
                "state": "NC",
                "postalCode": "28401",
            },
            "phone": "910-555-0142",
        },
    )


def new_location(stack: Stack, company: dict[str, Any], name: str) -> dict[str, Any]:
    return stack.sandbox.st_state.create(
        "location",
        {
            "name": name,
            "company": {"id": company["id"], "name": company["name"]},
            "address": {
                "street": "9 Dock St",
                "city": "Wilmington",
                "state": "NC",
                "postalCode": "28401",
            },
            "phoneNumber": "910-555-0142",
            "status": "active",
        },
    )


def spectrum_customers(stack: Stack, name: str) -> list[dict[str, Any]]:
    return [r for r in stack.sandbox.spectrum_db.rows(t.customers.name) if r["Name"] == name]


def post_delivery(stack: Stack, body: dict[str, Any]) -> int:
    return httpx.post(stack.ingest_url, json=body, timeout=10).status_code


def test_webhook_to_customer_and_site_with_external_ids(stack: Stack) -> None:
    stack.register_webhook()
    stack.start_worker()
    company = new_company(stack)
    loc = new_location(stack, company, "Harbor Grill Dockside")
    rec = stack.wait_status("site", loc["id"])
    cust = stack.wait_status("customer", company["id"])
    site_row = stack.sandbox.spectrum_db.rows(t.sites.name, Site_ID=rec.spectrum_key)[0]
    assert site_row["Site_Customer_Code"] == cust.spectrum_key
    assert len(spectrum_customers(stack, "Harbor Grill LLC")) == 1
    st = stack.sandbox.st_state
    assert st.get("company", company["id"])["externalIds"]["spectrum"] == cust.spectrum_key
    wait_for(
        lambda: st.get("location", loc["id"])["externalIds"].get("spectrum") == rec.spectrum_key,
        10,
        what="site external id",
    )


def test_same_delivery_three_times_one_customer(stack: Stack) -> None:
    stack.start_worker()
    company = new_company(stack, "Triple Delivery Co")
    body = {
        "messageId": "msg-triple",
        "timestamp": "1",
        "data": [
            {
                "action": "created",
                "timestamp": 1,
                "entity": {"type": "company", "id": company["id"]},
            }
        ],
    }
    assert [post_delivery(stack, body) for _ in range(3)] == [202, 202, 202]
    stack.wait_status("customer", company["id"])
    stack.settle()  # the two duplicate deliveries have run too
    assert len(spectrum_customers(stack, "Triple Delivery Co")) == 1
    assert stack.sandbox.spectrum_app.state.injector.calls["AddCustomer"] == 1


def test_two_locations_of_a_new_company_at_once_one_customer(stack: Stack) -> None:
    stack.start_worker(concurrency=4)
    company = stack.sandbox.st_state.create(
        "company", {"name": "Twin Sites Inc", "isCustomer": True}
    )
    # created silently first, then both locations announced in ONE delivery
    a = new_location(stack, company, "Twin North")
    b = new_location(stack, company, "Twin South")
    body = {
        "messageId": "msg-twins",
        "timestamp": "1",
        "data": [
            {"action": "created", "timestamp": 1, "entity": {"type": "location", "id": a["id"]}},
            {"action": "created", "timestamp": 1, "entity": {"type": "location", "id": b["id"]}},
        ],
    }
    assert post_delivery(stack, body) == 202
    ra = stack.wait_status("site", a["id"])
    rb = stack.wait_status("site", b["id"])
    assert ra.spectrum_key != rb.spectrum_key
    assert len(spectrum_customers(stack, "Twin Sites Inc")) == 1


def test_ghost_write_on_add_customer_is_adopted(stack: Stack) -> None:
    stack.sandbox.spectrum_injector.script("AddCustomer", ["ghost"])
    stack.start_worker()
    company = new_company(stack, "Ghost Kitchen Partners")
    stack.sandbox.spectrum_injector  # noqa: B018
    post_delivery(
        stack,
        {
            "messageId": "g1",
            "data": [{"action": "created", "entity": {"type": "company", "id": company["id"]}}],
        },
    )
    rec = stack.wait_status("customer", company["id"])
    assert rec.attempts >= 2
    assert len(spectrum_customers(stack, "Ghost Kitchen Partners")) == 1
    assert stack.sandbox.spectrum_injector.calls["AddCustomer"] == 1


def test_spectrum_faulting_for_a_while_is_retried_then_synced(stack: Stack) -> None:
    stack.sandbox.spectrum_injector.script("AddCustomer", ["error", "error", "error"])
    stack.start_worker()
    company = new_company(stack, "Flaky Network Diner")
    post_delivery(
        stack,
        {
            "messageId": "f1",
            "data": [{"action": "created", "entity": {"type": "company", "id": company["id"]}}],
        },
    )
    rec = stack.wait_status("customer", company["id"], timeout=90)
    assert rec.attempts == 4
    assert len(spectrum_customers(stack, "Flaky Network Diner")) == 1


def test_permanent_validation_error_is_failed_with_the_spectrum_message(stack: Stack) -> None:
    with stack.sandbox.spectrum_db.engine.begin() as c:
        c.execute(t.terms.delete())
    stack.start_worker()
    company = new_company(stack, "No Terms Cafe")
    post_delivery(
        stack,
        {
            "messageId": "p1",
            "data": [{"action": "created", "entity": {"type": "company", "id": company["id"]}}],
        },
    )
    rec = stack.wait_status("customer", company["id"], ("failed",))
    assert "Terms_Code" in (rec.last_error or "") and rec.attempts == 1
    assert spectrum_customers(stack, "No Terms Cafe") == []


def test_pool_child_killed_between_spectrum_write_and_ledger_commit(stack: Stack) -> None:
    """SIGKILL the pool process while Spectrum has committed AddCustomer but not answered."""
    inj = stack.sandbox.spectrum_injector
    inj.configure(inj.config.model_copy(update={"timeout_hold_s": 8.0}))
    inj.script("AddCustomer", ["timeout"])  # commit, then hold the answer
    worker = stack.start_worker(concurrency=1)
    company = new_company(stack, "Killed Mid Write Bakery")
    post_delivery(
        stack,
        {
            "messageId": "k1",
            "data": [{"action": "created", "entity": {"type": "company", "id": company["id"]}}],
        },
    )
    wait_for(
        lambda: spectrum_customers(stack, "Killed Mid Write Bakery"),
        30,
        what="AddCustomer committed in Spectrum",
    )
    children = stack.pool_children(worker)
    assert children, "no pool process to kill"
    for child in children:
        child.kill()
    psutil.wait_procs(children, timeout=10)
    rec = stack.wait_status("customer", company["id"], timeout=90)
    assert rec.spectrum_key and rec.state.get("recovered", 0) >= 1
    assert len(spectrum_customers(stack, "Killed Mid Write Bakery")) == 1
    # the held call never completes (its caller died); a re-send by the redelivery would be
    # counted here, and Spectrum would answer "already exists": it looked the customer up instead
    assert inj.calls.get("AddCustomer", 0) == 0
