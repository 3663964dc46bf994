"""Spectrum purchase-order lines -> ServiceTrade job items (F9). Pure: no I/O, no clock.

A PO line (read from Info-Link ``PO_PURCHASE_ORDER_DETAIL_MC`` joined to its header, already
trimmed by the reader) becomes one ``POST /jobitem`` payload on the ServiceTrade job that the
task matched to the PO's Spectrum job number. The task decides *whether* to write (ledger,
digest); these functions decide *what* to write.

Matching rules, in order (keys compared trimmed and case-insensitively, since Spectrum keys are
upper-case CHAR columns while ServiceTrade codes are free text):

- library item: the ServiceTrade lib item whose ``code`` equals the Spectrum item code, then
  ``[connections.<c>.purchase_orders.lib_item_by_item_code]``, then ``default_lib_item_id``;
  no match at all means the job item carries no library item.
- service line: ``service_line_by_phase["<phase>/<cost type>"]``, then ``["<phase>"]``, then
  ``default_service_line_id`` (the PO default routing of F10); no match at all is a
  ``MappingError`` because a job item without a service line cannot be routed or reported.

Vendor reference: the Spectrum vendor code is appended to the item name in brackets
(``"Copper pipe 1in [ACME]"``). ServiceTrade's job-item ``vendor`` is a ServiceTrade company id,
and Spectrum vendor codes have no crosswalk to ServiceTrade companies, so the name is the one
place a person sees it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Set
from datetime import date, datetime
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from clients.errors import ConfigError, MappingError
from clients.servicetrade.models import JobItem, LibItem
from clients.spectrum.po_models import PoLine
from mappers.rules import PurchaseOrderRules

ClosedLineAction = Literal["leave", "zero", "remove", "sync"]

#: ServiceTrade's job-item ``source.type`` for a reference number (reference §5.7)
SOURCE_TYPE = "refnumber"
#: PO header / line status codes that mean "no longer an open commitment" (Info-Link [A]:
#: header P proposed / O open / C closed; line O open / C closed / X cancelled)
CLOSED_STATUSES = frozenset({"C", "X"})
#: Job-item fields that an update may change (the ``POST /jobitem`` names)
UPDATABLE_FIELDS = ("name", "quantity", "cost", "usedOn", "libitemId", "serviceLineId", "source")
#: Spectrum ``Item_Price`` / ``PO_Quantity_List1`` carry four decimals; keep them, no more
_PLACES = Decimal("0.0001")
_LIMIT = Decimal(10) ** 10


def _s(value: str | None) -> str:
    return (value or "").strip()


def _norm(code: str | None) -> str:
    return _s(code).upper()


def po_line_key(line: PoLine) -> str:
    """The ledger source id of a PO line: ``"<PO number>:<line number>"``."""
    return f"{_s(line.po_number)}:{_s(line.line_number)}"


def po_line_record(line: PoLine) -> str:
    """How errors name the line: ``"PO 1001 line 2"``."""
    return f"PO {_s(line.po_number)} line {_s(line.line_number)}"


def po_line_source_ref(line: PoLine) -> str:
    """The job item's ``source.value``: ``"PO <number>-<line>"``; also how an item is adopted."""
    return f"PO {_s(line.po_number)}-{_s(line.line_number)}"


def index_lib_items(items: Iterable[LibItem]) -> tuple[dict[str, int], frozenset[str]]:
    """ServiceTrade lib items by normalised ``code``, and the codes held by several items.

    Ambiguous codes are left out of the index: ``match_lib_item`` then needs the config map to
    say which item is meant, rather than picking one at random.
    """
    by_code: dict[str, int] = {}
    ambiguous: set[str] = set()
    for item in items:
        code = _norm(item.code)
        if not code:
            continue
        if code in by_code and by_code[code] != item.id:
            ambiguous.add(code)
        else:
            by_code[code] = item.id
    for code in ambiguous:
        by_code.pop(code, None)
    return by_code, frozenset(ambiguous)


