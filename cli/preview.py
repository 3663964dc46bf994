"""Preview / dry run (F17): exactly what a record's sync would send, without writing anything.

``preview_record(ctx, record_type, record_id)`` fetches the record from ServiceTrade, runs the same
mappers with the current configuration and lists, in order, every write the sync would make:
Spectrum calls (SOAP Put services and the REST invoice service, with their element values) and the
write-backs to ServiceTrade. Prerequisites that are not in Spectrum yet (customer, WO site, JC job)
come first, as the chain sends them. Nothing is written: no ledger row, no code allocation, no
remote write. Reads are made (ServiceTrade, Info-Link, the template job's ``GetPhase``).

Codes the ledger has not allocated yet are shown as the value the counter would give next,
skipping codes Spectrum already uses, exactly as ``allocate_code`` does; the counter itself is not
advanced, so a sync started later by someone else may take that code first.

Run it on a context built by ``preview_context``: its ledger (``ReadOnlyLedger``) refuses every
write and drops the audit rows the clients would write for the reads, so a preview cannot change
state.

The steps follow the tasks' own resumable state: a step the ledger holds as done is not listed, a
write whose outcome was unknown is looked up and shown as adopted when Spectrum has it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal
from zoneinfo import ZoneInfo

from sqlalchemy import select

from clients.errors import (
    MappingError,
    NotFound,
    PermanentError,
    PrerequisiteMissing,
    RecordBusy,
    RecordSkipped,
    SyncError,
)
from clients.servicetrade.models import Invoice, InvoiceItem, Job, Location, Timecard
from clients.spectrum.models import ARInvoiceRequest, SpectrumRequest
from mappers.customer import st_company_to_add_customer
from mappers.invoice import (
    PENDING_ACCOUNTING,
    VOID,
    DocumentNumbers,
    PostedDocuments,
    ar_request_from_infolink,
    document_numbers,
    item_cost_center,
    record_name,
    salesperson_code_for,
    st_invoice_to_ar_invoices,
    void_credit_memo,
    void_skip_reason,
)
from mappers.job import (
    adopt_mismatch,
    job_comment,
    job_cost_centers,
    job_numbers,
    job_record,
    job_skip_reason,
    st_job_to_add_job,
    template_phase_requests,
    update_job_request,
)
from mappers.site import st_location_to_wo_site
from mappers.timecard import APPROVED, employee_code, entry_source_id
from mappers.work_order import st_job_to_work_order, work_order_contract
from tasks import customer as customer_task
from tasks import invoice as invoice_task
from tasks import job as job_task
from tasks import registry
from tasks import site as site_task
from tasks import timecard as timecard_task
from tasks._pipeline import Build, MasterRecord, _collision, _unique_column
from tasks.state import (
    ADD_AR_INVOICE,
    CustomerState,
    DocumentSummary,
    InvoiceState,
    JobState,
    State,
    TimecardEntryState,
    VoidState,
)
from worker.context import SyncContext, build_context
from worker.ledger import Ledger, Record, RecordKey, Status, code_counter
from worker.settings import ConnectionSettings, Settings

PreviewStatus = Literal["would_send", "nothing_to_send", "skipped", "blocked", "partial"]

#: record types ``preview`` accepts (CLI names) -> the planner's kind (the ledger record type)
KINDS: dict[str, str] = registry.PREVIEW_NAMES

REST_INVOICE_SERVICE = "ARMultiLineInvoice"


class PreviewWriteError(RuntimeError):
    """A preview tried to write to the ledger (a bug: previews only read)."""


class ReadOnlyLedger(Ledger):
    """The ledger for previews: reads as usual, refuses every write, drops audit rows."""

    def _refuse(self, what: str) -> PreviewWriteError:
        return PreviewWriteError(f"a preview must not write to the ledger ({what})")

    def audit(self, **_: Any) -> None:
        """Reads made by a preview are not part of any record's history."""

    def migrate(self) -> None:
        raise self._refuse("migrate")

    def ensure(self, key: RecordKey) -> Record:
        raise self._refuse(f"ensure {key}")

    def claim(self, key: RecordKey, **_: Any) -> Any:
        raise self._refuse(f"claim {key}")

    def update_progress(self, key: RecordKey, **_: Any) -> Record:
        raise self._refuse(f"update {key}")

    def mark_done(self, key: RecordKey, **_: Any) -> Record:
        raise self._refuse(f"mark {key} done")

    def mark(self, key: RecordKey, status: Status, **_: Any) -> Record:
        raise self._refuse(f"mark {key} {status.value}")

    def reopen(self, key: RecordKey) -> Record:
        raise self._refuse(f"reopen {key}")

    def next_code_value(self, connection: str, kind: str, **_: Any) -> int:
        raise self._refuse(f"allocate a {kind} code")

    def record_alert(self, key: RecordKey, **_: Any) -> bool:
        raise self._refuse(f"alert for {key}")

    def mark_alerts_sent(self, ids: Any) -> None:
        raise self._refuse("mark alerts sent")

    def set_watermark(self, connection: str, name: str, value: str) -> None:
        raise self._refuse(f"watermark {name}")


