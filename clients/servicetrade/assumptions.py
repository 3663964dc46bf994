"""What the ServiceTrade client assumes where no public source is certain, in one place.

Each constant names the section of ``shared/reference/servicetrade-api.md`` it stands in for and its
confidence tag there. If the real API differs, change it here and only here.
"""

from __future__ import annotations

from typing import Any, Final

# --- paths (§1, §4) -------------------------------------------------------------------------------

#: Every resource lives under ``/api`` [C].
API_PREFIX: Final = "/api"
#: OAuth2 token endpoint: node/php SDKs use ``/api/oauth2/token`` [C]; the form-encoded body is
#: what php-sdk and py-sdk send [C].
OAUTH_TOKEN_PATH: Final = "oauth2/token"  # noqa: S105 - a path, not a password
#: Legacy session login and logout [C].
SESSION_PATH: Final = "auth"
SESSION_COOKIE: Final = "PHPSESSID"
#: The SDKs refresh a token this long before its ``exp`` [C].
TOKEN_REFRESH_MARGIN_S: Final = 300.0
#: When a token response carries neither a JWT ``exp`` nor ``expires_in`` [A].
TOKEN_DEFAULT_LIFETIME_S: Final = 3600.0

# --- pagination (§2) ------------------------------------------------------------------------------

#: Page sizes asked for. Job/invoice/comment lists allow up to 2000 [C rb-params]; locations are
#: documented with max 5000 [W]; the rest are unknown, so a moderate size is used [A].
DEFAULT_PAGE_LIMIT: Final = 200
PAGE_LIMITS: Final[dict[str, int]] = {
    "job": 500,
    "invoice": 500,
    "company": 500,
    "location": 500,
    "comment": 500,
    "jobitem": 500,
    "timecard": 200,
}
#: Plural keys of list responses; those marked [A] in §2 are assumptions.
PLURAL_KEYS: Final[dict[str, str]] = {
    "company": "companies",
    "location": "locations",
    "job": "jobs",
    "invoice": "invoices",
    "user": "users",
    "jobitem": "jobItems",
    "serviceline": "servicelines",  # [A]
    "libitem": "libItems",  # [A]
    "comment": "comments",  # [A]
    "webhook": "webhooks",
    "timecard": "timecards",  # §11 [A]
}


def page_limit(resource: str) -> int:
    """The ``limit`` asked for when listing ``resource``."""
    return PAGE_LIMITS.get(resource, DEFAULT_PAGE_LIMIT)


# --- entity type numbers (§3; comments, tags, webhooks) ------------------------------------------

#: [S glama + wh-repo]
ENTITY_TYPES: Final[dict[str, int]] = {
    "asset": 2,
    "job": 3,
    "user": 4,
    "company": 5,
    "invoice": 6,
    "quote": 9,
    "deficiency": 10,
    "location": 11,
    "appointment": 16,
    "contact": 22,
}

# --- external ids (§6, [W] rb-destilado) ----------------------------------------------------------

#: ``POST`` sets one value (``{"value": ...}``; an empty value removes it).
EXTERNAL_ID_PATH: Final = "externalid/{entity}/{entity_id}/{system}"
#: ``GET`` → ``{"values": {system: value}}``.
EXTERNAL_IDS_PATH: Final = "externalid/{entity}/{entity_id}"
EXTERNAL_IDS_KEY: Final = "values"

# --- webhooks (§7) --------------------------------------------------------------------------------

#: The key of the action list inside ``entityEvents`` items: ``actions`` per live data [S]; other
#: code uses ``events``/``eventType``.
WEBHOOK_ACTIONS_KEY: Final = "actions"

# --- embedded keys (§5.3, §10.2) ------------------------------------------------------------------

#: Whether a job's salesperson comes as ``salesperson`` or ``sales`` is unknown [A]; the inbound
#: model ``clients.servicetrade.models.Job`` accepts both, in this order of preference.
SALESPERSON_KEYS: Final = ("salesperson", "sales")

# --- approved timecards (§11, project decision) ---------------------------------------------------

#: No public API for approved time exists; the project assumes this resource (sandbox and client).
TIMECARD_RESOURCE: Final = "timecard"


def timecard_query(approved_after: int, approved_before: int, status: str) -> dict[str, Any]:
    """Query of ``GET /api/timecard`` for timecards approved in [after, before] (unix seconds)."""
    return {"status": status, "approvedAfter": approved_after, "approvedBefore": approved_before}


#: Entity type numbers for records that have none in the public sources (§3 lists none for them):
#: the approved timecard (§11), clock events and job items [A]. Webhook subscriptions use them.
ASSUMED_ENTITY_TYPES: Final[dict[str, int]] = {"timecard": 50, "clockevent": 51, "jobitem": 52}

#: The entity types stsync subscribes to (webhook ``entity.type`` -> entity type number). ``user``:
#: a salesperson or technician fixed in ServiceTrade wakes the records that failed on them (F21).
WEBHOOK_ENTITIES: Final = ("company", "location", "job", "invoice", "timecard", "user")


def webhook_entity_types() -> dict[str, int]:
    """``{entity name: entity type number}`` for every entity stsync syncs from webhooks."""
    numbers = {**ENTITY_TYPES, **ASSUMED_ENTITY_TYPES}
    return {name: numbers[name] for name in WEBHOOK_ENTITIES}
