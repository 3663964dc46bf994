"""Approved ServiceTrade timecards -> Spectrum payroll pre-time (F7). Pure: no I/O, no clock.

One timecard is one technician's approved day (ServiceTrade reference §11, an assumed resource);
each of its entries becomes one ``PreTimeCard`` call (Spectrum takes one record per call):

- **labor**: the Spectrum job of the entry's ServiceTrade job, the phase from the entry's service
  line (``timecards.phase_by_service_line``, else ``timecards.default_phase``), the cost type
  (``timecards.cost_type``), the department from the job's office
  (``timecards.department_by_office``, else ``timecards.default_department``), the hours, the pay
  rate when ``timecards.send_pay_rate``, and the work state from the job location's state.
- **clock**: the hours between clock-in and clock-out, rounded by ``timecards.clock_rounding`` to
  ``timecards.clock_rounding_minutes``, pay type ``timecards.regular_pay_type``; charged to the job
  (default phase, cost type) when the clock pair names one.
- **generic** (PTO, Holiday, ...): the pay type from the entry label (``timecards.pay_types``).

Every row carries the same payroll batch code (the week-ending date formatted with
``timecards.batch_code_format``), the timecard's work date (which must lie inside
``timecards.processing_window``) and, in ``Message``, a deterministic marker of the entry.
``PreTimeCard`` has no unique key, so the marker is how a retry after an ambiguous outcome finds
out whether Spectrum already holds the row (see ``tasks/timecard.py``).

The task resolves everything that needs I/O (the Spectrum job number, the job's office and state,
the employee code's existence) and passes it in; these functions decide what to send.
"""

from __future__ import annotations

import hashlib
from datetime import date, datetime, time, timedelta
from decimal import ROUND_CEILING, ROUND_FLOOR, ROUND_HALF_UP, Decimal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import ValidationError

from clients.errors import MappingError, PrerequisiteMissing, RecordSkipped
from clients.servicetrade.models import (
    ClockEntry,
    GenericEntry,
    LaborEntry,
    Timecard,
)
from clients.spectrum.formats import check_value, format_date, format_decimal
from clients.spectrum.models import SpectrumRequest
from clients.spectrum.services import SERVICES
from mappers.rules import ConnectionRules, TimecardRules

#: The ledger's record type for one timecard entry (the unit that is posted exactly once).
RECORD_TYPE = "timecard_entry"
#: Status a timecard must have to flow to payroll.
APPROVED = "approved"
#: An approved day holds at most this many hours per entry; more is a data error in ServiceTrade.
MAX_ENTRY_HOURS = Decimal(24)
#: Hours are sent with two decimals (Info-Link stores ``Hours_Employee`` as NUMERIC(8,2)).
HOURS_PLACES = Decimal("0.01")
#: ``Message`` is 30 characters (reference §6, Payroll); the marker must fit in it.
MARKER_MAX = 30
#: Readable marker ``ST-<timecard>-<entry>``; when the ids are too long (16-digit ids) the marker is
#: ``STH-`` + 24 hex digits of a sha256 (96 bits: a collision is not a practical concern).
_MARKER_PREFIX = "ST-"
_HASH_PREFIX = "STH-"
_HASH_HEX = 24

_PRE_TIME = SERVICES["PreTimeCard"]
_WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")

Entry = LaborEntry | ClockEntry | GenericEntry


# --- identity ------------------------------------------------------------------------------------
def entry_source_id(timecard_id: int, entry_id: int) -> str:
    """The ledger source id of one entry: ``"<timecard id>:<entry id>"``."""
    return f"{timecard_id}:{entry_id}"


