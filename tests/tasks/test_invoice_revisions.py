"""Invoices that change after posting (F21): rebill / alert, split voids, multi-cost-center
invoices, numbers from a range. ``sync_invoice`` against the in-process sandbox, SQLite ledger."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import insert

from clients.errors import TransientError
from clients.spectrum import infolink_schema as il
from mappers.rules import CodeRange
from tasks.invoice import DOCUMENT_RECORD_TYPE, RECORD_TYPE, sync_invoice
from worker.ledger import RecordKey, Status

AR = il.ar_invoices.name
REST = "ARMultiLineInvoice"


# --- helpers -------------------------------------------------------------------------------------
def with_invoice_rules(ctx: Any, **changes: Any) -> None:
    conn = ctx.settings.connections["main"]
    rules = conn.rules.model_copy(
        update={"invoices": conn.rules.invoices.model_copy(update=changes)}
    )
    connections = {**ctx.settings.connections, "main": conn.model_copy(update={"rules": rules})}
    ctx.settings = ctx.settings.model_copy(update={"connections": connections})


def with_rules(ctx: Any, section: str, **changes: Any) -> None:
    conn = ctx.settings.connections["main"]
    rules = conn.rules.model_copy(
        update={section: getattr(conn.rules, section).model_copy(update=changes)}
    )
    connections = {**ctx.settings.connections, "main": conn.model_copy(update={"rules": rules})}
    ctx.settings = ctx.settings.model_copy(update={"connections": connections})


def st_invoice(st_state: Any, invoice_id: int) -> dict[str, Any]:
    inv = st_state.get("invoice", invoice_id)
    assert inv is not None
    return dict(inv)


def st_total(st_state: Any, invoice_id: int) -> Decimal:
    return Decimal(str(st_invoice(st_state, invoice_id)["totalPrice"])).quantize(Decimal("0.01"))


def documents(ctx: Any, invoice_id: int) -> list[str]:
    """Spectrum numbers of every document the ledger holds as landed for the invoice."""
    return sorted(
        str(rec.spectrum_key)
        for rec in ctx.ledger.list_records(record_type=DOCUMENT_RECORD_TYPE, limit=100_000)
        if rec.key.source_id.split(":")[0] == str(invoice_id) and rec.status is Status.DONE
    )


def owed_in_spectrum(ctx: Any, spectrum_db: Any, invoice_id: int) -> Decimal:
    """Invoices minus credit memos of the invoice's documents, as Spectrum holds them."""
    total = Decimal("0.00")
    for number in documents(ctx, invoice_id):
        (row,) = spectrum_db.rows(AR, Invoice_Or_Transaction=number)
        worth = Decimal(row["Invoice_Amount"]) + Decimal(row["Sales_Tax_Amount"])
        total += worth if row["Transaction_Type"] == "I" else -worth
    return total


def comments_on(st_state: Any, invoice_id: int) -> list[str]:
    return [
        c["content"]
        for c in st_state.all("comment")
        if c.get("entityType") == 6 and c.get("entityId") == invoice_id
    ]


def edit(st_state: Any, invoice_id: int, *, add: int = 1, index: int = 0) -> None:
    """The office changes a line's quantity (ServiceTrade recomputes the money)."""
    items = [dict(i) for i in st_invoice(st_state, invoice_id)["items"]]
    q = Decimal(str(items[index]["quantity"]))
    items[index]["quantity"] = float(q + add if q > 0 else q - add)
    st_state.update("invoice", invoice_id, {"items": items})


def approve(st_state: Any, invoice_id: int) -> None:
    st_state.update("invoice", invoice_id, {"status": "pending_accounting"})


def posts(app: Any) -> int:
    return int(app.state.injector.calls.get(REST, 0))


