"""Typed recovery state: what a sync keeps on its ledger row between attempts.

Each record type has one pydantic model here; ``Run[S]`` (``tasks._pipeline``) carries it, the
ledger stores it as JSON (``dump``), and ``load`` reads it back. A mistyped field is a type error
(mypy strict) and, because assignments are validated, a wrong value is an error at run time: a
guard can no longer be dropped silently by writing it under another key.

**Sent markers.** A write whose outcome may be unknown (a timeout, a 5xx) is announced on the row
*before* it is sent: ``state.mark_sent(service, key)``. An attempt that finds the marker set asks
Spectrum first and adopts what landed instead of sending it again. ``sent_marker`` is the one
formatter of a marker (``<Spectrum service>:<unique key>``, e.g. ``AddJob:SV-1001``,
``AddARInvoice:INV-1001``, ``AddPhase:SV-1001/100/L``); ``was_sent`` / ``sent_keys`` read them.

**Rows written before this model** (a JSON dict with ``sent:<service>:<value>``,
``sent:<number>`` and ``phases_sent:<number>`` keys) are read by ``State``'s tolerant reader:
the three flag formats become markers, every other key keeps its name. Keys a model does not
declare are kept as they are (``extra="allow"``), so a row round-trips without losing anything.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from enum import StrEnum
from typing import Any, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

#: Spectrum services whose writes carry a sent marker
ADD_CUSTOMER = "AddCustomer"
ADD_SITE = "AddWOSiteAddress"
ADD_JOB = "AddJob"
ADD_PHASE = "AddPhase"
ADD_AR_INVOICE = "AddARInvoice"
#: services of the first legacy flag format ``sent:<service>:<unique value>``
_LEGACY_SERVICES = (ADD_CUSTOMER, ADD_SITE, ADD_JOB, ADD_AR_INVOICE)


class Result(StrEnum):
    """What one sync of a record did (``Outcome.result``)."""

    SYNCED = "synced"  # stsync created or changed it
    ADOPTED = "adopted"  # it was already there and is ours: taken over, nothing sent
    UNCHANGED = "unchanged"  # nothing to do
    UPDATED = "updated"  # an existing item was brought in line (PO lines)
    REMOVED = "removed"  # an item was removed as the rules say (PO lines)
    SKIPPED = "skipped"  # not for stsync (with the reason)
    FAILED = "failed"  # a person must act (with the reason)
    UNKNOWN = "unknown"  # the write's outcome cannot be known; a person must look
    PAUSED = "paused"  # the connection's credentials were refused: waits, retried on resume

    @property
    def ok(self) -> bool:
        return self in OK_RESULTS


#: the results after which the record is where it should be
OK_RESULTS = frozenset(
    {Result.SYNCED, Result.ADOPTED, Result.UNCHANGED, Result.UPDATED, Result.REMOVED}
)


def sent_marker(service: str, key: str) -> str:
    """The one format of a sent marker: ``<Spectrum service>:<unique key>``."""
    if not service or ":" in service:
        raise ValueError(f"sent marker: bad service name {service!r}")
    return f"{service}:{key}"


def parse_sent_marker(marker: str) -> tuple[str, str]:
    """(service, key) of a marker made by ``sent_marker``."""
    service, sep, key = marker.partition(":")
    if not sep or not service:
        raise ValueError(f"not a sent marker: {marker!r}")
    return service, key


def _legacy_flags(raw: Mapping[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """Split a pre-model state dict into (other keys, sent markers)."""
    rest: dict[str, Any] = {}
    markers: list[str] = []
    for name, value in raw.items():
        if name.startswith("phases_sent:"):
            number = name.removeprefix("phases_sent:")
            markers.extend(sent_marker(ADD_PHASE, f"{number}/{combo}") for combo in value or [])
        elif name.startswith("sent:"):
            if not value:
                continue
            flag = name.removeprefix("sent:")
            service, sep, unique = flag.partition(":")
            if sep and service in _LEGACY_SERVICES:
                markers.append(sent_marker(service, unique))
            else:  # ``sent:<document number>`` of an invoice, void or credit memo
                markers.append(sent_marker(ADD_AR_INVOICE, flag))
        else:
            rest[name] = value
    return rest, markers


def _has_legacy_flags(data: Mapping[Any, Any]) -> bool:
    """Does a key of ``data`` start with ``sent:`` or ``phases_sent:`` (a pre-model row)?

    Run for every state read (P2: ~10 per posted invoice): the keys are joined and searched in
    one pass, and only a row with ``sent:`` anywhere among its keys (``phases_sent:`` contains
    it too) is looked at key by key."""
    try:
        joined = "\n".join(data)
    except TypeError:  # a key that is not a string
        joined = "\n".join(map(str, data))
    if "sent:" not in joined:
        return False
    return any(str(k).startswith(("sent:", "phases_sent:")) for k in data)


class State(BaseModel):
    """What every record's recovery state holds: finished steps, crash recoveries, sent markers."""

    model_config = ConfigDict(extra="allow", validate_assignment=True)

    #: recovery points passed (``Run.finish_step``); a retry skips them
    steps: list[str] = Field(default_factory=list)
    #: how many times a dead holder's attempt was taken over
    recovered: int = 0
    #: writes announced before sending (``sent_marker``), sorted
    sent: list[str] = Field(default_factory=list)
    #: heal on change (``tasks/heal.py``): the ServiceTrade ``updated``, content digest and config
    #: fingerprint of the last attempt
    heal: dict[str, Any] | None = None
    #: the prerequisite a failed record waits on (``"job:123"``), woken when it lands
    waits_on: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _read_legacy(cls, data: Any) -> Any:
        if not isinstance(data, Mapping) or not _has_legacy_flags(data):
            return data
        rest, markers = _legacy_flags(data)
        rest["sent"] = sorted({*(rest.get("sent") or []), *markers})
        return rest

    # --- reading and writing the ledger's JSON ---------------------------------------------------
    @classmethod
    def load(cls, raw: Mapping[str, Any] | None) -> Self:
        """The typed state of a ledger row (a row of any age; see the module docstring)."""
        return cls.model_validate(dict(raw or {}))

    def dump(self) -> dict[str, Any]:
        """The JSON the ledger stores (defaults left out, so rows stay small)."""
        return self.model_dump(mode="json", exclude_defaults=True)

    # --- sent markers ----------------------------------------------------------------------------
    def was_sent(self, service: str, key: str) -> bool:
        return sent_marker(service, key) in self.sent

    def mark_sent(self, service: str, key: str) -> None:
        self.sent = sorted({*self.sent, sent_marker(service, key)})

    def clear_sent(self, service: str, key: str) -> None:
        marker = sent_marker(service, key)
        self.sent = [m for m in self.sent if m != marker]

    def sent_keys(self, service: str) -> list[str]:
        """The keys of ``service`` marked as sent."""
        out = []
        for marker in self.sent:
            svc, key = parse_sent_marker(marker)
            if svc == service:
                out.append(key)
        return out


