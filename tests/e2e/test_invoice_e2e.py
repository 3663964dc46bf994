"""Invoices end to end (F5, F6, F14): real sandbox servers, the real Redis, a real Celery worker.

The office approves an invoice in the ServiceTrade simulator; the ``updated`` event reaches the
ingest as a webhook, a worker posts it to the Spectrum simulator and writes the status back.
Nothing runs eagerly.
"""

from __future__ import annotations

import uuid
from datetime import date
from decimal import Decimal
from typing import Any

import httpx
import pytest

from sandbox.spectrum.admin_state import Window
from tests.e2e.conftest import Stack, wait_for

pytestmark = pytest.mark.e2e

AR = "CR_INVOICE_HEADER_MC"
AR_LINES = "CR_INVOICE_DETAIL_MC"
REST = "ARMultiLineInvoice"
INVOICE_ENTITY = 6


def register_invoice_webhook(stack: Stack) -> None:
    """Subscribe the ingest to ServiceTrade invoice events (entity type 6)."""
    from worker.context import build_context

    ctx = build_context(stack.settings, ledger=stack.ledger)
    try:
        ctx.st.register_webhook(stack.ingest_url, {INVOICE_ENTITY: ["created", "updated"]})
    finally:
        ctx.st.close()


def landmark(stack: Stack, name: str) -> int:
    assert stack.sandbox.world is not None
    return int(stack.sandbox.world.landmarks[name])


def invoice(stack: Stack, invoice_id: int) -> dict[str, Any]:
    inv = stack.sandbox.st_state.get("invoice", invoice_id)
    assert inv is not None
    return dict(inv)


def set_status(stack: Stack, invoice_id: int, status: str) -> None:
    stack.sandbox.st_state.update("invoice", invoice_id, {"status": status})


def rows(stack: Stack, table: str, **where: Any) -> list[dict[str, Any]]:
    return [
        {k: v.strip() if isinstance(v, str) else v for k, v in r.items()}
        for r in stack.sandbox.spectrum_db.rows(table, **where)
    ]


def comments(stack: Stack, invoice_id: int) -> list[str]:
    return [
        c["content"]
        for c in stack.sandbox.st_state.all("comment")
        if c.get("entityType") == INVOICE_ENTITY and c.get("entityId") == invoice_id
    ]


def total(stack: Stack, number: str) -> Decimal:
    (row,) = rows(stack, AR, Invoice_Or_Transaction=number)
    return Decimal(row["Invoice_Amount"]) + Decimal(row["Sales_Tax_Amount"])


def approve_via_webhook(stack: Stack, invoice_id: int) -> None:
    """The office marks the invoice ready for accounting: ServiceTrade sends ``updated``."""
    set_status(stack, invoice_id, "pending_accounting")
    stack.flush_webhooks()


def staged(stack: Stack, *names: str) -> list[int]:
    """Seeded pending invoices put back to review before the webhook exists (no events yet)."""
    ids = [landmark(stack, n) for n in names]
    for i in ids:
        set_status(stack, i, "internal_review")
    # the simulator picks subscribers when it batches a change (0.2 s later): hand these changes
    # over now, while nobody is subscribed, or a webhook registered next may still get them
    stack.flush_webhooks()
    return ids


def test_approved_invoice_is_posted_and_processed(stack: Stack) -> None:
    inv_id, mixed_id = staged(stack, "invoice_nc", "mixed_sign_invoice")
    register_invoice_webhook(stack)
    stack.start_worker()
    approve_via_webhook(stack, inv_id)
    approve_via_webhook(stack, mixed_id)

    rec = stack.wait_status("invoice", inv_id)
    assert rec.spectrum_key == f"ST{inv_id}"
    stack.wait_status("invoice", mixed_id)
    inv = wait_for(
        lambda: invoice(stack, inv_id)["status"] == "processed" and invoice(stack, inv_id),
        30,
        what="processed status",
    )
    assert inv["invoiceNumber"] == f"ST{inv_id}"
    assert total(stack, f"ST{inv_id}") == Decimal(str(inv["totalPrice"]))
    # the chain ran first: customer, site and job are in Spectrum and the invoice is on the job
    job = stack.record("job", inv["job"]["id"])
    assert job.status.value == "done"
    (header,) = rows(stack, AR, Invoice_Or_Transaction=f"ST{inv_id}")
    assert header["Job_Number"] == job.spectrum_key
    assert header["Customer_Code"] == stack.record("customer", inv["customer"]["id"]).spectrum_key
    # the mixed-sign invoice became an invoice and a credit memo that reconcile to the cent
    mixed = invoice(stack, mixed_id)
    assert mixed["status"] == "processed"
    assert total(stack, f"ST{mixed_id}") - total(stack, f"SC{mixed_id}") == Decimal(
        str(mixed["totalPrice"])
    )
    assert rows(stack, AR, Invoice_Or_Transaction=f"SC{mixed_id}")[0]["Transaction_Type"] == "C"


