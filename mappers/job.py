"""ServiceTrade job -> Spectrum JC job (F3): number, cost centers, AddJob, phases, OH batch.

Pure: no I/O, no clock, no settings object. The task resolves what needs a lookup (customer code and
WO site from the ledger, the job's service lines, the template job's phase rows) and hands it in.

Decisions encoded here (and listed in ``docs/jobs.md``):

- **Job number** = ``jobs.number_format`` with ``{prefix}`` = ``jobs.number_prefix``, ``{number}``
  = the ServiceTrade job *number* (not its id) and ``{suffix}`` (empty unless multi-cost-center).
  A number longer than 10 characters, with spaces at either end or with a character Spectrum
  forbids in codes, is a ``MappingError``: a job number is a key and is never shortened.
- **Multi-cost-center** (``jobs.multi_cost_center``): one Spectrum job per distinct cost center;
  *every* job then carries the suffix (also a job with a single cost center), so a number never
  changes meaning. ``{index}`` is the 1-based position of the cost center among the job's cost
  centers, in the order of ``cost_centers.codes`` (codes not listed there come after, sorted);
  ``{cost_center}`` is the code itself and is the stable choice.
- **Single cost center** with several service lines: the cost center of the job's primary service
  line wins (the job's own ``serviceLine`` when set, else the first service line listed).
- **Description**: Spectrum's ``Job_Description`` holds 25 characters. A longer job name is cut to
  its first 25 characters (never silently: the cut is returned as an adjustment, which the ledger
  keeps) and the full name (up to 125) goes into the job's ``Comment`` through the same
  ``UpdateJob`` call that sets the OH batch code (see ``update_job_request``).
- **Job type**: ``jobs.job_type_map[<ServiceTrade type>]`` goes to ``Job_Type`` or, when
  ``job_type_target = "contract_type"``, to ``Contract_Number``. A type missing from a non-empty
  map leaves the field blank (Spectrum's default) and is reported as an adjustment.
- **Template phases**: rows of the template job with status ``I`` or ``C`` are not copied; the
  estimates are not copied (they belong to the template); ``Price_Method_Code`` is ``J`` (the
  job's own price method); ``Phase_Cost_Center`` is left blank so Spectrum takes the new job's.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

from clients.errors import MappingError
from clients.servicetrade.models import Job, Location, Tag
from clients.spectrum.formats import as_of_date, format_date
from clients.spectrum.models import SpectrumRequest
from clients.spectrum.services import ADD_JOB, FORBIDDEN_KEY_CHARS, UPDATE_JOB
from mappers.rules import ConnectionRules, JobRules
from mappers.text import ascii_printable, fit, phone_digits, state_code

#: Placeholder used in messages when the caller does not name the connection.
ANY_CONNECTION = "<connection>"
#: ServiceTrade job statuses that never become a Spectrum job.
SKIPPED_STATUSES = frozenset({"canceled"})
#: Template phase statuses that are copied (blank = Spectrum's default, Active).
COPIED_PHASE_STATUSES = frozenset({"", "A"})
#: Spectrum's phase-code rule: no dashes (reference §6, AddPhase).
_PHASE_FORBIDDEN = FORBIDDEN_KEY_CHARS | {"-"}

_DESCRIPTION_MAX = ADD_JOB.field("Job_Description").max_len
_COMMENT_MAX = UPDATE_JOB.field("Comment").max_len
_JOB_NUMBER_MAX = ADD_JOB.field("Job_Number").max_len


def job_record(job: Job) -> str:
    """How messages name a job: its ServiceTrade number and id."""
    return f"job {job.number} (id {job.id})"


def _section(connection: str, key: str) -> str:
    return f"[connections.{connection}.{key}]"


# --- skipping -------------------------------------------------------------------------------------
def job_skip_reason(job: Job, rules: JobRules) -> str | None:
    """Why ``job`` is deliberately not sent to Spectrum (ignored type, canceled), or None."""
    ignored = {t.strip().lower() for t in rules.ignored_types}
    if job.type.strip().lower() in ignored:
        return (
            f"{job_record(job)}: job type {job.type!r} is in jobs.ignored_types; "
            "not sent to Spectrum"
        )
    if job.status.strip().lower() in SKIPPED_STATUSES:
        return f"{job_record(job)}: job is {job.status}; not sent to Spectrum"
    return None


# --- numbers --------------------------------------------------------------------------------------
def check_key(record: str, field: str, value: str, max_len: int) -> str:
    """``value`` when it is a valid Spectrum code of at most ``max_len``; MappingError otherwise."""
    if not value:
        raise MappingError(record, field, "is empty", value=value)
    if value != value.strip():
        raise MappingError(record, field, f"{value!r} has spaces at either end", value=value)
    if len(value) > max_len:
        raise MappingError(
            record,
            field,
            f"{value!r} is {len(value)} characters; Spectrum allows {max_len}",
            value=value,
        )
    bad = sorted(set(value) & FORBIDDEN_KEY_CHARS)
    if bad:
        raise MappingError(
            record,
            field,
            f"{value!r} contains characters Spectrum forbids in codes: {''.join(bad)}",
            value=value,
        )
    if not value.isprintable() or not value.isascii():
        raise MappingError(record, field, f"{value!r} is not printable ASCII", value=value)
    return value


def spectrum_job_number(st_number: int, rules: JobRules, suffix: str = "") -> str:
    """The Spectrum job number of ServiceTrade job number ``st_number`` (``T10452``)."""
    record = f"job {st_number}"
    try:
        number = rules.number_format.format(
            prefix=rules.number_prefix, number=st_number, suffix=suffix
        )
    except (KeyError, IndexError, ValueError) as exc:
        raise MappingError(
            record,
            "Job_Number",
            f"jobs.number_format {rules.number_format!r} cannot be applied: {exc}",
            value=rules.number_format,
        ) from exc
    return check_key(record, "Job_Number", number, _JOB_NUMBER_MAX)


def multi_cost_center_suffix(index: int, cost_center: str, rules: JobRules) -> str:
    """The number suffix of the ``index``-th (1-based) cost center of a multi-cost-center job."""
    try:
        return rules.multi_cost_center_suffix.format(index=index, cost_center=cost_center)
    except (KeyError, IndexError, ValueError) as exc:
        raise MappingError(
            f"cost center {cost_center}",
            "jobs.multi_cost_center_suffix",
            f"{rules.multi_cost_center_suffix!r} may use only {{index}} and {{cost_center}}",
            value=rules.multi_cost_center_suffix,
        ) from exc


def job_numbers(
    st_number: int, cost_centers: Sequence[str], rules: ConnectionRules
) -> dict[str, str]:
    """Spectrum job number per cost center, in the given order (one entry unless multi-CC).

    ``cost_centers`` comes from ``job_cost_centers``. Two cost centers that would get the same
    number (a suffix format without ``{index}``/``{cost_center}``) is a ``MappingError``.
    """
    if not cost_centers:
        raise MappingError(f"job {st_number}", "Cost_Center", "no cost center was determined")
    if not rules.jobs.multi_cost_center:
        if len(cost_centers) != 1:
            raise MappingError(
                f"job {st_number}",
                "Cost_Center",
                f"{len(cost_centers)} cost centers given but jobs.multi_cost_center is off",
                value=list(cost_centers),
            )
        return {cost_centers[0]: spectrum_job_number(st_number, rules.jobs)}
    out: dict[str, str] = {}
    for i, cc in enumerate(cost_centers, 1):
        out[cc] = spectrum_job_number(
            st_number, rules.jobs, multi_cost_center_suffix(i, cc, rules.jobs)
        )
    if len(set(out.values())) != len(out):
        raise MappingError(
            f"job {st_number}",
            "jobs.multi_cost_center_suffix",
            f"{rules.jobs.multi_cost_center_suffix!r} gives the same job number to several cost "
            "centers; use {index} or {cost_center}",
            value=rules.jobs.multi_cost_center_suffix,
        )
    return out


# --- cost centers ---------------------------------------------------------------------------------
def _lookup(mapping: Mapping[str, str], key: str) -> str | None:
    if key in mapping:
        return mapping[key]
    folded = key.strip().upper()
    for k, v in mapping.items():
        if k.strip().upper() == folded:
            return v
    return None


def _ordered(cost_centers: list[str], rules: ConnectionRules) -> list[str]:
    position = {cc: i for i, cc in enumerate(rules.cost_centers.codes)}
    unknown_rank = len(position)
    return sorted(dict.fromkeys(cost_centers), key=lambda cc: (position.get(cc, unknown_rank), cc))


def job_cost_centers(
    job: Job,
    service_lines: Sequence[str],
    rules: ConnectionRules,
    *,
    connection: str = ANY_CONNECTION,
) -> list[str]:
    """The job's Spectrum cost center(s), per ``cost_centers.source``.

    ``service_lines`` are the abbreviations (``SP``) of the job's service lines as the task found
    them (services and job items); the job's own deprecated ``serviceLine`` counts too. A line
    without a mapping falls back to ``cost_centers.default``; with no default it is a
    ``MappingError`` naming the key to add. With ``jobs.multi_cost_center`` the result has one
    entry per distinct cost center (configured order); otherwise exactly one.
    """
    cfg = rules.cost_centers
    record = job_record(job)
    if cfg.source == "office":
        office = job.assigned_office
        if office is None:
            if cfg.default:
                return [cfg.default]
            raise MappingError(
                record,
                "cost center",
                "the job has no assigned office and "
                f"{_section(connection, 'cost_centers')} has no default",
            )
        cc = _lookup(cfg.by_office, str(office.id))
        if cc is None and office.name:
            cc = _lookup(cfg.by_office, office.name)
        if cc is None:
            if cfg.default:
                return [cfg.default]
            raise MappingError(
                record,
                "cost center",
                f"office {office.id} ({office.name or 'no name'}) is not "
                f"mapped in {_section(connection, 'cost_centers.by_office')}; add "
                f'"{office.id}" = "<cost center>" there or set a default',
                value=office.id,
            )
        return [cc]

    lines = [s.strip() for s in service_lines if s and s.strip()]
    primary = (job.service_line or "").strip()
    if primary:
        # the job's own service line is its primary one: it decides in single-CC mode
        lines = [primary, *[s for s in lines if s.upper() != primary.upper()]]
    if not lines:
        if cfg.default:
            return [cfg.default]
        raise MappingError(
            record,
            "cost center",
            "the job has no service line and "
            f"{_section(connection, 'cost_centers')} has no default",
        )
    found: list[str] = []
    for line in lines:
        cc = _lookup(cfg.by_service_line, line)
        if cc is None:
            if not cfg.default:
                raise MappingError(
                    record,
                    "cost center",
                    f"service line {line!r} is not mapped in "
                    f"{_section(connection, 'cost_centers.by_service_line')}; add "
                    f'{line} = "<cost center>" there or set a default',
                    value=line,
                )
            cc = cfg.default
        found.append(cc)
    if rules.jobs.multi_cost_center:
        return _ordered(found, rules)
    return [found[0]]


def price_method(cost_center: str, rules: ConnectionRules) -> str:
    """The job's price method: ``cost_centers.price_method[cc]`` or the default."""
    return rules.cost_centers.price_method.get(cost_center, rules.cost_centers.default_price_method)


