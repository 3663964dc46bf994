"""Approved timecards -> PreTimeCard (F7) and the catch-up (F8) against the in-process sandbox.

Each test calls the plain ``sync_timecard`` / ``run_catch_up`` with the ``ctx`` fixture: both
simulators in process, a real SQLite ledger, the demo configuration (``sandbox/demo.toml``).
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from clients.errors import TransientError
from clients.servicetrade import assumptions
from mappers.timecard import entry_marker
from tasks import timecard as tc_task
from tasks.timecard import (
    CATCH_UP_TASK_NAME,
    ENTRY_RECORD_TYPE,
    RECORD_TYPE,
    TASK_NAME,
    run_catch_up,
    sync_timecard,
    sync_timecard_tally,
    timecard_catch_up,
)
from worker.ledger import RecordKey, Status

PRE_TIME = "PR_PRE_TIME_MC"
NY = ZoneInfo("America/New_York")
WEEK = (datetime(2026, 11, 16, tzinfo=NY), datetime(2026, 11, 23, 2, 0, tzinfo=NY))


# --- helpers ------------------------------------------------------------------------------------
def with_rules(ctx: Any, **sections: dict[str, Any]) -> None:
    """Change the ``main`` connection's rules in place (what a different stsync.toml would do)."""
    conn = ctx.settings.connections["main"]
    rules = conn.rules.model_copy(
        update={
            name: getattr(conn.rules, name).model_copy(update=changes)
            for name, changes in sections.items()
        }
    )
    connections = {**ctx.settings.connections, "main": conn.model_copy(update={"rules": rules})}
    ctx.settings = ctx.settings.model_copy(update={"connections": connections})


def pre_time(db: Any, **where: Any) -> list[dict[str, Any]]:
    return [
        {k: v.strip() if isinstance(v, str) else v for k, v in row.items()}
        for row in db.rows(PRE_TIME, **where)
    ]


def markers(db: Any) -> list[str]:
    return sorted(r["Message"] for r in pre_time(db))


def card_markers(card: dict[str, Any]) -> list[str]:
    return sorted(entry_marker(card["id"], e["id"]) for e in card["entries"])


def cards(st_state: Any, *, with_id: bool = True) -> list[dict[str, Any]]:
    return [
        c
        for c in st_state.all("timecard")
        if bool(c["user"].get("externalIds", {}).get("spectrum")) == with_id
    ]


def card_with(st_state: Any, *kinds: str) -> dict[str, Any]:
    for card in cards(st_state):
        if {e["kind"] for e in card["entries"]} >= set(kinds):
            return card
    raise AssertionError(f"no seeded timecard with entries of kinds {kinds}")


def entry_rec(ctx: Any, card_id: int, entry_id: int) -> Any:
    return ctx.ledger.get(RecordKey("main", ENTRY_RECORD_TYPE, f"{card_id}:{entry_id}"))


def card_rec(ctx: Any, card_id: int) -> Any:
    return ctx.ledger.get(RecordKey("main", RECORD_TYPE, str(card_id)))


def calls(app: Any) -> int:
    return int(app.state.injector.calls["PreTimeCard"])


def alerts(ctx: Any, kind: str) -> list[dict[str, Any]]:
    return [a for a in ctx.ledger.alerts() if a["kind"] == kind]


