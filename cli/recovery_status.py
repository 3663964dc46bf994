"""The recovery part of ``stsync status``: what waits, when it is due, and invariant breaches.

Invariant (docs/reliability.md): no ledger row is waiting (``pending``/``retry_later``) with nothing
queued or scheduled for it. A row breaks it when it has no due time, or when its due time (or an
in-flight row's lease, or a webhook inbox entry's due time) passed longer ago than the re-enqueue
interval plus the visibility timeout: then the Beat re-enqueuer is not running, or the row is of a
type no task can settle. ``stsync status`` lists those rows and exits 3.
"""

from __future__ import annotations

from datetime import UTC, datetime

from rich.console import Console
from rich.table import Table

from worker.ledger import Breach, Ledger, Status
from worker.settings import Settings

#: exit code of ``stsync status`` when a row breaks the invariant
BREACH_EXIT = 3


def waiting_summary(ledger: Ledger, connection: str | None) -> list[tuple[str, int, str]]:
    """``(status, rows, next due)`` for the waiting statuses."""
    out = []
    for status in (Status.PENDING, Status.RETRY_LATER):
        rows = ledger.list_records(statuses=(status,), connection=connection, limit=100_000)
        dues = [r.next_attempt_at for r in rows if r.next_attempt_at is not None]
        nxt = min(dues).strftime("%Y-%m-%d %H:%M:%S UTC") if dues else "-"
        out.append((status.value, len(rows), nxt))
    return out


def breaches(ledger: Ledger, settings: Settings, now: datetime | None = None) -> list[Breach]:
    rel = settings.reliability
    return ledger.invariant_breaches(
        now or datetime.now(UTC), tolerance_s=float(rel.requeue_every_s + rel.visibility_timeout_s)
    )


def print_recovery(
    console: Console, ledger: Ledger, settings: Settings, connection: str | None
) -> int:
    """Print the waiting rows and the invariant check; returns the exit code (0 or 3)."""
    table = Table("waiting", "rows", "next due")
    for status, n, nxt in waiting_summary(ledger, connection):
        table.add_row(status, str(n), nxt)
    inbox = len(ledger.inbox_entries())
    table.add_row("webhook inbox", str(inbox), "-")
    console.print(table)
    found = [
        b
        for b in breaches(ledger, settings)
        if connection is None or b.name.startswith(f"{connection}/")
    ]
    if not found:
        console.print("invariant: OK (every waiting row has something queued or scheduled)")
        return 0
    bad = Table("row", "status", "due (UTC)", "problem", title="rows with nothing queued")
    for b in found[:200]:
        due = b.due.strftime("%Y-%m-%d %H:%M:%S") if b.due else "-"
        bad.add_row(b.name, b.status, due, b.problem)
    console.print(bad)
    console.print(
        f"[red]invariant broken: {len(found)} row(s) with nothing queued or scheduled[/red]; "
        "is Beat running (schedule.requeue)? `stsync retry` re-queues a row by hand"
    )
    return BREACH_EXIT
