"""The rows that wait on a prerequisite, found by the ``waits_on`` column on SQLite and
PostgreSQL: what ``mark`` writes into it, what ``waiting`` returns, and the migration that fills
it for rows failed before it existed."""

from __future__ import annotations

from typing import Any

from sqlalchemy import create_engine, insert, select

from worker.ledger import PREREQUISITE, Ledger, RecordKey, Status, sync_record, utcnow
from worker.migrate import upgrade


def _fail(led: Ledger, key: RecordKey, error_kind: str, state: dict[str, Any]) -> None:
    led.claim(key, lease_s=30, owner="h:1")
    led.mark(key, Status.FAILED, error_kind=error_kind, reason="why", state=state)


def _ids(recs: list[Any]) -> set[str]:
    return {r.key.source_id for r in recs}


def test_waiting_finds_only_the_rows_failed_for_that_prerequisite(led: Ledger) -> None:
    job = {"waits_on": "job:5"}
    _fail(led, RecordKey("main", "invoice", "1"), PREREQUISITE, job)
    _fail(led, RecordKey("main", "timecard_entry", "2:1"), PREREQUISITE, job)
    _fail(led, RecordKey("main", "timecard", "3"), PREREQUISITE, {"waits_on": "user:7"})
    _fail(led, RecordKey("main", "invoice", "4"), PREREQUISITE, {"waits_on": "user:70"})
    # failed for another reason with a waits_on left in its state: not a waiter
    _fail(led, RecordKey("main", "invoice", "5"), "MappingError", job)
    # another connection's waiter on the same job id
    _fail(led, RecordKey("other", "invoice", "6"), PREREQUISITE, job)
    # waited, then landed: the state keeps waits_on, the row is no longer a waiter
    landed = RecordKey("main", "invoice", "8")
    _fail(led, landed, PREREQUISITE, job)
    led.claim(landed, lease_s=30, owner="h:1")
    led.mark_done(landed, spectrum_key="ST8", state=job)

    assert _ids(led.waiting("main", on="job:5")) == {"1", "2:1"}
    assert _ids(led.waiting("other", on="job:5")) == {"6"}
    assert _ids(led.waiting("main", on="user:7")) == {"3"}
    assert _ids(led.waiting("main", on_type="user")) == {"3", "4"}
    assert led.waiting("main", on="job:6") == []


def test_a_waiter_failed_again_for_another_reason_is_no_longer_found(led: Ledger) -> None:
    key = RecordKey("main", "invoice", "1")
    _fail(led, key, PREREQUISITE, {"waits_on": "job:5"})
    assert _ids(led.waiting("main", on="job:5")) == {"1"}
    _fail(led, key, PREREQUISITE, {"waits_on": "site:9"})  # woken, now missing its site
    assert led.waiting("main", on="job:5") == []
    assert _ids(led.waiting("main", on="site:9")) == {"1"}
    _fail(led, key, "MappingError", {"waits_on": "site:9"})
    assert led.waiting("main", on="site:9") == []


def test_the_migration_fills_waits_on_for_rows_failed_before_it(ledger_url: str) -> None:
    engine = create_engine(ledger_url)
    try:
        upgrade(engine, "0002")
        now = utcnow()
        row = {
            "connection": "main",
            "status": Status.FAILED.value,
            "attempts": 1,
            "crashes": 0,
            "retry_rounds": 0,
            "created_at": now,
            "updated_at": now,
        }
        # inserted by name: the columns schema 0002 has (every one but waits_on)
        values = [
            {
                **row,
                "record_type": "invoice",
                "source_id": "1",
                "error_kind": PREREQUISITE,
                "state": {"waits_on": "job:5"},
            },
            {
                **row,
                "record_type": "invoice",
                "source_id": "2",
                "error_kind": "MappingError",
                "state": {"waits_on": "job:5"},
            },
            {
                **row,
                "record_type": "timecard",
                "source_id": "3",
                "error_kind": PREREQUISITE,
                "state": {},
            },
        ]
        with engine.begin() as c:
            for v in values:
                c.execute(insert(sync_record).values(v))
        upgrade(engine, "head")
        with engine.connect() as c:
            got = dict(c.execute(select(sync_record.c.source_id, sync_record.c.waits_on)).all())
        assert got == {"1": "job:5", "2": None, "3": None}
    finally:
        engine.dispose()
    led = Ledger(ledger_url)
    try:
        assert _ids(led.waiting("main", on="job:5")) == {"1"}
    finally:
        led.dispose()