class Adjusted(State):
    """A record whose mapper adjusted values to fit Spectrum (``stsync history`` shows them)."""

    adjustments: list[str] = Field(default_factory=list)


class Commented(State):
    """A record that comments on its ServiceTrade record when it fails (one per problem)."""

    #: digests of the problems already commented on
    comments: list[str] = Field(default_factory=list)


# --- master records ------------------------------------------------------------------------------
class CustomerState(Commented, Adjusted):
    """``customer`` (and the base of ``site``): a create-once Spectrum master record."""

    how: str | None = None  # "created" | "adopted"
    #: a stale external id replaced by adoption by name (``customers.adopt = "by_name"``)
    stale_external_id: str | None = None


class SiteState(CustomerState):
    """``site``: a WO site of a customer."""

    customer: str | None = None


# --- jobs ----------------------------------------------------------------------------------------
class JobState(Commented, Adjusted):
    """``job``: one ServiceTrade job as one or more Spectrum JC jobs."""

    #: cost center -> Spectrum job number; stored before the first AddJob (the client token)
    plan: dict[str, str] = Field(default_factory=dict)
    #: Spectrum job number -> "created" | "adopted"
    how: dict[str, str] = Field(default_factory=dict)
    #: Spectrum job number -> what it was last given of the fields it follows (``tasks/job.py``)
    follow: dict[str, dict[str, str]] = Field(default_factory=dict)

    def phases_sent(self, number: str) -> set[str]:
        """``Phase_Code/Cost_Type`` of the template phases already sent to job ``number``."""
        prefix = f"{number}/"
        return {k.removeprefix(prefix) for k in self.sent_keys(ADD_PHASE) if k.startswith(prefix)}


class WorkOrderState(Commented, Adjusted):
    """``work_order``: the legacy work order of a job, upserted on every send."""

    sends: int = 0