# --- posting ------------------------------------------------------------------------------------
def test_approved_card_lands_one_row_per_entry(ctx: Any, st_state: Any, spectrum_db: Any) -> None:
    card = card_with(st_state, "labor", "clock")
    outcome = sync_timecard(ctx, card["id"], "main")

    assert outcome.result == "synced", outcome.message
    assert markers(spectrum_db) == card_markers(card)
    employee = card["user"]["externalIds"]["spectrum"]
    for entry in card["entries"]:
        [row] = pre_time(spectrum_db, Message=entry_marker(card["id"], entry["id"]))
        assert row["Employee_Code"] == employee
        assert row["Work_Date"] == datetime.fromtimestamp(card["workDate"], NY).date()
        assert row["Batch_Code"] == "20261122"  # the week ends Sunday 2026-11-22
        assert row["Pay_Type"] == "R"
        if entry["kind"] == "labor":
            assert row["Hours_Employee"] == Decimal(str(entry["hours"]))
            job = st_state.get("job", entry["job"]["id"])
            assert row["Job_Number"] == f"T{job['number']}"
            assert row["Cost_Type"] == "L"
            state = st_state.get("location", job["location"]["id"])["address"]["state"]
            assert row["State"] == state
            assert row["Department_Code"] == {12: "20"}.get(job["assignedOffice"]["id"], "10")
            rate = entry.get("payRate")
            assert row["Pay_Rate"] == (None if rate is None else Decimal(str(rate)))
        if entry["kind"] == "clock":
            minutes = (entry["clockOut"] - entry["clockIn"]) / 60
            assert abs(float(row["Hours_Employee"]) * 60 - minutes) <= 7.5  # nearest 15 min
            assert float(row["Hours_Employee"]) * 4 == int(float(row["Hours_Employee"]) * 4)
        rec = entry_rec(ctx, card["id"], entry["id"])
        assert rec.status is Status.DONE
        assert rec.spectrum_key == entry_marker(card["id"], entry["id"])
    assert card_rec(ctx, card["id"]).status is Status.DONE


def test_jobs_of_labor_entries_are_synced_first(ctx: Any, st_state: Any) -> None:
    card = card_with(st_state, "labor")
    job_ids = {e["job"]["id"] for e in card["entries"] if e["kind"] == "labor"}
    assert all(ctx.ledger.get(RecordKey("main", "job", str(j))) is None for j in job_ids)

    sync_timecard(ctx, card["id"], "main")

    for j in job_ids:
        assert ctx.ledger.get(RecordKey("main", "job", str(j))).status is Status.DONE


@pytest.mark.parametrize(("label", "pay_type"), [("PTO", "V"), ("Holiday", "H"), ("Sick", "S")])
def test_generic_entries_get_the_pay_type_of_their_label(
    ctx: Any, st_state: Any, spectrum_db: Any, label: str, pay_type: str
) -> None:
    card = next(c for c in cards(st_state) if any(e.get("label") == label for e in c["entries"]))
    sync_timecard(ctx, card["id"], "main")
    entry = next(e for e in card["entries"] if e.get("label") == label)
    [row] = pre_time(spectrum_db, Message=entry_marker(card["id"], entry["id"]))
    assert row["Pay_Type"] == pay_type
    assert row["Job_Number"] is None


def test_second_delivery_posts_nothing(
    ctx: Any, st_state: Any, spectrum_db: Any, spectrum_app: Any
) -> None:
    card = card_with(st_state, "labor")
    sync_timecard(ctx, card["id"], "main")
    sent, rows = calls(spectrum_app), markers(spectrum_db)

    outcome, tally = sync_timecard_tally(ctx, card["id"], "main")

    assert outcome.result == "unchanged"
    assert tally.already == [f"{card['id']}:{e['id']}" for e in card["entries"]]
    assert calls(spectrum_app) == sent
    assert markers(spectrum_db) == rows


def test_reapproved_card_posts_only_the_new_entry(
    ctx: Any, st_state: Any, spectrum_db: Any, spectrum_app: Any
) -> None:
    card = card_with(st_state, "labor")
    sync_timecard(ctx, card["id"], "main")
    sent = calls(spectrum_app)
    st_state.update("timecard", card["id"], {"status": "submitted"})
    new = {"id": 990001, "kind": "generic", "label": "Sick", "hours": 2}
    st_state.update(
        "timecard", card["id"], {"status": "approved", "entries": [*card["entries"], new]}
    )

    outcome, tally = sync_timecard_tally(ctx, card["id"], "main")

    assert outcome.result == "synced"
    assert tally.posted == [f"{card['id']}:990001"]
    assert calls(spectrum_app) == sent + 1
    [row] = pre_time(spectrum_db, Message=entry_marker(card["id"], 990001))
    assert row["Pay_Type"] == "S"