def entry_marker(timecard_id: int, entry_id: int) -> str:
    """The deterministic ``Message`` marker of one entry (≤30 characters, unique per entry).

    ``ST-1042-7`` while the ids fit; ``STH-<24 hex>`` (a sha256 of both ids) when they do not,
    which happens with ServiceTrade's 16-digit ids. The two forms cannot collide: the readable
    one has a digit after ``ST-``, the hashed one an ``H``.
    """
    for what, value in (("timecard id", timecard_id), ("entry id", entry_id)):
        if value < 1:
            raise MappingError(
                f"timecard {timecard_id}", what, f"must be a positive id, got {value}", value=value
            )
    readable = f"{_MARKER_PREFIX}{timecard_id}-{entry_id}"
    if len(readable) <= MARKER_MAX:
        return readable
    digest = hashlib.sha256(f"{timecard_id}:{entry_id}".encode()).hexdigest()
    return f"{_HASH_PREFIX}{digest[:_HASH_HEX]}"


# --- dates and batches ---------------------------------------------------------------------------
def _zone(tz: str, record: str) -> ZoneInfo:
    try:
        return ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise MappingError(record, "timezone", f"{tz!r} is not a known IANA zone") from exc


def work_date_of(timecard: Timecard, tz: str) -> date:
    """The calendar day the timecard covers, in the account's time zone.

    ``workDate`` is midnight local as unix seconds (reference §11); reading it in ``tz`` gives the
    day even when ServiceTrade's midnight is a few seconds off.
    """
    record = f"timecard {timecard.id}"
    zone = _zone(tz, record)
    try:
        return datetime.fromtimestamp(timecard.work_date, zone).date()
    except (OverflowError, OSError, ValueError) as exc:
        raise MappingError(
            record,
            "workDate",
            f"{timecard.work_date} is not a usable unix time",
            value=timecard.work_date,
        ) from exc


def week_ending(work_date: date, rules: TimecardRules) -> date:
    """The last day of the payroll week holding ``work_date`` (``timecards.week_ends_on``)."""
    end = _WEEKDAYS.index(rules.week_ends_on)
    days = (end - work_date.weekday()) % 7
    try:
        return work_date + timedelta(days=days)
    except OverflowError as exc:
        raise MappingError(
            "timecard", "workDate", f"{work_date} has no week-ending date", value=work_date
        ) from exc


def batch_code(work_date: date, rules: TimecardRules) -> str:
    """The payroll batch code: the week-ending date through ``timecards.batch_code_format``.

    Spectrum allows 8 characters and no ``/ * ? " ' > < # , & ~`` in a batch code.
    """
    ending = week_ending(work_date, rules)
    why: str | None
    try:
        code = ending.strftime(rules.batch_code_format)
    except ValueError as exc:
        code, why = rules.batch_code_format, f"is not a strftime pattern ({exc})"
    else:
        why = check_value(_PRE_TIME.field("Batch_Code"), code) if code else "is empty"
    if why:
        raise MappingError(
            f"payroll week ending {ending}",
            "Batch_Code",
            f"{code!r} {why}: fix [connections.<name>.timecards] batch_code_format "
            f"({rules.batch_code_format!r})",
            value=code,
        )
    return code


def catch_up_window(now: datetime, tz: str) -> tuple[datetime, datetime]:
    """The approval window the weekly catch-up re-reads: the past week, in whole local days.

    From local midnight seven days before ``now``'s local date, to ``now``. Consecutive weekly runs
    overlap by the time of day the run starts at (the ledger makes the overlap harmless), and a
    run that starts late still covers every day since the previous one. Both ends are aware
    datetimes in ``tz``; midnight is computed in the zone, so DST weeks are 167 or 169 hours long.
    """
    if now.tzinfo is None:
        raise ValueError("catch_up_window needs an aware datetime (got a naive one)")
    zone = _zone(tz, "catch-up")
    local_now = now.astimezone(zone)
    first_day = local_now.date() - timedelta(days=7)
    start = datetime.combine(first_day, time(0), tzinfo=zone)
    return start, local_now


def sweep_window(
    high_water: int | None, now: int, overlap_s: int, *, first_lookback_s: int = 86_400
) -> tuple[int, int]:
    """The ``updatedAfter``/``updatedBefore`` bounds (unix seconds, inclusive) of one sweep.

    Starts ``overlap_s`` before the stored high-water mark (a record updated while the previous
    sweep ran may carry an older timestamp than that sweep's end); without a mark, the sweep looks
    back ``first_lookback_s``. A mark in the future (clock skew) is clamped to ``now``. The caller
    stores the end as the next high-water mark once the sweep has enqueued everything.
    """
    if overlap_s < 0 or first_lookback_s < 0:
        raise ValueError("overlap_s and first_lookback_s must not be negative")
    start = now - first_lookback_s if high_water is None else min(high_water, now) - overlap_s
    return max(0, start), now


