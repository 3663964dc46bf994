"""ServiceTrade invoices -> Spectrum AR invoices and credit memos (F5, F6, F14, F21).

One task, ``sync.invoice(invoice_id, connection)``, decides from the invoice's fresh state:

- ``pending_accounting`` (approved): make Spectrum hold what the invoice says (``post_invoice``).
  Customer, site and job first (chain), then the Spectrum documents from ``mappers.invoice``: per
  Spectrum job (one, or one per cost center of a multi-cost-center job) an AR invoice of the
  positive lines and a credit memo of the negative ones. Numbers (``DocumentSlot``: half, group,
  revision) derive from a base kept in the ledger before the first write: ServiceTrade's
  ``invoiceNumber`` when usable, else ``invoices.numbers``. Each document that lands gets its own
  ledger row (``ar_document``), so a half that was refused is sent later alone and nothing is
  posted twice. Approved again after posting: unchanged -> ``processed`` again; changed ->
  ``invoices.on_change_after_posting``: ``rebill`` reverses every document in force exactly as
  Spectrum holds it and posts the new ones under the next revision, ``alert`` fails the invoice
  with both totals. Only when every document is in Spectrum does ServiceTrade hear ``processed``
  with the first number (all numbers in one comment). Any permanent failure -> ServiceTrade
  ``failed`` plus a comment saying what to fix; a missing prerequisite also alerts.
- ``void``: reverse every document in force (``void_invoice``, ledger record type
  ``invoice_void``): a credit memo per invoice, a debit invoice per credit memo, so the voided
  invoice's documents sum to 0.00. Never posted or already reversed -> skipped with the reason.
- ``failed`` (stsync set it) while the attempt that failed it used other configuration than this
  worker's (a ``salesperson_map`` entry added, a processing window opened: ``tasks/heal.py``,
  queued once per change by ``tasks/requeue.py``): posted as if approved. It is set back to
  ``pending_accounting`` in ServiceTrade (as the office would) only once its documents mapped,
  right before they are sent; failing again for the same reason writes nothing to ServiceTrade.
- any other status: nothing to do (an audit row says why); a failed row reopened while ServiceTrade
  still says ``failed`` goes back to ``failed`` with the retry instruction. An invoice the office
  moved on from ``failed`` (``ok``, ``processed`` ...) is never approved again by stsync.

Exactly once: a write whose outcome is unknown (timeout, 5xx) leaves a sent marker
(``AddARInvoice:<number>``, ``tasks.state``); the
next attempt looks the number up in Info-Link (``CR_INVOICE_HEADER_MC``) and adopts the document
when customer, type and amounts match, else reports a collision and never overwrites.
The sweep backstop (``sweep_pending_invoices``) enqueues every ``pending_accounting`` invoice.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

from clients.errors import (
    AlreadyExists,
    MappingError,
    NotFound,
    PermanentError,
    PrerequisiteMissing,
    RecordBusy,
    RecordSkipped,
)
from clients.servicetrade.models import Invoice, InvoiceItem, Job, JobRef, Location, Ref
from clients.spectrum.models import ARInvoiceRequest, request_digest
from mappers.invoice import (
    INVOICE,
    MAX_REVISION,
    PENDING_ACCOUNTING,
    VOID,
    VOID_KIND,
    DocumentSlot,
    PostedDocuments,
    ar_request_from_infolink,
    document_content,
    document_total,
    failure_comment,
    fallback_number_base,
    group_invoices,
    item_cost_center,
    owed,
    record_name,
    retry_instruction,
    reversal_document,
    salesperson_code_for,
    servicetrade_number_base,
    signed_total,
    slot_of_document,
    slot_of_kind,
    st_invoice_to_ar_invoices,
)
from tasks import customer as customer_task
from tasks import heal, registry
from tasks import job as job_task
from tasks import site as site_task
from tasks._celery import sync_task
from tasks._pipeline import Outcome, Run, problem_key, record_alert, run_record, same_text
from tasks.route import route_refusal
from tasks.state import (
    ADD_AR_INVOICE,
    DocumentNumbersState,
    DocumentState,
    DocumentSummary,
    InvoiceState,
    Result,
    VoidState,
)
from worker.context import SyncContext, get_context
from worker.ledger import TERMINAL, Record, RecordKey, Status
from worker.settings import ConnectionSettings

log = logging.getLogger("stsync.invoice")

#: the state of an approval or a void (both post AR documents and comment on failures)
P = TypeVar("P", bound=InvoiceState)

RECORD_TYPE = registry.INVOICE.name
VOID_RECORD_TYPE = registry.INVOICE_VOID.name
#: one row per Spectrum document that landed: source id ``<invoice id>:<kind>``
DOCUMENT_RECORD_TYPE = registry.AR_DOCUMENT.name
TASK_NAME = registry.INVOICE.task
#: ServiceTrade entity type number of invoices (comments, reference §5.8)
INVOICE_ENTITY_TYPE = 6
PROCESSED = "processed"
FAILED = "failed"


# --- entry point ---------------------------------------------------------------------------------
def sync_invoice(
    ctx: SyncContext, invoice_id: int, connection: str | None = None, *, replay: bool = False
) -> Outcome:
    """Post an approved invoice, or credit a voided posted one, from its fresh ServiceTrade state.

    Idempotent: documents already in Spectrum are never sent again (ledger rows per document,
    create-or-adopt after an ambiguous write).
    """
    conn = ctx.connection(connection)
    key = RecordKey(conn.name, RECORD_TYPE, str(invoice_id))
    try:
        invoice = ctx.st.get_invoice(invoice_id)
    except NotFound:
        ctx.ledger.audit(
            system="stsync",
            service="noop",
            outcome="noop",
            key=key,
            detail="the invoice no longer exists in ServiceTrade",
        )
        return Outcome(Result.SKIPPED, key, None, "the invoice no longer exists in ServiceTrade")
    if invoice.status == PENDING_ACCOUNTING:
        # the invoice just read is the one posted: read once per sync
        return post_invoice(ctx, invoice_id, conn.name, invoice=invoice)
    if invoice.status == VOID:
        outcome = void_invoice(ctx, invoice_id, conn.name, replay=replay, invoice=invoice)
        _settle_reopened_approval(ctx, key, invoice)
        return outcome
    rec = ctx.ledger.get(key)
    if invoice.status == FAILED and rec is not None and _fix_interrupted(rec):
        # a transient error or a crash stopped it before it was approved again: go on
        return post_invoice(ctx, invoice_id, conn.name, invoice=invoice, config_fix=True)
    if invoice.status == FAILED and rec is not None and heal.config_changed(rec, conn):
        # stsync failed it under other configuration: the fix may be there (F21)
        ctx.ledger.audit(
            system="stsync",
            service="heal",
            outcome="reexamine",
            key=key,
            detail=f"was {rec.status.value}; looked at again: the configuration it used changed",
        )
        return post_invoice(ctx, invoice_id, conn.name, invoice=invoice, config_fix=True)
    why = (
        f"status is {invoice.status!r}: only {PENDING_ACCOUNTING!r} and {VOID!r} invoices are "
        "synced"
    )
    ctx.ledger.audit(system="stsync", service="noop", outcome="noop", key=key, detail=why)
    settled = _settle_reopened_approval(ctx, key, invoice)
    if settled is not None:
        return settled
    if invoice.status == PROCESSED and rec is not None and rec.status not in TERMINAL:
        # a crash between ServiceTrade's "processed" and the ledger's done (or a person who set
        # it by hand while a retry waited): claim the row and close it, never leave it open to
        # be queued again for ever
        return post_invoice(ctx, invoice_id, conn.name, invoice=invoice)
    result = Result.UNCHANGED if rec is not None and rec.status is Status.DONE else Result.SKIPPED
    return Outcome(result, key, rec.spectrum_key if rec else None, why)


def _fix_interrupted(rec: Record) -> bool:
    """An attempt after a configuration change (``config_fix``) that a transient error or a crash
    stopped before it approved the ``failed`` invoice again: its row waits and nothing else would
    post it."""
    waiting = rec.status in (Status.PENDING, Status.RETRY_LATER, Status.IN_FLIGHT)
    return waiting and InvoiceState.load(rec.state).config_fix


def _settle_reopened_approval(ctx: SyncContext, key: RecordKey, invoice: Invoice) -> Outcome | None:
    """A failed approval reopened (``stsync retry``) while ServiceTrade does not say
    ``pending_accounting`` is never left ``pending`` with nothing to post it: voided -> skipped
    (there is nothing to approve any more), else failed again with the way out."""
    rec = ctx.ledger.get(key)
    if rec is None or rec.status is not Status.PENDING or rec.error_kind or not rec.last_error:
        return None
    if invoice.status == VOID:
        reason = f"invoice {invoice.id} was voided in ServiceTrade before it was posted"
        ctx.ledger.mark(key, Status.SKIPPED, error_kind="skipped", reason=reason)
        return Outcome(Result.SKIPPED, key, rec.spectrum_key, reason)
    plan = retry_plan_for(invoice)
    reason = (
        f"invoice {invoice.id} is {invoice.status!r} in ServiceTrade, so nothing posts it: "
        + retry_instruction(invoice.id)
        if plan.reapprove
        else plan.message
    )
    ctx.ledger.mark(key, Status.FAILED, error_kind="not_approved", reason=reason)
    return Outcome(Result.FAILED, key, rec.spectrum_key, reason)


# --- approved invoices (F5, F21) -----------------------------------------------------------------
class InvoiceChanged(PermanentError):
    """An invoice approved again with other contents than Spectrum holds, under the ``alert``
    policy: nothing is posted, ServiceTrade hears ``failed`` and a person is alerted."""

    #: what the failure comment says instead of the usual "set it back to pending accounting"
    how_to_retry: str = ""


def post_invoice(
    ctx: SyncContext,
    invoice_id: int,
    connection: str | None = None,
    *,
    invoice: Invoice | None = None,
    config_fix: bool = False,
) -> Outcome:
    """Make Spectrum hold what the approved invoice says, then mark it ``processed``.

    The record is claimed again on every approval (``reclaim_done``): a failed invoice that a
    person fixed and approved again is retried; a posted one approved again unchanged only gets
    its ServiceTrade status re-set; a posted one approved again *changed* is rebilled (its
    documents reversed, new ones posted under a revision number) or flagged, by
    ``invoices.on_change_after_posting``. No document is ever sent twice. ``invoice``: the state
    the caller has just read (else it is read here); a retry of the task reads it afresh.
    ``config_fix``: ``sync_invoice`` found the ``failed`` invoice failed under other configuration
    than this worker's: a ``failed`` invoice is posted too, approved again in ServiceTrade only
    once its documents mapped.
    """
    conn = ctx.connection(connection)
    key = RecordKey(conn.name, RECORD_TYPE, str(invoice_id))
    st_status = _StStatus(invoice.status if invoice is not None else None, config_fix)

    def body(run: Run[InvoiceState]) -> Outcome:
        # the row as the claim found it (read in the claim's transaction, not in one of its own)
        return _post(ctx, conn, run, invoice_id, run.previous, invoice, st_status)

    def on_permanent(run: Run[InvoiceState], exc: PermanentError) -> None:
        if isinstance(exc, InvoiceChanged):
            record_alert(ctx, run.key, "drift", str(exc))
        _fail_in_servicetrade(ctx, run, invoice_id, exc, already_failed=st_status.now == FAILED)

    return run_record(
        ctx, key, body, state=InvoiceState, reclaim_done=True, on_permanent=on_permanent
    )


@dataclass
class _StStatus:
    """The invoice's ServiceTrade status as this attempt knows it (None: not read yet)."""

    now: str | None
    #: a ``failed`` invoice is posted (a configuration change may have cured it)
    config_fix: bool = False