# --- tags, office, address ------------------------------------------------------------------------
def parse_project_manager(tags: Sequence[Tag], pattern: str) -> str | None:
    """The project manager code from the first tag matching ``pattern`` (group ``pm``), or None."""
    compiled = re.compile(pattern)
    for tag in tags:
        m = compiled.search(tag.name.strip())
        if m and m.groupdict().get("pm"):
            return m.group("pm").strip() or None
    return None


def office_udf(job: Job) -> str:
    """What goes into UDF1 for the job's assigned office: its name, else its id."""
    office = job.assigned_office
    if office is None:
        return ""
    return (office.name or "").strip() or str(office.id)


def job_description(job: Job) -> str:
    """The text the job is known by: its name, else its description, else its number."""
    for text in (job.name, job.description):
        cleaned = ascii_printable(text or "")
        if cleaned:
            return cleaned
    return f"ServiceTrade job {job.number}"


def job_comment(job: Job) -> str:
    """The full job name for the Spectrum ``Comment`` when ``Job_Description`` had to cut it."""
    full = job_description(job)
    if len(full) <= _DESCRIPTION_MAX:
        return ""
    return full[:_COMMENT_MAX].rstrip()


def _job_type_values(job: Job, rules: JobRules, adjustments: list[str]) -> dict[str, str]:
    target = "Job_Type" if rules.job_type_target == "job_type" else "Contract_Number"
    code = _lookup(rules.job_type_map, job.type)
    if code is None:
        if rules.job_type_map:
            adjustments.append(
                f"job type {job.type!r} has no entry in jobs.job_type_map; {target} left blank"
            )
        return {}
    return {target: code}