def match_lib_item(
    item_code: str | None,
    lib_items_by_code: Mapping[str, int],
    rules: PurchaseOrderRules,
    *,
    ambiguous_codes: Set[str] = frozenset(),
    record: str = "PO line",
) -> int | None:
    """The ServiceTrade lib item id for a Spectrum item code, or None when nothing applies.

    Order: lib item ``code`` (``lib_items_by_code`` keys are compared normalised), then
    ``lib_item_by_item_code``, then ``default_lib_item_id``. A code shared by several lib items
    must be resolved by the config map; otherwise it is a ``MappingError``.
    """
    code = _norm(item_code)
    if code:
        for key, lib_id in lib_items_by_code.items():
            if _norm(key) == code:
                return lib_id
        for key, lib_id in rules.lib_item_by_item_code.items():
            if _norm(key) == code:
                return lib_id
        if code in {_norm(c) for c in ambiguous_codes}:
            raise MappingError(
                record,
                "item code",
                f"item code {code!r} matches several ServiceTrade lib items; say which one in "
                "[connections.<name>.purchase_orders.lib_item_by_item_code]",
                value=item_code,
            )
    return rules.default_lib_item_id


def match_service_line(
    phase_code: str | None, cost_type: str | None, rules: PurchaseOrderRules
) -> int | None:
    """The ServiceTrade service line id for a phase / cost type, or None when nothing applies.

    ``"<phase>/<cost type>"`` first, then ``"<phase>"``, then ``default_service_line_id``.
    """
    phase, ctype = _norm(phase_code), _norm(cost_type)
    table = {_norm(k): v for k, v in rules.service_line_by_phase.items()}
    if phase:
        if ctype and f"{phase}/{ctype}" in table:
            return table[f"{phase}/{ctype}"]
        if phase in table:
            return table[phase]
    return rules.default_service_line_id


def used_on(order_date: date, tz: str) -> int:
    """Unix seconds of ``order_date`` at local midnight in ``tz`` (ServiceTrade's date fields)."""
    try:
        zone = ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ConfigError(f"timezone {tz!r} is not a known IANA zone", value=tz) from exc
    midnight = datetime(order_date.year, order_date.month, order_date.day, tzinfo=zone)
    return int(midnight.timestamp())


def _amount(value: Decimal, record: str, field: str) -> Decimal:
    if not value.is_finite():
        raise MappingError(record, field, f"{value} is not a number", value=value)
    # Info-Link holds these as NUMERIC(14,4): anything larger is not a real PO amount, and a
    # bound keeps every value exact as a JSON number (at most 14 significant digits)
    if abs(value) >= _LIMIT:
        raise MappingError(record, field, f"{value} is out of range (max {_LIMIT})", value=value)
    try:
        q = value.quantize(_PLACES, rounding=ROUND_HALF_UP)
    except InvalidOperation as exc:  # pragma: no cover - the bound above prevents it
        raise MappingError(record, field, f"{value} is too large", value=value) from exc
    if q.is_zero():
        return Decimal(0)  # "-0.0000" and "0" are the same quantity
    # normalise trailing zeros but never into exponent form (Decimal("1E+2"))
    return Decimal(format(q.normalize(), "f"))


def _item_name(line: PoLine) -> str:
    base = _s(line.description) or _s(line.item_code) or po_line_source_ref(line)
    vendor = _s(line.vendor_code)
    return f"{base} [{vendor}]" if vendor else base


def po_line_to_job_item(
    line: PoLine,
    *,
    st_job_id: int,
    lib_items_by_code: Mapping[str, int],
    rules: PurchaseOrderRules,
    tz: str,
    ambiguous_codes: Set[str] = frozenset(),
) -> dict[str, Any]:
    """The ServiceTrade ``POST /jobitem`` payload for one PO line.

    ``quantity`` and ``cost`` (unit cost) are ``Decimal`` (the ServiceTrade client encodes them as
    JSON numbers); ``usedOn`` is the order date at local midnight and is left out when the PO has
    no order date (ServiceTrade then uses the creation time).
    """
    record = po_line_record(line)
    if not _s(line.po_number):
        raise MappingError(record, "PO number", "is empty", value=line.po_number)
    if not _s(line.line_number):
        raise MappingError(record, "line number", "is empty", value=line.line_number)
    if st_job_id <= 0:
        raise MappingError(record, "job", f"ServiceTrade job id {st_job_id} is not an id")
    service_line = match_service_line(line.phase_code, line.cost_type, rules)
    if service_line is None:
        raise MappingError(
            record,
            "service line",
            f"phase {_s(line.phase_code)!r} / cost type {_s(line.cost_type)!r} is not "
            "mapped in [connections.<name>.purchase_orders.service_line_by_phase] and no "
            "default_service_line_id is set",
            value=line.phase_code,
        )
    payload: dict[str, Any] = {
        "jobId": st_job_id,
        "name": _item_name(line),
        "quantity": _amount(line.quantity, record, "quantity"),
        "cost": _amount(line.unit_cost, record, "unit cost"),
        "serviceLineId": service_line,
        "source": {"type": SOURCE_TYPE, "value": po_line_source_ref(line)},
    }
    lib_item = match_lib_item(
        line.item_code,
        lib_items_by_code,
        rules,
        ambiguous_codes=ambiguous_codes,
        record=record,
    )
    if lib_item is not None:
        payload["libitemId"] = lib_item
    if line.order_date is not None:
        payload["usedOn"] = used_on(line.order_date, tz)
    return payload