def _post(
    ctx: SyncContext,
    conn: ConnectionSettings,
    run: Run[InvoiceState],
    invoice_id: int,
    before: Record | None,
    fresh: Invoice | None = None,
    st_status: _StStatus | None = None,
) -> Outcome:
    invoice = fresh if fresh is not None else ctx.st.get_invoice(invoice_id)
    st_status = st_status or _StStatus(None)
    st_status.now = invoice.status
    reapprove = st_status.config_fix and invoice.status == FAILED
    if reapprove != run.state.config_fix:
        run.state.config_fix = reapprove
        if reapprove:
            run.save()  # a transient error or a crash from here on is resumed (_fix_interrupted)
    # what this attempt is judged on: a configuration change re-examines it (F21, tasks/heal.py)
    heal.stamp(run.state, invoice, conn, RECORD_TYPE)
    record = record_name(invoice)
    planned = dict(run.state.planned)
    if invoice.status != PENDING_ACCOUNTING and not reapprove:
        rows = _document_rows(ctx, conn.name, invoice_id, _known_kinds(run.state))
        if planned and all(s.kind in rows for s in planned.values()):
            return run.done(Result.UNCHANGED, run.record.spectrum_key, message="already posted")
        why = f"{record}: status is now {invoice.status!r}; nothing posted"
        if before is not None and before.status in TERMINAL:
            # a duplicate delivery that lost the race with the attempt that set this status:
            # leave that attempt's outcome (e.g. failed with its reason) as it was; an open row
            # (crashed or waiting for a retry) is settled below instead
            run.mark(before.status, error_kind=before.error_kind, reason=before.last_error)
            return Outcome(Result.UNCHANGED, run.key, before.spectrum_key, why)
        raise RecordSkipped(why)
    if invoice.type != "invoice":
        raise RecordSkipped(f"{record}: type {invoice.type!r} is not a customer invoice")
    # documents whose write outcome is unknown (ghost writes) are looked up before deciding
    how = _confirm_unknown_writes(ctx, run, invoice_id, run.state, record)
    base = _number_base(ctx, conn, run, invoice)
    kinds = _known_kinds(run.state)
    rows = _document_rows(ctx, conn.name, invoice_id, kinds)
    revision = run.state.ar.revision
    in_force = _in_force(kinds, rows)
    if any(
        slot_of_kind(k).revision == revision and slot_of_kind(k).reversal_kind in rows
        for k in kinds
        if k in rows
    ):
        # this revision was reversed (a void, then approved again): its numbers are used up
        revision = _new_revision(ctx, run, revision)
    current = [k for k in in_force if slot_of_kind(k).revision == revision]
    desired = _desired(ctx, conn, run, invoice, base, revision)
    if current:
        _verify_held(ctx, conn, invoice_id, current, rows, record)
        if _drifted(current, rows, desired):
            if conn.rules.invoices.on_change_after_posting == "alert":
                raise _changed_error(record, invoice_id, current, rows, desired)
            revision = _new_revision(ctx, run, revision)
            desired = _desired(ctx, conn, run, invoice, base, revision)
    # earlier revisions still in force (a rebill, or one interrupted by a crash) are reversed
    # first, each exactly as Spectrum holds it; then this revision's documents are posted
    stale = [k for k in _in_force(kinds, rows) if slot_of_kind(k).revision < revision]
    on = _posting_date(ctx, run, revision)
    reversals = [
        _reversal(ctx, conn, invoice_id, k, str(rows[k].spectrum_key), base, on, "Rebill")
        for k in stale
    ]
    docs = reversals + [(slot.kind, doc) for slot, doc in desired]
    if reapprove:
        _approve_again(ctx, run, invoice_id, st_status)
    run.state.planned = {doc.number: _summary(doc, kind) for kind, doc in docs}
    _remember_kinds(run, [slot.kind for slot, _ in desired])
    how.update(
        _post_documents(
            ctx, conn, run, invoice_id, docs, record=record, spectrum_key=desired[0][1].number
        )
    )
    # _post_documents returned: every document of ``docs`` is in Spectrum and has its done row
    # (it raises otherwise), so they are not read back (P2); the stale documents' numbers are
    # the ones read above (a landed document's row keeps its number)
    numbers = [doc.number for _, doc in desired]
    first = numbers[0]
    pairs = [
        (str(rows[k].spectrum_key), doc.number)
        for k, (_, doc) in zip(stale, reversals, strict=True)
    ]
    _numbers_comment(ctx, run, invoice_id, revision, desired, pairs)
    # ServiceTrade hears "processed" only once every document is in Spectrum; an invoice
    # approved again unchanged gets this (and only this) again
    ctx.st_writes.set_invoice_status(invoice_id, PROCESSED, invoice_number=first)
    # saved by done() below, in the same write: nothing reads this step back (a retry after a
    # crash in between finds the invoice processed and its documents landed, and closes it)
    run.pass_step("writeback")
    kinds_how = set(how.values())
    result = (
        Result.SYNCED
        if "created" in kinds_how
        else Result.ADOPTED
        if kinds_how
        else Result.UNCHANGED
    )
    digest = request_digest([_summary(doc, slot.kind).digest for slot, doc in desired])
    return run.done(result, first, digest=digest, message=", ".join(numbers))


