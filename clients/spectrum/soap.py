"""Spectrum Data Exchange SOAP envelopes: building requests and reading answers. Pure, no I/O.

Requests always carry every element of the service layout, in order, empty when unused (a live
integrator found the server faults otherwise, reference §1). Answers are parsed tolerantly (the
server may cut large Get responses after the last ``</response>``), with entity expansion, DTD
loading and network access switched off, so a hostile or broken answer cannot read files or blow
up memory. Business errors arrive as ``response`` rows inside HTTP 200 bodies; ``classify_*`` turn
them into ``clients.errors`` classes.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from lxml import etree

from clients.errors import AlreadyExists, AuthorizationError, ErrorRow, PermanentError
from clients.spectrum import assumptions as shared
from clients.spectrum.services import (
    ERROR_ROW_FIELDS,
    NS_SOAP,
    NS_TYPES,
    UNIQUE_KEYS,
    Service,
)

# XML 1.0 cannot carry these characters at all, escaped or not.
_XML_ILLEGAL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")
_ESCAPES = {"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&apos;"}
_ESCAPE_RE = re.compile("[&<>\"']")
_ENVELOPE_CLOSE = re.compile(rb"</(?:[A-Za-z_][\w.-]*:)?Envelope\s*>")
_RESPONSE_CLOSE = b"</response>"
#: Wording of a duplicate-key refusal. Matched loosely: the reference calls the real text a guess.
_DUPLICATE = re.compile(r"already|duplicat|in use|exists|on file", re.IGNORECASE)
_NEGATED = re.compile(r"\b(?:not|no|doesn't|does not)\b", re.IGNORECASE)
_GUID_TIMEOUT = re.compile(r"time\s*-?\s*out has occurred", re.IGNORECASE)
_NOT_AUTHORIZED = re.compile(r"not\s+authori[sz]ed", re.IGNORECASE)
#: codes that mean success on a Put row (reference §4: S = test connection, G = value returned)
_PUT_OK = shared.PUT_OK_CODES


class MalformedSoapError(ValueError):
    """The body is not a SOAP envelope at all (an HTML error page, an empty body ...)."""


@dataclass(frozen=True)
class SoapResponse:
    """What a SOAP answer holds.

    ``rows``: every ``response`` element as a dict of child local name → trimmed text (Put rows:
    ``error_code``/``desc``/``column``; Get rows: the row fields plus ``Error_*``).
    ``fault``: (faultcode, faultstring) when the answer is a SOAP fault.
    ``truncated``: the envelope was cut off (closing tags missing); rows after the cut are lost.
    """

    rows: list[dict[str, str]]
    fault: tuple[str, str] | None
    truncated: bool


@dataclass(frozen=True)
class PutResult:
    """A Put that Spectrum accepted: values it generated (``G`` rows) and any warnings."""

    generated: dict[str, str] = field(default_factory=dict)
    warnings: tuple[ErrorRow, ...] = ()


@dataclass(frozen=True)
class GetResult:
    """A Get's rows (``Error_*`` removed). ``truncated``: more rows exist than were returned."""

    rows: list[dict[str, str]]
    truncated: bool = False
    warnings: tuple[ErrorRow, ...] = ()


# --- requests -------------------------------------------------------------------------------------
def _escape(service: str, element: str, value: str) -> str:
    bad = _XML_ILLEGAL.search(value)
    if bad:
        raise PermanentError(
            f"{service}.{element} contains U+{ord(bad.group()):04X}, which XML cannot carry",
            field=element,
        )
    return _ESCAPE_RE.sub(lambda m: _ESCAPES[m.group()], value)


def build_envelope(
    service: Service, authorization_id: str, guid: str, values: Mapping[str, str]
) -> bytes:
    """The SOAP 1.1 request for ``service``: every layout element in order, empty when absent."""
    unknown = sorted(set(values) - set(service.field_names))
    if unknown:
        raise ValueError(f"{service.name}: unknown element(s) {', '.join(unknown)}")
    elements = [("Authorization_ID", authorization_id), ("GUID", guid)]
    elements += [(name, values.get(name) or "") for name in service.field_names]
    body = "".join(
        f"<{name}>{_escape(service.name, name, value)}</{name}>" for name, value in elements
    )
    return (
        '<?xml version="1.0" encoding="UTF-8"?>'
        f'<soap:Envelope xmlns:soap="{NS_SOAP}"><soap:Body>'
        f'<{service.name} xmlns="{NS_TYPES}">{body}</{service.name}>'
        "</soap:Body></soap:Envelope>"
    ).encode()


# --- answers --------------------------------------------------------------------------------------
def _parser() -> etree.XMLParser:
    # a fresh parser per call: lxml parsers are not safe to share between threads
    return etree.XMLParser(
        recover=True,
        huge_tree=True,
        resolve_entities=False,
        no_network=True,
        load_dtd=False,
        dtd_validation=False,
        remove_comments=True,
        remove_pis=True,
    )


def _local(el: etree._Element) -> str:
    return etree.QName(el).localname if isinstance(el.tag, str) else ""


def _text(el: etree._Element) -> str:
    # only the element's own text: entity references (never expanded) contribute nothing
    return (el.text or "").strip()


