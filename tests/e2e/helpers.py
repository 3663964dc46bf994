"""Small helpers shared by the end-to-end tests."""

from __future__ import annotations

from clients.servicetrade import assumptions


def webhook_entity_events() -> dict[int, list[str]]:
    """Subscribe to every entity type stsync routes, created and updated."""
    return {n: ["created", "updated"] for n in assumptions.webhook_entity_types().values()}
