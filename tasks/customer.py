"""ServiceTrade companies -> Spectrum AR customers (F1).

Created once, on first sync; later edits belong to each system, so a later event for a synced
company is recorded as a no-op. The customer code is allocated from the connection's range and
stored in the ledger before ``AddCustomer`` is sent, then written back to the company's
``externalIds`` under the connection's ``external_id_key``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

from clients.errors import PermanentError, RecordSkipped
from clients.spectrum.models import SpectrumRequest
from mappers.customer import (
    CUSTOMER_MATCH,
    customer_code,
    customer_skip_reason,
    matching_rows,
    st_company_to_add_customer,
)
from tasks import heal, registry
from tasks._celery import sync_task
from tasks._pipeline import (
    Build,
    MasterRecord,
    Outcome,
    Run,
    create_master_record,
    ensure_done,
    problem_key,
    record_alert,
    run_record,
    same_text,
)
from tasks.route import route_refusal
from tasks.state import CustomerState, Result
from worker.context import SyncContext, get_context
from worker.ledger import RecordKey

M = TypeVar("M", bound=CustomerState)

#: ServiceTrade entity type numbers (comments, reference §3)
COMPANY_ENTITY_TYPE = 5
LOCATION_ENTITY_TYPE = 11

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
        heal.stamp(run.state, company, conn, RECORD_TYPE)
        skip = customer_skip_reason(company)
        if skip:  # before a code is allocated: a vendor must not use up a customer code
            raise RecordSkipped(skip)

        def build(code: str) -> tuple[SpectrumRequest, list[str]]:
            return st_company_to_add_customer(company, code=code, rules=conn.rules)

        stale = check_external_id(
            run,
            spec,
            external_ids=company.external_ids,
            build=build,
            rows=ctx.infolink_for(conn.name).list_customers,
            columns=CUSTOMER_MATCH,
            adopt=conn.rules.customers.adopt,
            what=f"company {company_id}",
            code_column="Customer_Code",
            st_id=company_id,
        )
        if stale is not None:
            return stale
        return create_master_record(
            run,
            spec,
            st_id=company_id,
            external_ids=company.external_ids,
            build=build,
            what=f"company {company_id}",
        )

    before = ctx.ledger.get(key)
    rule = heal.reclaim_rule(ctx, conn, RECORD_TYPE, lambda: ctx.st.get_company(company_id))
    outcome = run_record(
        ctx,
        key,
        body,
        state=CustomerState,
        reclaim_done=replay,
        reclaim=rule,
        on_permanent=stale_id_notice(ctx, COMPANY_ENTITY_TYPE, company_id),
    )
    heal.after_sync(ctx, key, before, ok=outcome.ok)
    return outcome


# --- stale external ids (F22) ------------------------------------------------------------------
STALE_FIELD = "externalIds"


def check_external_id(
    run: Run[M],
    spec: MasterRecord,
    *,
    external_ids: Mapping[str, str],
    build: Build,
    rows: Callable[[], Sequence[Mapping[str, Any]]],
    columns: tuple[str, tuple[str, ...]],
    adopt: str,
    what: str,
    code_column: str,
    st_id: int,
) -> Outcome | None:
    """A record whose ``externalIds`` name a Spectrum code that Spectrum does not have.

    Never replaced silently: by default the record fails (``externalIds`` named, an alert and a
    comment follow); with ``adopt = "by_name"`` the one Spectrum record with the same normalised
    name and address is adopted and its code written back. None when the external id is fine
    (absent, or a code Spectrum has).
    """
    conn = run.ctx.connection(run.connection)
    known = (external_ids.get(conn.external_id_key) or "").strip()
    if not known or run.record.spectrum_key or spec.find(known) is not None:
        return None
    kind = "customer code" if spec.kind == "customer" else "WO site id"
    found: list[Mapping[str, Any]] = []
    if adopt == "by_name":
        request, _ = build(known if _usable_code(known) else "X")
        found = list(matching_rows(request.values, rows(), columns))
        if len(found) == 1:
            code = str(found[0][code_column]).strip()
            run.state.how = "adopted"
            run.state.stale_external_id = known
            run.save(spectrum_key=code)
            run.ctx.st_writes.set_external_id(spec.st_entity, st_id, conn.external_id_key, code)
            return run.done(
                Result.ADOPTED,
                code,
                message=f"externalIds {conn.external_id_key!r} named {known!r}, which Spectrum "
                f'does not have; adopted {code} (same name and address; adopt = "by_name")',
            )
    detail = ""
    if adopt == "by_name":
        detail = (
            " No Spectrum record has the same name and address"
            if not found
            else f" Several Spectrum records have the same name and address "
            f"({', '.join(str(r[code_column]).strip() for r in found)})"
        ) + "."
    raise PermanentError(
        f"{what}: its externalIds[{conn.external_id_key!r}] is {known!r}, but Spectrum (company "
        f"{conn.company_code}) has no {kind} {known!r}.{detail} stsync never replaces it "
        "silently: relink or clear the external id",
        field=STALE_FIELD,
        value=known,
    )


def _usable_code(code: str) -> bool:
    return 0 < len(code) <= 10 and code.isalnum()


def stale_id_notice(
    ctx: SyncContext, entity_type: int, st_id: int
) -> Callable[[Run[M], PermanentError], None]:
    """On a stale external id: an alert and one comment on the company/location naming the code."""

    def hook(run: Run[M], exc: PermanentError) -> None:
        if exc.field != STALE_FIELD:
            return
        record_alert(ctx, run.key, "stale_external_id", str(exc))
        digest = problem_key(str(exc))
        done = list(run.state.comments)
        if digest in done:
            return
        run.state.comments = [*done, digest]
        ctx.ledger.update_progress(run.key, state=run.state.dump())
        ctx.st_writes.add_comment(
            entity_type,
            st_id,
            (
                f"stsync could not send this record to Spectrum (connection {run.connection}).\n"
                f"What failed: {exc}\n"
                "How to fix: set the external id to the right Spectrum code, or clear it so stsync "
                "creates the record; stsync looks at it again as soon as it changes."
            ),
        )

    return hook


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
    ctx = get_context()
    if route_refusal(ctx, RECORD_TYPE, company_id, connection):  # routing between companies (F24)
        return "skipped"
    return sync_customer(ctx, company_id, connection).result
