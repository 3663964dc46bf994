"""A ServiceTrade user changed: wake the records that failed on it (F21, ``tasks/heal.py``).

stsync never syncs users, but an invoice fails while its job's salesperson has no Spectrum
salesperson code and a timecard fails while its technician has no Spectrum employee. The office
fixes the user in ServiceTrade (its ``externalIds``), and ServiceTrade announces it as a ``user``
``updated`` webhook, routed here by the registry (``tasks.registry.USER``). The task only wakes:
each record woken runs its normal sync and lands, or fails again with the fresh reason (its
comment and alert are not repeated for an unchanged reason). Thin: the decision is in
``tasks.heal.user_changed``.
"""

from __future__ import annotations

from tasks import heal, registry
from tasks._celery import WatchTask, sync_task
from worker.context import get_context

TASK_NAME = registry.USER.task


@sync_task(TASK_NAME, registry.USER.entity, base=WatchTask)
def user_changed(user_id: int, connection: str | None = None) -> str:
    """Queue the failed invoices and timecards that waited on ServiceTrade user ``user_id``.

    Idempotent: nothing waits -> nothing read, nothing queued; a woken record's sync dedupes."""
    woken = heal.user_changed(get_context(), user_id, connection)
    return f"woke {woken}"
