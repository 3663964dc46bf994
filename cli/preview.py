"""Preview / dry run (F17): exactly what a record's sync would send, without writing anything.

``preview_record(ctx, record_type, record_id)`` runs the record's real ``sync_*`` function (from
``tasks.registry``) on a context whose *writers* record instead of sending (``worker.writers``)
and whose ledger is a scratch copy: an in-memory SQLite ledger that copies each row the sync
touches (and the code counters it draws from) from the real ledger on first use. Reads still go
to the real systems (ServiceTrade, Info-Link, the template job's ``GetPhase``). So the preview
makes the sync's own decisions — prerequisites first as the chain sends them, steps the ledger
holds as done skipped, an earlier write of unknown outcome looked up and adopted, the same
failure and skip reasons — and lists, in order, every write: Spectrum calls (SOAP Put services
and the REST invoice service, with their element values) and the write-backs to ServiceTrade.

Nothing is written: run it on a context built by ``preview_context``, whose ledger
(``ReadOnlyLedger``) refuses every write and drops the audit rows of the reads; the scratch ledger
is thrown away. Codes the ledger has not allocated yet are shown as the value the counter would
give next (skipping codes Spectrum already uses, as ``allocate_code`` does); the real counter is
not advanced, so a sync started later by someone else may take that code first.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from sqlalchemy import create_engine, insert, select
from sqlalchemy.pool import StaticPool

from clients.errors import AlreadyExists, RecordBusy, SyncError
from clients.servicetrade.models import JobItem
from clients.spectrum.infolink import InfoLinkReader
from clients.spectrum.models import ARInvoiceRequest, SpectrumRequest
from clients.spectrum.rest_invoice import ARInvoiceResult
from clients.spectrum.services import DUPLICATE_MESSAGE, UNIQUE_KEYS
from clients.spectrum.soap import PutResult
from tasks import registry
from tasks.state import ADD_AR_INVOICE, ADD_CUSTOMER, ADD_JOB, ADD_SITE, Result
from worker.context import SyncContext, build_context, current_record
from worker.ledger import (
    Claim,
    Ledger,
    Record,
    RecordKey,
    Status,
    code_counter,
    metadata,
    sync_record,
)
from worker.settings import Settings

PreviewStatus = Literal["would_send", "nothing_to_send", "skipped", "blocked", "partial"]

#: record types ``preview`` accepts (CLI names) -> the ledger record type previewed
KINDS: dict[str, str] = registry.PREVIEW_NAMES

REST_INVOICE_SERVICE = "ARMultiLineInvoice"


class PreviewWriteError(RuntimeError):
    """A preview tried to write to the real ledger or to enqueue (a bug: previews only read)."""


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


class ScratchLedger(Ledger):
    """An in-memory ledger the sync may write to freely; rows come from ``source`` on first use.

    Each record row and code counter is copied from the real ledger the first time the sync
    looks at it, so the sync sees the real progress of every record it touches; nothing goes
    back."""

    def __init__(self, source: Ledger) -> None:
        engine = create_engine(
            "sqlite://", poolclass=StaticPool, connect_args={"check_same_thread": False}
        )
        metadata.create_all(engine)
        super().__init__("sqlite://", engine=engine)
        self.source = source
        self._rows: set[RecordKey] = set()
        self._counters: set[tuple[str, str]] = set()

    def _pull(self, keys: Sequence[RecordKey]) -> None:
        for key in keys:
            if key in self._rows:
                continue
            self._rows.add(key)
            with self.source.engine.connect() as src:
                row = src.execute(self._where(key)).mappings().first()
            if row is not None:  # a new id: rows the sync created here may hold the real one
                values = {k: v for k, v in row.items() if k != "id"}
                with self.tx() as conn:
                    conn.execute(insert(sync_record).values(**values))

    def ensure(self, key: RecordKey) -> Record:
        self._pull([key])
        return super().ensure(key)

    def get(self, key: RecordKey) -> Record | None:
        self._pull([key])
        return super().get(key)

    def get_many(
        self, connection: str, record_type: str, source_ids: Any
    ) -> dict[str, Record]:
        ids = list(source_ids)
        self._pull([RecordKey(connection, record_type, i) for i in ids])
        return super().get_many(connection, record_type, ids)

    def claim(self, key: RecordKey, **kwargs: Any) -> Claim:
        self._pull([key])
        return super().claim(key, **kwargs)

    def update_progress(self, key: RecordKey, **kwargs: Any) -> Record:
        self._pull([key])
        return super().update_progress(key, **kwargs)

    def mark_done(self, key: RecordKey, **kwargs: Any) -> Record:
        self._pull([key])
        return super().mark_done(key, **kwargs)

    def mark(self, key: RecordKey, status: Status, **kwargs: Any) -> Record:
        self._pull([key])
        return super().mark(key, status, **kwargs)

    def reopen(self, key: RecordKey) -> Record:
        self._pull([key])
        return super().reopen(key)

    def next_code_value(self, connection: str, kind: str, *, start: int, end: int) -> int:
        if (connection, kind) not in self._counters:
            self._counters.add((connection, kind))
            where = (code_counter.c.connection == connection, code_counter.c.kind == kind)
            with self.source.engine.connect() as src:
                value = src.execute(select(code_counter.c.next_value).where(*where)).scalar()
            if value is not None:
                with self.tx() as conn:
                    conn.execute(
                        insert(code_counter).values(
                            connection=connection, kind=kind, next_value=value
                        )
                    )
        return super().next_code_value(connection, kind, start=start, end=end)

    def new_codes(self) -> list[tuple[RecordKey, str]]:
        """Records that got a code from a counter in this preview: (key, code)."""
        kinds = {kind for _, kind in self._counters}
        out = []
        for key in sorted(self._rows, key=str):
            if key.record_type not in kinds:
                continue
            mine, real = self.get(key), self.source.get(key)
            if mine is not None and mine.spectrum_key and (
                real is None or real.spectrum_key != mine.spectrum_key
            ):
                out.append((key, mine.spectrum_key))
        return out


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


class _Recorder:
    """The writers of a preview: each write is listed (for the record being synced), not sent."""

    def __init__(self) -> None:
        self.calls: list[PlannedCall] = []

    def add(self, system: Literal["spectrum", "servicetrade"], service: str,
            values: dict[str, Any], note: str = "") -> None:
        key = current_record.get()
        self.calls.append(PlannedCall(system, service, str(key) if key else "", values, note))


@dataclass
class RecordingSpectrum:
    """A ``SpectrumWriter`` that records. A write succeeds on paper, except an add whose unique
    key Spectrum already holds (looked up in Info-Link): refused as Spectrum would refuse it, so
    the sync decides (adopt, or report a collision) as it will for real."""

    recorder: _Recorder
    infolink: InfoLinkReader

    def _taken(self, service: str, key: str) -> bool:
        find = {
            ADD_CUSTOMER: self.infolink.find_customer,
            ADD_SITE: self.infolink.find_site,
            ADD_JOB: self.infolink.find_job,
            ADD_AR_INVOICE: self.infolink.find_ar_invoice,
        }.get(service)
        return find is not None and bool(key) and find(key) is not None

    def put(self, request: SpectrumRequest) -> PutResult:
        column = UNIQUE_KEYS.get(request.service, "")
        value = str(request.values.get(column, "")) if column else ""
        if column and self._taken(request.service, value):
            why = DUPLICATE_MESSAGE.format(column=column)
            self.recorder.add("spectrum", request.service, dict(request.values),
                              note=f"Spectrum would refuse it: {why}")
            raise AlreadyExists(f"Spectrum {request.service}: {why}", field=column, value=value)
        self.recorder.add("spectrum", request.service, dict(request.values))
        return PutResult()

    def add_ar_invoices(self, invoices: Sequence[ARInvoiceRequest]) -> list[ARInvoiceResult]:
        self.recorder.add(
            "spectrum", REST_INVOICE_SERVICE, {"invoices": [d.model_dump() for d in invoices]}
        )
        out = []
        for doc in invoices:
            if self._taken(ADD_AR_INVOICE, doc.number):
                why = DUPLICATE_MESSAGE.format(column="Invoice_Or_Transaction")
                error = AlreadyExists(f"Spectrum {REST_INVOICE_SERVICE}: {why}",
                                      field="Invoice_Or_Transaction", value=doc.number)
                out.append(ARInvoiceResult(doc.number, ok=False, error=error))
            else:
                out.append(ARInvoiceResult(doc.number, ok=True))
        return out


@dataclass
class RecordingServiceTrade:
    """A ``ServiceTradeWriter`` that records the write-backs."""

    recorder: _Recorder

    def set_external_id(self, entity: str, entity_id: int, system: str, value: str) -> None:
        self.recorder.add(
            "servicetrade", "externalIds", {"entity": entity, "id": entity_id, system: value}
        )

    def set_invoice_status(
        self, invoice_id: int, status: str, invoice_number: str | None = None
    ) -> None:
        values: dict[str, Any] = {"id": invoice_id, "status": status}
        if invoice_number is not None:
            values["invoiceNumber"] = invoice_number
        self.recorder.add("servicetrade", "invoice status", values)

    def add_comment(self, entity_type: int, entity_id: int, content: str) -> None:
        self.recorder.add(
            "servicetrade",
            "comment",
            {"entityType": entity_type, "entityId": entity_id, "content": content},
        )

    def create_job_item(self, payload: Mapping[str, Any]) -> JobItem:
        self.recorder.add("servicetrade", "jobitem create", dict(payload))
        return JobItem.model_construct(id=0)

    def update_job_item(self, item_id: int, payload: Mapping[str, Any]) -> None:
        self.recorder.add("servicetrade", "jobitem update", {"id": item_id, **payload})

    def delete_job_item(self, item_id: int) -> None:
        self.recorder.add("servicetrade", "jobitem delete", {"id": item_id})


def preview_context(settings: Settings, **build: Any) -> SyncContext:
    """A context for previews: the usual clients on a ``ReadOnlyLedger``; nothing is enqueued.

    ``build`` goes to ``build_context`` (tests pass the sandbox transports)."""

    def refuse(task: str, args: tuple[Any, ...]) -> None:
        raise PreviewWriteError(f"a preview must not enqueue {task}{args}")

    return build_context(settings, ledger=ReadOnlyLedger(settings.database_url), enqueue=refuse,
                         **build)


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


#: the ledger's error kind -> the error class people know it by
_ERROR_NAMES = {"prerequisite": "PrerequisiteMissing"}


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
    rt = registry.BY_NAME[kind]
    scratch = ScratchLedger(ctx.ledger)
    recorder = _Recorder()
    pctx = replace(
        ctx,
        ledger=scratch,
        spectrum_writers={
            name: RecordingSpectrum(recorder, ctx.infolink_for(name)) for name in ctx.spectrum
        },
        st_writer=RecordingServiceTrade(recorder),
    )
    preview = Preview(conn.name, kind, str(record_id))
    key = RecordKey(conn.name, kind, str(record_id))
    before = scratch.get(key)
    if before is not None and before.status in (Status.FAILED, Status.UNKNOWN):
        # what `stsync retry` does first; a normal sync leaves the record as it is
        scratch.reopen(key)
        preview.notes.append(
            f"{key} is {before.status.value} ({before.last_error or '-'}); a normal sync "
            "leaves it so: this is what `stsync retry` would send"
        )
    options = {"recheck_unknown": recheck_unknown} if kind == registry.TIMECARD.name else {}
    try:
        outcome = rt.sync_function()(pctx, record_id, conn.name, **options)
    except RecordBusy as exc:
        preview.status, preview.reason = "blocked", f"busy: {exc}"
    except SyncError as exc:
        preview.status, preview.reason = "blocked", f"{type(exc).__name__}: {exc}"
    else:
        preview.problems = _failed_parts(scratch, rt, key)
        _judge(preview, scratch, outcome.result, outcome.key, outcome.spectrum_key,
               outcome.message, has_calls=bool(recorder.calls))
    preview.calls = recorder.calls
    preview.notes.extend(
        f"{k}: {code} is the next {k.record_type} code the counter would give (a preview does "
        "not reserve it)"
        for k, code in scratch.new_codes()
    )
    scratch.dispose()
    return preview


def _judge(preview: Preview, scratch: ScratchLedger, result: Result, key: RecordKey,
           spectrum_key: str | None, message: str, *, has_calls: bool) -> None:
    """The preview's status and reason from the sync's outcome (and what it would send)."""
    if result is Result.SKIPPED:
        preview.status, preview.reason = "skipped", message
    elif not result.ok:
        if preview.problems:
            preview.status = "partial" if has_calls else "blocked"
            preview.reason = f"{len(preview.problems)} part(s) could not be sent"
        else:
            rec = scratch.get(key)
            kind = rec.error_kind if rec is not None and rec.error_kind else result.value
            preview.status = "blocked"
            preview.reason = f"{_ERROR_NAMES.get(kind, kind)}: {message}"
    elif has_calls:
        preview.reason = message
    else:
        preview.status = "nothing_to_send"
        preview.reason = f"already in Spectrum as {spectrum_key or '-'}" + (
            f" ({message})" if message else "")
    if result is Result.ADOPTED:
        preview.notes.append(f"{key}: Spectrum already has it ({message or spectrum_key}); "
                             "it would be adopted, not sent again")


def _failed_parts(scratch: ScratchLedger, rt: registry.RecordType, key: RecordKey) -> list[str]:
    """The record's parts (timecard entries) the sync left failed or unknown, with the reason."""
    out = []
    for part in rt.parts:
        rows = scratch.list_records(statuses=(Status.FAILED, Status.UNKNOWN),
                                    connection=key.connection, record_type=part, limit=100_000)
        out += [f"{r.key}: {r.last_error}" for r in sorted(rows, key=lambda r: r.id)
                if r.key.source_id.startswith(f"{key.source_id}:")]
    return out
