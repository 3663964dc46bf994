"""Approved timecard entries -> PreTimeCard (F7): tables for every entry kind and pay type, plus
property tests (only the project's typed errors escape; every request fits the layout)."""

from __future__ import annotations

import hashlib
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from clients.errors import MappingError, PrerequisiteMissing, RecordSkipped, SyncError
from clients.servicetrade.models import ClockEntry, GenericEntry, LaborEntry, Timecard
from clients.spectrum.formats import parse_date, parse_number
from clients.spectrum.models import SpectrumRequest
from mappers.rules import ConnectionRules, DateWindow, TimecardRules
from mappers.timecard import (
    batch_code,
    catch_up_window,
    clock_hours,
    employee_code,
    entry_marker,
    entry_source_id,
    pay_type_for_label,
    sweep_window,
    timecard_entry_to_pretime,
    week_ending,
    work_date_of,
)

TZ = "America/New_York"
NY = ZoneInfo(TZ)

TIMECARDS = TimecardRules(
    batch_code_format="%Y%m%d",
    week_ends_on="sun",
    regular_pay_type="R",
    pay_types={"PTO": "V", "Holiday": "H", "Sick": "S"},
    phase_by_service_line={"SP": "100", "FA": "200", "EX": "300"},
    default_phase="100",
    cost_type="L",
    department_by_office={"11": "10", "12": "20"},
    default_department="10",
    clock_rounding_minutes=15,
    clock_rounding="nearest",
)
RULES = ConnectionRules(company_code="ABC", timecards=TIMECARDS)


def rules_with(**changes: Any) -> ConnectionRules:
    return RULES.model_copy(update={"timecards": TIMECARDS.model_copy(update=changes)})


def midnight(d: date) -> int:
    return int(datetime(d.year, d.month, d.day, tzinfo=NY).timestamp())


WORK_DAY = date(2026, 11, 18)  # a Wednesday; the week ends Sunday 2026-11-22


def card(*entries: dict[str, Any], **over: Any) -> Timecard:
    raw: dict[str, Any] = {
        "id": 501,
        "status": "approved",
        "approvedOn": midnight(WORK_DAY) + 86_400,
        "workDate": midnight(WORK_DAY),
        "user": {"id": 7, "name": "Sam Tech", "externalIds": {"spectrum": "E0007"}},
        "entries": list(entries),
    }
    raw.update(over)
    return Timecard.model_validate(raw)


LABOR = {
    "id": 11,
    "kind": "labor",
    "job": {"id": 1001, "number": 52311},
    "serviceLine": {"id": 5, "abbr": "SP"},
    "hours": 2.5,
    "payRate": 42.0,
}
CLOCK_IN = midnight(WORK_DAY) + 7 * 3600
CLOCK = {
    "id": 12,
    "kind": "clock",
    "clockIn": CLOCK_IN,
    "clockOut": CLOCK_IN + 8 * 3600 + 420,
    "job": {"id": 1001, "number": 52311},
}
GENERIC = {"id": 13, "kind": "generic", "label": "PTO", "hours": 8}


def pretime(
    tc: Timecard, rules: ConnectionRules = RULES, *, entry: int = 0, **over: Any
) -> SpectrumRequest:
    kwargs: dict[str, Any] = {
        "employee_code": "E0007",
        "job_number": "T52311",
        "job_state": "nc",
        "office_id": 11,
        "rules": rules,
        "tz": TZ,
    }
    kwargs.update(over)
    return timecard_entry_to_pretime(tc, tc.entries[entry], **kwargs)


# --- markers -------------------------------------------------------------------------------------
def test_marker_is_readable_when_the_ids_fit() -> None:
    assert entry_marker(1042, 7) == "ST-1042-7"
    assert entry_source_id(1042, 7) == "1042:7"


def test_marker_of_16_digit_ids_is_a_short_hash() -> None:
    tc, e = 2687264638045377, 2687264638045399
    marker = entry_marker(tc, e)
    expected = "STH-" + hashlib.sha256(f"{tc}:{e}".encode()).hexdigest()[:24]
    assert marker == expected
    assert len(marker) <= 30
    assert entry_marker(tc, e) == marker  # deterministic
    assert entry_marker(tc, e + 1) != marker


