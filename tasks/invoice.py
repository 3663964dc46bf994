"""ServiceTrade invoices -> Spectrum AR invoices and credit memos (F5, F6, F14).

One task, ``sync.invoice(invoice_id, connection)``, decides from the invoice's fresh state:

- ``pending_accounting`` (approved): post it (``post_invoice``). Customer, site and job first
  (chain), then the Spectrum documents from ``mappers.invoice``: one AR invoice of the positive
  lines and, when the invoice also has negative lines, one credit memo of them. Their numbers are
  stored in the ledger before the write. Each document that lands gets its own ledger row
  (record type ``ar_document``), so a split whose second half was refused is resumed later and the
  first half is never posted again. Only when every document is in Spectrum does ServiceTrade hear
  ``processed`` with the Spectrum number. Any permanent failure -> ServiceTrade ``failed`` plus a
  comment saying what to fix (one comment per distinct problem); a missing prerequisite (e.g. a
  salesperson without a Spectrum code) also records an alert for the support contacts.
- ``void``: when the invoice was posted, post one offsetting credit memo of the AR invoice exactly
  as Spectrum holds it (``void_invoice``, ledger record type ``invoice_void``). Never posted,
  already credited, or posted as a credit memo only -> skipped with the reason.
- any other status: nothing to do (an audit row says why).

Exactly once: a write whose outcome is unknown (timeout, 5xx) leaves a sent marker
(``AddARInvoice:<number>``, ``tasks.state``); the
next attempt looks the number up in Info-Link (``CR_INVOICE_HEADER_MC``) and adopts the document
when customer, type and amounts match, else reports a collision and never overwrites.
The sweep backstop (``sweep_pending_invoices``) enqueues every ``pending_accounting`` invoice.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
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
from clients.servicetrade.models import Invoice, InvoiceItem, Job, Location
from clients.spectrum.models import ARInvoiceRequest, request_digest
from mappers.invoice import (
    CREDIT_MEMO,
    INVOICE,
    PENDING_ACCOUNTING,
    VOID,
    DocumentNumbers,
    PostedDocuments,
    ar_request_from_infolink,
    document_numbers,
    document_total,
    failure_comment,
    item_cost_center,
    record_name,
    salesperson_code_for,
    st_invoice_to_ar_invoices,
    void_credit_memo,
    void_skip_reason,
)
from tasks import customer as customer_task
from tasks import job as job_task
from tasks import registry
from tasks import site as site_task
from tasks._celery import sync_task
from tasks._pipeline import Outcome, Run, problem_key, record_alert, run_record, same_text
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
from worker.ledger import Record, RecordKey, Status
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

#: document kinds (the ledger's source-id suffix) by Spectrum transaction type of an approval
_KIND_BY_TYPE = {INVOICE: "invoice", CREDIT_MEMO: "credit_memo"}
VOID_KIND = "void"


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
        return post_invoice(ctx, invoice_id, conn.name)
    if invoice.status == VOID:
        return void_invoice(ctx, invoice_id, conn.name, replay=replay)
    rec = ctx.ledger.get(key)
    why = (
        f"status is {invoice.status!r}: only {PENDING_ACCOUNTING!r} and {VOID!r} invoices are "
        "synced"
    )
    ctx.ledger.audit(system="stsync", service="noop", outcome="noop", key=key, detail=why)
    result = Result.UNCHANGED if rec is not None and rec.status is Status.DONE else Result.SKIPPED
    return Outcome(result, key, rec.spectrum_key if rec else None, why)


# --- approved invoices (F5) ----------------------------------------------------------------------
def post_invoice(ctx: SyncContext, invoice_id: int, connection: str | None = None) -> Outcome:
    """Post the approved invoice's Spectrum documents once, then mark it ``processed``.

    The record is claimed again on every approval (``reclaim_done``): a failed invoice that a
    person fixed and approved again is retried, and a posted one approved again only gets its
    ServiceTrade status re-set — its documents are never sent twice.
    """
    conn = ctx.connection(connection)
    key = RecordKey(conn.name, RECORD_TYPE, str(invoice_id))
    before = ctx.ledger.get(key)

    def body(run: Run[InvoiceState]) -> Outcome:
        return _post(ctx, conn, run, invoice_id, before)

    return run_record(
        ctx,
        key,
        body,
        state=InvoiceState,
        reclaim_done=True,
        on_permanent=lambda run, exc: _fail_in_servicetrade(ctx, run, invoice_id, exc),
    )


def _post(
    ctx: SyncContext,
    conn: ConnectionSettings,
    run: Run[InvoiceState],
    invoice_id: int,
    before: Record | None,
) -> Outcome:
    invoice = ctx.st.get_invoice(invoice_id)
    record = record_name(invoice)
    posted = posted_documents(ctx, conn.name, invoice_id)
    planned = dict(run.state.planned)
    if invoice.status != PENDING_ACCOUNTING:
        if planned and all(_is_posted(posted, kind) for kind in _kinds(planned)):
            return run.done(Result.UNCHANGED, run.record.spectrum_key, message="already posted")
        why = f"{record}: status is now {invoice.status!r}; nothing posted"
        if before is not None and before.status is not Status.IN_FLIGHT:
            # a duplicate delivery that lost the race with the attempt that set this status:
            # leave that attempt's outcome (e.g. failed with its reason) as it was
            run.mark(before.status, error_kind=before.error_kind, reason=before.last_error)
            return Outcome(Result.UNCHANGED, run.key, before.spectrum_key, why)
        raise RecordSkipped(why)

    how: dict[str, str] = {}
    if not planned or not all(_is_posted(posted, kind) for kind in _kinds(planned)):
        docs = _map(ctx, conn, run, invoice)
        planned = {doc.number: _summary(doc) for doc in docs}
        run.state.planned = planned
        run.save(spectrum_key=docs[0].number)
        how = _post_documents(ctx, conn, run, invoice_id, docs, record=record)
        posted = posted_documents(ctx, conn.name, invoice_id)
    numbers = [n for n, s in planned.items() if _is_posted(posted, s.kind)]
    if len(numbers) != len(planned):  # pragma: no cover - _post_documents raised already
        raise PermanentError(f"{record}: not every document is in Spectrum ({numbers})")
    first = numbers[0]
    # ServiceTrade hears "processed" only once every document is in Spectrum; an invoice
    # approved again after posting gets this (and only this) again
    ctx.st_writes.set_invoice_status(invoice_id, PROCESSED, invoice_number=first)
    run.finish_step("writeback")
    kinds = set(how.values())
    result = (
        Result.SYNCED if "created" in kinds else Result.ADOPTED if kinds else Result.UNCHANGED
    )
    digest = request_digest([s.digest for s in planned.values()])
    return run.done(result, first, digest=digest, message=", ".join(numbers))


def _kinds(planned: Mapping[str, DocumentSummary]) -> list[str]:
    return [s.kind for s in planned.values()]


def _is_posted(posted: PostedDocuments, kind: str) -> bool:
    return bool(getattr(posted, kind, None))


def _map(
    ctx: SyncContext, conn: ConnectionSettings, run: Run[InvoiceState], invoice: Invoice
) -> list[ARInvoiceRequest]:
    """Resolve everything the mapper needs (chain: customer -> site -> job), then map."""
    rules = conn.rules
    record = record_name(invoice)
    if invoice.type != "invoice":
        raise RecordSkipped(f"{record}: type {invoice.type!r} is not a customer invoice")
    st_job = ctx.st.get_job(invoice.job.id) if invoice.job is not None else None
    location = _location(ctx, invoice, st_job)
    company_id = _company_id(invoice, st_job, location)
    if rules.invoices.job_resolution == "job":
        job_number, job_cc = _job_from_st_job(ctx, conn, invoice, st_job)
        customer = _customer_code(ctx, conn, company_id, record)
    else:
        customer = _customer_code(ctx, conn, company_id, record)
        job_number, job_cc = _job_from_location(ctx, conn, invoice, st_job, location, customer)

    def cost_center(item: InvoiceItem) -> str:
        return item_cost_center(item, job_cost_center=job_cc, rules=rules.cost_centers)

    salesperson_ref = st_job.salesperson if st_job is not None else None
    salesperson = None
    if salesperson_ref is not None:
        user = ctx.st.get_user(salesperson_ref.id)
        salesperson = salesperson_code_for(
            user, rules=rules.invoices, external_id_key=conn.external_id_key
        )
    stored = run.state.numbers
    numbers = (
        DocumentNumbers(invoice=stored.invoice, credit_memo=stored.credit_memo)
        if stored
        else document_numbers(invoice, rules.invoices)
    )
    if not stored:
        # the numbers are the documents' client tokens: kept before the first write, so a
        # retry after stsync's own write-back (invoiceNumber) still uses the same ones
        run.state.numbers = DocumentNumbersState(
            invoice=numbers.invoice, credit_memo=numbers.credit_memo
        )
        run.save(spectrum_key=numbers.invoice)
    state = location.address.state if location is not None and location.address else None
    return st_invoice_to_ar_invoices(
        invoice,
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
    )


def _location(ctx: SyncContext, invoice: Invoice, st_job: Job | None) -> Location | None:
    ref = invoice.location or (st_job.location if st_job is not None else None)
    return ctx.st.get_location(ref.id) if ref is not None else None


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


def _job_from_st_job(
    ctx: SyncContext, conn: ConnectionSettings, invoice: Invoice, st_job: Job | None
) -> tuple[str, str | None]:
    """(Spectrum job number, its cost center) of the invoice's ServiceTrade job, syncing the job
    (and its customer and site) first when it is not in Spectrum yet."""
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
        return number, cc or _job_cost_center(ctx, conn, number)
    # a multi-cost-center job: the invoice's lines pick the Spectrum job by cost center
    by_line = {
        item_cost_center(i, job_cost_center=None, rules=conn.rules.cost_centers)
        for i in invoice.items
    }
    numbers = sorted({plan[cc] for cc in by_line if cc in plan})
    if len(numbers) == 1 and by_line <= set(plan):
        cc = next(c for c in by_line)
        return numbers[0], cc
    raise MappingError(
        record,
        "Job_Number",
        f"the lines belong to cost centers {', '.join(sorted(by_line))} but job {st_job.number} "
        f"is split into Spectrum jobs {', '.join(f'{c}={n}' for c, n in plan.items())}; a "
        "Spectrum invoice has one job: split the invoice by cost center in ServiceTrade",
        value=sorted(by_line),
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
    """What identifies a document in Spectrum (kept before the write, compared on adoption)."""
    lines = sum(
        (Decimal(d["Line_Extension"]) for d in doc.details if d.get("Line_Extension")),
        Decimal("0"),
    )
    return DocumentSummary(
        kind=kind or _KIND_BY_TYPE[doc.header["Transaction_Type"]],
        type=doc.header["Transaction_Type"],
        customer=doc.header["Customer_Code"],
        amount=str(lines),
        tax=str(doc.header.get("Sales_Tax_Amount", "0")),
        total=str(document_total(doc)),
        digest=doc.digest(),
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
    key = _document_key(run.connection, invoice_id, summary.kind)
    ctx.ledger.ensure(key)
    ctx.ledger.mark_done(
        key,
        spectrum_key=number,
        payload_digest=summary.digest,
        state=DocumentState(invoice_id=invoice_id, how=how, **summary.model_dump()).dump(),
    )
    run.state.how = {**run.state.how, number: how}
    run.state.clear_sent(ADD_AR_INVOICE, number)
    run.save()


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
    docs: Sequence[ARInvoiceRequest],
    *,
    record: str,
    kind: str | None = None,
) -> dict[str, str]:
    """Send the documents not yet in Spectrum in one call; record each one that lands.

    A document that may have landed earlier (its sent marker is set) is looked up first and
    adopted when it matches. A refused document raises after the others are recorded, so the
    next attempt sends only what is missing. Returns number -> ``created``/``adopted`` for the
    documents this call put (or found) in Spectrum.
    """
    posted = posted_documents(ctx, conn.name, invoice_id)
    how: dict[str, str] = {}
    pending: list[tuple[ARInvoiceRequest, DocumentSummary]] = []
    for doc in docs:
        summary = _summary(doc, kind)
        if _is_posted(posted, summary.kind):
            continue
        if run.state.was_sent(ADD_AR_INVOICE, doc.number) and _adopt_or_collide(
            ctx, run, invoice_id, doc.number, summary, record
        ):
            how[doc.number] = "adopted"
            continue
        pending.append((doc, summary))
    if not pending:
        return how
    for doc, _ in pending:
        run.state.mark_sent(ADD_AR_INVOICE, doc.number)
    run.save()  # recovery point: from here on the outcome may be unknown
    results = ctx.spectrum_writes(conn.name).add_ar_invoices([d for d, _ in pending])
    refused: list[PermanentError] = []
    for (doc, summary), result in zip(pending, results, strict=True):
        if result.ok:
            _record_posted(ctx, run, invoice_id, doc.number, summary, "created")
            how[doc.number] = "created"
        elif isinstance(result.error, AlreadyExists):
            if _adopt_or_collide(ctx, run, invoice_id, doc.number, summary, record):
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
    ctx: SyncContext, run: Run[P], invoice_id: int, exc: PermanentError
) -> None:
    """Failed approval: ServiceTrade status ``failed`` and a comment saying what to fix."""
    if isinstance(exc, NotFound):
        return
    _comment_once(ctx, run, invoice_id, exc, voided=False)
    ctx.st_writes.set_invoice_status(invoice_id, FAILED)


# --- voided invoices (F6) ------------------------------------------------------------------------
def void_invoice(
    ctx: SyncContext, invoice_id: int, connection: str | None = None, *, replay: bool = False
) -> Outcome:
    """Credit a voided, posted invoice once with an offsetting credit memo. Idempotent.

    A credited or skipped void is final (a redelivery is a no-op); a failed one is tried again by
    any later event for the invoice and by ``stsync retry invoice <id>`` (which re-queues the
    invoice: this function is where its void is retried).
    """
    conn = ctx.connection(connection)
    key = RecordKey(conn.name, VOID_RECORD_TYPE, str(invoice_id))
    before = ctx.ledger.get(key)
    final = before is not None and before.status in (Status.DONE, Status.SKIPPED)

    def body(run: Run[VoidState]) -> Outcome:
        return _void(ctx, conn, run, invoice_id)

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
    ctx: SyncContext, conn: ConnectionSettings, run: Run[VoidState], invoice_id: int
) -> Outcome:
    invoice = ctx.st.get_invoice(invoice_id)
    record = record_name(invoice)
    approval = ctx.ledger.get(RecordKey(conn.name, RECORD_TYPE, str(invoice_id)))
    if approval is not None and approval.status is Status.IN_FLIGHT:
        # the approval is posting right now: decide once it has finished
        raise RecordBusy(f"{record}: its approval is being posted; the void waits", retry_after=5)
    if approval is not None:
        _confirm_unknown_writes(ctx, run, invoice_id, InvoiceState.load(approval.state), record)
    posted = posted_documents(ctx, conn.name, invoice_id)
    if posted.void_credit:
        # credited by a concurrent delivery that finished first, or by an earlier attempt of
        # this one that stopped before its comment (ServiceTrade unavailable): comment now
        note = _void_note(posted.void_credit, posted)
        _void_comment(ctx, run, invoice_id, note)
        # a redelivery that waited behind the crediting task: show it in the history as the
        # no-op it is, like one that found the record final before claiming it
        ctx.ledger.audit(system="stsync", service="noop", outcome="noop", key=run.key,
                         detail="already credited; nothing sent")
        return run.done(Result.UNCHANGED, posted.void_credit, message="already credited")
    reason = void_skip_reason(invoice, posted)
    if reason:
        raise RecordSkipped(f"{record}: void: {reason}")
    assert posted.invoice is not None  # void_skip_reason guarantees it
    row = ctx.infolink_for(conn.name).find_ar_invoice(posted.invoice)
    if row is None:
        raise PermanentError(
            f"{record}: void: the posted AR invoice {posted.invoice} is not in Spectrum any more "
            "(deleted there?); nothing was credited: credit it by hand if it was posted",
            field="Invoice_Or_Transaction",
            value=posted.invoice,
        )
    original = ar_request_from_infolink(row)
    void_date = run.state.void_date
    if not void_date:
        # dated the day stsync credits it, kept for retries (the day the void reached Spectrum)
        void_date = datetime.now(ZoneInfo(ctx.settings.timezone)).date().isoformat()
        run.state.void_date = void_date
    (memo,) = void_credit_memo(
        invoice,
        posted=original,
        void_date=datetime.fromisoformat(void_date).date(),
        rules=conn.rules,
        connection=conn.name,
    )
    run.state.planned = {memo.number: _summary(memo, VOID_KIND)}
    run.save(spectrum_key=memo.number)
    how = _post_documents(ctx, conn, run, invoice_id, [memo], record=record, kind=VOID_KIND)
    note = _void_note(memo.number, posted)
    _void_comment(ctx, run, invoice_id, note)
    return run.done(
        Result.ADOPTED if how.get(memo.number) == "adopted" else Result.SYNCED,
        memo.number,
        digest=memo.digest(),
        message=note,
    )


def _void_note(credit_number: str, posted: PostedDocuments) -> str:
    note = f"credit memo {credit_number} offsets AR invoice {posted.invoice}"
    if posted.credit_memo:
        note += (
            f"; the credit memo {posted.credit_memo} of its negative lines is not reversed "
            "automatically"
        )
    return note


def _void_comment(ctx: SyncContext, run: Run[VoidState], invoice_id: int, note: str) -> None:
    """The void's one comment on the invoice (a step: a retry after it landed skips it)."""
    if not run.step_done("comment"):
        ctx.st_writes.add_comment(INVOICE_ENTITY_TYPE, invoice_id, f"stsync: Spectrum {note}.")
        run.finish_step("comment")


