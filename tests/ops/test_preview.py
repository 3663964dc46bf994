"""Preview / dry run (F17): for every record type, what the preview lists is exactly what the sync
then sends to Spectrum (the SpectrumRequest values and REST invoices the client is handed, in
order), and the preview itself writes nothing."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import func, select

from cli.preview import (
    REST_INVOICE_SERVICE,
    PreviewWriteError,
    ReadOnlyLedger,
    preview_context,
    preview_record,
)
from tasks.customer import sync_customer
from tasks.invoice import sync_invoice
from tasks.job import send_job, sync_job
from tasks.site import sync_site
from tasks.timecard import sync_timecard
from tests.conftest import asgi_transport
from worker.ledger import alert, audit_event, code_counter, sync_record, watermark


@pytest.fixture
def pctx(settings: Any, ledger: Any, st_app: Any, spectrum_app: Any) -> Iterator[Any]:
    """A preview context on the same in-process sandbox and ledger file as ``ctx``."""
    c = preview_context(
        settings,
        st_transport=asgi_transport(st_app),
        spectrum_transport=asgi_transport(spectrum_app),
        retry_wait_s=0,
    )
    yield c
    c.close()


@pytest.fixture
def sent(ctx: Any, monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, dict[str, Any]]]:
    """Every write the sync hands the Spectrum client, in order."""
    calls: list[tuple[str, dict[str, Any]]] = []
    client = ctx.spectrum["main"]
    put, add = client.put, client.add_ar_invoices

    def record_put(request: Any) -> Any:
        calls.append((request.service, dict(request.values)))
        return put(request)

    def record_add(invoices: Any) -> Any:
        calls.append((REST_INVOICE_SERVICE, {"invoices": [d.model_dump() for d in invoices]}))
        return add(invoices)

    monkeypatch.setattr(client, "put", record_put)
    monkeypatch.setattr(client, "add_ar_invoices", record_add)
    return calls


def planned(preview: Any) -> list[tuple[str, dict[str, Any]]]:
    return [(c.service, c.values) for c in preview.spectrum_calls()]


def table_counts(ledger: Any) -> dict[str, int]:
    with ledger.engine.connect() as c:
        return {
            t.name: int(c.execute(select(func.count()).select_from(t)).scalar_one())
            for t in (sync_record, code_counter, audit_event, watermark, alert)
        }


def check_same(
    pctx: Any, ctx: Any, sent: list[Any], record_type: str, record_id: int, sync: Any
) -> Any:
    before = table_counts(ctx.ledger)
    preview = preview_record(pctx, record_type, record_id, "main")
    assert table_counts(ctx.ledger) == before, "the preview wrote to the ledger"
    assert preview.status == "would_send", (preview.reason, preview.problems)
    outcome = sync()
    assert outcome.ok, outcome.message
    assert planned(preview) == sent
    # and once synced, there is nothing left to send
    again = preview_record(pctx, record_type, record_id, "main")
    assert again.status == "nothing_to_send" and again.spectrum_calls() == [], again.as_dict()
    return preview


def test_customer_preview_is_what_the_sync_sends(pctx: Any, ctx: Any, sent: list[Any]) -> None:
    preview = check_same(
        pctx, ctx, sent, "customer", 1031, lambda: sync_customer(ctx, 1031, "main")
    )
    assert [c.service for c in preview.calls] == ["AddCustomer", "externalIds"]
    code = preview.calls[0].values["Customer_Code"]
    assert ctx.ledger.get(outcome_key("customer", 1031)).spectrum_key == code
    assert any(code in n and "next customer code" in n for n in preview.notes)


def outcome_key(record_type: str, source_id: int) -> Any:
    from worker.ledger import RecordKey

    return RecordKey("main", record_type, str(source_id))


def test_site_preview_includes_its_customer_first(pctx: Any, ctx: Any, sent: list[Any]) -> None:
    preview = check_same(pctx, ctx, sent, "site", 1032, lambda: sync_site(ctx, 1032, "main"))
    assert [c.service for c in preview.spectrum_calls()] == ["AddCustomer", "AddWOSiteAddress"]


def test_job_preview_with_chain_phases_and_update(pctx: Any, ctx: Any, sent: list[Any]) -> None:
    preview = check_same(pctx, ctx, sent, "job", 1033, lambda: sync_job(ctx, 1033, "main"))
    services = [c.service for c in preview.spectrum_calls()]
    assert services[:3] == ["AddCustomer", "AddWOSiteAddress", "AddJob"]
    assert "AddPhase" in services and services[-1] == "UpdateJob"


def test_job_preview_when_customer_and_site_are_synced(
    pctx: Any, ctx: Any, sent: list[Any]
) -> None:
    assert sync_site(ctx, 1042, "main").ok
    sent.clear()
    preview = check_same(pctx, ctx, sent, "job", 1043, lambda: sync_job(ctx, 1043, "main"))
    assert preview.spectrum_calls()[0].service == "AddJob"


def test_invoice_preview_is_what_the_sync_posts(
    pctx: Any, ctx: Any, world: Any, sent: list[Any]
) -> None:
    inv = world.landmarks["invoice_nc"]
    preview = check_same(pctx, ctx, sent, "invoice", inv, lambda: sync_invoice(ctx, inv, "main"))
    assert preview.spectrum_calls()[-1].service == REST_INVOICE_SERVICE
    assert preview.calls[-1].values["status"] == "processed"


def test_split_invoice_preview(pctx: Any, ctx: Any, world: Any, sent: list[Any]) -> None:
    inv = world.landmarks["mixed_sign_invoice"]
    preview = check_same(pctx, ctx, sent, "invoice", inv, lambda: sync_invoice(ctx, inv, "main"))
    docs = preview.spectrum_calls()[-1].values["invoices"]
    assert [d["header"]["Transaction_Type"] for d in docs] == ["I", "C"]


def test_void_preview_is_the_credit_memo_the_sync_posts(
    pctx: Any, ctx: Any, world: Any, st_state: Any, sent: list[Any]
) -> None:
    inv = world.landmarks["invoice_sc"]
    assert sync_invoice(ctx, inv, "main").ok
    st_state.update("invoice", inv, {"status": "void"})
    sent.clear()
    preview = check_same(pctx, ctx, sent, "invoice", inv, lambda: sync_invoice(ctx, inv, "main"))
    [call] = preview.spectrum_calls()
    [memo] = call.values["invoices"]
    assert memo["header"]["Transaction_Type"] == "C"


def test_timecard_preview_interleaves_job_prerequisites(
    pctx: Any, ctx: Any, st_state: Any, sent: list[Any]
) -> None:
    card = next(
        c
        for c in st_state.all("timecard")
        if c["user"].get("externalIds", {}).get("spectrum")
        and {e["kind"] for e in c["entries"]} >= {"labor", "clock"}
    )
    preview = check_same(
        pctx, ctx, sent, "timecard", card["id"], lambda: sync_timecard(ctx, card["id"], "main")
    )
    services = [c.service for c in preview.spectrum_calls()]
    assert services.count("PreTimeCard") == len(card["entries"])
    assert "AddJob" in services


def test_work_order_preview_in_work_order_mode(pctx: Any, ctx: Any, sent: list[Any]) -> None:
    assert sync_site(ctx, 1032, "main").ok  # the send needs customer and site mapped
    sent.clear()
    for c in (ctx, pctx):
        conn = c.settings.connections["main"]
        rules = conn.rules.model_copy(update={"mode": "work_order"})
        c.settings = c.settings.model_copy(
            update={"connections": {"main": conn.model_copy(update={"rules": rules})}}
        )
    preview = preview_record(pctx, "work_order", 1033, "main")
    assert preview.status == "would_send", preview.reason
    assert send_job(ctx, 1033, "main").ok
    assert planned(preview) == sent == [("WorkOrderHeader", sent[0][1])]
    # a re-send overwrites: the preview still lists the upsert
    assert preview_record(pctx, "work_order", 1033, "main").status == "would_send"


# --- records that could not be sent ------------------------------------------------------------
def test_a_missing_employee_blocks_the_timecard(pctx: Any, st_state: Any) -> None:
    card = next(
        c for c in st_state.all("timecard") if not c["user"].get("externalIds", {}).get("spectrum")
    )
    preview = preview_record(pctx, "timecard", card["id"], "main")
    assert preview.status == "blocked" and not preview.ok
    assert "PrerequisiteMissing" in preview.reason and "no Spectrum employee" in preview.reason
    assert preview.calls == []


def test_an_ignored_job_type_is_skipped(pctx: Any, world: Any) -> None:
    preview = preview_record(pctx, "job", world.landmarks["administrative_job"], "main")
    assert preview.status == "skipped" and not preview.ok
    assert "administrative" in preview.reason


def test_a_salesperson_without_code_blocks_the_invoice_after_the_chain(
    pctx: Any, world: Any
) -> None:
    preview = preview_record(
        pctx, "invoice", world.landmarks["invoice_salesperson_without_id"], "main"
    )
    assert preview.status == "blocked"
    assert "salesperson" in preview.reason.lower()


def test_a_failed_prerequisite_blocks_like_the_chain(pctx: Any, ctx: Any, st_state: Any) -> None:
    # the company fails permanently (no name is not what blocks it here: a failed ledger row is)
    from worker.ledger import RecordKey, Status

    key = RecordKey("main", "customer", "1031")
    ctx.ledger.ensure(key)
    ctx.ledger.mark(key, Status.FAILED, error_kind="MappingError", reason="company 1031: bad")
    preview = preview_record(pctx, "site", 1032, "main")
    assert preview.status == "blocked"
    assert "company 1031: bad" in preview.reason
    # the failed record itself previews as what `stsync retry` would send
    retry = preview_record(pctx, "customer", 1031, "main")
    assert retry.status == "would_send"
    assert any("stsync retry" in n for n in retry.notes)


def test_the_preview_ledger_refuses_writes(settings: Any) -> None:
    led = ReadOnlyLedger(settings.database_url)
    from worker.ledger import RecordKey

    with pytest.raises(PreviewWriteError):
        led.ensure(RecordKey("main", "customer", "1"))
    with pytest.raises(PreviewWriteError):
        led.next_code_value("main", "customer", start=1, end=9)
    led.audit(system="x", service="y", outcome="ok")  # dropped, not an error


def test_unknown_record_type_is_refused(pctx: Any) -> None:
    with pytest.raises(ValueError, match="unknown record type"):
        preview_record(pctx, "po", 1, "main")


# --- parity over failure paths: the preview says what the sync then records --------------------
def st_comments(st_state: Any, entity_type: int, entity_id: int) -> list[str]:
    return [
        c["content"]
        for c in st_state.all("comment")
        if c.get("entityType") == entity_type and c.get("entityId") == entity_id
    ]


def check_same_failure(
    pctx: Any,
    ctx: Any,
    sent: list[Any],
    record_type: str,
    record_id: int,
    sync: Any,
    *,
    status: str,
) -> Any:
    """The preview's status and reason are the outcome and ledger reason the sync then records,
    and its Spectrum calls (the chain before the failure) are what the sync sends."""
    before = table_counts(ctx.ledger)
    preview = preview_record(pctx, record_type, record_id, "main")
    assert table_counts(ctx.ledger) == before, "the preview wrote to the ledger"
    assert preview.status == status, preview.as_dict()
    outcome = sync()
    assert not outcome.ok
    rec = ctx.ledger.get(outcome.key)
    assert rec.last_error == outcome.message
    assert preview.reason.endswith(outcome.message), (preview.reason, outcome.message)
    assert planned(preview) == sent
    return preview


def test_a_failing_invoice_previews_the_reason_and_the_comment_the_sync_leaves(
    pctx: Any, ctx: Any, world: Any, st_state: Any, sent: list[Any]
) -> None:
    inv = world.landmarks["invoice_salesperson_without_id"]
    preview = check_same_failure(
        pctx, ctx, sent, "invoice", inv, lambda: sync_invoice(ctx, inv, "main"), status="blocked"
    )
    assert preview.reason.startswith("PrerequisiteMissing: ")
    # the write-backs of the failure: the comment the sync posts, then status "failed"
    st_calls = [c for c in preview.calls if c.system == "servicetrade"]
    comment = next(c for c in st_calls if c.service == "comment")
    assert st_comments(st_state, 6, inv) == [comment.values["content"]]
    assert st_calls[-1].values == {"id": inv, "status": "failed"}
    assert st_state.get("invoice", inv)["status"] == "failed"


def test_a_collision_previews_the_sync_failure(
    pctx: Any, ctx: Any, st_state: Any, spectrum_db: Any, sent: list[Any]
) -> None:
    job = next(j for j in st_state.all("job") if j["id"] == 1033)
    foreign = {
        "Company_Code": "ABC",
        "Job_Number": f"T{job['number']}",
        "Job_Description": "Hand made",
        "Customer_Code": "OTHER",
        "Status_Code": "A",
    }
    spectrum_db.load({"JC_JOB_MASTER_MC": [foreign]})
    preview = check_same_failure(
        pctx, ctx, sent, "job", 1033, lambda: sync_job(ctx, 1033, "main"), status="blocked"
    )
    assert "already exists and is not ours" in preview.reason
    assert [c.service for c in preview.spectrum_calls()][-1] == "AddJob"
    comment = next(c for c in preview.calls if c.service == "comment")
    assert st_comments(st_state, 3, 1033) == [comment.values["content"]]


def test_a_blocked_timecard_previews_the_sync_reason(
    pctx: Any, ctx: Any, st_state: Any, sent: list[Any]
) -> None:
    card = next(
        c for c in st_state.all("timecard") if not c["user"].get("externalIds", {}).get("spectrum")
    )
    preview = check_same_failure(
        pctx,
        ctx,
        sent,
        "timecard",
        card["id"],
        lambda: sync_timecard(ctx, card["id"], "main"),
        status="blocked",
    )
    assert preview.calls == []


def test_a_skipped_job_previews_the_skip_reason_the_sync_records(
    pctx: Any, ctx: Any, world: Any, sent: list[Any]
) -> None:
    job_id = world.landmarks["administrative_job"]
    preview = preview_record(pctx, "job", job_id, "main")
    assert preview.status == "skipped"
    outcome = sync_job(ctx, job_id, "main")
    assert outcome.result == "skipped"
    assert preview.reason == outcome.message == ctx.ledger.get(outcome.key).last_error
    assert preview.calls == [] and sent == []


def test_an_unknown_write_previews_as_adopted_and_the_sync_sends_nothing(
    pctx: Any, ctx: Any, world: Any, spectrum_app: Any, sent: list[Any]
) -> None:
    from clients.errors import TransientError

    inv = world.landmarks["invoice_nc"]
    spectrum_app.state.injector.script(REST_INVOICE_SERVICE, ["ghost"])
    with pytest.raises(TransientError):
        sync_invoice(ctx, inv, "main")
    sent.clear()
    preview = preview_record(pctx, "invoice", inv, "main")
    assert preview.status == "would_send", preview.as_dict()
    assert preview.spectrum_calls() == []  # looked up in Info-Link, adopted: nothing posted
    assert [c.service for c in preview.calls] == ["invoice status"]
    assert any("adopted" in n for n in preview.notes)
    assert sync_invoice(ctx, inv, "main").result == "adopted"
    assert sent == []


def test_an_invoice_neither_approved_nor_void_previews_as_the_sync_skips_it(
    pctx: Any, ctx: Any, world: Any, st_state: Any, sent: list[Any]
) -> None:
    inv = world.landmarks["invoice_nc"]
    st_state.update("invoice", inv, {"status": "ok"})
    preview = preview_record(pctx, "invoice", inv, "main")
    outcome = sync_invoice(ctx, inv, "main")
    assert preview.status == outcome.result == "skipped"
    assert preview.reason == outcome.message and "'ok'" in preview.reason
    assert preview.calls == [] and sent == []


# --- issue 16 decisions, shown before they happen ----------------------------------------------
def test_job_update_preview_shows_the_update_the_sync_sends(
    pctx: Any, ctx: Any, st_state: Any, sent: list[Any]
) -> None:
    assert sync_job(ctx, 1033, "main").ok
    assert sync_job(ctx, 1033, "main").ok  # the external id write-back seen: nothing pending
    sent.clear()
    st_state.update("job", 1033, {"name": "Renamed pump test", "serviceLine": "FA"})
    preview = check_same(pctx, ctx, sent, "job", 1033, lambda: sync_job(ctx, 1033, "main"))
    (call,) = preview.spectrum_calls()
    assert call.service == "UpdateJob"
    assert call.values["Job_Description"] == "Renamed pump test"
    assert (call.values["Cost_Center"], call.values["Price_Method_Code"]) == ("200", "F")


def test_heal_on_change_preview_of_a_fixed_failed_job_would_send(
    pctx: Any, ctx: Any, st_state: Any, sent: list[Any]
) -> None:
    from tests.tasks.test_job import with_rules

    with_rules(ctx, cost_centers={"default": ""})
    with_rules(pctx, cost_centers={"default": ""})
    st_state.update("job", 1033, {"serviceLine": "KS"})
    assert sync_job(ctx, 1033, "main").result == "failed"
    assert preview_record(pctx, "job", 1033, "main").status != "would_send"
    st_state.update("job", 1033, {"serviceLine": "SP"})
    sent.clear()
    preview = check_same(pctx, ctx, sent, "job", 1033, lambda: sync_job(ctx, 1033, "main"))
    assert "AddJob" in [c.service for c in preview.spectrum_calls()]


def test_stale_external_id_preview_shows_the_failure(pctx: Any, ctx: Any, st_state: Any) -> None:
    company = next(c for c in st_state.all("company") if c.get("isCustomer"))
    st_state.update("company", company["id"], {"externalIds": {"spectrum": "OLD123"}})
    preview = preview_record(pctx, "customer", company["id"], "main")
    assert preview.status != "would_send"
    assert "OLD123" in (preview.reason or "") and preview.spectrum_calls() == []