def test_marker_readable_while_it_fits_even_with_one_long_id() -> None:
    assert entry_marker(2687264638045377, 3) == "ST-2687264638045377-3"


@pytest.mark.parametrize(("tc", "e"), [(0, 1), (1, 0), (-5, 3)])
def test_marker_refuses_non_positive_ids(tc: int, e: int) -> None:
    with pytest.raises(MappingError, match="positive id"):
        entry_marker(tc, e)


ids = st.one_of(st.integers(1, 10**6), st.integers(10**15, 2**63 - 1))


@given(a=st.tuples(ids, ids), b=st.tuples(ids, ids))
def test_markers_are_unique_per_entry_and_fit(a: tuple[int, int], b: tuple[int, int]) -> None:
    ma, mb = entry_marker(*a), entry_marker(*b)
    assert len(ma) <= 30
    assert ma.startswith("ST")
    assert (ma == mb) == (a == b)


# --- weeks and batches ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("day", "ends_on", "expected"),
    [
        (date(2026, 11, 16), "sun", date(2026, 11, 22)),  # Monday
        (date(2026, 11, 22), "sun", date(2026, 11, 22)),  # the Sunday itself
        (date(2026, 11, 23), "sun", date(2026, 11, 29)),
        (date(2026, 11, 18), "fri", date(2026, 11, 20)),
        (date(2026, 11, 21), "fri", date(2026, 11, 27)),  # Saturday rolls to next Friday
        (date(2026, 12, 29), "sat", date(2027, 1, 2)),  # across the year end
    ],
)
def test_week_ending(day: date, ends_on: str, expected: date) -> None:
    assert week_ending(day, TIMECARDS.model_copy(update={"week_ends_on": ends_on})) == expected


@given(
    day=st.dates(max_value=date(9999, 12, 20)),
    ends_on=st.sampled_from(["mon", "tue", "wed", "thu", "fri", "sat", "sun"]),
)
def test_week_ending_is_the_configured_weekday_within_six_days(day: date, ends_on: str) -> None:
    end = week_ending(day, TIMECARDS.model_copy(update={"week_ends_on": ends_on}))
    assert end.strftime("%a").lower()[:3] == ends_on
    assert timedelta(0) <= end - day < timedelta(days=7)


@pytest.mark.parametrize(
    ("fmt", "expected"),
    [("%Y%m%d", "20261122"), ("PR%y%m%d", "PR261122"), ("W%V", "W47")],
)
def test_batch_code_from_the_week_ending_date(fmt: str, expected: str) -> None:
    assert batch_code(WORK_DAY, TIMECARDS.model_copy(update={"batch_code_format": fmt})) == expected


@pytest.mark.parametrize(
    ("fmt", "why"),
    [("%Y-%m-%d", "8"), ("%m/%d/%y", "forbids"), ("", "empty"), ("ST#%y%m", "forbids")],
)
def test_bad_batch_code_format_names_the_key(fmt: str, why: str) -> None:
    with pytest.raises(MappingError, match="batch_code_format") as err:
        batch_code(WORK_DAY, TIMECARDS.model_copy(update={"batch_code_format": fmt}))
    assert why in str(err.value)


# --- clock hours ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("seconds", "minutes", "mode", "expected"),
    [
        (8 * 3600, 0, "nearest", "8.00"),
        (80 * 60, 0, "nearest", "1.33"),  # exact: 1h20m
        (8 * 3600 + 7 * 60, 15, "nearest", "8.00"),
        (8 * 3600 + 7 * 60 + 30, 15, "nearest", "8.25"),  # a half step rounds up
        (8 * 3600 + 8 * 60, 15, "nearest", "8.25"),
        (8 * 3600 + 60, 15, "up", "8.25"),
        (8 * 3600 + 14 * 60, 15, "down", "8.00"),
        (8 * 3600 + 15 * 60, 15, "down", "8.25"),
        (50 * 60, 6, "nearest", "0.80"),
        (4 * 60, 15, "nearest", "0.00"),
        (0, 15, "up", "0.00"),
        (24 * 3600, 0, "nearest", "24.00"),
        (24 * 3600 - 60, 7, "nearest", "24.00"),  # 206 steps of 7 min would be 24.03 h
    ],
)
def test_clock_hours(seconds: int, minutes: int, mode: str, expected: str) -> None:
    rules = TIMECARDS.model_copy(update={"clock_rounding_minutes": minutes, "clock_rounding": mode})
    assert clock_hours(CLOCK_IN, CLOCK_IN + seconds, rules) == Decimal(expected)