def preview_context(settings: Settings, **build: Any) -> SyncContext:
    """A context for previews: the usual clients on a ``ReadOnlyLedger``; nothing is enqueued.

    ``build`` goes to ``build_context`` (tests pass the sandbox transports)."""

    def refuse(task: str, args: tuple[Any, ...]) -> None:
        raise PreviewWriteError(f"a preview must not enqueue {task}{args}")

    return build_context(settings, ledger=ReadOnlyLedger(settings.database_url), enqueue=refuse,
                         **build)


@dataclass(frozen=True)
class PlannedCall:
    """One write the sync would make."""

    system: Literal["spectrum", "servicetrade"]
    service: str
    #: the ledger record the write belongs to (``connection/type/id``)
    record: str
    values: dict[str, Any]
    note: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {
            "system": self.system,
            "service": self.service,
            "record": self.record,
            "values": self.values,
            "note": self.note,
        }


@dataclass
class Preview:
    """What a sync of one record would do."""

    connection: str
    record_type: str
    record_id: str
    status: PreviewStatus = "would_send"
    reason: str = ""
    calls: list[PlannedCall] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    #: parts that could not be sent (e.g. one timecard entry), with the reason
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when everything could be sent (or nothing needs to be)."""
        return self.status in ("would_send", "nothing_to_send")

    def spectrum_calls(self) -> list[PlannedCall]:
        return [c for c in self.calls if c.system == "spectrum"]

    def as_dict(self) -> dict[str, Any]:
        return {
            "connection": self.connection,
            "record_type": self.record_type,
            "record_id": self.record_id,
            "status": self.status,
            "ok": self.ok,
            "reason": self.reason,
            "calls": [c.as_dict() for c in self.calls],
            "notes": self.notes,
            "problems": self.problems,
        }


def _steps(state: State) -> list[str]:
    return list(state.steps)


class _Planner:
    """Walks a record's sync read-only, collecting the writes it would make."""

    def __init__(self, ctx: SyncContext, conn: ConnectionSettings) -> None:
        self.ctx = ctx
        self.conn = conn
        self.rules = conn.rules
        self.infolink = ctx.infolink_for(conn.name)
        self.calls: list[PlannedCall] = []
        self.notes: list[str] = []
        self._next: dict[str, int] = {}
        self._customers: dict[int, str] = {}
        self._sites: dict[int, str] = {}
        self._jobs: dict[int, dict[str, str]] = {}
        self._job_cc: dict[str, str] = {}
        self._failed: dict[tuple[str, int], SyncError] = {}

    # --- helpers --------------------------------------------------------------------------------
    def key(self, record_type: str, source_id: object) -> RecordKey:
        return RecordKey(self.conn.name, record_type, str(source_id))

    def rec(self, key: RecordKey) -> Record | None:
        return self.ctx.ledger.get(key)

    def spectrum(self, key: RecordKey, request: SpectrumRequest, note: str = "") -> None:
        self.calls.append(PlannedCall("spectrum", request.service, str(key),
                                      dict(request.values), note))

    def invoices(self, key: RecordKey, docs: list[ARInvoiceRequest], note: str = "") -> None:
        values = {"invoices": [d.model_dump() for d in docs]}
        self.calls.append(PlannedCall("spectrum", REST_INVOICE_SERVICE, str(key), values, note))

    def servicetrade(self, key: RecordKey, service: str, values: dict[str, Any]) -> None:
        self.calls.append(PlannedCall("servicetrade", service, str(key), values))

    def _counter(self, kind: str) -> int | None:
        ledger = self.ctx.ledger
        with ledger.engine.connect() as c:
            value = c.execute(
                select(code_counter.c.next_value).where(
                    code_counter.c.connection == self.conn.name, code_counter.c.kind == kind
                )
            ).scalar_one_or_none()
        return None if value is None else int(value)

    def predict_code(self, key: RecordKey, spec: MasterRecord) -> str:
        """The code ``allocate_code`` would hand out next, without advancing the counter."""
        kind = spec.kind
        n = self._next.get(kind)
        if n is None:
            n = self._counter(kind) or spec.start
        for _ in range(1000):
            if n > spec.end:
                raise PermanentError(
                    f"{self.conn.name}: the {kind} code range is used up (last allowed "
                    f"{spec.end}); widen [connections.{self.conn.name}.{kind}s.codes]",
                    field=f"connections.{self.conn.name}.{kind}s.codes.end",
                    value=spec.end,
                )
            code = spec.render(n)
            n += 1
            if spec.find(code) is None:
                self._next[kind] = n
                self.notes.append(
                    f"{key}: {code} is the next {kind} code the counter would give (a preview "
                    "does not reserve it)"
                )
                return code
        raise PermanentError(f"{key}: 1000 consecutive {kind} codes are already used in Spectrum")

    def create_or_adopt(
        self, key: RecordKey, state: State, request: SpectrumRequest,
        find: Callable[[], Mapping[str, Any] | None], matches: Callable[[Mapping[str, Any]], bool],
        what: str,
    ) -> None:
        """As ``tasks._pipeline.create_or_adopt``: after an unknown outcome, look first."""
        unique = str(request.values.get(_unique_column(request), ""))
        if state.was_sent(request.service, unique):
            existing = find()
            if existing is not None:
                if matches(existing):
                    self.notes.append(f"{key}: {request.service} of an earlier attempt landed; "
                                      "it would be adopted, nothing sent")
                    return
                raise PermanentError(_collision(what, request), field=_unique_column(request))
        self.spectrum(key, request)

    def _terminal(self, rec: Record | None, what: str, *, top: bool) -> None:
        """A prerequisite the ledger holds as failed/skipped/unknown is not synced again."""
        if rec is None:
            return
        if rec.status is Status.IN_FLIGHT:
            raise RecordBusy(f"{rec.key} is being synced by {rec.lease_owner} right now")
        if top:
            if rec.status in (Status.FAILED, Status.UNKNOWN):
                self.notes.append(
                    f"{rec.key} is {rec.status.value} ({rec.last_error or '-'}); a normal sync "
                    "leaves it so: this is what `stsync retry` would send"
                )
            return
        if rec.status in (Status.FAILED, Status.SKIPPED, Status.UNKNOWN):
            raise PrerequisiteMissing(
                f"{what} is not in Spectrum: {rec.last_error or rec.status.value}",
                field=rec.key.record_type,
                value=rec.key.source_id,
            )

    def _prerequisite(self, kind: str, source_id: int, what: str, plan: Callable[[], Any]) -> Any:
        memo = self._failed.get((kind, source_id))
        if memo is not None:
            raise memo
        try:
            return plan()
        except (PrerequisiteMissing, RecordBusy):
            raise
        except SyncError as exc:
            # the chain records the prerequisite as failed and stops the record that needs it
            missing = PrerequisiteMissing(f"{what} is not in Spectrum: {exc}", field=kind,
                                          value=source_id)
            self._failed[(kind, source_id)] = missing
            raise missing from exc

    # --- customers ------------------------------------------------------------------------------
    def customer(self, company_id: int, *, top: bool = False) -> str:
        if company_id in self._customers:
            return self._customers[company_id]
        key = self.key(customer_task.RECORD_TYPE, company_id)
        rec = self.rec(key)
        what = f"customer (ServiceTrade company {company_id})"
        if rec is not None and rec.status is Status.DONE and rec.spectrum_key and not top:
            return rec.spectrum_key
        self._terminal(rec, what, top=top)
        if top:
            return self._plan_customer(key, rec, company_id)
        code: str = self._prerequisite(customer_task.RECORD_TYPE, company_id, what,
                                       lambda: self._plan_customer(key, rec, company_id))
        return code

    def _plan_customer(self, key: RecordKey, rec: Record | None, company_id: int) -> str:
        company = self.ctx.st.get_company(company_id)
        code = self._plan_master(
            key, rec, customer_task.customer_record(self.ctx, self.conn.name),
            st_id=company_id, external_ids=company.external_ids,
            build=lambda c: st_company_to_add_customer(company, code=c, rules=self.rules),
            what=f"company {company_id}", label="Spectrum customer",
        )
        self._customers[company_id] = code
        return code

    def _plan_master(
        self, key: RecordKey, rec: Record | None, spec: MasterRecord, *, st_id: int,
        external_ids: Mapping[str, str], build: Build, what: str, label: str,
    ) -> str:
        """As ``tasks._pipeline.create_master_record``, read-only: the writes it would make."""
        state = CustomerState.load(rec.state if rec else None)
        known = external_ids.get(self.conn.external_id_key)
        if known and not (rec and rec.spectrum_key) and spec.find(known):
            self.notes.append(f"{key}: mapped to {label} {known} by its externalIds; "
                              "adopted, nothing sent")
            return known
        code = rec.spectrum_key if rec and rec.spectrum_key else self.predict_code(key, spec)
        request, adjustments = build(code)
        self.notes.extend(f"{key}: {a}" for a in adjustments)
        if "spectrum" not in _steps(state):
            self.create_or_adopt(
                key, state, request, find=lambda: spec.find(code),
                matches=lambda row: spec.matches(dict(row), request), what=what,
            )
        if "writeback" not in _steps(state):
            self.servicetrade(key, "externalIds", {
                "entity": spec.st_entity, "id": st_id, self.conn.external_id_key: code})
        return code

    # --- sites ----------------------------------------------------------------------------------
    def site(self, location_id: int, *, top: bool = False) -> str:
        if location_id in self._sites:
            return self._sites[location_id]
        key = self.key(site_task.RECORD_TYPE, location_id)
        rec = self.rec(key)
        what = f"WO site (ServiceTrade location {location_id})"
        if rec is not None and rec.status is Status.DONE and rec.spectrum_key and not top:
            return rec.spectrum_key
        self._terminal(rec, what, top=top)
        if top:
            return self._plan_site(key, rec, location_id)
        code: str = self._prerequisite(site_task.RECORD_TYPE, location_id, what,
                                       lambda: self._plan_site(key, rec, location_id))
        return code

    def _plan_site(self, key: RecordKey, rec: Record | None, location_id: int) -> str:
        location = self.ctx.st.get_location(location_id)
        if location.company is None:
            raise MappingError(f"location {location_id}", "company", "has no company")
        customer = self.customer(location.company.id)
        code = self._plan_master(
            key, rec, site_task.site_record(self.ctx, self.conn.name, customer),
            st_id=location_id, external_ids=location.external_ids,
            build=lambda c: st_location_to_wo_site(
                location, site=c, customer_code=customer, rules=self.rules
            ),
            what=f"location {location_id}", label="WO site",
        )
        self._sites[location_id] = code
        return code

    # --- JC jobs --------------------------------------------------------------------------------
    def job(self, job_id: int, *, top: bool = False) -> dict[str, str]:
        """Cost center -> Spectrum job number, planning the job's writes when it needs them."""
        if job_id in self._jobs:
            return self._jobs[job_id]
        key = self.key(job_task.RECORD_TYPE, job_id)
        if self.rules.mode == "work_order":
            if top:
                raise RecordSkipped("work-order mode: jobs are sent with Send Job to Spectrum "
                                    "(preview work_order <id>)")
            raise PrerequisiteMissing(
                f"ServiceTrade job {job_id} is not in Spectrum: work-order mode creates no JC "
                "jobs", field="Job_Number", value=job_id)
        rec = self.rec(key)
        done = job_task.spectrum_jobs_of(self.ctx, job_id, self.conn.name)
        if done and not top:
            return done
        self._terminal(rec, f"ServiceTrade job {job_id}", top=top)
        if top:
            return self._plan_job(key, rec, job_id)
        plan: dict[str, str] = self._prerequisite(
            job_task.RECORD_TYPE, job_id, f"ServiceTrade job {job_id}",
            lambda: self._plan_job(key, rec, job_id))
        return plan

    def _plan_job(self, key: RecordKey, rec: Record | None, job_id: int) -> dict[str, str]:
        state = JobState.load(rec.state if rec else None)
        steps = _steps(state)
        job = self.ctx.st.get_job(job_id)
        skip = job_skip_reason(job, self.rules.jobs)
        if skip:
            raise RecordSkipped(skip)
        known = [n.strip() for n in job.external_ids.get(self.conn.external_id_key, "").split(",")]
        known = [n for n in known if n]
        if known and not state.plan:
            rows = [self.infolink.find_job(n) for n in known]
            if all(rows):
                plan = {str((row or {}).get("Cost_Center") or "").strip(): n
                        for n, row in zip(known, rows, strict=True)}
                self.notes.append(f"{key}: mapped to Spectrum job(s) {', '.join(known)} by its "
                                  "externalIds; adopted, nothing sent")
                self._jobs[job_id] = plan
                return plan
        if job.location is None:
            raise MappingError(job_record(job), "location", "the job has no location")
        location = self.ctx.st.get_location(job.location.id)
        company_id = job_task._company_id(job, location.company.id if location.company else None)
        customer = self.customer(company_id)
        site = self.site(location.id)
        plan = dict(state.plan)
        if not plan:
            lines = job_task._service_lines(self.ctx, job, self.conn)
            ccs = job_cost_centers(job, lines, self.rules, connection=self.conn.name)
            plan = job_numbers(job.number, ccs, self.rules)
        comment = job_comment(job)
        for cost_center, number in plan.items():
            request, adjusted = st_job_to_add_job(
                job, location, number=number, cost_center=cost_center, customer_code=customer,
                site_id=site, rules=self.rules, tz=self.ctx.settings.timezone,
            )
            self._job_cc[number] = request.values.get("Cost_Center", "")
            self.notes.extend(f"{key}: {number}: {a}" for a in adjusted)
            if f"add:{number}" not in steps:
                self._add_job(key, state, request, job_record(job))
            if self.rules.jobs.template_job and f"phases:{number}" not in steps:
                phase_rows = job_task.template_phase_rows(self.ctx, self.conn)
                sent = state.phases_sent(number)
                for phase in template_phase_requests(number, phase_rows, self.rules):
                    combo = f"{phase.values['Phase_Code']}/{phase.values['Cost_Type']}"
                    if combo not in sent:
                        self.spectrum(key, phase)
            update = update_job_request(number, self.rules, comment=comment)
            if update is not None and f"update:{number}" not in steps:
                self.spectrum(key, update)
        if "writeback" not in steps:
            self.servicetrade(key, "externalIds", {
                "entity": "job", "id": job_id, self.conn.external_id_key: ",".join(plan.values())})
        self._jobs[job_id] = plan
        return plan

    def _add_job(
        self, key: RecordKey, state: State, request: SpectrumRequest, what: str
    ) -> None:
        number = request.values["Job_Number"]

        def matches(row: Mapping[str, Any]) -> bool:
            existing = {k: None if v is None else str(v) for k, v in row.items()}
            return adopt_mismatch(existing, request) is None

        self.create_or_adopt(key, state, request, find=lambda: self.infolink.find_job(number),
                             matches=matches, what=what)

    # --- work orders (send-job) -----------------------------------------------------------------
    def work_order(self, job_id: int) -> None:
        if self.rules.mode != "work_order":
            # "Send Job to Spectrum" in JC mode replays the job's sync
            self.job(job_id, top=True)
            return
        key = self.key(job_task.WORK_ORDER_RECORD_TYPE, job_id)
        rec = self.rec(key)
        if rec is not None and rec.status is Status.IN_FLIGHT:
            raise RecordBusy(f"{key} is being sent by {rec.lease_owner} right now")
        job = self.ctx.st.get_job(job_id)
        skip = job_skip_reason(job, self.rules.jobs)
        if skip:
            raise RecordSkipped(skip)
        customer, site = job_task._mapped_customer_and_site(self.ctx, self.conn, job)
        request, adjustments = st_job_to_work_order(
            job, customer_code=customer, site_id=site, rules=self.rules,
            contract_number=work_order_contract(job, self.rules), connection=self.conn.name,
        )
        self.notes.extend(f"{key}: {a}" for a in adjustments)
        self.spectrum(key, request, note="upsert: a re-send overwrites the work order")
        number = request.values["WO_Number"]
        if job.external_ids.get(self.conn.external_id_key) != number:
            self.servicetrade(key, "externalIds", {
                "entity": "job", "id": job_id, self.conn.external_id_key: number})

    # --- invoices -------------------------------------------------------------------------------
    def invoice(self, invoice_id: int) -> str | None:
        """Plan the invoice's sync; a reason when there is nothing to send."""
        key = self.key(invoice_task.RECORD_TYPE, invoice_id)
        try:
            invoice = self.ctx.st.get_invoice(invoice_id)
        except NotFound:
            raise RecordSkipped("the invoice no longer exists in ServiceTrade") from None
        if invoice.status == PENDING_ACCOUNTING:
            return self._post_invoice(key, invoice)
        if invoice.status == VOID:
            return self._void_invoice(invoice)
        return (f"status is {invoice.status!r}: only {PENDING_ACCOUNTING!r} and {VOID!r} "
                "invoices are synced")

    def _posted(self, invoice_id: int) -> PostedDocuments:
        return invoice_task.posted_documents(self.ctx, self.conn.name, invoice_id)

    def _post_invoice(self, key: RecordKey, invoice: Invoice) -> str | None:
        rec = self.rec(key)
        if rec is not None and rec.status is Status.IN_FLIGHT:
            raise RecordBusy(f"{key} is being synced by {rec.lease_owner} right now")
        state = InvoiceState.load(rec.state if rec else None)
        posted = self._posted(invoice.id)
        planned = dict(state.planned)
        kinds = [s.kind for s in planned.values()]
        if planned and all(getattr(posted, k, None) for k in kinds):
            first = next(n for n, s in planned.items() if getattr(posted, s.kind, None))
            self.servicetrade(key, "invoice status", {
                "id": invoice.id, "status": invoice_task.PROCESSED, "invoiceNumber": first})
            return None
        docs = self._map_invoice(key, state, invoice)
        pending: list[ARInvoiceRequest] = []
        for doc in docs:
            summary = invoice_task._summary(doc)
            if getattr(posted, summary.kind, None):
                continue
            if state.was_sent(ADD_AR_INVOICE, doc.number) and self._adoptable(
                doc.number, summary, invoice
            ):
                continue
            pending.append(doc)
        if pending:
            self.invoices(key, pending)
        self.servicetrade(key, "invoice status", {
            "id": invoice.id, "status": invoice_task.PROCESSED, "invoiceNumber": docs[0].number})
        return None

    def _adoptable(self, number: str, summary: DocumentSummary, invoice: Invoice) -> bool:
        row = self.infolink.find_ar_invoice(number)
        if row is None:
            return False
        why = invoice_task._mismatch(row, summary)
        if why:
            raise PermanentError(
                f"{record_name(invoice)}: Spectrum already has AR document {number} for "
                f"something else ({why}); stsync never overwrites it",
                field="Invoice_Or_Transaction", value=number,
            )
        self.notes.append(f"AR document {number} of an earlier attempt is in Spectrum; it "
                          "would be adopted, not sent again")
        return True

    def _map_invoice(
        self, key: RecordKey, state: InvoiceState, invoice: Invoice
    ) -> list[ARInvoiceRequest]:
        """As ``tasks.invoice._map``, with the chain planned instead of synced."""
        rules = self.rules
        record = record_name(invoice)
        if invoice.type != "invoice":
            raise RecordSkipped(f"{record}: type {invoice.type!r} is not a customer invoice")
        st_job = self.ctx.st.get_job(invoice.job.id) if invoice.job is not None else None
        location = invoice_task._location(self.ctx, invoice, st_job)
        company_id = invoice_task._company_id(invoice, st_job, location)
        if rules.invoices.job_resolution == "job":
            job_number, job_cc = self._job_from_st_job(invoice, st_job)
            customer = self._invoice_customer(company_id, record)
        else:
            customer = self._invoice_customer(company_id, record)
            job_number, job_cc = self._job_from_location(invoice, st_job, location, customer)

        def cost_center(item: InvoiceItem) -> str:
            return item_cost_center(item, job_cost_center=job_cc, rules=rules.cost_centers)

        salesperson_ref = st_job.salesperson if st_job is not None else None
        salesperson = None
        if salesperson_ref is not None:
            user = self.ctx.st.get_user(salesperson_ref.id)
            salesperson = salesperson_code_for(
                user, rules=rules.invoices, external_id_key=self.conn.external_id_key)
        stored = state.numbers
        numbers = DocumentNumbers(
            invoice=stored.invoice, credit_memo=stored.credit_memo
        ) if stored else document_numbers(invoice, rules.invoices)
        loc_state = location.address.state if location is not None and location.address else None
        return st_invoice_to_ar_invoices(
            invoice, customer_code=customer, job_number=job_number,
            job_type=st_job.type if st_job is not None else None,
            cost_center_for_item=cost_center, location_state=loc_state,
            salesperson_code=salesperson, salesperson_user=salesperson_ref, rules=rules,
            tz=self.ctx.settings.timezone, numbers=numbers, connection=self.conn.name,
        )

    def _invoice_customer(self, company_id: int, record: str) -> str:
        if self.rules.mode == "jc":
            return self.customer(company_id)
        code = invoice_task._mapped(
            self.ctx, self.conn, customer_task.RECORD_TYPE, company_id,
            lambda: self.ctx.st.get_company(company_id).external_ids)
        if code is None:
            raise PrerequisiteMissing(
                f"{record}: customer: ServiceTrade company {company_id} is not mapped to a "
                f"Spectrum customer; set its externalIds '{self.conn.external_id_key}' to the "
                "customer code", field="customer", value=company_id)
        return code

    def _job_from_st_job(self, invoice: Invoice, st_job: Job | None) -> tuple[str, str | None]:
        if st_job is not None and job_task.spectrum_jobs_of(self.ctx, st_job.id, self.conn.name):
            # the job is in Spectrum: the task's own resolution only reads
            return invoice_task._job_from_st_job(self.ctx, self.conn, invoice, st_job)
        record = record_name(invoice)
        if st_job is None:
            raise MappingError(record, "job", 'the invoice has no job; with '
                               'invoices.job_resolution = "job" every invoice needs one')
        try:
            plan = self.job(st_job.id)
        except PrerequisiteMissing as exc:
            raise PrerequisiteMissing(
                f"{record}: job: ServiceTrade job {st_job.number} (id {st_job.id}) is not in "
                f"Spectrum: {exc}", field="Job_Number", value=st_job.id) from exc
        if len(plan) == 1:
            cc, number = next(iter(plan.items()))
            return number, cc or self._job_cc.get(number) or None
        by_line = {item_cost_center(i, job_cost_center=None, rules=self.rules.cost_centers)
                   for i in invoice.items}
        numbers = sorted({plan[cc] for cc in by_line if cc in plan})
        if len(numbers) == 1 and by_line <= set(plan):
            return numbers[0], next(iter(by_line))
        raise MappingError(
            record, "Job_Number",
            f"the lines belong to cost centers {', '.join(sorted(by_line))} but job "
            f"{st_job.number} is split into Spectrum jobs "
            f"{', '.join(f'{c}={n}' for c, n in plan.items())}; a Spectrum invoice has one job",
            value=sorted(by_line))

    def _job_from_location(
        self, invoice: Invoice, st_job: Job | None, location: Location | None, customer: str
    ) -> tuple[str, str | None]:
        if location is None or self.rules.mode != "jc" or self._site_done(location.id):
            return invoice_task._job_from_location(
                self.ctx, self.conn, invoice, st_job, location, customer)
        site = self.site(location.id)
        # a WO site the sync would create now has no jobs yet
        raise PrerequisiteMissing(
            f"{record_name(invoice)}: job: Spectrum has no open job of customer {customer} at "
            f"WO site {site} (location {location.name}, id {location.id}); create it in "
            f'Spectrum with WO site {site}, or use invoices.job_resolution = "job"',
            field="Job_Number", value=site)

    def _site_done(self, location_id: int) -> bool:
        rec = self.rec(self.key(site_task.RECORD_TYPE, location_id))
        return rec is not None and rec.status is Status.DONE and bool(rec.spectrum_key)

    def _void_invoice(self, invoice: Invoice) -> str | None:
        key = self.key(invoice_task.VOID_RECORD_TYPE, invoice.id)
        rec = self.rec(key)
        if rec is not None and rec.status is Status.DONE:
            return f"the void is already credited ({rec.spectrum_key})"
        if rec is not None and rec.status is Status.SKIPPED:
            raise RecordSkipped(rec.last_error or "the void was skipped")
        if rec is not None and rec.status is Status.IN_FLIGHT:
            raise RecordBusy(f"{key} is being synced by {rec.lease_owner} right now")
        state = VoidState.load(rec.state if rec else None)
        record = record_name(invoice)
        approval = self.rec(self.key(invoice_task.RECORD_TYPE, invoice.id))
        if approval is not None and approval.status is Status.IN_FLIGHT:
            raise RecordBusy(f"{record}: its approval is being posted; the void waits")
        posted = self._posted(invoice.id)
        if approval is not None:
            # documents whose write outcome is unknown are looked up first, as the task does
            for number, summary in InvoiceState.load(approval.state).unconfirmed().items():
                if self._adoptable(number, summary, invoice):
                    posted = PostedDocuments(
                        invoice=posted.invoice or (number if summary.kind == "invoice"
                                                   else None),
                        credit_memo=posted.credit_memo or (
                            number if summary.kind == "credit_memo" else None),
                        void_credit=posted.void_credit)
        if posted.void_credit:
            return f"already credited ({posted.void_credit})"
        reason = void_skip_reason(invoice, posted)
        if reason:
            raise RecordSkipped(f"{record}: void: {reason}")
        assert posted.invoice is not None  # void_skip_reason guarantees it
        row = self.infolink.find_ar_invoice(posted.invoice)
        if row is None:
            raise PermanentError(
                f"{record}: void: the posted AR invoice {posted.invoice} is not in Spectrum any "
                "more (deleted there?); nothing was credited", field="Invoice_Or_Transaction",
                value=posted.invoice)
        original = ar_request_from_infolink(row)
        void_date = state.void_date or datetime.now(
            ZoneInfo(self.ctx.settings.timezone)).date().isoformat()
        (memo,) = void_credit_memo(
            invoice, posted=original, void_date=datetime.fromisoformat(void_date).date(),
            rules=self.rules, connection=self.conn.name)
        summary = invoice_task._summary(memo, invoice_task.VOID_KIND)
        if not (state.was_sent(ADD_AR_INVOICE, memo.number) and self._adoptable(
                memo.number, summary, invoice)):
            self.invoices(key, [memo], note=f"credit memo offsetting AR invoice {posted.invoice}")
        if "comment" not in _steps(state):
            self.servicetrade(key, "comment", {
                "entityType": invoice_task.INVOICE_ENTITY_TYPE, "entityId": invoice.id,
                "content": f"stsync: Spectrum credit memo {memo.number} offsets AR invoice "
                           f"{posted.invoice}."})
        return None

    # --- timecards ------------------------------------------------------------------------------
    def timecard(self, timecard_id: int, problems: list[str], *, recheck_unknown: bool) -> None:
        key = self.key(timecard_task.RECORD_TYPE, timecard_id)
        rec = self.rec(key)
        if rec is not None and rec.status is Status.IN_FLIGHT:
            raise RecordBusy(f"{key} is being synced by {rec.lease_owner} right now")
        tc = self.ctx.st.get_timecard(timecard_id)
        if tc.status != APPROVED:
            raise RecordSkipped(
                f"timecard {tc.id} is {tc.status!r}; only approved time goes to payroll")
        employee = employee_code(tc, external_id_key=self.conn.external_id_key,
                                 rules=self.rules.timecards)
        if self.infolink.find_employee(employee) is None:
            raise PrerequisiteMissing(
                f"timecard {tc.id}: employee {employee!r} of technician {timecard_task._who(tc)} "
                "is not in Spectrum (PR employee master): add the employee in Spectrum or "
                f"correct the technician's externalIds[{self.conn.external_id_key!r}] / "
                "timecards.employee_map, then replay the timecard",
                field="Employee_Code", value=employee)
        ids = [entry_source_id(tc.id, e.id) for e in tc.entries]
        known = self.ctx.ledger.get_many(self.conn.name, timecard_task.ENTRY_RECORD_TYPE, ids)
        jobs = _PreviewJobs(self)
        for entry, sid in zip(tc.entries, ids, strict=True):
            erec = known.get(sid)
            ekey = self.key(timecard_task.ENTRY_RECORD_TYPE, sid)
            if erec is not None and erec.status is Status.DONE:
                continue
            if erec is not None and erec.status is Status.UNKNOWN and not recheck_unknown:
                problems.append(f"{ekey}: unknown outcome; left for a person "
                                "(stsync retry --unknown after checking Spectrum)")
                continue
            try:
                self._entry(ekey, erec, tc, entry, employee, jobs)
            except SyncError as exc:
                problems.append(f"{ekey}: {exc}")

    def _entry(
        self, key: RecordKey, rec: Record | None, tc: Timecard, entry: Any, employee: str,
        jobs: _PreviewJobs,
    ) -> None:
        if rec is not None and rec.status is Status.IN_FLIGHT:
            raise RecordBusy(f"{key} is being synced by {rec.lease_owner} right now")
        state = TimecardEntryState.load(rec.state if rec else None)
        request = timecard_task.map_entry(self.ctx, self.conn, tc, entry, employee, jobs)
        if state.posted:
            return
        marker = request.values["Message"]
        if state.sent_at is not None and self.infolink.find_pre_time(marker):
            self.notes.append(f"{key}: pre-time row {marker!r} of an earlier attempt is in "
                              "Spectrum; it would be adopted, not sent again")
            return
        self.spectrum(key, request)


