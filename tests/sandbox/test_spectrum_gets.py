"""Spectrum simulator: Get services — filters, SuperSelect, sorting, word values (§4–§6, §9.8)."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from clients.spectrum.services import SERVICES
from sandbox.spectrum.db import SpectrumDB
from sandbox.spectrum.superselect import compile_filter
from tests.sandbox.test_spectrum_support import (  # noqa: F401 - fixtures
    AUTH_2,
    call,
    client_fixture,
    db_fixture,
    get_rows,
    put_rows,
)


def jobs(client: TestClient, **params: str) -> list[str]:
    rows = get_rows(call(client, "GetJob", params), "GetJob")
    assert all(r["Error_Code"] == "" for r in rows), rows
    return [r["Job_Number"] for r in rows]


# --- SuperSelect ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expr", "value", "hit"),
    [
        ("", "ANY", True),
        ("ALL", "ANY", True),
        ("*", "ANY", True),
        ("C0*", "C00001", True),
        ("C0*", "D00003", False),
        ("C0000?", "C00001", True),
        ("C0000?", "C000012", False),
        ("C00001,D00003", "D00003", True),
        ("C00001,D00003", "C00002", False),
        ("C00002/D", "C00002", True),
        ("C00002/D", "D00003", True),  # starts with the upper bound
        ("C00002/D", "C00001", False),
        ("C00002/D", "E1", False),
        ("#C00001", "C00001", False),
        ("#C00001", "C00002", True),
        ("#C*", "D00003", True),
        ("#C*,D*", "D00003", False),
        ("A*,C00002/C00009", "C00005", True),
    ],
)
def test_superselect(expr: str, value: str, hit: bool) -> None:
    assert compile_filter(expr)(value) is hit


# --- GetJob --------------------------------------------------------------------------------------


def test_get_job_rows_carry_every_field_then_error_fields(client: TestClient) -> None:
    rows = get_rows(call(client, "GetJob", {}), "GetJob")
    expected = [*SERVICES["GetJob"].row_fields, "Error_Code", "Error_Description", "Error_Column"]
    assert all(list(r) == expected for r in rows)
    t1001 = next(r for r in rows if r["Job_Number"] == "T1001")
    assert t1001["Customer_Code"] == "C00001"
    assert t1001["Company_Code"] == "ABC"
    assert t1001["Cost_Center"] == "100"


def test_get_job_status_filter(client: TestClient) -> None:
    assert jobs(client) == ["T1001", "T1002", "TEMPLATE"]  # blank = Active + Inactive
    assert jobs(client, pStatus_Code="C") == ["T1003"]
    assert jobs(client, pStatus_Code="I") == ["T1002"]
    assert jobs(client, pStatus_Code="A") == ["T1001", "TEMPLATE"]


def test_get_job_superselect_filters_and_exact_cost_center(client: TestClient) -> None:
    assert jobs(client, pCustomer_Code="C00001") == ["T1001"]
    assert jobs(client, pCustomer_Code="C*") == ["T1001", "T1002"]
    assert jobs(client, pCustomer_Code="C*", pStatus_Code="C") == ["T1003"]
    assert jobs(client, pCustomer_Code="#C00001") == ["T1002", "TEMPLATE"]
    assert jobs(client, pDivision="1,2") == ["T1001", "T1002"]
    assert jobs(client, pDivision="2/3") == ["T1001"]
    assert jobs(client, pDivision="2/3", pStatus_Code="C") == ["T1003"]
    assert jobs(client, pProject_Manager="P?T") == ["T1001"]
    assert jobs(client, pCost_Center="200") == ["T1002"]
    assert jobs(client, pCost_Center="2*") == []  # cost center is not SuperSelect


def test_get_job_sort(client: TestClient) -> None:
    assert jobs(client, pSort_By="D") == ["TEMPLATE", "T1002", "T1001"]  # "", "1", "2"
    assert jobs(client, pSort_By="P") == ["TEMPLATE", "T1002", "T1001"]  # "", ALEX, PAT
    assert jobs(client, pSort_By="C") == ["TEMPLATE", "T1001", "T1002"]


def test_get_job_sees_new_jobs_and_only_its_company(client: TestClient) -> None:
    job = {
        "Company_Code": "ABC",
        "Job_Number": "T0500",
        "Taxable_Flag": "N",
        "Price_Method_Code": "T",
    }
    assert put_rows(call(client, "AddJob", job)) == []
    assert jobs(client)[0] == "T0500"
    rows = get_rows(call(client, "GetJob", {}, auth=AUTH_2), "GetJob")
    assert rows == []  # XYZ has no jobs


def test_get_errors_are_rows_with_only_error_fields(client: TestClient) -> None:
    rows = get_rows(call(client, "GetJob", {"pSort_By": "Z", "pStatus_Code": "Q"}), "GetJob")
    assert sorted((r["Error_Code"], r["Error_Column"]) for r in rows) == [
        ("I", "pSort_By"),
        ("I", "pStatus_Code"),
    ]
    for r in rows:
        assert all(v == "" for k, v in r.items() if not k.startswith("Error_"))


def test_get_with_another_companys_code_is_not_authorized(client: TestClient) -> None:
    (row,) = get_rows(call(client, "GetJob", {"pCompany_Code": "XYZ"}), "GetJob")
    assert (row["Error_Code"], row["Error_Column"]) == ("E", "Authorization_ID")


# --- GetPhase ------------------------------------------------------------------------------------


def test_get_phase_filters_and_sorts(client: TestClient) -> None:
    rows = get_rows(call(client, "GetPhase", {"pJob_Number": "TEMPLATE"}), "GetPhase")
    assert [(r["Phase_Code"], r["Cost_Type"]) for r in rows] == [
        ("100", "L"),
        ("100", "M"),
        ("200", "L"),  # 300 is Complete: blank = Active + Inactive
    ]
    assert rows[0]["Description"] == "Sprinkler"
    assert rows[0]["Current_Estimated_Dollars"] == "0.00"
    assert rows[0]["Cost_Center"] == "100"
    rows = get_rows(
        call(client, "GetPhase", {"pJob_Number": "T*", "pCost_Type": "L", "pSort_By": "C"}),
        "GetPhase",
    )
    assert [(r["Job_Number"], r["Phase_Code"]) for r in rows] == [
        ("T1001", "100"),
        ("TEMPLATE", "100"),
        ("TEMPLATE", "200"),
    ]
    rows = get_rows(call(client, "GetPhase", {"pCost_Center": "200"}), "GetPhase")
    assert [r["Phase_Code"] for r in rows] == ["200"]
    rows = get_rows(call(client, "GetPhase", {"pStatus_Code": "C"}), "GetPhase")
    assert [r["Phase_Code"] for r in rows] == ["300"]


# --- GetEmployee ---------------------------------------------------------------------------------


def test_get_employee_filters_and_sorts(client: TestClient) -> None:
    def codes(**params: str) -> list[str]:
        return [
            r["Employee_Code"] for r in get_rows(call(client, "GetEmployee", params), "GetEmployee")
        ]

    assert codes() == ["E001", "E002", "E003"]
    assert codes(pStatus_Type="A") == ["E001", "E002"]
    assert codes(pSort_By="L") == ["E002", "E003", "E001"]  # Able, Moe, Zed
    assert codes(pSort_By="F") == ["E001", "E002", "E003"]  # Amy, Bob, Cy
    assert codes(pSort_By="D") == ["E001", "E003", "E002"]
    assert codes(pCost_Center="200") == ["E002"]
    rows = get_rows(call(client, "GetEmployee", {"pStatus_Type": "A"}), "GetEmployee")
    assert rows[0]["Employee_Name"] == "Zed, Amy"
    assert rows[0]["Department_Code"] == "10"


# --- GetCustomers --------------------------------------------------------------------------------


def test_get_customers_answers_word_values(client: TestClient, db: SpectrumDB) -> None:
    new = {
        "Company_Code": "ABC",
        "Customer_Code": "C00050",
        "Name": "New",
        "Terms_Code": "N",
        "Sales_Tax_Code": "NC",
        "Taxable_Flag": "N",
    }
    assert put_rows(call(client, "AddCustomer", new)) == []
    rows = get_rows(call(client, "GetCustomers", {}), "GetCustomers")
    by_code = {r["Customer_Code"]: r for r in rows}
    assert list(by_code) == ["C00001", "C00050"]  # blank = Active only
    assert by_code["C00001"]["Status"] == "Active"
    assert by_code["C00001"]["Taxable_Flag"] == "No Default"
    assert by_code["C00001"]["Phone_Number"] == "9195550100"
    assert by_code["C00050"]["Taxable_Flag"] == "Non-Taxable"
    rows = get_rows(call(client, "GetCustomers", {"pStatus": "I"}), "GetCustomers")
    assert {r["Customer_Code"]: r["Status"] for r in rows} == {
        "C00001": "Active",
        "C00002": "Inactive",
        "C00050": "Active",
    }
    rows = get_rows(call(client, "GetCustomers", {"pStatus": "ALL"}), "GetCustomers")
    assert {r["Customer_Code"]: r["Status"] for r in rows}["D00003"] == "Not Used"
    (bad,) = get_rows(call(client, "GetCustomers", {"pStatus": "X"}), "GetCustomers")
    assert (bad["Error_Code"], bad["Error_Column"]) == ("I", "pStatus")