def test_clock_out_before_clock_in_is_a_mapping_error() -> None:
    with pytest.raises(MappingError, match="clockOut: clock-out .* is before clock-in"):
        clock_hours(CLOCK_IN, CLOCK_IN - 1, TIMECARDS, record="timecard 1 entry 2")


def test_clock_pair_longer_than_a_day_is_a_mapping_error() -> None:
    with pytest.raises(MappingError, match="at most 24 hours"):
        clock_hours(CLOCK_IN, CLOCK_IN + 24 * 3600 + 1, TIMECARDS)


@given(seconds=st.integers(0, 24 * 3600), step=st.integers(1, 60))
def test_clock_rounding_brackets_the_exact_time(seconds: int, step: int) -> None:
    def hours(mode: str, minutes: int) -> Decimal:
        rules = TIMECARDS.model_copy(
            update={"clock_rounding_minutes": minutes, "clock_rounding": mode}
        )
        return clock_hours(CLOCK_IN, CLOCK_IN + seconds, rules)

    down, near, up, exact = (
        hours("down", step),
        hours("nearest", step),
        hours("up", step),
        hours("nearest", 0),
    )
    cent = Decimal("0.01")
    assert down <= exact + cent
    assert exact <= up + cent
    assert down <= near <= up
    assert up - down <= Decimal(step) / 60 + cent
    assert abs(near - exact) <= Decimal(step) / 120 + cent


# --- employee ------------------------------------------------------------------------------------
def test_employee_code_from_external_ids() -> None:
    assert employee_code(card(), external_id_key="spectrum", rules=TIMECARDS) == "E0007"


def test_employee_map_overrides_external_ids() -> None:
    rules = TIMECARDS.model_copy(update={"employee_map": {"7": "E0099"}})
    assert employee_code(card(), external_id_key="spectrum", rules=rules) == "E0099"


def test_employee_from_map_when_user_has_no_external_id() -> None:
    tc = card(user={"id": 8, "name": "Kim", "externalIds": {"other": "X"}})
    rules = TIMECARDS.model_copy(update={"employee_map": {"8": "E0008"}})
    assert employee_code(tc, external_id_key="spectrum", rules=rules) == "E0008"


def test_no_employee_is_a_prerequisite_naming_the_technician() -> None:
    tc = card(user={"id": 9, "name": "Lee Newhire", "externalIds": {"spectrum": "  "}})
    with pytest.raises(PrerequisiteMissing) as err:
        employee_code(tc, external_id_key="spectrum", rules=TIMECARDS)
    msg = str(err.value)
    for part in (
        "timecard 501",
        "'Lee Newhire'",
        "user 9",
        "employee_map",
        "externalIds['spectrum']",
    ):
        assert part in msg


@pytest.mark.parametrize("code", ["E000000000012", "E/7"])
def test_unusable_employee_code_is_a_mapping_error(code: str) -> None:
    tc = card(user={"id": 7, "name": "Sam", "externalIds": {"spectrum": code}})
    with pytest.raises(MappingError, match="Employee_Code"):
        employee_code(tc, external_id_key="spectrum", rules=TIMECARDS)


# --- PreTimeCard: labor --------------------------------------------------------------------------
def test_labor_entry() -> None:
    req = pretime(card(LABOR))
    assert req.service == "PreTimeCard"
    assert req.values == {
        "Company_Code": "ABC",
        "Employee_Code": "E0007",
        "Batch_Code": "20261122",
        "Pay_Type": "R",
        "Work_Date": "11/18/2026",
        "Message": "ST-501-11",
        "Job_Number": "T52311",
        "Phase_Code": "100",
        "Cost_Type": "L",
        "Department_Code": "10",
        "State": "NC",
        "Hours_Employee": "2.5",
        "Pay_Rate": "42",
    }