class _PreviewJobs(timecard_task._Jobs):
    """The timecard task's job facts, with a missing job planned instead of synced."""

    def __init__(self, planner: _Planner) -> None:
        super().__init__(planner.ctx, planner.conn)
        self.planner = planner

    def facts(self, job_id: int, *, sync_missing: bool = True) -> timecard_task.JobFacts:
        plan = job_task.spectrum_jobs_of(self.ctx, job_id, self.conn.name)
        if not plan and sync_missing:
            try:
                plan = self.planner.job(job_id)
            except PrerequisiteMissing as exc:
                raise PrerequisiteMissing(
                    f"ServiceTrade job {job_id} is not in Spectrum, so its time has no job to "
                    f"go to: {exc}", field="Job_Number", value=job_id) from exc
        job = self.ctx.st.get_job(job_id)
        state: str | None = None
        if job.location is not None:
            location = self.ctx.st.get_location(job.location.id)
            state = location.address.state if location.address else None
        office = job.assigned_office.id if job.assigned_office else None
        return timecard_task.JobFacts(plan, state, office)


def preview_record(
    ctx: SyncContext,
    record_type: str,
    record_id: int,
    connection: str | None = None,
    *,
    recheck_unknown: bool = False,
) -> Preview:
    """What syncing ``record_type`` ``record_id`` on ``connection`` would send; writes nothing."""
    kind = KINDS.get(record_type)
    if kind is None:
        raise ValueError(
            f"unknown record type {record_type!r}; one of: {', '.join(sorted(KINDS))}")
    conn = ctx.connection(connection)
    planner = _Planner(ctx, conn)
    preview = Preview(conn.name, kind, str(record_id))
    problems: list[str] = []
    try:
        reason = _run(planner, kind, record_id, problems, recheck_unknown=recheck_unknown)
    except RecordSkipped as exc:
        preview.status, preview.reason = "skipped", str(exc)
    except RecordBusy as exc:
        preview.status, preview.reason = "blocked", f"busy: {exc}"
    except SyncError as exc:
        preview.status, preview.reason = "blocked", f"{type(exc).__name__}: {exc}"
    else:
        if problems:
            preview.status = "partial" if planner.calls else "blocked"
            preview.reason = f"{len(problems)} part(s) could not be sent"
        elif not planner.calls:
            preview.status = "nothing_to_send"
            preview.reason = reason or "already in Spectrum; nothing to send"
        else:
            preview.reason = reason or ""
    preview.calls = planner.calls
    preview.notes = planner.notes
    preview.problems = problems
    return preview


