"""``stsync status``: the scheduled runs (last and next) and what synced since a time.

Last runs come from the ledger, which every process shares (Beat's own schedule file lives on
Beat's disk only): the sweep's and the PO poll's high-water marks are written when a run finishes,
the timecard catch-up writes an audit row. Next runs follow from the configured schedule: every
``sweep_every_s`` / ``po_poll_every_s`` after the last run, and the weekly catch-up time in the
account's time zone.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from rich.console import Console
from rich.markup import escape
from rich.table import Table
from sqlalchemy import func, select

from clients.errors import ConfigError
from worker.settings import Settings

_DAYS = {"mon": 0, "tue": 1, "wed": 2, "thu": 3, "fri": 4, "sat": 5, "sun": 6}
#: at most this many synced records are listed one by one (the counts cover all of them)
SHOWN = 200


@dataclass(frozen=True)
class ScheduledRun:
    name: str
    connection: str
    last: datetime | None
    next: datetime | None
    every: str


def next_weekly(now: datetime, tz: str, weekday: str, hour: int, minute: int) -> datetime:
    """The first ``weekday hour:minute`` (in ``tz``) strictly after ``now`` (aware), in UTC."""
    local = now.astimezone(ZoneInfo(tz))
    days = (_DAYS[weekday] - local.weekday()) % 7
    candidate = datetime.combine(
        local.date() + timedelta(days=days), time(hour, minute), ZoneInfo(tz)
    )
    if candidate <= local:
        candidate = datetime.combine(
            candidate.date() + timedelta(days=7), time(hour, minute), ZoneInfo(tz)
        )
    return candidate.astimezone(UTC)


def _aware(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _watermark_updated(led: Any, connection: str, names: list[str] | str) -> datetime | None:
    from worker.ledger import watermark

    q = select(func.max(watermark.c.updated_at)).where(watermark.c.connection == connection)
    if isinstance(names, str):
        q = q.where(watermark.c.name.like(names))
    else:
        q = q.where(watermark.c.name.in_(names))
    with led.engine.connect() as conn:
        return _aware(conn.execute(q).scalar_one_or_none())


def _last_catch_up(led: Any) -> datetime | None:
    from worker.ledger import audit_event

    q = select(func.max(audit_event.c.at)).where(audit_event.c.service == "timecard_catch_up")
    with led.engine.connect() as conn:
        return _aware(conn.execute(q).scalar_one_or_none())


def _every(seconds: int) -> str:
    return f"every {seconds // 60} min" if seconds % 60 == 0 else f"every {seconds} s"


def scheduled_runs(
    settings: Settings, led: Any, connection: str | None, now: datetime
) -> list[ScheduledRun]:
    """The sweep, the PO poll and the timecard catch-up per connection: last and next run."""
    from tasks.purchase_order import WATERMARK as PO_WATERMARK
    from tasks.sweep import watermark_name

    s = settings.schedules
    catch_up_last = _last_catch_up(led)
    catch_up_next = next_weekly(
        now, settings.timezone, s.catch_up_day, s.catch_up_hour, s.catch_up_minute
    )
    runs: list[ScheduledRun] = []
    names = [connection] if connection else list(settings.connections)
    for name in names:
        if name in settings.auto_sync_connections():
            last = _watermark_updated(led, name, watermark_name("%"))
            runs.append(
                ScheduledRun(
                    "missed-change sweep",
                    name,
                    last,
                    last + timedelta(seconds=s.sweep_every_s) if last else None,
                    _every(s.sweep_every_s),
                )
            )
        last = _watermark_updated(led, name, [PO_WATERMARK])
        runs.append(
            ScheduledRun(
                "PO poll",
                name,
                last,
                last + timedelta(seconds=s.po_poll_every_s) if last else None,
                _every(s.po_poll_every_s),
            )
        )
        runs.append(
            ScheduledRun(
                "timecard catch-up",
                name,
                catch_up_last,
                catch_up_next,
                f"weekly, {s.catch_up_day} {s.catch_up_hour:02d}:{s.catch_up_minute:02d}",
            )
        )
    return runs


def _when(at: datetime | None, now: datetime, tz: str, *, future: bool) -> str:
    if at is None:
        return "not yet" if not future else "once Beat runs (first run after one interval)"
    local = at.astimezone(ZoneInfo(tz)).strftime("%Y-%m-%d %H:%M")
    delta = at - now if future else now - at
    minutes = int(abs(delta.total_seconds()) // 60)
    span = f"{minutes // 60} h {minutes % 60} min" if minutes >= 60 else f"{minutes} min"
    if future and delta.total_seconds() < 0:
        return f"{local} (overdue by {span}: is Beat running?)"
    return f"{local} ({'in ' + span if future else span + ' ago'})"


def schedule_table(
    settings: Settings, led: Any, connection: str | None, now: datetime | None = None
) -> Table:
    now = now or datetime.now(UTC)
    table = Table(
        title=f"Scheduled runs (Beat), times in {settings.timezone}", title_justify="left"
    )
    for column in ("scheduled run", "connection", "schedule", "last run", "next run"):
        table.add_column(column, overflow="fold")
    for run in scheduled_runs(settings, led, connection, now):
        table.add_row(
            run.name,
            run.connection,
            run.every,
            _when(run.last, now, settings.timezone, future=False),
            _when(run.next, now, settings.timezone, future=True),
        )
    return table


_SPAN = re.compile(r"^(\d+)\s*([mhd])$")


def parse_since(value: str, tz: str, now: datetime | None = None) -> datetime:
    """``today``, ``yesterday``, ``YYYY-MM-DD`` (midnight, account time zone), or ``30m``/``2h``/
    ``3d`` back from now; ConfigError naming the accepted forms otherwise."""
    now = now or datetime.now(UTC)
    zone = ZoneInfo(tz)
    text = value.strip().lower()
    today = now.astimezone(zone).date()
    day: date | None = None
    if text == "today":
        day = today
    elif text == "yesterday":
        day = today - timedelta(days=1)
    elif m := _SPAN.match(text):
        unit = {"m": "minutes", "h": "hours", "d": "days"}[m.group(2)]
        return now - timedelta(**{unit: int(m.group(1))})
    else:
        try:
            day = date.fromisoformat(text)
        except ValueError:
            raise ConfigError(
                f"--since {value!r}: give today, yesterday, a date (YYYY-MM-DD) or a span "
                "like 30m, 2h, 3d",
                field="since",
                value=value,
            ) from None
    return datetime.combine(day, time(0), zone).astimezone(UTC)


def print_synced_since(
    console: Console, settings: Settings, led: Any, connection: str | None, since: str
) -> None:
    from collections import Counter

    from worker.ledger import Status

    start = parse_since(since, settings.timezone)
    rows = [
        r
        for r in led.list_records(
            statuses=(Status.DONE,), connection=connection, since=start, limit=1_000_000
        )
        if (_aware(r.done_at) or _aware(r.updated_at) or start) >= start
    ]
    failed = led.list_records(
        statuses=(Status.FAILED, Status.UNKNOWN),
        connection=connection,
        since=start,
        limit=1_000_000,
    )
    local = start.astimezone(ZoneInfo(settings.timezone)).strftime("%Y-%m-%d %H:%M")
    per_type = Counter(r.key.record_type for r in rows)
    summary = ", ".join(f"{n} {t}" for t, n in sorted(per_type.items())) or "nothing"
    console.print(f"synced since {local} ({settings.timezone}): {summary}", highlight=False)
    if rows:
        table = Table(title=f"Synced since {local} ({settings.timezone})", title_justify="left")
        for column in ("record", "Spectrum", "synced at"):
            table.add_column(column, overflow="fold")
        for r in sorted(rows, key=lambda r: _aware(r.done_at) or start)[:SHOWN]:
            at = _aware(r.done_at) or _aware(r.updated_at) or start
            table.add_row(
                escape(str(r.key)),
                escape(r.spectrum_key or "-"),
                at.astimezone(ZoneInfo(settings.timezone)).strftime("%Y-%m-%d %H:%M"),
            )
        console.print(table)
        if len(rows) > SHOWN:
            console.print(f"... and {len(rows) - SHOWN} more (see `stsync history`)")
    if failed:
        console.print(
            f"[yellow]{len(failed)} record(s) failed or unknown since then[/yellow]: "
            "`stsync failures --since` lists them",
            highlight=False,
        )
