"""ServiceTrade job -> Spectrum JC job mapper (F3): one table per rule, plus properties."""

from __future__ import annotations

import ast
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from clients.errors import MappingError, SyncError
from clients.servicetrade.models import Job, Location, Tag
from clients.spectrum.models import SpectrumRequest
from clients.spectrum.services import ADD_JOB, FORBIDDEN_KEY_CHARS
from mappers.job import (
    adopt_mismatch,
    job_comment,
    job_cost_centers,
    job_failure_comment,
    job_numbers,
    job_skip_reason,
    oh_batch_request,
    parse_project_manager,
    price_method,
    spectrum_job_number,
    st_job_to_add_job,
    template_phase_requests,
    update_job_request,
)
from mappers.rules import ConnectionRules, JobRules

TZ = "America/New_York"

BASE_RULES: dict[str, Any] = {
    "company_code": "ABC",
    "tax": {"default_tax_class": "EXEMPT", "tax_class_by_state": {"NC": "NCT", "SC": "SCT"}},
    "cost_centers": {
        "codes": ["100", "200", "300"],
        "source": "service_line",
        "by_service_line": {"SP": "100", "FA": "200", "EX": "300"},
        "by_office": {"11": "100", "Charlotte Office": "200"},
        "default": "",
        "price_method": {"100": "T", "200": "F"},
        "default_price_method": "C",
    },
    "jobs": {
        "number_prefix": "T",
        "job_type_map": {"inspection": "INSP", "repair": "REPAIR"},
        "ignored_types": ["administrative", "Training"],
        "office_in_udf1": True,
        "template_job": "TEMPLATE",
        "oh_batch_code": "OH1",
    },
}


def rules(**overrides: Any) -> ConnectionRules:
    """Connection rules: BASE_RULES with sections merged one level deep."""
    data = {k: (dict(v) if isinstance(v, dict) else v) for k, v in BASE_RULES.items()}
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(data.get(key), dict):
            data[key] = {**data[key], **value}
        else:
            data[key] = value
    return ConnectionRules.model_validate(data)


def make_job(**overrides: Any) -> Job:
    data: dict[str, Any] = {
        "id": 1001,
        "number": 52311,
        "name": "Annual Inspection",
        "type": "inspection",
        "status": "scheduled",
        "description": "Annual sprinkler inspection",
        "customerPo": "PO-7781",
        "customer": {"id": 200, "name": "Burger Bistro Inc"},
        "location": {"id": 820},
        "assignedOffice": {"id": 11, "name": "Durham Office"},
        "serviceLine": "SP",
        "tags": [{"id": 3, "name": "vip"}, {"id": 4, "name": "PM:JSMITH"}],
        "scheduledDate": int(datetime(2026, 3, 2, 1, 30, tzinfo=ZoneInfo("UTC")).timestamp()),
    }
    data.update(overrides)
    return Job.model_validate(data)


def make_location(**overrides: Any) -> Location:
    data: dict[str, Any] = {
        "id": 820,
        "name": "Burger Bistro #12",
        "address": {"street": "1 Main St", "city": "Durham", "state": "nc", "postalCode": "27701"},
        "phoneNumber": "(919) 555-0100",
        "taxable": True,
    }
    data.update(overrides)
    return Location.model_validate(data)


def add_job(
    job: Job | None = None,
    location: Location | None = None,
    r: ConnectionRules | None = None,
    **kw: Any,
) -> tuple[SpectrumRequest, list[str]]:
    args: dict[str, Any] = {
        "number": "T52311",
        "cost_center": "100",
        "customer_code": "C00001",
        "site_id": "S00001",
        "rules": r or rules(),
        "tz": TZ,
    }
    args.update(kw)
    return st_job_to_add_job(job or make_job(), location or make_location(), **args)


# --- skipping -----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("job_type", "status", "skipped", "says"),
    [
        ("inspection", "scheduled", False, ""),
        ("administrative", "new", True, "ignored_types"),
        ("ADMINISTRATIVE", "new", True, "ignored_types"),
        ("training", "new", True, "ignored_types"),  # config "Training": compared case-blind
        ("repair", "canceled", True, "canceled"),
        ("repair", "completed", False, ""),
    ],
)
def test_job_skip_reason(job_type: str, status: str, skipped: bool, says: str) -> None:
    reason = job_skip_reason(make_job(type=job_type, status=status), rules().jobs)
    assert (reason is not None) is skipped
    if reason:
        assert says in reason
        assert "job 52311" in reason


