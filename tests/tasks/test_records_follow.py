"""Issue 16 against the in-process sandbox: fixed records heal, jobs follow ServiceTrade, stale
external ids are never replaced silently.

Each test calls the plain ``sync_*`` functions with the ``ctx`` fixture (both simulators in
process, a real SQLite ledger, ``sandbox/demo.toml``); ``enqueued`` collects what a sync queued.
"""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from clients.spectrum import infolink_schema as il
from clients.spectrum.models import SpectrumRequest
from mappers.customer import st_company_to_add_customer
from mappers.rules import TimecardRules
from mappers.timecard import entry_marker
from tasks.customer import sync_customer
from tasks.invoice import sync_invoice
from tasks.job import (
    FOLLOW_KEY,
    RECORD_TYPE,
    WORK_ORDER_RECORD_TYPE,
    send_job,
    spectrum_jobs_of,
    sync_job,
)
from tasks.site import sync_site
from tasks.timecard import ENTRY_RECORD_TYPE, sync_timecard, sync_timecard_tally
from worker.ledger import RecordKey, Status

from .test_job import calls, job_comments, ledger_status, spectrum_rows, with_rules
from .test_timecard import PRE_TIME, card_with

JOBS = il.jobs.name
CUSTOMERS = il.customers.name
COMPANY_ENTITY = 5


def job_row(spectrum_db: Any, number: str) -> dict[str, Any]:
    (row,) = spectrum_rows(spectrum_db, JOBS, Job_Number=number)
    return row


def number_of(ctx: Any, job_id: int) -> str:
    (number,) = spectrum_jobs_of(ctx, job_id, "main").values()
    return number


def no_default_cost_center(ctx: Any) -> None:
    with_rules(ctx, cost_centers={"default": ""})


def a_customer_company(st_state: Any) -> dict[str, Any]:
    return next(dict(c) for c in st_state.all("company") if c.get("isCustomer"))


# --- heal on change ----------------------------------------------------------------------------
def test_heal_on_change_job_fixed_in_servicetrade_lands_and_wakes_its_invoice(
    ctx: Any, world: Any, st_state: Any, spectrum_db: Any, enqueued: list[Any]
) -> None:
    no_default_cost_center(ctx)
    job_id, inv_id = world.landmarks["invoice_nc_job"], world.landmarks["invoice_nc"]
    st_state.update("job", job_id, {"serviceLine": "KS"})  # not mapped, and no default
    failed = sync_invoice(ctx, inv_id, "main")
    assert failed.result == "failed"
    assert "'KS' is not mapped" in failed.message
    assert st_state.get("invoice", inv_id)["status"] == "failed"
    assert ledger_status(ctx, RECORD_TYPE, job_id) is Status.FAILED

    # an unchanged job stays failed: a repeated event sends nothing and comments nothing more
    comments = len(job_comments(st_state, job_id))
    again = sync_job(ctx, job_id, "main")
    assert again.result == "failed"
    assert len(job_comments(st_state, job_id)) == comments

    # the office fixes the job in ServiceTrade; its update webhook syncs it again
    st_state.update("job", job_id, {"serviceLine": "SP"})
    healed = sync_job(ctx, job_id, "main")
    assert healed.result == "synced"
    assert job_row(spectrum_db, healed.spectrum_key or "")["Cost_Center"] == "100"
    # the invoice that waited is approved again and queued: no person runs a command
    assert ("sync.invoice", (inv_id, "main")) in enqueued
    assert st_state.get("invoice", inv_id)["status"] == "pending_accounting"
    posted = sync_invoice(ctx, inv_id, "main")
    assert posted.result == "synced", posted.message
    assert st_state.get("invoice", inv_id)["status"] == "processed"


