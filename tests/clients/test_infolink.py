"""Info-Link reader against a temporary SQLite copy of the Info-Link tables, CHAR-padded on purpose."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Connection, Table, create_engine, insert

from clients.errors import ConfigError, InfoLinkSchemaError, TransientError
from clients.spectrum import infolink_schema as s
from clients.spectrum.infolink import (
    CODE_TABLES,
    DRIVER_INSTALL,
    InfoLinkReader,
    is_schema_error,
    open_engine,
)
from clients.spectrum.po_models import PoLine

CO = "ABC"


def put(conn: Connection, table: Table, rows: list[dict[str, Any]]) -> None:
    """Insert rows that do not all name the same columns (the rest stay NULL)."""
    for row in rows:
        conn.execute(insert(table).values(**row))


def pad(value: str, width: int) -> str:
    """How a CHAR(width) column hands a value back."""
    return value.ljust(width)


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'infolink.sqlite'}"
    engine = create_engine(url)
    s.metadata.create_all(engine)
    with engine.begin() as conn:
        put(
            conn,
            s.customers,
            [
                {
                    "Company_Code": CO,
                    "Customer_Code": pad("ACME", 10),
                    "Name": pad("Acme Fire", 30),
                    "City": pad("Raleigh", 25),
                    "Phone": None,
                    "Status": "A",
                },
                {"Company_Code": "XYZ", "Customer_Code": pad("OTHER", 10), "Name": "Other co"},
            ],
        )
        put(
            conn,
            s.sites,
            [
                {
                    "Company_Code": pad(CO, 3),
                    "Site_ID": pad("S0001", 10),
                    "Site_Name": pad("Bistro #12", 30),
                    "Site_Customer_Code": pad("ACME", 10),
                },
            ],
        )
        put(
            conn,
            s.jobs,
            [
                {
                    "Company_Code": CO,
                    "Job_Number": pad("ST-10452", 10),
                    "Job_Description": pad("Roof", 25),
                    "Customer_Code": pad("ACME", 10),
                    "Est_Start_Date": date(2026, 3, 2),
                    "Status_Code": "A",
                    "WO_Site": pad("S0001", 10),
                },
                {"Company_Code": CO, "Job_Number": pad("ST-10400", 10), "WO_Site": "S0001"},
                {"Company_Code": CO, "Job_Number": "ST-10500", "WO_Site": pad("S0002", 10)},
                {"Company_Code": "XYZ", "Job_Number": "ST-10401", "WO_Site": "S0001"},
            ],
        )
        put(
            conn,
            s.phases,
            [
                {
                    "Company_Code": CO,
                    "Job_Number": pad("ST-10452", 10),
                    "Phase_Code": pad(code, 20),
                    "Cost_Type": pad(ct, 3),
                    "Description": pad(desc, 25),
                }
                for code, ct, desc in [
                    ("200", "M", "Material"),
                    ("100", "L", "Labor"),
                    ("100", "E", "Equip"),
                ]
            ]
            + [{"Company_Code": CO, "Job_Number": "OTHERJOB", "Phase_Code": "1", "Cost_Type": "L"}],
        )
        put(
            conn,
            s.employees,
            [
                {
                    "Company_Code": CO,
                    "Employee_Code": pad("E100", 11),
                    "Employee_Name": pad("Sam Tech", 30),
                    "Department_Code": pad("10", 6),
                },
            ],
        )
        put(
            conn,
            s.ar_invoices,
            [
                {
                    "Company_Code": CO,
                    "Invoice_Or_Transaction": pad("ST4401", 10),
                    "Customer_Code": "ACME",
                    "Transaction_Type": "I",
                    "Invoice_Date": date(2026, 3, 2),
                    "Invoice_Amount": Decimal("450.00"),
                },
            ],
        )
        put(
            conn,
            s.ar_invoice_lines,
            [
                {
                    "Company_Code": CO,
                    "Invoice_Or_Transaction": pad("ST4401", 10),
                    "Line_Number": n,
                    "Detail_Description": pad(d, 30),
                    "Line_Extension": Decimal(a),
                }
                for n, d, a in [(2, "Parts", "150.00"), (1, "Labor", "300.00")]
            ],
        )
        put(
            conn,
            s.work_orders,
            [
                {
                    "Company_Code": CO,
                    "WO_Number": pad("J52311", 10),
                    "WO_Reference_Code": "S",
                    "WO_Job_Number": pad("S0001", 10),
                    "Summary_Description": "Annual inspection  ",
                },
            ],
        )
        put(
            conn,
            s.pre_time,
            [
                {
                    "Company_Code": CO,
                    "Employee_Code": "E100",
                    "Batch_Code": "20260302",
                    "Pay_Type": "R",
                    "Work_Date": date(2026, 3, 2),
                    "Hours_Employee": Decimal("2.5"),
                    "Message": pad("ST-TC77-1", 30),
                },
                {
                    "Company_Code": CO,
                    "Employee_Code": "E100",
                    "Batch_Code": "20260302",
                    "Pay_Type": "R",
                    "Work_Date": date(2026, 3, 2),
                    "Hours_Employee": Decimal("1.0"),
                    "Message": pad("ST-TC77-2", 30),
                },
            ],
        )
        put(conn, s.terms, [{"Company_Code": CO, "Terms_Code": "N", "Description": "Net 30"}])
        put(conn, s.sales_tax_codes, [{"Company_Code": CO, "Sales_Tax_Code": pad("NC", 15)}])
        put(conn, s.gl_accounts, [{"Company_Code": "XYZ", "GL_Account": "4000"}])
        put(conn, s.cost_centers, [{"Company_Code": CO, "Cost_Center": pad("100", 10)}])
    engine.dispose()
    return url


@pytest.fixture
def reader(db_url: str) -> Iterator[InfoLinkReader]:
    with InfoLinkReader(db_url, CO) as r:
        yield r


def test_find_customer_trims_and_keeps_null(reader: InfoLinkReader) -> None:
    row = reader.find_customer("ACME")
    assert row is not None
    assert row["Customer_Code"] == "ACME"
    assert row["Name"] == "Acme Fire"
    assert row["City"] == "Raleigh"
    assert row["Phone"] is None
    assert reader.find_customer("  ACME ") == row  # callers' padding is ignored too
    assert reader.find_customer("NOPE") is None


def test_queries_are_company_scoped(db_url: str, reader: InfoLinkReader) -> None:
    assert reader.find_customer("OTHER") is None
    with InfoLinkReader(db_url, "XYZ") as other:
        found = other.find_customer("OTHER")
        assert found is not None and found["Name"] == "Other co"
        assert other.find_customer("ACME") is None


def test_find_site_job_employee_work_order(reader: InfoLinkReader) -> None:
    site = reader.find_site("S0001")
    assert site is not None and site["Site_Name"] == "Bistro #12" and site["Company_Code"] == CO
    job = reader.find_job("ST-10452")
    assert job is not None and job["Job_Description"] == "Roof"
    assert job["Est_Start_Date"] == date(2026, 3, 2)
    emp = reader.find_employee("E100")
    assert emp is not None and emp["Department_Code"] == "10"
    wo = reader.find_work_order("J52311")
    assert wo is not None and wo["Summary_Description"] == "Annual inspection"
    assert reader.find_job("ST-99999") is None


def test_list_jobs_at_site(reader: InfoLinkReader) -> None:
    jobs = reader.list_jobs_at_site("S0001")
    assert [j["Job_Number"] for j in jobs] == ["ST-10400", "ST-10452"]
    assert jobs[1]["WO_Site"] == "S0001"
    assert reader.list_jobs_at_site("S9999") == []


def test_list_phases_ordered_and_scoped_to_the_job(reader: InfoLinkReader) -> None:
    phases = reader.list_phases("ST-10452")
    assert [(p["Phase_Code"], p["Cost_Type"], p["Description"]) for p in phases] == [
        ("100", "E", "Equip"),
        ("100", "L", "Labor"),
        ("200", "M", "Material"),
    ]
    assert reader.list_phases("NOPE") == []


def test_find_ar_invoice_with_lines(reader: InfoLinkReader) -> None:
    inv = reader.find_ar_invoice("ST4401")
    assert inv is not None
    assert inv["Invoice_Amount"] == Decimal("450.00")
    assert [(line["Line_Number"], line["Detail_Description"]) for line in inv["lines"]] == [
        (1, "Labor"),
        (2, "Parts"),
    ]
    assert reader.find_ar_invoice("ST0000") is None


def test_find_pre_time_by_trimmed_message(reader: InfoLinkReader) -> None:
    rows = reader.find_pre_time("ST-TC77-1")
    assert len(rows) == 1
    assert rows[0]["Hours_Employee"] == Decimal("2.5")
    assert rows[0]["Message"] == "ST-TC77-1"
    assert reader.find_pre_time("ST-TC77") == []


@pytest.mark.parametrize(
    ("kind", "code", "expected"),
    [
        ("terms", "N", True),
        ("terms", "X", False),
        ("sales_tax", "NC", True),
        ("cost_center", "100", True),
        ("gl_account", "4000", False),  # exists, but for another company
        ("customer", "ACME", True),
        ("job", "ST-10452", True),
        ("employee", "E100", True),
        ("employee", "E999", False),
        ("tax_class", "NC", False),
    ],
)
def test_code_exists(reader: InfoLinkReader, kind: str, code: str, expected: bool) -> None:
    assert reader.code_exists(kind, code) is expected


def test_code_exists_covers_every_kind_and_refuses_unknown(reader: InfoLinkReader) -> None:
    for kind in (
        "terms",
        "sales_tax",
        "tax_class",
        "cost_center",
        "gl_account",
        "cost_type",
        "salesperson",
        "pay_type",
        "department",
        "job_type",
        "customer",
        "job",
        "employee",
    ):
        assert kind in CODE_TABLES
        assert reader.code_exists(kind, "NO-SUCH") is False
    with pytest.raises(ValueError, match="unknown code kind 'bogus'"):
        reader.code_exists("bogus", "X")


# --- purchase orders ------------------------------------------------------------------------------
def add_pos(url: str, n_pos: int, lines_per_po: int, *, modified: datetime) -> None:
    engine = create_engine(url)
    with engine.begin() as conn:
        put(
            conn,
            s.po_headers,
            [
                {
                    "Company_Code": CO,
                    "PO_Number": pad(f"PO{i:04d}", 10),
                    "Vendor_Code": pad("V1", 10),
                    "Job_Number": pad("ST-10452", 10),
                    "PO_Date_List1": date(2026, 3, 1),
                    "Status": "O",
                    "Date_Modified": modified,
                }
                for i in range(n_pos)
            ]
            + [
                {
                    "Company_Code": "XYZ",
                    "PO_Number": "PO0000",
                    "Vendor_Code": "V9",
                    "Date_Modified": modified,
                }
            ],
        )
        put(
            conn,
            s.po_details,
            [
                {
                    "Company_Code": CO,
                    "PO_Number": pad(f"PO{i:04d}", 10),
                    "Line_Number": f"{j:03d}",
                    "Item_Code": pad("PIPE-2", 15),
                    "Item_Description": pad(f"Pipe {i}-{j}", 30),
                    "PO_Quantity_List1": Decimal("5.0000"),
                    "Item_Price": Decimal("6.5000"),
                    "Unit_Of_Measure": pad("EA", 3),
                    "Line_Extension_List1": Decimal("32.50"),
                    "Phase_Code": pad("100", 20),
                    "Cost_Type": pad("M", 3),
                    "Line_Status": "O",
                    "Date_Modified": modified,
                }
                for i in range(n_pos)
                for j in range(1, lines_per_po + 1)
            ]
            + [
                {
                    "Company_Code": "XYZ",
                    "PO_Number": "PO0000",
                    "Line_Number": "001",
                    "Date_Modified": modified,
                }
            ],
        )
    engine.dispose()


def test_iter_po_lines_pages_over_more_than_page_size(db_url: str, reader: InfoLinkReader) -> None:
    add_pos(db_url, 7, 3, modified=datetime(2026, 3, 1, 12, 0))
    pages = list(reader.iter_po_lines(None, page_size=5))
    assert [len(p) for p in pages] == [5, 5, 5, 5, 1]
    lines = [line for page in pages for line in page]
    keys = [(line.po_number, line.line_number) for line in lines]
    assert keys == sorted(keys)
    assert len(set(keys)) == 21  # every line once, none from the other company
    first = lines[0]
    assert first == PoLine(
        po_number="PO0000",
        line_number="001",
        vendor_code="V1",
        job_number="ST-10452",
        order_date=date(2026, 3, 1),
        po_status="O",
        item_code="PIPE-2",
        description="Pipe 0-1",
        quantity=Decimal("5"),
        unit_cost=Decimal("6.5"),
        unit_of_measure="EA",
        extension=Decimal("32.5"),
        gl_account=None,
        phase_code="100",
        cost_type="M",
        line_status="O",
        modified_at=datetime(2026, 3, 1, 12, 0),
    )


def test_iter_po_lines_exact_multiple_of_page_size(db_url: str, reader: InfoLinkReader) -> None:
    add_pos(db_url, 2, 2, modified=datetime(2026, 3, 1))
    assert [len(p) for p in reader.iter_po_lines(None, page_size=2)] == [2, 2]


def test_iter_po_lines_changed_since_header_or_line(db_url: str, reader: InfoLinkReader) -> None:
    add_pos(db_url, 3, 2, modified=datetime(2026, 1, 1))
    engine = create_engine(db_url)
    with engine.begin() as conn:
        conn.execute(
            s.po_details.update()
            .where(
                s.po_details.c.PO_Number == pad("PO0001", 10), s.po_details.c.Line_Number == "002"
            )
            .values(Date_Modified=datetime(2026, 2, 10))
        )
        conn.execute(
            s.po_headers.update()
            .where(s.po_headers.c.PO_Number == pad("PO0002", 10))
            .values(Date_Modified=datetime(2026, 2, 5), Status="C")
        )
    engine.dispose()
    changed = [line for page in reader.iter_po_lines(datetime(2026, 2, 1)) for line in page]
    assert [(line.po_number, line.line_number) for line in changed] == [
        ("PO0001", "002"),
        ("PO0002", "001"),
        ("PO0002", "002"),
    ]
    assert changed[0].modified_at == datetime(2026, 2, 10)
    assert changed[1].po_status == "C"
    assert changed[1].modified_at == datetime(2026, 2, 5)
    assert list(reader.iter_po_lines(datetime(2026, 3, 1))) == []


def test_iter_po_lines_refuses_bad_page_size(reader: InfoLinkReader) -> None:
    with pytest.raises(ValueError, match="page_size"):
        next(reader.iter_po_lines(None, page_size=0))


# --- failures ------------------------------------------------------------------------------------
def test_unreachable_sqlite_is_transient(tmp_path: Path) -> None:
    with (
        InfoLinkReader(f"sqlite:///{tmp_path / 'missing' / 'dir' / 'x.sqlite'}", CO) as reader,
        pytest.raises(TransientError, match="Info-Link unreachable"),
    ):
        reader.find_customer("ACME")


def test_unreachable_server_is_transient_without_password() -> None:
    url = "postgresql+psycopg://infolink:Sup3rSecretPw@127.0.0.1:1/spectrum?connect_timeout=2"
    with InfoLinkReader(url, CO) as reader, pytest.raises(TransientError) as info:
        reader.code_exists("terms", "N")
    text = str(info.value)
    assert text.startswith("Info-Link unreachable")
    assert "Sup3rSecretPw" not in text
    assert info.value.__cause__ is None and info.value.__suppress_context__


def test_engine_can_be_injected(db_url: str) -> None:
    engine = create_engine(db_url)
    reader = InfoLinkReader("ignored://", CO, engine=engine)
    assert reader.find_customer("ACME") is not None
    reader.close()  # not ours: the engine stays usable
    with engine.connect():
        pass
    engine.dispose()


def test_bad_configuration() -> None:
    with pytest.raises(ConfigError):
        InfoLinkReader("sqlite://", "  ")
    with pytest.raises(ConfigError) as info:
        InfoLinkReader("not a url :// with secret", CO)
    assert "secret" not in str(info.value)


# --- errors by cause: schema (configuration) vs unreachable (transient) --------------------------
def test_missing_table_is_a_schema_error_not_unreachable(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'empty.sqlite'}"
    create_engine(url).dispose()  # a database without the Info-Link tables
    with InfoLinkReader(url, CO) as reader, pytest.raises(InfoLinkSchemaError) as info:
        reader.find_customer("ACME")
    assert "no such table" in str(info.value)
    assert "unreachable" not in str(info.value)
    assert not isinstance(info.value, TransientError)


def test_missing_column_is_a_schema_error(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'old.sqlite'}"
    engine = create_engine(url)
    s.metadata.create_all(engine)
    with engine.begin() as conn:
        conn.exec_driver_sql('ALTER TABLE "CR_CUSTOMER_MASTER_MC" DROP COLUMN "Sales_Tax_Code"')
    engine.dispose()
    with InfoLinkReader(url, CO) as reader:
        with pytest.raises(InfoLinkSchemaError, match="no such column"):
            reader.find_customer("ACME")
        problems = dict(reader.check_tables())
    assert problems["CR_CUSTOMER_MASTER_MC"] is not None
    assert "Sales_Tax_Code" in (problems["CR_CUSTOMER_MASTER_MC"] or "")
    assert [t for t, p in problems.items() if p] == ["CR_CUSTOMER_MASTER_MC"]


def test_check_tables_reads_every_table(db_url: str) -> None:
    with InfoLinkReader(db_url, CO) as reader:
        result = reader.check_tables()
    assert {t for t, _ in result} == {t.name for t in s.metadata.sorted_tables}
    assert all(p is None for _, p in result)


@pytest.mark.parametrize(
    ("message", "schema"),
    [
        ("(sqlite3.OperationalError) no such column: CR_CUSTOMER_MASTER_MC.Foo", True),
        ("(sqlite3.OperationalError) no such table: JC_JOB_MASTER_MC", True),
        (
            "('42S22', \"[42S22] [Microsoft][ODBC Driver 18 for SQL Server][SQL Server]Invalid "
            "column name 'WO_Site'. (207)\")",
            True,
        ),
        (
            "('42S02', \"[42S02] [Microsoft][ODBC Driver 18 for SQL Server][SQL Server]Invalid "
            "object name 'JC_JOB_MASTER_MC'. (208)\")",
            True,
        ),
        ("(208, b\"Invalid object name 'JC_JOB_MASTER_MC'.DB-Lib error message 20018\")", True),
        ('relation "jc_job_master_mc" does not exist', True),
        (
            "(20009, b'DB-Lib error message 20009, severity 9: Unable to connect: Adaptive Server "
            "is unavailable or does not exist (sql:1433)')",
            False,
        ),
        ("Login timeout expired", False),
        ("connection refused", False),
        ("database is locked", False),
    ],
)
def test_schema_error_messages_by_engine(message: str, schema: bool) -> None:
    assert is_schema_error(message) is schema


# --- drivers: URL forms and a missing driver ------------------------------------------------------
@pytest.mark.parametrize(
    ("url", "driver"),
    [
        ("mssql+pymssql://infolink_ro:pw@sql.example:1433/Spectrum", "pymssql"),
        ("mssql+pymssql://infolink_ro:pw@sql.example/Spectrum?charset=utf8", "pymssql"),
        ("sqlite:///x.sqlite", "pysqlite"),
    ],
)
def test_info_link_url_forms_parse(url: str, driver: str) -> None:
    engine = open_engine(url)  # builds the engine without connecting
    try:
        assert engine.dialect.driver == driver
    finally:
        engine.dispose()


@pytest.mark.parametrize(
    "url",
    [
        "mssql+pyodbc://infolink_ro:pw@sql.example/Spectrum?driver=ODBC+Driver+18+for+SQL+Server",
        "mssql+pyodbc://infolink_ro:pw@SpectrumDSN",
    ],
)
def test_missing_driver_is_one_line_naming_the_extra(
    url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "pyodbc", None)  # not installed, whatever this machine has
    with pytest.raises(ConfigError) as info:
        InfoLinkReader(url, CO)
    text = str(info.value)
    assert "\n" not in text
    assert "pyodbc driver, which is not installed" in text
    assert "stsync[mssql]" in text
    assert "pw@" not in text


def test_missing_pymssql_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pymssql", None)
    with pytest.raises(ConfigError, match=r"pymssql driver.*pip install 'stsync\[mssql\]'"):
        open_engine("mssql+pymssql://u:p@h/db")


def test_unknown_dialect_is_one_line() -> None:
    with pytest.raises(ConfigError, match="dialect 'oracle9'") as info:
        open_engine("oracle9://u:p@h/db")
    assert "\n" not in str(info.value)


def test_the_mssql_extra_and_the_image_carry_a_pip_only_driver() -> None:
    import tomllib

    root = Path(__file__).resolve().parents[2]
    extras = tomllib.loads((root / "pyproject.toml").read_text())["project"][
        "optional-dependencies"
    ]
    assert any(dep.startswith("pymssql") for dep in extras["mssql"])
    assert 'pip install --no-cache-dir ".[mssql]"' in (root / "Dockerfile").read_text()
    assert "stsync[mssql]" in DRIVER_INSTALL["pymssql"]
