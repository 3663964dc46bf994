"""Spectrum simulator: REST multi-line AR invoice (§6, §9.7) and Enhanced Authentication (§2)."""

from __future__ import annotations

import base64
from decimal import Decimal
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from sandbox.spectrum.admin_state import DEFAULT_OAUTH_CLIENT_ID, DEFAULT_OAUTH_CLIENT_SECRET
from sandbox.spectrum.db import SpectrumDB
from tests.sandbox.test_spectrum_support import (  # noqa: F401 - fixtures
    AUTH,
    AUTH_2,
    INACTIVE,
    NOT_AUTHORIZED,
    call,
    client_fixture,
    db_fixture,
    envelope,
    fault,
    put_rows,
)

HEADERS = "CR_INVOICE_HEADER_MC"
LINES = "CR_INVOICE_DETAIL_MC"


def basic(company: str, auth: str) -> dict[str, str]:
    token = base64.b64encode(f"{company}:{auth}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


def invoice(number: str = "ST1001", **header: Any) -> dict[str, Any]:
    return {
        "Company_Code": "ABC",
        "GL_Date": "03/02/2026",
        "Batch_Code": "ST260302",
        "Customer_Code": "C00001",
        "Invoice_Or_Transaction": number,
        "Transaction_Type": "I",
        "Invoice_Date": "03/02/2026",
        "Job_Number": "T1001",
        "Sales_Tax_Code": "NC",
        "Sales_Tax_Amount": "7.00",
        "invoiceDetails": [
            {
                "Quantity": "2",
                "Detail_Description": "Labor",
                "Unit_Of_Measure": "HRS",
                "Line_Extension": "80.00",
                "GL_Account": "4000",
                "Taxable_Flag": "N",
                "Income_Cost_Center": "100",
            },
            {
                "Quantity": 1,
                "Detail_Description": "Sprinkler head",
                "Line_Extension": 20.5,
                "GL_Account": "4000",
                "Taxable_Flag": "Y",
                "Income_Cost_Center": "100",
            },
        ],
        **header,
    }


def post(client: TestClient, body: Any, headers: dict[str, str] | None = None) -> httpx.Response:
    resp: httpx.Response = client.post(
        "/customer/invoice", json=body, headers=basic("ABC", AUTH) if headers is None else headers
    )
    return resp


def results(resp: httpx.Response) -> list[dict[str, str]]:
    assert resp.status_code == 200, resp.text
    out: list[dict[str, str]] = resp.json()["arInvoices"]
    for r in out:
        assert set(r) == {
            "Invoice_Or_Transaction",
            "Error_Code",
            "Error_Description",
            "Error_Column",
        }
    return out


def test_multi_line_invoice_imports_header_and_lines(client: TestClient, db: SpectrumDB) -> None:
    assert results(post(client, {"arInvoices": [invoice()]})) == [
        {
            "Invoice_Or_Transaction": "ST1001",
            "Error_Code": "",
            "Error_Description": "",
            "Error_Column": "",
        }
    ]
    (header,) = db.rows(HEADERS, Invoice_Or_Transaction="ST1001")
    assert header["Invoice_Amount"] == Decimal("100.50")
    assert header["Sales_Tax_Amount"] == Decimal("7.00")
    assert header["Company_Code"] == "ABC"
    lines = db.rows(LINES, Invoice_Or_Transaction="ST1001")
    assert [(ln["Line_Number"], ln["Line_Extension"], ln["Taxable_Flag"]) for ln in lines] == [
        (1, Decimal("80.00"), "N"),
        (2, Decimal("20.50"), "Y"),
    ]
    # the same number again is a duplicate
    (dup,) = results(post(client, {"arInvoices": [invoice()]}))
    assert (dup["Error_Code"], dup["Error_Column"]) == ("I", "Invoice_Or_Transaction")
    assert db.count(HEADERS) == 1


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer abc"},
        {"Authorization": "Basic !!notbase64"},
        basic("ABC", "nosuchid"),
        basic("ABC", INACTIVE),
        basic("XYZ", AUTH),  # company not on the Authorization ID
        basic("ABC", AUTH_2),
    ],
)
def test_bad_basic_auth_is_401(client: TestClient, db: SpectrumDB, headers: dict[str, str]) -> None:
    resp = post(client, {"arInvoices": [invoice()]}, headers)
    assert resp.status_code == 401
    assert db.count(HEADERS) == 0


def test_blank_basic_company_defaults_from_the_authorization_id(
    client: TestClient, db: SpectrumDB
) -> None:
    assert (
        results(post(client, {"arInvoices": [invoice(Company_Code="")]}, basic("", AUTH)))[0][
            "Error_Code"
        ]
        == ""
    )
    assert db.rows(HEADERS)[0]["Company_Code"] == "ABC"