def _approve_again(
    ctx: SyncContext, run: Run[InvoiceState], invoice_id: int, st_status: _StStatus
) -> None:
    """A ``failed`` invoice whose documents now map (a configuration fix): ``pending_accounting``
    in ServiceTrade, as the office would set it, before anything is sent (``failed`` ->
    ``processed`` is not a transition ServiceTrade allows)."""
    ctx.st_writes.set_invoice_status(invoice_id, PENDING_ACCOUNTING)
    st_status.now = PENDING_ACCOUNTING
    run.state.config_fix = False  # approved: an ordinary approval from here on
    ctx.ledger.audit(
        system="stsync",
        service="heal",
        outcome="reapprove",
        key=run.key,
        detail="maps under the new configuration: set back to pending_accounting",
    )


# --- the invoice's documents: numbers, revisions, what is in force --------------------------------
def _known_kinds(state: InvoiceState) -> list[str]:
    """Every document kind planned for the invoice, oldest first (older rows: from ``planned``)."""
    kinds = list(state.ar.kinds)
    for summary in state.planned.values():
        kind = summary.kind
        if kind not in kinds and not kind.startswith("reversal.") and kind != VOID_KIND:
            kinds.append(kind)
    return kinds


def _remember_kinds(run: Run[InvoiceState], kinds: Sequence[str]) -> None:
    known = list(run.state.ar.kinds or _known_kinds(run.state))
    run.state.ar.kinds = known + [k for k in kinds if k not in known]


def _document_rows(
    ctx: SyncContext, connection: str, invoice_id: int, kinds: Sequence[str]
) -> dict[str, Record]:
    """The landed documents (and landed reversals) of ``kinds``, by kind."""
    name = ctx.connection(connection).name
    wanted = [k for kind in kinds for k in (kind, slot_of_kind(kind).reversal_kind)]
    ids = {f"{invoice_id}:{k}": k for k in wanted}
    got = ctx.ledger.get_many(name, DOCUMENT_RECORD_TYPE, ids)
    return {
        ids[source_id]: rec
        for source_id, rec in got.items()
        if rec.status is Status.DONE and rec.spectrum_key
    }


def _in_force(kinds: Sequence[str], rows: Mapping[str, Record]) -> list[str]:
    """Documents that landed and have not been reversed."""
    return [k for k in kinds if k in rows and slot_of_kind(k).reversal_kind not in rows]


def _number_base(
    ctx: SyncContext, conn: ConnectionSettings, run: Run[InvoiceState], invoice: Invoice
) -> str:
    """The base of every Spectrum number of this invoice, kept in the ledger before any write:
    ServiceTrade's ``invoiceNumber`` when usable, else the next number of ``invoices.numbers``
    (skipping numbers Spectrum already holds), else (no range configured) the ServiceTrade id."""
    if run.state.ar.base:
        return run.state.ar.base
    rules = conn.rules.invoices
    legacy = run.state.numbers
    if legacy:  # a row from before revisions: its invoice number is number_prefix + base
        base = legacy.invoice[len(rules.number_prefix) :]
        run.state.ar.base = base
        run.save()
        return base
    from_invoice = servicetrade_number_base(invoice, rules)
    if not from_invoice and rules.numbers is None:
        from_invoice = fallback_number_base(invoice, rules)
    if from_invoice:
        # taken from the invoice (its number, or its id), nothing allocated: saved with the
        # plan, before any document is sent under it (_post_documents)
        run.state.ar.base = from_invoice
        return from_invoice
    base = _allocated_base(ctx, conn, invoice)
    run.state.ar.base = base
    run.save()  # a number taken from the counter is kept at once: it is never handed out again
    return base


def _allocated_base(ctx: SyncContext, conn: ConnectionSettings, invoice: Invoice) -> str:
    rules = conn.rules.invoices
    if rules.numbers is None:
        return fallback_number_base(invoice, rules)
    rng = rules.numbers
    infolink = ctx.infolink_for(conn.name)
    for _ in range(1000):
        try:
            n = ctx.ledger.next_code_value(
                conn.name, "invoice_number", start=rng.start, end=rng.end
            )
        except PermanentError as exc:
            raise PermanentError(
                f"{record_name(invoice)}: the invoice number range is used up (last allowed "
                f"{rng.end}); widen [connections.{conn.name}.invoices] numbers",
                field=f"connections.{conn.name}.invoices.numbers.end",
                value=rng.end,
            ) from exc
        base = rng.format(n)
        numbers = DocumentSlot("invoice").numbers(base, rules, record=record_name(invoice))
        if not any(infolink.find_ar_invoice(x) for x in (numbers.invoice, numbers.credit_memo)):
            return base
        log.warning("invoice number already used in Spectrum; skipped", extra={"code": base})
    raise PermanentError(
        f"{record_name(invoice)}: 1000 consecutive invoice numbers are already used in "
        f"Spectrum; move [connections.{conn.name}.invoices] numbers",
        field="invoices.numbers",
    )


def _new_revision(ctx: SyncContext, run: Run[InvoiceState], revision: int) -> int:
    """Start the next revision; saved (a recovery point) before anything of it is written."""
    ar = run.state.ar
    revision += 1
    if revision > MAX_REVISION:
        raise PermanentError(
            f"{run.key}: rebilled {MAX_REVISION} times already; correct it in Spectrum by hand",
            field="Invoice_Or_Transaction",
        )
    ar.revision = revision
    today = datetime.now(ZoneInfo(ctx.settings.timezone)).date().isoformat()
    ar.dates = {**ar.dates, str(revision): today}
    run.save()
    return revision