# --- rebill ----------------------------------------------------------------------------------------
def test_rebill_edit_after_posting_reverses_and_posts_a_revision(
    ctx: Any, world: Any, st_state: Any, spectrum_db: Any, spectrum_app: Any
) -> None:
    inv_id = world.landmarks["invoice_nc"]
    before = st_total(st_state, inv_id)
    assert sync_invoice(ctx, inv_id, "main").result == "synced"
    assert owed_in_spectrum(ctx, spectrum_db, inv_id) == before

    edit(st_state, inv_id)
    approve(st_state, inv_id)
    after = st_total(st_state, inv_id)
    assert after != before
    out = sync_invoice(ctx, inv_id, "main")

    assert out.result == "synced", out.message
    assert out.spectrum_key == f"ST{inv_id}-1"
    assert documents(ctx, inv_id) == sorted([f"ST{inv_id}", f"SV{inv_id}", f"ST{inv_id}-1"])
    (reversal,) = spectrum_db.rows(AR, Invoice_Or_Transaction=f"SV{inv_id}")
    (original,) = spectrum_db.rows(AR, Invoice_Or_Transaction=f"ST{inv_id}")
    assert reversal["Transaction_Type"] == "C"
    assert reversal["Invoice_Amount"] == original["Invoice_Amount"]
    assert owed_in_spectrum(ctx, spectrum_db, inv_id) == after
    inv = st_invoice(st_state, inv_id)
    assert inv["status"] == "processed"
    assert inv["invoiceNumber"] == f"ST{inv_id}-1"
    (note,) = [c for c in comments_on(st_state, inv_id) if "Revision 1" in c]
    assert f"ST{inv_id}-1" in note and f"SV{inv_id} reverses ST{inv_id}" in note

    # approved again without a change: nothing is sent, the status comes back
    n = posts(spectrum_app)
    approve(st_state, inv_id)
    again = sync_invoice(ctx, inv_id, "main")
    assert again.result == "unchanged", again.message
    assert posts(spectrum_app) == n
    assert st_invoice(st_state, inv_id)["status"] == "processed"


def test_rebill_of_a_split_invoice_reverses_both_halves(
    ctx: Any, world: Any, st_state: Any, spectrum_db: Any
) -> None:
    inv_id = world.landmarks["mixed_sign_invoice"]
    assert sync_invoice(ctx, inv_id, "main").ok
    edit(st_state, inv_id, index=-1)  # a bigger discount: the credit-memo half changes
    approve(st_state, inv_id)
    out = sync_invoice(ctx, inv_id, "main")
    assert out.result == "synced", out.message
    assert set(documents(ctx, inv_id)) == {
        f"ST{inv_id}",
        f"SC{inv_id}",
        f"SV{inv_id}",
        f"SD{inv_id}",
        f"ST{inv_id}-1",
        f"SC{inv_id}-1",
    }
    assert owed_in_spectrum(ctx, spectrum_db, inv_id) == st_total(st_state, inv_id)


def test_rebill_alert_policy_fails_with_both_totals_and_posts_nothing(
    ctx: Any, world: Any, st_state: Any, spectrum_db: Any, spectrum_app: Any
) -> None:
    with_invoice_rules(ctx, on_change_after_posting="alert")
    inv_id = world.landmarks["invoice_nc"]
    held = st_total(st_state, inv_id)
    assert sync_invoice(ctx, inv_id, "main").ok
    edit(st_state, inv_id)
    approve(st_state, inv_id)
    now = st_total(st_state, inv_id)
    n = posts(spectrum_app)

    out = sync_invoice(ctx, inv_id, "main")

    assert out.result == "failed"
    assert posts(spectrum_app) == n
    assert st_invoice(st_state, inv_id)["status"] == "failed"
    comment = comments_on(st_state, inv_id)[-1]
    assert f"for {held}" in comment and f"now says {now}" in comment
    assert f"difference {now - held}" in comment
    assert 'set on_change_after_posting = "rebill"' in comment
    alerts = ctx.ledger.alerts(RecordKey("main", RECORD_TYPE, str(inv_id)))
    assert [a["kind"] for a in alerts] == ["drift"]
    assert owed_in_spectrum(ctx, spectrum_db, inv_id) == held


def test_rebill_when_the_refused_credit_half_was_edited_matches_servicetrade(
    ctx: Any, world: Any, st_state: Any, spectrum_db: Any
) -> None:
    """The credit-memo half was refused; the office edited the invoice-half lines and approved
    again: Spectrum must end up with what ServiceTrade says, not the old invoice half."""
    inv_id = world.landmarks["mixed_sign_invoice"]
    squatter = {
        "Company_Code": "ABC",
        "Invoice_Or_Transaction": f"SC{inv_id}",
        "Customer_Code": "OTHER",
        "Transaction_Type": "C",
        "Invoice_Amount": Decimal("1.00"),
        "Sales_Tax_Amount": Decimal("0"),
    }
    with spectrum_db.transaction() as conn:
        conn.execute(insert(il.ar_invoices).values(**squatter))
    assert sync_invoice(ctx, inv_id, "main").result == "failed"
    assert st_invoice(st_state, inv_id)["status"] == "failed"
    edit(st_state, inv_id, index=0)  # the invoice half changes
    approve(st_state, inv_id)  # failed -> pending_accounting

    out = sync_invoice(ctx, inv_id, "main")

    assert out.result == "synced", out.message
    assert owed_in_spectrum(ctx, spectrum_db, inv_id) == st_total(st_state, inv_id)
    assert f"SC{inv_id}" not in documents(ctx, inv_id)  # the squatter is not ours
    assert st_invoice(st_state, inv_id)["status"] == "processed"


