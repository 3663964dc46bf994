"""ServiceTrade locations -> Spectrum WO sites (F2).

The location's company is synced first when it is not yet in Spectrum (chain). The site id is
allocated from the connection's range before ``AddWOSiteAddress`` and written back to the
location's ``externalIds``. Created once; later events are no-ops.
"""

from __future__ import annotations

from clients.errors import MappingError
from clients.spectrum.models import SpectrumRequest
from mappers.customer import SITE_MATCH
from mappers.site import site_id, st_location_to_wo_site
from tasks import heal, registry
from tasks._celery import sync_task
from tasks._pipeline import (
    MasterRecord,
    Outcome,
    Run,
    create_master_record,
    ensure_done,
    run_record,
    same_text,
)
from tasks.customer import (
    LOCATION_ENTITY_TYPE,
    check_external_id,
    ensure_customer,
    stale_id_notice,
)
from tasks.route import route_refusal
from tasks.state import SiteState
from worker.context import SyncContext, get_context
from worker.ledger import RecordKey

RECORD_TYPE = registry.SITE.name
TASK_NAME = registry.SITE.task


def site_record(ctx: SyncContext, connection: str, customer: str) -> MasterRecord:
    """How a connection's WO sites of ``customer`` are coded, found and matched."""
    conn = ctx.connection(connection)
    return MasterRecord(
        kind=RECORD_TYPE,
        st_entity="location",
        start=conn.rules.sites.codes.start,
        end=conn.rules.sites.codes.end,
        render=lambda n: site_id(n, conn.rules),
        find=ctx.infolink_for(conn.name).find_site,
        matches=lambda row, req: (
            same_text(row.get("Site_Name"), req.values["Site_Name"])
            and same_text(row.get("Site_Customer_Code"), customer)
        ),
    )


def sync_site(
    ctx: SyncContext, location_id: int, connection: str | None = None, *, replay: bool = False
) -> Outcome:
    """Create the location's WO site in Spectrum once (customer first). Idempotent."""
    conn = ctx.connection(connection)
    key = RecordKey(conn.name, RECORD_TYPE, str(location_id))

    def body(run: Run[SiteState]) -> Outcome:
        location = ctx.st.get_location(location_id)
        heal.stamp(run.state, location, conn, RECORD_TYPE)
        if location.company is None:
            raise MappingError(f"location {location_id}", "company", "has no company")
        customer = ensure_customer(ctx, location.company.id, conn.name)
        spec = site_record(ctx, conn.name, customer)
        run.state.customer = customer

        def build(code: str) -> tuple[SpectrumRequest, list[str]]:
            return st_location_to_wo_site(
                location, site=code, customer_code=customer, rules=conn.rules
            )

        stale = check_external_id(
            run,
            spec,
            external_ids=location.external_ids,
            build=build,
            rows=lambda: ctx.infolink_for(conn.name).list_sites(customer),
            columns=SITE_MATCH,
            adopt=conn.rules.sites.adopt,
            what=f"location {location_id}",
            code_column="Site_ID",
            st_id=location_id,
        )
        if stale is not None:
            return stale
        return create_master_record(
            run,
            spec,
            st_id=location_id,
            external_ids=location.external_ids,
            build=build,
            what=f"location {location_id}",
        )

    before = ctx.ledger.get(key)
    rule = heal.reclaim_rule(ctx, conn, RECORD_TYPE, lambda: ctx.st.get_location(location_id))
    outcome = run_record(
        ctx,
        key,
        body,
        state=SiteState,
        reclaim_done=replay,
        reclaim=rule,
        on_permanent=stale_id_notice(ctx, LOCATION_ENTITY_TYPE, location_id),
    )
    heal.after_sync(ctx, key, before, ok=outcome.ok)
    return outcome


def ensure_site(ctx: SyncContext, location_id: int, connection: str) -> str:
    """The WO site id of ``location_id``, syncing it (and its customer) first when needed."""
    conn = ctx.connection(connection).name
    return ensure_done(
        ctx,
        RecordKey(conn, RECORD_TYPE, str(location_id)),
        lambda: sync_site(ctx, location_id, conn),
        what=f"WO site (ServiceTrade location {location_id})",
    )


@sync_task(TASK_NAME, RECORD_TYPE)
def push_site_to_spectrum(location_id: int, connection: str | None = None) -> str:
    """Sync one ServiceTrade location to a Spectrum WO site (customer first).

    Idempotent (ledger + create-or-adopt): safe to redeliver or run concurrently. Retries on
    TransientError with jittered backoff.
    """
    ctx = get_context()
    if route_refusal(ctx, RECORD_TYPE, location_id, connection):  # routing between companies (F24)
        return "skipped"
    return sync_site(ctx, location_id, connection).result