def _posting_date(ctx: SyncContext, run: Run[InvoiceState], revision: int) -> date | None:
    """Revision 0 is dated as the invoice; a rebill (and its reversals) the day it is posted."""
    if revision == 0:
        return None
    ar = run.state.ar
    if str(revision) not in ar.dates:  # pragma: no cover - _new_revision sets it
        today = datetime.now(ZoneInfo(ctx.settings.timezone)).date().isoformat()
        ar.dates = {**ar.dates, str(revision): today}
    return date.fromisoformat(ar.dates[str(revision)])


def _drifted(
    current: Sequence[str],
    rows: Mapping[str, Record],
    desired: Sequence[tuple[DocumentSlot, ARInvoiceRequest]],
) -> bool:
    """Whether the documents in force differ from what ServiceTrade now says (lines, amounts,
    tax, customer, job). A half that never landed (a refused credit memo) is not drift."""
    by_kind = {slot.kind: doc for slot, doc in desired}
    for kind in current:
        doc = by_kind.get(kind)
        if doc is None:
            return True
        held = DocumentState.load(rows[kind].state)
        if held.content:
            if held.content != document_content(doc):
                return True
            continue
        now = _summary(doc, kind)  # a row from before content digests: compare the money
        if (held.type, held.customer, held.amount, held.tax) != (
            now.type,
            now.customer,
            now.amount,
            now.tax,
        ):
            return True
    return False


def _owed_by(rows: Mapping[str, Record], kinds: Sequence[str]) -> Decimal:
    held = [DocumentState.load(rows[k].state) for k in kinds]
    return owed([(str(d.type), Decimal(str(d.total or "0"))) for d in held])


def _changed_error(
    record: str,
    invoice_id: int,
    current: Sequence[str],
    rows: Mapping[str, Record],
    desired: Sequence[tuple[DocumentSlot, ARInvoiceRequest]],
) -> InvoiceChanged:
    held = _owed_by(rows, current)
    now = signed_total([doc for _, doc in desired])
    numbers = ", ".join(str(rows[k].spectrum_key) for k in current)
    error = InvoiceChanged(
        f"{record}: changed after it was posted: Spectrum holds {numbers} for {held}, "
        f"ServiceTrade now says {now} (difference {now - held}). "
        'invoices.on_change_after_posting = "alert": nothing was posted. Correct it in Spectrum, '
        'or set on_change_after_posting = "rebill" and approve the invoice again',
        field="totalPrice",
        value=str(now),
    )
    error.how_to_retry = (
        'Under on_change_after_posting = "alert" stsync leaves Spectrum as it is: correct it '
        "there by hand (this invoice then stays failed here), or set on_change_after_posting = "
        '"rebill" and set the invoice back to pending accounting (or run `stsync retry invoice '
        f"{invoice_id}`): stsync then reverses what Spectrum holds and posts the invoice "
        "as it is now."
    )
    return error


def _verify_held(
    ctx: SyncContext,
    conn: ConnectionSettings,
    invoice_id: int,
    kinds: Sequence[str],
    rows: Mapping[str, Record],
    record: str,
) -> None:
    """What the ledger says is posted must still be in Spectrum (Info-Link) as it was posted."""
    infolink = ctx.infolink_for(conn.name)
    for kind in kinds:
        number = str(rows[kind].spectrum_key)
        row = infolink.find_ar_invoice(number)
        summary = DocumentSummary.model_validate(rows[kind].state)
        why = "it is not there any more" if row is None else _mismatch(row, summary)
        if why:
            raise PermanentError(
                f"{record}: Spectrum AR document {number}, posted by stsync for this invoice, "
                f"is not as posted ({why}); stsync changes nothing it cannot compare: check it "
                "in Spectrum, then approve the invoice again",
                field="Invoice_Or_Transaction",
                value=number,
            )


def _reversal(
    ctx: SyncContext,
    conn: ConnectionSettings,
    invoice_id: int,
    kind: str,
    number: str,
    base: str,
    on: date | None,
    why: str,
) -> tuple[str, ARInvoiceRequest]:
    """The reversal of the landed document ``number`` (kind ``kind``), as Spectrum holds it."""
    slot = slot_of_kind(kind)
    record = f"ServiceTrade invoice {invoice_id}"
    row = ctx.infolink_for(conn.name).find_ar_invoice(number)
    if row is None:
        raise PermanentError(
            f"{record}: AR document {number}, posted for this invoice, is not in Spectrum any "
            "more (deleted there?); nothing was reversed: reverse it by hand if it was posted",
            field="Invoice_Or_Transaction",
            value=number,
        )
    doc = reversal_document(
        ar_request_from_infolink(row),
        number=slot.reversal_number(base, conn.rules.invoices, record=record),
        on=on or datetime.now(ZoneInfo(ctx.settings.timezone)).date(),
        rules=conn.rules,
        why=why,
        invoice_id=invoice_id,
        connection=conn.name,
    )
    return slot.reversal_kind, doc


def _numbers_comment(
    ctx: SyncContext,
    run: Run[InvoiceState],
    invoice_id: int,
    revision: int,
    desired: Sequence[tuple[DocumentSlot, ARInvoiceRequest]],
    reversals: Sequence[tuple[str, str]],
) -> None:
    """All Spectrum numbers in one comment, once per revision, when there is more than the one
    number ``invoiceNumber`` shows (a split, several jobs, a rebill)."""
    ar = run.state.ar
    noted = list(ar.noted)
    if revision in noted or (revision == 0 and len(desired) == 1):
        return
    parts = [
        f"{doc.number} ({'invoice' if doc.header['Transaction_Type'] == INVOICE else 'credit memo'}"
        f" {document_total(doc)}, job {doc.header.get('Job_Number') or '-'})"
        for _, doc in desired
    ]
    text = "stsync: Spectrum documents of this invoice: " + ", ".join(parts)
    if revision:
        reversed_ = [f"{new} reverses {old}" for old, new in reversals]
        text += f". Revision {revision}: the invoice changed after it was posted" + (
            f"; {', '.join(reversed_)}" if reversed_ else ""
        )
    ar.noted = [*noted, revision]
    run.save()  # remembered before posting: a lost comment is better than a storm of duplicates
    try:
        ctx.st_writes.add_comment(INVOICE_ENTITY_TYPE, invoice_id, text + ".")
    except Exception:
        # refused (e.g. a ServiceTrade 503): forget it, so the retry posts it (as _comment_once
        # does); the convergence soak lost a rebill's numbers comment this way
        ar.noted = noted
        run.save()
        raise