@pytest.mark.parametrize(
    ("service_line", "office", "phase", "department"),
    [
        ({"id": 6, "abbr": "FA"}, 12, "200", "20"),
        ({"id": 7, "abbr": "EX"}, 11, "300", "10"),
        ({"id": 8, "abbr": "KS"}, 99, "100", "10"),  # unmapped -> defaults
        (None, None, "100", "10"),
    ],
)
def test_labor_phase_and_department(
    service_line: dict[str, Any] | None, office: int | None, phase: str, department: str
) -> None:
    req = pretime(card({**LABOR, "serviceLine": service_line}), office_id=office)
    assert (req.values["Phase_Code"], req.values["Department_Code"]) == (phase, department)


def test_unmapped_service_line_without_default_phase_names_it() -> None:
    rules = rules_with(default_phase="")
    with pytest.raises(MappingError, match=r"entry 11: Phase_Code: service line 'KS' is not"):
        pretime(card({**LABOR, "serviceLine": {"id": 8, "abbr": "KS"}}), rules)


def test_no_department_anywhere_lets_spectrum_use_the_employees() -> None:
    req = pretime(card(LABOR), rules_with(default_department=""), office_id=99)
    assert "Department_Code" not in req.values


@pytest.mark.parametrize(
    ("send", "rate", "expected"),
    [
        (True, 42.125, "42.125"),
        (True, None, None),
        (False, 42.0, None),
        (True, 0, "0"),
    ],
)
def test_pay_rate(send: bool, rate: float | None, expected: str | None) -> None:
    req = pretime(card({**LABOR, "payRate": rate}), rules_with(send_pay_rate=send))
    assert req.values.get("Pay_Rate") == expected


def test_negative_pay_rate_is_refused() -> None:
    with pytest.raises(MappingError, match="payRate"):
        pretime(card({**LABOR, "payRate": -1}))


@pytest.mark.parametrize("rate", [1e24, 100_000_000])
def test_pay_rate_too_large_to_write_is_a_mapping_error(rate: float) -> None:
    # 1e24 overflowed the decimal context while rounding (found by the mapper fuzz test)
    with pytest.raises(MappingError, match="payRate"):
        pretime(card({**LABOR, "payRate": rate}))


def test_labor_without_spectrum_job_is_a_prerequisite() -> None:
    with pytest.raises(PrerequisiteMissing, match="ServiceTrade job 1001 has no Spectrum job"):
        pretime(card(LABOR), job_number=None)


def test_no_job_state_sends_no_state() -> None:
    assert "State" not in pretime(card(LABOR), job_state=None).values


@pytest.mark.parametrize(("hours", "match"), [(-1, "negative"), (24.5, "exceeds 24")])
def test_labor_hours_out_of_range(hours: float, match: str) -> None:
    with pytest.raises(MappingError, match=match):
        pretime(card({**LABOR, "hours": hours}))


def test_labor_hours_keep_two_decimals() -> None:
    assert pretime(card({**LABOR, "hours": "2.3333"})).values["Hours_Employee"] == "2.33"


# --- PreTimeCard: clock --------------------------------------------------------------------------
def test_clock_entry_on_a_job() -> None:
    req = pretime(card(CLOCK))
    assert req.values == {
        "Company_Code": "ABC",
        "Employee_Code": "E0007",
        "Batch_Code": "20261122",
        "Pay_Type": "R",
        "Work_Date": "11/18/2026",
        "Message": "ST-501-12",
        "Job_Number": "T52311",
        "Phase_Code": "100",
        "Cost_Type": "L",
        "Department_Code": "10",
        "State": "NC",
        "Hours_Employee": "8",  # 8h07m to the nearest 15 minutes
    }


