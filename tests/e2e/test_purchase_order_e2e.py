"""Purchase orders end to end (F9): real sandbox servers, the real Redis, a real Celery worker.

The poll is enqueued by name (as Beat does) or sent by a real ``celery beat``; it reads the
Spectrum sandbox's Info-Link tables (SQLite, padded CHAR values) and writes job items to the
ServiceTrade simulator. Seed facts: PO 26001 (lines 001 and 002) is on Spectrum job ``T52001``,
the Spectrum job of ServiceTrade job number 52001. Nothing runs eagerly.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from clients.spectrum import infolink_schema as il
from tasks.purchase_order import RECORD_TYPE, TASK_NAME, WATERMARK
from tests.conftest import REPO
from tests.e2e.conftest import Stack, wait_for

pytestmark = pytest.mark.e2e


def send(task: str, *args: Any) -> None:
    from worker.celery_app import app

    app.send_task(task, args=args)


def job_id_of(stack: Stack, number: int) -> int:
    [job] = [j for j in stack.sandbox.st_state.all("job") if j["number"] == number]
    return int(job["id"])


def items_of(stack: Stack, job_id: int) -> list[dict[str, Any]]:
    return sorted(
        (
            i
            for i in stack.sandbox.st_state.all("jobitem")
            if (i.get("job") or {}).get("id") == job_id
        ),
        key=lambda i: i["source"]["value"],
    )


def item_posts(stack: Stack) -> int:
    return sum(1 for r in stack.sandbox.st_injector.requests("jobitem") if r.method == "POST")


def watermark_stamp(stack: Stack) -> Any:
    from worker.ledger import watermark

    with stack.ledger.engine.connect() as c:
        return c.execute(
            sa.select(watermark.c.updated_at).where(
                watermark.c.connection == "main", watermark.c.name == WATERMARK
            )
        ).scalar_one_or_none()


def poll_and_wait(stack: Stack) -> None:
    """Enqueue one poll and wait until it finished (it stamps the high-water mark at the end)."""
    before = watermark_stamp(stack)
    send(TASK_NAME, "main")
    try:
        wait_for(lambda: watermark_stamp(stack) != before, 60, 0.2, "the PO poll to finish")
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{stack.worker_logs()}") from None


def sync_job(stack: Stack, job_id: int) -> None:
    send("sync.job", job_id, "main")
    stack.wait_status("job", job_id)


def change_line(stack: Stack, po: str, line: str, **values: Any) -> None:
    db = stack.sandbox.spectrum_db
    t = db.table(il.po_details.name)
    newest = max(r["Date_Modified"] for r in db.rows(il.po_details.name))
    values.setdefault("Date_Modified", newest + timedelta(hours=1))
    with db.transaction() as c:
        c.execute(
            t.update()
            .where(sa.func.trim(t.c.PO_Number) == po, sa.func.trim(t.c.Line_Number) == line)
            .values(**values)
        )


def test_po_on_a_synced_job_lands_once_and_a_changed_line_updates_it(stack: Stack) -> None:
    stack.start_worker()
    job_id = job_id_of(stack, 52001)
    sync_job(stack, job_id)

    poll_and_wait(stack)
    stack.wait_status(RECORD_TYPE, "26001:001")
    stack.wait_status(RECORD_TYPE, "26001:002")
    items = items_of(stack, job_id)
    rows = [
        r
        for r in stack.sandbox.spectrum_db.rows(il.po_details.name)
        if r["PO_Number"].strip() == "26001"
    ]
    assert [i["source"]["value"] for i in items] == ["PO 26001-001", "PO 26001-002"]
    for item, row in zip(items, rows, strict=True):
        assert item["name"].startswith(row["Item_Description"].strip())
        assert Decimal(str(item["quantity"])) == row["PO_Quantity_List1"]
        assert Decimal(str(item["cost"])) == row["Item_Price"]
        assert item["serviceLine"]["id"] == 5
        assert item["usedOn"] is not None
    assert items[0]["libItem"]["code"] == "SPK-HEAD"
    posts = item_posts(stack)
    assert posts == 2

    # the same poll again: no new items, no writes
    poll_and_wait(stack)
    assert items_of(stack, job_id) == items
    assert item_posts(stack) == posts

    # a changed line updates its job item in place
    change_line(stack, "26001", "001", PO_Quantity_List1=Decimal("31"))
    poll_and_wait(stack)
    after = items_of(stack, job_id)
    assert [i["id"] for i in after] == [i["id"] for i in items]
    assert Decimal(str(after[0]["quantity"])) == 31
    assert item_posts(stack) == posts
    puts = [r for r in stack.sandbox.st_injector.requests("jobitem") if r.method == "PUT"]
    assert [json.loads(p.body) for p in puts] == [{"quantity": 31}]


def test_po_on_an_unsynced_job_is_skipped_then_attached_once_the_job_syncs(stack: Stack) -> None:
    stack.start_worker()
    job_id = job_id_of(stack, 52001)

    poll_and_wait(stack)
    rec = stack.wait_status(RECORD_TYPE, "26001:001", ("skipped",))
    assert "T52001" in (rec.last_error or "")
    assert items_of(stack, job_id) == []

    sync_job(stack, job_id)
    poll_and_wait(stack)
    stack.wait_status(RECORD_TYPE, "26001:001")
    assert [i["source"]["value"] for i in items_of(stack, job_id)] == [
        "PO 26001-001",
        "PO 26001-002",
    ]


def test_beat_runs_the_po_poll_on_its_schedule(stack: Stack) -> None:
    path = Path(stack.env["STSYNC_CONFIG"])
    text = path.read_text()
    assert "po_poll_every_s = 900" in text
    path.write_text(text.replace("po_poll_every_s = 900", "po_poll_every_s = 10", 1))
    stack.start_worker()
    job_id = job_id_of(stack, 52001)
    sync_job(stack, job_id)

    log = stack.tmp / "beat.log"
    with open(log, "ab") as fh:
        beat = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "worker.celery_app",
                "beat",
                "--loglevel=INFO",
                f"--schedule={stack.tmp / 'beat-schedule'}",
            ],
            cwd=REPO,
            env=stack.env,
            stdout=fh,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        wait_for(
            lambda: len(items_of(stack, job_id)) == 2,
            90,
            0.5,
            "Beat's PO poll to attach the job items",
        )
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{log.read_text()[-3000:]}\n{stack.worker_logs()}") from None
    finally:
        os.killpg(beat.pid, signal.SIGTERM)
        beat.wait(timeout=20)
    assert TASK_NAME in log.read_text()
