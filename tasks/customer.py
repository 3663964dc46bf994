"""ServiceTrade companies -> Spectrum AR customers (F1).

Created once, on first sync; later edits belong to each system, so a later event for a synced
company is recorded as a no-op. The customer code is allocated from the connection's range and
stored in the ledger before ``AddCustomer`` is sent, then written back to the company's
``externalIds`` under the connection's ``external_id_key``.
"""

from __future__ import annotations

from clients.errors import PrerequisiteMissing
from mappers.customer import customer_code, st_company_to_add_customer
from tasks._celery import sync_task
from tasks._pipeline import Outcome, Run, allocate_code, create_or_adopt, run_record, same_text
from worker.context import SyncContext, get_context
from worker.ledger import RecordKey, Status

RECORD_TYPE = "customer"
TASK_NAME = "sync.customer"


def sync_customer(
    ctx: SyncContext, company_id: int, connection: str | None = None, *, replay: bool = False
) -> Outcome:
    """Create the company's AR customer in Spectrum once. Idempotent."""
    conn = ctx.connection(connection)
    key = RecordKey(conn.name, RECORD_TYPE, str(company_id))
    infolink = ctx.infolink_for(conn.name)

    def body(run: Run) -> Outcome:
        company = ctx.st.get_company(company_id)
        known = company.external_ids.get(conn.external_id_key)
        if known and not run.record.spectrum_key and infolink.find_customer(known):
            # mapped before (earlier integration or by hand): adopt, send nothing
            ctx.ledger.mark_done(key, spectrum_key=known, state=run.state, step="adopted")
            return Outcome("adopted", key, known, "existing externalIds mapping")
        rng = conn.rules.customers.codes
        code = allocate_code(
            run,
            kind=RECORD_TYPE,
            start=rng.start,
            end=rng.end,
            render=lambda n: customer_code(n, conn.rules),
            taken_in_spectrum=lambda c: infolink.find_customer(c) is not None,
        )
        request, adjustments = st_company_to_add_customer(company, code=code, rules=conn.rules)
        if not run.step_done("spectrum"):
            how = create_or_adopt(
                run,
                request,
                find=lambda: infolink.find_customer(code),
                matches=lambda row: same_text(row.get("Name"), request.values["Name"]),
                what=f"company {company_id}",
            )
            run.state.update(how=how, adjustments=adjustments)
            run.finish_step("spectrum")
        if not run.step_done("writeback"):
            ctx.st.set_external_id("company", company_id, conn.external_id_key, code)
            run.finish_step("writeback")
        return run.done(
            str(run.state.get("how", "created")).replace("created", "synced"),
            code,
            digest=request.digest(),
        )

    return run_record(ctx, key, body, reclaim_done=replay)


def ensure_customer(ctx: SyncContext, company_id: int, connection: str) -> str:
    """The Spectrum customer code of ``company_id``, syncing the company first when needed."""
    rec = ctx.ledger.get(RecordKey(ctx.connection(connection).name, RECORD_TYPE, str(company_id)))
    if rec is not None and rec.status is Status.DONE and rec.spectrum_key:
        return rec.spectrum_key
    outcome = sync_customer(ctx, company_id, connection)
    if outcome.ok and outcome.spectrum_key:
        return outcome.spectrum_key
    raise PrerequisiteMissing(
        f"customer (ServiceTrade company {company_id}) is not in Spectrum: "
        f"{outcome.message or outcome.result}",
        field="customer",
        value=company_id,
    )


@sync_task(TASK_NAME, RECORD_TYPE)
def push_customer_to_spectrum(company_id: int, connection: str | None = None) -> str:
    """Sync one ServiceTrade company to a Spectrum AR customer.

    Idempotent (ledger + create-or-adopt): safe to redeliver or run concurrently. Retries on
    TransientError (network, 5xx, SOAP fault, busy record) with jittered backoff.
    """
    return sync_customer(get_context(), company_id, connection).result
