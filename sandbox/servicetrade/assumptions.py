"""Every assumption the ServiceTrade simulator makes, in one place (reference servicetrade-api).

The reference marks what no public source confirms with **[A]** (and a few weak **[W]** facts the
simulator chooses to follow). Each constant or function below cites the section it settles, so a
real-world observation can replace a guess by editing one line here. Nothing else in
``sandbox/servicetrade`` hard-codes one of these choices. Assumptions the stsync client must share
(list keys, entity type numbers, the timecard resource, the webhook action key) are defined once in
``clients/servicetrade/assumptions.py`` and read from there.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from clients.servicetrade import assumptions as shared

# --- §1 authentication --------------------------------------------------------------------------

#: §1a / §1 "Simulator: ... make token TTL configurable (default 24 h)". The real server answers
#: ``expires_in: 86400``; ``create_app(token_ttl_s=...)`` and ``PUT /_sandbox/auth`` change it.
TOKEN_TTL_S = 86_400

#: §1a [A]: refresh tokens are opaque, rotate on every use (the old one stops working) and live
#: 30 days. A refresh token is returned on every grant, client_credentials included ("may be
#: returned on any grant").
REFRESH_TOKEN_TTL_S = 30 * 86_400

#: §1b / §10.4 [A]: a legacy PHPSESSID session lives 24 h ...
SESSION_TTL_S = 86_400
#: ... and one user holds at most 10 sessions; creating an 11th deletes the oldest (help center).
MAX_SESSIONS_PER_USER = 10

#: §1a [A]: the JWT signing algorithm named in the header. The simulator signs with a random
#: per-process key; clients only read ``exp`` and must treat the token as opaque otherwise.
JWT_ALGORITHM = "HS256"

#: §7 / §1 [A]: the ``userId`` of changes made through the API is the id of the seeded user whose
#: ``email`` (or ``username``) equals the API login; client_credentials act as that user too.
#: When no such user is seeded, ``userId`` is null (as for system changes).
API_USER_MATCH_FIELDS = ("email", "username")

# --- §2 pagination ------------------------------------------------------------------------------

#: §2: job/invoice/appointment/comment lists default to and cap ``limit`` at 2000 [C]; location
#: defaults to 10 and caps at 5000 [W, followed here so clients that forget to paginate notice];
#: every other list is assumed to behave like jobs [A]. A larger ``limit`` is clamped, not refused.
DEFAULT_LIMIT = 2000
MAX_LIMIT = 2000
LIMITS: Mapping[str, tuple[int, int]] = {"location": (10, 5000)}


def page_limits(resource: str) -> tuple[int, int]:
    """(default limit, max limit) of a resource's list endpoint."""
    return LIMITS.get(resource, (DEFAULT_LIMIT, MAX_LIMIT))


#: §2 [A]: list keys the reference does not confirm (``servicelines``, ``comments``,
#: ``contracts``, ``libItems``) plus §11's ``timecards`` and the clock's ``events``.
ASSUMED_PLURAL_KEYS: Mapping[str, str] = {
    **{r: shared.PLURAL_KEYS[r] for r in ("serviceline", "comment", "libitem", "timecard")},
    "contract": "contracts",
    "clockevent": "events",
}

#: §2 [A]: ``DELETE`` answers 200 with this body ("200 with {}/empty body or 204").
DELETE_RESPONSE_BODY: Mapping[str, Any] = {}

# --- §3 / §7 entity type numbers ----------------------------------------------------------------

#: §3 lists Job 3, User 4, Company 5, Invoice 6, Location 11 (and resources the simulator does not
#: serve). These numbers are [A] for the simulator's own resources that §3 does not number:
#: the approved timecard (§11), clock events and job items. Webhooks subscribe with them.
ASSUMED_ENTITY_TYPES: Mapping[str, int] = shared.ASSUMED_ENTITY_TYPES

# --- §5 entity defaults -------------------------------------------------------------------------

#: §5.3 [A]: a job created without ``status`` is ``scheduled`` (open), so it shows in the default
#: ``GET /job`` listing. Job numbers continue above the highest number seen, starting here.
JOB_DEFAULT_STATUS = "scheduled"
FIRST_JOB_NUMBER = 1

#: §5.5 [A]: a new invoice is ``ok`` ("Ready") of type ``invoice`` unless the body says otherwise;
#: its default name follows §9's example.
INVOICE_DEFAULT_STATUS = "ok"
INVOICE_DEFAULT_TYPE = "invoice"


