"""Shared helpers for the Spectrum simulator's contract tests (reference: spectrum-data-exchange.md).

Envelopes are written by hand from §3 and responses read by local name from the §4 skeleton, so
these tests check the simulator against the reference, not against a client. The layouts
(element lists) come from the shared contract ``clients/spectrum/services.py``.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Iterator
from datetime import date
from decimal import Decimal
from typing import Any
from xml.sax.saxutils import escape

import httpx
import pytest
from fastapi.testclient import TestClient

from clients.spectrum.services import SERVICES
from sandbox.credentials import (
    SPECTRUM_AUTHORIZATION_ID,
    SPECTRUM_AUTHORIZATION_ID_2,
    SPECTRUM_INACTIVE_AUTHORIZATION_ID,
)
from sandbox.spectrum.app import create_app
from sandbox.spectrum.db import SpectrumDB

AUTH = SPECTRUM_AUTHORIZATION_ID
AUTH_2 = SPECTRUM_AUTHORIZATION_ID_2
INACTIVE = SPECTRUM_INACTIVE_AUTHORIZATION_ID
NS = "http://www.northgate-is.com/proiv/webservices/types"
SOAP_NS = "http://schemas.xmlsoap.org/soap/envelope/"
NOT_AUTHORIZED = "The Web Service is not authorized. Authorization ID is not setup in the system."


def elements(service: str) -> list[str]:
    """Every element a service declares (§1: Authorization_ID, GUID, then the layout)."""
    return ["Authorization_ID", "GUID", *(f.name for f in SERVICES[service].fields)]


def envelope(
    service: str,
    values: dict[str, str] | None = None,
    *,
    auth: str | None = AUTH,
    omit: tuple[str, ...] = (),
    qualified: bool = False,
) -> str:
    """A §3 request: every declared element present (empty when unused) unless omitted."""
    vals = {"Authorization_ID": auth or "", **(values or {})}
    prefix = "t:" if qualified else ""
    children = "".join(
        f"<{prefix}{name}>{escape(vals.get(name, ''))}</{prefix}{name}>"
        for name in elements(service)
        if name not in omit
    )
    op = (
        f'<t:{service} xmlns:t="{NS}">{children}</t:{service}>'
        if qualified
        else f'<{service} xmlns="{NS}">{children}</{service}>'
    )
    return (
        '<?xml version="1.0" encoding="UTF-8"?>'
        f'<soap:Envelope xmlns:soap="{SOAP_NS}"><soap:Body>{op}</soap:Body></soap:Envelope>'
    )


def call(
    client: TestClient, service: str, values: dict[str, str] | None = None, **kw: Any
) -> httpx.Response:
    resp: httpx.Response = client.post(
        f"/ws/{service}",
        content=envelope(service, values, **kw),
        headers={"Content-Type": "text/xml; charset=utf-8", "SOAPAction": '""'},
    )
    return resp


def _local(tag: str) -> str:
    return tag.rpartition("}")[2]


def put_rows(resp: httpx.Response) -> list[tuple[str, str, str]]:
    """(error_code, desc, column) of every ``response`` row of a Put answer (§4)."""
    assert resp.status_code == 200, resp.text
    root = ET.fromstring(resp.content)
    rows = []
    for el in root.iter():
        if _local(el.tag) == "response":
            cells = {_local(c.tag): c.text or "" for c in el}
            assert set(cells) == {"error_code", "desc", "column"}, cells
            rows.append((cells["error_code"], cells["desc"], cells["column"]))
    return rows


def get_rows(resp: httpx.Response, service: str) -> list[dict[str, str]]:
    """Rows of a Get answer: returnArray/returnData/<lowerCamel>/response (§4)."""
    assert resp.status_code == 200, resp.text
    root = ET.fromstring(resp.content)
    wrapper = service[0].lower() + service[1:]
    found = [el for el in root.iter() if _local(el.tag) == wrapper]
    assert len(found) == 1, resp.text
    rows = []
    for el in found[0]:
        assert _local(el.tag) == "response"
        rows.append({_local(c.tag): c.text or "" for c in el})
    return rows


def fault(resp: httpx.Response) -> tuple[str, str]:
    """(faultcode, faultstring) of a SOAP fault."""
    root = ET.fromstring(resp.content)
    code = next(el.text for el in root.iter() if _local(el.tag) == "faultcode")
    text = next(el.text for el in root.iter() if _local(el.tag) == "faultstring")
    return code or "", text or ""


def seed_rows() -> dict[str, list[dict[str, Any]]]:
    """A small Spectrum install: reference data for ABC and XYZ, a few masters."""
    ref: dict[str, list[dict[str, Any]]] = {}

    def add(table: str, *rows: dict[str, Any]) -> None:
        ref.setdefault(table, []).extend(rows)

    for co in ("ABC", "XYZ"):
        add("CR_TERMS_MC", {"Company_Code": co, "Terms_Code": "N", "Description": "Net 30"})
        for code in ("NC", "EXEMPT"):
            add("CR_SALES_TAX_MC", {"Company_Code": co, "Sales_Tax_Code": code})
        add("JC_TAX_CLASS_MC", {"Company_Code": co, "Tax_Class_Code": "TC1"})
        for cc in ("100", "200"):
            add("GL_COST_CENTER_MC", {"Company_Code": co, "Cost_Center": cc})
        add(
            "GL_ACCOUNT_MASTER_MC",
            {"Company_Code": co, "GL_Account": "4000", "Direct_Cost_Flag": "N"},
            {"Company_Code": co, "GL_Account": "5000", "Direct_Cost_Flag": "Y"},
        )
        for ct in ("L", "M"):
            add("JC_COST_TYPE_MC", {"Company_Code": co, "Cost_Type": ct})
        add("JC_JOB_TYPE_MC", {"Company_Code": co, "Job_Type": "SVC"})
        add("CR_SALESPERSON_MC", {"Company_Code": co, "Salesperson_Code": "S01"})
        add(
            "PR_PAY_TYPE_MC",
            {"Company_Code": co, "Pay_Type": "R"},
            {"Company_Code": co, "Pay_Type": "BONUS"},
        )
        add("PR_DEPARTMENT_MC", {"Company_Code": co, "Department_Code": "10"})
    add(
        "CR_CUSTOMER_MASTER_MC",
        {
            "Company_Code": "ABC",
            "Customer_Code": "C00001",
            "Name": "Acme Fire",
            "Terms_Code": "N",
            "Sales_Tax_Code": "NC",
            "Status": "A",
            "Phone": "9195550100",
        },
        {
            "Company_Code": "ABC",
            "Customer_Code": "C00002",
            "Name": "Beta Labs",
            "Terms_Code": "N",
            "Sales_Tax_Code": "EXEMPT",
            "Status": "I",
        },
        {
            "Company_Code": "ABC",
            "Customer_Code": "D00003",
            "Name": "Delta Co",
            "Terms_Code": "N",
            "Sales_Tax_Code": "NC",
            "Status": "N",
        },
        {
            "Company_Code": "XYZ",
            "Customer_Code": "X1",
            "Name": "Xylo",
            "Terms_Code": "N",
            "Sales_Tax_Code": "NC",
            "Status": "A",
        },
    )
    add(
        "WO_SITE_MASTER_MC",
        {
            "Company_Code": "ABC",
            "Site_ID": "S00001",
            "Site_Name": "Acme HQ",
            "Site_Customer_Code": "C00001",
            "Status": "A",
        },
    )
    job = {"Company_Code": "ABC", "Price_Method_Code": "T", "Taxable_Flag": "N"}
    add(
        "JC_JOB_MASTER_MC",
        {
            **job,
            "Job_Number": "T1001",
            "Job_Description": "Active one",
            "Customer_Code": "C00001",
            "Division": "2",
            "Project_Manager": "PAT",
            "Cost_Center": "100",
            "Status_Code": "A",
            "Est_Start_Date": date(2026, 3, 2),
        },
        {
            **job,
            "Job_Number": "T1002",
            "Job_Description": "Inactive one",
            "Customer_Code": "C00002",
            "Division": "1",
            "Project_Manager": "ALEX",
            "Cost_Center": "200",
            "Status_Code": "I",
        },
        {
            **job,
            "Job_Number": "T1003",
            "Job_Description": "Complete one",
            "Customer_Code": "C00001",
            "Division": "3",
            "Cost_Center": "100",
            "Status_Code": "C",
        },
        {
            **job,
            "Job_Number": "TEMPLATE",
            "Job_Description": "Template",
            "Cost_Center": "100",
            "Status_Code": "A",
            "Price_Method_Code": "F",
        },
    )
    phase = {
        "Company_Code": "ABC",
        "Job_Number": "TEMPLATE",
        "Status_Code": "A",
        "Original_Est_Cost": Decimal("0.00"),
    }
    add(
        "JC_PHASE_MASTER_MC",
        {
            **phase,
            "Phase_Code": "100",
            "Cost_Type": "L",
            "Description": "Sprinkler",
            "Cost_Center": "100",
        },
        {
            **phase,
            "Phase_Code": "100",
            "Cost_Type": "M",
            "Description": "Sprinkler",
            "Cost_Center": "100",
        },
        {
            **phase,
            "Phase_Code": "200",
            "Cost_Type": "L",
            "Description": "Fire Alarm",
            "Cost_Center": "200",
        },
        {
            **phase,
            "Phase_Code": "300",
            "Cost_Type": "L",
            "Description": "Old",
            "Status_Code": "C",
            "Cost_Center": "100",
        },
        {
            **phase,
            "Job_Number": "T1001",
            "Phase_Code": "100",
            "Cost_Type": "L",
            "Description": "Sprinkler",
            "Cost_Center": "100",
        },
    )
    add(
        "PR_EMPLOYEE_MASTER_1_MC",
        {
            "Company_Code": "ABC",
            "Employee_Code": "E001",
            "Employee_Name": "Zed, Amy",
            "First_Name": "Amy",
            "Last_Name": "Zed",
            "Employment_Status": "A",
            "Department_Code": "10",
            "Cost_Center": "100",
        },
        {
            "Company_Code": "ABC",
            "Employee_Code": "E002",
            "Employee_Name": "Able, Bob",
            "First_Name": "Bob",
            "Last_Name": "Able",
            "Employment_Status": "A",
            "Department_Code": "20",
            "Cost_Center": "200",
        },
        {
            "Company_Code": "ABC",
            "Employee_Code": "E003",
            "Employee_Name": "Moe, Cy",
            "First_Name": "Cy",
            "Last_Name": "Moe",
            "Employment_Status": "I",
            "Department_Code": "10",
            "Cost_Center": "100",
        },
    )
    return ref


# Fixtures are registered under their short names; test modules import the ``*_fixture`` objects.
@pytest.fixture(name="db")
def db_fixture() -> SpectrumDB:
    """The seeded in-memory Spectrum (seed also kept as the reset baseline)."""
    d = SpectrumDB()
    d.load(seed_rows(), baseline=True)
    return d


@pytest.fixture(name="client")
def client_fixture(db: SpectrumDB) -> Iterator[TestClient]:
    with TestClient(create_app(db)) as c:
        yield c


# --- the helpers themselves -----------------------------------------------------------------------


def test_envelope_has_every_declared_element_in_order() -> None:
    root = ET.fromstring(envelope("GetJob", {"pSort_By": "D"}))
    op = root[0][0]
    assert op.tag == f"{{{NS}}}GetJob"
    names = [_local(c.tag) for c in op]
    assert names == elements("GetJob")
    assert names[:3] == ["Authorization_ID", "GUID", "pCompany_Code"]
    assert op.find(f"{{{NS}}}pSort_By") is not None


def test_seed_loads_into_the_infolink_tables(db: SpectrumDB) -> None:
    assert db.count("JC_JOB_MASTER_MC", Company_Code="ABC") == 4
    assert db.count("CR_CUSTOMER_MASTER_MC", Company_Code="XYZ") == 1