# --- job numbers --------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("jobs", "number", "suffix", "expected"),
    [
        ({"number_prefix": "T"}, 10452, "", "T10452"),
        ({"number_prefix": ""}, 10452, "", "10452"),
        ({"number_prefix": "ST"}, 10452, "-2", "ST10452-2"),
        ({"number_prefix": "T", "number_format": "{number}{prefix}{suffix}"}, 7, "", "7T"),
        (
            {"number_prefix": "J", "number_format": "{prefix}{number:07d}{suffix}"},
            42,
            "",
            "J0000042",
        ),
    ],
)
def test_spectrum_job_number(jobs: dict[str, Any], number: int, suffix: str, expected: str) -> None:
    assert spectrum_job_number(number, JobRules(**jobs), suffix) == expected


@pytest.mark.parametrize(
    ("jobs", "number", "suffix", "says"),
    [
        ({"number_prefix": "TST"}, 12345678, "", "11 characters; Spectrum allows 10"),
        ({"number_prefix": "T"}, 1042, "#1", "forbids in codes: #"),
        ({"number_prefix": "T", "number_format": "{prefix}/{number}{suffix}"}, 1, "", "forbids"),
        ({"number_prefix": "T", "number_format": " {prefix}{number}{suffix}"}, 1, "", "spaces"),
    ],
)
def test_spectrum_job_number_refuses(
    jobs: dict[str, Any], number: int, suffix: str, says: str
) -> None:
    with pytest.raises(MappingError, match=says) as info:
        spectrum_job_number(number, JobRules(**jobs), suffix)
    assert info.value.field == "Job_Number"
    assert f"job {number}" in str(info.value)


@pytest.mark.parametrize(
    ("jobs", "ccs", "expected"),
    [
        ({}, ["100"], {"100": "T52311"}),
        ({"multi_cost_center": True}, ["100"], {"100": "T52311-1"}),
        ({"multi_cost_center": True}, ["100", "300"], {"100": "T52311-1", "300": "T52311-2"}),
        (
            {"multi_cost_center": True, "multi_cost_center_suffix": "{cost_center}"},
            ["100", "300"],
            {"100": "T52311100", "300": "T52311300"},
        ),
    ],
)
def test_job_numbers(jobs: dict[str, Any], ccs: list[str], expected: dict[str, str]) -> None:
    got = job_numbers(52311, ccs, rules(jobs=jobs))
    assert got == expected
    assert list(got) == ccs  # order kept: index n is the n-th cost center


@pytest.mark.parametrize(
    ("jobs", "ccs", "says"),
    [
        ({}, ["100", "200"], "multi_cost_center is off"),
        ({}, [], "no cost center"),
        (
            {"multi_cost_center": True, "multi_cost_center_suffix": "-X"},
            ["100", "200"],
            "same job number",
        ),
        (
            {"multi_cost_center": True, "multi_cost_center_suffix": "{branch}"},
            ["100"],
            "only {index} and {cost_center}",
        ),
        (
            {"multi_cost_center": True, "multi_cost_center_suffix": "-{index}-{cost_center}"},
            ["100"],
            "12 characters; Spectrum allows 10",
        ),
    ],
)
def test_job_numbers_refuses(jobs: dict[str, Any], ccs: list[str], says: str) -> None:
    with pytest.raises(MappingError, match=says):
        job_numbers(52311, ccs, rules(jobs=jobs))


