"""The ledger: the one place that decides whether a record was synced (DESIGN.md convention 4).

One row per ``(connection, record_type, source_id)`` under a UNIQUE constraint holds the Spectrum
key, status, payload digest, start counts, the last finished step and the last error. Workers
*claim* a row atomically (a conditional UPDATE, never check-then-insert), so concurrent syncs of one
record are serialised and a crashed holder is detected. Codes are allocated from per-connection
counters and stored on the row *before* the remote write, so a retry re-uses the same key and can
adopt a record that Spectrum already created (create-or-adopt). Every external call is written to
``audit_event`` in its own transaction (F19).

Runs on SQLite (WAL, busy timeout) and PostgreSQL alike; the tests run both.
"""

from __future__ import annotations

import json
import os
import socket
import weakref
from collections.abc import Callable, Hashable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Any, TypeVar

import psutil
from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    DateTime,
    Engine,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    and_,
    bindparam,
    create_engine,
    event,
    func,
    or_,
    select,
    update,
)
from sqlalchemy import exc as sqlalchemy_exc
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection
from sqlalchemy.pool import NullPool
from sqlalchemy.sql.elements import ClauseElement

from clients.errors import PermanentError

metadata = MetaData()

_T = TypeVar("_T")


class Status(StrEnum):
    PENDING = "pending"  # seen, not (yet) synced; also "will retry" (due at next_attempt_at)
    #: Celery's retries ran out on a transient cause: the re-enqueuer tries again at
    #: ``next_attempt_at`` (growing delays) until ``reliability.retry_later_period_s`` has passed
    RETRY_LATER = "retry_later"
    IN_FLIGHT = "in_flight"  # a worker holds the claim
    DONE = "done"
    FAILED = "failed"  # needs a person (reason in last_error)
    SKIPPED = "skipped"  # deliberately not synced (reason in last_error)
    UNKNOWN = "unknown"  # a write whose outcome cannot be known; a person must check


TERMINAL = frozenset({Status.DONE, Status.FAILED, Status.SKIPPED, Status.UNKNOWN})
#: rows that must always have something queued or scheduled for them (a due time)
WAITING = (Status.PENDING, Status.RETRY_LATER)
#: a pending row nothing settled is due again this long after it was last touched (the worker
#: context sets it from ``reliability.pending_due_after_s``)
DEFAULT_PENDING_GRACE_S = 900.0


def utcnow() -> datetime:
    return datetime.now(UTC)


sync_record = Table(
    "sync_record",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("connection", String(64), nullable=False),
    Column("record_type", String(32), nullable=False),
    Column("source_id", String(64), nullable=False),
    Column("status", String(16), nullable=False, default=Status.PENDING.value),
    Column("spectrum_key", String(64)),
    Column("payload_digest", String(64)),
    Column("step", String(64)),
    Column("state", JSON, nullable=False, default=dict),
    Column("attempts", Integer, nullable=False, default=0),
    Column("crashes", Integer, nullable=False, default=0),
    Column("error_kind", String(32)),
    Column("last_error", Text),
    Column("lease_owner", String(128)),
    Column("lease_until", DateTime(timezone=True)),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Column("done_at", DateTime(timezone=True)),
    #: when the re-enqueuer queues this row again if nothing settled it (pending, retry_later)
    Column("next_attempt_at", DateTime(timezone=True)),
    #: first transient failure of the current streak (the retry_later period counts from it)
    Column("retry_since", DateTime(timezone=True)),
    #: retry_later rounds so far in the current streak (picks the next delay)
    Column("retry_rounds", Integer, nullable=False, default=0),
    #: the prerequisite a row failed for waits on (``"job:123"``), copied from its state by
    #: ``Ledger.mark``: what ``Ledger.waiting`` finds the waiters by when that prerequisite lands
    Column("waits_on", String(128)),
    UniqueConstraint("connection", "record_type", "source_id", name="uq_sync_record_key"),
    Index("ix_sync_record_status", "connection", "status"),
    Index("ix_sync_record_waits_on", "connection", "waits_on"),
    Index("ix_sync_record_due", "status", "next_attempt_at"),
    Index("ix_sync_record_spectrum_key", "connection", "record_type", "spectrum_key"),
)

code_counter = Table(
    "code_counter",
    metadata,
    Column("connection", String(64), primary_key=True),
    Column("kind", String(32), primary_key=True),
    Column("next_value", BigInteger, nullable=False),
)

audit_event = Table(
    "audit_event",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("at", DateTime(timezone=True), nullable=False),
    Column("connection", String(64)),
    Column("record_type", String(32)),
    Column("source_id", String(64)),
    Column("system", String(16), nullable=False),
    Column("service", String(64), nullable=False),
    Column("method", String(8)),
    Column("request_digest", String(64)),
    Column("outcome", String(16), nullable=False),
    Column("status_code", Integer),
    Column("duration_ms", Float),
    Column("spectrum_key", String(64)),
    Column("detail", Text),
    Index("ix_audit_record", "connection", "record_type", "source_id"),
)