def test_clock_entry_without_a_job() -> None:
    req = pretime(card({**CLOCK, "job": None}), job_number=None, job_state=None, office_id=None)
    assert req.values["Hours_Employee"] == "8"
    assert req.values["Pay_Type"] == "R"
    assert req.values["Department_Code"] == "10"
    assert not {"Job_Number", "Phase_Code", "Cost_Type", "State"} & set(req.values)


def test_clock_entry_on_job_needs_a_default_phase() -> None:
    with pytest.raises(MappingError, match="default_phase is empty"):
        pretime(card(CLOCK), rules_with(default_phase=""))


def test_clock_out_before_in_names_the_entry() -> None:
    with pytest.raises(MappingError, match="timecard 501 entry 12: clockOut"):
        pretime(card({**CLOCK, "clockOut": CLOCK_IN - 60}))


def test_clock_pair_rounded_to_zero_is_skipped() -> None:
    with pytest.raises(RecordSkipped, match="0 hours"):
        pretime(card({**CLOCK, "clockOut": CLOCK_IN + 120}))


# --- PreTimeCard: generic ------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("label", "pay_type"),
    [("PTO", "V"), ("Holiday", "H"), ("Sick", "S"), ("pto", "V"), (" holiday ", "H")],
)
def test_generic_pay_type_from_label(label: str, pay_type: str) -> None:
    req = pretime(
        card({**GENERIC, "label": label}), job_number=None, job_state=None, office_id=None
    )
    assert req.values == {
        "Company_Code": "ABC",
        "Employee_Code": "E0007",
        "Batch_Code": "20261122",
        "Pay_Type": pay_type,
        "Work_Date": "11/18/2026",
        "Message": "ST-501-13",
        "Department_Code": "10",
        "Hours_Employee": "8",
    }


def test_unknown_label_names_the_label() -> None:
    with pytest.raises(MappingError) as err:
        pretime(card({**GENERIC, "label": "Bereavement"}))
    msg = str(err.value)
    assert msg.startswith("timecard 501 entry 13: label: label 'Bereavement'")
    assert "Holiday, PTO, Sick" in msg
    assert err.value.value == "Bereavement"


def test_ambiguous_label_spelling_is_not_guessed() -> None:
    rules = TIMECARDS.model_copy(update={"pay_types": {"pto": "V", "PTO ": "P"}})
    with pytest.raises(MappingError, match="label 'Pto'"):
        pay_type_for_label("Pto", rules)


def test_pay_type_too_long_is_refused() -> None:
    rules = rules_with(pay_types={"PTO": "VACATIONPAY1"})
    with pytest.raises(MappingError, match="Pay_Type"):
        pretime(card(GENERIC), rules)


# --- the card ------------------------------------------------------------------------------------
@pytest.mark.parametrize("status", ["submitted", "rejected"])
def test_only_approved_cards_flow(status: str) -> None:
    with pytest.raises(RecordSkipped, match="only approved"):
        pretime(card(LABOR, status=status))


def test_work_date_is_read_in_the_account_time_zone() -> None:
    tc = card(LABOR, workDate=midnight(WORK_DAY))
    assert work_date_of(tc, TZ) == WORK_DAY
    # the same instant is still the previous evening in Los Angeles
    assert work_date_of(tc, "America/Los_Angeles") == WORK_DAY - timedelta(days=1)
    assert pretime(tc, tz="America/Los_Angeles").values["Work_Date"] == "11/17/2026"


def test_unknown_time_zone_is_a_mapping_error() -> None:
    with pytest.raises(MappingError, match="timezone"):
        pretime(card(LABOR), tz="Mars/Olympus")


@pytest.mark.parametrize(
    ("start", "end", "ok"),
    [
        (date(2026, 11, 1), date(2026, 11, 30), True),
        (date(2026, 11, 18), date(2026, 11, 18), True),
        (date(2026, 11, 19), None, False),
        (None, date(2026, 11, 17), False),
    ],
)
def test_processing_window(start: date | None, end: date | None, ok: bool) -> None:
    rules = rules_with(processing_window=DateWindow(start=start, end=end))
    if ok:
        assert pretime(card(LABOR), rules).values["Work_Date"] == "11/18/2026"
    else:
        with pytest.raises(MappingError, match="Work_Date: 2026-11-18 is outside"):
            pretime(card(LABOR), rules)