# --- cost centers -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("job_line", "lines", "cc_over", "jobs", "expected"),
    [
        ("SP", [], {}, {}, ["100"]),
        (None, ["FA"], {}, {}, ["200"]),
        (None, ["fa"], {}, {}, ["200"]),  # abbreviations compared case-blind
        ("EX", ["SP", "FA"], {}, {}, ["300"]),  # the job's own line is the primary one
        (None, ["FA", "SP"], {}, {}, ["200"]),  # else the first listed
        (None, ["KS"], {"default": "300"}, {}, ["300"]),  # unmapped -> default
        (None, [], {"default": "300"}, {}, ["300"]),  # no line at all -> default
        (None, ["", "  "], {"default": "200"}, {}, ["200"]),
        # multi-CC: distinct, in the configured order of codes
        ("EX", ["SP", "FA", "SP"], {}, {"multi_cost_center": True}, ["100", "200", "300"]),
        (None, ["FA", "KS"], {"default": "200"}, {"multi_cost_center": True}, ["200"]),
        (None, ["SP"], {}, {"multi_cost_center": True}, ["100"]),
    ],
)
def test_cost_centers_from_service_lines(
    job_line: str | None,
    lines: list[str],
    cc_over: dict[str, Any],
    jobs: dict[str, Any],
    expected: list[str],
) -> None:
    r = rules(cost_centers=cc_over, jobs=jobs)
    assert job_cost_centers(make_job(serviceLine=job_line), lines, r) == expected


def test_unmapped_service_line_names_the_key_to_add() -> None:
    with pytest.raises(MappingError) as info:
        job_cost_centers(make_job(serviceLine=None), ["KS"], rules(), connection="main")
    msg = str(info.value)
    assert "job 52311 (id 1001): cost center: service line 'KS' is not mapped in" in msg
    assert "[connections.main.cost_centers.by_service_line]" in msg
    assert 'KS = "<cost center>"' in msg
    assert info.value.value == "KS"


def test_no_service_line_and_no_default_is_an_error() -> None:
    with pytest.raises(MappingError, match=r"no service line .* has no default"):
        job_cost_centers(make_job(serviceLine=None), [], rules(), connection="main")


@pytest.mark.parametrize(
    ("office", "default", "expected"),
    [
        ({"id": 11, "name": "Durham Office"}, "", ["100"]),  # by id
        ({"id": 12, "name": "Charlotte Office"}, "", ["200"]),  # by name
        ({"id": 12, "name": "charlotte office"}, "", ["200"]),
        ({"id": 99, "name": "Elsewhere"}, "300", ["300"]),  # unmapped -> default
        (None, "300", ["300"]),  # no office -> default
    ],
)
def test_cost_centers_from_office(
    office: dict[str, Any] | None, default: str, expected: list[str]
) -> None:
    r = rules(cost_centers={"source": "office", "default": default})
    # the service lines are ignored when the source is the office
    assert job_cost_centers(make_job(assignedOffice=office), ["FA"], r) == expected


@pytest.mark.parametrize(
    ("office", "says"),
    [
        (
            {"id": 99, "name": "Elsewhere"},
            r"office 99 \(Elsewhere\) is not mapped in "
            r"\[connections.west.cost_centers.by_office\]",
        ),
        (None, r"no assigned office and \[connections.west.cost_centers\] has no default"),
    ],
)
def test_cost_center_office_errors(office: dict[str, Any] | None, says: str) -> None:
    r = rules(cost_centers={"source": "office"})
    with pytest.raises(MappingError, match=says):
        job_cost_centers(make_job(assignedOffice=office), [], r, connection="west")


@pytest.mark.parametrize(("cc", "expected"), [("100", "T"), ("200", "F"), ("300", "C")])
def test_price_method(cc: str, expected: str) -> None:
    assert price_method(cc, rules()) == expected


# --- project manager ----------------------------------------------------------------------------
DEFAULT_PM = JobRules().pm_tag_pattern


@pytest.mark.parametrize(
    ("tags", "pattern", "expected"),
    [
        (["vip", "PM:JSMITH"], DEFAULT_PM, "JSMITH"),
        (["PM:AB", "PM:CD"], DEFAULT_PM, "AB"),  # first matching tag wins
        ([" PM:JS "], DEFAULT_PM, "JS"),
        (["pm:jsmith"], DEFAULT_PM, None),  # the default pattern is case-sensitive
        (["PM:"], DEFAULT_PM, None),
        (["PM:WAYTOOLONGNAME12345"], DEFAULT_PM, None),  # more than 15: no match
        ([], DEFAULT_PM, None),
        (["manager=kim"], r"manager=(?P<pm>\w+)", "kim"),
        (["x", "(?i)"], r"(?i)^pm[-:](?P<pm>\w+)$", None),
        (["Pm-lee"], r"(?i)^pm[-:](?P<pm>\w+)$", "lee"),
    ],
)
def test_parse_project_manager(tags: list[str], pattern: str, expected: str | None) -> None:
    assert parse_project_manager([Tag(name=t) for t in tags], pattern) == expected