def test_heal_on_change_invoice_comment_advice_works(ctx: Any, world: Any, st_state: Any) -> None:
    """The invoice comment says: fix it, then set the invoice back to pending accounting."""
    no_default_cost_center(ctx)
    job_id, inv_id = world.landmarks["invoice_nc_job"], world.landmarks["invoice_nc"]
    st_state.update("job", job_id, {"serviceLine": "KS"})
    assert sync_invoice(ctx, inv_id, "main").result == "failed"
    comment = [
        c["content"]
        for c in st_state.all("comment")
        if c.get("entityType") == 6 and c.get("entityId") == inv_id
    ][-1]
    assert "pending" in comment.lower()
    st_state.update("job", job_id, {"serviceLine": "FA"})
    st_state.update("invoice", inv_id, {"status": "pending_accounting"})
    out = sync_invoice(ctx, inv_id, "main")
    assert out.result == "synced", out.message
    assert ledger_status(ctx, RECORD_TYPE, job_id) is Status.DONE


def test_heal_on_change_config_fix_heals_the_job_and_its_comment_advice_works(
    ctx: Any, world: Any, st_state: Any, spectrum_db: Any
) -> None:
    no_default_cost_center(ctx)
    job_id = world.landmarks["invoice_nc_job"]
    st_state.update("job", job_id, {"serviceLine": "KS"})
    assert sync_job(ctx, job_id, "main").result == "failed"
    (comment,) = job_comments(st_state, job_id)
    assert "Add the missing entry to the stsync configuration" in comment
    # the advice: add the entry; the next look at the job (event, dependent, send) lands it
    by_line = {**ctx.settings.connections["main"].rules.cost_centers.by_service_line, "KS": "300"}
    with_rules(ctx, cost_centers={"default": "", "by_service_line": by_line})
    out = sync_job(ctx, job_id, "main")
    assert out.result == "synced", out.message
    assert job_row(spectrum_db, out.spectrum_key or "")["Cost_Center"] == "300"
    history = ctx.ledger.history(RecordKey("main", RECORD_TYPE, str(job_id)))
    assert any(e.detail and "configuration it used changed" in e.detail for e in history)


def test_heal_on_change_send_job_after_config_fix(ctx: Any, world: Any, st_state: Any) -> None:
    """The job comment's last line: "After fixing, send the job again"."""
    no_default_cost_center(ctx)
    job_id = world.landmarks["invoice_nc_job"]
    st_state.update("job", job_id, {"serviceLine": "KS"})
    assert sync_job(ctx, job_id, "main").result == "failed"
    with_rules(ctx, cost_centers={"default": "200"})
    assert send_job(ctx, job_id, "main").result == "synced"


def test_heal_on_change_skipped_job_of_ignored_type_lands_when_its_type_changes(
    ctx: Any, world: Any, st_state: Any
) -> None:
    job_id = world.landmarks["administrative_job"]
    assert sync_job(ctx, job_id, "main").result == "skipped"
    assert sync_job(ctx, job_id, "main").result == "skipped"
    st_state.update("job", job_id, {"type": "repair"})
    assert sync_job(ctx, job_id, "main").result == "synced"


def test_heal_on_change_vendor_flagged_as_customer_lands(
    ctx: Any, st_state: Any, spectrum_db: Any
) -> None:
    vendor = next(c for c in st_state.all("company") if c.get("isCustomer") is False)
    assert sync_customer(ctx, vendor["id"], "main").result == "skipped"
    before = spectrum_db.count(CUSTOMERS)
    st_state.update("company", vendor["id"], {"isCustomer": True})
    out = sync_customer(ctx, vendor["id"], "main")
    assert out.result == "synced"
    assert spectrum_db.count(CUSTOMERS) == before + 1


def test_heal_on_change_same_second_fix_is_seen_by_content(
    ctx: Any, world: Any, st_state: Any
) -> None:
    """ServiceTrade's ``updated`` has one-second resolution: a fix within the same second is
    still seen (the content differs)."""
    no_default_cost_center(ctx)
    job_id = world.landmarks["invoice_nc_job"]
    st_state.now = lambda: 1_800_000_000  # a frozen clock
    st_state.update("job", job_id, {"serviceLine": "KS"})
    assert sync_job(ctx, job_id, "main").result == "failed"
    st_state.update("job", job_id, {"serviceLine": "EX"})
    assert st_state.get("job", job_id)["updated"] == 1_800_000_000
    assert sync_job(ctx, job_id, "main").result == "synced"


