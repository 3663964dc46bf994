"""Timecards end to end (F7, F8, F15): real sandbox servers, the real Redis, real Celery workers.

The office approves a timecard in the ServiceTrade simulator; the ``updated`` event reaches the
ingest as a webhook and a worker posts one pre-time row per entry to the Spectrum simulator. The
sweep and the catch-up run as the Beat tasks, inside a worker. Nothing runs eagerly.
"""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest

from clients.servicetrade.assumptions import ASSUMED_ENTITY_TYPES
from mappers.timecard import entry_marker
from sandbox.faults import FaultConfig
from tests.e2e.conftest import Stack, wait_for

pytestmark = pytest.mark.e2e

PRE_TIME = "PR_PRE_TIME_MC"
TIMECARD_ENTITY = ASSUMED_ENTITY_TYPES["timecard"]


# --- helpers ------------------------------------------------------------------------------------
def register_timecard_webhook(stack: Stack) -> None:
    """Subscribe the ingest to ServiceTrade timecard events only (the other records stay quiet)."""
    from worker.context import build_context

    ctx = build_context(stack.settings, ledger=stack.ledger)
    try:
        ctx.st.register_webhook(stack.ingest_url, {TIMECARD_ENTITY: ["created", "updated"]})
    finally:
        ctx.st.close()


def send(stack: Stack, task: str, *args: Any) -> None:
    from worker.celery_app import app

    app.send_task(task, args=args)


def cards(stack: Stack, *, with_id: bool = True) -> list[dict[str, Any]]:
    return [
        c
        for c in stack.sandbox.st_state.all("timecard")
        if bool(c["user"].get("externalIds", {}).get("spectrum")) == with_id
    ]


def card_markers(*cs: dict[str, Any]) -> set[str]:
    return {entry_marker(c["id"], e["id"]) for c in cs for e in c["entries"]}


def markers(stack: Stack) -> list[str]:
    return [str(r["Message"]).strip() for r in stack.sandbox.spectrum_db.rows(PRE_TIME)]


def pre_time_calls(stack: Stack) -> int:
    return int(stack.sandbox.spectrum_injector.calls["PreTimeCard"])


def unapprove_quietly(stack: Stack, *cs: dict[str, Any]) -> None:
    """Put cards back to ``submitted`` before any webhook is registered (no events reach us).

    The simulator picks a change's subscribers when it batches the change (0.2 s later), not
    when it is committed: a webhook registered right after would still receive these changes,
    and under load it often was (a card then synced although "every webhook was dropped").
    Flushing here hands the changes to the emitter while nobody is subscribed."""
    for c in cs:
        stack.sandbox.st_state.update("timecard", c["id"], {"status": "submitted"})
    stack.flush_webhooks()


def unapprove(stack: Stack, *cs: dict[str, Any]) -> None:
    """Put cards back to ``submitted`` (with a webhook registered, the change is announced)."""
    for c in cs:
        stack.sandbox.st_state.update("timecard", c["id"], {"status": "submitted"})


def approve(stack: Stack, *cs: dict[str, Any]) -> None:
    for c in cs:
        stack.sandbox.st_state.update("timecard", c["id"], {"status": "approved"})


def wait_rows(stack: Stack, expected: set[str], timeout: float = 90) -> None:
    try:
        wait_for(lambda: expected <= set(markers(stack)), timeout, 0.3, "pre-time rows")
    except AssertionError as exc:
        missing = sorted(expected - set(markers(stack)))
        raise AssertionError(f"{exc}\nmissing: {missing}\n{stack.worker_logs()}") from None


def settle(stack: Stack) -> None:
    """Let redeliveries, duplicates and retries run out before counting writes (a condition:
    broker empty and no open ledger row, see ``Stack.settle``)."""
    stack.settle()


# --- approve -> pre-time ------------------------------------------------------------------------
def test_approved_card_lands_one_pre_time_row_per_entry(stack: Stack) -> None:
    card = next(c for c in cards(stack) if len(c["entries"]) >= 2)
    unapprove_quietly(stack, card)
    register_timecard_webhook(stack)
    stack.start_worker(concurrency=4)

    approve(stack, card)

    wait_rows(stack, card_markers(card))
    stack.wait_status("timecard", card["id"])
    for e in card["entries"]:
        stack.wait_status("timecard_entry", f"{card['id']}:{e['id']}")
    settle(stack)
    assert sorted(markers(stack)) == sorted(card_markers(card))
    employee = card["user"]["externalIds"]["spectrum"]
    assert {str(r["Employee_Code"]).strip() for r in stack.sandbox.spectrum_db.rows(PRE_TIME)} == {
        employee
    }