# --- AddJob -------------------------------------------------------------------------------------
def test_add_job_golden() -> None:
    req, adjustments = add_job()
    assert req.service == "AddJob"
    assert req.values == {
        "Company_Code": "ABC",
        "Job_Number": "T52311",
        "Job_Description": "Annual Inspection",
        "Division": "",
        "Address_1": "1 Main St",
        "Address_2": "",
        "City": "Durham",
        "State": "NC",
        "Zip_Code": "27701",
        "Phone": "9195550100",
        "Project_Manager": "JSMITH",
        "Customer_Code": "C00001",
        "Tax_Class_Code": "NCT",
        "Taxable_Flag": "Y",
        "Price_Method_Code": "T",
        # 01:30 UTC on 2 March is still 1 March in New York
        "Est_Start_Date": "03/01/2026",
        "WO_Site": "S00001",
        "Cost_Center": "100",
        "Status_Code": "A",
        "Job_Type": "INSP",
        "UDF1": "Durham Office",
    }
    assert adjustments == []


@pytest.mark.parametrize(
    ("location", "tax_class"),
    [
        ({"address": {"state": "SC"}}, "SCT"),
        ({"address": {"state": "VA"}}, "EXEMPT"),  # no state entry -> default
        ({"address": None}, "EXEMPT"),
    ],
)
def test_tax_class_from_location_state(location: dict[str, Any], tax_class: str) -> None:
    req, _ = add_job(location=make_location(**location))
    assert req.values["Tax_Class_Code"] == tax_class


@pytest.mark.parametrize(
    ("target", "job_type", "expected", "adjusted"),
    [
        ("job_type", "repair", {"Job_Type": "REPAIR"}, False),
        ("contract_type", "repair", {"Contract_Number": "REPAIR"}, False),
        ("job_type", "Inspection", {"Job_Type": "INSP"}, False),
        ("job_type", "survey", {}, True),  # unmapped: blank, and said so
    ],
)
def test_job_type_target(
    target: str, job_type: str, expected: dict[str, str], adjusted: bool
) -> None:
    r = rules(jobs={"job_type_target": target})
    req, adjustments = add_job(make_job(type=job_type), r=r)
    got = {k: v for k, v in req.values.items() if k in ("Job_Type", "Contract_Number")}
    assert got == expected
    assert any("job_type_map" in a for a in adjustments) is adjusted


def test_empty_job_type_map_is_not_reported() -> None:
    _, adjustments = add_job(r=rules(jobs={"job_type_map": {}}))
    assert adjustments == []


def test_long_name_is_cut_reported_and_kept_in_comment() -> None:
    name = "Quarterly fire sprinkler inspection, building B"
    job = make_job(name=name)
    req, adjustments = add_job(job)
    assert req.values["Job_Description"] == name[:25].rstrip()
    assert any("Job_Description shortened to 25" in a for a in adjustments)
    assert job_comment(job) == name
    assert job_comment(make_job(name="Short")) == ""


@pytest.mark.parametrize(
    ("name", "description", "expected"),
    [
        (None, "Fix leak", "Fix leak"),
        ("  ", None, "ServiceTrade job 52311"),
        ("Café visit", None, "Cafe visit"),
    ],
)
def test_description_fallbacks(name: str | None, description: str | None, expected: str) -> None:
    req, _ = add_job(make_job(name=name, description=description))
    assert req.values["Job_Description"] == expected


