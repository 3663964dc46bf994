"""Ledger rows written before the typed recovery state keep working (the tolerant reader).

``legacy_states.json`` holds rows exactly as the code before ``tasks.state`` wrote them (main at
a228f23: its tests/tasks run with a plugin dumping every row, and every ``pending`` mark). Every
row must read into its record type's model without losing a sent flag; a pending row of each kind
that guards a write must resume without sending that write again.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from clients.errors import TransientError
from tasks import registry
from tasks.customer import sync_customer
from tasks.invoice import sync_invoice
from tasks.job import sync_job
from tasks.state import (
    ADD_AR_INVOICE,
    ADD_CUSTOMER,
    ADD_JOB,
    ADD_PHASE,
    CustomerState,
    DocumentState,
    InvoiceState,
    JobState,
    PoLineState,
    Result,
    SiteState,
    State,
    TimecardEntryState,
    TimecardState,
    VoidState,
    WorkOrderState,
    sent_marker,
)
from worker.ledger import RecordKey, Status

ROWS: list[dict[str, Any]] = json.loads((Path(__file__).parent / "legacy_states.json").read_text())[
    "rows"
]

MODELS: dict[str, type[State]] = {
    "customer": CustomerState,
    "site": SiteState,
    "job": JobState,
    "work_order": WorkOrderState,
    "invoice": InvoiceState,
    "invoice_void": VoidState,
    "ar_document": DocumentState,
    "timecard": TimecardState,
    "timecard_entry": TimecardEntryState,
    "po_line": PoLineState,
}


def test_the_registry_names_each_record_types_model() -> None:
    assert {name: registry.state_model(name) for name in MODELS} == MODELS
    assert {r["record_type"] for r in ROWS} <= set(registry.BY_NAME)


def legacy_row(record_type: str, *, has: str) -> dict[str, Any]:
    """The first recorded pending row of ``record_type`` with a key starting with ``has``."""
    return next(
        r
        for r in ROWS
        if r["record_type"] == record_type
        and r["status"] == "pending"
        and any(k.startswith(has) for k in r["state"])
    )


def calls(app: Any, service: str) -> int:
    return int(app.state.injector.calls.get(service, 0))


def put_legacy(ctx: Any, record_type: str, source_id: str, state: dict[str, Any]) -> None:
    """Leave the row pending with ``state`` as the old code wrote it (raw JSON, not the model)."""
    ctx.ledger.mark(
        RecordKey("main", record_type, source_id),
        Status.PENDING,
        error_kind="transient",
        reason="the write may have been applied",
        state=state,
    )


# --- reading -------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "row", ROWS, ids=[f"{r['record_type']}-{r['status']}-{i}" for i, r in enumerate(ROWS)]
)
def test_every_recorded_row_reads_into_its_model_and_keeps_its_flags(row: dict[str, Any]) -> None:
    raw = row["state"]
    state = MODELS[row["record_type"]].load(raw)
    flags = [k for k, v in raw.items() if k.startswith("sent:") and v]
    phases = {k: v for k, v in raw.items() if k.startswith("phases_sent:")}
    assert len(state.sent) == len(flags) + sum(len(v) for v in phases.values())
    dumped = state.dump()
    assert not [k for k in dumped if k.startswith(("sent:", "phases_sent:"))]
    # every other key keeps its value
    for name, value in raw.items():
        if not name.startswith(("sent:", "phases_sent:")):
            assert dumped.get(name, value) == value or not value, name
    assert type(state).load(dumped) == state  # the new shape reads back the same


def test_the_three_flag_formats_become_one_marker_format() -> None:
    state = JobState.load(
        {
            "plan": {"100": "T1"},
            "sent:AddJob:T1": True,
            "phases_sent:T1": ["100/L", "200/M"],
            "sent:ST1": True,
            "sent:SC1": False,
        }
    )
    assert state.was_sent(ADD_JOB, "T1")
    assert state.phases_sent("T1") == {"100/L", "200/M"}
    assert state.was_sent(ADD_AR_INVOICE, "ST1")
    assert not state.was_sent(ADD_AR_INVOICE, "SC1")  # a cleared flag is no marker
    assert state.sent == sorted(
        [
            sent_marker(ADD_JOB, "T1"),
            sent_marker(ADD_PHASE, "T1/100/L"),
            sent_marker(ADD_PHASE, "T1/200/M"),
            sent_marker(ADD_AR_INVOICE, "ST1"),
        ]
    )


def test_a_wrong_value_is_refused_not_stored() -> None:
    state = CustomerState()
    with pytest.raises(ValidationError):
        state.adjustments = "not a list"  # type: ignore[assignment]
    with pytest.raises(ValidationError):
        JobState.load({"plan": ["T1"]})


def test_results_that_are_ok() -> None:
    ok = {r for r in Result if r.ok}
    assert ok == {Result.SYNCED, Result.ADOPTED, Result.UNCHANGED, Result.UPDATED, Result.REMOVED}


# --- resuming from a recorded row ----------------------------------------------------------------
def test_pending_customer_row_resumes_by_adopting(
    ctx: Any, spectrum_app: Any, spectrum_db: Any
) -> None:
    row = legacy_row("customer", has="sent:AddCustomer:")
    company_id = int(row["source_id"])
    spectrum_app.state.injector.script(ADD_CUSTOMER, ["ghost"])
    with pytest.raises(TransientError):
        sync_customer(ctx, company_id, "main")
    assert calls(spectrum_app, ADD_CUSTOMER) == 1
    put_legacy(ctx, "customer", row["source_id"], row["state"])

    out = sync_customer(ctx, company_id, "main")

    assert out.result is Result.ADOPTED and out.spectrum_key == "C00001"
    assert calls(spectrum_app, ADD_CUSTOMER) == 1  # looked up, not sent again
    rec = ctx.ledger.get(RecordKey("main", "customer", row["source_id"]))
    assert "sent:AddCustomer:C00001" not in rec.state
    assert rec.state["sent"] == [sent_marker(ADD_CUSTOMER, "C00001")]


def test_pending_job_row_resumes_by_adopting(ctx: Any, spectrum_app: Any) -> None:
    row = legacy_row("job", has="sent:AddJob:")
    assert not any(k.startswith("phases_sent:") for k in row["state"])
    job_id = int(row["source_id"])
    spectrum_app.state.injector.script(ADD_JOB, ["ghost"])
    with pytest.raises(TransientError):
        sync_job(ctx, job_id, "main")
    put_legacy(ctx, "job", row["source_id"], row["state"])

    out = sync_job(ctx, job_id, "main")

    assert out.result is Result.ADOPTED, out.message
    assert calls(spectrum_app, ADD_JOB) == 1


def test_job_row_stopped_mid_phases_sends_only_the_rest(ctx: Any, spectrum_app: Any) -> None:
    row = legacy_row("job", has="phases_sent:")
    job_id = int(row["source_id"])
    done = next(v for k, v in row["state"].items() if k.startswith("phases_sent:"))
    spectrum_app.state.injector.script(ADD_PHASE, ["ok"] * len(done) + ["error"])
    with pytest.raises(TransientError):
        sync_job(ctx, job_id, "main")
    before = calls(spectrum_app, ADD_PHASE)
    put_legacy(ctx, "job", row["source_id"], row["state"])

    assert sync_job(ctx, job_id, "main").result is Result.SYNCED

    assert calls(spectrum_app, ADD_JOB) == 1
    assert calls(spectrum_app, ADD_PHASE) - before == 6 - len(done)


def test_pending_invoice_row_resumes_by_adopting_both_documents(
    ctx: Any, world: Any, spectrum_app: Any, spectrum_db: Any
) -> None:
    row = legacy_row("invoice", has="sent:")
    inv_id = int(row["source_id"])
    assert inv_id == world.landmarks["mixed_sign_invoice"]
    spectrum_app.state.injector.script("ARMultiLineInvoice", ["ghost"])
    with pytest.raises(TransientError):
        sync_invoice(ctx, inv_id, "main")
    put_legacy(ctx, "invoice", row["source_id"], row["state"])

    out = sync_invoice(ctx, inv_id, "main")

    assert out.result is Result.ADOPTED, out.message
    assert calls(spectrum_app, "ARMultiLineInvoice") == 1
    for number in row["state"]["planned"]:
        assert spectrum_db.count("CR_INVOICE_HEADER_MC", Invoice_Or_Transaction=number) == 1


def test_void_reads_a_pending_approval_row_and_credits_its_ghost(
    ctx: Any, world: Any, st_state: Any, spectrum_app: Any, spectrum_db: Any
) -> None:
    """The void looks at the *approval's* row: its legacy flags must still say "look first"."""
    row = legacy_row("invoice", has="sent:")
    inv_id = int(row["source_id"])
    spectrum_app.state.injector.script("ARMultiLineInvoice", ["ghost"])
    with pytest.raises(TransientError):
        sync_invoice(ctx, inv_id, "main")
    put_legacy(ctx, "invoice", row["source_id"], row["state"])
    st_state.update("invoice", inv_id, {"status": "void"})

    out = sync_invoice(ctx, inv_id, "main")

    assert out.result is Result.SYNCED, out.message
    assert spectrum_db.count("CR_INVOICE_HEADER_MC", Invoice_Or_Transaction=f"SV{inv_id}") == 1
    assert calls(spectrum_app, "ARMultiLineInvoice") == 2  # the ghost, then the credit memo


def test_pending_void_row_resumes_by_adopting(
    ctx: Any, world: Any, st_state: Any, spectrum_app: Any, spectrum_db: Any
) -> None:
    row = legacy_row("invoice_void", has="sent:")
    inv_id = int(row["source_id"])
    assert sync_invoice(ctx, inv_id, "main").ok
    st_state.update("invoice", inv_id, {"status": "void"})
    spectrum_app.state.injector.script("ARMultiLineInvoice", ["ghost"])
    with pytest.raises(TransientError):
        sync_invoice(ctx, inv_id, "main")
    put_legacy(ctx, "invoice_void", row["source_id"], row["state"])

    assert sync_invoice(ctx, inv_id, "main").result is Result.ADOPTED
    assert calls(spectrum_app, "ARMultiLineInvoice") == 2
    assert spectrum_db.count("CR_INVOICE_HEADER_MC", Invoice_Or_Transaction=f"SV{inv_id}") == 1
