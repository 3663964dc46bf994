"""Spectrum's state: the Info-Link tables (``clients.spectrum.infolink_schema``) in SQLite.

The simulator writes these tables exactly as Spectrum's Info-Link view exposes them, so stsync (and
the tests) read the sandbox with the same SQLAlchemy code that reads Info-Link in production.

One sandbox-only table sits beside them: ``SBX_RECORD_EXTRAS`` keeps the layout values that have no
Info-Link column (a customer's Taxable_Flag, a job's UDF2..20 ...) so Get services can return them.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Column, Connection, Engine, MetaData, String, Table, Text, event
from sqlalchemy.pool import StaticPool

from clients.spectrum import infolink_schema
from clients.spectrum.formats import parse_date

sandbox_metadata = MetaData()

extras = Table(
    "SBX_RECORD_EXTRAS",
    sandbox_metadata,
    Column("Table_Name", String(40), nullable=False),
    Column("Company_Code", String(3), nullable=False),
    Column("Record_Key", String(80), nullable=False),
    Column("Data", Text, nullable=False),  # JSON object: element name -> value
)

#: Lookup indexes the simulator's validation needs. Created with plain DDL so the shared metadata
#: (which stsync also uses) stays exactly as the contract module defines it.
_INDEXES: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("ix_sbx_customers", "CR_CUSTOMER_MASTER_MC", ("Company_Code", "Customer_Code")),
    ("ix_sbx_jobs", "JC_JOB_MASTER_MC", ("Company_Code", "Job_Number")),
    ("ix_sbx_phases", "JC_PHASE_MASTER_MC", ("Company_Code", "Job_Number", "Phase_Code")),
    ("ix_sbx_employees", "PR_EMPLOYEE_MASTER_1_MC", ("Company_Code", "Employee_Code")),
    ("ix_sbx_sites", "WO_SITE_MASTER_MC", ("Company_Code", "Site_ID")),
    ("ix_sbx_wos", "WO_WORK_ORDER_HEADER_MC", ("Company_Code", "WO_Number")),
    ("ix_sbx_ar", "CR_INVOICE_HEADER_MC", ("Company_Code", "Invoice_Or_Transaction")),
    ("ix_sbx_ar_lines", "CR_INVOICE_DETAIL_MC", ("Company_Code", "Invoice_Or_Transaction")),
    ("ix_sbx_extras", "SBX_RECORD_EXTRAS", ("Table_Name", "Company_Code", "Record_Key")),
)

_MEMORY_URLS = frozenset({"sqlite://", "sqlite:///:memory:"})


def _all_tables() -> dict[str, Table]:
    return {**infolink_schema.metadata.tables, **sandbox_metadata.tables}


def _coerce(table: Table, column: str, value: Any) -> Any:
    """Seed rows may come from JSON: accept ISO or ``MM/DD/CCYY`` dates and numeric text."""
    if value is None:
        return None
    col = table.c[column]
    if isinstance(col.type, sa.DateTime):
        if isinstance(value, str):
            return datetime.fromisoformat(value)
        return value
    if isinstance(col.type, sa.Date):
        if isinstance(value, datetime):
            return value.date()
        if isinstance(value, str):
            return date.fromisoformat(value) if "-" in value[:5] else parse_date(value)
        return value
    if isinstance(col.type, sa.Numeric) and isinstance(value, str | int | float):
        return Decimal(str(value))
    return value


class SpectrumDB:
    """The sandbox's Spectrum database: every Info-Link table plus the sandbox's extras table.

    ``sqlite://`` keeps everything in memory on one shared connection (threads included);
    a file URL runs SQLite in WAL mode so another process (stsync) can read while the sandbox
    writes. All access from this process goes through one lock, so each call's transaction is
    serialised and validation-then-write cannot race.
    """

    def __init__(self, url: str = "sqlite://") -> None:
        self.url = url
        self.lock = threading.RLock()
        self._baseline: dict[str, list[dict[str, Any]]] = {}
        if url in _MEMORY_URLS:
            self.engine: Engine = sa.create_engine(
                url, poolclass=StaticPool, connect_args={"check_same_thread": False}
            )
        elif url.startswith("sqlite"):
            path = sa.make_url(url).database
            if path:
                Path(path).parent.mkdir(parents=True, exist_ok=True)
            self.engine = sa.create_engine(
                url, connect_args={"check_same_thread": False, "timeout": 30}
            )
            event.listen(self.engine, "connect", _sqlite_wal)
        else:
            self.engine = sa.create_engine(url)
        infolink_schema.metadata.create_all(self.engine)
        sandbox_metadata.create_all(self.engine)
        with self.engine.begin() as conn:
            for name, table, cols in _INDEXES:
                quoted = ", ".join(f'"{c}"' for c in cols)
                conn.execute(sa.text(f'CREATE INDEX IF NOT EXISTS {name} ON "{table}" ({quoted})'))

    @staticmethod
    def table(name: str) -> Table:
        """The table called ``name`` (KeyError naming the known tables otherwise)."""
        tables = _all_tables()
        if name not in tables:
            raise KeyError(f"no Spectrum table {name!r}; known: {', '.join(sorted(tables))}")
        return tables[name]

    @contextmanager
    def transaction(self) -> Iterator[Connection]:
        """One serialised transaction: committed when the block ends, rolled back on error."""
        with self.lock, self.engine.begin() as conn:
            yield conn

    def load(
        self, rows: Mapping[str, Sequence[Mapping[str, Any]]], *, baseline: bool = False
    ) -> None:
        """Insert rows (table name -> column dicts). ``baseline=True`` also remembers them, so the
        ``/_sandbox/reset`` endpoint can empty the tables and put this seed back."""
        with self.transaction() as conn:
            for name, table_rows in rows.items():
                table = self.table(name)
                prepared = []
                for i, row in enumerate(table_rows):
                    unknown = sorted(set(row) - set(table.c.keys()))
                    if unknown:
                        raise ValueError(f"{name} row {i}: unknown column(s) {', '.join(unknown)}")
                    prepared.append({k: _coerce(table, k, v) for k, v in row.items()})
                insert_rows(conn, table, prepared)
        if baseline:
            for name, table_rows in rows.items():
                self._baseline.setdefault(name, []).extend(dict(r) for r in table_rows)

    def reset(self) -> None:
        """Empty every table (the remembered baseline is kept; see ``restore_baseline``)."""
        with self.transaction() as conn:
            for table in reversed(list(_all_tables().values())):
                conn.execute(table.delete())

    def restore_baseline(self) -> None:
        """Empty every table and load the rows last loaded with ``baseline=True``."""
        self.reset()
        if self._baseline:
            self.load(self._baseline)

    def count(self, table: str, **where: Any) -> int:
        """Rows of ``table`` whose columns equal ``where``."""
        t = self.table(table)
        stmt = sa.select(sa.func.count()).select_from(t).where(*_conditions(t, where))
        with self.transaction() as conn:
            return int(conn.execute(stmt).scalar_one())

    def rows(self, table: str, **where: Any) -> list[dict[str, Any]]:
        """Rows of ``table`` whose columns equal ``where``, in insertion order."""
        t = self.table(table)
        stmt = sa.select(t).where(*_conditions(t, where))
        if self.engine.dialect.name == "sqlite":
            stmt = stmt.order_by(sa.literal_column("rowid"))
        with self.transaction() as conn:
            return [dict(r._mapping) for r in conn.execute(stmt)]

    def dispose(self) -> None:
        """Close pooled connections (file databases keep their data)."""
        self.engine.dispose()


def _conditions(table: Table, where: Mapping[str, Any]) -> list[sa.ColumnElement[bool]]:
    conds: list[sa.ColumnElement[bool]] = []
    for k, v in where.items():
        if k not in table.c:
            raise KeyError(f"{table.name} has no column {k!r}")
        conds.append(table.c[k] == _coerce(table, k, v))
    return conds


#: SQLAlchemy's bind processor of each column, in order (None: the value goes as it is)
Binds = tuple[Callable[[Any], Any] | None, ...]


def plain_sqlite(dialect: Any) -> bool:
    """Plain SQL with ``?`` placeholders runs on this dialect's driver connection (SQLite)."""
    return bool(dialect.name == "sqlite" and dialect.paramstyle == "qmark")