def test_company_code_can_be_given() -> None:
    assert pretime(card(LABOR), company_code="XYZ").values["Company_Code"] == "XYZ"


def test_bad_job_number_is_a_mapping_error() -> None:
    with pytest.raises(MappingError, match="Job_Number"):
        pretime(card(LABOR), job_number="T/52311")


def test_same_entry_maps_to_the_same_digest_and_an_edit_changes_it() -> None:
    a = pretime(card(LABOR)).digest()
    assert pretime(card(LABOR)).digest() == a
    assert pretime(card({**LABOR, "hours": 3})).digest() != a


# --- windows -------------------------------------------------------------------------------------
def test_catch_up_window_is_the_past_week_in_local_days() -> None:
    now = datetime(2026, 11, 23, 2, 0, tzinfo=NY)  # Monday 02:00
    start, end = catch_up_window(now, TZ)
    assert start == datetime(2026, 11, 16, 0, 0, tzinfo=NY)
    assert end == now
    assert start.utcoffset() == timedelta(hours=-5)


def test_catch_up_window_across_the_dst_change() -> None:
    now = datetime(2026, 11, 2, 2, 0, tzinfo=NY)  # DST ended Sunday 2026-11-01
    start, end = catch_up_window(now, TZ)
    assert start.isoformat() == "2026-10-26T00:00:00-04:00"
    # same-zone subtraction is wall-clock time in Python; the real elapsed time has the extra hour
    assert end.timestamp() - start.timestamp() == timedelta(days=7, hours=3).total_seconds()


def test_catch_up_window_converts_a_utc_now() -> None:
    now = datetime(2026, 11, 23, 3, 0, tzinfo=ZoneInfo("UTC"))  # Sunday 22:00 in New York
    start, _ = catch_up_window(now, TZ)
    assert start == datetime(2026, 11, 15, 0, 0, tzinfo=NY)


def test_catch_up_window_refuses_naive_now() -> None:
    with pytest.raises(ValueError, match="aware"):
        catch_up_window(datetime(2026, 11, 23, 2, 0), TZ)


@pytest.mark.parametrize(
    ("high", "now", "overlap", "expected"),
    [
        (None, 1_000_000, 120, (1_000_000 - 86_400, 1_000_000)),
        (999_000, 1_000_000, 120, (998_880, 1_000_000)),
        (1_200_000, 1_000_000, 120, (999_880, 1_000_000)),  # a mark in the future is clamped
        (50, 1_000, 120, (0, 1_000)),
    ],
)
def test_sweep_window(high: int | None, now: int, overlap: int, expected: tuple[int, int]) -> None:
    assert sweep_window(high, now, overlap) == expected


def test_sweep_window_refuses_negative_overlap() -> None:
    with pytest.raises(ValueError, match="negative"):
        sweep_window(1, 2, -1)


