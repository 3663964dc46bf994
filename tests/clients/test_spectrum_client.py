"""Spectrum client over HTTP: SOAP Put/Get and the REST invoice service, hand-written answers."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator, Sequence
from typing import Any

import httpx
import pytest
import respx
from freezegun import freeze_time
from lxml import etree

from clients.errors import (
    AlreadyExists,
    AmbiguousWriteError,
    AuthorizationError,
    ConfigError,
    PermanentError,
    SyncError,
    TransientError,
)
from clients.http import CallRecord
from clients.spectrum.client import SpectrumClient
from clients.spectrum.models import ARInvoiceRequest, SpectrumRequest
from clients.spectrum.services import ADD_PHASE, NS_TYPES

BASE = "https://spectrum.test:8482"
AUTH_ID = "apxTESTAUTH9"
COMPANY = "ABC"
ENH_SECRET = "enhanced-client-secret-77"


# --- answers in the reference's shapes -----------------------------------------------------------
def soap(body: str) -> str:
    return (
        '<?xml version="1.0" encoding="UTF-8"?>'
        '<SOAP-ENV:Envelope xmlns:SOAP-ENV="http://schemas.xmlsoap.org/soap/envelope/">'
        f"<SOAP-ENV:Header/><SOAP-ENV:Body>{body}</SOAP-ENV:Body></SOAP-ENV:Envelope>"
    )


def put_answer(service: str, rows: Sequence[tuple[str, str, str]] = ()) -> httpx.Response:
    inner = "".join(
        f"<response><error_code>{c}</error_code><desc>{d}</desc><column>{col}</column></response>"
        for c, d, col in rows
    )
    data = f"<returnData>{inner}</returnData>" if inner else "<returnData/>"
    return httpx.Response(
        200,
        text=soap(
            f'<nis:{service}Response xmlns:nis="{NS_TYPES}"><returnArray>{data}'
            f"</returnArray></nis:{service}Response>"
        ),
        headers={"Content-Type": "text/xml; charset=utf-8"},
    )


def get_answer(
    service: str, rows: Sequence[dict[str, str]], *, cut: bool = False
) -> httpx.Response:
    wrapper = service[0].lower() + service[1:]
    inner = "".join(
        "<response>"
        + "".join(f"<{k}>{v}</{k}>" for k, v in row.items())
        + "".join(
            f"<{k}>{row.get(k, '')}</{k}>"
            for k in ("Error_Code", "Error_Description", "Error_Column")
            if k not in row
        )
        + "</response>"
        for row in rows
    )
    text = soap(
        f'<nis:{service}Response xmlns:nis="{NS_TYPES}"><returnArray><returnData>'
        f"<{wrapper}>{inner}</{wrapper}></returnData></returnArray></nis:{service}Response>"
    )
    if cut:
        text = text[: text.rindex("</response>") + len("</response>")]
    return httpx.Response(200, text=text)


def fault(
    code: str = "SOAP-ENV:Server", text: str = "Error executing Web Service", status: int = 500
) -> httpx.Response:
    return httpx.Response(
        status,
        text=soap(
            f"<SOAP-ENV:Fault><faultcode>{code}</faultcode><faultstring>{text}</faultstring></SOAP-ENV:Fault>"
        ),
    )


def sent(request: httpx.Request) -> dict[str, str]:
    """The elements of a SOAP request, in order."""
    root = etree.fromstring(request.content)
    op = root[0][0]
    return {etree.QName(c).localname: c.text or "" for c in op}


def sent_names(request: httpx.Request) -> list[str]:
    root = etree.fromstring(request.content)
    return [etree.QName(c).localname for c in root[0][0]]


# --- fixtures ----------------------------------------------------------------------------------------
@pytest.fixture
def router() -> respx.Router:
    return respx.Router(base_url=BASE, assert_all_called=False)


@pytest.fixture
def records() -> list[CallRecord]:
    return []


@pytest.fixture
def sp(router: respx.Router, records: list[CallRecord]) -> Iterator[SpectrumClient]:
    with SpectrumClient(
        BASE,
        authorization_id=AUTH_ID,
        company_code=COMPANY,
        transport=httpx.MockTransport(router.handler),
        retry_wait_s=0,
        on_call=records.append,
    ) as client:
        yield client


def customer(code: str = "ACME") -> SpectrumRequest:
    return SpectrumRequest(
        service="AddCustomer",
        values={
            "Company_Code": COMPANY,
            "Customer_Code": code,
            "Name": "Acme & Sons <Fire>",
            "Terms_Code": "N",
            "Sales_Tax_Code": "NC",
        },
    )


def phase() -> SpectrumRequest:
    return SpectrumRequest(
        service="AddPhase",
        values={
            "Job_Number": "ST-1",
            "Phase_Code": "100",
            "Cost_Type": "L",
            "Price_Method_Code": "J",
            "Description": "Labor",
        },
    )


# --- Put ----------------------------------------------------------------------------------------
def test_put_success_request_shape(
    sp: SpectrumClient, router: respx.Router, records: list[CallRecord]
) -> None:
    route = router.post("/ws/AddPhase").mock(return_value=put_answer("AddPhase"))
    result = sp.put(phase())
    assert result.generated == {}
    req = route.calls.last.request
    assert req.headers["content-type"] == "text/xml; charset=utf-8"
    assert req.headers["soapaction"] == '""'
    assert (
        req.headers["authorization"]
        == "Basic " + base64.b64encode(f"{COMPANY}:{AUTH_ID}".encode()).decode()
    )
    assert sent_names(req) == ["Authorization_ID", "GUID", *ADD_PHASE.field_names]
    values = sent(req)
    assert values["Authorization_ID"] == AUTH_ID
    assert values["Company_Code"] == COMPANY  # defaulted to the client's company
    assert values["Phase_Code"] == "100"
    assert values["Original_Est_Cost"] == ""
    (rec,) = records
    assert (rec.system, rec.service, rec.method, rec.outcome, rec.status) == (
        "spectrum",
        "AddPhase",
        "POST",
        "ok",
        200,
    )
    assert rec.request_digest == phase().digest()


def test_put_guid_shared_by_batch_get_guid_fresh(sp: SpectrumClient, router: respx.Router) -> None:
    puts = router.post("/ws/AddCustomer").mock(return_value=put_answer("AddCustomer"))
    gets = router.post("/ws/GetJob").mock(return_value=get_answer("GetJob", []))
    sp.put(customer("A1"))
    sp.put(customer("A2"))
    sp.get("GetJob")
    sp.get("GetJob")
    put_guids = [sent(c.request)["GUID"] for c in puts.calls]
    get_guids = [sent(c.request)["GUID"] for c in gets.calls]
    assert put_guids[0] == put_guids[1] == sp.batch_guid
    assert len(set(get_guids)) == 2
    assert not set(get_guids) & set(put_guids)
    assert all(len(g) == 36 for g in put_guids + get_guids)


def test_put_generated_value(
    sp: SpectrumClient, router: respx.Router, records: list[CallRecord]
) -> None:
    router.post("/ws/WorkOrderHeader").mock(
        return_value=put_answer("WorkOrderHeader", [("G", "0000104522", "WO_Number")])
    )
    req = SpectrumRequest(
        service="WorkOrderHeader", values={"WO_Reference_Code": "S", "WO_Job_Number": "SITE1"}
    )
    assert sp.put(req).generated == {"WO_Number": "0000104522"}
    assert records[-1].detail == "WO_Number=0000104522"


@pytest.mark.parametrize(
    ("rows", "error"),
    [
        ([("A", "The Web Service is not authorized.", "Authorization_ID")], AuthorizationError),
        ([("I", "Customer_Code already exists", "Customer_Code")], AlreadyExists),
        ([("I", "Terms_Code is invalid", "Terms_Code")], PermanentError),
        ([("M", "Name is required", "Name")], PermanentError),
        ([("E", "Unexpected", "")], PermanentError),
    ],
)
def test_put_errors_inside_http_200(
    sp: SpectrumClient,
    router: respx.Router,
    records: list[CallRecord],
    rows: list[tuple[str, str, str]],
    error: type[SyncError],
) -> None:
    route = router.post("/ws/AddCustomer").mock(return_value=put_answer("AddCustomer", rows))
    with pytest.raises(error) as info:
        sp.put(customer())
    assert type(info.value) is error
    assert rows[0][1] in str(info.value)
    assert route.call_count == 1
    assert records[-1].outcome == "error"
    assert records[-1].status == 200


def test_put_server_fault_is_ambiguous_not_retried(
    sp: SpectrumClient, router: respx.Router, records: list[CallRecord]
) -> None:
    route = router.post("/ws/AddCustomer").mock(return_value=fault())
    with pytest.raises(AmbiguousWriteError, match="Error executing Web Service"):
        sp.put(customer())
    assert route.call_count == 1
    assert records[-1].outcome == "ambiguous"
    assert records[-1].status == 500


def test_put_fault_inside_200_is_ambiguous(sp: SpectrumClient, router: respx.Router) -> None:
    router.post("/ws/AddCustomer").mock(return_value=fault(status=200))
    with pytest.raises(AmbiguousWriteError):
        sp.put(customer())


def test_put_client_fault_is_permanent(sp: SpectrumClient, router: respx.Router) -> None:
    router.post("/ws/AddCustomer").mock(
        return_value=fault("SOAP-ENV:Client", "Missing element(s): Cost_Center")
    )
    with pytest.raises(PermanentError, match="Missing element") as info:
        sp.put(customer())
    assert not isinstance(info.value, TransientError)


@pytest.mark.parametrize(
    "answer",
    [
        httpx.Response(502, text="<html>Bad gateway</html>"),
        httpx.Response(200, text="<html>captive portal</html>"),
        httpx.ReadTimeout("slow"),
        httpx.RemoteProtocolError("peer closed connection"),
    ],
    ids=["502-html", "200-html", "read-timeout", "dropped"],
)
def test_put_unknown_outcomes_are_ambiguous(
    sp: SpectrumClient, router: respx.Router, answer: Any
) -> None:
    route = router.post("/ws/AddCustomer").mock(side_effect=[answer])
    with pytest.raises(AmbiguousWriteError):
        sp.put(customer())
    assert route.call_count == 1


def test_put_connect_error_is_transient(sp: SpectrumClient, router: respx.Router) -> None:
    router.post("/ws/AddCustomer").mock(side_effect=httpx.ConnectError("refused"))
    with pytest.raises(TransientError) as info:
        sp.put(customer())
    assert not isinstance(info.value, AmbiguousWriteError)


def test_put_cut_answer_without_rows_is_ambiguous(sp: SpectrumClient, router: respx.Router) -> None:
    text = put_answer("AddCustomer").text
    router.post("/ws/AddCustomer").mock(
        return_value=httpx.Response(200, text=text[: text.index("</SOAP-ENV:Body>")])
    )
    with pytest.raises(AmbiguousWriteError, match="cut off"):
        sp.put(customer())


def test_put_renews_guid_on_time_out(
    sp: SpectrumClient, router: respx.Router, records: list[CallRecord]
) -> None:
    route = router.post("/ws/AddCustomer").mock(
        side_effect=[
            put_answer("AddCustomer", [("A", "Time out has occurred", "GUID")]),
            put_answer("AddCustomer"),
            put_answer("AddCustomer"),
        ]
    )
    old = sp.batch_guid
    sp.put(customer("A1"))
    sp.put(customer("A2"))
    guids = [sent(c.request)["GUID"] for c in route.calls]
    assert guids[0] == old
    assert guids[1] != old
    assert guids[2] == guids[1] == sp.batch_guid
    assert [r.outcome for r in records] == ["transient", "ok", "ok"]


def test_put_guid_time_out_twice_is_authorization_error(
    sp: SpectrumClient, router: respx.Router
) -> None:
    route = router.post("/ws/AddCustomer").mock(
        return_value=put_answer("AddCustomer", [("A", "Time out has occurred", "GUID")])
    )
    with pytest.raises(AuthorizationError, match="Time out"):
        sp.put(customer())
    assert route.call_count == 2


def test_put_guid_renewed_after_23_hours(router: respx.Router) -> None:
    route = router.post("/ws/AddCustomer").mock(return_value=put_answer("AddCustomer"))
    with (
        freeze_time("2026-03-01 08:00:00") as clock,
        SpectrumClient(
            BASE,
            authorization_id=AUTH_ID,
            company_code=COMPANY,
            transport=httpx.MockTransport(router.handler),
            retry_wait_s=0,
        ) as sp,
    ):
        sp.put(customer())
        clock.tick(22 * 3600)
        sp.put(customer())
        clock.tick(3600 + 1)
        sp.put(customer())
    guids = [sent(c.request)["GUID"] for c in route.calls]
    assert guids[0] == guids[1] != guids[2]


def test_put_refuses_get_services(sp: SpectrumClient) -> None:
    with pytest.raises(ValueError, match="Get service"):
        sp.put(SpectrumRequest(service="GetJob", values={}))


def test_put_http_statuses(sp: SpectrumClient, router: respx.Router) -> None:
    route = router.post("/ws/AddCustomer")
    route.mock(return_value=httpx.Response(401))
    with pytest.raises(AuthorizationError):
        sp.put(customer())
    route.mock(return_value=httpx.Response(404))
    with pytest.raises(PermanentError, match="no web service"):
        sp.put(customer())
    route.mock(return_value=httpx.Response(429, headers={"Retry-After": "4"}))
    with pytest.raises(TransientError) as info:
        sp.put(customer())
    assert info.value.retry_after == 4.0
    assert not isinstance(info.value, AmbiguousWriteError)


# --- Get ----------------------------------------------------------------------------------------
JOB_ROWS = [
    {
        "Company_Code": "ABC",
        "Job_Number": "ST-1",
        "Job_Description": "Roof",
        "Customer_Code": "ACME",
    },
    {
        "Company_Code": "ABC",
        "Job_Number": "ST-2",
        "Job_Description": "Pipes",
        "Customer_Code": "ACME",
    },
]


def test_get_rows_and_company_default(
    sp: SpectrumClient, router: respx.Router, records: list[CallRecord]
) -> None:
    route = router.post("/ws/GetJob").mock(return_value=get_answer("GetJob", JOB_ROWS))
    result = sp.get("GetJob", {"pCustomer_Code": "ACME"})
    assert [r["Job_Number"] for r in result.rows] == ["ST-1", "ST-2"]
    assert result.truncated is False
    values = sent(route.calls.last.request)
    assert values["pCompany_Code"] == COMPANY
    assert values["pCustomer_Code"] == "ACME"
    assert values["pSort_By"] == ""
    assert records[-1].detail == "2 rows"


def test_get_retried_on_fault_then_transient(
    sp: SpectrumClient, router: respx.Router, records: list[CallRecord]
) -> None:
    route = router.post("/ws/GetJob").mock(return_value=fault())
    with pytest.raises(TransientError) as info:
        sp.get("GetJob")
    assert not isinstance(info.value, AmbiguousWriteError)
    assert route.call_count == 3
    assert [r.outcome for r in records] == ["transient"] * 3


def test_get_succeeds_after_faults_with_fresh_guids(
    sp: SpectrumClient, router: respx.Router
) -> None:
    route = router.post("/ws/GetJob").mock(
        side_effect=[fault(), httpx.ReadTimeout("slow"), get_answer("GetJob", JOB_ROWS)]
    )
    assert len(sp.get("GetJob").rows) == 2
    assert route.call_count == 3
    assert len({sent(c.request)["GUID"] for c in route.calls}) == 3


def test_get_authorization_rows_not_retried(sp: SpectrumClient, router: respx.Router) -> None:
    route = router.post("/ws/GetJob").mock(
        return_value=get_answer(
            "GetJob",
            [
                {
                    "Job_Number": "",
                    "Error_Code": "E",
                    "Error_Description": "The web service is not Authorized",
                    "Error_Column": "Authorization_ID",
                }
            ],
        )
    )
    with pytest.raises(AuthorizationError):
        sp.get("GetJob")
    assert route.call_count == 1


def test_get_w_row_and_cut_envelope_mark_truncated(
    sp: SpectrumClient, router: respx.Router
) -> None:
    capped = [
        *JOB_ROWS,
        {
            "Job_Number": "",
            "Error_Code": "W",
            "Error_Description": "Result exceeds maximum of 2 rows",
        },
    ]
    router.post("/ws/GetJob").mock(
        side_effect=[get_answer("GetJob", capped), get_answer("GetJob", JOB_ROWS, cut=True)]
    )
    first = sp.get("GetJob")
    assert first.truncated is True
    assert len(first.rows) == 2
    second = sp.get("GetJob")
    assert second.truncated is True
    assert [r["Job_Number"] for r in second.rows] == ["ST-1", "ST-2"]
    assert "cut off" in second.warnings[-1].description


def test_get_rejects_unknown_service_and_params(sp: SpectrumClient) -> None:
    with pytest.raises(ValueError, match="not a Spectrum Get service"):
        sp.get("AddJob")
    with pytest.raises(ValueError, match="pBogus"):
        sp.get("GetJob", {"pBogus": "1"})


def test_typed_reads_send_their_filters(sp: SpectrumClient, router: respx.Router) -> None:
    routes = {
        name: router.post(f"/ws/{name}").mock(return_value=get_answer(name, []))
        for name in ("GetCustomers", "GetJob", "GetPhase", "GetEmployee")
    }
    sp.get_customers()
    sp.get_jobs(customer_code="ACME", status="A")
    sp.get_phases("ST-1")
    sp.get_employees()
    assert sent(routes["GetCustomers"].calls.last.request)["pStatus"] == "ALL"
    job = sent(routes["GetJob"].calls.last.request)
    assert (job["pCustomer_Code"], job["pStatus_Code"]) == ("ACME", "A")
    assert sent(routes["GetPhase"].calls.last.request)["pJob_Number"] == "ST-1"
    assert sent(routes["GetEmployee"].calls.last.request)["pCompany_Code"] == COMPANY


# --- credentials ----------------------------------------------------------------------------------
def test_authorization_id_never_in_errors_or_records(
    sp: SpectrumClient, router: respx.Router, records: list[CallRecord]
) -> None:
    router.post("/ws/AddCustomer").mock(
        return_value=put_answer(
            "AddCustomer", [("A", f"Authorization ID {AUTH_ID} is inactive", "Authorization_ID")]
        )
    )
    router.post("/ws/GetJob").mock(return_value=fault(text=f"bad id {AUTH_ID}"))
    router.post("/customer/invoice").mock(return_value=httpx.Response(503, text=f"oops {AUTH_ID}"))
    texts = []
    for call in (
        lambda: sp.put(customer()),
        lambda: sp.get("GetJob"),
        lambda: sp.add_ar_invoices([invoice("I1")]),
    ):
        with pytest.raises(SyncError) as info:
            call()
        texts.append(str(info.value))
    texts += [r.detail for r in records]
    assert any("***" in t for t in texts)
    assert all(AUTH_ID not in t for t in texts)


def test_client_needs_authorization_and_company() -> None:
    with pytest.raises(ConfigError):
        SpectrumClient(BASE, authorization_id="", company_code=COMPANY)
    with pytest.raises(ConfigError):
        SpectrumClient(BASE, authorization_id=AUTH_ID, company_code="")


def test_enhanced_auth_bearer_and_reauth(router: respx.Router, records: list[CallRecord]) -> None:
    tokens = iter(["bearer-1", "bearer-2"])
    token = router.post("/connect/token").mock(
        side_effect=lambda req: httpx.Response(
            200,
            json={
                "access_token": next(tokens),
                "expires_in": 3600,
                "token_type": "Bearer",
                "scope": "spectrumapi",
            },
        )
    )
    soap_route = router.post("/ws/AddCustomer").mock(
        side_effect=[httpx.Response(401), put_answer("AddCustomer")]
    )
    rest = router.post("/customer/invoice").mock(
        return_value=httpx.Response(
            200, json={"arInvoices": [{"Invoice_Or_Transaction": "I1", "Error_Code": ""}]}
        )
    )
    with SpectrumClient(
        BASE,
        authorization_id=AUTH_ID,
        company_code=COMPANY,
        enhanced_auth=("cid", ENH_SECRET),
        transport=httpx.MockTransport(router.handler),
        retry_wait_s=0,
        on_call=records.append,
    ) as sp:
        sp.put(customer())
        sp.add_ar_invoices([invoice("I1")])
    form = dict(httpx.QueryParams(token.calls[0].request.content.decode()))
    assert form == {
        "client_id": "cid",
        "client_secret": ENH_SECRET,
        "scope": "spectrumapi",
        "grant_type": "client_credentials",
    }
    assert [c.request.headers["authorization"] for c in soap_route.calls] == [
        "Bearer bearer-1",
        "Bearer bearer-2",
    ]
    rest_req = rest.calls.last.request
    assert rest_req.headers["authorization"] == "Bearer bearer-2"
    assert rest_req.headers["x-company-code"] == COMPANY
    assert rest_req.headers["x-authorization-id"] == AUTH_ID
    assert token.call_count == 2
    assert all(ENH_SECRET not in r.detail for r in records)


# --- REST invoices ------------------------------------------------------------------------------
def invoice(number: str, amount: str = "100.00") -> ARInvoiceRequest:
    return ARInvoiceRequest(
        header={
            "Company_Code": COMPANY,
            "GL_Date": "03/02/2026",
            "Batch_Code": "20260302",
            "Customer_Code": "ACME",
            "Invoice_Or_Transaction": number,
            "Transaction_Type": "I",
            "Invoice_Date": "03/02/2026",
            "Sales_Tax_Amount": "7.00",
        },
        details=[
            {"Detail_Description": "Inspection", "Line_Extension": amount, "GL_Account": "4000"},
            {"Message": "Thank you"},
        ],
    )


def ar(number: str, code: str = "", desc: str = "", column: str = "") -> dict[str, str]:
    return {
        "Invoice_Or_Transaction": number,
        "Error_Code": code,
        "Error_Description": desc,
        "Error_Column": column,
    }


def test_rest_invoice_body_and_all_ok(
    sp: SpectrumClient, router: respx.Router, records: list[CallRecord]
) -> None:
    route = router.post("/customer/invoice").mock(
        return_value=httpx.Response(200, json={"arInvoices": [ar("I1"), ar("I2")]})
    )
    results = sp.add_ar_invoices([invoice("I1"), invoice("I2", "50.00")])
    assert [(r.number, r.ok, r.error) for r in results] == [("I1", True, None), ("I2", True, None)]
    req = route.calls.last.request
    assert req.headers["authorization"].startswith("Basic ")
    body = json.loads(req.content)
    assert body["arInvoices"][1]["Invoice_Or_Transaction"] == "I2"
    assert body["arInvoices"][1]["invoiceDetails"][0]["Line_Extension"] == "50.00"
    assert body["arInvoices"][0]["invoiceDetails"][1] == {"Message": "Thank you"}
    assert records[-1].outcome == "ok"
    assert records[-1].service == "ARMultiLineInvoice"


def test_rest_invoice_per_invoice_refusals(
    sp: SpectrumClient, router: respx.Router, records: list[CallRecord]
) -> None:
    router.post("/customer/invoice").mock(
        return_value=httpx.Response(
            200,
            json={
                "arInvoices": [
                    ar("I3", "I", "GL_Account is invalid", "GL_Account"),
                    ar("I1"),
                    ar(
                        "I2", "I", "Invoice_Or_Transaction already exists", "Invoice_Or_Transaction"
                    ),
                ]
            },
        )
    )
    ok, dup, bad = sp.add_ar_invoices([invoice("I1"), invoice("I2"), invoice("I3")])
    assert ok.ok and ok.error is None
    assert not dup.ok and isinstance(dup.error, AlreadyExists)
    assert not bad.ok and type(bad.error) is PermanentError
    assert bad.error.field == "GL_Account"
    assert "GL_Account is invalid" in str(bad.error)
    assert records[-1].outcome == "error"
    assert "1 imported" in records[-1].detail


def test_rest_invoice_joined_errors(sp: SpectrumClient, router: respx.Router) -> None:
    router.post("/customer/invoice").mock(
        return_value=httpx.Response(
            200,
            json={
                "arInvoices": [
                    ar(
                        "I1",
                        "I",
                        "GL_Account is invalid; Invoice_Or_Transaction already exists",
                        "GL_Account,Invoice_Or_Transaction",
                    ),
                ]
            },
        )
    )
    (result,) = sp.add_ar_invoices([invoice("I1")])
    assert isinstance(result.error, AlreadyExists)
    assert [(r.column, r.description) for r in result.error.rows] == [
        ("GL_Account", "GL_Account is invalid"),
        ("Invoice_Or_Transaction", "Invoice_Or_Transaction already exists"),
    ]


def test_rest_invoice_authorization(sp: SpectrumClient, router: respx.Router) -> None:
    route = router.post("/customer/invoice")
    route.mock(return_value=httpx.Response(401))
    with pytest.raises(AuthorizationError):
        sp.add_ar_invoices([invoice("I1")])
    route.mock(
        return_value=httpx.Response(
            200, json={"arInvoices": [ar("I1", "A", "not authorized", "Authorization_ID")]}
        )
    )
    with pytest.raises(AuthorizationError):
        sp.add_ar_invoices([invoice("I1")])


@pytest.mark.parametrize(
    "answer",
    [
        httpx.Response(
            500, json={"message": "There was an error processing your request. It has been logged"}
        ),
        httpx.ReadTimeout("slow"),
        httpx.Response(200, text="not json"),
        httpx.Response(200, json={"arInvoices": [ar("OTHER")]}),
        httpx.Response(200, json={"something": "else"}),
    ],
    ids=["500", "timeout", "not-json", "unknown-number", "wrong-shape"],
)
def test_rest_invoice_unknown_outcomes_are_ambiguous(
    sp: SpectrumClient, router: respx.Router, answer: Any
) -> None:
    route = router.post("/customer/invoice").mock(side_effect=[answer])
    with pytest.raises(AmbiguousWriteError):
        sp.add_ar_invoices([invoice("I1")])
    assert route.call_count == 1


def test_rest_invoice_positional_fallback_and_4xx(sp: SpectrumClient, router: respx.Router) -> None:
    route = router.post("/customer/invoice")
    route.mock(
        return_value=httpx.Response(
            200, json={"arInvoices": [ar(""), ar("", "M", "GL_Date is required", "GL_Date")]}
        )
    )
    first, second = sp.add_ar_invoices([invoice("I1"), invoice("I2")])
    assert first.ok and first.number == "I1"
    assert not second.ok and second.number == "I2"
    route.mock(
        return_value=httpx.Response(
            400, json={"arInvoices": [ar("I1", "M", "Batch_Code is required", "Batch_Code")]}
        )
    )
    (refused,) = sp.add_ar_invoices([invoice("I1")])
    assert type(refused.error) is PermanentError
    route.mock(return_value=httpx.Response(422, text="bad payload"))
    with pytest.raises(PermanentError, match="bad payload"):
        sp.add_ar_invoices([invoice("I1")])
    route.mock(return_value=httpx.Response(429, headers={"Retry-After": "2"}))
    with pytest.raises(TransientError) as info:
        sp.add_ar_invoices([invoice("I1")])
    assert not isinstance(info.value, AmbiguousWriteError)


def test_rest_invoice_nothing_to_send(sp: SpectrumClient, router: respx.Router) -> None:
    route = router.post("/customer/invoice").mock(return_value=httpx.Response(500))
    assert sp.add_ar_invoices([]) == []
    assert route.call_count == 0
