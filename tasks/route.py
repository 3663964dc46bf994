"""Routing between several Spectrum companies (F24): which connection an event's record goes to.

Webhook and sweep events are queued for every ``auto_sync`` connection. When those connections
have a ``route`` (``[connections.<n>] route = { offices, regions, tags, states }``), each task
first asks ``route_refusal`` whether the record belongs to its connection:

- job: the job's assigned office (else its location's offices), the location's region, the job's
  tags, the location's state;
- location: its offices, region and state (no tags);
- invoice: its job's facts (else its location's);
- company: never routed on its own event: a customer goes to the Spectrum companies of its
  routed locations and jobs, which create it there as their prerequisite.

No match: the record is ``skipped`` in that connection with the reason. Matched by two automatic
connections (routes on different keys can meet on one record): ``failed`` with the reason and an
alert in each, nothing sent. Records that other records need (a customer of a routed job) are
synced as prerequisites without a route check; explicit sends (``stsync send-job``) too.
"""

from __future__ import annotations

from clients.servicetrade.models import Job, Location
from mappers.rules import RouteFacts, route_facts, route_mismatch
from worker.context import SyncContext
from worker.ledger import RecordKey, Status
from worker.settings import ConnectionSettings

#: ledger ``error_kind`` of a record that routing kept out of a connection
ROUTE_KIND = "route"


def _location_facts(location: Location, *, offices: list[object], tags: list[object]) -> RouteFacts:
    own = [x for o in location.offices for x in (o.id, o.name)]
    region = [location.region.id, location.region.name] if location.region else []
    return route_facts(
        offices=offices or own,
        regions=region,
        tags=tags,
        state=location.address.state if location.address else None,
    )


def job_route_facts(ctx: SyncContext, job: Job) -> RouteFacts:
    office = [job.assigned_office.id, job.assigned_office.name] if job.assigned_office else []
    tags = [t.name for t in job.tags]
    if job.location is None:
        return route_facts(offices=office, tags=tags)
    location = ctx.st.get_location(job.location.id)
    return _location_facts(location, offices=list(office), tags=list(tags))


def record_route_facts(ctx: SyncContext, record_type: str, source_id: int) -> RouteFacts | None:
    """The routing facts of a record, None for a record type that is not routed by its events."""
    if record_type == "job":
        return job_route_facts(ctx, ctx.st.get_job(source_id))
    if record_type == "site":
        return _location_facts(ctx.st.get_location(source_id), offices=[], tags=[])
    if record_type == "invoice":
        invoice = ctx.st.get_invoice(source_id)
        if invoice.job is not None:
            return job_route_facts(ctx, ctx.st.get_job(invoice.job.id))
        if invoice.location is not None:
            location = ctx.st.get_location(invoice.location.id)
            return _location_facts(location, offices=[], tags=[])
        return route_facts()
    return None


def matching_connections(ctx: SyncContext, facts: RouteFacts) -> list[str]:
    """The automatic connections whose route takes a record with ``facts``."""
    return [
        c.name
        for c in ctx.settings.connections.values()
        if c.auto_sync and c.route is not None and route_mismatch(c.route, facts) is None
    ]


def route_refusal(
    ctx: SyncContext, record_type: str, source_id: int, connection: str | None
) -> str | None:
    """Why this event's record does not go to ``connection`` (recorded in the ledger), or None.

    None also when the connection has no route (today's behaviour: every automatic connection
    takes every event).
    """
    conn: ConnectionSettings = ctx.connection(connection)
    if conn.route is None:
        return None
    key = RecordKey(conn.name, record_type, str(source_id))
    if record_type == "customer":
        why = (
            f"routing: customers go to the Spectrum companies of their routed locations and "
            f"jobs; company {source_id} is synced to {conn.name} when one of them needs it"
        )
        _record(ctx, key, Status.SKIPPED, why)
        return why
    facts = record_route_facts(ctx, record_type, source_id)
    if facts is None:
        return None
    mismatch = route_mismatch(conn.route, facts)
    if mismatch is not None:
        why = f"routing: not for connection {conn.name}: its route's {mismatch}"
        _record(ctx, key, Status.SKIPPED, why)
        return why
    takers = matching_connections(ctx, facts)
    if len(takers) > 1:
        why = (
            f"routing: {record_type} {source_id} matches the routes of connections "
            f"{', '.join(takers)}; it must go to exactly one Spectrum company. Narrow the "
            "routes (or change the record), then `stsync retry`"
        )
        _record(ctx, key, Status.FAILED, why)
        from tasks._pipeline import record_alert

        record_alert(ctx, key, ROUTE_KIND, why)
        return why
    return None


def _record(ctx: SyncContext, key: RecordKey, status: Status, why: str) -> None:
    """Record the routing decision. A record already synced to this connection (or being synced,
    or failed for another reason) keeps its row: the decision is only audited."""
    rec = ctx.ledger.get(key)
    if rec is not None and not (
        rec.status is Status.PENDING or rec.error_kind in (ROUTE_KIND, "skipped")
    ):
        ctx.ledger.audit(system="stsync", service="route", outcome="noop", key=key, detail=why)
        return
    ctx.ledger.ensure(key)
    ctx.ledger.mark(key, status, error_kind=ROUTE_KIND, reason=why, state=rec.state if rec else {})
    ctx.ledger.audit(system="stsync", service="route", outcome=status.value, key=key, detail=why)