watermark = Table(
    "watermark",
    metadata,
    Column("connection", String(64), primary_key=True),
    Column("name", String(64), primary_key=True),
    Column("value", String(64), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

#: durable acknowledgement (issue 17): one row per record a webhook announced, written by ingest
#: before it answers 2xx; Redis only carries the wake-up. The task deletes it when it has run
#: (any final outcome); the re-enqueuer queues rows still here after ``due_at``.
inbox = Table(
    "inbox",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("connection", String(64), nullable=False),
    Column("task", String(64), nullable=False),
    Column("source_id", String(64), nullable=False),
    Column("received_at", DateTime(timezone=True), nullable=False),
    Column("due_at", DateTime(timezone=True), nullable=False),
    UniqueConstraint("connection", "task", "source_id", name="uq_inbox_key"),
    Index("ix_inbox_due", "due_at"),
)

alert = Table(
    "alert",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("at", DateTime(timezone=True), nullable=False),
    Column("connection", String(64), nullable=False),
    Column("record_type", String(32), nullable=False),
    Column("source_id", String(64), nullable=False),
    Column("kind", String(32), nullable=False),
    Column("problem_key", String(64), nullable=False),
    Column("message", Text, nullable=False),
    Column("sent_at", DateTime(timezone=True)),
    UniqueConstraint("connection", "record_type", "source_id", "problem_key", name="uq_alert"),
)


@dataclass(frozen=True)
class RecordKey:
    connection: str
    record_type: str
    source_id: str

    def __str__(self) -> str:
        return f"{self.connection}/{self.record_type}/{self.source_id}"


@dataclass(frozen=True)
class Record:
    """A snapshot of one ledger row."""

    id: int
    key: RecordKey
    status: Status
    spectrum_key: str | None
    payload_digest: str | None
    step: str | None
    state: dict[str, Any]
    attempts: int
    crashes: int
    error_kind: str | None
    last_error: str | None
    lease_owner: str | None
    lease_until: datetime | None
    created_at: datetime
    updated_at: datetime
    done_at: datetime | None
    next_attempt_at: datetime | None = None
    retry_since: datetime | None = None
    retry_rounds: int = 0

    @classmethod
    def from_row(cls, row: Any) -> Record:
        return cls.from_mapping(row._mapping)

    @classmethod
    def from_mapping(cls, m: Any) -> Record:
        """The record of a row's values by column name (a result row's ``_mapping``, or the
        converted values of a driver-level read: ``Ledger._driver_record``)."""
        return cls(
            id=m["id"],
            key=RecordKey(m["connection"], m["record_type"], m["source_id"]),
            status=Status(m["status"]),
            spectrum_key=m["spectrum_key"],
            payload_digest=m["payload_digest"],
            step=m["step"],
            state=dict(m["state"] or {}),
            attempts=m["attempts"],
            crashes=m["crashes"],
            error_kind=m["error_kind"],
            last_error=m["last_error"],
            lease_owner=m["lease_owner"],
            lease_until=_aware(m["lease_until"]),
            created_at=_aware(m["created_at"]) or utcnow(),
            updated_at=_aware(m["updated_at"]) or utcnow(),
            done_at=_aware(m["done_at"]),
            next_attempt_at=_aware(m["next_attempt_at"]),
            retry_since=_aware(m["retry_since"]),
            retry_rounds=int(m["retry_rounds"] or 0),
        )


@dataclass(frozen=True)
class InboxEntry:
    """One durable wake-up: run ``task`` for ``source_id`` on ``connection``."""

    id: int
    connection: str
    task: str
    source_id: str
    received_at: datetime
    due_at: datetime


@dataclass(frozen=True)
class Breach:
    """A row that breaks "nothing pending without something queued or scheduled for it"."""

    what: str  # "record" or "inbox"
    name: str  # the record key, or connection/task/source_id
    status: str
    due: datetime | None
    problem: str


@dataclass(frozen=True)
class AuditEvent:
    at: datetime
    system: str
    service: str
    method: str | None
    outcome: str
    status_code: int | None
    duration_ms: float | None
    request_digest: str | None
    spectrum_key: str | None
    detail: str | None


@dataclass(frozen=True)
class Claim:
    """What a claim returns: the record as it now stands and whether the caller holds it."""

    record: Record
    held: bool
    #: the previous holder died mid-task (its lease was taken over)
    recovered: bool = False
    #: the row as the claim found it, before taking it (a row the claim created: ``pending``)
    previous: Record | None = None


def _aware(d: datetime | None) -> datetime | None:
    if d is None:
        return None
    return d if d.tzinfo else d.replace(tzinfo=UTC)


def worker_identity() -> str:
    """``host:pid`` of this process: lets a claim tell a dead local holder from a live one."""
    return f"{socket.gethostname()}:{os.getpid()}"


def holder_is_dead(owner: str | None) -> bool:
    """True when the lease holder ran on this host and its process no longer exists."""
    if not owner or ":" not in owner:
        return False
    host, _, pid = owner.rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return False
    return not psutil.pid_exists(int(pid))


def make_engine(url: str, *, durable_commits: bool = False) -> Engine:
    """An engine tuned for the ledger: WAL and a busy timeout on SQLite.

    SQLite commits with ``synchronous=NORMAL``: a process crash loses nothing, a power loss or
    OS crash may roll back the last commits. ``durable_commits`` (the ingest's inbox) syncs the
    WAL at every commit (``FULL``), so a wake-up whose delivery was answered 2xx survives those
    too; one sync per group commit (ingest/group.py) cost up to ~13 % of P1's single-event
    deliveries a second (docs/performance.md)."""
    if url.startswith("sqlite"):
        path = url.split("///", 1)[1] if "///" in url else ""
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        file_db = bool(path) and path != ":memory:"
        # a file ledger keeps a few connections open: closing the last connection of a WAL
        # database checkpoints it (an fsync), which cost ~4 ms per ledger call (P4). A process
        # forked with the engine (Celery prefork) starts with a fresh pool.
        engine = create_engine(
            url,
            connect_args={"timeout": 30, "check_same_thread": False},
            **({"pool_size": 5, "max_overflow": 10} if file_db else {"poolclass": NullPool}),
        )
        if file_db:
            ref = weakref.ref(engine)

            def _fresh_pool_after_fork() -> None:
                eng = ref()
                if eng is not None:
                    eng.dispose(close=False)

            os.register_at_fork(after_in_child=_fresh_pool_after_fork)

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.execute(f"PRAGMA synchronous={'FULL' if durable_commits else 'NORMAL'}")
            cur.close()

        return engine
    return create_engine(url, pool_pre_ping=True, pool_size=5, max_overflow=5)


class Ledger:
    """Typed access to the ledger tables. One instance per process."""

    def __init__(
        self, url: str, *, engine: Engine | None = None, pending_grace_s: float | None = None
    ) -> None:
        self.url = url
        self.engine = engine or make_engine(url)
        #: a pending row is due again this long after it was last touched (see WAITING)
        self.pending_grace_s = pending_grace_s or DEFAULT_PENDING_GRACE_S
        #: statements of the hot paths, built once per ledger with bound parameters: building a
        #: statement (and its cache key) for every call cost more CPU than running it (P2)
        self._stmts: dict[Hashable, Any] = {}

    def _pending_due(self, now: datetime) -> datetime:
        return now + timedelta(seconds=self.pending_grace_s)

    # --- schema -----------------------------------------------------------------------------
    def migrate(self) -> None:
        """Bring the schema to the newest Alembic revision."""
        from worker.migrate import upgrade

        upgrade(self.engine)

    def dispose(self) -> None:
        self.engine.dispose()

    @contextmanager
    def tx(self) -> Iterator[Connection]:
        with self.engine.begin() as conn:
            yield conn

    def _insert(self, table: Table) -> Any:
        if self.engine.dialect.name == "postgresql":
            return postgresql.insert(table)
        return sqlite.insert(table)

    def _stmt(self, name: Hashable, build: Callable[[], Any]) -> Any:
        """The statement ``name``, built on first use (a dict look-up after that)."""
        stmt = self._stmts.get(name)
        if stmt is None:
            stmt = self._stmts[name] = build()
        return stmt

    # --- records ----------------------------------------------------------------------------
    def ensure(self, key: RecordKey) -> Record:
        """The row for ``key``, created as ``pending`` if it did not exist (race-free)."""
        with self.tx() as conn:
            self._ensure_row(conn, key, utcnow())
            row = self._select_row(conn, key).one()
        return Record.from_row(row)

    def _new_row_stmt(self, *, claimed: bool) -> Any:
        """The insert of ``key``'s row unless it exists: ``pending`` (``_ensure_row``), or as a
        claim leaves a new row (``_insert_claimed``: in flight, leased, one attempt, returned)."""
        c = sync_record.c
        values: dict[str, Any] = {
            "connection": bindparam("k_connection", type_=c.connection.type),
            "record_type": bindparam("k_record_type", type_=c.record_type.type),
            "source_id": bindparam("k_source_id", type_=c.source_id.type),
            "status": Status.PENDING.value,
            "state": bindparam("p_state", type_=c.state.type),
            "attempts": 0,
            "crashes": 0,
            "retry_rounds": 0,
            "next_attempt_at": bindparam("p_due", type_=c.next_attempt_at.type),
            "created_at": bindparam("p_now", type_=c.created_at.type),
            "updated_at": bindparam("p_now", type_=c.updated_at.type),
        }
        if claimed:
            values.update(
                status=Status.IN_FLIGHT.value,
                attempts=1,
                lease_owner=bindparam("p_owner", type_=c.lease_owner.type),
                lease_until=bindparam("p_until", type_=c.lease_until.type),
            )
        stmt = (
            self._insert(sync_record)
            .values(**values)
            .on_conflict_do_nothing(index_elements=["connection", "record_type", "source_id"])
        )
        return stmt.returning(*c) if claimed else stmt

    def _ensure_row(self, conn: Connection, key: RecordKey, now: datetime) -> None:
        """Insert ``key``'s row as ``pending`` unless it exists."""

        conn.execute(
            self._stmt("ensure", lambda: self._new_row_stmt(claimed=False)),
            {**_key_params(key), "p_state": {}, "p_due": self._pending_due(now), "p_now": now},
        )

    def _select_row(self, conn: Connection, key: RecordKey) -> Any:
        """The result of selecting ``key``'s row."""
        return conn.execute(
            self._stmt("select", lambda: select(sync_record).where(_KEY_MATCH)), _key_params(key)
        )

    def _where(self, key: RecordKey) -> Any:
        return select(sync_record).where(
            sync_record.c.connection == key.connection,
            sync_record.c.record_type == key.record_type,
            sync_record.c.source_id == key.source_id,
        )

    def get(self, key: RecordKey) -> Record | None:
        """``key``'s row, or None. Read on a pooled driver connection (a sync reads the rows of
        its prerequisites this way: P2), converted as SQLAlchemy converts a result row."""
        select_sql = self._select_driver()
        params = _key_params(key)

        def work(cursor: Any) -> Any:
            cursor.execute(select_sql.sql, select_sql.params(params))
            return cursor.fetchone()

        row = self._driver_run(select_sql.sql, params, work)
        return self._driver_record(row) if row is not None else None

    def _select_driver(self) -> _DriverCompiled:
        """``_select_row``'s statement compiled for the driver."""
        return self._driver_compiled("select_driver", lambda: select(sync_record).where(_KEY_MATCH))

    def get_many(
        self, connection: str, record_type: str, source_ids: Iterable[str]
    ) -> dict[str, Record]:
        """Rows for many source ids in ONE query (bulk skip in catch-ups and sweeps)."""
        ids = list(source_ids)
        if not ids:
            return {}
        out: dict[str, Record] = {}
        stmt = self._stmt(
            "select_many",
            lambda: select(sync_record).where(
                sync_record.c.connection == bindparam("k_connection"),
                sync_record.c.record_type == bindparam("k_record_type"),
                sync_record.c.source_id.in_(bindparam("k_source_ids", expanding=True)),
            ),
        )
        with self.engine.connect() as conn:
            for i in range(0, len(ids), 500):
                rows = conn.execute(
                    stmt,
                    {
                        "k_connection": connection,
                        "k_record_type": record_type,
                        "k_source_ids": ids[i : i + 500],
                    },
                )
                for row in rows:
                    rec = Record.from_row(row)
                    out[rec.key.source_id] = rec
        return out

    def find_by_spectrum_key(
        self, connection: str, record_type: str, spectrum_key: str
    ) -> Record | None:
        with self.engine.connect() as conn:
            row = conn.execute(
                select(sync_record).where(
                    sync_record.c.connection == connection,
                    sync_record.c.record_type == record_type,
                    sync_record.c.spectrum_key == spectrum_key,
                )
            ).first()
        return Record.from_row(row) if row else None

    def claim(
        self,
        key: RecordKey,
        *,
        lease_s: float,
        owner: str | None = None,
        reclaim_done: bool = False,
    ) -> Claim:
        """Take the record for this worker, atomically.

        Not held when another live worker holds it (lease valid), or when it is terminal and
        ``reclaim_done`` is false. A lease whose holder died (same host, process gone) or whose
        time ran out is taken over and counted in ``crashes``.
        """
        owner = owner or worker_identity()
        now = utcnow()
        until = now + timedelta(seconds=lease_s)
        # one transaction (P2/P4: two ledger commits per record were one of the larger costs of
        # a sync). A new row is inserted already taken, in one statement (P2: the insert, the
        # read and the take-over were three); an existing one is read, then taken conditionally
        # on what was read. Either way the row ends as the pending insert followed by the take-
        # over left it, and the transaction commits both or neither.
        with self.tx() as conn:
            created = self._insert_claimed(conn, key, owner, now, until)
            if created is not None:
                previous = replace(
                    created,
                    status=Status.PENDING,
                    attempts=0,
                    lease_owner=None,
                    lease_until=None,
                )
                return Claim(created, held=True, previous=previous)
            current = Record.from_row(self._select_row(conn, key).one())
            recovered = False
            if current.status is Status.IN_FLIGHT:
                expired = current.lease_until is None or current.lease_until <= now
                if not expired and not holder_is_dead(current.lease_owner):
                    return Claim(current, held=False)
                recovered = True
            elif current.status in TERMINAL and not reclaim_done:
                return Claim(current, held=False)
            # conditional on what we read: a concurrent claimer changes updated_at or status
            res = conn.execute(
                self._stmt("claim", _claim_stmt),
                {
                    "w_id": current.id,
                    "w_status": current.status.value,
                    "w_updated_at": current.updated_at,
                    "p_owner": owner,
                    "p_until": until,
                    "p_crashed": 1 if recovered else 0,
                    "p_now": now,
                },
            )
            row = res.first()
            if row is None:
                latest = Record.from_row(self._select_row(conn, key).one())
                return Claim(latest, held=False)
        return Claim(Record.from_row(row), held=True, recovered=recovered, previous=current)

    def _insert_claimed(
        self, conn: Connection, key: RecordKey, owner: str, now: datetime, until: datetime
    ) -> Record | None:
        """Insert ``key``'s row as a new row's claim leaves it (the pending row ``_ensure_row``
        inserts, taken by ``_claim_stmt``: in flight, leased to ``owner``, one attempt); None
        when the row exists (nothing written)."""
        row = conn.execute(
            self._stmt("claim_new", lambda: self._new_row_stmt(claimed=True)),
            {
                **_key_params(key),
                "p_state": {},
                "p_owner": owner,
                "p_until": until,
                "p_due": self._pending_due(now),
                "p_now": now,
            },
        ).first()
        return Record.from_row(row) if row is not None else None

    def _finish(self, key: RecordKey, owner: str | None, **values: Any) -> Record:
        now = utcnow()
        values.setdefault("updated_at", now)
        if not any(isinstance(v, ClauseElement) for v in values.values()):
            return self._finish_on_driver(key, owner, values)
        with self.tx() as conn:
            row = self._update_row(conn, key, owner, values).first()
            if row is None:  # not the lease holder: the row as it is
                row = self._select_row(conn, key).one()
        return Record.from_row(row)

    def _finish_on_driver(
        self, key: RecordKey, owner: str | None, values: dict[str, Any]
    ) -> Record:
        """``_finish`` of plain values (the progress and done updates of every sync: P2) on a
        pooled driver connection: the same ``UPDATE … RETURNING`` (and, when it matched nothing,
        the same select), in one transaction, compiled once per set of columns with SQLAlchemy's
        conversions of the parameters and of the returned row (``_driver_run``)."""
        update_sql = self._driver_compiled(
            ("update_driver", tuple(sorted(values)), owner is not None),
            lambda: self._update_stmt(owner, tuple(sorted(values)), {}),
        )
        select_sql = self._select_driver()
        params = {**_key_params(key), "w_owner": owner}
        params.update({f"p_{k}": v for k, v in values.items()})

        def work(cursor: Any) -> Any:
            cursor.execute(update_sql.sql, update_sql.params(params))
            return _returned_or_current(cursor, select_sql, params)

        return self._driver_record(self._driver_run(update_sql.sql, params, work))

    def _driver_compiled(
        self, name: Hashable, build: Callable[[], Any], column_keys: Sequence[str] = ()
    ) -> _DriverCompiled:
        """Statement ``name`` (made by ``build``, with named bound parameters; an insert binds
        ``column_keys`` by their column names) compiled once per ledger for the driver, with each
        parameter's conversion by its type."""
        built: _DriverCompiled | None = self._stmts.get(name)
        if built is None:
            dialect = self.engine.dialect
            compiled = build().compile(dialect=dialect, column_keys=list(column_keys) or None)
            binds = tuple(compiled.positiontup or compiled.binds)
            convert = tuple(
                compiled.binds[b].type.dialect_impl(dialect).bind_processor(dialect) for b in binds
            )
            fixed = {b: p.effective_value for b, p in compiled.binds.items() if not p.required}
            built = _DriverCompiled(
                compiled.string, binds, compiled.positiontup is not None, convert, fixed
            )
            self._stmts[name] = built
        return built

    def _driver_record(self, values: Sequence[Any]) -> Record:
        """The record of a ``sync_record`` row read on the driver (its columns in table order),
        converted by each column's type as SQLAlchemy converts a result row."""
        convert: tuple[Callable[[Any], Any] | None, ...] | None = self._stmts.get("record_driver")
        if convert is None:
            dialect = self.engine.dialect
            convert = self._stmts["record_driver"] = tuple(
                c.type.dialect_impl(dialect).result_processor(dialect, None) for c in sync_record.c
            )
        return Record.from_mapping(
            {
                name: v if f is None else f(v)
                for name, f, v in zip(_RECORD_COLUMNS, convert, values, strict=True)
            }
        )

    def _update_row(
        self, conn: Connection, key: RecordKey, owner: str | None, values: dict[str, Any]
    ) -> Any:
        """``UPDATE … RETURNING`` of ``key``'s row (only while ``owner`` holds it, when given).
        Plain values run a statement built once per set of columns; SQL expressions among them
        (a counter + 1, a coalesce) one built for this call."""
        params = {**_key_params(key), "w_owner": owner}
        plain = {k: v for k, v in values.items() if not isinstance(v, ClauseElement)}
        exprs = {k: v for k, v in values.items() if k not in plain}
        columns = tuple(sorted(plain))
        stmt = (
            self._update_stmt(owner, columns, exprs)
            if exprs
            else self._stmt(
                ("update", columns, owner is not None),
                lambda: self._update_stmt(owner, columns, {}),
            )
        )
        params.update({f"p_{k}": v for k, v in plain.items()})
        return conn.execute(stmt, params)

    @staticmethod
    def _update_stmt(owner: str | None, columns: Sequence[str], exprs: dict[str, Any]) -> Any:
        """``UPDATE … RETURNING`` of one row by its key (``k_*``; and ``w_owner`` when
        ``owner`` is given): ``columns`` bound as ``p_<column>``, ``exprs`` as they are."""
        conditions = [_KEY_MATCH]
        if owner is not None:
            conditions.append(sync_record.c.lease_owner == bindparam("w_owner"))
        return (
            update(sync_record)
            .where(and_(*conditions))
            .values(
                {
                    **{k: bindparam(f"p_{k}", type_=sync_record.c[k].type) for k in columns},
                    **exprs,
                }
            )
            .returning(*sync_record.c)
        )

    def update_progress(
        self,
        key: RecordKey,
        *,
        step: str | None = None,
        spectrum_key: str | None = None,
        state: dict[str, Any] | None = None,
        payload_digest: str | None = None,
    ) -> Record:
        """Record a finished step (recovery point) while the claim is held."""
        values: dict[str, Any] = {}
        if step is not None:
            values["step"] = step
        if spectrum_key is not None:
            values["spectrum_key"] = spectrum_key
        if state is not None:
            values["state"] = state
        if payload_digest is not None:
            values["payload_digest"] = payload_digest
        return self._finish(key, None, **values)

    def mark_done(
        self,
        key: RecordKey,
        *,
        spectrum_key: str | None,
        payload_digest: str | None = None,
        state: dict[str, Any] | None = None,
        step: str = "done",
    ) -> Record:
        values = _done_values(utcnow(), spectrum_key, payload_digest, state, step)
        return self._finish(key, None, **values)

    def record_landed(
        self,
        key: RecordKey,
        *,
        spectrum_key: str,
        payload_digest: str | None,
        state: dict[str, Any],
        holder: RecordKey,
        holder_state: dict[str, Any],
    ) -> Record:
        """A remote write landed: ``key``'s row (a part of ``holder``'s record, such as one AR
        document of an invoice) created if missing and marked done, and ``holder``'s recovery
        state saved, in ONE transaction. Returns ``holder``'s row.

        Atomic, so a crash leaves either both (the part is known to have landed) or neither (the
        holder's state still says the write was sent, and the next attempt looks it up and adopts
        it), never a part done under a holder state that contradicts it."""
        now = utcnow()
        done = _done_values(now, spectrum_key, payload_digest, state, "done")
        upsert = self._driver_compiled(
            ("upsert_done_driver", tuple(done)), lambda: self._upsert_done_stmt(tuple(done))
        )
        update_holder = self._driver_compiled(
            ("update_driver", ("state", "updated_at"), False),
            lambda: self._update_stmt(None, ("state", "updated_at"), {}),
        )
        select_sql = self._select_driver()
        part = {**_key_params(key), "p_now": now, **{f"p_{k}": v for k, v in done.items()}}
        held = {**_key_params(holder), "p_state": holder_state, "p_updated_at": now}

        # one transaction on a pooled driver connection (P2: these run once per document that
        # lands; SQLAlchemy's execution layers cost more CPU than the two statements)
        def work(cursor: Any) -> Any:
            cursor.execute(upsert.sql, upsert.params(part))
            cursor.execute(update_holder.sql, update_holder.params(held))
            # the holder's row exists while it is claimed: the update returns it
            return _returned_or_current(cursor, select_sql, held)

        return self._driver_record(self._driver_run(upsert.sql, part, work))

    def _upsert_done_stmt(self, columns: Sequence[str]) -> Any:
        """A row made ``done`` in one statement (P2: an insert of the pending row, then an
        update, were two): a new row is inserted as that insert and update would leave it, an
        existing one gets the update's ``columns`` (``_done_values``) bound as ``p_<column>``,
        its creation time as ``p_now``."""
        c = sync_record.c
        ins = self._insert(sync_record).values(
            connection=bindparam("k_connection", type_=c.connection.type),
            record_type=bindparam("k_record_type", type_=c.record_type.type),
            source_id=bindparam("k_source_id", type_=c.source_id.type),
            attempts=0,
            created_at=bindparam("p_now", type_=c.created_at.type),
            **{k: bindparam(f"p_{k}", type_=c[k].type) for k in columns},
        )
        return ins.on_conflict_do_update(
            index_elements=["connection", "record_type", "source_id"],
            set_={k: getattr(ins.excluded, k) for k in columns},
        )

    def mark(
        self,
        key: RecordKey,
        status: Status,
        *,
        error_kind: str | None = None,
        reason: str | None = None,
        state: dict[str, Any] | None = None,
        reset_crashes: bool = True,
        next_attempt_at: datetime | None = None,
        transient: bool = False,
        retry_since: datetime | None = None,
    ) -> Record:
        """Leave the record in ``status`` (pending/failed/skipped/unknown) and release the claim.

        A ``pending`` row gets a due time (``next_attempt_at``, default: the pending grace from
        now) so the re-enqueuer finds it when nothing else settles it; ``transient`` starts the
        retry streak (``retry_since``) when none is running. Any other status ends the streak.
        """
        values: dict[str, Any] = {
            "status": status.value,
            "error_kind": error_kind,
            "last_error": reason,
            "lease_owner": None,
            "lease_until": None,
        }
        if status in WAITING:
            values["next_attempt_at"] = next_attempt_at or self._pending_due(utcnow())
            if retry_since is not None:
                values["retry_since"] = retry_since
            elif transient:
                values["retry_since"] = func.coalesce(sync_record.c.retry_since, utcnow())
        else:
            values.update(_SETTLED)
        if reset_crashes:
            values["crashes"] = 0
        if state is not None:
            values["state"] = state
            values["waits_on"] = waits_on_column(status, error_kind, state)
        return self._finish(key, None, **values)

    def reopen(self, key: RecordKey) -> Record:
        """Make a failed/unknown/skipped record pending again (replay after a person's fix)."""
        return self._finish(
            key,
            None,
            status=Status.PENDING.value,
            error_kind=None,
            crashes=0,
            lease_owner=None,
            lease_until=None,
            next_attempt_at=self._pending_due(utcnow()),
            retry_since=None,
            retry_rounds=0,
        )

    def mark_retry_later(
        self,
        key: RecordKey,
        *,
        next_attempt_at: datetime,
        reason: str,
        error_kind: str = "transient",
    ) -> Record:
        """Celery's retries ran out on a transient cause: wait for the re-enqueuer (one round)."""
        return self._finish(
            key,
            None,
            status=Status.RETRY_LATER.value,
            error_kind=error_kind,
            last_error=reason,
            lease_owner=None,
            lease_until=None,
            next_attempt_at=next_attempt_at,
            retry_since=func.coalesce(sync_record.c.retry_since, utcnow()),
            retry_rounds=sync_record.c.retry_rounds + 1,
        )

    # --- the re-enqueuer's view (issue 13: nothing pending without something queued) ----------
    def due_records(self, now: datetime, *, limit: int = 1000) -> list[Record]:
        """Waiting rows whose due time has passed (or that have none), oldest first, and
        in-flight rows whose lease ran out (their worker died)."""
        q = (
            select(sync_record)
            .where(
                or_(
                    and_(
                        sync_record.c.status.in_([s.value for s in WAITING]),
                        or_(
                            sync_record.c.next_attempt_at.is_(None),
                            sync_record.c.next_attempt_at <= now,
                        ),
                    ),
                    and_(
                        sync_record.c.status == Status.IN_FLIGHT.value,
                        or_(
                            sync_record.c.lease_until.is_(None),
                            sync_record.c.lease_until <= now,
                        ),
                        or_(
                            sync_record.c.next_attempt_at.is_(None),
                            sync_record.c.next_attempt_at <= now,
                        ),
                    ),
                )
            )
            .order_by(sync_record.c.next_attempt_at)
            .limit(limit)
        )
        with self.engine.connect() as conn:
            return [Record.from_row(r) for r in conn.execute(q)]

    def defer(self, records: Sequence[Record], until: datetime) -> None:
        """Move the due time of rows just queued by the re-enqueuer (only if still waiting or
        still stuck in flight as read: a worker that took one meanwhile keeps it)."""
        ids = [r.id for r in records if r.status in WAITING]
        stuck = [r.id for r in records if r.status is Status.IN_FLIGHT]
        with self.tx() as conn:
            for i in range(0, len(ids), 500):
                conn.execute(
                    update(sync_record)
                    .where(
                        sync_record.c.id.in_(ids[i : i + 500]),
                        sync_record.c.status.in_([s.value for s in WAITING]),
                    )
                    .values(next_attempt_at=until)
                )
            for i in range(0, len(stuck), 500):
                # the lease is the in-flight row's due time: the claim that takes it over
                # counts the crash, so pushing it keeps the start cap meaningful
                conn.execute(
                    update(sync_record)
                    .where(
                        sync_record.c.id.in_(stuck[i : i + 500]),
                        sync_record.c.status == Status.IN_FLIGHT.value,
                    )
                    .values(next_attempt_at=until)
                )

    # --- inbox (durable acknowledgement) ----------------------------------------------------
    def inbox_put(self, entries: Sequence[tuple[str, str, str]], *, due_after_s: float) -> None:
        """Record webhook wake-ups ``(connection, task, source_id)`` durably, in ONE transaction
        (ingest calls it before answering 2xx, once for all the deliveries of a group commit).
        One upsert statement run for every row (an "executemany") on a pooled driver
        connection: the statement is compiled once per ledger and its timestamps converted as
        SQLAlchemy would; SQLAlchemy's per-call execution layers cost the ingest more CPU than
        the write itself (P1). A repeated entry is refreshed (received now, due later), never
        duplicated."""
        unique = list(dict.fromkeys(entries))
        if not unique:
            return
        upsert = self._inbox_upsert()
        now = utcnow()
        # both timestamps have the received_at column's type: converted once for every row
        stamp = upsert.converter("received_at")
        received, due = stamp(now), stamp(now + timedelta(seconds=due_after_s))
        times = {"received_at": received, "due_at": due}
        rows = [
            upsert.params({"connection": c, "task": t, "source_id": s, **times}, converted=True)
            for c, t, s in unique
        ]
        self._driver_write(upsert.sql, rows, many=True)

    def _inbox_upsert(self) -> _DriverCompiled:
        """The inbox upsert as the driver takes it (``_driver_compiled``), built once."""

        def build() -> Any:
            ins = self._insert(inbox)
            return ins.on_conflict_do_update(
                index_elements=["connection", "task", "source_id"],
                set_={"received_at": ins.excluded.received_at, "due_at": ins.excluded.due_at},
            )

        return self._driver_compiled("inbox_driver", build, _INBOX_COLUMNS)

    def inbox_due(self, now: datetime, *, limit: int = 1000) -> list[InboxEntry]:
        q = select(inbox).where(inbox.c.due_at <= now).order_by(inbox.c.due_at).limit(limit)
        with self.engine.connect() as conn:
            return [_inbox_entry(r) for r in conn.execute(q)]

    def inbox_entries(self) -> list[InboxEntry]:
        with self.engine.connect() as conn:
            return [_inbox_entry(r) for r in conn.execute(select(inbox).order_by(inbox.c.id))]

    def inbox_defer(self, entries: Sequence[InboxEntry], until: datetime) -> None:
        ids = [e.id for e in entries]
        with self.tx() as conn:
            for i in range(0, len(ids), 500):
                conn.execute(
                    update(inbox).where(inbox.c.id.in_(ids[i : i + 500])).values(due_at=until)
                )

    def inbox_done(
        self, connection: str, task: str, source_id: str, *, received_before: datetime
    ) -> None:
        """The task for this entry has run: forget it, unless a newer wake-up arrived after
        the task started (that one still needs its run). On a pooled driver connection: it
        runs after every task (P2)."""
        stmt = self._driver_compiled(
            "inbox_done_driver",
            lambda: inbox.delete().where(
                inbox.c.connection == bindparam("k_connection"),
                inbox.c.task == bindparam("k_task"),
                inbox.c.source_id == bindparam("k_source_id"),
                inbox.c.received_at <= bindparam("w_before", type_=inbox.c.received_at.type),
            ),
        )
        params = {
            "k_connection": connection,
            "k_task": task,
            "k_source_id": source_id,
            "w_before": received_before,
        }
        self._driver_write(stmt.sql, stmt.params(params))

    def invariant_breaches(self, now: datetime, *, tolerance_s: float) -> list[Breach]:
        """Rows with nothing queued or scheduled for them: waiting without a due time, or
        overdue (waiting, in flight past the lease, or in the inbox) by more than
        ``tolerance_s`` (the re-enqueue interval plus the visibility timeout)."""
        late = now - timedelta(seconds=tolerance_s)
        out: list[Breach] = []
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(sync_record).where(
                    or_(
                        and_(
                            sync_record.c.status.in_([s.value for s in WAITING]),
                            or_(
                                sync_record.c.next_attempt_at.is_(None),
                                sync_record.c.next_attempt_at < late,
                            ),
                        ),
                        and_(
                            sync_record.c.status == Status.IN_FLIGHT.value,
                            or_(
                                sync_record.c.lease_until.is_(None),
                                and_(
                                    sync_record.c.lease_until < late,
                                    or_(
                                        sync_record.c.next_attempt_at.is_(None),
                                        sync_record.c.next_attempt_at < late,
                                    ),
                                ),
                            ),
                        ),
                    )
                )
            )
            for r in rows:
                rec = Record.from_row(r)
                if rec.status is Status.IN_FLIGHT:
                    due, problem = rec.lease_until, "in flight, lease long expired"
                elif rec.next_attempt_at is None:
                    due, problem = None, f"{rec.status.value} with no due time"
                else:
                    due, problem = rec.next_attempt_at, f"{rec.status.value}, overdue"
                out.append(Breach("record", str(rec.key), rec.status.value, due, problem))
            for r in conn.execute(select(inbox).where(inbox.c.due_at < late)):
                e = _inbox_entry(r)
                out.append(
                    Breach(
                        "inbox",
                        f"{e.connection}/{e.task}/{e.source_id}",
                        "inbox",
                        e.due_at,
                        "webhook wake-up overdue",
                    )
                )
        return out

    def list_records(
        self,
        *,
        statuses: Sequence[Status] = (),
        connection: str | None = None,
        record_type: str | None = None,
        since: datetime | None = None,
        limit: int = 1000,
    ) -> list[Record]:
        q = select(sync_record).order_by(sync_record.c.updated_at.desc()).limit(limit)
        if statuses:
            q = q.where(sync_record.c.status.in_([s.value for s in statuses]))
        if connection:
            q = q.where(sync_record.c.connection == connection)
        if record_type:
            q = q.where(sync_record.c.record_type == record_type)
        if since:
            q = q.where(sync_record.c.updated_at >= since)
        with self.engine.connect() as conn:
            return [Record.from_row(r) for r in conn.execute(q)]

    def waiting(
        self, connection: str, *, on: str | None = None, on_type: str | None = None
    ) -> list[Record]:
        """The rows of ``connection`` failed for a missing prerequisite that wait on ``on``
        (``"job:123"``), or on any record of ``on_type`` (``"user"``), newest first: by the
        indexed ``waits_on`` column (``mark`` keeps it), not by reading every failed row."""
        c = sync_record.c
        q = select(sync_record).where(
            c.connection == connection,
            c.status == Status.FAILED.value,
            c.error_kind == PREREQUISITE,
        )
        if on is not None:
            q = q.where(c.waits_on == on)
        if on_type is not None:
            q = q.where(c.waits_on.startswith(f"{on_type}:", autoescape=True))
        with self.engine.connect() as conn:
            return [Record.from_row(r) for r in conn.execute(q.order_by(c.updated_at.desc()))]

    def counts(self, connection: str | None = None) -> dict[tuple[str, str], int]:
        """``(record_type, status) -> n``."""
        q = select(sync_record.c.record_type, sync_record.c.status, func.count()).group_by(
            sync_record.c.record_type, sync_record.c.status
        )
        if connection:
            q = q.where(sync_record.c.connection == connection)
        with self.engine.connect() as conn:
            return {(r[0], r[1]): int(r[2]) for r in conn.execute(q)}

    def stuck(self, *, older_than: timedelta) -> list[Record]:
        """In-flight rows whose lease ran out more than ``older_than`` ago."""
        cutoff = utcnow() - older_than
        q = select(sync_record).where(
            sync_record.c.status == Status.IN_FLIGHT.value,
            or_(sync_record.c.lease_until.is_(None), sync_record.c.lease_until < cutoff),
        )
        with self.engine.connect() as conn:
            return [Record.from_row(r) for r in conn.execute(q)]

    # --- codes ------------------------------------------------------------------------------
    def next_code_value(self, connection: str, kind: str, *, start: int, end: int) -> int:
        """Hand out the next counter value for ``(connection, kind)``; never the same twice."""
        params = {"k_connection": connection, "k_kind": kind, "p_start": start}
        with self.tx() as conn:
            conn.execute(
                self._stmt(
                    "counter_insert",
                    lambda: (
                        self._insert(code_counter)
                        .values(
                            connection=bindparam("k_connection"),
                            kind=bindparam("k_kind"),
                            next_value=bindparam("p_start"),
                        )
                        .on_conflict_do_nothing(index_elements=["connection", "kind"])
                    ),
                ),
                params,
            )
            value = conn.execute(
                self._stmt(
                    "counter_next",
                    lambda: (
                        update(code_counter)
                        .where(
                            code_counter.c.connection == bindparam("k_connection"),
                            code_counter.c.kind == bindparam("k_kind"),
                        )
                        .values(next_value=code_counter.c.next_value + 1)
                        .returning(code_counter.c.next_value)
                    ),
                ),
                params,
            ).scalar_one()
        n = int(value) - 1
        if n > end:
            raise PermanentError(
                f"{connection}: the {kind} code range is used up (last allowed {end}); "
                f"widen [connections.{connection}.{kind}s.codes]",
                field=f"connections.{connection}.{kind}s.codes.end",
                value=end,
            )
        return n

    # --- audit ------------------------------------------------------------------------------
    def audit(
        self,
        *,
        system: str,
        service: str,
        outcome: str,
        key: RecordKey | None = None,
        method: str | None = None,
        request_digest: str | None = None,
        status_code: int | None = None,
        duration_ms: float | None = None,
        spectrum_key: str | None = None,
        detail: str | None = None,
    ) -> None:
        row = {
            "at": utcnow(),
            "connection": key.connection if key else None,
            "record_type": key.record_type if key else None,
            "source_id": key.source_id if key else None,
            "system": system,
            "service": service,
            "method": method,
            "request_digest": request_digest,
            "outcome": outcome,
            "status_code": status_code,
            "duration_ms": duration_ms,
            "spectrum_key": spectrum_key,
            "detail": (detail or "")[:2000] or None,
        }
        insert = self._driver_compiled("audit_driver", audit_event.insert, _AUDIT_COLUMNS)
        self._driver_write(insert.sql, insert.params(row))

    def _driver_write(self, sql: str, params: Any, *, many: bool = False) -> None:
        """One statement that returns nothing (run for each parameter set of ``params`` when
        ``many``), in its own transaction, on a pooled driver connection (SQLAlchemy's execution
        layers cost more CPU than a small insert: P1's inbox, P2's audit rows). The
        transaction is the one ``tx()`` would run (the driver begins it, the commit ends it);
        driver errors are raised as SQLAlchemy's (``DBAPIError.instance``, so they are classified
        as before) and a lost connection is dropped from the pool as SQLAlchemy does."""

        def work(cursor: Any) -> None:
            if many:
                cursor.executemany(sql, params)
            else:
                cursor.execute(sql, params)

        self._driver_run(sql, params, work)

    def _driver_run(self, sql: str, params: Any, work: Callable[[Any], _T]) -> _T:
        """``work(cursor)`` in one transaction on a pooled driver connection; what it returns.
        The transaction is the one ``tx()`` would run (the driver begins it, the commit ends it);
        driver errors are raised as SQLAlchemy's (``DBAPIError.instance`` naming ``sql`` and
        ``params``, so they are classified as before) and a lost connection is dropped from the
        pool as SQLAlchemy does."""
        dialect = self.engine.dialect
        try:
            fairy = self.engine.raw_connection()
        except dialect.loaded_dbapi.Error as exc:
            # no connection (the database is away): raised as engine.connect() raises it, so a
            # sync classifies it as the ledger not answering (worker/infra.py), not a bug
            raise sqlalchemy_exc.DBAPIError.instance(
                None,
                None,
                exc,
                dialect.loaded_dbapi.Error,
                connection_invalidated=dialect.is_disconnect(exc, None, None),
                dialect=dialect,
            ) from exc
        try:
            cursor = fairy.cursor()
            try:
                result = work(cursor)
            finally:
                cursor.close()
            fairy.commit()
            return result
        except dialect.loaded_dbapi.Error as exc:
            lost = dialect.is_disconnect(exc, fairy.dbapi_connection, None)
            if lost:
                fairy.invalidate(exc)
            else:
                fairy.rollback()
            raise sqlalchemy_exc.DBAPIError.instance(
                sql,
                params,
                exc,
                dialect.loaded_dbapi.Error,
                connection_invalidated=lost,
                dialect=dialect,
            ) from exc
        except BaseException:
            fairy.rollback()
            raise
        finally:
            fairy.close()  # back to the pool (unless invalidated)

    def history(self, key: RecordKey) -> list[AuditEvent]:
        q = (
            select(audit_event)
            .where(
                audit_event.c.connection == key.connection,
                audit_event.c.record_type == key.record_type,
                audit_event.c.source_id == key.source_id,
            )
            .order_by(audit_event.c.id)
        )
        with self.engine.connect() as conn:
            return [
                AuditEvent(
                    at=_aware(r.at) or utcnow(),
                    system=r.system,
                    service=r.service,
                    method=r.method,
                    outcome=r.outcome,
                    status_code=r.status_code,
                    duration_ms=r.duration_ms,
                    request_digest=r.request_digest,
                    spectrum_key=r.spectrum_key,
                    detail=r.detail,
                )
                for r in conn.execute(q)
            ]

    def audit_count(self, **where: Any) -> int:
        q = select(func.count()).select_from(audit_event)
        for k, v in where.items():
            q = q.where(audit_event.c[k] == v)
        with self.engine.connect() as conn:
            return int(conn.execute(q).scalar_one())

    # --- watermarks -------------------------------------------------------------------------
    def get_watermark(self, connection: str, name: str) -> str | None:
        """The watermark's value, or None. Read on a pooled driver connection: every successful
        sync reads the connection's pause mark (P2)."""
        stmt = self._driver_compiled(
            "watermark_driver",
            lambda: select(watermark.c.value).where(
                watermark.c.connection == bindparam("k_connection"),
                watermark.c.name == bindparam("k_name"),
            ),
        )
        params = {"k_connection": connection, "k_name": name}

        def work(cursor: Any) -> Any:
            cursor.execute(stmt.sql, stmt.params(params))
            rows = cursor.fetchall()
            if len(rows) > 1:  # as ``.scalar_one_or_none()`` would (the key is the primary key)
                raise sqlalchemy_exc.MultipleResultsFound(
                    "Multiple rows were found when one or none was required"
                )
            return rows[0][0] if rows else None

        value: str | None = self._driver_run(stmt.sql, params, work)
        return value

    def set_watermark(self, connection: str, name: str, value: str) -> None:
        now = utcnow()
        with self.tx() as conn:
            stmt = self._insert(watermark).values(
                connection=connection, name=name, value=value, updated_at=now
            )
            stmt = stmt.on_conflict_do_update(
                index_elements=["connection", "name"], set_={"value": value, "updated_at": now}
            )
            conn.execute(stmt)

    # --- alerts -----------------------------------------------------------------------------
    def record_alert(self, key: RecordKey, *, kind: str, problem_key: str, message: str) -> bool:
        """Store an alert once per distinct problem of a record; True when it is new."""
        with self.tx() as conn:
            res = conn.execute(
                self._insert(alert)
                .values(
                    at=utcnow(),
                    connection=key.connection,
                    record_type=key.record_type,
                    source_id=key.source_id,
                    kind=kind,
                    problem_key=problem_key,
                    message=message,
                )
                .on_conflict_do_nothing(
                    index_elements=["connection", "record_type", "source_id", "problem_key"]
                )
                .returning(alert.c.id)
            )
            # rowcount is unreliable here (-1 with implicit RETURNING on psycopg): ask for the id
            return res.first() is not None

    def unsent_alerts(self, connection: str | None = None) -> list[dict[str, Any]]:
        q = select(alert).where(alert.c.sent_at.is_(None)).order_by(alert.c.id)
        if connection:
            q = q.where(alert.c.connection == connection)
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(q)]

    def mark_alerts_sent(self, ids: Sequence[int]) -> None:
        if not ids:
            return
        with self.tx() as conn:
            conn.execute(update(alert).where(alert.c.id.in_(list(ids))).values(sent_at=utcnow()))

    def alerts(self, key: RecordKey | None = None) -> list[dict[str, Any]]:
        q = select(alert).order_by(alert.c.id)
        if key:
            q = q.where(
                alert.c.connection == key.connection,
                alert.c.record_type == key.record_type,
                alert.c.source_id == key.source_id,
            )
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(q)]