def test_spectrum_validation_failure_sets_failed_with_a_comment(stack: Stack) -> None:
    (inv_id,) = staged(stack, "invoice_sc")
    # the AR processing window is closed for the invoice's date: Spectrum refuses it (I rows)
    stack.sandbox.spectrum_app.state.admin.set_window(
        "AR", Window(date(2027, 1, 1), date(2027, 1, 31))
    )
    register_invoice_webhook(stack)
    stack.start_worker()
    approve_via_webhook(stack, inv_id)

    rec = stack.wait_status("invoice", inv_id, ("failed",))
    assert "GL_Date" in (rec.last_error or "")
    wait_for(lambda: invoice(stack, inv_id)["status"] == "failed", 30, what="failed status")
    (comment,) = wait_for(lambda: comments(stack, inv_id), 30, what="failure comment")
    assert "Spectrum said: I:" in comment
    assert "[GL_Date]" in comment
    assert "pending accounting" in comment
    assert not rows(stack, AR, Invoice_Or_Transaction=f"ST{inv_id}")


def test_void_is_credited_once_when_delivered_three_times(stack: Stack) -> None:
    (inv_id,) = staged(stack, "invoice_nc")
    register_invoice_webhook(stack)
    stack.start_worker(concurrency=3)
    approve_via_webhook(stack, inv_id)
    stack.wait_status("invoice", inv_id)
    wait_for(lambda: invoice(stack, inv_id)["status"] == "processed", 30, what="processed")

    set_status(stack, inv_id, "void")
    stack.flush_webhooks()
    # ServiceTrade may deliver the change again (retries, duplicates): three more messages
    for _ in range(3):
        body = {
            "messageId": str(uuid.uuid4()),
            "timestamp": "1794805200",
            "data": [
                {
                    "action": "updated",
                    "timestamp": 1794805200,
                    "entity": {"type": "invoice", "id": inv_id},
                    "changeset": [{"field": "status", "oldValue": "processed", "newValue": "void"}],
                }
            ],
        }
        httpx.post(stack.ingest_url, json=body, timeout=10).raise_for_status()

    rec = stack.wait_status("invoice_void", inv_id)
    assert rec.spectrum_key == f"SV{inv_id}"
    # every delivery's task has run: the audit shows one credit-memo write and the rest no-ops
    wait_for(
        lambda: len([e for e in stack.ledger.history(rec.key) if e.service == "noop"]) >= 3,
        30,
        what="the redeliveries to be processed",
    )
    (memo,) = rows(stack, AR, Invoice_Or_Transaction=f"SV{inv_id}")
    assert memo["Transaction_Type"] == "C"
    assert total(stack, f"SV{inv_id}") == total(stack, f"ST{inv_id}")
    assert stack.sandbox.spectrum_injector.calls[REST] == 2  # the invoice, then one credit memo
    assert sum(1 for c in comments(stack, inv_id) if f"SV{inv_id}" in c) == 1


def test_ghost_write_is_adopted(stack: Stack) -> None:
    (inv_id,) = staged(stack, "mixed_sign_invoice")
    stack.sandbox.spectrum_injector.script(REST, ["ghost"])
    register_invoice_webhook(stack)
    stack.start_worker()
    approve_via_webhook(stack, inv_id)

    rec = stack.wait_status("invoice", inv_id)
    assert rec.spectrum_key == f"ST{inv_id}"
    assert stack.sandbox.spectrum_injector.calls[REST] == 1  # committed once, then looked up
    assert len(rows(stack, AR, Invoice_Or_Transaction=f"ST{inv_id}")) == 1
    assert len(rows(stack, AR, Invoice_Or_Transaction=f"SC{inv_id}")) == 1
    wait_for(lambda: invoice(stack, inv_id)["status"] == "processed", 30, what="processed")
    history = [e.service for e in stack.ledger.history(rec.key)]
    assert history.count(REST) == 1


def test_salesperson_without_spectrum_id_stops_with_comment_and_alert(stack: Stack) -> None:
    (inv_id,) = staged(stack, "invoice_salesperson_without_id")
    register_invoice_webhook(stack)
    stack.start_worker()
    approve_via_webhook(stack, inv_id)

    rec = stack.wait_status("invoice", inv_id, ("failed",))
    assert rec.error_kind == "prerequisite"
    user = landmark(stack, "salesperson_without_spectrum_id")
    assert f"(id {user}) has no Spectrum salesperson code" in (rec.last_error or "")
    (comment,) = wait_for(lambda: comments(stack, inv_id), 30, what="comment")
    assert "salesperson" in comment
    wait_for(lambda: invoice(stack, inv_id)["status"] == "failed", 30, what="failed status")
    alerts = stack.ledger.alerts(rec.key)
    assert [a["kind"] for a in alerts] == ["prerequisite"]
    assert stack.sandbox.spectrum_injector.calls.get(REST, 0) == 0