def _desired(
    ctx: SyncContext,
    conn: ConnectionSettings,
    run: Run[InvoiceState],
    invoice: Invoice,
    base: str,
    revision: int,
) -> list[tuple[DocumentSlot, ARInvoiceRequest]]:
    """What Spectrum must hold for the invoice now: per Spectrum job (cost-center group), its
    AR invoice and credit memo, numbered for ``revision``. Resolves the chain first."""
    rules = conn.rules
    record = record_name(invoice)
    # job, location and salesperson are facts of other records: the read cache may serve them,
    # looked up in two round trips (the job with the invoice's location, then the job's location
    # and salesperson) instead of one each
    with ctx.st.prefetched([_ref("job", invoice.job), _ref("location", invoice.location)]):
        st_job = ctx.st.get_job(invoice.job.id, cached=True) if invoice.job is not None else None
        then = [_ref("user", st_job.salesperson)] if st_job is not None else []
        if st_job is not None and invoice.location is None:
            then.append(_ref("location", st_job.location))
        with ctx.st.prefetched(then):
            location = _location(ctx, invoice, st_job)
            company_id = _company_id(invoice, st_job, location)
            if rules.invoices.job_resolution == "job":
                jobs = _jobs_from_st_job(ctx, conn, invoice, st_job)
                customer = _customer_code(ctx, conn, company_id, record)
            else:
                customer = _customer_code(ctx, conn, company_id, record)
                number, cc = _job_from_location(ctx, conn, invoice, st_job, location, customer)
                jobs = _JobPlan({None: (number, cc)}, lambda item: None)

            salesperson_ref = st_job.salesperson if st_job is not None else None
            salesperson = None
            if salesperson_ref is not None:
                user = ctx.st.get_user(salesperson_ref.id, cached=True)
                salesperson = salesperson_code_for(
                    user, rules=rules.invoices, external_id_key=conn.external_id_key
                )
                if salesperson is None:
                    # a missing code is read afresh (a lost user webhook leaves a stale
                    # entry), so a fix is seen by the next approval at once
                    user = ctx.st.get_user(salesperson_ref.id)
                    salesperson = salesperson_code_for(
                        user, rules=rules.invoices, external_id_key=conn.external_id_key
                    )
    if revision == 0 and run.state.numbers is None:
        first = DocumentSlot("invoice").numbers(base, rules.invoices, record=record)
        # kept for older readers of the row: the revision-0 numbers of one job
        run.state.numbers = DocumentNumbersState(
            invoice=first.invoice, credit_memo=first.credit_memo
        )
    state = location.address.state if location is not None and location.address else None
    on = _posting_date(ctx, run, revision)
    if len(jobs.by_group) == 1:
        parts: list[tuple[int | None, Invoice]] = [(next(iter(jobs.by_group)), invoice)]
    else:
        parts = list(group_invoices(invoice, lambda i: int(jobs.group_of(i) or 0)))
    out: list[tuple[DocumentSlot, ARInvoiceRequest]] = []
    for group, part in parts:
        job_number, job_cc = jobs.by_group[group]

        def cost_center(item: InvoiceItem, job_cc: str | None = job_cc) -> str:
            return item_cost_center(item, job_cost_center=job_cc, rules=rules.cost_centers)

        numbers = DocumentSlot("invoice", group, revision).numbers(
            base, rules.invoices, record=record
        )
        docs = st_invoice_to_ar_invoices(
            part,
            customer_code=customer,
            job_number=job_number,
            job_type=st_job.type if st_job is not None else None,
            cost_center_for_item=cost_center,
            location_state=state,
            salesperson_code=salesperson,
            salesperson_user=salesperson_ref,
            rules=rules,
            tz=ctx.settings.timezone,
            numbers=numbers,
            connection=conn.name,
            posting_date=on,
        )
        out.extend((slot_of_document(doc, group, revision), doc) for doc in docs)
    return out


@dataclass(frozen=True)
class _JobPlan:
    """The Spectrum job (and its cost center) of each group of the invoice's lines; group None
    when the invoice has one Spectrum job."""

    by_group: Mapping[int | None, tuple[str, str | None]]
    group_of: Callable[[InvoiceItem], int | None]


def _ref(resource: str, ref: Ref | JobRef | None) -> tuple[str, int | None]:
    return resource, ref.id if ref is not None else None


def _location(ctx: SyncContext, invoice: Invoice, st_job: Job | None) -> Location | None:
    ref = invoice.location or (st_job.location if st_job is not None else None)
    return ctx.st.get_location(ref.id, cached=True) if ref is not None else None


def _company_id(invoice: Invoice, st_job: Job | None, location: Location | None) -> int:
    for ref in (
        invoice.customer,
        st_job.customer if st_job is not None else None,
        location.company if location is not None else None,
    ):
        if ref is not None:
            return ref.id
    raise MappingError(record_name(invoice), "customer", "the invoice has no customer")


def _customer_code(ctx: SyncContext, conn: ConnectionSettings, company_id: int, record: str) -> str:
    if conn.rules.mode == "jc":
        return customer_task.ensure_customer(ctx, company_id, conn.name)
    # legacy work-order mode never creates customers: they must be mapped already
    code = _mapped(
        ctx,
        conn,
        customer_task.RECORD_TYPE,
        company_id,
        lambda: ctx.st.get_company(company_id).external_ids,
    )
    if code is None:
        raise PrerequisiteMissing(
            f"{record}: customer: ServiceTrade company {company_id} is not mapped to a Spectrum "
            f"customer; set its externalIds '{conn.external_id_key}' to the customer code",
            field="customer",
            value=company_id,
        )
    return code


def _mapped(
    ctx: SyncContext,
    conn: ConnectionSettings,
    record_type: str,
    source_id: int,
    external_ids: Callable[[], Mapping[str, str]],
) -> str | None:
    rec = ctx.ledger.get(RecordKey(conn.name, record_type, str(source_id)))
    if rec is not None and rec.status is Status.DONE and rec.spectrum_key:
        return rec.spectrum_key
    return (external_ids().get(conn.external_id_key) or "").strip() or None


def _jobs_from_st_job(
    ctx: SyncContext, conn: ConnectionSettings, invoice: Invoice, st_job: Job | None
) -> _JobPlan:
    """The Spectrum job(s) of the invoice's ServiceTrade job, syncing the job (and its customer
    and site) first when it is not in Spectrum yet. A multi-cost-center job has one Spectrum job
    per cost center: each line goes to the job of its cost center (one group per Spectrum job,
    numbered by the job's place among them, so a group keeps its number across edits)."""
    record = record_name(invoice)
    if st_job is None:
        raise MappingError(
            record,
            "job",
            'the invoice has no job; with invoices.job_resolution = "job" every '
            'invoice needs one (or use "location")',
        )
    plan = job_task.spectrum_jobs_of(ctx, st_job.id, conn.name)
    if not plan:
        outcome = job_task.sync_job(ctx, st_job.id, conn.name)
        plan = job_task.spectrum_jobs_of(ctx, st_job.id, conn.name)
        if not plan:
            raise PrerequisiteMissing(
                f"{record}: job: ServiceTrade job {st_job.number} (id {st_job.id}) is not in "
                f"Spectrum: {outcome.message or outcome.result}",
                field="Job_Number",
                value=st_job.id,
            )
    if len(plan) == 1:
        cc, number = next(iter(plan.items()))
        return _JobPlan({None: (number, cc or _job_cost_center(ctx, conn, number))}, lambda i: None)
    # a multi-cost-center job: the lines' cost centers pick the Spectrum jobs
    numbers = sorted(set(plan.values()))
    group_by_number = {n: g for g, n in enumerate(numbers)}
    cc_by_number = {n: cc for cc, n in sorted(plan.items())}

    def line_cc(item: InvoiceItem) -> str:
        return item_cost_center(item, job_cost_center=None, rules=conn.rules.cost_centers)

    unknown = sorted({line_cc(i) for i in invoice.items} - set(plan))
    if unknown:
        raise MappingError(
            record,
            "Job_Number",
            f"lines in cost centers {', '.join(unknown)} but job {st_job.number} has Spectrum "
            f"jobs only for {', '.join(f'{c}={n}' for c, n in sorted(plan.items()))}: correct "
            "the lines' service lines in ServiceTrade or the job's cost centers",
            value=unknown,
        )
    return _JobPlan(
        {g: (n, cc_by_number[n]) for n, g in group_by_number.items()},
        lambda item: group_by_number[plan[line_cc(item)]],
    )


