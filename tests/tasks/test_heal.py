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
    from datetime import timedelta

    from tasks.requeue import config_grace_s, run_requeue

    with_rules(ctx, cost_centers={"default": ""})
    job_id = world.landmarks["invoice_nc_job"]
    st_state.update("job", job_id, {"serviceLine": "KS"})
    assert sync_job(ctx, job_id, "main").result == "failed"
    run_requeue(ctx)
    assert ("sync.job", (job_id, "main")) not in enqueued  # same configuration: nothing to do

    with_rules(ctx, cost_centers={"default": "", "by_service_line": {"KS": "100"}})
    assert run_requeue(ctx).config_changed == 1
    assert enqueued.count(("sync.job", (job_id, "main"))) == 1
    # read once per change, not every minute: past the grace for workers that have not reloaded
    # their file yet (see the next test), the rows are not read again
    later = datetime.now(UTC) + timedelta(seconds=config_grace_s(ctx) + 60)
    run_requeue(ctx, now=later)
    assert enqueued.count(("sync.job", (job_id, "main"))) == 1
    assert sync_job(ctx, job_id, "main").result == "synced"
    assert ledger_status(ctx, RECORD_TYPE, job_id) is Status.DONE


# --- a ServiceTrade user fixed (salesperson / technician): issue 15, F21 ------------------------
def _user_key(ctx: Any, record_type: str, source_id: int) -> Any:
    return ctx.ledger.get(RecordKey("main", record_type, str(source_id)))


def _add_spectrum_rows(spectrum_db: Any, table: Any, *rows: dict[str, Any]) -> None:
    spectrum_db.load({table.name: [{"Company_Code": "ABC", **r} for r in rows]})


def test_heal_on_change_waits_on_a_user_when_the_error_names_one() -> None:
    exc = PrerequisiteMissing("x", field="Employee_Code", value="E9", waits_on="user:5")
    assert waits_on(exc) == "user:5"


def test_heal_on_change_salesperson_fixed_in_servicetrade_heals_its_invoice(
    ctx: Any, world: Any, st_state: Any, spectrum_db: Any, enqueued: list[Any]
) -> None:
    from clients.spectrum import infolink_schema as il
    from tasks.heal import user_changed
    from tasks.invoice import sync_invoice
    from tasks.state import State

    inv_id = world.landmarks["invoice_salesperson_without_id"]
    user_id = world.landmarks["salesperson_without_spectrum_id"]
    failed = sync_invoice(ctx, inv_id, "main")
    assert failed.result == "failed" and "no Spectrum salesperson code" in failed.message
    rec = _user_key(ctx, "invoice", inv_id)
    assert State.load(rec.state).waits_on == f"user:{user_id}"
    assert st_state.get("invoice", inv_id)["status"] == "failed"
    alerts_before = len(ctx.ledger.alerts(rec.key))

    # an unrelated edit of the user: nothing is woken, the invoice is not approved again
    st_state.update("user", user_id, {"email": "chris.d@acme-fire.example"})
    assert user_changed(ctx, user_id, "main") == 0
    assert st_state.get("invoice", inv_id)["status"] == "failed"
    assert ("sync.invoice", (inv_id, "main")) not in enqueued

    # the office gives the salesperson a Spectrum code: the user's webhook heals the invoice
    _add_spectrum_rows(
        spectrum_db, il.salespersons, {"Salesperson_Code": "S04", "Name": "Chris Doyle"}
    )
    st_state.update("user", user_id, {"externalIds": {"spectrum": "S04"}})
    assert user_changed(ctx, user_id, "main") == 1
    assert ("sync.invoice", (inv_id, "main")) in enqueued
    assert st_state.get("invoice", inv_id)["status"] == "pending_accounting"
    healed = sync_invoice(ctx, inv_id, "main")
    assert healed.result == "synced", healed.message
    assert st_state.get("invoice", inv_id)["status"] == "processed"
    assert len(ctx.ledger.alerts(rec.key)) == alerts_before
    # a repeated webhook of the user finds nothing waiting: no read, nothing queued
    enqueued.clear()
    assert user_changed(ctx, user_id, "main") == 0
    assert enqueued == []