def test_new_entry_on_a_job_whose_sync_is_pending_syncs_the_job_first(
    ctx: Any, st_state: Any, spectrum_db: Any
) -> None:
    card = card_with(st_state, "labor")
    sync_timecard(ctx, card["id"], "main")
    labor = next(e for e in card["entries"] if e["kind"] == "labor")
    job_key = RecordKey("main", "job", str(labor["job"]["id"]))
    ctx.ledger.mark(job_key, Status.PENDING, error_kind="transient", reason="test: retrying")
    new = {**labor, "id": 990003, "hours": 1}
    st_state.update("timecard", card["id"], {"entries": [*card["entries"], new]})

    _, tally = sync_timecard_tally(ctx, card["id"], "main")

    # the posted entry on the same job is checked for drift first; that must not stop the new
    # entry from syncing its job
    assert tally.posted == [f"{card['id']}:990003"]
    assert ctx.ledger.get(job_key).status is Status.DONE
    [row] = pre_time(spectrum_db, Message=entry_marker(card["id"], 990003))
    assert row["Job_Number"] == f"T{st_state.get('job', labor['job']['id'])['number']}"


def test_card_that_is_not_approved_is_skipped_until_it_is(
    ctx: Any, st_state: Any, spectrum_db: Any
) -> None:
    card = card_with(st_state, "labor")
    st_state.update("timecard", card["id"], {"status": "submitted"})

    assert sync_timecard(ctx, card["id"], "main").result == "skipped"
    assert card_rec(ctx, card["id"]).status is Status.SKIPPED
    assert markers(spectrum_db) == []

    st_state.update("timecard", card["id"], {"status": "approved"})
    assert sync_timecard(ctx, card["id"], "main").result == "synced"
    assert markers(spectrum_db) == card_markers(card)


# --- employees ----------------------------------------------------------------------------------
def test_tech_without_spectrum_id_stops_that_card_only(
    ctx: Any, st_state: Any, spectrum_db: Any
) -> None:
    stopped = cards(st_state, with_id=False)[0]
    fine = cards(st_state)[0]

    out_stopped = sync_timecard(ctx, stopped["id"], "main")
    out_fine = sync_timecard(ctx, fine["id"], "main")

    assert out_stopped.result == "failed"
    rec = card_rec(ctx, stopped["id"])
    assert rec.status is Status.FAILED
    assert rec.error_kind == "prerequisite"
    assert stopped["user"]["name"] in rec.last_error
    assert "employee_map" in rec.last_error
    [alert] = alerts(ctx, "prerequisite")
    assert alert["source_id"] == str(stopped["id"])
    assert out_fine.result == "synced"
    assert markers(spectrum_db) == card_markers(fine)


def test_employee_code_not_in_spectrum_is_a_prerequisite(
    ctx: Any, st_state: Any, spectrum_db: Any
) -> None:
    stopped = cards(st_state, with_id=False)[0]
    with_rules(ctx, timecards={"employee_map": {str(stopped["user"]["id"]): "E777"}})

    assert sync_timecard(ctx, stopped["id"], "main").result == "failed"
    rec = card_rec(ctx, stopped["id"])
    assert "'E777'" in rec.last_error
    assert "not in Spectrum" in rec.last_error
    assert markers(spectrum_db) == []