def _done_values(
    now: datetime,
    spectrum_key: str | None,
    payload_digest: str | None,
    state: dict[str, Any] | None,
    step: str,
) -> dict[str, Any]:
    """The columns a ``done`` row gets (the claim released, the retry streak ended)."""
    values: dict[str, Any] = {
        "status": Status.DONE.value,
        "spectrum_key": spectrum_key,
        "step": step,
        "error_kind": None,
        "last_error": None,
        "lease_owner": None,
        "lease_until": None,
        "done_at": now,
        "crashes": 0,
        "updated_at": now,
        **_SETTLED,
    }
    if payload_digest is not None:
        values["payload_digest"] = payload_digest
    if state is not None:
        values["state"] = state
    return values


def _returned_or_current(cursor: Any, select_sql: _DriverCompiled, params: dict[str, Any]) -> Any:
    """The row the ``UPDATE … RETURNING`` just run on ``cursor`` returned, else (it matched
    nothing: not the lease holder) the row as it is, read with ``select_sql``;
    ``NoResultFound`` when there is none, as ``.one()`` would raise."""
    rows = cursor.fetchall()
    if not rows:
        cursor.execute(select_sql.sql, select_sql.params(params))
        rows = cursor.fetchall()
        if not rows:
            raise sqlalchemy_exc.NoResultFound("No row was found when one was required")
    return rows[0]