@pytest.mark.parametrize(
    ("office_in_udf1", "office", "udf1"),
    [
        (True, {"id": 11, "name": "Durham Office"}, "Durham Office"),
        (True, {"id": 11}, "11"),
        (True, None, ""),
        (True, {"id": 11, "name": "A very long office name indeed"}, "A very long office n"),
        (False, {"id": 11, "name": "Durham Office"}, None),
    ],
)
def test_office_in_udf1(
    office_in_udf1: bool, office: dict[str, Any] | None, udf1: str | None
) -> None:
    req, _ = add_job(
        make_job(assignedOffice=office), r=rules(jobs={"office_in_udf1": office_in_udf1})
    )
    assert req.values.get("UDF1") == udf1


def test_other_rule_values() -> None:
    r = rules(jobs={"division": "10", "status_code": "I"})
    req, _ = add_job(
        make_job(tags=[], scheduledDate=None), make_location(taxable=False), r=r, cost_center="300"
    )
    assert req.values["Division"] == "10"
    assert req.values["Status_Code"] == "I"
    assert req.values["Taxable_Flag"] == "N"
    assert req.values["Project_Manager"] == ""
    assert req.values["Est_Start_Date"] == ""
    assert req.values["Price_Method_Code"] == "C"
    assert req.values["Cost_Center"] == "300"


def test_long_street_splits_over_two_address_lines() -> None:
    street = "1200 Industrial Parkway Northeast, Building 7"
    req, _ = add_job(location=make_location(address={"street": street, "state": "NC"}))
    assert req.values["Address_1"] == street[:30].rstrip()
    assert req.values["Address_2"] == street[30:].strip()


def test_invalid_values_become_mapping_errors_naming_the_job() -> None:
    with pytest.raises(MappingError) as info:
        add_job(r=rules(jobs={"division": "AB"}))
    assert "job 52311 (id 1001): AddJob:" in str(info.value)
    assert "Division" in str(info.value)


# --- adopt --------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("existing", "mismatch"),
    [
        ({"Customer_Code": "C00001", "WO_Site": "S00001"}, None),
        ({"Customer_Code": "C00001   ", "WO_Site": " S00001"}, None),  # padded CHAR columns
        ({"Customer_Code": "C00002", "WO_Site": "S00001"}, "Customer_Code is 'C00002'"),
        ({"Customer_Code": "C00001", "WO_Site": None}, "WO_Site is 'blank'"),
        ({}, "Customer_Code is 'blank'"),
    ],
)
def test_adopt_mismatch(existing: dict[str, str | None], mismatch: str | None) -> None:
    req, _ = add_job()
    got = adopt_mismatch(existing, req)
    if mismatch is None:
        assert got is None
    else:
        assert got is not None
        assert mismatch in got
        assert "T52311 already exists and is not ours" in got


# --- template phases ----------------------------------------------------------------------------
def test_template_phases() -> None:
    rows: list[dict[str, str | None]] = [
        {
            "Job_Number": "TEMPLATE  ",
            "Phase_Code": "100       ",
            "Cost_Type": "L  ",
            "Description": "Labor",
            "Status_Code": "A",
            "Unit_of_Measure": "HR ",
            "Cost_Center": "999",
        },
        {"Phase_Code": "100", "Cost_Type": "M", "Description": "Material", "Status_Code": ""},
        {"Phase_Code": "100", "Cost_Type": "L", "Description": "Labor again", "Status_Code": "A"},
        {"Phase_Code": "200", "Cost_Type": "L", "Description": "Old", "Status_Code": "I"},
        {"Phase_Code": "300", "Cost_Type": "L", "Description": "Done", "Status_Code": "C"},
        {"Phase_Code": "400", "Cost_Type": "S", "Description": None, "Status_Code": "A"},
    ]
    reqs = template_phase_requests("T52311", rows, rules())
    assert [r.values for r in reqs] == [
        {
            "Company_Code": "ABC",
            "Job_Number": "T52311",
            "Phase_Code": "100",
            "Cost_Type": "L",
            "Description": "Labor",
            "Price_Method_Code": "J",
            "Unit_of_Measure": "HR",
            "Status_Code": "A",
        },
        {
            "Company_Code": "ABC",
            "Job_Number": "T52311",
            "Phase_Code": "100",
            "Cost_Type": "M",
            "Description": "Material",
            "Price_Method_Code": "J",
            "Unit_of_Measure": "",
            "Status_Code": "A",
        },
        {
            "Company_Code": "ABC",
            "Job_Number": "T52311",
            "Phase_Code": "400",
            "Cost_Type": "S",
            "Description": "400",
            "Price_Method_Code": "J",
            "Unit_of_Measure": "",
            "Status_Code": "A",
        },
    ]
    assert all(r.service == "AddPhase" for r in reqs)
    assert template_phase_requests("T52311", [], rules()) == []