def test_rebill_ghost_write_resumes_without_posting_twice(
    ctx: Any, world: Any, st_state: Any, spectrum_db: Any, spectrum_app: Any
) -> None:
    inv_id = world.landmarks["mixed_sign_invoice"]
    assert sync_invoice(ctx, inv_id, "main").ok
    edit(st_state, inv_id)
    approve(st_state, inv_id)
    spectrum_app.state.injector.script(REST, ["ghost"])  # reversal + revision land, answer lost
    with pytest.raises(TransientError):
        sync_invoice(ctx, inv_id, "main")
    out = sync_invoice(ctx, inv_id, "main")
    assert out.result == "adopted", out.message
    for number in documents(ctx, inv_id):
        assert spectrum_db.count(AR, Invoice_Or_Transaction=number) == 1
    assert len(documents(ctx, inv_id)) == 6
    assert owed_in_spectrum(ctx, spectrum_db, inv_id) == st_total(st_state, inv_id)


def test_rebill_crash_after_the_reversal_resumes_with_the_new_documents(
    ctx: Any, world: Any, st_state: Any, spectrum_db: Any, spectrum_app: Any
) -> None:
    """The reversal landed, the new revision was refused (here: a closed window in between is
    simulated by refusing the call's second document); the next approval posts only what is
    missing and nothing twice."""
    inv_id = world.landmarks["invoice_nc"]
    assert sync_invoice(ctx, inv_id, "main").ok
    edit(st_state, inv_id)
    approve(st_state, inv_id)
    # a squatter on the revision number: the reversal lands, the new invoice is refused
    squatter = {
        "Company_Code": "ABC",
        "Invoice_Or_Transaction": f"ST{inv_id}-1",
        "Customer_Code": "OTHER",
        "Transaction_Type": "I",
        "Invoice_Amount": Decimal("1.00"),
        "Sales_Tax_Amount": Decimal("0"),
    }
    with spectrum_db.transaction() as conn:
        conn.execute(insert(il.ar_invoices).values(**squatter))
    assert sync_invoice(ctx, inv_id, "main").result == "failed"
    assert f"SV{inv_id}" in documents(ctx, inv_id)
    assert owed_in_spectrum(ctx, spectrum_db, inv_id) == Decimal("0.00")  # reversed, not rebilled
    with spectrum_db.transaction() as conn:
        conn.execute(il.ar_invoices.delete().where(il.ar_invoices.c.Customer_Code == "OTHER"))
    approve(st_state, inv_id)
    out = sync_invoice(ctx, inv_id, "main")
    assert out.result == "synced", out.message
    last = json.loads(spectrum_app.state.injector.requests(REST)[-1].body)
    assert [d["Invoice_Or_Transaction"] for d in last["arInvoices"]] == [f"ST{inv_id}-1"]
    assert spectrum_db.count(AR, Invoice_Or_Transaction=f"SV{inv_id}") == 1
    assert owed_in_spectrum(ctx, spectrum_db, inv_id) == st_total(st_state, inv_id)


def test_rebill_then_void_reverses_the_current_revision(
    ctx: Any, world: Any, st_state: Any, spectrum_db: Any
) -> None:
    inv_id = world.landmarks["invoice_nc"]
    assert sync_invoice(ctx, inv_id, "main").ok
    edit(st_state, inv_id)
    approve(st_state, inv_id)
    assert sync_invoice(ctx, inv_id, "main").ok
    st_state.update("invoice", inv_id, {"status": "void"})
    out = sync_invoice(ctx, inv_id, "main")
    assert out.result == "synced", out.message
    assert out.spectrum_key == f"SV{inv_id}-1"
    assert owed_in_spectrum(ctx, spectrum_db, inv_id) == Decimal("0.00")
    assert sync_invoice(ctx, inv_id, "main").result == "unchanged"