def test_heal_on_change_technician_fixed_heals_the_timecard_once(
    ctx: Any, world: Any, st_state: Any, spectrum_db: Any, enqueued: list[Any]
) -> None:
    from clients.spectrum import infolink_schema as il
    from tasks.heal import user_changed
    from tasks.state import State
    from tasks.timecard import sync_timecard

    user_id = world.landmarks["tech_without_spectrum_id"]
    card = next(c for c in st_state.all("timecard") if c["user"]["id"] == user_id)
    failed = sync_timecard(ctx, card["id"], "main")
    assert failed.result == "failed" and "no Spectrum employee code" in failed.message
    rec = _user_key(ctx, "timecard", card["id"])
    assert State.load(rec.state).waits_on == f"user:{user_id}"

    # the code is set in ServiceTrade before the employee exists in Spectrum: woken, and it
    # fails again with the fresh reason (one alert per reason, no loop: nothing wakes it again)
    st_state.update("user", user_id, {"externalIds": {"spectrum": "E900"}})
    assert user_changed(ctx, user_id, "main") == 1
    again = sync_timecard(ctx, card["id"], "main")
    assert again.result == "failed" and "'E900'" in again.message
    rec = _user_key(ctx, "timecard", card["id"])
    assert State.load(rec.state).waits_on == f"user:{user_id}"
    alerts = len(ctx.ledger.alerts(rec.key))
    assert sync_timecard(ctx, card["id"], "main").result == "failed"
    assert len(ctx.ledger.alerts(rec.key)) == alerts

    # the employee is added in Spectrum and the user touched again: the card lands
    _add_spectrum_rows(
        spectrum_db,
        il.employees,
        {
            "Employee_Code": "E900",
            "Employee_Name": "Tech, New",
            "First_Name": "New",
            "Last_Name": "Tech",
            "Employment_Status": "A",
            "Cost_Center": "100",
        },
    )
    st_state.update("user", user_id, {"externalIds": {"spectrum": "E900"}, "email": "n@x.example"})
    enqueued.clear()
    assert user_changed(ctx, user_id, "main") == 1
    assert enqueued == [("sync.timecard", (card["id"], "main"))]
    assert sync_timecard(ctx, card["id"], "main").result == "synced"


def test_heal_on_change_sweep_wakes_a_user_whose_webhook_was_lost(
    ctx: Any, world: Any, st_state: Any, enqueued: list[Any]
) -> None:
    from tasks.invoice import sync_invoice

    inv_id = world.landmarks["invoice_salesperson_without_id"]
    user_id = world.landmarks["salesperson_without_spectrum_id"]
    assert sync_invoice(ctx, inv_id, "main").result == "failed"
    now = int(time.time())
    run_sweep(ctx, now=now + 1)
    assert ("sync.user", (user_id, "main")) not in enqueued  # not changed since the failure
    later = now + 30
    st_state.now = lambda: later
    st_state.update("user", user_id, {"externalIds": {"spectrum": "S01"}})
    run_sweep(ctx, now=later + 1)
    assert enqueued.count(("sync.user", (user_id, "main"))) == 1
    run_sweep(ctx, now=later + 2)  # this version was queued once: not again every sweep
    assert enqueued.count(("sync.user", (user_id, "main"))) == 1


def test_heal_on_change_a_worker_not_yet_reloaded_cannot_strand_the_job(
    ctx: Any, world: Any, st_state: Any, enqueued: list[Any]
) -> None:
    """Workers reload their file at most every ``config_reload_every_s``: one that has not yet
    may take the job the re-enqueuer queued for the new configuration and find nothing to do
    under the old one. For a grace period after the change the job is queued at every run."""
    from datetime import timedelta

    from tasks.requeue import config_grace_s, run_requeue

    mapped = dict(ctx.settings.connections["main"].rules.cost_centers.by_service_line)
    old = {"default": "", "by_service_line": mapped}
    new = {"default": "", "by_service_line": {**mapped, "KS": "100"}}
    with_rules(ctx, cost_centers=old)
    job_id = world.landmarks["invoice_nc_job"]
    st_state.update("job", job_id, {"serviceLine": "KS"})
    assert sync_job(ctx, job_id, "main").result == "failed"
    with_rules(ctx, cost_centers=new)
    assert run_requeue(ctx).config_changed == 1
    # a worker still on the old file takes it: nothing changed for it, a no-op
    settings = ctx.settings
    with_rules(ctx, cost_centers=old)
    assert sync_job(ctx, job_id, "main").result == "failed"
    ctx.settings = settings
    assert run_requeue(ctx).config_changed == 1
    assert enqueued.count(("sync.job", (job_id, "main"))) == 2
    # a reloaded worker lands it; past the grace nothing is read again
    assert sync_job(ctx, job_id, "main").result == "synced"
    later = datetime.now(UTC) + timedelta(seconds=config_grace_s(ctx) + 60)
    assert run_requeue(ctx, now=later).config_changed == 0


