"""Spectrum simulator: the rules of each Put service and what it leaves in Info-Link (§6, §7)."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest
from fastapi.testclient import TestClient

from sandbox.spectrum.db import SpectrumDB
from tests.sandbox.test_spectrum_support import (  # noqa: F401 - fixtures
    call,
    client_fixture,
    db_fixture,
    put_rows,
)

PHASES = "JC_PHASE_MASTER_MC"
JOBS = "JC_JOB_MASTER_MC"


def cols(rows: list[tuple[str, str, str]]) -> list[tuple[str, str]]:
    return [(code, column) for code, _, column in rows]


# --- WO sites ------------------------------------------------------------------------------------


def test_add_wo_site_defaults_sales_tax_from_the_customer(
    client: TestClient, db: SpectrumDB
) -> None:
    site = {
        "Company_Code": "ABC",
        "Site_ID": "S00009",
        "Site_Name": "Acme Plant",
        "Site_Customer_Code": "C00001",
        "Site_State": "NC",
        "Site_Phone1": "9195550111",
    }
    assert put_rows(call(client, "AddWOSiteAddress", site)) == []
    (row,) = db.rows("WO_SITE_MASTER_MC", Site_ID="S00009")
    assert row["Sales_Tax_Code"] == "NC"
    assert row["Status"] == "A"
    assert put_rows(call(client, "AddWOSiteAddress", site)) == [
        ("I", "Site_ID already exists", "Site_ID")
    ]


# --- jobs ----------------------------------------------------------------------------------------


def test_add_job_stores_every_layout_value(client: TestClient, db: SpectrumDB) -> None:
    job = {
        "Company_Code": "ABC",
        "Job_Number": "T2001",
        "Job_Description": "Rooftop unit",
        "Customer_Code": "C00001",
        "Taxable_Flag": "N",
        "Price_Method_Code": "T",
        "Est_Start_Date": "03/02/2026",
        "Cost_Center": "100",
        "WO_Site": "S00001",
        "Job_Type": "SVC",
        "UDF1": "Durham",
    }
    assert put_rows(call(client, "AddJob", job)) == []
    (row,) = db.rows(JOBS, Job_Number="T2001")
    assert row["Est_Start_Date"] == date(2026, 3, 2)
    assert row["Status_Code"] == "A"  # default (§6)
    assert row["UDF1"] == "Durham"
    assert row["WO_Site"] == "S00001"


def test_add_job_requires_taxable_flag_and_price_method(client: TestClient) -> None:
    job = {"Company_Code": "ABC", "Job_Number": "T2001"}
    assert sorted(cols(put_rows(call(client, "AddJob", job)))) == [
        ("M", "Price_Method_Code"),
        ("M", "Taxable_Flag"),
    ]


def test_update_job_leaves_blank_elements_unchanged(client: TestClient, db: SpectrumDB) -> None:
    before = db.rows(JOBS, Job_Number="T1001")[0]
    update = {
        "Company_Code": "ABC",
        "Job_Number": "T1001",
        "Job_Oh_Batch_Code": "OH1",
        "Comment": "via stsync",
    }
    assert put_rows(call(client, "UpdateJob", update)) == []
    after = db.rows(JOBS, Job_Number="T1001")[0]
    assert after["Job_Oh_Batch_Code"] == "OH1"
    assert after["Comment"] == "via stsync"
    for unchanged in (
        "Job_Description",
        "Customer_Code",
        "Cost_Center",
        "Est_Start_Date",
        "Price_Method_Code",
        "Status_Code",
    ):
        assert after[unchanged] == before[unchanged]
    assert put_rows(call(client, "UpdateJob", {**update, "Job_Description": "New name"})) == []
    assert db.rows(JOBS, Job_Number="T1001")[0]["Job_Description"] == "New name"


def test_update_job_cannot_change_the_ar_contract_customer(client: TestClient) -> None:
    update = {"Company_Code": "ABC", "Job_Number": "T1001", "Customer_Code": "C00002"}
    assert cols(put_rows(call(client, "UpdateJob", update))) == [("I", "Customer_Code")]


def test_update_job_udf(client: TestClient, db: SpectrumDB) -> None:
    values = {"Company_Code": "ABC", "Job_Number": "T1001", "UDF1": "Office 11", "UDF7": "x"}
    assert put_rows(call(client, "UpdateJob_UDF", values)) == []
    assert db.rows(JOBS, Job_Number="T1001")[0]["UDF1"] == "Office 11"
    assert put_rows(call(client, "UpdateJob_UDF", {**values, "UDF1": ""})) == []
    assert db.rows(JOBS, Job_Number="T1001")[0]["UDF1"] == "Office 11"


# --- phases --------------------------------------------------------------------------------------


PHASE = {
    "Company_Code": "ABC",
    "Job_Number": "T1002",
    "Phase_Code": "100",
    "Cost_Type": "L",
    "Description": "Sprinkler",
    "Price_Method_Code": "T",
    "Original_Est_Cost": "1200.50",
    "Phase_Cost_Center": "100",
}


def test_add_phase_adds_then_updates_without_overwriting_with_blanks(
    client: TestClient, db: SpectrumDB
) -> None:
    assert put_rows(call(client, "AddPhase", PHASE)) == []
    (row,) = db.rows(PHASES, Job_Number="T1002")
    assert row["Original_Est_Cost"] == Decimal("1200.50")
    assert row["Cost_Center"] == "100"
    assert row["Status_Code"] == "A"
    update = {
        **PHASE,
        "Description": "",
        "Original_Est_Cost": "99",
        "Phase_Cost_Center": "",
        "Unit_of_Measure": "HRS",
    }
    assert put_rows(call(client, "AddPhase", update)) == []
    (row,) = db.rows(PHASES, Job_Number="T1002")  # still one row: an upsert
    assert row["Original_Est_Cost"] == Decimal("99.00")
    assert row["Description"] == "Sprinkler"
    assert row["Cost_Center"] == "100"
    assert row["Unit_of_Measure"] == "HRS"


def test_phase_description_is_shared_by_its_cost_types(client: TestClient, db: SpectrumDB) -> None:
    assert put_rows(call(client, "AddPhase", PHASE)) == []
    # new cost type on the same phase: the first description wins, and Description is optional
    material = {**PHASE, "Cost_Type": "M", "Description": "Something else"}
    assert put_rows(call(client, "AddPhase", material)) == []
    assert {r["Description"] for r in db.rows(PHASES, Job_Number="T1002")} == {"Sprinkler"}
    no_desc = {**PHASE, "Phase_Code": "100", "Cost_Type": "M", "Description": ""}
    assert put_rows(call(client, "AddPhase", no_desc)) == []
    # a changed description on an existing combination updates every cost type
    renamed = {**PHASE, "Description": "Wet sprinkler"}
    assert put_rows(call(client, "AddPhase", renamed)) == []
    assert {r["Description"] for r in db.rows(PHASES, Job_Number="T1002")} == {"Wet sprinkler"}
    assert db.count(PHASES, Job_Number="T1002") == 2


def test_add_phase_rules(client: TestClient, db: SpectrumDB) -> None:
    assert cols(put_rows(call(client, "AddPhase", {**PHASE, "Description": ""}))) == [
        ("M", "Description")
    ]
    assert cols(put_rows(call(client, "AddPhase", {**PHASE, "Phase_Code": "10-100"}))) == [
        ("I", "Phase_Code")
    ]
    assert cols(put_rows(call(client, "AddPhase", {**PHASE, "Cost_Type": "Z"}))) == [
        ("I", "Cost_Type")
    ]
    assert cols(put_rows(call(client, "AddPhase", {**PHASE, "Job_Number": "NOPE"}))) == [
        ("I", "Job_Number")
    ]
    assert db.count(PHASES, Job_Number="T1002") == 0


def test_no_phase_on_a_complete_job(client: TestClient, db: SpectrumDB) -> None:
    rows = put_rows(call(client, "AddPhase", {**PHASE, "Job_Number": "T1003"}))
    assert cols(rows) == [("I", "Job_Number")]
    assert "Complete" in rows[0][1]
    assert db.count(PHASES, Job_Number="T1003") == 0


def test_phase_price_method_j_takes_the_jobs(client: TestClient, db: SpectrumDB) -> None:
    assert put_rows(call(client, "AddPhase", {**PHASE, "Price_Method_Code": "J"})) == []
    assert db.rows(PHASES, Job_Number="T1002")[0]["Price_Method_Code"] == "T"


# --- work orders ---------------------------------------------------------------------------------


WO = {
    "Company_Code": "ABC",
    "WO_Reference_Code": "S",
    "WO_Job_Number": "S00001",
    "WO_Job_Division": "SVC",
    "Bill_Customer_Code": "C00001",
    "Summary_Description": "Fix",
    "Customer_PO_Number": "PO-1",
    "Ordered_Date": "03/02/2026",
}


def test_work_order_blank_number_gets_the_next_one_as_a_g_row(
    client: TestClient, db: SpectrumDB
) -> None:
    rows = put_rows(call(client, "WorkOrderHeader", WO))
    assert len(rows) == 1
    code, number, column = rows[0]
    assert (code, column) == ("G", "WO_Number")
    assert number.isdigit()
    (row,) = db.rows("WO_WORK_ORDER_HEADER_MC", WO_Number=number)
    assert row["Summary_Description"] == "Fix"
    assert row["Ordered_Date"] == date(2026, 3, 2)
    (again,) = put_rows(call(client, "WorkOrderHeader", WO))
    assert int(again[1]) == int(number) + 1


def test_work_order_update_overwrites_only_given_fields(client: TestClient, db: SpectrumDB) -> None:
    explicit = {**WO, "WO_Number": "W1234"}
    assert put_rows(call(client, "WorkOrderHeader", explicit)) == []  # no G for a given number
    update = {
        "Company_Code": "ABC",
        "WO_Number": "W1234",
        "WO_Reference_Code": "S",
        "WO_Job_Number": "S00001",
        "Summary_Description": "Fixed sprinkler head",
    }
    assert put_rows(call(client, "WorkOrderHeader", update)) == []
    (row,) = db.rows("WO_WORK_ORDER_HEADER_MC", WO_Number="W1234")
    assert row["Summary_Description"] == "Fixed sprinkler head"
    assert row["Customer_PO_Number"] == "PO-1"
    assert row["Bill_Customer_Code"] == "C00001"


def test_new_work_order_needs_type_and_bill_customer(client: TestClient) -> None:
    values = {**WO, "WO_Job_Division": "", "Bill_Customer_Code": ""}
    assert sorted(cols(put_rows(call(client, "WorkOrderHeader", values)))) == [
        ("M", "Bill_Customer_Code"),
        ("M", "WO_Job_Division"),
    ]


def test_work_order_reference_must_exist(client: TestClient) -> None:
    assert cols(put_rows(call(client, "WorkOrderHeader", {**WO, "WO_Job_Number": "S404"}))) == [
        ("I", "WO_Job_Number")
    ]
    job_wo = {**WO, "WO_Reference_Code": "J", "WO_Job_Number": "T1001"}
    assert put_rows(call(client, "WorkOrderHeader", job_wo))[0][0] == "G"


# --- payroll -------------------------------------------------------------------------------------


TIME = {
    "Company_Code": "ABC",
    "Employee_Code": "E001",
    "Batch_Code": "20260302",
    "Pay_Type": "R",
    "Work_Date": "03/02/2026",
    "Hours_Employee": "7.5",
    "Job_Number": "T1001",
    "Phase_Code": "100",
    "Cost_Type": "L",
    "Department_Code": "10",
}


def test_pre_time_card_twice_makes_two_rows(client: TestClient, db: SpectrumDB) -> None:
    assert put_rows(call(client, "PreTimeCard", TIME)) == []
    assert put_rows(call(client, "PreTimeCard", TIME)) == []
    rows = db.rows("PR_PRE_TIME_MC", Employee_Code="E001")
    assert len(rows) == 2
    assert rows[0]["Hours_Employee"] == Decimal("7.50")
    assert rows[0]["Work_Date"] == date(2026, 3, 2)


@pytest.mark.parametrize(
    ("change", "column"),
    [
        ({"Employee_Code": "E999"}, "Employee_Code"),
        ({"Department_Code": "99"}, "Department_Code"),
        ({"Pay_Type": "ZZZ"}, "Pay_Type"),
        ({"Job_Number": "NOPE"}, "Job_Number"),
        ({"Phase_Code": "999"}, "Phase_Code"),
        ({"Cost_Type": "M"}, "Phase_Code"),  # phase 100 has no M cost type on T1001
        ({"Work_Date": "12/31/2019"}, "Work_Date"),
        ({"Work_Date": "01/01/2031"}, "Work_Date"),
        ({"Hours_Employee": "7,5"}, "Hours_Employee"),
    ],
)
def test_pre_time_card_checks(
    client: TestClient, db: SpectrumDB, change: dict[str, str], column: str
) -> None:
    assert cols(put_rows(call(client, "PreTimeCard", {**TIME, **change}))) == [("I", column)]
    assert db.count("PR_PRE_TIME_MC") == 0


def test_pre_time_card_pay_types_builtin_and_from_the_table(client: TestClient) -> None:
    generic = {**TIME, "Job_Number": "", "Phase_Code": "", "Cost_Type": ""}
    for pay_type in ("V", "H", "BONUS", "R"):
        assert put_rows(call(client, "PreTimeCard", {**generic, "Pay_Type": pay_type})) == []
    quantity = {**generic, "Pay_Type": "Q"}
    assert sorted(cols(put_rows(call(client, "PreTimeCard", quantity)))) == [
        ("M", "Cost_Type"),
        ("M", "Job_Number"),
        ("M", "Phase_Code"),
    ]


def test_pr_window_is_adjustable(client: TestClient) -> None:
    resp = client.put(
        "/_sandbox/spectrum/windows/PR", json={"start": "03/01/2026", "end": "03/07/2026"}
    )
    assert resp.status_code == 200
    assert put_rows(call(client, "PreTimeCard", TIME)) == []
    late = {**TIME, "Work_Date": "03/08/2026"}
    rows = put_rows(call(client, "PreTimeCard", late))
    assert cols(rows) == [("I", "Work_Date")]
    assert "03/01/2026 - 03/07/2026" in rows[0][1]


# --- AR invoices ---------------------------------------------------------------------------------


INVOICE = {
    "Company_Code": "ABC",
    "GL_Date": "03/02/2026",
    "Batch_Code": "ST260302",
    "Customer_Code": "C00001",
    "Invoice_Or_Transaction": "ST1001",
    "Transaction_Type": "I",
    "Invoice_Date": "03/02/2026",
    "Job_Number": "T1001",
    "Sales_Tax_Code": "NC",
    "Sales_Tax_Amount": "7.00",
    "Line_Extension": "100.00",
    "Detail_Description": "Inspection",
    "GL_Account": "4000",
    "Income_Cost_Center": "100",
    "Salesperson_Code": "S01",
}


def test_add_ar_invoice_writes_one_header_and_one_line(client: TestClient, db: SpectrumDB) -> None:
    assert put_rows(call(client, "AddARInvoice", INVOICE)) == []
    (header,) = db.rows("CR_INVOICE_HEADER_MC", Invoice_Or_Transaction="ST1001")
    assert header["Invoice_Amount"] == Decimal("100.00")
    assert header["Sales_Tax_Amount"] == Decimal("7.00")
    assert header["Terms_Code"] == "N"  # defaulted from the customer
    assert header["GL_Date"] == date(2026, 3, 2)
    (line,) = db.rows("CR_INVOICE_DETAIL_MC", Invoice_Or_Transaction="ST1001")
    assert (line["Line_Number"], line["GL_Account"], line["Line_Extension"]) == (
        1,
        "4000",
        Decimal("100.00"),
    )
    assert put_rows(call(client, "AddARInvoice", INVOICE)) == [
        ("I", "Invoice_Or_Transaction already exists", "Invoice_Or_Transaction")
    ]


@pytest.mark.parametrize(
    ("change", "column"),
    [
        ({"Customer_Code": "NOPE"}, "Customer_Code"),
        ({"Job_Number": "NOPE"}, "Job_Number"),
        ({"Terms_Code": "Q"}, "Terms_Code"),
        ({"Sales_Tax_Code": "ZZ"}, "Sales_Tax_Code"),
        ({"Salesperson_Code": "S99"}, "Salesperson_Code"),
        ({"GL_Account": "9999"}, "GL_Account"),
        ({"GL_Account": "5000"}, "GL_Account"),  # a direct-cost account
        ({"Income_Cost_Center": "999"}, "Income_Cost_Center"),
        ({"Line_Extension": "-100.00"}, "Line_Extension"),
        ({"Sales_Tax_Amount": "-1.00"}, "Sales_Tax_Amount"),
        ({"Line_Extension": "$100.00"}, "Line_Extension"),
        ({"Transaction_Type": "X"}, "Transaction_Type"),
        ({"GL_Date": "12/31/2019"}, "GL_Date"),
        ({"Invoice_Date": "01/01/2031"}, "Invoice_Date"),
    ],
)
def test_add_ar_invoice_checks(
    client: TestClient, db: SpectrumDB, change: dict[str, str], column: str
) -> None:
    assert cols(put_rows(call(client, "AddARInvoice", {**INVOICE, **change}))) == [("I", column)]
    assert db.count("CR_INVOICE_HEADER_MC") == 0
    assert db.count("CR_INVOICE_DETAIL_MC") == 0


def test_direct_gl_account_message_says_why(client: TestClient) -> None:
    (row,) = put_rows(call(client, "AddARInvoice", {**INVOICE, "GL_Account": "5000"}))
    assert "direct" in row[1]


def test_credit_memo_with_positive_amounts(client: TestClient, db: SpectrumDB) -> None:
    memo = {**INVOICE, "Invoice_Or_Transaction": "SC1001", "Transaction_Type": "C"}
    assert put_rows(call(client, "AddARInvoice", memo)) == []
    assert db.rows("CR_INVOICE_HEADER_MC")[0]["Transaction_Type"] == "C"


def test_ar_window_is_adjustable_and_can_be_unset(client: TestClient) -> None:
    client.put("/_sandbox/spectrum/windows/AR", json={"start": "2026-03-01", "end": "2026-03-31"})
    assert put_rows(call(client, "AddARInvoice", INVOICE)) == []
    april = {**INVOICE, "Invoice_Or_Transaction": "ST1002", "GL_Date": "04/01/2026"}
    assert cols(put_rows(call(client, "AddARInvoice", april))) == [("I", "GL_Date")]
    client.put("/_sandbox/spectrum/windows/AR", json={"start": None, "end": None})
    rows = put_rows(call(client, "AddARInvoice", {**april, "GL_Date": "03/02/2026"}))
    assert sorted(cols(rows)) == [("I", "GL_Date"), ("I", "Invoice_Date")]
    assert "not set up" in rows[0][1]
    # a window for one company only
    client.put(
        "/_sandbox/spectrum/windows/AR",
        json={"start": "2026-01-01", "end": "2026-12-31", "company": "ABC"},
    )
    assert put_rows(call(client, "AddARInvoice", {**april, "GL_Date": "03/02/2026"})) == []


def test_bad_window_admin_input_is_refused(client: TestClient) -> None:
    assert (
        client.put(
            "/_sandbox/spectrum/windows/AR", json={"start": "2026-03-31", "end": "2026-03-01"}
        ).status_code
        == 422
    )
    assert (
        client.put(
            "/_sandbox/spectrum/windows/GL", json={"start": "2026-03-01", "end": "2026-03-31"}
        ).status_code
        == 422
    )
