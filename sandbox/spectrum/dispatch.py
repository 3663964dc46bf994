"""One SOAP call from parsed request to message rows: element presence, authorization, GUID,
layout, then the service's own rules and write — all in one SQL transaction (reference §9.3).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from clients.spectrum.services import Service
from sandbox.spectrum import assumptions as assume
from sandbox.spectrum.admin_state import AdminState
from sandbox.spectrum.db import SpectrumDB
from sandbox.spectrum.gets import GET_HANDLERS, Record
from sandbox.spectrum.puts import PUT_HANDLERS
from sandbox.spectrum.soap import Row, SoapCall, SoapRequestError
from sandbox.spectrum.validation import (
    AUTH_COLUMN,
    Checks,
    check_authorization,
    check_layout,
    not_authorized_row,
)
from sandbox.spectrum.wsdl import request_elements


@dataclass
class Outcome:
    """What a served call answers: Put message rows, or Get rows (errors as Error_* rows)."""

    service: Service
    rows: list[Row] = field(default_factory=list)
    records: list[Record] = field(default_factory=list)
    #: the call changed Spectrum's tables
    wrote: bool = False


def _get_error(rows: list[Row]) -> list[Record]:
    return [{"Error_Code": c, "Error_Description": d, "Error_Column": col} for c, d, col in rows]


def serve(service: Service, call: SoapCall, admin: AdminState, db: SpectrumDB) -> Outcome:
    """Serve one call; raises ``SoapRequestError`` for requests answered with a SOAP fault."""
    if call.operation != service.name:
        code, text = assume.BAD_REQUEST_FAULT
        raise SoapRequestError(
            code, text.format(why=f"operation {call.operation} sent to endpoint {service.name}")
        )
    declared = request_elements(service)
    if not assume.IGNORE_UNDECLARED_ELEMENTS:
        undeclared = sorted(set(call.values) - set(declared))
        if undeclared:
            code, text = assume.UNDECLARED_ELEMENTS_FAULT
            raise SoapRequestError(code, text.format(names=", ".join(undeclared)))
    if admin.require_all_elements:
        missing = [e for e in declared if e not in call.values]
        if missing:
            code, text = assume.MISSING_ELEMENTS_FAULT
            raise SoapRequestError(code, text.format(names=", ".join(missing)))
    values = {name: call.values.get(name, "") for name in declared}
    is_put = service.type == "put"
    company_field = "Company_Code" if is_put else "pCompany_Code"
    auth_id = values["Authorization_ID"]
    auth, company = check_authorization(admin, auth_id, values[company_field], service.name)
    result = Outcome(service)
    if auth is None:
        if is_put:
            result.rows = [not_authorized_row()]
        else:
            result.records = _get_error(
                [(assume.GET_NOT_AUTHORIZED_CODE, assume.GET_NOT_AUTHORIZED_TEXT, AUTH_COLUMN)]
            )
        return result
    values[company_field] = company

    early: list[Row] = []
    guid = values["GUID"]
    if len(guid) > assume.GUID_MAX_LEN:
        early.append(
            (
                "I",
                f"GUID is invalid, value is {len(guid)} characters; Spectrum allows "
                f"{assume.GUID_MAX_LEN}",
                "GUID",
            )
        )
    else:
        refused = admin.use_guid(service.name, guid, auth.authorization_id)
        if refused is not None:
            if refused[0] == "A":  # an expired session aborts the call
                if is_put:
                    result.rows = [refused]
                else:
                    result.records = _get_error([refused])
                return result
            early.append(refused)

    clean, layout_rows = check_layout(service.fields, values, strict=admin.strict_lengths)
    with db.transaction() as conn:
        checks = Checks(conn, admin, company)
        checks.extend(early + layout_rows)
        if is_put:
            extra = PUT_HANDLERS[service.name](checks, clean)
            if checks.rows:
                result.rows = list(checks.rows)
            else:
                result.rows = [*assume.PUT_SUCCESS_ROWS, *extra]
                result.wrote = True
        else:
            records = GET_HANDLERS[service.name](checks, clean) if not checks.rows else []
            result.records = _get_error(checks.rows) if checks.rows else records
    return result
