"""sync_invoice against the in-process sandbox with a real SQLite ledger (F5, F6, F13, F14)."""

from __future__ import annotations

import json
from datetime import date
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import delete, insert

from clients.errors import TransientError
from clients.spectrum import infolink_schema as il
from sandbox.spectrum.admin_state import Window
from tasks.invoice import (
    DOCUMENT_RECORD_TYPE,
    RECORD_TYPE,
    TASK_NAME,
    VOID_RECORD_TYPE,
    post_invoice,
    posted_documents,
    sweep_pending_invoices,
    sync_invoice,
)
from tasks.job import sync_job
from worker.ledger import RecordKey, Status

AR = il.ar_invoices.name
AR_LINES = il.ar_invoice_lines.name
REST = "ARMultiLineInvoice"


def key(invoice_id: int, record_type: str = RECORD_TYPE) -> RecordKey:
    return RecordKey("main", record_type, str(invoice_id))


def posts(app: Any) -> int:
    """How many times the invoice service was called (every POST, whatever its outcome)."""
    return int(app.state.injector.calls.get(REST, 0))


def st_invoice(st_state: Any, invoice_id: int) -> dict[str, Any]:
    inv = st_state.get("invoice", invoice_id)
    assert inv is not None
    return dict(inv)


def comments_on(st_state: Any, invoice_id: int) -> list[str]:
    return [
        c["content"]
        for c in st_state.all("comment")
        if c.get("entityType") == 6 and c.get("entityId") == invoice_id
    ]


def spectrum_total(spectrum_db: Any, number: str) -> Decimal:
    (row,) = spectrum_db.rows(AR, Invoice_Or_Transaction=number)
    return Decimal(row["Invoice_Amount"]) + Decimal(row["Sales_Tax_Amount"])


def owed_in_spectrum(ctx: Any, spectrum_db: Any, invoice_id: int) -> Decimal:
    """Invoices minus credit memos of every Spectrum document the ledger holds for the invoice."""
    total = Decimal("0.00")
    for rec in ctx.ledger.list_records(record_type=DOCUMENT_RECORD_TYPE):
        if rec.key.source_id.split(":")[0] != str(invoice_id) or rec.status is not Status.DONE:
            continue
        (row,) = spectrum_db.rows(AR, Invoice_Or_Transaction=rec.spectrum_key)
        worth = Decimal(row["Invoice_Amount"]) + Decimal(row["Sales_Tax_Amount"])
        total += worth if row["Transaction_Type"] == "I" else -worth
    return total


def approve(st_state: Any, invoice_id: int) -> None:
    st_state.update("invoice", invoice_id, {"status": "pending_accounting"})


# --- approved invoices -------------------------------------------------------------------------
def test_approved_invoice_is_posted_once_and_processed(
    ctx: Any, world: Any, st_state: Any, spectrum_db: Any, spectrum_app: Any
) -> None:
    inv_id = world.landmarks["invoice_nc"]
    source = st_invoice(st_state, inv_id)
    out = sync_invoice(ctx, inv_id, "main")
    assert out.result == "synced"
    assert out.spectrum_key == f"ST{inv_id}"
    after = st_invoice(st_state, inv_id)
    assert after["status"] == "processed"
    assert after["invoiceNumber"] == f"ST{inv_id}"
    (header,) = spectrum_db.rows(AR, Invoice_Or_Transaction=f"ST{inv_id}")
    assert header["Transaction_Type"] == "I"
    assert header["Customer_Code"] == "C00001"
    assert header["Job_Number"].startswith("T")
    assert header["Sales_Tax_Code"] == "NC"
    assert header["Salesperson_Code"] == "S01"
    assert spectrum_total(spectrum_db, f"ST{inv_id}") == Decimal(str(source["totalPrice"]))
    lines = spectrum_db.rows(AR_LINES, Invoice_Or_Transaction=f"ST{inv_id}")
    assert len(lines) == len(source["items"])
    assert {ln["GL_Account"] for ln in lines} == {"4000"}  # SP -> cost center 100 -> 4000
    assert {ln["Income_Cost_Center"] for ln in lines} == {"100"}
    rec = ctx.ledger.get(key(inv_id))
    assert rec.status is Status.DONE
    assert rec.spectrum_key == f"ST{inv_id}"
    doc = ctx.ledger.get(RecordKey("main", DOCUMENT_RECORD_TYPE, f"{inv_id}:invoice"))
    assert doc.status is Status.DONE
    assert doc.spectrum_key == f"ST{inv_id}"
    # the same event again (and a sweep) changes nothing: the invoice is processed now
    assert sync_invoice(ctx, inv_id, "main").result == "unchanged"
    assert posts(spectrum_app) == 1
    assert spectrum_db.count(AR, Invoice_Or_Transaction=f"ST{inv_id}") == 1