# --- entry failures -----------------------------------------------------------------------------
def test_unknown_label_fails_that_entry_and_the_rest_post(
    ctx: Any, st_state: Any, spectrum_db: Any
) -> None:
    card = card_with(st_state, "labor")
    odd = {"id": 990002, "kind": "generic", "label": "Jury duty", "hours": 4}
    st_state.update("timecard", card["id"], {"entries": [*card["entries"], odd]})

    outcome, tally = sync_timecard_tally(ctx, card["id"], "main")

    assert outcome.result == "failed"
    assert tally.failed == [f"{card['id']}:990002"]
    assert markers(spectrum_db) == card_markers(card)
    rec = entry_rec(ctx, card["id"], 990002)
    assert rec.status is Status.FAILED
    assert "label 'Jury duty'" in rec.last_error
    assert f"{card['id']}:990002" in card_rec(ctx, card["id"]).last_error

    # fixed in the config, the next delivery posts exactly the failed entry
    with_rules(
        ctx, timecards={"pay_types": {"PTO": "V", "Holiday": "H", "Sick": "S", "Jury duty": "S"}}
    )
    outcome, tally = sync_timecard_tally(ctx, card["id"], "main")
    assert tally.posted == [f"{card['id']}:990002"]
    assert outcome.result == "synced"
    assert card_rec(ctx, card["id"]).status is Status.DONE


def test_spectrum_refusal_fails_the_entry_and_a_replay_posts_it(
    ctx: Any, st_state: Any, spectrum_db: Any, spectrum_app: Any
) -> None:
    card = card_with(st_state, "labor")
    with_rules(ctx, timecards={"cost_type": "ZZ"})  # not a cost type of the jobs' phases

    outcome, tally = sync_timecard_tally(ctx, card["id"], "main")

    labor = [f"{card['id']}:{e['id']}" for e in card["entries"] if e["kind"] == "labor"]
    assert outcome.result == "failed"
    assert set(labor) <= set(tally.failed)
    rec = entry_rec(ctx, card["id"], int(labor[0].split(":")[1]))
    assert "Phase_Code" in rec.last_error
    assert "sent_at" not in rec.state  # refused: nothing landed, no lookup needed next time

    with_rules(ctx, timecards={"cost_type": "L"})
    outcome, tally = sync_timecard_tally(ctx, card["id"], "main")
    assert set(labor) <= set(tally.posted)
    assert markers(spectrum_db) == card_markers(card)


# --- ambiguous writes (no unique key in PreTimeCard) --------------------------------------------
def later(monkeypatch: pytest.MonkeyPatch, seconds: float) -> None:
    import time

    start = time.time()
    monkeypatch.setattr(tc_task, "_now", lambda: start + seconds)


def generic_card(st_state: Any) -> dict[str, Any]:
    return next(
        c
        for c in cards(st_state)
        if len(c["entries"]) == 1 and c["entries"][0]["kind"] == "generic"
    )