def _job_cost_center(ctx: SyncContext, conn: ConnectionSettings, number: str) -> str | None:
    row = ctx.infolink_for(conn.name).find_job(number)
    if row is None:
        return None
    return str(row.get("Cost_Center") or "") or None


def _job_from_location(
    ctx: SyncContext,
    conn: ConnectionSettings,
    invoice: Invoice,
    st_job: Job | None,
    location: Location | None,
    customer: str,
) -> tuple[str, str | None]:
    """Job-from-location resolution: the open Spectrum job at the location's WO site (the
    invoice's own synced job wins when it is one of several)."""
    record = record_name(invoice)
    if location is None:
        raise MappingError(record, "location", "the invoice has no location")
    if conn.rules.mode == "jc":
        site = site_task.ensure_site(ctx, location.id, conn.name)
    else:
        site = (
            _mapped(ctx, conn, site_task.RECORD_TYPE, location.id, lambda: location.external_ids)
            or ""
        )
        if not site:
            raise PrerequisiteMissing(
                f"{record}: job: location {location.name} (id {location.id}) is not mapped to a "
                f"Spectrum WO site; set its externalIds '{conn.external_id_key}'",
                field="site",
                value=location.id,
            )
    rows = [
        r
        for r in ctx.infolink_for(conn.name).list_jobs_at_site(site)
        if (r.get("Status_Code") or "A") in ("A", "I")
        and same_text(r.get("Customer_Code") or customer, customer)
    ]
    if st_job is not None and len(rows) > 1:
        own = set(job_task.spectrum_jobs_of(ctx, st_job.id, conn.name).values())
        mine = [r for r in rows if r["Job_Number"] in own]
        rows = mine or rows
    if len(rows) == 1:
        return str(rows[0]["Job_Number"]), str(rows[0].get("Cost_Center") or "") or None
    if not rows:
        raise PrerequisiteMissing(
            f"{record}: job: Spectrum has no open job of customer {customer} at WO site {site} "
            f"(location {location.name}, id {location.id}); create it in Spectrum with WO site "
            f'{site}, or use invoices.job_resolution = "job"',
            field="Job_Number",
            value=site,
        )
    raise MappingError(
        record,
        "Job_Number",
        f"WO site {site} has several open Spectrum jobs "
        f"({', '.join(r['Job_Number'] for r in rows)}) and none is the invoice's own job: close "
        'the others or use invoices.job_resolution = "job"',
        value=[r["Job_Number"] for r in rows],
    )


# --- posting documents (shared by approvals and voids) -------------------------------------------
def _summary(doc: ARInvoiceRequest, kind: str | None = None) -> DocumentSummary:
    """What identifies a document in Spectrum (kept before the write, compared on adoption).
    ``kind`` defaults to the revision-0 half of a one-job invoice."""
    kind = kind or ("invoice" if doc.header["Transaction_Type"] == INVOICE else "credit_memo")
    lines = sum(
        (Decimal(d["Line_Extension"]) for d in doc.details if d.get("Line_Extension")),
        Decimal("0"),
    )
    return DocumentSummary(
        kind=kind,
        type=doc.header["Transaction_Type"],
        customer=doc.header["Customer_Code"],
        amount=str(lines),
        tax=str(doc.header.get("Sales_Tax_Amount", "0")),
        total=str(document_total(doc)),
        digest=doc.digest(),
        content=document_content(doc),
    )


def _mismatch(row: Mapping[str, Any], summary: DocumentSummary) -> str | None:
    """Why the Spectrum document ``row`` is not the one ``summary`` describes, or None."""
    problems = []
    if not same_text(row.get("Customer_Code"), summary.customer):
        problems.append(f"customer {row.get('Customer_Code')!r}")
    if not same_text(row.get("Transaction_Type"), summary.type):
        problems.append(f"type {row.get('Transaction_Type')!r}")
    expected_values = (("Invoice_Amount", summary.amount), ("Sales_Tax_Amount", summary.tax))
    for column, expected in expected_values:
        have = Decimal(str(row.get(column) or 0))
        if have != Decimal(str(expected)):
            problems.append(f"{column} {have}")
    return ", ".join(problems) or None


def _document_key(connection: str, invoice_id: int, kind: str) -> RecordKey:
    return RecordKey(connection, DOCUMENT_RECORD_TYPE, f"{invoice_id}:{kind}")


def posted_documents(ctx: SyncContext, connection: str, invoice_id: int) -> PostedDocuments:
    """The Spectrum numbers the ledger holds as posted for ``invoice_id``."""
    name = ctx.connection(connection).name
    ids = {kind: f"{invoice_id}:{kind}" for kind in ("invoice", "credit_memo", VOID_KIND)}
    rows = ctx.ledger.get_many(name, DOCUMENT_RECORD_TYPE, ids.values())

    def number(kind: str) -> str | None:
        rec = rows.get(ids[kind])
        return rec.spectrum_key if rec is not None and rec.status is Status.DONE else None

    return PostedDocuments(
        invoice=number("invoice"), credit_memo=number("credit_memo"), void_credit=number(VOID_KIND)
    )


def _record_posted(
    ctx: SyncContext,
    run: Run[P],
    invoice_id: int,
    number: str,
    summary: DocumentSummary,
    how: str,
) -> None:
    run.state.how = {**run.state.how, number: how}
    run.state.clear_sent(ADD_AR_INVOICE, number)
    # the document's row and the invoice's state (its sent marker cleared) in one transaction
    run.record = ctx.ledger.record_landed(
        _document_key(run.connection, invoice_id, summary.kind),
        spectrum_key=number,
        payload_digest=summary.digest,
        state=DocumentState(invoice_id=invoice_id, how=how, **summary.model_dump()).dump(),
        holder=run.key,
        holder_state=run.state.dump(),
    )


def _adopt_or_collide(
    ctx: SyncContext,
    run: Run[P],
    invoice_id: int,
    number: str,
    summary: DocumentSummary,
    record: str,
) -> bool:
    """Adopt ``number`` when Spectrum has it and it is ours; False when Spectrum lacks it."""
    row = ctx.infolink_for(run.connection).find_ar_invoice(number)
    if row is None:
        return False
    why = _mismatch(row, summary)
    if why:
        raise PermanentError(
            f"{record}: Spectrum already has AR document {number} for something else ({why}); "
            "stsync never overwrites it: remove it in Spectrum or change the invoice number "
            "prefixes in the configuration",
            field="Invoice_Or_Transaction",
            value=number,
        )
    _record_posted(ctx, run, invoice_id, number, summary, "adopted")
    return True


