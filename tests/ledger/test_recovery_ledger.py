"""The ledger's recovery columns and the webhook inbox on SQLite and PostgreSQL: due times, the
retry_later streak, the re-enqueuer's queries, the durable-ack upsert and the invariant check."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest

from worker.ledger import Ledger, RecordKey, Status, utcnow

KEY = RecordKey("main", "invoice", "7001")


@pytest.fixture
def led(ledger_url: str) -> Iterator[Ledger]:
    led = Ledger(ledger_url, pending_grace_s=120)
    led.migrate()
    yield led
    led.dispose()


def test_retry_later_streak_and_due_times(led: Ledger) -> None:
    before = utcnow()
    rec = led.ensure(KEY)
    assert rec.status is Status.PENDING and rec.next_attempt_at is not None
    assert rec.next_attempt_at >= before + timedelta(seconds=119)
    led.claim(KEY, lease_s=30, owner="h:1")
    led.mark(KEY, Status.PENDING, error_kind="transient", reason="503", transient=True)
    first = led.get(KEY)
    assert first is not None and first.retry_since is not None
    later = led.mark_retry_later(
        KEY, next_attempt_at=utcnow() + timedelta(minutes=5), reason="retries ran out"
    )
    assert later.status is Status.RETRY_LATER and later.retry_rounds == 1
    assert later.retry_since == first.retry_since  # the streak goes on
    led.mark_retry_later(KEY, next_attempt_at=utcnow() + timedelta(minutes=15), reason="again")
    assert (led.get(KEY) or later).retry_rounds == 2
    done = led.mark_done(KEY, spectrum_key="ST7001")
    assert (done.next_attempt_at, done.retry_since, done.retry_rounds) == (None, None, 0)


def test_due_records_and_defer(led: Ledger) -> None:
    now = utcnow()
    led.ensure(KEY)
    led.mark_retry_later(KEY, next_attempt_at=now + timedelta(minutes=5), reason="x")
    stuck = RecordKey("main", "job", "7002")
    led.claim(stuck, lease_s=1, owner="h:1")
    assert [r.key for r in led.due_records(now)] == []
    due = led.due_records(now + timedelta(minutes=6))
    assert {r.key for r in due} == {KEY, stuck}
    led.defer(due, now + timedelta(minutes=10))
    assert led.due_records(now + timedelta(minutes=7)) == []
    assert {r.key for r in led.due_records(now + timedelta(minutes=11))} == {KEY, stuck}


def test_inbox_upsert_is_one_row_per_record_and_released_by_its_run(led: Ledger) -> None:
    entries = [("main", "sync.job", "1"), ("main", "sync.job", "2"), ("main", "sync.job", "1")]
    led.inbox_put(entries, due_after_s=60)  # a repeated entry in one delivery
    led.inbox_put([("main", "sync.job", "2")], due_after_s=60)  # and in the next delivery
    rows = led.inbox_entries()
    assert sorted(e.source_id for e in rows) == ["1", "2"]
    assert led.inbox_due(utcnow()) == []
    assert len(led.inbox_due(utcnow() + timedelta(seconds=61))) == 2
    led.inbox_done("main", "sync.job", "1", received_before=utcnow() + timedelta(seconds=1))
    led.inbox_done("main", "sync.job", "2", received_before=utcnow() - timedelta(minutes=1))
    assert [e.source_id for e in led.inbox_entries()] == ["2"]  # newer than that run's start


def test_inbox_takes_a_group_commit_of_many_large_deliveries_in_one_call(led: Ledger) -> None:
    """The ingest stores a whole group of deliveries at once (ingest/group.py): 60,000 rows are
    300,000 bound parameters as one multi-row statement, over SQLite's and PostgreSQL's limits."""
    entries = [("main", "sync.job", str(n)) for n in range(60_000)]
    led.inbox_put(entries, due_after_s=60)
    assert len(led.inbox_entries()) == 60_000


def test_invariant_breaches(led: Ledger) -> None:
    led.ensure(KEY)
    now = utcnow()
    assert led.invariant_breaches(now, tolerance_s=60) == []
    [late] = led.invariant_breaches(now + timedelta(seconds=120 + 61), tolerance_s=60)
    assert late.name == str(KEY) and late.status == "pending"