# --- hours ---------------------------------------------------------------------------------------
_ROUNDING = {"nearest": ROUND_HALF_UP, "up": ROUND_CEILING, "down": ROUND_FLOOR}


def _hours_text(hours: Decimal) -> str:
    return format_decimal(hours, 2)


def clock_hours(
    clock_in: int, clock_out: int, rules: TimecardRules, *, record: str = "clock entry"
) -> Decimal:
    """Hours between a clock-in and a clock-out (unix seconds), rounded per the rules.

    The elapsed time is rounded to ``clock_rounding_minutes`` (0 = exact) by ``clock_rounding``
    (``nearest`` rounds a half step up), then expressed in hours with two decimals. The rounding
    applies to the pair's duration, not to each punch, so it does not depend on the time zone.
    """
    if clock_out < clock_in:
        raise MappingError(
            record,
            "clockOut",
            f"clock-out ({clock_out}) is before clock-in ({clock_in})",
            value=clock_out,
        )
    seconds = clock_out - clock_in
    if seconds > MAX_ENTRY_HOURS * 3600:
        raise MappingError(
            record,
            "clockOut",
            f"clock-out is {seconds / 3600:.1f} hours after clock-in; a timecard entry holds at "
            f"most {MAX_ENTRY_HOURS} hours",
            value=clock_out,
        )
    minutes = Decimal(seconds) / 60
    step = rules.clock_rounding_minutes
    if step:
        steps = (minutes / step).quantize(Decimal(1), rounding=_ROUNDING[rules.clock_rounding])
        # a step that does not divide a day could round a long pair past 24 hours
        minutes = min(steps * step, MAX_ENTRY_HOURS * 60)
    return (minutes / 60).quantize(HOURS_PLACES, rounding=ROUND_HALF_UP)


def _entry_hours(record: str, hours: Decimal) -> Decimal:
    if not hours.is_finite():
        raise MappingError(record, "hours", f"{hours} is not a number of hours", value=hours)
    if hours < 0:
        raise MappingError(record, "hours", f"{hours} is negative", value=hours)
    if hours > MAX_ENTRY_HOURS:
        raise MappingError(
            record, "hours", f"{hours} exceeds {MAX_ENTRY_HOURS} hours for one day", value=hours
        )
    return hours.quantize(HOURS_PLACES, rounding=ROUND_HALF_UP)


# --- lookups -------------------------------------------------------------------------------------
def _checked(record: str, element: str, value: str, source: str) -> str:
    """``value`` if Spectrum's layout accepts it for ``element``; else a MappingError naming
    where the value came from."""
    why = check_value(_PRE_TIME.field(element), value)
    if why:
        raise MappingError(record, element, f"{value!r} (from {source}) {why}", value=value)
    return value


def employee_code(timecard: Timecard, *, external_id_key: str, rules: TimecardRules) -> str:
    """The technician's Spectrum employee code.

    ``timecards.employee_map["<ServiceTrade user id>"]`` first (an explicit override, as the
    rules document it), then the user's ``externalIds[external_id_key]``. Neither →
    ``PrerequisiteMissing`` naming the technician: the card stops until someone maps them.
    """
    user = timecard.user
    record = f"timecard {timecard.id}"
    who = (
        f"technician {user.name!r} (ServiceTrade user {user.id})"
        if user.name
        else (f"ServiceTrade user {user.id}")
    )
    mapped = rules.employee_map.get(str(user.id), "").strip()
    if mapped:
        return _checked(record, "Employee_Code", mapped, f"timecards.employee_map[{user.id!r}]")
    external = (user.external_ids.get(external_id_key) or "").strip()
    if external:
        return _checked(record, "Employee_Code", external, f"user externalIds[{external_id_key!r}]")
    raise PrerequisiteMissing(
        f"{record}: {who} has no Spectrum employee code: set externalIds[{external_id_key!r}] on "
        f'the user in ServiceTrade or add "{user.id}" to '
        "[connections.<name>.timecards.employee_map]",
        field="Employee_Code",
        value=user.id,
        waits_on=f"user:{user.id}",
    )