@pytest.mark.parametrize(
    ("row", "says"),
    [
        ({"Phase_Code": "10-100", "Cost_Type": "L"}, "contains -"),
        ({"Phase_Code": "", "Cost_Type": "L"}, "blank in the template job"),
        ({"Phase_Code": "100", "Cost_Type": None}, "blank in the template job"),
        ({"Phase_Code": "100", "Cost_Type": "LABOR"}, "Cost_Type"),
    ],
)
def test_template_phase_errors(row: dict[str, str | None], says: str) -> None:
    with pytest.raises(MappingError, match=says) as info:
        template_phase_requests("T52311", [row], rules())
    assert "template job TEMPLATE phase row 1" in str(info.value)


# --- UpdateJob ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("oh", "comment", "expected"),
    [
        ("OH1", "", {"Company_Code": "ABC", "Job_Number": "T1", "Job_Oh_Batch_Code": "OH1"}),
        ("", "Full name", {"Company_Code": "ABC", "Job_Number": "T1", "Comment": "Full name"}),
        (
            "OH1",
            "x" * 200,
            {
                "Company_Code": "ABC",
                "Job_Number": "T1",
                "Job_Oh_Batch_Code": "OH1",
                "Comment": "x" * 125,
            },
        ),
        ("", "", None),
    ],
)
def test_update_job_request(oh: str, comment: str, expected: dict[str, str] | None) -> None:
    req = update_job_request("T1", rules(jobs={"oh_batch_code": oh}), comment=comment)
    assert (req.values if req else None) == expected
    if req:
        assert req.service == "UpdateJob"


def test_oh_batch_request() -> None:
    req = oh_batch_request("T1", rules())
    assert req is not None
    assert req.values == {"Company_Code": "ABC", "Job_Number": "T1", "Job_Oh_Batch_Code": "OH1"}
    assert oh_batch_request("T1", rules(jobs={"oh_batch_code": ""})) is None


# --- failure comment ----------------------------------------------------------------------------
def test_job_failure_comment() -> None:
    text = job_failure_comment(
        1001,
        "Cost center for service line SP is not mapped",
        "add SP to [connections.main.cost_centers.by_service_line]",
        connection="main",
    )
    assert text.splitlines() == [
        "stsync could not send this job (id 1001) to Spectrum (Spectrum connection main).",
        "What failed: Cost center for service line SP is not mapped",
        "How to fix: add SP to [connections.main.cost_centers.by_service_line]",
        "After fixing, send the job again (Send Job to Spectrum or stsync send-job).",
    ]
    assert "How to fix" not in job_failure_comment(1, "boom", "  ")


