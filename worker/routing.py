"""Which task handles which ServiceTrade entity type (webhooks, sweeps, CLI)."""

from __future__ import annotations

#: webhook ``entity.type`` -> (task name, ledger record type)
ENTITY_TASKS: dict[str, tuple[str, str]] = {
    "company": ("sync.customer", "customer"),
    "location": ("sync.site", "site"),
    "job": ("sync.job", "job"),
    "invoice": ("sync.invoice", "invoice"),
    "timecard": ("sync.timecard", "timecard"),
}

#: CLI record-type names -> entity type
RECORD_TYPES: dict[str, str] = {
    "customer": "company",
    "company": "company",
    "site": "location",
    "location": "location",
    "job": "job",
    "invoice": "invoice",
    "timecard": "timecard",
}

#: actions that lead to a sync; deletions in ServiceTrade are not propagated to Spectrum
SYNC_ACTIONS = frozenset({"created", "updated"})
