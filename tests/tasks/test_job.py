"""Job sync (F3), work-order send (F4) and failure comments (F14) against the in-process sandbox.

Each test calls the plain ``sync_job`` / ``send_job`` with the ``ctx`` fixture: both simulators in
process, a real SQLite ledger, the demo configuration (``sandbox/demo.toml``).
"""

from __future__ import annotations

from typing import Any

import pytest

from clients.errors import ConfigError, TransientError
from tasks.job import (
    RECORD_TYPE,
    SEND_TASK_NAME,
    WORK_ORDER_RECORD_TYPE,
    enqueue_send_job,
    send_job,
    spectrum_jobs_of,
    sync_job,
)
from worker.ledger import RecordKey, Status

JOBS = "JC_JOB_MASTER_MC"
PHASES = "JC_PHASE_MASTER_MC"
WORK_ORDERS = "WO_WORK_ORDER_HEADER_MC"


# --- helpers ------------------------------------------------------------------------------------
def with_rules(ctx: Any, *, mode: str | None = None, **sections: dict[str, Any]) -> None:
    """Change the ``main`` connection's rules in place (what a different stsync.toml would do)."""
    conn = ctx.settings.connections["main"]
    update: dict[str, Any] = {
        name: getattr(conn.rules, name).model_copy(update=changes)
        for name, changes in sections.items()
    }
    if mode is not None:
        update["mode"] = mode
    rules = conn.rules.model_copy(update=update)
    connections = {**ctx.settings.connections, "main": conn.model_copy(update={"rules": rules})}
    ctx.settings = ctx.settings.model_copy(update={"connections": connections})


def spectrum_rows(db: Any, table: str, **where: Any) -> list[dict[str, Any]]:
    return [
        {k: v.strip() if isinstance(v, str) else v for k, v in row.items()}
        for row in db.rows(table, **where)
    ]


def calls(app: Any, service: str) -> int:
    return int(app.state.injector.calls[service])


def job_comments(st_state: Any, job_id: int) -> list[str]:
    return [
        c["content"]
        for c in st_state.all("comment")
        if c.get("entityType") == 3 and c.get("entityId") == job_id
    ]


def pick_job(
    st_state: Any,
    *,
    state: str = "NC",
    line: str = "SP",
    types: tuple[str, ...] = ("inspection", "repair", "service_call"),
) -> dict[str, Any]:
    """A seeded job that the demo config maps fully (type, service line, state)."""
    for job in st_state.all("job"):
        loc = st_state.get("location", job["location"]["id"])
        if (
            job["type"] in types
            and job["status"] != "canceled"
            and job["serviceLine"] == line
            and loc["address"]["state"] == state
        ):
            return dict(job)
    raise AssertionError(f"no seeded job with type in {types}, line {line}, state {state}")


def ledger_status(ctx: Any, record_type: str, source_id: int) -> Status | None:
    rec = ctx.ledger.get(RecordKey("main", record_type, str(source_id)))
    return None if rec is None else rec.status


