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
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Any

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
    create_engine,
    event,
    func,
    or_,
    select,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection
from sqlalchemy.pool import NullPool

from clients.errors import PermanentError

metadata = MetaData()


class Status(StrEnum):
    PENDING = "pending"  # seen, not (yet) synced; also "will retry"
    IN_FLIGHT = "in_flight"  # a worker holds the claim
    DONE = "done"
    FAILED = "failed"  # needs a person (reason in last_error)
    SKIPPED = "skipped"  # deliberately not synced (reason in last_error)
    UNKNOWN = "unknown"  # a write whose outcome cannot be known; a person must check


TERMINAL = frozenset({Status.DONE, Status.FAILED, Status.SKIPPED, Status.UNKNOWN})


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
    UniqueConstraint("connection", "record_type", "source_id", name="uq_sync_record_key"),
    Index("ix_sync_record_status", "connection", "status"),
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

    @classmethod
    def from_row(cls, row: Any) -> Record:
        m = row._mapping
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
        )


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


def make_engine(url: str) -> Engine:
    """An engine tuned for the ledger: WAL and a busy timeout on SQLite."""
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
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.close()

        return engine
    return create_engine(url, pool_pre_ping=True, pool_size=5, max_overflow=5)


class Ledger:
    """Typed access to the ledger tables. One instance per process."""

    def __init__(self, url: str, *, engine: Engine | None = None) -> None:
        self.url = url
        self.engine = engine or make_engine(url)

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

    # --- records ----------------------------------------------------------------------------
    def ensure(self, key: RecordKey) -> Record:
        """The row for ``key``, created as ``pending`` if it did not exist (race-free)."""
        now = utcnow()
        with self.tx() as conn:
            stmt = (
                self._insert(sync_record)
                .values(
                    connection=key.connection,
                    record_type=key.record_type,
                    source_id=key.source_id,
                    status=Status.PENDING.value,
                    state={},
                    attempts=0,
                    crashes=0,
                    created_at=now,
                    updated_at=now,
                )
                .on_conflict_do_nothing(index_elements=["connection", "record_type", "source_id"])
            )
            conn.execute(stmt)
            row = conn.execute(self._where(key)).one()
        return Record.from_row(row)

    def _where(self, key: RecordKey) -> Any:
        return select(sync_record).where(
            sync_record.c.connection == key.connection,
            sync_record.c.record_type == key.record_type,
            sync_record.c.source_id == key.source_id,
        )

    def get(self, key: RecordKey) -> Record | None:
        with self.engine.connect() as conn:
            row = conn.execute(self._where(key)).first()
        return Record.from_row(row) if row else None

    def get_many(
        self, connection: str, record_type: str, source_ids: Iterable[str]
    ) -> dict[str, Record]:
        """Rows for many source ids in ONE query (bulk skip in catch-ups and sweeps)."""
        ids = list(source_ids)
        if not ids:
            return {}
        out: dict[str, Record] = {}
        with self.engine.connect() as conn:
            for i in range(0, len(ids), 500):
                rows = conn.execute(
                    select(sync_record).where(
                        sync_record.c.connection == connection,
                        sync_record.c.record_type == record_type,
                        sync_record.c.source_id.in_(ids[i : i + 500]),
                    )
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
        self.ensure(key)
        now = utcnow()
        until = now + timedelta(seconds=lease_s)
        with self.tx() as conn:
            current = Record.from_row(conn.execute(self._where(key)).one())
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
                update(sync_record)
                .where(
                    sync_record.c.id == current.id,
                    sync_record.c.status == current.status.value,
                    sync_record.c.updated_at == current.updated_at,
                )
                .values(
                    status=Status.IN_FLIGHT.value,
                    lease_owner=owner,
                    lease_until=until,
                    attempts=sync_record.c.attempts + 1,
                    crashes=sync_record.c.crashes + (1 if recovered else 0),
                    updated_at=now,
                )
            )
            if res.rowcount != 1:
                latest = Record.from_row(conn.execute(self._where(key)).one())
                return Claim(latest, held=False)
            row = conn.execute(self._where(key)).one()
        return Claim(Record.from_row(row), held=True, recovered=recovered)

    def _finish(self, key: RecordKey, owner: str | None, **values: Any) -> Record:
        now = utcnow()
        values.setdefault("updated_at", now)
        with self.tx() as conn:
            conditions = [
                sync_record.c.connection == key.connection,
                sync_record.c.record_type == key.record_type,
                sync_record.c.source_id == key.source_id,
            ]
            if owner is not None:
                conditions.append(sync_record.c.lease_owner == owner)
            conn.execute(update(sync_record).where(and_(*conditions)).values(**values))
            row = conn.execute(self._where(key)).one()
        return Record.from_row(row)

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
        now = utcnow()
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
        }
        if payload_digest is not None:
            values["payload_digest"] = payload_digest
        if state is not None:
            values["state"] = state
        return self._finish(key, None, **values)

    def mark(
        self,
        key: RecordKey,
        status: Status,
        *,
        error_kind: str | None = None,
        reason: str | None = None,
        state: dict[str, Any] | None = None,
        reset_crashes: bool = True,
    ) -> Record:
        """Leave the record in ``status`` (pending/failed/skipped/unknown) and release the claim."""
        values: dict[str, Any] = {
            "status": status.value,
            "error_kind": error_kind,
            "last_error": reason,
            "lease_owner": None,
            "lease_until": None,
        }
        if reset_crashes:
            values["crashes"] = 0
        if state is not None:
            values["state"] = state
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
        )

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
        with self.tx() as conn:
            conn.execute(
                self._insert(code_counter)
                .values(connection=connection, kind=kind, next_value=start)
                .on_conflict_do_nothing(index_elements=["connection", "kind"])
            )
            value = conn.execute(
                update(code_counter)
                .where(code_counter.c.connection == connection, code_counter.c.kind == kind)
                .values(next_value=code_counter.c.next_value + 1)
                .returning(code_counter.c.next_value)
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
        with self.tx() as conn:
            conn.execute(
                audit_event.insert().values(
                    at=utcnow(),
                    connection=key.connection if key else None,
                    record_type=key.record_type if key else None,
                    source_id=key.source_id if key else None,
                    system=system,
                    service=service,
                    method=method,
                    request_digest=request_digest,
                    outcome=outcome,
                    status_code=status_code,
                    duration_ms=duration_ms,
                    spectrum_key=spectrum_key,
                    detail=(detail or "")[:2000] or None,
                )
            )

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
        with self.engine.connect() as conn:
            return conn.execute(
                select(watermark.c.value).where(
                    watermark.c.connection == connection, watermark.c.name == name
                )
            ).scalar_one_or_none()

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


def dumps_state(state: dict[str, Any]) -> str:
    return json.dumps(state, sort_keys=True, default=str)