# --- split void --------------------------------------------------------------------------------
def test_split_void_after_partial_posting_reverses_what_landed(
    ctx: Any, world: Any, st_state: Any, spectrum_db: Any
) -> None:
    inv_id = world.landmarks["mixed_sign_invoice"]
    squatter = {
        "Company_Code": "ABC",
        "Invoice_Or_Transaction": f"SC{inv_id}",
        "Customer_Code": "OTHER",
        "Transaction_Type": "C",
        "Invoice_Amount": Decimal("1.00"),
        "Sales_Tax_Amount": Decimal("0"),
    }
    with spectrum_db.transaction() as conn:
        conn.execute(insert(il.ar_invoices).values(**squatter))
    assert sync_invoice(ctx, inv_id, "main").result == "failed"
    st_state.update("invoice", inv_id, {"status": "void"})
    out = sync_invoice(ctx, inv_id, "main")
    assert out.result == "synced", out.message
    assert documents(ctx, inv_id) == sorted([f"ST{inv_id}", f"SV{inv_id}"])
    assert owed_in_spectrum(ctx, spectrum_db, inv_id) == Decimal("0.00")


# --- multi-cost-center invoices ------------------------------------------------------------------
def test_multi_cost_center_invoice_posts_one_document_set_per_spectrum_job(
    ctx: Any, world: Any, st_state: Any, spectrum_db: Any
) -> None:
    with_rules(ctx, "jobs", multi_cost_center=True)
    inv_id = world.landmarks["mixed_sign_invoice"]
    inv = st_invoice(st_state, inv_id)
    job = st_state.get("job", inv["job"]["id"])
    line = job["serviceLine"]
    other = {"SP": "FA", "FA": "SP", "EX": "SP"}[line]
    fa = next(s for s in st_state.all("serviceline") if s["abbr"] == other)
    st_state.create(
        "jobitem",
        {
            "name": "Second trade",
            "quantity": 1,
            "cost": 10,
            "job": {"id": job["id"]},
            "serviceLine": {"id": fa["id"], "abbr": other},
        },
    )
    items = [dict(i) for i in inv["items"]]
    extra = {
        **items[0],
        "id": 990001,
        "description": "Second trade labor",
        "quantity": 2,
        "serviceLine": {"id": fa["id"], "abbr": other, "name": fa.get("name")},
    }
    st_state.update("invoice", inv_id, {"items": [*items, extra]})

    out = sync_invoice(ctx, inv_id, "main")

    assert out.result == "synced", out.message
    numbers = documents(ctx, inv_id)
    jobs = {
        n: spectrum_db.rows(AR, Invoice_Or_Transaction=n)[0]["Job_Number"].strip() for n in numbers
    }
    assert len(set(jobs.values())) == 2, jobs
    assert all(len(n) <= 10 for n in numbers)
    # the group of the job's own line carries the split (invoice + credit memo), the other
    # group an invoice; group and revision in the suffix
    credit = [n for n in numbers if n.startswith("SC")]
    assert len(credit) == 1
    group = credit[0][-2]
    other = "1" if group == "0" else "0"
    assert sorted(numbers) == sorted(
        [f"SC{inv_id}-{group}0", f"ST{inv_id}-{group}0", f"ST{inv_id}-{other}0"]
    )
    assert jobs[f"SC{inv_id}-{group}0"] == jobs[f"ST{inv_id}-{group}0"]
    assert owed_in_spectrum(ctx, spectrum_db, inv_id) == st_total(st_state, inv_id)
    (note,) = [c for c in comments_on(st_state, inv_id) if "Spectrum documents" in c]
    assert all(n in note for n in numbers)


# --- numbers from a range ------------------------------------------------------------------------
def test_invoice_number_range_allocates_when_servicetrade_has_none(
    ctx: Any, world: Any, st_state: Any, spectrum_db: Any
) -> None:
    with_invoice_rules(ctx, numbers=CodeRange(prefix="N", start=1, end=9999, width=4))
    inv_id = world.landmarks["invoice_nc"]
    # the long ids of a real account: 16 digits, and no invoice number
    big = 4_000_000_000_000_000 + inv_id
    record = st_invoice(st_state, inv_id)
    st_state.delete("invoice", inv_id)
    st_state.create("invoice", {**record, "id": big, "invoiceNumber": None})
    assert len(str(big)) == 16
    # a number Spectrum already holds is skipped
    with spectrum_db.transaction() as conn:
        conn.execute(
            insert(il.ar_invoices).values(
                Company_Code="ABC",
                Invoice_Or_Transaction="STN0001",
                Customer_Code="X",
                Transaction_Type="I",
                Invoice_Amount=Decimal("1.00"),
                Sales_Tax_Amount=Decimal(0),
            )
        )

    out = sync_invoice(ctx, big, "main")

    assert out.result == "synced", out.message
    assert out.spectrum_key == "STN0002"
    inv = st_invoice(st_state, big)
    assert inv["status"] == "processed"
    assert inv["invoiceNumber"] == "STN0002"
    # the derived numbers stay within 10 characters: edit, re-approve, void
    edit(st_state, big)
    approve(st_state, big)
    assert sync_invoice(ctx, big, "main").spectrum_key == "STN0002-1"
    st_state.update("invoice", big, {"status": "void"})
    assert sync_invoice(ctx, big, "main").spectrum_key == "SVN0002-1"
    assert all(len(n) <= 10 for n in documents(ctx, big))
    assert owed_in_spectrum(ctx, spectrum_db, big) == Decimal("0.00")