def invoice_default_name(job_number: int | None) -> str:
    """§9 [A]: "Invoice for Job 52311"; an invoice without a job is just "Invoice"."""
    return f"Invoice for Job {job_number}" if job_number is not None else "Invoice"


#: §5.5 / §9 / §10.11 [A]: ``taxRate`` is a per-item percentage (7.0 means 7 %); an item without
#: one is untaxed; money is rounded half-up to cents at item level and the invoice sums the rounded
#: item amounts (``subtotal = Σ item.subtotal``, ``taxAmount = Σ item.taxAmount``,
#: ``totalPrice = subtotal + taxAmount``). ``applyTax: false`` zeroes every item's tax.
DEFAULT_ITEM_TAX_RATE = 0.0

#: §5.5 [A]: without ``items`` an invoice for a job is built from the job's job items, one line
#: each, priced at the item's ``price`` or, when it has none, its ``cost``.
INVOICE_ITEMS_FROM_JOB_ITEMS = True


#: §5.5 / §2 [A]: an invoice ``contractId`` naming no contract is a 400 validation error on
#: ``contractId``; one that exists but does not apply (below) is the reference's 409.
def contract_applies(
    contract: Mapping[str, Any], *, customer_id: int | None, location_id: int | None
) -> bool:
    """§5.5 / §2 409 [A]: a contract applies to an invoice when it is not inactive, belongs to the
    invoice's customer (when it names one) and, when it lists locations, lists the invoice's."""
    if contract.get("active") is False:
        return False
    customer = contract.get("customer")
    if isinstance(customer, Mapping) and customer.get("id") not in (None, customer_id):
        return False
    locations = contract.get("locations")
    if isinstance(locations, list) and locations:
        ids = {loc.get("id") for loc in locations if isinstance(loc, Mapping)}
        if location_id not in ids:
            return False
    return True


#: §5.2 [A]: ``GET /location`` filters ``isCustomer=true`` by default (reference), but only when
#: the caller gives neither ``isCustomer`` nor ``isVendor`` — so ``?isVendor=true`` lists offices.
#: A company without an ``isCustomer`` flag counts as a customer.
LOCATION_DEFAULT_IS_CUSTOMER = True

#: §5.2 [A]: a new location is taxable unless the body says otherwise.
LOCATION_DEFAULT_TAXABLE = True


def primary_office(
    locations: Iterable[Mapping[str, Any]],
    company_of: Callable[[Mapping[str, Any]], Mapping[str, Any] | None],
) -> Mapping[str, Any] | None:
    """§5.2 [A]: "the vendor's primary office", the default of a new location's ``officeIds``:
    the lowest-id location (``locations`` come in id order) of a company with ``isVendor: true``.
    A new job's ``assignedOffice`` defaults to its location's first office (§5.3 [A])."""
    for location in locations:
        company = company_of(location)
        if company is not None and company.get("isVendor"):
            return location
    return None


# --- §6 external ids ----------------------------------------------------------------------------

#: §6 [W + A]: entity types that carry external ids (rb-destilado's list, plus invoice which
#: the reference could not verify but integrations use, plus contract).
EXTERNAL_ID_ENTITY_TYPES = (
    "company",
    "location",
    "job",
    "jobitem",
    "libitem",
    "user",
    "invoice",
    "contract",
)


def is_entity_id_segment(segment: str) -> bool:
    """§6 [A]: ``GET /externalid/{type}/{a}/{b}`` is "value of system ``b`` on entity ``a``" when
    ``a`` is all digits, otherwise "look up the entity whose system ``a`` has value ``b``"."""
    return segment.isdigit()


#: §6 [A]: any external-system name is accepted (the simulator has no External System registry);
#: writing ``{"value": ""}`` removes the key. ``externalIds`` inside POST/PUT bodies are merged
#: into the stored map the same way (empty string removes).
EXTERNAL_ID_REMOVE_VALUE = ""

# --- §7 webhooks --------------------------------------------------------------------------------

