"""Checks every Spectrum service shares: the layout (required ``M``, formats and lengths ``I``),
authorization (``A``), reference codes that must be on file, uniqueness and processing windows.

Each problem becomes one message row (code, desc, column) — reference §4: "Multiple errors →
multiple response rows, one per offending column".
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Connection, Dialect, Table

from clients.spectrum.formats import check_value, parse_date, parse_number
from clients.spectrum.services import Field
from sandbox.spectrum import assumptions as assume
from sandbox.spectrum.admin_state import AdminState, Authorization, Module
from sandbox.spectrum.db import Binds, bind_processors, plain_sqlite, run_on_driver
from sandbox.spectrum.soap import Row

#: Vendor text of an authorization failure on a Put service (reference §4, [C responses]).
NOT_AUTHORIZED_TEXT = (
    "The Web Service is not authorized. Authorization ID is not setup in the system."
)
AUTH_COLUMN = "Authorization_ID"


def not_authorized_row() -> Row:
    return ("A", NOT_AUTHORIZED_TEXT, AUTH_COLUMN)


def check_authorization(
    admin: AdminState, authorization_id: str, company: str, service_name: str
) -> tuple[Authorization | None, str]:
    """The Authorization ID if it may call ``service_name`` for ``company`` (blank company: the
    ID's default), with the company in effect; ``(None, company)`` when Spectrum answers ``A``."""
    auth = admin.authorization(authorization_id) if authorization_id else None
    if auth is None or not auth.active:
        return None, company
    company = company or auth.default_company
    if company not in auth.companies or service_name not in auth.services:
        return None, company
    return auth, company


def check_layout(
    fields: Sequence[Field], values: Mapping[str, str], *, strict: bool, where: str = ""
) -> tuple[dict[str, str], list[Row]]:
    """Layout checks for one record: values truncated to Max (silently, reference §5) unless
    ``strict``, then required (``M``) and format (``I``). Returns the clean values and the rows."""
    clean: dict[str, str] = {}
    rows: list[Row] = []
    for f in fields:
        value = values.get(f.name, "")
        if len(value) > f.max_len:
            if strict:
                rows.append(
                    ("I", f"{where}{f.name} is invalid, value {check_value(f, value)}", f.name)
                )
                clean[f.name] = value
                continue
            value = value[: f.max_len]
        clean[f.name] = value
        if value == "":
            if f.required:
                rows.append(("M", f"{where}{f.name} is required", f.name))
            continue
        why = check_value(f, value)
        if why:
            rows.append(("I", f"{where}{f.name} is invalid, value {why}", f.name))
    return clean, rows


def as_date(value: str) -> date | None:
    return parse_date(value) if value else None


def as_decimal(value: str) -> Decimal | None:
    return parse_number(value) if value else None


@dataclass(frozen=True)
class _Lookup:
    """One ``SELECT ... WHERE Company_Code = ? AND <col> = ? ... LIMIT 1``, built once.

    ``stmt`` is the SQLAlchemy form. On SQLite the same query also runs as plain ``sql`` on the
    driver connection: SQLAlchemy spends ~40 us per execute (cache key, execution context, result
    proxy) on a lookup SQLite answers in ~5 us, and validation runs several per record while the
    database lock is held. ``binds``/``results`` are SQLAlchemy's own per-column type processors,
    so both forms bind and return the same values.
    """

    stmt: sa.Select[Any]
    sql: str
    binds: Binds
    names: tuple[str, ...]
    results: tuple[Callable[[Any], Any] | None, ...]


_LOOKUPS: dict[tuple[str, tuple[str, ...], bool, str], _Lookup] = {}


def _lookup(table: Table, columns: tuple[str, ...], *, exists: bool, dialect: Dialect) -> _Lookup:
    """The cached lookup of ``table`` by company and ``columns`` (``exists``: select 1 only)."""
    key = (table.name, columns, exists, dialect.name)
    found = _LOOKUPS.get(key)
    if found is not None:
        return found
    stmt = (sa.select(sa.literal(1)).select_from(table) if exists else sa.select(table)).where(
        table.c.Company_Code == sa.bindparam("p_company")
    )
    for col in columns:
        stmt = stmt.where(table.c[col] == sa.bindparam(f"p_{col}"))
    stmt = stmt.limit(1)
    quote = dialect.identifier_preparer.quote
    where = ("Company_Code", *columns)
    selected = () if exists else tuple(table.c)
    shown = ", ".join(quote(c.name) for c in selected) if selected else "1"
    condition = " AND ".join(f"{quote(c)} = ?" for c in where)
    found = _LOOKUPS[key] = _Lookup(
        stmt=stmt,
        sql=f"SELECT {shown} FROM {quote(table.name)} WHERE {condition} LIMIT 1",
        binds=bind_processors(table, where, dialect),
        names=tuple(c.name for c in selected),
        results=tuple(
            c.type.dialect_impl(dialect).result_processor(dialect, None) for c in selected
        ),
    )
    return found


def _params(company: str, where: Mapping[str, Any]) -> dict[str, Any]:
    params = {f"p_{k}": v for k, v in where.items()}
    params["p_company"] = company
    return params


def _first(
    conn: Connection, table: Table, where: Mapping[str, Any], company: str, *, exists: bool
) -> Any:
    """The first matching row as a column dict (``exists``: any true value), or None."""
    dialect = conn.dialect
    lookup = _lookup(table, tuple(where), exists=exists, dialect=dialect)
    if not plain_sqlite(dialect):
        row = conn.execute(lookup.stmt, _params(company, where)).first()
        return None if row is None else (True if exists else dict(row._mapping))
    raw = run_on_driver(conn, lookup.sql, lookup.binds, [(company, *where.values())]).fetchone()
    if raw is None or exists:
        return raw is not None or None
    return {
        name: value if convert is None or value is None else convert(value)
        for name, convert, value in zip(lookup.names, lookup.results, raw, strict=True)
    }


@dataclass
class Checks:
    """Reference, uniqueness and window checks of one record against the company's tables."""

    conn: Connection
    admin: AdminState
    company: str
    rows: list[Row] = field(default_factory=list)
    #: text put before every description (REST detail lines: "Line 2: ")
    where: str = ""
    _bad: set[str] = field(default_factory=set)

    def add(self, code: str, column: str, desc: str) -> None:
        self.rows.append((code, f"{self.where}{desc}", column))
        self._bad.add(column)

    def extend(self, rows: Sequence[Row]) -> None:
        for code, desc, column in rows:
            self.rows.append((code, desc, column))
            self._bad.add(column)

    def ok(self, column: str) -> bool:
        """No problem reported on ``column`` yet (later checks skip a column already refused)."""
        return column not in self._bad

    def find(self, table: Table, **where: Any) -> dict[str, Any] | None:
        """The first row of ``table`` in this company whose columns equal ``where``."""
        row: dict[str, Any] | None = _first(self.conn, table, where, self.company, exists=False)
        return row

    def exists(self, table: Table, **where: Any) -> bool:
        return _first(self.conn, table, where, self.company, exists=True) is not None

    def ref(
        self,
        column: str,
        value: str,
        table: Table,
        *,
        table_column: str | None = None,
        what: str = "",
    ) -> bool:
        """``value`` must be on file in ``table`` (blank passes). False when refused."""
        if not value or not self.ok(column):
            return True
        if self.exists(table, **{table_column or column: value}):
            return True
        self._not_on_file(column, value, what)
        return False

    def ref_row(
        self,
        column: str,
        value: str,
        table: Table,
        *,
        table_column: str | None = None,
        what: str = "",
    ) -> dict[str, Any] | None:
        """``ref`` that also returns the row on file (None when blank or refused): one query
        where ``ref`` then ``find`` took two."""
        if not value:
            return None
        row = self.find(table, **{table_column or column: value})
        if row is None and self.ok(column):
            self._not_on_file(column, value, what)
        return row

    def _not_on_file(self, column: str, value: str, what: str) -> None:
        """Refuse ``column``: its ``value`` is not in the table it refers to (``I``)."""
        label = what or column.replace("_", " ").lower()
        self.add("I", column, f"{column} is invalid, {label} {value} is not on file")

    def unique(self, column: str, value: str, table: Table) -> bool:
        """An add-only service's key must not exist yet (``I`` "<col> already exists")."""
        if not value or not self.ok(column):
            return True
        if self.exists(table, **{column: value}):
            self.add("I", column, assume.DUPLICATE_MESSAGE.format(column=column))
            return False
        return True

    def in_window(self, module: Module, column: str, value: str) -> bool:
        """A date element must fall in the module's processing-date window (reference §7.4)."""
        if not value or not self.ok(column):
            return True
        window = self.admin.window(module, self.company)
        if window is None:
            self.add("I", column, f"{column} is invalid, {module} processing dates are not set up")
            return False
        d = parse_date(value)
        if not window.contains(d):
            self.add(
                "I",
                column,
                f"{column} is invalid, {value} is outside the {module} processing dates "
                f"({window.describe()})",
            )
            return False
        return True

    def not_negative(self, column: str, value: str) -> bool:
        """Amounts are positive even on credit memos (reference §6)."""
        if not value or not self.ok(column):
            return True
        if parse_number(value) < 0:
            self.add(
                "I",
                column,
                f"{column} is invalid, amounts must be positive "
                "(send a credit memo, Transaction_Type C, with positive amounts)",
            )
            return False
        return True
