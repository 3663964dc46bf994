"""SOAP 1.1 envelopes as Spectrum's Data Exchange reads and writes them (reference §3, §4).

Requests are parsed with defusedxml (no DTDs, entities or network access); responses are written
in the vendor's skeleton as plain strings (fast, and byte-for-byte predictable for tests).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from xml.etree.ElementTree import Element, ParseError
from xml.sax.saxutils import escape

from defusedxml import DefusedXmlException
from defusedxml.ElementTree import fromstring as safe_fromstring

from clients.spectrum.services import ERROR_ROW_FIELDS, NS_TYPES, Service
from sandbox.spectrum import assumptions as assume

#: One Put message row: (error_code, desc, column).
Row = tuple[str, str, str]


_ENVELOPE_OPEN = (
    '<?xml version="1.0" encoding="UTF-8"?>\n'
    '<SOAP-ENV:Envelope SOAP-ENV:encodingStyle="http://schemas.xmlsoap.org/soap/encoding/" '
    'xmlns:SOAP-ENV="http://schemas.xmlsoap.org/soap/envelope/" '
    'xmlns:xsd="http://www.w3.org/2001/XMLSchema" '
    'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">\n'
    "<SOAP-ENV:Header/>\n<SOAP-ENV:Body>\n"
)
_ENVELOPE_CLOSE = "</SOAP-ENV:Body>\n</SOAP-ENV:Envelope>\n"


class SoapRequestError(Exception):
    """The request cannot be served; answered with a SOAP fault."""

    def __init__(self, faultcode: str, faultstring: str) -> None:
        super().__init__(faultstring)
        self.faultcode = faultcode
        self.faultstring = faultstring


@dataclass(frozen=True)
class SoapCall:
    """The operation element of a request and its flat children (by local name)."""

    operation: str
    values: dict[str, str]


def _bad(why: str) -> SoapRequestError:
    code, text = assume.BAD_REQUEST_FAULT
    return SoapRequestError(code, text.format(why=why))


def _local(tag: str) -> str:
    return tag.rpartition("}")[2]


def parse_request(body: bytes) -> SoapCall:
    """Read a SOAP 1.1 request (defusedxml: no DTDs, no entities, no network). Children may be
    qualified or not; the first occurrence of an element wins; values keep their whitespace
    (Spectrum stores what it is given)."""
    if not body.strip():
        raise _bad("empty body")
    try:
        root: Element = safe_fromstring(body, forbid_dtd=True)
    except DefusedXmlException as exc:
        raise _bad("DTDs and entities are not accepted") from exc
    except ParseError as exc:
        raise _bad(f"malformed XML ({exc})") from exc
    if _local(root.tag) != "Envelope":
        raise _bad("root element is not a SOAP Envelope")
    body_el = next((c for c in root if _local(c.tag) == "Body"), None)
    if body_el is None:
        raise _bad("no SOAP Body")
    op = next(iter(body_el), None)
    if op is None:
        raise _bad("empty SOAP Body")
    values: dict[str, str] = {}
    for child in op:
        name = _local(child.tag)
        if name not in values:
            values[name] = "".join(child.itertext())
    return SoapCall(_local(op.tag), values)


def _el(name: str, value: str) -> str:
    return f"<{name}>{escape(value)}</{name}>" if value else f"<{name}/>"


def _wrap(service: str, inner: str) -> str:
    return (
        f'{_ENVELOPE_OPEN}<nis:{service}Response xmlns:nis="{NS_TYPES}">\n'
        f"<returnArray>{inner}</returnArray>\n</nis:{service}Response>\n{_ENVELOPE_CLOSE}"
    )


def render_put(service: str, rows: Sequence[Row]) -> str:
    """A Put response: one ``response`` per message; none (empty ``returnData``) on success."""
    if not rows:
        return _wrap(service, "<returnData/>")
    body = "".join(
        f"\n<response>{_el('error_code', c)}{_el('desc', d)}{_el('column', col)}</response>"
        for c, d, col in rows
    )
    return _wrap(service, f"<returnData>{body}\n</returnData>")


def render_get(service: Service, rows: Iterable[Mapping[str, str]]) -> str:
    """A Get response: rows in the lower-camel wrapper, each ending with the Error_* fields."""
    names = service.row_fields + ERROR_ROW_FIELDS
    parts = [
        "\n<response>" + "".join(_el(n, row.get(n, "")) for n in names) + "</response>"
        for row in rows
    ]
    wrapper = service.row_wrapper
    inner = f"<{wrapper}>{''.join(parts)}\n</{wrapper}>" if parts else f"<{wrapper}/>"
    return _wrap(service.name, f"<returnData>{inner}</returnData>")


def render_fault(faultcode: str, faultstring: str) -> str:
    """A SOAP 1.1 fault."""
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<SOAP-ENV:Envelope xmlns:SOAP-ENV="http://schemas.xmlsoap.org/soap/envelope/">\n'
        "<SOAP-ENV:Body>\n<SOAP-ENV:Fault>"
        f"<faultcode>{escape(faultcode)}</faultcode>"
        f"<faultstring>{escape(faultstring)}</faultstring>"
        "</SOAP-ENV:Fault>\n</SOAP-ENV:Body>\n</SOAP-ENV:Envelope>\n"
    )


def truncate_after_last_response(text: str) -> str:
    """Cut a response right after its last ``</response>`` (a server seen doing so, §1)."""
    cut = text.rfind("</response>")
    return text if cut < 0 else text[: cut + len("</response>")]
