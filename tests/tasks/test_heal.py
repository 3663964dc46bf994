"""The heal-on-change rule (``tasks/heal.py``): when a failed/skipped record runs again."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

import pytest

from clients.errors import PrerequisiteMissing
from tasks.heal import reexamine_reason, waits_on
from tasks.job import RECORD_TYPE, sync_job
from tasks.sweep import run_sweep
from worker.ledger import Record, RecordKey, Status

from .test_job import ledger_status, with_rules

FACTS = {"updated": 100, "digest": "d1", "config": "c1"}


def rec(status: Status, *, kind: str | None = "MappingError", state: Any = None) -> Record:
    now = datetime.fromtimestamp(200, UTC)
    return Record(
        id=1,
        key=RecordKey("main", "job", "1"),
        status=status,
        spectrum_key=None,
        payload_digest=None,
        step=None,
        state={"heal": FACTS} if state is None else state,
        attempts=1,
        crashes=0,
        error_kind=kind,
        last_error="x",
        lease_owner=None,
        lease_until=None,
        created_at=now,
        updated_at=now,
        done_at=None,
    )


@pytest.mark.parametrize(
    ("record", "now", "config", "why"),
    [
        (rec(Status.FAILED), FACTS, "c1", None),
        (rec(Status.FAILED), {**FACTS, "updated": 101}, "c1", "ServiceTrade record changed"),
        (rec(Status.FAILED), {**FACTS, "digest": "d2"}, "c1", "ServiceTrade record changed"),
        (rec(Status.FAILED), FACTS, "c2", "configuration it used changed"),
        (rec(Status.SKIPPED, kind="skipped"), {**FACTS, "digest": "d2"}, "c1", "changed"),
        (rec(Status.FAILED, kind="prerequisite"), FACTS, "c1", "prerequisite"),
        (rec(Status.SKIPPED, kind="route"), FACTS, "c1", "routing"),
        (rec(Status.FAILED), None, "c1", None),  # unreadable now: only config decides
        (rec(Status.PENDING), {**FACTS, "updated": 999}, "c2", None),  # not terminal
        # a row from before these facts: compared with the row's own clock
        (rec(Status.FAILED, state={}), {**FACTS, "updated": 150}, "c1", None),
        (rec(Status.FAILED, state={}), {**FACTS, "updated": 250}, "c1", "changed"),
    ],
)
def test_heal_on_change_rule(record: Record, now: Any, config: str, why: str | None) -> None:
    got = reexamine_reason(record, now_facts=now, config=config)
    if why is None:
        assert got is None
    else:
        assert got is not None and why in got


def test_heal_on_change_waits_on_names_the_prerequisite() -> None:
    assert waits_on(PrerequisiteMissing("x", field="Job_Number", value=12)) == "job:12"
    assert waits_on(PrerequisiteMissing("x", field="customer", value="7")) == "customer:7"
    assert waits_on(PrerequisiteMissing("x", field="Employee_Code", value="E9")) is None


def test_heal_on_change_sweep_sees_a_later_update(
    ctx: Any, world: Any, st_state: Any, enqueued: list[Any]
) -> None:
    """The webhook was dropped: the sweep sees a later ``updated`` and the job heals."""
    with_rules(ctx, cost_centers={"default": ""})
    job_id = world.landmarks["invoice_nc_job"]
    st_state.update("job", job_id, {"serviceLine": "KS"})
    assert sync_job(ctx, job_id, "main").result == "failed"
    later = int(time.time()) + 30
    st_state.now = lambda: later
    st_state.update("job", job_id, {"serviceLine": "SP"})
    run_sweep(ctx, now=later + 1)
    assert ("sync.job", (job_id, "main")) in enqueued
    assert sync_job(ctx, job_id, "main").result == "synced"
    assert ledger_status(ctx, RECORD_TYPE, job_id) is Status.DONE


def test_heal_on_change_a_wake_that_fails_is_alerted(
    ctx: Any, world: Any, st_state: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from clients.errors import TransientError
    from tasks.invoice import sync_invoice

    with_rules(ctx, cost_centers={"default": ""})
    job_id, inv_id = world.landmarks["invoice_nc_job"], world.landmarks["invoice_nc"]
    st_state.update("job", job_id, {"serviceLine": "KS"})
    assert sync_invoice(ctx, inv_id, "main").result == "failed"
    st_state.update("job", job_id, {"serviceLine": "SP"})

    def down(_id: int) -> Any:
        raise TransientError("ServiceTrade unavailable")

    monkeypatch.setattr(ctx.st, "get_invoice", down)
    assert sync_job(ctx, job_id, "main").result == "synced"
    alerts = ctx.ledger.alerts(RecordKey("main", "invoice", str(inv_id)))
    assert any(a["kind"] == "wake" and "stsync retry invoice" in a["message"] for a in alerts)


def test_heal_on_change_a_configuration_fix_reaches_the_failed_job_without_an_event(
    ctx: Any, world: Any, st_state: Any, enqueued: list[Any]
) -> None:
    """The office changes nothing in ServiceTrade: the missing map entry is added to the
    configuration and the workers restart with it. The re-enqueuer (Beat) queues the job once,
    and its sync lands it under the new configuration."""
    from tasks.requeue import run_requeue

    with_rules(ctx, cost_centers={"default": ""})
    job_id = world.landmarks["invoice_nc_job"]
    st_state.update("job", job_id, {"serviceLine": "KS"})
    assert sync_job(ctx, job_id, "main").result == "failed"
    run_requeue(ctx)
    assert ("sync.job", (job_id, "main")) not in enqueued  # same configuration: nothing to do

    with_rules(ctx, cost_centers={"default": "", "by_service_line": {"KS": "100"}})
    assert run_requeue(ctx).config_changed == 1
    assert enqueued.count(("sync.job", (job_id, "main"))) == 1
    run_requeue(ctx)  # read once per change, not every minute
    assert enqueued.count(("sync.job", (job_id, "main"))) == 1
    assert sync_job(ctx, job_id, "main").result == "synced"
    assert ledger_status(ctx, RECORD_TYPE, job_id) is Status.DONE