def test_invoice_approved_again_after_posting_is_not_reposted(
    ctx: Any, world: Any, st_state: Any, spectrum_app: Any
) -> None:
    inv_id = world.landmarks["invoice_sc"]
    assert sync_invoice(ctx, inv_id, "main").ok
    approve(st_state, inv_id)
    again = sync_invoice(ctx, inv_id, "main")
    assert again.result == "unchanged"
    assert posts(spectrum_app) == 1
    after = st_invoice(st_state, inv_id)
    assert after["status"] == "processed"
    assert after["invoiceNumber"] == f"ST{inv_id}"


def test_mixed_sign_invoice_is_split_and_reconciles(
    ctx: Any, world: Any, st_state: Any, spectrum_db: Any
) -> None:
    inv_id = world.landmarks["mixed_sign_invoice"]
    source = st_invoice(st_state, inv_id)
    out = sync_invoice(ctx, inv_id, "main")
    assert out.ok
    assert out.message == f"ST{inv_id}, SC{inv_id}"
    (inv_row,) = spectrum_db.rows(AR, Invoice_Or_Transaction=f"ST{inv_id}")
    (cm_row,) = spectrum_db.rows(AR, Invoice_Or_Transaction=f"SC{inv_id}")
    assert inv_row["Transaction_Type"] == "I"
    assert cm_row["Transaction_Type"] == "C"
    for number in (f"ST{inv_id}", f"SC{inv_id}"):
        for line in spectrum_db.rows(AR_LINES, Invoice_Or_Transaction=number):
            assert line["Line_Extension"] is None or Decimal(line["Line_Extension"]) >= 0
    total = spectrum_total(spectrum_db, f"ST{inv_id}") - spectrum_total(spectrum_db, f"SC{inv_id}")
    assert total == Decimal(str(source["totalPrice"]))
    negative = [i for i in source["items"] if Decimal(str(i["subtotal"])) < 0]
    assert len(spectrum_db.rows(AR_LINES, Invoice_Or_Transaction=f"SC{inv_id}")) == len(negative)
    assert posted_documents(ctx, "main", inv_id).credit_memo == f"SC{inv_id}"
    assert st_invoice(st_state, inv_id)["invoiceNumber"] == f"ST{inv_id}"


def test_salesperson_without_spectrum_id_stops_with_comment_and_alert(
    ctx: Any, world: Any, st_state: Any, spectrum_db: Any, spectrum_app: Any
) -> None:
    inv_id = world.landmarks["invoice_salesperson_without_id"]
    user = world.landmarks["salesperson_without_spectrum_id"]
    out = sync_invoice(ctx, inv_id, "main")
    assert out.result == "failed"
    rec = ctx.ledger.get(key(inv_id))
    assert rec.status is Status.FAILED
    assert rec.error_kind == "prerequisite"
    assert st_invoice(st_state, inv_id)["status"] == "failed"
    (comment,) = comments_on(st_state, inv_id)
    assert f"(id {user}) has no Spectrum salesperson code" in comment
    assert "salesperson_map" in comment
    alerts = ctx.ledger.alerts(key(inv_id))
    assert [a["kind"] for a in alerts] == ["prerequisite"]
    assert posts(spectrum_app) == 0
    assert spectrum_db.count(AR, Invoice_Or_Transaction=f"ST{inv_id}") == 0
    # approved again without a fix: failed again, but no second comment or alert
    approve(st_state, inv_id)
    assert sync_invoice(ctx, inv_id, "main").result == "failed"
    assert len(comments_on(st_state, inv_id)) == 1
    assert len(ctx.ledger.alerts(key(inv_id))) == 1
    # a person gives the salesperson a Spectrum code and approves again: posted
    st_state.update("user", user, {"externalIds": {"spectrum": "S03"}})
    approve(st_state, inv_id)
    assert sync_invoice(ctx, inv_id, "main").result == "synced"
    assert st_invoice(st_state, inv_id)["status"] == "processed"


