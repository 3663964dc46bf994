"""The writes a sync makes, as small protocols on the ``SyncContext``.

Every change a sync makes to Spectrum or ServiceTrade goes through one of these: the real clients
satisfy them (``ctx.spectrum_writes(conn)``, ``ctx.st_writes``), and the preview puts recording
writers in their place, so it runs the very same ``sync_*`` functions without sending anything.
Reads stay on the clients (``ctx.st``, ``ctx.spectrum_for``, ``ctx.infolink_for``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from clients.servicetrade.models import JobItem
from clients.spectrum.models import ARInvoiceRequest, SpectrumRequest
from clients.spectrum.rest_invoice import ARInvoiceResult
from clients.spectrum.soap import PutResult


class SpectrumWriter(Protocol):
    """Writes to one Spectrum company: SOAP Put services and the REST invoice service."""

    def put(self, request: SpectrumRequest) -> PutResult: ...

    def add_ar_invoices(self, invoices: Sequence[ARInvoiceRequest]) -> list[ARInvoiceResult]: ...


class ServiceTradeWriter(Protocol):
    """Writes back to ServiceTrade: external ids, invoice status, comments, job items."""

    def set_external_id(self, entity: str, entity_id: int, system: str, value: str) -> None: ...

    def set_invoice_status(
        self, invoice_id: int, status: str, invoice_number: str | None = None
    ) -> Any: ...

    def add_comment(self, entity_type: int, entity_id: int, content: str) -> Any: ...

    def create_job_item(self, payload: Mapping[str, Any]) -> JobItem: ...

    def update_job_item(self, item_id: int, payload: Mapping[str, Any]) -> Any: ...

    def delete_job_item(self, item_id: int) -> None: ...
