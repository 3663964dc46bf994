"""Spectrum SOAP envelopes: building, tolerant parsing, row classification (pure functions)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from lxml import etree

from clients.errors import AlreadyExists, AuthorizationError, PermanentError
from clients.spectrum.services import (
    ADD_CUSTOMER,
    ADD_JOB,
    GET_JOB,
    NS_TYPES,
    SERVICES,
    WORK_ORDER_HEADER,
    Service,
)
from clients.spectrum.soap import (
    MalformedSoapError,
    build_envelope,
    classify_get_rows,
    classify_put_rows,
    is_client_fault,
    is_guid_timeout,
    parse_response,
)

FIXTURES = Path(__file__).parent / "fixtures"


def fixture(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def local(el: etree._Element) -> str:
    return str(etree.QName(el).localname)


# --- build_envelope ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "service", [SERVICES[name] for name in sorted(SERVICES)], ids=sorted(SERVICES)
)
def test_envelope_has_every_element_in_layout_order(service: Service) -> None:
    body = build_envelope(service, "AUTHID1234", "guid-1", {})
    root = etree.fromstring(body)
    assert local(root) == "Envelope"
    (op,) = [el for el in root.iter() if isinstance(el.tag, str) and local(el) == service.name]
    assert etree.QName(op).namespace == NS_TYPES
    names = [local(c) for c in op]
    assert names == ["Authorization_ID", "GUID", *service.field_names]
    values = {local(c): c.text or "" for c in op}
    assert values["Authorization_ID"] == "AUTHID1234"
    assert values["GUID"] == "guid-1"
    assert all(values[n] == "" for n in service.field_names)


def test_envelope_puts_values_in_their_elements_and_escapes_markup() -> None:
    nasty = "A<B & C>D \"q\" 'a'"
    body = build_envelope(ADD_CUSTOMER, "AUTH", "g", {"Name": nasty, "Customer_Code": "ACME"})
    text = body.decode()
    assert "A&lt;B &amp; C&gt;D &quot;q&quot; &apos;a&apos;" in text
    assert nasty not in text
    root = etree.fromstring(body)
    by_name = {local(el): el.text for el in root.iter() if isinstance(el.tag, str)}
    assert by_name["Name"] == nasty  # the parser reads back exactly what was sent
    assert by_name["Customer_Code"] == "ACME"


def test_envelope_refuses_unknown_elements_and_unsendable_characters() -> None:
    with pytest.raises(ValueError, match="Bogus"):
        build_envelope(ADD_CUSTOMER, "AUTH", "g", {"Bogus": "x"})
    with pytest.raises(PermanentError, match=r"AddCustomer\.Name contains U\+0001") as info:
        build_envelope(ADD_CUSTOMER, "AUTH", "g", {"Name": "bad\x01name"})
    assert info.value.field == "Name"


# --- parse_response ------------------------------------------------------------------------------
def test_parse_put_rows() -> None:
    resp = parse_response(fixture("put_errors.xml"), ADD_JOB)
    assert resp.fault is None
    assert resp.truncated is False
    assert resp.rows == [
        {"error_code": "I", "desc": "Job_Number already exists", "column": "Job_Number"},
        {"error_code": "M", "desc": "Price_Method_Code is required", "column": "Price_Method_Code"},
    ]


def test_parse_put_success_has_no_rows() -> None:
    resp = parse_response(fixture("put_success_empty.xml"), ADD_CUSTOMER)
    assert resp.rows == []
    assert resp.fault is None


def test_parse_get_rows_inside_lower_camel_wrapper_trimmed() -> None:
    resp = parse_response(fixture("get_job.xml"), GET_JOB)
    assert len(resp.rows) == 2
    first, second = resp.rows
    assert first["Job_Number"] == "ST-10452"
    assert first["Address_2"] == ""
    assert first["Error_Code"] == ""
    assert second["Job_Number"] == "ST-10453"  # trailing CHAR padding trimmed
    assert second["Job_Description"] == "Sprinkler & alarm"


def test_parse_fault() -> None:
    resp = parse_response(fixture("fault_server.xml"), ADD_JOB)
    assert resp.fault == ("SOAP-ENV:Server", "Error executing Web Service")
    assert not is_client_fault(resp.fault)
    client = parse_response(fixture("fault_client.xml"), ADD_JOB)
    assert client.fault is not None
    assert is_client_fault(client.fault)


def test_parse_envelope_cut_after_last_response() -> None:
    full = parse_response(fixture("get_job.xml"), GET_JOB)
    cut = parse_response(fixture("get_job_cut.xml"), GET_JOB)
    assert cut.truncated is True
    assert full.truncated is False
    # every complete row survives; the half row after the cut is dropped
    assert cut.rows == full.rows


def test_parse_refuses_what_is_not_soap() -> None:
    with pytest.raises(MalformedSoapError):
        parse_response(b"<html><body>502 Bad Gateway</body></html>", ADD_JOB)
    with pytest.raises(MalformedSoapError):
        parse_response(b"", ADD_JOB)
    with pytest.raises(MalformedSoapError):
        parse_response(b"not xml at all", ADD_JOB)


def test_external_entities_are_not_resolved(tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("TOPSECRET-MARKER")
    body = (
        '<?xml version="1.0"?>\n'
        f'<!DOCTYPE e [<!ENTITY s SYSTEM "file://{secret}">]>\n'
        '<SOAP-ENV:Envelope xmlns:SOAP-ENV="http://schemas.xmlsoap.org/soap/envelope/">'
        "<SOAP-ENV:Body><AddJobResponse><returnArray><returnData>"
        "<response><error_code>I</error_code><desc>&s;</desc><column>Job_Number</column>"
        "</response></returnData></returnArray></AddJobResponse></SOAP-ENV:Body>"
        "</SOAP-ENV:Envelope>"
    ).encode()
    resp = parse_response(body, ADD_JOB)
    assert "TOPSECRET" not in repr(resp)
    assert resp.rows == [{"error_code": "I", "desc": "", "column": "Job_Number"}]


def test_entity_expansion_bomb_is_not_expanded() -> None:
    started = time.perf_counter()
    resp = parse_response(fixture("billion_laughs.xml"), GET_JOB)
    assert time.perf_counter() - started < 2.0
    (row,) = resp.rows
    assert row["Job_Number"] == "J1"
    assert row["Job_Description"] == ""  # 10^11 "lol"s were never built
    assert len(repr(resp)) < 2000


# --- classify_put_rows ---------------------------------------------------------------------------
def row(code: str, desc: str = "", column: str = "") -> dict[str, str]:
    return {"error_code": code, "desc": desc, "column": column}


def test_put_success_blank_s_and_generated() -> None:
    assert classify_put_rows("AddCustomer", []).generated == {}
    ok = classify_put_rows("AddCustomer", [row(""), row("S", "Connection successful")])
    assert ok.generated == {}
    gen = classify_put_rows(
        "WorkOrderHeader", parse_response(fixture("put_generated.xml"), WORK_ORDER_HEADER).rows
    )
    assert gen.generated == {"WO_Number": "0000104522"}


def test_put_a_row_is_authorization_error() -> None:
    rows = [
        row(
            "A",
            "The Web Service is not authorized. Authorization ID is not setup in the system.",
            "Authorization_ID",
        )
    ]
    with pytest.raises(AuthorizationError, match="Authorization_ID") as info:
        classify_put_rows("AddCustomer", rows)
    assert [r.code for r in info.value.rows] == ["A"]


@pytest.mark.parametrize(
    "desc",
    [
        "Customer_Code already exists",
        "Duplicate customer code",
        "Customer code is already on file",
        "CUSTOMER CODE EXISTS",
    ],
)
def test_put_duplicate_on_unique_key_is_already_exists(desc: str) -> None:
    with pytest.raises(AlreadyExists) as info:
        classify_put_rows("AddCustomer", [row("I", desc, "Customer_Code")])
    assert info.value.field == "Customer_Code"
    assert info.value.rows[0].description == desc


def test_put_duplicate_with_other_errors_keeps_every_row() -> None:
    rows = parse_response(fixture("put_errors.xml"), ADD_JOB).rows
    with pytest.raises(AlreadyExists) as info:
        classify_put_rows("AddJob", rows)
    assert [(r.code, r.column) for r in info.value.rows] == [
        ("I", "Job_Number"),
        ("M", "Price_Method_Code"),
    ]


@pytest.mark.parametrize(
    ("service", "bad"),
    [
        ("AddCustomer", row("I", "Customer_Code must be uppercase", "Customer_Code")),
        ("AddCustomer", row("I", "Terms_Code already exists", "Terms_Code")),  # not the unique key
        ("AddWOSiteAddress", row("I", "Site_Customer_Code does not exist", "Site_ID")),
        ("PreTimeCard", row("I", "Work_Date already exists", "Work_Date")),  # no unique key
    ],
)
def test_put_other_i_rows_are_permanent_not_duplicates(service: str, bad: dict[str, str]) -> None:
    with pytest.raises(PermanentError) as info:
        classify_put_rows(service, [bad])
    assert not isinstance(info.value, AlreadyExists | AuthorizationError)
    assert service in str(info.value)
    assert bad["column"] in str(info.value)
    assert bad["desc"] in str(info.value)


def test_put_m_and_e_rows_are_permanent_with_all_rows() -> None:
    rows = [
        row("M", "Name is required", "Name"),
        row("E", "Unexpected error", ""),
        row("G", "X", "Y"),
    ]
    with pytest.raises(PermanentError) as info:
        classify_put_rows("AddCustomer", rows)
    assert type(info.value) is PermanentError
    assert [r.code for r in info.value.rows] == ["M", "E", "G"]
    assert info.value.field == "Name"
    assert "AddCustomer" in str(info.value)
    assert "Name: Name is required" in str(info.value)


def test_put_unknown_code_is_not_taken_for_success() -> None:
    with pytest.raises(PermanentError):
        classify_put_rows("AddCustomer", [row("Q", "strange")])


def test_put_warning_row_is_kept_not_raised() -> None:
    result = classify_put_rows("AddJob", [row("W", "Description truncated", "Job_Description")])
    assert [w.code for w in result.warnings] == ["W"]


def test_guid_timeout_recognised_in_rows_and_faults() -> None:
    resp = parse_response(
        b'<E:Envelope xmlns:E="http://schemas.xmlsoap.org/soap/envelope/"><E:Body><R><returnArray>'
        b"<returnData><response><error_code>A</error_code><desc>Time out has occurred</desc>"
        b"<column>GUID</column></response></returnData></returnArray></R></E:Body></E:Envelope>",
        ADD_JOB,
    )
    assert is_guid_timeout(resp)
    assert not is_guid_timeout(parse_response(fixture("put_errors.xml"), ADD_JOB))


# --- classify_get_rows ---------------------------------------------------------------------------
def test_get_rows_returned_without_error_fields() -> None:
    result = classify_get_rows(GET_JOB, parse_response(fixture("get_job.xml"), GET_JOB).rows)
    assert result.truncated is False
    assert [r["Job_Number"] for r in result.rows] == ["ST-10452", "ST-10453"]
    assert all("Error_Code" not in r for r in result.rows)
    assert set(result.rows[0]) == set(GET_JOB.row_fields)


def test_get_trailing_w_row_marks_truncated() -> None:
    result = classify_get_rows(GET_JOB, parse_response(fixture("get_job_capped.xml"), GET_JOB).rows)
    assert result.truncated is True
    assert [r["Job_Number"] for r in result.rows] == ["J1", "J2"]
    assert "exceeds maximum" in result.warnings[0].description
    # missing row fields are filled in empty
    assert result.rows[0]["City"] == ""


def test_get_error_only_rows() -> None:
    with pytest.raises(AuthorizationError, match="not Authorized"):
        classify_get_rows(GET_JOB, parse_response(fixture("get_not_authorized.xml"), GET_JOB).rows)
    a_row = {
        "Job_Number": "",
        "Error_Code": "A",
        "Error_Description": "Company not authorized",
        "Error_Column": "pCompany_Code",
    }
    with pytest.raises(AuthorizationError):
        classify_get_rows(GET_JOB, [a_row])
    e_row = {
        "Job_Number": "",
        "Error_Code": "E",
        "Error_Description": "pSort_By is invalid",
        "Error_Column": "pSort_By",
    }
    with pytest.raises(PermanentError) as info:
        classify_get_rows(GET_JOB, [e_row])
    assert not isinstance(info.value, AuthorizationError)
    assert info.value.field == "pSort_By"


def test_get_empty_rows_are_dropped() -> None:
    empty = {"Job_Number": "", "Error_Code": "", "Error_Description": "", "Error_Column": ""}
    assert classify_get_rows(GET_JOB, [empty]).rows == []