def bind_processors(table: Table, names: Sequence[str], dialect: Any) -> Binds:
    """SQLAlchemy's bind processor of each column ``names`` of ``table`` on ``dialect``."""
    return tuple(table.c[k].type.dialect_impl(dialect).bind_processor(dialect) for k in names)


def run_on_driver(
    conn: Connection, sql: str, binds: Binds, rows: Sequence[Sequence[Any]], *, many: bool = False
) -> Any:
    """``sql`` on ``conn``'s driver connection, inside its transaction, with ``rows`` (one row of
    values unless ``many``) converted by ``binds`` as SQLAlchemy would convert them: the same
    stored values for a fraction of SQLAlchemy's per-statement cost (the simulator's writes and
    validation look-ups run under the database lock). Returns the driver's cursor."""
    driver = conn.connection.driver_connection
    assert driver is not None  # an open Connection always has one
    params = [
        [v if b is None or v is None else b(v) for b, v in zip(binds, row, strict=True)]
        for row in rows
    ]
    return driver.executemany(sql, params) if many else driver.execute(sql, params[0])


_INSERTS: dict[tuple[str, tuple[str, ...], str], tuple[str, Binds] | None] = {}


def _driver_insert(table: Table, keys: tuple[str, ...], dialect: Any) -> tuple[str, Binds] | None:
    """``INSERT INTO table (keys) VALUES (?, ...)`` and each key's bind processor, built once;
    None when SQLAlchemy must run the insert (not SQLite, or a column default to apply)."""
    cache_key = (table.name, keys, dialect.name)
    if cache_key in _INSERTS:
        return _INSERTS[cache_key]
    plain = plain_sqlite(dialect)
    if any(c.default is not None or c.server_default is not None for c in table.c):
        plain = False
    found = None
    if plain:
        quote = dialect.identifier_preparer.quote
        sql = (
            f"INSERT INTO {quote(table.name)} ({', '.join(quote(k) for k in keys)}) "
            f"VALUES ({', '.join('?' for _ in keys)})"
        )
        found = (sql, bind_processors(table, keys, dialect))
    _INSERTS[cache_key] = found
    return found