def test_duplicate_that_lost_the_race_keeps_the_failure(
    ctx: Any, world: Any, st_state: Any
) -> None:
    inv_id = world.landmarks["invoice_salesperson_without_id"]
    assert sync_invoice(ctx, inv_id, "main").result == "failed"
    # a second delivery routed while the invoice was still pending claims it after the first
    # attempt set it failed: it must not replace the recorded failure
    out = post_invoice(ctx, inv_id, "main")
    assert out.result == "unchanged"
    assert "status is now 'failed'" in out.message
    rec = ctx.ledger.get(key(inv_id))
    assert rec.status is Status.FAILED
    assert rec.error_kind == "prerequisite"
    assert "salesperson" in (rec.last_error or "")


def test_spectrum_refusal_fails_with_comment_then_fix_and_reapprove(
    ctx: Any, world: Any, st_state: Any, spectrum_db: Any, spectrum_app: Any
) -> None:
    inv_id = world.landmarks["invoice_nc"]
    spectrum_app.state.admin.set_window("AR", Window(date(2027, 1, 1), date(2027, 1, 31)))
    out = sync_invoice(ctx, inv_id, "main")
    assert out.result == "failed"
    assert st_invoice(st_state, inv_id)["status"] == "failed"
    (comment,) = comments_on(st_state, inv_id)
    assert "Spectrum said: I:" in comment
    assert "[GL_Date]" in comment
    assert f"value: 'ST{inv_id}'" in comment
    assert "pending accounting" in comment
    assert ctx.ledger.get(key(inv_id)).status is Status.FAILED
    assert spectrum_db.count(AR, Invoice_Or_Transaction=f"ST{inv_id}") == 0
    # accounting opens the period, the office approves again
    spectrum_app.state.admin.set_window("AR", Window(date(2026, 1, 1), date(2027, 12, 31)))
    approve(st_state, inv_id)
    assert sync_invoice(ctx, inv_id, "main").result == "synced"
    assert st_invoice(st_state, inv_id)["status"] == "processed"
    assert spectrum_db.count(AR, Invoice_Or_Transaction=f"ST{inv_id}") == 1


def test_ghost_write_is_adopted_not_reposted(
    ctx: Any, world: Any, st_state: Any, spectrum_db: Any, spectrum_app: Any
) -> None:
    inv_id = world.landmarks["mixed_sign_invoice"]
    spectrum_app.state.injector.script(REST, ["ghost"])
    with pytest.raises(TransientError):
        sync_invoice(ctx, inv_id, "main")
    rec = ctx.ledger.get(key(inv_id))
    assert rec.status is Status.PENDING
    assert spectrum_db.count(AR, Invoice_Or_Transaction=f"ST{inv_id}") == 1  # it did land
    assert st_invoice(st_state, inv_id)["status"] == "pending_accounting"
    out = sync_invoice(ctx, inv_id, "main")
    assert out.result == "adopted"
    assert posts(spectrum_app) == 1  # looked up in Info-Link, not sent again
    assert spectrum_db.count(AR, Invoice_Or_Transaction=f"ST{inv_id}") == 1
    assert spectrum_db.count(AR, Invoice_Or_Transaction=f"SC{inv_id}") == 1
    assert st_invoice(st_state, inv_id)["status"] == "processed"


def test_transient_failure_before_the_write_sends_again(
    ctx: Any, world: Any, spectrum_db: Any, spectrum_app: Any
) -> None:
    inv_id = world.landmarks["invoice_nc"]
    spectrum_app.state.injector.script(REST, ["error"])  # refused before anything landed
    with pytest.raises(TransientError):
        sync_invoice(ctx, inv_id, "main")
    assert sync_invoice(ctx, inv_id, "main").result == "synced"
    assert posts(spectrum_app) == 2
    assert spectrum_db.count(AR, Invoice_Or_Transaction=f"ST{inv_id}") == 1


