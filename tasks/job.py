"""ServiceTrade jobs -> Spectrum JC jobs (F3) or work orders (F4, legacy "Send Job to Spectrum").

JC mode (``mode = "jc"``, the default): a job is created in Spectrum once, on first sight, and
then follows the ServiceTrade job (``_follow``: UpdateJob / UpdateJob_UDF with what changed). Its
customer and WO site are synced first (chain). A failed or skipped job is looked at again when it
or its configuration changes (``tasks/heal.py``). The job number(s) are planned and stored in the
ledger before ``AddJob`` (create-or-adopt: a ghost write is adopted, a job somebody else made
under our number is a collision, reported and never overwritten). Then, per Spectrum job, the
template phases (``AddPhase``, upserts) and the OH batch code / full-name comment (``UpdateJob``).
Every step is a recovery point, so a retry resumes after the last finished one. Last, the job
number is written to the job's ``externalIds`` under the connection's ``external_id_key``.

Work-order mode (``mode = "work_order"``): webhooks do nothing; a person sends the job (CLI
``stsync send-job`` or ``POST /jobs/{id}/send``) and every send upserts the ``WorkOrderHeader``
(re-sending overwrites the fields in Spectrum). The job's customer and site must already be
mapped; the send does not create them.

Every permanent failure leaves one comment on the ServiceTrade job per distinct problem.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from clients.errors import (
    AlreadyExists,
    MappingError,
    NotFound,
    PermanentError,
    PrerequisiteMissing,
    RecordSkipped,
    TransientError,
)
from clients.servicetrade.models import Job, Location
from clients.spectrum.formats import format_date
from clients.spectrum.models import SpectrumRequest, request_digest
from mappers.job import (
    FOLLOWED_FIELDS,
    added_cost_center_numbers,
    adopt_mismatch,
    followed_values,
    job_changes,
    job_comment,
    job_cost_centers,
    job_failure_comment,
    job_numbers,
    job_record,
    job_skip_reason,
    job_update_requests,
    st_job_to_add_job,
    template_phase_requests,
    update_job_request,
)
from mappers.work_order import st_job_to_work_order, work_order_contract
from tasks import customer as customer_task
from tasks import heal, registry
from tasks import site as site_task
from tasks._celery import sync_task
from tasks._pipeline import (
    Outcome,
    Run,
    create_or_adopt,
    problem_key,
    record_alert,
    run_record,
)
from tasks.route import route_refusal
from tasks.state import ADD_PHASE, Commented, JobState, Result, WorkOrderState
from worker.context import SyncContext, get_context
from worker.ledger import RecordKey, Status
from worker.settings import ConnectionSettings

log = logging.getLogger("stsync.job")

RECORD_TYPE = registry.JOB.name
WORK_ORDER_RECORD_TYPE = registry.WORK_ORDER.name
TASK_NAME = registry.JOB.task
SEND_TASK_NAME = registry.WORK_ORDER.task
#: the state key of what each Spectrum job was last given of the fields it follows
FOLLOW_KEY = "follow"
#: ServiceTrade entity type number of jobs (comments, reference §3)
JOB_ENTITY_TYPE = 3


# --- JC jobs (F3) ---------------------------------------------------------------------------------
def sync_job(
    ctx: SyncContext, job_id: int, connection: str | None = None, *, replay: bool = False
) -> Outcome:
    """Create the job's Spectrum JC job(s) once (customer and site first), then keep them
    following the ServiceTrade job (name, PM, office, dates, cost center, status). Idempotent.

    A failed or skipped job runs again when its ServiceTrade record or its configuration changed
    (``tasks/heal.py``); a synced one runs again when its ServiceTrade record changed.
    In work-order mode webhooks send nothing, unless ``work_orders.resend_on_update`` is set and
    the job's work order was sent before.
    """
    conn = ctx.connection(connection)
    key = RecordKey(conn.name, RECORD_TYPE, str(job_id))
    if conn.rules.mode == "work_order":
        return _work_order_on_update(ctx, conn, job_id, key)

    def body(run: Run[JobState]) -> Outcome:
        return _sync_jc_job(ctx, conn, run, job_id)

    before = ctx.ledger.get(key)
    rule = heal.reclaim_rule(
        ctx,
        conn,
        RECORD_TYPE,
        lambda: ctx.st.get_job(job_id),
        statuses=(Status.FAILED, Status.SKIPPED, Status.DONE),
    )
    outcome = run_record(
        ctx,
        key,
        body,
        state=JobState,
        reclaim_done=replay,
        reclaim=rule,
        on_permanent=_commenter(ctx, job_id),
    )
    heal.after_sync(ctx, key, before, ok=outcome.ok)
    return outcome


def _work_order_on_update(
    ctx: SyncContext, conn: ConnectionSettings, job_id: int, key: RecordKey
) -> Outcome:
    """Work-order mode: a job event re-sends the work order only when configured and sent before."""
    sent = ctx.ledger.get(RecordKey(conn.name, WORK_ORDER_RECORD_TYPE, str(job_id)))
    if (
        conn.rules.work_orders.resend_on_update
        and sent is not None
        and (sent.status is Status.DONE)
    ):
        return send_work_order(ctx, job_id, conn.name)
    why = "work-order mode: jobs are sent with Send Job to Spectrum" + (
        "" if sent is None else " (work_orders.resend_on_update is off)"
    )
    ctx.ledger.audit(system="stsync", service="noop", outcome="noop", key=key, detail=why)
    return Outcome(Result.SKIPPED, key, None, "work-order mode: use Send Job to Spectrum")


def _sync_jc_job(
    ctx: SyncContext, conn: ConnectionSettings, run: Run[JobState], job_id: int
) -> Outcome:
    rules = conn.rules
    infolink = ctx.infolink_for(conn.name)
    job = ctx.st.get_job(job_id)
    heal.stamp(run.state, job, conn, RECORD_TYPE)
    if run.state.plan and run.record.done_at is not None:
        # in Spectrum already: follow the ServiceTrade job
        return _follow(ctx, conn, run, job)
    skip = job_skip_reason(job, rules.jobs)
    if skip:
        raise RecordSkipped(skip)
    known = [n.strip() for n in job.external_ids.get(conn.external_id_key, "").split(",")]
    known = [n for n in known if n]
    if known and not run.state.plan:
        rows = [infolink.find_job(n) for n in known]
        if all(rows):
            # mapped before (an earlier integration or by hand): adopt it, send nothing
            run.state.how = dict.fromkeys(known, "adopted")
            run.state.plan = {
                str((row or {}).get("Cost_Center") or "").strip(): n
                for n, row in zip(known, rows, strict=True)
            }
            # adopted as it is: only later ServiceTrade changes are sent
            baseline = followed_values(job, cost_center=None, rules=rules, tz=ctx.settings.timezone)
            run.state.follow = {n: dict(baseline) for n in known}
            ctx.ledger.mark_done(
                run.key, spectrum_key=known[0], state=run.state.dump(), step="adopted"
            )
            return Outcome(Result.ADOPTED, run.key, known[0], "existing externalIds mapping")
        missing = [n for n, row in zip(known, rows, strict=True) if not row]
        raise PermanentError(
            f"{job_record(job)}: its externalIds[{conn.external_id_key!r}] names Spectrum job "
            f"{', '.join(missing)}, which Spectrum (company {conn.company_code}) does not have. "
            "stsync never replaces it silently: relink or clear the external id",
            field="externalIds",
            value=",".join(missing),
        )

    if job.location is None:
        raise MappingError(job_record(job), "location", "the job has no location")
    location = ctx.st.get_location(job.location.id)
    company_id = _company_id(job, location.company.id if location.company else None)
    customer = customer_task.ensure_customer(ctx, company_id, conn.name)
    site = site_task.ensure_site(ctx, location.id, conn.name)

    plan = dict(run.state.plan)
    if not plan:
        lines = _service_lines(ctx, job, conn)
        ccs = job_cost_centers(job, lines, rules, connection=conn.name)
        plan = job_numbers(job.number, ccs, rules)
        # the numbers are the client token of AddJob: stored before the first write
        run.state.plan = plan
        run.save(spectrum_key=next(iter(plan.values())))
    return _create_jobs(ctx, conn, run, job, location, plan, customer=customer, site=site)


def _create_jobs(
    ctx: SyncContext,
    conn: ConnectionSettings,
    run: Run[JobState],
    job: Job,
    location: Location,
    plan: dict[str, str],
    *,
    customer: str,
    site: str,
) -> Outcome:
    """AddJob, template phases and UpdateJob per planned Spectrum job not yet made; write back."""
    rules = conn.rules
    spectrum = ctx.spectrum_writes(conn.name)
    comment = job_comment(job)
    adjustments = list(run.state.adjustments)
    digests: list[str] = []
    follow: dict[str, dict[str, str]] = {k: dict(v) for k, v in run.state.follow.items()}
    for cost_center, number in plan.items():
        request, adjusted = st_job_to_add_job(
            job,
            location,
            number=number,
            cost_center=cost_center,
            customer_code=customer,
            site_id=site,
            rules=rules,
            tz=ctx.settings.timezone,
        )
        digests.append(request.digest())
        step = f"add:{number}"
        if not run.step_done(step):
            how = _add_job(run, request, job)
            run.state.how = {**run.state.how, number: how}
            adjustments.extend(f"{number}: {a}" for a in adjusted)
            run.state.adjustments = adjustments
            follow[number] = {k: request.values.get(k, "") for k in FOLLOWED_FIELDS}
            follow[number]["Comment"] = comment
            run.state.follow = follow
            run.finish_step(step)
        if rules.jobs.template_job and not run.step_done(f"phases:{number}"):
            _copy_template_phases(ctx, conn, run, number)
            run.finish_step(f"phases:{number}")
        update = update_job_request(number, rules, comment=comment)
        if update is not None and not run.step_done(f"update:{number}"):
            spectrum.put(update)
            run.finish_step(f"update:{number}")

    numbers = ",".join(plan.values())
    if not run.step_done(f"writeback:{numbers}") and not (
        run.step_done("writeback") and job.external_ids.get(conn.external_id_key) == numbers
    ):
        ctx.st_writes.set_external_id("job", job.id, conn.external_id_key, numbers)
        run.finish_step(f"writeback:{numbers}")
    # what AddJob cannot say yet (a completed job's status: phases are added to open jobs only)
    _push_changes(ctx, conn, run, job, plan, {}, follow)
    run.state.follow = follow
    how_all = set(run.state.how.values())
    result = Result.ADOPTED if how_all == {"adopted"} else Result.SYNCED
    return run.done(
        result,
        next(iter(plan.values())),
        digest=digests[0] if len(digests) == 1 else _combined(digests),
    )


def _follow(ctx: SyncContext, conn: ConnectionSettings, run: Run[JobState], job: Job) -> Outcome:
    """Send what changed on a synced job (``UpdateJob`` / ``UpdateJob_UDF``), per Spectrum job.

    Compared with what Spectrum was last given (else with Spectrum's row), so a field edited only
    in Spectrum is left alone until it changes in ServiceTrade. Blank never clears. The cost
    center (and price method) follows the service lines until an invoice is posted on the job;
    after that Spectrum cannot change the job's AR contract, so the change is refused with a
    comment and an alert and the job keeps its cost center. In multi-cost-center mode a new cost
    center gets its own new Spectrum job. Refusals never fail the job: its invoices and time still
    go to it.
    """
    rules = conn.rules
    infolink = ctx.infolink_for(conn.name)
    plan: dict[str, str] = dict(run.state.plan)
    try:
        wanted_ccs: list[str] | None = job_cost_centers(
            job, _service_lines(ctx, job, conn), rules, connection=conn.name
        )
    except MappingError as exc:
        wanted_ccs = None
        _notice(
            ctx,
            run,
            job,
            f"{exc}. The Spectrum job keeps its cost center",
            "Map the service line in the stsync configuration (or change it in ServiceTrade); "
            "the job is updated on its next change in ServiceTrade.",
        )
    cc_of: dict[str, str | None] = dict.fromkeys(plan.values())
    if rules.jobs.multi_cost_center:
        added = added_cost_center_numbers(job.number, plan, wanted_ccs or [], rules)
        if added:
            return _add_cost_centers(ctx, conn, run, job, {**plan, **added})
    elif wanted_ccs:
        (current, number), new = next(iter(plan.items())), wanted_ccs[0]
        if new != current.strip() and infolink.has_ar_invoice_for_job(number):
            _notice(
                ctx,
                run,
                job,
                f"{job_record(job)}: its service lines now give cost center {new}, but Spectrum "
                f"job {number} keeps cost center {current or 'blank'}: an invoice has been "
                "posted on it and Spectrum cannot change an existing AR contract",
                f"Leave it (new invoices of this job go to cost center {current}), or change "
                f"job {number} by hand in Spectrum; stsync will not change it.",
                alert=True,
            )
        elif new != current.strip():
            cc_of[number] = new
            plan = {new: number}
    follow: dict[str, dict[str, str]] = {str(k): dict(v) for k, v in run.state.follow.items()}
    sent_fields = _push_changes(ctx, conn, run, job, plan, cc_of, follow)
    run.state.follow = follow
    run.state.plan = plan
    if sent_fields:
        return run.done(
            Result.SYNCED,
            next(iter(plan.values())),
            message="updated in Spectrum: " + ", ".join(sent_fields),
        )
    return run.done(Result.UNCHANGED, next(iter(plan.values())), message="nothing to update")


def _push_changes(
    ctx: SyncContext,
    conn: ConnectionSettings,
    run: Run[JobState],
    job: Job,
    plan: Mapping[str, str],
    cc_of: Mapping[str, str | None],
    follow: dict[str, dict[str, str]],
) -> list[str]:
    """UpdateJob / UpdateJob_UDF per Spectrum job for the followed fields that changed since
    Spectrum was last given them; ``follow`` is updated in place. Returns ``number.field`` sent."""
    rules = conn.rules
    infolink = ctx.infolink_for(conn.name)
    sent_fields: list[str] = []
    for number in plan.values():
        last = follow.get(number)
        if last is None:
            row = infolink.find_job(number) or {}
            last = {k: "" if row.get(k) is None else str(row[k]) for k in FOLLOWED_FIELDS}
            if row.get("Est_Start_Date") or row.get("Complete_Date"):
                for k in ("Est_Start_Date", "Complete_Date"):
                    last[k] = _spectrum_date(row.get(k))
        wanted = followed_values(
            job, cost_center=cc_of.get(number), rules=rules, tz=ctx.settings.timezone
        )
        changes = job_changes(last, wanted)
        try:
            for request in job_update_requests(number, changes, rules):
                ctx.spectrum_writes(conn.name).put(request)  # updates: repeating is harmless
        except PermanentError as exc:
            _notice(
                ctx,
                run,
                job,
                f"{job_record(job)}: Spectrum refused the update of job {number}: {exc}",
                "Correct the value in ServiceTrade (the job is updated on its next change) "
                "or in Spectrum's setup (code lists, cost centers).",
                alert=True,
            )
            continue
        follow[number] = {**last, **changes}
        sent_fields.extend(f"{number}.{k}" for k in changes)
    return sent_fields


def adopted_baseline(ctx: SyncContext, connection: str, job_id: int) -> dict[str, str]:
    """The followed fields of a job linked or adopted as it is: later changes are sent, the
    differences it had when it was linked are not (``stsync link``)."""
    conn = ctx.connection(connection)
    return followed_values(
        ctx.st.get_job(job_id), cost_center=None, rules=conn.rules, tz=ctx.settings.timezone
    )


def _spectrum_date(value: object) -> str:
    if value is None or value == "":
        return ""
    from datetime import date

    if isinstance(value, date):
        return format_date(value)
    return str(value)


def _add_cost_centers(
    ctx: SyncContext,
    conn: ConnectionSettings,
    run: Run[JobState],
    job: Job,
    plan: dict[str, str],
) -> Outcome:
    """A multi-cost-center job gained cost centers: create their Spectrum jobs (and write back)."""
    if job.location is None:
        raise MappingError(job_record(job), "location", "the job has no location")
    location = ctx.st.get_location(job.location.id)
    company_id = _company_id(job, location.company.id if location.company else None)
    customer = customer_task.ensure_customer(ctx, company_id, conn.name)
    site = site_task.ensure_site(ctx, location.id, conn.name)
    run.state.plan = plan
    run.save()
    return _create_jobs(ctx, conn, run, job, location, plan, customer=customer, site=site)


def _notice(
    ctx: SyncContext,
    run: Run[JobState],
    job: Job,
    problem: str,
    fix: str,
    *,
    alert: bool = False,
) -> None:
    """Tell people about a change that was not followed: one job comment (and alert) per problem."""
    digest = problem_key(problem)
    done = list(run.state.comments)
    if digest in done:
        return
    run.state.comments = [*done, digest]
    ctx.ledger.update_progress(run.key, state=run.state.dump())
    if alert:
        record_alert(ctx, run.key, "job_update", problem)
    where = f" (Spectrum connection {run.connection})"
    ctx.st_writes.add_comment(
        JOB_ENTITY_TYPE,
        job.id,
        "\n".join(
            [
                f"stsync did not copy a change of this job (id {job.id}) to Spectrum{where}.",
                f"What: {problem}",
                f"How to fix: {fix}",
            ]
        ),
    )


def _combined(digests: list[str]) -> str:
    return request_digest(digests)


def _company_id(job: Job, location_company: int | None) -> int:
    if job.customer is not None:
        return job.customer.id
    if location_company is not None:
        return location_company
    raise MappingError(
        job_record(job), "customer", "neither the job nor its location has a company"
    )


def _service_lines(ctx: SyncContext, job: Job, conn: ConnectionSettings) -> list[str]:
    """The job's service-line abbreviations: its own, then those of its job items."""
    rules = conn.rules
    if rules.cost_centers.source != "service_line":
        return []
    lines = [job.service_line] if job.service_line else []
    if rules.jobs.multi_cost_center or not lines:
        # service lines live on a job's items (reference §5.3); one read, only when it matters
        for item in ctx.st.list_job_items(job.id):
            if item.service_line and item.service_line.abbr:
                lines.append(item.service_line.abbr)
    return lines


def _add_job(run: Run[JobState], request: SpectrumRequest, job: Job) -> str:
    """AddJob once; adopt a job with our number only when its customer and site are ours."""
    infolink = run.ctx.infolink_for(run.connection)
    number = request.values["Job_Number"]
    mismatch: list[str] = []

    def matches(row: Mapping[str, Any]) -> bool:
        why = adopt_mismatch({k: None if v is None else str(v) for k, v in row.items()}, request)
        if why:
            mismatch.append(why)
        return why is None

    try:
        return create_or_adopt(
            run,
            request,
            find=lambda: infolink.find_job(number),
            matches=matches,
            what=job_record(job),
        )
    except PermanentError as exc:
        if mismatch and not isinstance(exc, AlreadyExists):
            raise PermanentError(
                f"{job_record(job)}: {mismatch[-1]}. stsync never overwrites it: rename or "
                "remove that Spectrum job, or change jobs.number_prefix / number_format",
                field="Job_Number",
                value=number,
            ) from exc
        raise


def template_phase_rows(ctx: SyncContext, conn: ConnectionSettings) -> list[dict[str, str]]:
    """The template job's phase rows (``GetPhase``), read once per connection and cached."""
    template = conn.rules.jobs.template_job

    def load() -> list[dict[str, str]]:
        result = ctx.spectrum_for(conn.name).get_phases(template)
        if result.truncated:
            # a partial template must not be copied (nor cached); try again later
            raise TransientError(
                f"GetPhase for template job {template!r} came back cut off; retrying"
            )
        if not result.rows:
            # not cached: a template fixed in Spectrum is seen on the next attempt
            raise PermanentError(
                f"template job {template!r} has no phases in Spectrum (company "
                f"{conn.company_code}); check [connections.{conn.name}.jobs] template_job",
                field="jobs.template_job",
                value=template,
            )
        return [dict(r) for r in result.rows]

    cache_key = f"template-phases:{conn.name}:{conn.company_code}:{template}"
    rows: list[dict[str, str]] = ctx.cached(cache_key, conn.rules.jobs.template_cache_s, load)
    return rows


def _copy_template_phases(
    ctx: SyncContext, conn: ConnectionSettings, run: Run[JobState], number: str
) -> None:
    """AddPhase per template row; each phase sent is remembered, so a retry sends only the rest."""
    requests = template_phase_requests(number, template_phase_rows(ctx, conn), conn.rules)
    spectrum = ctx.spectrum_writes(conn.name)
    sent = run.state.phases_sent(number)
    for request in requests:
        combo = f"{request.values['Phase_Code']}/{request.values['Cost_Type']}"
        if combo in sent:
            continue
        spectrum.put(request)  # AddPhase upserts: repeating one after a crash is harmless
        run.state.mark_sent(ADD_PHASE, f"{number}/{combo}")
        run.save()


# --- work orders (F4) and "Send Job to Spectrum" --------------------------------------------------
def send_job(ctx: SyncContext, job_id: int, connection: str | None = None) -> Outcome:
    """ "Send Job to Spectrum" for one connection: a work order (legacy mode) or the JC job.

    In JC mode a job already in Spectrum stays as it is; a failed one is tried again.
    """
    conn = ctx.connection(connection)
    if conn.rules.mode == "work_order":
        return send_work_order(ctx, job_id, conn.name)
    return sync_job(ctx, job_id, conn.name, replay=True)


def send_work_order(ctx: SyncContext, job_id: int, connection: str | None = None) -> Outcome:
    """Upsert the job's Spectrum work order (``WorkOrderHeader``). Every send overwrites it."""
    conn = ctx.connection(connection)
    key = RecordKey(conn.name, WORK_ORDER_RECORD_TYPE, str(job_id))

    def body(run: Run[WorkOrderState]) -> Outcome:
        job = ctx.st.get_job(job_id)
        skip = job_skip_reason(job, conn.rules.jobs)
        if skip:
            raise RecordSkipped(skip)
        customer, site = _mapped_customer_and_site(ctx, conn, job)
        request, adjustments = st_job_to_work_order(
            job,
            customer_code=customer,
            site_id=site,
            rules=conn.rules,
            contract_number=work_order_contract(job, conn.rules),
            connection=conn.name,
        )
        number = request.values["WO_Number"]
        run.state.adjustments = adjustments
        run.state.sends += 1
        run.save(spectrum_key=number)
        # WorkOrderHeader adds or updates by WO_Number: repeating it is safe, so no flag
        ctx.spectrum_writes(conn.name).put(request)
        if job.external_ids.get(conn.external_id_key) != number:
            ctx.st_writes.set_external_id("job", job_id, conn.external_id_key, number)
        return run.done(Result.SYNCED, number, digest=request.digest())

    # every send runs again (reclaim_done): a re-send is how people push edits to Spectrum
    return run_record(
        ctx,
        key,
        body,
        state=WorkOrderState,
        reclaim_done=True,
        on_permanent=_commenter(ctx, job_id),
    )


def _mapped_customer_and_site(
    ctx: SyncContext, conn: ConnectionSettings, job: Job
) -> tuple[str, str]:
    """The Spectrum customer code and site id already mapped to the job's company and location."""
    record = job_record(job)
    if job.location is None:
        raise MappingError(record, "location", "the job has no location")
    location = ctx.st.get_location(job.location.id)
    company_id = _company_id(job, location.company.id if location.company else None)
    site = _mapped(ctx, conn, site_task.RECORD_TYPE, location.id, lambda: location.external_ids)
    customer = _mapped(
        ctx,
        conn,
        customer_task.RECORD_TYPE,
        company_id,
        lambda: ctx.st.get_company(company_id).external_ids,
    )
    missing = []
    if customer is None:
        name = job.customer.name if job.customer and job.customer.name else f"id {company_id}"
        missing.append(
            f"the customer {name} (company {company_id}) is not mapped to a Spectrum customer"
        )
    if site is None:
        missing.append(
            f"the location {location.name} (id {location.id}) is not mapped to a Spectrum WO site"
        )
    if missing or customer is None or site is None:
        raise PrerequisiteMissing(
            f"{record}: " + "; ".join(missing) + f". Sync them first (stsync sync customer / "
            f"site) or set their externalIds '{conn.external_id_key}' to the Spectrum code",
            field="customer" if customer is None else "site",
        )
    return customer, site


def _mapped(
    ctx: SyncContext,
    conn: ConnectionSettings,
    record_type: str,
    source_id: int,
    external_ids: Callable[[], Mapping[str, str]],
) -> str | None:
    """The Spectrum code stsync holds (ledger) or ServiceTrade holds (externalIds), else None."""
    rec = ctx.ledger.get(RecordKey(conn.name, record_type, str(source_id)))
    if rec is not None and rec.status is Status.DONE and rec.spectrum_key:
        return rec.spectrum_key
    value = (external_ids().get(conn.external_id_key) or "").strip()
    return value or None


# --- failure comments (F14) -----------------------------------------------------------------------
def fix_hint(exc: PermanentError, connection: str) -> str:
    """How a person fixes the failure ``exc`` (the comment's second line)."""
    text = str(exc)
    if isinstance(exc, PrerequisiteMissing):
        return (
            "Make sure the job's customer and location are in Spectrum (stsync history shows "
            "why they are not), then send the job again."
        )
    if "is not mapped in [connections." in text or "set a default" in text:
        return (
            f"Add the missing entry to the stsync configuration (connection {connection}) "
            "as the message says, restart the workers, then send the job again."
        )
    if isinstance(exc, MappingError):
        return (
            "Correct the value named above on the ServiceTrade job (or the stsync "
            "configuration), then send the job again."
        )
    if "never overwrites" in text:
        return (
            "A Spectrum job with this number belongs to something else: rename or remove it "
            "in Spectrum, or change the job number prefix in the stsync configuration."
        )
    if exc.rows:
        return (
            "Spectrum refused a value: correct it in ServiceTrade or in Spectrum's setup "
            "(code lists, cost centers, tax classes), then send the job again."
        )
    if isinstance(exc, NotFound):
        return "The record no longer exists in ServiceTrade; nothing to do."
    return "See `stsync history job` for details, fix the cause, then send the job again."


C = TypeVar("C", bound=Commented)


def _commenter(ctx: SyncContext, job_id: int) -> Callable[[Run[C], PermanentError], None]:
    def hook(run: Run[C], exc: PermanentError) -> None:
        comment_failure(ctx, run, job_id, exc)

    return hook


def comment_failure(ctx: SyncContext, run: Run[C], job_id: int, exc: PermanentError) -> bool:
    """Comment on the ServiceTrade job once per distinct problem; True when a comment was posted."""
    if isinstance(exc, NotFound):
        return False  # the job is gone: there is nothing to comment on
    problem = str(exc)
    digest = problem_key(problem)
    done = list(run.state.comments)
    if digest in done:
        return False
    # remembered before posting: a lost comment is better than a storm of duplicates
    run.state.comments = [*done, digest]
    ctx.ledger.update_progress(run.key, state=run.state.dump())
    text = job_failure_comment(
        job_id, problem, fix_hint(exc, run.connection), connection=run.connection
    )
    try:
        ctx.st_writes.add_comment(JOB_ENTITY_TYPE, job_id, text)
    except Exception:
        run.state.comments = done
        ctx.ledger.update_progress(run.key, state=run.state.dump())
        raise
    return True


# --- ids for other record types -------------------------------------------------------------------
def spectrum_jobs_of(ctx: SyncContext, job_id: int, connection: str) -> dict[str, str]:
    """Cost center -> Spectrum job number of a synced ServiceTrade job (empty if not synced).

    Multi-cost-center jobs have several; invoices and timecards pick by cost center.
    """
    rec = ctx.ledger.get(RecordKey(ctx.connection(connection).name, RECORD_TYPE, str(job_id)))
    if rec is None or rec.status is not Status.DONE:
        return {}
    return dict(JobState.load(rec.state).plan)


def enqueue_send_job(
    job_id: int, connection: str | None = None, *, ctx: SyncContext | None = None
) -> str:
    """Queue "Send Job to Spectrum" for ``connection`` (validated: ``ConfigError`` naming the
    configured ones otherwise); returns the connection name. Without ``ctx``: this process's
    settings and Celery."""
    if ctx is not None:
        name = ctx.connection(connection).name
        ctx.enqueue(SEND_TASK_NAME, (int(job_id), name))
        return name
    from worker.context import celery_enqueue
    from worker.settings import get_settings

    name = get_settings().connection(connection).name
    celery_enqueue(SEND_TASK_NAME, (int(job_id), name))
    return name


# --- Celery tasks ---------------------------------------------------------------------------------
@sync_task(TASK_NAME, RECORD_TYPE)
def push_job_to_spectrum(job_id: int, connection: str | None = None) -> str:
    """Create one ServiceTrade job in Spectrum as a JC job (customer and site first).

    Idempotent (ledger + create-or-adopt + recorded steps): safe to redeliver or run concurrently.
    Retries on TransientError (network, 5xx, SOAP fault, busy record) with jittered backoff.
    """
    ctx = get_context()
    if route_refusal(ctx, RECORD_TYPE, job_id, connection):  # routing between companies (F24)
        return "skipped"
    return sync_job(ctx, job_id, connection).result


@sync_task(SEND_TASK_NAME, WORK_ORDER_RECORD_TYPE, also=(RECORD_TYPE,))
def send_job_to_spectrum(job_id: int, connection: str | None = None) -> str:
    """ "Send Job to Spectrum": upsert the work order (legacy mode) or create the JC job.

    Idempotent: WorkOrderHeader upserts by WO number; JC jobs go through the ledger. Retries on
    TransientError with jittered backoff.
    """
    return send_job(get_context(), job_id, connection).result
