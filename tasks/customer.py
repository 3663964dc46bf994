"""ServiceTrade companies -> Spectrum AR customers (F1).

Created once, on first sync; later edits belong to each system, so a later event for a synced
company is recorded as a no-op. The customer code is allocated from the connection's range and
stored in the ledger before ``AddCustomer`` is sent, then written back to the company's
``externalIds`` under the connection's ``external_id_key``.
"""

from __future__ import annotations

from clients.errors import RecordSkipped
from mappers.customer import customer_code, customer_skip_reason, st_company_to_add_customer
from tasks import registry
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
from tasks.state import CustomerState
from worker.context import SyncContext, get_context
from worker.ledger import RecordKey

RECORD_TYPE = registry.CUSTOMER.name
TASK_NAME = registry.CUSTOMER.task


def customer_record(ctx: SyncContext, connection: str) -> MasterRecord:
    """How a connection's customers are coded, found and matched (the sync and the preview)."""
    conn = ctx.connection(connection)
    return MasterRecord(
        kind=RECORD_TYPE,
        st_entity="company",
        start=conn.rules.customers.codes.start,
        end=conn.rules.customers.codes.end,
        render=lambda n: customer_code(n, conn.rules),
        find=ctx.infolink_for(conn.name).find_customer,
        matches=lambda row, req: same_text(row.get("Name"), req.values["Name"]),
    )


def sync_customer(
    ctx: SyncContext, company_id: int, connection: str | None = None, *, replay: bool = False
) -> Outcome:
    """Create the company's AR customer in Spectrum once. Idempotent."""
    conn = ctx.connection(connection)
    key = RecordKey(conn.name, RECORD_TYPE, str(company_id))
    spec = customer_record(ctx, conn.name)

    def body(run: Run[CustomerState]) -> Outcome:
        company = ctx.st.get_company(company_id)
        skip = customer_skip_reason(company)
        if skip:  # before a code is allocated: a vendor must not use up a customer code
            raise RecordSkipped(skip)
        return create_master_record(
            run,
            spec,
            st_id=company_id,
            external_ids=company.external_ids,
            build=lambda code: st_company_to_add_customer(company, code=code, rules=conn.rules),
            what=f"company {company_id}",
        )

    return run_record(ctx, key, body, state=CustomerState, reclaim_done=replay)


def ensure_customer(ctx: SyncContext, company_id: int, connection: str) -> str:
    """The Spectrum customer code of ``company_id``, syncing the company first when needed."""
    conn = ctx.connection(connection).name
    return ensure_done(
        ctx,
        RecordKey(conn, RECORD_TYPE, str(company_id)),
        lambda: sync_customer(ctx, company_id, conn),
        what=f"customer (ServiceTrade company {company_id})",
    )


@sync_task(TASK_NAME, RECORD_TYPE)
def push_customer_to_spectrum(company_id: int, connection: str | None = None) -> str:
    """Sync one ServiceTrade company to a Spectrum AR customer.

    Idempotent (ledger + create-or-adopt): safe to redeliver or run concurrently. Retries on
    TransientError (network, 5xx, SOAP fault, busy record) with jittered backoff.
    """
    return sync_customer(get_context(), company_id, connection).result
