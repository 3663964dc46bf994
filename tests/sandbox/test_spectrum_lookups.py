"""The validation lookups (``Checks.find``/``exists``/``ref_row``) and the writes
(``insert_rows``/``update_rows``) run as plain SQL on SQLite's driver connection: they must read
and store exactly what the SQLAlchemy statements do, typed values (dates, datetimes, decimals)
and NULLs included, on memory and file databases alike."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from pathlib import Path

import pytest
import sqlalchemy as sa

from clients.spectrum import infolink_schema as il
from sandbox.spectrum.admin_state import AdminState
from sandbox.spectrum.db import SpectrumDB, insert_rows, update_rows
from sandbox.spectrum.validation import Checks, _lookup, _params

PO = {
    "Company_Code": "ABC",
    "PO_Number": "PO1",
    "Vendor_Code": "V1",
    "PO_Date_List1": "2026-03-04",
    "Description": None,
    "Date_Modified": "2026-03-04T05:06:07.123456",
}
PO_LINE = {
    "Company_Code": "ABC",
    "PO_Number": "PO1",
    "Line_Number": "1",
    "PO_Quantity_List1": "2.5000",
    "Item_Price": "10.1234",
    "Line_Extension_List1": "25.31",
    "Delivery_Date": "2026-04-01",
}


@pytest.fixture(params=["memory", "file"])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> SpectrumDB:
    d = SpectrumDB() if request.param == "memory" else SpectrumDB(f"sqlite:///{tmp_path}/s.sqlite")
    d.load({"PO_PURCHASE_ORDER_HEADER_MC": [PO], "PO_PURCHASE_ORDER_DETAIL_MC": [PO_LINE]})
    d.load({"CR_CUSTOMER_MASTER_MC": [{"Company_Code": "XYZ", "Customer_Code": "C1"}]})
    return d


def _by_sqlalchemy(db: SpectrumDB, table: sa.Table, **where: str) -> dict[str, object] | None:
    stmt = _lookup(table, tuple(where), exists=False, dialect=db.engine.dialect).stmt
    with db.transaction() as conn:
        row = conn.execute(stmt, _params("ABC", where)).first()
    return None if row is None else dict(row._mapping)


def test_find_returns_what_sqlalchemy_returns_with_types(db: SpectrumDB) -> None:
    with db.transaction() as conn:
        ck = Checks(conn, AdminState(), "ABC")
        header = ck.find(il.po_headers, PO_Number="PO1")
        line = ck.find(il.po_details, PO_Number="PO1", Line_Number="1")
    assert header == _by_sqlalchemy(db, il.po_headers, PO_Number="PO1")
    assert line == _by_sqlalchemy(db, il.po_details, PO_Number="PO1", Line_Number="1")
    assert header is not None and line is not None
    assert header["PO_Date_List1"] == date(2026, 3, 4)
    assert header["Date_Modified"] == datetime(2026, 3, 4, 5, 6, 7, 123456)
    assert header["Description"] is None
    assert line["Item_Price"] == Decimal("10.1234")
    assert line["Line_Extension_List1"] == Decimal("25.31")
    assert list(header) == [c.name for c in il.po_headers.c]


def test_lookups_are_scoped_to_the_company_and_miss_cleanly(db: SpectrumDB) -> None:
    with db.transaction() as conn:
        abc, xyz = Checks(conn, AdminState(), "ABC"), Checks(conn, AdminState(), "XYZ")
        assert abc.exists(il.po_headers, PO_Number="PO1")
        assert not xyz.exists(il.po_headers, PO_Number="PO1")
        assert not abc.exists(il.customers, Customer_Code="C1")
        assert xyz.exists(il.customers, Customer_Code="C1")
        assert abc.find(il.po_headers, PO_Number="nope") is None


def test_lookups_see_rows_written_earlier_in_the_same_transaction(db: SpectrumDB) -> None:
    with db.transaction() as conn:
        ck = Checks(conn, AdminState(), "ABC")
        assert not ck.exists(il.customers, Customer_Code="NEW")
        conn.execute(il.customers.insert(), {"Company_Code": "ABC", "Customer_Code": "NEW"})
        found = ck.find(il.customers, Customer_Code="NEW")
    assert found is not None and found["Status"] == "A"  # the column default applied on insert


def test_ref_row_returns_the_row_or_reports_it_missing(db: SpectrumDB) -> None:
    with db.transaction() as conn:
        ck = Checks(conn, AdminState(), "XYZ")
        row = ck.ref_row("Customer_Code", "C1", il.customers, what="customer")
        assert row is not None and row["Customer_Code"] == "C1"
        assert ck.ref_row("Customer_Code", "", il.customers) is None
        assert ck.rows == []
        assert ck.ref_row("Customer_Code", "C9", il.customers, what="customer") is None
        assert ck.rows == [
            ("I", "Customer_Code is invalid, customer C9 is not on file", "Customer_Code")
        ]
        # a column already refused is not reported twice
        assert ck.ref_row("Customer_Code", "C8", il.customers, what="customer") is None
        assert len(ck.rows) == 1


def test_insert_rows_stores_what_a_sqlalchemy_insert_stores(db: SpectrumDB) -> None:
    line = {
        "Invoice_Or_Transaction": "N1",
        "Line_Number": 1,
        "Quantity": Decimal("2.5"),
        "Line_Extension": Decimal("125.50"),
        "GL_Account": "4000",
        "Detail_Description": None,
    }
    short = {"Invoice_Or_Transaction": "N1", "Line_Number": 2, "Message": "thanks"}
    header = {"Invoice_Or_Transaction": "N1", "Invoice_Date": date(2026, 3, 4)}
    with db.transaction() as conn:
        for company in ("ABC", "XYZ"):
            rows = [{"Company_Code": company, **r} for r in (line, line | {"Line_Number": 3})]
            rows.append({"Company_Code": company, **short})
            head = {"Company_Code": company, **header}
            if company == "ABC":
                insert_rows(conn, il.ar_invoice_lines, rows)
                insert_rows(conn, il.ar_invoices, [head])
            else:  # the reference: SQLAlchemy's own insert
                conn.execute(il.ar_invoice_lines.insert(), rows[:2])
                conn.execute(il.ar_invoice_lines.insert(), rows[2:])
                conn.execute(il.ar_invoices.insert(), head)
        # a table with a column default goes through SQLAlchemy, which applies it
        insert_rows(conn, il.customers, [{"Company_Code": "ABC", "Customer_Code": "C2"}])

    def without_company(table: str, company: str) -> list[dict[str, object]]:
        return [{**r, "Company_Code": "-"} for r in db.rows(table, Company_Code=company)]

    for table in ("CR_INVOICE_DETAIL_MC", "CR_INVOICE_HEADER_MC"):
        assert without_company(table, "ABC") == without_company(table, "XYZ")
    lines = db.rows("CR_INVOICE_DETAIL_MC", Company_Code="ABC")
    assert [r["Line_Number"] for r in lines] == [1, 3, 2]  # insertion order kept
    assert lines[0]["Line_Extension"] == Decimal("125.50") and lines[2]["Message"] == "thanks"
    assert db.rows("CR_INVOICE_HEADER_MC", Company_Code="ABC")[0]["Invoice_Date"] == date(
        2026, 3, 4
    )
    assert db.rows("CR_CUSTOMER_MASTER_MC", Customer_Code="C2")[0]["Status"] == "A"


def test_update_rows_changes_only_the_keyed_rows_with_typed_values(db: SpectrumDB) -> None:
    line = {"Invoice_Or_Transaction": "N1", "Line_Number": 1, "GL_Account": "4000"}
    with db.transaction() as conn:
        insert_rows(
            conn,
            il.ar_invoice_lines,
            [{"Company_Code": c, **line} for c in ("ABC", "XYZ")]
            + [{"Company_Code": "ABC", **line, "Line_Number": 2}],
        )
        changes = {"Line_Extension": Decimal("9.95"), "Detail_Description": "changed"}
        update_rows(
            conn,
            il.ar_invoice_lines,
            {"Company_Code": "ABC", "Invoice_Or_Transaction": "N1", "Line_Number": 1},
            changes,
        )
        update_rows(conn, il.ar_invoice_lines, {"Company_Code": "ABC"}, {})  # nothing to set
        update_rows(
            conn, il.customers, {"Company_Code": "XYZ", "Customer_Code": "C1"}, {"Name": "Acme"}
        )
    rows = {(r["Company_Code"], r["Line_Number"]): r for r in db.rows("CR_INVOICE_DETAIL_MC")}
    assert rows["ABC", 1]["Line_Extension"] == Decimal("9.95")
    assert rows["ABC", 1]["Detail_Description"] == "changed"
    for untouched in (("ABC", 2), ("XYZ", 1)):
        assert rows[untouched]["Line_Extension"] is None
        assert rows[untouched]["Detail_Description"] is None
    assert db.rows("CR_CUSTOMER_MASTER_MC", Customer_Code="C1")[0]["Name"] == "Acme"


def test_update_rows_keyed_on_a_null_matches_the_null_row_as_sqlalchemy_does(
    db: SpectrumDB,
) -> None:
    line = {"Company_Code": "ABC", "Invoice_Or_Transaction": "N1", "Line_Number": 1}
    with db.transaction() as conn:
        insert_rows(conn, il.ar_invoice_lines, [line | {"GL_Account": None}])
        # a plain `GL_Account = ?` bound to NULL would match nothing; SQLAlchemy says IS NULL
        update_rows(conn, il.ar_invoice_lines, line | {"GL_Account": None}, {"Message": "found"})
    assert db.rows("CR_INVOICE_DETAIL_MC", Company_Code="ABC")[0]["Message"] == "found"