# --- JC mode ------------------------------------------------------------------------------------
def test_new_job_lands_with_customer_site_phases_oh_batch_and_external_id(
    ctx: Any, st_state: Any, spectrum_db: Any
) -> None:
    job = pick_job(st_state)
    loc = st_state.get("location", job["location"]["id"])
    job_type_map = ctx.settings.connections["main"].rules.jobs.job_type_map

    outcome = sync_job(ctx, job["id"], "main")

    assert outcome.result == "synced", outcome.message
    number = f"T{job['number']}"
    assert outcome.spectrum_key == number
    customer = ctx.ledger.get(RecordKey("main", "customer", str(job["customer"]["id"])))
    site = ctx.ledger.get(RecordKey("main", "site", str(loc["id"])))
    # the chain ran first
    assert customer.status is Status.DONE
    assert site.status is Status.DONE
    [row] = spectrum_rows(spectrum_db, JOBS, Job_Number=number)
    assert row["Customer_Code"] == customer.spectrum_key
    assert row["WO_Site"] == site.spectrum_key
    assert row["Cost_Center"] == "100"  # SP -> 100
    assert row["Price_Method_Code"] == "T"
    assert row["Job_Type"] == job_type_map[job["type"]]
    assert row["Tax_Class_Code"] == "NC"
    assert row["State"] == "NC"
    assert row["Address_1"] == loc["address"]["street"][:30].strip()
    assert row["UDF1"] == job["assignedOffice"]["name"]
    assert row["Job_Oh_Batch_Code"] == "OH1"
    pm = [t["name"][3:] for t in job["tags"] if t["name"] in ("PM:JSMITH", "PM:AKIM", "PM:RLOPEZ")]
    assert (row["Project_Manager"] or "") == (pm[0] if pm else "")
    template = spectrum_rows(spectrum_db, PHASES, Job_Number="TEMPLATE", Company_Code="ABC")
    copied = spectrum_rows(spectrum_db, PHASES, Job_Number=number)
    assert sorted((p["Phase_Code"], p["Cost_Type"]) for p in copied) == sorted(
        (p["Phase_Code"], p["Cost_Type"]) for p in template
    )
    assert st_state.get("job", job["id"])["externalIds"]["spectrum"] == number
    assert spectrum_jobs_of(ctx, job["id"], "main") == {"100": number}


def test_second_sync_of_a_synced_job_sends_nothing(
    ctx: Any, st_state: Any, spectrum_app: Any
) -> None:
    job = pick_job(st_state)
    assert sync_job(ctx, job["id"], "main").result == "synced"
    before = dict(spectrum_app.state.injector.calls)
    again = sync_job(ctx, job["id"], "main")
    assert again.result == "unchanged"
    assert dict(spectrum_app.state.injector.calls) == before


def test_ignored_job_type_is_skipped_with_the_reason(
    ctx: Any, world: Any, spectrum_app: Any
) -> None:
    job_id = world.landmarks["administrative_job"]
    outcome = sync_job(ctx, job_id, "main")
    assert outcome.result == "skipped"
    rec = ctx.ledger.get(RecordKey("main", RECORD_TYPE, str(job_id)))
    assert rec.status is Status.SKIPPED
    assert "ignored_types" in (rec.last_error or "")
    assert calls(spectrum_app, "AddJob") == 0


def test_template_phases_are_read_once_per_connection(
    ctx: Any, st_state: Any, spectrum_app: Any
) -> None:
    first = pick_job(st_state, line="SP")
    second = pick_job(st_state, line="FA")
    assert sync_job(ctx, first["id"], "main").ok
    assert sync_job(ctx, second["id"], "main").ok
    assert calls(spectrum_app, "GetPhase") == 1


def test_multi_cost_center_job_becomes_one_spectrum_job_per_cost_center(
    ctx: Any, st_state: Any, spectrum_db: Any
) -> None:
    with_rules(ctx, jobs={"multi_cost_center": True})
    job = pick_job(st_state, line="SP")
    st_state.create(
        "jobitem",
        {
            "name": "Alarm panel",
            "quantity": 1,
            "cost": 10,
            "job": {"id": job["id"]},
            "serviceLine": {"id": 6, "abbr": "FA"},
        },
    )

    outcome = sync_job(ctx, job["id"], "main")

    assert outcome.result == "synced", outcome.message
    n = job["number"]
    rows = {
        r["Job_Number"]: r
        for r in spectrum_rows(spectrum_db, JOBS)
        if r["Job_Number"].startswith(f"T{n}")
    }
    assert {k: v["Cost_Center"] for k, v in rows.items()} == {f"T{n}-1": "100", f"T{n}-2": "200"}
    assert rows[f"T{n}-2"]["Price_Method_Code"] == "F"  # cost center 200 -> F
    for number in rows:
        assert len(spectrum_rows(spectrum_db, PHASES, Job_Number=number)) == 6
    assert st_state.get("job", job["id"])["externalIds"]["spectrum"] == f"T{n}-1,T{n}-2"
    assert spectrum_jobs_of(ctx, job["id"], "main") == {"100": f"T{n}-1", "200": f"T{n}-2"}


