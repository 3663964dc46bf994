"""Operations: the alert mailer on Beat (F14) and which task replays which ledger record.

``schedule.send_alerts`` mails the ledger's unsent alerts (``worker.alerts``). ``replay_for`` says
how a ledger record is queued again (``stsync retry``, the alert e-mails), from the record-type
registry (``tasks.registry``), with ids and the connection name as the only task arguments.
"""

from __future__ import annotations

from typing import Any

from tasks import registry
from worker.celery_app import Queue, app
from worker.context import get_context
from worker.ledger import RecordKey

ALERTS_TASK_NAME = "schedule.send_alerts"


def replay_for(key: RecordKey) -> tuple[str, tuple[Any, ...]] | None:
    """The task name and arguments that replay ``key``; None when its type has no replay.

    Arguments are ids and the connection name only (``tasks.registry``: PO lines keep their
    string key ``"26001:001"``; every other record is replayed by its integer ServiceTrade id, for
    composite ids the part before ``:``).
    """
    return registry.replay_for(key.record_type, key.source_id, key.connection)


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
