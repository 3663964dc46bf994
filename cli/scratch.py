"""The machinery of previews: a scratch ledger and writers that record instead of sending.

``ScratchLedger`` is an in-memory SQLite ledger that copies each row (and code counter) from the
real ledger the first time a sync touches it; the sync may write to it freely and nothing goes
back. ``RecordingSpectrum`` / ``RecordingServiceTrade`` satisfy ``worker.writers``' protocols and
list each write as a ``PlannedCall``. ``ReadOnlyLedger`` opens the real ledger so that any write
to it raises. ``cli.preview`` puts these together.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from sqlalchemy import create_engine, insert, select
from sqlalchemy.pool import StaticPool

from clients.errors import AlreadyExists
from clients.servicetrade.models import JobItem
from clients.spectrum.infolink import InfoLinkReader
from clients.spectrum.models import ARInvoiceRequest, SpectrumRequest
from clients.spectrum.rest_invoice import ARInvoiceResult
from clients.spectrum.services import DUPLICATE_MESSAGE, UNIQUE_KEYS
from clients.spectrum.soap import PutResult
from tasks.state import ADD_AR_INVOICE, ADD_CUSTOMER, ADD_JOB, ADD_SITE
from worker.context import current_record
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

    def get_many(self, connection: str, record_type: str, source_ids: Any) -> dict[str, Record]:
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
            if (
                mine is not None
                and mine.spectrum_key
                and (real is None or real.spectrum_key != mine.spectrum_key)
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


class Recorder:
    """The writers of a preview: each write is listed (for the record being synced), not sent."""

    def __init__(self) -> None:
        self.calls: list[PlannedCall] = []

    def add(
        self,
        system: Literal["spectrum", "servicetrade"],
        service: str,
        values: dict[str, Any],
        note: str = "",
    ) -> None:
        key = current_record.get()
        self.calls.append(PlannedCall(system, service, str(key) if key else "", values, note))


@dataclass
class RecordingSpectrum:
    """A ``SpectrumWriter`` that records. A write succeeds on paper, except an add whose unique
    key Spectrum already holds (looked up in Info-Link): refused as Spectrum would refuse it, so
    the sync decides (adopt, or report a collision) as it will for real."""

    recorder: Recorder
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
            self.recorder.add(
                "spectrum",
                request.service,
                dict(request.values),
                note=f"Spectrum would refuse it: {why}",
            )
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
                error = AlreadyExists(
                    f"Spectrum {REST_INVOICE_SERVICE}: {why}",
                    field="Invoice_Or_Transaction",
                    value=doc.number,
                )
                out.append(ARInvoiceResult(doc.number, ok=False, error=error))
            else:
                out.append(ARInvoiceResult(doc.number, ok=True))
        return out


@dataclass
class RecordingServiceTrade:
    """A ``ServiceTradeWriter`` that records the write-backs."""

    recorder: Recorder

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