def test_duplicate_approval_posts_no_new_rows(stack: Stack) -> None:
    card = next(c for c in cards(stack) if len(c["entries"]) >= 2)
    unapprove_quietly(stack, card)
    register_timecard_webhook(stack)
    stack.start_worker(concurrency=4)
    approve(stack, card)
    wait_rows(stack, card_markers(card))
    stack.wait_status("timecard", card["id"])
    settle(stack)
    sent = pre_time_calls(stack)
    assert sent == len(card["entries"])

    # approved again (un-approve + approve), and the same delivery posted three more times
    unapprove(stack, card)
    approve(stack, card)
    body = {
        "messageId": f"msg-tc-{card['id']}",
        "timestamp": "1",
        "data": [
            {
                "action": "updated",
                "timestamp": 1,
                "entity": {"type": "timecard", "id": card["id"]},
                "changeset": [{"field": "status", "oldValue": "submitted", "newValue": "approved"}],
            }
        ],
    }
    for _ in range(3):
        assert httpx.post(stack.ingest_url, json=body, timeout=10).status_code == 202
    stack.flush_webhooks()
    wait_for(
        lambda: stack.record("timecard", card["id"]).attempts >= 3, 60, 0.3, "the card re-examined"
    )
    settle(stack)

    assert pre_time_calls(stack) == sent
    assert sorted(markers(stack)) == sorted(card_markers(card))


def test_tech_without_spectrum_id_stops_that_card_and_the_others_post(stack: Stack) -> None:
    stopped = cards(stack, with_id=False)[0]
    good = [c for c in cards(stack) if c["workDate"] == stopped["workDate"]]
    assert good
    unapprove_quietly(stack, stopped, *good)
    register_timecard_webhook(stack)
    stack.start_worker(concurrency=4)

    approve(stack, stopped, *good)

    wait_rows(stack, card_markers(*good))
    rec = stack.wait_status("timecard", stopped["id"], ("failed",))
    assert rec.error_kind == "prerequisite"
    assert stopped["user"]["name"] in (rec.last_error or "")
    alerts = stack.ledger.alerts()
    assert [a["source_id"] for a in alerts if a["kind"] == "prerequisite"] == [str(stopped["id"])]
    for c in good:
        stack.wait_status("timecard", c["id"])
    settle(stack)
    assert not card_markers(stopped) & set(markers(stack))
    assert sorted(markers(stack)) == sorted(card_markers(*good))


# --- the sweep (F15) ----------------------------------------------------------------------------
def test_dropped_webhooks_are_found_by_the_sweep(stack: Stack) -> None:
    lost = cards(stack)[:3]
    unapprove_quietly(stack, *lost)
    register_timecard_webhook(stack)
    stack.sandbox.st_injector.configure(FaultConfig(webhook_drop_rate=1.0))
    stack.start_worker(concurrency=4)

    approve(stack, *lost)
    stack.flush_webhooks()
    settle(stack)
    assert markers(stack) == []  # every delivery was dropped: nothing arrived
    assert stack.sandbox.st_app.state.webhooks.counters()["dropped"] >= 1

    send(stack, "schedule.sweep")

    wait_rows(stack, card_markers(*lost))
    for c in lost:
        stack.wait_status("timecard", c["id"])
    settle(stack)
    assert sorted(markers(stack)) == sorted(card_markers(*lost))
    assert stack.ledger.get_watermark("main", "sweep:timecard") is not None


# --- the weekly catch-up (F8) -------------------------------------------------------------------
def test_catch_up_posts_only_the_unsynced_half_and_a_second_run_posts_nothing(
    stack: Stack,
) -> None:
    # the seeded week is in the past: stamp the approvals into the past week as of now
    now = int(time.time())
    postable, stopped = cards(stack), cards(stack, with_id=False)
    for c in (*postable, *stopped):
        stack.sandbox.st_state.update("timecard", c["id"], {"approvedOn": now - 3 * 86_400})
    stack.start_worker(concurrency=4)
    half, rest = postable[::2], postable[1::2]
    for c in half:
        send(stack, "sync.timecard", c["id"], "main")
    wait_rows(stack, card_markers(*half))
    for c in half:
        stack.wait_status("timecard", c["id"])
    settle(stack)
    sent = pre_time_calls(stack)
    assert sent == len(card_markers(*half))

    send(stack, "schedule.timecard_catch_up", "main")

    wait_rows(stack, card_markers(*postable), timeout=180)
    for c in rest:
        stack.wait_status("timecard", c["id"])
    for c in stopped:
        stack.wait_status("timecard", c["id"], ("failed",))
    settle(stack)
    assert pre_time_calls(stack) - sent == len(card_markers(*rest))
    assert sorted(markers(stack)) == sorted(card_markers(*postable))
    wait_for(
        lambda: stack.ledger.audit_count(service="timecard_catch_up") == 1,
        30,
        0.3,
        "the first catch-up summary",
    )

    sent = pre_time_calls(stack)
    attempts = {c["id"]: stack.record("timecard", c["id"]).attempts for c in stopped}
    send(stack, "schedule.timecard_catch_up", "main")
    wait_for(
        lambda: stack.ledger.audit_count(service="timecard_catch_up") == 2,
        60,
        0.3,
        "the second catch-up summary",
    )

    # only the stopped cards (still no Spectrum employee) are queued again, and fail again
    def all_re_examined() -> bool:
        return all(stack.record("timecard", cid).attempts > n for cid, n in attempts.items())

    wait_for(all_re_examined, 60, 0.3, "the stopped cards re-examined")
    settle(stack)
    assert pre_time_calls(stack) == sent
    assert sorted(markers(stack)) == sorted(card_markers(*postable))