def test_ghost_write_on_add_job_is_adopted_not_duplicated(
    ctx: Any, st_state: Any, spectrum_app: Any, spectrum_db: Any
) -> None:
    job = pick_job(st_state)
    spectrum_app.state.injector.script("AddJob", ["ghost"])
    with pytest.raises(TransientError):
        sync_job(ctx, job["id"], "main")
    assert ledger_status(ctx, RECORD_TYPE, job["id"]) is Status.PENDING

    outcome = sync_job(ctx, job["id"], "main")

    assert outcome.result == "adopted", outcome.message
    number = f"T{job['number']}"
    assert len(spectrum_rows(spectrum_db, JOBS, Job_Number=number)) == 1
    assert calls(spectrum_app, "AddJob") == 1  # the retry looked, found and adopted
    assert len(spectrum_rows(spectrum_db, PHASES, Job_Number=number)) == 6
    assert st_state.get("job", job["id"])["externalIds"]["spectrum"] == number


def test_failure_mid_phases_resumes_without_redoing_or_duplicating(
    ctx: Any, st_state: Any, spectrum_app: Any, spectrum_db: Any
) -> None:
    job = pick_job(st_state)
    spectrum_app.state.injector.script("AddPhase", ["ok", "ok", "error"])
    with pytest.raises(TransientError):
        sync_job(ctx, job["id"], "main")
    number = f"T{job['number']}"
    assert len(spectrum_rows(spectrum_db, PHASES, Job_Number=number)) == 2

    assert sync_job(ctx, job["id"], "main").result == "synced"

    phases = spectrum_rows(spectrum_db, PHASES, Job_Number=number)
    assert len(phases) == 6
    assert len({(p["Phase_Code"], p["Cost_Type"]) for p in phases}) == 6
    assert calls(spectrum_app, "AddJob") == 1  # the job was not sent again
    assert calls(spectrum_app, "AddPhase") == 3 + 4  # the two done phases were not sent again
    assert calls(spectrum_app, "UpdateJob") == 1


def test_collision_with_a_foreign_job_is_reported_never_overwritten(
    ctx: Any, st_state: Any, spectrum_db: Any, spectrum_app: Any
) -> None:
    job = pick_job(st_state)
    number = f"T{job['number']}"
    foreign = {
        "Company_Code": "ABC",
        "Job_Number": number,
        "Job_Description": "Hand made",
        "Customer_Code": "OTHER",
        "Status_Code": "A",
    }
    spectrum_db.load({JOBS: [foreign]})

    outcome = sync_job(ctx, job["id"], "main")

    assert outcome.result == "failed"
    assert "already exists and is not ours" in outcome.message
    [row] = spectrum_rows(spectrum_db, JOBS, Job_Number=number)
    assert row["Job_Description"] == "Hand made"  # untouched
    assert calls(spectrum_app, "AddPhase") == 0
    [comment] = job_comments(st_state, job["id"])
    assert "already exists and is not ours" in comment
    assert "How to fix:" in comment


def test_unmapped_service_line_fails_with_one_comment_per_distinct_problem(
    ctx: Any, st_state: Any
) -> None:
    with_rules(ctx, cost_centers={"default": ""})
    job = pick_job(st_state)
    st_state.update("job", job["id"], {"serviceLine": "KS"})

    first = sync_job(ctx, job["id"], "main")
    again = send_job(ctx, job["id"], "main")  # a person presses "send" again: same problem

    assert first.result == again.result == "failed"
    assert "[connections.main.cost_centers.by_service_line]" in first.message
    [comment] = job_comments(st_state, job["id"])
    assert "service line 'KS' is not mapped" in comment
    assert "stsync configuration" in comment

    st_state.update("job", job["id"], {"serviceLine": "ZZ"})  # a different problem
    assert send_job(ctx, job["id"], "main").result == "failed"
    assert len(job_comments(st_state, job["id"])) == 2

    with_rules(ctx, cost_centers={"default": "300"})  # fixed in the config, sent again
    fixed = send_job(ctx, job["id"], "main")
    assert fixed.result == "synced", fixed.message
    assert spectrum_jobs_of(ctx, job["id"], "main") == {"300": f"T{job['number']}"}