def insert_rows(conn: Connection, table: Table, rows: Sequence[Mapping[str, Any]]) -> None:
    """Insert ``rows`` (column dicts, in order) inside ``conn``'s transaction, one executemany per
    run of rows that share their keys. On SQLite, for tables without column defaults, the insert
    runs on the driver connection with SQLAlchemy's own bind processors: the same stored values
    for a fraction of the per-statement cost (the write path runs under the database lock)."""
    start = 0
    for end in range(1, len(rows) + 1):
        if end < len(rows) and rows[end].keys() == rows[start].keys():
            continue
        batch = rows[start:end]
        keys = tuple(batch[0])
        plain = _driver_insert(table, keys, conn.dialect)
        if plain is None:
            conn.execute(table.insert(), list(batch))
        else:
            sql, binds = plain
            run_on_driver(conn, sql, binds, [list(row.values()) for row in batch], many=True)
        start = end


_UPDATES: dict[tuple[str, tuple[str, ...], tuple[str, ...], str], tuple[str, Binds] | None] = {}


def update_rows(
    conn: Connection, table: Table, where: Mapping[str, Any], values: Mapping[str, Any]
) -> None:
    """``UPDATE table SET values WHERE <column> = <value> ...`` inside ``conn``'s transaction.

    The statement for each (where columns, set columns) pair is built once; on SQLite it runs on
    the driver connection with SQLAlchemy's bind processors (as ``insert_rows`` does), otherwise
    (or when a column has an on-update default) through SQLAlchemy."""
    if not values:
        return
    dialect = conn.dialect
    key = (table.name, tuple(where), tuple(values), dialect.name)
    if key not in _UPDATES:
        plain: tuple[str, Binds] | None = None
        simple = not any(c.onupdate is not None or c.server_onupdate is not None for c in table.c)
        if simple and plain_sqlite(dialect):
            quote = dialect.identifier_preparer.quote
            assigned = ", ".join(f"{quote(k)} = ?" for k in values)
            condition = " AND ".join(f"{quote(k)} = ?" for k in where)
            plain = (
                f"UPDATE {quote(table.name)} SET {assigned} WHERE {condition}",
                bind_processors(table, (*values, *where), dialect),
            )
        _UPDATES[key] = plain
    plain = _UPDATES[key]
    if plain is None or any(v is None for v in where.values()):  # `= NULL` matches nothing
        stmt = table.update().where(*(table.c[k] == v for k, v in where.items())).values(**values)
        conn.execute(stmt)
        return
    sql, binds = plain
    run_on_driver(conn, sql, binds, [(*values.values(), *where.values())])


def _sqlite_wal(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.close()


# --- extras: values that have no Info-Link column -------------------------------------------------


def read_extras(conn: Connection, table: str, company: str, key: str) -> dict[str, str]:
    """The extra values kept for one record (empty when none)."""
    row = conn.execute(
        sa.select(extras.c.Data).where(
            extras.c.Table_Name == table,
            extras.c.Company_Code == company,
            extras.c.Record_Key == key,
        )
    ).first()
    return dict(json.loads(row[0])) if row else {}


def all_extras(conn: Connection, table: str, company: str) -> dict[str, dict[str, str]]:
    """Extra values of every record of ``table`` in ``company``, by record key."""
    result = conn.execute(
        sa.select(extras.c.Record_Key, extras.c.Data).where(
            extras.c.Table_Name == table, extras.c.Company_Code == company
        )
    )
    return {key: dict(json.loads(data)) for key, data in result}


def merge_extras(
    conn: Connection, table: str, company: str, key: str, values: Mapping[str, str]
) -> None:
    """Store non-blank ``values`` over what is kept (blank never overwrites, like Spectrum)."""
    new = {k: v for k, v in values.items() if v != ""}
    if not new:
        return
    where = (
        extras.c.Table_Name == table,
        extras.c.Company_Code == company,
        extras.c.Record_Key == key,
    )
    row = conn.execute(sa.select(extras.c.Data).where(*where)).first()
    if row is None:
        conn.execute(
            extras.insert().values(
                Table_Name=table, Company_Code=company, Record_Key=key, Data=json.dumps(new)
            )
        )
    else:
        merged = {**json.loads(row[0]), **new}
        conn.execute(extras.update().where(*where).values(Data=json.dumps(merged)))