def pay_type_for_label(label: str, rules: TimecardRules, *, record: str = "generic entry") -> str:
    """The pay type of a generic entry's label (``timecards.pay_types``).

    An exact match wins; otherwise a match ignoring case and surrounding spaces, if exactly one
    configured label fits. Unknown → ``MappingError`` naming the label and the known ones.
    """
    found = rules.pay_types.get(label)
    if found is None:
        wanted = label.strip().casefold()
        hits = [v for k, v in rules.pay_types.items() if k.strip().casefold() == wanted]
        found = hits[0] if len(set(hits)) == 1 else None
    if not found:
        known = ", ".join(sorted(rules.pay_types)) or "none configured"
        raise MappingError(
            record,
            "label",
            f"label {label!r} has no pay type in [connections.<name>.timecards.pay_types] "
            f"(known: {known})",
            value=label,
        )
    return _checked(record, "Pay_Type", found, f"timecards.pay_types[{label!r}]")


def phase_for(entry: LaborEntry, rules: TimecardRules, *, record: str) -> str:
    """The phase (cost code) of a labor entry: by service line abbreviation, else the default."""
    abbr = (entry.service_line.abbr or "").strip() if entry.service_line else ""
    if abbr and abbr in rules.phase_by_service_line:
        return _checked(
            record,
            "Phase_Code",
            rules.phase_by_service_line[abbr],
            f"timecards.phase_by_service_line[{abbr!r}]",
        )
    if rules.default_phase:
        return _checked(record, "Phase_Code", rules.default_phase, "timecards.default_phase")
    shown = f"service line {abbr!r} is not mapped" if abbr else "the entry has no service line"
    raise MappingError(
        record,
        "Phase_Code",
        f"{shown} in [connections.<name>.timecards.phase_by_service_line] and "
        "timecards.default_phase is empty",
        value=abbr or None,
    )


def department_for(office_id: int | None, rules: TimecardRules, *, record: str) -> str:
    """Department code from the job's office, else the default; empty lets Spectrum use the
    employee's own department."""
    if office_id is not None and str(office_id) in rules.department_by_office:
        return _checked(
            record,
            "Department_Code",
            rules.department_by_office[str(office_id)],
            f"timecards.department_by_office[{str(office_id)!r}]",
        )
    return _checked(
        record, "Department_Code", rules.default_department, "timecards.default_department"
    )