# --- AddJob ---------------------------------------------------------------------------------------
def st_job_to_add_job(
    job: Job,
    location: Location,
    *,
    number: str,
    cost_center: str,
    customer_code: str,
    site_id: str,
    rules: ConnectionRules,
    tz: str,
) -> tuple[SpectrumRequest, list[str]]:
    """The ``AddJob`` request for one (job, cost center) and the adjustments made to fit Spectrum.

    ``number`` from ``job_numbers``; ``customer_code`` and ``site_id`` are the codes the ledger
    holds for the job's company and location; ``tz`` is the account's time zone (start date).
    """
    record = job_record(job)
    adjustments: list[str] = []
    description = fit(
        job_description(job), _DESCRIPTION_MAX, label="Job_Description", adjustments=adjustments
    )
    addr = location.address
    street = fit(addr.street if addr else None, 60, label="Address", adjustments=adjustments)
    state = state_code(addr.state if addr else None, label="State", adjustments=adjustments)
    tax = rules.tax
    tax_class = (
        tax.tax_class_by_state.get(state, tax.default_tax_class)
        if state
        else (tax.default_tax_class)
    )
    pm = parse_project_manager(job.tags, rules.jobs.pm_tag_pattern) or ""
    start = ""
    if job.scheduled_date is not None:
        try:
            start = format_date(as_of_date(job.scheduled_date, tz))
        except (ValueError, OverflowError, OSError) as exc:
            raise MappingError(
                record, "scheduledDate", f"is not a usable date: {exc}", value=job.scheduled_date
            ) from exc
    values: dict[str, str] = {
        "Company_Code": rules.company_code,
        "Job_Number": number,
        "Job_Description": description,
        "Division": rules.jobs.division,
        "Address_1": street[:30].rstrip(),
        "Address_2": street[30:60].strip(),
        "City": fit(addr.city if addr else None, 25, label="City", adjustments=adjustments),
        "State": state,
        "Zip_Code": fit(
            addr.postal_code if addr else None, 10, label="Zip_Code", adjustments=adjustments
        ),
        "Phone": phone_digits(location.phone_number, label="Phone", adjustments=adjustments),
        "Project_Manager": fit(pm, 15, label="Project_Manager", adjustments=adjustments),
        "Customer_Code": customer_code,
        "Tax_Class_Code": tax_class,
        "Taxable_Flag": "N" if location.taxable is False else "Y",
        "Price_Method_Code": price_method(cost_center, rules),
        "Est_Start_Date": start,
        "WO_Site": site_id,
        "Cost_Center": cost_center,
        "Status_Code": rules.jobs.status_code,
    }
    values.update(_job_type_values(job, rules.jobs, adjustments))
    if job.status.strip().lower() == "completed" and job.completed_on is not None:
        values["Complete_Date"] = _date(job, "completedOn", job.completed_on, tz)
    if rules.jobs.office_in_udf1:
        values["UDF1"] = fit(office_udf(job), 20, label="UDF1", adjustments=adjustments)
    try:
        return SpectrumRequest(service="AddJob", values=values), adjustments
    except ValueError as exc:
        raise MappingError(record, "AddJob", str(exc)) from exc