def to_wire(payload: Mapping[str, Any]) -> dict[str, Any]:
    """The payload as plain JSON types: ``Decimal`` becomes an int or a float.

    Amounts are bounded to 14 significant digits, so the float's JSON text is the decimal's
    own (``37.5``, ``12.3457``): nothing is lost on the wire.
    """
    return {str(k): _wire(v) for k, v in payload.items()}


def _wire(value: Any) -> Any:
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, Mapping):
        return to_wire(value)
    if isinstance(value, list | tuple):
        return [_wire(v) for v in value]
    return value


def _current(existing: JobItem, field: str) -> Any:
    if field == "name":
        return existing.name
    if field == "quantity":
        return existing.quantity
    if field == "cost":
        return existing.cost
    if field == "usedOn":
        return existing.used_on
    if field == "libitemId":
        return existing.lib_item.id if existing.lib_item else None
    if field == "serviceLineId":
        return existing.service_line.id if existing.service_line else None
    if field == "source":
        src = existing.source
        return {"type": src.type, "value": src.value} if src else None
    raise KeyError(field)  # pragma: no cover - UPDATABLE_FIELDS is closed


def job_item_update(existing: JobItem, desired: Mapping[str, Any]) -> dict[str, Any]:
    """The ``PUT /jobitem/{id}`` body that turns ``existing`` into ``desired``: changed fields only.

    Empty when nothing changed. ``jobId`` is never part of an update: a PO moved to another job is
    the task's business (remove and re-create). Numbers compare by value (``5`` == ``5.000``).
    """
    out: dict[str, Any] = {}
    for field in UPDATABLE_FIELDS:
        if field not in desired:
            continue
        want, have = desired[field], _current(existing, field)
        if isinstance(want, Decimal) and have is not None:
            if Decimal(have) != want:
                out[field] = want
        elif want != have:
            out[field] = want
    return out


def zeroed(desired: Mapping[str, Any]) -> dict[str, Any]:
    """The payload of a closed line under ``closed_lines = "zero"``: quantity 0, rest unchanged."""
    return {**desired, "quantity": Decimal(0)}


def is_closed(line: PoLine) -> bool:
    """True when the line or its whole PO is closed or cancelled."""
    return _norm(line.line_status) in CLOSED_STATUSES or _norm(line.po_status) in CLOSED_STATUSES


def closed_line_action(line: PoLine, rules: PurchaseOrderRules) -> ClosedLineAction:
    """``"sync"`` for an open line; otherwise ``rules.closed_lines`` (leave, zero or remove)."""
    if not is_closed(line):
        return "sync"
    return rules.closed_lines


def _canonical(value: Any) -> Any:
    if isinstance(value, Decimal):
        if not value.is_finite():
            return str(value)
        return "0" if value.is_zero() else format(value.normalize(), "f")
    if isinstance(value, Mapping):
        return {str(k): _canonical(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_canonical(v) for v in value]
    return value


def job_item_digest(payload: Mapping[str, Any]) -> str:
    """A stable sha256 of a job-item payload, for the ledger's change detection.

    Decimals are compared by value (``5`` and ``5.00`` digest the same); key order is irrelevant.
    """
    text = json.dumps(_canonical(payload), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()