# --- the request ---------------------------------------------------------------------------------
def timecard_entry_to_pretime(
    timecard: Timecard,
    entry: Entry,
    *,
    employee_code: str,
    job_number: str | None,
    job_state: str | None,
    office_id: int | None,
    rules: ConnectionRules,
    tz: str,
    company_code: str | None = None,
) -> SpectrumRequest:
    """The ``PreTimeCard`` request of one entry of an approved timecard.

    ``job_number`` is the Spectrum job of the entry's ServiceTrade job (the task syncs the job
    first), ``job_state`` that job location's state, ``office_id`` its assigned office (the
    department comes from it, for every entry kind); all None for entries without a job.
    ``company_code`` defaults to the connection's.

    Raises ``RecordSkipped`` for a timecard that is not approved or an entry of zero hours,
    ``PrerequisiteMissing`` for a labor entry whose job has no Spectrum job yet, and
    ``MappingError`` naming the entry and the field for anything else the rules cannot satisfy.
    """
    tr = rules.timecards
    record = f"timecard {timecard.id} entry {entry.id}"
    if timecard.status != APPROVED:
        raise RecordSkipped(
            f"timecard {timecard.id} is {timecard.status!r}, only approved time goes to payroll",
            field="status",
            value=timecard.status,
        )
    day = work_date_of(timecard, tz)
    if not tr.processing_window.contains(day):
        raise MappingError(
            record,
            "Work_Date",
            f"{day} is outside the payroll processing window ({tr.processing_window.describe()}, "
            "[connections.<name>.timecards.processing_window]); open the period in Spectrum and "
            "in the config, then replay",
            value=day,
        )
    if not employee_code.strip():
        raise MappingError(
            record, "Employee_Code", "is empty; the technician needs a Spectrum employee code"
        )
    values: dict[str, str] = {
        "Company_Code": company_code or rules.company_code,
        "Employee_Code": _checked(record, "Employee_Code", employee_code, "the employee lookup"),
        "Batch_Code": batch_code(day, tr),
        "Pay_Type": _checked(record, "Pay_Type", tr.regular_pay_type, "timecards.regular_pay_type"),
        "Work_Date": format_date(day),
        "Message": entry_marker(timecard.id, entry.id),
    }

    if isinstance(entry, LaborEntry):
        hours = _entry_hours(record, entry.hours)
        values.update(_job_values(record, entry.job.id, job_number, job_state, office_id, tr))
        values["Phase_Code"] = phase_for(entry, tr, record=record)
        if tr.send_pay_rate and entry.pay_rate is not None:
            values["Pay_Rate"] = _pay_rate(record, entry.pay_rate)
    elif isinstance(entry, ClockEntry):
        hours = clock_hours(entry.clock_in, entry.clock_out, tr, record=record)
        if entry.job is not None:
            values.update(_job_values(record, entry.job.id, job_number, job_state, office_id, tr))
            if not tr.default_phase:
                raise MappingError(
                    record,
                    "Phase_Code",
                    f"the clock pair is on job {entry.job.number or entry.job.id} but "
                    "timecards.default_phase is empty, so its time has no cost code",
                )
            values["Phase_Code"] = _checked(
                record, "Phase_Code", tr.default_phase, "timecards.default_phase"
            )
        else:
            values["Department_Code"] = department_for(office_id, tr, record=record)
    else:
        hours = _entry_hours(record, entry.hours)
        values["Pay_Type"] = pay_type_for_label(entry.label, tr, record=record)
        values["Department_Code"] = department_for(office_id, tr, record=record)

    if hours == 0:
        raise RecordSkipped(f"{record}: 0 hours, nothing to post", field="hours", value=hours)
    values["Hours_Employee"] = _hours_text(hours)
    return _request(record, {k: v for k, v in values.items() if v != ""})


def _job_values(
    record: str,
    st_job_id: int,
    job_number: str | None,
    job_state: str | None,
    office_id: int | None,
    tr: TimecardRules,
) -> dict[str, str]:
    if not job_number:
        raise PrerequisiteMissing(
            f"{record}: ServiceTrade job {st_job_id} has no Spectrum job yet; sync the job first",
            field="Job_Number",
            value=st_job_id,
        )
    state = (job_state or "").strip().upper()
    return {
        "Job_Number": _checked(record, "Job_Number", job_number, f"job {st_job_id}"),
        "Cost_Type": _checked(record, "Cost_Type", tr.cost_type, "timecards.cost_type"),
        "Department_Code": department_for(office_id, tr, record=record),
        "State": _checked(record, "State", state, f"the location state of job {st_job_id}"),
    }


def _pay_rate(record: str, rate: Decimal) -> str:
    # Pay_Rate holds 12 characters: anything from 10^8 up cannot be written (and would overflow
    # the decimal context when rounded), so it is refused by value, before formatting
    if not rate.is_finite() or rate < 0 or rate >= Decimal("1e8"):
        raise MappingError(record, "payRate", f"{rate} is not a usable pay rate", value=rate)
    text = format_decimal(rate, 4)
    return _checked(record, "Pay_Rate", text, "the entry's payRate")


def _request(record: str, values: dict[str, str]) -> SpectrumRequest:
    try:
        return SpectrumRequest(service="PreTimeCard", values=values)
    except ValidationError as exc:
        # The checks above should have caught it; the layout is the last word either way.
        problems = "; ".join(e["msg"].removeprefix("Value error, ") for e in exc.errors())
        raise MappingError(record, "PreTimeCard", problems) from exc