def parse_response(body: bytes, service: Service) -> SoapResponse:
    """Read a SOAP answer for ``service``; ``MalformedSoapError`` if it is not SOAP at all."""
    truncated = False
    if not _ENVELOPE_CLOSE.search(body):
        truncated = True
        cut = body.rfind(_RESPONSE_CLOSE)
        if cut >= 0:
            # drop a half-received row after the last complete one
            body = body[: cut + len(_RESPONSE_CLOSE)]
    try:
        root = etree.fromstring(body, _parser())
    except etree.XMLSyntaxError as exc:
        raise MalformedSoapError(f"{service.name}: answer is not XML ({exc})") from exc
    if root is None:
        raise MalformedSoapError(f"{service.name}: empty answer")
    elements = [el for el in root.iter() if isinstance(el.tag, str)]
    names = {_local(el) for el in elements}
    if "Envelope" not in names and "Body" not in names:
        raise MalformedSoapError(f"{service.name}: answer is not a SOAP envelope")
    fault = None
    for el in elements:
        if _local(el) == "Fault":
            parts = {_local(c): _text(c) for c in el if isinstance(c.tag, str)}
            fault = (parts.get("faultcode", ""), parts.get("faultstring", ""))
            break
    rows = [
        {_local(c): _text(c) for c in el if isinstance(c.tag, str)}
        for el in elements
        if _local(el) == "response"
    ]
    return SoapResponse(rows=rows, fault=fault, truncated=truncated)


def is_guid_timeout(response: SoapResponse) -> bool:
    """Spectrum's "Time out has occurred": the GUID expired and nothing was done."""
    texts = [row.get("desc", "") or row.get("Error_Description", "") for row in response.rows]
    if response.fault:
        texts.append(response.fault[1])
    return any(_GUID_TIMEOUT.search(t) for t in texts)


def is_client_fault(fault: tuple[str, str]) -> bool:
    """A ``Client`` fault: the request itself was refused, so repeating it cannot help."""
    return fault[0].rsplit(":", 1)[-1].strip().lower().startswith("client")


def _put_row(row: Mapping[str, str]) -> ErrorRow:
    return ErrorRow(
        code=(row.get("error_code") or row.get("Error_Code") or "").strip().upper(),
        description=row.get("desc") or row.get("Error_Description") or "",
        column=row.get("column") or row.get("Error_Column") or "",
    )


def says_duplicate(description: str) -> bool:
    """Whether an ``I`` row's text reads like "already exists" (not "does not exist")."""
    return bool(_DUPLICATE.search(description)) and not _NEGATED.search(description)


def _is_duplicate(service_name: str, row: ErrorRow) -> bool:
    key = UNIQUE_KEYS.get(service_name)
    return (
        key is not None
        and row.code == "I"
        and row.column.strip() == key
        and says_duplicate(row.description)
    )


def _describe(service_name: str, rows: Sequence[ErrorRow]) -> str:
    return f"Spectrum {service_name} refused: " + "; ".join(
        f"{r.column or '-'}: {r.description or '(no description)'} ({r.code})" for r in rows
    )


def classify_put_rows(service_name: str, rows: Sequence[Mapping[str, str]]) -> PutResult:
    """Turn a Put's ``response`` rows into a ``PutResult`` or the right error.

    ``A`` → ``AuthorizationError``; ``I`` on the service's unique key saying it exists →
    ``AlreadyExists``; any other ``I``/``M``/``E`` (or unknown code) → ``PermanentError``.
    Every row goes into the error's ``.rows``. Blank, ``S`` and ``G`` rows are success; ``G``
    rows return generated values by column; ``W`` rows are kept as warnings.
    """
    parsed = [_put_row(r) for r in rows]
    generated = {r.column: r.description for r in parsed if r.code == "G" and r.column}
    warnings = tuple(r for r in parsed if r.code == "W")
    errors = [r for r in parsed if r.code not in _PUT_OK and r.code != "W"]
    if not errors:
        return PutResult(generated=generated, warnings=warnings)
    message = _describe(service_name, errors)
    if any(r.code == "A" for r in errors):
        raise AuthorizationError(message, rows=parsed)
    duplicate = next((r for r in errors if _is_duplicate(service_name, r)), None)
    if duplicate is not None:
        raise AlreadyExists(message, rows=parsed, field=duplicate.column)
    first = errors[0]
    raise PermanentError(message, rows=parsed, field=first.column or None)


def classify_get_rows(service: Service, rows: Sequence[Mapping[str, str]]) -> GetResult:
    """Turn a Get's rows into a ``GetResult`` or the right error.

    A row carrying ``A`` (or ``E`` "not authorized") → ``AuthorizationError``; other ``E``/``I``/
    ``M`` → ``PermanentError``; a ``W`` row (Spectrum's "exceeds maximum") marks the result
    truncated and is kept as a warning. Rows with no data at all are dropped; every row has every
    field of the service's row layout (empty when absent).
    """
    data_rows: list[dict[str, str]] = []
    warnings: list[ErrorRow] = []
    errors: list[ErrorRow] = []
    for row in rows:
        err = ErrorRow(
            code=(row.get("Error_Code") or "").strip().upper(),
            description=row.get("Error_Description") or "",
            column=row.get("Error_Column") or "",
        )
        data = dict.fromkeys(service.row_fields, "")
        data.update({k: v for k, v in row.items() if k not in ERROR_ROW_FIELDS})
        has_data = any(data.values())
        if err.code == "W":
            warnings.append(err)
        elif err.code not in _PUT_OK:
            errors.append(err)
            continue
        if has_data:
            data_rows.append(data)
    if errors:
        message = _describe(service.name, errors)
        if any(
            e.code == "A" or e.column == "Authorization_ID" or _NOT_AUTHORIZED.search(e.description)
            for e in errors
        ):
            raise AuthorizationError(message, rows=errors)
        raise PermanentError(message, rows=errors, field=errors[0].column or None)
    return GetResult(rows=data_rows, truncated=bool(warnings), warnings=tuple(warnings))
