"""Invoices that change after posting, end to end (F21): real sandbox servers, the real Redis, a
real Celery worker, webhooks through the ingest. The office's actions (editing lines, approving
again, voiding) are made in the ServiceTrade simulator, which emits the ``updated`` events."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest

from sandbox import credentials
from tests.e2e.conftest import Stack, _make_stack
from worker.serve import wait_for

pytestmark = pytest.mark.e2e

AR = "CR_INVOICE_HEADER_MC"
INVOICE_ENTITY = 6


def register_invoice_webhook(stack: Stack) -> None:
    from worker.context import build_context

    ctx = build_context(stack.settings, ledger=stack.ledger)
    try:
        ctx.st.register_webhook(stack.ingest_url, {INVOICE_ENTITY: ["created", "updated"]})
    finally:
        ctx.st.close()


def invoice(stack: Stack, invoice_id: int) -> dict[str, Any]:
    inv = stack.sandbox.st_state.get("invoice", invoice_id)
    assert inv is not None
    return dict(inv)


def office(stack: Stack, invoice_id: int, **changes: Any) -> None:
    """The office changes the invoice in ServiceTrade; the change reaches the ingest."""
    stack.sandbox.st_state.update("invoice", invoice_id, changes)
    stack.flush_webhooks()


def staged(stack: Stack, name: str) -> int:
    assert stack.sandbox.world is not None
    inv_id = int(stack.sandbox.world.landmarks[name])
    stack.sandbox.st_state.update("invoice", inv_id, {"status": "internal_review"})
    return inv_id


def documents(stack: Stack, invoice_id: int) -> list[str]:
    from worker.ledger import Status

    return sorted(
        str(rec.spectrum_key)
        for rec in stack.ledger.list_records(record_type="ar_document", limit=100_000)
        if rec.key.source_id.split(":")[0] == str(invoice_id) and rec.status is Status.DONE
    )


def owed_in_spectrum(stack: Stack, invoice_id: int) -> Decimal:
    total = Decimal("0.00")
    for number in documents(stack, invoice_id):
        (row,) = stack.sandbox.spectrum_db.rows(AR, Invoice_Or_Transaction=number)
        worth = Decimal(row["Invoice_Amount"]) + Decimal(row["Sales_Tax_Amount"])
        total += worth if row["Transaction_Type"] == "I" else -worth
    return total


def st_total(stack: Stack, invoice_id: int) -> Decimal:
    return Decimal(str(invoice(stack, invoice_id)["totalPrice"])).quantize(Decimal("0.01"))


def office_api(stack: Stack) -> httpx.Client:
    """The office's own session on the ServiceTrade simulator's REST API."""
    base = stack.sandbox.st_url
    token = httpx.post(
        f"{base}/api/oauth2/token",
        data={
            "grant_type": "client_credentials",
            "client_id": credentials.ST_CLIENT_ID,
            "client_secret": credentials.ST_CLIENT_SECRET,
        },
        timeout=10,
    ).json()["access_token"]
    return httpx.Client(
        base_url=f"{base}/api", headers={"Authorization": f"Bearer {token}"}, timeout=10
    )


def edited_items(stack: Stack, invoice_id: int, add: int = 2) -> list[dict[str, Any]]:
    items = [dict(i) for i in invoice(stack, invoice_id)["items"]]
    items[0]["quantity"] = float(Decimal(str(items[0]["quantity"])) + add)
    return items


def approve_and_wait(stack: Stack, inv_id: int, number: str | None = None) -> None:
    office(stack, inv_id, status="pending_accounting")
    wait_for(
        lambda: (
            invoice(stack, inv_id)["status"] == "processed"
            and (number is None or invoice(stack, inv_id)["invoiceNumber"] == number)
        ),
        60,
        what=f"invoice {inv_id} processed {number or ''}",
    )


def test_rebill_edit_and_reapprove_end_to_end(stack: Stack) -> None:
    inv_id = staged(stack, "mixed_sign_invoice")
    register_invoice_webhook(stack)
    stack.start_worker()
    approve_and_wait(stack, inv_id, f"ST{inv_id}")
    first = st_total(stack, inv_id)
    assert owed_in_spectrum(stack, inv_id) == first

    # the office edits a line and sends the invoice to accounting again, through the API
    line = invoice(stack, inv_id)["items"][0]
    with office_api(stack) as api:
        api.put(
            f"/invoiceitem/{line['id']}", json={"quantity": line["quantity"] + 2}
        ).raise_for_status()
        stack.flush_webhooks()  # processed: nothing happens yet
        api.put(f"/invoice/{inv_id}", json={"status": "pending_accounting"}).raise_for_status()
    stack.flush_webhooks()
    wait_for(
        lambda: (
            invoice(stack, inv_id)["status"] == "processed"
            and invoice(stack, inv_id)["invoiceNumber"] == f"ST{inv_id}-1"
        ),
        60,
        what="rebilled and processed",
    )

    assert st_total(stack, inv_id) != first
    wait_for(lambda: len(documents(stack, inv_id)) == 6, 30, what="six documents")
    assert documents(stack, inv_id) == sorted(
        [
            f"ST{inv_id}",
            f"SC{inv_id}",
            f"SV{inv_id}",
            f"SD{inv_id}",
            f"ST{inv_id}-1",
            f"SC{inv_id}-1",
        ]
    )
    assert owed_in_spectrum(stack, inv_id) == st_total(stack, inv_id)
    for number in documents(stack, inv_id):
        assert stack.sandbox.spectrum_db.count(AR, Invoice_Or_Transaction=number) == 1


def test_split_void_end_to_end_sums_to_zero(stack: Stack) -> None:
    inv_id = staged(stack, "mixed_sign_invoice")
    register_invoice_webhook(stack)
    stack.start_worker()
    approve_and_wait(stack, inv_id)
    office(stack, inv_id, status="void")
    rec = stack.wait_status("invoice_void", inv_id)
    assert rec.spectrum_key == f"SV{inv_id}"
    assert documents(stack, inv_id) == sorted(
        [f"ST{inv_id}", f"SC{inv_id}", f"SV{inv_id}", f"SD{inv_id}"]
    )
    assert owed_in_spectrum(stack, inv_id) == Decimal("0.00")


@pytest.fixture
def multi_cc_stack(tmp_path: Path) -> Iterator[Stack]:
    def edit(text: str) -> str:
        return text.replace("multi_cost_center = false", "multi_cost_center = true", 1)

    yield from _make_stack(tmp_path, f"sqlite:///{tmp_path / 'ledger.sqlite'}", config_edit=edit)


def test_multi_cost_center_invoice_end_to_end(multi_cc_stack: Stack) -> None:
    stack = multi_cc_stack
    inv_id = staged(stack, "invoice_nc")
    st = stack.sandbox.st_state
    inv = invoice(stack, inv_id)
    job = st.get("job", inv["job"]["id"])
    other = {"SP": "FA", "FA": "SP", "EX": "SP"}[job["serviceLine"]]
    line = next(s for s in st.all("serviceline") if s["abbr"] == other)
    # the job has work in a second trade: one Spectrum job per cost center
    st.create(
        "jobitem",
        {
            "name": "Second trade",
            "quantity": 1,
            "cost": 10,
            "job": {"id": job["id"]},
            "serviceLine": {"id": line["id"], "abbr": other},
        },
    )
    items = [dict(i) for i in inv["items"]]
    extra = {
        **items[0],
        "id": 990001,
        "description": "Second trade labor",
        "quantity": 2,
        "serviceLine": {"id": line["id"], "abbr": other, "name": line.get("name")},
    }
    st.update("invoice", inv_id, {"items": [*items, extra]})
    register_invoice_webhook(stack)
    stack.start_worker()

    approve_and_wait(stack, inv_id)

    numbers = documents(stack, inv_id)
    assert len(numbers) == 2 and all(len(n) <= 10 for n in numbers)
    jobs = {
        stack.sandbox.spectrum_db.rows(AR, Invoice_Or_Transaction=n)[0]["Job_Number"].strip()
        for n in numbers
    }
    spectrum_jobs = st.get("job", job["id"])["externalIds"]["spectrum"].split(",")
    assert len(spectrum_jobs) == 2
    assert jobs == set(spectrum_jobs)
    assert owed_in_spectrum(stack, inv_id) == st_total(stack, inv_id)
    assert invoice(stack, inv_id)["invoiceNumber"] == numbers[0]
    note = wait_for(
        lambda: [
            c["content"]
            for c in st.all("comment")
            if c.get("entityId") == inv_id and "Spectrum documents" in c["content"]
        ],
        30,
        what="numbers comment",
    )
    assert all(n in note[0] for n in numbers)


@pytest.fixture
def big_id_stack(tmp_path: Path) -> Iterator[Stack]:
    from sandbox.seed import SeedSpec

    def edit(text: str) -> str:
        return text.replace(
            'debit_prefix = "SD"\n',
            'debit_prefix = "SD"\nnumbers = { prefix = "N", start = 1, end = 9999, width = 4 }\n',
            1,
        )

    yield from _make_stack(
        tmp_path,
        f"sqlite:///{tmp_path / 'ledger.sqlite'}",
        spec=SeedSpec(companies=3, big_ids=True),
        config_edit=edit,
    )


def test_invoice_number_range_with_16_digit_ids_end_to_end(big_id_stack: Stack) -> None:
    stack = big_id_stack
    inv_id = staged(stack, "mixed_sign_invoice")
    assert len(str(inv_id)) == 16
    assert invoice(stack, inv_id)["invoiceNumber"] is None
    register_invoice_webhook(stack)
    stack.start_worker()

    approve_and_wait(stack, inv_id, "STN0001")

    assert documents(stack, inv_id) == ["SCN0001", "STN0001"]
    office(stack, inv_id, items=edited_items(stack, inv_id))
    approve_and_wait(stack, inv_id, "STN0001-1")
    office(stack, inv_id, status="void")
    stack.wait_status("invoice_void", inv_id)
    numbers = documents(stack, inv_id)
    assert all(len(n) <= 10 for n in numbers)
    assert len(numbers) == len(set(numbers)) == 8
    assert owed_in_spectrum(stack, inv_id) == Decimal("0.00")