def test_job_mapped_before_is_adopted_from_its_external_id(
    ctx: Any, st_state: Any, spectrum_db: Any, spectrum_app: Any
) -> None:
    job = pick_job(st_state)
    spectrum_db.load(
        {
            JOBS: [
                {
                    "Company_Code": "ABC",
                    "Job_Number": "OLD123",
                    "Cost_Center": "200",
                    "Status_Code": "A",
                }
            ]
        }
    )
    st_state.update("job", job["id"], {"externalIds": {"spectrum": "OLD123"}})

    outcome = sync_job(ctx, job["id"], "main")

    assert outcome.result == "adopted"
    assert outcome.spectrum_key == "OLD123"
    assert calls(spectrum_app, "AddJob") == 0
    assert spectrum_jobs_of(ctx, job["id"], "main") == {"200": "OLD123"}


def test_jc_send_of_a_synced_job_changes_nothing(
    ctx: Any, st_state: Any, spectrum_app: Any
) -> None:
    job = pick_job(st_state)
    assert sync_job(ctx, job["id"], "main").ok
    before = calls(spectrum_app, "AddJob") + calls(spectrum_app, "AddPhase")
    assert send_job(ctx, job["id"], "main").ok
    assert calls(spectrum_app, "AddJob") + calls(spectrum_app, "AddPhase") == before


# --- work-order mode ----------------------------------------------------------------------------
def test_work_order_send_update_and_missing_mapping(
    ctx: Any, st_state: Any, spectrum_db: Any
) -> None:
    from tasks.site import sync_site

    with_rules(ctx, mode="work_order")
    job = pick_job(st_state)
    st_state.update("job", job["id"], {"customerPo": "PO-1", "description": "First visit"})

    # neither customer nor site is mapped: the send fails and says which
    missing = send_job(ctx, job["id"], "main")
    assert missing.result == "failed"
    [comment] = job_comments(st_state, job["id"])
    assert "is not mapped to a Spectrum customer" in comment
    assert "is not mapped to a Spectrum WO site" in comment
    assert sync_job(ctx, job["id"], "main").result == "skipped"  # webhooks do not send WOs

    assert sync_site(ctx, job["location"]["id"], "main").ok  # maps the customer too
    sent = send_job(ctx, job["id"], "main")
    assert sent.result == "synced", sent.message
    number = f"W{job['number']}"
    [wo] = spectrum_rows(spectrum_db, WORK_ORDERS, WO_Number=number)
    site = ctx.ledger.get(RecordKey("main", "site", str(job["location"]["id"]))).spectrum_key
    assert wo["WO_Job_Number"] == site
    assert wo["Customer_PO_Number"] == "PO-1"
    assert wo["Summary_Description"] == "First visit"
    assert wo["WO_Job_Division"] == "SVC"
    assert st_state.get("job", job["id"])["externalIds"]["spectrum"] == number

    st_state.update("job", job["id"], {"customerPo": "PO-2", "description": "Second visit"})
    assert send_job(ctx, job["id"], "main").result == "synced"
    [wo] = spectrum_rows(spectrum_db, WORK_ORDERS, WO_Number=number)
    assert (wo["Customer_PO_Number"], wo["Summary_Description"]) == ("PO-2", "Second visit")
    rec = ctx.ledger.get(RecordKey("main", WORK_ORDER_RECORD_TYPE, str(job["id"])))
    assert rec.status is Status.DONE
    assert rec.state["sends"] == 2  # sent and re-sent; the failed send never reached Spectrum
    assert len(job_comments(st_state, job["id"])) == 1


def test_enqueue_send_job_validates_the_connection(
    ctx: Any, enqueued: list[tuple[str, tuple[Any, ...]]]
) -> None:
    assert enqueue_send_job(42, "main", ctx=ctx) == "main"
    assert enqueued == [(SEND_TASK_NAME, (42, "main"))]
    with pytest.raises(ConfigError, match="unknown connection 'nope'"):
        enqueue_send_job(42, "nope", ctx=ctx)
    assert len(enqueued) == 1