def test_heal_on_change_job_waiting_on_its_customer_is_woken(
    ctx: Any, world: Any, st_state: Any, enqueued: list[Any]
) -> None:
    job_id = world.landmarks["invoice_nc_job"]
    job = st_state.get("job", job_id)
    company_id = job["customer"]["id"]
    with_rules(ctx, customers={"terms_code": "Q"})  # Spectrum has no terms code Q
    out = sync_job(ctx, job_id, "main")
    assert out.result == "failed"
    assert ledger_status(ctx, "customer", company_id) is Status.FAILED
    with_rules(ctx, customers={"terms_code": "N"})
    assert sync_customer(ctx, company_id, "main").result == "synced"
    assert ("sync.job", (job_id, "main")) in enqueued
    assert sync_job(ctx, job_id, "main").result == "synced"


# --- jobs follow ServiceTrade ------------------------------------------------------------------
def test_job_update_name_pm_office_and_date_follow_blank_never_clears(
    ctx: Any, world: Any, st_state: Any, spectrum_db: Any, spectrum_app: Any
) -> None:
    job_id = world.landmarks["invoice_nc_job"]
    number = sync_job(ctx, job_id, "main").spectrum_key or ""
    assert job_row(spectrum_db, number)["Project_Manager"] == "RLOPEZ"
    updates = calls(spectrum_app, "UpdateJob")
    st_state.update(
        "job",
        job_id,
        {
            "name": "Annual sprinkler test",
            "tags": [{"id": 1, "name": "PM:AKIM"}],
            "assignedOffice": {"id": 12, "name": "Charlotte Office"},
            "scheduledDate": 1_780_000_000,
        },
    )
    out = sync_job(ctx, job_id, "main")
    assert out.result == "synced"
    row = job_row(spectrum_db, number)
    assert row["Job_Description"] == "Annual sprinkler test"
    assert row["Project_Manager"] == "AKIM"
    assert row["UDF1"] == "Charlotte Office"
    assert str(row["Est_Start_Date"]).startswith("2026-05-28")
    assert calls(spectrum_app, "UpdateJob") == updates + 1
    assert calls(spectrum_app, "UpdateJob_UDF") >= 1
    # the PM tag removed in ServiceTrade: blank never clears Spectrum's value
    st_state.update("job", job_id, {"tags": []})
    assert sync_job(ctx, job_id, "main").result == "unchanged"
    assert job_row(spectrum_db, number)["Project_Manager"] == "AKIM"
    # an unchanged event sends nothing
    before = dict(spectrum_app.state.injector.calls)
    assert sync_job(ctx, job_id, "main").result == "unchanged"
    assert dict(spectrum_app.state.injector.calls) == before


def test_job_update_field_edited_only_in_spectrum_is_left_alone(
    ctx: Any, world: Any, st_state: Any, spectrum_db: Any
) -> None:
    job_id = world.landmarks["invoice_nc_job"]
    number = sync_job(ctx, job_id, "main").spectrum_key or ""
    with spectrum_db.engine.begin() as c:
        c.execute(
            il.jobs.update().where(il.jobs.c.Job_Number == number).values(Project_Manager="BYHAND")
        )
    st_state.update("job", job_id, {"name": "Renamed job"})
    assert sync_job(ctx, job_id, "main").result == "synced"
    row = job_row(spectrum_db, number)
    assert row["Job_Description"] == "Renamed job"
    assert row["Project_Manager"] == "BYHAND"