def test_service_not_authorized_is_a_per_invoice(client: TestClient, db: SpectrumDB) -> None:
    client.delete(f"/_sandbox/spectrum/authorizations/{AUTH}/services/ARMultiLineInvoice")
    (r,) = results(post(client, {"arInvoices": [invoice()]}))
    assert (r["Error_Code"], r["Error_Description"], r["Error_Column"]) == (
        "A",
        NOT_AUTHORIZED,
        "Authorization_ID",
    )
    assert db.count(HEADERS) == 0


def test_amounts_must_be_positive_even_on_credit_memos(client: TestClient, db: SpectrumDB) -> None:
    negative = invoice()
    negative["invoiceDetails"][0]["Line_Extension"] = "-80.00"
    (r,) = results(post(client, {"arInvoices": [negative]}))
    assert (r["Error_Code"], r["Error_Column"]) == ("I", "Line_Extension")
    assert "Line 1" in r["Error_Description"]
    memo = invoice("SC1001", Transaction_Type="C")
    assert results(post(client, {"arInvoices": [memo]}))[0]["Error_Code"] == ""
    (row,) = db.rows(HEADERS)
    assert (row["Invoice_Or_Transaction"], row["Transaction_Type"]) == ("SC1001", "C")
    assert row["Invoice_Amount"] == Decimal("100.50")
    negative_tax = invoice("SC1002", Transaction_Type="C", Sales_Tax_Amount="-7.00")
    (r,) = results(post(client, {"arInvoices": [negative_tax]}))
    assert (r["Error_Code"], r["Error_Column"]) == ("I", "Sales_Tax_Amount")


def test_a_bad_invoice_is_rejected_whole_while_the_others_import(
    client: TestClient, db: SpectrumDB
) -> None:
    bad = invoice("ST2002")
    bad["invoiceDetails"][1]["GL_Account"] = "5000"  # direct-cost account
    good = invoice("ST2003")
    out = results(post(client, {"arInvoices": [bad, good]}))
    assert [r["Invoice_Or_Transaction"] for r in out] == ["ST2002", "ST2003"]
    assert (out[0]["Error_Code"], out[0]["Error_Column"]) == ("I", "GL_Account")
    assert "Line 2" in out[0]["Error_Description"]
    assert out[1]["Error_Code"] == ""
    assert db.count(HEADERS, Invoice_Or_Transaction="ST2002") == 0
    assert db.count(LINES, Invoice_Or_Transaction="ST2002") == 0
    assert db.count(HEADERS, Invoice_Or_Transaction="ST2003") == 1
    assert db.count(LINES, Invoice_Or_Transaction="ST2003") == 2


def test_several_errors_in_one_invoice_are_all_reported(client: TestClient) -> None:
    bad = invoice(Customer_Code="NOPE", GL_Date="01/01/2031")
    bad["invoiceDetails"][0]["Income_Cost_Center"] = "999"
    (r,) = results(post(client, {"arInvoices": [bad]}))
    assert r["Error_Code"] == "I"
    assert set(r["Error_Column"].split(",")) == {"Customer_Code", "GL_Date", "Income_Cost_Center"}
    assert r["Error_Description"].count(";") == 2


def test_duplicate_numbers_inside_one_batch(client: TestClient, db: SpectrumDB) -> None:
    out = results(post(client, {"arInvoices": [invoice("ST3000"), invoice("ST3000")]}))
    assert [r["Error_Code"] for r in out] == ["", "I"]
    assert db.count(HEADERS) == 1


def test_both_wrappings_are_accepted(client: TestClient, db: SpectrumDB) -> None:
    wrapped = invoice("ST4001")
    wrapped["invoiceDetails"] = [{"invoiceDetail": d} for d in wrapped["invoiceDetails"]]
    body = {"arInvoices": [{"multiLineArInvoice": wrapped}]}
    assert results(post(client, body))[0]["Error_Code"] == ""
    bare = {"multiLineArInvoice": invoice("ST4002")}
    assert results(post(client, bare))[0]["Error_Code"] == ""
    assert db.count(LINES, Invoice_Or_Transaction="ST4001") == 2
    assert db.count(LINES, Invoice_Or_Transaction="ST4002") == 2


def test_a_detail_with_only_message_is_a_message_line(client: TestClient, db: SpectrumDB) -> None:
    inv = invoice("ST5001")
    inv["invoiceDetails"].append({"Message": "Thank you for your business"})
    assert results(post(client, {"arInvoices": [inv]}))[0]["Error_Code"] == ""
    lines = db.rows(LINES, Invoice_Or_Transaction="ST5001")
    assert lines[2]["Message"] == "Thank you for your business"
    assert lines[2]["Line_Extension"] is None
    assert db.rows(HEADERS)[0]["Invoice_Amount"] == Decimal("100.50")
    # a line with a description but no amount is not a message line
    inv = invoice("ST5002")
    inv["invoiceDetails"].append({"Detail_Description": "Freebie"})
    (r,) = results(post(client, {"arInvoices": [inv]}))
    assert (r["Error_Code"], r["Error_Column"]) == ("M", "Line_Extension")