# --- invoices ------------------------------------------------------------------------------------
class DocumentSummary(BaseModel):
    """What identifies one Spectrum AR document (kept before the write, compared on adoption)."""

    model_config = ConfigDict(extra="allow")

    #: "invoice" | "credit_memo" | "void" | "<half>.<group>.<revision>" | "reversal.<kind>"
    kind: str
    type: str  # Spectrum Transaction_Type
    customer: str
    amount: str
    tax: str
    total: str
    digest: str
    #: what a re-approval compares (``mappers.invoice.document_content``); None on older rows
    content: str | None = None

    def amount_value(self) -> Decimal:
        return Decimal(self.amount)


class DocumentNumbersState(BaseModel):
    """The numbers of an invoice's documents, fixed before the first write."""

    invoice: str
    credit_memo: str


class InvoiceRevisions(BaseModel):
    """How an invoice's Spectrum documents are numbered and which revision is current (F21)."""

    model_config = ConfigDict(extra="allow", validate_assignment=True)

    #: the base of every number (ServiceTrade's number, or from ``invoices.numbers``)
    base: str | None = None
    #: 0 = first posting; n = the n-th rebill
    revision: int = 0
    #: every document kind ever planned for the invoice (``DocumentSlot.kind``), oldest first
    kinds: list[str] = Field(default_factory=list)
    #: revision -> the day its documents (and the reversals before them) are dated
    dates: dict[str, str] = Field(default_factory=dict)
    #: revisions whose numbers were written to ServiceTrade in a comment
    noted: list[int] = Field(default_factory=list)


class InvoiceState(Commented):
    """``invoice``: an approved ServiceTrade invoice posted as Spectrum AR documents."""

    #: document number -> what it is; kept before the write
    planned: dict[str, DocumentSummary] = Field(default_factory=dict)
    numbers: DocumentNumbersState | None = None
    #: numbering and revisions (the approval's row; a void reads it)
    ar: InvoiceRevisions = Field(default_factory=InvoiceRevisions)
    #: document number -> "created" | "adopted"
    how: dict[str, str] = Field(default_factory=dict)
    #: an attempt on the ``failed`` invoice after a configuration change has not approved it
    #: again yet (``tasks/invoice.py``): a transient error or a crash then is resumed, not dropped
    config_fix: bool = False

    def unconfirmed(self) -> dict[str, DocumentSummary]:
        """The planned documents whose write was sent with an outcome nobody knows yet."""
        return {n: s for n, s in self.planned.items() if self.was_sent(ADD_AR_INVOICE, n)}


class VoidState(InvoiceState):
    """``invoice_void``: the credit memo offsetting a voided, posted invoice."""

    #: the credit memo's date (the day stsync first credited it), kept for retries
    void_date: str | None = None


class DocumentState(State):
    """``ar_document``: one Spectrum AR document that landed (source id ``<invoice>:<kind>``)."""

    invoice_id: int | None = None
    how: str | None = None
    kind: str | None = None
    type: str | None = None
    customer: str | None = None
    amount: str | None = None
    tax: str | None = None
    total: str | None = None
    digest: str | None = None
    content: str | None = None


# --- timecards -----------------------------------------------------------------------------------
class TimecardState(State):
    """``timecard``: an approved timecard, posted entry by entry."""

    employee: str | None = None
    #: entry source ids posted (or found) in Spectrum
    posted: list[str] = Field(default_factory=list)
    #: entry source ids on the timecard at the last attempt
    entries: list[str] = Field(default_factory=list)
    #: the last attempt's tally: label -> count
    last: dict[str, int] = Field(default_factory=dict)


class TimecardEntryState(State):
    """``timecard_entry``: one pre-time row. ``sent_at`` is its sent marker (a time: the check
    for the row waits until a send could no longer land)."""

    posted: bool = False
    sent_at: float | None = None
    digest: str | None = None


# --- purchase orders -----------------------------------------------------------------------------
class PoLineState(State):
    """``po_line``: one Spectrum PO line as a ServiceTrade job item."""

    #: the line as last read from Info-Link (re-checks and replays run from it)
    line: dict[str, Any] | None = None
    plan_digest: str | None = None
    waiting_for_job: str | None = None
    item_id: int | None = None
    job_id: int | None = None
    #: the job a create was sent to whose answer was lost (the item is looked up there first)
    create_sent_to: int | None = None
    adopted: bool = False
    moved_from: int | None = None
    removed: bool = False
    deleted_in_servicetrade: bool = False
    last_update: list[str] = Field(default_factory=list)