def _post_documents(
    ctx: SyncContext,
    conn: ConnectionSettings,
    run: Run[P],
    invoice_id: int,
    docs: Sequence[tuple[str, ARInvoiceRequest]],
    *,
    record: str,
    spectrum_key: str,
) -> dict[str, str]:
    """Send the documents (``(kind, document)``) not yet in Spectrum in one call; record each one
    that lands.

    The caller's plan (``run.state.planned``) and ``spectrum_key`` are saved here, with the sent
    markers of the documents about to go: one recovery point where the plan used to be saved on
    its own just before (nothing external happened between the two); a retry that must first
    look up earlier writes saves the plan before those look-ups, as before.

    A document that may have landed earlier (its sent marker is set) is looked up first and
    adopted when it matches. A refused document raises after the others are recorded, so the
    next attempt sends only what is missing. Returns number -> ``created``/``adopted`` for the
    documents this call put (or found) in Spectrum.
    """
    ids = [f"{invoice_id}:{kind}" for kind, _ in docs]
    landed = {
        sid.split(":", 1)[1]: rec
        for sid, rec in ctx.ledger.get_many(conn.name, DOCUMENT_RECORD_TYPE, ids).items()
        if rec.status is Status.DONE
    }
    how: dict[str, str] = {}
    todo = [(doc, _summary(doc, kind)) for kind, doc in docs if kind not in landed]
    saved = any(run.state.was_sent(ADD_AR_INVOICE, doc.number) for doc, _ in todo)
    if saved:
        # an earlier attempt's write may have landed: Spectrum is asked below, and the plan is
        # kept before those look-ups whatever they find
        run.save(spectrum_key=spectrum_key)
    pending: list[tuple[ARInvoiceRequest, DocumentSummary]] = []
    for doc, summary in todo:
        if run.state.was_sent(ADD_AR_INVOICE, doc.number) and _adopt_or_collide(
            ctx, run, invoice_id, doc.number, summary, record
        ):
            how[doc.number] = "adopted"
            continue
        pending.append((doc, summary))
    for doc, _ in pending:
        run.state.mark_sent(ADD_AR_INVOICE, doc.number)
    if pending or not saved:
        # recovery point (with the plan): from here on the outcome may be unknown
        run.save(spectrum_key=spectrum_key)
    if not pending:
        return how
    results = ctx.spectrum_writes(conn.name).add_ar_invoices([d for d, _ in pending])
    refused: list[PermanentError] = []
    for (doc, summary), result in zip(pending, results, strict=True):
        if result.ok:
            _record_posted(ctx, run, invoice_id, doc.number, summary, "created")
            how[doc.number] = "created"
        elif isinstance(result.error, AlreadyExists):
            try:
                adopted = _adopt_or_collide(ctx, run, invoice_id, doc.number, summary, record)
            except PermanentError as collision:
                # someone else's document under our number: ours did not land
                run.state.clear_sent(ADD_AR_INVOICE, doc.number)
                run.save()
                refused.append(collision)
                continue
            if adopted:
                how[doc.number] = "adopted"
            else:
                refused.append(result.error)
        else:
            # refused outright: nothing landed, a later attempt may send it again
            run.state.clear_sent(ADD_AR_INVOICE, doc.number)
            run.save()
            refused.append(result.error or PermanentError(f"{record}: {doc.number} refused"))
    if len(refused) == 1:
        raise refused[0]
    if refused:
        rows = [row for err in refused for row in err.rows]
        raise PermanentError(
            "; ".join(str(err) for err in refused),
            rows=rows,
            field=refused[0].field,
            value=refused[0].value,
        )
    return how


# --- failures (F14) ------------------------------------------------------------------------------
def _comment_once(
    ctx: SyncContext, run: Run[P], invoice_id: int, exc: PermanentError, *, voided: bool
) -> bool:
    """Comment on the invoice once per distinct problem; True when a comment was posted."""
    digest = problem_key(str(exc))
    done = list(run.state.comments)
    if digest in done:
        return False
    # remembered before posting: a lost comment is better than a storm of duplicates
    run.state.comments = [*done, digest]
    ctx.ledger.update_progress(run.key, state=run.state.dump())
    try:
        ctx.st_writes.add_comment(
            INVOICE_ENTITY_TYPE, invoice_id, failure_comment(invoice_id, exc, voided=voided)
        )
    except Exception:
        run.state.comments = done
        ctx.ledger.update_progress(run.key, state=run.state.dump())
        raise
    return True


def _fail_in_servicetrade(
    ctx: SyncContext,
    run: Run[P],
    invoice_id: int,
    exc: PermanentError,
    *,
    already_failed: bool = False,
) -> None:
    """Failed approval: ServiceTrade status ``failed`` and a comment saying what to fix (once
    per problem). ``already_failed``: ServiceTrade says ``failed`` still (a configuration fix
    that did not cure it): the status is not written again."""
    if isinstance(exc, NotFound):
        return
    _comment_once(ctx, run, invoice_id, exc, voided=False)
    if not already_failed:
        ctx.st_writes.set_invoice_status(invoice_id, FAILED)


# --- voided invoices (F6) ------------------------------------------------------------------------
def void_invoice(
    ctx: SyncContext,
    invoice_id: int,
    connection: str | None = None,
    *,
    replay: bool = False,
    invoice: Invoice | None = None,
) -> Outcome:
    """Reverse every document in force of a voided, posted invoice, once. Idempotent.

    A credited or skipped void is final (a redelivery is a no-op); a failed one is tried again by
    any later event for the invoice and by ``stsync retry invoice <id>`` (which re-queues the
    invoice: this function is where its void is retried).
    """
    conn = ctx.connection(connection)
    key = RecordKey(conn.name, VOID_RECORD_TYPE, str(invoice_id))
    before = ctx.ledger.get(key)
    final = before is not None and before.status in (Status.DONE, Status.SKIPPED)

    def body(run: Run[VoidState]) -> Outcome:
        return _void(ctx, conn, run, invoice_id, invoice)

    def on_permanent(run: Run[VoidState], exc: PermanentError) -> None:
        if isinstance(exc, NotFound):
            return
        if not isinstance(exc, PrerequisiteMissing):  # run_record alerts those itself
            record_alert(ctx, run.key, "void_credit", str(exc))
        _comment_once(ctx, run, invoice_id, exc, voided=True)

    return run_record(
        ctx,
        key,
        body,
        state=VoidState,
        reclaim_done=replay or not final,
        on_permanent=on_permanent,
    )


