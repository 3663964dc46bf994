"""Celery Beat entries (F15): weekly timecard catch-up, missed-change sweep, pending-invoice
backstop, the re-enqueuer of due ledger rows (docs/reliability.md), PO poll, alert mail.

Run exactly one Beat. Entries name tasks by string and expire no later than their interval,
so a backlog never piles up duplicate runs (each run is idempotent anyway: the ledger skips
what is done).
Times are in the account's time zone (``timezone`` in the config, which Celery uses too).
"""

from __future__ import annotations

from typing import Any

from celery.schedules import crontab

from worker.settings import Settings

#: task names the schedule refers to (implemented in tasks/)
CATCH_UP_TASK = "schedule.timecard_catch_up"
SWEEP_TASK = "schedule.sweep"
PO_POLL_TASK = "schedule.po_poll"
ALERTS_TASK = "schedule.send_alerts"
#: the re-enqueuer: waiting ledger rows and webhook inbox entries whose due time passed
REQUEUE_TASK = "schedule.requeue"
#: the pending-invoice backstop (every ``pending_accounting`` invoice not already scheduled)
PENDING_INVOICES_TASK = "schedule.pending_invoices"

_DAYS = {"sun": 0, "mon": 1, "tue": 2, "wed": 3, "thu": 4, "fri": 5, "sat": 6}


def catch_up_crontab(settings: Settings) -> crontab:
    """The weekly catch-up time, in the account's time zone."""
    s = settings.schedules
    return crontab(
        minute=s.catch_up_minute, hour=s.catch_up_hour, day_of_week=_DAYS[s.catch_up_day]
    )


def build_schedule(settings: Settings) -> dict[str, dict[str, Any]]:
    """The beat schedule for ``settings`` (one entry per connection where it matters)."""
    s = settings.schedules
    schedule: dict[str, dict[str, Any]] = {}
    for name in settings.connections:
        schedule[f"timecard-catch-up-{name}"] = {
            "task": CATCH_UP_TASK,
            "schedule": catch_up_crontab(settings),
            "args": (name,),
            "options": {"expires": 6 * 3600},
        }
        schedule[f"po-poll-{name}"] = {
            "task": PO_POLL_TASK,
            "schedule": float(s.po_poll_every_s),
            "args": (name,),
            "options": {"expires": float(s.po_poll_every_s)},
        }
    schedule["missed-change-sweep"] = {
        "task": SWEEP_TASK,
        "schedule": float(s.sweep_every_s),
        "options": {"expires": float(s.sweep_every_s)},
    }
    schedule["pending-invoices"] = {
        "task": PENDING_INVOICES_TASK,
        "schedule": float(s.sweep_every_s),
        "options": {"expires": float(s.sweep_every_s)},
    }
    every = float(settings.reliability.requeue_every_s)
    schedule["requeue-due"] = {
        "task": REQUEUE_TASK,
        "schedule": every,
        "options": {"expires": every},
    }
    schedule["send-alerts"] = {
        "task": ALERTS_TASK,
        "schedule": 60.0,
        "options": {"expires": 60.0},
    }
    return schedule