def _confirm_unknown_writes(
    ctx: SyncContext,
    run: Run[VoidState],
    invoice_id: int,
    approval_state: InvoiceState,
    record: str,
) -> None:
    """Before deciding a void: documents of the approval whose write outcome is unknown are
    looked up in Spectrum, so a ghost write is credited rather than missed."""
    for number, summary in approval_state.unconfirmed().items():
        _adopt_or_collide(ctx, run, invoice_id, number, summary, record)


# --- the sweep backstop (F15) --------------------------------------------------------------------
def sweep_pending_invoices(ctx: SyncContext, connection: str | None = None) -> int:
    """Enqueue ``sync.invoice`` for every ``pending_accounting`` invoice (webhooks get dropped
    after 3 tries); returns how many. Cheap to repeat: posted documents are never sent again."""
    name = ctx.connection(connection).name
    n = 0
    for invoice in ctx.st.iter_invoices(status=PENDING_ACCOUNTING):
        ctx.enqueue(TASK_NAME, (invoice.id, name))
        n += 1
    return n


# --- Celery task ---------------------------------------------------------------------------------
@sync_task(TASK_NAME, RECORD_TYPE)
def push_invoice_to_spectrum(invoice_id: int, connection: str | None = None) -> str:
    """Sync one ServiceTrade invoice: post it when approved, credit it when voided after posting.

    Idempotent (ledger row per Spectrum document + create-or-adopt): safe to redeliver or run
    concurrently. Retries on TransientError (network, 5xx, busy record, unknown write outcome)
    with jittered backoff; permanent failures set the invoice ``failed`` with a comment.
    """
    return sync_invoice(get_context(), invoice_id, connection).result
