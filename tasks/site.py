"""ServiceTrade locations -> Spectrum WO sites (F2).

The location's company is synced first when it is not yet in Spectrum (chain). The site id is
allocated from the connection's range before ``AddWOSiteAddress`` and written back to the
location's ``externalIds``. Created once; later events are no-ops.
"""

from __future__ import annotations

from clients.errors import MappingError, PrerequisiteMissing
from mappers.site import site_id, st_location_to_wo_site
from tasks._celery import sync_task
from tasks._pipeline import Outcome, Run, allocate_code, create_or_adopt, run_record, same_text
from tasks.customer import ensure_customer
from worker.context import SyncContext, get_context
from worker.ledger import RecordKey, Status

RECORD_TYPE = "site"
TASK_NAME = "sync.site"


def sync_site(
    ctx: SyncContext, location_id: int, connection: str | None = None, *, replay: bool = False
) -> Outcome:
    """Create the location's WO site in Spectrum once (customer first). Idempotent."""
    conn = ctx.connection(connection)
    key = RecordKey(conn.name, RECORD_TYPE, str(location_id))
    infolink = ctx.infolink_for(conn.name)

    def body(run: Run) -> Outcome:
        location = ctx.st.get_location(location_id)
        if location.company is None:
            raise MappingError(f"location {location_id}", "company", "has no company")
        customer = ensure_customer(ctx, location.company.id, conn.name)
        known = location.external_ids.get(conn.external_id_key)
        if known and not run.record.spectrum_key and infolink.find_site(known):
            ctx.ledger.mark_done(key, spectrum_key=known, state=run.state, step="adopted")
            return Outcome("adopted", key, known, "existing externalIds mapping")
        rng = conn.rules.sites.codes
        code = allocate_code(
            run,
            kind=RECORD_TYPE,
            start=rng.start,
            end=rng.end,
            render=lambda n: site_id(n, conn.rules),
            taken_in_spectrum=lambda c: infolink.find_site(c) is not None,
        )
        request, adjustments = st_location_to_wo_site(
            location, site=code, customer_code=customer, rules=conn.rules
        )
        if not run.step_done("spectrum"):
            how = create_or_adopt(
                run,
                request,
                find=lambda: infolink.find_site(code),
                matches=lambda row: (
                    same_text(row.get("Site_Name"), request.values["Site_Name"])
                    and same_text(row.get("Site_Customer_Code"), customer)
                ),
                what=f"location {location_id}",
            )
            run.state.update(how=how, adjustments=adjustments, customer=customer)
            run.finish_step("spectrum")
        if not run.step_done("writeback"):
            ctx.st.set_external_id("location", location_id, conn.external_id_key, code)
            run.finish_step("writeback")
        return run.done(
            str(run.state.get("how", "created")).replace("created", "synced"),
            code,
            digest=request.digest(),
        )

    return run_record(ctx, key, body, reclaim_done=replay)


def ensure_site(ctx: SyncContext, location_id: int, connection: str) -> str:
    """The WO site id of ``location_id``, syncing it (and its customer) first when needed."""
    rec = ctx.ledger.get(RecordKey(ctx.connection(connection).name, RECORD_TYPE, str(location_id)))
    if rec is not None and rec.status is Status.DONE and rec.spectrum_key:
        return rec.spectrum_key
    outcome = sync_site(ctx, location_id, connection)
    if outcome.ok and outcome.spectrum_key:
        return outcome.spectrum_key
    raise PrerequisiteMissing(
        f"WO site (ServiceTrade location {location_id}) is not in Spectrum: "
        f"{outcome.message or outcome.result}",
        field="site",
        value=location_id,
    )


@sync_task(TASK_NAME, RECORD_TYPE)
def push_site_to_spectrum(location_id: int, connection: str | None = None) -> str:
    """Sync one ServiceTrade location to a Spectrum WO site (customer first).

    Idempotent (ledger + create-or-adopt): safe to redeliver or run concurrently. Retries on
    TransientError with jittered backoff.
    """
    return sync_site(get_context(), location_id, connection).result