def test_job_update_cost_center_and_price_method_follow_before_the_first_invoice(
    ctx: Any, world: Any, st_state: Any, spectrum_db: Any
) -> None:
    job_id = world.landmarks["invoice_nc_job"]  # SP -> 100, price method T
    number = sync_job(ctx, job_id, "main").spectrum_key or ""
    assert job_row(spectrum_db, number)["Cost_Center"] == "100"
    st_state.update("job", job_id, {"serviceLine": "FA"})  # FA -> 200, price method F
    assert sync_job(ctx, job_id, "main").result == "synced"
    row = job_row(spectrum_db, number)
    assert (row["Cost_Center"], row["Price_Method_Code"]) == ("200", "F")
    assert spectrum_jobs_of(ctx, job_id, "main") == {"200": number}


def test_job_update_cost_center_change_after_an_invoice_is_refused_with_comment_and_alert(
    ctx: Any, world: Any, st_state: Any, spectrum_db: Any, spectrum_app: Any
) -> None:
    job_id, inv_id = world.landmarks["invoice_nc_job"], world.landmarks["invoice_nc"]
    assert sync_invoice(ctx, inv_id, "main").result == "synced"
    number = number_of(ctx, job_id)
    st_state.update("job", job_id, {"serviceLine": "EX", "name": "Renamed after billing"})
    out = sync_job(ctx, job_id, "main")
    assert out.ok
    row = job_row(spectrum_db, number)
    assert row["Cost_Center"] == "100"  # kept
    assert row["Job_Description"] == "Renamed after billing"  # the rest still follows
    comments = job_comments(st_state, job_id)
    assert any("cannot change an existing AR contract" in c for c in comments)
    alerts = ctx.ledger.alerts(RecordKey("main", RECORD_TYPE, str(job_id)))
    assert any("AR contract" in a["message"] for a in alerts)
    assert ledger_status(ctx, RECORD_TYPE, job_id) is Status.DONE
    assert spectrum_jobs_of(ctx, job_id, "main") == {"100": number}
    # the same refusal again: no second comment
    st_state.update("job", job_id, {"name": "Renamed again"})
    sync_job(ctx, job_id, "main")
    assert sum("AR contract" in c for c in job_comments(st_state, job_id)) == 1


def test_job_update_multi_cost_center_new_cost_center_gets_its_spectrum_job(
    ctx: Any, world: Any, st_state: Any, spectrum_db: Any
) -> None:
    with_rules(ctx, jobs={"multi_cost_center": True})
    job_id = world.landmarks["invoice_nc_job"]
    first = sync_job(ctx, job_id, "main")
    assert first.result == "synced"
    assert spectrum_jobs_of(ctx, job_id, "main") == {"100": first.spectrum_key}
    line = next(sl for sl in st_state.all("serviceline") if sl["abbr"] == "FA")
    st_state.create(
        "jobitem",
        {
            "name": "Extra fire alarm work",
            "quantity": 1,
            "cost": 10,
            "job": {"id": job_id},
            "serviceLine": {"id": line["id"], "name": line["name"], "abbr": "FA"},
        },
    )
    st_state.update("job", job_id, {"description": "now also fire alarm"})
    out = sync_job(ctx, job_id, "main")
    assert out.result == "synced", out.message
    plan = spectrum_jobs_of(ctx, job_id, "main")
    assert set(plan) == {"100", "200"}
    assert plan["100"] == first.spectrum_key  # an existing number never moves
    assert job_row(spectrum_db, plan["200"])["Cost_Center"] == "200"
    assert st_state.get("job", job_id)["externalIds"]["spectrum"] == ",".join(plan.values())