#: the columns an inbox row's driver-level upsert binds
_INBOX_COLUMNS = ("connection", "task", "source_id", "received_at", "due_at")


@dataclass(frozen=True)
class _DriverCompiled:
    """A statement with named bound parameters compiled for the driver
    (``Ledger._driver_compiled``)."""

    sql: str
    #: the bound parameters' names, in the driver's order when ``positional``
    binds: tuple[str, ...]
    positional: bool
    #: each bound parameter's conversion by its type (None: passed as it is)
    convert: tuple[Callable[[Any], Any] | None, ...]
    #: the values the statement itself binds (literals such as ``attempts=0``), by name
    fixed: dict[str, Any]

    def params(self, values: dict[str, Any], *, converted: bool = False) -> Any:
        """The driver's parameters from ``values`` by bound parameter name (and the
        statement's own literals), each converted by its type unless the caller ``converted``
        them already (``converter``)."""
        if self.fixed:
            values = {**self.fixed, **values}
        ordered = [values[b] for b in self.binds]
        out = (
            ordered
            if converted
            else [v if f is None else f(v) for f, v in zip(self.convert, ordered, strict=True)]
        )
        return out if self.positional else dict(zip(self.binds, out, strict=True))

    def converter(self, bind: str) -> Callable[[Any], Any]:
        """The conversion of bound parameter ``bind`` (the identity when it has none)."""
        f = self.convert[self.binds.index(bind)]
        return f if f is not None else (lambda v: v)


