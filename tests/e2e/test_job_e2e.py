"""Jobs end to end (F3, F4, F14): real sandbox servers, the real Redis, a real Celery worker.

A job created in the ServiceTrade simulator reaches stsync as a webhook; a send goes through the
ingest's ``POST /jobs/{id}/send``. Nothing runs eagerly.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from tests.e2e.conftest import Stack, wait_for

pytestmark = pytest.mark.e2e

JOBS = "JC_JOB_MASTER_MC"
PHASES = "JC_PHASE_MASTER_MC"
WORK_ORDERS = "WO_WORK_ORDER_HEADER_MC"
TOKEN = "send-job-token-for-tests"


def register_job_webhook(stack: Stack) -> None:
    """Subscribe the ingest to ServiceTrade job events (entity type 3)."""
    from worker.context import build_context

    ctx = build_context(stack.settings, ledger=stack.ledger)
    try:
        ctx.st.register_webhook(stack.ingest_url, {3: ["created", "updated"]})
    finally:
        ctx.st.close()


def configure(stack: Stack, *replacements: tuple[str, str]) -> None:
    """Edit the stsync.toml the worker will read (before it starts)."""
    path = Path(stack.env["STSYNC_CONFIG"])
    text = path.read_text()
    for old, new in replacements:
        assert old in text, old
        text = text.replace(old, new, 1)
    path.write_text(text)


def seeded_job(stack: Stack, *, line: str = "SP", state: str = "NC") -> dict[str, Any]:
    st = stack.sandbox.st_state
    for job in st.all("job"):
        loc = st.get("location", job["location"]["id"])
        if (
            job["type"] in ("inspection", "repair", "service_call")
            and job["serviceLine"] == line
            and job["status"] != "canceled"
            and loc["address"]["state"] == state
        ):
            return dict(job)
    raise AssertionError(f"no seeded job on line {line} in {state}")


def new_job(stack: Stack, **changes: Any) -> dict[str, Any]:
    """A new ServiceTrade job (like one a dispatcher creates): the simulator sends ``created``."""
    body = copy.deepcopy(seeded_job(stack))
    for key in ("id", "uri", "number", "externalIds", "created", "updated"):
        body.pop(key, None)
    body.update(changes)
    job: dict[str, Any] = stack.sandbox.st_state.create("job", body)
    return job


def rows(stack: Stack, table: str, **where: Any) -> list[dict[str, Any]]:
    return [
        {k: v.strip() if isinstance(v, str) else v for k, v in r.items()}
        for r in stack.sandbox.spectrum_db.rows(table, **where)
    ]


def template_phases(stack: Stack) -> set[tuple[str, str]]:
    return {
        (p["Phase_Code"], p["Cost_Type"])
        for p in rows(stack, PHASES, Job_Number="TEMPLATE", Company_Code="ABC")
    }


def phases_of(stack: Stack, number: str) -> list[tuple[str, str]]:
    return [(p["Phase_Code"], p["Cost_Type"]) for p in rows(stack, PHASES, Job_Number=number)]


def job_comments(stack: Stack, job_id: int) -> list[str]:
    return [
        c["content"]
        for c in stack.sandbox.st_state.all("comment")
        if c.get("entityType") == 3 and c.get("entityId") == job_id
    ]


def test_new_job_lands_with_chain_phases_oh_batch_and_external_id(stack: Stack) -> None:
    register_job_webhook(stack)
    stack.start_worker()
    job = new_job(stack, name="Quarterly sprinkler inspection, tower B", tags=[{"name": "PM:AKIM"}])
    ignored = new_job(stack, type="administrative")
    stack.flush_webhooks()

    rec = stack.wait_status("job", job["id"])
    skipped = stack.wait_status("job", ignored["id"], ("skipped",))

    number = f"T{job['number']}"
    assert rec.spectrum_key == number
    customer = stack.record("customer", job["customer"]["id"])
    site = stack.record("site", job["location"]["id"])
    assert customer.status.value == site.status.value == "done"
    [row] = rows(stack, JOBS, Job_Number=number)
    assert (row["Customer_Code"], row["WO_Site"]) == (customer.spectrum_key, site.spectrum_key)
    assert row["Cost_Center"] == "100"
    assert row["Project_Manager"] == "AKIM"
    assert row["Job_Oh_Batch_Code"] == "OH1"
    assert row["Job_Description"] == "Quarterly sprinkler inspe"
    assert row["Comment"] == "Quarterly sprinkler inspection, tower B"
    assert sorted(phases_of(stack, number)) == sorted(template_phases(stack))
    assert stack.sandbox.st_state.get("job", job["id"])["externalIds"]["spectrum"] == number
    assert "ignored_types" in (skipped.last_error or "")
    assert not rows(stack, JOBS, Job_Number=f"T{ignored['number']}")


def test_multi_cost_center_job_becomes_one_job_per_cost_center(stack: Stack) -> None:
    configure(stack, ("multi_cost_center = false", "multi_cost_center = true"))
    stack.start_worker()
    job = new_job(stack)
    stack.sandbox.st_state.create(
        "jobitem",
        {
            "name": "Extinguisher",
            "quantity": 2,
            "cost": 40,
            "job": {"id": job["id"]},
            "serviceLine": {"id": 7, "abbr": "EX"},
        },
    )
    from worker.context import celery_enqueue

    celery_enqueue("sync.job", (job["id"], "main"))
    stack.wait_status("job", job["id"])

    n = job["number"]
    made = {
        r["Job_Number"]: r["Cost_Center"]
        for r in rows(stack, JOBS)
        if r["Job_Number"].startswith(f"T{n}")
    }
    assert made == {f"T{n}-1": "100", f"T{n}-2": "300"}
    for number in made:
        assert sorted(phases_of(stack, number)) == sorted(template_phases(stack))
    assert stack.sandbox.st_state.get("job", job["id"])["externalIds"]["spectrum"] == (
        f"T{n}-1,T{n}-2"
    )


def test_ghost_write_on_add_job_is_adopted(stack: Stack) -> None:
    register_job_webhook(stack)
    stack.sandbox.spectrum_injector.script("AddJob", ["ghost"])
    stack.start_worker()
    job = new_job(stack)
    stack.flush_webhooks()

    rec = stack.wait_status("job", job["id"])

    number = f"T{job['number']}"
    assert len(rows(stack, JOBS, Job_Number=number)) == 1
    assert stack.sandbox.spectrum_injector.calls["AddJob"] == 1
    assert rec.state["how"] == {number: "adopted"}
    assert sorted(phases_of(stack, number)) == sorted(template_phases(stack))


def test_failure_mid_phases_is_retried_to_completion_without_duplicates(stack: Stack) -> None:
    register_job_webhook(stack)
    stack.sandbox.spectrum_injector.script("AddPhase", ["ok", "ok", "error"])
    stack.start_worker()
    job = new_job(stack)
    stack.flush_webhooks()

    rec = stack.wait_status("job", job["id"])

    number = f"T{job['number']}"
    phases = phases_of(stack, number)
    assert len(phases) == len(set(phases)) == len(template_phases(stack))
    calls = stack.sandbox.spectrum_injector.calls
    assert calls["AddJob"] == 1
    assert calls["AddPhase"] == len(template_phases(stack)) + 1  # only the failed one twice
    assert rec.attempts >= 2


def test_work_order_send_update_resend_and_missing_site(stack: Stack) -> None:
    from ingest.app import create_ingest_app

    configure(stack, ('mode = "jc"', 'mode = "work_order"'))
    stack.start_worker()
    settings = stack.settings.model_copy(
        update={
            "ingest": stack.settings.ingest.model_copy(update={"send_job_token": SecretStr(TOKEN)}),
        }
    )
    ingest = TestClient(create_ingest_app(settings))
    st = stack.sandbox.st_state
    job = seeded_job(stack)
    st.update("job", job["id"], {"customerPo": "PO-100", "description": "Check riser"})

    def send() -> None:
        resp = ingest.post(
            f"/jobs/{job['id']}/send?connection=main", headers={"x-stsync-token": TOKEN}
        )
        assert resp.status_code == 202, resp.text

    # the location is not mapped yet: the send fails and the job says what is missing
    send()
    stack.wait_status("work_order", job["id"], ("failed",))
    [comment] = wait_for(lambda: job_comments(stack, job["id"]), 20, 0.2, "failure comment")
    assert "is not mapped to a Spectrum WO site" in comment

    from worker.context import celery_enqueue

    celery_enqueue("sync.site", (job["location"]["id"], "main"))
    stack.wait_status("site", job["location"]["id"])
    send()
    number = f"W{job['number']}"
    wait_for(lambda: rows(stack, WORK_ORDERS, WO_Number=number), 30, 0.2, "work order")
    [wo] = rows(stack, WORK_ORDERS, WO_Number=number)
    assert (wo["Customer_PO_Number"], wo["Summary_Description"]) == ("PO-100", "Check riser")
    assert wo["WO_Job_Number"] == stack.record("site", job["location"]["id"]).spectrum_key
    wait_for(
        lambda: st.get("job", job["id"])["externalIds"].get("spectrum") == number,
        20,
        0.2,
        "external id",
    )

    st.update("job", job["id"], {"customerPo": "PO-200", "description": "Replace riser valve"})
    send()
    wait_for(
        lambda: rows(stack, WORK_ORDERS, WO_Number=number)[0]["Customer_PO_Number"] == "PO-200",
        30,
        0.2,
        "work order updated",
    )
    [wo] = rows(stack, WORK_ORDERS, WO_Number=number)
    assert wo["Summary_Description"] == "Replace riser valve"
    assert len(rows(stack, WORK_ORDERS, WO_Number=number)) == 1
    assert len(job_comments(stack, job["id"])) == 1
