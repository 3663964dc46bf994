"""ServiceTrade job -> Spectrum work order mapper (F4, legacy mode): tables and properties."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from clients.errors import MappingError
from clients.servicetrade.models import Job
from clients.spectrum.services import FORBIDDEN_KEY_CHARS, WORK_ORDER_HEADER
from mappers.rules import ConnectionRules
from mappers.work_order import st_job_to_work_order, work_order_contract, work_order_number


def rules(**work_orders: Any) -> ConnectionRules:
    wo: dict[str, Any] = {
        "leading_character": "W",
        "wo_type": "SVC",
        "lead_source": "SERVICETRADE",
        "contract_map": {"77": "K-2024-01"},
    }
    wo.update(work_orders)
    return ConnectionRules.model_validate(
        {"company_code": "ABC", "mode": "work_order", "work_orders": wo}
    )


def make_job(**overrides: Any) -> Job:
    data: dict[str, Any] = {
        "id": 1001,
        "number": 52311,
        "name": "Annual Inspection",
        "type": "inspection",
        "status": "scheduled",
        "description": "Annual sprinkler inspection, all floors",
        "customerPo": "PO-7781",
        "contract": {"id": 77, "name": "Annual"},
    }
    data.update(overrides)
    return Job.model_validate(data)


def send(job: Job | None = None, r: ConnectionRules | None = None, **kw: Any) -> Any:
    args: dict[str, Any] = {
        "customer_code": "C00001",
        "site_id": "S00001",
        "rules": r or rules(),
        "contract_number": "K-2024-01",
    }
    args.update(kw)
    return st_job_to_work_order(job or make_job(), **args)


def test_work_order_golden() -> None:
    req, adjustments = send()
    assert req.service == "WorkOrderHeader"
    assert req.values == {
        "Company_Code": "ABC",
        "WO_Number": "W52311",
        "WO_Reference_Code": "S",
        "WO_Job_Number": "S00001",
        "WO_Job_Division": "SVC",
        "Bill_Customer_Code": "C00001",
        "Contract_Number": "K-2024-01",
        "Customer_PO_Number": "PO-7781",
        "Summary_Description": "Annual sprinkler inspection, all floors",
        "Price_Type": "",
        "Lead_Source": "SERVICETRADE",
    }
    assert adjustments == []


@pytest.mark.parametrize(
    ("leading", "number", "expected"),
    [("W", 52311, "W52311"), ("", 52311, "52311"), ("9", 1, "91"), ("W", 123456789, "W123456789")],
)
def test_work_order_number(leading: str, number: int, expected: str) -> None:
    assert work_order_number(make_job(number=number), rules(leading_character=leading)) == expected


@pytest.mark.parametrize(
    ("leading", "number", "says"),
    [("W", 1234567890, "11 characters"), ("#", 1, "forbids in codes: #"), (" ", 1, "spaces")],
)
def test_work_order_number_refuses(leading: str, number: int, says: str) -> None:
    with pytest.raises(MappingError, match=says) as info:
        work_order_number(make_job(number=number), rules(leading_character=leading))
    assert info.value.field == "WO_Number"


@pytest.mark.parametrize(
    ("contract", "expected"),
    [({"id": 77}, "K-2024-01"), ({"id": 78}, None), (None, None)],
)
def test_work_order_contract(contract: dict[str, Any] | None, expected: str | None) -> None:
    assert work_order_contract(make_job(contract=contract), rules()) == expected


@pytest.mark.parametrize(
    ("overrides", "field", "expected"),
    [
        ({"description": None}, "Summary_Description", "Annual Inspection"),
        ({"description": "  "}, "Summary_Description", "Annual Inspection"),
        ({"description": None, "name": None}, "Summary_Description", ""),
        ({"customerPo": None}, "Customer_PO_Number", ""),
        ({"customerPo": "x" * 25}, "Customer_PO_Number", "x" * 25),
    ],
)
def test_job_fields(overrides: dict[str, Any], field: str, expected: str) -> None:
    req, _ = send(make_job(**overrides))
    assert req.values[field] == expected


def test_rule_fields() -> None:
    req, _ = send(r=rules(price_type="F", lead_source="", wo_type="INSP"), contract_number=None)
    assert req.values["Price_Type"] == "F"
    assert req.values["Lead_Source"] == ""
    assert req.values["WO_Job_Division"] == "INSP"
    assert req.values["Contract_Number"] == ""


def test_long_summary_is_cut_and_reported() -> None:
    req, adjustments = send(make_job(description="word " * 80))
    assert len(req.values["Summary_Description"]) <= 250
    assert any("Summary_Description shortened to 250" in a for a in adjustments)


@pytest.mark.parametrize(
    ("kw", "field", "says"),
    [
        (
            {"job": make_job(customerPo="P" * 26)},
            "Customer_PO_Number",
            "26 characters; Spectrum allows 25",
        ),
        ({"r": rules(wo_type="")}, "WO_Job_Division", r"\[connections.legacy.work_orders\]"),
        ({"customer_code": ""}, "Bill_Customer_Code", "no Spectrum code"),
        ({"site_id": ""}, "WO_Job_Number", "no Spectrum site id"),
        ({"site_id": "S/1"}, "WorkOrderHeader", "WO_Job_Number"),
        ({"customer_code": "c1"}, "WorkOrderHeader", "uppercase"),
        ({"contract_number": "K" * 31}, "WorkOrderHeader", "Contract_Number"),
    ],
)
def test_work_order_errors(kw: dict[str, Any], field: str, says: str) -> None:
    with pytest.raises(MappingError, match=says) as info:
        send(connection="legacy", **kw)
    assert info.value.field == field
    assert str(info.value).startswith("job 52311 (id 1001): ")


def test_resend_after_edit_changes_only_the_edited_fields() -> None:
    before, _ = send()
    after, _ = send(make_job(description="Replace riser valve", customerPo="PO-9000"))
    changed = {k for k in before.values if before.values[k] != after.values[k]}
    assert changed == {"Summary_Description", "Customer_PO_Number"}
    assert before.values["WO_Number"] == after.values["WO_Number"]  # same WO: an update


_text = st.none() | st.text(max_size=300)


@settings(max_examples=300, deadline=None)
@given(
    number=st.integers(min_value=0, max_value=10**12),
    leading=st.sampled_from(["", "W", "#", "9"]),
    description=_text,
    name=_text,
    po=_text,
    contract=st.none() | st.text(max_size=40),
)
def test_only_mapping_errors_escape(
    number: int,
    leading: str,
    description: str | None,
    name: str | None,
    po: str | None,
    contract: str | None,
) -> None:
    job = make_job(number=number, description=description, name=name, customerPo=po)
    try:
        req, _ = send(job, rules(leading_character=leading), contract_number=contract)
    except MappingError:
        return
    for field, value in req.values.items():
        assert len(value) <= WORK_ORDER_HEADER.field(field).max_len
    assert not set(req.values["WO_Number"]) & FORBIDDEN_KEY_CHARS
    assert req.values["WO_Number"].endswith(str(number))
