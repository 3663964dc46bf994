"""Spectrum simulator: transport, WSDLs, authorization and the shared validation rules (§1–§5, §9)."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient

from clients.spectrum.services import SERVICES
from sandbox.spectrum.app import create_app
from sandbox.spectrum.db import SpectrumDB
from tests.sandbox.test_spectrum_support import (  # noqa: F401 - fixtures
    AUTH,
    AUTH_2,
    INACTIVE,
    NOT_AUTHORIZED,
    call,
    client_fixture,
    db_fixture,
    elements,
    envelope,
    fault,
    get_rows,
    put_rows,
    seed_rows,
)

CUSTOMER = {
    "Company_Code": "ABC",
    "Customer_Code": "C00077",
    "Name": "Gamma Sprinkler",
    "Terms_Code": "N",
    "Sales_Tax_Code": "NC",
    "Phone": "9195550199",
}
JOB = {
    "Company_Code": "ABC",
    "Job_Number": "T2001",
    "Job_Description": "Rooftop unit",
    "Customer_Code": "C00001",
    "Taxable_Flag": "N",
    "Price_Method_Code": "T",
    "Est_Start_Date": "03/02/2026",
    "Cost_Center": "100",
}


# --- WSDL and transport ----------------------------------------------------------------------------


@pytest.mark.parametrize("service", sorted(SERVICES))
def test_wsdl_lists_every_element_of_the_layout(client: TestClient, service: str) -> None:
    resp = client.get(f"/wsdls/{service}.jws")
    assert resp.status_code == 200
    root = ET.fromstring(resp.content)
    xsd = "{http://www.w3.org/2001/XMLSchema}"
    op = next(el for el in root.iter(f"{xsd}element") if el.get("name") == service)
    names = [el.get("name") for el in op.iter(f"{xsd}element") if el is not op]
    assert names == elements(service)
    address = next(el for el in root.iter() if el.tag.endswith("address"))
    assert address.get("location", "").endswith(f"/ws/{service}")
    assert client.get(f"/ws/{service}?wsdl").text == resp.text


def test_unknown_wsdl_is_404(client: TestClient) -> None:
    assert client.get("/wsdls/AddGLAccount.jws").status_code == 404


def test_unknown_service_is_a_client_fault(client: TestClient) -> None:
    resp = client.post("/ws/AddGLAccount", content=envelope("AddCustomer", CUSTOMER))
    assert resp.status_code == 500
    assert fault(resp) == ("SOAP-ENV:Client", "Web service not found")


def test_missing_element_faults(client: TestClient, db: SpectrumDB) -> None:
    resp = call(client, "AddCustomer", CUSTOMER, omit=("Fax_Phone",))
    assert resp.status_code == 500
    code, text = fault(resp)
    assert code == "SOAP-ENV:Client"
    assert "Fax_Phone" in text
    assert db.count("CR_CUSTOMER_MASTER_MC", Customer_Code="C00077") == 0


def test_missing_elements_allowed_when_configured(db: SpectrumDB) -> None:
    with TestClient(create_app(db, require_all_elements=False)) as c:
        resp = call(c, "AddCustomer", CUSTOMER, omit=("Fax_Phone", "Contact_1", "GUID"))
        assert put_rows(resp) == []
    assert db.count("CR_CUSTOMER_MASTER_MC", Customer_Code="C00077") == 1


def test_malformed_xml_and_dtd_are_refused(client: TestClient) -> None:
    resp = client.post("/ws/AddCustomer", content="<soap:Envelope")
    assert resp.status_code == 500
    assert fault(resp)[0] == "SOAP-ENV:Client"
    bomb = (
        '<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaa">]>'
        "<Envelope><Body><AddCustomer><Name>&a;</Name></AddCustomer></Body></Envelope>"
    )
    resp = client.post("/ws/AddCustomer", content=bomb)
    assert resp.status_code == 500
    assert fault(resp)[0] == "SOAP-ENV:Client"


def test_operation_must_match_the_endpoint(client: TestClient) -> None:
    resp = client.post("/ws/AddJob", content=envelope("AddCustomer", CUSTOMER))
    assert resp.status_code == 500
    assert "AddCustomer" in fault(resp)[1]


def test_success_is_empty_return_data_and_a_row_in_infolink(
    client: TestClient, db: SpectrumDB
) -> None:
    resp = call(client, "AddCustomer", CUSTOMER)
    assert resp.headers["content-type"].startswith("text/xml")
    assert put_rows(resp) == []
    assert "<returnData/>" in resp.text
    assert "nis:AddCustomerResponse" in resp.text
    assert 'SOAP-ENV:encodingStyle="http://schemas.xmlsoap.org/soap/encoding/"' in resp.text
    (row,) = db.rows("CR_CUSTOMER_MASTER_MC", Customer_Code="C00077")
    assert row["Name"] == "Gamma Sprinkler"
    assert row["Company_Code"] == "ABC"
    assert row["Status"] == "A"  # new customers are Active (§6)
    assert row["Phone"] == "9195550199"
    assert row["Date_Created"] is not None


def test_qualified_children_and_any_soapaction_are_accepted(
    client: TestClient, db: SpectrumDB
) -> None:
    resp = client.post(
        "/ws/AddCustomer",
        content=envelope("AddCustomer", CUSTOMER, qualified=True),
        headers={"SOAPAction": "http://whatever/ws/AddCustomer"},
    )
    assert put_rows(resp) == []
    assert db.count("CR_CUSTOMER_MASTER_MC", Customer_Code="C00077") == 1


def test_blank_company_defaults_from_the_authorization_id(
    client: TestClient, db: SpectrumDB
) -> None:
    assert put_rows(call(client, "AddCustomer", {**CUSTOMER, "Company_Code": ""})) == []
    assert db.rows("CR_CUSTOMER_MASTER_MC", Customer_Code="C00077")[0]["Company_Code"] == "ABC"
    other = {**CUSTOMER, "Company_Code": "", "Customer_Code": "X2"}
    assert put_rows(call(client, "AddCustomer", other, auth=AUTH_2)) == []
    assert db.rows("CR_CUSTOMER_MASTER_MC", Customer_Code="X2")[0]["Company_Code"] == "XYZ"


# --- authorization (A) ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("auth", "company"),
    [
        ("nosuchid", "ABC"),  # unknown
        ("", "ABC"),  # blank
        (INACTIVE, "ABC"),  # inactive
        (AUTH, "XYZ"),  # company not on this Authorization ID
        (AUTH_2, "ABC"),
    ],
)
def test_authorization_failures_abort_with_a(
    client: TestClient, db: SpectrumDB, auth: str, company: str
) -> None:
    resp = call(client, "AddCustomer", {**CUSTOMER, "Company_Code": company}, auth=auth)
    assert put_rows(resp) == [("A", NOT_AUTHORIZED, "Authorization_ID")]
    assert db.count("CR_CUSTOMER_MASTER_MC", Customer_Code="C00077") == 0


def test_service_not_authorized_then_authorized(client: TestClient, db: SpectrumDB) -> None:
    resp = client.delete(f"/_sandbox/spectrum/authorizations/{AUTH}/services/AddCustomer")
    assert resp.status_code == 200
    assert "AddCustomer" not in resp.json()["services"]
    assert put_rows(call(client, "AddCustomer", CUSTOMER)) == [
        ("A", NOT_AUTHORIZED, "Authorization_ID")
    ]
    # other services of the same ID still work
    assert put_rows(call(client, "AddJob", JOB)) == []
    client.post(f"/_sandbox/spectrum/authorizations/{AUTH}/services/AddCustomer")
    assert put_rows(call(client, "AddCustomer", CUSTOMER)) == []
    assert db.count("CR_CUSTOMER_MASTER_MC", Customer_Code="C00077") == 1


def test_authorization_ids_can_be_created_and_deactivated(client: TestClient) -> None:
    resp = client.put(
        "/_sandbox/spectrum/authorizations/apxNEWONE",
        json={"companies": ["ABC"], "services": ["AddJob"]},
    )
    assert resp.status_code == 200
    assert put_rows(call(client, "AddJob", JOB, auth="apxNEWONE")) == []
    assert put_rows(call(client, "AddCustomer", CUSTOMER, auth="apxNEWONE"))[0][0] == "A"
    client.put("/_sandbox/spectrum/authorizations/apxNEWONE/active/false")
    job2 = {**JOB, "Job_Number": "T2002"}
    assert put_rows(call(client, "AddJob", job2, auth="apxNEWONE"))[0][0] == "A"
    bad = client.put(
        "/_sandbox/spectrum/authorizations/apxNEWONE",
        json={"companies": ["ABC"], "services": ["NoSuchService"]},
    )
    assert bad.status_code == 422


def test_get_service_authorization_error_is_a_row_with_only_error_fields(
    client: TestClient,
) -> None:
    rows = get_rows(call(client, "GetJob", {}, auth="nosuchid"), "GetJob")
    assert len(rows) == 1
    (row,) = rows
    assert row["Error_Code"] == "E"
    assert row["Error_Column"] == "Authorization_ID"
    assert row["Error_Description"]
    assert all(v == "" for k, v in row.items() if not k.startswith("Error_"))
    assert set(row) == set(SERVICES["GetJob"].row_fields) | {
        "Error_Code",
        "Error_Description",
        "Error_Column",
    }


# --- M and I rows ----------------------------------------------------------------------------------


def test_required_missing_is_m(client: TestClient) -> None:
    resp = call(client, "AddCustomer", {**CUSTOMER, "Name": ""})
    assert put_rows(resp) == [("M", "Name is required", "Name")]


@pytest.mark.parametrize(
    ("service", "values", "column"),
    [
        ("AddJob", {**JOB, "Est_Start_Date": "1/2/22"}, "Est_Start_Date"),
        ("AddJob", {**JOB, "Est_Start_Date": "01-02/2026"}, "Est_Start_Date"),
        ("AddJob", {**JOB, "Taxable_Flag": "X"}, "Taxable_Flag"),
        ("AddJob", {**JOB, "Price_Method_Code": "Z"}, "Price_Method_Code"),
        ("AddJob", {**JOB, "Division": "1,0"}, "Division"),
        ("AddCustomer", {**CUSTOMER, "Phone": "919-555-0199"}, "Phone"),
        ("AddCustomer", {**CUSTOMER, "Customer_Code": "c00077"}, "Customer_Code"),
    ],
)
def test_bad_format_is_i(
    client: TestClient, db: SpectrumDB, service: str, values: dict[str, str], column: str
) -> None:
    rows = put_rows(call(client, service, values))
    assert [(code, col) for code, _, col in rows] == [("I", column)]
    assert column in rows[0][1]
    assert db.count("JC_JOB_MASTER_MC", Job_Number="T2001") == 0


@pytest.mark.parametrize("char", list("/*?\"'><#,&~"))
def test_forbidden_characters_in_key_fields_are_i(client: TestClient, char: str) -> None:
    rows = put_rows(call(client, "AddJob", {**JOB, "Job_Number": f"T2{char}01"}))
    assert [(code, col) for code, _, col in rows] == [("I", "Job_Number")]


def test_hyphens_and_spaces_are_fine_in_job_numbers(client: TestClient, db: SpectrumDB) -> None:
    assert put_rows(call(client, "AddJob", {**JOB, "Job_Number": "24-404E1"})) == []
    assert put_rows(call(client, "AddJob", {**JOB, "Job_Number": "43349 MS"})) == []
    assert db.count("JC_JOB_MASTER_MC", Job_Number="43349 MS") == 1


def test_duplicate_key_is_i_already_exists(client: TestClient, db: SpectrumDB) -> None:
    assert put_rows(call(client, "AddJob", JOB)) == []
    assert put_rows(call(client, "AddJob", {**JOB, "Job_Description": "again"})) == [
        ("I", "Job_Number already exists", "Job_Number")
    ]
    assert db.count("JC_JOB_MASTER_MC", Job_Number="T2001") == 1
    # the same key in another company is a different record
    other = {**JOB, "Company_Code": "XYZ", "Customer_Code": "X1"}
    assert put_rows(call(client, "AddJob", other, auth=AUTH_2)) == []


@pytest.mark.parametrize(
    ("service", "values", "column"),
    [
        ("AddCustomer", {**CUSTOMER, "Terms_Code": "Q"}, "Terms_Code"),
        ("AddCustomer", {**CUSTOMER, "Sales_Tax_Code": "ZZ"}, "Sales_Tax_Code"),
        ("AddCustomer", {**CUSTOMER, "Salesperson": "S99"}, "Salesperson"),
        ("AddCustomer", {**CUSTOMER, "Cost_Center": "999"}, "Cost_Center"),
        ("AddJob", {**JOB, "Customer_Code": "NOPE"}, "Customer_Code"),
        ("AddJob", {**JOB, "Cost_Center": "999"}, "Cost_Center"),
        ("AddJob", {**JOB, "Job_Type": "XX"}, "Job_Type"),
        ("AddJob", {**JOB, "Tax_Class_Code": "XX"}, "Tax_Class_Code"),
        ("AddJob", {**JOB, "WO_Site": "S99999"}, "WO_Site"),
        (
            "AddWOSiteAddress",
            {
                "Company_Code": "ABC",
                "Site_ID": "S00002",
                "Site_Name": "x",
                "Site_Customer_Code": "NOPE",
            },
            "Site_Customer_Code",
        ),
        ("UpdateJob", {"Company_Code": "ABC", "Job_Number": "NOPE"}, "Job_Number"),
        ("UpdateJob_UDF", {"Company_Code": "ABC", "Job_Number": "NOPE", "UDF1": "x"}, "Job_Number"),
    ],
)
def test_unknown_reference_codes_are_i(
    client: TestClient, service: str, values: dict[str, str], column: str
) -> None:
    rows = put_rows(call(client, service, values))
    assert [(code, col) for code, _, col in rows] == [("I", column)]


def test_tax_class_accepts_a_jc_tax_class_or_an_ar_sales_tax_code(client: TestClient) -> None:
    assert put_rows(call(client, "AddJob", {**JOB, "Tax_Class_Code": "TC1"})) == []
    job2 = {**JOB, "Job_Number": "T2002", "Tax_Class_Code": "NC"}
    assert put_rows(call(client, "AddJob", job2)) == []


def test_reference_codes_are_per_company(client: TestClient) -> None:
    # C00001 exists in ABC only
    rows = put_rows(call(client, "AddJob", {**JOB, "Company_Code": "XYZ"}, auth=AUTH_2))
    assert [(c, col) for c, _, col in rows] == [("I", "Customer_Code")]


def test_multiple_errors_give_one_row_each(client: TestClient) -> None:
    values = {
        **JOB,
        "Price_Method_Code": "",
        "Customer_Code": "NOPE",
        "Cost_Center": "999",
        "Est_Start_Date": "2026-03-02",
    }
    rows = put_rows(call(client, "AddJob", values))
    assert sorted((c, col) for c, _, col in rows) == [
        ("I", "Cost_Center"),
        ("I", "Customer_Code"),
        ("I", "Est_Start_Date"),
        ("M", "Price_Method_Code"),
    ]


# --- lengths: truncate silently, or I in strict mode ---------------------------------------------


def test_long_text_is_truncated_silently_by_default(client: TestClient, db: SpectrumDB) -> None:
    name = "Gamma Sprinkler and Fire Protection Inc"  # 39 > 30
    assert put_rows(call(client, "AddCustomer", {**CUSTOMER, "Name": name})) == []
    assert db.rows("CR_CUSTOMER_MASTER_MC", Customer_Code="C00077")[0]["Name"] == name[:30]


def test_strict_mode_refuses_long_values(db: SpectrumDB) -> None:
    name = "Gamma Sprinkler and Fire Protection Inc"
    with TestClient(create_app(db, strict_lengths=True)) as c:
        rows = put_rows(call(c, "AddCustomer", {**CUSTOMER, "Name": name}))
        assert [(code, col) for code, _, col in rows] == [("I", "Name")]
        assert "30" in rows[0][1]
    assert db.count("CR_CUSTOMER_MASTER_MC", Customer_Code="C00077") == 0


def test_strict_mode_switches_at_runtime(client: TestClient) -> None:
    name = "x" * 31
    assert client.put("/_sandbox/spectrum/modes", json={"strict_lengths": True}).json() == {
        "strict_lengths": True,
        "require_all_elements": True,
    }
    assert put_rows(call(client, "AddCustomer", {**CUSTOMER, "Name": name}))[0][0] == "I"
    client.put("/_sandbox/spectrum/modes", json={"strict_lengths": False})
    assert put_rows(call(client, "AddCustomer", {**CUSTOMER, "Name": name})) == []


def test_require_all_elements_switches_at_runtime(client: TestClient) -> None:
    assert call(client, "AddCustomer", CUSTOMER, omit=("City",)).status_code == 500
    client.put("/_sandbox/spectrum/modes", json={"require_all_elements": False})
    assert put_rows(call(client, "AddCustomer", CUSTOMER, omit=("City",))) == []


# --- GUID (§2) -----------------------------------------------------------------------------------


def test_guid_longer_than_36_is_i(client: TestClient, db: SpectrumDB) -> None:
    rows = put_rows(call(client, "AddCustomer", {**CUSTOMER, "GUID": "x" * 37}))
    assert [(c, col) for c, _, col in rows] == [("I", "GUID")]
    assert db.count("CR_CUSTOMER_MASTER_MC", Customer_Code="C00077") == 0


def test_guid_may_be_reused_within_a_batch_and_expires_after_a_day(client: TestClient) -> None:
    guid = "3f0c2a9e-5d41-4c7e-9a0b-8e2d1c6b7a55"
    assert put_rows(call(client, "AddCustomer", {**CUSTOMER, "GUID": guid})) == []
    second = {**CUSTOMER, "Customer_Code": "C00078", "GUID": guid}
    assert put_rows(call(client, "AddCustomer", second)) == []
    # shared across services is fine
    assert put_rows(call(client, "AddJob", {**JOB, "GUID": guid})) == []
    admin = client.app.state.admin  # type: ignore[attr-defined]
    real = admin.clock
    admin.clock = lambda: real() + timedelta(hours=25)
    third = {**CUSTOMER, "Customer_Code": "C00079", "GUID": guid}
    assert put_rows(call(client, "AddCustomer", third)) == [("A", "Time out has occurred", "GUID")]
    fresh = {**third, "GUID": "11111111-2222-3333-4444-555555555555"}
    assert put_rows(call(client, "AddCustomer", fresh)) == []


def test_guid_is_not_shared_across_authorization_ids_for_one_service(
    client: TestClient,
) -> None:
    guid = "0f0c2a9e-5d41-4c7e-9a0b-8e2d1c6b7a55"
    assert put_rows(call(client, "AddCustomer", {**CUSTOMER, "GUID": guid})) == []
    other = {**CUSTOMER, "Company_Code": "XYZ", "GUID": guid}
    rows = put_rows(call(client, "AddCustomer", other, auth=AUTH_2))
    assert [(c, col) for c, _, col in rows] == [("I", "GUID")]


def test_seed_rows_are_independent_between_tests(db: SpectrumDB) -> None:
    assert db.count("CR_CUSTOMER_MASTER_MC") == len(seed_rows()["CR_CUSTOMER_MASTER_MC"])


def test_undeclared_elements_are_ignored(client: TestClient, db: SpectrumDB) -> None:
    body = envelope("AddCustomer", CUSTOMER).replace("<Name>", "<Colour>red</Colour><Name>")
    assert put_rows(client.post("/ws/AddCustomer", content=body)) == []
    assert db.count("CR_CUSTOMER_MASTER_MC", Customer_Code="C00077") == 1


def test_basic_header_on_soap_is_harmless(client: TestClient) -> None:
    # §2: two integrators send Basic Company_Code:Authorization_ID on SOAP calls
    resp = client.post(
        "/ws/AddCustomer",
        content=envelope("AddCustomer", CUSTOMER),
        headers={"Authorization": "Basic QUJDOmFweEs3UTJNOVRa"},
    )
    assert put_rows(resp) == []