def test_job_status_change_completed_and_canceled_follow_the_configured_status(
    ctx: Any, world: Any, st_state: Any, spectrum_db: Any
) -> None:
    job = next(
        j
        for j in st_state.all("job")
        if j["status"] == "scheduled" and j["type"] != "administrative"
    )
    number = sync_job(ctx, job["id"], "main").spectrum_key or ""
    assert job_row(spectrum_db, number)["Status_Code"] == "A"
    # unset: leave Spectrum's status
    st_state.update("job", job["id"], {"status": "completed", "completedOn": 1_780_000_000})
    sync_job(ctx, job["id"], "main")
    assert job_row(spectrum_db, number)["Status_Code"] == "A"
    assert str(job_row(spectrum_db, number)["Complete_Date"]).startswith("2026-05-28")
    with_rules(ctx, jobs={"status_on_complete": "C", "status_on_cancel": "I"})
    assert sync_job(ctx, job["id"], "main").result == "synced"
    assert job_row(spectrum_db, number)["Status_Code"] == "C"
    st_state.update("job", job["id"], {"status": "canceled"})
    sync_job(ctx, job["id"], "main")
    assert job_row(spectrum_db, number)["Status_Code"] == "I"
    st_state.update("job", job["id"], {"status": "scheduled"})  # reopened
    sync_job(ctx, job["id"], "main")
    assert job_row(spectrum_db, number)["Status_Code"] == "A"


def test_job_status_change_job_created_completed_gets_its_status_at_once(
    ctx: Any, world: Any, spectrum_db: Any
) -> None:
    with_rules(ctx, jobs={"status_on_complete": "C"})
    job_id = world.landmarks["invoice_nc_job"]  # completed in the seed
    number = sync_job(ctx, job_id, "main").spectrum_key or ""
    assert job_row(spectrum_db, number)["Status_Code"] == "C"
    rec = ctx.ledger.get(RecordKey("main", RECORD_TYPE, str(job_id)))
    assert rec.state[FOLLOW_KEY][number]["Status_Code"] == "C"


def test_job_update_work_order_mode_resends_only_when_configured(
    ctx: Any, world: Any, st_state: Any, spectrum_db: Any, spectrum_app: Any
) -> None:
    with_rules(ctx, mode="work_order")
    job_id = world.landmarks["invoice_nc_job"]
    job = st_state.get("job", job_id)
    for record, st_id in (("customer", job["customer"]["id"]), ("site", job["location"]["id"])):
        (sync_customer if record == "customer" else sync_site)(ctx, st_id, "main")
    with_rules(ctx, mode="work_order")
    assert send_job(ctx, job_id, "main").result == "synced"
    sends = calls(spectrum_app, "WorkOrderHeader")
    st_state.update("job", job_id, {"description": "changed after the send"})
    assert sync_job(ctx, job_id, "main").result == "skipped"
    assert calls(spectrum_app, "WorkOrderHeader") == sends
    with_rules(ctx, mode="work_order", work_orders={"resend_on_update": True})
    assert sync_job(ctx, job_id, "main").result == "synced"
    assert calls(spectrum_app, "WorkOrderHeader") == sends + 1
    assert ledger_status(ctx, WORK_ORDER_RECORD_TYPE, job_id) is Status.DONE


# --- stale external ids ------------------------------------------------------------------------
def test_stale_external_id_fails_with_alert_and_comment_naming_the_code(
    ctx: Any, st_state: Any, spectrum_db: Any, spectrum_app: Any
) -> None:
    company = a_customer_company(st_state)
    st_state.update("company", company["id"], {"externalIds": {"spectrum": "OLD123"}})
    out = sync_customer(ctx, company["id"], "main")
    assert out.result == "failed"
    assert "OLD123" in out.message and "relink or clear the external id" in out.message
    assert calls(spectrum_app, "AddCustomer") == 0
    assert st_state.get("company", company["id"])["externalIds"]["spectrum"] == "OLD123"
    key = RecordKey("main", "customer", str(company["id"]))
    assert any("OLD123" in a["message"] for a in ctx.ledger.alerts(key))
    comments = [
        c["content"]
        for c in st_state.all("comment")
        if c.get("entityType") == COMPANY_ENTITY and c.get("entityId") == company["id"]
    ]
    assert len(comments) == 1 and "OLD123" in comments[0]
    # the comment's advice: clear the external id -> stsync creates the customer
    st_state.update("company", company["id"], {"externalIds": {"spectrum": ""}})
    healed = sync_customer(ctx, company["id"], "main")
    assert healed.result == "synced", healed.message
    assert calls(spectrum_app, "AddCustomer") == 1