def test_ghost_write_is_found_by_marker_and_adopted(
    ctx: Any,
    st_state: Any,
    spectrum_db: Any,
    spectrum_app: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    card = generic_card(st_state)
    [entry] = card["entries"]
    spectrum_app.state.injector.script("PreTimeCard", ["ghost"])

    with pytest.raises(TransientError, match="will be retried"):
        sync_timecard(ctx, card["id"], "main")
    rec = entry_rec(ctx, card["id"], entry["id"])
    assert rec.status is Status.PENDING
    assert "sent_at" in rec.state
    assert len(pre_time(spectrum_db)) == 1  # it landed; the answer was lost

    # too soon: the first send might still be landing, so no lookup and no resend yet
    with pytest.raises(TransientError, match="only once it could no longer land"):
        sync_timecard(ctx, card["id"], "main")

    later(monkeypatch, 3600)
    outcome, tally = sync_timecard_tally(ctx, card["id"], "main")

    assert outcome.result == "synced"
    assert tally.adopted == [f"{card['id']}:{entry['id']}"]
    assert len(pre_time(spectrum_db)) == 1
    assert calls(spectrum_app) == 1
    assert entry_rec(ctx, card["id"], entry["id"]).status is Status.DONE


def test_lost_write_is_sent_again_once(
    ctx: Any,
    st_state: Any,
    spectrum_db: Any,
    spectrum_app: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    card = generic_card(st_state)
    spectrum_app.state.injector.script("PreTimeCard", ["error"])

    with pytest.raises(TransientError):
        sync_timecard(ctx, card["id"], "main")
    assert pre_time(spectrum_db) == []

    later(monkeypatch, 3600)
    outcome, tally = sync_timecard_tally(ctx, card["id"], "main")

    assert tally.posted == [f"{card['id']}:{card['entries'][0]['id']}"]
    assert markers(spectrum_db) == card_markers(card)
    assert calls(spectrum_app) == 2
    assert outcome.ok


def test_infolink_down_after_ambiguous_write_leaves_the_entry_unknown(
    ctx: Any,
    st_state: Any,
    spectrum_db: Any,
    spectrum_app: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    card = generic_card(st_state)
    [entry] = card["entries"]
    spectrum_app.state.injector.script("PreTimeCard", ["ghost"])
    with pytest.raises(TransientError):
        sync_timecard(ctx, card["id"], "main")
    later(monkeypatch, 3600)
    reader = ctx.infolink_for("main")

    def down(marker: str) -> list[dict[str, Any]]:
        raise TransientError("Info-Link unreachable: connection refused")

    monkeypatch.setattr(reader, "find_pre_time", down)
    outcome, tally = sync_timecard_tally(ctx, card["id"], "main")

    assert tally.unknown == [f"{card['id']}:{entry['id']}"]
    assert outcome.result == "failed"
    rec = entry_rec(ctx, card["id"], entry["id"])
    assert rec.status is Status.UNKNOWN
    assert entry_marker(card["id"], entry["id"]) in rec.last_error
    assert alerts(ctx, "unknown")

    # not retried automatically, even with Info-Link back
    monkeypatch.undo()
    later(monkeypatch, 7200)
    sent = calls(spectrum_app)
    _, tally = sync_timecard_tally(ctx, card["id"], "main")
    assert tally.unknown == [f"{card['id']}:{entry['id']}"]
    assert calls(spectrum_app) == sent

    # a person asks for a recheck: the marker is there, so it is adopted, not sent again
    outcome = sync_timecard(ctx, card["id"], "main", recheck_unknown=True)
    assert outcome.result == "synced"
    assert entry_rec(ctx, card["id"], entry["id"]).status is Status.DONE
    assert len(pre_time(spectrum_db)) == 1
    assert calls(spectrum_app) == sent


# --- drift --------------------------------------------------------------------------------------
def test_edit_after_posting_is_drift_not_a_second_post(
    ctx: Any, st_state: Any, spectrum_db: Any, spectrum_app: Any
) -> None:
    card = card_with(st_state, "labor")
    sync_timecard(ctx, card["id"], "main")
    sent = calls(spectrum_app)
    entries = [dict(e) for e in card["entries"]]
    edited = next(e for e in entries if e["kind"] == "labor")
    edited["hours"] = float(edited["hours"]) + 1
    st_state.update("timecard", card["id"], {"entries": entries})

    outcome, tally = sync_timecard_tally(ctx, card["id"], "main")

    assert calls(spectrum_app) == sent
    assert tally.drift == [f"{card['id']}:{edited['id']}"]
    [alert] = alerts(ctx, "drift")
    assert alert["source_id"] == f"{card['id']}:{edited['id']}"
    assert f"now {Decimal(str(edited['hours'])).normalize()} h" in alert["message"]
    assert outcome.result == "unchanged"
    # the same edit seen again is not a new alert
    sync_timecard(ctx, card["id"], "main")
    assert len(alerts(ctx, "drift")) == 1


def test_entry_removed_after_posting_is_drift(ctx: Any, st_state: Any) -> None:
    card = next(c for c in cards(st_state) if len(c["entries"]) >= 2)
    sync_timecard(ctx, card["id"], "main")
    st_state.update("timecard", card["id"], {"entries": card["entries"][1:]})

    _, tally = sync_timecard_tally(ctx, card["id"], "main")

    gone = f"{card['id']}:{card['entries'][0]['id']}"
    assert tally.drift == [gone]
    assert "no longer on the approved timecard" in alerts(ctx, "drift")[0]["message"]


def test_unapproving_a_posted_card_is_drift(ctx: Any, st_state: Any) -> None:
    card = card_with(st_state, "labor")
    sync_timecard(ctx, card["id"], "main")
    st_state.update("timecard", card["id"], {"status": "rejected"})

    assert sync_timecard(ctx, card["id"], "main").result == "skipped"
    [alert] = alerts(ctx, "drift")
    assert "is now 'rejected'" in alert["message"]


# --- catch-up (F8) ------------------------------------------------------------------------------
def test_catch_up_posts_only_the_missing_half_and_then_nothing(
    ctx: Any,
    st_state: Any,
    spectrum_db: Any,
    spectrum_app: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(assumptions.PAGE_LIMITS, "timecard", 7)  # several pages
    postable = cards(st_state)
    for card in postable[::2]:
        sync_timecard(ctx, card["id"], "main")
    synced_entries = sum(len(c["entries"]) for c in postable[::2])
    missing_entries = sum(len(c["entries"]) for c in postable[1::2])
    sent = calls(spectrum_app)
    queries: list[int] = []
    real_get_many = ctx.ledger.get_many

    def counting_get_many(*args: Any, **kwargs: Any) -> Any:
        queries.append(1)
        return real_get_many(*args, **kwargs)

    monkeypatch.setattr(ctx.ledger, "get_many", counting_get_many)
    seen: list[tuple[int, int]] = []
    summary = run_catch_up(
        ctx, *WEEK, lambda done, total: seen.append((done, total)), connection="main"
    )

    everything = st_state.all("timecard")
    assert summary.cards == len(everything)
    assert summary.pages == -(-len(everything) // 7)
    assert summary.found == sum(len(c["entries"]) for c in everything)
    assert summary.already_synced == synced_entries
    assert summary.posted == missing_entries
    assert calls(spectrum_app) - sent == missing_entries
    stopped_entries = sum(len(c["entries"]) for c in cards(st_state, with_id=False))
    assert summary.failed == stopped_entries
    assert seen[-1] == (len(everything), len(everything))
    # one ledger query per page for the skip decision, plus one per card that was synced (cards
    # without a Spectrum employee stop before their entries are looked up)
    assert len(queries) == summary.pages + len(postable[1::2])
    assert sorted(markers(spectrum_db)) == sorted(m for c in postable for m in card_markers(c))
    assert ctx.ledger.audit_count(service="timecard_catch_up") == 1  # the summary is written

    sent = calls(spectrum_app)
    again = run_catch_up(ctx, *WEEK, connection="main")
    assert again.posted == 0
    assert calls(spectrum_app) == sent
    assert again.already_synced == synced_entries + missing_entries


def test_catch_up_window_excludes_cards_approved_outside_it(ctx: Any, st_state: Any) -> None:
    summary = run_catch_up(
        ctx, datetime(2026, 12, 1, tzinfo=NY), datetime(2026, 12, 8, tzinfo=NY), connection="main"
    )
    assert (summary.cards, summary.posted) == (0, 0)


def test_scheduled_catch_up_queues_only_cards_with_work(
    ctx: Any,
    st_state: Any,
    enqueued: list[tuple[str, tuple[Any, ...]]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    postable = cards(st_state)
    for card in postable[1:]:
        sync_timecard(ctx, card["id"], "main")
    monkeypatch.setattr("tasks.timecard.get_context", lambda: ctx)
    monkeypatch.setattr("tasks.timecard.datetime", _FixedNow)

    result = timecard_catch_up.run("main")

    queued = {args[0] for name, args in enqueued if name == TASK_NAME}
    expected = {postable[0]["id"], *(c["id"] for c in cards(st_state, with_id=False))}
    assert queued == expected
    assert result["enqueued"] == len(expected)
    assert result["posted"] == 0
    assert CATCH_UP_TASK_NAME == "schedule.timecard_catch_up"


class _FixedNow(datetime):
    """``datetime.now`` at the scheduled time: Monday 2026-11-23 02:00 in New York."""

    @classmethod
    def now(cls, tz: Any = None) -> Any:
        return datetime(2026, 11, 23, 2, 0, tzinfo=NY).astimezone(tz)
