"""ServiceTrade simulator: invoices — money, job items, contracts (409) and status transitions
(reference §5.5, §8)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.sandbox.test_servicetrade_support import (
    CONTRACT,
    CONTRACT_OTHER,
    CUSTOMER,
    INVOICE,
    JOB,
    JOB_ITEM,
    LIB_ITEM,
    LOC,
    SERVICE_LINE,
    T0,
    VENDOR,
    Sim,
    data,
    make_sim,
)


@pytest.fixture
def sim() -> Iterator[Sim]:
    s, close = make_sim()
    yield s
    close()


def test_post_computes_item_and_invoice_money(sim: Sim) -> None:
    invoice = data(
        sim.post(
            "/api/invoice",
            {
                "jobId": JOB,
                "items": [
                    {
                        "description": "Labor",
                        "quantity": 2,
                        "price": 45.5,
                        "taxRate": 7.0,
                        "libItemId": LIB_ITEM,
                        "serviceLineId": SERVICE_LINE,
                    },
                    {"description": "Part", "quantity": 3, "price": 6.665},
                    {"description": "Credit", "quantity": 1, "price": -10},
                ],
            },
        )
    )
    labor, part, credit = invoice["items"]
    # §5.5 [A]: item subtotal = quantity * price, tax = subtotal * rate %, rounded to cents
    assert (labor["subtotal"], labor["taxAmount"], labor["totalPrice"]) == (91.0, 6.37, 97.37)
    assert (part["subtotal"], part["taxAmount"], part["totalPrice"]) == (20.0, 0.0, 20.0)
    assert (credit["subtotal"], credit["totalPrice"]) == (-10.0, -10.0)
    # invoice = sums of the items
    assert invoice["subtotal"] == 101.0
    assert invoice["taxAmount"] == 6.37
    assert invoice["totalPrice"] == 107.37
    assert labor["libItem"]["id"] == LIB_ITEM and labor["serviceLine"]["abbr"] == "SP"
    # location/customer/vendor come from the job
    assert invoice["customer"]["id"] == CUSTOMER and invoice["location"]["id"] == LOC
    assert invoice["job"] == {
        "id": JOB,
        "uri": invoice["job"]["uri"],
        "number": 52311,
        "name": "Annual Inspection",
    }
    assert invoice["status"] == "ok" and invoice["type"] == "invoice"
    assert invoice["transactionDate"] == T0
    assert all(isinstance(item["id"], int) for item in invoice["items"])


def test_apply_tax_false_zeroes_tax(sim: Sim) -> None:
    invoice = data(
        sim.post(
            "/api/invoice",
            {
                "jobId": JOB,
                "applyTax": False,
                "items": [{"description": "Labor", "quantity": 1, "price": 100, "taxRate": 7.0}],
            },
        )
    )
    assert invoice["taxAmount"] == 0 and invoice["totalPrice"] == 100


def test_without_items_the_job_items_are_used(sim: Sim) -> None:
    invoice = data(sim.post("/api/invoice", {"jobId": JOB}))
    assert len(invoice["items"]) == 1
    item = invoice["items"][0]
    assert item["jobItem"] == {"id": JOB_ITEM}
    assert item["quantity"] == 2 and item["price"] == 45.5 and item["subtotal"] == 91.0
    assert invoice["totalPrice"] == 91.0


def test_without_job_location_customer_vendor_are_required(sim: Sim) -> None:
    response = sim.post("/api/invoice", {"items": []})
    assert response.status_code == 400
    assert {"locationId", "customerId", "vendorId"} <= set(
        response.json()["messages"]["validation"]
    )
    ok = sim.post(
        "/api/invoice", {"locationId": LOC, "customerId": CUSTOMER, "vendorId": VENDOR, "items": []}
    )
    assert data(ok)["totalPrice"] == 0


def test_item_validation_names_the_item(sim: Sim) -> None:
    response = sim.post("/api/invoice", {"jobId": JOB, "items": [{"description": "no price"}]})
    assert response.status_code == 400
    assert "items[0].price" in response.json()["messages"]["validation"]


def test_contract_that_does_not_apply_is_409(sim: Sim) -> None:
    response = sim.post("/api/invoice", {"jobId": JOB, "contractId": CONTRACT_OTHER})
    assert response.status_code == 409
    body = response.json()
    assert body["data"] is None and body["messages"]["error"]
    applied = data(sim.post("/api/invoice", {"jobId": JOB, "contractId": CONTRACT}))
    assert applied["contract"]["id"] == CONTRACT
    put = sim.put(f"/api/invoice/{INVOICE}", {"contractId": CONTRACT_OTHER})
    assert put.status_code == 409
    assert sim.post("/api/invoice", {"jobId": JOB, "contractId": 987654}).status_code == 400


def test_pending_accounting_list_and_processed_write_back(sim: Sim) -> None:
    pending = data(sim.get("/api/invoice", status="pending_accounting"))["invoices"]
    assert [i["id"] for i in pending] == [INVOICE]
    # §9: seeded invoices get their money filled in
    assert (pending[0]["subtotal"], pending[0]["taxAmount"], pending[0]["totalPrice"]) == (
        450.0,
        31.5,
        481.5,
    )
    done = data(
        sim.put(f"/api/invoice/{INVOICE}", {"status": "processed", "invoiceNumber": "AR-000123"})
    )
    assert done["status"] == "processed" and done["invoiceNumber"] == "AR-000123"
    assert data(sim.get("/api/invoice", status="pending_accounting"))["invoices"] == []
    both = data(sim.get("/api/invoice", status="processed,failed"))["invoices"]
    assert [i["id"] for i in both] == [INVOICE]


# --- §8 status transitions ([A], written out here from the reference text) --------------------
ALLOWED = [
    ("ok", "pending_accounting"),
    ("internal_review", "pending_accounting"),
    ("pending_accounting", "processed"),
    ("pending_accounting", "failed"),
    ("failed", "pending_accounting"),
    ("failed", "ok"),
    ("processed", "paid"),
    ("processed", "pending_accounting"),  # [A] issue 13: an edited invoice re-approved
    *[
        (s, "void")
        for s in (
            "ok",
            "internal_review",
            "pending_accounting",
            "processed",
            "paid",
            "sent",
            "failed",
            "void",
        )
    ],
]
REJECTED = [
    ("processed", "ok"),
    ("ok", "processed"),
    ("ok", "failed"),
    ("pending_accounting", "paid"),
    ("failed", "processed"),
    ("paid", "ok"),
    ("void", "ok"),
    ("void", "pending_accounting"),
    ("sent", "pending_accounting"),
    ("internal_review", "processed"),
]


def _with_status(sim: Sim, status: str) -> int:
    invoice = sim.state.create("invoice", {"name": "T", "status": status, "items": []})
    return int(invoice["id"])


@pytest.mark.parametrize(("old", "new"), ALLOWED)
def test_allowed_transition(sim: Sim, old: str, new: str) -> None:
    invoice_id = _with_status(sim, old)
    assert data(sim.put(f"/api/invoice/{invoice_id}", {"status": new}))["status"] == new
    assert sim.state.get("invoice", invoice_id)["status"] == new  # type: ignore[index]


@pytest.mark.parametrize(("old", "new"), REJECTED)
def test_rejected_transition_is_400_and_changes_nothing(sim: Sim, old: str, new: str) -> None:
    invoice_id = _with_status(sim, old)
    response = sim.put(f"/api/invoice/{invoice_id}", {"status": new, "invoiceNumber": "X"})
    assert response.status_code == 400
    assert "status" in response.json()["messages"]["validation"]
    stored = sim.state.get("invoice", invoice_id)
    assert stored is not None
    assert stored["status"] == old and stored.get("invoiceNumber") is None


def test_unknown_status_value_is_400(sim: Sim) -> None:
    response = sim.put(f"/api/invoice/{INVOICE}", {"status": "exported"})
    assert response.status_code == 400


def test_paid_sets_is_paid(sim: Sim) -> None:
    data(sim.put(f"/api/invoice/{INVOICE}", {"status": "processed"}))
    paid = data(sim.put(f"/api/invoice/{INVOICE}", {"status": "paid"}))
    assert paid["isPaid"] is True
    assert [i["id"] for i in data(sim.get("/api/invoice", paid="true"))["invoices"]] == [INVOICE]


def test_invoice_sort_by_name_then_transaction_date(sim: Sim) -> None:
    b = data(sim.post("/api/invoice", {"jobId": JOB, "name": "B", "transactionDate": T0 - 10}))
    a = data(sim.post("/api/invoice", {"jobId": JOB, "name": "A", "transactionDate": T0 - 5}))
    by_name = [i["id"] for i in data(sim.get("/api/invoice", jobId=JOB))["invoices"]]
    assert by_name == [a["id"], b["id"], INVOICE]
    by_date = data(sim.get("/api/invoice", jobId=JOB, sort="transactionDate", sortOrder="desc"))[
        "invoices"
    ]
    # the seeded invoice has no transaction date: it sorts as the oldest
    assert [i["id"] for i in by_date] == [a["id"], b["id"], INVOICE]


# --- invoice items (§4 "Invoice item", §5.5 [W + A]): the office edits a line ------------------
def test_rebill_invoice_item_edit_recomputes_the_line_and_the_invoice(
    sim: Sim,
) -> None:
    invoice = data(
        sim.post(
            "/api/invoice",
            {
                "jobId": JOB,
                "items": [{"description": "Labor", "quantity": 2, "price": 45.5, "taxRate": 7.0}],
            },
        )
    )
    (line,) = invoice["items"]
    edited = data(sim.put(f"/api/invoiceitem/{line['id']}", {"quantity": 3}))
    assert (edited["quantity"], edited["subtotal"], edited["taxAmount"]) == (3, 136.5, 9.56)
    after = sim.state.get("invoice", invoice["id"])
    assert after is not None
    assert (after["subtotal"], after["taxAmount"], after["totalPrice"]) == (136.5, 9.56, 146.06)
    bad = sim.put(f"/api/invoiceitem/{line['id']}", {"quantity": "lots"})
    assert bad.status_code == 400
    assert sim.put("/api/invoiceitem/999999999", {"quantity": 1}).status_code == 404