def test_stale_external_id_relinked_to_an_existing_code_is_adopted(
    ctx: Any, st_state: Any, spectrum_app: Any
) -> None:
    company = a_customer_company(st_state)
    request, _ = st_company_to_add_customer(
        ctx.st.get_company(company["id"]),
        code="HAND1",
        rules=ctx.settings.connections["main"].rules,
    )
    ctx.spectrum_for("main").put(request)
    st_state.update("company", company["id"], {"externalIds": {"spectrum": "GONE1"}})
    assert sync_customer(ctx, company["id"], "main").result == "failed"
    st_state.update("company", company["id"], {"externalIds": {"spectrum": "HAND1"}})
    out = sync_customer(ctx, company["id"], "main")
    assert (out.result, out.spectrum_key) == ("adopted", "HAND1")
    assert calls(spectrum_app, "AddCustomer") == 1  # only the one made by hand above


def test_stale_external_id_adopt_by_name_matches_name_and_address(
    ctx: Any, st_state: Any, spectrum_app: Any
) -> None:
    with_rules(ctx, customers={"adopt": "by_name"})
    company = a_customer_company(st_state)
    request, _ = st_company_to_add_customer(
        ctx.st.get_company(company["id"]),
        code="HAND2",
        rules=ctx.settings.connections["main"].rules,
    )
    values = dict(request.values)
    values["Name"] = values["Name"].lower() + "."  # normalised: case and punctuation ignored
    ctx.spectrum_for("main").put(request.model_copy(update={"values": values}))
    st_state.update("company", company["id"], {"externalIds": {"spectrum": "GONE2"}})
    out = sync_customer(ctx, company["id"], "main")
    assert (out.result, out.spectrum_key) == ("adopted", "HAND2"), out.message
    assert st_state.get("company", company["id"])["externalIds"]["spectrum"] == "HAND2"
    assert calls(spectrum_app, "AddCustomer") == 1


def test_stale_external_id_adopt_by_name_without_a_match_still_fails(
    ctx: Any, st_state: Any, spectrum_app: Any
) -> None:
    with_rules(ctx, customers={"adopt": "by_name"})
    company = a_customer_company(st_state)
    st_state.update("company", company["id"], {"externalIds": {"spectrum": "GONE3"}})
    out = sync_customer(ctx, company["id"], "main")
    assert out.result == "failed"
    assert "No Spectrum record has the same name and address" in out.message
    assert calls(spectrum_app, "AddCustomer") == 0


def test_stale_external_id_of_a_location_fails_naming_the_site_id(
    ctx: Any, st_state: Any, spectrum_app: Any
) -> None:
    company = a_customer_company(st_state)
    loc = next(
        lo
        for lo in st_state.all("location")
        if lo.get("company") and lo["company"]["id"] == company["id"]
    )
    st_state.update("location", loc["id"], {"externalIds": {"spectrum": "SGONE"}})
    out = sync_site(ctx, loc["id"], "main")
    assert out.result == "failed"
    assert "WO site id 'SGONE'" in out.message
    assert calls(spectrum_app, "AddWOSiteAddress") == 0


def test_stale_external_id_of_a_job_is_not_replaced(
    ctx: Any, world: Any, st_state: Any, spectrum_app: Any
) -> None:
    job_id = world.landmarks["invoice_nc_job"]
    st_state.update("job", job_id, {"externalIds": {"spectrum": "TGONE"}})
    out = sync_job(ctx, job_id, "main")
    assert out.result == "failed"
    assert "TGONE" in out.message and "relink or clear the external id" in out.message
    assert calls(spectrum_app, "AddJob") == 0
    assert st_state.get("job", job_id)["externalIds"]["spectrum"] == "TGONE"


