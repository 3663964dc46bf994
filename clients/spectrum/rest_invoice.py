"""The one adapter for Spectrum's REST multi-line AR invoice service (``POST /customer/invoice``).

The request layout is documented (reference §6); the response is not. The project assumes
(reference §9.7) ``{"arInvoices": [{"Invoice_Or_Transaction", "Error_Code", "Error_Description",
"Error_Column"}]}``, one entry per submitted invoice, several errors of one invoice joined into one
entry (descriptions by ``"; "``, columns by ``","``). Everything that depends on that guess is in
this module, so a real server that answers differently breaks here and only here.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import httpx

from clients.errors import (
    AlreadyExists,
    AmbiguousWriteError,
    AuthorizationError,
    ErrorRow,
    PermanentError,
)
from clients.http import Endpoint, Verdict, retry_after_seconds, status_error, verdict
from clients.spectrum import assumptions as shared
from clients.spectrum.models import ARInvoiceRequest
from clients.spectrum.soap import says_duplicate

# The response shape and headers are assumptions shared with the sandbox (one module).
PATH = shared.REST_INVOICE_PATH
SERVICE = shared.REST_INVOICE_SERVICE
COMPANY_HEADER = shared.REST_COMPANY_HEADER
AUTHORIZATION_ID_HEADER = shared.REST_AUTHORIZATION_ID_HEADER
RESULTS_KEY = shared.REST_RESULTS_KEY
NUMBER_KEY = shared.REST_NUMBER_KEY
DESCRIPTION_JOIN = shared.REST_DESCRIPTION_JOIN
COLUMN_JOIN = shared.REST_COLUMN_JOIN
_OK_CODES = shared.PUT_OK_CODES


@dataclass(frozen=True)
class ARInvoiceResult:
    """What Spectrum said about one submitted invoice (``error`` None when ``ok``)."""

    number: str
    ok: bool
    error: PermanentError | AlreadyExists | None = None


def build_request_body(invoices: Sequence[ARInvoiceRequest]) -> dict[str, Any]:
    """``{"arInvoices": [{header..., "invoiceDetails": [...]}]}`` (reference §6)."""
    return {
        RESULTS_KEY: [
            {**inv.header, "invoiceDetails": [dict(d) for d in inv.details]} for inv in invoices
        ]
    }


def _rows(entry: dict[str, Any]) -> list[ErrorRow]:
    code = str(entry.get("Error_Code") or "").strip().upper()
    description = str(entry.get("Error_Description") or "")
    column = str(entry.get("Error_Column") or "")
    descriptions = description.split(DESCRIPTION_JOIN)
    columns = column.split(COLUMN_JOIN)
    if len(descriptions) > 1 and len(descriptions) == len(columns):
        return [ErrorRow(code, d, c) for d, c in zip(descriptions, columns, strict=True)]
    return [ErrorRow(code, description, column)]


def _result(number: str, entry: dict[str, Any]) -> ARInvoiceResult:
    rows = _rows(entry)
    code = rows[0].code
    if code in _OK_CODES:
        return ARInvoiceResult(number=number, ok=True)
    message = f"Spectrum {SERVICE} refused invoice {number}: " + "; ".join(
        f"{r.column or '-'}: {r.description or '(no description)'}" for r in rows
    )
    if code == "A":
        # authorization is per service, so every invoice of the call fails the same way
        raise AuthorizationError(message, rows=rows)
    duplicate = code == "I" and any(
        NUMBER_KEY in r.column.split(COLUMN_JOIN) and says_duplicate(d)
        for r in rows
        for d in r.description.split(DESCRIPTION_JOIN)
    )
    error: PermanentError
    if duplicate:
        error = AlreadyExists(message, rows=rows, field=NUMBER_KEY, value=number)
    else:
        error = PermanentError(message, rows=rows, field=rows[0].column or None, value=number)
    return ARInvoiceResult(number=number, ok=False, error=error)


def _entries(body: bytes) -> list[dict[str, Any]] | None:
    try:
        payload = json.loads(body)
    except ValueError:
        return None
    entries = payload.get(RESULTS_KEY) if isinstance(payload, dict) else None
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        return None
    return entries


def interpret_response(resp: httpx.Response, numbers: Sequence[str]) -> list[ARInvoiceResult]:
    """One result per submitted invoice number, in request order; or the error of the call.

    By ``clients.http.STATUS_POLICY``: 401/403 → ``AuthorizationError``; 429 →
    ``TransientError``; 408/5xx → ``AmbiguousWriteError`` (some may have landed). Any other
    status is read: a body that accounts for the invoices gives their results (a refused invoice
    is a result with its error); a success whose body does not → ``AmbiguousWriteError``.
    """
    status, body = resp.status_code, resp.content
    where = f"Spectrum POST {PATH}: HTTP {status}"
    found = verdict(status, Endpoint.SERVICES)
    if found in (Verdict.REAUTHENTICATE, Verdict.DENIED):
        message = f"{where}: Spectrum refused the company code/Authorization ID"
        raise status_error(resp, Endpoint.SERVICES, message, write=True)
    if found is Verdict.THROTTLED:
        raise status_error(resp, Endpoint.SERVICES, where, write=True)
    if found is Verdict.SERVER:
        snippet = body.decode("utf-8", "replace").strip()[:200]
        raise AmbiguousWriteError(
            f"{where} {snippet}; the invoices may have been imported",
            retry_after=retry_after_seconds(resp.headers.get("Retry-After")),
        )
    entries = _entries(body)
    if entries is None:
        snippet = body.decode("utf-8", "replace").strip()[:200]
        if 200 <= status < 300:
            raise AmbiguousWriteError(
                f"{where}: unexpected body {snippet!r}; the invoices may have been imported"
            )
        raise PermanentError(f"{where}: {snippet}")
    answered = [str(e.get(NUMBER_KEY) or "").strip() for e in entries]
    if len(entries) == len(numbers) and not any(answered):
        # the answer names no invoice: fall back to the assumed request order
        by_number = dict(zip(numbers, entries, strict=True))
    else:
        by_number = dict(zip(answered, entries, strict=True))
    missing = [n for n in numbers if n not in by_number]
    if missing:
        raise AmbiguousWriteError(
            f"{where}: no result for invoice(s) {', '.join(missing)}; they may have been imported"
        )
    return [_result(n, by_number[n]) for n in numbers]