# --- properties ----------------------------------------------------------------------------------
text = st.text(st.characters(codec="utf-8"), max_size=14)
hours = st.one_of(
    st.decimals(min_value=-5, max_value=30, places=3),
    st.sampled_from([Decimal(0), Decimal(8), Decimal("0.004"), Decimal("23.999")]),
)
job_ref = st.fixed_dictionaries({"id": ids, "number": st.integers(1, 10**7)})
labor = st.fixed_dictionaries(
    {
        "id": ids,
        "kind": st.just("labor"),
        "job": job_ref,
        "serviceLine": st.one_of(
            st.none(),
            st.fixed_dictionaries(
                {"id": ids, "abbr": st.one_of(st.none(), st.sampled_from(["SP", "FA", "KS"]), text)}
            ),
        ),
        "hours": hours,
        "payRate": st.one_of(st.none(), st.decimals(min_value=-10, max_value=10**9, places=4)),
    }
)
clock = st.integers(0, 3 * 86_400).flatmap(
    lambda start: st.fixed_dictionaries(
        {
            "id": ids,
            "kind": st.just("clock"),
            "clockIn": st.just(CLOCK_IN + start),
            "clockOut": st.integers(CLOCK_IN + start - 3600, CLOCK_IN + start + 30 * 3600),
            "job": st.one_of(st.none(), job_ref),
        }
    )
)
generic = st.fixed_dictionaries(
    {
        "id": ids,
        "kind": st.just("generic"),
        "label": st.one_of(st.sampled_from(["PTO", "holiday", "Sick", "Bereavement"]), text),
        "hours": hours,
    }
)
cards = st.fixed_dictionaries(
    {
        "id": ids,
        "status": st.sampled_from(["approved"] * 5 + ["submitted"]),
        "workDate": st.one_of(
            st.integers(midnight(date(2025, 12, 1)), midnight(date(2027, 2, 1))),
            st.just(midnight(WORK_DAY)),
            st.integers(-(10**12), 10**12),
        ),
        "user": st.fixed_dictionaries(
            {
                "id": ids,
                "name": st.one_of(st.none(), text),
                "externalIds": st.dictionaries(
                    st.sampled_from(["spectrum", "other"]), text, max_size=2
                ),
            }
        ),
        "entries": st.lists(st.one_of(labor, clock, generic), min_size=1, max_size=3),
    }
)
rule_variants = st.builds(
    lambda fmt, phase, dept, minutes, mode, window, send: rules_with(
        batch_code_format=fmt,
        default_phase=phase,
        default_department=dept,
        clock_rounding_minutes=minutes,
        clock_rounding=mode,
        send_pay_rate=send,
        processing_window=window,
    ),
    st.sampled_from(["%Y%m%d", "%Y%m%d", "%Y-%m-%d", "PR%y%m%d"]),
    st.sampled_from(["", "100", "100", "1-2"]),
    st.sampled_from(["", "10", "10", "DEPT/1"]),
    st.integers(0, 60),
    st.sampled_from(["nearest", "up", "down"]),
    st.sampled_from([DateWindow(), DateWindow(start=date(2026, 1, 1), end=date(2026, 12, 31))]),
    st.booleans(),
)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(
    raw=cards,
    rules=rule_variants,
    job_number=st.one_of(st.sampled_from(["T52311", "J-1 A"]), st.none(), text),
    job_state=st.one_of(st.sampled_from(["NC", "va"]), st.none(), text),
    office=st.one_of(st.none(), st.integers(0, 20)),
    employee=st.one_of(st.sampled_from(["E0007", "42"]), text),
    key=st.sampled_from(["spectrum", "other"]),
    tz=st.sampled_from([TZ, TZ, "UTC", "Pacific/Kiritimati", "Nowhere/Atlantis"]),
)
def test_only_typed_errors_escape_and_every_request_fits(
    raw: dict[str, Any],
    rules: ConnectionRules,
    job_number: str | None,
    job_state: str | None,
    office: int | None,
    employee: str,
    key: str,
    tz: str,
) -> None:
    tc = Timecard.model_validate(raw)
    refusals: list[str] = []
    try:
        code = employee_code(tc, external_id_key=key, rules=rules.timecards)
    except (PrerequisiteMissing, MappingError) as exc:
        refusals.append(str(exc))
    else:
        assert code == code.strip()
        assert 0 < len(code) <= 11
    for entry in tc.entries:
        try:
            req = timecard_entry_to_pretime(
                tc,
                entry,
                employee_code=employee,
                job_number=job_number,
                job_state=job_state,
                office_id=office,
                rules=rules,
                tz=tz,
            )
        except SyncError as exc:
            refusals.append(str(exc))
            continue
        v = req.values
        assert v["Message"] == entry_marker(tc.id, entry.id)
        assert v["Employee_Code"] == employee
        assert Decimal(0) < parse_number(v["Hours_Employee"]) <= Decimal(24)
        day = parse_date(v["Work_Date"])
        assert rules.timecards.processing_window.contains(day)
        assert v["Batch_Code"] == batch_code(day, rules.timecards)
        assert isinstance(entry, LaborEntry | ClockEntry | GenericEntry)
        if isinstance(entry, LaborEntry):
            assert v["Job_Number"] == job_number
        if isinstance(entry, GenericEntry):
            assert "Job_Number" not in v
            assert v["Pay_Type"] in rules.timecards.pay_types.values()
        else:
            assert v["Pay_Type"] == "R"
    assert all(refusals)  # every refusal explains itself


