"""What the simulator knows about ServiceTrade records: names, enums, embedded refs and money.

Pure helpers (no state, no I/O) shared by the store (``state.py``) and the HTTP layer
(``resources.py``). Confirmed facts live here; guesses live in ``assumptions.py``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any

from sandbox.servicetrade import assumptions

#: Every resource the store keeps (the seed keys). ``contract`` is an extra: it backs the invoice
#: 409 rule and may be seeded like the others.
RESOURCES: tuple[str, ...] = (
    "company",
    "location",
    "job",
    "invoice",
    "user",
    "serviceline",
    "libitem",
    "jobitem",
    "timecard",
    "clockevent",
    "comment",
    "tag",
    "webhook",
    "contract",
)

#: §2 list keys ([S] ones here, [A] ones from assumptions).
PLURAL_KEYS: dict[str, str] = {
    "company": "companies",
    "location": "locations",
    "job": "jobs",
    "invoice": "invoices",
    "user": "users",
    "jobitem": "jobItems",
    "tag": "tags",
    "webhook": "webhooks",
    **assumptions.ASSUMED_PLURAL_KEYS,
}

#: §3 entity type numbers [S] of the resources the simulator serves, plus assumed ones.
ENTITY_TYPES: dict[str, int] = {
    "job": 3,
    "user": 4,
    "company": 5,
    "invoice": 6,
    "location": 11,
    **assumptions.ASSUMED_ENTITY_TYPES,
}
#: §3 numbers of entities the simulator does not serve (accepted in webhook registrations).
OTHER_ENTITY_TYPES: dict[str, int] = {
    "asset": 2,
    "quote": 9,
    "deficiency": 10,
    "appointment": 16,
    "contact": 22,
}
ENTITY_TYPE_NAMES: dict[int, str] = {
    number: name for name, number in {**OTHER_ENTITY_TYPES, **ENTITY_TYPES}.items()
}

#: URL path segment of each resource (``/api/<segment>``); the clock events live at ``/api/clock``.
PATH_SEGMENTS: dict[str, str] = {r: r for r in RESOURCES} | {"clockevent": "clock"}
RESOURCE_BY_SEGMENT: dict[str, str] = {seg: r for r, seg in PATH_SEGMENTS.items()}

# --- enums (reference §5) -----------------------------------------------------------------------
COMPANY_STATUSES = ("active", "pending", "inactive", "on_hold")
LOCATION_STATUSES = ("active", "inactive", "pending")
JOB_STATUSES = (
    "new",
    "scheduled",
    "bidding",
    "completed",
    "pending_invoice",
    "sending_invoice",
    "invoiced",
    "closed",
    "canceled",
)
JOB_TYPES = (
    "unknown", "repair", "construction", "upgrade", "service_call", "urgent_service_call",
    "priority_service_call", "emergency_service_call", "cleaning", "inspection",
    "priority_inspection", "reinspection", "survey", "preventative_maintenance",
    "quality_assurance", "inspection_repair", "delivery", "pickup", "exchange", "sales",
    "installation", "warranty", "training", "testing", "administrative", "replacement", "design",
    "hookup",
)  # fmt: skip
INVOICE_STATUSES = (
    "ok",
    "internal_review",
    "pending_accounting",
    "processed",
    "paid",
    "sent",
    "failed",
    "void",
)
INVOICE_TYPES = ("invoice", "vendorbill", "external", "unknown")
COMMENT_VISIBILITY = ("public", "schedule", "tech", "billing")
WEBHOOK_ACTIONS = ("created", "updated", "deleted")
CLOCK_ACTIVITIES = ("onsite", "offsite", "enroute")
CLOCK_SOURCES = ("mobile", "ivr")

#: Embedded references refreshed from the referenced record when a record is read, so a renamed
#: company shows its new name on its jobs: ``{resource: {field: referenced resource}}``.
REF_FIELDS: dict[str, dict[str, str]] = {
    "location": {"company": "company"},
    "job": {
        "location": "location",
        "customer": "company",
        "vendor": "company",
        "owner": "user",
        "salesperson": "user",
        "assignedOffice": "location",
        "contract": "contract",
    },
    "invoice": {
        "customer": "company",
        "vendor": "company",
        "location": "location",
        "job": "job",
        "contract": "contract",
        "assignedUser": "user",
        "assignedOffice": "location",
    },
    "jobitem": {
        "job": "job",
        "libItem": "libitem",
        "serviceLine": "serviceline",
        "vendor": "company",
    },
    "timecard": {"user": "user"},
    "clockevent": {"user": "user", "job": "job"},
    "comment": {"author": "user"},
    "contract": {"customer": "company"},
}
#: Keys of an embedded ref that are refreshed when the ref already carries them.
REFRESHED_REF_KEYS = ("name", "number", "abbr", "code", "externalIds")
#: Refs that always carry these keys (§11: a timecard's user has ``externalIds``).
ALWAYS_REF_KEYS: dict[tuple[str, str], tuple[str, ...]] = {
    ("timecard", "user"): ("name", "externalIds"),
}


def check_resource(resource: str) -> str:
    """``resource`` if the simulator knows it, else ``ValueError`` naming the known ones."""
    if resource not in PLURAL_KEYS:
        known = ", ".join(RESOURCES)
        raise ValueError(f"unknown ServiceTrade resource {resource!r}; known: {known}")
    return resource


def uri_of(base_url: str, resource: str, id_: int) -> str:
    """§3: absolute URL of a record, e.g. ``https://api.servicetrade.com/api/location/820``."""
    return f"{base_url}/api/{PATH_SEGMENTS[resource]}/{id_}"