def _void(
    ctx: SyncContext,
    conn: ConnectionSettings,
    run: Run[VoidState],
    invoice_id: int,
    fresh: Invoice | None = None,
) -> Outcome:
    # the state sync_invoice has just read, else read here: once per sync
    invoice = fresh if fresh is not None else ctx.st.get_invoice(invoice_id)
    record = record_name(invoice)
    approval = ctx.ledger.get(RecordKey(conn.name, RECORD_TYPE, str(invoice_id)))
    if approval is not None and approval.status is Status.IN_FLIGHT:
        # the approval is posting right now: decide once it has finished
        raise RecordBusy(f"{record}: its approval is being posted; the void waits", retry_after=5)
    approval_state = InvoiceState.load(approval.state if approval is not None else None)
    if approval is not None:
        _confirm_unknown_writes(ctx, run, invoice_id, approval_state, record)
    kinds = _known_kinds(approval_state)
    rows = _document_rows(ctx, conn.name, invoice_id, kinds)
    in_force = _in_force(kinds, rows)
    landed = [k for k in kinds if k in rows]
    if landed and not in_force and run.state.planned:
        # reversed by a concurrent delivery that finished first, or by an earlier attempt of
        # this one that stopped before its comment (ServiceTrade unavailable): comment now
        numbers = [str(rows[slot_of_kind(k).reversal_kind].spectrum_key) for k in landed]
        note = _void_note(numbers, [str(rows[k].spectrum_key) for k in landed])
        _void_comment(ctx, run, invoice_id, note)
        # a redelivery that waited behind the crediting task: show it in the history as the
        # no-op it is, like one that found the record final before claiming it
        ctx.ledger.audit(
            system="stsync",
            service="noop",
            outcome="noop",
            key=run.key,
            detail="already credited; nothing sent",
        )
        return run.done(Result.UNCHANGED, numbers[0], message="already credited")
    if invoice.status != VOID:
        raise RecordSkipped(f"{record}: void: status is {invoice.status!r}, not {VOID!r}")
    if invoice.type != "invoice":
        raise RecordSkipped(f"{record}: void: type {invoice.type!r} is not a customer invoice")
    if not landed:
        raise RecordSkipped(f"{record}: void: never posted to Spectrum: nothing to credit")
    if not in_force:
        raise RecordSkipped(f"{record}: void: every document is reversed already")
    base = approval_state.ar.base or ""
    if not base and approval_state.numbers is not None:
        # a row from before revisions: its invoice number is number_prefix + base
        base = approval_state.numbers.invoice[len(conn.rules.invoices.number_prefix) :]
    void_date = run.state.void_date
    if not void_date:
        # dated the day stsync credits it, kept for retries (the day the void reached Spectrum)
        void_date = datetime.now(ZoneInfo(ctx.settings.timezone)).date().isoformat()
        run.state.void_date = void_date
    on = date.fromisoformat(str(void_date))
    docs = [
        _reversal(ctx, conn, invoice_id, k, str(rows[k].spectrum_key), base, on, "Void")
        for k in in_force
    ]
    run.state.planned = {doc.number: _summary(doc, kind) for kind, doc in docs}
    how = _post_documents(
        ctx, conn, run, invoice_id, docs, record=record, spectrum_key=docs[0][1].number
    )
    originals = [str(rows[k].spectrum_key) for k in in_force]
    note = _void_note([doc.number for _, doc in docs], originals)
    _void_comment(ctx, run, invoice_id, note)
    adopted = all(how.get(doc.number) == "adopted" for _, doc in docs) and bool(how)
    return run.done(
        Result.ADOPTED if adopted else Result.SYNCED,
        docs[0][1].number,
        digest=request_digest([doc.digest() for _, doc in docs]),
        message=note,
    )


def _void_note(reversals: Sequence[str], originals: Sequence[str]) -> str:
    pairs = ", ".join(f"{r} reverses {o}" for r, o in zip(reversals, originals, strict=True))
    return f"{pairs}; the invoice's documents now sum to 0.00"


def _void_comment(ctx: SyncContext, run: Run[VoidState], invoice_id: int, note: str) -> None:
    """The void's one comment on the invoice (a step: a retry after it landed skips it)."""
    if not run.step_done("comment"):
        ctx.st_writes.add_comment(INVOICE_ENTITY_TYPE, invoice_id, f"stsync: Spectrum {note}.")
        run.finish_step("comment")


def _confirm_unknown_writes(
    ctx: SyncContext, run: Run[P], invoice_id: int, state: InvoiceState, record: str
) -> dict[str, str]:
    """Documents of an attempt whose write outcome is unknown are looked up in Spectrum before
    deciding, so a ghost write is recorded (adopted) rather than missed or sent again."""
    how: dict[str, str] = {}
    for number, summary in state.unconfirmed().items():
        if _adopt_or_collide(ctx, run, invoice_id, number, summary, record):
            how[number] = "adopted"
    return how


# --- stsync retry invoice N (F14, F17) -----------------------------------------------------------
@dataclass(frozen=True)
class RetryPlan:
    """What ``stsync retry invoice N`` does for the invoice's ServiceTrade status."""

    proceed: bool
    #: set the invoice back to ``pending_accounting`` in ServiceTrade first (it is ``failed``)
    reapprove: bool
    message: str


def retry_plan_for(invoice: Invoice) -> RetryPlan:
    """Whether a retry can post ``invoice`` and what it must change in ServiceTrade first."""
    status = invoice.status
    if status in (PENDING_ACCOUNTING, VOID):
        return RetryPlan(True, False, f"invoice {invoice.id} is {status!r}: queued again")
    if status == FAILED:
        return RetryPlan(
            True,
            True,
            f"invoice {invoice.id} is 'failed' in ServiceTrade: stsync sets it back to pending "
            "accounting there (as the office would) and syncs it",
        )
    return RetryPlan(
        False,
        False,
        f"invoice {invoice.id} is {status!r} in ServiceTrade, so there is nothing for stsync to "
        "post; to send it (again), set it to pending accounting in ServiceTrade and stsync "
        "posts it then",
    )


def retry_plan(ctx: SyncContext, invoice_id: int) -> RetryPlan:
    try:
        invoice = ctx.st.get_invoice(invoice_id)
    except NotFound:
        return RetryPlan(
            False, False, f"invoice {invoice_id} no longer exists in ServiceTrade: nothing to retry"
        )
    return retry_plan_for(invoice)


def reapprove_in_servicetrade(ctx: SyncContext, invoice_id: int) -> None:
    """``failed`` -> ``pending_accounting`` in ServiceTrade (a transition ServiceTrade allows)."""
    ctx.st_writes.set_invoice_status(invoice_id, PENDING_ACCOUNTING)


# --- the sweep backstop (F15) --------------------------------------------------------------------
def sweep_pending_invoices(ctx: SyncContext, connection: str | None = None) -> int:
    """Enqueue ``sync.invoice`` for every ``pending_accounting`` invoice (webhooks get dropped
    after 3 tries); returns how many. Cheap to repeat: posted documents are never sent again.

    Scheduled by Beat (``schedule.pending_invoices``). An invoice whose row is being synced, or
    waits (``pending``/``retry_later``) for a due time still ahead, is left to that schedule:
    the backstop must not defeat the retry_later back-off; the re-enqueuer queues it when due.
    """
    name = ctx.connection(connection).name
    n = 0
    now = datetime.now(UTC)
    batch: list[int] = []

    def flush() -> int:
        known = ctx.ledger.get_many(name, RECORD_TYPE, [str(i) for i in batch])
        sent = 0
        for invoice_id in batch:
            if not _scheduled_elsewhere(known.get(str(invoice_id)), now):
                ctx.enqueue(TASK_NAME, (invoice_id, name))
                sent += 1
        batch.clear()
        return sent

    for invoice in ctx.st.iter_invoices(status=PENDING_ACCOUNTING):
        batch.append(invoice.id)
        if len(batch) >= 500:
            n += flush()
    return n + flush()


def _scheduled_elsewhere(rec: Record | None, now: datetime) -> bool:
    if rec is None:
        return False
    if rec.status is Status.IN_FLIGHT:
        return rec.lease_until is not None and rec.lease_until > now
    waiting = rec.status in (Status.PENDING, Status.RETRY_LATER)
    return waiting and rec.next_attempt_at is not None and rec.next_attempt_at > now


# --- Celery task ---------------------------------------------------------------------------------
@sync_task(TASK_NAME, RECORD_TYPE)
def push_invoice_to_spectrum(invoice_id: int, connection: str | None = None) -> str:
    """Sync one ServiceTrade invoice: post it when approved, credit it when voided after posting.

    Idempotent (ledger row per Spectrum document + create-or-adopt): safe to redeliver or run
    concurrently. Retries on TransientError (network, 5xx, busy record, unknown write outcome)
    with jittered backoff; permanent failures set the invoice ``failed`` with a comment.
    """
    ctx = get_context()
    if route_refusal(ctx, RECORD_TYPE, invoice_id, connection):  # routing between companies (F24)
        return "skipped"
    return sync_invoice(ctx, invoice_id, connection).result