#: the ``error_kind`` of a row failed for a missing prerequisite (``tasks/_pipeline.py``)
PREREQUISITE = "prerequisite"


def waits_on_column(status: Status, error_kind: str | None, state: dict[str, Any]) -> str | None:
    """The ``waits_on`` column of a row ``mark`` leaves in ``status`` with ``state``: what its
    state says it waits on, for a row failed for a missing prerequisite; else nothing."""
    if status is not Status.FAILED or error_kind != PREREQUISITE:
        return None
    target = state.get("waits_on")
    return str(target) if target else None


#: the columns of a ``sync_record`` row, in table order (``Ledger._driver_record``)
_RECORD_COLUMNS = tuple(c.name for c in sync_record.c)

#: the columns an audit row's driver-level insert binds
_AUDIT_COLUMNS = (
    "at",
    "connection",
    "record_type",
    "source_id",
    "system",
    "service",
    "method",
    "request_digest",
    "outcome",
    "status_code",
    "duration_ms",
    "spectrum_key",
    "detail",
)

#: a row's key as bound parameters (``_key_params``)
_KEY_MATCH = and_(
    sync_record.c.connection == bindparam("k_connection", type_=sync_record.c.connection.type),
    sync_record.c.record_type == bindparam("k_record_type", type_=sync_record.c.record_type.type),
    sync_record.c.source_id == bindparam("k_source_id", type_=sync_record.c.source_id.type),
)


