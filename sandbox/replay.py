"""Play a seeded ServiceTrade world into a running simulator as the office would create it.

Reference data (users, service lines, lib items, the account's own company and offices) is loaded
silently, as it exists before an integration is switched on. Business records (customers,
locations, jobs, invoices, timecards, job items) are then *created* one by one in dependency
order, so each emits a ``created`` webhook exactly as ServiceTrade would. The demo and the chaos
soak use this to make webhooks flow.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from sandbox.servicetrade.state import STState

REFERENCE = ("user", "serviceline", "libitem")
BUSINESS_ORDER = ("company", "location", "job", "jobitem", "invoice", "timecard")


def split_world(
    servicetrade: Mapping[str, Sequence[Mapping[str, Any]]],
) -> tuple[dict[str, list[Mapping[str, Any]]], dict[str, list[Mapping[str, Any]]]]:
    """``(reference, business)`` parts of a seeded ServiceTrade world."""
    reference: dict[str, list[Mapping[str, Any]]] = {
        r: list(servicetrade.get(r, [])) for r in REFERENCE
    }
    vendor_ids = {c["id"] for c in servicetrade.get("company", []) if c.get("isVendor")}
    reference["company"] = [c for c in servicetrade.get("company", []) if c["id"] in vendor_ids]
    reference["location"] = [
        loc
        for loc in servicetrade.get("location", [])
        if (loc.get("company") or {}).get("id") in vendor_ids
    ]
    business: dict[str, list[Mapping[str, Any]]] = {}
    for resource in BUSINESS_ORDER:
        items: list[Mapping[str, Any]] = list(servicetrade.get(resource, []))
        if resource == "company":
            items = [c for c in items if c["id"] not in vendor_ids]
        elif resource == "location":
            items = [loc for loc in items if (loc.get("company") or {}).get("id") not in vendor_ids]
        business[resource] = items
    for resource, others in servicetrade.items():
        if resource not in REFERENCE and resource not in BUSINESS_ORDER:
            reference[resource] = list(others)
    return reference, business


def replay(
    state: STState,
    servicetrade: Mapping[str, Sequence[Mapping[str, Any]]],
    *,
    progress: Callable[[str, int], None] | None = None,
) -> dict[str, int]:
    """Load the reference part silently, then create every business record (webhooks flow)."""
    reference, business = split_world(servicetrade)
    state.load({k: v for k, v in reference.items() if v})
    created: dict[str, int] = {}
    for resource in BUSINESS_ORDER:
        for obj in business.get(resource, []):
            state.create(resource, obj)
            created[resource] = created.get(resource, 0) + 1
            if progress:
                progress(resource, created[resource])
    return created