#: §7 [S]: ServiceTrade waits about 5 s for the receiver ...
WEBHOOK_TIMEOUT_S = 5.0
#: ... and tries a delivery at most 3 times in total, then drops it.
WEBHOOK_MAX_ATTEMPTS = 3
#: §10.6 [A]: retries follow almost immediately (delay before the 2nd and 3rd try).
WEBHOOK_RETRY_DELAYS_S = (0.1, 0.1)
#: §7 [A]: events are batched: a delivery collects what happened in this window after the first
#: pending event, up to this many events per message.
WEBHOOK_BATCH_WINDOW_S = 0.2
WEBHOOK_MAX_EVENTS_PER_DELIVERY = 100
#: §10.6 [A]: no confirmation request is sent; a new webhook reports ``confirmed: true``.
WEBHOOK_CONFIRMED = True
#: §7 [W]: ``hookUrl`` cannot change on PUT (delete and recreate to move); a different value → 400.
WEBHOOK_HOOK_URL_IMMUTABLE = True
#: §7 [A]: the item key naming the actions inside ``entityEvents``; all are accepted, ``actions``
#: is echoed.
WEBHOOK_ACTION_KEYS = (shared.WEBHOOK_ACTIONS_KEY, "events", "eventType")


def changeset_for(
    action: str, old: Mapping[str, Any] | None, new: Mapping[str, Any] | None
) -> list[dict[str, Any]]:
    """§7 [A]: ``updated`` lists each changed top-level field (``updated`` and ``uri`` excluded)
    as ``{"field", "oldValue", "newValue"}``; ``created`` and ``deleted`` carry an empty list."""
    if action != "updated" or old is None or new is None:
        return []
    out: list[dict[str, Any]] = []
    for key in sorted(set(old) | set(new)):
        if key in ("updated", "uri"):
            continue
        before, after = old.get(key), new.get(key)
        if before != after:
            out.append({"field": key, "oldValue": before, "newValue": after})
    return out


# --- §8 invoice status transitions --------------------------------------------------------------

#: §8 [A], as written: ok/internal_review → pending_accounting → processed|failed;
#: failed → pending_accounting|ok; any → void; processed → paid. Added [A] (issue 13): an office
#: that edits a processed invoice sends it to accounting again, processed → pending_accounting
#: (§8 step 1 "sets invoices ready for export" again; the integration decides what that means).
#: Everything else (e.g. processed → ok) is refused with 400. Setting the current status again is
#: a no-op, not a change.
INVOICE_STATUS_TRANSITIONS: Mapping[str, frozenset[str]] = {
    "ok": frozenset({"pending_accounting", "void"}),
    "internal_review": frozenset({"pending_accounting", "void"}),
    "pending_accounting": frozenset({"processed", "failed", "void"}),
    "failed": frozenset({"pending_accounting", "ok", "void"}),
    "processed": frozenset({"paid", "void", "pending_accounting"}),
    "paid": frozenset({"void"}),
    "sent": frozenset({"void"}),
    "void": frozenset(),
}


def invoice_transition_allowed(old: str, new: str) -> bool:
    """Whether ``PUT /invoice/{id} {"status": new}`` may move an invoice out of ``old`` (§8 [A])."""
    if old == new:
        return True
    if new == "void":
        return True
    return new in INVOICE_STATUS_TRANSITIONS.get(old, frozenset())


# --- §11 approved timecards ---------------------------------------------------------------------

TIMECARD_STATUSES = ("approved", "submitted", "rejected")
#: §11 [A]: approving a timecard (API or ``STState.update``) stamps ``approvedOn`` with the current
#: time unless the change gives one; leaving ``approved`` clears it.
TIMECARD_STAMP_APPROVED_ON = True

# --- store-wide choices -------------------------------------------------------------------------

#: §3 [A]: the simulator draws every new id (records, invoice items, timecard entries) from one
#: counter shared by all resources, continuing above the highest id seen (a seeded 16-digit id
#: makes every later id 16 digits, as in real accounts). ``STState(first_id=...)`` sets the floor.
#: (Implemented by ``STState.new_id``; documented here only.)
#: [A]: an update that changes nothing is not a change: no ``updated`` bump, no webhook event.
#: ``STState.reset()`` / ``POST /_sandbox/reset`` go back to what was loaded (the seed), keep
#: issued tokens and sessions, and clear webhook queues and counters.
NO_OP_UPDATES_EMIT_NOTHING = True
#: §5.8 / §5.9 [A]: comments and tags can name jobs (3), invoices (6), locations (11),
#: companies (5) and users (4) — the simulator's resources among those the reference lists.
COMMENT_TARGETS = ("job", "invoice", "location", "company", "user")

# --- §2 errors ----------------------------------------------------------------------------------

#: §2 [A]: the error texts the simulator uses where the reference gives none.
MSG_UNAUTHORIZED = "Authentication required"
MSG_NOT_FOUND = "Not found"
MSG_UNAVAILABLE = "Service temporarily unavailable"
MSG_RATE_LIMITED = "Too many requests"
MSG_METHOD_NOT_ALLOWED = "Method not allowed"