def test_split_half_refused_is_resumed_never_reposted(
    ctx: Any, world: Any, st_state: Any, spectrum_db: Any, spectrum_app: Any
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
    out = sync_invoice(ctx, inv_id, "main")
    assert out.result == "failed"
    assert "never overwrites" in out.message
    posted = posted_documents(ctx, "main", inv_id)
    assert posted.invoice == f"ST{inv_id}"  # the invoice half landed and is recorded
    assert posted.credit_memo is None
    assert st_invoice(st_state, inv_id)["status"] == "failed"  # both or neither: not processed
    assert "never overwrites" in comments_on(st_state, inv_id)[0]
    # accounting removes the squatter; the office approves again: only the credit memo is sent
    with spectrum_db.transaction() as conn:
        conn.execute(delete(il.ar_invoices).where(il.ar_invoices.c.Customer_Code == "OTHER"))
    approve(st_state, inv_id)
    assert sync_invoice(ctx, inv_id, "main").result == "synced"
    last = json.loads(spectrum_app.state.injector.requests(REST)[-1].body)
    assert [d["Invoice_Or_Transaction"] for d in last["arInvoices"]] == [f"SC{inv_id}"]
    assert spectrum_db.count(AR, Invoice_Or_Transaction=f"ST{inv_id}") == 1
    assert spectrum_db.count(AR, Invoice_Or_Transaction=f"SC{inv_id}") == 1
    assert st_invoice(st_state, inv_id)["status"] == "processed"


@pytest.mark.parametrize("left", [Status.PENDING, Status.RETRY_LATER])
def test_processed_invoice_whose_row_a_crash_left_open_is_closed_not_requeued_for_ever(
    ctx: Any, world: Any, st_state: Any, spectrum_app: Any, left: Status
) -> None:
    """Found by the convergence soak: a worker dies after ServiceTrade heard "processed" and
    before the ledger row was marked done. Every later sync read "processed", answered skipped
    without claiming the row, and the re-enqueuer queued it again for ever."""
    inv_id = world.landmarks["invoice_nc"]
    assert sync_invoice(ctx, inv_id, "main").ok
    rec = ctx.ledger.get(key(inv_id))
    ctx.ledger.mark(
        key(inv_id), left, error_kind="transient", reason="worker lost", state=rec.state
    )
    out = sync_invoice(ctx, inv_id, "main")
    assert out.result == "unchanged" and out.spectrum_key == f"ST{inv_id}"
    assert ctx.ledger.get(key(inv_id)).status is Status.DONE
    assert posts(spectrum_app) == 1


def test_processed_by_hand_while_a_retry_waited_ends_skipped_with_the_reason(
    ctx: Any, world: Any, st_state: Any, spectrum_app: Any
) -> None:
    inv_id = world.landmarks["invoice_nc"]
    ctx.ledger.ensure(key(inv_id))
    ctx.ledger.mark(key(inv_id), Status.PENDING, error_kind="transient", reason="Spectrum 503")
    st_state.update("invoice", inv_id, {"status": "processed"})
    out = sync_invoice(ctx, inv_id, "main")
    assert out.result == "skipped" and "'processed'" in out.message
    rec = ctx.ledger.get(key(inv_id))
    assert rec.status is Status.SKIPPED and "nothing posted" in (rec.last_error or "")
    assert posts(spectrum_app) == 0


def test_statuses_other_than_approved_or_void_do_nothing(
    ctx: Any, world: Any, st_state: Any, spectrum_app: Any
) -> None:
    inv_id = world.landmarks["invoice_nc"]
    st_state.update("invoice", inv_id, {"status": "ok"})
    out = sync_invoice(ctx, inv_id, "main")
    assert out.result == "skipped"
    assert "'ok'" in out.message
    assert ctx.ledger.get(key(inv_id)) is None  # no row: a later approval is not blocked
    assert posts(spectrum_app) == 0


def test_sweep_enqueues_every_pending_invoice(ctx: Any, world: Any, enqueued: list[Any]) -> None:
    pending = sorted(
        i["id"] for i in world.servicetrade["invoice"] if i["status"] == "pending_accounting"
    )
    assert sweep_pending_invoices(ctx, "main") == len(pending)
    assert sorted(args[0] for name, args in enqueued if name == TASK_NAME) == pending
    assert {args[1] for _, args in enqueued} == {"main"}


# --- job from location -----------------------------------------------------------------------
def _location_mode(ctx: Any) -> None:
    conn = ctx.settings.connections["main"]
    rules = conn.rules.model_copy(
        update={"invoices": conn.rules.invoices.model_copy(update={"job_resolution": "location"})}
    )
    ctx.settings = ctx.settings.model_copy(
        update={
            "connections": {
                **ctx.settings.connections,
                "main": conn.model_copy(update={"rules": rules}),
            }
        }
    )


def test_job_from_location_uses_the_spectrum_job_at_the_site(
    ctx: Any, world: Any, st_state: Any, spectrum_db: Any
) -> None:
    _location_mode(ctx)
    inv_id = world.landmarks["invoice_nc"]
    out = sync_invoice(ctx, inv_id, "main")
    assert out.result == "failed"  # no Spectrum job at the site yet
    assert "has no open job of customer C00001 at WO site" in out.message
    assert ctx.ledger.get(key(inv_id)).error_kind == "prerequisite"
    # the job gets into Spectrum (at the location's WO site); approved again, the invoice posts
    assert sync_job(ctx, world.landmarks["invoice_nc_job"], "main").ok
    approve(st_state, inv_id)
    assert sync_invoice(ctx, inv_id, "main").result == "synced"
    (header,) = spectrum_db.rows(AR, Invoice_Or_Transaction=f"ST{inv_id}")
    (job,) = spectrum_db.rows(il.jobs.name, Job_Number=header["Job_Number"])
    site = ctx.ledger.get(
        RecordKey("main", "site", str(st_invoice(st_state, inv_id)["location"]["id"]))
    )
    assert job["WO_Site"].strip() == site.spectrum_key


# --- voided invoices ----------------------------------------------------------------------------
def test_void_of_a_posted_invoice_is_credited_once(
    ctx: Any, world: Any, st_state: Any, spectrum_db: Any, spectrum_app: Any
) -> None:
    inv_id = world.landmarks["invoice_nc"]
    assert sync_invoice(ctx, inv_id, "main").ok
    st_state.update("invoice", inv_id, {"status": "void"})
    results = [sync_invoice(ctx, inv_id, "main").result for _ in range(3)]
    assert results == ["synced", "unchanged", "unchanged"]
    assert posts(spectrum_app) == 2
    (memo,) = spectrum_db.rows(AR, Invoice_Or_Transaction=f"SV{inv_id}")
    (orig,) = spectrum_db.rows(AR, Invoice_Or_Transaction=f"ST{inv_id}")
    assert memo["Transaction_Type"] == "C"
    for column in (
        "Customer_Code",
        "Job_Number",
        "Sales_Tax_Code",
        "Salesperson_Code",
        "Invoice_Amount",
        "Sales_Tax_Amount",
    ):
        assert memo[column] == orig[column], column
    memo_lines = spectrum_db.rows(AR_LINES, Invoice_Or_Transaction=f"SV{inv_id}")
    orig_lines = spectrum_db.rows(AR_LINES, Invoice_Or_Transaction=f"ST{inv_id}")
    strip = ("Invoice_Or_Transaction",)
    assert [{k: v for k, v in r.items() if k not in strip} for r in memo_lines] == [
        {k: v for k, v in r.items() if k not in strip} for r in orig_lines
    ]
    assert posted_documents(ctx, "main", inv_id).void_credit == f"SV{inv_id}"
    assert ctx.ledger.get(key(inv_id, VOID_RECORD_TYPE)).status is Status.DONE
    assert any(f"SV{inv_id} reverses ST{inv_id}" in c for c in comments_on(st_state, inv_id))


def test_split_void_reverses_both_halves_to_zero(
    ctx: Any, world: Any, st_state: Any, spectrum_db: Any
) -> None:
    inv_id = world.landmarks["mixed_sign_invoice"]
    assert sync_invoice(ctx, inv_id, "main").ok
    st_state.update("invoice", inv_id, {"status": "void"})
    out = sync_invoice(ctx, inv_id, "main")
    assert out.result == "synced"
    assert f"SV{inv_id} reverses ST{inv_id}" in out.message
    assert f"SD{inv_id} reverses SC{inv_id}" in out.message
    assert spectrum_total(spectrum_db, f"SV{inv_id}") == spectrum_total(spectrum_db, f"ST{inv_id}")
    assert spectrum_total(spectrum_db, f"SD{inv_id}") == spectrum_total(spectrum_db, f"SC{inv_id}")
    (debit,) = spectrum_db.rows(AR, Invoice_Or_Transaction=f"SD{inv_id}")
    assert debit["Transaction_Type"] == "I"
    assert owed_in_spectrum(ctx, spectrum_db, inv_id) == Decimal("0.00")


def test_split_void_of_a_credit_memo_only_invoice_posts_a_debit(
    ctx: Any, world: Any, st_state: Any, spectrum_db: Any
) -> None:
    inv_id = world.landmarks["invoice_sc"]
    items = st_invoice(st_state, inv_id)["items"]
    negative = [{**i, "quantity": -abs(float(i["quantity"]))} for i in items]
    st_state.update("invoice", inv_id, {"items": negative})
    assert sync_invoice(ctx, inv_id, "main").ok
    st_state.update("invoice", inv_id, {"status": "void"})
    out = sync_invoice(ctx, inv_id, "main")
    assert out.result == "synced", out.message
    assert out.spectrum_key == f"SD{inv_id}"
    assert owed_in_spectrum(ctx, spectrum_db, inv_id) == Decimal("0.00")


@pytest.mark.parametrize("case", ["never_posted"])
def test_void_skips_are_recorded_with_the_reason(
    ctx: Any, world: Any, st_state: Any, spectrum_db: Any, spectrum_app: Any, case: str
) -> None:
    inv_id = world.landmarks["void_invoice"]
    reason = "never posted to Spectrum"
    before = posts(spectrum_app)
    out = sync_invoice(ctx, inv_id, "main")
    assert out.result == "skipped"
    assert reason in out.message
    rec = ctx.ledger.get(key(inv_id, VOID_RECORD_TYPE))
    assert rec.status is Status.SKIPPED
    assert reason in rec.last_error
    assert posts(spectrum_app) == before
    assert sync_invoice(ctx, inv_id, "main").result == "skipped"  # redelivered: same answer


def test_void_ghost_write_is_adopted(
    ctx: Any, world: Any, st_state: Any, spectrum_db: Any, spectrum_app: Any
) -> None:
    inv_id = world.landmarks["invoice_nc"]
    assert sync_invoice(ctx, inv_id, "main").ok
    st_state.update("invoice", inv_id, {"status": "void"})
    spectrum_app.state.injector.script(REST, ["ghost"])
    with pytest.raises(TransientError):
        sync_invoice(ctx, inv_id, "main")
    assert sync_invoice(ctx, inv_id, "main").result == "adopted"
    assert spectrum_db.count(AR, Invoice_Or_Transaction=f"SV{inv_id}") == 1
    assert posts(spectrum_app) == 2


def test_void_that_cannot_be_credited_is_reported_then_retried(
    ctx: Any, world: Any, st_state: Any, spectrum_db: Any, spectrum_app: Any
) -> None:
    inv_id = world.landmarks["invoice_nc"]
    assert sync_invoice(ctx, inv_id, "main").ok
    st_state.update("invoice", inv_id, {"status": "void"})
    spectrum_app.state.admin.set_window("AR", Window(date(2020, 1, 1), date(2020, 1, 31)))
    out = sync_invoice(ctx, inv_id, "main")
    assert out.result == "failed"
    rec = ctx.ledger.get(key(inv_id, VOID_RECORD_TYPE))
    assert rec.status is Status.FAILED
    assert [a["kind"] for a in ctx.ledger.alerts(rec.key)] == ["void_credit"]
    (comment,) = [c for c in comments_on(st_state, inv_id) if "credit the void" in c]
    assert "stsync retry invoice" in comment
    assert st_invoice(st_state, inv_id)["status"] == "void"  # a void invoice stays void
    assert spectrum_db.count(AR, Invoice_Or_Transaction=f"SV{inv_id}") == 0
    # accounting opens the period; `stsync retry invoice <id>` queues the invoice again
    spectrum_app.state.admin.set_window("AR", Window(date(2020, 1, 1), date(2030, 12, 31)))
    assert sync_invoice(ctx, inv_id, "main").result == "synced"
    assert spectrum_db.count(AR, Invoice_Or_Transaction=f"SV{inv_id}") == 1
    assert sync_invoice(ctx, inv_id, "main").result == "unchanged"
    assert ctx.ledger.get(rec.key).status is Status.DONE
