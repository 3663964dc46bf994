"""Heal on change (F21): a failed or skipped record is looked at again when its cause may be gone.

A customer, site, job, invoice or timecard that failed or was skipped is not final. It is examined
again (claimed and run through its normal sync) when

- its ServiceTrade record changed after the attempt that failed it (a later ``updated``, or a
  different content: ServiceTrade's ``updated`` has one-second resolution, so a fix made within
  the same second is caught by the content digest), or
- the configuration sections the attempt used changed (a fingerprint of those sections,
  ``CONFIG_SECTIONS``, is stored with the attempt; ``tasks/requeue.py`` queues each such row once
  per change: a ``salesperson_map`` or ``employee_map`` entry added, a processing window opened),
  or
- it failed because a prerequisite was missing: the prerequisite decides by the same rule, so a
  dependent always reports the *fresh* reason.

Customers, sites and jobs decide in their ``reclaim`` rule (``reclaim_rule``). A timecard is
claimed again on every delivery anyway (its failed and skipped entries with it). An invoice that
stsync failed is ``failed`` in ServiceTrade, which nothing posts: ``sync_invoice`` posts it when
``config_changed`` says its attempt used other configuration, approving it again in ServiceTrade
only once its documents mapped (tasks/invoice.py), so a fix that did not cure it writes nothing.

Nothing else re-runs it (a webhook repeating an unchanged record stays a no-op), so a record that
keeps failing for the same reason is not retried in a loop and comments/alerts are not repeated.

The attempt's facts live in one state key, ``heal`` (``{"updated", "digest", "config"}``), written
by the sync body right after it fetched the record. A record failed for a missing prerequisite
also carries ``waits_on`` (``"job:123"``; ``Ledger.mark`` copies it into an indexed column, so
finding the waiters does not read every failed row): when that prerequisite lands,
``wake_waiters`` queues the records that waited on it (invoices, timecards, jobs, sites), so
nothing needs a person.

A record that waits for a person to fix a ServiceTrade *user* (an invoice whose job's salesperson
has no Spectrum salesperson code, a timecard whose technician has no Spectrum employee) carries
``waits_on = "user:<id>"``. ServiceTrade announces the fix as a ``user`` ``updated`` webhook,
routed (tasks/registry.py) to ``sync.user`` (tasks/user.py), which calls ``user_changed``: the
records the user's new state may cure are woken as above. The missed-change sweep reads each
waited-on user and calls it too when the user's ``updated`` is newer than the failure
(``waited_users``), so a lost webhook is not a lost fix.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any

from pydantic import BaseModel

from clients.errors import PrerequisiteMissing
from clients.servicetrade.models import User
from mappers.invoice import salesperson_code_for
from tasks.state import State
from worker.context import SyncContext
from worker.ledger import PREREQUISITE, Record, RecordKey, Status
from worker.settings import ConnectionSettings

log = logging.getLogger("stsync.heal")

#: the state key holding the facts of the last attempt
STATE_KEY = "heal"
#: the state key naming the prerequisite a failed record waits on (``"<record type>:<id>"``)
WAITS_ON = "waits_on"

#: per record type, the configuration sections whose change may cure a failure or a skip
CONFIG_SECTIONS: dict[str, tuple[str, ...]] = {
    "customer": ("company_code", "customers", "tax"),
    "site": ("company_code", "sites", "tax"),
    "job": ("company_code", "mode", "jobs", "cost_centers", "tax", "work_orders"),
    # salesperson_map, require_salesperson, processing_window, job_type_gl, numbers ...; the
    # customer code (mode), GL and cost centers of the lines, sales tax codes. What the invoice's
    # customer, site and job use is theirs: they heal on it and wake the invoice (``waits_on``)
    "invoice": ("company_code", "mode", "invoices", "cost_centers", "tax"),
    # employee_map, pay types, phases, departments, processing window, unsynced_job_labor ...;
    # the cost center picks the Spectrum job of a multi-cost-center job
    "timecard": ("company_code", "timecards", "cost_centers"),
    "timecard_entry": ("company_code", "timecards", "cost_centers"),
}

#: ``PrerequisiteMissing.field`` values that name the prerequisite's record type
_PREREQUISITE_TYPES = {
    "customer": "customer",
    "site": "site",
    "job": "job",
    "Job_Number": "job",
}


def config_fingerprint(conn: ConnectionSettings, record_type: str) -> str:
    """A digest of the configuration sections ``record_type`` uses (plus the connection's key)."""
    rules = conn.rules
    parts: dict[str, Any] = {"external_id_key": conn.external_id_key}
    for name in CONFIG_SECTIONS.get(record_type, ()):
        value = getattr(rules, name)
        parts[name] = value.model_dump(mode="json") if isinstance(value, BaseModel) else value
    text = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def content_digest(record: BaseModel) -> str:
    """What a ServiceTrade record says, without its clock."""
    data = record.model_dump(mode="json", exclude={"updated"})
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


def facts(record: BaseModel, conn: ConnectionSettings, record_type: str) -> dict[str, Any]:
    """The ``heal`` facts of an attempt on ``record`` (stored by the sync body)."""
    updated = getattr(record, "updated", None)
    return {
        "updated": updated,
        "digest": content_digest(record),
        "config": config_fingerprint(conn, record_type),
    }


def config_changed(rec: Record, conn: ConnectionSettings) -> bool:
    """Whether the failed/skipped ``rec`` was last attempted under other configuration sections
    (``CONFIG_SECTIONS`` of its type) than ``conn`` has now. Rows from before the fingerprint was
    stored are not (nothing says what they used)."""
    if rec.status not in (Status.FAILED, Status.SKIPPED):
        return False
    used = (State.load(rec.state).heal or {}).get("config")
    return bool(used) and used != config_fingerprint(conn, rec.key.record_type)


def reexamine_reason(rec: Record, *, now_facts: dict[str, Any] | None, config: str) -> str | None:
    """Why the failed/skipped/done record ``rec`` should be looked at again, or None.

    ``now_facts`` are the ``facts`` of the record as ServiceTrade has it now (None when it could
    not be read: then only the configuration and prerequisites decide). Pure.
    """
    if rec.status not in (Status.FAILED, Status.SKIPPED, Status.DONE):
        return None
    before = State.load(rec.state).heal or {}
    if rec.error_kind == "route":
        return "it was kept out by routing, and is asked for here now"
    if rec.status is Status.FAILED and rec.error_kind == PREREQUISITE:
        return "a prerequisite it waited on is looked at again"
    if before.get("config") and before["config"] != config:
        return "the configuration it used changed"
    if now_facts is None:
        return None
    updated, was = now_facts.get("updated"), before.get("updated")
    if isinstance(updated, int):
        if isinstance(was, int) and updated > was:
            return "its ServiceTrade record changed after the last attempt"
        if was is None and not before and updated > int(rec.updated_at.timestamp()):
            # a row written before stsync stored these facts: compare with the row's clock
            return "its ServiceTrade record changed after the last attempt"
    if before.get("digest") and now_facts.get("digest") != before["digest"]:
        return "its ServiceTrade record changed after the last attempt"
    return None


def reclaim_rule(
    ctx: SyncContext,
    conn: ConnectionSettings,
    record_type: str,
    fetch: Callable[[], BaseModel],
    *,
    statuses: Iterable[Status] = (Status.FAILED, Status.SKIPPED),
) -> Callable[[Record], bool]:
    """The ``reclaim`` predicate of ``run_record`` for a customer/site/job.

    Reads the ServiceTrade record only for a row in ``statuses``; audits why it runs again.
    """
    wanted = frozenset(statuses)

    def rule(rec: Record) -> bool:
        if rec.status not in wanted:
            return False
        config = config_fingerprint(conn, record_type)
        try:
            now_facts: dict[str, Any] | None = facts(fetch(), conn, record_type)
        except PrerequisiteMissing:
            now_facts = None
        except Exception as exc:  # noqa: BLE001 - the body will fetch again and classify it
            log.info("heal: could not read %s: %s", rec.key, exc)
            return True
        why = reexamine_reason(rec, now_facts=now_facts, config=config)
        if why is None:
            return False
        ctx.ledger.audit(
            system="stsync",
            service="heal",
            outcome="reexamine",
            key=rec.key,
            detail=f"was {rec.status.value}; looked at again: {why}",
        )
        return True

    return rule


def waits_on(exc: PrerequisiteMissing) -> str | None:
    """``"<record type>:<source id>"`` of the prerequisite ``exc`` names, when it names one."""
    if exc.waits_on:
        return exc.waits_on
    kind = _PREREQUISITE_TYPES.get(str(exc.field or ""))
    if kind is None or exc.value in (None, ""):
        return None
    return f"{kind}:{exc.value}"


# --- waking the records that waited -----------------------------------------------------------
def _invoice_wake(ctx: SyncContext, rec: Record) -> None:
    """An invoice stsync failed (status ``failed``) only for a missing prerequisite is approved
    again (``pending_accounting``), which is what its comment asked a person to do."""
    invoice_id = int(rec.key.source_id)
    invoice = ctx.st.get_invoice(invoice_id)
    if invoice.status == "failed":
        ctx.st.set_invoice_status(invoice_id, "pending_accounting")
    ctx.enqueue("sync.invoice", (invoice_id, rec.key.connection))


def _task_wake(task: str, source_id: Callable[[str], int]) -> Callable[[SyncContext, Record], None]:
    def wake(ctx: SyncContext, rec: Record) -> None:
        ctx.enqueue(task, (source_id(rec.key.source_id), rec.key.connection))

    return wake


WAKERS: dict[str, Callable[[SyncContext, Record], None]] = {
    "invoice": _invoice_wake,
    "timecard": _task_wake("sync.timecard", int),
    "timecard_entry": _task_wake("sync.timecard", lambda sid: int(sid.split(":", 1)[0])),
    "job": _task_wake("sync.job", int),
    "site": _task_wake("sync.site", int),
}


def waiting_on(ctx: SyncContext, key: RecordKey) -> list[Record]:
    """Failed records of ``key.connection`` that wait on the prerequisite ``key`` (found by the
    ledger's ``waits_on`` index: this runs after every first landing of a customer, site or job
    and on every user webhook, however many failed rows the ledger holds)."""
    target = f"{key.record_type}:{key.source_id}"
    recs = ctx.ledger.waiting(key.connection, on=target)
    return [r for r in recs if State.load(r.state).waits_on == target]


def wake_waiters(
    ctx: SyncContext,
    key: RecordKey,
    *,
    waiters: Iterable[Record] | None = None,
    why: str = "is now in Spectrum",
) -> int:
    """Queue every record that waited on ``key`` (now in Spectrum), or only ``waiters``;
    returns how many."""
    woken = 0
    seen: set[tuple[str, str]] = set()
    for rec in waiting_on(ctx, key) if waiters is None else waiters:
        wake = WAKERS.get(rec.key.record_type)
        ident = (rec.key.record_type, rec.key.source_id.split(":", 1)[0])
        if wake is None or ident in seen:
            continue
        seen.add(ident)
        try:
            wake(ctx, rec)
        except Exception as exc:  # noqa: BLE001 - one waiter must not stop the others
            # the prerequisite is done, so no later run of it wakes this record: tell a person
            message = (
                f"{rec.key} waited on {key}, which {why}, but queueing it "
                f"again failed ({type(exc).__name__}: {exc}); run `stsync retry "
                f"{rec.key.record_type.removesuffix('_entry')} "
                f"{rec.key.source_id.split(':', 1)[0]}`"
            )
            ctx.ledger.record_alert(
                rec.key,
                kind="wake",
                message=message,
                problem_key=hashlib.sha256(message.encode()).hexdigest()[:32],
            )
            log.warning("heal: %s", message)
            continue
        ctx.ledger.audit(
            system="stsync",
            service="heal",
            outcome="wake",
            key=rec.key,
            detail=f"{key} {why}; queued again",
        )
        woken += 1
    return woken


# --- a ServiceTrade user fixed (the salesperson's or the technician's Spectrum code) -----------
#: the ``waits_on`` prefix of a record that waits for a person to fix a ServiceTrade user
USER = "user"


def _salesperson_code_set(user: User, conn: ConnectionSettings) -> bool:
    return (
        salesperson_code_for(user, rules=conn.rules.invoices, external_id_key=conn.external_id_key)
        is not None
    )


def _always(user: User, conn: ConnectionSettings) -> bool:
    return True


#: per waiting record type, whether the user as ServiceTrade has it now may cure the failure. An
#: invoice is woken only once its salesperson has a code: waking it approves it again in
#: ServiceTrade, which an unrelated edit of the user must not do. A timecard is always looked at
#: again (its employee is checked in Spectrum by its own sync, and its alert is not repeated for
#: an unchanged reason).
USER_CURES: dict[str, Callable[[User, ConnectionSettings], bool]] = {
    "invoice": _salesperson_code_set,
    "timecard": _always,
    "timecard_entry": _always,
}


def user_changed(ctx: SyncContext, user_id: int, connection: str | None = None) -> int:
    """A ServiceTrade user changed (its ``user`` webhook, or the sweep saw a newer ``updated``):
    queue the failed records that waited on it and that its new state may cure. Returns how many.

    Reads the user only when something waits on it; nothing waits -> no call at all."""
    conn = ctx.connection(connection)
    key = RecordKey(conn.name, USER, str(user_id))
    waiters = waiting_on(ctx, key)
    if not waiters:
        return 0
    user = ctx.st.get_user(user_id)
    cured: list[Record] = []
    for rec in waiters:
        if USER_CURES.get(rec.key.record_type, _always)(user, conn):
            cured.append(rec)
            continue
        ctx.ledger.audit(
            system="stsync",
            service="heal",
            outcome="noop",
            key=rec.key,
            detail=f"{key} changed, but not what {rec.key.record_type} waits for; left failed",
        )
    return wake_waiters(ctx, key, waiters=cured, why="changed in ServiceTrade")


def waited_users(ctx: SyncContext, connection: str) -> dict[int, datetime]:
    """ServiceTrade users failed records of ``connection`` wait on -> the latest time such a
    record was failed (the sweep compares it with the user's ``updated``)."""
    out: dict[int, datetime] = {}
    for rec in ctx.ledger.waiting(connection, on_type=USER):
        target = State.load(rec.state).waits_on or ""
        kind, _, ident = target.partition(":")
        if kind != USER or not ident.isdigit():
            continue
        uid = int(ident)
        out[uid] = max(out.get(uid, rec.updated_at), rec.updated_at)
    return out


def stamp(state: State, record: BaseModel, conn: ConnectionSettings, record_type: str) -> None:
    """Store the attempt's facts in the run state (called by a body right after its fetch)."""
    state.heal = facts(record, conn, record_type)


def after_sync(ctx: SyncContext, key: RecordKey, before: Record | None, *, ok: bool) -> int:
    """After a sync of ``key``: when it just reached Spectrum (it was not done before), wake the
    records that waited on it. Returns how many were queued."""
    if not ok or before is None or before.status is Status.DONE:
        return 0
    return wake_waiters(ctx, key)