def test_invoice_number_range_missing_with_a_long_id_names_the_key(
    ctx: Any, world: Any, st_state: Any
) -> None:
    inv_id = world.landmarks["invoice_nc"]
    record = st_invoice(st_state, inv_id)
    st_state.delete("invoice", inv_id)
    big = 4_000_000_000_000_000 + inv_id
    st_state.create("invoice", {**record, "id": big, "invoiceNumber": None})
    out = sync_invoice(ctx, big, "main")
    assert out.result == "failed"
    assert "numbers = { prefix, start, end, width }" in out.message
    assert ctx.ledger.get(RecordKey("main", RECORD_TYPE, str(big))).status is Status.FAILED


def test_rebill_after_an_outage_posts_each_document_once(
    ctx: Any, world: Any, st_state: Any, spectrum_db: Any, spectrum_app: Any
) -> None:
    """Spectrum refuses the rebill's call outright (down): the revision chosen before the write
    is kept, and the retry posts the reversal and the revision once, under the same numbers."""
    inv_id = world.landmarks["invoice_nc"]
    assert sync_invoice(ctx, inv_id, "main").ok
    edit(st_state, inv_id)
    approve(st_state, inv_id)
    spectrum_app.state.injector.script(REST, ["error", "error"])
    for _ in range(2):
        with pytest.raises(TransientError):
            sync_invoice(ctx, inv_id, "main")
    rec = ctx.ledger.get(RecordKey("main", RECORD_TYPE, str(inv_id)))
    assert rec.status is Status.PENDING
    assert rec.state["ar"]["revision"] == 1  # decided once, before the first write
    out = sync_invoice(ctx, inv_id, "main")
    assert out.result == "synced", out.message
    assert documents(ctx, inv_id) == sorted([f"ST{inv_id}", f"SV{inv_id}", f"ST{inv_id}-1"])
    assert owed_in_spectrum(ctx, spectrum_db, inv_id) == st_total(st_state, inv_id)


def test_rebill_of_an_invoice_posted_before_revisions_existed(
    ctx: Any, world: Any, st_state: Any, spectrum_db: Any
) -> None:
    """Ledger rows written by the previous release (no ``ar`` state, document rows without a
    content digest) are read as revision 0: an edit is still rebilled under the old numbers."""
    inv_id = world.landmarks["mixed_sign_invoice"]
    assert sync_invoice(ctx, inv_id, "main").ok
    key = RecordKey("main", RECORD_TYPE, str(inv_id))
    rec = ctx.ledger.get(key)
    old_state = {k: v for k, v in rec.state.items() if k != "ar"}
    ctx.ledger.mark_done(key, spectrum_key=rec.spectrum_key, state=old_state)
    for kind in ("invoice", "credit_memo"):
        dkey = RecordKey("main", DOCUMENT_RECORD_TYPE, f"{inv_id}:{kind}")
        drec = ctx.ledger.get(dkey)
        ctx.ledger.mark_done(
            dkey,
            spectrum_key=drec.spectrum_key,
            state={k: v for k, v in drec.state.items() if k != "content"},
        )
    approve(st_state, inv_id)
    assert sync_invoice(ctx, inv_id, "main").result == "unchanged"  # same money: no drift
    edit(st_state, inv_id)
    approve(st_state, inv_id)
    out = sync_invoice(ctx, inv_id, "main")
    assert out.result == "synced", out.message
    assert out.spectrum_key == f"ST{inv_id}-1"
    assert owed_in_spectrum(ctx, spectrum_db, inv_id) == st_total(st_state, inv_id)
