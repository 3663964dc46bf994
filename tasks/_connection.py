"""Problems of a whole connection, seen while syncing one record (issue 14).

- Credentials refused (``AuthorizationError``: a Spectrum Authorization ID refused, ServiceTrade 401
  after a fresh token): the connection pauses (``worker/pause.py``), the record stays retryable.
- Info-Link lacks a table or column (``InfoLinkSchemaError``): the record fails with the reason (a
  configuration problem, retrying reads the same missing table) and the connection gets one alert
  per distinct problem.
- A record that syncs resumes a paused connection and re-enqueues the records it left pending.
"""

from __future__ import annotations

import hashlib
import logging
from typing import Protocol

from clients.errors import AuthorizationError, InfoLinkSchemaError
from worker import pause
from worker.context import SyncContext
from worker.ledger import RecordKey, Status

log = logging.getLogger("stsync.sync")


class Mark(Protocol):
    """``Run.mark``: record a status with the reason and the run's state."""

    def __call__(self, status: Status, *, error_kind: str | None, reason: str | None) -> None: ...


def credentials_refused(
    ctx: SyncContext, key: RecordKey, exc: AuthorizationError, mark: Mark
) -> str:
    """Leave the record pending (``mark``: the run's) and pause its connection; the reason."""
    reason = f"{key}: connection {key.connection!r} paused, credentials refused: {exc}"
    mark(Status.PENDING, error_kind=pause.ERROR_KIND, reason=reason)
    if pause.pause(ctx.ledger, key.connection, str(exc)):
        log.warning(
            "connection paused",
            extra={"connection": key.connection, "outcome": "paused", "detail": str(exc)[:500]},
        )
    return reason


def schema_problem(ctx: SyncContext, key: RecordKey, exc: InfoLinkSchemaError) -> None:
    """One alert for the connection per distinct missing table/column."""
    ctx.ledger.record_alert(
        pause.alert_key(key.connection, "infolink"),
        kind="configuration",
        problem_key=hashlib.sha256(str(exc).encode()).hexdigest()[:32],
        message=f"connection {key.connection!r}: {exc}",
    )


def resume_if_paused(ctx: SyncContext, connection: str) -> int:
    """After a call of ``connection`` succeeded: resume it; how many records were re-enqueued."""
    if not pause.resume(ctx.ledger, connection):
        return 0
    return reenqueue_paused(ctx, connection)


def reenqueue_paused(ctx: SyncContext, connection: str) -> int:
    """Send again every record the pause left pending (ids and the connection only)."""
    from tasks.registry import replay_for

    sent: set[tuple[str, tuple[object, ...]]] = set()
    for rec in pause.paused_records(ctx.ledger, connection):
        replay = replay_for(rec.key.record_type, rec.key.source_id, rec.key.connection)
        if replay is None or replay in sent:
            continue
        sent.add(replay)
        ctx.enqueue(*replay)
    log.warning(
        "connection resumed",
        extra={
            "connection": connection,
            "outcome": "resumed",
            "detail": f"{len(sent)} re-enqueued",
        },
    )
    return len(sent)