def adopt_mismatch(existing: Mapping[str, str | None], request: SpectrumRequest) -> str | None:
    """Why an existing Spectrum job with our number is *not* the one we meant to create, or None.

    After ``AddJob`` answers "already exists" (or a write whose outcome was unknown), the task
    reads the job back. It is ours to adopt only when its customer and WO site are ours; anything
    else is a collision with a job somebody made by hand, which is reported and never overwritten.
    """
    problems = []
    for column in ("Customer_Code", "WO_Site"):
        want = request.values.get(column, "").strip()
        have = (existing.get(column) or "").strip()
        if want and have != want:
            problems.append(f"{column} is {have or 'blank'!r}, expected {want!r}")
    if problems:
        number = request.values.get("Job_Number", "")
        return f"Spectrum job {number} already exists and is not ours: " + "; ".join(problems)
    return None


# --- following ServiceTrade (F21) ----------------------------------------------------------------
#: the ``UpdateJob`` fields a synced job follows (UDF1 goes through ``UpdateJob_UDF``)
FOLLOWED_FIELDS = (
    "Job_Description",
    "Comment",
    "Project_Manager",
    "Est_Start_Date",
    "Complete_Date",
    "Cost_Center",
    "Price_Method_Code",
    "Status_Code",
    "UDF1",
)