# --- properties ---------------------------------------------------------------------------------
_text = st.text(max_size=60)
_maybe_text = st.none() | _text
_jobs = st.builds(
    lambda number, name, description, job_type, status, line, tags, office, sched: make_job(
        number=number,
        name=name,
        description=description,
        type=job_type,
        status=status,
        serviceLine=line,
        tags=[{"name": t} for t in tags],
        assignedOffice=office,
        scheduledDate=sched,
    ),
    st.integers(min_value=0, max_value=10**12),
    _maybe_text,
    _maybe_text,
    st.sampled_from(["inspection", "repair", "administrative", "survey"]) | _text,
    st.sampled_from(["new", "scheduled", "canceled"]),
    st.none() | st.sampled_from(["SP", "FA", "EX", "KS", "sp"]) | _text,
    st.lists(_text, max_size=4),
    st.none() | st.fixed_dictionaries({"id": st.integers(1, 2**62), "name": _maybe_text}),
    st.none() | st.integers(min_value=0, max_value=4_102_444_800),
)
_locations = st.builds(
    lambda street, city, state, zipc, phone, taxable: make_location(
        address={"street": street, "city": city, "state": state, "postalCode": zipc},
        phoneNumber=phone,
        taxable=taxable,
    ),
    _maybe_text,
    _maybe_text,
    _maybe_text,
    _maybe_text,
    _maybe_text,
    st.none() | st.booleans(),
)
_rules = st.builds(
    lambda prefix, multi, source, default, target, udf: rules(
        jobs={
            "number_prefix": prefix,
            "multi_cost_center": multi,
            "job_type_target": target,
            "office_in_udf1": udf,
        },
        cost_centers={"source": source, "default": default},
    ),
    st.sampled_from(["", "T", "ST", "JOB"]),
    st.booleans(),
    st.sampled_from(["service_line", "office"]),
    st.sampled_from(["", "300"]),
    st.sampled_from(["job_type", "contract_type"]),
    st.booleans(),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(job=_jobs, location=_locations, r=_rules, lines=st.lists(_text, max_size=3))
def test_only_typed_errors_escape_and_requests_fit(
    job: Job, location: Location, r: ConnectionRules, lines: list[str]
) -> None:
    assume(not job_skip_reason(job, r.jobs))  # a skipped job is never mapped
    try:
        ccs = job_cost_centers(job, lines, r)
        numbers = job_numbers(job.number, ccs, r)
        for cc, number in numbers.items():
            req, _ = st_job_to_add_job(
                job,
                location,
                number=number,
                cost_center=cc,
                customer_code="C00001",
                site_id="S00001",
                rules=r,
                tz=TZ,
            )
            for name, value in req.values.items():
                assert len(value) <= ADD_JOB.field(name).max_len
            assert not set(req.values["Job_Number"]) & FORBIDDEN_KEY_CHARS
            assert req.values["Cost_Center"] in {"100", "200", "300"}
            upd = update_job_request(number, r, comment=job_comment(job))
            assert upd is not None
    except SyncError:
        pass


@given(
    number=st.integers(min_value=0, max_value=10**15),
    prefix=st.sampled_from(["", "T", "ST"]),
    suffix=_text,
)
def test_job_number_is_a_valid_code_or_a_mapping_error(
    number: int, prefix: str, suffix: str
) -> None:
    error: MappingError | None = None
    try:
        got = spectrum_job_number(number, JobRules(number_prefix=prefix), suffix)
    except MappingError as exc:
        error = exc
    if error is not None:
        assert error.field == "Job_Number"
        return
    assert got == f"{prefix}{number}{suffix}"
    assert len(got) <= 10
    assert not set(got) & FORBIDDEN_KEY_CHARS


@given(
    rows=st.lists(
        st.dictionaries(
            st.sampled_from(
                ["Phase_Code", "Cost_Type", "Description", "Status_Code", "Unit_of_Measure"]
            ),
            st.none() | _text,
        ),
        max_size=6,
    )
)
def test_template_phases_only_typed_errors(rows: list[dict[str, str | None]]) -> None:
    try:
        reqs = template_phase_requests("T1", rows, rules())
    except MappingError:
        return
    keys = [(r.values["Phase_Code"], r.values["Cost_Type"]) for r in reqs]
    assert len(keys) == len(set(keys))
    assert all("-" not in phase for phase, _ in keys)


# --- purity -------------------------------------------------------------------------------------
ALLOWED_ROOTS = {
    "__future__",
    "collections",
    "re",
    "clients",
    "mappers",
    "datetime",
    "decimal",
    "typing",
    "pydantic",
    "dataclasses",
    "enum",
}


@pytest.mark.parametrize("module", ["mappers/job.py", "mappers/work_order.py"])
def test_mapper_imports_are_pure(module: str) -> None:
    tree = ast.parse((Path(__file__).parents[2] / module).read_text())
    roots: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            roots |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            roots.add(node.module.split(".")[0])
            if node.module.startswith("clients."):
                assert node.module in {
                    "clients.errors",
                    "clients.servicetrade.models",
                    "clients.spectrum.models",
                    "clients.spectrum.services",
                    "clients.spectrum.formats",
                }, node.module
    assert roots <= ALLOWED_ROOTS, roots - ALLOWED_ROOTS
