"""Operations: the alert mailer on Beat (F14) and which task replays which ledger record.

``schedule.send_alerts`` mails the ledger's unsent alerts (``worker.alerts``). ``replay_for`` is the
one table that says how a ledger record is queued again (``stsync retry``, the alert e-mails): every
record type that exists, with ids and the connection name as the only task arguments.
"""

from __future__ import annotations

from typing import Any

from tasks import customer as customer_task
from tasks import invoice as invoice_task
from tasks import job as job_task
from tasks import purchase_order as po_task
from tasks import site as site_task
from tasks import timecard as timecard_task
from worker.celery_app import Queue, app
from worker.context import get_context
from worker.ledger import RecordKey

ALERTS_TASK_NAME = "schedule.send_alerts"

#: ledger record type -> (task that replays it, whether its source id is "<parent>:<part>")
REPLAY_TASKS: dict[str, tuple[str, bool]] = {
    customer_task.RECORD_TYPE: (customer_task.TASK_NAME, False),
    site_task.RECORD_TYPE: (site_task.TASK_NAME, False),
    job_task.RECORD_TYPE: (job_task.TASK_NAME, False),
    job_task.WORK_ORDER_RECORD_TYPE: (job_task.SEND_TASK_NAME, False),
    invoice_task.RECORD_TYPE: (invoice_task.TASK_NAME, False),
    # a void and each posted document are replayed through their invoice's task
    invoice_task.VOID_RECORD_TYPE: (invoice_task.TASK_NAME, False),
    invoice_task.DOCUMENT_RECORD_TYPE: (invoice_task.TASK_NAME, True),
    timecard_task.RECORD_TYPE: (timecard_task.TASK_NAME, False),
    # an entry is replayed through its card (the card posts only what is missing)
    timecard_task.ENTRY_RECORD_TYPE: (timecard_task.TASK_NAME, True),
}


def replay_for(key: RecordKey) -> tuple[str, tuple[Any, ...]] | None:
    """The task name and arguments that replay ``key``; None when its type has no replay.

    Arguments are ids and the connection name only. PO lines keep their string key
    (``"26001:001"``); every other record is replayed by its integer ServiceTrade id (for
    composite ids, the part before ``:``).
    """
    if key.record_type == po_task.RECORD_TYPE:
        return po_task.LINE_TASK_NAME, (key.source_id, key.connection)
    entry = REPLAY_TASKS.get(key.record_type)
    if entry is None:
        return None
    task, composite = entry
    head = key.source_id.split(":", 1)[0] if composite else key.source_id
    if not head.isdigit():
        return None
    return task, (int(head), key.connection)


@app.task(
    name=ALERTS_TASK_NAME,
    queue=Queue.SCHEDULE.value,
    acks_late=True,
    ignore_result=True,
)
def send_alerts() -> dict[str, Any]:
    """Beat, every minute: mail the unsent alerts to each connection's support contacts.

    Idempotent: an alert is claimed before its mail and marked sent once the SMTP server accepted
    it, so overlapping runs never mail it twice. Not retried by Celery: an SMTP failure leaves the
    alerts unsent and the next minute's run tries again.
    """
    from worker.alerts import deliver_alerts

    ctx = get_context()
    return deliver_alerts(ctx.ledger, ctx.settings).as_dict()
