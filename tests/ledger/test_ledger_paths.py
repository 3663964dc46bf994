"""The ledger's one-statement paths (P2) leave what the statements they replaced left, on SQLite
and PostgreSQL: a new row's claim, a landed part's done row, the progress and done updates run
on the driver."""

from __future__ import annotations

from datetime import timedelta

import pytest
import sqlalchemy.exc

from worker.ledger import Ledger, Record, RecordKey, Status, utcnow

INVOICE = RecordKey("main", "invoice", "7")
PART = RecordKey("main", "ar_document", "7:invoice")
STATE = {"steps": ["spectrum"], "planned": {"ST7": {"amount": "1.50", "kind": "invoice"}}}


def _same_but_times(a: Record, b: Record) -> None:
    """``a`` and ``b`` agree on every column but the row's identity and its timestamps."""

    def columns(r: Record) -> tuple[object, ...]:
        return (
            r.key.record_type,
            r.status,
            r.spectrum_key,
            r.payload_digest,
            r.step,
            r.state,
            r.attempts,
            r.crashes,
            r.error_kind,
            r.last_error,
            r.lease_owner,
            r.lease_until is None,
            r.done_at,
            r.next_attempt_at is None,
            r.retry_since,
            r.retry_rounds,
        )

    assert columns(a) == columns(b)


def test_a_new_rows_claim_leaves_what_ensure_then_claim_left(led: Ledger) -> None:
    other = RecordKey("main", "invoice", "8")
    led.ensure(other)  # an existing pending row: read, then taken over
    before = utcnow()
    new = led.claim(INVOICE, lease_s=30, owner="hostA:1")
    old = led.claim(other, lease_s=30, owner="hostA:1")
    assert new.held and old.held and not new.recovered
    _same_but_times(new.record, old.record)
    rec = new.record
    assert rec.status is Status.IN_FLIGHT and rec.attempts == 1 and rec.crashes == 0
    assert rec.lease_owner == "hostA:1" and rec.lease_until is not None
    assert rec.lease_until >= before + timedelta(seconds=30)
    # the pending insert's due time stays, as the take-over never touched it
    assert rec.next_attempt_at is not None and rec.next_attempt_at > rec.lease_until
    assert rec.created_at == rec.updated_at
    assert led.get(INVOICE) == rec
    # "previous": the row as the pending insert left it
    assert new.previous is not None and old.previous is not None
    _same_but_times(new.previous, old.previous)
    assert new.previous.status is Status.PENDING and new.previous.attempts == 0
    assert new.previous.lease_owner is None and new.previous.lease_until is None
    assert new.previous.next_attempt_at == rec.next_attempt_at
    # a second claimer finds it in flight (the insert wrote nothing)
    again = led.claim(INVOICE, lease_s=30, owner="hostB:2")
    assert not again.held and again.record == rec


def test_a_landed_part_is_done_whether_its_row_existed_or_not(led: Ledger) -> None:
    assert led.claim(INVOICE, lease_s=30).held
    holder = led.record_landed(
        PART,
        spectrum_key="ST7",
        payload_digest="d1",
        state={"kind": "invoice"},
        holder=INVOICE,
        holder_state=STATE,
    )
    assert holder.state == STATE and holder.status is Status.IN_FLIGHT
    new = led.get(PART)
    assert new is not None
    assert (new.status, new.spectrum_key, new.payload_digest, new.step) == (
        Status.DONE,
        "ST7",
        "d1",
        "done",
    )
    assert new.state == {"kind": "invoice"} and new.attempts == 0 and new.crashes == 0
    assert new.next_attempt_at is None and new.lease_owner is None and new.done_at is not None
    assert new.created_at == new.updated_at == new.done_at
    # an existing row (failed, with an error, attempts and a due time) gets the done columns
    # and keeps its identity, creation time and attempts
    other = RecordKey("main", "ar_document", "7:credit_memo")
    assert led.claim(other, lease_s=30).held
    led.mark(other, Status.PENDING, error_kind="transient", reason="503", transient=True)
    was = led.get(other)
    assert was is not None and was.retry_since is not None
    led.record_landed(
        other,
        spectrum_key="SC7",
        payload_digest=None,
        state={"kind": "credit_memo"},
        holder=INVOICE,
        holder_state=STATE,
    )
    done = led.get(other)
    assert done is not None
    assert (done.id, done.created_at, done.attempts) == (was.id, was.created_at, 1)
    assert (done.status, done.spectrum_key, done.payload_digest) == (Status.DONE, "SC7", None)
    assert (done.error_kind, done.last_error, done.retry_since, done.next_attempt_at) == (
        None,
        None,
        None,
        None,
    )
    assert done.state == {"kind": "credit_memo"} and done.retry_rounds == 0


def test_driver_updates_return_what_a_read_returns(led: Ledger) -> None:
    assert led.claim(INVOICE, lease_s=30).held
    saved = led.update_progress(INVOICE, step="plan", spectrum_key="ST7", state=STATE)
    assert saved == led.get(INVOICE)
    assert saved.state == STATE and saved.step == "plan" and saved.spectrum_key == "ST7"
    assert saved.updated_at.tzinfo is not None and saved.lease_until is not None
    done = led.mark_done(INVOICE, spectrum_key="ST7", payload_digest="d", state=STATE)
    assert done == led.get(INVOICE)
    assert done.status is Status.DONE and done.lease_owner is None and done.done_at is not None
    failed = led.mark(INVOICE, Status.FAILED, error_kind="x", reason="why", state={})
    assert failed == led.get(INVOICE) and failed.state == {} and failed.last_error == "why"
    # a row that does not exist: what .one() raised before
    with pytest.raises(sqlalchemy.exc.NoResultFound):
        led.update_progress(RecordKey("main", "invoice", "404"), state={})


def test_a_ledger_that_cannot_be_reached_raises_what_sqlalchemy_raises() -> None:
    """The driver-level paths raise SQLAlchemy's error when no connection can be made, as
    engine.connect() does, so a sync classifies it as the ledger away (worker/infra.py)."""
    from worker.infra import INFRASTRUCTURE_ERRORS

    led = Ledger("postgresql+psycopg://root@127.0.0.1:1/test")  # nothing listens on port 1
    try:
        with pytest.raises(sqlalchemy.exc.OperationalError) as through_sqlalchemy:
            led.get_watermark("main", "sweep")
        calls = {
            "get": lambda: led.get(INVOICE),
            "update_progress": lambda: led.update_progress(INVOICE, state={}),
            "mark_done": lambda: led.mark_done(INVOICE, spectrum_key="ST7"),
            "audit": lambda: led.audit(system="stsync", service="noop", outcome="noop"),
        }
        for name, call in calls.items():
            with pytest.raises(INFRASTRUCTURE_ERRORS) as raised:
                call()
            assert type(raised.value) is type(through_sqlalchemy.value), name
    finally:
        led.dispose()
