"""The REST side of Spectrum: the multi-line AR invoice service (``POST /customer/invoice``) and
Enhanced Authentication (``POST /connect/token``, ``POST /secretRotation``) — reference §2, §6.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qs

from clients.spectrum.services import (
    AR_MULTI_LINE_AUTH_NAME,
    AR_MULTI_LINE_DETAIL,
    AR_MULTI_LINE_HEADER,
)
from sandbox.spectrum import assumptions as assume
from sandbox.spectrum.admin_state import AdminState, Authorization
from sandbox.spectrum.db import SpectrumDB
from sandbox.spectrum.puts import check_ar_header, check_ar_line, write_ar_invoice
from sandbox.spectrum.soap import Row
from sandbox.spectrum.validation import Checks, check_layout, not_authorized_row

_DETAIL_NAMES = tuple(f.name for f in AR_MULTI_LINE_DETAIL)


class RestError(Exception):
    """A request refused as a whole (HTTP status and JSON body)."""

    def __init__(self, status: int, body: dict[str, Any], headers: dict[str, str] | None = None):
        super().__init__(str(body))
        self.status = status
        self.body = body
        self.headers = headers or {}


@dataclass(frozen=True)
class Caller:
    authorization: Authorization
    company: str


def unauthorized(why: str, scheme: str = "Basic") -> RestError:
    return RestError(401, {"message": why}, {"WWW-Authenticate": f'{scheme} realm="Spectrum"'})


def authenticate(admin: AdminState, headers: Mapping[str, str]) -> Caller:
    """Basic ``Company_Code:Authorization_ID`` (§2); under Enhanced Auth a Bearer token plus the
    Authorization ID headers of ``assumptions``. Unknown, inactive or company not allowed → 401."""
    header = headers.get("authorization", "")
    if admin.enhanced_auth:
        if not admin.bearer_ok(header):
            raise unauthorized("a valid Bearer token is required", "Bearer")
        company = headers.get(assume.REST_COMPANY_HEADER.lower(), "")
        auth_id = headers.get(assume.REST_AUTHORIZATION_ID_HEADER.lower(), "")
    else:
        scheme, _, encoded = header.partition(" ")
        if scheme.lower() != "basic" or not encoded:
            raise unauthorized("HTTP Basic Company_Code:Authorization_ID is required")
        try:
            decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError) as exc:
            raise unauthorized("malformed Basic credentials") from exc
        company, sep, auth_id = decoded.partition(":")
        if not sep:
            raise unauthorized("malformed Basic credentials")
    auth = admin.authorization(auth_id) if auth_id else None
    if auth is None or not auth.active:
        raise unauthorized("Authorization ID is not set up or not active")
    company = company or auth.default_company
    if company not in auth.companies:
        raise unauthorized(f"Authorization ID is not set up for company {company}")
    return Caller(auth, company)


# --- body shapes ----------------------------------------------------------------------------------


def _unwrap(value: Any, wrapper: str) -> list[Any]:
    """Items of a list that may be wrapped (``{"multiLineArInvoice": {...}}``, §6)."""
    if isinstance(value, dict) and set(value) == {wrapper}:
        value = value[wrapper]
    items = value if isinstance(value, list) else [value]
    return [i[wrapper] if isinstance(i, dict) and set(i) == {wrapper} else i for i in items]


def invoices_of(payload: Any) -> list[Any]:
    """The submitted invoices: ``{"arInvoices": [...]}`` or a bare
    ``{"multiLineArInvoice": ...}``."""
    if not isinstance(payload, dict):
        raise RestError(400, {"message": "body must be a JSON object with arInvoices"})
    if "arInvoices" in payload:
        items = _unwrap(payload["arInvoices"], "multiLineArInvoice")
    elif "multiLineArInvoice" in payload:
        items = _unwrap(payload["multiLineArInvoice"], "multiLineArInvoice")
    else:
        raise RestError(400, {"message": "body must be a JSON object with arInvoices"})
    if not items:
        raise RestError(400, {"message": "arInvoices is empty"})
    return items


def _text(value: Any) -> str | None:
    """JSON scalars as wire text (None when the value is not a scalar)."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, int | Decimal):
        return str(value)
    return None


def _values(
    raw: Mapping[str, Any], names: tuple[str, ...], where: str
) -> tuple[dict[str, str], list[Row]]:
    out: dict[str, str] = {}
    rows: list[Row] = []
    for name in names:
        text = _text(raw.get(name))
        if text is None:
            rows.append(("I", f"{where}{name} is invalid, value must be text or a number", name))
            text = ""
        out[name] = text
    return out, rows


# --- serving --------------------------------------------------------------------------------------


