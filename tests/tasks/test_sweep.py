"""The missed-change sweep (F15) against the in-process sandbox: what it lists, what it queues,
and how its high-water marks move. ``ctx.enqueue`` collects into ``enqueued``."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import update

from tasks.customer import sync_customer
from tasks.sweep import UPDATED_RESOURCES, run_sweep, unseen, watermark_name
from tasks.timecard import ENTRY_RECORD_TYPE, TASK_NAME, sync_timecard
from worker.ledger import Record, RecordKey, Status, sync_record

TASKS = {
    "company": "sync.customer",
    "location": "sync.site",
    "job": "sync.job",
    "invoice": "sync.invoice",
}


def from_the_start(ctx: Any) -> None:
    """High-water marks at 0: the next sweep lists everything (as after a long outage)."""
    for resource in (*UPDATED_RESOURCES, "timecard"):
        ctx.ledger.set_watermark("main", watermark_name(resource), "0")


def queued(enqueued: list[tuple[str, tuple[Any, ...]]], task: str) -> list[int]:
    return sorted(args[0] for name, args in enqueued if name == task)


def listed_by_sandbox(st_state: Any, resource: str) -> list[int]:
    recs = st_state.all(resource)
    if resource == "job":  # ``status=all`` is everything except canceled (§5.3)
        recs = [r for r in recs if r["status"] != "canceled"]
    if resource == "company":
        recs = [r for r in recs if r.get("isCustomer", True)]
    if resource == "location":
        recs = [
            r
            for r in recs
            if r["company"]["id"]
            in {c["id"] for c in st_state.all("company") if c.get("isCustomer", True)}
        ]
    return sorted(r["id"] for r in recs)


def test_sweep_queues_every_record_the_ledger_has_not_seen(
    ctx: Any, st_state: Any, enqueued: list[tuple[str, tuple[Any, ...]]]
) -> None:
    from_the_start(ctx)
    now = int(time.time())

    [summary] = run_sweep(ctx, now=now)

    assert summary.errors == []
    for resource, task in TASKS.items():
        assert queued(enqueued, task) == listed_by_sandbox(st_state, resource), resource
        assert summary.enqueued[resource] == summary.listed[resource]
    approved = sorted(c["id"] for c in st_state.all("timecard") if c["status"] == "approved")
    assert queued(enqueued, TASK_NAME) == approved
    assert all(args[1] == "main" for _, args in enqueued)
    overlap = ctx.settings.schedules.sweep_overlap_s
    for resource in (*UPDATED_RESOURCES, "timecard"):
        assert ctx.ledger.get_watermark("main", watermark_name(resource)) == str(now)
        assert summary.windows[resource] == [0, now]
    assert overlap > 0


def test_seen_records_are_not_queued_and_a_later_edit_is(
    ctx: Any, st_state: Any, enqueued: list[tuple[str, tuple[Any, ...]]]
) -> None:
    company = next(c for c in st_state.all("company") if c.get("isCustomer", True))
    assert sync_customer(ctx, company["id"], "main").ok
    card = next(c for c in st_state.all("timecard") if c["user"]["externalIds"].get("spectrum"))
    assert sync_timecard(ctx, card["id"], "main").ok
    enqueued.clear()
    from_the_start(ctx)

    run_sweep(ctx, now=int(time.time()))

    assert company["id"] not in queued(enqueued, "sync.customer")
    assert card["id"] not in queued(enqueued, TASK_NAME)

    # edited in ServiceTrade after stsync saw it (the webhook was dropped): queued
    later = int(time.time()) + 120
    st_state.update("company", company["id"], {"name": "Renamed Co", "updated": later})
    new_entry = {"id": 990101, "kind": "generic", "label": "Sick", "hours": 1}
    st_state.update("timecard", card["id"], {"entries": [*card["entries"], new_entry]})
    enqueued.clear()
    from_the_start(ctx)

    run_sweep(ctx, now=later + 1)

    assert company["id"] in queued(enqueued, "sync.customer")
    assert card["id"] in queued(enqueued, TASK_NAME)


def test_second_sweep_starts_at_the_mark_minus_the_overlap(
    ctx: Any, st_state: Any, enqueued: list[tuple[str, tuple[Any, ...]]]
) -> None:
    from_the_start(ctx)
    first = int(time.time())
    run_sweep(ctx, now=first)
    enqueued.clear()

    [summary] = run_sweep(ctx, now=first + 600)

    overlap = ctx.settings.schedules.sweep_overlap_s
    assert summary.windows["job"] == [first - overlap, first + 600]
    # nothing in the sandbox changed since: nothing new to queue
    assert summary.enqueued == dict.fromkeys((*UPDATED_RESOURCES, "timecard", "user"), 0)
    assert enqueued == []


def test_first_sweep_looks_back_one_interval_only(
    ctx: Any, st_state: Any, enqueued: list[tuple[str, tuple[Any, ...]]]
) -> None:
    now = int(time.time())
    [summary] = run_sweep(ctx, now=now)

    s = ctx.settings.schedules
    assert summary.windows["company"] == [now - s.sweep_every_s - s.sweep_overlap_s, now]
    # the seeded account is older than that: a fresh install does not import it wholesale
    assert enqueued == []


def test_a_failing_listing_keeps_its_mark_and_the_others_move_on(
    ctx: Any, st_app: Any, enqueued: list[tuple[str, tuple[Any, ...]]]
) -> None:
    from_the_start(ctx)
    st_app.state.injector.script("job", ["error"] * 10)
    now = int(time.time())

    [summary] = run_sweep(ctx, now=now)

    assert [e.split(":")[0] for e in summary.errors] == ["job"]
    assert ctx.ledger.get_watermark("main", watermark_name("job")) == "0"
    assert ctx.ledger.get_watermark("main", watermark_name("company")) == str(now)
    assert queued(enqueued, "sync.job") == []
    assert queued(enqueued, "sync.customer")


def _age(ctx: Any, key: RecordKey, seconds: float) -> None:
    with ctx.ledger.tx() as conn:
        conn.execute(
            update(sync_record)
            .where(
                sync_record.c.connection == key.connection,
                sync_record.c.record_type == key.record_type,
                sync_record.c.source_id == key.source_id,
            )
            .values(updated_at=datetime.now(UTC) - timedelta(seconds=seconds))
        )


def test_stranded_pending_rows_are_queued_again(
    ctx: Any, enqueued: list[tuple[str, tuple[Any, ...]]]
) -> None:
    lost_entry = RecordKey("main", ENTRY_RECORD_TYPE, "5001:77")
    lost_job = RecordKey("main", "job", "4242")
    fresh = RecordKey("main", "job", "4343")
    composite = RecordKey("main", "invoice", "88:credit")
    for key in (lost_entry, lost_job, fresh, composite):
        ctx.ledger.ensure(key)
    for key in (lost_entry, lost_job, composite):
        _age(ctx, key, 3 * 3600)

    [summary] = run_sweep(ctx, now=int(time.time()))

    assert summary.stranded == 2
    assert queued(enqueued, TASK_NAME) == [5001]  # an entry is replayed through its card
    assert queued(enqueued, "sync.job") == [4242]  # not the fresh one: it may be retrying


def _rec(status: Status, updated: datetime) -> Record:
    key = RecordKey("main", "job", "1")
    return Record(
        1, key, status, None, None, None, {}, 1, 0, None, None, None, None, updated, updated, None
    )


@pytest.mark.parametrize(
    ("status", "ledger_age_s", "st_updated_age_s", "expected"),
    [
        (Status.DONE, 60, 3600, False),  # stsync touched it after the change
        (Status.DONE, 3600, 60, True),  # changed in ServiceTrade after stsync saw it
        (Status.DONE, 60, 61, False),  # stsync's own write-back, just before the row was done
        (Status.FAILED, 60, 3600, False),  # failed records wait for a person or an edit
        (Status.PENDING, 60, 3600, False),  # may be waiting for its Celery retry
        (Status.PENDING, 7200, 9000, True),  # nobody touched it for longer than a retry waits
        (Status.SKIPPED, 3600, None, False),
    ],
)
def test_unseen(
    status: Status, ledger_age_s: int, st_updated_age_s: int | None, expected: bool
) -> None:
    now = datetime.now(UTC).replace(microsecond=500_000)
    rec = _rec(status, now - timedelta(seconds=ledger_age_s))
    st_updated = (
        None
        if st_updated_age_s is None
        else int((now - timedelta(seconds=st_updated_age_s)).timestamp())
    )
    assert unseen(rec, st_updated, now - timedelta(seconds=900)) is expected
    assert unseen(None, st_updated, now) is True
