"""PO poll (F9) against the in-process sandbox with a real SQLite ledger.

Each test calls the plain ``run_po_poll`` with the ``ctx`` fixture: both simulators in process,
the Spectrum sandbox's Info-Link tables in SQLite (space-padded CHAR values, as the seed writes
them), the demo configuration (``sandbox/demo.toml``). Seed facts used here: PO 26001 is on
``T52001`` (ServiceTrade job number 52001) with lines 001 (SPK-HEAD, a lib item code) and 002 (an
item code no lib item has); PO 26003 is on ``T52006`` with one closed line; PO 26005 is on a
Spectrum job that no ServiceTrade job has.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa

import beat_schedule
from clients.errors import TransientError
from clients.spectrum import infolink_schema as il
from tasks.job import sync_job
from tasks.purchase_order import (
    LINE_TASK_NAME,
    RECORD_TYPE,
    TASK_NAME,
    WATERMARK,
    lines_waiting_for,
    poll_purchase_orders,
    run_po_poll,
    sync_po_line,
)
from worker.ledger import RecordKey, Status

TZ = ZoneInfo("America/New_York")


# --- helpers --------------------------------------------------------------------------------------
def with_po_rules(ctx: Any, **changes: Any) -> None:
    """Change ``[connections.main.purchase_orders]`` in place (what another stsync.toml does)."""
    conn = ctx.settings.connections["main"]
    po = conn.rules.purchase_orders.model_copy(update=changes)
    rules = conn.rules.model_copy(update={"purchase_orders": po})
    connections = {**ctx.settings.connections, "main": conn.model_copy(update={"rules": rules})}
    ctx.settings = ctx.settings.model_copy(update={"connections": connections})


def st_job_id(st_state: Any, number: int) -> int:
    [job] = [j for j in st_state.all("job") if j["number"] == number]
    return int(job["id"])


def items_of(st_state: Any, job_id: int) -> list[dict[str, Any]]:
    return sorted(
        (i for i in st_state.all("jobitem") if (i.get("job") or {}).get("id") == job_id),
        key=lambda i: i["source"]["value"],
    )


def po_rows(db: Any, po: str) -> list[dict[str, Any]]:
    return [r for r in db.rows(il.po_details.name) if r["PO_Number"].strip() == po]


def po_header(db: Any, po: str) -> dict[str, Any]:
    [h] = [r for r in db.rows(il.po_headers.name) if r["PO_Number"].strip() == po]
    return dict(h)


def later(db: Any, minutes: int = 60) -> datetime:
    """A ``Date_Modified`` after every seeded one (the poll's window must include it)."""
    stamps = [r["Date_Modified"] for r in db.rows(il.po_details.name)]
    stamps += [r["Date_Modified"] for r in db.rows(il.po_headers.name)]
    newest: datetime = max(stamps)
    return newest + timedelta(minutes=minutes)


def change_line(db: Any, po: str, line: str, **values: Any) -> None:
    """Edit a PO line the way Spectrum does: new values and a new ``Date_Modified``."""
    t = db.table(il.po_details.name)
    values.setdefault("Date_Modified", later(db))
    with db.transaction() as c:
        c.execute(
            t.update()
            .where(sa.func.trim(t.c.PO_Number) == po, sa.func.trim(t.c.Line_Number) == line)
            .values(**values)
        )


def change_header(db: Any, po: str, **values: Any) -> None:
    t = db.table(il.po_headers.name)
    values.setdefault("Date_Modified", later(db))
    with db.transaction() as c:
        c.execute(t.update().where(sa.func.trim(t.c.PO_Number) == po).values(**values))


def record(ctx: Any, key: str) -> Any:
    return ctx.ledger.get(RecordKey("main", RECORD_TYPE, key))


def jobitem_writes(st_app: Any) -> list[tuple[str, str]]:
    return [
        (r.method, r.path) for r in st_app.state.injector.requests("jobitem") if r.method != "GET"
    ]


def midnight(d: Any) -> int:
    return int(datetime(d.year, d.month, d.day, tzinfo=TZ).timestamp())


@pytest.fixture
def job_52001(ctx: Any, st_state: Any) -> int:
    """ServiceTrade job 52001, synced to Spectrum as T52001 (the ledger crosswalk)."""
    job_id = st_job_id(st_state, 52001)
    out = sync_job(ctx, job_id, "main")
    assert out.result == "synced", out.message
    return job_id


# --- the happy path -------------------------------------------------------------------------------
def test_po_on_a_synced_job_becomes_job_items_with_the_right_fields(
    ctx: Any, st_state: Any, spectrum_db: Any, world: Any, job_52001: int
) -> None:
    summary = run_po_poll(ctx, "main")

    items = items_of(st_state, job_52001)
    assert [i["source"] for i in items] == [
        {"type": "refnumber", "value": "PO 26001-001"},
        {"type": "refnumber", "value": "PO 26001-002"},
    ]
    rows = po_rows(spectrum_db, "26001")
    header = po_header(spectrum_db, "26001")
    vendor = header["Vendor_Code"].strip()
    lib_by_code = {li["code"]: li["id"] for li in world.servicetrade["libitem"]}
    for item, row in zip(items, rows, strict=True):
        assert item["name"] == f"{row['Item_Description'].strip()} [{vendor}]"
        assert Decimal(str(item["quantity"])) == row["PO_Quantity_List1"]
        assert Decimal(str(item["cost"])) == row["Item_Price"]
        assert item["usedOn"] == midnight(header["PO_Date_List1"])
        assert item["serviceLine"]["id"] == 5  # phase 100 -> 5 in demo.toml
    assert items[0]["libItem"]["id"] == lib_by_code["SPK-HEAD"]
    assert items[1]["libItem"] is None  # unknown item code, no default lib item
    rec = record(ctx, "26001:001")
    assert rec.status is Status.DONE
    assert rec.spectrum_key == str(items[0]["id"])
    assert summary.created == 2
    # POs on jobs nobody synced yet wait for them
    assert summary.waiting_for_job >= 1
    assert summary.watermark_advanced
    mark = ctx.ledger.get_watermark("main", WATERMARK)
    assert mark == later(spectrum_db, 0).isoformat()


def test_the_same_poll_twice_adds_nothing(
    ctx: Any, st_state: Any, st_app: Any, job_52001: int
) -> None:
    run_po_poll(ctx, "main")
    writes = jobitem_writes(st_app)
    claims = record(ctx, "26001:001").attempts

    again = run_po_poll(ctx, "main")

    assert len(items_of(st_state, job_52001)) == 2
    assert jobitem_writes(st_app) == writes
    assert again.created == again.updated == again.failed == 0
    # nothing changed, so nothing was even claimed
    assert record(ctx, "26001:001").attempts == claims


def test_a_changed_line_updates_its_job_item(
    ctx: Any, st_state: Any, st_app: Any, spectrum_db: Any, job_52001: int
) -> None:
    run_po_poll(ctx, "main")
    before = items_of(st_state, job_52001)

    change_line(
        spectrum_db, "26001", "001", PO_Quantity_List1=Decimal("40"), Item_Price=Decimal("7.9000")
    )
    summary = run_po_poll(ctx, "main")

    after = items_of(st_state, job_52001)
    assert [i["id"] for i in after] == [i["id"] for i in before]  # updated, not re-created
    assert Decimal(str(after[0]["quantity"])) == 40
    assert Decimal(str(after[0]["cost"])) == Decimal("7.9")
    assert after[1] == before[1]
    assert summary.updated == 1
    put = [r for r in st_app.state.injector.requests("jobitem") if r.method == "PUT"]
    assert len(put) == 1
    assert put[0].path.endswith(f"/jobitem/{before[0]['id']}")
    assert sorted(json.loads(put[0].body)) == ["cost", "quantity"]


def test_a_line_changed_back_to_what_servicetrade_has_writes_nothing(
    ctx: Any, st_state: Any, st_app: Any, spectrum_db: Any, job_52001: int
) -> None:
    run_po_poll(ctx, "main")
    # only the modified stamp moves: the plan is the same, nothing is claimed or written
    change_line(spectrum_db, "26001", "002")
    writes = jobitem_writes(st_app)
    summary = run_po_poll(ctx, "main")
    assert summary.lines_read >= 1
    assert summary.unchanged >= 1
    assert jobitem_writes(st_app) == writes


def test_po_on_an_unsynced_job_waits_then_attaches_once_the_job_syncs(
    ctx: Any, st_state: Any
) -> None:
    job_id = st_job_id(st_state, 52001)
    first = run_po_poll(ctx, "main")
    assert items_of(st_state, job_id) == []
    rec = record(ctx, "26001:001")
    assert rec.status is Status.SKIPPED
    assert "'T52001' is not matched" in rec.last_error
    assert "re-checked" in rec.last_error
    assert first.waiting_for_job >= 2
    waiting = {r.key.source_id for r in lines_waiting_for(ctx, "main")}
    assert {"26001:001", "26001:002"} <= waiting

    # a poll with nothing new in Spectrum still does not attach them...
    assert run_po_poll(ctx, "main").created == 0
    # ...until the job is synced; then the re-check attaches them, with no Spectrum change
    assert sync_job(ctx, job_id, "main").result == "synced"
    later_poll = run_po_poll(ctx, "main")
    assert later_poll.rechecked >= 2  # PO 26001 is older than the overlap window
    assert later_poll.created == 2
    assert len(items_of(st_state, job_id)) == 2
    assert record(ctx, "26001:001").status is Status.DONE


def test_job_matched_by_servicetrade_external_ids(
    ctx: Any, st_state: Any, spectrum_db: Any
) -> None:
    """A job stsync did not create, mapped by hand: externalIds carries the Spectrum number."""
    foreign = po_header(spectrum_db, "26005")["Job_Number"].strip()
    job_id = st_job_id(st_state, 52008)
    ctx.st.set_external_id("job", job_id, "spectrum", f"OTHER,{foreign}")

    run_po_poll(ctx, "main")

    [item] = items_of(st_state, job_id)
    assert item["source"]["value"] == "PO 26005-001"
    assert record(ctx, "26005:001").status is Status.DONE


# --- closed and cancelled lines -------------------------------------------------------------------
def test_closed_line_default_leave(ctx: Any, st_state: Any, spectrum_db: Any) -> None:
    job_id = st_job_id(st_state, 52006)
    assert sync_job(ctx, job_id, "main").result == "synced"
    [row] = po_rows(spectrum_db, "26003")
    assert row["Line_Status"] == "C"

    run_po_poll(ctx, "main")
    # a line closed (received) before its first sync is still a cost on the job
    [item] = items_of(st_state, job_id)
    # later changes to a closed line leave the item as it is
    change_line(spectrum_db, "26003", "001", PO_Quantity_List1=Decimal("999"))
    run_po_poll(ctx, "main")
    assert items_of(st_state, job_id) == [item]


def test_cancelled_line_is_never_created(
    ctx: Any, st_state: Any, spectrum_db: Any, job_52001: int
) -> None:
    change_line(spectrum_db, "26001", "002", Line_Status="X")
    run_po_poll(ctx, "main")
    assert [i["source"]["value"] for i in items_of(st_state, job_52001)] == ["PO 26001-001"]
    rec = record(ctx, "26001:002")
    assert rec.status is Status.SKIPPED
    assert "cancelled" in rec.last_error


def test_closed_line_zero_then_reopened(
    ctx: Any, st_state: Any, spectrum_db: Any, job_52001: int
) -> None:
    with_po_rules(ctx, closed_lines="zero")
    run_po_poll(ctx, "main")
    change_line(spectrum_db, "26001", "001", Line_Status="C")
    run_po_poll(ctx, "main")
    first = items_of(st_state, job_52001)[0]
    assert Decimal(str(first["quantity"])) == 0

    qty = po_rows(spectrum_db, "26001")[0]["PO_Quantity_List1"]
    change_line(spectrum_db, "26001", "001", Line_Status="O", Date_Modified=later(spectrum_db, 120))
    run_po_poll(ctx, "main")
    assert Decimal(str(items_of(st_state, job_52001)[0]["quantity"])) == qty


def test_closed_po_removes_its_items_under_remove(
    ctx: Any, st_state: Any, spectrum_db: Any, job_52001: int
) -> None:
    with_po_rules(ctx, closed_lines="remove")
    run_po_poll(ctx, "main")
    assert len(items_of(st_state, job_52001)) == 2

    change_header(spectrum_db, "26001", Status="C")  # a closed PO closes every line
    summary = run_po_poll(ctx, "main")

    assert items_of(st_state, job_52001) == []
    assert summary.removed == 2
    assert record(ctx, "26001:001").state["removed"] is True


# --- moves, failures, recovery --------------------------------------------------------------------
def test_po_moved_to_another_job_moves_its_items(
    ctx: Any, st_state: Any, spectrum_db: Any, job_52001: int
) -> None:
    run_po_poll(ctx, "main")
    other = st_job_id(st_state, 52004)
    assert sync_job(ctx, other, "main").result == "synced"
    before = run_po_poll(ctx, "main")  # PO 26002 lands on 52004
    assert before.created >= 1
    n_other = len(items_of(st_state, other))

    change_header(spectrum_db, "26001", Job_Number="T52004")
    run_po_poll(ctx, "main")

    assert items_of(st_state, job_52001) == []
    refs = [i["source"]["value"] for i in items_of(st_state, other)]
    assert len(refs) == n_other + 2
    assert {"PO 26001-001", "PO 26001-002"} <= set(refs)


def test_unroutable_line_fails_with_an_alert_then_heals_when_config_is_fixed(
    ctx: Any, st_state: Any, spectrum_db: Any, job_52001: int
) -> None:
    with_po_rules(ctx, default_service_line_id=None)
    change_line(spectrum_db, "26001", "002", Phase_Code="999")
    summary = run_po_poll(ctx, "main")

    rec = record(ctx, "26001:002")
    assert rec.status is Status.FAILED
    assert rec.last_error.startswith("PO 26001 line 002: service line:")
    assert "service_line_by_phase" in rec.last_error
    assert summary.failed == 1
    assert any("PO 26001 line 002" in a["message"] for a in ctx.ledger.alerts(rec.key))
    assert len(items_of(st_state, job_52001)) == 1

    # the same poll again does not retry it (nothing changed)...
    attempts = rec.attempts
    run_po_poll(ctx, "main")
    assert record(ctx, "26001:002").attempts == attempts
    # ...but once the routing is configured the next poll picks it up by itself
    with_po_rules(ctx, default_service_line_id=7)
    healed = run_po_poll(ctx, "main")
    assert healed.created == 1
    assert record(ctx, "26001:002").status is Status.DONE
    item = items_of(st_state, job_52001)[1]
    assert item["serviceLine"]["id"] == 7


def test_lost_create_answer_is_adopted_not_duplicated(
    ctx: Any, st_state: Any, st_app: Any, job_52001: int
) -> None:
    # the item is written, then the answer is lost (503 after the write)
    st_app.state.injector.script("jobitem", ["ghost"])
    with pytest.raises(TransientError):
        run_po_poll(ctx, "main")
    mark = ctx.ledger.get_watermark("main", WATERMARK)
    assert mark is None  # the poll did not finish: the window is read again
    assert record(ctx, "26001:001").status is Status.PENDING

    run_po_poll(ctx, "main")

    refs = [i["source"]["value"] for i in items_of(st_state, job_52001)]
    assert refs == ["PO 26001-001", "PO 26001-002"]
    rec = record(ctx, "26001:001")
    assert rec.status is Status.DONE
    assert rec.state.get("adopted") is True


def test_item_deleted_in_servicetrade_is_not_recreated(
    ctx: Any, st_state: Any, spectrum_db: Any, job_52001: int
) -> None:
    run_po_poll(ctx, "main")
    first = items_of(st_state, job_52001)[0]
    ctx.st.delete_job_item(first["id"])
    change_line(spectrum_db, "26001", "001", PO_Quantity_List1=Decimal("3"))
    run_po_poll(ctx, "main")
    assert [i["source"]["value"] for i in items_of(st_state, job_52001)] == ["PO 26001-002"]
    assert record(ctx, "26001:001").state["deleted_in_servicetrade"] is True


def test_small_pages_give_the_same_result_and_report_progress(
    ctx: Any, st_state: Any, spectrum_db: Any, job_52001: int
) -> None:
    with_po_rules(ctx, page_size=1)
    seen: list[int] = []
    summary = run_po_poll(ctx, "main", progress=seen.append)
    total = len(spectrum_db.rows(il.po_details.name))
    assert summary.lines_read == total
    assert seen == [1] * total
    assert len(items_of(st_state, job_52001)) == 2


def test_overlap_window_rereads_recent_lines_only(
    ctx: Any, spectrum_db: Any, job_52001: int
) -> None:
    run_po_poll(ctx, "main")
    mark = datetime.fromisoformat(ctx.ledger.get_watermark("main", WATERMARK))
    overlap = ctx.settings.connections["main"].rules.purchase_orders.overlap_s
    again = run_po_poll(ctx, "main")
    assert again.changed_since == (mark - timedelta(seconds=overlap)).isoformat()
    recent = [
        r
        for r in spectrum_db.rows(il.po_details.name)
        if r["Date_Modified"] >= mark - timedelta(seconds=overlap)
    ]
    assert again.lines_read == len(recent)


def test_replay_of_one_line_from_its_snapshot(
    ctx: Any, st_state: Any, spectrum_db: Any, job_52001: int
) -> None:
    with_po_rules(ctx, default_service_line_id=None)
    change_line(spectrum_db, "26001", "002", Phase_Code="999")
    run_po_poll(ctx, "main")
    assert record(ctx, "26001:002").status is Status.FAILED
    with_po_rules(ctx, default_service_line_id=6)
    assert sync_po_line(ctx, "26001:002", "main") == "synced"
    assert items_of(st_state, job_52001)[1]["serviceLine"]["id"] == 6


def test_task_names_match_the_beat_schedule() -> None:
    assert TASK_NAME == beat_schedule.PO_POLL_TASK
    assert getattr(poll_purchase_orders, "name", None) == TASK_NAME
    assert LINE_TASK_NAME == "sync.po_line"
