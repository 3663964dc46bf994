"""Every record type stsync syncs, declared once.

Each ``RecordType`` says what the rest of the code needs to know about a ledger record type: the
task module and Celery task that sync it, the ServiceTrade webhook entity routed to that task, the
``sync_*`` function the CLI runs in-process, its recovery-state model, its parts and siblings in
the ledger, how it is replayed, and the names people type. Webhook routing (``ingest``), the
sweeps, the CLI (``sync``, ``history``, ``retry``, ``preview``), the demo, the replay table of the
alert mails and the Celery task list (``tasks/__init__.py``) are all derived from ``RECORD_TYPES``
(and ``WATCHED``: entities whose webhooks wake failed records without being synced themselves).

Adding a record type: one entry here, one task module, one mapper module, one client method
(docs/pipeline.md). This module imports nothing but the state models: everything is named by
string, so it can be read from anywhere above ``tasks`` without loading Celery.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from tasks.state import (
    CustomerState,
    DocumentState,
    InvoiceState,
    JobState,
    PoLineState,
    SiteState,
    State,
    TimecardEntryState,
    TimecardState,
    VoidState,
    WorkOrderState,
)


class Replay(StrEnum):
    """How a ledger row is queued again (``stsync retry``, the links in alert mails)."""

    BY_ID = "by_id"  # task(int(source_id), connection)
    BY_PARENT = "by_parent"  # task(int(<parent id> of "<parent>:<part>"), connection)
    BY_KEY = "by_key"  # task(source_id as a string, connection)


@dataclass(frozen=True)
class RecordType:
    """One ledger record type and everything derived from it."""

    #: the ledger record type (also its CLI name)
    name: str
    #: the module holding its task and sync function
    module: str
    #: the Celery task that syncs it, and replays it
    task: str
    #: its recovery state on the ledger row
    state: type[State]
    #: how ``task`` is called to replay one row
    replay: Replay = Replay.BY_ID
    #: the ServiceTrade entity type whose webhooks/sweeps enqueue ``task`` (None: not routed)
    entity: str | None = None
    #: ``sync_*(ctx, id, connection) -> Outcome`` in ``module`` (``stsync sync --now``, preview)
    sync: str | None = None
    #: more names people may type for it (``company`` for customers)
    aliases: tuple[str, ...] = ()
    #: whether ``stsync preview`` plans it, and by which more names
    previewed: bool = False
    preview_aliases: tuple[str, ...] = ()
    #: ledger record types of its parts (source id ``<id>:<part>``) and siblings (the same id)
    parts: tuple[str, ...] = ()
    siblings: tuple[str, ...] = ()

    @property
    def names(self) -> tuple[str, ...]:
        return (self.name, *self.aliases)

    def sync_function(self) -> Callable[..., Any]:
        """The ``sync_*`` function (imported now: a missing one raises, never skipped)."""
        if self.sync is None:
            raise LookupError(f"record type {self.name!r} has no sync function of its own")
        fn: Callable[..., Any] = getattr(importlib.import_module(self.module), self.sync)
        return fn

    def replay_args(self, source_id: str, connection: str) -> tuple[Any, ...] | None:
        """The arguments that replay the row ``source_id``; None when it cannot be replayed."""
        if self.replay is Replay.BY_KEY:
            return (source_id, connection)
        head = source_id.split(":", 1)[0] if self.replay is Replay.BY_PARENT else source_id
        if not head.isdigit():
            return None
        return (int(head), connection)


CUSTOMER = RecordType(
    name="customer",
    module="tasks.customer",
    task="sync.customer",
    state=CustomerState,
    entity="company",
    sync="sync_customer",
    aliases=("company",),
    previewed=True,
)
SITE = RecordType(
    name="site",
    module="tasks.site",
    task="sync.site",
    state=SiteState,
    entity="location",
    sync="sync_site",
    aliases=("location",),
    previewed=True,
)
JOB = RecordType(
    name="job",
    module="tasks.job",
    task="sync.job",
    state=JobState,
    entity="job",
    sync="sync_job",
    previewed=True,
    siblings=("work_order",),
)
#: "Send Job to Spectrum": the work order in legacy mode, the JC job's replay otherwise
WORK_ORDER = RecordType(
    name="work_order",
    module="tasks.job",
    task="sync.job.send",
    state=WorkOrderState,
    sync="send_job",
    previewed=True,
    preview_aliases=("send-job",),
    siblings=("job",),
)
INVOICE = RecordType(
    name="invoice",
    module="tasks.invoice",
    task="sync.invoice",
    state=InvoiceState,
    entity="invoice",
    sync="sync_invoice",
    previewed=True,
    parts=("ar_document",),
    siblings=("invoice_void",),
)
#: a void and each posted document are replayed through their invoice's task
INVOICE_VOID = RecordType(
    name="invoice_void", module="tasks.invoice", task="sync.invoice", state=VoidState
)
AR_DOCUMENT = RecordType(
    name="ar_document",
    module="tasks.invoice",
    task="sync.invoice",
    state=DocumentState,
    replay=Replay.BY_PARENT,
)
TIMECARD = RecordType(
    name="timecard",
    module="tasks.timecard",
    task="sync.timecard",
    state=TimecardState,
    entity="timecard",
    sync="sync_timecard",
    previewed=True,
    parts=("timecard_entry",),
)
#: an entry is replayed through its card (the card posts only what is missing)
TIMECARD_ENTRY = RecordType(
    name="timecard_entry",
    module="tasks.timecard",
    task="sync.timecard",
    state=TimecardEntryState,
    replay=Replay.BY_PARENT,
)
#: PO lines keep their string key (``"26001:001"``)
PO_LINE = RecordType(
    name="po_line",
    module="tasks.purchase_order",
    task="sync.po_line",
    state=PoLineState,
    replay=Replay.BY_KEY,
)

RECORD_TYPES: tuple[RecordType, ...] = (
    CUSTOMER,
    SITE,
    JOB,
    WORK_ORDER,
    INVOICE,
    INVOICE_VOID,
    AR_DOCUMENT,
    TIMECARD,
    TIMECARD_ENTRY,
    PO_LINE,
)
BY_NAME: dict[str, RecordType] = {rt.name: rt for rt in RECORD_TYPES}


@dataclass(frozen=True)
class WatchedEntity:
    """A ServiceTrade entity stsync does not sync but watches: its change may cure records that
    failed on it (F21). Its task takes ``(id, connection)`` like a sync task, and keeps no ledger
    row of its own (its webhook inbox entry is its durable wake-up)."""

    #: the webhook ``entity.type``
    entity: str
    #: the module holding its task
    module: str
    #: the Celery task its events go to
    task: str


#: a salesperson or technician fixed in ServiceTrade (externalIds): wakes the invoices and
#: timecards that failed on the user (tasks/user.py, tasks/heal.py)
USER = WatchedEntity(entity="user", module="tasks.user", task="sync.user")
WATCHED: tuple[WatchedEntity, ...] = (USER,)

#: task modules that are not a record type's (scheduled work: sweeps, alert mails)
SCHEDULED_MODULES = ("tasks.sweep", "tasks.ops", "tasks.requeue")
#: every module with Celery tasks, in a stable order (``tasks/__init__.py`` imports them)
TASK_MODULES: tuple[str, ...] = tuple(
    dict.fromkeys(
        [*(rt.module for rt in RECORD_TYPES), *(w.module for w in WATCHED), *SCHEDULED_MODULES]
    )
)

# --- webhook routing ------------------------------------------------------------------------------
#: the record types ServiceTrade events are routed to, in declaration order
ROUTED: tuple[RecordType, ...] = tuple(rt for rt in RECORD_TYPES if rt.entity is not None)
#: webhook ``entity.type`` -> (task name, ledger record type; for a watched entity its name)
ENTITY_TASKS: dict[str, tuple[str, str]] = {
    **{rt.entity: (rt.task, rt.name) for rt in ROUTED if rt.entity is not None},
    **{w.entity: (w.task, w.entity) for w in WATCHED},
}
#: CLI record-type names (``stsync sync``) -> entity type
ENTITY_BY_NAME: dict[str, str] = {
    name: rt.entity for rt in ROUTED if rt.entity is not None for name in rt.names
}
#: actions that lead to a sync; deletions in ServiceTrade are not propagated to Spectrum
SYNC_ACTIONS = frozenset({"created", "updated"})

#: names ``stsync preview`` accepts -> ledger record type, in declaration order
PREVIEW_NAMES: dict[str, str] = {
    name: rt.name
    for rt in RECORD_TYPES
    if rt.previewed
    for name in (*rt.names, *rt.preview_aliases)
}


def record_type(name: str) -> RecordType:
    """The record type called ``name`` (a ledger type or one of its aliases)."""
    for rt in RECORD_TYPES:
        if name in rt.names:
            return rt
    raise KeyError(name)


def routed(entity: str) -> RecordType | None:
    """The record type ServiceTrade ``entity`` events go to, if any."""
    return next((rt for rt in ROUTED if rt.entity == entity), None)


def state_model(name: str) -> type[State]:
    """The recovery-state model of ledger record type ``name`` (``State`` when unknown)."""
    rt = BY_NAME.get(name)
    return rt.state if rt is not None else State


def replay_for(
    record_type_name: str, source_id: str, connection: str
) -> tuple[str, tuple[Any, ...]] | None:
    """The task name and arguments that replay a ledger row; None when it cannot be replayed.

    Arguments are ids and the connection name only."""
    rt = BY_NAME.get(record_type_name)
    if rt is None:
        return None
    args = rt.replay_args(source_id, connection)
    return None if args is None else (rt.task, args)