# --- a configuration fix heals invoices and timecards (F21) -------------------------------------
def _past_grace(ctx: Any) -> datetime:
    from datetime import timedelta

    from tasks.requeue import config_grace_s

    return datetime.now(UTC) + timedelta(seconds=config_grace_s(ctx) + 60)


def _invoice_comments(st_state: Any, invoice_id: int) -> list[str]:
    return [
        c["content"]
        for c in st_state.all("comment")
        if c.get("entityType") == 6 and c.get("entityId") == invoice_id
    ]


def _status_writes(ctx: Any, monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, str]]:
    """Every ServiceTrade invoice status stsync writes from here on."""
    writes: list[tuple[int, str]] = []
    real = ctx.st.set_invoice_status

    def spy(invoice_id: int, status: str, **kw: Any) -> Any:
        writes.append((invoice_id, status))
        return real(invoice_id, status, **kw)

    monkeypatch.setattr(ctx.st, "set_invoice_status", spy)
    return writes


def test_heal_on_change_a_salesperson_map_entry_posts_the_failed_invoice(
    ctx: Any, world: Any, st_state: Any, enqueued: list[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Nothing changes in ServiceTrade: the salesperson is mapped in the configuration. The
    re-enqueuer queues the failed invoice once; its sync approves it again and posts it, with
    no second comment or alert."""
    from tasks.invoice import sync_invoice
    from tasks.requeue import run_requeue

    inv_id = world.landmarks["invoice_salesperson_without_id"]
    user_id = world.landmarks["salesperson_without_spectrum_id"]
    assert sync_invoice(ctx, inv_id, "main").result == "failed"
    key = RecordKey("main", "invoice", str(inv_id))
    alerts = len(ctx.ledger.alerts(key))
    assert st_state.get("invoice", inv_id)["status"] == "failed"
    assert len(_invoice_comments(st_state, inv_id)) == 1
    run_requeue(ctx)
    assert ("sync.invoice", (inv_id, "main")) not in enqueued  # same configuration
    # a worker still on that configuration takes a stray message: nothing is approved again
    writes = _status_writes(ctx, monkeypatch)
    assert sync_invoice(ctx, inv_id, "main").result == "skipped"
    assert writes == []

    with_rules(ctx, invoices={"salesperson_map": {str(user_id): "S03"}})
    assert run_requeue(ctx).config_changed == 1
    assert enqueued.count(("sync.invoice", (inv_id, "main"))) == 1
    healed = sync_invoice(ctx, inv_id, "main")
    assert healed.result == "synced", healed.message
    assert writes == [(inv_id, "pending_accounting"), (inv_id, "processed")]
    assert ledger_status(ctx, "invoice", inv_id) is Status.DONE
    assert len(_invoice_comments(st_state, inv_id)) == 1
    assert len(ctx.ledger.alerts(key)) == alerts
    assert run_requeue(ctx, now=_past_grace(ctx)).config_changed == 0
    assert enqueued.count(("sync.invoice", (inv_id, "main"))) == 1


def test_heal_on_change_an_employee_map_entry_posts_the_failed_timecard(
    ctx: Any, world: Any, st_state: Any, enqueued: list[Any]
) -> None:
    from tasks.requeue import run_requeue
    from tasks.timecard import sync_timecard

    user_id = world.landmarks["tech_without_spectrum_id"]
    card = next(c for c in st_state.all("timecard") if c["user"]["id"] == user_id)
    failed = sync_timecard(ctx, card["id"], "main")
    assert failed.result == "failed" and "no Spectrum employee code" in failed.message
    key = RecordKey("main", "timecard", str(card["id"]))
    alerts = len(ctx.ledger.alerts(key))
    run_requeue(ctx)
    assert ("sync.timecard", (card["id"], "main")) not in enqueued

    with_rules(ctx, timecards={"employee_map": {str(user_id): "E001"}})
    assert run_requeue(ctx).config_changed == 1
    assert enqueued.count(("sync.timecard", (card["id"], "main"))) == 1
    healed = sync_timecard(ctx, card["id"], "main")
    assert healed.result == "synced", healed.message
    assert ledger_status(ctx, "timecard", card["id"]) is Status.DONE
    assert len(ctx.ledger.alerts(key)) == alerts
    assert run_requeue(ctx, now=_past_grace(ctx)).config_changed == 0


def test_heal_on_change_an_unrelated_configuration_change_reruns_nothing_twice(
    ctx: Any, world: Any, st_state: Any, enqueued: list[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A change outside a record's sections queues nothing; a change inside them that does not
    cure it re-runs it once: no second comment, status write or alert, and no loop."""
    from tasks.invoice import sync_invoice
    from tasks.requeue import run_requeue
    from tasks.timecard import sync_timecard

    inv_id = world.landmarks["invoice_salesperson_without_id"]
    tech_id = world.landmarks["tech_without_spectrum_id"]
    card = next(c for c in st_state.all("timecard") if c["user"]["id"] == tech_id)
    assert sync_invoice(ctx, inv_id, "main").result == "failed"
    assert sync_timecard(ctx, card["id"], "main").result == "failed"
    inv_key = RecordKey("main", "invoice", str(inv_id))
    card_key = RecordKey("main", "timecard", str(card["id"]))
    alerts = (len(ctx.ledger.alerts(inv_key)), len(ctx.ledger.alerts(card_key)))
    writes = _status_writes(ctx, monkeypatch)

    # outside both records' sections: nothing queued
    with_rules(ctx, purchase_orders={"page_size": 250})
    assert run_requeue(ctx).config_changed == 0
    # the invoice's sections, for another salesperson: the invoice once, not the timecard
    with_rules(ctx, invoices={"salesperson_map": {"999999": "S03"}})
    assert run_requeue(ctx).config_changed == 1
    assert ("sync.timecard", (card["id"], "main")) not in enqueued
    again = sync_invoice(ctx, inv_id, "main")
    assert again.result == "failed" and "no Spectrum salesperson code" in again.message
    # the timecard's sections, for another technician: the timecard once
    with_rules(ctx, timecards={"employee_map": {"999999": "E001"}})
    assert run_requeue(ctx).config_changed == 1
    assert sync_timecard(ctx, card["id"], "main").result == "failed"

    # each re-ran once, under the configuration it now carries: not queued again
    assert run_requeue(ctx).config_changed == 0
    assert run_requeue(ctx, now=_past_grace(ctx)).config_changed == 0
    assert enqueued.count(("sync.invoice", (inv_id, "main"))) == 1
    assert enqueued.count(("sync.timecard", (card["id"], "main"))) == 1
    assert writes == []
    assert len(_invoice_comments(st_state, inv_id)) == 1
    assert st_state.get("invoice", inv_id)["status"] == "failed"
    assert (len(ctx.ledger.alerts(inv_key)), len(ctx.ledger.alerts(card_key))) == alerts


def test_heal_on_change_an_invoice_the_office_moved_on_is_not_approved_again(
    ctx: Any, world: Any, st_state: Any, spectrum_app: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tasks.invoice import sync_invoice
    from tasks.requeue import run_requeue

    inv_id = world.landmarks["invoice_salesperson_without_id"]
    user_id = world.landmarks["salesperson_without_spectrum_id"]
    assert sync_invoice(ctx, inv_id, "main").result == "failed"
    st_state.update("invoice", inv_id, {"status": "ok"})  # the office takes it back
    writes = _status_writes(ctx, monkeypatch)
    calls = int(spectrum_app.state.injector.calls.get("ARMultiLineInvoice", 0))

    with_rules(ctx, invoices={"salesperson_map": {str(user_id): "S03"}})
    assert run_requeue(ctx).config_changed == 1
    assert sync_invoice(ctx, inv_id, "main").result == "skipped"
    assert st_state.get("invoice", inv_id)["status"] == "ok"
    assert writes == []
    assert int(spectrum_app.state.injector.calls.get("ARMultiLineInvoice", 0)) == calls
    assert ledger_status(ctx, "invoice", inv_id) is Status.FAILED


def test_heal_on_change_a_processing_window_opened_posts_the_failed_entries_once(
    ctx: Any, world: Any, st_state: Any, enqueued: list[Any]
) -> None:
    """Entries failed outside the payroll window: the window is opened in the configuration.
    The card and its failed entries carry the old fingerprint: one message for the card."""
    from datetime import date

    from mappers.rules import DateWindow
    from tasks.requeue import run_requeue
    from tasks.timecard import sync_timecard

    tech_id = world.landmarks["tech_without_spectrum_id"]
    card = next(
        c
        for c in st_state.all("timecard")
        if c["status"] == "approved" and c["user"]["id"] != tech_id
    )
    with_rules(ctx, timecards={"processing_window": DateWindow(end=date(2000, 1, 1))})
    failed = sync_timecard(ctx, card["id"], "main")
    assert failed.result == "failed"
    entries = [
        RecordKey("main", "timecard_entry", f"{card['id']}:{e['id']}") for e in card["entries"]
    ]
    assert any("processing window" in (ctx.ledger.get(k).last_error or "") for k in entries)
    with_rules(ctx, timecards={"processing_window": DateWindow()})
    assert run_requeue(ctx).config_changed == 1
    assert enqueued.count(("sync.timecard", (card["id"], "main"))) == 1
    assert sync_timecard(ctx, card["id"], "main").result == "synced"
    assert all(ctx.ledger.get(k).status in (Status.DONE, Status.SKIPPED) for k in entries)
    assert run_requeue(ctx, now=_past_grace(ctx)).config_changed == 0


def test_heal_on_change_switching_to_rebill_rebills_the_invoice_the_alert_policy_failed(
    ctx: Any, world: Any, st_state: Any, spectrum_db: Any
) -> None:
    from decimal import Decimal

    from tasks.invoice import sync_invoice
    from tasks.requeue import run_requeue

    from .test_invoice_revisions import documents, edit, owed_in_spectrum, st_total

    with_rules(ctx, invoices={"on_change_after_posting": "alert"})
    inv_id = world.landmarks["invoice_nc"]
    assert sync_invoice(ctx, inv_id, "main").ok
    edit(st_state, inv_id)
    st_state.update("invoice", inv_id, {"status": "pending_accounting"})
    assert sync_invoice(ctx, inv_id, "main").result == "failed"
    assert st_state.get("invoice", inv_id)["status"] == "failed"

    with_rules(ctx, invoices={"on_change_after_posting": "rebill"})
    assert run_requeue(ctx).config_changed == 1
    out = sync_invoice(ctx, inv_id, "main")
    assert out.result == "synced", out.message
    assert documents(ctx, inv_id) == sorted([f"ST{inv_id}", f"SV{inv_id}", f"ST{inv_id}-1"])
    assert owed_in_spectrum(ctx, spectrum_db, inv_id) == st_total(st_state, inv_id) != Decimal(0)
    assert st_state.get("invoice", inv_id)["status"] == "processed"


def test_heal_on_change_a_transient_error_before_the_approval_is_resumed_not_stranded(
    ctx: Any, world: Any, st_state: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The attempt after the configuration change stops on a transient error while ServiceTrade
    still says ``failed``: its retry goes on with the fix instead of finding nothing to post."""
    import tasks.invoice as invoice_task
    from clients.errors import TransientError
    from tasks.invoice import sync_invoice

    inv_id = world.landmarks["invoice_salesperson_without_id"]
    user_id = world.landmarks["salesperson_without_spectrum_id"]
    assert sync_invoice(ctx, inv_id, "main").result == "failed"
    with_rules(ctx, invoices={"salesperson_map": {str(user_id): "S03"}})
    real = invoice_task._desired
    calls: list[int] = []

    def flaky(*args: Any, **kw: Any) -> Any:
        calls.append(1)
        if len(calls) == 1:
            raise TransientError("Spectrum Info-Link unavailable")
        return real(*args, **kw)

    monkeypatch.setattr(invoice_task, "_desired", flaky)
    with pytest.raises(TransientError):
        sync_invoice(ctx, inv_id, "main")
    assert ledger_status(ctx, "invoice", inv_id) is Status.PENDING
    assert st_state.get("invoice", inv_id)["status"] == "failed"
    out = sync_invoice(ctx, inv_id, "main")  # Celery's retry (or the re-enqueuer's)
    assert out.result == "synced", out.message
    assert st_state.get("invoice", inv_id)["status"] == "processed"