def _one_invoice(
    item: Any, caller: Caller, admin: AdminState, checks_for: Callable[[str], Checks]
) -> tuple[str, list[Row]]:
    if not isinstance(item, dict):
        return "", [("I", "invoice must be a JSON object", "arInvoices")]
    header_names = tuple(f.name for f in AR_MULTI_LINE_HEADER)
    raw_header, rows = _values(item, header_names, "")
    number = raw_header["Invoice_Or_Transaction"]
    company = raw_header["Company_Code"] or caller.company
    if company not in caller.authorization.companies or (
        AR_MULTI_LINE_AUTH_NAME not in caller.authorization.services
    ):
        return number, [not_authorized_row()]
    raw_header["Company_Code"] = company
    header, layout_rows = check_layout(
        AR_MULTI_LINE_HEADER, raw_header, strict=admin.strict_lengths
    )
    checks = checks_for(company)
    checks.extend(rows + layout_rows)
    customer = check_ar_header(checks, header)

    raw_details = item.get("invoiceDetails", item.get("invoiceDetail"))
    details = [] if raw_details is None else _unwrap(raw_details, "invoiceDetail")
    if not details:
        checks.add("M", "invoiceDetails", "invoiceDetails is required (at least one line)")
    lines: list[dict[str, str]] = []
    for i, raw in enumerate(details, 1):
        where = f"Line {i}: "
        if not isinstance(raw, dict):
            checks.add("I", "invoiceDetails", f"{where}detail must be a JSON object")
            continue
        values, type_rows = _values(raw, _DETAIL_NAMES, where)
        line, line_rows = check_layout(
            AR_MULTI_LINE_DETAIL, values, strict=admin.strict_lengths, where=where
        )
        line_checks = Checks(checks.conn, admin, company, where=where)
        line_checks.extend(type_rows + line_rows)
        is_message = bool(line["Message"]) and not any(
            line[n] for n in _DETAIL_NAMES if n != "Message"
        )
        if not is_message:
            if not line["Line_Extension"] and line_checks.ok("Line_Extension"):
                line_checks.add("M", "Line_Extension", "Line_Extension is required")
            check_ar_line(line_checks, line)
        checks.extend(line_checks.rows)
        lines.append(line)
    if checks.rows:
        return number, checks.rows
    write_ar_invoice(checks, header, lines, customer)
    return number, []


def serve_invoices(
    payload: Any, caller: Caller, admin: AdminState, db: SpectrumDB
) -> dict[str, Any]:
    """Import every valid invoice of the batch (one transaction); a bad invoice is rejected whole
    while the others import (§6). The response shape is assumption §9.7."""
    items = invoices_of(payload)
    if admin.window("AR", caller.company) is None:
        # §7.4 [W agave]: AR processing dates never set up → HTTP 500
        raise RestError(500, dict(assume.REST_SERVER_ERROR_BODY))
    results = []
    with db.transaction() as conn:

        def checks_for(company: str) -> Checks:
            return Checks(conn, admin, company)

        for item in items:
            number, errors = _one_invoice(item, caller, admin, checks_for)
            results.append(assume.rest_invoice_result(number, errors))
    return {"arInvoices": results}


def parse_json(body: bytes) -> Any:
    try:
        return json.loads(body, parse_float=Decimal)
    except (ValueError, UnicodeDecodeError) as exc:
        raise RestError(400, {"message": f"body is not valid JSON ({exc})"}) from exc


# --- Enhanced Authentication ----------------------------------------------------------------------


def _form(body: bytes, content_type: str) -> dict[str, str]:
    if "json" in content_type:
        data = parse_json(body)
        if not isinstance(data, dict):
            raise RestError(400, {"error": "invalid_request"})
        return {str(k): str(v) for k, v in data.items()}
    parsed = parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True)
    return {k: v[0] for k, v in parsed.items()}


def _client_credentials(form: Mapping[str, str], headers: Mapping[str, str]) -> tuple[str, str]:
    client_id, secret = form.get("client_id", ""), form.get("client_secret", "")
    scheme, _, encoded = headers.get("authorization", "").partition(" ")
    if not client_id and scheme.lower() == "basic":
        with contextlib.suppress(binascii.Error, UnicodeDecodeError):
            client_id, _, secret = base64.b64decode(encoded).decode("utf-8").partition(":")
    return client_id, secret


def token(admin: AdminState, body: bytes, headers: Mapping[str, str]) -> dict[str, Any]:
    """``POST /connect/token``: client credentials grant, scope ``spectrumapi``."""
    form = _form(body, headers.get("content-type", ""))
    if form.get("grant_type") != "client_credentials":
        raise RestError(400, {"error": "unsupported_grant_type"})
    if form.get("scope", "spectrumapi") != "spectrumapi":
        raise RestError(400, {"error": "invalid_scope"})
    client_id, secret = _client_credentials(form, headers)
    issued = admin.issue_token(client_id, secret)
    if issued is None:
        raise RestError(400, {"error": "invalid_client"})
    access_token, expires_in = issued
    return {
        "access_token": access_token,
        "expires_in": expires_in,
        "token_type": "Bearer",
        "scope": "spectrumapi",
    }


def rotate(admin: AdminState, body: bytes, headers: Mapping[str, str]) -> dict[str, Any]:
    """``POST /secretRotation``: a new client secret for the same client (§2)."""
    form = _form(body, headers.get("content-type", ""))
    client_id, secret = _client_credentials(form, headers)
    new = admin.rotate_secret(client_id, secret)
    if new is None:
        raise RestError(400, {"error": "invalid_client"})
    expires = admin.now() + timedelta(days=90)  # secrets rotate every 7-120 days (§2)
    return {"client_secret": new, "estimated_expiration": expires.isoformat()}