def _key_params(key: RecordKey) -> dict[str, Any]:
    return {
        "k_connection": key.connection,
        "k_record_type": key.record_type,
        "k_source_id": key.source_id,
    }


def _claim_stmt() -> Any:
    """The claim's conditional take-over, on what the claimer read (``w_*``)."""
    c = sync_record.c
    return (
        update(sync_record)
        .where(
            c.id == bindparam("w_id"),
            c.status == bindparam("w_status", type_=c.status.type),
            c.updated_at == bindparam("w_updated_at", type_=c.updated_at.type),
        )
        .values(
            status=Status.IN_FLIGHT.value,
            lease_owner=bindparam("p_owner", type_=c.lease_owner.type),
            lease_until=bindparam("p_until", type_=c.lease_until.type),
            attempts=c.attempts + 1,
            crashes=c.crashes + bindparam("p_crashed", type_=c.crashes.type),
            updated_at=bindparam("p_now", type_=c.updated_at.type),
        )
        .returning(*c)
    )


#: what every non-waiting status clears: no due time, no retry streak
_SETTLED: dict[str, Any] = {"next_attempt_at": None, "retry_since": None, "retry_rounds": 0}


def _inbox_entry(row: Any) -> InboxEntry:
    m = row._mapping
    return InboxEntry(
        id=m["id"],
        connection=m["connection"],
        task=m["task"],
        source_id=m["source_id"],
        received_at=_aware(m["received_at"]) or utcnow(),
        due_at=_aware(m["due_at"]) or utcnow(),
    )


def dumps_state(state: dict[str, Any]) -> str:
    return json.dumps(state, sort_keys=True, default=str)