def job_status_code(job: Job, rules: JobRules) -> str | None:
    """The Spectrum status a job's ServiceTrade status asks for, or None (leave Spectrum's).

    ``completed`` -> ``jobs.status_on_complete``, ``canceled`` -> ``jobs.status_on_cancel`` (unset
    = leave); any other (open) status -> ``jobs.status_code``, so a reopened job becomes active.
    """
    status = job.status.strip().lower()
    if status == "completed":
        return rules.status_on_complete or None
    if status == "canceled":
        return rules.status_on_cancel or None
    return rules.status_code


def followed_values(
    job: Job, *, cost_center: str | None, rules: ConnectionRules, tz: str
) -> dict[str, str]:
    """What a synced Spectrum job should now hold of the fields it follows (blank = no value).

    ``cost_center`` None: the cost center (and the price method with it) is not followed.
    """
    adjustments: list[str] = []
    values: dict[str, str] = {
        "Job_Description": fit(
            job_description(job), _DESCRIPTION_MAX, label="Job_Description", adjustments=adjustments
        ),
        "Comment": job_comment(job),
        "Project_Manager": fit(
            parse_project_manager(job.tags, rules.jobs.pm_tag_pattern) or "",
            15,
            label="Project_Manager",
            adjustments=adjustments,
        ),
        "Est_Start_Date": _date(job, "scheduledDate", job.scheduled_date, tz),
        "Complete_Date": _date(job, "completedOn", job.completed_on, tz)
        if job.status.strip().lower() == "completed"
        else "",
        "Status_Code": job_status_code(job, rules.jobs) or "",
    }
    if cost_center is not None:
        values["Cost_Center"] = cost_center
        values["Price_Method_Code"] = price_method(cost_center, rules)
    if rules.jobs.office_in_udf1:
        values["UDF1"] = fit(office_udf(job), 20, label="UDF1", adjustments=adjustments)
    return values


def _date(job: Job, field: str, value: int | None, tz: str) -> str:
    if value is None:
        return ""
    try:
        return format_date(as_of_date(value, tz))
    except (ValueError, OverflowError, OSError) as exc:
        raise MappingError(
            job_record(job), field, f"is not a usable date: {exc}", value=value
        ) from exc


def job_changes(sent: Mapping[str, str], wanted: Mapping[str, str]) -> dict[str, str]:
    """The followed fields whose wanted value differs from what Spectrum was last given.

    Blank never clears: a value removed in ServiceTrade leaves Spectrum's as it is (Spectrum reads
    a blank element as "unchanged" anyway), so blanks are not changes.
    """
    return {
        name: value
        for name, value in wanted.items()
        if value and value.strip() != (sent.get(name) or "").strip()
    }


def job_update_requests(
    job_number: str, changes: Mapping[str, str], rules: ConnectionRules
) -> list[SpectrumRequest]:
    """``UpdateJob`` with the changed fields (all others blank = unchanged) and, for UDF1,
    ``UpdateJob_UDF`` ("Change Job UDF"). Empty when nothing changed."""
    out: list[SpectrumRequest] = []
    base = {"Company_Code": rules.company_code, "Job_Number": job_number}
    fields = {k: v for k, v in changes.items() if k != "UDF1" and v}
    try:
        if fields:
            out.append(SpectrumRequest(service="UpdateJob", values={**base, **fields}))
        if changes.get("UDF1"):
            out.append(
                SpectrumRequest(service="UpdateJob_UDF", values={**base, "UDF1": changes["UDF1"]})
            )
    except ValueError as exc:
        raise MappingError(f"Spectrum job {job_number}", "UpdateJob", str(exc)) from exc
    return out


def added_cost_center_numbers(
    st_number: int, plan: Mapping[str, str], cost_centers: Sequence[str], rules: ConnectionRules
) -> dict[str, str]:
    """Job numbers for cost centers a multi-cost-center job gained after it was created.

    Existing numbers never move: a new cost center gets the next ``{index}`` after the job's
    current ones (``{cost_center}`` formats are stable anyway). A number that would repeat an
    existing one is a ``MappingError``.
    """
    out: dict[str, str] = {}
    taken = set(plan.values())
    index = len(plan)
    for cc in cost_centers:
        if cc in plan:
            continue
        index += 1
        number = spectrum_job_number(
            st_number, rules.jobs, multi_cost_center_suffix(index, cc, rules.jobs)
        )
        if number in taken:
            raise MappingError(
                f"job {st_number}",
                "jobs.multi_cost_center_suffix",
                f"the new cost center {cc} would get job number {number}, which the job already "
                "uses; use {cost_center} in the suffix",
                value=number,
            )
        taken.add(number)
        out[cc] = number
    return out