def test_invoice_without_lines_is_m(client: TestClient) -> None:
    inv = invoice()
    inv["invoiceDetails"] = []
    (r,) = results(post(client, {"arInvoices": [inv]}))
    assert (r["Error_Code"], r["Error_Column"]) == ("M", "invoiceDetails")


def test_header_rules_match_add_ar_invoice(client: TestClient) -> None:
    (r,) = results(post(client, {"arInvoices": [invoice(Customer_Code="", Terms_Code="Q")]}))
    assert r["Error_Code"] == "M"
    assert set(r["Error_Column"].split(",")) == {"Customer_Code", "Terms_Code"}


@pytest.mark.parametrize("body", ["not json", '{"nothing": []}', "[1, 2]", '{"arInvoices": []}'])
def test_malformed_bodies_are_400(client: TestClient, body: str) -> None:
    resp = client.post("/customer/invoice", content=body, headers=basic("ABC", AUTH))
    assert resp.status_code == 400


def test_unset_ar_processing_dates_answer_500(client: TestClient, db: SpectrumDB) -> None:
    client.put("/_sandbox/spectrum/windows/AR", json={"start": None, "end": None})
    resp = post(client, {"arInvoices": [invoice()]})
    assert resp.status_code == 500
    assert "error processing your request" in resp.json()["message"]
    assert db.count(HEADERS) == 0


# --- Enhanced Authentication ---------------------------------------------------------------------


def token(client: TestClient, **form: str) -> httpx.Response:
    data = {
        "client_id": DEFAULT_OAUTH_CLIENT_ID,
        "client_secret": DEFAULT_OAUTH_CLIENT_SECRET,
        "scope": "spectrumapi",
        "grant_type": "client_credentials",
        **form,
    }
    resp: httpx.Response = client.post("/connect/token", data=data)
    return resp


def test_token_endpoint(client: TestClient) -> None:
    resp = token(client)
    assert resp.status_code == 200
    body = resp.json()
    assert body["token_type"] == "Bearer"
    assert body["scope"] == "spectrumapi"
    assert body["expires_in"] > 0
    assert body["access_token"]
    assert token(client, client_secret="wrong").status_code == 400
    assert token(client, grant_type="password").json() == {"error": "unsupported_grant_type"}
    assert token(client, scope="other").json() == {"error": "invalid_scope"}


def test_enhanced_auth_requires_bearer_and_authorization_id(
    client: TestClient, db: SpectrumDB
) -> None:
    customer = {
        "Company_Code": "ABC",
        "Customer_Code": "C00077",
        "Name": "Gamma",
        "Terms_Code": "N",
        "Sales_Tax_Code": "NC",
    }
    assert put_rows(call(client, "AddCustomer", customer)) == []  # off by default
    assert client.put("/_sandbox/spectrum/enhanced-auth", json={"enabled": True}).status_code == 200
    other = {**customer, "Customer_Code": "C00078"}
    resp = call(client, "AddCustomer", other)
    assert resp.status_code == 401
    assert fault(resp)[0] == "SOAP-ENV:Client"
    bearer = {"Authorization": f"Bearer {token(client).json()['access_token']}"}
    resp = client.post("/ws/AddCustomer", content=_envelope(other), headers=bearer)
    assert put_rows(resp) == []
    # the Authorization ID is still required
    third = {**customer, "Customer_Code": "C00079"}
    resp = client.post("/ws/AddCustomer", content=_envelope(third, auth="nosuchid"), headers=bearer)
    assert put_rows(resp)[0][0] == "A"
    bad = client.post(
        "/ws/AddCustomer", content=_envelope(third), headers={"Authorization": "Bearer forged"}
    )
    assert bad.status_code == 401
    assert db.count("CR_CUSTOMER_MASTER_MC", Customer_Code="C00079") == 0
    # REST: Bearer plus the Authorization ID headers
    rest_headers = {**bearer, "X-Company-Code": "ABC", "X-Authorization-ID": AUTH}
    assert results(post(client, {"arInvoices": [invoice()]}, rest_headers))[0]["Error_Code"] == ""
    assert post(client, {"arInvoices": [invoice("ST9")]}, basic("ABC", AUTH)).status_code == 401
    no_id = {**bearer, "X-Company-Code": "ABC"}
    assert post(client, {"arInvoices": [invoice("ST9")]}, no_id).status_code == 401


def test_secret_rotation(client: TestClient) -> None:
    resp = client.post(
        "/secretRotation",
        data={"client_id": DEFAULT_OAUTH_CLIENT_ID, "client_secret": DEFAULT_OAUTH_CLIENT_SECRET},
    )
    assert resp.status_code == 200
    new = resp.json()["client_secret"]
    assert resp.json()["estimated_expiration"]
    assert token(client).status_code == 400  # the old secret is gone
    assert token(client, client_secret=new).status_code == 200


def _envelope(values: dict[str, str], auth: str = AUTH) -> str:
    return envelope("AddCustomer", values, auth=auth)