# --- embedded refs ------------------------------------------------------------------------------
_REF_KEYS: dict[str, tuple[str, ...]] = {
    "company": ("name",),
    "location": ("name", "address"),
    "user": ("name",),
    "job": ("number", "name"),
    "libitem": ("name", "code", "type"),
    "serviceline": ("name", "abbr", "trade"),
    "contract": ("name",),
    "invoice": ("name", "invoiceNumber"),
}


def ref_of(resource: str, record: Mapping[str, Any]) -> dict[str, Any]:
    """The small embedded object other records carry for ``record`` (``{"id", "uri", "name"}``)."""
    out: dict[str, Any] = {"id": record["id"], "uri": record.get("uri")}
    for key in _REF_KEYS.get(resource, ("name",)):
        if key in record:
            out[key] = record[key]
    return out


# --- money (reference §5.5, assumptions) --------------------------------------------------------
CENT = Decimal("0.01")


def to_decimal(value: Any) -> Decimal:
    """A JSON number (or numeric string) as ``Decimal``; ``ValueError`` if it is not a number."""
    if isinstance(value, bool) or value is None:
        raise ValueError(f"not a number: {value!r}")
    try:
        out = Decimal(str(value))
    except InvalidOperation as exc:
        raise ValueError(f"not a number: {value!r}") from exc
    if not out.is_finite():
        raise ValueError(f"not a number: {value!r}")
    return out


def cents(value: Decimal) -> Decimal:
    return value.quantize(CENT, rounding=ROUND_HALF_UP)


def as_json_number(value: Decimal) -> float | int:
    """Money and quantities go on the wire as JSON numbers (dollars, not cents)."""
    return int(value) if value == value.to_integral_value() and abs(value) < 2**53 else float(value)


def price_item(item: Mapping[str, Any], *, apply_tax: bool = True) -> dict[str, Any]:
    """An invoice item with ``subtotal``, ``taxAmount`` and ``totalPrice`` computed (§5.5 [A])."""
    quantity = to_decimal(item.get("quantity", 1))
    price = to_decimal(item.get("price", 0))
    rate_raw = item.get("taxRate")
    rate = (
        to_decimal(rate_raw)
        if rate_raw is not None
        else Decimal(str(assumptions.DEFAULT_ITEM_TAX_RATE))
    )
    if not apply_tax:
        rate = Decimal(0)
    subtotal = cents(quantity * price)
    tax = cents(subtotal * rate / 100)
    out = dict(item)
    out["quantity"] = as_json_number(quantity)
    out["price"] = as_json_number(price)
    out["taxRate"] = as_json_number(rate)
    out["subtotal"] = float(subtotal)
    out["taxAmount"] = float(tax)
    out["totalPrice"] = float(subtotal + tax)
    return out


def invoice_totals(items: Iterable[Mapping[str, Any]]) -> dict[str, float]:
    """Invoice ``subtotal``/``taxAmount``/``totalPrice`` from its (priced) items (§5.5 [A])."""
    subtotal = Decimal(0)
    tax = Decimal(0)
    for item in items:
        subtotal += to_decimal(item.get("subtotal", 0))
        tax += to_decimal(item.get("taxAmount", 0))
    return {
        "subtotal": float(cents(subtotal)),
        "taxAmount": float(cents(tax)),
        "totalPrice": float(cents(subtotal + tax)),
    }


def fill_invoice_money(invoice: Mapping[str, Any]) -> dict[str, Any]:
    """Seeded invoices: compute the money fields that are absent, keep the ones given."""
    out = dict(invoice)
    items = []
    for item in out.get("items") or []:
        if all(k in item for k in ("subtotal", "taxAmount", "totalPrice")):
            items.append(dict(item))
        else:
            priced = price_item(item)
            items.append({**priced, **{k: v for k, v in item.items() if v is not None}})
    out["items"] = items
    totals = invoice_totals(items)
    for key, value in totals.items():
        if out.get(key) is None:
            out[key] = value
    return out