# --- labor on jobs not in Spectrum ---------------------------------------------------------------
def _card_with_admin_labor(st_state: Any, world: Any) -> tuple[dict[str, Any], str]:
    card = card_with(st_state, "labor")
    labor = next(e for e in card["entries"] if e["kind"] == "labor")
    admin = st_state.get("job", world.landmarks["administrative_job"])
    new = {
        **labor,
        "id": 990101,
        "hours": 2,
        "job": {"id": admin["id"], "number": admin["number"], "name": admin["name"]},
    }
    st_state.update("timecard", card["id"], {"entries": [*card["entries"], new]})
    return card, f"{card['id']}:990101"


def test_unsynced_job_labor_default_fails_naming_the_option(
    ctx: Any, world: Any, st_state: Any, spectrum_db: Any
) -> None:
    card, sid = _card_with_admin_labor(st_state, world)
    out, tally = sync_timecard_tally(ctx, card["id"], "main")
    assert tally.failed == [sid]
    assert len(tally.posted) == len(card["entries"])  # the rest of the card posts
    rec = ctx.ledger.get(RecordKey("main", ENTRY_RECORD_TYPE, sid))
    assert rec.status is Status.FAILED
    assert "unsynced_job_labor" in (rec.last_error or "")
    assert '"skip"' in (rec.last_error or "") and '"overhead"' in (rec.last_error or "")
    # the advice: set the option, then replay the timecard
    with_rules(ctx, timecards={"unsynced_job_labor": "skip"})
    _, tally = sync_timecard_tally(ctx, card["id"], "main")
    assert tally.skipped == [sid]
    assert ctx.ledger.get(RecordKey("main", ENTRY_RECORD_TYPE, sid)).status is Status.SKIPPED


def test_unsynced_job_labor_overhead_posts_to_the_overhead_job(
    ctx: Any, world: Any, st_state: Any, spectrum_db: Any
) -> None:
    ctx.spectrum_for("main").put(
        SpectrumRequest(
            service="AddPhase",
            values={
                "Company_Code": "ABC",
                "Job_Number": "24-404E1",
                "Phase_Code": "900",
                "Cost_Type": "L",
                "Description": "Overhead",
                "Price_Method_Code": "J",
            },
        )
    )
    with_rules(
        ctx,
        timecards={
            "unsynced_job_labor": "overhead",
            "overhead_job": "24-404E1",
            "overhead_phase": "900",
            "overhead_cost_center": "100",
        },
    )
    card, sid = _card_with_admin_labor(st_state, world)
    _, tally = sync_timecard_tally(ctx, card["id"], "main")
    assert sid in tally.posted, ctx.ledger.get(RecordKey("main", ENTRY_RECORD_TYPE, sid)).last_error
    (row,) = spectrum_rows(spectrum_db, PRE_TIME, Message=entry_marker(card["id"], 990101))
    assert (row["Job_Number"], row["Phase_Code"], row["Cost_Center"]) == ("24-404E1", "900", "100")


def test_unsynced_job_labor_overhead_needs_an_overhead_job() -> None:
    with pytest.raises(ValidationError, match="overhead_job"):
        TimecardRules(unsynced_job_labor="overhead")


def test_heal_on_change_timecard_waiting_on_a_failed_job_is_woken(
    ctx: Any, st_state: Any, enqueued: list[Any]
) -> None:
    no_default_cost_center(ctx)
    card = card_with(st_state, "labor")
    job_id = next(e for e in card["entries"] if e["kind"] == "labor")["job"]["id"]
    line = st_state.get("job", job_id)["serviceLine"]
    st_state.update("job", job_id, {"serviceLine": "KS"})
    assert sync_timecard(ctx, card["id"], "main").result == "failed"
    st_state.update("job", job_id, {"serviceLine": line})
    assert sync_job(ctx, job_id, "main").result == "synced"
    assert ("sync.timecard", (card["id"], "main")) in enqueued
    assert sync_timecard(ctx, card["id"], "main").result == "synced"
