"""PO lines gone from Spectrum (F21): a deleted line or PO updates its job item per
``closed_lines``, found by the poll from the keys Spectrum still holds (no PO is read again)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
import sqlalchemy as sa

from clients.spectrum import infolink_schema as il
from tasks.purchase_order import run_po_poll

from .test_purchase_order import items_of, job_52001, record, with_po_rules

__all__ = ["job_52001"]  # the fixture, imported for these tests


def delete_lines(db: Any, po: str, line: str | None = None) -> None:
    """Delete a PO line (or the whole PO) the way a person does in Spectrum: the rows go."""
    d, h = db.table(il.po_details.name), db.table(il.po_headers.name)
    with db.transaction() as c:
        where = [sa.func.trim(d.c.PO_Number) == po]
        if line is not None:
            where.append(sa.func.trim(d.c.Line_Number) == line)
        c.execute(d.delete().where(*where))
        if line is None:
            c.execute(h.delete().where(sa.func.trim(h.c.PO_Number) == po))


@pytest.mark.parametrize("action", ["leave", "zero", "remove"])
def test_po_line_removed_in_spectrum_follows_closed_lines(
    ctx: Any, st_state: Any, spectrum_db: Any, job_52001: int, action: str
) -> None:
    with_po_rules(ctx, closed_lines=action)
    run_po_poll(ctx, "main")
    assert len(items_of(st_state, job_52001)) == 2
    delete_lines(spectrum_db, "26001", "002")
    summary = run_po_poll(ctx, "main")
    assert summary.gone == 1
    items = {i["source"]["value"]: i for i in items_of(st_state, job_52001)}
    if action == "remove":
        assert set(items) == {"PO 26001-001"}
        assert record(ctx, "26001:002").state["removed"] is True
    elif action == "zero":
        assert Decimal(str(items["PO 26001-002"]["quantity"])) == 0
        assert Decimal(str(items["PO 26001-001"]["quantity"])) != 0
    else:
        assert set(items) == {"PO 26001-001", "PO 26001-002"}
    # found once: the next poll has nothing more to do
    again = run_po_poll(ctx, "main")
    assert again.gone == 0


def test_po_line_removed_whole_po_deleted_removes_its_items(
    ctx: Any, st_state: Any, spectrum_db: Any, job_52001: int
) -> None:
    with_po_rules(ctx, closed_lines="remove")
    run_po_poll(ctx, "main")
    delete_lines(spectrum_db, "26001")
    summary = run_po_poll(ctx, "main")
    assert summary.gone == 2
    assert items_of(st_state, job_52001) == []