# --- after AddJob ---------------------------------------------------------------------------------
def template_phase_requests(
    job_number: str, phase_rows: Sequence[Mapping[str, str | None]], rules: ConnectionRules
) -> list[SpectrumRequest]:
    """One ``AddPhase`` per phase/cost type of the template job (``GetPhase`` rows, untrimmed).

    Inactive/complete template rows are not copied; duplicates are sent once. AddPhase upserts, so
    sending the list again after a failure part-way is harmless.
    """
    template = rules.jobs.template_job or "template"
    out: list[SpectrumRequest] = []
    seen: set[tuple[str, str]] = set()
    for i, row in enumerate(phase_rows, 1):

        def cell(name: str, row: Mapping[str, str | None] = row) -> str:
            return (row.get(name) or "").strip()

        record = f"template job {template} phase row {i}"
        if cell("Status_Code").upper() not in COPIED_PHASE_STATUSES:
            continue
        phase, cost_type = cell("Phase_Code"), cell("Cost_Type")
        if not phase or not cost_type:
            raise MappingError(
                record,
                "Phase_Code/Cost_Type",
                "is blank in the template job",
                value=(phase, cost_type),
            )
        bad = sorted(set(phase) & _PHASE_FORBIDDEN)
        if bad:
            raise MappingError(
                record,
                "Phase_Code",
                f"{phase!r} contains {''.join(bad)}, which Spectrum refuses in phase codes",
                value=phase,
            )
        if (phase, cost_type) in seen:
            continue
        seen.add((phase, cost_type))
        description = ascii_printable(cell("Description"))[:25].rstrip() or phase[:25]
        values = {
            "Company_Code": rules.company_code,
            "Job_Number": job_number,
            "Phase_Code": phase,
            "Cost_Type": cost_type,
            "Description": description,
            "Price_Method_Code": "J",
            "Unit_of_Measure": cell("Unit_of_Measure"),
            "Status_Code": "A",
        }
        try:
            out.append(SpectrumRequest(service="AddPhase", values=values))
        except ValueError as exc:
            raise MappingError(record, "AddPhase", str(exc)) from exc
    return out


def update_job_request(
    job_number: str, rules: ConnectionRules, *, comment: str = ""
) -> SpectrumRequest | None:
    """``UpdateJob`` setting the OH batch code (when configured) and the comment (when given).

    Every other element stays blank, which Spectrum reads as "leave unchanged". None when there is
    nothing to set.
    """
    oh = rules.jobs.oh_batch_code
    text = ascii_printable(comment)[:_COMMENT_MAX].rstrip()
    if not oh and not text:
        return None
    values = {"Company_Code": rules.company_code, "Job_Number": job_number}
    if oh:
        values["Job_Oh_Batch_Code"] = oh
    if text:
        values["Comment"] = text
    try:
        return SpectrumRequest(service="UpdateJob", values=values)
    except ValueError as exc:
        raise MappingError(f"Spectrum job {job_number}", "UpdateJob", str(exc)) from exc


def oh_batch_request(job_number: str, rules: ConnectionRules) -> SpectrumRequest | None:
    """``UpdateJob`` with only ``Job_Oh_Batch_Code``; None when no OH batch code is configured."""
    if not rules.jobs.oh_batch_code:
        return None
    return update_job_request(job_number, rules)


# --- failures -------------------------------------------------------------------------------------
def job_failure_comment(
    job_id: int, problem: str, fix: str, *, connection: str | None = None
) -> str:
    """The comment stsync leaves on a ServiceTrade job whose Spectrum sync or send failed."""
    where = f" (Spectrum connection {connection})" if connection else ""
    lines = [
        f"stsync could not send this job (id {job_id}) to Spectrum{where}.",
        f"What failed: {problem.strip() or 'unknown error'}",
    ]
    if fix.strip():
        lines.append(f"How to fix: {fix.strip()}")
    lines.append("After fixing, send the job again (Send Job to Spectrum or stsync send-job).")
    return "\n".join(lines)
