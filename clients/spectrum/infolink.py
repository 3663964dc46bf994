"""Read-only access to Spectrum's Info-Link SQL tables (reference §11), over SQLAlchemy Core.

Integrations write through Data Exchange but read Spectrum's state here: whether a customer, site,
job, invoice or pre-time entry already exists (create-or-adopt), reference codes for ``config
check``, and purchase-order lines for F9. Every query is scoped to one company; every string comes
back trimmed (Info-Link columns are space-padded ``CHAR``), ``NULL`` stays ``None``.

Errors are classified by cause: a database that cannot be reached (refused, timed out, locked)
raises ``TransientError``; a missing table or column (SQLite ``no such table/column``, SQL Server
``Invalid object name`` / ``Invalid column name``, PostgreSQL ``does not exist``) is a configuration
problem, ``InfoLinkSchemaError`` (permanent); a URL whose driver is not installed is one
``ConfigError`` line naming the extra to install. The URL's password never appears in any of them.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from datetime import datetime
from decimal import Decimal
from types import TracebackType
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Engine,
    Select,
    Table,
    and_,
    create_engine,
    func,
    or_,
    select,
)
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import (
    ArgumentError,
    DBAPIError,
    InterfaceError,
    NoSuchModuleError,
    OperationalError,
)
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

from clients.errors import ConfigError, InfoLinkSchemaError, PermanentError, TransientError
from clients.http import Redactor
from clients.spectrum import infolink_schema as s
from clients.spectrum.po_models import PoLine

#: ``code_exists`` kinds → (table, code column)
CODE_TABLES: dict[str, tuple[Table, str]] = {
    "terms": (s.terms, "Terms_Code"),
    "sales_tax": (s.sales_tax_codes, "Sales_Tax_Code"),
    "tax_class": (s.tax_classes, "Tax_Class_Code"),
    "cost_center": (s.cost_centers, "Cost_Center"),
    "gl_account": (s.gl_accounts, "GL_Account"),
    "cost_type": (s.cost_types, "Cost_Type"),
    "salesperson": (s.salespersons, "Salesperson_Code"),
    "pay_type": (s.pay_types, "Pay_Type"),
    "department": (s.departments, "Department_Code"),
    "job_type": (s.job_types, "Job_Type"),
    "customer": (s.customers, "Customer_Code"),
    "job": (s.jobs, "Job_Number"),
    "employee": (s.employees, "Employee_Code"),
    "site": (s.sites, "Site_ID"),
    "vendor": (s.vendors, "Vendor_Code"),
}


#: How to install the DBAPI driver of an Info-Link URL (``dialect+driver://``).
DRIVER_INSTALL: dict[str, str] = {
    "pymssql": "pip install 'stsync[mssql]'",
    "pyodbc": (
        "pip install pyodbc, plus Microsoft's ODBC Driver 18 for SQL Server "
        "(or use mssql+pymssql:// with pip install 'stsync[mssql]')"
    ),
}

#: Database messages that mean "a table or column stsync reads is not there" (by engine).
_SCHEMA_ERRORS = re.compile(
    r"no such (table|column)"  # SQLite
    r"|invalid (object|column) name"  # SQL Server (pyodbc 42S02/42S22, pymssql 208/207)
    r"|(relation|column) \S+ does not exist"  # PostgreSQL
    r"|unknown column",  # MySQL
    re.IGNORECASE,
)


def is_schema_error(message: str) -> bool:
    """Whether a database error message says a table or column is missing."""
    return _SCHEMA_ERRORS.search(message) is not None


def open_engine(url: str | URL) -> Engine:
    """An engine for an Info-Link URL, or one ``ConfigError`` line saying what to fix.

    Nothing is connected here; a missing driver or an unknown dialect is found now, so the worker
    and ``stsync doctor`` fail with a sentence instead of a traceback.
    """
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise ConfigError(
            "the Info-Link URL is not a valid SQLAlchemy URL "
            "(expected e.g. mssql+pymssql://user:password@host:1433/db)",
            field="infolink_url",
        ) from None
    try:
        return create_engine(parsed, pool_pre_ping=True)
    except NoSuchModuleError:
        raise ConfigError(
            f"the Info-Link URL's dialect {parsed.drivername!r} is unknown "
            "(expected mssql+pymssql:// or mssql+pyodbc://)",
            field="infolink_url",
        ) from None
    except ImportError as exc:
        driver = parsed.get_driver_name()
        how = DRIVER_INSTALL.get(driver, f"pip install {driver}")
        raise ConfigError(
            f"the Info-Link URL uses the {driver} driver, which is not installed "
            f"({exc.name or driver}): {how}",
            field="infolink_url",
            value=driver,
        ) from None


def _t(col: ColumnElement[Any]) -> ColumnElement[Any]:
    """The column without CHAR padding (the way integrators compare Info-Link keys)."""
    return func.ltrim(func.rtrim(col))


def _trimmed(row: Mapping[Any, Any]) -> dict[str, Any]:
    return {str(k): v.strip() if isinstance(v, str) else v for k, v in row.items()}


def _decimal(value: Any) -> Decimal | None:
    if value is None:
        return None
    return value if isinstance(value, Decimal) else Decimal(str(value))


class InfoLinkReader:
    """Company-scoped reads of one Info-Link database. Close it (or use ``with``) when done."""

    def __init__(self, url: str, company_code: str, *, engine: Engine | None = None) -> None:
        if not company_code.strip():
            raise ConfigError("InfoLinkReader needs a company_code")
        self._company = company_code.strip()
        self._redact = Redactor()
        if engine is None:
            engine = open_engine(url)
            password = engine.url.password
            self._redact.add(password if isinstance(password, str) else None)
            self._owns_engine = True
        else:
            self._owns_engine = False
        self._engine = engine

    def close(self) -> None:
        if self._owns_engine:
            self._engine.dispose()

    def __enter__(self) -> InfoLinkReader:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # --- plumbing ---------------------------------------------------------------------------------
    def _rows(self, stmt: Select[Any]) -> list[dict[str, Any]]:
        try:
            with self._engine.connect() as conn:
                return [_trimmed(r._mapping) for r in conn.execute(stmt)]
        except DBAPIError as exc:
            reason = self._reason(exc)
            if is_schema_error(reason):
                raise InfoLinkSchemaError(
                    f"Info-Link lacks a table or column stsync reads ({reason}): check the "
                    "connection's infolink_url points at the company's Info-Link database and "
                    "its login may read every table `stsync doctor` lists"
                ) from None
            raise self._classified(exc, reason) from None
        except PoolTimeoutError as exc:
            raise TransientError(f"Info-Link unreachable: {self._reason(exc)}") from None

    @staticmethod
    def _classified(exc: DBAPIError, reason: str) -> Exception:
        if isinstance(exc, OperationalError | InterfaceError) or exc.connection_invalidated:
            return TransientError(f"Info-Link unreachable: {reason}")
        return PermanentError(f"Info-Link query failed: {reason}")

    def check_tables(self) -> list[tuple[str, str | None]]:
        """``(table, problem or None)`` for every Info-Link table stsync reads (``stsync doctor``).

        Reads one row of each with every column stsync uses, so a missing column shows too.
        """
        out: list[tuple[str, str | None]] = []
        for table in s.metadata.sorted_tables:
            try:
                self._rows(select(table).limit(1))
            except (TransientError, PermanentError) as exc:
                out.append((table.name, str(exc)))
            else:
                out.append((table.name, None))
        return out

    def _reason(self, exc: Exception) -> str:
        orig = getattr(exc, "orig", None)
        text = str(orig if orig is not None else exc).strip().splitlines()
        return self._redact(text[0] if text else type(exc).__name__)[:300]

    def _co(self, table: Table) -> ColumnElement[bool]:
        return _t(table.c.Company_Code) == self._company

    def _find(self, table: Table, column: str, value: str) -> dict[str, Any] | None:
        rows = self._rows(
            select(table).where(self._co(table), _t(table.c[column]) == value.strip()).limit(1)
        )
        return rows[0] if rows else None

    # --- records ----------------------------------------------------------------------------------
    def find_customer(self, code: str) -> dict[str, Any] | None:
        return self._find(s.customers, "Customer_Code", code)

    def find_site(self, site_id: str) -> dict[str, Any] | None:
        return self._find(s.sites, "Site_ID", site_id)

    def list_customers(self) -> list[dict[str, Any]]:
        """Every AR customer of the company, by code (matching by name: links, stale ids)."""
        c = s.customers
        return self._rows(select(c).where(self._co(c)).order_by(_t(c.c.Customer_Code)))

    def list_sites(self, customer_code: str | None = None) -> list[dict[str, Any]]:
        """WO sites of the company (of one customer when given), by site id."""
        t = s.sites
        stmt = select(t).where(self._co(t))
        if customer_code is not None:
            stmt = stmt.where(_t(t.c.Site_Customer_Code) == customer_code.strip())
        return self._rows(stmt.order_by(_t(t.c.Site_ID)))

    def list_jobs(self) -> list[dict[str, Any]]:
        """Every JC job of the company, by number."""
        j = s.jobs
        return self._rows(select(j).where(self._co(j)).order_by(_t(j.c.Job_Number)))

    def find_job(self, job_number: str) -> dict[str, Any] | None:
        return self._find(s.jobs, "Job_Number", job_number)

    def list_jobs_at_site(self, site_id: str) -> list[dict[str, Any]]:
        """Jobs whose ``WO_Site`` is ``site_id``, by job number (F5 job-from-location)."""
        j = s.jobs
        return self._rows(
            select(j)
            .where(self._co(j), _t(j.c.WO_Site) == site_id.strip())
            .order_by(_t(j.c.Job_Number))
        )

    def list_phases(self, job_number: str) -> list[dict[str, Any]]:
        p = s.phases
        return self._rows(
            select(p)
            .where(self._co(p), _t(p.c.Job_Number) == job_number.strip())
            .order_by(_t(p.c.Phase_Code), _t(p.c.Cost_Type))
        )

    def find_employee(self, code: str) -> dict[str, Any] | None:
        return self._find(s.employees, "Employee_Code", code)

    def has_ar_invoice_for_job(self, job_number: str) -> bool:
        """Whether an AR invoice names ``job_number`` (its AR contract is in use)."""
        h = s.ar_invoices
        rows = self._rows(
            select(h.c.Invoice_Or_Transaction)
            .where(self._co(h), _t(h.c.Job_Number) == job_number.strip())
            .limit(1)
        )
        return bool(rows)

    def find_ar_invoice(self, number: str) -> dict[str, Any] | None:
        """The invoice header with its ``lines`` (by line number), or None."""
        header = self._find(s.ar_invoices, "Invoice_Or_Transaction", number)
        if header is None:
            return None
        d = s.ar_invoice_lines
        header["lines"] = self._rows(
            select(d)
            .where(self._co(d), _t(d.c.Invoice_Or_Transaction) == number.strip())
            .order_by(d.c.Line_Number)
        )
        return header

    def find_work_order(self, wo_number: str) -> dict[str, Any] | None:
        return self._find(s.work_orders, "WO_Number", wo_number)

    def find_pre_time(self, message_marker: str) -> list[dict[str, Any]]:
        """Pre-time rows whose ``Message`` is ``message_marker`` (how a posted entry is found)."""
        p = s.pre_time
        return self._rows(
            select(p)
            .where(self._co(p), _t(p.c.Message) == message_marker.strip())
            .order_by(p.c.Row_Id)
        )

    def code_exists(self, kind: str, code: str) -> bool:
        """Whether ``code`` is on file for this company in the ``kind`` list (``CODE_TABLES``)."""
        try:
            table, column = CODE_TABLES[kind]
        except KeyError:
            raise ValueError(
                f"unknown code kind {kind!r}; known: {', '.join(sorted(CODE_TABLES))}"
            ) from None
        return self._find(table, column, code) is not None

    # --- purchase orders (F9) ---------------------------------------------------------------------
    def iter_po_lines(
        self, changed_since: datetime | None, page_size: int = 500
    ) -> Iterator[list[PoLine]]:
        """PO lines of this company, header joined, in pages ordered by (PO number, line number).

        ``changed_since`` keeps lines whose header or line ``Date_Modified`` is at or after it
        (naive, in the Info-Link server's time, as the column holds it). Pages are keyset-paged,
        so lines changing while the iteration runs never shift a page.
        """
        if page_size < 1:
            raise ValueError("page_size must be at least 1")
        h, d = s.po_headers, s.po_details
        po, line = _t(d.c.PO_Number), _t(d.c.Line_Number)
        base = (
            select(
                po.label("po_number"),
                line.label("line_number"),
                h.c.Vendor_Code,
                h.c.Job_Number,
                h.c.PO_Date_List1,
                h.c.Status,
                d.c.Item_Code,
                d.c.Item_Description,
                d.c.PO_Quantity_List1,
                d.c.Item_Price,
                d.c.Unit_Of_Measure,
                d.c.Line_Extension_List1,
                d.c.GL_Account,
                d.c.Phase_Code,
                d.c.Cost_Type,
                d.c.Line_Status,
                h.c.Date_Modified.label("header_modified"),
                d.c.Date_Modified.label("line_modified"),
            )
            .select_from(
                d.join(
                    h,
                    and_(
                        _t(h.c.Company_Code) == _t(d.c.Company_Code),
                        _t(h.c.PO_Number) == po,
                    ),
                )
            )
            .where(self._co(d))
        )
        if changed_since is not None:
            base = base.where(
                or_(h.c.Date_Modified >= changed_since, d.c.Date_Modified >= changed_since)
            )
        after: tuple[str, str] | None = None
        while True:
            stmt = base
            if after is not None:
                stmt = stmt.where(or_(po > after[0], and_(po == after[0], line > after[1])))
            rows = self._rows(stmt.order_by(po, line).limit(page_size))
            if not rows:
                return
            yield [self._po_line(r) for r in rows]
            if len(rows) < page_size:
                return
            after = (rows[-1]["po_number"], rows[-1]["line_number"])

    def po_line_keys(self) -> set[tuple[str, str]]:
        """``(PO number, line number)`` of every PO line Spectrum holds now (keys only: finds the
        lines deleted in Spectrum, which no ``Date_Modified`` shows, without rereading the POs)."""
        d = s.po_details
        rows = self._rows(
            select(_t(d.c.PO_Number).label("po"), _t(d.c.Line_Number).label("ln")).where(
                self._co(d)
            )
        )
        return {(str(r["po"]), str(r["ln"])) for r in rows}

    @staticmethod
    def _po_line(r: Mapping[str, Any]) -> PoLine:
        stamps = [t for t in (r["header_modified"], r["line_modified"]) if t is not None]
        return PoLine(
            po_number=r["po_number"],
            line_number=r["line_number"],
            vendor_code=r["Vendor_Code"],
            job_number=r["Job_Number"],
            order_date=r["PO_Date_List1"],
            po_status=r["Status"],
            item_code=r["Item_Code"],
            description=r["Item_Description"],
            quantity=_decimal(r["PO_Quantity_List1"]) or Decimal(0),
            unit_cost=_decimal(r["Item_Price"]) or Decimal(0),
            unit_of_measure=r["Unit_Of_Measure"],
            extension=_decimal(r["Line_Extension_List1"]),
            gl_account=r["GL_Account"],
            phase_code=r["Phase_Code"],
            cost_type=r["Cost_Type"],
            line_status=r["Line_Status"],
            modified_at=max(stamps) if stamps else None,
        )