def _run(
    planner: _Planner, kind: str, record_id: int, problems: list[str], *, recheck_unknown: bool
) -> str | None:
    if kind == "customer":
        rec = planner.rec(planner.key(customer_task.RECORD_TYPE, record_id))
        if _settled(rec):
            return _settled_reason(rec)
        planner.customer(record_id, top=True)
    elif kind == "site":
        rec = planner.rec(planner.key(site_task.RECORD_TYPE, record_id))
        if _settled(rec):
            return _settled_reason(rec)
        planner.site(record_id, top=True)
    elif kind == "job":
        rec = planner.rec(planner.key(job_task.RECORD_TYPE, record_id))
        if planner.rules.mode == "jc" and _settled(rec):
            return _settled_reason(rec)
        planner.job(record_id, top=True)
    elif kind == "work_order":
        planner.work_order(record_id)
    elif kind == "invoice":
        return planner.invoice(record_id)
    else:
        planner.timecard(record_id, problems, recheck_unknown=recheck_unknown)
    return None


def _settled(rec: Record | None) -> bool:
    return rec is not None and rec.status in (Status.DONE, Status.SKIPPED)


def _settled_reason(rec: Record | None) -> str:
    assert rec is not None
    if rec.status is Status.SKIPPED:
        raise RecordSkipped(rec.last_error or "skipped")
    return f"already in Spectrum as {rec.spectrum_key or '-'} (ledger {rec.key}: done)"