good_hours = st.decimals(min_value=Decimal("0.01"), max_value=24, places=2)
good_entry = st.one_of(
    st.fixed_dictionaries(
        {
            "id": ids,
            "kind": st.just("labor"),
            "job": job_ref,
            "hours": good_hours,
            "serviceLine": st.one_of(
                st.none(),
                st.fixed_dictionaries(
                    {"id": ids, "abbr": st.sampled_from(["SP", "FA", "EX", "KS"])}
                ),
            ),
            "payRate": st.one_of(st.none(), st.decimals(min_value=0, max_value=999, places=2)),
        }
    ),
    st.integers(0, 86_400).flatmap(
        lambda start: st.fixed_dictionaries(
            {
                "id": ids,
                "kind": st.just("clock"),
                "clockIn": st.just(CLOCK_IN + start),
                "clockOut": st.integers(CLOCK_IN + start + 900, CLOCK_IN + start + 24 * 3600),
                "job": st.one_of(st.none(), job_ref),
            }
        )
    ),
    st.fixed_dictionaries(
        {
            "id": ids,
            "kind": st.just("generic"),
            "hours": good_hours,
            "label": st.sampled_from(["PTO", "Holiday", "Sick", "sick"]),
        }
    ),
)


@settings(max_examples=300)
@given(
    entry=good_entry,
    tc_id=ids,
    day=st.dates(min_value=date(2026, 1, 1), max_value=date(2026, 12, 31)),
    office=st.one_of(st.none(), st.sampled_from([11, 12, 99])),
    minutes=st.sampled_from([0, 1, 6, 15]),
    mode=st.sampled_from(["nearest", "up", "down"]),
)
def test_valid_entries_always_map(
    entry: dict[str, Any], tc_id: int, day: date, office: int | None, minutes: int, mode: str
) -> None:
    rules = rules_with(clock_rounding_minutes=minutes, clock_rounding=mode)
    tc = card(entry, id=tc_id, workDate=midnight(day))
    req = pretime(tc, rules, office_id=office)
    v = req.values
    assert v["Work_Date"] == day.strftime("%m/%d/%Y")
    assert v["Batch_Code"] == week_ending(day, rules.timecards).strftime("%Y%m%d")
    assert v["Message"] == entry_marker(tc_id, entry["id"])
    assert v["Department_Code"] == {12: "20"}.get(office or 0, "10")
    if entry["kind"] == "clock":
        exact = Decimal(entry["clockOut"] - entry["clockIn"]) / 3600
        # one rounding step at most, plus the two-decimal quantization
        step = Decimal(minutes) / 60 + Decimal("0.005")
        assert abs(parse_number(v["Hours_Employee"]) - exact) <= step
    else:
        assert parse_number(v["Hours_Employee"]) == entry["hours"]
    if entry["kind"] == "labor":
        sl = entry["serviceLine"]
        assert v["Phase_Code"] == {"FA": "200", "EX": "300"}.get(sl["abbr"] if sl else "", "100")
        assert v["Pay_Rate"] if entry["payRate"] is not None else "Pay_Rate" not in v


def test_mapper_imports_only_models_rules_and_the_standard_library() -> None:
    import ast
    import sys
    from pathlib import Path

    import mappers.timecard

    tree = ast.parse(Path(mappers.timecard.__file__).read_text())
    allowed = (
        "clients.errors",
        "clients.servicetrade.models",
        "clients.spectrum.models",
        "clients.spectrum.services",
        "clients.spectrum.formats",
        "mappers.",
        "pydantic",
        "__future__",
    )
    for node in ast.walk(tree):
        names = (
            [a.name for a in node.names]
            if isinstance(node, ast.Import)
            else ([node.module or ""] if isinstance(node, ast.ImportFrom) else [])
        )
        for name in names:
            top = name.split(".")[0]
            assert top in sys.stdlib_module_names or name.startswith(allowed), name
