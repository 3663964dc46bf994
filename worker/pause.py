"""Connections paused by a credential failure, kept in the ledger (issue 14).

When Spectrum refuses a connection's Authorization ID, or ServiceTrade answers 401 again after a
fresh token, the fault is the connection's, not the record's: the record stays retryable
(``pending``, error kind ``paused``), the connection is marked paused (a ``watermark`` row
``paused_since``), and one alert goes to its support contacts per hour while it stays paused. The
first call that succeeds for the connection (or a passing ``stsync doctor``) resumes it; the caller
then re-enqueues the records left ``paused``.

Nothing here looks at HTTP codes: the clients raise ``AuthorizationError`` and the pipeline calls
``pause``. The alert rows use the record type ``connection`` (``stsync alerts list`` shows them).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import delete, select

from worker.alerts import CONNECTION_ALERT
from worker.ledger import Ledger, Record, RecordKey, Status, watermark

#: the ledger's ``error_kind`` of a record left retryable because its connection is paused
ERROR_KIND = "paused"
#: watermark name holding when the connection was paused (ISO time)
PAUSED_SINCE = "paused_since"
#: watermark name holding when the last pause alert was recorded (kept across pauses)
ALERTED_AT = "paused_alerted_at"
#: ledger record type of alerts about a whole connection
CONNECTION = CONNECTION_ALERT
#: at most one alert per paused connection in this many seconds
ALERT_EVERY_S = 3600


@dataclass(frozen=True)
class Paused:
    connection: str
    since: datetime
    reason: str


def alert_key(connection: str, what: str) -> RecordKey:
    """The ledger key under which alerts about ``connection`` itself are kept."""
    return RecordKey(connection, CONNECTION, what)


def _now() -> datetime:
    return datetime.now(UTC)


def paused_since(ledger: Ledger, connection: str) -> datetime | None:
    value = ledger.get_watermark(connection, PAUSED_SINCE)
    return datetime.fromisoformat(value) if value else None


def pause(ledger: Ledger, connection: str, reason: str, *, now: datetime | None = None) -> bool:
    """Mark ``connection`` paused (if it is not) and alert once per hour; True when alerted now."""
    now = now or _now()
    since = paused_since(ledger, connection)
    if since is None:
        since = now
        ledger.set_watermark(connection, PAUSED_SINCE, now.isoformat())
    # at most one alert an hour per connection, across pauses (a connection whose services are
    # only partly authorized pauses and resumes repeatedly): none within an hour of the last one,
    # and the clock hour is the problem key, so two workers failing at once store it once
    key = alert_key(connection, "credentials")
    last = ledger.get_watermark(connection, ALERTED_AT)
    if last is not None and (now - datetime.fromisoformat(last)).total_seconds() < ALERT_EVERY_S:
        return False
    ledger.set_watermark(connection, ALERTED_AT, now.isoformat())
    hour = int(now.timestamp() // ALERT_EVERY_S)
    message = (
        f"connection {connection!r} is paused since {since:%Y-%m-%d %H:%M} UTC: the credentials "
        f"were refused ({reason}). Its records stay pending and resume by themselves once a call "
        "succeeds: fix the Authorization ID / ServiceTrade credentials, then run `stsync doctor`"
    )
    return ledger.record_alert(
        key, kind=ERROR_KIND, problem_key=f"{ERROR_KIND}:{hour}", message=message
    )


def resume(ledger: Ledger, connection: str) -> bool:
    """Clear the pause; True when the connection was paused (the caller re-enqueues).

    Called after every successful record: a read first, a write only when there is a pause.
    """
    if ledger.get_watermark(connection, PAUSED_SINCE) is None:
        return False
    with ledger.tx() as conn:
        res = conn.execute(
            delete(watermark)
            .where(watermark.c.connection == connection, watermark.c.name == PAUSED_SINCE)
            .returning(watermark.c.value)
        )
        return res.first() is not None


def paused_records(ledger: Ledger, connection: str) -> list[Record]:
    """The connection's records left retryable while it was paused."""
    return [
        r
        for r in ledger.list_records(
            statuses=(Status.PENDING,), connection=connection, limit=100_000
        )
        if r.error_kind == ERROR_KIND
    ]


def paused_connections(ledger: Ledger) -> list[Paused]:
    """Every paused connection with when and why (``stsync status``)."""
    with ledger.engine.connect() as conn:
        rows = conn.execute(
            select(watermark.c.connection, watermark.c.value)
            .where(watermark.c.name == PAUSED_SINCE)
            .order_by(watermark.c.connection)
        ).all()
    out = []
    for connection, value in rows:
        alerts = ledger.alerts(alert_key(connection, "credentials"))
        reason = str(alerts[-1]["message"]) if alerts else ""
        out.append(Paused(connection, datetime.fromisoformat(value), reason))
    return out
